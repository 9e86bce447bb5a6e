-- V72: the unsent tail of a run whose webhook stopped is cancelled, not queued again.
--
-- A webhook deactivated or deleted has its pending deliveries cancelled (V30,
-- app.webhook_state_changed), but deliveries already claimed in a run were in flight, not
-- pending: the run sent them anyway (docs/webhooks.md, "Not done"). Servers now learn of the
-- change from its `webhook_updated` / `webhook_deleted` event and stop the run before the next
-- attempt, giving the rest back with app.webhook_release. Given back as `pending`, they would
-- wait for a re-activation that the V30 rule says must not deliver them; so release cancels
-- the deliveries of a webhook that is no longer live, as the state trigger cancels pending ones.

-- Active and not deleted: its deliveries may still be sent.
CREATE FUNCTION app.webhook_is_live(p_webhook uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (SELECT 1 FROM public.webhooks w WHERE w.id = p_webhook AND w.is_active AND w.deleted_at IS NULL)
$$;
REVOKE ALL ON FUNCTION app.webhook_is_live(uuid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION app.webhook_release(p_worker uuid, p_delivery uuid[], p_attempt integer[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE app.webhook_deliveries d
       SET status = CASE WHEN app.webhook_is_live(d.webhook_id) THEN 'pending' ELSE 'cancelled' END,
           attempts = d.attempts - 1,
           due_at = now(),
           claimed_by = NULL,
           completed_at = CASE WHEN app.webhook_is_live(d.webhook_id) THEN NULL ELSE now() END,
           updated_at = now()
      FROM (SELECT r.id, r.attempt FROM unnest(p_delivery, p_attempt) AS r(id, attempt) ORDER BY r.id) r
     WHERE d.id = r.id AND d.status = 'in_flight' AND d.claimed_by = p_worker AND d.attempts = r.attempt;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        PERFORM pg_notify('rowcast_webhooks', coalesce(p_worker::text, ''));
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION app.webhook_release(uuid, uuid[], integer[]) IS
    'For the delivery workers: returns claimed attempts that were never sent (the rest of a run after a failure, when '
    'the lease would end first, or when the webhook stopped) to the queue, due now, with their attempt count back down; '
    'those of a webhook no longer active (or deleted) are cancelled instead, as its pending ones were. Only attempts '
    'p_worker still holds.';

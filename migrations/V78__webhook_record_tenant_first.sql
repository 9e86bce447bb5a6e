-- V78: recording an attempt takes its tenants' keys before its webhooks' and deliveries'.
--
-- V77 ordered the record's locks as webhooks, then deliveries, so that a DELETE of a webhook
-- (which locks the webhook, then cascades into its deliveries) could not deadlock with it.
-- A DELETE of a *tenant* has the same shape one level up: it locks the tenant row and then
-- cascades into the tenant's webhooks, deliveries and logs, while the record, holding the
-- webhook and its deliveries, needed the tenant's key last (webhook_logs' foreign key to
-- public.tenants). A platform admin deleting a tenant while one of its attempts was recorded
-- could meet that cycle (40P01). Found by a review of V77.
--
-- The order is now the cascade's own: tenants, webhooks, deliveries, each in id order. The
-- record either waits for the tenant's DELETE (and then finds its deliveries gone: stale) or
-- the DELETE waits for the record. Key-share locks never conflict with each other, so
-- recorders do not wait for one another on them.
--
-- Instead of re-creating V77's body a third time, that function is renamed
-- app.webhook_record_attempts (unchanged: it still takes the webhooks' keys, then the
-- deliveries), and app.webhook_record_batch, the name the server and app.webhook_record
-- call, becomes the step in front of it: the tenants' keys, then the attempts.
ALTER FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[])
    RENAME TO webhook_record_attempts;
REVOKE ALL ON FUNCTION app.webhook_record_attempts(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[])
    FROM rowcast_app;
COMMENT ON FUNCTION app.webhook_record_attempts(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) IS
    'The body of app.webhook_record_batch (V70, V77), called by it once the tenants'' keys are held: takes the webhooks'' '
    'keys, then the deliveries, each in id order; logs each attempt and moves its delivery on. Not for direct use.';

CREATE FUNCTION app.webhook_record_batch(
    p_worker uuid, p_delivery uuid[], p_attempt integer[], p_status integer[], p_duration_ms integer[],
    p_error text[], p_response text[], p_retryable boolean[], p_retry_after double precision[]
) RETURNS TABLE (delivery_id uuid, result text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
    -- A delivery never changes tenant, so reading them unlocked is enough.
    PERFORM 1 FROM public.tenants t
     WHERE t.id IN (SELECT x.tenant_id FROM app.webhook_deliveries x WHERE x.id = ANY (p_delivery))
     ORDER BY t.id FOR KEY SHARE OF t;
    RETURN QUERY SELECT a.delivery_id, a.result
                   FROM app.webhook_record_attempts(p_worker, p_delivery, p_attempt, p_status, p_duration_ms, p_error,
                                                    p_response, p_retryable, p_retry_after) a;
END
$$;
COMMENT ON FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) IS
    'For the delivery workers: records many attempts in one transaction — one webhook_logs row each (one INSERT, so one '
    'capture) — and moves each delivery on (succeeded, retrying, failed, cancelled), in the order given. Locks the '
    'tenants'' keys, then the webhooks'' keys, then the deliveries, each in id order: the order of a DELETE''s cascade, '
    'so a DELETE of a tenant or a webhook never deadlocks with it. Returns (delivery_id, succeeded | retrying | failed | '
    'cancelled | stale) per attempt, in the order given.';
REVOKE ALL ON FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) TO rowcast_app;

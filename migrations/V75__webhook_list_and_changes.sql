-- V75: the wake-up listeners follow every webhook, not only the live ones, and read a range
-- stub's webhook changes from the log instead of loading every webhook again.
--
-- V74 fed only the events of tenants with a live webhook. An event skipped while a tenant's
-- only webhook was inactive was left to the poll, and app.webhook_feed_for matches webhooks
-- as they are when it runs. A webhook re-activated before that poll would then have received
-- an event committed while it was inactive. Before V74 such an event was fed at its own
-- notification, so this was only a narrow race. The listeners now feed the events of every
-- tenant with a webhook row (active or not, soft-deleted or not), so those tenants are fed as
-- before V74. Only tenants that have no webhook at all are left to the poll. The list also
-- says which webhooks are live: a server that missed a re-activation (a range stub, a
-- reconnect) clears its "stopped" mark and sends that webhook's runs again.
--
-- A range stub ({seq, first, big}) carries no events. V74 loaded the whole list again for
-- each one: every bulk write paid for every webhook. app.webhook_changes_in reads only the
-- webhook events of the stub's range (a primary-key range scan of app.events).
DROP FUNCTION app.webhook_live();

CREATE FUNCTION app.webhook_list() RETURNS TABLE (webhook_id uuid, tenant_id uuid, live boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT w.id, w.tenant_id, w.is_active AND w.deleted_at IS NULL FROM public.webhooks w
$$;
COMMENT ON FUNCTION app.webhook_list() IS
    'For the servers'' webhook wake-up listeners: every webhook, its tenant, and whether it is live (active, not '
    'deleted); ids only. An event of a tenant with no webhook cannot queue a delivery, so it does not wake the feed.';
REVOKE ALL ON FUNCTION app.webhook_list() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_list() TO rowcast_app;

CREATE FUNCTION app.webhook_changes_in(p_first bigint, p_last bigint)
RETURNS TABLE (webhook_id uuid, tenant_id uuid, live boolean, gone boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT (e."row" ->> 'id')::uuid,
           e.tenant_id,
           e.op <> 'DELETE' AND coalesce((e."row" ->> 'is_active')::boolean, false) AND (e."row" ->> 'deleted_at') IS NULL,
           e.op = 'DELETE'
      FROM app.events e
     WHERE e.seq BETWEEN p_first AND p_last AND e.table_name = 'webhooks'
     ORDER BY e.seq
$$;
COMMENT ON FUNCTION app.webhook_changes_in(bigint, bigint) IS
    'For the servers'' webhook wake-up listeners: the webhook events of seqs p_first..p_last, in order (a range stub '
    'carries none): the webhook, its tenant, whether it is live after the event, and whether its row was deleted.';
REVOKE ALL ON FUNCTION app.webhook_changes_in(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_changes_in(bigint, bigint) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- A feed round says whether it stopped at its page limit.
--
-- app.webhook_feed_for returns the deliveries it created, and the dispatcher fed again at
-- once only when that reached the page (1,000). A page of 1,000 events of tenants without a
-- webhook creates none, so a cursor far behind (a server down for a while, or V74's skipped
-- wake-ups under bulk writes) moved 1,000 events per wake-up or poll: measured, a backlog
-- left by the bench's bulk suites held a new webhook's first deliveries for over a minute.
-- app.webhook_feed_next returns both figures: `more` is true when the page was full, and the
-- dispatcher feeds again at once. Same body as V70's app.webhook_feed_for, which now wraps it.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_feed_next(p_worker uuid, p_max integer DEFAULT 1000)
RETURNS TABLE (created integer, more boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_last    bigint;
    v_head    bigint;
    v_scanned integer;
    v_max     integer;
BEGIN
    SELECT c.last_seq INTO v_last FROM app.webhook_feed_cursor c FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN QUERY SELECT -1, false;
        RETURN;
    END IF;
    SELECT max(s.seq), count(*) INTO v_head, v_scanned
      FROM (SELECT e.seq FROM app.events e WHERE e.seq > v_last ORDER BY e.seq LIMIT greatest(p_max, 1)) s;
    IF v_head IS NULL THEN
        RETURN QUERY SELECT 0, false;
        RETURN;
    END IF;
    SELECT cardinality(s.retry_schedule) + 1 INTO v_max FROM app.webhook_settings s;
    INSERT INTO app.webhook_deliveries (tenant_id, webhook_id, event_seq, event_type, body, ordered, max_attempts)
    SELECT e.tenant_id, w.id, e.seq, e.type, app.webhook_body(e), NOT w.parallel, v_max
      FROM app.events e
      JOIN public.webhooks w
        ON w.tenant_id = e.tenant_id AND w.is_active AND w.deleted_at IS NULL AND w.created_at <= e.created_at
       AND ('*' = ANY (w.events) OR e.type = ANY (w.events))
     WHERE e.seq > v_last AND e.seq <= v_head
       AND e.tenant_id IS NOT NULL
       AND e.type NOT LIKE 'webhook\_%'
     ORDER BY e.seq, w.id;
    GET DIAGNOSTICS created = ROW_COUNT;
    UPDATE app.webhook_feed_cursor SET last_seq = v_head;
    IF created > 0 THEN
        PERFORM pg_notify('rowcast_webhooks', coalesce(p_worker::text, ''));
    END IF;
    more := v_scanned >= greatest(p_max, 1);
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION app.webhook_feed_next(uuid, integer) IS
    'One feed round for the delivery worker p_worker (as app.webhook_feed_for): created is -1 when another feeder holds '
    'the cursor, else the deliveries created; more is true when p_max events were read (feed again at once).';
REVOKE ALL ON FUNCTION app.webhook_feed_next(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_feed_next(uuid, integer) TO rowcast_app;

CREATE OR REPLACE FUNCTION app.webhook_feed_for(p_worker uuid, p_max integer DEFAULT 1000) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT f.created FROM app.webhook_feed_next(p_worker, p_max) AS f
$$;

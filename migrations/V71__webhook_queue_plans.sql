-- V71: the delivery queue's functions plan with indexes, whatever the table's statistics say
-- (issue 11: "a dead receiver costs other tenants' deliveries nothing", SPEC §9).
--
-- PL/pgSQL caches each statement's plan. The first claims of a new database plan against an
-- empty app.webhook_deliveries, so the cached plans scan it sequentially (and hash-join it
-- with itself); nothing invalidates them until an ANALYZE of the table, so every claim then
-- read the whole queue — finished deliveries and every other tenant's backlog included:
-- ~6 ms per claim with 10,000 rows in the bench, more with a dead tenant's 1,000 queued
-- deliveries. The queue is only ever read through its partial indexes (the head of an
-- ordered webhook, a parallel webhook's due work, deliveries by id), so these functions say
-- so: with sequential scans off, a claim costs the same with an empty queue, a large history,
-- or another tenant's backlog. JIT is off with it: the planner's penalty for the sequential
-- scans left (one-row tables: the settings, the feed cursor) would otherwise cross
-- jit_above_cost and compile every statement (10–30 ms each).
--
-- app.webhook_claim_runs also locks its picks by id (an index lookup per candidate) instead of
-- joining the queue with the candidates, which even with sequential scans off could be planned
-- as a walk of the whole primary key.
ALTER FUNCTION app.webhook_feed_for(uuid, integer) SET enable_seqscan = off SET jit = off;
ALTER FUNCTION app.webhook_release(uuid, uuid[], integer[]) SET enable_seqscan = off SET jit = off;
ALTER FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[])
    SET enable_seqscan = off SET jit = off;

-- ---------------------------------------------------------------------------------------
-- Claim runs: as V70, the picks locked by id, and runs of one delivery for a failing webhook.
--
-- A webhook whose last attempt failed in this instance (p_failing, kept by the dispatcher:
-- added on a failed attempt, removed on a success) gets runs of ONE delivery. V70 claimed and
-- signed up to slots × 32 deliveries for it every time its hanging attempts timed out, and
-- gave 31 of every 32 back unsent: for a dead receiver, ~250 signatures and releases per
-- timeout, paid by the dispatcher every other tenant waits on. Its attempts still use its
-- tenant's slots and each delivery keeps its own retry schedule; the first success gives it
-- its full runs back.
-- ---------------------------------------------------------------------------------------
DROP FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer);
CREATE FUNCTION app.webhook_claim_runs(p_worker uuid, p_limit integer, p_per_tenant integer,
                                       p_busy uuid[], p_busy_n integer[], p_run integer, p_failing uuid[] DEFAULT '{}')
RETURNS TABLE (run integer, delivery_id uuid, tenant_id uuid, webhook_id uuid, url text, attempt integer, msg_id text,
               sent_at bigint, signature text, body text, event_created_at timestamptz, lease_ms bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_lease  interval;
    v_ts     bigint := floor(extract(epoch FROM clock_timestamp()))::bigint;
    v_run    integer := greatest(coalesce(p_run, 1), 1);
    v_ids    uuid[];
    v_units  bigint[];
    v_fids   uuid[];
    v_funits bigint[];
    v_fseqs  bigint[];
    v_locked uuid[];
    v_cids   uuid[];
    v_cunits bigint[];
BEGIN
    SELECT s.lease INTO v_lease FROM app.webhook_settings s;

    -- 1. The runs: per tenant at most its free slots, p_limit in all; their first deliveries
    --    (ordered: the head; parallel: all of the run) locked SKIP LOCKED.
    WITH busy AS (
        SELECT b.t, b.n FROM unnest(coalesce(p_busy, '{}'), coalesce(p_busy_n, '{}')) AS b(t, n) WHERE b.t IS NOT NULL
    ), live AS (
        SELECT w.id, w.tenant_id, p_per_tenant - coalesce(b.n, 0) AS slots, w.id = ANY (coalesce(p_failing, '{}')) AS failing
          FROM public.webhooks w LEFT JOIN busy b ON b.t = w.tenant_id
         WHERE w.is_active AND w.deleted_at IS NULL AND p_per_tenant - coalesce(b.n, 0) > 0
    ), candidates AS (
        SELECT h.id, w.tenant_id, w.id AS webhook_id, 0::bigint AS k, h.due_at, w.slots
          FROM live w
          CROSS JOIN LATERAL (
              SELECT d.id, d.due_at FROM app.webhook_deliveries d
               WHERE d.webhook_id = w.id AND d.ordered AND d.status IN ('pending', 'in_flight')
               ORDER BY d.event_seq LIMIT 1) h
         WHERE h.due_at <= now()
        UNION ALL
        SELECT u.id, w.tenant_id, w.id, (u.rn - 1) % w.slots, u.due_at, w.slots
          FROM live w
          CROSS JOIN LATERAL (
              SELECT d.id, d.due_at, row_number() OVER (ORDER BY d.due_at) AS rn FROM app.webhook_deliveries d
               WHERE d.webhook_id = w.id AND NOT d.ordered AND d.status IN ('pending', 'in_flight') AND d.due_at <= now()
               ORDER BY d.due_at LIMIT w.slots::bigint * CASE WHEN w.failing THEN 1 ELSE v_run END) u
    ), units AS (
        SELECT c.tenant_id, c.webhook_id, c.k, min(c.due_at) AS due_at, min(c.slots) AS slots
          FROM candidates c GROUP BY c.tenant_id, c.webhook_id, c.k
    ), ranked AS (
        SELECT u.webhook_id, u.k, u.due_at, u.slots, row_number() OVER (PARTITION BY u.tenant_id ORDER BY u.due_at) AS rn
          FROM units u
    ), chosen AS (
        SELECT r.webhook_id, r.k, row_number() OVER (ORDER BY r.due_at) AS unit
          FROM ranked r WHERE r.rn <= r.slots
         ORDER BY r.due_at LIMIT greatest(p_limit, 0)
    )
    SELECT array_agg(c.id), array_agg(ch.unit) INTO v_cids, v_cunits
      FROM candidates c JOIN chosen ch ON ch.webhook_id = c.webhook_id AND ch.k = c.k;
    IF v_cids IS NULL THEN
        RETURN;
    END IF;
    -- Locked by id, then checked (SKIP LOCKED drops what another instance holds). The check is
    -- outside the locking subquery, behind OFFSET 0: written inside, its status test matches
    -- the partial index of open deliveries and a cached plan may read them all — every
    -- tenant's backlog — to find these few.
    SELECT array_agg(x.id), array_agg(x.unit) INTO v_ids, v_units
      FROM unnest(v_cids, v_cunits) AS x(id, unit)
     WHERE x.id IN (SELECT l.id
                      FROM (SELECT d.id, d.status, d.due_at FROM app.webhook_deliveries d
                             WHERE d.id = ANY (v_cids) OFFSET 0 FOR UPDATE SKIP LOCKED) l
                     WHERE l.status IN ('pending', 'in_flight') AND l.due_at <= now());
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- 2. Followers of each ordered head this claim holds: the next unfinished deliveries in seq
    --    order, as long as each is due (pending, or in flight with an expired lease).
    IF v_run > 1 THEN
        SELECT array_agg(f.id ORDER BY hd.unit, f.event_seq), array_agg(hd.unit ORDER BY hd.unit, f.event_seq),
               array_agg(f.event_seq ORDER BY hd.unit, f.event_seq)
          INTO v_fids, v_funits, v_fseqs
          FROM (SELECT h.webhook_id, h.event_seq, v_units[array_position(v_ids, h.id)] AS unit
                  FROM app.webhook_deliveries h
                 WHERE h.id = ANY (v_ids) AND h.ordered AND NOT h.webhook_id = ANY (coalesce(p_failing, '{}'))) hd
          CROSS JOIN LATERAL (
              SELECT x.id, x.event_seq FROM (
                  SELECT d.id, d.event_seq, bool_and(d.due_at <= now()) OVER (ORDER BY d.event_seq) AS ok
                    FROM app.webhook_deliveries d
                   WHERE d.webhook_id = hd.webhook_id AND d.ordered AND d.status IN ('pending', 'in_flight')
                     AND d.event_seq > hd.event_seq
                   ORDER BY d.event_seq LIMIT v_run - 1) x
               WHERE x.ok) f;
        IF v_fids IS NOT NULL THEN
            SELECT array_agg(l.id) INTO v_locked
              FROM (SELECT d.id, d.status, d.due_at FROM app.webhook_deliveries d
                     WHERE d.id = ANY (v_fids) OFFSET 0 FOR UPDATE SKIP LOCKED) l
             WHERE l.status IN ('pending', 'in_flight') AND l.due_at <= now();
            -- A run stops at the first follower not locked: never a hole.
            SELECT v_ids || coalesce(array_agg(f.id ORDER BY f.i), '{}'), v_units || coalesce(array_agg(f.unit ORDER BY f.i), '{}')
              INTO v_ids, v_units
              FROM (SELECT f.id, f.unit, f.i,
                           bool_and(f.id = ANY (coalesce(v_locked, '{}'))) OVER (PARTITION BY f.unit ORDER BY f.seq) AS keep
                      FROM unnest(v_fids, v_funits, v_fseqs) WITH ORDINALITY AS f(id, unit, seq, i)) f
             WHERE f.keep;
        END IF;
    END IF;

    -- 3. Take them all for the lease, and sign (each webhook's keys are derived once).
    --    Index lookups by id, never a join the planner could turn into a scan of the queue.
    --    Every row of v_ids is locked by this transaction and was checked under the lock, so the
    --    UPDATE names them by id alone (a status test here could again pick the partial index).
    RETURN QUERY
    WITH claimed AS (
        UPDATE app.webhook_deliveries d
           SET status = 'in_flight', attempts = d.attempts + 1, due_at = now() + v_lease, claimed_by = p_worker, updated_at = now()
         WHERE d.id = ANY (v_ids)
        RETURNING d.id, d.tenant_id, d.webhook_id, d.attempts, d.body, d.event_seq, 'msg_' || replace(d.id::text, '-', '') AS msg_id
    ), keys AS MATERIALIZED (
        SELECT w.id, w.url,
               ARRAY(SELECT app.webhook_key(k.secret)
                       FROM (SELECT w.secret, 1 AS rank
                             UNION ALL
                             SELECT p.secret, 2 FROM app.webhook_previous_secrets p
                              WHERE p.webhook_id = w.id AND p.expires_at > now()) k
                      ORDER BY k.rank) AS keys
          FROM public.webhooks w
         WHERE w.id IN (SELECT c.webhook_id FROM claimed c)
    )
    SELECT v_units[array_position(v_ids, c.id)]::integer, c.id, c.tenant_id, c.webhook_id, k.url, c.attempts, c.msg_id, v_ts,
           (SELECT string_agg('v1,' || encode(extensions.hmac(convert_to(c.msg_id || '.' || v_ts || '.' || c.body, 'UTF8'),
                                                              x.key, 'sha256'), 'base64'), ' ' ORDER BY x.n)
              FROM unnest(k.keys) WITH ORDINALITY AS x(key, n)),
           c.body,
           (SELECT e.created_at FROM app.events e WHERE e.seq = c.event_seq),
           (extract(epoch FROM v_lease) * 1000)::bigint
      FROM claimed c
      JOIN keys k ON k.id = c.webhook_id
     ORDER BY 1, c.event_seq NULLS LAST, array_position(v_ids, c.id);
END
$$;
COMMENT ON FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer, uuid[]) IS
    'For the delivery workers: claims up to p_limit runs of at most p_run due deliveries each (FOR UPDATE SKIP LOCKED; '
    'an ordered webhook''s run is its oldest unfinished delivery and the ones right after it, in seq order; at most '
    'p_per_tenant runs per tenant counting p_busy_n already running; runs of ONE delivery for the webhooks in p_failing, '
    'whose last attempt failed), holds every delivery for the lease, and returns each with its run number, URL, attempt '
    'number, webhook-id, webhook-timestamp, signature header and the lease in ms, in sending order. Secrets never leave.';
REVOKE ALL ON FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer, uuid[]) TO rowcast_app;

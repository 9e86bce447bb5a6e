-- V70: webhook delivery in batches (issue 11 item 8, SPEC §9) — fewer round trips and
-- transactions per delivery, the same guarantees as V30.
--
-- V30 spent one claim statement per free slot, one transaction per attempt to record it (its
-- webhook_logs row captured as two events, one notification), and an ordered webhook sent
-- one delivery per claim → send → record cycle. Now:
--
--   * app.webhook_claim_runs() claims RUNS: a run is up to p_run deliveries that one sender
--     task sends one after the other over a kept-alive connection, and holds ONE per-tenant
--     slot. For an ordered webhook a run is its head and the deliveries right after it in seq
--     order (only the head's lock grants the followers: nobody else can claim them, see
--     below); for a parallel webhook, up to slots × p_run due deliveries dealt round-robin
--     into as many runs as it has free slots (so its requests still go out side by side).
--     Same rules as V30: FOR UPDATE SKIP LOCKED, a lease per attempt, signing here.
--   * app.webhook_record_batch() records many attempts in ONE transaction: one set-based
--     webhook_logs INSERT (one capture statement → its webhook_log_created and
--     webhook_triggered events, one notification for the batch), the deliveries moved on
--     exactly as V30's app.webhook_record does one by one.
--   * app.webhook_release() gives back the claimed-but-unsent tail of a run (its attempt
--     numbers were never used: the count goes back down), when an attempt of the run failed
--     or the lease would run out before the next one could finish.
--
-- Why a run of an ordered webhook can never be sent twice or out of order: followers are
-- only taken by the claim that holds the webhook's head row locked; the head is the lowest
-- unfinished seq, and once the claim commits every row of the run is in_flight with a lease,
-- so the webhook has no claimable head until the run is recorded or released (or its lease
-- ends, then the whole run is claimable again, as a new attempt, exactly like V30).
-- Followers are locked SKIP LOCKED too, and a run is cut at the first one that could not be
-- locked, so a run never has a hole.

-- ---------------------------------------------------------------------------------------
-- Claim runs.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_claim_runs(p_worker uuid, p_limit integer, p_per_tenant integer,
                                       p_busy uuid[], p_busy_n integer[], p_run integer)
RETURNS TABLE (run integer, delivery_id uuid, tenant_id uuid, webhook_id uuid, url text, attempt integer, msg_id text,
               sent_at bigint, signature text, body text, event_created_at timestamptz, lease_ms bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
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
BEGIN
    SELECT s.lease INTO v_lease FROM app.webhook_settings s;

    -- 1. The runs: per tenant at most its free slots, p_limit in all; their first deliveries
    --    (ordered: the head; parallel: all of the run) locked SKIP LOCKED.
    WITH busy AS (
        SELECT b.t, b.n FROM unnest(coalesce(p_busy, '{}'), coalesce(p_busy_n, '{}')) AS b(t, n) WHERE b.t IS NOT NULL
    ), live AS (
        SELECT w.id, w.tenant_id, p_per_tenant - coalesce(b.n, 0) AS slots
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
               ORDER BY d.due_at LIMIT w.slots::bigint * v_run) u
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
    ), picked AS (
        SELECT d.id, ch.unit
          FROM app.webhook_deliveries d
          JOIN candidates c ON c.id = d.id
          JOIN chosen ch ON ch.webhook_id = c.webhook_id AND ch.k = c.k
         WHERE d.status IN ('pending', 'in_flight') AND d.due_at <= now()
           FOR UPDATE OF d SKIP LOCKED
    )
    SELECT array_agg(p.id), array_agg(p.unit) INTO v_ids, v_units FROM picked p;
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
                 WHERE h.id = ANY (v_ids) AND h.ordered) hd
          CROSS JOIN LATERAL (
              SELECT x.id, x.event_seq FROM (
                  SELECT d.id, d.event_seq, bool_and(d.due_at <= now()) OVER (ORDER BY d.event_seq) AS ok
                    FROM app.webhook_deliveries d
                   WHERE d.webhook_id = hd.webhook_id AND d.ordered AND d.status IN ('pending', 'in_flight')
                     AND d.event_seq > hd.event_seq
                   ORDER BY d.event_seq LIMIT v_run - 1) x
               WHERE x.ok) f;
        IF v_fids IS NOT NULL THEN
            SELECT array_agg(d.id) INTO v_locked
              FROM (SELECT d.id FROM app.webhook_deliveries d
                     WHERE d.id = ANY (v_fids) AND d.status IN ('pending', 'in_flight') AND d.due_at <= now()
                       FOR UPDATE SKIP LOCKED) d;
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
    RETURN QUERY
    WITH claimed AS (
        UPDATE app.webhook_deliveries d
           SET status = 'in_flight', attempts = d.attempts + 1, due_at = now() + v_lease, claimed_by = p_worker, updated_at = now()
         WHERE d.id = ANY (v_ids) AND d.status IN ('pending', 'in_flight') AND d.due_at <= now()
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
COMMENT ON FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer) IS
    'For the delivery workers: claims up to p_limit runs of at most p_run due deliveries each (FOR UPDATE SKIP LOCKED; '
    'an ordered webhook''s run is its oldest unfinished delivery and the ones right after it, in seq order; at most '
    'p_per_tenant runs per tenant counting p_busy_n already running), holds every delivery for the lease, and returns each '
    'with its run number, URL, attempt number, webhook-id, webhook-timestamp, signature header and the lease in ms, in '
    'sending order. Secrets never leave.';
REVOKE ALL ON FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_claim_runs(uuid, integer, integer, uuid[], integer[], integer) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Feed, as V30's app.webhook_feed, but the rowcast_webhooks notification names the feeding
-- worker: that instance claims right after feeding (same round trip), so its own listener
-- skips the notification; every other instance is woken by it as before.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_feed_for(p_worker uuid, p_max integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_last  bigint;
    v_head  bigint;
    v_count integer;
    v_max   integer;
BEGIN
    SELECT c.last_seq INTO v_last FROM app.webhook_feed_cursor c FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN -1;
    END IF;
    SELECT max(s.seq) INTO v_head
      FROM (SELECT e.seq FROM app.events e WHERE e.seq > v_last ORDER BY e.seq LIMIT greatest(p_max, 1)) s;
    IF v_head IS NULL THEN
        RETURN 0;
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
    GET DIAGNOSTICS v_count = ROW_COUNT;
    UPDATE app.webhook_feed_cursor SET last_seq = v_head;
    IF v_count > 0 THEN
        PERFORM pg_notify('rowcast_webhooks', coalesce(p_worker::text, ''));
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION app.webhook_feed_for(uuid, integer) IS
    'app.webhook_feed for the delivery worker p_worker: the rowcast_webhooks notification carries p_worker, whose own '
    'listener skips it (it claims right after feeding). Returns -1 when another feeder is running, else the deliveries created.';
REVOKE ALL ON FUNCTION app.webhook_feed_for(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_feed_for(uuid, integer) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Give back the unsent tail of a run: only attempts this worker still holds.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_release(p_worker uuid, p_delivery uuid[], p_attempt integer[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE app.webhook_deliveries d
       SET status = 'pending', attempts = d.attempts - 1, due_at = now(), claimed_by = NULL, updated_at = now()
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
    'For the delivery workers: returns claimed attempts that were never sent (the rest of a run after a failure, or when '
    'the lease would end first) to the queue, due now, with their attempt count back down. Only attempts p_worker still holds.';
REVOKE ALL ON FUNCTION app.webhook_release(uuid, uuid[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_release(uuid, uuid[], integer[]) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Record many attempts in one transaction. Same outcome per attempt as V30's
-- app.webhook_record called in the order given: succeeded | retrying | failed | cancelled |
-- stale. Rows are locked in id order and health rows touched in webhook order, so two
-- instances' batches never deadlock.
-- ---------------------------------------------------------------------------------------
CREATE TYPE app.webhook_attempt AS (
    i            integer,
    id           uuid,
    attempt      integer,
    status       integer,
    duration_ms  integer,
    error        text,
    response     text,
    retryable    boolean,
    retry_after  double precision,
    found        boolean,
    current      boolean,
    tenant_id    uuid,
    webhook_id   uuid,
    event_type   text,
    event_seq    bigint,
    attempts     integer,
    max_attempts integer
);
COMMENT ON TYPE app.webhook_attempt IS
    'One attempt reported to app.webhook_record_batch, beside its delivery as it was (found: it exists; current: the '
    'reporting worker still holds this attempt).';

CREATE FUNCTION app.webhook_record_batch(
    p_worker uuid, p_delivery uuid[], p_attempt integer[], p_status integer[], p_duration_ms integer[],
    p_error text[], p_response text[], p_retryable boolean[], p_retry_after double precision[]
) RETURNS TABLE (delivery_id uuid, result text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    s        app.webhook_settings;
    b        app.webhook_attempt[];
    r        app.webhook_attempt;
    v_res    text[];
    v_hook   uuid;
    v_step   interval;
    v_delay  interval;
    v_fails  integer;
    v_result text;
BEGIN
    SELECT * INTO s FROM app.webhook_settings;
    -- Lock the deliveries in id order (two instances' batches never deadlock on them).
    PERFORM 1 FROM app.webhook_deliveries x WHERE x.id = ANY (p_delivery) ORDER BY x.id FOR UPDATE;
    SELECT array_agg(ROW(a.i::integer, a.id, a.attempt, a.status, a.duration_ms, a.error, a.response, a.retryable, a.retry_after,
                         d.id IS NOT NULL,
                         coalesce(d.status = 'in_flight' AND d.claimed_by = p_worker AND d.attempts = a.attempt, false)
                             AND a.first,
                         d.tenant_id, d.webhook_id, d.event_type, d.event_seq, d.attempts, d.max_attempts)::app.webhook_attempt
                     ORDER BY a.i)
      INTO b
      FROM (SELECT u.*, row_number() OVER (PARTITION BY u.id ORDER BY u.i) = 1 AS first  -- a delivery twice: the first is current
              FROM unnest(p_delivery, p_attempt, p_status, p_duration_ms, p_error, p_response, p_retryable, p_retry_after)
                       WITH ORDINALITY AS u(id, attempt, status, duration_ms, error, response, retryable, retry_after, i)) a
      LEFT JOIN app.webhook_deliveries d ON d.id = a.id;
    IF b IS NULL THEN
        RETURN;
    END IF;
    v_res := array_fill(NULL::text, ARRAY[cardinality(b)]);

    -- One log row per attempt of an existing delivery, in one statement (one capture).
    INSERT INTO public.webhook_logs (tenant_id, webhook_id, delivery_id, event_type, event_seq, attempt, status_code,
                                     duration_ms, error, response_body)
    SELECT x.tenant_id, x.webhook_id, x.id, x.event_type, x.event_seq, least(x.attempt, 100), x.status,
           greatest(x.duration_ms, 0), left(x.error, 1024), left(x.response, 1024)
      FROM unnest(b) AS x WHERE x.found ORDER BY x.i;

    -- Successes in one statement.
    UPDATE app.webhook_deliveries d
       SET status = 'succeeded', completed_at = now(), updated_at = now(), last_status_code = x.status, last_error = NULL
      FROM unnest(b) AS x
     WHERE x.current AND x.status BETWEEN 200 AND 299 AND d.id = x.id;
    FOREACH r IN ARRAY b LOOP
        IF NOT r.current THEN
            v_res[r.i] := 'stale';
        ELSIF r.status BETWEEN 200 AND 299 THEN
            v_res[r.i] := 'succeeded';
        END IF;
    END LOOP;

    -- Health, webhook by webhook (sorted): only successes → one statement; otherwise its
    -- attempts in the order given, exactly as app.webhook_record does them.
    FOR v_hook IN SELECT DISTINCT x.webhook_id FROM unnest(b) AS x WHERE x.current ORDER BY 1 LOOP
        IF NOT EXISTS (SELECT 1 FROM unnest(b) AS x
                        WHERE x.webhook_id = v_hook AND x.current AND x.status BETWEEN 200 AND 299 IS NOT TRUE) THEN
            INSERT INTO app.webhook_health AS h (webhook_id, consecutive_failures, last_success_at) VALUES (v_hook, 0, now())
            ON CONFLICT (webhook_id) DO UPDATE SET consecutive_failures = 0, last_success_at = now();
            CONTINUE;
        END IF;
        FOR r IN SELECT x.* FROM unnest(b) AS x WHERE x.webhook_id = v_hook AND x.current ORDER BY x.i LOOP
            IF r.status BETWEEN 200 AND 299 THEN
                INSERT INTO app.webhook_health AS h (webhook_id, consecutive_failures, last_success_at) VALUES (v_hook, 0, now())
                ON CONFLICT (webhook_id) DO UPDATE SET consecutive_failures = 0, last_success_at = now();
                CONTINUE;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM public.webhooks w WHERE w.id = v_hook AND w.is_active AND w.deleted_at IS NULL) THEN
                -- Deactivated or deleted while this attempt was in flight: no further attempt.
                UPDATE app.webhook_deliveries d
                   SET status = 'cancelled', completed_at = now(), updated_at = now(), last_status_code = r.status,
                       last_error = left(r.error, 1024)
                 WHERE d.id = r.id;
                v_result := 'cancelled';
            ELSIF r.retryable AND r.attempts < r.max_attempts THEN
                v_step := s.retry_schedule[least(r.attempts, cardinality(s.retry_schedule))];
                v_delay := v_step * (1 + s.jitter * random());
                IF r.retry_after IS NOT NULL AND r.retry_after >= 0 THEN
                    v_delay := least(make_interval(secs => r.retry_after), v_step);
                END IF;
                UPDATE app.webhook_deliveries d
                   SET status = 'pending', due_at = now() + v_delay, updated_at = now(), last_status_code = r.status,
                       last_error = left(r.error, 1024)
                 WHERE d.id = r.id;
                v_result := 'retrying';
            ELSE
                UPDATE app.webhook_deliveries d
                   SET status = 'failed', completed_at = now(), updated_at = now(), last_status_code = r.status,
                       last_error = left(r.error, 1024)
                 WHERE d.id = r.id;
                INSERT INTO app.webhook_health AS h (webhook_id, consecutive_failures, last_failure_at) VALUES (v_hook, 1, now())
                ON CONFLICT (webhook_id) DO UPDATE SET consecutive_failures = h.consecutive_failures + 1, last_failure_at = now()
                RETURNING h.consecutive_failures INTO v_fails;
                IF v_fails >= s.disable_after AND r.event_type <> 'webhook_ping' THEN
                    -- Captured as a webhook_updated event (is_active false, disabled_reason set) for admins.
                    UPDATE public.webhooks w
                       SET is_active = false,
                           disabled_reason = format('disabled after %s consecutive failed deliveries (last: %s)', v_fails,
                                                    coalesce('HTTP ' || r.status, left(r.error, 200)))
                     WHERE w.id = v_hook AND w.is_active;
                END IF;
                v_result := 'failed';
            END IF;
            v_res[r.i] := v_result;
        END LOOP;
    END LOOP;

    RETURN QUERY SELECT x.id, coalesce(v_res[x.i], 'stale') FROM unnest(b) AS x ORDER BY x.i;
END
$$;
COMMENT ON FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) IS
    'For the delivery workers: records many attempts in one transaction — one webhook_logs row each (one INSERT, so one '
    'capture) — and moves each delivery on exactly as app.webhook_record would, in the order given. Returns '
    '(delivery_id, succeeded | retrying | failed | cancelled | stale) per attempt, in the order given.';
REVOKE ALL ON FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_record_batch(uuid, uuid[], integer[], integer[], integer[], text[], text[], boolean[], double precision[]) TO rowcast_app;

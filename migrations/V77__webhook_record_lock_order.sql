-- V77: recording an attempt no longer deadlocks with a DELETE of its webhook.
--
-- app.webhook_record_batch (V70) locked the reported deliveries, then wrote their
-- webhook_logs rows and webhook_health counts, whose foreign keys lock the webhook's key
-- (FOR KEY SHARE). A hard DELETE of the webhook locks the webhook row and then cascades into
-- its deliveries. With the two at once, each waited for the other: PostgreSQL aborted one
-- (40P01) — the recorder retried its batch, the user's DELETE failed. Found by a test on
-- 2026-12-01 (docs/webhooks.md).
--
-- Now the record takes the webhooks' keys first, in id order (the order is the same for
-- every recorder; key-share locks never conflict with each other), then the deliveries, as
-- before. The function is re-created whole (its only change is that statement) with V71's
-- settings. V30's single-attempt app.webhook_record had the same order; no server calls it
-- any more, and it becomes a one-attempt batch so that the two can never disagree.
--
-- Left as it was: a user's deactivation (or soft delete) cancels the webhook's pending
-- deliveries while holding the webhook's row. It can only wait for a recorder that holds a
-- delivery still pending (a stale report of a released attempt), and that recorder waits
-- back only if the same batch disables the webhook after its last failure. PostgreSQL then
-- aborts one of the two and the recorder retries its batch.

CREATE OR REPLACE FUNCTION app.webhook_record_batch(
    p_worker uuid, p_delivery uuid[], p_attempt integer[], p_status integer[], p_duration_ms integer[],
    p_error text[], p_response text[], p_retryable boolean[], p_retry_after double precision[]
) RETURNS TABLE (delivery_id uuid, result text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
SET enable_seqscan = off
SET jit = off
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
    -- V77: the webhooks' keys first, in id order, and only then the deliveries. The log and
    -- health rows written below lock their webhook's key (their foreign keys); a DELETE of
    -- the webhook locks it and then cascades into its deliveries. Taking the key after the
    -- deliveries closed a cycle with such a DELETE (40P01); taken first, the record waits
    -- for the DELETE (and then finds its deliveries gone: stale) or the DELETE waits for
    -- the record. A delivery never changes webhook, so reading them unlocked is enough.
    PERFORM 1 FROM public.webhooks w
     WHERE w.id IN (SELECT x.webhook_id FROM app.webhook_deliveries x WHERE x.id = ANY (p_delivery))
     ORDER BY w.id FOR KEY SHARE OF w;
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
    'capture) — and moves each delivery on exactly as app.webhook_record would, in the order given. Locks the webhooks'' '
    'keys, then the deliveries, each in id order (never deadlocks with a DELETE of a webhook). Returns '
    '(delivery_id, succeeded | retrying | failed | cancelled | stale) per attempt, in the order given.';

CREATE OR REPLACE FUNCTION app.webhook_record(
    p_delivery uuid, p_worker uuid, p_attempt integer, p_status integer, p_duration_ms integer,
    p_error text, p_response text, p_retryable boolean, p_retry_after double precision
) RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT coalesce((SELECT r.result
                       FROM app.webhook_record_batch(p_worker, ARRAY[p_delivery], ARRAY[p_attempt], ARRAY[p_status],
                                                     ARRAY[p_duration_ms], ARRAY[p_error], ARRAY[p_response],
                                                     ARRAY[p_retryable], ARRAY[p_retry_after]) r), 'stale')
$$;
COMMENT ON FUNCTION app.webhook_record(uuid, uuid, integer, integer, integer, text, text, boolean, double precision) IS
    'One attempt, as app.webhook_record_batch records it (V77; V30 had its own body): logs it (webhook_logs, first 1 KiB '
    'of the answer) and moves the delivery on: succeeded, retrying, failed (disabling the webhook after disable_after '
    'consecutive failed deliveries), cancelled (the webhook went inactive) or stale (the claim was taken over).';

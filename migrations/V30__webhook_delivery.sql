-- V30: webhook delivery (SPEC §10) — a durable queue fed from app.events, signing inside the
-- database, retries, logs, stats. The Rust side (src/webhooks/) only moves bytes: it asks
-- the database for signed work, POSTs it, and reports the outcome.
--
-- Design (docs/webhooks.md says more):
--   * Feeding: NOT a trigger on the capture path (app.events inserts happen inside the
--     commit-serialized section, and that path is being reworked for commit latency). The
--     servers follow app.events by seq with a persisted cursor (app.webhook_feed_cursor):
--     app.webhook_feed() locks the cursor row FOR UPDATE SKIP LOCKED (one feeder at a time
--     across instances), turns the next events into deliveries, advances the cursor, all in
--     one transaction. Seq order is commit order and a reader that saw seq n sees every
--     event committed after it (SPEC §3.4), so the cursor never skips a committed event.
--   * Claiming: app.webhook_claim() locks due deliveries FOR UPDATE SKIP LOCKED, marks them
--     in_flight with a lease (due_at = lease expiry) and a new attempt number; an instance
--     that dies leaves due_at in the past once the lease ends, and any instance claims it
--     again (a new attempt). Per webhook only the oldest unfinished delivery is claimable
--     (seq order) unless the webhook opts into parallel delivery.
--   * Signing: app.webhook_claim() returns the Standard Webhooks signature header computed
--     here with pgcrypto's hmac(); secrets never leave the database and rowcast_app cannot
--     read them (V7 column privileges; the previous secret lives in an app table with no
--     grant). The functions sign only bodies stored by the feeder or rpc.webhook_ping.

CREATE SCHEMA IF NOT EXISTS extensions;
COMMENT ON SCHEMA extensions IS 'Extensions used by rowcast''s own functions (pgcrypto). Not granted to rowcast_app.';
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;

-- ---------------------------------------------------------------------------------------
-- Secrets in the Standard Webhooks form: whsec_ + base64 of 32 random bytes.
-- ---------------------------------------------------------------------------------------
-- SECURITY DEFINER: it is the column default of webhooks.secret, evaluated as rowcast_app,
-- which has no access to the extensions schema.
CREATE OR REPLACE FUNCTION app.new_webhook_secret() RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$ SELECT 'whsec_' || encode(extensions.gen_random_bytes(32), 'base64') $$;
COMMENT ON FUNCTION app.new_webhook_secret() IS
    'A fresh webhook signing secret in the Standard Webhooks form: whsec_ + base64 of 32 random bytes.';

-- The HMAC key of a secret: the base64-decoded bytes after whsec_ (what standardwebhooks'
-- Webhook(secret) uses). Secrets of V7 (whsec_ + 64 hex digits) are valid base64 too, so they
-- keep verifying. A secret that is not whsec_+base64 (only a DBA can still store one) signs
-- with its raw text bytes.
CREATE FUNCTION app.webhook_key(p_secret text) RETURNS bytea
LANGUAGE sql IMMUTABLE
SET search_path = ''
AS $$
    SELECT CASE
        WHEN p_secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$' AND length(p_secret) % 4 = 2
        THEN decode(substr(p_secret, 7), 'base64')
        ELSE convert_to(p_secret, 'UTF8')
    END
$$;
COMMENT ON FUNCTION app.webhook_key(text) IS 'HMAC key of a webhook secret: base64-decoded bytes after whsec_ (Standard Webhooks).';
REVOKE ALL ON FUNCTION app.webhook_key(text) FROM PUBLIC;

-- A secret a client brings must have the Standard Webhooks form, so receivers can use
-- standardwebhooks.Webhook(secret) as is. Checked on INSERT (rowcast_app can never UPDATE
-- secret; rotation generates one), so rows stored before V30 stay updatable.
CREATE FUNCTION app.webhook_secret_format() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NOT (NEW.secret ~ '^whsec_[A-Za-z0-9+/]+={0,2}$' AND length(NEW.secret) % 4 = 2
            AND octet_length(decode(substr(NEW.secret, 7), 'base64')) >= 24) THEN
        RAISE EXCEPTION 'a webhook secret must be whsec_ followed by the base64 of at least 24 random bytes'
            USING ERRCODE = '23514', CONSTRAINT = 'webhooks_secret_format_check', TABLE = 'webhooks';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER rowcast_secret_format BEFORE INSERT ON public.webhooks
    FOR EACH ROW EXECUTE FUNCTION app.webhook_secret_format();

-- The secret a rotation replaced: it keeps signing (a second signature) for 24 h.
CREATE TABLE app.webhook_previous_secrets (
    webhook_id  uuid        NOT NULL,
    secret      text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    CONSTRAINT webhook_previous_secrets_pkey PRIMARY KEY (webhook_id),
    CONSTRAINT webhook_previous_secrets_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES public.webhooks (id) ON DELETE CASCADE
);
COMMENT ON TABLE app.webhook_previous_secrets IS
    'The secret replaced by the last rpc.webhook_regenerate_secret, signing too until expires_at (24 h). No grant to rowcast_app.';
ALTER TABLE app.webhook_previous_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.webhook_previous_secrets FORCE ROW LEVEL SECURITY;

CREATE OR REPLACE FUNCTION rpc.webhook_regenerate_secret(p_webhook_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_secret text := app.new_webhook_secret();
    v_old    text;
BEGIN
    IF coalesce(app.current_user_role() NOT IN ('platform_admin', 'tenant_admin'), true) THEN
        RAISE EXCEPTION 'only tenant admins and platform admins may regenerate a webhook secret' USING ERRCODE = '42501';
    END IF;
    SELECT w.secret INTO v_old FROM public.webhooks w
     WHERE w.id = p_webhook_id AND w.tenant_id = ANY (app.tenant_scope()) AND w.deleted_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % not found', p_webhook_id USING ERRCODE = '22023';
    END IF;
    UPDATE public.webhooks w SET secret = v_secret WHERE w.id = p_webhook_id;
    INSERT INTO app.webhook_previous_secrets AS p (webhook_id, secret, expires_at)
    VALUES (p_webhook_id, v_old, now() + interval '24 hours')
    ON CONFLICT (webhook_id) DO UPDATE SET secret = EXCLUDED.secret, expires_at = EXCLUDED.expires_at;
    RETURN v_secret;
END
$$;
COMMENT ON FUNCTION rpc.webhook_regenerate_secret(uuid) IS
    'Stores a fresh signing secret on a live webhook of the caller''s tenant and returns it — the only time it can be read. '
    'The replaced secret keeps signing (second signature) for 24 h. Tenant admins and platform admins only (42501).';

-- ---------------------------------------------------------------------------------------
-- Webhook options and state visible to admins.
-- ---------------------------------------------------------------------------------------
ALTER TABLE public.webhooks
    ADD COLUMN parallel boolean NOT NULL DEFAULT false,
    ADD COLUMN disabled_reason text;
COMMENT ON COLUMN public.webhooks.parallel IS
    'false (default): events are delivered one at a time in seq order; true: concurrently, in no particular order.';
COMMENT ON COLUMN public.webhooks.disabled_reason IS
    'Set when delivery disabled the webhook (consecutive failed deliveries); cleared when an admin re-activates it.';
-- V7: new columns of webhooks must be granted one by one (a table grant would expose secret).
GRANT SELECT (parallel, disabled_reason), INSERT (parallel), UPDATE (parallel) ON public.webhooks TO rowcast_app;

ALTER TABLE public.webhook_logs ADD COLUMN delivery_id uuid;
COMMENT ON COLUMN public.webhook_logs.delivery_id IS 'The delivery this attempt belongs to: pass it to rpc.webhook_retry.';
CREATE INDEX webhook_logs_tenant_delivery_idx ON public.webhook_logs (tenant_id, delivery_id);

-- ---------------------------------------------------------------------------------------
-- Settings (a row a DBA — or a test — may change): retry schedule, lease, disable rule.
-- ---------------------------------------------------------------------------------------
CREATE TABLE app.webhook_settings (
    singleton       boolean    NOT NULL DEFAULT true,
    retry_schedule  interval[] NOT NULL DEFAULT '{5 seconds,30 seconds,2 minutes,10 minutes,1 hour,6 hours,24 hours}',
    jitter          real       NOT NULL DEFAULT 0.2,
    lease           interval   NOT NULL DEFAULT '60 seconds',
    disable_after   integer    NOT NULL DEFAULT 5,
    CONSTRAINT webhook_settings_pkey PRIMARY KEY (singleton),
    CONSTRAINT webhook_settings_singleton_check CHECK (singleton),
    CONSTRAINT webhook_settings_jitter_check CHECK (jitter >= 0 AND jitter <= 1),
    CONSTRAINT webhook_settings_lease_check CHECK (lease >= interval '1 second'),
    CONSTRAINT webhook_settings_disable_after_check CHECK (disable_after >= 1),
    CONSTRAINT webhook_settings_schedule_check CHECK (cardinality(retry_schedule) BETWEEN 0 AND 50)
);
INSERT INTO app.webhook_settings DEFAULT VALUES;
COMMENT ON TABLE app.webhook_settings IS
    'Webhook delivery rules. retry_schedule: delay before attempt 2, 3, … (one more attempt than steps; each step +0..jitter '
    'of itself; a Retry-After answer shortens it). lease: how long a claimed attempt is held before another instance may '
    'take it over (must exceed the 15 s request timeout). disable_after: consecutive failed deliveries that disable a webhook.';
ALTER TABLE app.webhook_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.webhook_settings FORCE ROW LEVEL SECURITY;

-- ---------------------------------------------------------------------------------------
-- The queue.
-- ---------------------------------------------------------------------------------------
CREATE TABLE app.webhook_deliveries (
    id               uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id        uuid        NOT NULL,
    webhook_id       uuid        NOT NULL,
    event_seq        bigint,
    event_type       text        NOT NULL,
    body             text        NOT NULL,
    ordered          boolean     NOT NULL,
    status           text        NOT NULL DEFAULT 'pending',
    attempts         integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    due_at           timestamptz NOT NULL DEFAULT now(),
    claimed_by       uuid,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_deliveries_webhook_fkey FOREIGN KEY (tenant_id, webhook_id) REFERENCES public.webhooks (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending', 'in_flight', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT webhook_deliveries_ordered_check CHECK (NOT ordered OR event_seq IS NOT NULL)
);
COMMENT ON TABLE app.webhook_deliveries IS
    'Webhook delivery queue: one row per (event, webhook) (or ping). pending: due_at is the next attempt; in_flight: claimed, '
    'due_at is the lease end (then any instance may claim it again); succeeded/failed/cancelled: done. body is the exact '
    'JSON signed and sent; the webhook-id header is msg_<id without dashes>, the same on every attempt.';
-- Ordered webhooks: the head (lowest seq) of the unfinished deliveries.
CREATE INDEX webhook_deliveries_ordered_head_idx ON app.webhook_deliveries (webhook_id, event_seq)
    WHERE ordered AND status IN ('pending', 'in_flight');
-- Parallel webhooks and pings: due work.
CREATE INDEX webhook_deliveries_unordered_due_idx ON app.webhook_deliveries (webhook_id, due_at)
    WHERE NOT ordered AND status IN ('pending', 'in_flight');
CREATE INDEX webhook_deliveries_open_created_idx ON app.webhook_deliveries (created_at)
    WHERE status IN ('pending', 'in_flight');
CREATE INDEX webhook_deliveries_done_idx ON app.webhook_deliveries (completed_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX webhook_deliveries_tenant_webhook_idx ON app.webhook_deliveries (tenant_id, webhook_id, status);
ALTER TABLE app.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.webhook_deliveries FORCE ROW LEVEL SECURITY;

CREATE TABLE app.webhook_health (
    webhook_id            uuid        NOT NULL,
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    last_success_at       timestamptz,
    last_failure_at       timestamptz,
    CONSTRAINT webhook_health_pkey PRIMARY KEY (webhook_id),
    CONSTRAINT webhook_health_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES public.webhooks (id) ON DELETE CASCADE
);
COMMENT ON TABLE app.webhook_health IS 'Per webhook: consecutive failed deliveries (reset by a success), last success and failure.';
ALTER TABLE app.webhook_health ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.webhook_health FORCE ROW LEVEL SECURITY;

CREATE TABLE app.webhook_feed_cursor (
    singleton  boolean NOT NULL DEFAULT true,
    last_seq   bigint  NOT NULL,
    CONSTRAINT webhook_feed_cursor_pkey PRIMARY KEY (singleton),
    CONSTRAINT webhook_feed_cursor_singleton_check CHECK (singleton)
);
-- History is not delivered: the feed starts at the log's head.
INSERT INTO app.webhook_feed_cursor (last_seq) SELECT coalesce(max(seq), 0) FROM app.events;
COMMENT ON TABLE app.webhook_feed_cursor IS 'Highest app.events seq turned into webhook deliveries.';
ALTER TABLE app.webhook_feed_cursor ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.webhook_feed_cursor FORCE ROW LEVEL SECURITY;

-- A webhook that stops being live has its queued deliveries cancelled; re-activation clears
-- the disable reason and the failure count.
CREATE FUNCTION app.webhook_state_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    IF NOT NEW.is_active OR NEW.deleted_at IS NOT NULL THEN
        UPDATE app.webhook_deliveries d SET status = 'cancelled', completed_at = now(), updated_at = now()
         WHERE d.webhook_id = NEW.id AND d.status = 'pending';
    ELSIF NOT OLD.is_active THEN
        UPDATE app.webhook_health h SET consecutive_failures = 0 WHERE h.webhook_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION app.webhook_state_changed() FROM PUBLIC;
CREATE TRIGGER rowcast_webhook_state AFTER UPDATE OF is_active, deleted_at ON public.webhooks
    FOR EACH ROW WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
    EXECUTE FUNCTION app.webhook_state_changed();

CREATE FUNCTION app.webhook_reactivated() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NEW.is_active AND NOT OLD.is_active THEN
        NEW.disabled_reason := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER rowcast_webhook_reactivated BEFORE UPDATE OF is_active ON public.webhooks
    FOR EACH ROW EXECUTE FUNCTION app.webhook_reactivated();

-- ---------------------------------------------------------------------------------------
-- The body: the event as /ws shows it (without language).
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_body(e app.events) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = ''
AS $$
    SELECT json_build_object(
        'type', e.type, 'seq', e.seq, 'tenantId', e.tenant_id, 'table', e.table_name,
        'payload', e."row", 'old', e.old,
        'timestamp', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
$$;
COMMENT ON FUNCTION app.webhook_body(app.events) IS 'The webhook POST body of an event: {type, seq, tenantId, table, payload, old, timestamp}.';
REVOKE ALL ON FUNCTION app.webhook_body(app.events) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Feed: the next events after the cursor become deliveries. -1: another instance feeds.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_feed(p_max integer DEFAULT 1000) RETURNS integer
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
        PERFORM pg_notify('rowcast_webhooks', '');
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION app.webhook_feed(integer) IS
    'Turns up to p_max events after the feed cursor into deliveries for every live webhook of their tenant whose events '
    'match (''*'' = all; never webhook_* events), advances the cursor, notifies rowcast_webhooks. One feeder at a time '
    '(cursor row locked SKIP LOCKED): returns -1 when another is running, else the deliveries created.';
REVOKE ALL ON FUNCTION app.webhook_feed(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_feed(integer) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Signature header: "v1,<base64 hmac>" per live secret (current, then the previous one for
-- 24 h after a rotation), space separated.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_signature(p_webhook uuid, p_msg_id text, p_ts bigint, p_body text) RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT string_agg('v1,' || encode(extensions.hmac(convert_to(p_msg_id || '.' || p_ts || '.' || p_body, 'UTF8'),
                                                      app.webhook_key(k.secret), 'sha256'), 'base64'), ' ' ORDER BY k.rank)
      FROM (SELECT w.secret, 1 AS rank FROM public.webhooks w WHERE w.id = p_webhook
            UNION ALL
            SELECT p.secret, 2 FROM app.webhook_previous_secrets p WHERE p.webhook_id = p_webhook AND p.expires_at > now()) k
$$;
COMMENT ON FUNCTION app.webhook_signature(uuid, text, bigint, text) IS
    'Standard Webhooks signature header of a message: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> per live secret. Internal.';
REVOKE ALL ON FUNCTION app.webhook_signature(uuid, text, bigint, text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Claim: lock due work (SKIP LOCKED), take a lease, sign. At most p_limit in all and
-- p_per_tenant per tenant, minus what this instance already has in flight for a tenant
-- (p_busy[i] has p_busy_n[i] attempts running).
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_claim(p_worker uuid, p_limit integer, p_per_tenant integer,
                                  p_busy uuid[] DEFAULT '{}', p_busy_n integer[] DEFAULT '{}')
RETURNS TABLE (delivery_id uuid, tenant_id uuid, webhook_id uuid, url text, attempt integer, msg_id text,
               sent_at bigint, signature text, body text, event_created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_lease interval;
    v_ts    bigint := floor(extract(epoch FROM clock_timestamp()))::bigint;
BEGIN
    SELECT s.lease INTO v_lease FROM app.webhook_settings s;
    RETURN QUERY
    WITH busy AS (
        SELECT b.t, b.n FROM unnest(coalesce(p_busy, '{}'), coalesce(p_busy_n, '{}')) AS b(t, n) WHERE b.t IS NOT NULL
    ), live AS (
        SELECT w.id, w.tenant_id, p_per_tenant - coalesce(b.n, 0) AS slots
          FROM public.webhooks w LEFT JOIN busy b ON b.t = w.tenant_id
         WHERE w.is_active AND w.deleted_at IS NULL AND p_per_tenant - coalesce(b.n, 0) > 0
    ), candidates AS (
        SELECT h.id, h.tenant_id, h.due_at, w.slots
          FROM live w
          CROSS JOIN LATERAL (
              SELECT d.id, d.tenant_id, d.due_at FROM app.webhook_deliveries d
               WHERE d.webhook_id = w.id AND d.ordered AND d.status IN ('pending', 'in_flight')
               ORDER BY d.event_seq LIMIT 1) h
         WHERE h.due_at <= now()
        UNION ALL
        SELECT u.id, u.tenant_id, u.due_at, w.slots
          FROM live w
          CROSS JOIN LATERAL (
              SELECT d.id, d.tenant_id, d.due_at FROM app.webhook_deliveries d
               WHERE d.webhook_id = w.id AND NOT d.ordered AND d.status IN ('pending', 'in_flight') AND d.due_at <= now()
               ORDER BY d.due_at LIMIT w.slots) u
    ), ranked AS (
        SELECT c.id, c.due_at, c.slots, row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.due_at) AS rn FROM candidates c
    ), picked AS (
        SELECT d.id FROM app.webhook_deliveries d JOIN ranked r ON r.id = d.id
         WHERE r.rn <= r.slots AND d.status IN ('pending', 'in_flight') AND d.due_at <= now()
         ORDER BY r.due_at
         LIMIT greatest(p_limit, 0)
           FOR UPDATE OF d SKIP LOCKED
    ), claimed AS (
        UPDATE app.webhook_deliveries d
           SET status = 'in_flight', attempts = d.attempts + 1, due_at = now() + v_lease, claimed_by = p_worker, updated_at = now()
          FROM picked p WHERE d.id = p.id
        RETURNING d.id, d.tenant_id, d.webhook_id, d.attempts, d.body, d.event_seq
    )
    SELECT c.id, c.tenant_id, c.webhook_id, w.url, c.attempts, m.msg_id, v_ts,
           app.webhook_signature(c.webhook_id, m.msg_id, v_ts, c.body), c.body, e.created_at
      FROM claimed c
      JOIN public.webhooks w ON w.id = c.webhook_id
      CROSS JOIN LATERAL (SELECT 'msg_' || replace(c.id::text, '-', '') AS msg_id) m
      LEFT JOIN app.events e ON e.seq = c.event_seq;
END
$$;
COMMENT ON FUNCTION app.webhook_claim(uuid, integer, integer, uuid[], integer[]) IS
    'For the delivery workers: claims up to p_limit due deliveries (FOR UPDATE SKIP LOCKED; per ordered webhook only its '
    'oldest unfinished one; at most p_per_tenant per tenant counting p_busy_n already running), holds them for the lease, and '
    'returns each with its URL, attempt number, webhook-id, webhook-timestamp and signature header. Secrets never leave.';
REVOKE ALL ON FUNCTION app.webhook_claim(uuid, integer, integer, uuid[], integer[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_claim(uuid, integer, integer, uuid[], integer[]) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Record an attempt: one webhook_logs row (→ webhook_triggered), then succeed, schedule the
-- next attempt, or fail (and disable the webhook after disable_after failed deliveries).
-- Returns succeeded | retrying | failed | cancelled (the webhook went inactive) | stale (the claim was taken over meanwhile: the
-- attempt is logged, the delivery left to its new holder).
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.webhook_record(
    p_delivery uuid, p_worker uuid, p_attempt integer, p_status integer, p_duration_ms integer,
    p_error text, p_response text, p_retryable boolean, p_retry_after double precision
) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    d        app.webhook_deliveries;
    s        app.webhook_settings;
    v_step   interval;
    v_delay  interval;
    v_fails  integer;
    v_ok     boolean := p_status BETWEEN 200 AND 299;
BEGIN
    SELECT * INTO d FROM app.webhook_deliveries x WHERE x.id = p_delivery FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    INSERT INTO public.webhook_logs (tenant_id, webhook_id, delivery_id, event_type, event_seq, attempt, status_code,
                                     duration_ms, error, response_body)
    VALUES (d.tenant_id, d.webhook_id, d.id, d.event_type, d.event_seq, least(p_attempt, 100), p_status,
            greatest(p_duration_ms, 0), left(p_error, 1024), left(p_response, 1024));
    IF d.status <> 'in_flight' OR d.claimed_by IS DISTINCT FROM p_worker OR d.attempts <> p_attempt THEN
        RETURN 'stale';
    END IF;
    SELECT * INTO s FROM app.webhook_settings;

    IF v_ok THEN
        UPDATE app.webhook_deliveries x
           SET status = 'succeeded', completed_at = now(), updated_at = now(), last_status_code = p_status, last_error = NULL
         WHERE x.id = d.id;
        INSERT INTO app.webhook_health AS h (webhook_id, consecutive_failures, last_success_at) VALUES (d.webhook_id, 0, now())
        ON CONFLICT (webhook_id) DO UPDATE SET consecutive_failures = 0, last_success_at = now();
        RETURN 'succeeded';
    END IF;

    IF NOT EXISTS (SELECT 1 FROM public.webhooks w WHERE w.id = d.webhook_id AND w.is_active AND w.deleted_at IS NULL) THEN
        -- Deactivated or deleted while this attempt was in flight: no further attempt.
        UPDATE app.webhook_deliveries x
           SET status = 'cancelled', completed_at = now(), updated_at = now(), last_status_code = p_status,
               last_error = left(p_error, 1024)
         WHERE x.id = d.id;
        RETURN 'cancelled';
    END IF;

    IF p_retryable AND d.attempts < d.max_attempts THEN
        v_step := s.retry_schedule[least(d.attempts, cardinality(s.retry_schedule))];
        v_delay := v_step * (1 + s.jitter * random());
        IF p_retry_after IS NOT NULL AND p_retry_after >= 0 THEN
            v_delay := least(make_interval(secs => p_retry_after), v_step);
        END IF;
        UPDATE app.webhook_deliveries x
           SET status = 'pending', due_at = now() + v_delay, updated_at = now(), last_status_code = p_status,
               last_error = left(p_error, 1024)
         WHERE x.id = d.id;
        RETURN 'retrying';
    END IF;

    UPDATE app.webhook_deliveries x
       SET status = 'failed', completed_at = now(), updated_at = now(), last_status_code = p_status, last_error = left(p_error, 1024)
     WHERE x.id = d.id;
    INSERT INTO app.webhook_health AS h (webhook_id, consecutive_failures, last_failure_at) VALUES (d.webhook_id, 1, now())
    ON CONFLICT (webhook_id) DO UPDATE SET consecutive_failures = h.consecutive_failures + 1, last_failure_at = now()
    RETURNING h.consecutive_failures INTO v_fails;
    IF v_fails >= s.disable_after AND d.event_type <> 'webhook_ping' THEN
        -- Captured as a webhook_updated event (is_active false, disabled_reason set) for admins.
        UPDATE public.webhooks w
           SET is_active = false,
               disabled_reason = format('disabled after %s consecutive failed deliveries (last: %s)', v_fails,
                                        coalesce('HTTP ' || p_status, left(p_error, 200)))
         WHERE w.id = d.webhook_id AND w.is_active;
    END IF;
    RETURN 'failed';
END
$$;
COMMENT ON FUNCTION app.webhook_record(uuid, uuid, integer, integer, integer, text, text, boolean, double precision) IS
    'For the delivery workers: logs one attempt (webhook_logs, first 1 KiB of the answer) and moves the delivery on: '
    'succeeded, retrying (next step of the schedule + jitter, or Retry-After capped at that step), failed (after the last '
    'attempt or a non-retryable answer; disables the webhook after disable_after consecutive failed deliveries).';
REVOKE ALL ON FUNCTION app.webhook_record(uuid, uuid, integer, integer, integer, text, text, boolean, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_record(uuid, uuid, integer, integer, integer, text, text, boolean, double precision) TO rowcast_app;

-- Queue metrics for Prometheus (no tenant data): open deliveries and the oldest one's age.
CREATE FUNCTION app.webhook_queue_stats(OUT depth bigint, OUT oldest_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT count(*), coalesce(extract(epoch FROM now() - min(d.created_at))::double precision, 0)
      FROM app.webhook_deliveries d WHERE d.status IN ('pending', 'in_flight')
$$;
REVOKE ALL ON FUNCTION app.webhook_queue_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_queue_stats() TO rowcast_app;

-- Finished deliveries are kept as long as events are (ROWCAST_EVENT_RETENTION).
CREATE FUNCTION app.webhook_prune(p_older_than interval, p_batch integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_count integer;
BEGIN
    DELETE FROM app.webhook_deliveries d
     WHERE d.id IN (SELECT x.id FROM app.webhook_deliveries x
                     WHERE x.status IN ('succeeded', 'failed', 'cancelled') AND x.completed_at < now() - p_older_than
                     LIMIT greatest(p_batch, 1));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
REVOKE ALL ON FUNCTION app.webhook_prune(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_prune(interval, integer) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- rpc for tenant admins (and platform admins): retry, ping, per-webhook stats.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.require_webhook_admin() RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
BEGIN
    IF coalesce(app.current_user_role() NOT IN ('platform_admin', 'tenant_admin'), true) THEN
        RAISE EXCEPTION 'only tenant admins and platform admins may manage webhook deliveries' USING ERRCODE = '42501';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION app.require_webhook_admin() FROM PUBLIC;

CREATE FUNCTION rpc.webhook_retry(delivery uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    d app.webhook_deliveries;
BEGIN
    PERFORM app.require_webhook_admin();
    SELECT * INTO d FROM app.webhook_deliveries x
     WHERE x.id = delivery AND x.tenant_id = ANY (app.tenant_scope()) FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook delivery % not found', delivery USING ERRCODE = '22023';
    END IF;
    IF d.status IN ('pending', 'in_flight') THEN
        RAISE EXCEPTION 'webhook delivery % is already queued (%)', delivery, d.status USING ERRCODE = 'PT409';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM public.webhooks w WHERE w.id = d.webhook_id AND w.is_active AND w.deleted_at IS NULL) THEN
        RAISE EXCEPTION 'the webhook of delivery % is not active: activate it first', delivery USING ERRCODE = 'PT409';
    END IF;
    UPDATE app.webhook_deliveries x
       SET status = 'pending', due_at = now(), max_attempts = least(x.attempts + 1, 100), completed_at = NULL, updated_at = now()
     WHERE x.id = d.id;
    PERFORM pg_notify('rowcast_webhooks', '');
    RETURN d.id;
END
$$;
COMMENT ON FUNCTION rpc.webhook_retry(uuid) IS
    'Queues one more attempt of a finished delivery (same webhook-id), now. Tenant admins and platform admins, own tenant only.';
REVOKE ALL ON FUNCTION rpc.webhook_retry(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rpc.webhook_retry(uuid) TO rowcast_app;

CREATE FUNCTION rpc.webhook_ping(webhook uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    w  public.webhooks;
    v_id uuid := gen_random_uuid();
BEGIN
    PERFORM app.require_webhook_admin();
    SELECT * INTO w FROM public.webhooks x
     WHERE x.id = webhook AND x.tenant_id = ANY (app.tenant_scope()) AND x.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % not found', webhook USING ERRCODE = '22023';
    END IF;
    IF NOT w.is_active THEN
        RAISE EXCEPTION 'webhook % is not active: activate it first', webhook USING ERRCODE = 'PT409';
    END IF;
    INSERT INTO app.webhook_deliveries (id, tenant_id, webhook_id, event_type, body, ordered, max_attempts)
    VALUES (v_id, w.tenant_id, w.id, 'webhook_ping',
            json_build_object('type', 'webhook_ping', 'seq', NULL, 'tenantId', w.tenant_id, 'table', 'webhooks',
                              'payload', json_build_object('webhookId', w.id, 'name', w.name), 'old', NULL,
                              'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text,
            false, 1);
    PERFORM pg_notify('rowcast_webhooks', '');
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION rpc.webhook_ping(uuid) IS
    'Sends one signed webhook_ping message to an active webhook now (one attempt, logged); returns the delivery id.';
REVOKE ALL ON FUNCTION rpc.webhook_ping(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rpc.webhook_ping(uuid) TO rowcast_app;

CREATE FUNCTION rpc.webhook_stats()
RETURNS TABLE (webhook_id uuid, name text, is_active boolean, disabled_reason text, pending bigint, in_flight bigint,
               succeeded_24h bigint, failed_24h bigint, oldest_pending_seconds double precision,
               consecutive_failures integer, last_success_at timestamptz, last_failure_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    PERFORM app.require_webhook_admin();
    RETURN QUERY
    SELECT w.id, w.name, w.is_active, w.disabled_reason,
           count(*) FILTER (WHERE d.status = 'pending'),
           count(*) FILTER (WHERE d.status = 'in_flight'),
           count(*) FILTER (WHERE d.status = 'succeeded' AND d.completed_at > now() - interval '24 hours'),
           count(*) FILTER (WHERE d.status = 'failed' AND d.completed_at > now() - interval '24 hours'),
           coalesce(extract(epoch FROM now() - min(d.created_at) FILTER (WHERE d.status IN ('pending', 'in_flight')))::double precision, 0),
           coalesce(h.consecutive_failures, 0), h.last_success_at, h.last_failure_at
      FROM public.webhooks w
      LEFT JOIN app.webhook_deliveries d ON d.tenant_id = w.tenant_id AND d.webhook_id = w.id
      LEFT JOIN app.webhook_health h ON h.webhook_id = w.id
     WHERE w.tenant_id = ANY (app.tenant_scope()) AND w.deleted_at IS NULL
     GROUP BY w.id, w.name, w.is_active, w.disabled_reason, h.consecutive_failures, h.last_success_at, h.last_failure_at
     ORDER BY w.name, w.id;
END
$$;
COMMENT ON FUNCTION rpc.webhook_stats() IS
    'Per webhook of the caller''s tenant: queue (pending, in flight, oldest age), outcomes of the last 24 h, health. '
    'Tenant admins and platform admins only (42501).';
REVOKE ALL ON FUNCTION rpc.webhook_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rpc.webhook_stats() TO rowcast_app;

-- V10: change capture, the ordered event log app.events, and pg_notify (SPEC §3.4).
--
-- How a row change becomes an event:
--   1. app.enable_realtime(tbl, entity, audience, redact) registers the table in
--      app.realtime_tables and attaches ONE trigger to it, rowcast_capture: a constraint
--      trigger, AFTER INSERT OR UPDATE OR DELETE, FOR EACH ROW, DEFERRABLE INITIALLY
--      DEFERRED. It therefore fires at COMMIT, once per changed row, in the order the
--      changes were made, with the OLD/NEW row versions of the moment of each change.
--   2. At commit, the trigger takes pg_advisory_xact_lock(1919907683, 1) ('rowc', 1),
--      draws seq = nextval('app.events_seq'), inserts the event and calls
--      pg_notify('rowcast_events', <event JSON, or a stub when it exceeds 7,900 bytes>).
--      The lock is held until the transaction has committed, so:
--         seq order == commit order, and a reader that has seen seq = n and later asks
--         for seq > n gets every event committed after it, including events of
--         transactions that STARTED before n's but committed after.
--      (NOTIFY itself already serializes notifying commits on a database-wide lock taken in
--      PreCommit_Notify and held through commit, so the advisory lock adds no new
--      serialization point; it only widens it to cover the seq draw.)
--   3. The server's single LISTEN connection relays notifications to the hub; stubs and
--      gaps are read back through app.relay_events_since, which bypasses RLS and is
--      executable by rowcast_app only.
--
-- Why capture at commit rather than "insert with seq NULL, number at commit": one write per
-- event (no UPDATE of every event row and its two indexes at commit), no NULL-seq rows for
-- readers to skip, `seq` can be NOT NULL and the primary key. Measured with pgbench (16
-- clients, one-row INSERT transactions, 2-CPU machine, fsync on): no capture 3,456 tps;
-- a bare pg_notify trigger 1,714 tps (NOTIFY's commit lock is the ceiling of any
-- notify-based design); this design 1,236 tps; "seq NULL then UPDATE at commit" 767 tps.
-- Since then the event JSON is built before the lock is taken, so the serialized section of
-- a one-row transaction is only nextval + INSERT + pg_notify (re-measuring it on the shared
-- build machine gave figures too noisy to rank; re-run the benchmark on quiet hardware).
--
-- Gaps in seq are possible and harmless: nextval is not transactional, so a transaction that
-- fails after its seq was drawn (e.g. a later deferred constraint) leaves a number unused.
-- "Gapless for readers" means no COMMITTED event is ever skipped, not contiguous numbers.
--
-- TRUNCATE is not captured (it has no rows); `SET CONSTRAINTS ALL IMMEDIATE` still yields
-- commit order (the lock is then held from the first capture to the commit).

-- ---------------------------------------------------------------------------------------
-- Configuration: one row per captured table.
-- ---------------------------------------------------------------------------------------
CREATE TABLE app.realtime_tables (
    table_name     regclass    NOT NULL,
    entity         text        NOT NULL,
    audience       text[]      NOT NULL,
    redact         text[]      NOT NULL DEFAULT '{}',
    tenant_column  text,
    enabled_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT realtime_tables_pkey PRIMARY KEY (table_name),
    CONSTRAINT realtime_tables_entity_check CHECK (entity ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT realtime_tables_audience_check CHECK (
        cardinality(audience) >= 1
        AND audience <@ ARRAY['platform_admin', 'tenant_admin', 'tenant_user']::text[])
);
COMMENT ON TABLE app.realtime_tables IS
    'Every table whose row changes become events (app.enable_realtime). entity names the event types '
    '(<entity>_created/_updated/_deleted), audience lists the roles that may receive them, redact the columns '
    'never copied into an event. Edit through app.enable_realtime / app.disable_realtime.';
COMMENT ON COLUMN app.realtime_tables.tenant_column IS
    'Column holding the tenant of a row (tenant_id; id for tenants). NULL: platform rows with no tenant, '
    'whose events only platform admins receive (on tenant:*).';

-- ---------------------------------------------------------------------------------------
-- The event log.
-- ---------------------------------------------------------------------------------------
CREATE SEQUENCE app.events_seq AS bigint;
COMMENT ON SEQUENCE app.events_seq IS 'Drawn only by app.emit_event under the rowcast advisory lock: commit order.';

CREATE TABLE app.events (
    seq         bigint      NOT NULL,
    tenant_id   uuid,
    type        text        NOT NULL,
    table_name  text        NOT NULL,
    op          text        NOT NULL,
    row_id      text,
    "row"       jsonb       NOT NULL,
    old         jsonb,
    audience    text[]      NOT NULL,
    actor       uuid,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_pkey PRIMARY KEY (seq),
    CONSTRAINT events_op_check CHECK (op IN ('INSERT', 'UPDATE', 'DELETE'))
);
CREATE INDEX events_tenant_id_seq_idx ON app.events (tenant_id, seq);
COMMENT ON TABLE app.events IS
    'Ordered, durable log of row changes (seq = commit order). Readers see an event only in its tenant context '
    '(or as platform admin) and only when their role is in audience. Pruned after ROWCAST_EVENT_RETENTION.';
COMMENT ON COLUMN app.events."row" IS 'New row (old row for deletes), redacted columns removed.';
COMMENT ON COLUMN app.events.old IS 'Updates only: previous values of the columns that changed (redacted columns removed).';
COMMENT ON COLUMN app.events.actor IS 'app.current_user_id() of the writing transaction; NULL for writes outside a request (psql, migrations).';
COMMENT ON COLUMN app.events.created_at IS 'Commit-time clock (the capture runs at commit): the base of the commit → frame lag.';

-- Highest seq removed by retention: a resume from an older cursor needs a resync.
CREATE TABLE app.events_watermark (
    singleton       boolean NOT NULL DEFAULT true,
    pruned_through  bigint  NOT NULL DEFAULT 0,
    CONSTRAINT events_watermark_pkey PRIMARY KEY (singleton),
    CONSTRAINT events_watermark_singleton_check CHECK (singleton)
);
INSERT INTO app.events_watermark DEFAULT VALUES;
COMMENT ON TABLE app.events_watermark IS 'pruned_through: every event with seq <= it may have been deleted by retention.';

ALTER TABLE app.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.events FORCE ROW LEVEL SECURITY;
ALTER TABLE app.realtime_tables ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.realtime_tables FORCE ROW LEVEL SECURITY;
ALTER TABLE app.events_watermark ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.events_watermark FORCE ROW LEVEL SECURITY;

CREATE POLICY events_read ON app.events FOR SELECT
    USING (
        (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[])
         OR (tenant_id IS NULL AND (SELECT app.is_platform_admin())))
        AND (SELECT app.current_user_role()) = ANY (audience)
    );
COMMENT ON POLICY events_read ON app.events IS
    'An event is visible in its tenant''s context (platform admins: every tenant in scope, and the tenant-less platform events) '
    'and only to the roles listed in its audience. No context => no events. Nobody writes through this table: the capture '
    'trigger (SECURITY DEFINER) does.';

CREATE POLICY realtime_tables_read ON app.realtime_tables FOR SELECT USING (true);
COMMENT ON POLICY realtime_tables_read ON app.realtime_tables IS 'The capture configuration is not secret: anyone granted SELECT may read it.';

GRANT SELECT ON app.events, app.realtime_tables TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Serialization shared by notifications, the relay and replays: one JSON shape everywhere.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.event_json(e app.events) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT jsonb_build_object(
        'seq', e.seq, 'tenant_id', e.tenant_id, 'type', e.type, 'table', e.table_name, 'op', e.op,
        'row_id', e.row_id, 'row', e."row", 'old', e.old, 'audience', e.audience, 'actor', e.actor,
        'created_at', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
$$;
COMMENT ON FUNCTION app.event_json(app.events) IS 'The JSON of an event as sent by pg_notify, the relay and replays (created_at in RFC 3339, UTC).';
GRANT EXECUTE ON FUNCTION app.event_json(app.events) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- emit_event: number, store and announce one event. Internal: only the capture trigger
-- (running as the owner) calls it.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.emit_event(
    p_tenant uuid, p_type text, p_table text, p_op text, p_row_id text,
    p_row jsonb, p_old jsonb, p_audience text[]
) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_at     timestamptz := clock_timestamp();
    v_actor  uuid := app.current_user_id();
    v_seq    bigint;
    v_body   text;
BEGIN
    -- Everything but the seq is built BEFORE taking the lock: the serialized section is
    -- only nextval + INSERT + pg_notify. Same keys as app.event_json, seq first.
    v_body := jsonb_build_object(
        'tenant_id', p_tenant, 'type', p_type, 'table', p_table, 'op', p_op, 'row_id', p_row_id,
        'row', p_row, 'old', p_old, 'audience', p_audience, 'actor', v_actor,
        'created_at', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text;

    -- Held until the end of the commit: seq order is commit order.
    PERFORM pg_advisory_xact_lock(1919907683, 1);
    v_seq := nextval('app.events_seq');
    INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
    VALUES (v_seq, p_tenant, p_type, p_table, p_op, p_row_id, p_row, p_old, p_audience, v_actor, v_at);

    -- NOTIFY payloads are limited to 8,000 bytes: over 7,900 (with the seq), a stub that the
    -- relay completes from app.events.
    IF octet_length(v_body) > 7850 THEN
        PERFORM pg_notify('rowcast_events',
            format('{"seq": %s, "tenant_id": %s, "big": true}', v_seq, coalesce(to_json(p_tenant)::text, 'null')));
    ELSE
        PERFORM pg_notify('rowcast_events', format('{"seq": %s, %s', v_seq, substr(v_body, 2)));
    END IF;
    RETURN v_seq;
END
$$;
COMMENT ON FUNCTION app.emit_event(uuid, text, text, text, text, jsonb, jsonb, text[]) IS
    'Internal to the capture trigger: takes the rowcast advisory lock, draws seq, inserts into app.events and '
    'pg_notify(''rowcast_events'', event JSON or {seq, tenant_id, big} stub over 7,900 bytes).';
REVOKE ALL ON FUNCTION app.emit_event(uuid, text, text, text, text, jsonb, jsonb, text[]) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- The capture trigger body.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.changed_columns(p_old jsonb, p_new jsonb, p_redact text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT coalesce(jsonb_object_agg(o.key, o.value), '{}'::jsonb)
      FROM jsonb_each(p_old) AS o
     WHERE (p_new -> o.key) IS DISTINCT FROM o.value
       AND NOT (o.key = ANY (p_redact))
$$;
COMMENT ON FUNCTION app.changed_columns(jsonb, jsonb, text[]) IS 'Previous values of the columns whose value changed, redacted columns excluded.';

CREATE FUNCTION app.rowcast_capture() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    cfg      app.realtime_tables;
    v_new    jsonb;
    v_old    jsonb;
    v_row    jsonb;
    v_diff   jsonb;
    v_kind   text;
    v_tenant uuid;
BEGIN
    SELECT * INTO cfg FROM app.realtime_tables t WHERE t.table_name = TG_RELID::regclass;
    IF NOT FOUND THEN
        RETURN NULL;  -- disabled between the change and the commit
    END IF;
    IF TG_OP <> 'INSERT' THEN v_old := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN v_new := to_jsonb(NEW); END IF;
    v_row := coalesce(v_new, v_old) - cfg.redact;
    IF cfg.tenant_column IS NOT NULL THEN
        v_tenant := (coalesce(v_new, v_old) ->> cfg.tenant_column)::uuid;
    END IF;

    v_kind := CASE TG_OP WHEN 'INSERT' THEN 'created' WHEN 'DELETE' THEN 'deleted' ELSE 'updated' END;
    IF TG_OP = 'UPDATE' THEN
        v_diff := app.changed_columns(v_old, v_new, cfg.redact);
        -- Soft delete: deleted_at goes from NULL to a value.
        IF v_new ? 'deleted_at' AND jsonb_typeof(v_old -> 'deleted_at') = 'null'
           AND jsonb_typeof(v_new -> 'deleted_at') <> 'null' THEN
            v_kind := 'deleted';
        END IF;
    END IF;

    PERFORM app.emit_event(v_tenant, cfg.entity || '_' || v_kind, TG_TABLE_NAME, TG_OP, v_row ->> 'id',
                           v_row, v_diff, cfg.audience);

    -- Extra events.
    IF cfg.entity = 'campaign' AND TG_OP = 'UPDATE' AND (v_old -> 'status') IS DISTINCT FROM (v_new -> 'status') THEN
        PERFORM app.emit_event(v_tenant, 'campaign_status_changed', TG_TABLE_NAME, TG_OP, v_row ->> 'id',
                               v_row || jsonb_build_object('previousStatus', v_old -> 'status'),
                               jsonb_build_object('status', v_old -> 'status'), cfg.audience);
    ELSIF cfg.entity = 'webhook_log' AND TG_OP = 'INSERT' THEN
        PERFORM app.emit_event(v_tenant, 'webhook_triggered', TG_TABLE_NAME, TG_OP, v_row ->> 'id',
                               v_row, NULL, cfg.audience);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.rowcast_capture() IS
    'Body of the rowcast_capture constraint triggers (deferred: runs at commit). One event per changed row: '
    '<entity>_created/_updated/_deleted (a soft delete, deleted_at NULL → value, is _deleted); plus '
    'campaign_status_changed (status, previousStatus) when a campaign''s status changes and webhook_triggered when a '
    'webhook_logs row is inserted. Redacted columns never reach the event.';
REVOKE ALL ON FUNCTION app.rowcast_capture() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- enable_realtime / disable_realtime: the only way tables are wired, in one place.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.enable_realtime(tbl regclass, entity text, audience text[], redact text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_tenant_col text;
    v_redact     text[];
    v_missing    text;
BEGIN
    SELECT min(c) INTO v_missing FROM unnest(redact) AS c
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = c AND a.attnum > 0 AND NOT a.attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'enable_realtime(%): redact column % does not exist', tbl, v_missing USING ERRCODE = '42703';
    END IF;
    -- Columns that look like credentials are always redacted, listed or not.
    SELECT array_agg(DISTINCT c ORDER BY c) INTO v_redact FROM (
        SELECT unnest(redact) AS c
        UNION
        SELECT a.attname::text FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname ~ '(secret|password|passwd|api_key|token_hash|private_key)'
    ) s;
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl AND a.attname = 'tenant_id' AND NOT a.attisdropped) THEN 'tenant_id'
        WHEN tbl = 'public.tenants'::regclass THEN 'id'
    END INTO v_tenant_col;

    INSERT INTO app.realtime_tables AS r (table_name, entity, audience, redact, tenant_column)
    VALUES (tbl, entity, audience, coalesce(v_redact, '{}'), v_tenant_col)
    ON CONFLICT (table_name) DO UPDATE
        SET entity = EXCLUDED.entity, audience = EXCLUDED.audience, redact = EXCLUDED.redact,
            tenant_column = EXCLUDED.tenant_column, enabled_at = now();

    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g WHERE g.tgrelid = tbl AND g.tgname = 'rowcast_capture') THEN
        EXECUTE format('DROP TRIGGER rowcast_capture ON %s', tbl);
    END IF;
    EXECUTE format('CREATE CONSTRAINT TRIGGER rowcast_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.rowcast_capture()', tbl);
    EXECUTE format('COMMENT ON TRIGGER rowcast_capture ON %s IS %L', tbl,
                   'Realtime capture (app.enable_realtime): at commit, one app.events row + pg_notify per changed row.');
END
$$;
COMMENT ON FUNCTION app.enable_realtime(regclass, text, text[], text[]) IS
    'Captures a table''s row changes as events: registers it in app.realtime_tables and (re)creates its deferred '
    'rowcast_capture trigger. audience: roles that may receive the events; redact: columns never copied (columns named '
    'like secret/password/api_key/token_hash/private_key are always added). Idempotent.';
REVOKE ALL ON FUNCTION app.enable_realtime(regclass, text, text[], text[]) FROM PUBLIC;

CREATE FUNCTION app.disable_realtime(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS rowcast_capture ON %s', tbl);
    DELETE FROM app.realtime_tables r WHERE r.table_name = tbl;
END
$$;
COMMENT ON FUNCTION app.disable_realtime(regclass) IS 'Stops capturing a table: drops rowcast_capture and its app.realtime_tables row.';
REVOKE ALL ON FUNCTION app.disable_realtime(regclass) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- The relay's narrow window on the whole log (the hub re-applies tenant and audience checks
-- per session). SECURITY DEFINER, executable by rowcast_app only.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.relay_events_since(p_after bigint, p_max integer) RETURNS SETOF jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT app.event_json(e) FROM app.events e
     WHERE e.seq > p_after
     ORDER BY e.seq
     LIMIT least(greatest(p_max, 1), 1000)
$$;
COMMENT ON FUNCTION app.relay_events_since(bigint, integer) IS
    'For the realtime relay only: up to p_max (≤ 1000) events after seq p_after, in seq order, across all tenants. '
    'Completes large-row stubs and fills the gap after a LISTEN reconnect.';
REVOKE ALL ON FUNCTION app.relay_events_since(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.relay_events_since(bigint, integer) TO rowcast_app;

CREATE FUNCTION app.relay_bounds(OUT head bigint, OUT pruned_through bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT coalesce((SELECT max(e.seq) FROM app.events e), w.pruned_through), w.pruned_through
      FROM app.events_watermark w
$$;
COMMENT ON FUNCTION app.relay_bounds() IS 'head: the highest committed seq; pruned_through: cursors below it need a resync.';
REVOKE ALL ON FUNCTION app.relay_bounds() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.relay_bounds() TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Retention: the server calls this in a loop until it returns less than p_batch.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.prune_events(p_older_than interval, p_batch integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_count integer;
    v_max   bigint;
BEGIN
    -- Walk the oldest p_batch events only (never the whole log), delete the expired ones.
    WITH head AS (
        SELECT e.seq, e.created_at FROM app.events e ORDER BY e.seq LIMIT greatest(p_batch, 1)
    ), gone AS (
        DELETE FROM app.events e USING head h
         WHERE e.seq = h.seq AND h.created_at < clock_timestamp() - p_older_than
        RETURNING e.seq
    )
    SELECT count(*), max(seq) INTO v_count, v_max FROM gone;
    IF v_max IS NOT NULL THEN
        UPDATE app.events_watermark SET pruned_through = greatest(pruned_through, v_max);
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION app.prune_events(interval, integer) IS
    'Retention: deletes up to p_batch of the oldest events older than p_older_than, advances the resync watermark, '
    'returns how many went.';
REVOKE ALL ON FUNCTION app.prune_events(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.prune_events(interval, integer) TO rowcast_app;

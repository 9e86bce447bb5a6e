-- V60: batched capture — no noisy neighbour at commit (SPEC §3.4, issue 14 item 5).
--
-- V10 captured with a deferred per-row trigger that, at COMMIT, ran a PL/pgSQL function per
-- changed row under the commit-order advisory lock: a 10,000-row transaction held that lock
-- (and NOTIFY's own commit lock) for ~1.4 s, and every other tenant's commit waited behind it.
--
-- Now the work is split in two, and only a short, set-based step is serialized:
--
--   1. STAGE (not serialized, at the end of each statement): three statement-level AFTER
--      triggers per captured table (rowcast_capture_insert / _update / _delete) read the
--      statement's transition tables and build all its events in ONE set-based query, as one
--      array of app.capture_event, stored as ONE row of app.capture_stage (an UNLOGGED table:
--      no WAL; only the owner can touch it). The row versions are those of the moment of the
--      change, as before; redaction, audience, soft delete, campaign_status_changed and
--      webhook_triggered are decided here.
--   2. FLUSH (at COMMIT): app.capture_stage carries a DEFERRABLE INITIALLY DEFERRED constraint
--      trigger, rowcast_flush. Its first firing in a transaction takes (DELETE … RETURNING)
--      every staged row of the transaction and unpacks the events into memory, in order;
--      THEN takes pg_advisory_xact_lock(1919907683, 1) (held until the commit is done, as
--      before), draws the whole seq range at once (nextval + setval: every drawer holds the
--      lock), writes the events to app.events in ONE INSERT … SELECT from memory, and sends
--      ONE notification for the transaction:
--        * one event that fits in 7,900 bytes  → the event JSON (unchanged shape);
--        * up to 64 events that fit together   → {"seq": last, "first": f, "events": [..]};
--        * otherwise                           → {"seq": last, "first": f, "tenant_id", "big": true}
--          which the relay completes from app.events (app.relay_events_since), like the V10
--          large-row stubs (same shape, plus "first").
--      Later firings (one per capturing statement) see the transaction already flushed
--      (a transaction-local watermark) and return at once.
--
-- Guarantees kept:
--   * seq order == commit order, gapless for readers: seq is drawn under the lock, which is
--     held through the commit; a transaction's events get consecutive seqs in the order they
--     were staged (statement order; within a statement, the order the rows were changed).
--   * created_at is one commit-time clock reading per transaction (taken before the lock).
--   * events of rolled-back statements or savepoints vanish with their staging rows.
--   * `SET CONSTRAINTS ALL IMMEDIATE`: the flush then runs at the end of each capturing
--     statement, takes the lock and keeps it to the commit (as V10 did).
-- One ordering detail differs from V10: inside ONE transaction, events follow the order in
-- which statements finished, so rows changed by a nested statement (an ON DELETE CASCADE, a
-- trigger) come before those of the statement that caused them; and an
-- INSERT … ON CONFLICT DO UPDATE lists its inserted rows before its updated rows. Across
-- transactions nothing changes: a transaction's events are one contiguous seq range.
--
-- (A first version staged into session-local temporary tables: ON COMMIT DELETE ROWS
-- truncates files at every commit, and one-row transactions were ~10x slower. An unlogged
-- table with one row per statement costs one heap insert and one delete per statement.)

CREATE TYPE app.capture_event AS (
    tenant_id   uuid,
    type        text,
    table_name  text,
    op          text,
    row_id      text,
    "row"       jsonb,
    old         jsonb,
    audience    text[],
    actor       uuid
);
COMMENT ON TYPE app.capture_event IS 'An event before it has a seq and a commit time (app.capture_stage).';

CREATE UNLOGGED TABLE app.capture_stage (
    tx      xid8                NOT NULL DEFAULT pg_current_xact_id(),
    stmt    integer             NOT NULL,
    events  app.capture_event[] NOT NULL
);
COMMENT ON TABLE app.capture_stage IS
    'Events staged by the capture triggers of a transaction still in progress: one row per capturing statement, '
    'taken and deleted by app.rowcast_flush at commit. Always empty outside an open transaction. Owner only.';
ALTER TABLE app.capture_stage ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.capture_stage FORCE ROW LEVEL SECURITY;
CREATE POLICY capture_stage_own_transaction ON app.capture_stage
    USING (tx = pg_current_xact_id()) WITH CHECK (tx = pg_current_xact_id());
CREATE INDEX capture_stage_tx_idx ON app.capture_stage (tx);
COMMENT ON POLICY capture_stage_own_transaction ON app.capture_stage IS
    'Even the owner only ever sees the staged events of its own transaction.';

-- ---------------------------------------------------------------------------------------
-- FLUSH: once per transaction, at commit. The only serialized section of the capture.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.rowcast_flush() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_events  app.capture_event[];
    v_last    integer;
    v_n       integer;
    v_tenants bigint;
    v_tenant  uuid;
    v_at      timestamptz;
    v_ts      text;
    v_bodies  text[];
    v_len     bigint;
    v_first   bigint;
    v_payload text;
    v_one     app.capture_event;
    v_body    text;
BEGIN
    IF NEW.stmt <= coalesce(nullif(current_setting('rowcast.capture_flushed', true), ''), '0')::integer THEN
        RETURN NULL;  -- already flushed with an earlier statement's row
    END IF;

    -- Everything but the seqs is done BEFORE the lock.
    IF NEW.stmt = 1 AND current_setting('rowcast.capture_stmt', true) = '1' THEN
        -- The usual case: one capturing statement, whose events are this very row.
        v_events := NEW.events;
        v_last := 1;
        DELETE FROM app.capture_stage s WHERE s.tx = pg_current_xact_id();
    ELSE
        WITH taken AS (
            DELETE FROM app.capture_stage s WHERE s.tx = pg_current_xact_id() RETURNING s.stmt, s.events
        )
        SELECT array_agg(ROW(u.tenant_id, u.type, u.table_name, u.op, u.row_id, u."row", u.old, u.audience, u.actor)::app.capture_event
                         ORDER BY t.stmt, u.i),
               max(t.stmt)
          INTO v_events, v_last
          FROM taken t CROSS JOIN LATERAL unnest(t.events) WITH ORDINALITY
               AS u(tenant_id, type, table_name, op, row_id, "row", old, audience, actor, i);
    END IF;
    v_n := coalesce(cardinality(v_events), 0);
    PERFORM set_config('rowcast.capture_flushed',
                       greatest(v_last, current_setting('rowcast.capture_stmt', true)::integer)::text, true);
    IF v_n = 0 THEN
        RETURN NULL;
    END IF;

    v_at := clock_timestamp();
    v_ts := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    IF v_n = 1 THEN
        -- One event: plain expressions and a one-row INSERT, nothing to plan or unnest.
        v_one := v_events[1];
        v_body := jsonb_build_object(
            'tenant_id', v_one.tenant_id, 'type', v_one.type, 'table', v_one.table_name, 'op', v_one.op,
            'row_id', v_one.row_id, 'row', v_one."row", 'old', v_one.old, 'audience', v_one.audience,
            'actor', v_one.actor, 'created_at', v_ts)::text;
        PERFORM pg_advisory_xact_lock(1919907683, 1);  -- held until the end of the commit
        v_first := nextval('app.events_seq');
        INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
        VALUES (v_first, v_one.tenant_id, v_one.type, v_one.table_name, v_one.op, v_one.row_id, v_one."row", v_one.old,
                v_one.audience, v_one.actor, v_at);
        IF octet_length(v_body) <= 7850 THEN
            PERFORM pg_notify('rowcast_events', format('{"seq": %s, %s', v_first, substr(v_body, 2)));
        ELSE
            PERFORM pg_notify('rowcast_events', format('{"seq": %s, "first": %s, "tenant_id": %s, "big": true}', v_first,
                                                       v_first, coalesce(to_json(v_one.tenant_id)::text, 'null')));
        END IF;
        RETURN NULL;
    END IF;

    IF v_n <= 64 THEN
        -- Same keys as app.event_json; the seq is prefixed under the lock.
        SELECT array_agg(jsonb_build_object(
                   'tenant_id', e.tenant_id, 'type', e.type, 'table', e.table_name, 'op', e.op,
                   'row_id', e.row_id, 'row', e."row", 'old', e.old, 'audience', e.audience,
                   'actor', e.actor, 'created_at', v_ts)::text ORDER BY e.i),
               count(DISTINCT coalesce(e.tenant_id::text, '')), min(e.tenant_id::text)::uuid
          INTO v_bodies, v_tenants, v_tenant
          FROM unnest(v_events) WITH ORDINALITY AS e(tenant_id, type, table_name, op, row_id, "row", old, audience, actor, i);
        SELECT sum(octet_length(b) + 24) INTO v_len FROM unnest(v_bodies) AS b;
    ELSE
        SELECT count(DISTINCT coalesce(e.tenant_id::text, '')), min(e.tenant_id::text)::uuid
          INTO v_tenants, v_tenant FROM unnest(v_events) AS e;
    END IF;

    -- Held until the end of the commit: seq order is commit order.
    PERFORM pg_advisory_xact_lock(1919907683, 1);
    v_first := nextval('app.events_seq');
    PERFORM setval('app.events_seq', v_first + v_n - 1);
    INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
    SELECT v_first + e.i - 1, e.tenant_id, e.type, e.table_name, e.op, e.row_id, e."row", e.old, e.audience, e.actor, v_at
      FROM unnest(v_events) WITH ORDINALITY AS e(tenant_id, type, table_name, op, row_id, "row", old, audience, actor, i);

    -- NOTIFY payloads are limited to 8,000 bytes: one notification per transaction.
    IF v_len <= 7850 THEN
        SELECT format('{"seq": %s, "first": %s, "events": [%s]}', v_first + v_n - 1, v_first,
                      string_agg(format('{"seq": %s, %s', v_first - 1 + b.i, substr(b.body, 2)), ', ' ORDER BY b.i))
          INTO v_payload
          FROM unnest(v_bodies) WITH ORDINALITY AS b(body, i);
    ELSE
        v_payload := format('{"seq": %s, "first": %s, "tenant_id": %s, "big": true}', v_first + v_n - 1, v_first,
                            CASE WHEN v_tenants = 1 AND v_tenant IS NOT NULL
                                 THEN to_json(v_tenant)::text ELSE 'null' END);
    END IF;
    PERFORM pg_notify('rowcast_events', v_payload);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.rowcast_flush() IS
    'Deferred (commit-time) half of the capture, once per transaction: takes the transaction''s staged events, then '
    'the rowcast advisory lock, draws the transaction''s seq range, writes the events to app.events in one statement '
    'and sends one pg_notify(''rowcast_events''): the event, a batch {seq, first, events} under 7,900 bytes, or a '
    '{seq, first, tenant_id, big} range stub that the relay reads back.';
REVOKE ALL ON FUNCTION app.rowcast_flush() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER rowcast_flush AFTER INSERT ON app.capture_stage
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.rowcast_flush();
COMMENT ON TRIGGER rowcast_flush ON app.capture_stage IS
    'At commit: numbers, stores and announces the transaction''s staged events (app.rowcast_flush).';

-- ---------------------------------------------------------------------------------------
-- STAGE: at the end of every capturing statement, set-based, not serialized.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.rowcast_capture_stage() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    cfg      app.realtime_tables;
    v_actor  uuid := app.current_user_id();
    v_stmt   integer;
    v_events app.capture_event[];
BEGIN
    SELECT * INTO cfg FROM app.realtime_tables t WHERE t.table_name = TG_RELID::regclass;
    IF NOT FOUND THEN
        RETURN NULL;  -- not (or no longer) captured
    END IF;

    IF TG_OP = 'INSERT' AND cfg.entity <> 'webhook_log' THEN
        -- array_agg without ORDER BY keeps the transition table's order: the order of the changes.
        SELECT array_agg(ROW(CASE WHEN cfg.tenant_column IS NOT NULL THEN (n.j ->> cfg.tenant_column)::uuid END,
                             cfg.entity || '_created', TG_TABLE_NAME, 'INSERT', n.r ->> 'id', n.r, NULL, cfg.audience,
                             v_actor)::app.capture_event)
          INTO v_events
          FROM (SELECT x.j, x.j - cfg.redact AS r FROM (SELECT to_jsonb(t) AS j FROM rowcast_new t) x) n;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT array_agg(ROW(CASE WHEN cfg.tenant_column IS NOT NULL THEN (c.j ->> cfg.tenant_column)::uuid END,
                             e.type, TG_TABLE_NAME, 'INSERT', c.r ->> 'id', e.r, e.old, cfg.audience, v_actor)::app.capture_event
                         ORDER BY c.rn, e.k)
          INTO v_events
          FROM (SELECT row_number() OVER () AS rn, x.j, x.j - cfg.redact AS r
                  FROM (SELECT to_jsonb(n) AS j FROM rowcast_new n) x) c
         CROSS JOIN LATERAL (
                SELECT 1 AS k, cfg.entity || '_created' AS type, c.r, NULL::jsonb AS old
                UNION ALL
                SELECT 2, 'webhook_triggered', c.r, NULL::jsonb WHERE cfg.entity = 'webhook_log'
         ) e;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(ROW(CASE WHEN cfg.tenant_column IS NOT NULL THEN (c.j ->> cfg.tenant_column)::uuid END,
                             e.type, TG_TABLE_NAME, 'UPDATE', c.r ->> 'id', e.r, e.old, cfg.audience, v_actor)::app.capture_event
                         ORDER BY c.rn, e.k)
          INTO v_events
          FROM (SELECT o.rn, nw.j, o.j AS oj, nw.j - cfg.redact AS r
                  FROM (SELECT row_number() OVER () AS rn, to_jsonb(t) AS j FROM rowcast_old t) o
                  JOIN (SELECT row_number() OVER () AS rn, to_jsonb(t) AS j FROM rowcast_new t) nw USING (rn)) c
         CROSS JOIN LATERAL (
                SELECT 1 AS k,
                       cfg.entity || CASE WHEN c.j ? 'deleted_at' AND jsonb_typeof(c.oj -> 'deleted_at') = 'null'
                                               AND jsonb_typeof(c.j -> 'deleted_at') <> 'null'
                                          THEN '_deleted' ELSE '_updated' END AS type,
                       c.r, app.changed_columns(c.oj, c.j, cfg.redact) AS old
                UNION ALL
                SELECT 2, 'campaign_status_changed', c.r || jsonb_build_object('previousStatus', c.oj -> 'status'),
                       jsonb_build_object('status', c.oj -> 'status')
                 WHERE cfg.entity = 'campaign' AND (c.oj -> 'status') IS DISTINCT FROM (c.j -> 'status')
         ) e;
    ELSE
        SELECT array_agg(ROW(CASE WHEN cfg.tenant_column IS NOT NULL THEN (c.j ->> cfg.tenant_column)::uuid END,
                             cfg.entity || '_deleted', TG_TABLE_NAME, 'DELETE', c.r ->> 'id', c.r, NULL, cfg.audience,
                             v_actor)::app.capture_event)
          INTO v_events
          FROM (SELECT x.j, x.j - cfg.redact AS r FROM (SELECT to_jsonb(t) AS j FROM rowcast_old t) x) c;
    END IF;
    IF v_events IS NULL THEN
        RETURN NULL;  -- the statement changed no row
    END IF;

    -- One staging row per statement; its deferred rowcast_flush trigger runs at commit.
    v_stmt := coalesce(nullif(current_setting('rowcast.capture_stmt', true), ''), '0')::integer + 1;
    PERFORM set_config('rowcast.capture_stmt', v_stmt::text, true);
    INSERT INTO app.capture_stage (stmt, events) VALUES (v_stmt, v_events);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.rowcast_capture_stage() IS
    'Body of the rowcast_capture_insert/_update/_delete statement triggers: builds the statement''s events from its '
    'transition tables in one set-based query and stages them as one app.capture_stage row (not serialized); '
    'app.rowcast_flush numbers and stores them at commit. One event per changed row: <entity>_created/_updated/_deleted '
    '(a soft delete, deleted_at NULL → value, is _deleted); plus campaign_status_changed (status, previousStatus) when '
    'a campaign''s status changes and webhook_triggered when a webhook_logs row is inserted. Redacted columns never '
    'reach the event.';
REVOKE ALL ON FUNCTION app.rowcast_capture_stage() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- enable_realtime / disable_realtime: same contract, new triggers.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.enable_realtime(tbl regclass, entity text, audience text[], redact text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_tenant_col text;
    v_redact     text[];
    v_missing    text;
    v_op         text;
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

    -- Drop V10's per-row trigger and any previous version of ours (without NOTICEs).
    FOR v_op IN SELECT g.tgname FROM pg_catalog.pg_trigger g
                 WHERE g.tgrelid = tbl AND g.tgname IN ('rowcast_capture', 'rowcast_capture_insert',
                                                        'rowcast_capture_update', 'rowcast_capture_delete') LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', v_op, tbl);
    END LOOP;
    FOREACH v_op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
        EXECUTE format('CREATE TRIGGER rowcast_capture_%s AFTER %s ON %s REFERENCING %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION app.rowcast_capture_stage()',
                       v_op, upper(v_op), tbl,
                       CASE v_op WHEN 'insert' THEN 'NEW TABLE AS rowcast_new'
                                 WHEN 'update' THEN 'OLD TABLE AS rowcast_old NEW TABLE AS rowcast_new'
                                 ELSE 'OLD TABLE AS rowcast_old' END);
        EXECUTE format('COMMENT ON TRIGGER rowcast_capture_%s ON %s IS %L', v_op, tbl,
                       'Realtime capture (app.enable_realtime): stages this statement''s events; at commit '
                       'app.rowcast_flush numbers them, writes them to app.events and sends one pg_notify.');
    END LOOP;
END
$$;
COMMENT ON FUNCTION app.enable_realtime(regclass, text, text[], text[]) IS
    'Captures a table''s row changes as events: registers it in app.realtime_tables and (re)creates its '
    'rowcast_capture_insert/_update/_delete statement triggers. audience: roles that may receive the events; redact: '
    'columns never copied (columns named like secret/password/api_key/token_hash/private_key are always added). Idempotent.';
REVOKE ALL ON FUNCTION app.enable_realtime(regclass, text, text[], text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION app.disable_realtime(tbl regclass) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS rowcast_capture ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS rowcast_capture_insert ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS rowcast_capture_update ON %s', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS rowcast_capture_delete ON %s', tbl);
    DELETE FROM app.realtime_tables r WHERE r.table_name = tbl;
END
$$;
COMMENT ON FUNCTION app.disable_realtime(regclass) IS 'Stops capturing a table: drops its rowcast_capture_* triggers and its app.realtime_tables row.';
REVOKE ALL ON FUNCTION app.disable_realtime(regclass) FROM PUBLIC;

-- Every table captured so far (V11 and any later migration) moves to the new triggers.
SELECT app.enable_realtime(r.table_name, r.entity, r.audience, r.redact) FROM app.realtime_tables r;

-- V10's per-row path is no longer used by any trigger.
DROP FUNCTION app.rowcast_capture();
DROP FUNCTION app.emit_event(uuid, text, text, text, text, jsonb, jsonb, text[]);
COMMENT ON SEQUENCE app.events_seq IS 'Drawn only by app.rowcast_flush under the rowcast advisory lock: commit order.';

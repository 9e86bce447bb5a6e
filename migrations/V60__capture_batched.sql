-- V60: batched capture — no noisy neighbour at commit (SPEC §3.4, issue 14 item 5).
--
-- V10 captured with a deferred per-row trigger that, at COMMIT, ran a PL/pgSQL function per
-- changed row under the commit-order advisory lock: a 10,000-row transaction held that lock
-- (and NOTIFY's own commit lock) for ~1 s, and every other tenant's commit waited behind it.
--
-- Now the work is split in two, and only a short, set-based step is serialized:
--
--   1. STAGE (not serialized, runs at the end of each statement): three statement-level
--      AFTER triggers per captured table (rowcast_capture_insert / _update / _delete) read
--      the statement's transition tables and build every event row in ONE set-based INSERT
--      into a session-local staging table (pg_temp.rowcast_capture_stage: no WAL, no shared
--      buffers, emptied at every commit by ON COMMIT DELETE ROWS). The row versions are the
--      ones of the moment of the change, as before; redaction, audience, soft delete,
--      campaign_status_changed and webhook_triggered are decided here.
--      The first staging of a transaction also inserts one row into
--      pg_temp.rowcast_capture_pending, whose DEFERRABLE INITIALLY DEFERRED constraint
--      trigger (rowcast_flush) is therefore queued exactly once per transaction.
--
--   2. FLUSH (at COMMIT, once per transaction): app.rowcast_flush() counts the staged
--      events and, for small transactions, pre-builds the notification bodies; THEN takes
--      pg_advisory_xact_lock(1919907683, 1) (held until the commit is done, as before),
--      draws the whole seq range at once (nextval + setval: every drawer holds the lock),
--      copies the staged rows into app.events in ONE INSERT … SELECT, and sends ONE
--      notification for the transaction:
--        * one event that fits in 7,900 bytes  → the event JSON (unchanged shape);
--        * up to 64 events that fit together   → {"seq": last, "first": f, "events": [..]};
--        * otherwise                           → {"seq": last, "first": f, "tenant_id", "big": true}
--          which the relay completes from app.events (app.relay_events_since), as for
--          the V10 large-row stubs (same shape, plus "first").
--
-- Guarantees kept:
--   * seq order == commit order, gapless for readers: seq is drawn under the lock, which is
--     held through the commit; a transaction's events get consecutive seqs in the order they
--     were staged (statement order; within a statement, the order the rows were changed).
--   * created_at is one commit-time clock reading per transaction (taken before the lock).
--   * events of rolled-back statements/savepoints vanish with their staging rows.
--   * `SET CONSTRAINTS ALL IMMEDIATE`: the flush then runs at the end of each capturing
--     statement, takes the lock and keeps it to the commit (as V10 did); a flushed-through
--     watermark (transaction-local setting) prevents flushing a staged row twice.
-- One ordering detail differs from V10: inside ONE transaction, events follow the order in
-- which statements finished, so rows changed by a nested statement (an ON DELETE CASCADE, a
-- trigger) come before those of the statement that caused them; and an
-- INSERT … ON CONFLICT DO UPDATE lists its inserted rows before its updated rows. Across
-- transactions nothing changes: a transaction's events are one contiguous seq range.
--
-- The staging tables are created per session on first use (app.capture_prepare). rowcast_app
-- has no TEMPORARY privilege on the database (`rowcast migrate` revokes it from PUBLIC), so
-- no client role can pre-create a look-alike pg_temp table; the owner (who runs the SECURITY
-- DEFINER triggers) is granted TEMPORARY explicitly below.

DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
END
$$;

-- ---------------------------------------------------------------------------------------
-- Session-local staging.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.capture_prepare() RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
BEGIN
    IF to_regclass('pg_temp.rowcast_capture_pending') IS NOT NULL THEN
        RETURN;
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS rowcast_capture_stage (
        ord         bigint GENERATED ALWAYS AS IDENTITY,
        tenant_id   uuid,
        type        text   NOT NULL,
        table_name  text   NOT NULL,
        op          text   NOT NULL,
        row_id      text,
        "row"       jsonb  NOT NULL,
        old         jsonb,
        audience    text[] NOT NULL,
        actor       uuid
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE rowcast_capture_pending (armed boolean NOT NULL) ON COMMIT DELETE ROWS;
    CREATE CONSTRAINT TRIGGER rowcast_flush AFTER INSERT ON pg_temp.rowcast_capture_pending
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION app.rowcast_flush();
END
$$;
COMMENT ON FUNCTION app.capture_prepare() IS
    'Internal to the capture: creates this session''s staging tables (pg_temp.rowcast_capture_stage, '
    'pg_temp.rowcast_capture_pending and its deferred rowcast_flush trigger) on first use.';
REVOKE ALL ON FUNCTION app.capture_prepare() FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- FLUSH: once per transaction, at commit. The only serialized section of the capture.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.rowcast_flush() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_done    bigint := coalesce(nullif(current_setting('rowcast.capture_flushed', true), ''), '0')::bigint;
    v_n       bigint;
    v_from    bigint;
    v_to      bigint;
    v_tenants bigint;
    v_tenant  uuid;
    v_at      timestamptz;
    v_ts      text;
    v_bodies  text[];
    v_len     bigint;
    v_first   bigint;
    v_payload text;
BEGIN
    PERFORM set_config('rowcast.capture_armed', '', true);
    SELECT count(*), min(s.ord), max(s.ord), count(DISTINCT coalesce(s.tenant_id::text, '')), min(s.tenant_id::text)::uuid
      INTO v_n, v_from, v_to, v_tenants, v_tenant
      FROM pg_temp.rowcast_capture_stage s WHERE s.ord > v_done;
    IF v_n = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('rowcast.capture_flushed', v_to::text, true);

    -- Everything but the seqs is built BEFORE the lock. Same keys as app.event_json.
    v_at := clock_timestamp();
    v_ts := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
    IF v_n <= 64 THEN
        SELECT array_agg(jsonb_build_object(
                   'tenant_id', s.tenant_id, 'type', s.type, 'table', s.table_name, 'op', s.op,
                   'row_id', s.row_id, 'row', s."row", 'old', s.old, 'audience', s.audience,
                   'actor', s.actor, 'created_at', v_ts)::text ORDER BY s.ord)
          INTO v_bodies
          FROM pg_temp.rowcast_capture_stage s WHERE s.ord > v_done AND s.ord <= v_to;
        SELECT sum(octet_length(b) + 24) INTO v_len FROM unnest(v_bodies) AS b;
    END IF;

    -- Held until the end of the commit: seq order is commit order.
    PERFORM pg_advisory_xact_lock(1919907683, 1);
    v_first := nextval('app.events_seq');
    IF v_n > 1 THEN
        PERFORM setval('app.events_seq', v_first + v_n - 1);
    END IF;
    IF v_to - v_from + 1 = v_n THEN
        -- The usual case: the staged ords are contiguous, so seq = first + (ord - from): no sort.
        INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
        SELECT v_first + (s.ord - v_from), s.tenant_id, s.type, s.table_name, s.op, s.row_id,
               s."row", s.old, s.audience, s.actor, v_at
          FROM pg_temp.rowcast_capture_stage s WHERE s.ord > v_done AND s.ord <= v_to;
    ELSE
        -- Holes (a rolled-back savepoint): number the survivors in ord order.
        INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
        SELECT v_first - 1 + row_number() OVER (ORDER BY s.ord), s.tenant_id, s.type, s.table_name, s.op, s.row_id,
               s."row", s.old, s.audience, s.actor, v_at
          FROM pg_temp.rowcast_capture_stage s WHERE s.ord > v_done AND s.ord <= v_to;
    END IF;

    -- NOTIFY payloads are limited to 8,000 bytes: one notification per transaction.
    IF v_n = 1 AND v_len <= 7850 THEN
        v_payload := format('{"seq": %s, %s', v_first, substr(v_bodies[1], 2));
    ELSIF v_n > 1 AND v_len <= 7850 THEN
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
    'Deferred (commit-time) half of the capture, once per transaction: takes the rowcast advisory lock, draws the '
    'transaction''s seq range, copies the staged events into app.events in one statement and sends one '
    'pg_notify(''rowcast_events''): the event, a batch {seq, first, events} under 7,900 bytes, or a '
    '{seq, first, tenant_id, big} range stub that the relay reads back.';
REVOKE ALL ON FUNCTION app.rowcast_flush() FROM PUBLIC;

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
    v_count  bigint;
BEGIN
    SELECT * INTO cfg FROM app.realtime_tables t WHERE t.table_name = TG_RELID::regclass;
    IF NOT FOUND THEN
        RETURN NULL;  -- not (or no longer) captured
    END IF;
    PERFORM app.capture_prepare();

    IF TG_OP = 'INSERT' THEN
        INSERT INTO pg_temp.rowcast_capture_stage (tenant_id, type, table_name, op, row_id, "row", old, audience, actor)
        SELECT CASE WHEN cfg.tenant_column IS NOT NULL THEN (c.j ->> cfg.tenant_column)::uuid END,
               e.type, TG_TABLE_NAME, 'INSERT', c.r ->> 'id', e.r, e.old, cfg.audience, v_actor
          FROM (SELECT row_number() OVER () AS rn, x.j, x.j - cfg.redact AS r
                  FROM (SELECT to_jsonb(n) AS j FROM rowcast_new n) x) c
         CROSS JOIN LATERAL (
                SELECT 1 AS k, cfg.entity || '_created' AS type, c.r, NULL::jsonb AS old
                UNION ALL
                SELECT 2, 'webhook_triggered', c.r, NULL::jsonb WHERE cfg.entity = 'webhook_log'
         ) e
         ORDER BY c.rn, e.k;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO pg_temp.rowcast_capture_stage (tenant_id, type, table_name, op, row_id, "row", old, audience, actor)
        SELECT CASE WHEN cfg.tenant_column IS NOT NULL THEN (c.j ->> cfg.tenant_column)::uuid END,
               e.type, TG_TABLE_NAME, 'UPDATE', c.r ->> 'id', e.r, e.old, cfg.audience, v_actor
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
         ) e
         ORDER BY c.rn, e.k;
    ELSE
        INSERT INTO pg_temp.rowcast_capture_stage (tenant_id, type, table_name, op, row_id, "row", old, audience, actor)
        SELECT CASE WHEN cfg.tenant_column IS NOT NULL THEN (c.j ->> cfg.tenant_column)::uuid END,
               cfg.entity || '_deleted', TG_TABLE_NAME, 'DELETE', c.r ->> 'id', c.r, NULL, cfg.audience, v_actor
          FROM (SELECT row_number() OVER () AS rn, x.j, x.j - cfg.redact AS r
                  FROM (SELECT to_jsonb(o) AS j FROM rowcast_old o) x) c
         ORDER BY c.rn;
    END IF;
    GET DIAGNOSTICS v_count = ROW_COUNT;

    -- Queue the commit-time flush once per transaction.
    IF v_count > 0 AND current_setting('rowcast.capture_armed', true) IS DISTINCT FROM '1' THEN
        PERFORM set_config('rowcast.capture_armed', '1', true);
        INSERT INTO pg_temp.rowcast_capture_pending (armed) VALUES (true);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.rowcast_capture_stage() IS
    'Body of the rowcast_capture_insert/_update/_delete statement triggers: builds the statement''s events from its '
    'transition tables in one set-based INSERT into the session''s staging table (not serialized) and queues the '
    'commit-time flush. One event per changed row: <entity>_created/_updated/_deleted (a soft delete, deleted_at '
    'NULL → value, is _deleted); plus campaign_status_changed (status, previousStatus) when a campaign''s status '
    'changes and webhook_triggered when a webhook_logs row is inserted. Redacted columns never reach the event.';
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

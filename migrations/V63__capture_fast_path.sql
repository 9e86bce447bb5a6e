-- V63: cheaper capture per transaction (issue 13 item 2) — same contract as V60/V61.
--
-- V60 (statement-level stage + commit-time flush) fixed the noisy neighbour but made a
-- one-row write cost much more than a bare pg_notify trigger. Measured with callgrind on a
-- single-user backend (instructions per one-row INSERT transaction, deterministic, unlike
-- CPU time on this shared machine): plain INSERT 394k, + bare pg_notify trigger 437k,
-- V60 capture 1,076k. Where V60's ~640k over the bare notify went, by ablation:
--   * PostgreSQL re-initializes every PL/pgSQL expression and executor plan in each new
--     transaction (function lookups, expression compilation, ExecInitNode): per transaction,
--     every statement and expression a trigger runs costs far more than its work. A
--     jsonb_build_object of the event cost ~150k, a concat of its parts ~90k, a staging
--     INSERT or DELETE ~30k each, the app.events INSERT ~90k (~35k of it its CHECK, which
--     PostgreSQL re-parses at every statement);
--   * to_jsonb(row) was evaluated twice per row (a flattened subquery referenced it twice):
--     ~50k per row, also in 1,000-row statements;
--   * the realtime_tables lookup, app.stage_events' nested call and PERFORMs were separate
--     SPI statements.
--   (SECURITY DEFINER + SET search_path = '' measured ~12k for both triggers: kept.)
--
-- What changes (same events, same notifications, same order — a V60/V63 differential run of
-- inserts, multi-row and multi-statement transactions, savepoints, SET CONSTRAINTS ALL
-- IMMEDIATE, webhook_log, campaign status, soft delete, usages, redaction and large rows
-- gave identical app.events rows and notifications):
--   * STAGE: one SQL statement per capturing statement — the realtime_tables lookup, the
--     events and the staging row in one INSERT … SELECT; an INSERT into any entity but
--     webhook_log (the usual case) takes a plan without window, sort or lateral union;
--     OFFSET 0 keeps to_jsonb(row) and the redaction computed once per row; set_config as
--     an expression, app.stage_events inlined.
--   * FLUSH, one statement staged (the usual case): its events are NEW.events (no
--     re-aggregation, also for 1,000-row statements). One event: the notification text is
--     concatenated from the event's parts (jsonb's key order and spacing: the text V60 sent)
--     instead of jsonb_build_object(...)::text; one expression takes the lock and draws the
--     seq (CASE evaluates its condition first); one-row INSERT … VALUES into app.events.
--   * the multi-event flush (batches, range stubs) is V60's, with expressions for
--     set_config / setval / the lock.
-- Unchanged: seq drawn under pg_advisory_xact_lock(1919907683, 1) held to the end of the
-- commit (seq order = commit order, gapless per transaction range), one notification per
-- transaction (event / batch {seq, first, events} / range stub under 8,000 bytes), event
-- shapes, redaction, audience, actor, created_at (one clock reading per transaction, before
-- the lock), soft delete as _deleted, campaign_status_changed, webhook_triggered, V41's
-- metered-usages filter, usage_limit_reached through app.stage_events, app.capture_stage and
-- its index, every CHECK.
-- Result (same measure): one-row transaction 1,076k → 931k instructions (capture's own
-- share 682k → 537k, −21%); a 1,000-row INSERT 262k → 198k per row (capture's share −35%).

-- ---------------------------------------------------------------------------------------
-- STAGE
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.stage_events(p_events app.capture_event[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_stmt integer;
BEGIN
    IF coalesce(cardinality(p_events), 0) = 0 THEN
        RETURN;
    END IF;
    -- One staging row per statement; its deferred rowcast_flush trigger runs at commit (also
    -- when this is called from another deferred trigger: PostgreSQL fires the deferred
    -- triggers queued while firing deferred triggers before the commit completes).
    v_stmt := coalesce(nullif(current_setting('rowcast.capture_stmt', true), ''), '0')::integer + 1;
    IF set_config('rowcast.capture_stmt', v_stmt::text, true) IS NOT NULL THEN
        INSERT INTO app.capture_stage (stmt, events) VALUES (v_stmt, p_events);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION app.rowcast_capture_stage() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_prev text := current_setting('rowcast.capture_stmt', true);
    v_stmt integer := coalesce(nullif(v_prev, ''), '0')::integer + 1;
    v_rows bigint := 0;
    v_set  text;
BEGIN
    -- The statement number is set first: with SET CONSTRAINTS ALL IMMEDIATE the flush runs
    -- as soon as the staging INSERT ends, and reads it.
    v_set := set_config('rowcast.capture_stmt', v_stmt::text, true);
    -- ONE statement per capturing statement: the table's configuration (app.realtime_tables;
    -- no row: not, or no longer, captured), its transition table, the events (in the order
    -- of the changes: row_number() over the transition table) and the staging row.
    IF TG_OP = 'INSERT' THEN
        -- The usual case, any entity but webhook_log: no window, no sort, no lateral union.
        -- (OFFSET 0 keeps each jsonb computed once per row: to_jsonb(row), then the redaction.)
        INSERT INTO app.capture_stage (stmt, events)
        SELECT v_stmt,
               array_agg(ROW(CASE WHEN x.tenant_column IS NOT NULL THEN (x.j ->> x.tenant_column)::uuid END,
                             x.entity || '_created', TG_TABLE_NAME, 'INSERT', x.r ->> 'id', x.r, NULL, x.audience,
                             app.current_user_id())::app.capture_event)
          FROM (SELECT n.j, n.j - cfg.redact AS r, cfg.entity, cfg.tenant_column, cfg.audience
                  FROM app.realtime_tables cfg
                  CROSS JOIN (SELECT to_jsonb(t) AS j FROM rowcast_new t OFFSET 0) n
                 WHERE cfg.table_name = TG_RELID::regclass AND cfg.entity <> 'webhook_log'
                   AND (cfg.entity <> 'usage' OR NOT app.is_metered_metric(n.j ->> 'metric'))
                OFFSET 0) x
        HAVING count(*) > 0;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
    END IF;
    IF v_rows > 0 THEN
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        -- webhook_logs rows also give webhook_triggered, right after their _created.
        INSERT INTO app.capture_stage (stmt, events)
        SELECT v_stmt,
               array_agg(ROW(CASE WHEN c.tenant_column IS NOT NULL THEN (c.j ->> c.tenant_column)::uuid END,
                             e.type, TG_TABLE_NAME, 'INSERT', c.r ->> 'id', c.r, NULL, c.audience,
                             app.current_user_id())::app.capture_event
                         ORDER BY c.rn, e.k)
          FROM (SELECT x.rn, x.j, x.j - cfg.redact AS r, cfg.entity, cfg.tenant_column, cfg.audience
                  FROM app.realtime_tables cfg
                  CROSS JOIN (SELECT row_number() OVER () AS rn, to_jsonb(n) AS j FROM rowcast_new n) x
                 WHERE cfg.table_name = TG_RELID::regclass
                   AND (cfg.entity <> 'usage' OR NOT app.is_metered_metric(x.j ->> 'metric'))
                OFFSET 0) c
         CROSS JOIN LATERAL (
                SELECT 1 AS k, c.entity || '_created' AS type
                UNION ALL
                SELECT 2, 'webhook_triggered' WHERE c.entity = 'webhook_log'
         ) e
        HAVING count(*) > 0;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO app.capture_stage (stmt, events)
        SELECT v_stmt,
               array_agg(ROW(CASE WHEN c.tenant_column IS NOT NULL THEN (c.j ->> c.tenant_column)::uuid END,
                             e.type, TG_TABLE_NAME, 'UPDATE', c.r ->> 'id', e.r, e.old, c.audience,
                             app.current_user_id())::app.capture_event
                         ORDER BY c.rn, e.k)
          FROM (SELECT o.rn, nw.j, o.j AS oj, nw.j - cfg.redact AS r, cfg.entity, cfg.tenant_column, cfg.audience,
                       cfg.redact
                  FROM app.realtime_tables cfg
                  CROSS JOIN (SELECT row_number() OVER () AS rn, to_jsonb(t) AS j FROM rowcast_old t) o
                  JOIN (SELECT row_number() OVER () AS rn, to_jsonb(t) AS j FROM rowcast_new t) nw USING (rn)
                 WHERE cfg.table_name = TG_RELID::regclass
                   AND (cfg.entity <> 'usage' OR NOT app.is_metered_metric(nw.j ->> 'metric')
                        OR NOT app.is_metered_metric(o.j ->> 'metric'))
                OFFSET 0) c
         CROSS JOIN LATERAL (
                SELECT 1 AS k,
                       c.entity || CASE WHEN c.j ? 'deleted_at' AND jsonb_typeof(c.oj -> 'deleted_at') = 'null'
                                             AND jsonb_typeof(c.j -> 'deleted_at') <> 'null'
                                        THEN '_deleted' ELSE '_updated' END AS type,
                       c.r, app.changed_columns(c.oj, c.j, c.redact) AS old
                UNION ALL
                SELECT 2, 'campaign_status_changed', c.r || jsonb_build_object('previousStatus', c.oj -> 'status'),
                       jsonb_build_object('status', c.oj -> 'status')
                 WHERE c.entity = 'campaign' AND (c.oj -> 'status') IS DISTINCT FROM (c.j -> 'status')
         ) e
        HAVING count(*) > 0;
    ELSE
        INSERT INTO app.capture_stage (stmt, events)
        SELECT v_stmt,
               array_agg(ROW(CASE WHEN x.tenant_column IS NOT NULL THEN (x.j ->> x.tenant_column)::uuid END,
                             x.entity || '_deleted', TG_TABLE_NAME, 'DELETE', x.r ->> 'id', x.r, NULL, x.audience,
                             app.current_user_id())::app.capture_event
                         ORDER BY x.rn)
          FROM (SELECT o.rn, o.j, o.j - cfg.redact AS r, cfg.entity, cfg.tenant_column, cfg.audience
                  FROM app.realtime_tables cfg
                  CROSS JOIN (SELECT row_number() OVER () AS rn, to_jsonb(t) AS j FROM rowcast_old t) o
                 WHERE cfg.table_name = TG_RELID::regclass
                   AND (cfg.entity <> 'usage' OR NOT app.is_metered_metric(o.j ->> 'metric'))
                OFFSET 0) x
        HAVING count(*) > 0;
    END IF;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_rows = 0 THEN
        -- Not captured, or no row changed: the statement number is given back.
        v_set := set_config('rowcast.capture_stmt', coalesce(v_prev, ''), true);
    END IF;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------------------
-- FLUSH
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.rowcast_flush() RETURNS trigger
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
    v_stmts   integer;
    v_one     app.capture_event;
    v_body    text;
BEGIN
    v_stmts := nullif(current_setting('rowcast.capture_stmt', true), '')::integer;
    IF NEW.stmt <= coalesce(nullif(current_setting('rowcast.capture_flushed', true), ''), '0')::integer THEN
        RETURN NULL;  -- already flushed with an earlier statement's row
    END IF;

    IF NEW.stmt = 1 AND v_stmts = 1 THEN
        -- The usual case: one capturing statement, whose events are this very row.
        v_events := NEW.events;
        v_n := cardinality(v_events);
        IF v_n = 1 THEN
            -- One event. Its notification text is concatenated from its parts, in the key
            -- order and spacing of jsonb's output (the text V60 sent), and the staging row is
            -- deleted, before the lock; then one expression takes the lock and draws the seq
            -- (CASE evaluates its condition first); then the event row and the notification.
            v_one := v_events[1];
            v_at := clock_timestamp();
            v_body := concat('"op": ', to_jsonb(v_one.op)::text, ', "old": ', coalesce(v_one.old::text, 'null'),
                             ', "row": ', v_one."row"::text, ', "type": ', to_jsonb(v_one.type)::text,
                             ', "actor": ', coalesce(to_jsonb(v_one.actor)::text, 'null'),
                             ', "table": ', to_jsonb(v_one.table_name)::text,
                             ', "row_id": ', coalesce(to_jsonb(v_one.row_id)::text, 'null'),
                             ', "audience": ', coalesce(to_jsonb(v_one.audience)::text, 'null'),
                             ', "tenant_id": ', coalesce(to_jsonb(v_one.tenant_id)::text, 'null'),
                             ', "created_at": "', to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '"}');
            DELETE FROM app.capture_stage s WHERE s.tx = pg_current_xact_id();
            -- Serialized from here to the end of the commit: nextval, one INSERT, pg_notify.
            v_first := CASE WHEN set_config('rowcast.capture_flushed', '1', true) IS NOT NULL
                                 AND pg_advisory_xact_lock(1919907683, 1) IS NOT NULL
                            THEN nextval('app.events_seq') END;
            INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
            VALUES (v_first, v_one.tenant_id, v_one.type, v_one.table_name, v_one.op, v_one.row_id, v_one."row", v_one.old,
                    v_one.audience, v_one.actor, v_at);
            PERFORM pg_notify('rowcast_events',
                              CASE WHEN octet_length(v_body) <= 7849 THEN '{"seq": ' || v_first || ', ' || v_body
                                   ELSE format('{"seq": %s, "first": %s, "tenant_id": %s, "big": true}', v_first, v_first,
                                               coalesce(to_json(v_one.tenant_id)::text, 'null')) END);
            RETURN NULL;
        END IF;
        DELETE FROM app.capture_stage s WHERE s.tx = pg_current_xact_id();
        v_last := 1;
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
        v_n := coalesce(cardinality(v_events), 0);
    END IF;
    IF set_config('rowcast.capture_flushed', greatest(v_last, v_stmts)::text, true) IS NULL OR v_n = 0 THEN
        RETURN NULL;
    END IF;

    v_at := clock_timestamp();
    v_ts := to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
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
    v_first := CASE WHEN pg_advisory_xact_lock(1919907683, 1) IS NOT NULL THEN nextval('app.events_seq') END;
    IF v_n > 1 THEN
        v_first := setval('app.events_seq', v_first + v_n - 1) - v_n + 1;
    END IF;
    INSERT INTO app.events (seq, tenant_id, type, table_name, op, row_id, "row", old, audience, actor, created_at)
    SELECT v_first + e.i - 1, e.tenant_id, e.type, e.table_name, e.op, e.row_id, e."row", e.old, e.audience, e.actor, v_at
      FROM unnest(v_events) WITH ORDINALITY AS e(tenant_id, type, table_name, op, row_id, "row", old, audience, actor, i);

    -- NOTIFY payloads are limited to 8,000 bytes: one notification per transaction.
    IF v_n = 1 AND v_len <= 7850 THEN
        v_payload := '{"seq": ' || v_first || ', ' || substr(v_bodies[1], 2);
    ELSIF v_len <= 7850 THEN
        SELECT format('{"seq": %s, "first": %s, "events": [%s]}', v_first + v_n - 1, v_first,
                      string_agg(format('{"seq": %s, %s', v_first - 1 + b.i, substr(b.body, 2)), ', ' ORDER BY b.i))
          INTO v_payload
          FROM unnest(v_bodies) WITH ORDINALITY AS b(body, i);
    ELSIF v_n = 1 THEN
        v_payload := format('{"seq": %s, "first": %s, "tenant_id": %s, "big": true}', v_first, v_first,
                            coalesce(to_json(v_tenant)::text, 'null'));
    ELSE
        v_payload := format('{"seq": %s, "first": %s, "tenant_id": %s, "big": true}', v_first + v_n - 1, v_first,
                            CASE WHEN v_tenants = 1 AND v_tenant IS NOT NULL
                                 THEN to_json(v_tenant)::text ELSE 'null' END);
    END IF;
    IF pg_notify('rowcast_events', v_payload) IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN NULL;
END
$$;

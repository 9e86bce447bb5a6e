-- V73: a write to a metered table no longer runs the capture of its usage update (issue 13).
--
-- Every INSERT into contacts (and messages, campaigns, webhooks, memberships) meters itself:
-- V40's statement trigger calls app.meter_usage, which UPDATEs the tenant's public.usages row.
-- public.usages is a realtime table, so that UPDATE fired app.rowcast_capture_stage, whose
-- staging statement built the update's events (two to_jsonb, row numbering, the changed
-- columns) only for V41's rule to filter them all out: a metered metric's usage is never
-- captured. EXPLAIN ANALYZE of a one-row contacts INSERT on a quiet scratch cluster:
-- rowcast_meter_insert 0.63–0.65 ms, of which the usages UPDATE's capture trigger 0.28 ms.
--
-- Now a statement on public.usages whose rows are all of metered metrics returns before the
-- staging statement (one EXISTS per transition table). Everything else is V63's body,
-- unchanged: custom metrics are captured as before, usage_limit_reached still comes from
-- app.usage_limit_reached through app.stage_events, and rowcast.capture_stmt is not advanced
-- by a statement that stages nothing (as V63 gave the number back).

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
    -- V73: metering's own writes. Every write to a metered table (contacts, messages,
    -- campaigns, webhooks, memberships) updates its tenant's public.usages row, and no usage
    -- of a metered metric is ever captured (V41: usage_limit_reached speaks for them). Such a
    -- statement ends here, before the staging statement builds and filters out its events.
    IF TG_TABLE_NAME = 'usages' AND TG_TABLE_SCHEMA = 'public' THEN
        IF TG_OP = 'UPDATE' THEN
            IF NOT EXISTS (SELECT 1 FROM rowcast_new n WHERE NOT app.is_metered_metric(n.metric))
               AND NOT EXISTS (SELECT 1 FROM rowcast_old o WHERE NOT app.is_metered_metric(o.metric)) THEN
                RETURN NULL;
            END IF;
        ELSIF TG_OP = 'INSERT' THEN
            IF NOT EXISTS (SELECT 1 FROM rowcast_new n WHERE NOT app.is_metered_metric(n.metric)) THEN
                RETURN NULL;
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM rowcast_old o WHERE NOT app.is_metered_metric(o.metric)) THEN
            RETURN NULL;
        END IF;
    END IF;
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

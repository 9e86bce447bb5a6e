-- V61: V40's quota event and V41's capture filter, carried onto V60's batched capture.
--
-- V40 (quotas) and V41 were written against the per-row capture of V10/V11, and V60 replaced
-- that capture while they were being written:
--   * V60 dropped app.emit_event, which app.usage_limit_reached (V40's soft-limit event)
--     called: the event now goes through the same staging as every other event
--     (app.stage_events), so it is numbered and announced with its transaction at commit.
--   * V60 re-created the capture triggers of every registered table, usages included,
--     without V41's WHEN filter (statement triggers have no NEW/OLD): the filter moves into
--     app.rowcast_capture_stage — metered usages rows (app.is_metered_metric) produce no
--     usage_* event; custom metrics do, as before.

-- ---------------------------------------------------------------------------------------
-- One place that stages a statement's events for the commit-time flush.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.stage_events(p_events app.capture_event[]) RETURNS void
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
    PERFORM set_config('rowcast.capture_stmt', v_stmt::text, true);
    INSERT INTO app.capture_stage (stmt, events) VALUES (v_stmt, p_events);
END
$$;
COMMENT ON FUNCTION app.stage_events(app.capture_event[]) IS
    'Stages events for app.rowcast_flush (numbered, stored and announced at commit, in staging order). Called by '
    'app.rowcast_capture_stage and by rules that emit events of their own (app.usage_limit_reached). Owner only.';
REVOKE ALL ON FUNCTION app.stage_events(app.capture_event[]) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- The stage trigger body: V60's, with V41's rule for usages and app.stage_events.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.rowcast_capture_stage() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    cfg      app.realtime_tables;
    v_actor  uuid := app.current_user_id();
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
          FROM (SELECT x.j, x.j - cfg.redact AS r FROM (SELECT to_jsonb(t) AS j FROM rowcast_new t) x
                 WHERE cfg.entity <> 'usage' OR NOT app.is_metered_metric(x.j ->> 'metric')) n;
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
                  JOIN (SELECT row_number() OVER () AS rn, to_jsonb(t) AS j FROM rowcast_new t) nw USING (rn)
                 WHERE cfg.entity <> 'usage' OR NOT app.is_metered_metric(nw.j ->> 'metric')
                    OR NOT app.is_metered_metric(o.j ->> 'metric')) c
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
          FROM (SELECT x.j, x.j - cfg.redact AS r FROM (SELECT to_jsonb(t) AS j FROM rowcast_old t) x
                 WHERE cfg.entity <> 'usage' OR NOT app.is_metered_metric(x.j ->> 'metric')) c;
    END IF;
    IF v_events IS NULL THEN
        RETURN NULL;  -- the statement changed no row
    END IF;

    PERFORM app.stage_events(v_events);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.rowcast_capture_stage() IS
    'Body of the rowcast_capture_insert/_update/_delete statement triggers: builds the statement''s events from its '
    'transition tables in one set-based query and stages them (app.stage_events, not serialized); app.rowcast_flush '
    'numbers and stores them at commit. One event per changed row: <entity>_created/_updated/_deleted (a soft delete, '
    'deleted_at NULL → value, is _deleted); plus campaign_status_changed when a campaign''s status changes and '
    'webhook_triggered when a webhook_logs row is inserted. Redacted columns never reach the event. usages rows of '
    'metered metrics (app.is_metered_metric) are not captured (V41): usage_limit_reached speaks for them.';

-- ---------------------------------------------------------------------------------------
-- usage_limit_reached (V40) through the staging.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.usage_limit_reached() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_limit record;
BEGIN
    SELECT * INTO v_limit FROM app.tenant_limit(NEW.tenant_id, NEW.metric);
    PERFORM app.stage_events(ARRAY[ROW(
        NEW.tenant_id, 'usage_limit_reached', 'usages', 'UPDATE', NEW.id::text,
        jsonb_build_object('id', NEW.id, 'tenant_id', NEW.tenant_id, 'metric', NEW.metric, 'quantity', NEW.quantity,
                           'limit', v_limit.limit_value, 'period', v_limit.period, 'plan', v_limit.plan_code,
                           'is_hard', false, 'period_start', NEW.period_start, 'period_end', NEW.period_end,
                           'reached_at', NEW.soft_limit_notified_at),
        NULL, '{platform_admin,tenant_admin}'::text[], app.current_user_id())::app.capture_event]);
    RETURN NULL;
END
$$;

-- V40: plan quotas, metered and enforced in the writing transaction (SPEC §11, §3.2).
--
-- What is metered (the "metered metrics"; every other usages.metric is a custom metric that
-- members record themselves, as before):
--   contacts   live contacts of the tenant (soft-deleted ones do not count)      gauge
--   campaigns  live campaigns (soft-deleted ones do not count)                   gauge
--   webhooks   live webhooks (soft-deleted ones do not count)                    gauge
--   members    memberships of the tenant                                         gauge
--   messages   outbound messages_history rows created in the period             counter
-- A gauge is one usages row per tenant with the lifetime period ('-infinity' .. 'infinity'):
-- it goes up and down with the live count. The messages counter has one row per period:
-- the period of the tenant's `messages` policy (day, month or lifetime), calendar periods in
-- UTC, month when the tenant has no such policy. Deleting a message gives nothing back.
--
-- How: statement-level AFTER triggers with transition tables (rowcast_meter_*) compute the
-- change of each metric per tenant for the whole statement (a 10,000-row import is one
-- usages update, not 10,000) and call app.meter_usage(tenant, metric, delta), which
--   1. upserts the usages row: `UPDATE … SET quantity = quantity + delta` takes the row lock,
--      so racing writers of one tenant and metric serialize on it until commit and each sees
--      the other's committed count (exact under concurrency: of two transactions racing for
--      the last unit exactly one gets it). A missing row is seeded from the actual count
--      (rows that predate this migration, a new tenant, a new period), so usage is exact
--      from the first write whatever existed before;
--   2. reads the limit of the tenant's live subscription (status trialing, active or
--      past_due) for the metric: no subscription, or no policy for that metric ⇒ no quota;
--   3. hard limit and the new quantity above it ⇒ SQLSTATE PT402 (HTTP 402 through the REST
--      error mapping) naming metric, limit, period and plan. The statement fails whole:
--      nothing is written, the usages row included;
--   4. soft limit reached (quantity ≥ limit) ⇒ usages.soft_limit_notified_at is stamped once
--      per metric and period, and a deferred trigger emits ONE usage_limit_reached event
--      (audience: tenant admins and platform admins) at commit. For gauges "per period" is
--      the policy's period: a contacts soft limit with period month warns at most once a
--      calendar month; with period lifetime, once.
-- Decreases (soft delete, delete) never fail and never create a row.
--
-- Metered rows are written by these triggers only (the trigger functions are SECURITY
-- DEFINER, owned by the migration owner, which bypasses RLS): RESTRICTIVE policies
-- usages_metered_* refuse every INSERT, UPDATE or DELETE of a metered metric by rowcast_app,
-- whatever the role — no one resets their own quota through the API. Custom metrics stay
-- writable by every member (seed 003). A DBA repairs gauges with app.usage_recount(tenant).
--
-- `api_requests_per_minute` is also read from limit_policies, by the server (request rate
-- limits, docs/limits.md); its period and is_hard are ignored (a rate limit always refuses).
-- Plan, policy and subscription changes NOTIFY rowcast_limits so servers reload that figure.

-- ---------------------------------------------------------------------------------------
-- Which metrics rowcast meters.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.is_metered_metric(p_metric text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$ SELECT p_metric IN ('contacts', 'messages', 'campaigns', 'webhooks', 'members') $$;
COMMENT ON FUNCTION app.is_metered_metric(text) IS
    'True for the metrics rowcast meters itself (contacts, messages, campaigns, webhooks, members): their usages rows are '
    'written only by the rowcast_meter_* triggers.';
GRANT EXECUTE ON FUNCTION app.is_metered_metric(text) TO PUBLIC;

ALTER TABLE public.usages ADD COLUMN soft_limit_notified_at timestamptz;
COMMENT ON COLUMN public.usages.soft_limit_notified_at IS
    'Metered metrics: when the soft limit of the period was reached and usage_limit_reached emitted (once per period).';

-- ---------------------------------------------------------------------------------------
-- Periods: calendar periods in UTC.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.usage_period(p_period text, p_at timestamptz, OUT period_start date, OUT period_end date)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
    SELECT CASE p_period
               WHEN 'day' THEN (p_at AT TIME ZONE 'UTC')::date
               WHEN 'month' THEN date_trunc('month', p_at AT TIME ZONE 'UTC')::date
               ELSE '-infinity'::date
           END,
           CASE p_period
               WHEN 'day' THEN (p_at AT TIME ZONE 'UTC')::date + 1
               WHEN 'month' THEN (date_trunc('month', p_at AT TIME ZONE 'UTC') + interval '1 month')::date
               ELSE 'infinity'::date
           END
$$;
COMMENT ON FUNCTION app.usage_period(text, timestamptz) IS
    'Bounds of the calendar period (day, month; anything else: lifetime = -infinity .. infinity) containing p_at, in UTC.';
GRANT EXECUTE ON FUNCTION app.usage_period(text, timestamptz) TO PUBLIC;

-- ---------------------------------------------------------------------------------------
-- The tenant's limit for a metric: the policy of its live subscription's plan.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.tenant_limit(p_tenant uuid, p_metric text)
RETURNS TABLE (plan_code text, limit_value bigint, period text, is_hard boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT p.code, lp.limit_value, lp.period, lp.is_hard
      FROM public.subscriptions s
      JOIN public.plans p ON p.id = s.plan_id
      JOIN public.limit_policies lp ON lp.plan_id = s.plan_id AND lp.metric = p_metric
     WHERE s.tenant_id = p_tenant AND s.status IN ('trialing', 'active', 'past_due')
     LIMIT 1
$$;
COMMENT ON FUNCTION app.tenant_limit(uuid, text) IS
    'The limit on p_metric of the plan of p_tenant''s live subscription (trialing, active, past_due); no row = no quota.';
REVOKE ALL ON FUNCTION app.tenant_limit(uuid, text) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- The actual count of a metric, the source of truth the usages row is seeded from.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.usage_actual(p_tenant uuid, p_metric text, p_start date, p_end date) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    RETURN CASE p_metric
        WHEN 'contacts' THEN (SELECT count(*) FROM public.contacts c WHERE c.tenant_id = p_tenant AND c.deleted_at IS NULL)
        WHEN 'campaigns' THEN (SELECT count(*) FROM public.campaigns c WHERE c.tenant_id = p_tenant AND c.deleted_at IS NULL)
        WHEN 'webhooks' THEN (SELECT count(*) FROM public.webhooks w WHERE w.tenant_id = p_tenant AND w.deleted_at IS NULL)
        WHEN 'members' THEN (SELECT count(*) FROM public.memberships m WHERE m.tenant_id = p_tenant)
        WHEN 'messages' THEN (
            SELECT count(*) FROM public.messages_history m
             WHERE m.tenant_id = p_tenant AND m.direction = 'outbound'
               AND m.created_at >= p_start::timestamp AT TIME ZONE 'UTC'
               AND m.created_at < p_end::timestamp AT TIME ZONE 'UTC')
    END;
END
$$;
COMMENT ON FUNCTION app.usage_actual(uuid, text, date, date) IS
    'What a metered metric really is for a tenant (live rows; outbound messages created in [p_start, p_end) UTC).';
REVOKE ALL ON FUNCTION app.usage_actual(uuid, text, date, date) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Metering and enforcement.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.meter_usage(p_tenant uuid, p_metric text, p_delta bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_limit   record;
    v_period  text := 'lifetime';
    v_start   date;
    v_end     date;
    v_usage   public.usages%ROWTYPE;
BEGIN
    IF p_delta = 0 OR p_tenant IS NULL THEN
        RETURN;
    END IF;
    SELECT * INTO v_limit FROM app.tenant_limit(p_tenant, p_metric);
    IF p_metric = 'messages' THEN
        v_period := coalesce(v_limit.period, 'month');
    END IF;
    SELECT b.period_start, b.period_end INTO v_start, v_end FROM app.usage_period(v_period, now()) b;

    -- The row lock taken here serializes racing writers of this tenant and metric.
    UPDATE public.usages u SET quantity = greatest(u.quantity + p_delta, 0)
     WHERE u.tenant_id = p_tenant AND u.metric = p_metric AND u.period_start = v_start
    RETURNING * INTO v_usage;
    IF NOT FOUND THEN
        IF p_delta < 0 THEN
            RETURN;  -- seeded from the actual count on the next increase (also: tenant being deleted)
        END IF;
        -- The actual count already includes this statement's rows (AFTER trigger).
        INSERT INTO public.usages AS u (tenant_id, metric, period_start, period_end, quantity)
        VALUES (p_tenant, p_metric, v_start, v_end, app.usage_actual(p_tenant, p_metric, v_start, v_end))
        ON CONFLICT (tenant_id, metric, period_start)
            DO UPDATE SET quantity = greatest(u.quantity + p_delta, 0)
        RETURNING * INTO v_usage;
    END IF;

    IF p_delta < 0 OR v_limit.limit_value IS NULL THEN
        RETURN;
    END IF;
    IF v_limit.is_hard AND v_usage.quantity > v_limit.limit_value THEN
        RAISE EXCEPTION 'quota exceeded: % is limited to % (period: %) by plan %',
                        p_metric, v_limit.limit_value, v_limit.period, v_limit.plan_code
            USING ERRCODE = 'PT402',
                  DETAIL = format('metric=%s limit=%s period=%s usage=%s requested=%s',
                                  p_metric, v_limit.limit_value, v_limit.period, v_usage.quantity - p_delta, p_delta),
                  HINT = 'Upgrade the plan, or free some units (for messages: wait for the next period).';
    END IF;
    IF NOT v_limit.is_hard AND v_usage.quantity >= v_limit.limit_value
       AND (v_usage.soft_limit_notified_at IS NULL
            OR (v_period = 'lifetime' AND v_limit.period <> 'lifetime'
                AND (SELECT b.period_start FROM app.usage_period(v_limit.period, v_usage.soft_limit_notified_at) b)
                    < (SELECT b.period_start FROM app.usage_period(v_limit.period, now()) b))) THEN
        -- The deferred rowcast_usage_limit_reached trigger emits the event at commit.
        UPDATE public.usages u SET soft_limit_notified_at = now() WHERE u.id = v_usage.id;
    END IF;
END
$$;
COMMENT ON FUNCTION app.meter_usage(uuid, text, bigint) IS
    'Adds p_delta to the tenant''s usages row of a metered metric (row lock: exact under concurrency; a missing row is '
    'seeded from the actual count), then enforces the live subscription''s policy: hard and exceeded => PT402 (nothing '
    'written); soft and reached => soft_limit_notified_at stamped once per period (usage_limit_reached at commit).';
REVOKE ALL ON FUNCTION app.meter_usage(uuid, text, bigint) FROM PUBLIC;

-- Statement-level trigger body. TG_ARGV[0]: metric; TG_ARGV[1]: what counts —
-- 'live' (deleted_at IS NULL), 'all' (every row), 'outbound' (direction = 'outbound', on INSERT).
-- Tenants are metered in uuid order, so two multi-tenant statements lock usages rows in the
-- same order.
CREATE FUNCTION app.meter_statement() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_metric text := TG_ARGV[0];
    v_kind   text := TG_ARGV[1];
    r        record;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF v_kind = 'live' THEN
            FOR r IN SELECT n.tenant_id, count(*) AS delta FROM new_rows n WHERE n.deleted_at IS NULL GROUP BY 1 ORDER BY 1 LOOP
                PERFORM app.meter_usage(r.tenant_id, v_metric, r.delta);
            END LOOP;
        ELSIF v_kind = 'outbound' THEN
            FOR r IN SELECT n.tenant_id, count(*) AS delta FROM new_rows n WHERE n.direction = 'outbound' GROUP BY 1 ORDER BY 1 LOOP
                PERFORM app.meter_usage(r.tenant_id, v_metric, r.delta);
            END LOOP;
        ELSE
            FOR r IN SELECT n.tenant_id, count(*) AS delta FROM new_rows n GROUP BY 1 ORDER BY 1 LOOP
                PERFORM app.meter_usage(r.tenant_id, v_metric, r.delta);
            END LOOP;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF v_kind = 'live' THEN
            FOR r IN SELECT o.tenant_id, count(*) AS delta FROM old_rows o WHERE o.deleted_at IS NULL GROUP BY 1 ORDER BY 1 LOOP
                PERFORM app.meter_usage(r.tenant_id, v_metric, -r.delta);
            END LOOP;
        ELSE
            FOR r IN SELECT o.tenant_id, count(*) AS delta FROM old_rows o GROUP BY 1 ORDER BY 1 LOOP
                PERFORM app.meter_usage(r.tenant_id, v_metric, -r.delta);
            END LOOP;
        END IF;
    ELSIF v_kind = 'live' THEN  -- UPDATE: soft delete, restore, (platform admin) tenant move
        FOR r IN
            SELECT coalesce(n.tenant_id, o.tenant_id) AS tenant_id, coalesce(n.c, 0) - coalesce(o.c, 0) AS delta
              FROM (SELECT x.tenant_id, count(*) AS c FROM new_rows x WHERE x.deleted_at IS NULL GROUP BY 1) n
              FULL JOIN (SELECT y.tenant_id, count(*) AS c FROM old_rows y WHERE y.deleted_at IS NULL GROUP BY 1) o
                ON o.tenant_id = n.tenant_id
             ORDER BY 1
        LOOP
            PERFORM app.meter_usage(r.tenant_id, v_metric, r.delta);
        END LOOP;
    ELSIF v_kind = 'all' THEN  -- UPDATE of memberships: only a tenant move changes counts
        FOR r IN
            SELECT coalesce(n.tenant_id, o.tenant_id) AS tenant_id, coalesce(n.c, 0) - coalesce(o.c, 0) AS delta
              FROM (SELECT x.tenant_id, count(*) AS c FROM new_rows x GROUP BY 1) n
              FULL JOIN (SELECT y.tenant_id, count(*) AS c FROM old_rows y GROUP BY 1) o ON o.tenant_id = n.tenant_id
             ORDER BY 1
        LOOP
            PERFORM app.meter_usage(r.tenant_id, v_metric, r.delta);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.meter_statement() IS
    'Body of the rowcast_meter_* statement triggers: per tenant, the change of a metered metric over the statement''s '
    'transition tables, passed to app.meter_usage.';
REVOKE ALL ON FUNCTION app.meter_statement() FROM PUBLIC;

-- Transition tables need one trigger per event.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('public.contacts', 'contacts', 'live', true, true),
        ('public.campaigns', 'campaigns', 'live', true, true),
        ('public.webhooks', 'webhooks', 'live', true, true),
        ('public.memberships', 'members', 'all', true, true),
        ('public.messages_history', 'messages', 'outbound', false, false)
    ) AS v(tbl, metric, kind, on_update, on_delete)
    LOOP
        EXECUTE format('CREATE TRIGGER rowcast_meter_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION app.meter_statement(%L, %L)', t.tbl, t.metric, t.kind);
        EXECUTE format('COMMENT ON TRIGGER rowcast_meter_insert ON %s IS %L', t.tbl,
                       format('Quota: meters %s into usages and enforces the plan limit (app.meter_usage).', t.metric));
        IF t.on_update THEN
            EXECUTE format('CREATE TRIGGER rowcast_meter_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                           'FOR EACH STATEMENT EXECUTE FUNCTION app.meter_statement(%L, %L)', t.tbl, t.metric, t.kind);
            EXECUTE format('COMMENT ON TRIGGER rowcast_meter_update ON %s IS %L', t.tbl,
                           format('Quota: soft delete / restore change the %s count (app.meter_usage).', t.metric));
        END IF;
        IF t.on_delete THEN
            EXECUTE format('CREATE TRIGGER rowcast_meter_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS old_rows '
                           'FOR EACH STATEMENT EXECUTE FUNCTION app.meter_statement(%L, %L)', t.tbl, t.metric, t.kind);
            EXECUTE format('COMMENT ON TRIGGER rowcast_meter_delete ON %s IS %L', t.tbl,
                           format('Quota: a deleted row frees one unit of %s (app.meter_usage).', t.metric));
        END IF;
    END LOOP;
END
$$;

-- ---------------------------------------------------------------------------------------
-- usage_limit_reached: one event per metric and period, emitted at commit.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.usage_limit_reached() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_limit record;
BEGIN
    SELECT * INTO v_limit FROM app.tenant_limit(NEW.tenant_id, NEW.metric);
    PERFORM app.emit_event(NEW.tenant_id, 'usage_limit_reached', 'usages', 'UPDATE', NEW.id::text,
        jsonb_build_object('id', NEW.id, 'tenant_id', NEW.tenant_id, 'metric', NEW.metric, 'quantity', NEW.quantity,
                           'limit', v_limit.limit_value, 'period', v_limit.period, 'plan', v_limit.plan_code,
                           'is_hard', false, 'period_start', NEW.period_start, 'period_end', NEW.period_end,
                           'reached_at', NEW.soft_limit_notified_at),
        NULL, '{platform_admin,tenant_admin}');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.usage_limit_reached() IS
    'Deferred: emits usage_limit_reached (metric, quantity, limit, period, plan; tenant admins and platform admins) when '
    'app.meter_usage stamps usages.soft_limit_notified_at.';
REVOKE ALL ON FUNCTION app.usage_limit_reached() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER rowcast_usage_limit_reached AFTER UPDATE OF soft_limit_notified_at ON public.usages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.soft_limit_notified_at IS NOT NULL AND NEW.soft_limit_notified_at IS DISTINCT FROM OLD.soft_limit_notified_at)
    EXECUTE FUNCTION app.usage_limit_reached();
COMMENT ON TRIGGER rowcast_usage_limit_reached ON public.usages IS
    'Quota: at commit, one usage_limit_reached event when a soft limit was reached (once per metric and period).';

-- ---------------------------------------------------------------------------------------
-- Metered rows belong to the triggers (SPEC §3.2): RESTRICTIVE, so no role's PERMISSIVE
-- write policy can reach them. The trigger functions run as the owner and are not bound.
-- ---------------------------------------------------------------------------------------
CREATE POLICY usages_metered_insert ON public.usages AS RESTRICTIVE FOR INSERT
    WITH CHECK (NOT app.is_metered_metric(metric));
COMMENT ON POLICY usages_metered_insert ON public.usages IS 'Nobody inserts a usages row of a metered metric: the rowcast_meter_* triggers do.';
CREATE POLICY usages_metered_update ON public.usages AS RESTRICTIVE FOR UPDATE
    USING (NOT app.is_metered_metric(metric))
    WITH CHECK (NOT app.is_metered_metric(metric));
COMMENT ON POLICY usages_metered_update ON public.usages IS 'Nobody changes a metered usages row (no one resets their quota), nor turns a custom metric into a metered one.';
CREATE POLICY usages_metered_delete ON public.usages AS RESTRICTIVE FOR DELETE
    USING (NOT app.is_metered_metric(metric));
COMMENT ON POLICY usages_metered_delete ON public.usages IS 'Nobody deletes a metered usages row.';

-- ---------------------------------------------------------------------------------------
-- DBA repair: recompute a tenant's gauges from the tables (after a restore with triggers
-- disabled, say). Counters (messages) are recomputed for the current period.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.usage_recount(p_tenant uuid) RETURNS SETOF public.usages
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    m        text;
    v_period text;
    v_start  date;
    v_end    date;
BEGIN
    FOREACH m IN ARRAY ARRAY['contacts', 'campaigns', 'webhooks', 'members', 'messages'] LOOP
        v_period := CASE WHEN m = 'messages' THEN coalesce((SELECT l.period FROM app.tenant_limit(p_tenant, m) l), 'month') ELSE 'lifetime' END;
        SELECT b.period_start, b.period_end INTO v_start, v_end FROM app.usage_period(v_period, now()) b;
        RETURN QUERY
        INSERT INTO public.usages AS u (tenant_id, metric, period_start, period_end, quantity)
        VALUES (p_tenant, m, v_start, v_end, app.usage_actual(p_tenant, m, v_start, v_end))
        ON CONFLICT (tenant_id, metric, period_start) DO UPDATE SET quantity = EXCLUDED.quantity
        RETURNING u.*;
    END LOOP;
END
$$;
COMMENT ON FUNCTION app.usage_recount(uuid) IS
    'For DBAs (as the owner): recomputes a tenant''s metered usages rows from the tables and returns them.';
REVOKE ALL ON FUNCTION app.usage_recount(uuid) FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Servers cache each tenant's api_requests_per_minute: tell them when it may have changed.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.notify_limits_changed() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    PERFORM pg_notify('rowcast_limits', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.notify_limits_changed() IS 'NOTIFY rowcast_limits: servers drop their cached per-tenant request rate limits.';
REVOKE ALL ON FUNCTION app.notify_limits_changed() FROM PUBLIC;

CREATE TRIGGER rowcast_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.plans
    FOR EACH STATEMENT EXECUTE FUNCTION app.notify_limits_changed();
CREATE TRIGGER rowcast_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.limit_policies
    FOR EACH STATEMENT EXECUTE FUNCTION app.notify_limits_changed();
CREATE TRIGGER rowcast_limits_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION app.notify_limits_changed();
COMMENT ON TRIGGER rowcast_limits_changed ON public.plans IS 'Rate limits: servers reload api_requests_per_minute.';
COMMENT ON TRIGGER rowcast_limits_changed ON public.limit_policies IS 'Rate limits: servers reload api_requests_per_minute.';
COMMENT ON TRIGGER rowcast_limits_changed ON public.subscriptions IS 'Rate limits: servers reload api_requests_per_minute.';

-- The request rate limit of each tenant whose plan sets one, for the server (no context
-- needed: it is read outside any request).
CREATE FUNCTION app.tenant_rate_limits() RETURNS TABLE (tenant_id uuid, requests_per_minute bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT s.tenant_id, lp.limit_value
      FROM public.subscriptions s
      JOIN public.limit_policies lp ON lp.plan_id = s.plan_id AND lp.metric = 'api_requests_per_minute'
     WHERE s.status IN ('trialing', 'active', 'past_due')
$$;
COMMENT ON FUNCTION app.tenant_rate_limits() IS
    'For the server: api_requests_per_minute of every tenant whose live subscription''s plan sets it.';
REVOKE ALL ON FUNCTION app.tenant_rate_limits() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.tenant_rate_limits() TO rowcast_app;

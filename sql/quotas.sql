-- A tenant's plan, its limits, and where its usage stands (SPEC §11, docs/limits.md).
-- Run as the owner (superuser DSN):
--   psql "$DATABASE_URL" -v tenant=<uuid or name> -f sql/quotas.sql
--   psql "$DATABASE_URL" -f sql/quotas.sql                 -- every tenant, one line per limit
-- Metered metrics (contacts, campaigns, webhooks, members, messages) are maintained by the
-- rowcast_meter_* triggers; "actual" is recounted from the tables here so drift shows up
-- (repair it with SELECT * FROM app.usage_recount('<tenant uuid>');).
\set ON_ERROR_STOP on
\if :{?tenant}
\else
\set tenant ''
\endif

-- The tenant(s) and their live subscription.
SELECT t.id AS tenant_id, t.name AS tenant, p.code AS plan, s.status, s.current_period_start, s.current_period_end
  FROM public.tenants t
  LEFT JOIN public.subscriptions s ON s.tenant_id = t.id AND s.status <> 'cancelled'
  LEFT JOIN public.plans p ON p.id = s.plan_id
 WHERE :'tenant' = '' OR t.id::text = :'tenant' OR t.name = :'tenant'
 ORDER BY t.name;

-- Every limit of the plan next to the usage of the current period. For gauges (contacts,
-- campaigns, webhooks, members) the period only paces soft-limit warnings: the limit bounds
-- the live count. api_requests_per_minute is enforced by the server, not metered here.
WITH tenant AS (
    SELECT t.id, t.name FROM public.tenants t
     WHERE :'tenant' = '' OR t.id::text = :'tenant' OR t.name = :'tenant'
), lim AS (
    SELECT tn.id AS tenant_id, tn.name, l.metric, l.limit_value, l.period, l.is_hard,
           CASE WHEN l.metric = 'messages' THEN l.period ELSE 'lifetime' END AS metered_period
      FROM tenant tn
      JOIN public.subscriptions s ON s.tenant_id = tn.id AND s.status IN ('trialing', 'active', 'past_due')
      JOIN public.limit_policies l ON l.plan_id = s.plan_id
)
SELECT lim.name AS tenant, lim.metric, lim.limit_value AS "limit", lim.period,
       CASE WHEN lim.is_hard THEN 'hard' ELSE 'soft' END AS kind,
       coalesce(u.quantity, 0) AS used,
       CASE WHEN app.is_metered_metric(lim.metric)
            THEN app.usage_actual(lim.tenant_id, lim.metric, b.period_start, b.period_end) END AS actual,
       CASE WHEN lim.limit_value > 0 THEN round(100.0 * coalesce(u.quantity, 0) / lim.limit_value, 1) END AS pct,
       u.soft_limit_notified_at AS soft_warned_at
  FROM lim
 CROSS JOIN LATERAL app.usage_period(lim.metered_period, now()) b
  LEFT JOIN public.usages u ON u.tenant_id = lim.tenant_id AND u.metric = lim.metric AND u.period_start = b.period_start
 ORDER BY lim.name, lim.metric;

-- Every usages row of the tenant(s), metered and custom, newest period first.
SELECT t.name AS tenant, u.metric,
       CASE WHEN app.is_metered_metric(u.metric) THEN 'metered' ELSE 'custom' END AS source,
       u.period_start, u.period_end, u.quantity, u.soft_limit_notified_at, u.updated_at
  FROM public.usages u
  JOIN public.tenants t ON t.id = u.tenant_id
 WHERE :'tenant' = '' OR t.id::text = :'tenant' OR t.name = :'tenant'
 ORDER BY t.name, u.metric, u.period_start DESC;

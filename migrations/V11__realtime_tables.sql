-- V11: which tables are captured, for whom, and what is never copied into an event.
--
-- Every table of the schema is captured (SELECT * FROM app.realtime_tables shows the whole
-- configuration; every trigger is rowcast_capture). Audiences follow SPEC §3.2:
--   * tenant tables: every role of the tenant (RLS on app.events adds the tenant check);
--   * webhooks, webhook_logs (and so webhook_triggered): tenant admins and platform admins
--     only — tenant users get no webhook event, live or replayed;
--   * tables without a tenant (users, plans, limit_policies, app.rls_audit, and shared
--     message templates whose tenant_id is NULL): events have tenant_id NULL and reach
--     platform admins only (subscribed to tenant:*). Users are not tenant rows: a user
--     belongs to several tenants, so a user change is not broadcast into any of them.
-- Redaction: webhooks.secret always (enable_realtime also forces any credential-like
-- column name into redact).
--
-- A migration adding a table must call app.enable_realtime for it.

SELECT app.enable_realtime('public.tenants', 'tenant', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.users', 'user', '{platform_admin}');
SELECT app.enable_realtime('public.memberships', 'membership', '{platform_admin,tenant_admin,tenant_user}');

SELECT app.enable_realtime('public.plans', 'plan', '{platform_admin}');
SELECT app.enable_realtime('public.limit_policies', 'limit_policy', '{platform_admin}');
SELECT app.enable_realtime('public.subscriptions', 'subscription', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.usages', 'usage', '{platform_admin,tenant_admin,tenant_user}');

SELECT app.enable_realtime('public.contacts', 'contact', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.groups', 'group', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.group_contacts', 'group_contact', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.message_templates', 'message_template', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.campaigns', 'campaign', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.campaign_recipients', 'campaign_recipient', '{platform_admin,tenant_admin,tenant_user}');
SELECT app.enable_realtime('public.messages_history', 'message', '{platform_admin,tenant_admin,tenant_user}');

SELECT app.enable_realtime('public.webhooks', 'webhook', '{platform_admin,tenant_admin}', '{secret}');
SELECT app.enable_realtime('public.webhook_logs', 'webhook_log', '{platform_admin,tenant_admin}');

SELECT app.enable_realtime('app.rls_audit', 'rls_audit', '{platform_admin}');

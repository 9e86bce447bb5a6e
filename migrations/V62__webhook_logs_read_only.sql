-- V62: delivery logs are written by deliveries only (SPEC §10 "every attempt is a webhook_logs
-- row"; issue 11 item 4).
--
-- V7 let tenant admins (and platform admins) insert, update and delete webhook_logs rows
-- through rowcast_app, for a delivery worker that would run in their context. The worker of
-- V30 records attempts through app.webhook_record (SECURITY DEFINER, owner), so that write
-- path is unused — and it let an admin forge or erase the log of what was sent, and, since
-- every webhook_logs insert is captured as webhook_triggered, forge "webhook executed" events.
-- Now rowcast_app reads logs (tenant admins, platform admins: V7's read policy) and writes none.
DROP POLICY webhook_logs_write_admins ON public.webhook_logs;
REVOKE INSERT, UPDATE, DELETE ON public.webhook_logs FROM rowcast_app;
COMMENT ON TABLE public.webhook_logs IS
    'One row per delivery attempt, written only by the delivery workers (app.webhook_record, V30); tenant admins and '
    'platform admins read their scope''s rows (GET /rest/webhook_logs), nobody writes them through the API.';

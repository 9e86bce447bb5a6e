-- V74: the live webhooks, for the servers' wake-up listeners.
--
-- Every committing transaction announces its events on rowcast_events, and each server's
-- webhook dispatcher used to answer every announcement with a feed round: a write
-- transaction (app.webhook_feed_for moves app.webhook_feed_cursor) and two round trips, ~300
-- a second at 1,000 writes/s, on the same cores as the writes and the realtime relay, even
-- where no tenant had a webhook. Only an event of a tenant with a live webhook can queue a
-- delivery (app.webhook_feed_for joins on w.tenant_id = e.tenant_id AND w.is_active AND
-- w.deleted_at IS NULL), so a server now keeps the live webhooks' tenants in memory and feeds
-- on those tenants' events only: it loads the list below when its listener connects (after
-- LISTEN) and whenever an announcement cannot be read (a range stub), and follows each
-- webhook's webhook_created / webhook_updated / webhook_deleted event. Every other event is
-- fed by the dispatcher's poll, which runs the feed whatever the list says.
--
-- The servers' role sees no webhook row (RLS), hence a SECURITY DEFINER function returning
-- ids only: no URL, no secret.
CREATE FUNCTION app.webhook_live() RETURNS TABLE (webhook_id uuid, tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT w.id, w.tenant_id FROM public.webhooks w WHERE w.is_active AND w.deleted_at IS NULL
$$;
COMMENT ON FUNCTION app.webhook_live() IS
    'For the servers'' webhook wake-up listeners: each active, undeleted webhook and its tenant (ids only). An event of '
    'any other tenant cannot queue a delivery, so it does not wake the feed.';
REVOKE ALL ON FUNCTION app.webhook_live() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.webhook_live() TO rowcast_app;

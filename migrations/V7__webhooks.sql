-- V7: webhooks, their delivery logs, and the signing secret.
--
-- Role matrix (SPEC §3.2): platform admins all; tenant admins read and write their own
-- tenant's webhooks and logs; tenant users NOTHING — no policy grants them a row, so they
-- read zero rows and every write is refused (and the realtime audience of these tables
-- will not include them either).
--
-- The secret (decision): column privileges, not a side table.
--   * rowcast_app may SELECT and UPDATE every column of webhooks EXCEPT secret, and may
--     INSERT secret (a client may bring its own, ≥ 32 characters; by default the database
--     generates one). So no statement the server runs — `SELECT *`, `RETURNING *`, a filter
--     or an ORDER BY on secret — can read it back: PostgreSQL refuses (42501) instead of
--     leaking, and the REST layer expands `*` to the columns the role may select.
--   * Rotation goes only through rpc.webhook_regenerate_secret(id), SECURITY DEFINER with
--     its own admin + tenant check, which stores a fresh secret and returns it once.
--   * Why not a side table in app: the secret stays on the row it signs for (one place for a
--     DBA, one row to redact in realtime events: enable_realtime(..., redact => {secret})),
--     and the rule is visible in \dp.
--   * Consequence: a migration adding a column to webhooks must GRANT it to rowcast_app
--     explicitly (table-level grants would re-expose secret).
--   * The delivery worker (a later issue) needs the secret to sign; it gets it through its
--     own SECURITY DEFINER function in app, not through this table's grants.

-- 244 random bits from the server's strong random source (gen_random_uuid uses
-- pg_strong_random), no extension needed.
CREATE FUNCTION app.new_webhook_secret() RETURNS text
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$ SELECT 'whsec_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '') $$;
COMMENT ON FUNCTION app.new_webhook_secret() IS 'A fresh webhook signing secret: whsec_ + 64 hex digits (244 random bits).';
GRANT EXECUTE ON FUNCTION app.new_webhook_secret() TO rowcast_app;

CREATE TABLE public.webhooks (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL,
    name         text        NOT NULL,
    url          text        NOT NULL,
    events       text[]      NOT NULL DEFAULT '{*}',
    secret       text        NOT NULL DEFAULT app.new_webhook_secret(),
    is_active    boolean     NOT NULL DEFAULT true,
    deleted_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_pkey PRIMARY KEY (id),
    CONSTRAINT webhooks_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT webhooks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT webhooks_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT webhooks_url_check CHECK (length(url) <= 2048 AND url ~ '^https?://[^\s/?#]+[^\s]*$'),
    CONSTRAINT webhooks_events_check CHECK (
        cardinality(events) BETWEEN 1 AND 100
        AND array_position(events, NULL) IS NULL
        AND array_to_string(events, ',') ~ '^(\*|[a-z][a-z0-9_]*)(,(\*|[a-z][a-z0-9_]*))*$'),
    CONSTRAINT webhooks_secret_check CHECK (length(secret) BETWEEN 32 AND 256)
);
CREATE INDEX webhooks_tenant_id_created_at_idx ON public.webhooks (tenant_id, created_at);
COMMENT ON TABLE public.webhooks IS
    'HTTP endpoints notified of a tenant''s events. Platform admins all; tenant admins read and write their tenant''s; tenant users nothing. '
    'secret is not selectable by rowcast_app (column privileges): rotate it with rpc.webhook_regenerate_secret. Soft delete: deleted_at.';
COMMENT ON COLUMN public.webhooks.events IS 'Event types delivered (contact_created, campaign_status_changed, …); ''*'' means all.';
COMMENT ON COLUMN public.webhooks.deleted_at IS 'Soft delete: set by REST DELETE; NULL = live. REST reads hide deleted rows unless the request filters on deleted_at. A deleted row can only be restored.';
COMMENT ON COLUMN public.webhooks.secret IS 'HMAC signing secret. Never selectable by rowcast_app; set on insert or rotated by rpc.webhook_regenerate_secret, which returns it once.';

CREATE TABLE public.webhook_logs (
    id             uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id      uuid        NOT NULL,
    webhook_id     uuid        NOT NULL,
    event_type     text        NOT NULL,
    event_seq      bigint,
    attempt        integer     NOT NULL DEFAULT 1,
    status_code    integer,
    duration_ms    integer,
    error          text,
    response_body  text,
    succeeded      boolean     GENERATED ALWAYS AS (coalesce(status_code BETWEEN 200 AND 299, false)) STORED,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhook_logs_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_logs_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT webhook_logs_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT webhook_logs_webhook_id_fkey FOREIGN KEY (tenant_id, webhook_id) REFERENCES public.webhooks (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT webhook_logs_event_type_check CHECK (event_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT webhook_logs_attempt_check CHECK (attempt BETWEEN 1 AND 100),
    CONSTRAINT webhook_logs_status_code_check CHECK (status_code BETWEEN 100 AND 599),
    CONSTRAINT webhook_logs_duration_ms_check CHECK (duration_ms >= 0),
    CONSTRAINT webhook_logs_response_body_check CHECK (length(response_body) <= 65536)
);
CREATE INDEX webhook_logs_tenant_webhook_created_idx ON public.webhook_logs (tenant_id, webhook_id, created_at DESC);
COMMENT ON TABLE public.webhook_logs IS
    'One row per delivery attempt of an event to a webhook (status code or error, duration). Platform admins all; tenant admins read and write their tenant''s; tenant users nothing.';
COMMENT ON COLUMN public.webhook_logs.status_code IS 'HTTP status of the endpoint''s answer; NULL when there was none (see error).';

CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.webhooks
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_soft_delete_guard BEFORE UPDATE ON public.webhooks
    FOR EACH ROW EXECUTE FUNCTION app.soft_delete_guard();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.webhook_logs
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

ALTER TABLE public.webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.webhooks FORCE ROW LEVEL SECURITY;
ALTER TABLE public.webhook_logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.webhook_logs FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.webhooks AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.webhooks IS 'Nobody reads or writes a webhook outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY webhooks_read_admins ON public.webhooks FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY webhooks_read_admins ON public.webhooks IS 'Tenant admins read their tenant''s webhooks (never the secret column); platform admins all. Tenant users: no policy, no rows.';
CREATE POLICY webhooks_write_admins ON public.webhooks FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY webhooks_write_admins ON public.webhooks IS 'Tenant admins create, change and soft-delete their tenant''s webhooks; platform admins all. Tenant users never.';

CREATE POLICY tenant_isolation ON public.webhook_logs AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.webhook_logs IS 'Nobody reads or writes a delivery log outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY webhook_logs_read_admins ON public.webhook_logs FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY webhook_logs_read_admins ON public.webhook_logs IS 'Tenant admins read their tenant''s delivery logs; platform admins all. Tenant users: no policy, no rows.';
CREATE POLICY webhook_logs_write_admins ON public.webhook_logs FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY webhook_logs_write_admins ON public.webhook_logs IS 'Tenant admins (and the delivery worker in their context) write their tenant''s logs; platform admins all. Tenant users never.';

-- Column privileges: everything but reading or updating secret.
GRANT SELECT (id, tenant_id, name, url, events, is_active, deleted_at, created_at, updated_at) ON public.webhooks TO rowcast_app;
GRANT INSERT (id, tenant_id, name, url, events, secret, is_active, deleted_at, created_at, updated_at) ON public.webhooks TO rowcast_app;
GRANT UPDATE (id, tenant_id, name, url, events, is_active, deleted_at, created_at, updated_at) ON public.webhooks TO rowcast_app;
GRANT DELETE ON public.webhooks TO rowcast_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.webhook_logs TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- rpc.webhook_regenerate_secret — SECURITY DEFINER because writing (and returning) the
-- secret column is exactly what rowcast_app may not do. The rules it crosses are replaced
-- by explicit checks: caller is a tenant admin or a platform admin (42501 otherwise), the
-- webhook is live and in the caller's tenant scope (22023 "not found" otherwise — the same
-- answer whether it is absent or another tenant's).
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION rpc.webhook_regenerate_secret(p_webhook_id uuid) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_secret text := app.new_webhook_secret();
BEGIN
    IF coalesce(app.current_user_role() NOT IN ('platform_admin', 'tenant_admin'), true) THEN
        RAISE EXCEPTION 'only tenant admins and platform admins may regenerate a webhook secret' USING ERRCODE = '42501';
    END IF;
    UPDATE public.webhooks w SET secret = v_secret
     WHERE w.id = p_webhook_id AND w.tenant_id = ANY (app.tenant_scope()) AND w.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'webhook % not found', p_webhook_id USING ERRCODE = '22023';
    END IF;
    RETURN v_secret;
END
$$;
COMMENT ON FUNCTION rpc.webhook_regenerate_secret(uuid) IS
    'Stores a fresh signing secret on a live webhook of the caller''s tenant and returns it — the only time it can be read. '
    'Tenant admins and platform admins only (42501); SECURITY DEFINER with a pinned search_path.';
REVOKE ALL ON FUNCTION rpc.webhook_regenerate_secret(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rpc.webhook_regenerate_secret(uuid) TO rowcast_app;

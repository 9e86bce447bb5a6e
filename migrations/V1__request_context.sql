-- V1: schemas, the request context and the functions every policy reads it through.
--
-- The server connects as `rowcast_app` (created by `rowcast migrate` before this runs) and,
-- inside each request transaction, calls app.begin_request(user, tenant) once. That function
-- resolves the caller's role FROM THE DATABASE (never from the token) and stores three
-- transaction-local settings. Policies read them only through the STABLE functions below,
-- always wrapped as `(SELECT app.fn())` so the planner evaluates them once per statement.
--
-- No context => every reader function returns NULL => every policy is false => zero rows.

CREATE SCHEMA IF NOT EXISTS app;
COMMENT ON SCHEMA app IS 'rowcast internals: request context, event log, realtime configuration. Not exposed over REST.';
CREATE SCHEMA IF NOT EXISTS rpc;
COMMENT ON SCHEMA rpc IS 'Domain actions exposed as POST /rest/rpc/{function}. SECURITY INVOKER unless crossing a rule is the point.';

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public, app, rpc TO rowcast_app;

-- Functions are not executable by PUBLIC unless a migration grants it explicitly.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Readers of the context. NULL when unset or empty (a reverted transaction-local setting
-- reads back as '').
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.current_tenant_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;
COMMENT ON FUNCTION app.current_tenant_id() IS 'Tenant of the current request, or NULL (no context, or a platform admin outside any tenant).';

CREATE FUNCTION app.current_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.user_id', true), '')::uuid $$;
COMMENT ON FUNCTION app.current_user_id() IS 'User of the current request, or NULL.';

CREATE FUNCTION app.current_user_role() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.role', true), '') $$;
COMMENT ON FUNCTION app.current_user_role() IS 'Effective role of the current request: platform_admin, tenant_admin, tenant_user, or NULL.';

CREATE FUNCTION app.is_platform_admin() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(nullif(current_setting('app.role', true), '') = 'platform_admin', false) $$;
COMMENT ON FUNCTION app.is_platform_admin() IS 'True only when the current request runs as a platform admin.';

GRANT EXECUTE ON FUNCTION app.current_tenant_id(), app.current_user_id(),
    app.current_user_role(), app.is_platform_admin() TO PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Platform tables: tenants, users, memberships.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.touch_updated_at() IS 'BEFORE UPDATE trigger body: keeps updated_at current on every table.';

CREATE TABLE public.tenants (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_pkey PRIMARY KEY (id),
    CONSTRAINT tenants_name_key UNIQUE (name),
    CONSTRAINT tenants_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200)
);
COMMENT ON TABLE public.tenants IS 'Customers of the platform. Every tenant table points here. Readable by its members, writable by platform admins.';

CREATE TABLE public.users (
    id             uuid        NOT NULL DEFAULT gen_random_uuid(),
    email          text        NOT NULL,
    name           text        NOT NULL,
    platform_role  text,
    is_active      boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_platform_role_check CHECK (platform_role IN ('platform_admin')),
    CONSTRAINT users_email_check CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    CONSTRAINT users_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200)
);
CREATE UNIQUE INDEX users_email_key ON public.users (lower(email));
COMMENT ON TABLE public.users IS 'People who log in. platform_role = platform_admin makes a platform admin; tenant roles live on memberships.';
COMMENT ON COLUMN public.users.platform_role IS 'NULL for ordinary users; platform_admin for operators of the whole platform. Only platform admins may change it.';

CREATE TABLE public.memberships (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL,
    role        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT memberships_pkey PRIMARY KEY (id),
    CONSTRAINT memberships_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT memberships_tenant_user_key UNIQUE (tenant_id, user_id),
    CONSTRAINT memberships_role_check CHECK (role IN ('tenant_admin', 'tenant_user')),
    CONSTRAINT memberships_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT memberships_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users (id) ON DELETE CASCADE
);
CREATE INDEX memberships_user_id_idx ON public.memberships (user_id);
COMMENT ON TABLE public.memberships IS 'Which user belongs to which tenant, with which tenant role (tenant_admin, tenant_user).';

CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.tenants
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.memberships
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- ---------------------------------------------------------------------------------------
-- Tenant scope: the tenants the current request may touch.
--   in a tenant            => {that tenant}
--   platform admin, none   => every tenant
--   no context             => NULL (so `tenant_id = ANY(NULL)` is never true)
-- `tenant_id = ANY((SELECT app.tenant_scope()))` is index-friendly (one initplan, then an
-- index condition), which an `OR is_platform_admin()` arm would not be.
-- SECURITY DEFINER because it reads public.tenants, whose own policy calls it.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.tenant_scope() RETURNS uuid[]
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT CASE
        WHEN app.current_user_id() IS NULL THEN NULL
        WHEN app.current_tenant_id() IS NOT NULL THEN ARRAY[app.current_tenant_id()]
        WHEN app.is_platform_admin() THEN ARRAY(SELECT t.id FROM public.tenants t)
        ELSE NULL
    END
$$;
COMMENT ON FUNCTION app.tenant_scope() IS 'Tenants the current request may see: its tenant; every tenant for a platform admin outside any tenant; NULL without context.';
GRANT EXECUTE ON FUNCTION app.tenant_scope() TO PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Policies on the platform tables.
-- ---------------------------------------------------------------------------------------
ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tenants FORCE ROW LEVEL SECURITY;
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
ALTER TABLE public.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.memberships FORCE ROW LEVEL SECURITY;

CREATE POLICY tenants_read ON public.tenants FOR SELECT
    USING (id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenants_read ON public.tenants IS 'Members read the tenant they are in; platform admins read every tenant in scope.';

CREATE POLICY tenants_insert_platform_admins ON public.tenants FOR INSERT
    WITH CHECK ((SELECT app.is_platform_admin()));
COMMENT ON POLICY tenants_insert_platform_admins ON public.tenants IS 'Only platform admins create tenants.';

CREATE POLICY tenants_update_platform_admins ON public.tenants FOR UPDATE
    USING ((SELECT app.is_platform_admin()) AND id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK ((SELECT app.is_platform_admin()));
COMMENT ON POLICY tenants_update_platform_admins ON public.tenants IS 'Only platform admins rename tenants.';

CREATE POLICY tenants_delete_platform_admins ON public.tenants FOR DELETE
    USING ((SELECT app.is_platform_admin()) AND id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenants_delete_platform_admins ON public.tenants IS 'Only platform admins delete tenants.';

-- Memberships: the classic tenant table shape. A RESTRICTIVE tenant_isolation policy bounds
-- every command to the tenant scope (USING and WITH CHECK, so a row can neither be written
-- into nor moved to another tenant); PERMISSIVE policies then grant by role.
CREATE POLICY tenant_isolation ON public.memberships AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.memberships IS 'Nobody touches memberships outside their tenant scope.';

CREATE POLICY memberships_read ON public.memberships FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY memberships_read ON public.memberships IS 'Every member reads the memberships of their tenant.';

CREATE POLICY memberships_write_admins ON public.memberships FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY memberships_write_admins ON public.memberships IS 'Tenant admins manage their own tenant''s memberships; platform admins all.';

-- Users are not tenant rows: one user may belong to several tenants.
CREATE POLICY users_read ON public.users FOR SELECT
    USING (
        id = (SELECT app.current_user_id())
        OR (SELECT app.is_platform_admin())
        OR EXISTS (
            SELECT 1 FROM public.memberships m
            WHERE m.user_id = users.id
              AND m.tenant_id = ANY ((SELECT app.tenant_scope())::uuid[])
        )
    );
COMMENT ON POLICY users_read ON public.users IS 'A user reads themself and the users of the tenant they are in; platform admins read all.';

CREATE POLICY users_update_self ON public.users FOR UPDATE
    USING (id = (SELECT app.current_user_id()))
    WITH CHECK (id = (SELECT app.current_user_id()));
COMMENT ON POLICY users_update_self ON public.users IS 'A user updates their own row (the guard trigger keeps platform_role and is_active out of reach).';

CREATE POLICY users_write_platform_admins ON public.users FOR ALL
    USING ((SELECT app.is_platform_admin()))
    WITH CHECK ((SELECT app.is_platform_admin()));
COMMENT ON POLICY users_write_platform_admins ON public.users IS 'Platform admins create, update and delete any user.';

CREATE FUNCTION app.users_guard_privileged_columns() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF (NEW.platform_role IS DISTINCT FROM OLD.platform_role
        OR NEW.is_active IS DISTINCT FROM OLD.is_active)
       AND NOT app.is_platform_admin()
       AND app.current_user_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only platform admins may change platform_role or is_active'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.users_guard_privileged_columns() IS 'Stops a user from promoting or re-activating themself through users_update_self.';
CREATE TRIGGER rowcast_guard_privileged_columns BEFORE UPDATE ON public.users
    FOR EACH ROW EXECUTE FUNCTION app.users_guard_privileged_columns();

GRANT SELECT, INSERT, UPDATE, DELETE ON public.tenants, public.users, public.memberships TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- begin_request: the single entry point of every request transaction.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.begin_request(p_user_id uuid, p_tenant_id uuid DEFAULT NULL)
RETURNS TABLE (user_id uuid, tenant_id uuid, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_user    public.users%ROWTYPE;
    v_tenant  uuid := p_tenant_id;
    v_role    text;
    v_count   integer;
BEGIN
    IF p_user_id IS NULL THEN
        RAISE EXCEPTION 'no user given' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v_user FROM public.users u WHERE u.id = p_user_id;
    IF NOT FOUND OR NOT v_user.is_active THEN
        RAISE EXCEPTION 'user % is unknown or disabled', p_user_id USING ERRCODE = '42501';
    END IF;

    IF v_user.platform_role = 'platform_admin' THEN
        v_role := 'platform_admin';
        IF v_tenant IS NOT NULL AND NOT EXISTS (SELECT 1 FROM public.tenants t WHERE t.id = v_tenant) THEN
            RAISE EXCEPTION 'tenant % does not exist', v_tenant USING ERRCODE = '42501';
        END IF;
    ELSIF v_tenant IS NULL THEN
        SELECT count(*), min(m.tenant_id::text)::uuid, min(m.role)
          INTO v_count, v_tenant, v_role
          FROM public.memberships m WHERE m.user_id = p_user_id;
        IF v_count = 0 THEN
            RAISE EXCEPTION 'user % belongs to no tenant', p_user_id USING ERRCODE = '42501';
        ELSIF v_count > 1 THEN
            RAISE EXCEPTION 'tenant required: the user belongs to % tenants', v_count
                USING ERRCODE = '22023', HINT = 'Send the X-Tenant-ID header or the tenantId query parameter.';
        END IF;
    ELSE
        SELECT m.role INTO v_role FROM public.memberships m
         WHERE m.user_id = p_user_id AND m.tenant_id = v_tenant;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'user % is not a member of tenant %', p_user_id, v_tenant USING ERRCODE = '42501';
        END IF;
    END IF;

    PERFORM set_config('app.user_id', p_user_id::text, true),
            set_config('app.tenant_id', coalesce(v_tenant::text, ''), true),
            set_config('app.role', v_role, true);
    RETURN QUERY SELECT p_user_id, v_tenant, v_role;
END
$$;
COMMENT ON FUNCTION app.begin_request(uuid, uuid) IS
    'Called once at the start of every request transaction. Resolves the effective role from users/memberships, '
    'checks the user may enter the tenant (platform admins may enter any tenant, or none; a NULL tenant means the '
    'user''s only membership), sets app.user_id/app.tenant_id/app.role transaction-locally, raises 42501 otherwise.';
REVOKE ALL ON FUNCTION app.begin_request(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.begin_request(uuid, uuid) TO rowcast_app;

-- act_as: the same for a DBA in psql, inside BEGIN ... ROLLBACK. It also switches the
-- transaction to the rowcast_app role, because a superuser would otherwise bypass RLS.
CREATE FUNCTION app.act_as(p_user_id uuid, p_tenant_id uuid DEFAULT NULL)
RETURNS TABLE (user_id uuid, tenant_id uuid, role text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = ''
AS $$
BEGIN
    RETURN QUERY SELECT * FROM app.begin_request(p_user_id, p_tenant_id);
    PERFORM set_config('role', 'rowcast_app', true);
END
$$;
COMMENT ON FUNCTION app.act_as(uuid, uuid) IS
    'For DBAs: BEGIN; SELECT * FROM app.act_as(user, tenant); SELECT ... ; ROLLBACK; -- see exactly what that user sees.';

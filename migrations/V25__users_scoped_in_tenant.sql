-- V25: a platform admin inside a tenant is scoped to it for `users` too (issue 14, item 3;
-- SPEC §3.2).
--
-- Before: users_read and users_write_platform_admins tested only is_platform_admin(), so a
-- platform admin holding a tenant-restricted token (or sending X-Tenant-ID) still read every
-- email on the platform and changed anyone's platform_role / is_active. Every other table
-- already scoped them to the tenant they entered; now `users` does too:
--   outside any tenant: every user, read and write (unchanged);
--   inside tenant T:    the members of T (and themself), read and update; no INSERT (new
--                       people come in through rpc.invite_user) and no DELETE of accounts
--                       that belong to other tenants too.

-- Members of the request's tenant scope (SECURITY DEFINER: it reads memberships, whose own
-- policy would otherwise apply to the caller).
CREATE FUNCTION app.is_member_in_scope(p_user uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM public.memberships m
         WHERE m.user_id = p_user AND m.tenant_id = ANY (app.tenant_scope())
    )
$$;
COMMENT ON FUNCTION app.is_member_in_scope(uuid) IS 'True when the user is a member of a tenant in the current request''s scope.';
REVOKE ALL ON FUNCTION app.is_member_in_scope(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.is_member_in_scope(uuid) TO rowcast_app;

-- True for a platform admin outside any tenant: the only context with platform-wide reach.
CREATE FUNCTION app.is_platform_wide() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT app.is_platform_admin() AND app.current_tenant_id() IS NULL $$;
COMMENT ON FUNCTION app.is_platform_wide() IS 'A platform admin outside any tenant (platform-wide reach); false inside a tenant.';
GRANT EXECUTE ON FUNCTION app.is_platform_wide() TO PUBLIC;

DROP POLICY users_read ON public.users;
CREATE POLICY users_read ON public.users FOR SELECT
    USING (
        id = (SELECT app.current_user_id())
        OR (SELECT app.is_platform_wide())
        OR EXISTS (
            SELECT 1 FROM public.memberships m
            WHERE m.user_id = users.id
              AND m.tenant_id = ANY ((SELECT app.tenant_scope())::uuid[])
        )
    );
COMMENT ON POLICY users_read ON public.users IS
    'A user reads themself and the users of the tenant they are in; platform admins outside any tenant read all.';

DROP POLICY users_write_platform_admins ON public.users;
CREATE POLICY users_write_platform_admins ON public.users FOR ALL
    USING ((SELECT app.is_platform_wide()))
    WITH CHECK ((SELECT app.is_platform_wide()));
COMMENT ON POLICY users_write_platform_admins ON public.users IS
    'Platform admins outside any tenant create, update and delete any user.';

CREATE POLICY users_update_platform_admins_in_tenant ON public.users FOR UPDATE
    USING ((SELECT app.is_platform_admin()) AND app.is_member_in_scope(id))
    WITH CHECK ((SELECT app.is_platform_admin()) AND app.is_member_in_scope(id));
COMMENT ON POLICY users_update_platform_admins_in_tenant ON public.users IS
    'A platform admin inside a tenant updates that tenant''s members only (platform_role and is_active included).';

-- V8: rpc.invite_user — how a tenant admin brings someone into their tenant.
--
-- Why SECURITY DEFINER: a tenant admin may not create users (users_write_platform_admins)
-- and may not even see a user who belongs to no tenant of theirs, yet inviting needs both:
-- find the user by email anywhere, create them if unknown. That is the one rule this
-- function crosses; everything else is checked inside, explicitly:
--   * caller: a tenant admin of the CURRENT tenant, or a platform admin inside a tenant
--     (42501 otherwise; a platform admin outside any tenant gets 22023 "needs a tenant").
--   * tenant: always app.current_tenant_id() — there is no tenant parameter to abuse.
--   * role granted: tenant_admin or tenant_user only. platform_admin is never grantable
--     here (42501), by anyone: platform admins are made with
--     `rowcast admin create-platform-admin`.
--   * an existing user keeps their name and platform role; only the membership is added.
--     Already a member: 23505 memberships_tenant_user_key (409 "already a member").
-- The request context is trusted exactly as the policies trust it (set by begin_request).

CREATE FUNCTION rpc.invite_user(p_email text, p_name text, p_role text DEFAULT 'tenant_user') RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_tenant  uuid := app.current_tenant_id();
    v_caller  text := app.current_user_role();
    v_email   text := btrim(p_email);
    v_user    uuid;
BEGIN
    IF v_caller IS NULL OR v_caller NOT IN ('tenant_admin', 'platform_admin') THEN
        RAISE EXCEPTION 'only tenant admins and platform admins may invite users' USING ERRCODE = '42501';
    END IF;
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'invite_user needs a tenant: the user is invited into the current tenant' USING ERRCODE = '22023',
            HINT = 'Send the X-Tenant-ID header.';
    END IF;
    IF p_role = 'platform_admin' THEN
        RAISE EXCEPTION 'invite_user cannot grant platform_admin' USING ERRCODE = '42501',
            HINT = 'Platform admins are created with `rowcast admin create-platform-admin`.';
    END IF;
    IF p_role IS NULL OR p_role NOT IN ('tenant_admin', 'tenant_user') THEN
        RAISE EXCEPTION 'unknown tenant role: % (tenant_admin or tenant_user)', coalesce(p_role, 'null') USING ERRCODE = '22023';
    END IF;
    IF v_email IS NULL OR v_email = '' THEN
        RAISE EXCEPTION 'invite_user needs an email' USING ERRCODE = '22023';
    END IF;

    SELECT u.id INTO v_user FROM public.users u WHERE lower(u.email) = lower(v_email);
    IF NOT FOUND THEN
        INSERT INTO public.users (email, name) VALUES (v_email, coalesce(nullif(btrim(p_name), ''), v_email))
        RETURNING id INTO v_user;
    END IF;
    INSERT INTO public.memberships (tenant_id, user_id, role) VALUES (v_tenant, v_user, p_role);
    RETURN v_user;
END
$$;
COMMENT ON FUNCTION rpc.invite_user(text, text, text) IS
    'Adds a user (created when the email is unknown) to the current tenant as tenant_admin or tenant_user; returns the user id. '
    'Tenant admins of the current tenant and platform admins inside a tenant only (42501). SECURITY DEFINER with a pinned search_path.';
REVOKE ALL ON FUNCTION rpc.invite_user(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rpc.invite_user(text, text, text) TO rowcast_app;

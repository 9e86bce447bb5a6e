-- V24: pending invitations (issue 14, item 2; SPEC §3.2).
--
-- Before: rpc.invite_user (and a tenant admin's direct INSERT into memberships) added any
-- existing account, found by email, to the inviter's tenant at once. That pulled accounts
-- into tenants they never chose, told the inviter the account existed (and its platform
-- role), and broke the victim's implicit-tenant requests (400 "belongs to 2 tenants").
--
-- Now:
--   * rpc.invite_user creates a PENDING invitation (public.invitations: tenant, email, role,
--     expiry) and returns its id — whether or not the email has an account, the answer has
--     the same shape and says nothing about it. An unknown email gets an account without
--     any membership (so its owner can sign in and answer); an existing account is not
--     touched.
--   * the invitee sees the invitations addressed to their email (in any request context)
--     and calls rpc.invitation_accept(id) or rpc.invitation_decline(id). Only acceptance
--     creates the membership.
--   * tenant admins no longer INSERT memberships (only platform admins do, and the
--     acceptance above); they may still change a member's role or remove a member, but
--     never move a membership to another user or tenant (UPDATE is granted on `role` only).
--   * a user with no membership at all may sign in outside any tenant with role `none`:
--     they see their own user row and their invitations, nothing else (every policy that
--     grants by role lists real roles only).

-- ---------------------------------------------------------------------------------------
-- The table.
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.invitations (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid        NOT NULL DEFAULT app.current_tenant_id(),
    tenant_name   text        NOT NULL,
    email         text        NOT NULL,
    role          text        NOT NULL DEFAULT 'tenant_user',
    status        text        NOT NULL DEFAULT 'pending',
    invited_by    uuid,
    expires_at    timestamptz NOT NULL DEFAULT now() + interval '7 days',
    responded_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT invitations_pkey PRIMARY KEY (id),
    CONSTRAINT invitations_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT invitations_role_check CHECK (role IN ('tenant_admin', 'tenant_user')),
    CONSTRAINT invitations_status_check CHECK (status IN ('pending', 'accepted', 'declined')),
    CONSTRAINT invitations_email_check CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    CONSTRAINT invitations_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT invitations_invited_by_fkey FOREIGN KEY (invited_by) REFERENCES public.users (id) ON DELETE SET NULL
);
CREATE UNIQUE INDEX invitations_tenant_pending_email_key ON public.invitations (tenant_id, lower(email)) WHERE status = 'pending';
CREATE INDEX invitations_email_idx ON public.invitations (lower(email));
CREATE INDEX invitations_invited_by_idx ON public.invitations (invited_by);
COMMENT ON TABLE public.invitations IS
    'Pending, accepted and declined invitations into a tenant. Created by rpc.invite_user; answered by the invitee with '
    'rpc.invitation_accept / rpc.invitation_decline; only acceptance creates the membership.';
COMMENT ON COLUMN public.invitations.tenant_name IS 'The tenant''s name when invited, so the invitee (not yet a member) knows where to.';
COMMENT ON COLUMN public.invitations.email IS 'Who is invited. The invitee is the account with this email (emails are guarded: V22).';
COMMENT ON COLUMN public.invitations.expires_at IS 'After this, the invitation can no longer be accepted; inviting again renews it.';
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.invitations
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- The current user's email, for the invitee policy (users_read would allow it, but a
-- definer function keeps the policy one cheap initplan).
CREATE FUNCTION app.current_user_email() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$ SELECT lower(u.email) FROM public.users u WHERE u.id = app.current_user_id() $$;
COMMENT ON FUNCTION app.current_user_email() IS 'Lower-cased email of the current request''s user, or NULL without context.';
REVOKE ALL ON FUNCTION app.current_user_email() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.current_user_email() TO rowcast_app;

ALTER TABLE public.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invitations FORCE ROW LEVEL SECURITY;

-- Not the usual restrictive tenant_isolation: the invitee is, by definition, not yet in the
-- tenant. Each permissive policy bounds itself.
CREATE POLICY invitations_read_admins ON public.invitations FOR SELECT
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[])
           AND (SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY invitations_read_admins ON public.invitations IS
    'Tenant admins (and platform admins in scope) read the invitations of their tenant.';

CREATE POLICY invitations_read_invitee ON public.invitations FOR SELECT
    USING (lower(email) = (SELECT app.current_user_email()));
COMMENT ON POLICY invitations_read_invitee ON public.invitations IS
    'The invitee reads the invitations addressed to their email, from any request context.';

CREATE POLICY invitations_delete_admins ON public.invitations FOR DELETE
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[])
           AND (SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY invitations_delete_admins ON public.invitations IS
    'Tenant admins withdraw their tenant''s invitations. Nobody INSERTs or UPDATEs directly: rpc.invite_user and the answers do.';

GRANT SELECT, DELETE ON public.invitations TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Memberships: only platform admins insert; admins change `role` only.
-- ---------------------------------------------------------------------------------------
DROP POLICY memberships_write_admins ON public.memberships;

CREATE POLICY memberships_insert_platform_admins ON public.memberships FOR INSERT
    WITH CHECK ((SELECT app.is_platform_admin()));
COMMENT ON POLICY memberships_insert_platform_admins ON public.memberships IS
    'Memberships are created by platform admins, or by the invitee accepting an invitation (rpc.invitation_accept); '
    'a tenant admin cannot pull an existing account into their tenant.';

CREATE POLICY memberships_update_admins ON public.memberships FOR UPDATE
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY memberships_update_admins ON public.memberships IS
    'Tenant admins change the role of their tenant''s members (only `role` is updatable).';

CREATE POLICY memberships_delete_admins ON public.memberships FOR DELETE
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY memberships_delete_admins ON public.memberships IS
    'Tenant admins remove members from their tenant; platform admins from any tenant in scope.';

-- A membership never changes hands: moving it to another user would pull that user in.
REVOKE UPDATE ON public.memberships FROM rowcast_app;
GRANT UPDATE (role) ON public.memberships TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- begin_request: a user without any membership may enter no tenant, with role `none`.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION app.begin_request(p_user_id uuid, p_tenant_id uuid DEFAULT NULL)
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
            -- Signed in, but in no tenant: their own row and their invitations only.
            v_role := 'none';
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
    'user''s only membership, or role `none` outside any tenant for a user with no membership), sets '
    'app.user_id/app.tenant_id/app.role transaction-locally, raises 42501 otherwise.';

-- ---------------------------------------------------------------------------------------
-- rpc.invite_user: a pending invitation, nothing else.
-- ---------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION rpc.invite_user(p_email text, p_name text, p_role text DEFAULT 'tenant_user') RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_tenant  uuid := app.current_tenant_id();
    v_caller  text := app.current_user_role();
    v_email   text := btrim(p_email);
    v_id      uuid;
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
    IF v_email IS NULL OR v_email !~ '^[^@\s]+@[^@\s]+$' THEN
        RAISE EXCEPTION 'invite_user needs an email address' USING ERRCODE = '22023';
    END IF;
    -- The inviter can already see their own tenant's members: saying so leaks nothing.
    IF EXISTS (SELECT 1 FROM public.memberships m JOIN public.users u ON u.id = m.user_id
                WHERE m.tenant_id = v_tenant AND lower(u.email) = lower(v_email)) THEN
        RAISE EXCEPTION 'already a member of this tenant' USING ERRCODE = '23505',
            CONSTRAINT = 'memberships_tenant_user_key';
    END IF;

    -- An unknown email gets an account with no membership, so its owner can sign in and
    -- answer. Nothing in the reply tells the inviter which case this was.
    INSERT INTO public.users (email, name) VALUES (v_email, coalesce(nullif(btrim(p_name), ''), v_email))
    ON CONFLICT (lower(email)) DO NOTHING;

    -- Inviting again renews the pending invitation (role, expiry) instead of failing.
    INSERT INTO public.invitations AS i (tenant_id, tenant_name, email, role, invited_by)
    SELECT v_tenant, t.name, v_email, p_role, app.current_user_id() FROM public.tenants t WHERE t.id = v_tenant
    ON CONFLICT (tenant_id, lower(email)) WHERE status = 'pending'
    DO UPDATE SET role = EXCLUDED.role, invited_by = EXCLUDED.invited_by, expires_at = EXCLUDED.expires_at
    RETURNING i.id INTO v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION rpc.invite_user(text, text, text) IS
    'Invites an email into the current tenant as tenant_admin or tenant_user: creates (or renews) a PENDING invitation and '
    'returns its id; the invitee accepts or declines it. Says nothing about whether the email has an account. Tenant admins '
    'of the current tenant and platform admins inside a tenant only (42501). SECURITY DEFINER with a pinned search_path.';

-- ---------------------------------------------------------------------------------------
-- The invitee's answers. SECURITY DEFINER: the invitee is not a member of the tenant yet,
-- so they could not insert the membership themselves. Checked inside: the invitation is
-- addressed to the caller's own email, still pending, not expired.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.own_pending_invitation(p_id uuid) RETURNS public.invitations
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_inv public.invitations%ROWTYPE;
BEGIN
    IF app.current_user_id() IS NULL THEN
        RAISE EXCEPTION 'answering an invitation needs a signed-in user' USING ERRCODE = '42501';
    END IF;
    SELECT * INTO v_inv FROM public.invitations i
     WHERE i.id = p_id AND lower(i.email) = app.current_user_email()
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no invitation % for you', p_id USING ERRCODE = '42501';
    END IF;
    IF v_inv.status <> 'pending' THEN
        RAISE EXCEPTION 'this invitation was already %', v_inv.status USING ERRCODE = 'P0001';
    END IF;
    IF v_inv.expires_at <= now() THEN
        RAISE EXCEPTION 'this invitation expired at %', v_inv.expires_at USING ERRCODE = 'P0001',
            HINT = 'Ask the tenant''s admin to invite you again.';
    END IF;
    RETURN v_inv;
END
$$;
COMMENT ON FUNCTION app.own_pending_invitation(uuid) IS
    'The caller''s own pending, unexpired invitation, locked; 42501 when it is not theirs, P0001 when answered or expired.';
REVOKE ALL ON FUNCTION app.own_pending_invitation(uuid) FROM PUBLIC;

CREATE FUNCTION rpc.invitation_accept(p_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_inv public.invitations%ROWTYPE := app.own_pending_invitation(p_id);
BEGIN
    INSERT INTO public.memberships (tenant_id, user_id, role)
    VALUES (v_inv.tenant_id, app.current_user_id(), v_inv.role)
    ON CONFLICT ON CONSTRAINT memberships_tenant_user_key DO NOTHING;
    UPDATE public.invitations i SET status = 'accepted', responded_at = now() WHERE i.id = v_inv.id;
    RETURN v_inv.tenant_id;
END
$$;
COMMENT ON FUNCTION rpc.invitation_accept(uuid) IS
    'The invitee accepts their pending invitation: the membership is created with the invited role; returns the tenant id. '
    'SECURITY DEFINER (the invitee is not a member yet) with the checks of app.own_pending_invitation.';

CREATE FUNCTION rpc.invitation_decline(p_id uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_inv public.invitations%ROWTYPE := app.own_pending_invitation(p_id);
BEGIN
    UPDATE public.invitations i SET status = 'declined', responded_at = now() WHERE i.id = v_inv.id;
    RETURN v_inv.id;
END
$$;
COMMENT ON FUNCTION rpc.invitation_decline(uuid) IS
    'The invitee declines their pending invitation; no membership is created; returns the invitation id.';

REVOKE ALL ON FUNCTION rpc.invitation_accept(uuid), rpc.invitation_decline(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rpc.invitation_accept(uuid), rpc.invitation_decline(uuid) TO rowcast_app;

-- Captured like every table: tenant admins see their tenant's invitations come and go.
SELECT app.enable_realtime('public.invitations', 'invitation', '{platform_admin,tenant_admin}');

-- V22: a user may not change their own email.
--
-- Emails are how invitations (rpc.invite_user) and the admin commands find an existing
-- account: a user who could rename their email to an address not yet used (admin@newco.test)
-- would be handed the tenant membership, or the platform role, meant for its real owner.
-- So, like platform_role and is_active, email is changed only by platform admins (or by the
-- owner role outside any request, e.g. `rowcast admin`).
CREATE OR REPLACE FUNCTION app.users_guard_privileged_columns() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF (NEW.platform_role IS DISTINCT FROM OLD.platform_role
        OR NEW.is_active IS DISTINCT FROM OLD.is_active
        OR lower(NEW.email) IS DISTINCT FROM lower(OLD.email))
       AND NOT app.is_platform_admin()
       AND app.current_user_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only platform admins may change email, platform_role or is_active'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.users_guard_privileged_columns() IS
    'Stops a user from changing their email (invitations match accounts by email), promoting or re-activating themself through users_update_self.';

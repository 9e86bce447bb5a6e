-- V3: the address book — contacts, groups, group_contacts — plus soft delete and the two
-- group membership actions rpc.group_add_contacts / rpc.group_remove_contacts.
--
-- Role matrix (SPEC §3.2): platform admins all; tenant admins and tenant users read and
-- write their own tenant's rows.
--
-- Soft delete (contacts, groups; later message_templates, campaigns, webhooks):
--   * REST DELETE sets deleted_at = now() (an UPDATE, so the write policies apply).
--   * Reads hide soft-deleted rows unless the request filters on deleted_at explicitly.
--     That predicate (`deleted_at IS NULL`) is added by the REST layer, NOT by the read
--     policy: a policy hiding them would make the soft-delete UPDATE itself fail its
--     WITH CHECK (the new row would be invisible) and would forbid explicit reads of the
--     bin (`?deleted_at=not.is.null`) and restores.
--   * A soft-deleted row is frozen: the only change allowed on it is a restore
--     (deleted_at = NULL), enforced by rowcast_soft_delete_guard. Updates made by the
--     database's own triggers (counters, …) are let through.
--   * Unique keys apply to live rows only (partial unique indexes WHERE deleted_at IS NULL),
--     so a deleted contact's phone number can be reused; restoring it then trips the index.

-- ---------------------------------------------------------------------------------------
-- Soft-delete guard, shared by every soft-deletable table.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.soft_delete_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NOT NULL AND pg_trigger_depth() = 1
       AND (to_jsonb(NEW) - 'updated_at' - 'deleted_at') IS DISTINCT FROM (to_jsonb(OLD) - 'updated_at' - 'deleted_at') THEN
        RAISE EXCEPTION '% % is deleted: restore it (deleted_at = null) before changing it', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'P0001', HINT = 'PATCH deleted_at to null first.';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.soft_delete_guard() IS
    'BEFORE UPDATE trigger body on soft-deletable tables: a soft-deleted row may only be restored (deleted_at = NULL); '
    'any other change raises P0001. Changes made by nested triggers (pg_trigger_depth() > 1) pass.';

-- ---------------------------------------------------------------------------------------
-- contacts
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.contacts (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL,
    phone       text        NOT NULL,
    first_name  text,
    last_name   text,
    email       text,
    language    text,
    attributes  jsonb       NOT NULL DEFAULT '{}',
    opted_out   boolean     NOT NULL DEFAULT false,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_pkey PRIMARY KEY (id),
    CONSTRAINT contacts_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT contacts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT contacts_phone_check CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT contacts_first_name_check CHECK (length(first_name) <= 200),
    CONSTRAINT contacts_last_name_check CHECK (length(last_name) <= 200),
    CONSTRAINT contacts_email_check CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    CONSTRAINT contacts_language_check CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT contacts_attributes_check CHECK (jsonb_typeof(attributes) = 'object')
);
-- One LIVE contact per phone number per tenant (a soft-deleted one does not block reuse).
CREATE UNIQUE INDEX contacts_tenant_phone_key ON public.contacts (tenant_id, phone) WHERE deleted_at IS NULL;
CREATE INDEX contacts_tenant_id_created_at_idx ON public.contacts (tenant_id, created_at);
COMMENT ON TABLE public.contacts IS
    'People a tenant messages. Platform admins all; tenant admins and users read and write their tenant''s. '
    'Soft delete: deleted_at (REST reads hide deleted rows unless the request filters on deleted_at).';
COMMENT ON COLUMN public.contacts.phone IS 'E.164 number (+ and 7 to 15 digits). Unique among the tenant''s live contacts.';
COMMENT ON COLUMN public.contacts.attributes IS 'Free-form JSON object; its keys are available as template variables.';
COMMENT ON COLUMN public.contacts.deleted_at IS 'Soft delete: set by REST DELETE; NULL = live. REST reads hide deleted rows unless the request filters on deleted_at. A deleted row can only be restored.';
COMMENT ON INDEX public.contacts_tenant_phone_key IS 'One live contact per phone number per tenant.';

-- ---------------------------------------------------------------------------------------
-- groups
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.groups (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL,
    name         text        NOT NULL,
    description  text,
    deleted_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT groups_pkey PRIMARY KEY (id),
    CONSTRAINT groups_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT groups_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT groups_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200)
);
CREATE UNIQUE INDEX groups_tenant_name_key ON public.groups (tenant_id, lower(name)) WHERE deleted_at IS NULL;
COMMENT ON TABLE public.groups IS
    'Named sets of contacts, the audience of campaigns. Platform admins all; tenant admins and users read and write their tenant''s. Soft delete: deleted_at.';
COMMENT ON COLUMN public.groups.deleted_at IS 'Soft delete: set by REST DELETE; NULL = live. REST reads hide deleted rows unless the request filters on deleted_at. A deleted row can only be restored.';
COMMENT ON INDEX public.groups_tenant_name_key IS 'Live group names are unique per tenant, case-insensitively.';

-- ---------------------------------------------------------------------------------------
-- group_contacts: membership of a contact in a group. Both references are composite
-- (tenant_id, …) foreign keys, so a group can only ever hold contacts of its own tenant —
-- whatever RLS lets the writer see (foreign-key checks bypass RLS).
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.group_contacts (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid        NOT NULL,
    group_id    uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT group_contacts_pkey PRIMARY KEY (id),
    CONSTRAINT group_contacts_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT group_contacts_group_contact_key UNIQUE (tenant_id, group_id, contact_id),
    CONSTRAINT group_contacts_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT group_contacts_group_id_fkey FOREIGN KEY (tenant_id, group_id) REFERENCES public.groups (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT group_contacts_contact_id_fkey FOREIGN KEY (tenant_id, contact_id) REFERENCES public.contacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX group_contacts_tenant_contact_idx ON public.group_contacts (tenant_id, contact_id);
COMMENT ON TABLE public.group_contacts IS
    'Contacts in groups (composite tenant foreign keys: same-tenant only). Platform admins all; tenant admins and users read and write their tenant''s. '
    'Hard delete: removing a contact from a group leaves no trace to restore.';

-- ---------------------------------------------------------------------------------------
-- Triggers, row-level security, policies, grants.
-- ---------------------------------------------------------------------------------------
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.contacts
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.groups
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.group_contacts
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_soft_delete_guard BEFORE UPDATE ON public.contacts
    FOR EACH ROW EXECUTE FUNCTION app.soft_delete_guard();
CREATE TRIGGER rowcast_soft_delete_guard BEFORE UPDATE ON public.groups
    FOR EACH ROW EXECUTE FUNCTION app.soft_delete_guard();

ALTER TABLE public.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contacts FORCE ROW LEVEL SECURITY;
ALTER TABLE public.groups ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.groups FORCE ROW LEVEL SECURITY;
ALTER TABLE public.group_contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.group_contacts FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.contacts AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.contacts IS 'Nobody reads or writes a contact outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY contacts_read ON public.contacts FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY contacts_read ON public.contacts IS 'Every member reads their tenant''s contacts, deleted ones included (REST hides those by default).';
CREATE POLICY contacts_write_members ON public.contacts FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY contacts_write_members ON public.contacts IS 'Every member creates, changes, soft-deletes and restores their tenant''s contacts.';

CREATE POLICY tenant_isolation ON public.groups AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.groups IS 'Nobody reads or writes a group outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY groups_read ON public.groups FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY groups_read ON public.groups IS 'Every member reads their tenant''s groups, deleted ones included (REST hides those by default).';
CREATE POLICY groups_write_members ON public.groups FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY groups_write_members ON public.groups IS 'Every member creates, changes, soft-deletes and restores their tenant''s groups.';

CREATE POLICY tenant_isolation ON public.group_contacts AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.group_contacts IS 'Nobody reads or writes group membership outside their tenant scope (the composite foreign keys then keep both ends in that tenant).';
CREATE POLICY group_contacts_read ON public.group_contacts FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY group_contacts_read ON public.group_contacts IS 'Every member reads who is in their tenant''s groups.';
CREATE POLICY group_contacts_write_members ON public.group_contacts FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY group_contacts_write_members ON public.group_contacts IS 'Every member adds contacts to and removes them from their tenant''s groups.';

GRANT SELECT, INSERT, UPDATE, DELETE ON public.contacts, public.groups, public.group_contacts TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- rpc.group_add_contacts / rpc.group_remove_contacts — SECURITY INVOKER: RLS decides which
-- group the caller can see, the composite foreign keys refuse another tenant's contact
-- (23503 group_contacts_contact_id_fkey), whoever the caller is.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION rpc.group_add_contacts(p_group_id uuid, p_contact_ids uuid[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_tenant  uuid;
    v_added   integer;
BEGIN
    IF p_group_id IS NULL OR p_contact_ids IS NULL THEN
        RAISE EXCEPTION 'group_add_contacts needs a group id and an array of contact ids' USING ERRCODE = '22023';
    END IF;
    SELECT g.tenant_id INTO v_tenant FROM public.groups g WHERE g.id = p_group_id AND g.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'group % not found', p_group_id USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM public.contacts c
               WHERE c.tenant_id = v_tenant AND c.id = ANY (p_contact_ids) AND c.deleted_at IS NOT NULL) THEN
        RAISE EXCEPTION 'deleted contacts cannot be added to a group' USING ERRCODE = '22023',
            HINT = 'Restore the contacts first.';
    END IF;
    INSERT INTO public.group_contacts (tenant_id, group_id, contact_id)
    SELECT DISTINCT v_tenant, p_group_id, c.id FROM unnest(p_contact_ids) AS c(id) WHERE c.id IS NOT NULL
    ON CONFLICT ON CONSTRAINT group_contacts_group_contact_key DO NOTHING;
    GET DIAGNOSTICS v_added = ROW_COUNT;
    RETURN v_added;
END
$$;
COMMENT ON FUNCTION rpc.group_add_contacts(uuid, uuid[]) IS
    'Adds contacts to a live group; returns how many were added (already-present ones are skipped). '
    'SECURITY INVOKER: RLS scopes the group, composite foreign keys refuse other tenants'' contacts (23503), deleted contacts are refused (22023).';

CREATE FUNCTION rpc.group_remove_contacts(p_group_id uuid, p_contact_ids uuid[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_removed  integer;
BEGIN
    IF p_group_id IS NULL OR p_contact_ids IS NULL THEN
        RAISE EXCEPTION 'group_remove_contacts needs a group id and an array of contact ids' USING ERRCODE = '22023';
    END IF;
    PERFORM 1 FROM public.groups g WHERE g.id = p_group_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'group % not found', p_group_id USING ERRCODE = '22023';
    END IF;
    DELETE FROM public.group_contacts gc WHERE gc.group_id = p_group_id AND gc.contact_id = ANY (p_contact_ids);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    RETURN v_removed;
END
$$;
COMMENT ON FUNCTION rpc.group_remove_contacts(uuid, uuid[]) IS
    'Removes contacts from a group; returns how many were removed. SECURITY INVOKER: RLS scopes what can be removed.';

GRANT EXECUTE ON FUNCTION rpc.group_add_contacts(uuid, uuid[]), rpc.group_remove_contacts(uuid, uuid[]) TO rowcast_app;

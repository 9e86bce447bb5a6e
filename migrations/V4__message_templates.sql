-- V4: message templates, tenant-owned or shared (tenant_id IS NULL), and the renderer that
-- fills their {{variables}}.
--
-- Role matrix (SPEC §3.2):
--   tenant rows   platform admins all; tenant admins and users read and write their tenant's.
--   shared rows   (tenant_id IS NULL) readable by every role in any tenant, written only by
--                 platform admins.
-- So tenant_isolation, the RESTRICTIVE bound, admits `tenant_id IS NULL` in USING (anyone may
-- look at shared rows, the permissive policies then decide) but in WITH CHECK only for
-- platform admins: nobody else can create a shared row or turn a tenant row into one.
-- Soft delete as for contacts (see V3).

CREATE TABLE public.message_templates (
    id          uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id   uuid,
    name        text        NOT NULL,
    language    text        NOT NULL DEFAULT 'en',
    category    text        NOT NULL DEFAULT 'marketing',
    body        text        NOT NULL,
    variables   text[]      NOT NULL DEFAULT '{}',
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT message_templates_pkey PRIMARY KEY (id),
    CONSTRAINT message_templates_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT message_templates_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT message_templates_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT message_templates_language_check CHECK (language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    CONSTRAINT message_templates_category_check CHECK (category IN ('marketing', 'utility', 'authentication')),
    CONSTRAINT message_templates_body_check CHECK (length(body) BETWEEN 1 AND 4096),
    CONSTRAINT message_templates_variables_check CHECK (
        cardinality(variables) <= 50
        AND array_position(variables, NULL) IS NULL
        AND (cardinality(variables) = 0 OR array_to_string(variables, ',') ~ '^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$'))
);
-- One live template per name and language per tenant; NULLS NOT DISTINCT makes the shared
-- rows (tenant_id NULL) one more namespace instead of an unconstrained one.
CREATE UNIQUE INDEX message_templates_tenant_name_language_key
    ON public.message_templates (tenant_id, lower(name), language) NULLS NOT DISTINCT
    WHERE deleted_at IS NULL;
COMMENT ON TABLE public.message_templates IS
    'Message bodies with {{variable}} placeholders. tenant_id NULL = shared template: every role reads it, only platform admins write it. '
    'Tenant rows: platform admins all; tenant admins and users read and write their tenant''s. Soft delete: deleted_at.';
COMMENT ON COLUMN public.message_templates.tenant_id IS 'Owning tenant, or NULL for a template shared with every tenant (platform admins only).';
COMMENT ON COLUMN public.message_templates.variables IS 'Names of the {{placeholders}} the body uses (documentation for senders; rendering does not depend on it).';
COMMENT ON COLUMN public.message_templates.deleted_at IS 'Soft delete: set by REST DELETE; NULL = live. REST reads hide deleted rows unless the request filters on deleted_at. A deleted row can only be restored.';
COMMENT ON INDEX public.message_templates_tenant_name_language_key IS 'One live template per name (case-insensitive) and language per tenant, and among shared templates.';

CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.message_templates
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_soft_delete_guard BEFORE UPDATE ON public.message_templates
    FOR EACH ROW EXECUTE FUNCTION app.soft_delete_guard();

ALTER TABLE public.message_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.message_templates FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.message_templates AS RESTRICTIVE FOR ALL
    USING (tenant_id IS NULL OR tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[])
                OR (tenant_id IS NULL AND (SELECT app.is_platform_admin())));
COMMENT ON POLICY tenant_isolation ON public.message_templates IS
    'Bounds every command to the tenant scope plus the shared rows; only platform admins may write a shared row (WITH CHECK). '
    'Whether a shared row may be changed is then up to the permissive policies.';

CREATE POLICY message_templates_read ON public.message_templates FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY message_templates_read ON public.message_templates IS 'Every member reads their tenant''s templates and the shared ones.';

CREATE POLICY message_templates_write_members ON public.message_templates FOR ALL
    USING (tenant_id IS NOT NULL AND (SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK (tenant_id IS NOT NULL AND (SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY message_templates_write_members ON public.message_templates IS 'Every member writes their tenant''s own templates — never a shared one.';

CREATE POLICY message_templates_write_platform_admins ON public.message_templates FOR ALL
    USING (tenant_id IS NULL AND (SELECT app.is_platform_admin()))
    WITH CHECK (tenant_id IS NULL AND (SELECT app.is_platform_admin()));
COMMENT ON POLICY message_templates_write_platform_admins ON public.message_templates IS 'Only platform admins create, change and delete shared templates (tenant_id IS NULL).';

GRANT SELECT, INSERT, UPDATE, DELETE ON public.message_templates TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Rendering: {{ name }} placeholders replaced by the values of a JSON object (missing keys
-- render as ''). Values are inserted literally: a value that itself looks like {{x}} is not
-- expanded again.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.render_template(p_body text, p_vars jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = ''
AS $$
DECLARE
    c_placeholder constant text := '\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}';
    v_parts  text[] := regexp_split_to_array(p_body, c_placeholder);
    v_names  text[] := ARRAY(SELECT m[1] FROM regexp_matches(p_body, c_placeholder, 'g') AS m);
    v_out    text := v_parts[1];
BEGIN
    FOR i IN 1 .. coalesce(cardinality(v_names), 0) LOOP
        v_out := v_out || coalesce(p_vars ->> v_names[i], '') || v_parts[i + 1];
    END LOOP;
    RETURN v_out;
END
$$;
COMMENT ON FUNCTION app.render_template(text, jsonb) IS 'Fills {{name}} placeholders of a template body from a JSON object; unknown names render as the empty string.';
GRANT EXECUTE ON FUNCTION app.render_template(text, jsonb) TO rowcast_app;

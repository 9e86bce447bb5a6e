-- V21: app.tenant_scope() in PL/pgSQL.
--
-- As a SECURITY DEFINER *SQL* function (V1) it cannot be inlined, and PostgreSQL parses and
-- plans its body on every call: a profile of REST reads showed ~20% of the server's CPU
-- there (fmgr_sql → pg_plan_query). PL/pgSQL caches the plan of its statements for the
-- session, so the same rule now costs a cached-plan execution. Behaviour is unchanged:
--   in a tenant            => {that tenant}
--   platform admin, none   => every tenant
--   no context             => NULL (so `tenant_id = ANY(NULL)` is never true)
CREATE OR REPLACE FUNCTION app.tenant_scope() RETURNS uuid[]
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_tenant uuid := app.current_tenant_id();
BEGIN
    IF app.current_user_id() IS NULL THEN
        RETURN NULL;
    ELSIF v_tenant IS NOT NULL THEN
        RETURN ARRAY[v_tenant];
    ELSIF app.is_platform_admin() THEN
        RETURN ARRAY(SELECT t.id FROM public.tenants t);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.tenant_scope() IS 'Tenants the current request may see: its tenant; every tenant for a platform admin outside any tenant; NULL without context.';

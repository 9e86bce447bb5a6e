-- V20: tenant_id defaults to the request's tenant.
--
-- Like Supabase's `DEFAULT auth.uid()`: a client inside a tenant may leave tenant_id out of
-- an INSERT (REST POST) and gets its own tenant. Naming another tenant is still refused by
-- the tenant_isolation policies' WITH CHECK. Without a tenant context (a platform admin
-- outside any tenant) the default is NULL: the NOT NULL constraint asks for an explicit
-- tenant, except on message_templates where NULL means a shared template.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::regclass AS tbl
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
         WHERE n.nspname = 'public' AND c.relkind = 'r'
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN tenant_id SET DEFAULT app.current_tenant_id()', t.tbl);
    END LOOP;
END
$$;

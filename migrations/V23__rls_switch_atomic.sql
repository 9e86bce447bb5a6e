-- V23: the emergency RLS switch, atomic (issue 14, item 1).
--
-- `rowcast admin rls disable --table t` used to run only `ALTER TABLE t DISABLE ROW LEVEL
-- SECURITY`: a running server kept serving `t` from its cached catalog until something
-- reloaded it, so every logged-in user read and wrote every tenant's rows in the meantime.
-- `enable` had the mirror bug (the table stayed off the API).
--
-- app.rls_switch(table, enable, reason) now does, in ONE transaction:
--   disable: save rowcast_app's privileges on the table (table-level AND column-level, with
--            their grant options) in app.rls_saved_grants, REVOKE them all, DISABLE and NO
--            FORCE row-level security, record the switch in app.rls_audit, NOTIFY
--            rowcast_reload. A server that has not reloaded yet still has no privilege on the
--            table (42501), so there is no moment in which the table is served without RLS.
--   enable:  ENABLE and FORCE row-level security, GRANT back exactly the saved privileges,
--            forget them, record, NOTIFY rowcast_reload.
-- NOTIFY is delivered at commit, so servers reload exactly when the switch becomes visible.
--
-- Owner only (not granted to rowcast_app): run by `rowcast admin` or by a DBA in psql:
--     SELECT * FROM app.rls_switch('public.contacts', false, 'incident 42');

CREATE TABLE app.rls_saved_grants (
    table_name  text        NOT NULL,
    grants      jsonb       NOT NULL,
    saved_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rls_saved_grants_pkey PRIMARY KEY (table_name),
    CONSTRAINT rls_saved_grants_table_name_check CHECK (table_name ~ '^[^.]+\.[^.]+$')
);
COMMENT ON TABLE app.rls_saved_grants IS
    'rowcast_app''s privileges on a table whose RLS is switched off by `rowcast admin rls disable`, restored by `enable`. Owner only.';
COMMENT ON COLUMN app.rls_saved_grants.grants IS
    '{"table": [{"privilege", "grantable"}], "columns": [{"column", "privilege", "grantable"}]} as read from relacl/attacl.';
ALTER TABLE app.rls_saved_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.rls_saved_grants FORCE ROW LEVEL SECURITY;

-- rowcast_app's privileges on a table, as JSON (the shape stored above).
CREATE FUNCTION app.app_role_grants(p_table regclass) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $$
    SELECT jsonb_build_object(
        'table', coalesce((
            SELECT jsonb_agg(jsonb_build_object('privilege', a.privilege_type, 'grantable', a.is_grantable)
                             ORDER BY a.privilege_type)
              FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
             WHERE c.oid = p_table AND a.grantee = 'rowcast_app'::regrole), '[]'::jsonb),
        'columns', coalesce((
            SELECT jsonb_agg(jsonb_build_object('column', att.attname, 'privilege', a.privilege_type, 'grantable', a.is_grantable)
                             ORDER BY att.attnum, a.privilege_type)
              FROM pg_catalog.pg_attribute att, LATERAL pg_catalog.aclexplode(att.attacl) a
             WHERE att.attrelid = p_table AND att.attnum > 0 AND NOT att.attisdropped
               AND a.grantee = 'rowcast_app'::regrole), '[]'::jsonb))
$$;
COMMENT ON FUNCTION app.app_role_grants(regclass) IS
    'Table- and column-level privileges of rowcast_app on a table (with grant options), as JSON.';
REVOKE ALL ON FUNCTION app.app_role_grants(regclass) FROM PUBLIC;

CREATE FUNCTION app.rls_switch(p_table regclass, p_enable boolean, p_reason text DEFAULT NULL)
RETURNS TABLE (audit_id bigint, table_name text, action text, actor text, at timestamptz, grants jsonb)
LANGUAGE plpgsql VOLATILE
SET search_path = ''
AS $$
DECLARE
    v_schema  text;
    v_name    text;
    v_qual    text;
    v_saved   jsonb;
    v_grant   jsonb;
    v_action  text := CASE WHEN p_enable THEN 'enable' ELSE 'disable' END;
BEGIN
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table AND c.relkind IN ('r', 'p');
    IF NOT FOUND OR v_schema <> 'public' THEN
        RAISE EXCEPTION 'no table % in schema public', p_table USING ERRCODE = '42P01';
    END IF;
    v_qual := format('%I.%I', v_schema, v_name);

    IF NOT p_enable THEN
        -- A second disable keeps the grants saved by the first (the table has none by now).
        INSERT INTO app.rls_saved_grants AS s (table_name, grants)
        VALUES (v_schema || '.' || v_name, app.app_role_grants(p_table))
        ON CONFLICT ON CONSTRAINT rls_saved_grants_pkey DO NOTHING;
        SELECT s.grants INTO v_saved FROM app.rls_saved_grants s WHERE s.table_name = v_schema || '.' || v_name;
        -- REVOKE on a table also revokes every column privilege on it.
        EXECUTE format('REVOKE ALL ON TABLE %s FROM rowcast_app', v_qual);
        EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY, NO FORCE ROW LEVEL SECURITY', v_qual);
    ELSE
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', v_qual);
        DELETE FROM app.rls_saved_grants s WHERE s.table_name = v_schema || '.' || v_name RETURNING s.grants INTO v_saved;
        IF v_saved IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON TABLE %s FROM rowcast_app', v_qual);
            FOR v_grant IN SELECT * FROM jsonb_array_elements(v_saved -> 'table') LOOP
                EXECUTE format('GRANT %s ON TABLE %s TO rowcast_app%s', v_grant ->> 'privilege', v_qual,
                               CASE WHEN (v_grant ->> 'grantable')::boolean THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
            FOR v_grant IN SELECT * FROM jsonb_array_elements(v_saved -> 'columns') LOOP
                EXECUTE format('GRANT %s (%I) ON TABLE %s TO rowcast_app%s', v_grant ->> 'privilege', v_grant ->> 'column', v_qual,
                               CASE WHEN (v_grant ->> 'grantable')::boolean THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
    END IF;

    NOTIFY rowcast_reload;
    RETURN QUERY
        INSERT INTO app.rls_audit AS a (table_name, action, reason)
        VALUES (v_schema || '.' || v_name, v_action, p_reason)
        RETURNING a.id, a.table_name, a.action, a.actor, a.at, coalesce(v_saved, app.app_role_grants(p_table));
END
$$;
COMMENT ON FUNCTION app.rls_switch(regclass, boolean, text) IS
    'EMERGENCY switch behind `rowcast admin rls disable|enable`: in one transaction, revokes (disable) or restores exactly '
    '(enable) rowcast_app''s table and column privileges, switches RLS off/on (with FORCE), records the switch in '
    'app.rls_audit and notifies rowcast_reload so running servers drop or serve the table at commit. Owner only.';
REVOKE ALL ON FUNCTION app.rls_switch(regclass, boolean, text) FROM PUBLIC;

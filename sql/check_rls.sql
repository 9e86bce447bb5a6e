-- Safety check for CI and DBAs: fails (exit code 3 with ON_ERROR_STOP) when
--   * a table of schema public lacks ENABLE or FORCE ROW LEVEL SECURITY, or is granted to
--     rowcast_app without any policy;
--   * a SECURITY DEFINER function in public/app/rpc has no pinned search_path;
--   * rowcast_app can bypass RLS or owns a table.
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/check_rls.sql
\pset null '—'

SELECT c.relname AS "table", c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
 ORDER BY (c.relrowsecurity AND c.relforcerowsecurity), c.relname;

SELECT p.oid::regprocedure AS "security definer function", p.proconfig AS settings
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prosecdef AND n.nspname IN ('public', 'app', 'rpc')
 ORDER BY 1::text;

DO $$
DECLARE
    v_problems text[];
BEGIN
    SELECT array_agg(format('table public.%I: %s', c.relname,
                            concat_ws(', ', CASE WHEN NOT c.relrowsecurity THEN 'RLS not enabled' END,
                                            CASE WHEN NOT c.relforcerowsecurity THEN 'RLS not forced' END,
                                            CASE WHEN has_any_column_privilege('rowcast_app', c.oid, 'SELECT')
                                                       AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
                                                  THEN 'granted to rowcast_app without any policy' END)))
      INTO v_problems
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
       AND (NOT c.relrowsecurity OR NOT c.relforcerowsecurity
            OR (has_any_column_privilege('rowcast_app', c.oid, 'SELECT') AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)));

    v_problems := v_problems || ARRAY(
        SELECT format('function %s: SECURITY DEFINER without a pinned search_path', p.oid::regprocedure)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prosecdef AND n.nspname IN ('public', 'app', 'rpc')
           AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS s WHERE s LIKE 'search\_path=%'));

    v_problems := v_problems || ARRAY(
        SELECT format('role %s: %s', r.rolname, concat_ws(', ', CASE WHEN r.rolsuper THEN 'superuser' END,
                                                              CASE WHEN r.rolbypassrls THEN 'bypasses RLS' END))
          FROM pg_roles r WHERE r.rolname = 'rowcast_app' AND (r.rolsuper OR r.rolbypassrls));
    v_problems := v_problems || ARRAY(
        SELECT format('table %s is owned by rowcast_app (owners bypass RLS unless forced)', c.oid::regclass)
          FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
         WHERE r.rolname = 'rowcast_app' AND c.relkind IN ('r', 'p'));

    IF cardinality(v_problems) > 0 THEN
        RAISE EXCEPTION 'row-level security check failed:%', E'\n  ' || array_to_string(v_problems, E'\n  ');
    END IF;
    RAISE NOTICE 'row-level security check passed: every public table has RLS enabled, forced and policed; every SECURITY DEFINER function pins search_path';
END
$$;

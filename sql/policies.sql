-- Row-level security policies, table by table: who may do what, and why.
--   psql "$DATABASE_URL" -f sql/policies.sql
--   psql "$DATABASE_URL" -v table=contacts -f sql/policies.sql      -- one table
-- Per table: whether RLS is enabled and forced; then each policy with its kind
-- (RESTRICTIVE bounds every command, PERMISSIVE ones grant by role), command, USING,
-- WITH CHECK and the COMMENT saying who and why.
\if :{?table}
\else
\set table ''
\endif
\pset null '—'

SELECT n.nspname || '.' || c.relname AS "table",
       c.relrowsecurity AS rls_enabled,
       c.relforcerowsecurity AS rls_forced,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
       obj_description(c.oid, 'pg_class') AS "comment"
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('public', 'app') AND c.relkind IN ('r', 'p')
   AND (:'table' = '' OR c.relname = :'table')
 ORDER BY n.nspname DESC, c.relname;

SELECT p.schemaname || '.' || p.tablename AS "table",
       p.policyname AS policy,
       p.permissive AS kind,
       p.cmd AS command,
       p.qual AS "using",
       p.with_check AS "with check",
       obj_description(pol.oid, 'pg_policy') AS "comment"
  FROM pg_policies p
  JOIN pg_class c ON c.relname = p.tablename
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = p.schemaname
  JOIN pg_policy pol ON pol.polrelid = c.oid AND pol.polname = p.policyname
 WHERE p.schemaname IN ('public', 'app')
   AND (:'table' = '' OR p.tablename = :'table')
 ORDER BY p.schemaname DESC, p.tablename, p.permissive DESC, p.policyname
\gx

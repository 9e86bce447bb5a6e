-- What a given user sees in a given tenant: visible row counts per table, exactly as the
-- server would see them (app.act_as = begin_request + SET LOCAL ROLE rowcast_app), inside a
-- transaction that is rolled back. Run as a superuser (the owner DSN):
--   psql "$DATABASE_URL" -v user=<uuid> -v tenant=<uuid> -f sql/act_as.sql
--   psql "$DATABASE_URL" -v user=<uuid> -f sql/act_as.sql       -- the user's only tenant
--                                                                -- (platform admin: none = all)
-- Add -v table=contacts to also list that table's visible rows (first 20).
\set ON_ERROR_STOP on
\if :{?user}
\else
\echo 'usage: psql -v user=<uuid> [-v tenant=<uuid>] [-v table=<name>] -f sql/act_as.sql'
\quit
\endif
\if :{?tenant}
\else
\set tenant ''
\endif
\if :{?table}
\else
\set table ''
\endif

BEGIN;
SELECT * FROM app.act_as(:'user'::uuid, nullif(:'tenant', '')::uuid);
SELECT current_user AS acting_role,
       current_setting('app.role') AS app_role,
       nullif(current_setting('app.tenant_id'), '') AS app_tenant;

-- One count(*) per table of schema public, run as rowcast_app under its policies. Tables
-- the role may not read at all (or only some columns of) report the reason instead.
CREATE TEMP TABLE act_as_counts (table_name text, visible_rows bigint, note text) ON COMMIT DROP;
DO $$
DECLARE
    r record;
    n bigint;
BEGIN
    FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
              WHERE ns.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname LOOP
        BEGIN
            EXECUTE format('SELECT count(*) FROM public.%I', r.relname) INTO n;
            INSERT INTO act_as_counts VALUES (r.relname, n, NULL);
        EXCEPTION WHEN insufficient_privilege THEN
            INSERT INTO act_as_counts VALUES (r.relname, NULL, SQLERRM);
        END;
    END LOOP;
END
$$;
SELECT * FROM act_as_counts ORDER BY table_name;

-- The rows of one table, with the columns the role may select (never webhooks.secret).
SELECT :'table' <> '' AS show_rows \gset
\if :show_rows
SELECT format('SELECT %s FROM public.%I LIMIT 20',
              string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum), :'table') AS rows_query
  FROM pg_attribute a
 WHERE a.attrelid = format('public.%I', :'table')::regclass AND a.attnum > 0 AND NOT a.attisdropped
   AND has_column_privilege(a.attrelid, a.attnum, 'SELECT') \gset
:rows_query;
\endif
ROLLBACK;

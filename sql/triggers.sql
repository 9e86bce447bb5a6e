-- Every trigger on rowcast's tables: name (all are rowcast_…), timing, events, function.
--   psql "$DATABASE_URL" -f sql/triggers.sql
--   psql "$DATABASE_URL" -v table=campaigns -f sql/triggers.sql     -- one table
-- BEFORE triggers of one table fire in name order; AFTER ones run after the row is written.
\if :{?table}
\else
\set table ''
\endif

SELECT n.nspname || '.' || c.relname AS "table",
       t.tgname AS "trigger",
       CASE WHEN t.tgtype & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype & 64 <> 0 THEN 'INSTEAD OF' ELSE 'AFTER' END AS timing,
       concat_ws(' OR ',
                 CASE WHEN t.tgtype & 4 <> 0 THEN 'INSERT' END,
                 CASE WHEN t.tgtype & 16 <> 0 THEN 'UPDATE' END,
                 CASE WHEN t.tgtype & 8 <> 0 THEN 'DELETE' END,
                 CASE WHEN t.tgtype & 32 <> 0 THEN 'TRUNCATE' END) AS events,
       CASE WHEN t.tgtype & 1 <> 0 THEN 'row' ELSE 'statement' END AS "level",
       t.tgfoid::regprocedure AS "function",
       CASE t.tgenabled WHEN 'D' THEN 'DISABLED' ELSE 'enabled' END AS state,
       obj_description(t.tgfoid, 'pg_proc') AS "what it does"
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal
   AND n.nspname IN ('public', 'app')
   AND (:'table' = '' OR c.relname = :'table')
 ORDER BY n.nspname DESC, c.relname, timing DESC, t.tgname;

-- Triggers not following the rowcast_ naming convention (should be none).
SELECT n.nspname || '.' || c.relname AS "table", t.tgname AS "badly named trigger"
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal AND n.nspname IN ('public', 'app') AND t.tgname NOT LIKE 'rowcast\_%';

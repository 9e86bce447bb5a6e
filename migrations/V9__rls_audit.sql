-- V9: app.rls_audit — the record of every emergency `rowcast admin rls disable|enable`.
--
-- Turning row-level security off on a table exposes every tenant's rows to rowcast_app
-- (and, because the REST layer only exposes tables with RLS enabled AND forced, it also
-- takes the table off the API). The admin command does the ALTER TABLE and inserts a row
-- here in the same transaction, so the switch and its trace commit together. The realtime
-- issue will turn these rows into events.
--
-- Internal table (schema app): not granted to rowcast_app, not exposed over REST; DBAs read
-- it in psql. RLS is enabled and forced anyway (no policy: only the owner, i.e. superusers
-- and roles with BYPASSRLS, sees the rows), so a grant added by mistake later leaks nothing.

CREATE TABLE app.rls_audit (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    table_name  text        NOT NULL,
    action      text        NOT NULL,
    actor       text        NOT NULL DEFAULT current_user,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT rls_audit_pkey PRIMARY KEY (id),
    CONSTRAINT rls_audit_action_check CHECK (action IN ('disable', 'enable')),
    CONSTRAINT rls_audit_table_name_check CHECK (table_name ~ '^[^.]+\.[^.]+$')
);
CREATE INDEX rls_audit_table_name_at_idx ON app.rls_audit (table_name, at);
COMMENT ON TABLE app.rls_audit IS
    'Who disabled or re-enabled row-level security on which table, when and why (`rowcast admin rls disable|enable`). Owner only.';
COMMENT ON COLUMN app.rls_audit.table_name IS 'Schema-qualified table name, e.g. public.contacts.';
COMMENT ON COLUMN app.rls_audit.actor IS 'Database role that ran the switch (current_user).';

ALTER TABLE app.rls_audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.rls_audit FORCE ROW LEVEL SECURITY;

-- refinery keeps its bookkeeping table in public. It is not data (rowcast_app has no grant on
-- it and the REST layer never exposes it), but "every table in public has RLS enabled and
-- forced" is an invariant checked by sql/check_rls.sql and the catalog tests, and an
-- invariant with exceptions is one nobody trusts. No policy: only the owner (superuser or
-- BYPASSRLS, which `rowcast migrate` requires) sees its rows, as before.
DO $$
BEGIN
    IF to_regclass('public.refinery_schema_history') IS NOT NULL THEN
        ALTER TABLE public.refinery_schema_history ENABLE ROW LEVEL SECURITY;
        ALTER TABLE public.refinery_schema_history FORCE ROW LEVEL SECURITY;
        COMMENT ON TABLE public.refinery_schema_history IS
            'Applied migrations (refinery). Owner only: RLS forced without a policy; not granted to rowcast_app, not exposed over REST.';
    END IF;
END
$$;

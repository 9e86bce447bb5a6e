-- V2: platform billing — plans, limit_policies (global), subscriptions, usages (per tenant).
--
-- Role matrix (SPEC §3.2):
--   plans, limit_policies  global rows (no tenant_id): platform admins write; every request
--                          with a context reads (tenant admins and users need them to show
--                          what their plan allows). No context => zero rows.
--   subscriptions          platform admins all; tenant admins read + write their tenant's;
--                          tenant users read.
--   usages                 platform admins all; tenant admins and tenant users read + write
--                          their tenant's (the seeds let any member record usage).
--
-- Conventions (V1): named constraints, (tenant_id, id) unique on every tenant table, indexes
-- led by tenant_id, RESTRICTIVE tenant_isolation + PERMISSIVE grants by role, ENABLE + FORCE
-- row-level security, rowcast_touch_updated_at on every table.

-- ---------------------------------------------------------------------------------------
-- plans (global)
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.plans (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    code              text        NOT NULL,
    name              text        NOT NULL,
    description       text,
    price_cents       integer     NOT NULL DEFAULT 0,
    currency          text        NOT NULL DEFAULT 'EUR',
    billing_interval  text        NOT NULL DEFAULT 'month',
    is_active         boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT plans_pkey PRIMARY KEY (id),
    CONSTRAINT plans_code_key UNIQUE (code),
    CONSTRAINT plans_code_check CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    CONSTRAINT plans_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT plans_price_cents_check CHECK (price_cents >= 0),
    CONSTRAINT plans_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT plans_billing_interval_check CHECK (billing_interval IN ('month', 'year'))
);
COMMENT ON TABLE public.plans IS 'Global price list (no tenant_id). Platform admins write; every request with a context reads.';
COMMENT ON COLUMN public.plans.code IS 'Stable machine name (starter, pro, …), unique platform-wide.';
COMMENT ON COLUMN public.plans.is_active IS 'False hides the plan from new subscriptions; existing ones keep it.';

-- ---------------------------------------------------------------------------------------
-- limit_policies (global): what a plan allows, one row per plan and metric.
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.limit_policies (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    plan_id      uuid        NOT NULL,
    metric       text        NOT NULL,
    limit_value  bigint      NOT NULL,
    period       text        NOT NULL DEFAULT 'month',
    is_hard      boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT limit_policies_pkey PRIMARY KEY (id),
    CONSTRAINT limit_policies_plan_metric_key UNIQUE (plan_id, metric),
    CONSTRAINT limit_policies_plan_id_fkey FOREIGN KEY (plan_id) REFERENCES public.plans (id) ON DELETE CASCADE,
    CONSTRAINT limit_policies_metric_check CHECK (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT limit_policies_limit_value_check CHECK (limit_value >= 0),
    CONSTRAINT limit_policies_period_check CHECK (period IN ('day', 'month', 'lifetime'))
);
COMMENT ON TABLE public.limit_policies IS 'Global: the limits of each plan (messages per month, contacts, …). Platform admins write; every request with a context reads.';
COMMENT ON COLUMN public.limit_policies.metric IS 'What is counted, as in usages.metric: messages_sent, contacts, campaigns, webhooks, …';
COMMENT ON COLUMN public.limit_policies.is_hard IS 'True: the limit blocks; false: it only warns.';

-- ---------------------------------------------------------------------------------------
-- subscriptions (tenant): which plan a tenant is on.
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.subscriptions (
    id                    uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id             uuid        NOT NULL,
    plan_id               uuid        NOT NULL,
    status                text        NOT NULL DEFAULT 'active',
    current_period_start  timestamptz NOT NULL DEFAULT now(),
    current_period_end    timestamptz,
    cancelled_at          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_pkey PRIMARY KEY (id),
    CONSTRAINT subscriptions_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT subscriptions_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT subscriptions_plan_id_fkey FOREIGN KEY (plan_id) REFERENCES public.plans (id) ON DELETE RESTRICT,
    CONSTRAINT subscriptions_status_check CHECK (status IN ('trialing', 'active', 'past_due', 'cancelled')),
    CONSTRAINT subscriptions_period_check CHECK (current_period_end IS NULL OR current_period_end > current_period_start),
    CONSTRAINT subscriptions_cancelled_check CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);
-- At most one live (not cancelled) subscription per tenant; history rows may pile up.
CREATE UNIQUE INDEX subscriptions_tenant_live_key ON public.subscriptions (tenant_id) WHERE status <> 'cancelled';
CREATE INDEX subscriptions_tenant_id_plan_id_idx ON public.subscriptions (tenant_id, plan_id);
CREATE INDEX subscriptions_plan_id_idx ON public.subscriptions (plan_id);
COMMENT ON TABLE public.subscriptions IS 'Which plan each tenant is on. Platform admins all; tenant admins read and write their tenant''s; tenant users read.';
COMMENT ON INDEX public.subscriptions_tenant_live_key IS 'One live (not cancelled) subscription per tenant.';

-- ---------------------------------------------------------------------------------------
-- usages (tenant): metered consumption per metric and period.
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.usages (
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id     uuid        NOT NULL,
    metric        text        NOT NULL,
    period_start  date        NOT NULL DEFAULT date_trunc('month', now())::date,
    period_end    date        NOT NULL DEFAULT (date_trunc('month', now()) + interval '1 month')::date,
    quantity      bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT usages_pkey PRIMARY KEY (id),
    CONSTRAINT usages_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT usages_tenant_metric_period_key UNIQUE (tenant_id, metric, period_start),
    CONSTRAINT usages_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT usages_metric_check CHECK (metric ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT usages_period_check CHECK (period_end > period_start),
    CONSTRAINT usages_quantity_check CHECK (quantity >= 0)
);
COMMENT ON TABLE public.usages IS 'Metered consumption per tenant, metric and period (upsert on usages_tenant_metric_period_key). Platform admins all; tenant admins and users read and write their tenant''s.';

-- ---------------------------------------------------------------------------------------
-- Triggers, row-level security, policies, grants.
-- ---------------------------------------------------------------------------------------
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.plans
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.limit_policies
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.subscriptions
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.usages
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

ALTER TABLE public.plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.plans FORCE ROW LEVEL SECURITY;
ALTER TABLE public.limit_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.limit_policies FORCE ROW LEVEL SECURITY;
ALTER TABLE public.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.subscriptions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.usages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.usages FORCE ROW LEVEL SECURITY;

-- Global tables: no tenant_isolation policy (there is no tenant_id to bound). A context is
-- still required to read: `current_user_role() IS NOT NULL` is false without begin_request.
CREATE POLICY plans_read ON public.plans FOR SELECT
    USING ((SELECT app.current_user_role()) IS NOT NULL);
COMMENT ON POLICY plans_read ON public.plans IS 'Every request with a context (any role) reads the price list; no context reads nothing.';

CREATE POLICY plans_write_platform_admins ON public.plans FOR ALL
    USING ((SELECT app.is_platform_admin()))
    WITH CHECK ((SELECT app.is_platform_admin()));
COMMENT ON POLICY plans_write_platform_admins ON public.plans IS 'Only platform admins create, change and delete plans.';

CREATE POLICY limit_policies_read ON public.limit_policies FOR SELECT
    USING ((SELECT app.current_user_role()) IS NOT NULL);
COMMENT ON POLICY limit_policies_read ON public.limit_policies IS 'Every request with a context (any role) reads the limits of every plan; no context reads nothing.';

CREATE POLICY limit_policies_write_platform_admins ON public.limit_policies FOR ALL
    USING ((SELECT app.is_platform_admin()))
    WITH CHECK ((SELECT app.is_platform_admin()));
COMMENT ON POLICY limit_policies_write_platform_admins ON public.limit_policies IS 'Only platform admins create, change and delete plan limits.';

CREATE POLICY tenant_isolation ON public.subscriptions AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.subscriptions IS 'Nobody reads or writes a subscription outside their tenant scope, nor moves one to another tenant.';

CREATE POLICY subscriptions_read ON public.subscriptions FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY subscriptions_read ON public.subscriptions IS 'Every member reads their tenant''s subscriptions.';

CREATE POLICY subscriptions_write_admins ON public.subscriptions FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin'));
COMMENT ON POLICY subscriptions_write_admins ON public.subscriptions IS 'Tenant admins change their own tenant''s subscription (SPEC §3.2: read, write); platform admins all. Tenant users only read.';

CREATE POLICY tenant_isolation ON public.usages AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.usages IS 'Nobody reads or writes usage outside their tenant scope, nor moves it to another tenant.';

CREATE POLICY usages_read ON public.usages FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY usages_read ON public.usages IS 'Every member reads their tenant''s usage.';

CREATE POLICY usages_write_members ON public.usages FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY usages_write_members ON public.usages IS 'Every member records usage for their tenant (SPEC §3.2: tenant users read, write).';

GRANT SELECT, INSERT, UPDATE, DELETE ON public.plans, public.limit_policies, public.subscriptions, public.usages TO rowcast_app;

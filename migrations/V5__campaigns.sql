-- V5: campaigns, their recipient snapshots, and the campaign state machine.
--
-- Role matrix (SPEC §3.2): platform admins all; tenant admins and tenant users read and
-- write their own tenant's campaigns and recipients.
--
-- State machine (SPEC §3.3), enforced by rowcast_campaign_status_guard whatever the path
-- (REST PATCH, rpc.campaign_start/cancel, a future scheduler):
--
--     draft ──> scheduled ──> running ──> completed
--       │                       ^
--       └───────────────────────┘            draft | scheduled | running ──> cancelled
--
--   * A campaign is created as `draft`, or directly as `scheduled` (same as draft→scheduled).
--   * Any other move raises SQLSTATE P0001 naming both states:
--       illegal campaign status change: completed -> running
--     Re-setting the current status is not a move and is accepted.
--   * `scheduled` needs scheduled_at; leaving draft needs a group and a template
--     (campaigns_scheduled_check, campaigns_ready_check → 422).
--   * Entering running stamps started_at, completed stamps completed_at, cancelled stamps
--     cancelled_at. Once running/completed/cancelled, group_id and template_id are frozen.
--   * What entering `running` and `cancelled` DO (snapshot recipients, queue messages,
--     cancel queued messages) is in V6, next to messages_history.
--   * The counters and the started/completed/cancelled timestamps are maintained by the
--     database: a client statement that changes them is refused (42501). Only nested
--     trigger updates (pg_trigger_depth() > 1) may.
-- Soft delete as for contacts (see V3).

CREATE TABLE public.campaigns (
    id                uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id         uuid        NOT NULL,
    name              text        NOT NULL,
    description       text,
    group_id          uuid,
    template_id       uuid,
    status            text        NOT NULL DEFAULT 'draft',
    scheduled_at      timestamptz,
    started_at        timestamptz,
    completed_at      timestamptz,
    cancelled_at      timestamptz,
    total_recipients  integer     NOT NULL DEFAULT 0,
    sent_count        integer     NOT NULL DEFAULT 0,
    delivered_count   integer     NOT NULL DEFAULT 0,
    read_count        integer     NOT NULL DEFAULT 0,
    failed_count      integer     NOT NULL DEFAULT 0,
    deleted_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaigns_pkey PRIMARY KEY (id),
    CONSTRAINT campaigns_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT campaigns_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT campaigns_group_id_fkey FOREIGN KEY (tenant_id, group_id) REFERENCES public.groups (tenant_id, id) ON DELETE RESTRICT,
    -- Templates may be shared (tenant_id NULL), so this one cannot be composite; the
    -- same-tenant-or-shared rule is checked by rowcast_campaign_template_check and reported
    -- under this constraint's name.
    CONSTRAINT campaigns_template_id_fkey FOREIGN KEY (template_id) REFERENCES public.message_templates (id) ON DELETE RESTRICT,
    CONSTRAINT campaigns_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    CONSTRAINT campaigns_status_check CHECK (status IN ('draft', 'scheduled', 'running', 'completed', 'cancelled')),
    CONSTRAINT campaigns_scheduled_check CHECK (status <> 'scheduled' OR scheduled_at IS NOT NULL),
    CONSTRAINT campaigns_ready_check CHECK (status IN ('draft', 'cancelled') OR (group_id IS NOT NULL AND template_id IS NOT NULL)),
    CONSTRAINT campaigns_counts_check CHECK (
        total_recipients >= 0 AND sent_count >= 0 AND delivered_count >= 0 AND read_count >= 0 AND failed_count >= 0)
);
CREATE INDEX campaigns_tenant_id_status_idx ON public.campaigns (tenant_id, status);
CREATE INDEX campaigns_tenant_id_group_id_idx ON public.campaigns (tenant_id, group_id);
CREATE INDEX campaigns_template_id_idx ON public.campaigns (template_id);
COMMENT ON TABLE public.campaigns IS
    'A template sent to a group. Status is a state machine enforced in SQL (draft → scheduled → running → completed, draft → running, '
    'draft|scheduled|running → cancelled; anything else is P0001). Platform admins all; tenant admins and users read and write their tenant''s. Soft delete: deleted_at.';
COMMENT ON COLUMN public.campaigns.status IS 'draft, scheduled, running, completed, cancelled. Moves are checked by rowcast_campaign_status_guard.';
COMMENT ON COLUMN public.campaigns.deleted_at IS 'Soft delete: set by REST DELETE; NULL = live. REST reads hide deleted rows unless the request filters on deleted_at. A deleted row can only be restored.';
COMMENT ON COLUMN public.campaigns.total_recipients IS 'Recipients snapshotted when the campaign started. Maintained by the database.';
COMMENT ON COLUMN public.campaigns.sent_count IS 'Messages currently sent, delivered or read. Maintained by the database.';
COMMENT ON COLUMN public.campaigns.delivered_count IS 'Messages currently delivered or read. Maintained by the database.';
COMMENT ON COLUMN public.campaigns.read_count IS 'Messages read. Maintained by the database.';
COMMENT ON COLUMN public.campaigns.failed_count IS 'Messages failed. Maintained by the database.';

-- ---------------------------------------------------------------------------------------
-- campaign_recipients: who a campaign was sent to, frozen when it started (later changes to
-- the group or the contact do not change a running campaign).
-- ---------------------------------------------------------------------------------------
CREATE TABLE public.campaign_recipients (
    id           uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id    uuid        NOT NULL,
    campaign_id  uuid        NOT NULL,
    contact_id   uuid,
    phone        text        NOT NULL,
    variables    jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaign_recipients_pkey PRIMARY KEY (id),
    CONSTRAINT campaign_recipients_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT campaign_recipients_campaign_contact_key UNIQUE (tenant_id, campaign_id, contact_id),
    CONSTRAINT campaign_recipients_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    CONSTRAINT campaign_recipients_campaign_id_fkey FOREIGN KEY (tenant_id, campaign_id) REFERENCES public.campaigns (tenant_id, id) ON DELETE CASCADE,
    -- A purged (hard-deleted) contact leaves the snapshot in place, without the link.
    CONSTRAINT campaign_recipients_contact_id_fkey FOREIGN KEY (tenant_id, contact_id) REFERENCES public.contacts (tenant_id, id) ON DELETE SET NULL (contact_id),
    CONSTRAINT campaign_recipients_phone_check CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT campaign_recipients_variables_check CHECK (jsonb_typeof(variables) = 'object')
);
CREATE INDEX campaign_recipients_tenant_contact_idx ON public.campaign_recipients (tenant_id, contact_id);
COMMENT ON TABLE public.campaign_recipients IS
    'Snapshot of a campaign''s audience taken when it starts (phone and template variables copied from the contact). '
    'Platform admins all; tenant admins and users read and write their tenant''s.';

-- ---------------------------------------------------------------------------------------
-- The state machine.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.campaign_status_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_old text := OLD.status;  -- OLD is NULL on INSERT
BEGIN
    IF pg_trigger_depth() = 1
       AND (NEW.total_recipients, NEW.sent_count, NEW.delivered_count, NEW.read_count, NEW.failed_count,
            NEW.started_at, NEW.completed_at, NEW.cancelled_at)
           IS DISTINCT FROM
           (coalesce(OLD.total_recipients, 0), coalesce(OLD.sent_count, 0), coalesce(OLD.delivered_count, 0),
            coalesce(OLD.read_count, 0), coalesce(OLD.failed_count, 0), OLD.started_at, OLD.completed_at, OLD.cancelled_at) THEN
        RAISE EXCEPTION 'campaign counters and started_at/completed_at/cancelled_at are maintained by the database'
            USING ERRCODE = '42501';
    END IF;

    IF TG_OP = 'INSERT' THEN
        IF NEW.status NOT IN ('draft', 'scheduled') THEN
            RAISE EXCEPTION 'illegal campaign status change: (new) -> %', NEW.status
                USING ERRCODE = 'P0001', HINT = 'A campaign is created as draft or scheduled.';
        END IF;
        RETURN NEW;
    END IF;

    IF v_old IN ('running', 'completed', 'cancelled')
       AND (NEW.group_id, NEW.template_id) IS DISTINCT FROM (OLD.group_id, OLD.template_id) THEN
        RAISE EXCEPTION 'campaign is %: its group and template can no longer change', v_old USING ERRCODE = 'P0001';
    END IF;
    IF NEW.status IS NOT DISTINCT FROM v_old THEN
        RETURN NEW;
    END IF;
    IF NOT (v_old, NEW.status) IN (('draft', 'scheduled'), ('scheduled', 'running'), ('running', 'completed'), ('draft', 'running'),
                                   ('draft', 'cancelled'), ('scheduled', 'cancelled'), ('running', 'cancelled')) THEN
        RAISE EXCEPTION 'illegal campaign status change: % -> %', v_old, NEW.status
            USING ERRCODE = 'P0001',
                  HINT = 'Allowed: draft → scheduled → running → completed, draft → running, draft|scheduled|running → cancelled.';
    END IF;
    CASE NEW.status
        WHEN 'running' THEN NEW.started_at := now();
        WHEN 'completed' THEN NEW.completed_at := now();
        WHEN 'cancelled' THEN NEW.cancelled_at := now();
        ELSE NULL;
    END CASE;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.campaign_status_guard() IS
    'BEFORE INSERT/UPDATE on campaigns: the status state machine (P0001 naming both states), frozen group/template once started, '
    'database-maintained counters and timestamps (42501 when a client statement changes them).';

-- Campaigns may use their tenant's templates or shared ones, never another tenant's. The
-- check runs with the writer's rights: a template the writer cannot see is "not found".
CREATE FUNCTION app.campaign_template_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_tenant   uuid;
    v_deleted  timestamptz;
BEGIN
    IF NEW.template_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT t.tenant_id, t.deleted_at INTO v_tenant, v_deleted FROM public.message_templates t WHERE t.id = NEW.template_id;
    IF NOT FOUND OR (v_tenant IS NOT NULL AND v_tenant <> NEW.tenant_id) THEN
        RAISE EXCEPTION 'template % is not a template of tenant % nor a shared one', NEW.template_id, NEW.tenant_id
            USING ERRCODE = '23503', CONSTRAINT = 'campaigns_template_id_fkey', TABLE = 'campaigns', SCHEMA = 'public';
    END IF;
    IF v_deleted IS NOT NULL AND (TG_OP = 'INSERT' OR NEW.template_id IS DISTINCT FROM OLD.template_id) THEN
        RAISE EXCEPTION 'template % is deleted', NEW.template_id USING ERRCODE = '22023';
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.campaign_template_check() IS
    'BEFORE INSERT/UPDATE OF template_id on campaigns: the template must be the tenant''s own or shared (23503 reported as campaigns_template_id_fkey), and live.';

CREATE TRIGGER rowcast_campaign_status_guard BEFORE INSERT OR UPDATE ON public.campaigns
    FOR EACH ROW EXECUTE FUNCTION app.campaign_status_guard();
CREATE TRIGGER rowcast_campaign_template_check BEFORE INSERT OR UPDATE OF tenant_id, template_id ON public.campaigns
    FOR EACH ROW EXECUTE FUNCTION app.campaign_template_check();
CREATE TRIGGER rowcast_soft_delete_guard BEFORE UPDATE ON public.campaigns
    FOR EACH ROW EXECUTE FUNCTION app.soft_delete_guard();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.campaigns
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.campaign_recipients
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- ---------------------------------------------------------------------------------------
-- Row-level security, policies, grants.
-- ---------------------------------------------------------------------------------------
ALTER TABLE public.campaigns ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaigns FORCE ROW LEVEL SECURITY;
ALTER TABLE public.campaign_recipients ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.campaign_recipients FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.campaigns AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.campaigns IS 'Nobody reads or writes a campaign outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY campaigns_read ON public.campaigns FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY campaigns_read ON public.campaigns IS 'Every member reads their tenant''s campaigns, deleted ones included (REST hides those by default).';
CREATE POLICY campaigns_write_members ON public.campaigns FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY campaigns_write_members ON public.campaigns IS 'Every member creates, changes, starts, cancels and soft-deletes their tenant''s campaigns.';

CREATE POLICY tenant_isolation ON public.campaign_recipients AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.campaign_recipients IS 'Nobody reads or writes a recipient outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY campaign_recipients_read ON public.campaign_recipients FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY campaign_recipients_read ON public.campaign_recipients IS 'Every member reads their tenant''s campaign recipients.';
CREATE POLICY campaign_recipients_write_members ON public.campaign_recipients FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY campaign_recipients_write_members ON public.campaign_recipients IS
    'Every member writes their tenant''s campaign recipients (normally written by campaign_start).';

GRANT SELECT, INSERT, UPDATE, DELETE ON public.campaigns, public.campaign_recipients TO rowcast_app;

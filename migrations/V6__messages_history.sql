-- V6: messages_history, the message status machine, and what campaign moves do:
-- rpc.campaign_start, rpc.campaign_cancel, rpc.message_update_status.
--
-- Role matrix (SPEC §3.2): platform admins all; tenant admins and tenant users read and
-- write their own tenant's messages.
--
-- Message status machine (outbound), enforced by rowcast_message_status_guard:
--
--     queued ──> sending ──> sent ──> delivered ──> read
--       │          │          │  └──────────────────^
--       │          └──> failed <┘ (a sent message may still come back undelivered)
--       ├──> failed
--       └──> cancelled          (its campaign was cancelled before it left)
--
--   * Outbound messages are created `queued`; inbound ones `received` (their only status).
--   * read, failed, cancelled, received are final. Any other move is P0001 naming both
--     states: `illegal message status change: delivered -> sending`. Re-setting the current
--     status is not a move (providers repeat callbacks) and is accepted.
--   * Entering sent/delivered/read/failed stamps sent_at/delivered_at/read_at/failed_at
--     (read also stamps delivered_at when the provider skipped it).
--
-- Campaign effects, all in SQL so every path (rpc, REST PATCH of status, a scheduler) does
-- the same thing (rowcast_campaign_status_effects, AFTER UPDATE OF status on campaigns):
--   * → running: snapshot the group's live, not opted-out contacts into
--     campaign_recipients and queue one outbound messages_history row per recipient with the
--     rendered template body; total_recipients = their number. A campaign whose group has no
--     such contact cannot start (22023). A deleted group or template cannot start (22023).
--   * → cancelled: queued messages of the campaign become `cancelled` (those already sending
--     or sent go on).
-- Counters (rowcast_campaign_counters, AFTER UPDATE OF status on messages_history) keep
-- sent/delivered/read/failed_count exact; when every recipient's message is sent (or later)
-- or failed, a running campaign moves to `completed` by itself.
-- Trade-off: status updates of one campaign's messages serialize on the campaign row. That is
-- the price of exact counters in the same transaction; a per-campaign counter table can
-- replace it without changing the API if it ever shows up in the benchmarks.

CREATE TABLE public.messages_history (
    id                   uuid        NOT NULL DEFAULT gen_random_uuid(),
    tenant_id            uuid        NOT NULL,
    campaign_id          uuid,
    recipient_id         uuid,
    contact_id           uuid,
    direction            text        NOT NULL DEFAULT 'outbound',
    phone                text        NOT NULL,
    body                 text        NOT NULL,
    status               text        NOT NULL DEFAULT 'queued',
    error_code           text,
    error_message        text,
    provider_message_id  text,
    queued_at            timestamptz NOT NULL DEFAULT now(),
    sent_at              timestamptz,
    delivered_at         timestamptz,
    read_at              timestamptz,
    failed_at            timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_history_pkey PRIMARY KEY (id),
    CONSTRAINT messages_history_tenant_id_id_key UNIQUE (tenant_id, id),
    CONSTRAINT messages_history_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES public.tenants (id) ON DELETE CASCADE,
    -- History outlives what it points at: purging a campaign, recipient or contact keeps the
    -- message and only clears the link (never tenant_id).
    CONSTRAINT messages_history_campaign_id_fkey FOREIGN KEY (tenant_id, campaign_id)
        REFERENCES public.campaigns (tenant_id, id) ON DELETE SET NULL (campaign_id),
    CONSTRAINT messages_history_recipient_id_fkey FOREIGN KEY (tenant_id, recipient_id)
        REFERENCES public.campaign_recipients (tenant_id, id) ON DELETE SET NULL (recipient_id),
    CONSTRAINT messages_history_contact_id_fkey FOREIGN KEY (tenant_id, contact_id)
        REFERENCES public.contacts (tenant_id, id) ON DELETE SET NULL (contact_id),
    CONSTRAINT messages_history_direction_check CHECK (direction IN ('outbound', 'inbound')),
    CONSTRAINT messages_history_status_check CHECK (
        status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'cancelled', 'received')),
    CONSTRAINT messages_history_direction_status_check CHECK ((direction = 'inbound') = (status = 'received')),
    CONSTRAINT messages_history_phone_check CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT messages_history_body_check CHECK (length(body) <= 65536),
    CONSTRAINT messages_history_error_message_check CHECK (length(error_message) <= 4096)
);
CREATE UNIQUE INDEX messages_history_tenant_provider_message_id_key
    ON public.messages_history (tenant_id, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_history_tenant_campaign_status_idx ON public.messages_history (tenant_id, campaign_id, status);
CREATE INDEX messages_history_tenant_contact_created_idx ON public.messages_history (tenant_id, contact_id, created_at);
CREATE INDEX messages_history_tenant_created_idx ON public.messages_history (tenant_id, created_at);
CREATE INDEX messages_history_tenant_recipient_idx ON public.messages_history (tenant_id, recipient_id);
COMMENT ON TABLE public.messages_history IS
    'Every message sent or received, with its delivery status (a state machine: queued → sending → sent → delivered → read, '
    'failures and cancellations; P0001 on illegal moves). Platform admins all; tenant admins and users read and write their tenant''s.';
COMMENT ON COLUMN public.messages_history.provider_message_id IS 'Id given by the SMS/WhatsApp provider; unique per tenant; status callbacks look messages up by it.';
COMMENT ON INDEX public.messages_history_tenant_provider_message_id_key IS 'A provider message id identifies one message per tenant.';

-- ---------------------------------------------------------------------------------------
-- Message status machine.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.message_status_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> (CASE NEW.direction WHEN 'inbound' THEN 'received' ELSE 'queued' END) THEN
            RAISE EXCEPTION 'illegal message status change: (new) -> %', NEW.status
                USING ERRCODE = 'P0001', HINT = 'Outbound messages are created queued, inbound ones received.';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NEW;
    END IF;
    IF NOT (OLD.status, NEW.status) IN (
            ('queued', 'sending'), ('queued', 'failed'), ('queued', 'cancelled'),
            ('sending', 'sent'), ('sending', 'failed'),
            ('sent', 'delivered'), ('sent', 'read'), ('sent', 'failed'),
            ('delivered', 'read')) THEN
        RAISE EXCEPTION 'illegal message status change: % -> %', OLD.status, NEW.status
            USING ERRCODE = 'P0001',
                  HINT = 'Allowed: queued → sending → sent → delivered → read, sent → read, queued|sending|sent → failed, queued → cancelled.';
    END IF;
    CASE NEW.status
        WHEN 'sent' THEN NEW.sent_at := now();
        WHEN 'delivered' THEN NEW.delivered_at := now();
        WHEN 'read' THEN NEW.read_at := now(); NEW.delivered_at := coalesce(NEW.delivered_at, now());
        WHEN 'failed' THEN NEW.failed_at := now();
        ELSE NULL;
    END CASE;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION app.message_status_guard() IS
    'BEFORE INSERT/UPDATE OF status on messages_history: the message status machine (P0001 naming both states) and its timestamps.';

CREATE TRIGGER rowcast_message_status_guard BEFORE INSERT OR UPDATE OF status ON public.messages_history
    FOR EACH ROW EXECUTE FUNCTION app.message_status_guard();
CREATE TRIGGER rowcast_touch_updated_at BEFORE UPDATE ON public.messages_history
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

-- Counters: per status flag, +1 when the new status has it, -1 when the old one had it.
CREATE FUNCTION app.campaign_counters() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    d_sent       integer := (NEW.status IN ('sent', 'delivered', 'read'))::int - (OLD.status IN ('sent', 'delivered', 'read'))::int;
    d_delivered  integer := (NEW.status IN ('delivered', 'read'))::int - (OLD.status IN ('delivered', 'read'))::int;
    d_read       integer := (NEW.status = 'read')::int - (OLD.status = 'read')::int;
    d_failed     integer := (NEW.status = 'failed')::int - (OLD.status = 'failed')::int;
BEGIN
    IF (d_sent, d_delivered, d_read, d_failed) = (0, 0, 0, 0) THEN
        RETURN NULL;
    END IF;
    UPDATE public.campaigns c
       SET sent_count = c.sent_count + d_sent,
           delivered_count = c.delivered_count + d_delivered,
           read_count = c.read_count + d_read,
           failed_count = c.failed_count + d_failed,
           status = CASE WHEN c.status = 'running' AND c.sent_count + d_sent + c.failed_count + d_failed >= c.total_recipients
                         THEN 'completed' ELSE c.status END
     WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.campaign_id;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.campaign_counters() IS
    'AFTER UPDATE OF status on messages_history: keeps the campaign''s counters exact and completes a running campaign once every message is sent or failed.';

CREATE TRIGGER rowcast_campaign_counters AFTER UPDATE OF status ON public.messages_history
    FOR EACH ROW WHEN (NEW.campaign_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION app.campaign_counters();

-- ---------------------------------------------------------------------------------------
-- What entering running / cancelled does. Runs with the rights of whoever moved the
-- campaign (SECURITY INVOKER): RLS keeps every read and write inside the campaign's tenant.
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION app.campaign_snapshot(p_campaign public.campaigns) RETURNS integer
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_body   text;
    v_count  integer;
BEGIN
    IF EXISTS (SELECT 1 FROM public.groups g WHERE g.tenant_id = p_campaign.tenant_id AND g.id = p_campaign.group_id AND g.deleted_at IS NOT NULL) THEN
        RAISE EXCEPTION 'campaign % cannot start: its group % is deleted', p_campaign.id, p_campaign.group_id USING ERRCODE = '22023';
    END IF;
    SELECT t.body INTO v_body FROM public.message_templates t WHERE t.id = p_campaign.template_id AND t.deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % cannot start: its template % is deleted', p_campaign.id, p_campaign.template_id USING ERRCODE = '22023';
    END IF;

    INSERT INTO public.campaign_recipients (tenant_id, campaign_id, contact_id, phone, variables)
    SELECT c.tenant_id, p_campaign.id, c.id, c.phone,
           c.attributes || jsonb_strip_nulls(jsonb_build_object(
               'first_name', c.first_name, 'last_name', c.last_name, 'phone', c.phone, 'email', c.email))
      FROM public.group_contacts gc
      JOIN public.contacts c ON c.tenant_id = gc.tenant_id AND c.id = gc.contact_id
     WHERE gc.tenant_id = p_campaign.tenant_id AND gc.group_id = p_campaign.group_id
       AND c.deleted_at IS NULL AND NOT c.opted_out
    ON CONFLICT ON CONSTRAINT campaign_recipients_campaign_contact_key DO NOTHING;

    INSERT INTO public.messages_history (tenant_id, campaign_id, recipient_id, contact_id, direction, phone, body)
    SELECT r.tenant_id, r.campaign_id, r.id, r.contact_id, 'outbound', r.phone, app.render_template(v_body, r.variables)
      FROM public.campaign_recipients r
     WHERE r.tenant_id = p_campaign.tenant_id AND r.campaign_id = p_campaign.id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count = 0 THEN
        RAISE EXCEPTION 'campaign % cannot start: group % has no live contact that accepts messages', p_campaign.id, p_campaign.group_id
            USING ERRCODE = '22023', HINT = 'Add contacts to the group first.';
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION app.campaign_snapshot(public.campaigns) IS
    'Snapshots a starting campaign''s live, not opted-out group contacts into campaign_recipients and queues one rendered message each; returns their number.';

CREATE FUNCTION app.campaign_status_effects() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_count integer;
BEGIN
    IF NEW.status = 'running' THEN
        v_count := app.campaign_snapshot(NEW);
        UPDATE public.campaigns c SET total_recipients = v_count
         WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.id;
    ELSIF NEW.status = 'cancelled' THEN
        UPDATE public.messages_history m SET status = 'cancelled'
         WHERE m.tenant_id = NEW.tenant_id AND m.campaign_id = NEW.id AND m.status = 'queued';
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION app.campaign_status_effects() IS
    'AFTER UPDATE OF status on campaigns: entering running snapshots recipients and queues messages; entering cancelled cancels queued messages.';

CREATE TRIGGER rowcast_campaign_status_effects AFTER UPDATE OF status ON public.campaigns
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('running', 'cancelled'))
    EXECUTE FUNCTION app.campaign_status_effects();

GRANT EXECUTE ON FUNCTION app.campaign_snapshot(public.campaigns) TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Row-level security, policies, grants.
-- ---------------------------------------------------------------------------------------
ALTER TABLE public.messages_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.messages_history FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.messages_history AS RESTRICTIVE FOR ALL
    USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]))
    WITH CHECK (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
COMMENT ON POLICY tenant_isolation ON public.messages_history IS 'Nobody reads or writes a message outside their tenant scope, nor moves one to another tenant.';
CREATE POLICY messages_history_read ON public.messages_history FOR SELECT
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY messages_history_read ON public.messages_history IS 'Every member reads their tenant''s message history.';
CREATE POLICY messages_history_write_members ON public.messages_history FOR ALL
    USING ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'))
    WITH CHECK ((SELECT app.current_user_role()) IN ('platform_admin', 'tenant_admin', 'tenant_user'));
COMMENT ON POLICY messages_history_write_members ON public.messages_history IS 'Every member records and updates their tenant''s messages (status moves are checked by the guard).';

GRANT SELECT, INSERT, UPDATE, DELETE ON public.messages_history TO rowcast_app;

-- ---------------------------------------------------------------------------------------
-- Domain actions (SECURITY INVOKER: RLS applies; the triggers above do the work).
-- ---------------------------------------------------------------------------------------
CREATE FUNCTION rpc.campaign_start(p_campaign_id uuid) RETURNS public.campaigns
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_campaign public.campaigns;
BEGIN
    SELECT * INTO v_campaign FROM public.campaigns c WHERE c.id = p_campaign_id AND c.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % not found', p_campaign_id USING ERRCODE = '22023';
    END IF;
    -- Unlike a PATCH re-setting the current status (an accepted no-op), asking for this
    -- action twice is a conflict.
    IF v_campaign.status NOT IN ('draft', 'scheduled') THEN
        RAISE EXCEPTION 'illegal campaign status change: % -> running', v_campaign.status USING ERRCODE = 'P0001';
    END IF;
    UPDATE public.campaigns c SET status = 'running' WHERE c.id = p_campaign_id;
    SELECT * INTO v_campaign FROM public.campaigns c WHERE c.id = p_campaign_id;
    RETURN v_campaign;
END
$$;
COMMENT ON FUNCTION rpc.campaign_start(uuid) IS
    'Starts a draft or scheduled campaign: snapshots its group''s live contacts into campaign_recipients, queues one message each, '
    'returns the campaign with total_recipients set. P0001 from any other status; 22023 when not found or without recipients.';

CREATE FUNCTION rpc.campaign_cancel(p_campaign_id uuid) RETURNS public.campaigns
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_campaign public.campaigns;
BEGIN
    SELECT * INTO v_campaign FROM public.campaigns c WHERE c.id = p_campaign_id AND c.deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % not found', p_campaign_id USING ERRCODE = '22023';
    END IF;
    -- Unlike a PATCH re-setting the current status (an accepted no-op), asking for this
    -- action twice is a conflict.
    IF v_campaign.status NOT IN ('draft', 'scheduled', 'running') THEN
        RAISE EXCEPTION 'illegal campaign status change: % -> cancelled', v_campaign.status USING ERRCODE = 'P0001';
    END IF;
    UPDATE public.campaigns c SET status = 'cancelled' WHERE c.id = p_campaign_id;
    SELECT * INTO v_campaign FROM public.campaigns c WHERE c.id = p_campaign_id;
    RETURN v_campaign;
END
$$;
COMMENT ON FUNCTION rpc.campaign_cancel(uuid) IS
    'Cancels a draft, scheduled or running campaign (its queued messages become cancelled); returns the campaign. P0001 from completed or cancelled.';

CREATE FUNCTION rpc.message_update_status(p_message_id uuid, p_status text, p_error text DEFAULT NULL)
RETURNS public.messages_history
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = ''
AS $$
DECLARE
    v_message public.messages_history;
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'cancelled', 'received') THEN
        RAISE EXCEPTION 'unknown message status: %', coalesce(p_status, 'null') USING ERRCODE = '22023',
            HINT = 'One of queued, sending, sent, delivered, read, failed, cancelled.';
    END IF;
    IF p_error IS NOT NULL AND p_status <> 'failed' THEN
        RAISE EXCEPTION 'an error text goes only with status failed, not %', p_status USING ERRCODE = '22023';
    END IF;
    UPDATE public.messages_history m
       SET status = p_status, error_message = coalesce(p_error, m.error_message)
     WHERE m.id = p_message_id
    RETURNING * INTO v_message;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'message % not found', p_message_id USING ERRCODE = '22023';
    END IF;
    RETURN v_message;
END
$$;
COMMENT ON FUNCTION rpc.message_update_status(uuid, text, text) IS
    'Moves a message along its status machine (P0001 naming both states on an illegal move), with an error text for failed; returns the message.';

GRANT EXECUTE ON FUNCTION rpc.campaign_start(uuid), rpc.campaign_cancel(uuid), rpc.message_update_status(uuid, text, text) TO rowcast_app;

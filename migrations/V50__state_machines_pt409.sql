-- State-machine refusals raise PostgREST's PT409 (→ HTTP 409 Conflict), not P0001
-- (which PostgREST, and so rowcast, answers with 400). Same bodies as V3/V5/V6 otherwise.
-- Covered: the campaign status machine (trigger and the campaign_start/campaign_cancel rpc),
-- the message status machine, and the soft-delete guard (changing a deleted row).

CREATE OR REPLACE FUNCTION app.soft_delete_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NOT NULL AND pg_trigger_depth() = 1
       AND (to_jsonb(NEW) - 'updated_at' - 'deleted_at') IS DISTINCT FROM (to_jsonb(OLD) - 'updated_at' - 'deleted_at') THEN
        RAISE EXCEPTION '% % is deleted: restore it (deleted_at = null) before changing it', TG_TABLE_NAME, OLD.id
            USING ERRCODE = 'PT409', HINT = 'PATCH deleted_at to null first.';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION app.campaign_status_guard() RETURNS trigger
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
                USING ERRCODE = 'PT409', HINT = 'A campaign is created as draft or scheduled.';
        END IF;
        RETURN NEW;
    END IF;

    IF v_old IN ('running', 'completed', 'cancelled')
       AND (NEW.group_id, NEW.template_id) IS DISTINCT FROM (OLD.group_id, OLD.template_id) THEN
        RAISE EXCEPTION 'campaign is %: its group and template can no longer change', v_old USING ERRCODE = 'PT409';
    END IF;
    IF NEW.status IS NOT DISTINCT FROM v_old THEN
        RETURN NEW;
    END IF;
    IF NOT (v_old, NEW.status) IN (('draft', 'scheduled'), ('scheduled', 'running'), ('running', 'completed'), ('draft', 'running'),
                                   ('draft', 'cancelled'), ('scheduled', 'cancelled'), ('running', 'cancelled')) THEN
        RAISE EXCEPTION 'illegal campaign status change: % -> %', v_old, NEW.status
            USING ERRCODE = 'PT409',
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

CREATE OR REPLACE FUNCTION app.message_status_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> (CASE NEW.direction WHEN 'inbound' THEN 'received' ELSE 'queued' END) THEN
            RAISE EXCEPTION 'illegal message status change: (new) -> %', NEW.status
                USING ERRCODE = 'PT409', HINT = 'Outbound messages are created queued, inbound ones received.';
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
            USING ERRCODE = 'PT409',
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

CREATE OR REPLACE FUNCTION rpc.campaign_start(p_campaign_id uuid) RETURNS public.campaigns
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
        RAISE EXCEPTION 'illegal campaign status change: % -> running', v_campaign.status USING ERRCODE = 'PT409';
    END IF;
    UPDATE public.campaigns c SET status = 'running' WHERE c.id = p_campaign_id;
    SELECT * INTO v_campaign FROM public.campaigns c WHERE c.id = p_campaign_id;
    RETURN v_campaign;
END
$$;

CREATE OR REPLACE FUNCTION rpc.campaign_cancel(p_campaign_id uuid) RETURNS public.campaigns
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
        RAISE EXCEPTION 'illegal campaign status change: % -> cancelled', v_campaign.status USING ERRCODE = 'PT409';
    END IF;
    UPDATE public.campaigns c SET status = 'cancelled' WHERE c.id = p_campaign_id;
    SELECT * INTO v_campaign FROM public.campaigns c WHERE c.id = p_campaign_id;
    RETURN v_campaign;
END
$$;

COMMENT ON FUNCTION rpc.campaign_start(uuid) IS
    'Starts a draft or scheduled campaign: snapshots its group''s live contacts into campaign_recipients, queues one message each, '
    'returns the campaign with total_recipients set. PT409 (HTTP 409) from any other status; 22023 when not found or without recipients.';
COMMENT ON FUNCTION rpc.campaign_cancel(uuid) IS
    'Cancels a draft, scheduled or running campaign (its queued messages become cancelled); returns the campaign. PT409 (HTTP 409) from completed or cancelled.';

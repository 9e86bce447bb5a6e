-- V41: metered usages rows (V40) are not captured as usage_* events.
--
-- Every metered write would otherwise add a usage_created/usage_updated event beside the
-- contact_created, message_created, … it accompanies: twice the events at commit (the
-- serialized section of SPEC §3.4) for nothing a listener needs — the row it follows is
-- already an event, and reaching a soft limit emits usage_limit_reached (V40). Custom
-- metrics stay captured as before.
--
-- A WHEN clause cannot read OLD on INSERT nor NEW on DELETE, so V11's single rowcast_capture
-- trigger on usages becomes one per event, all running app.rowcast_capture(). Calling
-- app.enable_realtime('public.usages', …) again would restore the single unfiltered trigger
-- (and leave these two): drop rowcast_capture_update/_delete first if you ever do.
DROP TRIGGER rowcast_capture ON public.usages;
CREATE CONSTRAINT TRIGGER rowcast_capture AFTER INSERT ON public.usages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NOT app.is_metered_metric(NEW.metric))
    EXECUTE FUNCTION app.rowcast_capture();
CREATE CONSTRAINT TRIGGER rowcast_capture_update AFTER UPDATE ON public.usages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NOT app.is_metered_metric(NEW.metric) OR NOT app.is_metered_metric(OLD.metric))
    EXECUTE FUNCTION app.rowcast_capture();
CREATE CONSTRAINT TRIGGER rowcast_capture_delete AFTER DELETE ON public.usages
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NOT app.is_metered_metric(OLD.metric))
    EXECUTE FUNCTION app.rowcast_capture();
COMMENT ON TRIGGER rowcast_capture ON public.usages IS 'Realtime capture of custom-metric usages rows (metered ones are not captured: V41).';
COMMENT ON TRIGGER rowcast_capture_update ON public.usages IS 'Realtime capture of custom-metric usages updates (V41).';
COMMENT ON TRIGGER rowcast_capture_delete ON public.usages IS 'Realtime capture of custom-metric usages deletes (V41).';

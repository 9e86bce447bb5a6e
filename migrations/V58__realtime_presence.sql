-- Supabase Realtime protocol (issue 10): Presence shared by every `rowcast serve` on the
-- database, the liveness of those instances, and the notification channel that relays
-- broadcast and presence messages between them.
--
-- Broadcast and presence messages are not rows of the event log: they are relayed on their own
-- channel, `rowcast_cluster`, which every instance LISTENs to (the ordered `rowcast_events`
-- relay is left alone). Since V20-era hardening only the owner and rowcast_app may connect,
-- so nobody else can send on that channel.
--
-- Presence lives in a table so that a client joining on instance B sees what was tracked on
-- instance A. Each instance beats every few seconds; an instance whose beat is older than the
-- staleness bound (it crashed, or lost the database) is swept by any other instance: its
-- presences are deleted and a `leave` diff is sent for each, so they vanish from every client
-- within a bounded time.
--
-- Nobody reads or writes these tables directly: RLS is forced with no policy, and the server
-- goes through the SECURITY DEFINER functions below (executable by rowcast_app only), which
-- also send the notifications in the same transaction as the change.

CREATE TABLE app.realtime_instances (
    instance_id  uuid        NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT realtime_instances_pkey PRIMARY KEY (instance_id)
);
COMMENT ON TABLE app.realtime_instances IS
    'One row per running rowcast serve (its realtime instance id) with its last heartbeat. A row whose heartbeat is '
    'older than the staleness bound is swept with its presences by app.realtime_instance_beat.';

CREATE TABLE app.realtime_presence (
    instance_id  uuid        NOT NULL,
    session_id   bigint      NOT NULL,
    tenant_id    uuid        NOT NULL,
    topic        text        NOT NULL,
    presence_key text        NOT NULL,
    meta         jsonb       NOT NULL,
    tracked_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT realtime_presence_pkey PRIMARY KEY (instance_id, session_id, tenant_id, topic),
    CONSTRAINT realtime_presence_instance_fkey FOREIGN KEY (instance_id)
        REFERENCES app.realtime_instances (instance_id) ON DELETE CASCADE,
    CONSTRAINT realtime_presence_meta_check CHECK (jsonb_typeof(meta) = 'object' AND meta ? 'phx_ref')
);
CREATE INDEX realtime_presence_room_idx ON app.realtime_presence (tenant_id, topic);
COMMENT ON TABLE app.realtime_presence IS
    'Presence of the Supabase Realtime protocol: what each socket tracked on a topic of a tenant (meta carries the '
    'phx_ref). Written only through app.realtime_presence_track/untrack; swept when its instance stops beating.';

ALTER TABLE app.realtime_instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.realtime_instances FORCE ROW LEVEL SECURITY;
ALTER TABLE app.realtime_presence ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.realtime_presence FORCE ROW LEVEL SECURITY;
REVOKE ALL ON app.realtime_instances, app.realtime_presence FROM PUBLIC;

-- One presence change as a `rowcast_cluster` notification (a diff with one join or one leave:
-- small enough for NOTIFY's 8000-byte limit whatever the size of the room).
CREATE FUNCTION app.realtime_presence_notify(p_tenant uuid, p_topic text, p_key text, p_meta jsonb, p_join boolean)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = ''
AS $$
    SELECT pg_notify('rowcast_cluster', jsonb_build_object(
        'kind', 'presence', 'tenant', p_tenant, 'topic', p_topic,
        'joins', CASE WHEN p_join THEN jsonb_build_object(p_key, jsonb_build_object('metas', jsonb_build_array(p_meta))) ELSE '{}'::jsonb END,
        'leaves', CASE WHEN p_join THEN '{}'::jsonb ELSE jsonb_build_object(p_key, jsonb_build_object('metas', jsonb_build_array(p_meta))) END
    )::text)
$$;
REVOKE ALL ON FUNCTION app.realtime_presence_notify(uuid, text, text, jsonb, boolean) FROM PUBLIC;

-- The instance beats; then it sweeps the instances that stopped beating (their presences
-- leave, one notification each). Returns how many presences were swept.
CREATE FUNCTION app.realtime_instance_beat(p_instance uuid, p_stale interval) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    gone record;
    swept integer := 0;
BEGIN
    INSERT INTO app.realtime_instances AS i (instance_id) VALUES (p_instance)
    ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now();
    FOR gone IN
        DELETE FROM app.realtime_presence p
         USING app.realtime_instances i
         WHERE p.instance_id = i.instance_id AND i.instance_id <> p_instance AND i.heartbeat_at < now() - p_stale
        RETURNING p.tenant_id, p.topic, p.presence_key, p.meta
    LOOP
        PERFORM app.realtime_presence_notify(gone.tenant_id, gone.topic, gone.presence_key, gone.meta, false);
        swept := swept + 1;
    END LOOP;
    DELETE FROM app.realtime_instances i WHERE i.instance_id <> p_instance AND i.heartbeat_at < now() - p_stale;
    RETURN swept;
END
$$;
COMMENT ON FUNCTION app.realtime_instance_beat(uuid, interval) IS
    'Heartbeat of one rowcast serve; sweeps instances silent for longer than p_stale (their presences leave).';
REVOKE ALL ON FUNCTION app.realtime_instance_beat(uuid, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.realtime_instance_beat(uuid, interval) TO rowcast_app;

-- Track (or re-track: the previous meta leaves, the new one joins) one socket's presence.
CREATE FUNCTION app.realtime_presence_track(p_instance uuid, p_session bigint, p_tenant uuid, p_topic text, p_key text, p_meta jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    prev record;
BEGIN
    INSERT INTO app.realtime_instances (instance_id) VALUES (p_instance)
    ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now();
    DELETE FROM app.realtime_presence p
     WHERE p.instance_id = p_instance AND p.session_id = p_session AND p.tenant_id = p_tenant AND p.topic = p_topic
    RETURNING p.presence_key, p.meta INTO prev;
    IF FOUND THEN
        PERFORM app.realtime_presence_notify(p_tenant, p_topic, prev.presence_key, prev.meta, false);
    END IF;
    INSERT INTO app.realtime_presence (instance_id, session_id, tenant_id, topic, presence_key, meta)
    VALUES (p_instance, p_session, p_tenant, p_topic, p_key, p_meta);
    PERFORM app.realtime_presence_notify(p_tenant, p_topic, p_key, p_meta, true);
END
$$;
REVOKE ALL ON FUNCTION app.realtime_presence_track(uuid, bigint, uuid, text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.realtime_presence_track(uuid, bigint, uuid, text, text, jsonb) TO rowcast_app;

-- Untrack one topic (p_topic) or every topic of the session (p_topic NULL: leave, disconnect).
CREATE FUNCTION app.realtime_presence_untrack(p_instance uuid, p_session bigint, p_topic text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    gone record;
    n integer := 0;
BEGIN
    FOR gone IN
        DELETE FROM app.realtime_presence p
         WHERE p.instance_id = p_instance AND p.session_id = p_session AND (p_topic IS NULL OR p.topic = p_topic)
        RETURNING p.tenant_id, p.topic, p.presence_key, p.meta
    LOOP
        PERFORM app.realtime_presence_notify(gone.tenant_id, gone.topic, gone.presence_key, gone.meta, false);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION app.realtime_presence_untrack(uuid, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.realtime_presence_untrack(uuid, bigint, text) TO rowcast_app;

-- The presence state of one room: `{key: {metas: [...]}}`.
CREATE FUNCTION app.realtime_presence_state(p_tenant uuid, p_topic text) RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
    SELECT coalesce(jsonb_object_agg(k.presence_key, jsonb_build_object('metas', k.metas)), '{}'::jsonb)
      FROM (SELECT p.presence_key, jsonb_agg(p.meta ORDER BY p.tracked_at) AS metas
              FROM app.realtime_presence p
             WHERE p.tenant_id = p_tenant AND p.topic = p_topic
             GROUP BY p.presence_key) k
$$;
REVOKE ALL ON FUNCTION app.realtime_presence_state(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.realtime_presence_state(uuid, text) TO rowcast_app;

-- A stopping instance removes itself and its presences (they leave at once).
CREATE FUNCTION app.realtime_instance_stop(p_instance uuid) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    gone record;
BEGIN
    FOR gone IN
        DELETE FROM app.realtime_presence p WHERE p.instance_id = p_instance
        RETURNING p.tenant_id, p.topic, p.presence_key, p.meta
    LOOP
        PERFORM app.realtime_presence_notify(gone.tenant_id, gone.topic, gone.presence_key, gone.meta, false);
    END LOOP;
    DELETE FROM app.realtime_instances i WHERE i.instance_id = p_instance;
END
$$;
REVOKE ALL ON FUNCTION app.realtime_instance_stop(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.realtime_instance_stop(uuid) TO rowcast_app;

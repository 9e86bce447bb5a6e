//! One Phoenix socket: its channels (topics) with their bindings, broadcast and presence
//! options; the loop that reads client messages, drains the hub queue, keeps the socket alive
//! and watches the token's expiry. Like `/ws`, nothing holds a lock across an await and every
//! write watches the session's kill signal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tungstenite::Message as WsMessage;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::changes::{self, Binding, Captured, MAX_BINDINGS};
use super::codec::{self, Message, Vsn};
use super::{Admission, PhxState};
use crate::auth::Principal;
use crate::db::TenantTx;
use crate::error::ApiError;
use crate::http::filters::resolve_tenant;
use crate::i18n::Lang;
use crate::realtime::cluster::{ClusterMessage, Kind};
use crate::realtime::event::{Event, Role};
use crate::realtime::hub::{Kill, Outbound, SessionId, SessionLink};
use crate::realtime::protocol::close;
use crate::realtime::replay;
use crate::realtime::session::{Inbound, Socket, deadline_of, read_loop};
use crate::realtime::subscription::{Channel as HubChannel, Subscription};

/// Channels one socket may join.
const MAX_CHANNELS: usize = 100;
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
const CAPTURED_SQL: &str = "SELECT c.relname::text, t.audience, t.redact FROM app.realtime_tables t \
                            JOIN pg_class c ON c.oid = t.table_name JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = 'public'";

/// One joined channel.
struct Joined {
    join_ref: Option<String>,
    bindings: Vec<Binding>,
    broadcast_self: bool,
    broadcast_ack: bool,
    presence_key: String,
    tracked: bool,
}

/// Who the socket acts for, set by its first successful join.
struct Identity {
    principal: Principal,
    /// `None`: a platform admin outside any tenant (postgres changes of every tenant).
    tenant: Option<Uuid>,
    role: Role,
    link: Arc<SessionLink>,
}

impl Identity {
    fn hub_channel(&self) -> HubChannel {
        self.tenant.map_or(HubChannel::All, HubChannel::Tenant)
    }

    /// Broadcast and presence rooms are per tenant; platform admins outside one share the nil room.
    fn room(&self) -> Uuid {
        self.tenant.unwrap_or(Uuid::nil())
    }
}

enum Stop {
    Close(u16, &'static str),
    Killed(Kill),
    Gone,
}

struct Session {
    state: Arc<PhxState>,
    vsn: Vsn,
    lang: Lang,
    id: SessionId,
    requested_tenant: Option<Uuid>,
    apikey: Option<Principal>,
    ident: Option<Identity>,
    queue: Option<mpsc::Receiver<Outbound>>,
    channels: HashMap<String, Joined>,
    sink: SplitSink<Socket, WsMessage>,
    inbound: mpsc::Receiver<Inbound>,
    deadline: Option<tokio::time::Instant>,
    seen_ms: Arc<AtomicU64>,
    epoch: Instant,
    presence_refs: u64,
}

pub async fn run(state: Arc<PhxState>, socket: Socket, admission: Admission) {
    let id = state.realtime.next_session_id();
    let (sink, stream) = socket.split();
    let (inbound_tx, inbound) = mpsc::channel(8);
    let (seen_ms, epoch) = (Arc::new(AtomicU64::new(0)), Instant::now());
    let reader = tokio::spawn(read_loop(stream, inbound_tx, seen_ms.clone(), epoch));
    let mut session = Session {
        state: state.clone(),
        vsn: admission.vsn,
        lang: admission.lang,
        id,
        requested_tenant: admission.tenant,
        apikey: admission.apikey,
        ident: None,
        queue: None,
        channels: HashMap::new(),
        sink,
        inbound,
        deadline: None,
        seen_ms,
        epoch,
        presence_refs: 0,
    };
    let stop = session.serve().await;
    session.finish(stop).await;
    reader.abort();
}

async fn recv_queue(queue: &mut Option<mpsc::Receiver<Outbound>>) -> Option<Outbound> {
    match queue {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

async fn killed(link: Option<Arc<SessionLink>>) -> Kill {
    match link {
        Some(l) => l.killed().await,
        None => std::future::pending().await,
    }
}

async fn expiry(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Session {
    async fn serve(&mut self) -> Stop {
        let every = self.state.realtime.keepalive;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let link = self.ident.as_ref().map(|i| i.link.clone());
            let step = tokio::select! {
                biased;
                kill = killed(link) => Err(Stop::Killed(kill)),
                _ = expiry(self.deadline) => self.expired().await,
                msg = self.inbound.recv() => self.on_inbound(msg).await,
                item = recv_queue(&mut self.queue) => self.on_outbound(item).await,
                _ = keepalive.tick() => self.keepalive(every).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// Every inbound frame goes through here (the place for per-session inbound limits).
    async fn on_inbound(&mut self, message: Option<Inbound>) -> Result<(), Stop> {
        let decoded = match message {
            None | Some(Inbound::Closed) => return Err(Stop::Gone),
            Some(Inbound::TooBig) => return Err(Stop::Close(close::TOO_BIG, "frame_too_big")),
            Some(Inbound::Binary(bytes)) => codec::decode_binary(self.vsn, &bytes),
            Some(Inbound::Text(text)) => codec::decode_text(self.vsn, &text),
        };
        match decoded {
            Ok(message) => self.on_message(message).await,
            Err(why) => {
                let frame = codec::push(self.vsn, None, "phoenix", "phx_error", &json!({"reason": why}));
                self.send_text(frame).await
            }
        }
    }

    async fn on_message(&mut self, m: Message) -> Result<(), Stop> {
        if m.topic == "phoenix" && m.event == "heartbeat" {
            return self.reply(&m, "ok", json!({})).await;
        }
        if m.event == "phx_join" {
            return self.join(&m).await;
        }
        if !self.channels.contains_key(&m.topic) {
            return self.error(&m, "unmatched topic: join it first").await;
        }
        match m.event.as_str() {
            "phx_leave" => {
                self.drop_channel(&m.topic).await;
                self.reply(&m, "ok", json!({})).await
            }
            "access_token" => self.refresh(&m).await,
            "broadcast" => self.broadcast(&m).await,
            "presence" => self.presence(&m).await,
            other => {
                let reason = format!("unknown event `{}`", other.chars().take(40).collect::<String>());
                self.error(&m, &reason).await
            }
        }
    }

    async fn reply(&mut self, to: &Message, status: &str, response: Value) -> Result<(), Stop> {
        let frame = codec::reply(self.vsn, to, status, &response);
        self.send_text(frame).await
    }

    async fn error(&mut self, to: &Message, reason: &str) -> Result<(), Stop> {
        let frame = codec::error_reply(self.vsn, to, reason);
        self.send_text(frame).await
    }

    fn api_reason(&self, e: &ApiError) -> String {
        e.message_in(self.lang).to_string()
    }

    // ---- join ---------------------------------------------------------------------------

    async fn join(&mut self, m: &Message) -> Result<(), Stop> {
        match self.try_join(m).await {
            Ok(Some(reply)) => self.after_join(m, reply).await,
            Ok(None) => Ok(()),
            Err(reason) => self.error(m, &reason).await,
        }
    }

    /// Checks and registers a join; returns the reply's response, or why it was refused.
    async fn try_join(&mut self, m: &Message) -> Result<Option<Value>, String> {
        let sub_topic = m.topic.strip_prefix("realtime:").filter(|t| !t.is_empty() && m.topic.len() <= 255);
        if sub_topic.is_none() {
            return Err("a channel topic is realtime:<name> (at most 255 bytes)".into());
        }
        if self.channels.len() >= MAX_CHANNELS && !self.channels.contains_key(&m.topic) {
            return Err(format!("too many channels on this socket ({MAX_CHANNELS})"));
        }
        let config = m.payload.get("config").cloned().unwrap_or(Value::Null);
        if config.get("private").and_then(Value::as_bool) == Some(true) {
            return Err("private channels (RLS on realtime.messages) are not supported by rowcast".into());
        }
        let principal = self.principal_of(m)?;
        let role = self.admit(&principal).await?;
        let raw_bindings = match config.get("postgres_changes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_BINDINGS => a.clone(),
            Some(Value::Array(_)) => return Err(format!("at most {MAX_BINDINGS} postgres_changes bindings per channel")),
            Some(_) => return Err("config.postgres_changes is a list of bindings".into()),
        };
        let bindings = self.bindings(&raw_bindings, role).await?;
        if self.channels.contains_key(&m.topic) {
            self.drop_channel(&m.topic).await;
        }
        let flag = |path: [&str; 2]| config.get(path[0]).and_then(|c| c.get(path[1])).and_then(Value::as_bool) == Some(true);
        let key = config.get("presence").and_then(|p| p.get("key")).and_then(Value::as_str).filter(|k| !k.is_empty());
        let joined = Joined {
            join_ref: m.join_ref.clone(),
            broadcast_self: flag(["broadcast", "self"]),
            broadcast_ack: flag(["broadcast", "ack"]),
            presence_key: key.map_or_else(|| Uuid::new_v4().to_string(), |k| k.chars().take(255).collect()),
            tracked: false,
            bindings,
        };
        let echo: Vec<Value> = joined.bindings.iter().map(|b| b.echo.clone()).collect();
        self.channels.insert(m.topic.clone(), joined);
        let Some(ident) = &self.ident else { return Err("no identity".into()) };
        self.state.realtime.cluster.join(ident.room(), &m.topic, &ident.link);
        self.resubscribe();
        // Checked again now that the subscription is in the hub: a revocation committed before
        // this check is seen here, one committed after it reaches the hub with the subscription in.
        if let Err(e) = replay::enter(&self.state.realtime.db, &principal, ident.hub_channel()).await {
            self.drop_channel(&m.topic).await;
            return Err(self.api_reason(&e));
        }
        Ok(Some(json!({"postgres_changes": echo})))
    }

    /// The reply, then `system` (the subscription is already live), then the presence state.
    async fn after_join(&mut self, m: &Message, response: Value) -> Result<(), Stop> {
        let has_bindings = response["postgres_changes"].as_array().is_some_and(|a| !a.is_empty());
        self.reply(m, "ok", response).await?;
        let sub_topic = m.topic.trim_start_matches("realtime:").to_string();
        if has_bindings {
            let system =
                json!({"channel": sub_topic, "extension": "postgres_changes", "message": "Subscribed to PostgreSQL", "status": "ok"});
            self.send_text(codec::push(self.vsn, m.join_ref.as_deref(), &m.topic, "system", &system)).await?;
        }
        let presence_enabled =
            m.payload.get("config").and_then(|c| c.get("presence")).and_then(|p| p.get("enabled")).and_then(Value::as_bool) == Some(true);
        if presence_enabled {
            let room = self.ident.as_ref().map(Identity::room).unwrap_or_default();
            match self.state.realtime.cluster.presence_state(room, &m.topic).await {
                Ok(state) => self.send_text(codec::push(self.vsn, m.join_ref.as_deref(), &m.topic, "presence_state", &state)).await?,
                Err(e) => {
                    let reason = self.api_reason(&e);
                    self.system_error(&m.topic, "presence", &reason).await?;
                }
            }
        }
        Ok(())
    }

    /// The join's identity: its `access_token`, else the socket's `apikey` when it is a JWT.
    fn principal_of(&self, m: &Message) -> Result<Principal, String> {
        let principal = match m.payload.get("access_token").and_then(Value::as_str) {
            Some(token) => self.state.realtime.jwt.verify(token).map_err(|e| format!("invalid access_token: {e}"))?,
            None => self.apikey.clone().ok_or("no identity: send the user's JWT as access_token (or as apikey)")?,
        };
        if let Some(ident) = &self.ident
            && ident.principal.user_id != principal.user_id
        {
            return Err("this socket belongs to another user".into());
        }
        Ok(principal)
    }

    /// The membership check: the first join resolves the tenant and registers the socket in
    /// the hub; later joins re-check the same tenant. Returns the role there.
    async fn admit(&mut self, principal: &Principal) -> Result<Role, String> {
        if let Some(ident) = &mut self.ident {
            let role = replay::enter(&self.state.realtime.db, principal, ident.hub_channel())
                .await
                .map_err(|e| e.message_in(self.lang).to_string())?;
            ident.role = role;
            ident.principal = principal.clone();
            self.deadline = Some(deadline_of(principal.expires_at));
            return Ok(role);
        }
        let (tenant, role) = self.enter(principal).await.map_err(|e| self.api_reason(&e))?;
        let (link, queue) = SessionLink::new(self.id, principal.user_id, self.state.realtime.queue_capacity);
        self.state.realtime.hub.register(link.clone());
        self.ident = Some(Identity { principal: principal.clone(), tenant, role, link });
        self.queue = Some(queue);
        self.deadline = Some(deadline_of(principal.expires_at));
        Ok(role)
    }

    async fn enter(&self, principal: &Principal) -> Result<(Option<Uuid>, Role), ApiError> {
        let tenant = resolve_tenant(principal, self.requested_tenant)?;
        let mut conn = self.state.realtime.db.conn().await?;
        let tx = TenantTx::begin(&self.state.realtime.db, &mut conn, principal, tenant).await?;
        let ctx = tx.context().clone();
        tx.commit().await?;
        let role = Role::parse(&ctx.role).ok_or_else(|| ApiError::internal(&format_args!("unknown role {}", ctx.role)))?;
        Ok((ctx.tenant_id, role))
    }

    async fn bindings(&self, raw: &[Value], role: Role) -> Result<Vec<Binding>, String> {
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let captured = self.captured().await.map_err(|e| self.api_reason(&e))?;
        let catalog = self.state.rest.catalog();
        let mut out: Vec<Binding> = Vec::with_capacity(raw.len());
        for b in raw {
            let binding = Binding::parse(b, role, &captured, &catalog)?;
            out.push(binding);
        }
        Ok(out)
    }

    async fn captured(&self) -> Result<HashMap<String, Captured>, ApiError> {
        let conn = self.state.realtime.db.conn().await?;
        let rows = conn.query(CAPTURED_SQL, &[]).await?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), Captured { audience: r.get(1), redact: r.get(2) })).collect())
    }

    /// Puts the socket's one hub subscription in line with its channels: tenant and role, and
    /// the union of the bound tables (none bound: no subscription).
    fn resubscribe(&self) {
        let Some(ident) = &self.ident else { return };
        let hub = &self.state.realtime.hub;
        let channel = ident.hub_channel();
        let bindings: Vec<&Binding> = self.channels.values().flat_map(|c| c.bindings.iter()).collect();
        if bindings.is_empty() {
            hub.unsubscribe(self.id, channel);
            return;
        }
        // The hub may have re-scoped the role since (a membership role change): keep its view.
        let role = hub.subscriptions(self.id).into_iter().find(|s| s.channel == channel).map_or(ident.role, |s| s.role);
        let tables = match bindings.iter().any(|b| b.table.is_none()) {
            true => None,
            false => {
                let mut t: Vec<String> = bindings.iter().filter_map(|b| b.table.clone()).collect();
                t.sort_unstable();
                t.dedup();
                Some(t)
            }
        };
        let sub = Subscription { channel, role, tables, events: None, filter: Vec::new() };
        hub.subscribe(self.id, Arc::new(sub));
    }

    /// Leaves a channel: its bindings, its room, its presence.
    async fn drop_channel(&mut self, topic: &str) {
        let Some(joined) = self.channels.remove(topic) else { return };
        if let Some(ident) = &self.ident {
            self.state.realtime.cluster.leave(ident.room(), topic, self.id);
        }
        self.resubscribe();
        if joined.tracked {
            let _ = self.state.realtime.cluster.untrack(self.id, Some(topic)).await;
        }
    }

    async fn system_error(&mut self, topic: &str, extension: &str, message: &str) -> Result<(), Stop> {
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        let payload =
            json!({"channel": topic.trim_start_matches("realtime:"), "extension": extension, "message": message, "status": "error"});
        self.send_text(codec::push(self.vsn, join_ref.as_deref(), topic, "system", &payload)).await
    }

    /// `system` error then `phx_close`: the channel is over (the client may join again).
    async fn close_channel(&mut self, topic: &str, message: &str) -> Result<(), Stop> {
        self.system_error(topic, "system", message).await?;
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        self.drop_channel(topic).await;
        self.send_text(codec::push(self.vsn, join_ref.as_deref(), topic, "phx_close", &json!({}))).await
    }

    async fn close_all(&mut self, message: &str) -> Result<(), Stop> {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            self.close_channel(&topic, message).await?;
        }
        Ok(())
    }

    // ---- token refresh and expiry --------------------------------------------------------

    /// `access_token`: same user, membership re-checked; otherwise the channel closes.
    async fn refresh(&mut self, m: &Message) -> Result<(), Stop> {
        let Some(token) = m.payload.get("access_token").and_then(Value::as_str) else {
            return self.error(m, "access_token needs {access_token}").await;
        };
        let principal = match self.state.realtime.jwt.verify(token) {
            Ok(p) => p,
            Err(e) => return self.close_channel(&m.topic, &format!("invalid access_token: {e}")).await,
        };
        let Some(ident) = &self.ident else { return Ok(()) };
        if principal.user_id != ident.principal.user_id {
            return self.close_channel(&m.topic, "the new token is for another user").await;
        }
        match replay::enter(&self.state.realtime.db, &principal, ident.hub_channel()).await {
            Ok(_) => {
                self.deadline = Some(deadline_of(principal.expires_at));
                if let Some(ident) = &mut self.ident {
                    ident.principal = principal;
                }
                self.reply(m, "ok", json!({})).await
            }
            Err(e) => {
                let reason = self.api_reason(&e);
                self.close_channel(&m.topic, &reason).await
            }
        }
    }

    /// The token expired without a refresh: every channel closes (the socket stays, so the
    /// client can join again with a fresh token).
    async fn expired(&mut self) -> Result<(), Stop> {
        self.deadline = None;
        self.close_all("Token has expired").await
    }

    // ---- broadcast and presence ----------------------------------------------------------

    async fn broadcast(&mut self, m: &Message) -> Result<(), Stop> {
        let (Some(event), Some(ident)) = (m.payload.get("event").and_then(Value::as_str), &self.ident) else {
            return self.error(m, "broadcast needs {type: \"broadcast\", event, payload}").await;
        };
        let payload = m.payload.get("payload").cloned().unwrap_or(Value::Null);
        let cluster = &self.state.realtime.cluster;
        let origin = cluster.origin(self.id);
        let sent = cluster.broadcast(ident.room(), &m.topic, &origin, event, &payload).await;
        let ack = self.channels.get(&m.topic).is_some_and(|c| c.broadcast_ack);
        match sent {
            Ok(()) if ack => self.reply(m, "ok", json!({})).await,
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = self.api_reason(&e);
                self.error(m, &reason).await
            }
        }
    }

    async fn presence(&mut self, m: &Message) -> Result<(), Stop> {
        let Some(room) = self.ident.as_ref().map(Identity::room) else { return Ok(()) };
        let cluster = self.state.realtime.cluster.clone();
        let outcome = match m.payload.get("event").and_then(Value::as_str) {
            Some("track") => {
                let mut meta = match m.payload.get("payload") {
                    Some(Value::Object(o)) => o.clone(),
                    None | Some(Value::Null) => Default::default(),
                    Some(_) => return self.error(m, "a presence payload is an object").await,
                };
                self.presence_refs += 1;
                meta.insert(
                    "phx_ref".into(),
                    format!("{}-{}-{}", &cluster.instance.simple().to_string()[..8], self.id, self.presence_refs).into(),
                );
                let key = self.channels.get(&m.topic).map(|c| c.presence_key.clone()).unwrap_or_default();
                let tracked = cluster.track(self.id, room, &m.topic, &key, &Value::Object(meta)).await;
                if tracked.is_ok()
                    && let Some(c) = self.channels.get_mut(&m.topic)
                {
                    c.tracked = true;
                }
                tracked
            }
            Some("untrack") => {
                if let Some(c) = self.channels.get_mut(&m.topic) {
                    c.tracked = false;
                }
                cluster.untrack(self.id, Some(&m.topic)).await
            }
            _ => return self.error(m, "presence needs {type: \"presence\", event: \"track\"|\"untrack\", payload}").await,
        };
        match outcome {
            Ok(()) => self.reply(m, "ok", json!({})).await,
            Err(e) => {
                let reason = self.api_reason(&e);
                self.error(m, &reason).await
            }
        }
    }

    // ---- outbound ------------------------------------------------------------------------

    async fn on_outbound(&mut self, item: Option<Outbound>) -> Result<(), Stop> {
        match item {
            Some(Outbound::Event(event)) => self.deliver(&event).await,
            Some(Outbound::Cluster(message)) => self.relay(&message).await,
            Some(Outbound::Revoked(_, reason)) => self.close_all(reason).await,
            None => Err(Stop::Gone),
        }
    }

    /// One `postgres_changes` frame per channel with a matching binding.
    async fn deliver(&mut self, event: &Event) -> Result<(), Stop> {
        if !changes::is_row_change(event) {
            return Ok(());
        }
        let mut frames = Vec::new();
        for (topic, joined) in &self.channels {
            let ids: Vec<u32> = joined.bindings.iter().filter(|b| b.matches(event)).map(|b| b.id).collect();
            if !ids.is_empty() {
                frames.push(changes::frame(event, || self.state.rest.catalog(), self.vsn, topic, &ids));
            }
        }
        for frame in frames {
            self.send(WsMessage::Text(frame)).await?;
        }
        Ok(())
    }

    async fn relay(&mut self, message: &ClusterMessage) -> Result<(), Stop> {
        let Some(joined) = self.channels.get(&message.topic) else { return Ok(()) };
        let frame = match message.kind {
            Kind::Broadcast => {
                let own = message.origin.as_deref() == Some(self.state.realtime.cluster.origin(self.id).as_str());
                if own && !joined.broadcast_self {
                    return Ok(());
                }
                message.frames[self.vsn.slot()].get_or_init(|| {
                    let payload = json!({"type": "broadcast", "event": message.event, "payload": message.payload});
                    codec::push(self.vsn, None, &message.topic, "broadcast", &payload).into()
                })
            }
            Kind::Presence => message.frames[self.vsn.slot()].get_or_init(|| {
                let payload = json!({"joins": message.joins, "leaves": message.leaves});
                codec::push(self.vsn, None, &message.topic, "presence_diff", &payload).into()
            }),
        };
        let frame = frame.clone();
        self.send(WsMessage::Text(frame)).await
    }

    // ---- socket --------------------------------------------------------------------------

    async fn keepalive(&mut self, every: Duration) -> Result<(), Stop> {
        let seen = Duration::from_millis(self.seen_ms.load(Ordering::Relaxed));
        if self.epoch.elapsed().saturating_sub(seen) > every * 2 {
            return Err(Stop::Close(close::NO_PONG, "keepalive_timeout"));
        }
        self.send(WsMessage::Ping(Default::default())).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Stop> {
        self.send(WsMessage::text(text)).await
    }

    async fn send(&mut self, message: WsMessage) -> Result<(), Stop> {
        match self.ident.as_ref().map(|i| i.link.clone()) {
            Some(link) => tokio::select! {
                biased;
                kill = link.killed() => Err(Stop::Killed(kill)),
                sent = self.sink.send(message) => sent.map_err(|_| Stop::Gone),
            },
            None => self.sink.send(message).await.map_err(|_| Stop::Gone),
        }
    }

    async fn finish(mut self, stop: Stop) {
        let rt = &self.state.realtime;
        if let Some(ident) = &self.ident {
            rt.hub.unregister(self.id);
            for topic in self.channels.keys() {
                rt.cluster.leave(ident.room(), topic, self.id);
            }
            if self.channels.values().any(|c| c.tracked) {
                let _ = rt.cluster.untrack(self.id, None).await;
            }
        }
        let (code, reason) = match stop {
            Stop::Gone => {
                let _ = tokio::time::timeout(CLOSE_FLUSH, self.sink.close()).await;
                return;
            }
            Stop::Close(code, reason) => (code, reason),
            Stop::Killed(Kill::Lagging) => (close::LAGGING, "lagging"),
            Stop::Killed(Kill::Shutdown) => (close::GOING_AWAY, "shutdown"),
            Stop::Killed(Kill::UserDisabled) => (close::FORBIDDEN, "user_disabled"),
        };
        let sink = &mut self.sink;
        let closing = async move {
            sink.send(WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await?;
            sink.close().await
        };
        let _ = tokio::time::timeout(CLOSE_FLUSH, closing).await;
        tracing::debug!(session = self.id, code, reason, "phoenix session closed");
    }
}

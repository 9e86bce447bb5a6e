//! One Phoenix socket: its channels (topics) with their bindings, broadcast and presence
//! options; the loop that reads client messages, drains the hub queue, keeps the socket alive
//! and watches the token's expiry. Like `/ws`, nothing holds a lock across an await and every
//! write watches the session's kill signal. Joining, token refresh and expiry live in `join`;
//! broadcast and presence in `rooms`. One task per socket, as for `/ws` (`session.rs`): client
//! messages run boxed, so an idle socket's task stays small.

mod join;
mod rooms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tungstenite::Message as WsMessage;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;

use super::changes::{self, Binding};
use super::codec::{self, Message, Vsn};
use super::{Admission, PhxState};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::i18n::Lang;
use crate::limits::SessionPermit;
use crate::realtime::event::{Event, Role};
use crate::realtime::hub::{Kill, Outbound, SessionId, SessionLink};
use crate::realtime::protocol::close;
use crate::realtime::session::{Heard, Inbound, OwnedSocket, Socket, Stop, write};
use crate::realtime::subscription::Channel as HubChannel;

const CLOSE_FLUSH: Duration = Duration::from_secs(2);

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

struct Session {
    state: Arc<PhxState>,
    vsn: Vsn,
    lang: Lang,
    id: SessionId,
    requested_tenant: Option<Uuid>,
    apikey: Option<Principal>,
    ident: Option<Identity>,
    channels: HashMap<String, Joined>,
    socket: OwnedSocket,
    heard: Heard,
    deadline: Option<tokio::time::Instant>,
    presence_refs: u64,
    /// The user's concurrent-session slot (`ROWCAST_WS_MAX_SESSIONS_PER_USER`): taken at the
    /// upgrade when the `apikey` is the user's JWT, else by the first join; freed at the end.
    slot: Option<SessionPermit>,
}

pub(crate) async fn run(state: Arc<PhxState>, socket: Socket, admission: Admission) {
    let id = state.realtime.next_session_id();
    let heard = Heard::new(state.realtime.limits.frame_limiter());
    let mut session = Session {
        state: state.clone(),
        vsn: admission.vsn,
        lang: admission.lang,
        id,
        requested_tenant: admission.tenant,
        apikey: admission.apikey,
        ident: None,
        channels: HashMap::new(),
        socket: OwnedSocket::new(socket),
        heard,
        deadline: None,
        presence_refs: 0,
        slot: admission.slot,
    };
    let stop = session.serve().await;
    Box::pin(session.finish(stop)).await;
}

/// The hub queue, once the first join registered the socket.
async fn recv_queue(link: Option<&SessionLink>) -> Outbound {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

async fn killed(link: Option<&SessionLink>) -> Kill {
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
                kill = killed(link.as_deref()) => Err(Stop::Killed(kill)),
                _ = self.state.realtime.stopped() => Err(Stop::Killed(Kill::Shutdown)),
                _ = expiry(self.deadline) => Box::pin(self.expired()).await,
                msg = self.socket.get().next() => match self.heard.take(msg) {
                    Some(inbound) => Box::pin(self.on_inbound(Some(inbound))).await,
                    None => Ok(()),
                },
                item = recv_queue(link.as_deref()) => self.on_outbound(item).await,
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
            Some(Inbound::TooFast) => return Err(Stop::Close(close::POLICY_VIOLATION, "rate_limited")),
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

    // ---- outbound ------------------------------------------------------------------------

    async fn on_outbound(&mut self, item: Outbound) -> Result<(), Stop> {
        match item {
            Outbound::Event(event) => self.deliver(&event).await,
            Outbound::Cluster(message) => self.relay(&message).await,
            Outbound::Revoked(_, reason) => Box::pin(self.close_all(reason)).await,
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

    // ---- socket --------------------------------------------------------------------------

    async fn keepalive(&mut self, every: Duration) -> Result<(), Stop> {
        if self.heard.silent_for() > every * 2 {
            return Err(Stop::Close(close::NO_PONG, "keepalive_timeout"));
        }
        self.send(WsMessage::Ping(Default::default())).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Stop> {
        self.send(WsMessage::text(text)).await
    }

    async fn send(&mut self, message: WsMessage) -> Result<(), Stop> {
        let link = self.ident.as_ref().map(|i| &*i.link);
        write(self.socket.get(), link, message).await.map_err(|kill| kill.map_or(Stop::Gone, Stop::Killed))
    }

    async fn finish(mut self, stop: Stop) {
        let rt = &self.state.realtime;
        if let Some(ident) = &self.ident {
            rt.hub.unregister(self.id);
            ident.link.close();
            for topic in self.channels.keys() {
                rt.cluster.leave(ident.room(), topic, self.id);
            }
            if self.channels.values().any(|c| c.tracked) {
                let _ = rt.cluster.untrack(self.id, None).await;
            }
        }
        let Some((code, reason)) = stop.close_frame() else {
            let _ = tokio::time::timeout(CLOSE_FLUSH, SinkExt::close(self.socket.get())).await;
            return;
        };
        let sink = self.socket.get();
        let closing = async move {
            sink.send(WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await?;
            SinkExt::close(sink).await
        };
        let _ = tokio::time::timeout(CLOSE_FLUSH, closing).await;
        tracing::debug!(session = self.id, code, reason, "phoenix session closed");
    }
}

//! One WebSocket session, one task: it owns the socket, reads the client's frames, drains
//! the session's bounded queue, pings, and watches the token's expiry. Nothing here holds a
//! lock across an await; every socket write also watches the session's kill signal, so a
//! blocked socket never keeps a lagging or shutting-down session alive.
//!
//! An idle session is one parked task whose future stays small: the rare, heavy steps
//! (subscribing with a replay, client commands, the closing handshake) run boxed, so their
//! database futures take memory only while they run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use uuid::Uuid;
use warp::hyper::upgrade::Upgraded;

use super::Realtime;
use super::event::{Event, Role};
use super::hub::{Kill, Outbound, SessionLink};
use super::protocol::{self, close};
use super::subscription::{Channel, Subscription};
use crate::auth::Principal;
use crate::i18n::Lang;

/// How long a lagging session may take to flush its `lagging` frame and close.
const LAG_FLUSH: Duration = Duration::from_secs(10);
/// How long other closes may take.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// Who connected, as checked before the upgrade.
pub struct Admission {
    pub principal: Principal,
    pub tenant: Option<Uuid>,
    pub role: Role,
    pub lang: Lang,
    /// `?since=`: resume the connect-time subscription from this cursor.
    pub since: Option<i64>,
}

/// Why the session loop stopped.
pub enum Stop {
    Close(u16, &'static str),
    Killed(Kill),
    /// The peer closed or the socket failed: nothing more to say.
    Gone,
}

impl Stop {
    /// The close frame's code and reason; `None` when the peer is gone (nothing to send).
    pub(super) fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            Stop::Gone => None,
            Stop::Close(code, reason) => Some((code, reason)),
            Stop::Killed(Kill::Lagging) => Some((close::LAGGING, "lagging")),
            Stop::Killed(Kill::Shutdown) => Some((close::GOING_AWAY, "shutdown")),
            Stop::Killed(Kill::UserDisabled) => Some((close::FORBIDDEN, "user_disabled")),
        }
    }
}

pub(super) enum Inbound {
    Text(String),
    Binary(Vec<u8>),
    TooBig,
    /// Over `ROWCAST_WS_FRAMES_PER_SEC`: the session is closed with 1008.
    TooFast,
    Closed,
}

/// The server side of an upgraded connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A session's socket. The upgraded connection is `Send` but not `Sync`; the session only
/// ever reaches it through `&mut` (`Mutex::get_mut`, no locking), so a `&Session` held across
/// an await keeps the session's future `Send`.
pub struct OwnedSocket(std::sync::Mutex<Socket>);

impl OwnedSocket {
    pub fn new(socket: Socket) -> Self {
        Self(std::sync::Mutex::new(socket))
    }

    pub fn get(&mut self) -> &mut Socket {
        self.0.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub struct Session {
    pub(super) state: Arc<Realtime>,
    pub(super) principal: Principal,
    pub(super) lang: Lang,
    pub(super) link: Arc<SessionLink>,
    socket: OwnedSocket,
    heard: Heard,
    /// Every event up to here was delivered or did not concern the session.
    pub(super) cursor: i64,
    /// Progress of a replay in flight (a resume must not skip what it has not sent yet).
    pub(super) replaying: Option<i64>,
    /// Per channel: the seq through which a replay already sent the channel's events.
    pub(super) replayed: HashMap<Channel, i64>,
    /// Per channel: the head when its current subscription went live.
    pub(super) started: HashMap<Channel, i64>,
    /// Queued events up to here are re-checked against the current subscriptions.
    pub(super) recheck_through: i64,
    pub(super) deadline: tokio::time::Instant,
}

/// Runs a session to its end. Called once the upgrade has completed.
pub async fn run(state: Arc<Realtime>, socket: Socket, admission: Admission) {
    let rt = &*state;
    let id = rt.next_session_id();
    let link = SessionLink::new(id, admission.principal.user_id, rt.queue_capacity);
    rt.hub.register(link.clone());
    let mut session = Session {
        state: state.clone(),
        deadline: deadline_of(admission.principal.expires_at),
        principal: admission.principal,
        lang: admission.lang,
        link: link.clone(),
        socket: OwnedSocket::new(socket),
        heard: Heard::new(rt.limits.frame_limiter()),
        cursor: 0,
        replaying: None,
        replayed: HashMap::new(),
        started: HashMap::new(),
        recheck_through: 0,
    };
    let channel = admission.tenant.map_or(Channel::All, Channel::Tenant);
    let tenant_ids = vec![admission.tenant.map_or_else(|| "*".to_string(), |t| t.to_string())];
    let sub = Arc::new(Subscription::whole(channel, admission.role));
    let stop = match Box::pin(session.open(sub, admission.since, Some(tenant_ids))).await {
        Ok(()) => session.serve().await,
        Err(stop) => stop,
    };
    Box::pin(session.finish(stop)).await;
    state.hub.unregister(id);
    link.close();
}

/// The instant a token's `exp` falls due.
pub(super) fn deadline_of(expires_at: i64) -> tokio::time::Instant {
    let left = expires_at.saturating_sub(chrono::Utc::now().timestamp()).max(0);
    tokio::time::Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0))
}

impl Session {
    async fn serve(&mut self) -> Stop {
        let every = self.state.keepalive;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let link = self.link.clone();
        loop {
            let step = tokio::select! {
                biased;
                kill = link.killed() => Err(Stop::Killed(kill)),
                _ = tokio::time::sleep_until(self.deadline) => Err(Stop::Close(close::TOKEN_EXPIRED, "token_expired")),
                msg = self.socket.get().next() => match self.heard.take(msg) {
                    Some(inbound) => Box::pin(self.on_inbound(Some(inbound))).await,
                    None => Ok(()),
                },
                item = link.recv() => self.on_outbound(item).await,
                _ = keepalive.tick() => self.keepalive(every).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    async fn on_outbound(&mut self, item: Outbound) -> Result<(), Stop> {
        match item {
            Outbound::Event(event) => self.deliver(&event).await,
            Outbound::Revoked(channel, reason) => {
                self.replayed.remove(&channel);
                self.started.remove(&channel);
                self.send_text(protocol::unsubscribed(channel, reason)).await
            }
            Outbound::Cluster(_) => Ok(()),
        }
    }

    /// Sends a live event unless a replay already sent it or its subscription is gone.
    async fn deliver(&mut self, event: &Event) -> Result<(), Stop> {
        if event.seq > self.recheck_through || self.still_wanted(event) {
            self.send(Message::Text(event.frame(self.lang))).await?;
        }
        self.cursor = self.cursor.max(event.seq);
        Ok(())
    }

    fn still_wanted(&self, event: &Event) -> bool {
        let subs = self.state.hub.subscriptions(self.link.id);
        let mut wanted = false;
        for sub in subs.iter().filter(|s| s.matches(event)) {
            if self.replayed.get(&sub.channel).is_some_and(|through| event.seq <= *through) {
                return false;
            }
            wanted = true;
        }
        wanted
    }

    async fn keepalive(&mut self, every: Duration) -> Result<(), Stop> {
        if self.heard.silent_for() > every * 2 {
            return Err(Stop::Close(close::NO_PONG, "keepalive_timeout"));
        }
        self.send(Message::Ping(Default::default())).await
    }

    pub(super) async fn send_text(&mut self, text: String) -> Result<(), Stop> {
        self.send(Message::text(text)).await
    }

    /// Writes one frame, unless the session is killed meanwhile.
    pub(super) async fn send(&mut self, message: Message) -> Result<(), Stop> {
        write(self.socket.get(), Some(&self.link), message).await.map_err(|kill| kill.map_or(Stop::Gone, Stop::Killed))
    }

    /// The cursor a client resumes from: nothing after it is lost.
    fn resume_cursor(&self) -> i64 {
        self.replaying.map_or(self.cursor, |r| r.min(self.cursor))
    }

    async fn finish(mut self, stop: Stop) {
        let cursor = self.resume_cursor();
        let Some((code, reason)) = stop.close_frame() else {
            let _ = tokio::time::timeout(CLOSE_FLUSH, SinkExt::close(self.socket.get())).await;
            return;
        };
        let lagging = code == close::LAGGING;
        let sink = self.socket.get();
        let closing = async move {
            if lagging {
                sink.send(Message::text(protocol::lagging(cursor))).await?;
            }
            let frame = CloseFrame { code: CloseCode::from(code), reason: protocol::close_reason(reason, cursor).into() };
            sink.send(Message::Close(Some(frame))).await?;
            SinkExt::close(sink).await
        };
        let bound = if lagging { LAG_FLUSH } else { CLOSE_FLUSH };
        let _ = tokio::time::timeout(bound, closing).await;
        tracing::debug!(session = self.link.id, code, reason, cursor, "websocket session closed");
    }
}

/// Writes one frame unless the session is killed first: `Err(Some(kill))` killed, `Err(None)`
/// the socket failed. The same as a biased select of the kill signal and the write, except
/// that the kill signal is only waited on (a registration with its `Notify`) when the write
/// has to wait: most writes complete at once.
pub(super) async fn write(socket: &mut Socket, link: Option<&SessionLink>, message: Message) -> Result<(), Option<Kill>> {
    let Some(link) = link else { return socket.send(message).await.map_err(|_| None) };
    if let Some(kill) = link.kill_reason() {
        return Err(Some(kill));
    }
    let mut sending = socket.send(message);
    if let std::task::Poll::Ready(sent) = futures::poll!(&mut sending) {
        return sent.map_err(|_| None);
    }
    tokio::select! {
        biased;
        kill = link.killed() => Err(Some(kill)),
        sent = sending => sent.map_err(|_| None),
    }
}

/// The read side of a socket, for both protocols: what each item of the socket's stream means
/// to the session, the session's inbound frame rate, and when the client was last heard.
/// Protocol pings are answered by the socket itself.
pub(super) struct Heard {
    frames: crate::limits::FrameLimiter,
    at: Instant,
}

impl Heard {
    pub(super) fn new(frames: crate::limits::FrameLimiter) -> Self {
        Self { frames, at: Instant::now() }
    }

    /// `None`: nothing for the session (a pong). Every text, binary or ping frame counts
    /// against the session's frame rate.
    pub(super) fn take(&mut self, item: Option<Result<Message, tungstenite::Error>>) -> Option<Inbound> {
        let Some(message) = item else { return Some(Inbound::Closed) };
        self.at = Instant::now();
        let counted = matches!(message, Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_)));
        if counted && self.frames.check().is_err() {
            return Some(Inbound::TooFast);
        }
        match message {
            Ok(Message::Text(text)) => Some(Inbound::Text(text.as_str().to_string())),
            Ok(Message::Binary(bytes)) => Some(Inbound::Binary(bytes.to_vec())),
            Ok(Message::Close(_)) => Some(Inbound::Closed),
            Ok(_) => None,
            Err(tungstenite::Error::Capacity(_)) => Some(Inbound::TooBig),
            Err(_) => Some(Inbound::Closed),
        }
    }

    /// How long since the client last sent anything (a pong included).
    pub(super) fn silent_for(&self) -> Duration {
        self.at.elapsed()
    }
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn of three arguments returns.
    fn future_size<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// A session is one task whose future is allocated whole for the session's life: the
    /// database work of subscribing, replaying and joining runs boxed, so it does not make
    /// every idle session pay for its largest step (4.6 KiB before, unboxed).
    #[test]
    fn an_idle_session_task_is_small() {
        let ws = future_size(super::run);
        let phx = future_size(crate::realtime::phoenix::session::run);
        assert!(ws <= 2048, "/ws session future: {ws} bytes");
        assert!(phx <= 2048, "Phoenix session future: {phx} bytes");
    }
}

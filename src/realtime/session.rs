//! One WebSocket session: a reader task for inbound frames and this task, which owns the
//! socket's write half and drains the session's bounded queue. Nothing here holds a lock
//! across an await; every socket write also watches the session's kill signal, so a
//! blocked socket never keeps a lagging or shutting-down session alive.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
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

pub(super) enum Inbound {
    Text(String),
    Binary,
    TooBig,
    Closed,
}

/// The server side of an upgraded connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

pub struct Session {
    pub(super) state: Arc<Realtime>,
    pub(super) principal: Principal,
    pub(super) lang: Lang,
    pub(super) link: Arc<SessionLink>,
    sink: SplitSink<Socket, Message>,
    queue: mpsc::Receiver<Outbound>,
    inbound: mpsc::Receiver<Inbound>,
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
    seen_ms: Arc<AtomicU64>,
    epoch: Instant,
}

/// Runs a session to its end. Called once the upgrade has completed.
pub async fn run(state: Arc<Realtime>, socket: Socket, admission: Admission) {
    let rt = &*state;
    let id = rt.next_session_id();
    let (link, queue) = SessionLink::new(id, admission.principal.user_id, rt.queue_capacity);
    rt.hub.register(link.clone());
    let (sink, stream) = socket.split();
    let (inbound_tx, inbound) = mpsc::channel(8);
    let (seen_ms, epoch) = (Arc::new(AtomicU64::new(0)), Instant::now());
    let reader = tokio::spawn(read_loop(stream, inbound_tx, seen_ms.clone(), epoch));
    let mut session = Session {
        state: state.clone(),
        deadline: deadline_of(admission.principal.expires_at),
        principal: admission.principal,
        lang: admission.lang,
        link,
        sink,
        queue,
        inbound,
        cursor: 0,
        replaying: None,
        replayed: HashMap::new(),
        started: HashMap::new(),
        recheck_through: 0,
        seen_ms,
        epoch,
    };
    let channel = admission.tenant.map_or(Channel::All, Channel::Tenant);
    let tenant_ids = vec![admission.tenant.map_or_else(|| "*".to_string(), |t| t.to_string())];
    let sub = Arc::new(Subscription::whole(channel, admission.role));
    let stop = match session.open(sub, admission.since, Some(tenant_ids)).await {
        Ok(()) => session.serve().await,
        Err(stop) => stop,
    };
    session.finish(stop).await;
    state.hub.unregister(id);
    reader.abort();
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
                msg = self.inbound.recv() => self.on_inbound(msg).await,
                item = self.queue.recv() => self.on_outbound(item).await,
                _ = keepalive.tick() => self.keepalive(every).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    async fn on_outbound(&mut self, item: Option<Outbound>) -> Result<(), Stop> {
        match item {
            Some(Outbound::Event(event)) => self.deliver(&event).await,
            Some(Outbound::Revoked(channel, reason)) => {
                self.replayed.remove(&channel);
                self.started.remove(&channel);
                self.send_text(protocol::unsubscribed(channel, reason)).await
            }
            None => Err(Stop::Gone),
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
        let seen = Duration::from_millis(self.seen_ms.load(Ordering::Relaxed));
        if self.epoch.elapsed().saturating_sub(seen) > every * 2 {
            return Err(Stop::Close(close::NO_PONG, "keepalive_timeout"));
        }
        self.send(Message::Ping(Default::default())).await
    }

    pub(super) async fn send_text(&mut self, text: String) -> Result<(), Stop> {
        self.send(Message::text(text)).await
    }

    /// Writes one frame, unless the session is killed meanwhile.
    pub(super) async fn send(&mut self, message: Message) -> Result<(), Stop> {
        let link = self.link.clone();
        tokio::select! {
            biased;
            kill = link.killed() => Err(Stop::Killed(kill)),
            sent = self.sink.send(message) => sent.map_err(|_| Stop::Gone),
        }
    }

    /// The cursor a client resumes from: nothing after it is lost.
    fn resume_cursor(&self) -> i64 {
        self.replaying.map_or(self.cursor, |r| r.min(self.cursor))
    }

    async fn finish(mut self, stop: Stop) {
        let cursor = self.resume_cursor();
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
        let lagging = code == close::LAGGING;
        let sink = &mut self.sink;
        let closing = async move {
            if lagging {
                sink.send(Message::text(protocol::lagging(cursor))).await?;
            }
            let frame = CloseFrame { code: CloseCode::from(code), reason: protocol::close_reason(reason, cursor).into() };
            sink.send(Message::Close(Some(frame))).await?;
            sink.close().await
        };
        let bound = if lagging { LAG_FLUSH } else { CLOSE_FLUSH };
        let _ = tokio::time::timeout(bound, closing).await;
        tracing::debug!(session = self.link.id, code, reason, cursor, "websocket session closed");
    }
}

/// Reads inbound frames until the socket ends; protocol pings are answered by the socket.
async fn read_loop(mut stream: SplitStream<Socket>, tx: mpsc::Sender<Inbound>, seen_ms: Arc<AtomicU64>, epoch: Instant) {
    while let Some(message) = stream.next().await {
        seen_ms.store(u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let inbound = match message {
            Ok(Message::Text(text)) => Inbound::Text(text.as_str().to_string()),
            Ok(Message::Binary(_)) => Inbound::Binary,
            Ok(Message::Close(_)) => Inbound::Closed,
            Ok(_) => continue,
            Err(tungstenite::Error::Capacity(_)) => Inbound::TooBig,
            Err(_) => Inbound::Closed,
        };
        let last = matches!(inbound, Inbound::TooBig | Inbound::Closed);
        if tx.send(inbound).await.is_err() || last {
            return;
        }
    }
    let _ = tx.send(Inbound::Closed).await;
}

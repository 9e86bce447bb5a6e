//! Broadcast and Presence of the Supabase Realtime protocol, across every `rowcast serve` on
//! one database.
//!
//! ```text
//! session (broadcast / track) ─▶ pg_notify('rowcast_cluster') ─▶ every instance's cluster
//! LISTEN connection ─▶ rooms (tenant, topic) → local sessions ─▶ session queue ─▶ frame
//! ```
//!
//! Messages are relayed through PostgreSQL, never through process memory, so the sending
//! instance and every other one deliver the same way. Presence is stored in
//! `app.realtime_presence` (V58) so that a join on any instance reads the room's state; each
//! instance beats every [`BEAT_EVERY`], and an instance silent for [`STALE_AFTER`] is swept by
//! the others (its presences leave). The relay connection is separate from the event relay:
//! the ordered `rowcast_events` stream never waits on chat traffic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::{Outbound, SessionId, SessionLink};
use crate::db::Db;
use crate::db::listen::{Listening, listen};
use crate::error::ApiError;

/// How often an instance records that it is alive.
pub const BEAT_EVERY: Duration = Duration::from_secs(5);
/// After how long without a beat an instance's presences are removed.
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// Largest broadcast payload or presence meta (JSON bytes): NOTIFY caps a message at 8000.
pub const MAX_MESSAGE_BYTES: usize = 6000;

const CHANNEL_SQL: &str = "LISTEN rowcast_cluster";
const NOTIFY_SQL: &str = "SELECT pg_notify('rowcast_cluster', $1)";
const BEAT_SQL: &str = "SELECT app.realtime_instance_beat($1, make_interval(secs => $2))";
const TRACK_SQL: &str = "SELECT app.realtime_presence_track($1, $2, $3, $4, $5, $6)";
const UNTRACK_SQL: &str = "SELECT app.realtime_presence_untrack($1, $2, $3)";
const STATE_SQL: &str = "SELECT app.realtime_presence_state($1, $2)";
const STOP_SQL: &str = "SELECT app.realtime_instance_stop($1)";

/// One relayed message, decoded once and shared by every local session of its room.
#[derive(Debug, Deserialize)]
pub struct ClusterMessage {
    pub kind: Kind,
    pub tenant: Uuid,
    pub topic: String,
    /// `<instance>:<session>` of the sender (broadcast only): `self: false` skips it.
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub joins: Value,
    #[serde(default)]
    pub leaves: Value,
    /// The frame sent to local sessions, per serializer, built once.
    #[serde(skip)]
    pub frames: [std::sync::OnceLock<tungstenite::Utf8Bytes>; 2],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Broadcast,
    Presence,
}

type Room = HashMap<SessionId, Arc<SessionLink>>;

/// This instance's side of the cluster.
pub struct Cluster {
    pub instance: Uuid,
    rooms: RwLock<HashMap<(Uuid, String), Room>>,
    up: AtomicBool,
    db: Db,
}

impl Cluster {
    pub fn new(db: Db) -> Arc<Self> {
        Arc::new(Self { instance: Uuid::new_v4(), rooms: RwLock::default(), up: AtomicBool::new(false), db })
    }

    /// Starts the LISTEN relay and the heartbeat; both stop with `cancel`.
    pub fn start(self: &Arc<Self>, config: tokio_postgres::Config, cancel: CancellationToken) {
        tokio::spawn(self.clone().relay(config, cancel.clone()));
        tokio::spawn(self.clone().beat(cancel));
    }

    /// `<instance>:<session>`: who sent a broadcast.
    pub fn origin(&self, session: SessionId) -> String {
        format!("{}:{session}", self.instance)
    }

    pub fn join(&self, tenant: Uuid, topic: &str, link: &Arc<SessionLink>) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        rooms.entry((tenant, topic.to_string())).or_default().insert(link.id, link.clone());
    }

    pub fn leave(&self, tenant: Uuid, topic: &str, session: SessionId) {
        let mut rooms = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        let key = (tenant, topic.to_string());
        if let Some(room) = rooms.get_mut(&key) {
            room.remove(&session);
            if room.is_empty() {
                rooms.remove(&key);
            }
        }
    }

    /// Sends a broadcast to every instance (this one included).
    pub async fn broadcast(&self, tenant: Uuid, topic: &str, origin: &str, event: &str, payload: &Value) -> Result<(), ApiError> {
        let message = serde_json::json!({
            "kind": "broadcast", "tenant": tenant, "topic": topic, "origin": origin, "event": event, "payload": payload,
        })
        .to_string();
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(too_big());
        }
        let conn = self.db.conn().await?;
        conn.execute(NOTIFY_SQL, &[&message]).await?;
        Ok(())
    }

    pub async fn track(&self, session: SessionId, tenant: Uuid, topic: &str, key: &str, meta: &Value) -> Result<(), ApiError> {
        if meta.to_string().len() > MAX_MESSAGE_BYTES {
            return Err(too_big());
        }
        let conn = self.db.conn().await?;
        let session = i64::try_from(session).unwrap_or(i64::MAX);
        conn.execute(TRACK_SQL, &[&self.instance, &session, &tenant, &topic, &key, meta]).await?;
        Ok(())
    }

    /// Untracks one topic, or every topic of the session (`None`).
    pub async fn untrack(&self, session: SessionId, topic: Option<&str>) -> Result<(), ApiError> {
        let conn = self.db.conn().await?;
        let session = i64::try_from(session).unwrap_or(i64::MAX);
        conn.execute(UNTRACK_SQL, &[&self.instance, &session, &topic]).await?;
        Ok(())
    }

    /// The room's presence state, `{key: {metas: [...]}}`.
    pub async fn presence_state(&self, tenant: Uuid, topic: &str) -> Result<Value, ApiError> {
        let conn = self.db.conn().await?;
        Ok(conn.query_one(STATE_SQL, &[&tenant, &topic]).await?.get(0))
    }

    /// Removes this instance and its presences (graceful stop).
    pub async fn stop(&self) {
        if let Ok(conn) = self.db.conn().await {
            let _ = conn.execute(STOP_SQL, &[&self.instance]).await;
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Routes one relayed message to the local sessions of its room.
    fn route(&self, message: Arc<ClusterMessage>) {
        let rooms = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        let Some(room) = rooms.get(&(message.tenant, message.topic.clone())) else { return };
        for link in room.values() {
            let _ = link.push(Outbound::Cluster(message.clone()));
        }
    }

    async fn beat(self: Arc<Self>, cancel: CancellationToken) {
        let mut every = tokio::time::interval(BEAT_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            let beat = async {
                let conn = self.db.conn().await?;
                let swept: i32 = conn.query_one(BEAT_SQL, &[&self.instance, &STALE_AFTER.as_secs_f64()]).await?.get(0);
                Ok::<_, ApiError>(swept)
            };
            match beat.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(swept = n, "removed the presences of a silent rowcast instance"),
                Err(e) => tracing::warn!(error = %e.message, "realtime instance heartbeat failed"),
            }
        }
    }

    /// The LISTEN connection, reconnected with backoff. Messages sent while it is down are lost
    /// for this instance's sessions (broadcast is fire-and-forget, as in Supabase); presence
    /// state is read from the table on each join, so it heals at the next join.
    async fn relay(self: Arc<Self>, config: tokio_postgres::Config, cancel: CancellationToken) {
        let mut delay = Duration::from_millis(50);
        while !cancel.is_cancelled() {
            match self.listen(&config, &cancel).await {
                Ok(()) => return,
                Err(e) => {
                    self.up.store(false, Ordering::Release);
                    tracing::warn!(error = %e, "realtime cluster relay down; reconnecting");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    async fn listen(&self, config: &tokio_postgres::Config, cancel: &CancellationToken) -> Result<(), String> {
        let Listening { client, mut notes } = listen(config, CHANNEL_SQL, "realtime cluster").await?;
        self.up.store(true, Ordering::Release);
        let outcome = loop {
            tokio::select! {
                _ = cancel.cancelled() => break Ok(()),
                note = notes.recv() => match note {
                    Some(note) => match serde_json::from_str::<ClusterMessage>(note.payload()) {
                        Ok(message) => self.route(Arc::new(message)),
                        Err(e) => tracing::warn!(error = %e, "ignoring an undecodable rowcast_cluster notification"),
                    },
                    None => break Err("connection closed".to_string()),
                },
            }
        };
        drop(client);
        outcome
    }
}

/// 413 `PGRST102`, as every other over-size body (PostgREST itself sets no size limit).
fn too_big() -> ApiError {
    ApiError::new(
        warp::http::StatusCode::PAYLOAD_TOO_LARGE,
        "PGRST102",
        format!("the message is larger than {MAX_MESSAGE_BYTES} bytes"),
        format!("le message dépasse {MAX_MESSAGE_BYTES} octets"),
    )
}

/// A relay configuration for the cluster connection (its own application name).
pub fn relay_config(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    config.application_name("rowcast-cluster").connect_timeout(Duration::from_secs(5)).keepalives_idle(Duration::from_secs(15));
    config
}

//! Realtime: the LISTEN relay, the hub and the WebSocket sessions (SPEC §3.4, §5).
//!
//! ```text
//! NOTIFY → listener (one connection, seq order, gap fill) → hub (tenant → sessions, one
//! Arc<Event> per event) → session queue (bounded, try_send) → session task → WebSocket frame
//! ```

pub mod cluster;
mod commands;
pub mod event;
pub mod filter;
pub mod hub;
#[cfg(test)]
mod hub_tests;
pub mod listener;
pub mod phoenix;
pub mod protocol;
mod replay;
pub mod retention;
mod session;
mod stats;
pub mod subscription;
mod upgrade;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::app::{AppState, StartError};
use crate::auth::Principal;
use crate::config::Settings;
use crate::db::Db;

/// How long shutdown waits for sessions to receive their close frame.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(3);

/// Handle on the running realtime machinery.
pub struct Realtime {
    pub hub: Arc<hub::Hub>,
    /// Broadcast and presence across instances (Phoenix protocol).
    pub cluster: Arc<cluster::Cluster>,
    relay: Arc<listener::ListenerState>,
    cancel: CancellationToken,
    next_id: AtomicU64,
    pub(crate) queue_capacity: usize,
    pub(crate) keepalive: Duration,
}

impl Realtime {
    /// Starts the listener (its own connection, outside the pool), the hub and retention.
    pub async fn start(settings: &Settings, app_config: tokio_postgres::Config, db: &Db) -> Result<Self, StartError> {
        let hub = Arc::new(hub::Hub::default());
        let cancel = CancellationToken::new();
        let cluster = cluster::Cluster::new(db.clone());
        cluster.start(cluster::relay_config(app_config.clone()), cancel.clone());
        let relay = listener::Relay::new(app_config, hub.clone(), cancel.clone());
        let state = relay.state.clone();
        relay.start().await.map_err(|e| StartError::Database(format!("realtime relay: {e}")))?;
        retention::spawn(db.clone(), settings.event_retention, cancel.clone());
        Ok(Self {
            hub,
            cluster,
            relay: state,
            cancel,
            next_id: AtomicU64::new(1),
            queue_capacity: settings.ws_queue_capacity,
            keepalive: settings.ws_keepalive,
        })
    }

    /// `(up, details)` for `/health`.
    pub fn listener_status(&self) -> (bool, Value) {
        let (up, mut details) = self.relay.status();
        details["reconnects"] = self.hub.stats.reconnects.load(Ordering::Relaxed).into();
        details["headSeq"] = self.hub.head().into();
        (up, details)
    }

    /// Ends every session with close 1001 and its resume cursor; stops the listener.
    pub async fn shutdown(&self) {
        self.hub.close_all(SHUTDOWN_BOUND).await;
        self.cluster.stop().await;
        self.cancel.cancel();
    }

    pub(crate) fn next_session_id(&self) -> hub::SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serves `/ws`, `/realtime/v1/websocket` and `/api/ws/stats`.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let stats = warp::path!("api" / "ws" / "stats")
        .and(warp::get())
        .and(crate::http::filters::caller(state.clone()))
        .and(warp::any().map({
            let state = state.clone();
            move || state.clone()
        }))
        .then(|principal: Principal, tenant: Option<Uuid>, state: Arc<AppState>| async move {
            crate::http::respond(stats::handle(state, principal, tenant).await)
        });
    upgrade::route(state.clone()).or(phoenix::route(state)).unify().or(stats).unify().boxed()
}

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

use crate::auth::Principal;
use crate::core::{Core, StartError};

/// How long shutdown waits for sessions to receive their close frame.
pub(crate) const SHUTDOWN_BOUND: Duration = Duration::from_secs(3);

/// Handle on the running realtime machinery: the realtime feature's state. Derefs to the
/// [`Core`] (so `state.db`, `state.jwt`, …).
pub struct Realtime {
    pub core: Arc<Core>,
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
    /// Creates the hub and starts the listener (its own connection, outside the pool), which
    /// runs until `cancel` is cancelled (by `shutdown`, or when this is dropped).
    pub async fn start(core: Arc<Core>, app_config: tokio_postgres::Config, cancel: CancellationToken) -> Result<Self, StartError> {
        let hub = Arc::new(hub::Hub::default());
        let cluster = cluster::Cluster::new(core.db.clone());
        cluster.start(cluster::relay_config(app_config.clone()), cancel.clone());
        let relay = listener::Relay::new(app_config, hub.clone(), cancel.clone());
        let state = relay.state.clone();
        relay.start().await.map_err(|e| StartError::Database(format!("realtime relay: {e}")))?;
        let settings = &core.settings;
        Ok(Self {
            hub,
            cluster,
            relay: state,
            cancel,
            next_id: AtomicU64::new(1),
            queue_capacity: settings.ws_queue_capacity,
            keepalive: settings.ws_keepalive,
            core,
        })
    }

    /// `(up, details)` for `/health`.
    pub fn listener_status(&self) -> (bool, Value) {
        let (up, mut details) = self.relay.status();
        details["reconnects"] = self.hub.stats.reconnects.load(Ordering::Relaxed).into();
        // No seq here: /health is open to anyone, and the global head is an activity oracle
        // (SPEC §3.4). Platform admins read it in /api/ws/stats.
        details["clusterRelay"] = if self.cluster.is_up() { "up" } else { "down" }.into();
        (up, details)
    }

    /// Ends every session with close 1001 and its resume cursor; stops the listener.
    pub async fn shutdown(&self) {
        self.hub.close_all(SHUTDOWN_BOUND).await;
        // Unregistering the instance is a courtesy (peers sweep stale ones): a database that
        // does not answer must not hold the stop.
        let _ = tokio::time::timeout(SHUTDOWN_BOUND, self.cluster.stop()).await;
        self.cancel.cancel();
    }

    /// Resolves once realtime stops (after registered sessions were closed): sockets the hub
    /// does not know yet (a Phoenix socket before its first join) close then.
    pub(crate) async fn stopped(&self) {
        self.cancel.cancelled().await
    }

    pub(crate) fn next_session_id(&self) -> hub::SessionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

impl std::ops::Deref for Realtime {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serves `/ws`, `/realtime/v1/websocket` (which reads table columns from the REST catalog)
/// and `/api/ws/stats`.
pub fn routes(state: Arc<Realtime>, rest: Arc<crate::rest::RestState>) -> BoxedFilter<(Response,)> {
    let stats = warp::path!("api" / "ws" / "stats")
        .and(warp::get())
        .and(crate::http::filters::caller(state.core.clone()))
        .and(warp::any().map({
            let state = state.clone();
            move || state.clone()
        }))
        .then(|principal: Principal, tenant: Option<Uuid>, state: Arc<Realtime>| async move {
            crate::http::respond(stats::handle(state, principal, tenant).await)
        });
    upgrade::route(state.clone()).or(phoenix::route(state, rest)).unify().or(stats).unify().boxed()
}

//! Realtime: the LISTEN connection, the hub and the WebSocket sessions.

use std::sync::Arc;

use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::app::{AppState, StartError};
use crate::config::Settings;
use crate::db::Db;

/// Handle on the running realtime machinery.
pub struct Realtime {}

impl Realtime {
    /// Starts the listener (its own connection, outside the pool) and the hub.
    pub async fn start(_settings: &Settings, _app_config: tokio_postgres::Config, _db: &Db) -> Result<Self, StartError> {
        Ok(Self {})
    }

    /// `(up, details)` for `/health`.
    pub fn listener_status(&self) -> (bool, Value) {
        (true, json!({"status": "up"}))
    }

    /// Ends every session with close 1001 and its resume cursor; stops the listener.
    pub async fn shutdown(&self) {}
}

/// Serves `/ws` and `/api/ws/stats`.
pub fn routes(_state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path("ws").and_then(|| async { Err::<Response, _>(warp::reject::not_found()) }).boxed()
}

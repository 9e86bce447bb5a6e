//! Realtime counters (`/api/ws/stats`) and their Prometheus twins.
//!
//! Counters are updated once per event (not per delivery), so fan-out to thousands of
//! sessions costs a few atomic adds, not thousands of metric lookups.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;

use super::Realtime;
use super::event::Event;
use crate::auth::Principal;
use crate::db::TenantTx;
use crate::error::ApiError;

#[derive(Default)]
pub struct Stats {
    events_in: AtomicU64,
    events_out: AtomicU64,
    dropped: AtomicU64,
    last_seq: AtomicU64,
    /// f64 bits: commit → hub delay of the last event, in ms.
    lag_ms: AtomicU64,
    pub reconnects: AtomicU64,
}

impl Stats {
    /// One event came from the database (notification, stub completion or gap fill).
    pub fn received(&self) {
        self.events_in.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rowcast_events_in_total").increment(1);
    }

    /// One event was fanned out: `sent` queues took it, `dropped` were full.
    pub fn published(&self, event: &Event, sent: u64, dropped: u64) {
        self.events_out.fetch_add(sent, Ordering::Relaxed);
        self.last_seq.store(u64::try_from(event.seq).unwrap_or(0), Ordering::Relaxed);
        metrics::counter!("rowcast_events_out_total").increment(sent);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            metrics::counter!("rowcast_events_dropped_total").increment(dropped);
        }
        if let Some(age) = event.age_ms() {
            self.lag_ms.store(age.to_bits(), Ordering::Relaxed);
            metrics::histogram!("rowcast_event_commit_to_hub_seconds").record(age / 1000.0);
        }
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("rowcast_listener_reconnects_total").increment(1);
    }

    fn snapshot(&self) -> Value {
        json!({
            "eventsReceived": self.events_in.load(Ordering::Relaxed),
            "eventsSent": self.events_out.load(Ordering::Relaxed),
            "eventsDropped": self.dropped.load(Ordering::Relaxed),
            "lastSeq": self.last_seq.load(Ordering::Relaxed),
            "lagMs": f64::from_bits(self.lag_ms.load(Ordering::Relaxed)),
            "listenerReconnects": self.reconnects.load(Ordering::Relaxed),
        })
    }
}

/// `GET /api/ws/stats`: platform admins outside a tenant see every tenant and the global
/// counters; anyone else sees the sessions of the tenant they are in, the listener and lag.
pub async fn handle(state: Arc<Realtime>, principal: Principal, tenant: Option<Uuid>) -> Result<Response, ApiError> {
    let role = {
        let mut conn = state.db.conn().await?;
        let tx = TenantTx::begin(&state.db, &mut conn, &principal, tenant).await?;
        let ctx = tx.context().clone();
        tx.commit().await?;
        ctx
    };
    let rt = &*state;
    let (total, per_tenant) = rt.hub.census();
    let (listener_up, listener) = rt.listener_status();
    let lag = f64::from_bits(rt.hub.stats.lag_ms.load(Ordering::Relaxed));
    let body = match role.tenant_id {
        None if role.role == "platform_admin" => {
            let mut body = rt.hub.stats.snapshot();
            body["connections"] = json!(total);
            body["sessionsPerTenant"] = json!(per_tenant);
            body["headSeq"] = json!(rt.hub.head());
            body["listener"] = listener;
            body
        }
        scope => {
            let key = scope.map(|t| t.to_string()).unwrap_or_default();
            json!({
                "tenantId": scope,
                "sessions": per_tenant.get(&key).copied().unwrap_or(0),
                "headSeq": rt.hub.head(),
                "lagMs": lag,
                "listener": {"status": if listener_up { "up" } else { "down" }},
            })
        }
    };
    Ok(crate::http::json(StatusCode::OK, &body))
}

//! Keeps the plan figures of [`TenantRates`](super::TenantRates) current, and memory bounded.
//!
//! One dedicated connection (outside the pool, `application_name` `rowcast-limits`) LISTENs
//! on `rowcast_limits`, which the `rowcast_limits_changed` triggers notify whenever plans,
//! limit_policies or subscriptions change; each notification (coalesced) reloads
//! `app.tenant_rate_limits()`. After a lost connection it reconnects with backoff and reloads
//! (changes made meanwhile are picked up). Every minute it prunes the keyed limiters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Limits;
use crate::db::listen::{Listening, listen};

pub const APPLICATION_NAME: &str = "rowcast-limits";
const LISTEN_SQL: &str = "LISTEN rowcast_limits";
const LOAD_SQL: &str = "SELECT tenant_id, requests_per_minute FROM app.tenant_rate_limits()";
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

type Conn = Listening;

async fn connect(config: &tokio_postgres::Config) -> Result<Conn, String> {
    listen(config, LISTEN_SQL, "rate-limit reload").await
}

async fn load(client: &Client, limits: &Limits) -> Result<(), String> {
    let rows = client.query(LOAD_SQL, &[]).await.map_err(|e| format!("app.tenant_rate_limits: {e}"))?;
    let plans: HashMap<Uuid, u32> =
        rows.iter().map(|r| (r.get::<_, Uuid>(0), u32::try_from(r.get::<_, i64>(1).max(0)).unwrap_or(u32::MAX))).collect();
    tracing::debug!(tenants = plans.len(), "plan request rates loaded");
    limits.tenants.replace(plans);
    Ok(())
}

/// Loads the plan figures once (start-up fails if it cannot), then keeps them current.
pub async fn start(
    mut config: tokio_postgres::Config,
    limits: Arc<Limits>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    config.application_name(APPLICATION_NAME).connect_timeout(Duration::from_secs(5)).keepalives_idle(Duration::from_secs(15));
    let conn = connect(&config).await?;
    load(&conn.client, &limits).await?;
    Ok(tokio::spawn(run(config, conn, limits, cancel)))
}

async fn run(config: tokio_postgres::Config, mut conn: Conn, limits: Arc<Limits>, cancel: CancellationToken) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = prune.tick() => {
                let keys = limits.prune();
                metrics::gauge!("rowcast_rate_limit_keys").set(keys as f64);
            }
            note = conn.notes.recv() => {
                let reloaded = match note {
                    Some(_) => {
                        while conn.notes.try_recv().is_ok() {}
                        load(&conn.client, &limits).await
                    }
                    None => Err("connection lost".to_string()),
                };
                if let Err(why) = reloaded {
                    tracing::warn!(error = %why, "rate-limit reload failed; reconnecting");
                    match reconnect(&config, &limits, &cancel).await {
                        Some(c) => conn = c,
                        None => return,
                    }
                }
            }
        }
    }
}

async fn reconnect(config: &tokio_postgres::Config, limits: &Limits, cancel: &CancellationToken) -> Option<Conn> {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        match connect(config).await {
            Ok(c) => match load(&c.client, limits).await {
                Ok(()) => return Some(c),
                Err(e) => tracing::warn!(error = %e, "rate-limit reload failed"),
            },
            Err(e) => tracing::warn!(error = %e, "rate-limit reload connection failed"),
        }
        backoff = (backoff * 2).min(BACKOFF_CAP);
    }
}

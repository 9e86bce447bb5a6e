//! Webhook delivery (SPEC §10): every `serve` instance runs one dispatcher.
//!
//! ```text
//! NOTIFY rowcast_events ─┐                         ┌─ task: POST (signed by the DB) ─ record ─┐
//! NOTIFY rowcast_webhooks┴→ wake → feed (cursor) → claim (SKIP LOCKED, lease) ─┤   … at most N per tenant, M in all
//! poll every 250 ms ──────┘                         └─ task … ────────────────────────────────┘
//! ```
//!
//! - The queue, the ordering rule, leases, signing, retries and logs are SQL (V30); this
//!   module feeds, claims, sends and reports, on a small pool of its own so deliveries never
//!   take a connection a request is waiting for.
//! - Per-tenant slots: a claim asks only for tenants with a free slot in this instance, so a
//!   tenant whose receiver hangs holds at most `ROWCAST_WEBHOOK_TENANT_CONCURRENCY` attempts
//!   and every other tenant's deliveries keep flowing.
//! - Shutdown abandons attempts in flight without recording them, exactly like a crash:
//!   their lease runs out and any instance sends them again (at-least-once).

mod queue;
pub mod send;
pub mod ssrf;
mod wake;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Settings, WebhookSettings};
use crate::db::Db;
use queue::Job;
use send::Sender;

/// How often due retries and expired leases are looked for without a notification.
const POLL: Duration = Duration::from_millis(250);
const STATS_EVERY: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Connections of the delivery pool (feed, claim, record, stats).
const POOL_SIZE: usize = 4;

/// Starts the wake-up listener, the dispatcher and the stats loop of this instance; they
/// stop when `cancel` is cancelled (attempts in flight are abandoned to their lease).
pub fn start(settings: &Settings, app_config: tokio_postgres::Config, cancel: CancellationToken) -> Result<(), String> {
    let mut config = app_config.clone();
    config.application_name("rowcast-webhooks");
    let db = Db::new(config, POOL_SIZE, Duration::from_secs(5), Duration::from_secs(30));
    let wake = Arc::new(Notify::new());
    let dispatcher = Arc::new(Dispatcher {
        db: db.clone(),
        sender: Sender::new(&settings.webhooks)?,
        worker: Uuid::new_v4(),
        limits: settings.webhooks.clone(),
        wake: wake.clone(),
        inflight: Mutex::default(),
        total: AtomicUsize::new(0),
        cancel: cancel.clone(),
    });
    wake::spawn(app_config, wake, cancel.clone());
    tokio::spawn(dispatcher.run());
    tokio::spawn(stats_loop(db, settings.event_retention, cancel));
    if settings.webhooks.allow_private {
        tracing::warn!("ROWCAST_WEBHOOK_ALLOW_PRIVATE=true: webhooks may reach loopback and private addresses");
    }
    Ok(())
}

struct Dispatcher {
    db: Db,
    sender: Sender,
    /// This instance's identity in `app.webhook_deliveries.claimed_by`.
    worker: Uuid,
    limits: WebhookSettings,
    wake: Arc<Notify>,
    /// Attempts in flight in this instance, per tenant.
    inflight: Mutex<HashMap<Uuid, usize>>,
    total: AtomicUsize,
    cancel: CancellationToken,
}

impl Dispatcher {
    async fn run(self: Arc<Self>) {
        loop {
            let full = match self.round().await {
                Ok(full) => full,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher: database error; retrying");
                    false
                }
            };
            if full {
                tokio::task::yield_now().await;
                if self.cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Feeds the queue, then claims what this instance has room for. True when the claim
    /// filled every free slot (there may be more work right away).
    async fn round(self: &Arc<Self>) -> Result<bool, String> {
        let conn = self.db.conn().await.map_err(|e| e.to_string())?;
        loop {
            let fed = queue::feed(&conn).await.map_err(|e| format!("app.webhook_feed: {e}"))?;
            if fed < queue::FEED_PAGE {
                break;
            }
        }
        let free = self.limits.concurrency.saturating_sub(self.total.load(Ordering::Acquire));
        if free == 0 {
            return Ok(false);
        }
        let busy: Vec<(Uuid, i32)> = {
            let map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(t, n)| (*t, i32::try_from(*n).unwrap_or(i32::MAX))).collect()
        };
        let per_tenant = i32::try_from(self.limits.tenant_concurrency).unwrap_or(i32::MAX);
        let limit = i32::try_from(free).unwrap_or(i32::MAX);
        let jobs = queue::claim(&conn, self.worker, limit, per_tenant, &busy).await.map_err(|e| format!("app.webhook_claim: {e}"))?;
        drop(conn);
        let claimed = jobs.len();
        for job in jobs {
            self.begin(job.tenant);
            let this = self.clone();
            tokio::spawn(async move {
                let tenant = job.tenant;
                tokio::select! {
                    _ = this.cancel.cancelled() => {}
                    _ = this.deliver(job) => {}
                }
                this.end(tenant);
            });
        }
        Ok(claimed > 0 && claimed == free)
    }

    fn begin(&self, tenant: Uuid) {
        *self.inflight.lock().unwrap_or_else(|p| p.into_inner()).entry(tenant).or_default() += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self, tenant: Uuid) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&tenant) {
            *n -= 1;
            if *n == 0 {
                map.remove(&tenant);
            }
        }
        drop(map);
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// One attempt: send, then record (retrying the record briefly if the database blips;
    /// if it stays down the lease expires and the attempt is made again).
    async fn deliver(&self, job: Job) {
        let outcome = self.sender.send(&job).await;
        metrics::histogram!("rowcast_webhook_attempt_duration_seconds").record(outcome.duration.as_secs_f64());
        let mut delay = Duration::from_millis(100);
        for _ in 0..5 {
            let recorded = match self.db.conn().await {
                Ok(conn) => queue::record(&conn, self.worker, &job, &outcome).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match recorded {
                Ok(result) => {
                    observe(&job, &outcome, &result);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, delivery = %job.delivery, "cannot record a webhook attempt; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

fn observe(job: &Job, outcome: &send::Outcome, result: &str) {
    metrics::counter!("rowcast_webhook_deliveries_total", "outcome" => result.to_string()).increment(1);
    if result == "succeeded"
        && let Some(at) = job.event_created_at
    {
        let lag = (chrono::Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1e6;
        metrics::histogram!("rowcast_webhook_delivery_lag_seconds").record(lag.max(0.0));
    }
    if result != "succeeded" {
        tracing::info!(
            delivery = %job.delivery, webhook = %job.webhook, tenant = %job.tenant, attempt = job.attempt,
            status = outcome.status, error = outcome.error.as_deref().unwrap_or(""), result, "webhook attempt failed"
        );
    }
}

/// Queue depth and oldest pending age for Prometheus; prunes finished deliveries.
async fn stats_loop(db: Db, retention: Duration, cancel: CancellationToken) {
    let mut last_prune = tokio::time::Instant::now();
    loop {
        if let Ok(conn) = db.conn().await {
            if let Ok((depth, oldest)) = queue::queue_stats(&conn).await {
                metrics::gauge!("rowcast_webhook_queue_depth").set(depth as f64);
                metrics::gauge!("rowcast_webhook_oldest_pending_seconds").set(oldest);
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                while let Ok(1000..) = queue::prune(&conn, retention.as_secs_f64()).await {}
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(STATS_EVERY) => {}
        }
    }
}

//! Webhook delivery (SPEC §10): every `serve` instance runs one dispatcher.
//!
//! ```text
//! NOTIFY rowcast_events ─┐                                           ┌─ run task: POST, POST, … (signed by the DB) ─┐
//! NOTIFY rowcast_webhooks┴→ wake → feed + claim runs (one round trip) ┤   … at most N runs per tenant, M in all       ├→ recorder: one transaction per batch
//! poll every 250 ms ──────┘    (SKIP LOCKED, lease)                   └─ run task … ─────────────────────────────────┘
//! ```
//!
//! - The queue, the ordering rule, leases, signing, retries and logs are SQL (V30, V70); this
//!   module feeds, claims, sends and reports, on a small pool of its own so deliveries never
//!   take a connection a request is waiting for.
//! - A claim returns runs: up to [`RUN`] deliveries that one task sends one after the other
//!   over the kept-alive connection to the receiver (an ordered webhook's run is in seq
//!   order). A failed attempt, or a lease about to run out, ends the run: the rest is given
//!   back unsent (`app.webhook_release`).
//! - Outcomes go to one recorder task that records everything pending in one transaction
//!   (`app.webhook_record_batch`): while a batch commits, the next one gathers.
//! - Per-tenant slots: a run holds one slot while it sends, and a claim asks only for tenants
//!   with a free slot in this instance, so a tenant whose receiver hangs holds at most
//!   `ROWCAST_WEBHOOK_TENANT_CONCURRENCY` requests and every other tenant's deliveries keep
//!   flowing.
//! - Shutdown abandons attempts in flight (and outcomes not yet recorded), exactly like a
//!   crash: their lease runs out and any instance sends them again (at-least-once).

mod queue;
pub mod send;
pub mod ssrf;
mod wake;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{Settings, WebhookSettings};
use crate::db::Db;
use queue::{Attempt, Job, Run};
use send::Sender;
use wake::Wake;
pub use wake::Wakeups;

const STATS_EVERY: Duration = Duration::from_secs(5);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Connections of the delivery pool (feed and claim, record, stats).
const POOL_SIZE: usize = 4;
/// Deliveries per run (sent one after the other by one task, in one slot).
const RUN: i32 = 32;
/// Attempts recorded per transaction at most.
const RECORD_BATCH: usize = 500;
/// Webhooks a [`Marked`] set remembers at most.
const MARKED_MAX: usize = 10_000;
/// A run's next attempt starts only if it can finish this long before the lease ends.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// This instance's webhook delivery, as the application holds it.
pub struct Webhooks {
    wake: Arc<Wake>,
}

impl Webhooks {
    /// The wake-up counts ([`Wakeups`]), as they change.
    pub fn wakeups(&self) -> tokio::sync::watch::Receiver<Wakeups> {
        self.wake.wakeups()
    }
}

/// Starts the wake-up listener, the dispatcher, its recorder and the stats loop of this
/// instance; they stop when `cancel` is cancelled (attempts in flight are abandoned to their lease).
pub fn start(settings: &Settings, app_config: tokio_postgres::Config, cancel: CancellationToken) -> Result<Webhooks, String> {
    let mut config = app_config.clone();
    config.application_name("rowcast-webhooks");
    let db = Db::new(config, POOL_SIZE, Duration::from_secs(5), Duration::from_secs(30));
    let wake = Arc::new(Wake::default());
    let (reports, outcomes) = mpsc::unbounded_channel();
    let worker = Uuid::new_v4();
    let dispatcher = Arc::new(Dispatcher {
        db: db.clone(),
        sender: Sender::new(&settings.webhooks)?,
        worker,
        limits: settings.webhooks.clone(),
        wake: wake.clone(),
        inflight: Mutex::default(),
        failing: Mutex::default(),
        total: AtomicUsize::new(0),
        cancel: cancel.clone(),
        reports,
        claiming: tokio::sync::Mutex::new(()),
    });
    wake::spawn(app_config, wake.clone(), worker, cancel.clone());
    tokio::spawn(dispatcher.clone().record_loop(outcomes));
    tokio::spawn(dispatcher.run());
    tokio::spawn(stats_loop(db, settings.event_retention, cancel));
    if settings.webhooks.allow_private {
        tracing::warn!("ROWCAST_WEBHOOK_ALLOW_PRIVATE=true: webhooks may reach loopback and private addresses");
    }
    Ok(Webhooks { wake })
}

/// What a run task hands to the recorder.
enum Report {
    Attempt(Box<Attempt>),
    /// Claimed attempts (delivery, attempt number) never sent.
    Release(Vec<(Uuid, i32)>),
}

struct Dispatcher {
    db: Db,
    sender: Sender,
    /// This instance's identity in `app.webhook_deliveries.claimed_by`.
    worker: Uuid,
    limits: WebhookSettings,
    wake: Arc<Wake>,
    /// Runs in flight in this instance, per tenant.
    inflight: Mutex<HashMap<Uuid, usize>>,
    /// Webhooks whose last attempt here failed: claimed one delivery per run until one succeeds
    /// (a dead receiver's backlog is not signed and given back 32 at a time at every timeout).
    failing: Mutex<Marked>,
    total: AtomicUsize,
    cancel: CancellationToken,
    reports: mpsc::UnboundedSender<Report>,
    /// Held while a claim is computed, made and its runs begun: claims never race for slots.
    claiming: tokio::sync::Mutex<()>,
}

/// A set of webhooks this instance marks: failing (its last attempt here failed; claimed one
/// delivery per run until one succeeds) or stopped (deactivated or deleted; `wake.rs`). A
/// webhook deleted while marked is never unmarked, so the set is bounded: past
/// [`MARKED_MAX`] it starts over (the cost: the behaviour without the mark, once, for each
/// webhook still marked).
#[derive(Default)]
pub(crate) struct Marked(HashSet<Uuid>);

impl Marked {
    pub(crate) fn set(&mut self, webhook: Uuid, marked: bool) {
        if !marked {
            self.0.remove(&webhook);
        } else {
            if self.0.len() >= MARKED_MAX {
                self.0.clear();
            }
            self.0.insert(webhook);
        }
    }

    pub(crate) fn contains(&self, webhook: Uuid) -> bool {
        self.0.contains(&webhook)
    }

    fn list(&self) -> Vec<Uuid> {
        self.0.iter().copied().collect()
    }
}

/// Free slots in all, and the runs in flight per tenant.
struct Room {
    free: usize,
    busy: Vec<(Uuid, i32)>,
}

impl Dispatcher {
    async fn run(self: Arc<Self>) {
        let mut polled = true;
        // A fixed period that wake-ups do not restart: under steady claims and records a
        // resetting sleep would never fire, and events skipped by the wake-up listener (no
        // webhook in their tenant when it read them) are fed by this poll.
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + self.limits.poll, self.limits.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let feed = self.wake.start_feed(polled);
            let outcome = self.round(feed).await;
            if feed {
                self.wake.end_feed();
            }
            let more = match outcome {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatcher: database error; retrying");
                    false
                }
            };
            polled = false;
            if more {
                tokio::task::yield_now().await;
                if self.cancel.is_cancelled() {
                    return;
                }
                // Busy rounds one after the other still feed once per period.
                polled = futures::FutureExt::now_or_never(poll.tick()).is_some();
                continue;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = poll.tick() => polled = true,
            }
        }
    }

    /// A pool connection with the pipelined statements prepared ([`queue::prepare`]).
    async fn conn(&self) -> Result<deadpool_postgres::Client, String> {
        let conn = self.db.conn().await.map_err(|e| e.to_string())?;
        queue::prepare(&conn).await.map_err(|e| format!("webhook statements: {e}"))?;
        Ok(conn)
    }

    /// Feeds the queue (when events may be waiting) and claims what this instance has room
    /// for, pipelined on one connection. True when there may be more work right away.
    async fn round(self: &Arc<Self>, feed: bool) -> Result<bool, String> {
        let conn = self.conn().await?;
        let _claiming = self.claiming.lock().await;
        let room = self.room();
        let claimed_at = Instant::now();
        let claim = self.claim(&conn, &room);
        // Pipelined: the feed's statement runs (and commits) first, so the claim sees what it queued.
        let (fed, runs) = if feed {
            let (fed, runs) = tokio::join!(queue::feed(&conn, self.worker), claim);
            (Some(fed), runs)
        } else {
            (None, claim.await)
        };
        drop(conn);
        // A full page feeds again at once, even when the claim failed.
        let more_events = matches!(fed, Some(Ok((_, true))));
        if more_events {
            self.wake.events();
        }
        let claimed = self.spawn_runs(runs?, claimed_at);
        if let Some(Err(e)) = fed {
            return Err(format!("app.webhook_feed_next: {e}"));
        }
        Ok(more_events || (claimed > 0 && claimed == room.free))
    }

    /// What this instance may claim now. Only read under `claiming` (a claim's runs are begun
    /// before the lock is released; runs ending meanwhile only free more).
    fn room(&self) -> Room {
        let free = self.limits.concurrency.saturating_sub(self.total.load(Ordering::Acquire));
        let busy: Vec<(Uuid, i32)> = {
            let map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(t, n)| (*t, i32::try_from(*n).unwrap_or(i32::MAX))).collect()
        };
        Room { free, busy }
    }

    async fn claim(&self, conn: &deadpool_postgres::Client, room: &Room) -> Result<Vec<Run>, String> {
        if room.free == 0 {
            return Ok(Vec::new());
        }
        let per_tenant = i32::try_from(self.limits.tenant_concurrency).unwrap_or(i32::MAX);
        let limit = i32::try_from(room.free).unwrap_or(i32::MAX);
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner()).list();
        queue::claim(conn, self.worker, limit, per_tenant, &room.busy, RUN, &failing)
            .await
            .map_err(|e| format!("app.webhook_claim_runs: {e}"))
    }

    /// Starts a task per run, each holding one of its tenant's slots; returns how many.
    fn spawn_runs(self: &Arc<Self>, runs: Vec<Run>, claimed_at: Instant) -> usize {
        let claimed = runs.len();
        for run in runs {
            self.begin(run.tenant);
            let this = self.clone();
            tokio::spawn(async move {
                let tenant = run.tenant;
                tokio::select! {
                    _ = this.cancel.cancelled() => {}
                    _ = this.send_run(run, claimed_at) => {}
                }
                this.end(tenant);
            });
        }
        claimed
    }

    fn begin(&self, tenant: Uuid) {
        *self.inflight.lock().unwrap_or_else(|p| p.into_inner()).entry(tenant).or_default() += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
    }

    /// A run ended. Its outcomes reach the recorder, whose claim follows the record, so the
    /// dispatcher is woken only when the slot freed here may be what a claim was missing
    /// (the tenant or the instance was full): a wake-up per run made a useless round (a claim
    /// before the record, finding the webhook's head still in flight) for every delivery.
    fn end(&self, tenant: Uuid) {
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let mut tenant_was_full = false;
        if let Some(n) = map.get_mut(&tenant) {
            tenant_was_full = *n >= self.limits.tenant_concurrency;
            *n -= 1;
            if *n == 0 {
                map.remove(&tenant);
            }
        }
        drop(map);
        let total_was = self.total.fetch_sub(1, Ordering::AcqRel);
        if tenant_was_full || total_was >= self.limits.concurrency {
            self.wake.work();
        }
    }

    /// Sends a run's deliveries in order; each outcome goes to the recorder. A failed attempt
    /// ends the run, and so do a lease that would end before the next attempt's time bound and
    /// a webhook deactivated or deleted meanwhile: the rest is given back unsent.
    async fn send_run(&self, run: Run, claimed_at: Instant) {
        let lease_end = claimed_at + run.lease;
        let mut jobs = run.jobs.into_iter();
        let mut first = true;
        while let Some(job) = jobs.next() {
            let late = !first && Instant::now() + self.limits.timeout + LEASE_MARGIN > lease_end;
            // Deactivated or deleted since the claim: the rest is given back, and cancelled (V72).
            if late || self.wake.is_stopped(job.webhook) {
                self.give_back(std::iter::once(job).chain(jobs));
                return;
            }
            first = false;
            let outcome = self.sender.send(&job).await;
            metrics::histogram!("rowcast_webhook_attempt_duration_seconds").record(outcome.duration.as_secs_f64());
            let succeeded = outcome.succeeded();
            self.failing.lock().unwrap_or_else(|p| p.into_inner()).set(job.webhook, !succeeded);
            let _ = self.reports.send(Report::Attempt(Box::new(Attempt { job, outcome })));
            if !succeeded {
                self.give_back(jobs);
                return;
            }
        }
    }

    fn give_back(&self, jobs: impl Iterator<Item = Job>) {
        let unsent: Vec<(Uuid, i32)> = jobs.map(|j| (j.delivery, j.attempt)).collect();
        if !unsent.is_empty() {
            let _ = self.reports.send(Report::Release(unsent));
        }
    }

    /// Records what the run tasks report, everything pending in one transaction (retrying
    /// briefly if the database blips; if it stays down the leases expire and the attempts
    /// are made again).
    async fn record_loop(self: Arc<Self>, mut reports: mpsc::UnboundedReceiver<Report>) {
        loop {
            let first = tokio::select! {
                _ = self.cancel.cancelled() => return,
                report = reports.recv() => match report { Some(r) => r, None => return },
            };
            let (mut attempts, mut releases) = (Vec::new(), Vec::new());
            let mut report = Some(first);
            while let Some(r) = report {
                match r {
                    Report::Attempt(a) => attempts.push(*a),
                    Report::Release(r) => releases.extend(r),
                }
                report = if attempts.len() + releases.len() < RECORD_BATCH { reports.try_recv().ok() } else { None };
            }
            let (mut recorded, mut released) = (attempts.is_empty(), releases.is_empty());
            let mut delay = Duration::from_millis(100);
            let mut claimed_after = false;
            for _ in 0..5 {
                let (rec, rel, claimed) = self.record(&attempts, &releases, recorded, released).await;
                claimed_after = claimed;
                match (rec, rel) {
                    (Ok(results), Ok(())) => {
                        if let Some(results) = results {
                            for (a, result) in attempts.iter().zip(results) {
                                observe(&a.job, &a.outcome, &result);
                            }
                        }
                        break;
                    }
                    (rec, rel) => {
                        // Only what failed is tried again (a recorded attempt must not log twice).
                        recorded |= rec.is_ok();
                        released |= rel.is_ok();
                        let e = rec.err().or(rel.err()).unwrap_or_default();
                        tracing::warn!(error = %e, attempts = attempts.len(), "cannot record webhook attempts; retrying");
                        tokio::select! {
                            _ = self.cancel.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay *= 2;
                    }
                }
            }
            // The claim pipelined after the record saw what it finished; only when it could not
            // run (the dispatcher was claiming, or it failed) must the dispatcher claim again.
            if !claimed_after {
                self.wake.work();
            }
        }
    }

    /// One round trip: the batch of attempts, the releases, then a claim (which sees the heads
    /// of ordered webhooks this batch finished), pipelined on one connection. The last value
    /// says whether that claim was made.
    async fn record(
        self: &Arc<Self>,
        attempts: &[Attempt],
        releases: &[(Uuid, i32)],
        recorded: bool,
        released: bool,
    ) -> (Result<Option<Vec<String>>, String>, Result<(), String>, bool) {
        let conn = match self.conn().await {
            Ok(c) => c,
            Err(e) => return (Err(e.clone()), Err(e), false),
        };
        let record = async {
            if recorded {
                return Ok(None);
            }
            queue::record(&conn, self.worker, attempts).await.map(Some).map_err(|e| format!("app.webhook_record_batch: {e}"))
        };
        let release = async {
            if released {
                return Ok(());
            }
            queue::release(&conn, self.worker, releases).await.map(drop).map_err(|e| format!("app.webhook_release: {e}"))
        };
        // Never wait for the dispatcher's claim: if it is claiming now, the wake-up after this
        // batch makes it claim again.
        let claiming = self.claiming.try_lock().ok();
        let room = claiming.as_ref().map(|_| self.room());
        let claim = async {
            match &room {
                Some(room) => Some(self.claim(&conn, room).await),
                None => None,
            }
        };
        let claimed_at = Instant::now();
        let (record, release, runs) = tokio::join!(record, release, claim);
        drop(conn);
        let claimed = match runs {
            Some(Ok(runs)) => {
                self.spawn_runs(runs, claimed_at);
                true
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "webhook recorder: claim failed");
                false
            }
            None => false,
        };
        drop(claiming);
        (record, release, claimed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_attempt_marks_its_webhook_until_a_success() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut failing = Marked::default();
        failing.set(a, true);
        failing.set(b, false);
        assert_eq!(failing.list(), vec![a], "only the webhook that failed");
        failing.set(a, true);
        assert_eq!(failing.list(), vec![a], "once");
        failing.set(a, false);
        assert!(failing.list().is_empty(), "a success clears it");
    }

    #[test]
    fn the_failing_set_stays_bounded() {
        let mut failing = Marked::default();
        for _ in 0..MARKED_MAX {
            failing.set(Uuid::new_v4(), true);
        }
        assert_eq!(failing.list().len(), MARKED_MAX);
        let last = Uuid::new_v4();
        failing.set(last, true);
        assert_eq!(failing.list(), vec![last], "full: it starts over with the newest");
    }
}

//! The relay: one dedicated connection (outside the pool) that LISTENs on `rowcast_events`
//! and feeds the hub in seq order.
//!
//! - One notification per committing transaction (migration V60): its event, its events as
//!   a batch `{seq: last, first, events}`, or — too large to carry — a `{seq: last, first,
//!   big}` range stub that is read back from `app.events` through `app.relay_events_since`
//!   (which also batches: one query brings every committed event after the last one
//!   delivered).
//! - A notification that does not start at `last + 1` (a hole: a lost notification, or a
//!   seq range drawn by a transaction that then failed) is preceded by the same read, so
//!   events reach the hub in order and nothing committed is skipped.
//! - When the connection drops (`pg_terminate_backend`, database restart, network), the
//!   relay reports itself down, reconnects with exponential backoff (capped at 2 s),
//!   re-LISTENs, then fills the hole from `app.events` before resuming live delivery;
//!   notifications at or below the last delivered seq are dropped, so nothing is duplicated.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::event::{Event, Notice};
use super::hub::Hub;
use crate::db::listen::{Listening, listen};

/// `application_name` of the relay connection (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "rowcast-listener";
const CHANNEL_SQL: &str = "LISTEN rowcast_events";
const RELAY_SQL: &str = "SELECT (e ->> 'seq')::bigint, e::text FROM app.relay_events_since($1, $2) AS e";
const BOUNDS_SQL: &str = "SELECT head, pruned_through FROM app.relay_bounds()";
const PROBE_SQL: &str = "SELECT pg_notification_queue_usage()";
const PAGE: i32 = 500;
const PROBE_EVERY: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// Up/down, for `/health`.
#[derive(Default)]
pub struct ListenerState {
    up: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
}

impl ListenerState {
    fn set(&self, up: bool, error: Option<String>) {
        self.up.store(up, Ordering::Release);
        if let Some(e) = error {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
    }

    pub fn status(&self) -> (bool, Value) {
        let up = self.up.load(Ordering::Acquire);
        let last_error = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (up, json!({"status": if up { "up" } else { "down" }, "lastError": last_error}))
    }
}

/// An open relay connection: the client for queries and the notifications it receives.
type Conn = Listening;

async fn connect(config: &tokio_postgres::Config) -> Result<Conn, String> {
    listen(config, CHANNEL_SQL, "realtime relay").await
}

/// The relay task's shared context.
pub struct Relay {
    pub hub: Arc<Hub>,
    pub state: Arc<ListenerState>,
    pub cancel: CancellationToken,
    config: tokio_postgres::Config,
}

impl Relay {
    pub fn new(mut config: tokio_postgres::Config, hub: Arc<Hub>, cancel: CancellationToken) -> Self {
        config.application_name(APPLICATION_NAME).connect_timeout(Duration::from_secs(5)).keepalives_idle(Duration::from_secs(15));
        Self { hub, state: Arc::default(), cancel, config }
    }

    /// First connection, at start-up: the hub's head becomes the log's head.
    pub async fn start(self) -> Result<tokio::task::JoinHandle<()>, String> {
        let conn = connect(&self.config).await?;
        let row = conn.client.query_one(BOUNDS_SQL, &[]).await.map_err(|e| format!("app.relay_bounds: {e}"))?;
        self.hub.set_head(row.get(0));
        self.state.set(true, None);
        Ok(tokio::spawn(self.run(conn)))
    }

    async fn run(self, mut conn: Conn) {
        let mut last = self.hub.head();
        loop {
            let outcome = self.serve(&mut conn, &mut last).await;
            if self.cancel.is_cancelled() {
                break;
            }
            let why = outcome.err().unwrap_or_else(|| "stopped".into());
            tracing::warn!(error = %why, last_seq = last, "realtime relay down; reconnecting");
            self.state.set(false, Some(why));
            match self.reconnect().await {
                Some(c) => conn = c,
                None => break,
            }
            self.hub.stats.reconnected();
            self.state.set(true, None);
            tracing::info!(last_seq = last, "realtime relay reconnected; filling the gap");
        }
        self.state.set(false, Some("stopped".into()));
    }

    async fn reconnect(&self) -> Option<Conn> {
        let mut delay = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            match connect(&self.config).await {
                Ok(conn) => return Some(conn),
                Err(e) => {
                    self.state.set(false, Some(e));
                    delay = (delay * 2).min(BACKOFF_CAP);
                }
            }
        }
    }

    /// Live delivery on one connection, starting with the gap since `last`.
    async fn serve(&self, conn: &mut Conn, last: &mut i64) -> Result<(), String> {
        self.fill(&conn.client, last, None).await?;
        let mut probe = tokio::time::interval(PROBE_EVERY);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Ok(()),
                note = conn.notes.recv() => match note {
                    Some(note) => self.on_notification(&conn.client, last, note.payload()).await?,
                    None => return Err("connection closed".into()),
                },
                _ = probe.tick() => probe_queue(&conn.client).await?,
            }
        }
    }

    async fn on_notification(&self, client: &Client, last: &mut i64, payload: &str) -> Result<(), String> {
        let notice = match Notice::decode(payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an undecodable rowcast_events notification");
                return Ok(());
            }
        };
        let seq = notice.seq();
        match notice {
            _ if seq <= *last => Ok(()),
            Notice::Full(event) if seq == *last + 1 && trusted_from_notification(&event) => {
                self.deliver(last, *event);
                Ok(())
            }
            Notice::Batch { first, events, .. } if first == *last + 1 && events.iter().all(trusted_from_notification) => {
                for event in events {
                    self.deliver(last, event);
                }
                Ok(())
            }
            _ => self.fill(client, last, Some(seq)).await,
        }
    }

    /// Reads the log after `last` and delivers it: until `upto` is reached, or to the end.
    async fn fill(&self, client: &Client, last: &mut i64, upto: Option<i64>) -> Result<(), String> {
        loop {
            let rows = client.query(RELAY_SQL, &[&*last, &PAGE]).await.map_err(|e| format!("app.relay_events_since: {e}"))?;
            let count = rows.len();
            for row in rows {
                match Event::decode(row.get(1)) {
                    Ok(event) => self.deliver(last, event),
                    Err(e) => {
                        tracing::error!(error = %e, "undecodable event in app.events; skipped");
                        *last = row.get(0);
                    }
                }
            }
            if count < PAGE as usize || upto.is_some_and(|u| *last >= u) {
                return Ok(());
            }
        }
    }

    fn deliver(&self, last: &mut i64, event: Event) {
        *last = event.seq;
        self.hub.stats.received();
        self.hub.publish(Arc::new(event));
    }
}

/// Membership and user events end subscriptions and sessions: their body is always read back
/// from app.events, never taken from a notification anyone connected could send.
fn trusted_from_notification(event: &Event) -> bool {
    !matches!(event.table.as_str(), "memberships" | "users")
}

async fn probe_queue(client: &Client) -> Result<(), String> {
    let probe = tokio::time::timeout(PROBE_EVERY, client.query_one(PROBE_SQL, &[]));
    match probe.await {
        Ok(Ok(row)) => {
            metrics::gauge!("rowcast_notify_queue_usage").set(row.get::<_, f64>(0));
            Ok(())
        }
        Ok(Err(e)) => Err(format!("probe: {e}")),
        Err(_) => Err("probe timed out".into()),
    }
}

//! Wake-ups: a dedicated connection LISTENs on `rowcast_events` (new events to feed) and
//! `rowcast_webhooks` (deliveries queued by another instance, a retry or a ping), and pokes
//! the dispatcher at once: a commit's delivery starts on its notification, not on a poll.
//! Notifications coalesce into one pending wake-up. A `rowcast_events` notification whose
//! events are all `webhook_*` (the logs of attempts, never delivered) asks for no feeding.
//! The dispatcher also polls, so a lost connection delays deliveries, never loses them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Marked;
use crate::db::listen::{Listening, listen as db_listen};

const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// What the dispatcher is woken for, and the webhooks it must stop sending to.
#[derive(Default)]
pub struct Wake {
    notify: Notify,
    feed: AtomicBool,
    /// Webhooks deactivated or deleted (from their `webhook_updated` / `webhook_deleted`
    /// events): a run of it stops before its next attempt.
    stopped: Mutex<Marked>,
}

impl Wake {
    /// Work may be claimable (a delivery queued, recorded, released; a slot freed).
    pub fn work(&self) {
        self.notify.notify_one();
    }

    /// Events may have been committed that are not fed yet.
    pub fn events(&self) {
        self.feed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// True once after [`Wake::events`].
    pub fn take_feed(&self) -> bool {
        self.feed.swap(false, Ordering::AcqRel)
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// `webhook` went live (`true`) or stopped (`false`).
    pub fn webhook_changed(&self, webhook: Uuid, live: bool) {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).set(webhook, !live);
    }

    /// Whether attempts to `webhook` must stop.
    pub fn is_stopped(&self, webhook: Uuid) -> bool {
        self.stopped.lock().unwrap_or_else(|p| p.into_inner()).contains(webhook)
    }
}

/// `worker`: this instance's dispatcher, whose own feed notifications are skipped.
pub fn spawn(mut config: tokio_postgres::Config, wake: Arc<Wake>, worker: uuid::Uuid, cancel: CancellationToken) {
    let worker = worker.to_string();
    config.application_name("rowcast-webhooks-listener").connect_timeout(Duration::from_secs(5)).keepalives_idle(Duration::from_secs(15));
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            match listen(&config, &wake, &worker, &cancel).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "webhook wake-up listener down; reconnecting"),
            }
            wake.events();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_CAP);
        }
    });
}

/// Ok when cancelled; Err when the connection failed or dropped.
async fn listen(config: &tokio_postgres::Config, wake: &Wake, worker: &str, cancel: &CancellationToken) -> Result<(), String> {
    // The client is held (not used): dropping it would close the connection.
    let Listening { client: _client, mut notes } =
        db_listen(config, "LISTEN rowcast_events; LISTEN rowcast_webhooks", "webhook wake-up").await?;
    wake.events();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            note = notes.recv() => match note {
                Some(n) => {
                    if n.channel() == "rowcast_events" {
                        for (webhook, live) in webhook_changes(n.payload()) {
                            wake.webhook_changed(webhook, live);
                        }
                        if !only_webhook_events(n.payload()) {
                            wake.events();
                        }
                    } else if n.payload() != worker {
                        // Queued by another instance, a retry or a ping (our own feed claims at once).
                        wake.work();
                    }
                }
                None => return Err("connection closed".into()),
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct Announced {
    #[serde(rename = "type")]
    kind: Option<String>,
    events: Option<Vec<Announced>>,
}

/// True when a `rowcast_events` payload (one event, or a batch of them) carries only
/// `webhook_*` events, which are never delivered. A range stub (`"big"`) or anything
/// unexpected is false: feed, to be safe.
fn only_webhook_events(payload: &str) -> bool {
    let webhook = |a: &Announced| a.kind.as_deref().is_some_and(|t| t.starts_with("webhook_"));
    match serde_json::from_str::<Announced>(payload) {
        Ok(Announced { events: Some(events), .. }) => !events.is_empty() && events.iter().all(webhook),
        Ok(one) => webhook(&one),
        Err(_) => false,
    }
}

/// The webhooks a `rowcast_events` payload (one event, or a batch) shows changing state:
/// (id, live) for each `webhook_updated` (live: `is_active` and no `deleted_at`) and each
/// `webhook_deleted` (never live). Other payloads are not parsed beyond a substring test.
fn webhook_changes(payload: &str) -> Vec<(Uuid, bool)> {
    if !payload.contains("\"webhook_updated\"") && !payload.contains("\"webhook_deleted\"") {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else { return Vec::new() };
    let one = |e: &serde_json::Value| {
        let live = match e["type"].as_str()? {
            "webhook_updated" => e["row"]["is_active"].as_bool()? && e["row"]["deleted_at"].is_null(),
            "webhook_deleted" => false,
            _ => return None,
        };
        Some((Uuid::parse_str(e["row"]["id"].as_str()?).ok()?, live))
    };
    match value["events"].as_array() {
        Some(events) => events.iter().filter_map(one).collect(),
        None => one(&value).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{only_webhook_events, webhook_changes};
    use uuid::Uuid;

    #[test]
    fn webhook_state_changes_are_read_from_their_events() {
        let id = "0b7e8f3a-5c1d-4e2f-9a8b-7c6d5e4f3a2b";
        let stopped =
            format!(r#"{{"seq": 9, "type": "webhook_updated", "row": {{"id": "{id}", "is_active": false, "deleted_at": null}}}}"#);
        assert_eq!(webhook_changes(&stopped), vec![(id.parse().unwrap(), false)]);
        let live = format!(
            r#"{{"events": [{{"type": "contact_created", "row": {{"id": "{id}"}}}}, {{"type": "webhook_updated", "row": {{"id": "{id}", "is_active": true, "deleted_at": null}}}}]}}"#
        );
        assert_eq!(webhook_changes(&live), vec![(id.parse().unwrap(), true)]);
        let deleted =
            format!(r#"{{"type": "webhook_deleted", "row": {{"id": "{id}", "is_active": true, "deleted_at": "2026-12-01T00:00:00Z"}}}}"#);
        assert_eq!(webhook_changes(&deleted), vec![(id.parse().unwrap(), false)]);
        assert!(webhook_changes(&format!(r#"{{"type": "contact_updated", "row": {{"id": "{id}"}}}}"#)).is_empty());
    }

    #[test]
    fn the_stopped_set_stays_bounded_and_a_resumed_webhook_leaves_it() {
        let wake = super::Wake::default();
        let first = Uuid::new_v4();
        wake.webhook_changed(first, false);
        assert!(wake.is_stopped(first));
        wake.webhook_changed(first, true);
        assert!(!wake.is_stopped(first));
        for _ in 0..crate::webhooks::MARKED_MAX + 5 {
            wake.webhook_changed(Uuid::new_v4(), false);
        }
        assert!(wake.stopped.lock().unwrap().list().len() <= crate::webhooks::MARKED_MAX);
    }

    #[test]
    fn only_attempt_logs_ask_for_no_feeding() {
        assert!(only_webhook_events(r#"{"seq": 7, "tenant_id": "t", "type": "webhook_triggered", "row": {"a": 1}}"#));
        assert!(only_webhook_events(
            r#"{"seq": 9, "first": 8, "events": [{"seq": 8, "type": "webhook_log_created"}, {"seq": 9, "type": "webhook_triggered"}]}"#
        ));
        assert!(!only_webhook_events(r#"{"seq": 7, "type": "contact_created"}"#));
        assert!(!only_webhook_events(
            r#"{"seq": 9, "first": 8, "events": [{"seq": 8, "type": "webhook_triggered"}, {"seq": 9, "type": "contact_created"}]}"#
        ));
        assert!(!only_webhook_events(r#"{"seq": 9, "first": 1, "tenant_id": null, "big": true}"#), "a stub: feed");
        assert!(!only_webhook_events("not json"));
    }
}

//! Wake-ups: a dedicated connection LISTENs on `rowcast_events` (new events to feed) and
//! `rowcast_webhooks` (deliveries queued by another instance, a retry or a ping), and pokes
//! the dispatcher at once: a commit's delivery starts on its notification, not on a poll.
//! Notifications coalesce into one pending wake-up. A `rowcast_events` notification whose
//! events are all `webhook_*` (the logs of attempts, never delivered) asks for no feeding.
//! The dispatcher also polls, so a lost connection delays deliveries, never loses them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::listen::{Listening, listen as db_listen};

const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// What the dispatcher is woken for.
#[derive(Default)]
pub struct Wake {
    notify: Notify,
    feed: AtomicBool,
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

#[cfg(test)]
mod tests {
    use super::only_webhook_events;

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

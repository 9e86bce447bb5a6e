//! Wake-ups: a dedicated connection LISTENs on `rowcast_events` (new events to feed) and
//! `rowcast_webhooks` (deliveries queued by another instance, a retry or a ping), and pokes
//! the dispatcher at once: a commit's delivery starts on its notification, not on a poll.
//! Notifications coalesce into one pending wake-up.
//!
//! Only an event of a tenant with a live webhook can queue a delivery, so a `rowcast_events`
//! notification wakes the feed only when one of its events (other than the `webhook_*` logs
//! of attempts, never delivered) is of such a tenant. The listener keeps those tenants in
//! memory ([`Interest`]): loaded with `app.webhook_live()` once it listens (migration V74),
//! followed through each webhook's `webhook_created` / `webhook_updated` / `webhook_deleted`
//! event, and loaded again when a notification cannot be read (a range stub, which carries no
//! events). Every other notification is skipped: before V74, each one cost a feed round (a
//! write transaction and two round trips) even where no tenant had a webhook. The dispatcher
//! also polls and feeds whatever the list says, so a lost connection, or a notification
//! forged by another database user, delays deliveries by at most the poll, never loses them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Marked;
use crate::db::listen::{Listening, listen as db_listen};

const BACKOFF_CAP: Duration = Duration::from_secs(2);
const LIVE_SQL: &str = "SELECT webhook_id, tenant_id FROM app.webhook_live()";
/// Live webhooks the listener follows at most; past it every event wakes the feed.
const LIVE_MAX: usize = 100_000;

/// What the dispatcher is woken for, and the webhooks it must stop sending to.
pub struct Wake {
    notify: Notify,
    feed: AtomicBool,
    /// Webhooks deactivated or deleted (from their `webhook_updated` / `webhook_deleted`
    /// events): a run of it stops before its next attempt.
    stopped: Mutex<Marked>,
    wakeups: watch::Sender<Wakeups>,
}

/// What the listener did with the `rowcast_events` notifications it received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// Notifications that woke the feed.
    pub fed: u64,
    /// Notifications that could not queue a delivery: no event of a tenant with a live
    /// webhook, or only attempt logs.
    pub skipped: u64,
    /// The seq of the last notification read.
    pub seq: i64,
}

impl Default for Wake {
    fn default() -> Self {
        Wake {
            notify: Notify::new(),
            feed: AtomicBool::new(false),
            stopped: Mutex::default(),
            wakeups: watch::Sender::new(Wakeups::default()),
        }
    }
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

    /// The counts of fed and skipped notifications, as they change.
    pub fn wakeups(&self) -> watch::Receiver<Wakeups> {
        self.wakeups.subscribe()
    }

    fn count(&self, fed: bool, seq: Option<i64>) {
        self.wakeups.send_modify(|w| {
            if fed {
                w.fed += 1;
            } else {
                w.skipped += 1;
            }
            w.seq = w.seq.max(seq.unwrap_or(0));
        });
        metrics::counter!("rowcast_webhook_feed_wakeups_total", "outcome" => if fed { "fed" } else { "skipped" }).increment(1);
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
    let Listening { client, mut notes } = db_listen(config, "LISTEN rowcast_events; LISTEN rowcast_webhooks", "webhook wake-up").await?;
    // Loaded after LISTEN: a change committed meanwhile is in the list, or in a notification
    // read after it (applying it twice changes nothing).
    let mut interest = load(&client).await?;
    wake.events();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            note = notes.recv() => match note {
                Some(n) => {
                    if n.channel() == "rowcast_events" {
                        let verdict = interest.read(n.payload());
                        for (webhook, live) in &verdict.changes {
                            wake.webhook_changed(*webhook, *live);
                        }
                        if verdict.reload {
                            interest = load(&client).await?;
                        }
                        if verdict.feed {
                            wake.events();
                        }
                        wake.count(verdict.feed, verdict.seq);
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

async fn load(client: &tokio_postgres::Client) -> Result<Interest, String> {
    let rows = client.query(LIVE_SQL, &[]).await.map_err(|e| format!("app.webhook_live: {e}"))?;
    Ok(Interest::from_live(rows.iter().map(|r| (r.get(0), r.get(1)))))
}

/// The live webhooks (active, not deleted) and their tenants, as this instance knows them:
/// an event of any other tenant cannot queue a delivery.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    hooks: HashMap<Uuid, Uuid>,
    /// Live webhooks per tenant.
    tenants: HashMap<Uuid, usize>,
    /// More than [`LIVE_MAX`] live webhooks: not followed, every event is fed.
    untracked: bool,
}

/// What one `rowcast_events` notification asks of the listener.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Wake the feed.
    pub feed: bool,
    /// The notification could not be read (a range stub, or not the expected shape): load
    /// the list again.
    pub reload: bool,
    /// Webhooks that went live (`true`) or stopped (`false`), in order.
    pub changes: Vec<(Uuid, bool)>,
    /// The notification's (last) seq.
    pub seq: Option<i64>,
}

#[derive(Deserialize)]
struct Announced<'a> {
    seq: Option<i64>,
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    tenant_id: Option<Uuid>,
    #[serde(default)]
    big: bool,
    #[serde(borrow)]
    events: Option<Vec<Announced<'a>>>,
}

impl Announced<'_> {
    /// An attempt's log: never delivered.
    fn is_log(&self) -> bool {
        self.kind.as_deref().is_some_and(|t| t.starts_with("webhook_"))
    }
}

impl Interest {
    pub(crate) fn from_live(live: impl IntoIterator<Item = (Uuid, Uuid)>) -> Self {
        let mut interest = Interest::default();
        for (webhook, tenant) in live {
            interest.set(webhook, tenant, true);
        }
        interest
    }

    fn set(&mut self, webhook: Uuid, tenant: Uuid, live: bool) {
        if let Some(was) = self.hooks.remove(&webhook)
            && let Some(n) = self.tenants.get_mut(&was)
        {
            *n -= 1;
            if *n == 0 {
                self.tenants.remove(&was);
            }
        }
        if live && !self.untracked {
            if self.hooks.len() >= LIVE_MAX {
                *self = Interest { untracked: true, ..Interest::default() };
                return;
            }
            self.hooks.insert(webhook, tenant);
            *self.tenants.entry(tenant).or_default() += 1;
        }
    }

    fn wants(&self, tenant: Option<Uuid>) -> bool {
        self.untracked || tenant.is_some_and(|t| self.tenants.contains_key(&t))
    }

    /// Reads one notification: the webhook changes it carries are applied, and it is fed when
    /// one of its events (not a log) is of a tenant with a live webhook before or after them.
    pub(crate) fn read(&mut self, payload: &str) -> Verdict {
        let Ok(announced) = serde_json::from_str::<Announced>(payload) else {
            return Verdict { feed: true, reload: true, changes: Vec::new(), seq: None };
        };
        if announced.big {
            return Verdict { feed: true, reload: true, changes: Vec::new(), seq: announced.seq };
        }
        let events = announced.events.as_deref().unwrap_or(std::slice::from_ref(&announced));
        let wanted = |interest: &Interest| events.iter().any(|e| !e.is_log() && interest.wants(e.tenant_id));
        let before = wanted(self);
        let changes = webhook_changes(payload);
        for &(webhook, tenant, live) in &changes {
            self.set(webhook, tenant, live);
        }
        let feed = before || (!changes.is_empty() && wanted(self));
        Verdict { feed, reload: false, changes: changes.into_iter().map(|(w, _, live)| (w, live)).collect(), seq: announced.seq }
    }
}

/// The webhooks a `rowcast_events` payload (one event, or a batch) shows changing state:
/// (id, tenant, live) for each `webhook_created` and `webhook_updated` (live: `is_active` and
/// no `deleted_at`) and each `webhook_deleted` (never live). Other payloads are not parsed
/// beyond a substring test.
fn webhook_changes(payload: &str) -> Vec<(Uuid, Uuid, bool)> {
    if !["\"webhook_created\"", "\"webhook_updated\"", "\"webhook_deleted\""].iter().any(|t| payload.contains(t)) {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else { return Vec::new() };
    let one = |e: &serde_json::Value| {
        let live = match e["type"].as_str()? {
            "webhook_created" | "webhook_updated" => e["row"]["is_active"].as_bool()? && e["row"]["deleted_at"].is_null(),
            "webhook_deleted" => false,
            _ => return None,
        };
        let tenant = e["tenant_id"].as_str().or_else(|| e["row"]["tenant_id"].as_str())?;
        Some((Uuid::parse_str(e["row"]["id"].as_str()?).ok()?, Uuid::parse_str(tenant).ok()?, live))
    };
    match value["events"].as_array() {
        Some(events) => events.iter().filter_map(one).collect(),
        None => one(&value).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Interest, Verdict, webhook_changes};
    use uuid::Uuid;

    fn event(tenant: Uuid, kind: &str) -> String {
        format!(r#"{{"seq": 7, "tenant_id": "{tenant}", "type": "{kind}", "row": {{"id": "{}"}}}}"#, Uuid::new_v4())
    }

    fn hook_event(tenant: Uuid, hook: Uuid, kind: &str, active: bool, deleted: bool) -> String {
        let deleted_at = if deleted { r#""2026-12-01T00:00:00Z""# } else { "null" };
        format!(
            r#"{{"seq": 8, "tenant_id": "{tenant}", "type": "{kind}", "row": {{"id": "{hook}", "tenant_id": "{tenant}", "is_active": {active}, "deleted_at": {deleted_at}}}}}"#
        )
    }

    fn batch(events: &[String]) -> String {
        format!(r#"{{"seq": 9, "first": 8, "events": [{}]}}"#, events.join(", "))
    }

    fn fed(interest: &mut Interest, payload: &str) -> bool {
        let verdict = interest.read(payload);
        assert!(!verdict.reload, "{payload}");
        verdict.feed
    }

    #[test]
    fn webhook_state_changes_are_read_from_their_events() {
        let (hook, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(webhook_changes(&hook_event(tenant, hook, "webhook_updated", false, false)), vec![(hook, tenant, false)]);
        assert_eq!(webhook_changes(&hook_event(tenant, hook, "webhook_created", true, false)), vec![(hook, tenant, true)]);
        assert_eq!(webhook_changes(&hook_event(tenant, hook, "webhook_created", false, false)), vec![(hook, tenant, false)]);
        let live = batch(&[event(tenant, "contact_created"), hook_event(tenant, hook, "webhook_updated", true, false)]);
        assert_eq!(webhook_changes(&live), vec![(hook, tenant, true)]);
        assert_eq!(webhook_changes(&hook_event(tenant, hook, "webhook_deleted", true, true)), vec![(hook, tenant, false)]);
        assert_eq!(webhook_changes(&hook_event(tenant, hook, "webhook_updated", true, true)), vec![(hook, tenant, false)]);
        assert!(webhook_changes(&event(tenant, "contact_updated")).is_empty());
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

    /// The allowed case and its forbidden twin: an event of a tenant with a live webhook
    /// wakes the feed, the same event of a tenant without one does not.
    #[test]
    fn only_an_event_of_a_tenant_with_a_live_webhook_wakes_the_feed() {
        let (with, without) = (Uuid::new_v4(), Uuid::new_v4());
        let mut interest = Interest::from_live([(Uuid::new_v4(), with)]);
        assert!(fed(&mut interest, &event(with, "contact_created")));
        assert!(!fed(&mut interest, &event(without, "contact_created")));
        assert!(fed(&mut interest, &batch(&[event(without, "contact_created"), event(with, "message_created")])));
        assert!(!fed(&mut interest, &batch(&[event(without, "contact_created"), event(without, "message_created")])));
        // Attempt logs are never delivered, whoever's they are; nor is an event of no tenant.
        assert!(!fed(&mut interest, &event(with, "webhook_triggered")));
        assert!(!fed(&mut interest, &batch(&[event(with, "webhook_log_created"), event(with, "webhook_triggered")])));
        assert!(!fed(&mut interest, r#"{"seq": 7, "tenant_id": null, "type": "plan_updated"}"#));
    }

    #[test]
    fn what_cannot_be_read_is_fed_and_the_list_loaded_again() {
        let mut interest = Interest::default();
        let again = |seq| Verdict { feed: true, reload: true, changes: Vec::new(), seq };
        assert_eq!(interest.read(r#"{"seq": 9, "first": 1, "tenant_id": null, "big": true}"#), again(Some(9)), "a range stub");
        assert_eq!(interest.read("not json"), again(None));
        assert_eq!(interest.read(r#"{"seq": 7, "tenant_id": "not a uuid", "type": "contact_created"}"#), again(None));
    }

    #[test]
    fn the_list_follows_each_webhooks_events() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (a1, a2, b1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut interest = Interest::from_live([(a1, a), (a2, a)]);
        assert!(!fed(&mut interest, &event(b, "contact_created")));
        // Created: its own event is not delivered; the tenant's next one is fed.
        let verdict = interest.read(&hook_event(b, b1, "webhook_created", true, false));
        assert_eq!(verdict, Verdict { feed: false, reload: false, changes: vec![(b1, true)], seq: Some(8) });
        assert!(fed(&mut interest, &event(b, "contact_created")));
        // Deactivated, then soft-deleted: no longer fed; active again: fed again.
        assert!(!fed(&mut interest, &hook_event(b, b1, "webhook_updated", false, false)));
        assert!(!fed(&mut interest, &event(b, "contact_created")));
        assert!(!fed(&mut interest, &hook_event(b, b1, "webhook_updated", true, false)));
        assert!(fed(&mut interest, &event(b, "contact_created")));
        assert!(!fed(&mut interest, &hook_event(b, b1, "webhook_deleted", true, true)));
        assert!(!fed(&mut interest, &event(b, "contact_created")));
        // One of a tenant's two webhooks deleted: the tenant is still fed.
        assert!(!fed(&mut interest, &hook_event(a, a1, "webhook_deleted", true, true)));
        assert!(fed(&mut interest, &event(a, "contact_created")));
        // A webhook moved to another tenant follows it.
        assert!(!fed(&mut interest, &hook_event(b, a2, "webhook_updated", true, false)));
        assert!(!fed(&mut interest, &event(a, "contact_created")));
        assert!(fed(&mut interest, &event(b, "contact_created")));
    }

    /// One transaction's batch: a webhook created with an event of its tenant (the event may
    /// queue a delivery), or a tenant's last webhook deleted after one (the same).
    #[test]
    fn a_batch_is_fed_when_its_tenant_has_a_live_webhook_before_or_after_its_changes() {
        let (a, b, hook_a, hook_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut interest = Interest::from_live([(hook_a, a)]);
        assert!(fed(&mut interest, &batch(&[hook_event(b, hook_b, "webhook_created", true, false), event(b, "contact_created")])));
        assert!(fed(&mut interest, &batch(&[event(a, "contact_created"), hook_event(a, hook_a, "webhook_deleted", true, true)])));
        assert!(!fed(&mut interest, &event(a, "contact_created")));
    }

    #[test]
    fn past_the_bound_every_event_is_fed() {
        let tenant = Uuid::new_v4();
        let mut interest = Interest::from_live((0..super::LIVE_MAX).map(|_| (Uuid::new_v4(), tenant)));
        assert!(!fed(&mut interest, &event(Uuid::new_v4(), "contact_created")));
        assert!(!fed(&mut interest, &hook_event(tenant, Uuid::new_v4(), "webhook_created", true, false)));
        assert!(interest.hooks.is_empty() && interest.tenants.is_empty(), "nothing is kept once untracked");
        assert!(fed(&mut interest, &event(Uuid::new_v4(), "contact_created")));
    }
}

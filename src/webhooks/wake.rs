//! Wake-ups: a dedicated connection LISTENs on `rowcast_events` (new events to feed) and
//! `rowcast_webhooks` (deliveries queued by another instance, a retry or a ping), and pokes
//! the dispatcher at once: a commit's delivery starts on its notification, not on a poll.
//! Notifications coalesce into one pending wake-up.
//!
//! Only an event of a tenant with a webhook can queue a delivery, so a `rowcast_events`
//! notification wakes the feed only when one of its events (other than the `webhook_*`
//! events, never delivered) is of a tenant with a webhook. Inactive and soft-deleted webhooks
//! count: their tenants are fed at each notification as before, so an event committed while
//! a webhook was inactive is never left for a feed that runs after its re-activation. The
//! listener keeps those tenants in memory ([`Interest`]):
//! - loaded with `app.webhook_list()` once it listens (migrations V74, V75);
//! - followed through each webhook's `webhook_created` / `webhook_updated` /
//!   `webhook_deleted` event;
//! - for a range stub, which carries no events, the stub's webhook events are read with
//!   `app.webhook_changes_in(first, seq)`;
//! - loaded again when a notification cannot be read.
//!
//! Every other notification is skipped. Before V74 each one cost a feed round (a write
//! transaction and two round trips), even where no tenant had a webhook. The dispatcher's
//! poll feeds whatever the list says, on a fixed period that wake-ups do not restart. So a
//! lost connection, or a notification forged by another database user, delays a delivery
//! by at most the poll; it never loses one. The list also carries which webhooks are live,
//! and each load or stub clears the "stopped" mark of those (a re-activation the listener
//! did not see must not keep a webhook's runs given back).

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
const LIST_SQL: &str = "SELECT webhook_id, tenant_id, live FROM app.webhook_list()";
const CHANGES_SQL: &str = "SELECT webhook_id, tenant_id, live, gone FROM app.webhook_changes_in($1, $2)";
/// Webhooks the listener follows at most; past it every event wakes the feed.
const HOOKS_MAX: usize = 100_000;

/// What the dispatcher is woken for, and the webhooks it must stop sending to.
pub struct Wake {
    notify: Notify,
    feed: AtomicBool,
    /// Webhooks deactivated or deleted (from their `webhook_updated` / `webhook_deleted`
    /// events): a run of it stops before its next attempt.
    stopped: Mutex<Marked>,
    wakeups: watch::Sender<Wakeups>,
}

/// What the wake-up listener did with the `rowcast_events` notifications it received, and
/// where the dispatcher's feeding stands (for operators' metrics and for tests to await).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// Notifications that woke the feed.
    pub fed: u64,
    /// Notifications that could not queue a delivery: no event of a tenant with a webhook,
    /// or only `webhook_*` events.
    pub skipped: u64,
    /// Times the list of webhooks was loaded (once per connection, and after an unreadable
    /// notification).
    pub loads: u64,
    /// Feed wake-ups asked for ([`Wake::events`]), and how many of them a feed round had
    /// taken when it started: `taken < requested` means a feed is pending.
    pub requested: u64,
    pub taken: u64,
    /// A feed round is running.
    pub feeding: bool,
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
        // Under the counts' lock, so that `taken == requested` means nothing is pending.
        self.wakeups.send_modify(|w| {
            self.feed.store(true, Ordering::Release);
            w.requested += 1;
        });
        self.notify.notify_one();
    }

    /// Starts a dispatcher round: true when it feeds (a poll, or once after [`Wake::events`]);
    /// such a round ends with [`Wake::end_feed`].
    pub fn start_feed(&self, polled: bool) -> bool {
        let mut feed = false;
        self.wakeups.send_if_modified(|w| {
            if self.feed.swap(false, Ordering::AcqRel) {
                w.taken = w.requested;
                feed = true;
            }
            feed |= polled;
            w.feeding = feed;
            feed
        });
        feed
    }

    pub fn end_feed(&self) {
        self.wakeups.send_modify(|w| w.feeding = false);
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
    // Fed once whatever the list says: events may have been committed while not listening.
    wake.events();
    // Loaded after LISTEN: a change committed meanwhile is in the list, or in a notification
    // read after it (applying it twice changes nothing).
    let mut interest = load(&client, wake).await?;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            note = notes.recv() => match note {
                Some(n) => {
                    if n.channel() == "rowcast_events" {
                        let verdict = interest.read(n.payload());
                        let changes = match verdict.fetch {
                            Fetch::Nothing => verdict.changes,
                            Fetch::Range(first, last) => {
                                let changes = changes_in(&client, first, last).await?;
                                interest.apply(&changes);
                                changes
                            }
                            Fetch::All => {
                                interest = load(&client, wake).await?;
                                Vec::new()
                            }
                        };
                        for change in &changes {
                            wake.webhook_changed(change.webhook, change.live);
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

/// Every webhook and its tenant; the live ones lose any "stopped" mark.
async fn load(client: &tokio_postgres::Client, wake: &Wake) -> Result<Interest, String> {
    let rows = client.query(LIST_SQL, &[]).await.map_err(|e| format!("app.webhook_list: {e}"))?;
    let hooks: Vec<(Uuid, Uuid, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    for (webhook, _, live) in &hooks {
        if *live {
            wake.webhook_changed(*webhook, true);
        }
    }
    wake.wakeups.send_modify(|w| w.loads += 1);
    Ok(Interest::from_list(hooks.iter().map(|(webhook, tenant, _)| (*webhook, *tenant))))
}

/// The webhook events of a range stub's seqs.
async fn changes_in(client: &tokio_postgres::Client, first: i64, last: i64) -> Result<Vec<Change>, String> {
    let rows = client.query(CHANGES_SQL, &[&first, &last]).await.map_err(|e| format!("app.webhook_changes_in: {e}"))?;
    Ok(rows.iter().map(|r| Change { webhook: r.get(0), tenant: r.get(1), live: r.get(2), gone: r.get(3) }).collect())
}

/// The webhooks (any state, until their row is deleted) and their tenants, as this instance
/// knows them: an event of any other tenant cannot queue a delivery.
#[derive(Debug, Default)]
pub(crate) struct Interest {
    hooks: HashMap<Uuid, Uuid>,
    /// Webhooks per tenant.
    tenants: HashMap<Uuid, usize>,
    /// More than [`HOOKS_MAX`] webhooks: not followed, every event is fed.
    untracked: bool,
}

/// A webhook event: the webhook, its tenant, whether it is live after it (active, not
/// deleted, its row still there), and whether its row is gone (a `DELETE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub webhook: Uuid,
    pub tenant: Uuid,
    pub live: bool,
    pub gone: bool,
}

/// What the listener must read besides the notification.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fetch {
    Nothing,
    /// A range stub: the webhook events of these seqs.
    Range(i64, i64),
    /// An unreadable notification: the whole list.
    All,
}

/// What one `rowcast_events` notification asks of the listener.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Wake the feed.
    pub feed: bool,
    pub fetch: Fetch,
    /// The webhook events the notification carries, in order (already applied).
    pub changes: Vec<Change>,
    /// The notification's (last) seq.
    pub seq: Option<i64>,
}

#[derive(Deserialize)]
struct Announced<'a> {
    seq: Option<i64>,
    first: Option<i64>,
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    tenant_id: Option<Uuid>,
    #[serde(default)]
    big: bool,
    #[serde(borrow)]
    events: Option<Vec<Announced<'a>>>,
}

impl Announced<'_> {
    /// A `webhook_*` event (an attempt's log, a webhook's own change): never delivered.
    fn is_webhooks(&self) -> bool {
        self.kind.as_deref().is_some_and(|t| t.starts_with("webhook_"))
    }

    /// A webhook's own change.
    fn is_change(&self) -> bool {
        matches!(self.kind.as_deref(), Some("webhook_created" | "webhook_updated" | "webhook_deleted"))
    }
}

impl Interest {
    pub(crate) fn from_list(hooks: impl IntoIterator<Item = (Uuid, Uuid)>) -> Self {
        let mut interest = Interest::default();
        for (webhook, tenant) in hooks {
            interest.set(webhook, Some(tenant));
        }
        interest
    }

    /// `tenant` None: the webhook's row is gone.
    fn set(&mut self, webhook: Uuid, tenant: Option<Uuid>) {
        if let Some(was) = self.hooks.remove(&webhook)
            && let Some(n) = self.tenants.get_mut(&was)
        {
            *n -= 1;
            if *n == 0 {
                self.tenants.remove(&was);
            }
        }
        if let Some(tenant) = tenant
            && !self.untracked
        {
            if self.hooks.len() >= HOOKS_MAX {
                *self = Interest { untracked: true, ..Interest::default() };
                return;
            }
            self.hooks.insert(webhook, tenant);
            *self.tenants.entry(tenant).or_default() += 1;
        }
    }

    pub(crate) fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            self.set(c.webhook, (!c.gone).then_some(c.tenant));
        }
    }

    fn wants(&self, tenant: Option<Uuid>) -> bool {
        self.untracked || tenant.is_some_and(|t| self.tenants.contains_key(&t))
    }

    /// Reads one notification: the webhook events it carries are applied, and it is fed when
    /// one of its other events is of a tenant with a webhook before or after them. A range
    /// stub is fed and its webhook events fetched; what cannot be read is fed and the list
    /// loaded again.
    pub(crate) fn read(&mut self, payload: &str) -> Verdict {
        let Ok(announced) = serde_json::from_str::<Announced>(payload) else {
            return Verdict { feed: true, fetch: Fetch::All, changes: Vec::new(), seq: None };
        };
        if announced.big {
            let fetch = match (announced.first, announced.seq) {
                (Some(first), Some(last)) => Fetch::Range(first, last),
                _ => Fetch::All,
            };
            return Verdict { feed: true, fetch, changes: Vec::new(), seq: announced.seq };
        }
        let events = announced.events.as_deref().unwrap_or(std::slice::from_ref(&announced));
        let wanted = |interest: &Interest| events.iter().any(|e| !e.is_webhooks() && interest.wants(e.tenant_id));
        let before = wanted(self);
        let changes = if events.iter().any(Announced::is_change) { webhook_changes(payload) } else { Vec::new() };
        self.apply(&changes);
        let feed = before || (!changes.is_empty() && wanted(self));
        Verdict { feed, fetch: Fetch::Nothing, changes, seq: announced.seq }
    }
}

/// The webhook events of a `rowcast_events` payload (one event, or a batch), in order:
/// `webhook_created`, `webhook_updated` and `webhook_deleted` (live: `is_active` and no
/// `deleted_at`; gone: the row was deleted).
fn webhook_changes(payload: &str) -> Vec<Change> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) else { return Vec::new() };
    let one = |e: &serde_json::Value| {
        if !matches!(e["type"].as_str()?, "webhook_created" | "webhook_updated" | "webhook_deleted") {
            return None;
        }
        let row = &e["row"];
        let tenant = e["tenant_id"].as_str().or_else(|| row["tenant_id"].as_str())?;
        let gone = e["op"] == "DELETE";
        Some(Change {
            webhook: Uuid::parse_str(row["id"].as_str()?).ok()?,
            tenant: Uuid::parse_str(tenant).ok()?,
            live: !gone && row["is_active"].as_bool() == Some(true) && row["deleted_at"].is_null(),
            gone,
        })
    };
    match value["events"].as_array() {
        Some(events) => events.iter().filter_map(one).collect(),
        None => one(&value).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Change, Fetch, Interest, Verdict, webhook_changes};
    use uuid::Uuid;

    fn event(tenant: Uuid, kind: &str) -> String {
        format!(r#"{{"seq": 7, "tenant_id": "{tenant}", "type": "{kind}", "op": "INSERT", "row": {{"id": "{}"}}}}"#, Uuid::new_v4())
    }

    /// A webhook's event: `op` INSERT, UPDATE or DELETE.
    fn hook_event(tenant: Uuid, hook: Uuid, kind: &str, op: &str, active: bool, deleted: bool) -> String {
        let deleted_at = if deleted { r#""2026-12-01T00:00:00Z""# } else { "null" };
        format!(
            r#"{{"seq": 8, "tenant_id": "{tenant}", "type": "{kind}", "op": "{op}", "row": {{"id": "{hook}", "tenant_id": "{tenant}", "is_active": {active}, "deleted_at": {deleted_at}}}}}"#
        )
    }

    fn batch(events: &[String]) -> String {
        format!(r#"{{"seq": 9, "first": 8, "events": [{}]}}"#, events.join(", "))
    }

    fn fed(interest: &mut Interest, payload: &str) -> bool {
        let verdict = interest.read(payload);
        assert_eq!(verdict.fetch, Fetch::Nothing, "{payload}");
        verdict.feed
    }

    fn change(webhook: Uuid, tenant: Uuid, live: bool, gone: bool) -> Change {
        Change { webhook, tenant, live, gone }
    }

    #[test]
    fn webhook_changes_are_read_from_their_events() {
        let (hook, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        let read = |e: String| webhook_changes(&e);
        assert_eq!(read(hook_event(tenant, hook, "webhook_updated", "UPDATE", false, false)), vec![change(hook, tenant, false, false)]);
        assert_eq!(read(hook_event(tenant, hook, "webhook_created", "INSERT", true, false)), vec![change(hook, tenant, true, false)]);
        assert_eq!(read(hook_event(tenant, hook, "webhook_created", "INSERT", false, false)), vec![change(hook, tenant, false, false)]);
        let live = batch(&[event(tenant, "contact_created"), hook_event(tenant, hook, "webhook_updated", "UPDATE", true, false)]);
        assert_eq!(webhook_changes(&live), vec![change(hook, tenant, true, false)]);
        // A soft delete keeps the row; a DELETE does not.
        assert_eq!(read(hook_event(tenant, hook, "webhook_deleted", "UPDATE", true, true)), vec![change(hook, tenant, false, false)]);
        assert_eq!(read(hook_event(tenant, hook, "webhook_deleted", "DELETE", true, false)), vec![change(hook, tenant, false, true)]);
        assert!(read(event(tenant, "contact_updated")).is_empty());
        assert!(read(hook_event(tenant, hook, "webhook_triggered", "INSERT", true, false)).is_empty(), "an attempt's log");
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

    /// The allowed case and its forbidden twin: an event of a tenant with a webhook wakes the
    /// feed, the same event of a tenant without one does not.
    #[test]
    fn only_an_event_of_a_tenant_with_a_webhook_wakes_the_feed() {
        let (with, without) = (Uuid::new_v4(), Uuid::new_v4());
        let mut interest = Interest::from_list([(Uuid::new_v4(), with)]);
        assert!(fed(&mut interest, &event(with, "contact_created")));
        assert!(!fed(&mut interest, &event(without, "contact_created")));
        assert!(fed(&mut interest, &batch(&[event(without, "contact_created"), event(with, "message_created")])));
        assert!(!fed(&mut interest, &batch(&[event(without, "contact_created"), event(without, "message_created")])));
        // `webhook_*` events are never delivered, whoever's they are; nor is an event of no tenant.
        assert!(!fed(&mut interest, &event(with, "webhook_triggered")));
        assert!(!fed(&mut interest, &batch(&[event(with, "webhook_log_created"), event(with, "webhook_triggered")])));
        assert!(!fed(&mut interest, r#"{"seq": 7, "tenant_id": null, "type": "plan_updated"}"#));
    }

    #[test]
    fn a_range_stub_is_fed_and_its_changes_fetched_and_what_cannot_be_read_reloads_the_list() {
        let mut interest = Interest::default();
        let verdict = interest.read(r#"{"seq": 9, "first": 3, "tenant_id": null, "big": true}"#);
        assert_eq!(verdict, Verdict { feed: true, fetch: Fetch::Range(3, 9), changes: Vec::new(), seq: Some(9) });
        let all = Verdict { feed: true, fetch: Fetch::All, changes: Vec::new(), seq: None };
        assert_eq!(interest.read("not json"), all);
        assert_eq!(interest.read(r#"{"seq": 7, "tenant_id": "not a uuid", "type": "contact_created"}"#), all);
        // Fetched changes are applied like carried ones.
        let (hook, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        interest.apply(&[change(hook, tenant, false, false)]);
        assert!(fed(&mut interest, &event(tenant, "contact_created")));
        interest.apply(&[change(hook, tenant, false, true)]);
        assert!(!fed(&mut interest, &event(tenant, "contact_created")));
    }

    /// Inactive and soft-deleted webhooks keep their tenant fed at each notification: an event
    /// committed while a webhook is inactive must not wait for a feed that might run after
    /// its re-activation. Only a deleted row, or a move to another tenant, stops it.
    #[test]
    fn the_list_follows_each_webhooks_events_and_keeps_inactive_webhooks() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (a1, a2, b1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut interest = Interest::from_list([(a1, a), (a2, a)]);
        assert!(!fed(&mut interest, &event(b, "contact_created")));
        // Created: its own event is not delivered; the tenant's next one is fed.
        let verdict = interest.read(&hook_event(b, b1, "webhook_created", "INSERT", false, false));
        assert_eq!(verdict, Verdict { feed: false, fetch: Fetch::Nothing, changes: vec![change(b1, b, false, false)], seq: Some(8) });
        assert!(fed(&mut interest, &event(b, "contact_created")), "an inactive webhook's tenant is fed");
        assert!(!fed(&mut interest, &hook_event(b, b1, "webhook_updated", "UPDATE", true, false)));
        assert!(fed(&mut interest, &event(b, "contact_created")));
        assert!(!fed(&mut interest, &hook_event(b, b1, "webhook_deleted", "UPDATE", true, true)));
        assert!(fed(&mut interest, &event(b, "contact_created")), "a soft-deleted webhook's tenant is fed");
        assert!(!fed(&mut interest, &hook_event(b, b1, "webhook_deleted", "DELETE", true, true)));
        assert!(!fed(&mut interest, &event(b, "contact_created")), "a deleted row is forgotten");
        // One of a tenant's two webhooks deleted: the tenant is still fed.
        assert!(!fed(&mut interest, &hook_event(a, a1, "webhook_deleted", "DELETE", true, false)));
        assert!(fed(&mut interest, &event(a, "contact_created")));
        // A webhook moved to another tenant follows it.
        assert!(!fed(&mut interest, &hook_event(b, a2, "webhook_updated", "UPDATE", true, false)));
        assert!(!fed(&mut interest, &event(a, "contact_created")));
        assert!(fed(&mut interest, &event(b, "contact_created")));
    }

    /// One transaction's batch: a webhook created with an event of its tenant (the event may
    /// queue a delivery), or a tenant's last webhook deleted after one (the same).
    #[test]
    fn a_batch_is_fed_when_its_tenant_has_a_webhook_before_or_after_its_changes() {
        let (a, b, hook_a, hook_b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut interest = Interest::from_list([(hook_a, a)]);
        assert!(fed(
            &mut interest,
            &batch(&[hook_event(b, hook_b, "webhook_created", "INSERT", true, false), event(b, "contact_created")])
        ));
        assert!(fed(
            &mut interest,
            &batch(&[event(a, "contact_created"), hook_event(a, hook_a, "webhook_deleted", "DELETE", true, false)])
        ));
        assert!(!fed(&mut interest, &event(a, "contact_created")));
    }

    #[test]
    fn past_the_bound_every_event_is_fed() {
        let tenant = Uuid::new_v4();
        let mut interest = Interest::from_list((0..super::HOOKS_MAX).map(|_| (Uuid::new_v4(), tenant)));
        assert!(!fed(&mut interest, &event(Uuid::new_v4(), "contact_created")));
        assert!(!fed(&mut interest, &hook_event(tenant, Uuid::new_v4(), "webhook_created", "INSERT", true, false)));
        assert!(interest.hooks.is_empty() && interest.tenants.is_empty(), "nothing is kept once untracked");
        assert!(fed(&mut interest, &event(Uuid::new_v4(), "contact_created")));
    }
}

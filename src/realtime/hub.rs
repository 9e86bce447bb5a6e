//! The hub: tenant → sessions index and fan-out.
//!
//! `publish` runs on the listener task, once per event, in seq order. It takes the index's
//! read lock (a std lock, never held across an await), checks each candidate subscription
//! and pushes the shared `Arc<Event>` into the session's bounded queue. A full queue
//! marks the session lagging (it closes itself with a resume cursor); a closed queue means
//! the session is gone. Neither ever blocks or slows the others.
//!
//! A session's queue is a `VecDeque` behind a std mutex held for one push or pop: an idle
//! session's queue holds no allocation, and one drained after a burst gives its memory back
//! (a tokio `mpsc` channel allocates a 32-slot block and a cache-padded header up front).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tokio::sync::Notify;
use uuid::Uuid;

use super::event::{Event, Role};
use super::stats::Stats;
use super::subscription::{Channel, Subscription};

pub type SessionId = u64;

/// What the hub puts in a session's queue.
#[derive(Debug)]
pub enum Outbound {
    Event(Arc<Event>),
    /// The hub ended a subscription (membership revoked, platform role lost).
    Revoked(Channel, &'static str),
    /// A broadcast or presence message of a room the session joined (Phoenix sessions only).
    Cluster(Arc<super::cluster::ClusterMessage>),
}

/// Why the hub ends a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    Lagging,
    Shutdown,
    UserDisabled,
}

/// A queue drained to empty keeps at most this many slots; a larger one (after a burst) is freed.
const KEEP_DRAINED_SLOTS: usize = 8;

/// The hub's handle on one session, and the session's bounded queue.
pub struct SessionLink {
    pub id: SessionId,
    pub user_id: Uuid,
    capacity: usize,
    queue: Mutex<Queue>,
    ready: Notify,
    kill: OnceLock<Kill>,
    killed: Notify,
    last_pushed: AtomicI64,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// The session ended: nothing is queued any more.
    closed: bool,
}

impl SessionLink {
    pub fn new(id: SessionId, user_id: Uuid, capacity: usize) -> Arc<Self> {
        Arc::new(SessionLink {
            id,
            user_id,
            capacity: capacity.max(1),
            queue: Mutex::default(),
            ready: Notify::new(),
            kill: OnceLock::new(),
            killed: Notify::new(),
            last_pushed: AtomicI64::new(0),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next queued item, if any. A queue drained after a burst releases its memory.
    pub fn try_recv(&self) -> Option<Outbound> {
        let mut queue = self.queue();
        let item = queue.items.pop_front();
        if queue.items.is_empty() && queue.items.capacity() > KEEP_DRAINED_SLOTS {
            queue.items = VecDeque::new();
        }
        item
    }

    /// Waits for the next queued item (cancel-safe: an item is only taken when returned).
    pub async fn recv(&self) -> Outbound {
        loop {
            if let Some(item) = self.try_recv() {
                return item;
            }
            // `notify_one` leaves a permit when nobody waits: a push between the check and
            // this await is not missed.
            self.ready.notified().await;
        }
    }

    /// The session ended: drops what is queued and refuses further items.
    pub fn close(&self) {
        let items = {
            let mut queue = self.queue();
            queue.closed = true;
            std::mem::take(&mut queue.items)
        };
        drop(items);
    }

    /// Slots the queue holds allocated (tests: an idle or drained queue holds none to few).
    #[cfg(test)]
    pub(crate) fn queue_slots(&self) -> usize {
        self.queue().items.capacity()
    }

    pub fn kill(&self, why: Kill) {
        if self.kill.set(why).is_ok() {
            self.killed.notify_one();
        }
    }

    pub fn kill_reason(&self) -> Option<Kill> {
        self.kill.get().copied()
    }

    /// Resolves once the session has been killed.
    pub async fn killed(&self) -> Kill {
        loop {
            if let Some(k) = self.kill_reason() {
                return k;
            }
            self.killed.notified().await;
        }
    }

    /// Queues an item without waiting. `Err(true)`: the queue is full and the session is cut
    /// as lagging; `Err(false)`: the session has ended.
    pub(crate) fn push(&self, item: Outbound) -> Result<(), bool> {
        {
            let mut queue = self.queue();
            if queue.closed {
                return Err(false);
            }
            if queue.items.len() >= self.capacity {
                drop(queue);
                self.kill(Kill::Lagging);
                return Err(true);
            }
            queue.items.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }
}

#[derive(Clone)]
struct Entry {
    link: Arc<SessionLink>,
    sub: Arc<Subscription>,
}

#[derive(Default)]
struct Index {
    tenants: HashMap<Uuid, HashMap<SessionId, Entry>>,
    all: HashMap<SessionId, Entry>,
    sessions: HashMap<SessionId, (Arc<SessionLink>, Vec<Channel>)>,
}

impl Index {
    fn slot(&mut self, channel: Channel) -> &mut HashMap<SessionId, Entry> {
        match channel {
            Channel::Tenant(t) => self.tenants.entry(t).or_default(),
            Channel::All => &mut self.all,
        }
    }

    fn remove(&mut self, id: SessionId, channel: Channel) -> Option<Entry> {
        match channel {
            Channel::All => self.all.remove(&id),
            Channel::Tenant(t) => {
                let map = self.tenants.get_mut(&t)?;
                let gone = map.remove(&id);
                if map.is_empty() {
                    self.tenants.remove(&t);
                }
                gone
            }
        }
    }

    fn entry(&self, id: SessionId, channel: Channel) -> Option<&Entry> {
        match channel {
            Channel::All => self.all.get(&id),
            Channel::Tenant(t) => self.tenants.get(&t)?.get(&id),
        }
    }
}

#[derive(Default)]
pub struct Hub {
    index: RwLock<Index>,
    head: AtomicI64,
    emptied: Notify,
    pub stats: Stats,
}

impl Hub {
    /// The seq of the last event published: every later event reaches registered sessions.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    pub fn set_head(&self, seq: i64) {
        self.head.fetch_max(seq, Ordering::AcqRel);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session, with no subscription yet.
    pub fn register(&self, link: Arc<SessionLink>) {
        let mut index = self.write();
        index.sessions.insert(link.id, (link, Vec::new()));
        metrics::gauge!("rowcast_ws_sessions").set(index.sessions.len() as f64);
    }

    /// Adds or replaces the session's subscription on `sub.channel`; returns the head after
    /// which live events flow to it.
    pub fn subscribe(&self, id: SessionId, sub: Arc<Subscription>) -> Option<i64> {
        let mut index = self.write();
        let channel = sub.channel;
        let (link, channels) = index.sessions.get_mut(&id)?;
        let link = link.clone();
        if !channels.contains(&channel) {
            channels.push(channel);
        }
        index.slot(channel).insert(id, Entry { link, sub });
        Some(self.head())
    }

    /// Ends one subscription; returns the head at that moment.
    pub fn unsubscribe(&self, id: SessionId, channel: Channel) -> i64 {
        let mut index = self.write();
        index.remove(id, channel);
        if let Some((_, channels)) = index.sessions.get_mut(&id) {
            channels.retain(|c| *c != channel);
        }
        self.head()
    }

    /// The session's current subscriptions.
    pub fn subscriptions(&self, id: SessionId) -> Vec<Arc<Subscription>> {
        let index = self.read();
        let Some((_, channels)) = index.sessions.get(&id) else { return Vec::new() };
        channels.iter().filter_map(|c| index.entry(id, *c)).map(|e| e.sub.clone()).collect()
    }

    pub fn unregister(&self, id: SessionId) {
        let mut index = self.write();
        if let Some((_, channels)) = index.sessions.remove(&id) {
            for channel in channels {
                index.remove(id, channel);
            }
        }
        metrics::gauge!("rowcast_ws_sessions").set(index.sessions.len() as f64);
        if index.sessions.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Fans one event out. Called in seq order by the listener.
    pub fn publish(&self, event: Arc<Event>) {
        let (mut sent, mut dropped, mut gone) = (0u64, 0u64, Vec::new());
        {
            let index = self.read();
            let by_tenant = event.tenant_id.and_then(|t| index.tenants.get(&t));
            for entry in by_tenant.into_iter().flat_map(|m| m.values()).chain(index.all.values()) {
                if !entry.sub.matches(&event) || entry.link.last_pushed.swap(event.seq, Ordering::Relaxed) == event.seq {
                    continue;
                }
                match entry.link.push(Outbound::Event(event.clone())) {
                    Ok(()) => sent += 1,
                    Err(lagging) => {
                        dropped += u64::from(lagging);
                        gone.push(entry.link.id);
                    }
                }
            }
            self.head.store(event.seq, Ordering::Release);
        }
        for id in gone {
            self.unregister(id);
        }
        self.stats.published(&event, sent, dropped);
        self.apply_effects(&event);
    }

    /// Kills every session (shutdown) and waits, at most `bound`, for them to close.
    pub async fn close_all(&self, bound: std::time::Duration) {
        let waiting = self.emptied.notified();
        let links: Vec<_> = self.read().sessions.values().map(|(l, _)| l.clone()).collect();
        if links.is_empty() {
            return;
        }
        for link in links {
            link.kill(Kill::Shutdown);
        }
        let _ = tokio::time::timeout(bound, waiting).await;
    }

    /// Sessions per tenant (`*` for platform-wide subscriptions) and the total.
    pub fn census(&self) -> (usize, HashMap<String, usize>) {
        let index = self.read();
        let mut per: HashMap<String, usize> = index.tenants.iter().map(|(t, m)| (t.to_string(), m.len())).collect();
        if !index.all.is_empty() {
            per.insert("*".into(), index.all.len());
        }
        (index.sessions.len(), per)
    }

    /// Membership and user changes end what they revoke, in seq order with the events.
    fn apply_effects(&self, event: &Event) {
        match event.table.as_str() {
            "memberships" => self.membership_changed(event),
            "users" => self.user_changed(event),
            _ => {}
        }
    }

    fn membership_changed(&self, event: &Event) {
        let (Some(tenant), Some(user)) = (event.tenant_id, uuid_field(&event.row, "user_id")) else { return };
        let old_user = uuid_field(&event.old, "user_id").unwrap_or(user);
        let old_tenant = uuid_field(&event.old, "tenant_id").unwrap_or(tenant);
        let new_role = event.row.get("role").and_then(|r| r.as_str()).and_then(Role::parse);
        let change = match new_role {
            _ if event.op == "DELETE" || old_user != user || old_tenant != tenant => None,
            Some(role) if event.old.get("role").is_some() => Some(role),
            Some(_) => return,
            None => None,
        };
        let channel = Channel::Tenant(old_tenant);
        let mut index = self.write();
        let ids: Vec<SessionId> = index.sessions.values().filter(|(l, _)| l.user_id == old_user).map(|(l, _)| l.id).collect();
        for id in ids {
            // Platform admins may enter any tenant: memberships do not bound them.
            let Some(entry) = index.entry(id, channel).filter(|e| e.sub.role != Role::PlatformAdmin).cloned() else { continue };
            match change {
                None => end_subscription(&mut index, &entry, "membership_revoked"),
                Some(role) => {
                    let sub = Subscription { role, ..Subscription::clone(&entry.sub) };
                    index.slot(channel).insert(id, Entry { link: entry.link, sub: Arc::new(sub) });
                }
            }
        }
    }

    fn user_changed(&self, event: &Event) {
        let Some(user) = uuid_field(&event.row, "id") else { return };
        let disabled = event.op == "DELETE" || event.row.get("is_active").and_then(|v| v.as_bool()) == Some(false);
        let demoted =
            event.old.get("platform_role").is_some() && event.row.get("platform_role").and_then(|v| v.as_str()) != Some("platform_admin");
        if !disabled && !demoted {
            return;
        }
        let mut index = self.write();
        let affected: Vec<_> = index.sessions.values().filter(|(l, _)| l.user_id == user).map(|(l, c)| (l.clone(), c.clone())).collect();
        for (link, channels) in affected {
            if disabled {
                link.kill(Kill::UserDisabled);
                continue;
            }
            for channel in channels {
                if let Some(entry) = index.entry(link.id, channel).cloned().filter(|e| e.sub.role == Role::PlatformAdmin) {
                    end_subscription(&mut index, &entry, "platform_role_revoked");
                }
            }
        }
    }
}

fn end_subscription(index: &mut Index, entry: &Entry, reason: &'static str) {
    let (id, channel) = (entry.link.id, entry.sub.channel);
    index.remove(id, channel);
    if let Some((_, channels)) = index.sessions.get_mut(&id) {
        channels.retain(|c| *c != channel);
    }
    let _ = entry.link.push(Outbound::Revoked(channel, reason));
}

fn uuid_field(v: &serde_json::Value, key: &str) -> Option<Uuid> {
    v.get(key)?.as_str().and_then(|s| Uuid::parse_str(s).ok())
}

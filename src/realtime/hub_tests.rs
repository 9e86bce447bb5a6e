//! Unit tests of the hub: fan-out, lagging, revocation — no database, no sockets.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::event::{Event, Role};
use super::hub::{Hub, Kill, Outbound, SessionLink};
use super::subscription::{Channel, Subscription};

fn event(seq: i64, tenant: Uuid, table: &str, op: &str, row: serde_json::Value) -> Arc<Event> {
    let json = json!({"seq": seq, "tenant_id": tenant, "type": format!("{table}_x"), "table": table, "op": op,
        "row": row, "old": null, "audience": ["platform_admin", "tenant_admin", "tenant_user"], "created_at": ""});
    Arc::new(Event::decode(&json.to_string()).unwrap())
}

fn session(hub: &Hub, id: u64, user: Uuid, capacity: usize, subs: &[(Channel, Role)]) -> (Arc<SessionLink>, Arc<SessionLink>) {
    let link = SessionLink::new(id, user, capacity);
    hub.register(link.clone());
    for (channel, role) in subs {
        hub.subscribe(id, Arc::new(Subscription::whole(*channel, *role))).unwrap();
    }
    (link.clone(), link)
}

fn seqs(rx: &mut Arc<SessionLink>) -> Vec<i64> {
    std::iter::from_fn(|| rx.try_recv())
        .filter_map(|o| match o {
            Outbound::Event(e) => Some(e.seq),
            Outbound::Revoked(..) | Outbound::Cluster(_) => None,
        })
        .collect()
}

#[test]
fn a_full_queue_cuts_only_that_session() {
    let hub = Hub::default();
    let (tenant, user) = (Uuid::new_v4(), Uuid::new_v4());
    let (slow, _slow_rx) = session(&hub, 1, user, 2, &[(Channel::Tenant(tenant), Role::TenantUser)]);
    let (fast, mut fast_rx) = session(&hub, 2, user, 100, &[(Channel::Tenant(tenant), Role::TenantUser)]);
    for seq in 1..=5 {
        hub.publish(event(seq, tenant, "contacts", "INSERT", json!({})));
    }
    assert_eq!(slow.kill_reason(), Some(Kill::Lagging));
    assert_eq!(fast.kill_reason(), None);
    assert_eq!(seqs(&mut fast_rx), [1, 2, 3, 4, 5]);
    assert_eq!(hub.census().0, 1, "the lagging session left the index");
    assert_eq!(hub.head(), 5);
}

#[test]
fn other_tenants_events_never_reach_a_session_and_overlapping_subscriptions_deliver_once() {
    let hub = Hub::default();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (_l, mut rx) =
        session(&hub, 1, Uuid::new_v4(), 10, &[(Channel::Tenant(a), Role::PlatformAdmin), (Channel::All, Role::PlatformAdmin)]);
    let (_m, mut only_a) = session(&hub, 2, Uuid::new_v4(), 10, &[(Channel::Tenant(a), Role::TenantUser)]);
    hub.publish(event(1, a, "contacts", "INSERT", json!({})));
    hub.publish(event(2, b, "contacts", "INSERT", json!({})));
    assert_eq!(seqs(&mut rx), [1, 2]);
    assert_eq!(seqs(&mut only_a), [1]);
}

#[test]
fn deleting_a_membership_ends_that_tenants_subscription() {
    let hub = Hub::default();
    let (a, b, user) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (_l, mut rx) = session(&hub, 1, user, 10, &[(Channel::Tenant(a), Role::TenantUser), (Channel::Tenant(b), Role::TenantUser)]);
    hub.publish(event(1, a, "memberships", "DELETE", json!({"user_id": user, "tenant_id": a, "role": "tenant_user"})));
    let got: Vec<_> = std::iter::from_fn(|| rx.try_recv()).collect();
    assert!(matches!(got.as_slice(), [Outbound::Event(_), Outbound::Revoked(Channel::Tenant(t), "membership_revoked")] if *t == a));
    hub.publish(event(2, a, "contacts", "INSERT", json!({})));
    hub.publish(event(3, b, "contacts", "INSERT", json!({})));
    assert_eq!(seqs(&mut rx), [3]);
}

#[test]
fn an_idle_queue_holds_no_memory_and_a_drained_one_gives_it_back() {
    let hub = Hub::default();
    let tenant = Uuid::new_v4();
    let (link, mut rx) = session(&hub, 1, Uuid::new_v4(), 1024, &[(Channel::Tenant(tenant), Role::TenantUser)]);
    assert_eq!(link.queue_slots(), 0, "nothing is allocated before the first event");
    for seq in 1..=300 {
        hub.publish(event(seq, tenant, "contacts", "INSERT", json!({})));
    }
    assert!(link.queue_slots() >= 300);
    assert_eq!(seqs(&mut rx).len(), 300, "every event of the burst is delivered, in order");
    assert_eq!(link.queue_slots(), 0, "the drained queue released its burst-sized buffer");
    assert_eq!(link.kill_reason(), None);
}

#[test]
fn a_closed_queue_refuses_items_and_the_hub_drops_the_session() {
    let hub = Hub::default();
    let tenant = Uuid::new_v4();
    let (link, mut rx) = session(&hub, 1, Uuid::new_v4(), 10, &[(Channel::Tenant(tenant), Role::TenantUser)]);
    hub.publish(event(1, tenant, "contacts", "INSERT", json!({})));
    link.close();
    assert!(seqs(&mut rx).is_empty(), "closing drops what was queued");
    hub.publish(event(2, tenant, "contacts", "INSERT", json!({})));
    assert!(seqs(&mut rx).is_empty());
    assert_eq!(hub.census().0, 0, "a closed session leaves the index");
    assert_eq!(link.kill_reason(), None, "an ended session is not lagging");
}

#[tokio::test]
async fn recv_waits_for_a_push() {
    let link = SessionLink::new(1, Uuid::new_v4(), 4);
    let waiter = {
        let link = link.clone();
        tokio::spawn(async move { link.recv().await })
    };
    tokio::task::yield_now().await;
    link.push(Outbound::Revoked(Channel::All, "test")).unwrap();
    let got = waiter.await.unwrap();
    assert!(matches!(got, Outbound::Revoked(Channel::All, "test")));
}

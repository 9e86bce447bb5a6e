//! The commit path of the capture (migration V60, SPEC §3.4 "No noisy neighbour at commit"):
//! events are staged per statement, numbered and written once per transaction at commit,
//! announced by one notification per transaction — and commit order still holds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_postgres::AsyncMessage;
use uuid::Uuid;

use crate::helpers::ws::{add_contact, add_webhook, connect, setup, types};

const BULK: &str = "INSERT INTO contacts (tenant_id, phone, first_name)
                    SELECT $1, '+3361' || lpad(i::text, 8, '0'), 'Bulk' FROM generate_series(1, $2::int) i";

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect()
}

fn consecutive(seqs: &[i64]) -> bool {
    seqs.windows(2).all(|p| p[1] == p[0] + 1)
}

/// A LISTEN connection on rowcast_events, as the owner; returns the client (keep it alive)
/// and the notification payloads.
async fn listen(app: &crate::helpers::TestApp) -> (tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut connection) = app.db.owner_config().connect(tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message
                && tx.send(n.payload().to_string()).is_err()
            {
                break;
            }
        }
    });
    client.batch_execute("LISTEN rowcast_events").await.unwrap();
    (client, rx)
}

async fn next_notification(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let payload = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a notification").expect("open");
    serde_json::from_str(&payload).expect("notifications are JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_row_commit_does_not_hold_up_another_tenants_one_row_write() {
    let (app, owner, w) = setup().await;
    let big = app.db.owner().await;
    let pid: i32 = big.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    big.batch_execute("BEGIN").await.unwrap();
    big.execute(BULK, &[&w.tenant_a, &10_000i32]).await.unwrap();

    // Tenant A commits its 10,000 rows; as soon as its COMMIT is running (or already over),
    // tenant B writes one row.
    let commit = tokio::spawn(async move {
        big.batch_execute("COMMIT").await.unwrap();
        big
    });
    let probe = app.db.owner().await;
    loop {
        let committing: bool = probe
            .query_one(
                "SELECT coalesce((SELECT state = 'active' AND query = 'COMMIT' FROM pg_stat_activity WHERE pid = $1), false)",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if committing || commit.is_finished() {
            break;
        }
    }
    let started = Instant::now();
    add_contact(&owner, w.tenant_b).await;
    let waited = started.elapsed();
    eprintln!("tenant B waited {waited:?}");
    commit.await.unwrap();

    // V10 held the commit-order lock through a per-row capture of all 10,000 rows: B waited
    // ~1.4 s. Now only one INSERT … SELECT of the staged events is serialized (tens of ms);
    // the bound is generous for a loaded 2-core test machine, the benchmark measures the p99.
    assert!(waited < Duration::from_secs(1), "tenant B's one-row write waited {waited:?} behind tenant A's commit");
    let captured: i64 = owner
        .query_one("SELECT count(*) FROM app.events WHERE tenant_id = $1 AND type = 'contact_created'", &[&w.tenant_a])
        .await
        .unwrap()
        .get(0);
    assert_eq!(captured, 10_000, "every row of the big write is still captured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_notification_per_transaction_whole_batched_or_a_range_stub() {
    let (app, owner, w) = setup().await;
    let (_keep, mut notes) = listen(&app).await;

    // One event: the event itself, as before.
    let one = add_contact(&owner, w.tenant_a).await;
    let n = next_notification(&mut notes).await;
    assert_eq!(n["row"]["id"], json!(one), "{n}");
    assert_eq!(n["type"], "contact_created");

    // A few events in one transaction: one notification carrying them all, consecutive seqs.
    let hook = add_webhook(&owner, w.tenant_a).await;
    next_notification(&mut notes).await;
    owner
        .execute(
            "INSERT INTO webhook_logs (tenant_id, webhook_id, event_type, status_code) VALUES ($1, $2, 'contact_created', 200), ($1, $2, 'contact_updated', 500)",
            &[&w.tenant_a, &hook],
        )
        .await
        .unwrap();
    let n = next_notification(&mut notes).await;
    let events = n["events"].as_array().unwrap_or_else(|| panic!("a batch: {n}"));
    assert_eq!(types(events), ["webhook_log_created", "webhook_triggered", "webhook_log_created", "webhook_triggered"]);
    assert!(consecutive(&seqs(events)));
    assert_eq!(n["first"], events[0]["seq"]);
    assert_eq!(n["seq"], events[3]["seq"]);

    // Many events: one range stub, which the relay reads back.
    owner.execute(BULK, &[&w.tenant_a, &1_000i32]).await.unwrap();
    let n = next_notification(&mut notes).await;
    assert_eq!(n["big"], true, "{n}");
    assert_eq!(n["seq"].as_i64().unwrap() - n["first"].as_i64().unwrap(), 999);
    assert_eq!(n["tenant_id"], json!(w.tenant_a));
    let marker = add_contact(&owner, w.tenant_b).await;
    let n = next_notification(&mut notes).await;
    assert_eq!(n["row"]["id"], json!(marker), "exactly one notification per transaction: {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_of_many_statements_arrives_whole_contiguous_and_in_statement_order() {
    let (app, owner, w) = setup().await;
    let mut live = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut c = app.db.owner().await;

    // 1,000 rows, a savepoint rolled back (its events vanish and leave no hole), an update
    // and a delete, in one transaction.
    let tx = c.transaction().await.unwrap();
    tx.execute(BULK, &[&w.tenant_a, &1_000i32]).await.unwrap();
    tx.batch_execute("SAVEPOINT s").await.unwrap();
    tx.execute("UPDATE contacts SET first_name = 'Gone' WHERE tenant_id = $1", &[&w.tenant_a]).await.unwrap();
    tx.batch_execute("ROLLBACK TO SAVEPOINT s").await.unwrap();
    tx.execute("UPDATE contacts SET last_name = 'Kept' WHERE tenant_id = $1 AND phone = '+336100000001'", &[&w.tenant_a]).await.unwrap();
    let deleted: Uuid = tx
        .query_one("DELETE FROM contacts WHERE tenant_id = $1 AND phone = '+336100000002' RETURNING id", &[&w.tenant_a])
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();

    let mut events = Vec::new();
    while events.len() < 1_002 {
        events.push(live.next_event().await);
    }
    assert!(consecutive(&seqs(&events)), "one transaction = one contiguous seq range");
    assert!(events[..1_000].iter().all(|e| e["type"] == "contact_created"));
    assert_eq!(events[1_000]["type"], "contact_updated");
    assert_eq!(events[1_000]["payload"]["last_name"], "Kept");
    assert_eq!(events[1_000]["payload"]["first_name"], "Bulk", "the rolled-back update left no trace");
    assert_eq!(events[1_001]["type"], "contact_deleted");
    assert_eq!(events[1_001]["payload"]["id"], json!(deleted));
    let one_clock = events.iter().all(|e| e["timestamp"] == events[0]["timestamp"]);
    assert!(one_clock, "one commit-time clock per transaction");

    // Nothing else was logged for it: no event of the rolled-back savepoint.
    let gone: i64 = owner.query_one("SELECT count(*) FROM app.events WHERE \"row\" ->> 'first_name' = 'Gone'", &[]).await.unwrap().get(0);
    assert_eq!(gone, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_constraints_flush_per_statement_and_keep_commit_order() {
    let (app, owner, w) = setup().await;
    let mut live = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let (mut c1, mut c2) = (app.db.owner().await, app.db.owner().await);
    // groups, not contacts: contacts are metered (V40), and writers of one tenant's contacts
    // serialize on its usages row until commit, so two open transactions could not interleave.
    let insert = "INSERT INTO groups (tenant_id, name) VALUES ($1, $2) RETURNING id";

    // T1 flushes at its first statement (SET CONSTRAINTS ALL IMMEDIATE) and so holds the
    // commit-order lock until it commits; T2, started later, commits after T1.
    let t1 = c1.transaction().await.unwrap();
    t1.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await.unwrap();
    let a: Uuid = t1.query_one(insert, &[&w.tenant_a, &"group 1"]).await.unwrap().get(0);
    let b: Uuid = t1.query_one(insert, &[&w.tenant_a, &"group 2"]).await.unwrap().get(0);
    let t2 = tokio::spawn(async move {
        let t2 = c2.transaction().await.unwrap();
        let c: Uuid = t2.query_one(insert, &[&w.tenant_a, &"group 3"]).await.unwrap().get(0);
        t2.commit().await.unwrap();
        c
    });
    // T2's commit is waiting for the lock T1 holds.
    loop {
        let waiting: i64 = owner
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 1 AND NOT granted", &[])
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
    }
    t1.commit().await.unwrap();
    let c = t2.await.unwrap();

    let events = vec![live.next_event().await, live.next_event().await, live.next_event().await];
    let ids: Vec<Value> = events.iter().map(|e| e["payload"]["id"].clone()).collect();
    assert_eq!(ids, [json!(a), json!(b), json!(c)], "commit order");
    assert!(seqs(&events).windows(2).all(|p| p[0] < p[1]));
}

/// Migration V63 builds a one-event notification by concatenating the event's parts instead
/// of `jsonb_build_object`: it must still be exactly the stored event's JSON
/// (`app.event_json`), escapes, actor, redaction and clock included — for an insert, an
/// update with `old`, and a soft delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_event_notification_is_the_stored_events_json() {
    let (app, owner, w) = setup().await;
    let (_keep, mut notes) = listen(&app).await;
    let tricky = "Zoë \"quoted\" back\\slash\nnew line\ttab \u{1F600} </script>";
    let mut c = app.db.owner().await;

    let tx = c.transaction().await.unwrap();
    tx.execute("SELECT set_config('app.user_id', $1, true)", &[&w.user_a.to_string()]).await.unwrap();
    let id: Uuid = tx
        .query_one(
            "INSERT INTO contacts (tenant_id, phone, first_name, attributes) VALUES ($1, '+33699990001', $2, jsonb_build_object('k', $2::text)) RETURNING id",
            &[&w.tenant_a, &tricky],
        )
        .await
        .unwrap()
        .get(0);
    tx.commit().await.unwrap();
    owner.execute("UPDATE contacts SET last_name = $2 WHERE id = $1", &[&id, &tricky]).await.unwrap();
    owner.execute("UPDATE contacts SET deleted_at = now() WHERE id = $1", &[&id]).await.unwrap();

    for (kind, actor) in [("contact_created", json!(w.user_a)), ("contact_updated", Value::Null), ("contact_deleted", Value::Null)] {
        let n = next_notification(&mut notes).await;
        let stored: Value = owner
            .query_one("SELECT app.event_json(e) FROM app.events e WHERE seq = $1", &[&n["seq"].as_i64().expect("one event, whole")])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, stored, "{kind}");
        assert_eq!(n["type"], kind);
        assert_eq!(n["actor"], actor, "{kind}");
        assert_eq!(n["row"]["first_name"], tricky);
    }
}

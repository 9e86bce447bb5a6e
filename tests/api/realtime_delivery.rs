//! Realtime delivery guarantees: commit order, resume without loss or duplicate, the relay
//! surviving `pg_terminate_backend`, large rows, retention, several servers on one database.

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::base_env;
use crate::helpers::ws::{WsClient, add_contact, add_contact_with, connect, setup, ws_url};

fn ids(events: &[Value]) -> Vec<Uuid> {
    events.iter().map(|e| serde_json::from_value(e["payload"]["id"].clone()).expect("row id")).collect()
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect()
}

fn strictly_increasing(seqs: &[i64]) -> bool {
    seqs.windows(2).all(|p| p[0] < p[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_transactions_arrive_in_commit_order_and_a_resume_misses_neither() {
    let (app, owner, w) = setup().await;
    let mut live = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let before = live.head();
    let (mut c1, mut c2) = (app.db.owner().await, app.db.owner().await);
    // groups, not contacts: contacts are metered (V40), and writers of one tenant's contacts
    // serialize on its usages row until commit, so two open transactions could not interleave.
    let insert = "INSERT INTO groups (tenant_id, name) VALUES ($1, $2) RETURNING id";

    let t1 = c1.transaction().await.unwrap();
    let first: Uuid = t1.query_one(insert, &[&w.tenant_a, &"group 1"]).await.unwrap().get(0);
    let t2 = c2.transaction().await.unwrap();
    let second: Uuid = t2.query_one(insert, &[&w.tenant_a, &"group 2"]).await.unwrap().get(0);
    t2.commit().await.unwrap();

    let e2 = live.next_event().await;
    assert_eq!(e2["payload"]["id"], json!(second), "the first to commit is delivered first");
    // A client that saw the second transaction's commit, before the first commits.
    let between = connect(&app, w.user_a, Some(w.tenant_a)).await.head();
    assert!(between >= e2["seq"].as_i64().unwrap());
    t1.commit().await.unwrap();
    let e1 = live.next_event().await;
    assert_eq!(e1["payload"]["id"], json!(first));
    assert!(e1["seq"].as_i64() > e2["seq"].as_i64(), "seq is commit order, not start order");

    let mut from_before = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let ack = from_before.subscribe(json!({"channel": format!("tenant:{}", w.tenant_a), "since": before})).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    let marker = add_contact(&owner, w.tenant_a).await;
    assert_eq!(ids(&from_before.events_until(marker).await), [second, first, marker]);

    let mut from_between = connect(&app, w.user_a, Some(w.tenant_a)).await;
    from_between.subscribe(json!({"channel": format!("tenant:{}", w.tenant_a), "since": between})).await;
    let next = from_between.next_event().await;
    assert_eq!(next["payload"]["id"], json!(first), "a cursor taken between the commits still gets the later commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_client_reconnect_loses_nothing_and_duplicates_nothing() {
    let (app, owner, w) = setup().await;
    let mut client = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(add_contact(&owner, w.tenant_a).await);
    }
    let seen = client.events_until(written[2]).await;
    let cursor = *seqs(&seen).last().unwrap();
    client.ws.close(None).await.unwrap();
    drop(client);

    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(add_contact(&owner, w.tenant_a).await);
    }
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let url = format!("{}&since={cursor}", ws_url(app.port, &token, Some(w.tenant_a)));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut resumed = WsClient::wrap(ws).await;
    let later = add_contact(&owner, w.tenant_a).await;
    let events = resumed.events_until(later).await;
    let mut expected = missed.clone();
    expected.push(later);
    assert_eq!(ids(&events), expected, "exactly the missed events, then live");
    assert!(strictly_increasing(&seqs(&events)));
    assert!(seqs(&events)[0] > cursor);

    // Re-subscribing the same channel from the same cursor on a live session replays only
    // what the live subscription had not delivered already.
    let ack = resumed.subscribe(json!({"channel": format!("tenant:{}", w.tenant_a), "since": cursor})).await;
    assert_eq!(ack["type"], "subscribed");
    let marker = add_contact(&owner, w.tenant_a).await;
    assert_eq!(ids(&resumed.events_until(marker).await), [marker]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_while_writes_continue_every_session_gets_every_event_once_in_order() {
    let (app, owner, w) = setup().await;
    let mut user = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut admin = connect(&app, w.admin_a, Some(w.tenant_a)).await;
    let kill = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'rowcast-listener'";
    let (mut written, mut got_user, mut got_admin) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..60 {
        if i == 20 || i == 40 {
            if i == 40 {
                // Both sessions have everything so far: the relay is back (and seen to be).
                got_user.extend(user.events_until(written[39]).await);
                got_admin.extend(admin.events_until(written[39]).await);
            }
            let killed: i64 = owner.query_one(kill, &[]).await.unwrap().get(0);
            assert_eq!(killed, 1, "exactly one relay connection per server");
        }
        written.push(add_contact(&owner, w.tenant_a).await);
    }
    let last = *written.last().unwrap();
    got_user.extend(user.events_until(last).await);
    got_admin.extend(admin.events_until(last).await);
    for events in [got_user, got_admin] {
        assert_eq!(ids(&events), written, "every event once, in order");
        assert!(strictly_increasing(&seqs(&events)));
    }
    let (up, status) = app.state.realtime.listener_status();
    assert!(status["reconnects"].as_u64().unwrap() >= 2, "{status}");
    assert!(up, "reconnected and reported up: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kb_row_commits_and_is_delivered_whole() {
    let (app, owner, w) = setup().await;
    let mut client = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let blob = "x".repeat(100 * 1024);
    let big = add_contact_with(&owner, w.tenant_a, &json!({"blob": blob}).to_string()).await;
    let event = client.next_event().await;
    assert_eq!(event["payload"]["id"], json!(big));
    assert_eq!(event["payload"]["attributes"]["blob"].as_str().unwrap().len(), 100 * 1024);
    // The same through a replay.
    let mut replayed = connect(&app, w.user_a, Some(w.tenant_a)).await;
    replayed.subscribe(json!({"channel": format!("tenant:{}", w.tenant_a), "since": event["seq"].as_i64().unwrap() - 1})).await;
    assert_eq!(replayed.next_event().await, event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_retention_gets_resync_required() {
    let (app, owner, w) = setup().await;
    let mut client = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let old = add_contact(&owner, w.tenant_a).await;
    let old_seq = client.events_until(old).await[0]["seq"].as_i64().unwrap();
    // What the retention task runs, with a zero retention: everything goes.
    let pruned = rowcast::realtime::retention::prune(&app.state.db, std::time::Duration::ZERO).await.unwrap();
    assert!(pruned >= 1);
    let left: i64 = owner.query_one("SELECT count(*) FROM app.events", &[]).await.unwrap().get(0);
    assert_eq!(left, 0);
    let channel = format!("tenant:{}", w.tenant_a);
    client.send_json(json!({"type": "subscribe", "payload": {"channel": channel, "since": old_seq - 1}})).await;
    assert_eq!(client.next_frame().await["type"], "subscribed");
    assert_eq!(client.next_frame().await["type"], "resync_required");
    // The twin: a cursor at the watermark resumes normally.
    let ack = client.subscribe(json!({"channel": channel, "since": old_seq})).await;
    assert_eq!(ack["type"], "subscribed");
    let marker = add_contact(&owner, w.tenant_a).await;
    assert_eq!(ids(&client.events_until(marker).await), [marker]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_both_deliver_to_their_own_sessions() {
    let (app, owner, w) = setup().await;
    let settings = Settings::from_env(&Env::from_pairs(base_env(&app.db))).unwrap();
    let second = Application::build(settings).await.expect("a second server");
    let (port, stop) = (second.port(), second.shutdown_token());
    tokio::spawn(second.run_until_stopped());

    let mut on_first = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut on_second = crate::helpers::ws::connect_port(port, &app.token_for(w.user_a, Some(w.tenant_a)), Some(w.tenant_a)).await;
    let mut written = Vec::new();
    for _ in 0..5 {
        written.push(add_contact(&owner, w.tenant_a).await);
    }
    let last = *written.last().unwrap();
    assert_eq!(ids(&on_first.events_until(last).await), written);
    assert_eq!(ids(&on_second.events_until(last).await), written);
    stop.cancel();
}

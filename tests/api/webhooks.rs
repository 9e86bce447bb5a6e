//! Webhook delivery over real sockets: a receiver on 127.0.0.1 inside the test, the real
//! server (or two) on one database, signatures checked by the `standardwebhooks` npm package.
//! Signals are awaited, never slept on: receiver hits arrive on a channel, attempt logs as
//! `webhook_triggered` events on a tenant admin's WebSocket.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_postgres::Client;
use uuid::Uuid;
use warp::Filter;

use crate::helpers::ws::{WAIT, WsClient, add_contact, connect};
use crate::helpers::{TestApp, TestDb, World, base_env};

/// What the receiver answers, in order; 200 once the script is exhausted.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    Hang(Duration),
}

#[derive(Clone, Debug)]
struct Hit {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    at: Instant,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

struct Receiver {
    url: String,
    hits: mpsc::UnboundedReceiver<Hit>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Receiver {
    async fn start(script: Vec<Reply>) -> Receiver {
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (tx, hits) = mpsc::unbounded_channel();
        let route = warp::post().and(warp::header::headers_cloned()).and(warp::body::bytes()).then(
            move |headers: warp::http::HeaderMap, body: bytes::Bytes| {
                let (script, tx) = (script.clone(), tx.clone());
                async move {
                    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let hit = Hit {
                        id: header("webhook-id"),
                        timestamp: header("webhook-timestamp"),
                        signature: header("webhook-signature"),
                        body: String::from_utf8_lossy(&body).into_owned(),
                        at: Instant::now(),
                    };
                    let _ = tx.send(hit);
                    let reply = script.lock().unwrap().pop_front();
                    let (status, retry_after) = match reply {
                        Some(Reply::Status(s)) => (s, None),
                        Some(Reply::RetryAfter(s, v)) => (s, Some(v)),
                        Some(Reply::Hang(d)) => {
                            tokio::time::sleep(d).await;
                            (200, None)
                        }
                        None => (200, None),
                    };
                    let mut response = warp::http::Response::builder().status(status);
                    if let Some(v) = retry_after {
                        response = response.header("retry-after", v);
                    }
                    response.body(format!("answer {status}")).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let server = tokio::spawn(warp::serve(route).incoming(listener).run());
        Receiver { url, hits, server }
    }

    async fn next(&mut self) -> Hit {
        tokio::time::timeout(WAIT, self.hits.recv()).await.expect("timed out waiting for a delivery").expect("receiver open")
    }
}

/// A Standard Webhooks secret the test knows.
fn secret() -> String {
    let bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn add_hook(owner: &Client, tenant: Uuid, url: &str, secret: &str) -> Uuid {
    owner
        .query_one(
            "INSERT INTO webhooks (tenant_id, name, url, secret) VALUES ($1, 'hook', $2, $3) RETURNING id",
            &[&tenant, &url, &secret],
        )
        .await
        .expect("insert a webhook")
        .get(0)
}

/// `n` contacts of `tenant` in one statement (one commit, n events), phones `<prefix><first + i>`.
async fn add_contacts(owner: &Client, tenant: Uuid, prefix: &str, first: i32, n: i32) {
    owner
        .execute(
            "INSERT INTO contacts (tenant_id, phone) SELECT $1, $2 || lpad(($3 + i)::text, 6, '0') FROM generate_series(1, $4) i",
            &[&tenant, &prefix, &first, &n],
        )
        .await
        .expect("insert contacts");
}

/// Fast retries for tests (the default schedule starts at 5 s).
async fn schedule(owner: &Client, steps: &str, disable_after: i32) {
    owner
        .execute(
            "UPDATE app.webhook_settings SET retry_schedule = $1::text::interval[], jitter = 0, disable_after = $2",
            &[&steps, &disable_after],
        )
        .await
        .unwrap();
}

/// The server on an existing database, with `vars` on top of the test defaults.
async fn serve(db: &TestDb, vars: &[(&str, &str)]) -> TestApp {
    let mut env = base_env(db);
    for (k, v) in vars {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    let settings = Settings::from_env(&Env::from_pairs(env)).expect("valid test settings");
    let app = Application::build(settings).await.expect("build the application");
    let port = app.port();
    let (shutdown, state) = (app.shutdown_token(), app.state());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db: TestDb { name: db.name.clone() },
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        shutdown,
        state,
    }
}

const PRIVATE_OK: &[(&str, &str)] = &[("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "true")];

struct Setup {
    app: TestApp,
    owner: Client,
    world: World,
    admin_ws: WsClient,
}

async fn setup(vars: &[(&str, &str)]) -> Setup {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let app = serve(&db, vars).await;
    let admin_ws = connect(&app, world.admin_a, Some(world.tenant_a)).await;
    Setup { app, owner, world, admin_ws }
}

/// The next attempt log (`webhook_triggered` payload) seen by tenant A's admin.
async fn next_log(ws: &mut WsClient) -> Value {
    loop {
        let event = ws.next_event().await;
        if event["type"] == "webhook_triggered" {
            return event["payload"].clone();
        }
    }
}

async fn rpc(app: &TestApp, token: &str, tenant: Uuid, name: &str, args: Value) -> (u16, Value) {
    let resp = app
        .http
        .post(app.url(&format!("/rest/rpc/{name}")))
        .bearer_auth(token)
        .header("x-tenant-id", tenant.to_string())
        .json(&args)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn deliveries_are_signed_per_standard_webhooks_and_both_secrets_sign_after_rotation() {
    let mut s = setup(PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![]).await;
    let old = secret();
    let hook = add_hook(&s.owner, s.world.tenant_a, &rx.url, &old).await;
    let contact = add_contact(&s.owner, s.world.tenant_a).await;
    let first = rx.next().await;
    let body = first.json();
    assert_eq!(body["type"], "contact_created");
    assert_eq!(body["table"], "contacts");
    assert_eq!(body["tenantId"], json!(s.world.tenant_a));
    assert_eq!(body["payload"]["id"], json!(contact));
    assert!(body["seq"].as_i64().is_some() && body["timestamp"].is_string() && body.get("old").is_some(), "{body}");
    assert!(first.id.starts_with("msg_") && first.signature.starts_with("v1,") && !first.signature.contains(' '), "{first:?}");
    assert!(!first.body.contains(&old[6..]), "the secret never travels");

    let admin = s.app.token_for(s.world.admin_a, Some(s.world.tenant_a));
    let (status, new) = rpc(&s.app, &admin, s.world.tenant_a, "webhook_regenerate_secret", json!({"p_webhook_id": hook})).await;
    assert_eq!(status, 200, "{new}");
    let new = new.as_str().expect("the new secret").to_string();
    assert!(new.starts_with("whsec_"));
    add_contact(&s.owner, s.world.tenant_a).await;
    let second = rx.next().await;
    assert_eq!(second.signature.split(' ').count(), 2, "new and previous secret both sign: {second:?}");
    next_log(&mut s.admin_ws).await;

    let headers = |h: &Hit| json!({"webhook-id": h.id, "webhook-timestamp": h.timestamp, "webhook-signature": h.signature});
    let cases = json!([
        {"name": "first delivery, original secret", "secret": old, "body": first.body, "headers": headers(&first), "valid": true},
        {"name": "after rotation, new secret", "secret": new, "body": second.body, "headers": headers(&second), "valid": true},
        {"name": "after rotation, previous secret", "secret": old, "body": second.body, "headers": headers(&second), "valid": true},
        {"name": "first delivery, new secret", "secret": new, "body": first.body, "headers": headers(&first), "valid": false},
        {"name": "tampered body", "secret": old, "body": first.body.replace("contact_created", "contact_deleted"), "headers": headers(&first), "valid": false},
    ]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), cases.to_string()).unwrap();
    crate::node::run_node_tests("webhooks_verify.test.mjs", &[("ROWCAST_WEBHOOK_CASES", file.path().display().to_string())]).await;

    // The secrets are nowhere rowcast_app can read them.
    let mut app_client = s.app.db.app().await;
    let leaked =
        crate::helpers::as_user(&mut app_client, s.world.admin_a, Some(s.world.tenant_a), "SELECT secret FROM webhooks", &[]).await;
    assert_eq!(crate::helpers::sqlstate(&leaked.unwrap_err()), "42501");
    let previous = app_client.query("SELECT secret FROM app.webhook_previous_secrets", &[]).await;
    assert_eq!(crate::helpers::sqlstate(&previous.unwrap_err()), "42501");
    let logged: i64 = s
        .owner
        .query_one(
            "SELECT count(*) FROM webhook_logs WHERE response_body LIKE '%' || $1 || '%' OR error LIKE '%' || $1 || '%'",
            &[&&old[6..20]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 0);
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_webhook_id() {
    let mut s = setup(PRIVATE_OK).await;
    schedule(&s.owner, "{100 ms,100 ms}", 5).await;
    let mut rx = Receiver::start(vec![Reply::Status(500)]).await;
    add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    let (first, second) = (rx.next().await, rx.next().await);
    assert_eq!(first.id, second.id, "webhook-id is stable across retries");
    assert_eq!(first.body, second.body);
    let (log1, log2) = (next_log(&mut s.admin_ws).await, next_log(&mut s.admin_ws).await);
    assert_eq!((log1["attempt"].clone(), log1["status_code"].clone()), (json!(1), json!(500)), "{log1}");
    assert_eq!((log2["attempt"].clone(), log2["status_code"].clone(), log2["succeeded"].clone()), (json!(2), json!(200), json!(true)));
    assert_eq!(log1["delivery_id"], log2["delivery_id"]);
    assert_eq!(log1["response_body"], "answer 500", "the first 1 KiB of the answer is kept");
}

#[tokio::test]
async fn retry_after_one_second_brings_the_retry_within_about_a_second() {
    let mut s = setup(PRIVATE_OK).await;
    schedule(&s.owner, "{1 hour}", 5).await;
    let mut rx = Receiver::start(vec![Reply::RetryAfter(429, "1")]).await;
    add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    let (first, second) = (rx.next().await, rx.next().await);
    let gap = second.at - first.at;
    assert!(gap >= Duration::from_millis(900) && gap < Duration::from_secs(4), "retried after {gap:?} (schedule says 1 h)");
    assert_eq!(next_log(&mut s.admin_ws).await["status_code"], 429);
}

#[tokio::test]
async fn a_timeout_is_logged_and_retried() {
    let mut s = setup(&[("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "true"), ("ROWCAST_WEBHOOK_TIMEOUT_MS", "300")]).await;
    schedule(&s.owner, "{100 ms}", 5).await;
    let mut rx = Receiver::start(vec![Reply::Hang(Duration::from_secs(5))]).await;
    add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    let (first, second) = (rx.next().await, rx.next().await);
    assert_eq!(first.id, second.id);
    let log = next_log(&mut s.admin_ws).await;
    assert!(log["status_code"].is_null() && log["error"].as_str().unwrap_or_default().contains("timeout"), "{log}");
    assert!(log["duration_ms"].as_i64().is_some_and(|d| (250..2000).contains(&d)), "{log}");
    assert_eq!(next_log(&mut s.admin_ws).await["status_code"], 200);
}

#[tokio::test]
async fn a_receiver_that_is_down_fails_after_the_last_attempt_and_the_webhook_is_disabled() {
    let mut s = setup(PRIVATE_OK).await;
    schedule(&s.owner, "{100 ms,100 ms}", 1).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port())
    };
    let hook = add_hook(&s.owner, s.world.tenant_a, &dead, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    for attempt in 1..=3 {
        let log = next_log(&mut s.admin_ws).await;
        assert_eq!(log["attempt"], attempt);
        assert!(log["error"].as_str().unwrap_or_default().contains("connection failed"), "{log}");
    }
    // The disable is an event too: webhook_updated with is_active false and the reason.
    let disabled = loop {
        let e = s.admin_ws.next_event().await;
        if e["type"] == "webhook_updated" {
            break e;
        }
    };
    assert_eq!(disabled["payload"]["is_active"], false);
    assert!(disabled["payload"]["disabled_reason"].as_str().unwrap_or_default().contains("1 consecutive failed"), "{disabled}");
    let row = s.owner.query_one("SELECT status, attempts FROM app.webhook_deliveries WHERE webhook_id = $1", &[&hook]).await.unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1)), ("failed".into(), 3));
}

#[tokio::test]
async fn two_servers_on_one_database_send_each_attempt_once() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let one = serve(&db, PRIVATE_OK).await;
    let two = serve(&db, PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![]).await;
    let hook = add_hook(&owner, world.tenant_a, &rx.url, &secret()).await;
    owner.execute("UPDATE webhooks SET parallel = true WHERE id = $1", &[&hook]).await.unwrap();
    const N: usize = 40;
    add_contacts(&owner, world.tenant_a, "+3399", 0, N as i32).await;
    let mut ids = HashSet::new();
    for _ in 0..N {
        assert!(ids.insert(rx.next().await.id), "an attempt was sent twice");
    }
    let mut ws = connect(&one, world.admin_a, Some(world.tenant_a)).await;
    let mut logged = 0;
    // Every attempt logs once; both servers worked (claimed_by), none sent anything twice.
    while logged < N {
        let count: i64 = owner.query_one("SELECT count(*) FROM webhook_logs WHERE webhook_id = $1", &[&hook]).await.unwrap().get(0);
        logged = usize::try_from(count).unwrap();
        if logged < N {
            next_log(&mut ws).await;
        }
    }
    let row = owner
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'succeeded' AND attempts = 1), count(DISTINCT claimed_by) FROM app.webhook_deliveries WHERE webhook_id = $1",
            &[&hook],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), N as i64);
    eprintln!("instances that delivered: {}", row.get::<_, i64>(1));
    assert_eq!(logged, N, "one log per attempt");
    assert!(rx.hits.try_recv().is_err(), "no duplicate delivery");
    drop((one, two));
}

#[tokio::test]
async fn a_server_killed_mid_delivery_is_taken_over_after_its_lease_and_nothing_is_lost() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    owner.execute("UPDATE app.webhook_settings SET lease = '1 second'", &[]).await.unwrap();
    let first_server = serve(&db, PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![Reply::Hang(Duration::from_secs(60))]).await;
    add_hook(&owner, world.tenant_a, &rx.url, &secret()).await;
    let a = add_contact(&owner, world.tenant_a).await;
    let held = rx.next().await;
    assert_eq!(held.json()["payload"]["id"], json!(a));
    drop(first_server); // mid-delivery: its attempt is abandoned, never recorded
    let b = add_contact(&owner, world.tenant_a).await;
    let second_server = serve(&db, PRIVATE_OK).await;
    let again = rx.next().await;
    assert_eq!(again.id, held.id, "the same message, redelivered by the other instance");
    let next = rx.next().await;
    assert_eq!(next.json()["payload"]["id"], json!(b), "the next event follows, in seq order");
    let row = owner
        .query_one(
            "SELECT attempts, status FROM app.webhook_deliveries WHERE event_seq = $1::text::bigint",
            &[&again.json()["seq"].to_string()],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, String>(1)), (2, "succeeded".into()));
    drop(second_server);
}

async fn two_tenants_two_hooks() -> (Setup, Receiver, Receiver, Uuid, Uuid) {
    let s = setup(PRIVATE_OK).await;
    let rx_a = Receiver::start(vec![]).await;
    let rx_b = Receiver::start(vec![]).await;
    add_hook(&s.owner, s.world.tenant_a, &rx_a.url, &secret()).await;
    add_hook(&s.owner, s.world.tenant_b, &rx_b.url, &secret()).await;
    let a = add_contact(&s.owner, s.world.tenant_a).await;
    let b = add_contact(&s.owner, s.world.tenant_b).await;
    (s, rx_a, rx_b, a, b)
}

#[tokio::test]
async fn a_webhook_receives_the_events_of_its_tenant() {
    let (s, mut rx_a, mut rx_b, a, b) = two_tenants_two_hooks().await;
    assert_eq!(rx_a.next().await.json()["payload"]["id"], json!(a));
    assert_eq!(rx_b.next().await.json()["payload"]["id"], json!(b));
    drop(s);
}

#[tokio::test]
async fn a_webhook_never_receives_another_tenants_events() {
    let (s, mut rx_a, mut rx_b, a, b) = two_tenants_two_hooks().await;
    // B's event was committed after A's and deliveries are fed in seq order: once B's
    // receiver has B's event, A's event has been fed too — to A's webhook only.
    let hit = rx_b.next().await.json();
    assert_eq!(hit["payload"]["id"], json!(b));
    assert_eq!(hit["tenantId"], json!(s.world.tenant_b));
    assert_eq!(rx_a.next().await.json()["payload"]["id"], json!(a));
    let leaked: i64 = s
        .owner
        .query_one(
            "SELECT count(*) FROM app.webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id WHERE w.tenant_id <> d.tenant_id OR d.body LIKE '%' || $1 || '%' AND d.tenant_id = $2",
            &[&a.to_string(), &s.world.tenant_b],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
    assert!(rx_b.hits.try_recv().is_err(), "B received only its own event");
}

#[tokio::test]
async fn a_tenant_admin_reads_logs_pings_retries_and_sees_stats() {
    let mut s = setup(PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![Reply::Status(410)]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    let gone = rx.next().await;
    let log = next_log(&mut s.admin_ws).await;
    assert_eq!(log["status_code"], 410, "a 4xx other than 429 is not retried");
    let admin = s.app.token_for(s.world.admin_a, Some(s.world.tenant_a));
    let logs = s.app.get_json("/rest/webhook_logs?select=attempt,status_code,delivery_id", &admin, 200).await;
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{logs}");
    let delivery = logs[0]["delivery_id"].clone();

    let (status, body) = rpc(&s.app, &admin, s.world.tenant_a, "webhook_retry", json!({"delivery": delivery})).await;
    assert_eq!(status, 200, "{body}");
    let retried = rx.next().await;
    assert_eq!(retried.id, gone.id, "a manual retry resends the same message");
    assert_eq!(next_log(&mut s.admin_ws).await["attempt"], 2);

    let (status, body) = rpc(&s.app, &admin, s.world.tenant_a, "webhook_ping", json!({"webhook": hook})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rx.next().await.json()["type"], "webhook_ping");
    next_log(&mut s.admin_ws).await;

    let metrics = s.app.http.get(s.app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in
        ["rowcast_webhook_deliveries_total{outcome=\"failed\"}", "rowcast_webhook_attempt_duration_seconds", "rowcast_webhook_queue_depth"]
    {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
    let (status, stats) = rpc(&s.app, &admin, s.world.tenant_a, "webhook_stats", json!({})).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats[0]["webhook_id"], json!(hook), "{stats}");
    assert_eq!(stats[0]["succeeded_24h"], 2, "{stats}");
}

#[tokio::test]
async fn a_tenant_user_can_neither_read_logs_nor_retry_nor_see_stats() {
    let mut s = setup(PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![Reply::Status(410)]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    rx.next().await;
    let log = next_log(&mut s.admin_ws).await;
    let user = s.app.token_for(s.world.user_a, Some(s.world.tenant_a));
    let logs = s.app.get_json("/rest/webhook_logs?select=id", &user, 200).await;
    assert_eq!(logs, json!([]), "no log row for a tenant user");
    let (status, body) = rpc(&s.app, &user, s.world.tenant_a, "webhook_retry", json!({"delivery": log["delivery_id"]})).await;
    assert_eq!((status, body["code"].clone()), (403, json!("42501")), "{body}");
    let (status, _) = rpc(&s.app, &user, s.world.tenant_a, "webhook_ping", json!({"webhook": hook})).await;
    assert_eq!(status, 403);
    let (status, _) = rpc(&s.app, &user, s.world.tenant_a, "webhook_stats", json!({})).await;
    assert_eq!(status, 403);
    // An admin of another tenant cannot retry it either (not found, as if absent).
    let other = s.app.token_for(s.world.admin_b, Some(s.world.tenant_b));
    let (status, body) = rpc(&s.app, &other, s.world.tenant_b, "webhook_retry", json!({"delivery": log["delivery_id"]})).await;
    assert_eq!((status, body["code"].clone()), (400, json!("22023")), "{body}");
    assert!(rx.hits.try_recv().is_err(), "nothing was resent");
}

#[tokio::test]
async fn a_private_address_is_refused_without_the_flag() {
    let mut s = setup(&[]).await;
    let mut rx = Receiver::start(vec![]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    let log = next_log(&mut s.admin_ws).await;
    let error = log["error"].as_str().unwrap_or_default();
    assert!(error.contains("refused: 127.0.0.1 is a loopback address") && error.contains("ROWCAST_WEBHOOK_ALLOW_PRIVATE"), "{log}");
    let status: String =
        s.owner.query_one("SELECT status FROM app.webhook_deliveries WHERE webhook_id = $1", &[&hook]).await.unwrap().get(0);
    assert_eq!(status, "failed", "a refusal is not retried");
    assert!(rx.hits.try_recv().is_err(), "no request reached the receiver");
}

#[tokio::test]
async fn a_private_address_is_reached_with_the_flag() {
    let mut s = setup(PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![]).await;
    add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    rx.next().await;
    assert_eq!(next_log(&mut s.admin_ws).await["status_code"], 200);
}

#[tokio::test]
async fn a_client_secret_must_have_the_standard_webhooks_form() {
    let s = setup(PRIVATE_OK).await;
    let admin = s.app.token_for(s.world.admin_a, Some(s.world.tenant_a));
    let resp = s
        .app
        .http
        .post(s.app.url("/rest/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"name": "h", "url": "https://example.com/h", "secret": "x".repeat(40)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a check violation: 400, as PostgREST answers 23514");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "23514", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("whsec_"), "{body}");
    let generated: String = s.owner.query_one("SELECT app.new_webhook_secret()", &[]).await.unwrap().get(0);
    let key = base64::engine::general_purpose::STANDARD.decode(&generated[6..]).expect("base64 after whsec_");
    assert_eq!(key.len(), 32);
}

#[tokio::test]
async fn a_hanging_receiver_holds_only_its_tenants_slots_and_never_delays_another_tenant() {
    let s = setup(&[
        ("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("ROWCAST_WEBHOOK_CONCURRENCY", "4"),
        ("ROWCAST_WEBHOOK_TENANT_CONCURRENCY", "2"),
        ("ROWCAST_WEBHOOK_TIMEOUT_MS", "30000"),
    ])
    .await;
    let mut hung = Receiver::start(vec![Reply::Hang(Duration::from_secs(60)); 10]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &hung.url, &secret()).await;
    s.owner.execute("UPDATE webhooks SET parallel = true WHERE id = $1", &[&hook]).await.unwrap();
    add_contacts(&s.owner, s.world.tenant_a, "+3398", 0, 10).await;
    hung.next().await;
    hung.next().await;
    let mut rx_b = Receiver::start(vec![]).await;
    add_hook(&s.owner, s.world.tenant_b, &rx_b.url, &secret()).await;
    let started = Instant::now();
    let b = add_contact(&s.owner, s.world.tenant_b).await;
    assert_eq!(rx_b.next().await.json()["payload"]["id"], json!(b));
    assert!(started.elapsed() < Duration::from_secs(5), "tenant B waited {:?} behind A's hanging receiver", started.elapsed());
    assert!(hung.hits.try_recv().is_err(), "tenant A never had more than its 2 slots in flight");
}

#[tokio::test]
async fn shutdown_ends_the_delivery_tasks_and_their_connections() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let app = serve(&db, &[]).await;
    // The database is the only place to watch them (they connect on their own).
    let count = || async {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'rowcast-webhooks%'";
        owner.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    };
    let deadline = Instant::now() + WAIT;
    while count().await < 2 {
        assert!(Instant::now() < deadline, "the dispatcher and its listener connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(app);
    while count().await > 0 {
        assert!(Instant::now() < deadline, "delivery connections remain after shutdown: {}", count().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tenant_admin_reads_the_delivery_logs_but_can_neither_forge_nor_change_nor_erase_them() {
    let mut s = setup(PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![Reply::Status(200)]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &rx.url, &secret()).await;
    add_contact(&s.owner, s.world.tenant_a).await;
    rx.next().await;
    let log = next_log(&mut s.admin_ws).await;
    let admin = s.app.token_for(s.world.admin_a, Some(s.world.tenant_a));
    let logs = s.app.get_json("/rest/webhook_logs?select=id,status_code", &admin, 200).await;
    assert_eq!(logs, json!([{"id": log["id"], "status_code": 200}]), "the admin reads the attempt");

    let send = |method: reqwest::Method, path: String, body: Value| {
        s.app
            .http
            .request(method, s.app.url(&path))
            .bearer_auth(&admin)
            .header("x-tenant-id", s.world.tenant_a.to_string())
            .json(&body)
            .send()
    };
    let forged = json!({"webhook_id": hook, "event_type": "contact_created", "status_code": 200});
    let by_id = format!("/rest/webhook_logs?id=eq.{}", log["id"].as_str().unwrap());
    for (what, resp) in [
        ("forge", send(reqwest::Method::POST, "/rest/webhook_logs".into(), forged).await.unwrap()),
        ("change", send(reqwest::Method::PATCH, by_id.clone(), json!({"status_code": 500})).await.unwrap()),
        ("erase", send(reqwest::Method::DELETE, by_id.clone(), Value::Null).await.unwrap()),
    ] {
        let status = resp.status().as_u16();
        assert!(matches!(status, 403 | 405), "{what}: {status} {}", resp.text().await.unwrap_or_default());
    }
    let still: (i64, i32) = {
        let row = s.owner.query_one("SELECT count(*), max(status_code) FROM webhook_logs WHERE webhook_id = $1", &[&hook]).await.unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(still, (1, 200), "the log is exactly what the delivery wrote");
}

/// `app.webhook_record_batch` for one worker: (delivery, attempt, status) each, 2xx or a retryable 500.
async fn record_batch(owner: &Client, worker: Uuid, attempts: &[(Uuid, i32, i32)]) -> Vec<String> {
    let ids: Vec<Uuid> = attempts.iter().map(|a| a.0).collect();
    let numbers: Vec<i32> = attempts.iter().map(|a| a.1).collect();
    let status: Vec<Option<i32>> = attempts.iter().map(|a| Some(a.2)).collect();
    let n = attempts.len();
    owner
        .query(
            "SELECT result FROM app.webhook_record_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &worker,
                &ids,
                &numbers,
                &status,
                &vec![3i32; n],
                &vec![None::<String>; n],
                &vec!["ok".to_string(); n],
                &vec![true; n],
                &vec![None::<f64>; n],
            ],
        )
        .await
        .expect("record a batch")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// (run, delivery, webhook, attempt) of what `worker` claims (runs of up to 32, 8 slots per tenant).
async fn claim_runs(owner: &Client, worker: Uuid) -> Vec<(i32, Uuid, Uuid, i32)> {
    owner
        .query("SELECT run, delivery_id, webhook_id, attempt, signature FROM app.webhook_claim_runs($1, 8, 8, '{}', '{}', 32)", &[&worker])
        .await
        .expect("claim runs")
        .iter()
        .inspect(|r| assert!(r.get::<_, String>(4).starts_with("v1,"), "signed"))
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn an_ordered_backlog_is_claimed_as_one_run_in_seq_order_and_its_unsent_tail_is_given_back() {
    // The SQL alone (no server runs here, so nobody else claims).
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    schedule(&owner, "{1 hour}", 5).await;
    let hook = add_hook(&owner, world.tenant_a, "https://hooks.test/a", &secret()).await;
    let other = add_hook(&owner, world.tenant_b, "https://hooks.test/b", &secret()).await;
    owner.execute("UPDATE webhooks SET events = '{contact_created}'", &[]).await.unwrap();
    add_contacts(&owner, world.tenant_a, "+3397", 0, 5).await;
    add_contact(&owner, world.tenant_b).await;
    assert_eq!(owner.query_one("SELECT app.webhook_feed(1000)", &[]).await.unwrap().get::<_, i32>(0), 6);
    let in_seq_order: Vec<Uuid> = owner
        .query("SELECT id FROM app.webhook_deliveries WHERE webhook_id = $1 ORDER BY event_seq", &[&hook])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let claimed = claim_runs(&owner, one).await;
    let run_a: Vec<_> = claimed.iter().filter(|c| c.2 == hook).collect();
    let run_b: Vec<_> = claimed.iter().filter(|c| c.2 == other).collect();
    assert_eq!(run_a.iter().map(|c| c.1).collect::<Vec<_>>(), in_seq_order, "the whole backlog, in seq order");
    assert!(run_a.iter().all(|c| c.0 == run_a[0].0 && c.3 == 1), "one run, first attempts: {claimed:?}");
    assert_eq!(run_b.len(), 1);
    assert_ne!(run_b[0].0, run_a[0].0, "each webhook its own run");
    assert!(claim_runs(&owner, two).await.is_empty(), "a claimed run is held whole: another worker gets nothing");

    // The third attempt fails: the first three are recorded, the unsent tail is given back.
    let d = &in_seq_order;
    let results = record_batch(&owner, one, &[(d[0], 1, 200), (d[1], 1, 200), (d[2], 1, 500)]).await;
    assert_eq!(results, ["succeeded", "succeeded", "retrying"]);
    let release = "SELECT app.webhook_release($1, $2, $3)";
    let tail = vec![d[3], d[4]];
    assert_eq!(owner.query_one(release, &[&two, &tail, &vec![1, 1]]).await.unwrap().get::<_, i32>(0), 0, "not its claim");
    assert_eq!(owner.query_one(release, &[&one, &tail, &vec![1, 1]]).await.unwrap().get::<_, i32>(0), 2);
    let logs: i64 = owner.query_one("SELECT count(*) FROM webhook_logs WHERE webhook_id = $1", &[&hook]).await.unwrap().get(0);
    assert_eq!(logs, 3, "one log per attempt made, none for the tail");
    assert!(claim_runs(&owner, two).await.is_empty(), "the failed head waits for its retry and holds the rest back");
    assert_eq!(record_batch(&owner, two, &[(d[3], 1, 200)]).await, ["stale"], "a released attempt cannot be recorded");

    owner.execute("UPDATE app.webhook_deliveries SET due_at = now() WHERE id = $1", &[&d[2]]).await.unwrap();
    let again = claim_runs(&owner, two).await;
    assert_eq!(again.iter().map(|c| (c.1, c.3)).collect::<Vec<_>>(), [(d[2], 2), (d[3], 1), (d[4], 1)], "{again:?}");
}

#[tokio::test]
async fn two_servers_deliver_an_ordered_burst_in_seq_order_each_attempt_once() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let one = serve(&db, PRIVATE_OK).await;
    let two = serve(&db, PRIVATE_OK).await;
    let mut rx = Receiver::start(vec![]).await;
    let hook = add_hook(&owner, world.tenant_a, &rx.url, &secret()).await;
    const N: usize = 80;
    for half in 0..2 {
        add_contacts(&owner, world.tenant_a, "+3396", half * 1000, (N / 2) as i32).await;
    }
    let mut last = 0;
    let mut ids = HashSet::new();
    for _ in 0..N {
        let hit = rx.next().await;
        let seq = hit.json()["seq"].as_i64().expect("a seq");
        assert!(seq > last, "seq {seq} arrived after {last}");
        last = seq;
        assert!(ids.insert(hit.id), "an attempt was sent twice");
    }
    let mut ws = connect(&one, world.admin_a, Some(world.tenant_a)).await;
    loop {
        let sql = "SELECT count(*) FROM app.webhook_deliveries WHERE webhook_id = $1 AND status = 'succeeded' AND attempts = 1";
        let done: i64 = owner.query_one(sql, &[&hook]).await.unwrap().get(0);
        if done == N as i64 {
            break;
        }
        next_log(&mut ws).await;
    }
    let logs: i64 = owner.query_one("SELECT count(*) FROM webhook_logs WHERE webhook_id = $1", &[&hook]).await.unwrap().get(0);
    assert_eq!(logs, N as i64, "one log per attempt");
    assert!(rx.hits.try_recv().is_err(), "no duplicate delivery");
    drop((one, two));
}

/// Buffers a claim reads, from `EXPLAIN (ANALYZE, BUFFERS)` of the function call (its
/// statements' reads are counted in the call's node); the claim is rolled back.
async fn claim_reads(conn: &mut Client, busy_tenant: Uuid) -> (i64, usize) {
    let tx = conn.transaction().await.unwrap();
    let plan: Value = tx
        .query_one(
            &format!(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM app.webhook_claim_runs('{}', 8, 8, '{{{busy_tenant}}}', '{{8}}', 32)",
                Uuid::new_v4()
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let node = &plan[0]["Plan"];
    let reads = node["Shared Hit Blocks"].as_i64().unwrap() + node["Shared Read Blocks"].as_i64().unwrap();
    let rows = node["Actual Rows"].as_u64().unwrap() as usize;
    tx.rollback().await.unwrap();
    (reads, rows)
}

#[tokio::test]
async fn a_claim_reads_what_it_claims_not_the_queue_even_on_plans_made_when_the_queue_was_empty() {
    // A server starts on an empty queue: its connection's first claims plan (and cache) against
    // an empty table. Then the queue grows — a long history of finished deliveries and another
    // tenant's backlog whose receiver is dead (all its slots busy). A claim must still read
    // only what it claims: V70's cached plans scanned the whole queue on every claim, so a dead
    // tenant's backlog slowed every other tenant's deliveries (issue 11 item 8).
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let hook = add_hook(&owner, world.tenant_a, "https://hooks.test/a", &secret()).await;
    let dead = add_hook(&owner, world.tenant_b, "https://hooks.test/dead", &secret()).await;
    owner.execute("UPDATE webhooks SET parallel = true WHERE id = $1", &[&dead]).await.unwrap();
    let fill = "INSERT INTO app.webhook_deliveries (tenant_id, webhook_id, event_seq, event_type, body, ordered, max_attempts, status, completed_at)
                SELECT $1, $2, i, 'contact_created', repeat('x', 300), $3, 5, $4, CASE WHEN $4 = 'succeeded' THEN now() END
                  FROM generate_series($5::bigint, $6::bigint) i";
    let (done, pending) = ("succeeded".to_string(), "pending".to_string());
    // The dispatcher's connection polls an empty queue first (its claims end after the first
    // statement), then gets tenant A's head, which every claim here claims (and rolls back),
    // so all of the claim's statements are planned and cached while the queue is tiny.
    let mut conn = db.owner().await;
    for _ in 0..12 {
        assert_eq!(claim_reads(&mut conn, world.tenant_b).await.1, 0, "nothing to claim yet");
    }
    owner.execute(fill, &[&world.tenant_a, &hook, &true, &pending, &20_001i64, &20_001i64]).await.unwrap();
    let mut small_reads = 0;
    for _ in 0..12 {
        let (reads, claimed) = claim_reads(&mut conn, world.tenant_b).await;
        assert_eq!(claimed, 1, "tenant A's head");
        small_reads = reads;
    }

    // The history and the dead tenant's backlog, without an ANALYZE (as between autovacuums).
    owner.execute(fill, &[&world.tenant_a, &hook, &true, &done, &1i64, &20_000i64]).await.unwrap();
    owner.execute(fill, &[&world.tenant_b, &dead, &false, &pending, &1i64, &2_000i64]).await.unwrap();
    let (reads, claimed) = claim_reads(&mut conn, world.tenant_b).await;
    assert_eq!(claimed, 1, "tenant A's head again, and nothing of the busy tenant");
    let pages: i64 = owner.query_one("SELECT pg_relation_size('app.webhook_deliveries') / 8192", &[]).await.unwrap().get(0);
    assert!(pages > 500, "the queue is large: {pages} pages");
    assert!(
        reads < small_reads + 50,
        "a one-delivery claim read {reads} buffers with {pages} pages queued ({small_reads} with one row queued)"
    );
}

#[tokio::test]
async fn a_failing_webhook_is_claimed_one_delivery_per_run() {
    // The SQL alone: what the dispatcher asks for a webhook whose last attempt failed.
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let parallel = add_hook(&owner, world.tenant_a, "https://hooks.test/p", &secret()).await;
    let ordered = add_hook(&owner, world.tenant_b, "https://hooks.test/o", &secret()).await;
    owner.execute("UPDATE webhooks SET events = '{contact_created}', parallel = (id = $1)", &[&parallel]).await.unwrap();
    for tenant in [world.tenant_a, world.tenant_b] {
        add_contacts(&owner, tenant, "+3394", 0, 40).await;
    }
    assert_eq!(owner.query_one("SELECT app.webhook_feed(1000)", &[]).await.unwrap().get::<_, i32>(0), 80);
    let claim = "SELECT run, webhook_id FROM app.webhook_claim_runs($1, 64, 8, '{}', '{}', 32, $2)";
    let runs = |rows: &[tokio_postgres::Row], hook: Uuid| {
        let mut per_run: std::collections::BTreeMap<i32, usize> = Default::default();
        for r in rows.iter().filter(|r| r.get::<_, Uuid>(1) == hook) {
            *per_run.entry(r.get(0)).or_default() += 1;
        }
        per_run.into_values().collect::<Vec<_>>()
    };

    // Failing: eight runs of one for the parallel webhook, the head alone for the ordered one.
    let mut tx_conn = db.owner().await;
    let tx = tx_conn.transaction().await.unwrap();
    let rows = tx.query(claim, &[&Uuid::new_v4(), &vec![parallel, ordered]]).await.unwrap();
    assert_eq!(runs(&rows, parallel), vec![1; 8], "one delivery per slot");
    assert_eq!(runs(&rows, ordered), vec![1], "the head alone");
    tx.rollback().await.unwrap();

    // Healthy (the twin): full runs.
    let rows = owner.query(claim, &[&Uuid::new_v4(), &Vec::<Uuid>::new()]).await.unwrap();
    assert_eq!(runs(&rows, parallel).iter().sum::<usize>(), 40, "the whole backlog in runs: {:?}", runs(&rows, parallel));
    assert_eq!(runs(&rows, parallel).len(), 8);
    assert_eq!(runs(&rows, ordered), vec![32], "the head and 31 followers");
}

#[tokio::test]
async fn a_dead_receivers_backlog_is_tried_one_delivery_per_slot_not_claimed_and_given_back_in_runs() {
    let s = setup(&[
        ("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("ROWCAST_WEBHOOK_TENANT_CONCURRENCY", "2"),
        ("ROWCAST_WEBHOOK_TIMEOUT_MS", "300"),
    ])
    .await;
    schedule(&s.owner, "{1 hour}", 100).await;
    let mut dead = Receiver::start(vec![Reply::Hang(Duration::from_secs(60)); 100]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &dead.url, &secret()).await;
    s.owner.execute("UPDATE webhooks SET parallel = true, events = '{contact_created}' WHERE id = $1", &[&hook]).await.unwrap();
    add_contacts(&s.owner, s.world.tenant_a, "+3395", 0, 40).await;
    // First two runs (of 20) hang and time out; their tails are given back. From then on the
    // webhook is failing: each attempt is a run of its own.
    for _ in 0..6 {
        dead.next().await;
    }
    let in_flight: i64 = s
        .owner
        .query_one("SELECT count(*) FROM app.webhook_deliveries WHERE webhook_id = $1 AND status = 'in_flight'", &[&hook])
        .await
        .unwrap()
        .get(0);
    // Per slot: the attempt hanging now, and at most the one that just timed out if the
    // recorder has not committed it yet (a freed slot is claimed again at once). Runs of 20
    // would hold ~36.
    assert!(in_flight <= 4, "{in_flight} deliveries held for a dead receiver with 2 slots");
}

#[tokio::test]
async fn a_webhook_deactivated_during_a_run_gets_no_further_attempt_of_it_and_the_rest_is_cancelled() {
    let s = setup(PRIVATE_OK).await;
    // The first attempt hangs long enough for the deactivation's event to reach the server.
    let mut stopping = Receiver::start(vec![Reply::Hang(Duration::from_secs(3))]).await;
    let mut staying = Receiver::start(vec![]).await;
    let hook = add_hook(&s.owner, s.world.tenant_a, &stopping.url, &secret()).await;
    add_hook(&s.owner, s.world.tenant_a, &staying.url, &secret()).await;
    s.owner.execute("UPDATE webhooks SET events = '{contact_created}'", &[]).await.unwrap();
    add_contacts(&s.owner, s.world.tenant_a, "+3398", 0, 5).await;

    stopping.next().await; // the run's first attempt is in flight, hanging
    s.owner.execute("UPDATE webhooks SET is_active = false WHERE id = $1", &[&hook]).await.unwrap();
    let open = "SELECT count(*) FROM app.webhook_deliveries WHERE webhook_id = $1 AND status IN ('pending', 'in_flight')";
    let deadline = Instant::now() + WAIT;
    while s.owner.query_one(open, &[&hook]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "the stopped webhook's run never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopping.hits.try_recv().is_err(), "no attempt after the deactivation");
    let states: Vec<(String, i64)> = s
        .owner
        .query("SELECT status, count(*) FROM app.webhook_deliveries WHERE webhook_id = $1 GROUP BY 1 ORDER BY 1", &[&hook])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(states, [("cancelled".to_string(), 4), ("succeeded".to_string(), 1)], "the attempt in flight ended, the rest cancelled");
    // The twin: the tenant's other webhook, still active, gets every event.
    for _ in 0..5 {
        assert_eq!(staying.next().await.json()["type"], "contact_created");
    }
}

/// Waits until backend `pid` waits for another transaction's row (its tuple lock, or the
/// transaction holding the row).
async fn blocked(owner: &Client, pid: i32) {
    let deadline = Instant::now() + WAIT;
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock' \
                   AND wait_event IN ('tuple', 'transactionid')";
    while owner.query_one(waiting, &[&pid]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "backend {pid} never waited for a lock");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `n` deliveries of one webhook claimed (in flight, one run) by a worker, for the record
/// tests. No server runs, so nobody else claims or records.
struct Claimed {
    db: TestDb,
    owner: Client,
    tenant: Uuid,
    hook: Uuid,
    worker: Uuid,
    deliveries: Vec<Uuid>,
}

async fn claimed_deliveries(n: i32) -> Claimed {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    schedule(&owner, "{1 hour}", 5).await;
    let hook = add_hook(&owner, world.tenant_a, "https://hooks.test/a", &secret()).await;
    owner.execute("UPDATE webhooks SET events = '{contact_created}'", &[]).await.unwrap();
    add_contacts(&owner, world.tenant_a, "+3396", 0, n).await;
    assert_eq!(owner.query_one("SELECT app.webhook_feed(1000)", &[]).await.unwrap().get::<_, i32>(0), n);
    let worker = Uuid::new_v4();
    let claimed = claim_runs(&owner, worker).await;
    assert_eq!(claimed.len(), n as usize, "{claimed:?}");
    Claimed { db, owner, tenant: world.tenant_a, hook, worker, deliveries: claimed.iter().map(|c| c.1).collect() }
}

/// Starts `sql` (one statement, `$1` = `id`) on a connection of its own and returns once it
/// waits for a lock.
async fn start_blocked(c: &Claimed, sql: String, id: Uuid) -> tokio::task::JoinHandle<Result<u64, tokio_postgres::Error>> {
    let conn = c.db.owner().await;
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let task = tokio::spawn(async move { conn.execute(&sql, &[&id]).await });
    blocked(&c.owner, pid).await;
    task
}

/// Starts recording a failed attempt (500, retryable) of the claimed delivery and returns once
/// it waits for a lock.
async fn start_record_blocked(c: &Claimed) -> tokio::task::JoinHandle<Vec<String>> {
    let recorder = c.db.owner().await;
    let pid: i32 = recorder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    let (worker, delivery) = (c.worker, c.deliveries[0]);
    let task = tokio::spawn(async move { record_batch(&recorder, worker, &[(delivery, 1, 500)]).await });
    blocked(&c.owner, pid).await;
    task
}

async fn finished<T>(task: tokio::task::JoinHandle<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, task).await.unwrap_or_else(|_| panic!("{what} never finishes")).unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn deliveries_of(c: &Claimed) -> i64 {
    c.owner.query_one("SELECT count(*) FROM app.webhook_deliveries WHERE webhook_id = $1", &[&c.hook]).await.unwrap().get(0)
}

#[tokio::test]
async fn recording_an_attempt_waits_for_its_webhook_before_locking_the_delivery() {
    let c = claimed_deliveries(1).await;
    // Something holds the webhook's row (as a DELETE of it does) while the attempt is recorded.
    let mut holder = c.db.owner().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT 1 FROM webhooks WHERE id = $1 FOR UPDATE", &[&c.hook]).await.unwrap();
    let record = start_record_blocked(&c).await;

    // The record waits for the webhook without holding its delivery, which the cascade of a
    // DELETE would need. (V70 locked the delivery first, then waited for the webhook's key.)
    let mut probe = c.db.owner().await;
    let try_lock = probe.transaction().await.unwrap();
    try_lock
        .execute("SELECT 1 FROM app.webhook_deliveries WHERE id = $1 FOR UPDATE NOWAIT", &[&c.deliveries[0]])
        .await
        .expect("the delivery is not locked while its record waits for the webhook");
    try_lock.rollback().await.unwrap();

    // A DELETE queued behind the record waits for it: the record goes first, then the DELETE.
    let delete = start_blocked(&c, "DELETE FROM webhooks WHERE id = $1".into(), c.hook).await;
    hold.rollback().await.unwrap();
    assert_eq!(finished(record, "the record").await, ["retrying"]);
    assert_eq!(finished(delete, "the DELETE").await.expect("the DELETE is never aborted"), 1);
    assert_eq!(deliveries_of(&c).await, 0, "the DELETE cascaded into the delivery");
}

/// Holds row `id` of `table`, queues its DELETE behind the holder, then the record of a failed
/// attempt, and lets go: the DELETE must finish (never aborted), then the record; returns the
/// record's results.
async fn delete_queued_before_the_record(c: &Claimed, table: &str, id: Uuid) -> Vec<String> {
    let mut holder = c.db.owner().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(&format!("SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE"), &[&id]).await.unwrap();
    let delete = start_blocked(c, format!("DELETE FROM {table} WHERE id = $1"), id).await;
    let record = start_record_blocked(c).await;
    hold.rollback().await.unwrap();
    assert_eq!(finished(delete, "the DELETE").await.expect("the DELETE is never aborted"), 1);
    let results = finished(record, "the record").await;
    assert_eq!(deliveries_of(c).await, 0, "the DELETE cascaded into the delivery");
    results
}

#[tokio::test]
async fn a_webhook_deleted_while_its_attempt_is_recorded_is_gone_and_nothing_deadlocks() {
    let c = claimed_deliveries(1).await;
    // Before V77 the record held the delivery the DELETE's cascade needed while it waited for
    // the webhook: 40P01, every time.
    assert_eq!(delete_queued_before_the_record(&c, "webhooks", c.hook).await, ["stale"], "the delivery went with its webhook");
}

#[tokio::test]
async fn a_tenant_deleted_while_one_of_its_attempts_is_recorded_is_gone_and_nothing_deadlocks() {
    let c = claimed_deliveries(1).await;
    // With V77 the record held the webhook's key and the delivery, then waited for the
    // tenant's key (webhook_logs' foreign key), while the DELETE's cascade waited for the
    // webhook: 40P01, every time.
    assert_eq!(delete_queued_before_the_record(&c, "tenants", c.tenant).await, ["stale"], "the delivery went with its tenant");
}

#[tokio::test]
async fn the_single_attempt_record_moves_a_delivery_on_as_the_batch_does() {
    // V30's app.webhook_record, a one-attempt app.webhook_record_batch since V77.
    let c = claimed_deliveries(2).await;
    let (owner, worker, hook, claimed) = (&c.owner, c.worker, c.hook, &c.deliveries);
    let record = |delivery: Uuid, status: i32| async move {
        owner
            .query_one("SELECT app.webhook_record($1, $2, 1, $3, 3, NULL, 'answer', true, NULL)", &[&delivery, &worker, &status])
            .await
            .expect("record one attempt")
            .get::<_, String>(0)
    };
    assert_eq!(record(claimed[0], 200).await, "succeeded");
    assert_eq!(record(claimed[1], 500).await, "retrying");
    assert_eq!(record(claimed[0], 200).await, "stale", "recorded already: logged, not moved on");
    assert_eq!(record(Uuid::new_v4(), 200).await, "stale", "no such delivery");
    let states: Vec<(Uuid, String)> = owner
        .query("SELECT id, status FROM app.webhook_deliveries WHERE webhook_id = $1", &[&hook])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(states.contains(&(claimed[0], "succeeded".into())) && states.contains(&(claimed[1], "pending".into())), "{states:?}");
    let logs: i64 = owner.query_one("SELECT count(*) FROM webhook_logs WHERE webhook_id = $1", &[&hook]).await.unwrap().get(0);
    assert_eq!(logs, 3, "one log per attempt reported for an existing delivery");
}

/// The last seq of `app.events` (the test's own event, or a later attempt log).
async fn head(owner: &Client) -> i64 {
    owner.query_one("SELECT coalesce(max(seq), 0) FROM app.events", &[]).await.unwrap().get(0)
}

/// The wake-up counts once the listener has read every notification up to `seq`.
async fn wakeups_through(wakeups: &mut tokio::sync::watch::Receiver<rowcast::webhooks::Wakeups>, seq: i64) -> rowcast::webhooks::Wakeups {
    *tokio::time::timeout(WAIT, wakeups.wait_for(|w| w.seq >= seq))
        .await
        .expect("the wake-up listener reads the notification")
        .expect("the listener is running")
}

/// The server with the poll at a minute (a delivery within `WAIT` came from its event's
/// wake-up), once its wake-up listener listens and has loaded the webhooks.
async fn serve_without_poll(db: &TestDb) -> (TestApp, tokio::sync::watch::Receiver<rowcast::webhooks::Wakeups>) {
    let app = serve(db, &[("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "true"), ("ROWCAST_WEBHOOK_POLL_MS", "60000")]).await;
    let mut wakeups = app.state.webhooks.wakeups();
    tokio::time::timeout(WAIT, wakeups.wait_for(|w| w.loads >= 1)).await.expect("the listener loads the webhooks").unwrap();
    (app, wakeups)
}

/// `n` contacts of `tenant` with long names in one statement: more than one notification carries,
/// so the transaction is announced as a range stub.
async fn add_many_contacts(tx: &tokio_postgres::Transaction<'_>, tenant: Uuid) {
    tx.execute(
        "INSERT INTO contacts (tenant_id, phone, first_name) SELECT $1, '+1555' || lpad(i::text, 7, '0'), repeat('x', 200) FROM generate_series(1, 100) i",
        &[&tenant],
    )
    .await
    .unwrap();
}

/// The events committed after `before` are more than a notification carries.
async fn announced_as_a_stub(owner: &Client, before: i64) -> bool {
    owner.query_one("SELECT sum(octet_length(\"row\"::text)) > 7850 FROM app.events WHERE seq > $1", &[&before]).await.unwrap().get(0)
}

/// An event of a tenant with a webhook wakes the feed; the same event of a tenant without
/// one does not (the forbidden twin). The list is loaded when the listener connects, follows
/// a webhook created while serving, and reads a range stub's changes (here: the webhook's row
/// deleted in a transaction too large to announce).
#[tokio::test]
async fn only_events_of_tenants_with_a_webhook_wake_the_feed_and_the_list_follows_the_webhooks() {
    let db = TestDb::new().await;
    let mut owner = db.owner().await;
    let world = World::create(&owner).await;
    let (mut rx_a, mut rx_b) = (Receiver::start(vec![]).await, Receiver::start(vec![]).await);
    add_hook(&owner, world.tenant_a, &rx_a.url, &secret()).await;
    let (app, mut wakeups) = serve_without_poll(&db).await;

    // B has no webhook: its event is read and skipped.
    add_contact(&owner, world.tenant_b).await;
    let after_b = wakeups_through(&mut wakeups, head(&owner).await).await;
    assert_eq!((after_b.fed, after_b.skipped), (0, 1), "an event of a tenant without a webhook does not wake the feed");

    // A's webhook existed before the server started: A's event wakes the feed and is delivered.
    let a = add_contact(&owner, world.tenant_a).await;
    assert_eq!(wakeups_through(&mut wakeups, head(&owner).await).await.fed, 1);
    assert_eq!(rx_a.next().await.json()["payload"]["id"], json!(a));

    // A webhook created while serving: B's next event wakes the feed.
    let hook_b = add_hook(&owner, world.tenant_b, &rx_b.url, &secret()).await;
    let b = add_contact(&owner, world.tenant_b).await;
    assert_eq!(wakeups_through(&mut wakeups, head(&owner).await).await.fed, 2, "B's event after its webhook was created wakes the feed");
    assert_eq!(rx_b.next().await.json()["payload"]["id"], json!(b));

    // Its row deleted in a transaction announced as a range stub: the stub is fed and its
    // webhook events read, so B's next event is skipped. The server may still be recording
    // B's delivery: since V77 that record and the DELETE never deadlock.
    let before = head(&owner).await;
    let tx = owner.transaction().await.unwrap();
    tx.execute("DELETE FROM webhooks WHERE id = $1", &[&hook_b]).await.unwrap();
    add_many_contacts(&tx, world.tenant_b).await;
    tx.commit().await.unwrap();
    assert!(announced_as_a_stub(&owner, before).await);
    assert_eq!(wakeups_through(&mut wakeups, head(&owner).await).await.fed, 3, "a range stub wakes the feed");
    add_contact(&owner, world.tenant_b).await;
    let w = wakeups_through(&mut wakeups, head(&owner).await).await;
    assert_eq!((w.fed, w.loads), (3, 1), "the stub's changes were read (not the whole list): B has no webhook");
    drop(app);
}

/// A webhook created inactive is marked stopped by its `webhook_created` event. Activated in
/// a transaction announced as a range stub, it must lose the mark (the stub's changes are
/// read), or this server would give its runs back unsent for ever. The twin: an inactive
/// webhook's tenant is still fed at each event, so what is committed while it is inactive is
/// fed (and matches no live webhook) before it can be re-activated.
#[tokio::test]
async fn a_webhook_created_inactive_and_activated_in_a_large_transaction_is_delivered_to() {
    let db = TestDb::new().await;
    let mut owner = db.owner().await;
    let world = World::create(&owner).await;
    let mut rx = Receiver::start(vec![]).await;
    let (app, mut wakeups) = serve_without_poll(&db).await;
    let hook: Uuid = owner
        .query_one(
            "INSERT INTO webhooks (tenant_id, name, url, secret, is_active) VALUES ($1, 'hook', $2, $3, false) RETURNING id",
            &[&world.tenant_a, &rx.url, &secret()],
        )
        .await
        .unwrap()
        .get(0);
    let quiet = add_contact(&owner, world.tenant_a).await;
    let quiet_seq = head(&owner).await;
    let w = wakeups_through(&mut wakeups, quiet_seq).await;
    assert_eq!(w.fed, 1, "an inactive webhook's tenant is fed");
    // The feed passes it now (not at the poll, a minute away), before the webhook is live.
    let deadline = Instant::now() + WAIT;
    loop {
        let fed_through: i64 = owner.query_one("SELECT last_seq FROM app.webhook_feed_cursor", &[]).await.unwrap().get(0);
        if fed_through >= quiet_seq {
            break;
        }
        assert!(Instant::now() < deadline, "the feed never ran past the event of the inactive webhook's tenant");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // No feed pending or running: the next feed is the one the stub wakes.
    let settled = |w: &rowcast::webhooks::Wakeups| w.taken == w.requested && !w.feeding;
    tokio::time::timeout(WAIT, wakeups.wait_for(settled)).await.expect("the feeds end").unwrap();

    let before = head(&owner).await;
    let tx = owner.transaction().await.unwrap();
    tx.execute("UPDATE webhooks SET is_active = true WHERE id = $1", &[&hook]).await.unwrap();
    add_many_contacts(&tx, world.tenant_a).await;
    tx.commit().await.unwrap();
    assert!(announced_as_a_stub(&owner, before).await);
    let Ok(Some(first)) = tokio::time::timeout(WAIT, rx.hits.recv()).await else {
        let queue: Vec<(String, i64)> = owner
            .query("SELECT status, count(*) FROM app.webhook_deliveries GROUP BY status", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let cursor: i64 = owner.query_one("SELECT last_seq FROM app.webhook_feed_cursor", &[]).await.unwrap().get(0);
        panic!("no delivery: queue {queue:?}, feed cursor {cursor} (stub after {before}), {:?}", *wakeups.borrow());
    };
    let first = first.json();
    assert_eq!(first["type"], "contact_created");
    assert!(first["seq"].as_i64().unwrap() > before, "nothing committed while the webhook was inactive is delivered");
    assert_ne!(first["payload"]["id"], json!(quiet));
    drop(app);
}

/// Events written while no server runs leave the feed cursor far behind. A page of events of
/// tenants without a webhook creates no delivery, yet the dispatcher must feed the next page
/// at once rather than at its next wake-up or poll (here a minute away): A's event, after
/// 2,500 of B's, is delivered within the wait.
#[tokio::test]
async fn a_feed_cursor_far_behind_catches_up_without_waiting_for_the_poll() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let mut rx = Receiver::start(vec![]).await;
    add_hook(&owner, world.tenant_a, &rx.url, &secret()).await;
    let b = add_contact(&owner, world.tenant_b).await;
    owner
        .execute(
            &format!("DO $$ BEGIN FOR i IN 1..2500 LOOP UPDATE contacts SET first_name = 'n' || i WHERE id = '{b}'; END LOOP; END $$"),
            &[],
        )
        .await
        .unwrap();
    let a = add_contact(&owner, world.tenant_a).await;
    let (app, _wakeups) = serve_without_poll(&db).await;
    assert_eq!(rx.next().await.json()["payload"]["id"], json!(a));
    drop(app);
}

/// The poll ticks on a fixed period that wake-ups do not restart: with a `rowcast_webhooks`
/// notification every 20 ms (other instances' work), an event skipped by the wake-up listener
/// (B has no webhook) is still passed by the feed within a few 200 ms polls.
#[tokio::test]
async fn the_poll_feeds_on_its_period_under_a_steady_stream_of_wake_ups() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let world = World::create(&owner).await;
    let app = serve(&db, &[("ROWCAST_WEBHOOK_POLL_MS", "200")]).await;
    let mut wakeups = app.state.webhooks.wakeups();
    // The start-up feeds (the first round, the listener's wake-up once it listens) are done
    // and none is pending: only a poll can feed B's event.
    let settled = |w: &rowcast::webhooks::Wakeups| w.loads >= 1 && w.taken == w.requested && !w.feeding;
    tokio::time::timeout(WAIT, wakeups.wait_for(settled)).await.expect("the start-up feeds end").unwrap();
    let noise = db.owner().await;
    let stream = tokio::spawn(async move {
        loop {
            noise.batch_execute("NOTIFY rowcast_webhooks, 'another instance'").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    add_contact(&owner, world.tenant_b).await;
    let seq = head(&owner).await;
    assert_eq!(wakeups_through(&mut wakeups, seq).await.fed, 0, "B's event does not wake the feed");
    let deadline = Instant::now() + WAIT;
    loop {
        let fed_through: i64 = owner.query_one("SELECT last_seq FROM app.webhook_feed_cursor", &[]).await.unwrap().get(0);
        if fed_through >= seq {
            break;
        }
        assert!(Instant::now() < deadline, "the poll never fed while wake-ups kept coming");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.abort();
    drop(app);
}

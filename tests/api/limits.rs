//! Issue 12, request rate limits and the fair pool over real sockets (SPEC §11): 429 with
//! `Retry-After` and `RateLimit-*` headers and no pool connection taken, per user / tenant
//! (plan figure, reloaded) / client IP, WebSocket upgrades, sessions and frames, and one
//! tenant saturating its share of the pool while another one is served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::ws::{WsClient, ws_url};
use crate::helpers::{TestApp, World, spawn_app_with};

/// Every limit off except the ones a test sets.
fn limits(vars: &mut Vec<(String, String)>, set: &[(&str, &str)]) {
    for var in [
        "ROWCAST_RATE_IP_PER_MIN",
        "ROWCAST_RATE_USER_PER_MIN",
        "ROWCAST_RATE_TENANT_PER_MIN",
        "ROWCAST_RATE_WS_CONNECT_PER_MIN",
        "ROWCAST_WS_MAX_SESSIONS_PER_USER",
        "ROWCAST_WS_FRAMES_PER_SEC",
    ] {
        vars.push((var.into(), "0".into()));
    }
    for (k, v) in set {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
}

async fn app_with(set: &[(&str, &str)]) -> (TestApp, World) {
    let set: Vec<(String, String)> = set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let app = spawn_app_with(move |vars| {
        let refs: Vec<(&str, &str)> = set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        limits(vars, &refs);
    })
    .await;
    let owner = app.db.owner().await;
    let world = World::create(&owner).await;
    (app, world)
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    }

    /// `Retry-After` as a duration (whole seconds).
    fn retry_after(&self) -> Duration {
        Duration::from_secs(self.header("retry-after").parse().unwrap_or_else(|_| panic!("a Retry-After header: {:?}", self.headers)))
    }

    #[track_caller]
    fn assert_429(&self, scope: &str) {
        assert_eq!(self.status, 429, "{}", self.body);
        assert_eq!(self.body["code"], "PT429", "{}", self.body);
        assert!(self.body["details"].as_str().unwrap_or_default().contains(&format!("scope={scope}")), "{}", self.body);
        assert!(self.body.get("hint").is_some() && self.body["message"].as_str().is_some(), "PostgREST-shaped: {}", self.body);
        let retry: u64 = self.header("retry-after").parse().expect("Retry-After in seconds");
        assert!(retry >= 1, "Retry-After ≥ 1");
        assert_eq!(self.header("ratelimit-remaining"), "0");
        assert_eq!(self.header("ratelimit-reset"), retry.to_string());
        assert!(!self.header("ratelimit-limit").is_empty());
    }
}

async fn get(http: &reqwest::Client, app: &TestApp, path: &str, token: Option<&str>, tenant: Option<Uuid>) -> Answer {
    let mut req = http.get(app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(t) = tenant {
        req = req.header("x-tenant-id", t.to_string());
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer { status, headers, body }
}

/// A client whose requests leave from `127.0.0.n` (the loopback network is a /8).
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))).timeout(Duration::from_secs(30)).build().unwrap()
}

#[tokio::test]
async fn a_users_burst_over_the_limit_gets_429_with_headers_and_no_pool_connection_and_the_window_refills() {
    // 60 per minute: bursts of 6, one more every second.
    let (app, w) = app_with(&[("ROWCAST_RATE_USER_PER_MIN", "60")]).await;
    let (ann, bob) = (app.token_for(w.user_a, None), app.token_for(w.admin_a, None));
    for n in 0..6 {
        let a = get(&app.http, &app, "/api/me", Some(&ann), None).await;
        assert_eq!(a.status, 200, "request {n} is within the burst: {}", a.body);
    }
    let before = app.state.db.checkouts();
    let refused = get(&app.http, &app, "/api/me", Some(&ann), None).await;
    refused.assert_429("user");
    assert_eq!(refused.header("ratelimit-limit"), "6");
    assert_eq!(refused.header("ratelimit-policy"), "60;w=60;burst=6");
    assert_eq!(app.state.db.checkouts(), before, "a refused request takes no pool connection");

    let other = get(&app.http, &app, "/api/me", Some(&bob), None).await;
    assert_eq!(other.status, 200, "another user of the same tenant is unaffected: {}", other.body);

    tokio::time::sleep(refused.retry_after()).await;
    let again = get(&app.http, &app, "/api/me", Some(&ann), None).await;
    assert_eq!(again.status, 200, "the window refilled after Retry-After: {}", again.body);

    let fr = app.http.get(app.url("/api/me")).bearer_auth(&ann).header("accept-language", "fr").send().await.unwrap();
    assert_eq!(fr.status().as_u16(), 429);
    let body: Value = fr.json().await.unwrap();
    assert!(body["message"].as_str().unwrap_or_default().contains("limite de débit"), "{body}");
}

#[tokio::test]
async fn a_plan_sets_its_tenants_request_rate_shared_by_its_members_and_reloaded_when_it_changes() {
    let (app, w) = app_with(&[]).await;
    let owner = app.db.owner().await;
    let mut reloads = app.state.limits.tenants.reloads();
    let plan: Uuid = owner.query_one("INSERT INTO plans (code, name) VALUES ('api', 'API') RETURNING id", &[]).await.unwrap().get(0);
    owner
        .execute("INSERT INTO limit_policies (plan_id, metric, limit_value) VALUES ($1, 'api_requests_per_minute', 30)", &[&plan])
        .await
        .unwrap();
    owner.execute("INSERT INTO subscriptions (tenant_id, plan_id) VALUES ($1, $2)", &[&w.tenant_a, &plan]).await.unwrap();
    while app.state.limits.tenants.per_minute(w.tenant_a) != 30 {
        tokio::time::timeout(Duration::from_secs(10), reloads.changed()).await.expect("a reload after NOTIFY").unwrap();
    }
    // 30 per minute: bursts of 3, shared by every member of tenant A.
    let (admin, user) = (app.token_for(w.admin_a, None), app.token_for(w.user_a, None));
    for token in [&admin, &user, &admin] {
        assert_eq!(get(&app.http, &app, "/api/me", Some(token), Some(w.tenant_a)).await.status, 200);
    }
    let refused = get(&app.http, &app, "/api/me", Some(&user), Some(w.tenant_a)).await;
    refused.assert_429("tenant");
    assert_eq!(refused.header("ratelimit-policy"), "30;w=60;burst=3");
    let b = app.token_for(w.user_b, None);
    for _ in 0..5 {
        assert_eq!(get(&app.http, &app, "/api/me", Some(&b), Some(w.tenant_b)).await.status, 200, "tenant B has no plan figure");
    }

    // The platform admin lifts the limit: the server reloads and A is served again.
    owner.execute("DELETE FROM limit_policies WHERE plan_id = $1", &[&plan]).await.unwrap();
    while app.state.limits.tenants.per_minute(w.tenant_a) != 0 {
        tokio::time::timeout(Duration::from_secs(10), reloads.changed()).await.expect("a reload after NOTIFY").unwrap();
    }
    assert_eq!(get(&app.http, &app, "/api/me", Some(&user), Some(w.tenant_a)).await.status, 200);
}

#[tokio::test]
async fn the_client_ip_limit_applies_before_authentication_and_spares_other_addresses_and_probes() {
    // 20 per minute: bursts of 2.
    let (app, w) = app_with(&[("ROWCAST_RATE_IP_PER_MIN", "20")]).await;
    let (here, elsewhere) = (client_from(1), client_from(2));
    for _ in 0..2 {
        assert_eq!(get(&here, &app, "/api/me", None, None).await.status, 401, "no token: 401 while under the limit");
    }
    let before = app.state.db.checkouts();
    let refused = get(&here, &app, "/api/me", Some(&app.token_for(w.user_a, None)), None).await;
    refused.assert_429("ip");
    assert_eq!(app.state.db.checkouts(), before);
    assert_eq!(get(&here, &app, "/live", None, None).await.status, 200, "probes are never limited");
    assert_eq!(get(&elsewhere, &app, "/api/me", Some(&app.token_for(w.user_a, None)), None).await.status, 200, "another address");
}

/// Opens `/ws` from `127.0.0.n`; `Err` carries the refused upgrade's status and body.
async fn ws_from(app: &TestApp, n: u8, user: Uuid) -> Result<WsClient, (u16, Value)> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)), 0)).unwrap();
    let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], app.port))).await.unwrap();
    let url = ws_url(app.port, &app.token_for(user, None), None);
    match tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await {
        Ok((ws, _)) => Ok(WsClient::wrap(ws).await),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            assert!(resp.headers().get("retry-after").is_some(), "a refused upgrade carries Retry-After");
            let body = resp.body().as_ref().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

fn scope_of(refusal: &(u16, Value)) -> String {
    assert_eq!(refusal.0, 429, "{:?}", refusal.1);
    let details = refusal.1["details"].as_str().unwrap_or_default();
    details.split_whitespace().find_map(|kv| kv.strip_prefix("scope=")).unwrap_or_default().to_string()
}

#[tokio::test]
async fn websocket_upgrades_are_limited_per_ip_and_per_user() {
    // 20 upgrades per minute: bursts of 2, per IP and per user.
    let (app, w) = app_with(&[("ROWCAST_RATE_WS_CONNECT_PER_MIN", "20")]).await;
    for _ in 0..2 {
        ws_from(&app, 1, w.user_a).await.expect("within the burst");
    }
    let refused = ws_from(&app, 1, w.user_a).await.err().expect("a third upgrade from the same address");
    assert_eq!(scope_of(&refused), "ws_connect_ip");
    ws_from(&app, 2, w.user_b).await.expect("another address and another user");
    let refused = ws_from(&app, 3, w.user_a).await.err().expect("the same user from a fresh address");
    assert_eq!(scope_of(&refused), "ws_connect_user");
}

#[tokio::test]
async fn a_user_holds_at_most_the_configured_sessions_and_a_closed_one_frees_its_slot() {
    let (app, w) = app_with(&[("ROWCAST_WS_MAX_SESSIONS_PER_USER", "2")]).await;
    let first = ws_from(&app, 1, w.user_a).await.expect("first session");
    let _second = ws_from(&app, 1, w.user_a).await.expect("second session");
    let refused = ws_from(&app, 1, w.user_a).await.err().expect("a third concurrent session");
    assert_eq!(scope_of(&refused), "ws_sessions");
    let _other = ws_from(&app, 1, w.user_b).await.expect("another user has slots of their own");

    let mut first = first;
    first.ws.close(None).await.unwrap();
    let sessions = app.state.limits.sessions.clone();
    let freed = Instant::now();
    while sessions.open_for(w.user_a) != 1 {
        assert!(freed.elapsed() < Duration::from_secs(10), "the closed session's slot is freed");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ws_from(&app, 1, w.user_a).await.expect("the freed slot is usable");
}

#[tokio::test]
async fn a_session_sending_frames_faster_than_allowed_is_closed_with_1008_while_a_calm_one_stays() {
    let (app, w) = app_with(&[("ROWCAST_WS_FRAMES_PER_SEC", "5")]).await;
    let mut calm = ws_from(&app, 1, w.user_a).await.unwrap();
    for _ in 0..3 {
        calm.send_json(json!({"type": "ping"})).await;
        assert_eq!(calm.next_frame().await["type"], "pong");
    }
    let mut flood = ws_from(&app, 1, w.user_b).await.unwrap();
    for _ in 0..20 {
        if flood.ws.send(Message::text(json!({"type": "ping"}).to_string())).await.is_err() {
            break;
        }
    }
    let (code, reason) = flood.expect_close().await;
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(reason["reason"], "rate_limited");
    calm.send_json(json!({"type": "ping"})).await;
    assert_eq!(calm.next_frame().await["type"], "pong", "the calm session is still served");
}

#[tokio::test]
async fn a_tenant_saturating_its_share_of_the_pool_leaves_room_for_another_tenant() {
    // A pool of 4, at most 2 transactions per tenant; A's excess waits up to 1.5 s, then 429.
    let (app, w) = app_with(&[
        ("ROWCAST_POOL_SIZE", "4"),
        ("ROWCAST_TENANT_MAX_CONCURRENCY", "2"),
        ("ROWCAST_POOL_TIMEOUT_MS", "1500"),
        ("ROWCAST_STATEMENT_TIMEOUT_MS", "30000"),
    ])
    .await;
    let owner = app.db.owner().await;
    let contact: Uuid = owner
        .query_one("INSERT INTO contacts (tenant_id, phone) VALUES ($1, '+33600000042') RETURNING id", &[&w.tenant_a])
        .await
        .unwrap()
        .get(0);
    owner.execute("INSERT INTO contacts (tenant_id, phone) VALUES ($1, '+33600000043')", &[&w.tenant_b]).await.unwrap();

    // The owner holds A's contact row: A's PATCHes hold their connections, waiting on it.
    let mut locker = app.db.owner().await;
    let lock = locker.transaction().await.unwrap();
    lock.execute("SELECT 1 FROM contacts WHERE id = $1 FOR UPDATE", &[&contact]).await.unwrap();

    let token_a = app.token_for(w.user_a, Some(w.tenant_a));
    let patches: Vec<_> = (0..4)
        .map(|n| {
            let (http, url, token) = (app.http.clone(), app.url(&format!("/rest/contacts?id=eq.{contact}")), token_a.clone());
            tokio::spawn(async move {
                let resp = http.patch(url).bearer_auth(token).json(&json!({"first_name": format!("n{n}")})).send().await.unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    // Two of A's transactions wait on the lock (holding connections), two wait at the gate.
    let waiting_on_lock = "SELECT count(*) FROM pg_stat_activity WHERE usename = 'rowcast_app' AND wait_event_type = 'Lock'";
    let since = Instant::now();
    while owner.query_one(waiting_on_lock, &[]).await.unwrap().get::<_, i64>(0) < 2 || app.state.limits.gate.waiting() < 2 {
        assert!(since.elapsed() < Duration::from_secs(10), "A saturates its cap");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let b = get(&app.http, &app, "/rest/contacts?select=phone", Some(&app.token_for(w.user_b, Some(w.tenant_b))), None).await;
    let latency = started.elapsed();
    assert_eq!(b.status, 200, "tenant B is served while A saturates its share: {}", b.body);
    assert!(latency < Duration::from_millis(1000), "with bounded latency: {latency:?}");

    // A's excess is refused after the wait bound: 429 (its own share is full), not 503.
    while app.state.limits.gate.waiting() > 0 {
        assert!(since.elapsed() < Duration::from_secs(20), "the waiters give up after the pool timeout");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock.rollback().await.unwrap();
    let mut statuses = Vec::new();
    for p in patches {
        statuses.push(p.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 204, 429, 429], "two within A's cap, two over it");
}

/// Opens the Phoenix endpoint (serializer 2.0.0) with `apikey`; `Err` carries a refused
/// upgrade's status and body.
async fn phx_open(app: &TestApp, apikey: &str) -> Result<PhxSocket, (u16, Value)> {
    let url = format!("ws://127.0.0.1:{}/realtime/v1/websocket?vsn=2.0.0&apikey={apikey}", app.port);
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

type PhxSocket = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn phx_push(ws: &mut PhxSocket, topic: &str, event: &str, payload: Value) {
    ws.send(Message::text(json!(["1", "1", topic, event, payload]).to_string())).await.expect("send");
}

/// The next `phx_reply` (other frames skipped); `None` when the socket closes first, with its close code.
async fn phx_reply(ws: &mut PhxSocket) -> Result<Value, u16> {
    use futures::StreamExt;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame in time") {
            Some(Ok(Message::Text(t))) => {
                let frame: Value = serde_json::from_str(&t).expect("JSON frames");
                if frame[3] == "phx_reply" {
                    return Ok(frame[4].clone());
                }
            }
            Some(Ok(Message::Close(frame))) => return Err(frame.map_or(0, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            _ => return Err(0),
        }
    }
}

#[tokio::test]
async fn phoenix_sessions_count_against_the_users_slots_whether_identified_at_upgrade_or_at_join() {
    let (app, w) = app_with(&[("ROWCAST_WS_MAX_SESSIONS_PER_USER", "2")]).await;
    let token_a = app.token_for(w.user_a, Some(w.tenant_a));
    let _first = phx_open(&app, &token_a).await.expect("first session");
    let _second = ws_from(&app, 1, w.user_a).await.expect("a /ws session shares the same slots");
    let refused = phx_open(&app, &token_a).await.expect_err("a third concurrent session");
    assert_eq!(scope_of(&refused), "ws_sessions");

    // A project anon key identifies no one: the slot is taken by the join's access_token.
    let mut anon = phx_open(&app, "anon-key").await.expect("the upgrade itself is not a session of anyone");
    phx_push(&mut anon, "realtime:room", "phx_join", json!({"config": {}, "access_token": token_a})).await;
    let reply = phx_reply(&mut anon).await.expect("an error reply, not a close");
    assert_eq!(reply["status"], "error", "{reply}");
    assert!(reply["response"]["reason"].as_str().unwrap_or_default().contains("too many"), "{reply}");

    // The twin: another user has slots of their own.
    let mut other = phx_open(&app, "anon-key").await.unwrap();
    let token_b = app.token_for(w.user_b, Some(w.tenant_b));
    phx_push(&mut other, "realtime:room", "phx_join", json!({"config": {}, "access_token": token_b})).await;
    assert_eq!(phx_reply(&mut other).await.expect("a reply")["status"], "ok");
}

#[tokio::test]
async fn a_phoenix_socket_flooding_frames_is_closed_with_1008_while_a_calm_one_stays() {
    let (app, w) = app_with(&[("ROWCAST_WS_FRAMES_PER_SEC", "5")]).await;
    let mut calm = phx_open(&app, &app.token_for(w.user_a, Some(w.tenant_a))).await.unwrap();
    phx_push(&mut calm, "phoenix", "heartbeat", json!({})).await;
    assert_eq!(phx_reply(&mut calm).await.expect("a heartbeat reply")["status"], "ok");

    let mut flood = phx_open(&app, &app.token_for(w.user_b, Some(w.tenant_b))).await.unwrap();
    for _ in 0..20 {
        if flood.send(Message::text(json!(["1", "1", "phoenix", "heartbeat", {}]).to_string())).await.is_err() {
            break;
        }
    }
    let closed = loop {
        match phx_reply(&mut flood).await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(closed, 1008, "rate_limited");
    phx_push(&mut calm, "phoenix", "heartbeat", json!({})).await;
    assert_eq!(phx_reply(&mut calm).await.expect("the calm socket is still served")["status"], "ok");
}

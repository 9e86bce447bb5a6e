//! The Phoenix endpoint `/realtime/v1/websocket` with a raw WebSocket client: exact frame
//! shapes, errors for bad input (never a panic, never another session affected), upgrade
//! refusals, revocation, token expiry and the sweep of a crashed instance's presences.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use uuid::Uuid;

use crate::helpers::TestApp;
use crate::helpers::ws::{WAIT, add_contact, add_webhook, setup};

struct Phx {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    refs: u64,
}

fn phx_url(port: u16, query: &str) -> String {
    format!("ws://127.0.0.1:{port}/realtime/v1/websocket?{query}")
}

async fn phx(app: &TestApp, query: &str) -> Phx {
    let (ws, _) = connect_async(phx_url(app.port, query)).await.expect("websocket upgrade");
    Phx { ws, refs: 0 }
}

/// Connects with serializer 2.0.0 and the user's token as apikey.
async fn phx_as(app: &TestApp, user: Uuid, tenant: Uuid) -> Phx {
    phx(app, &format!("vsn=2.0.0&apikey={}&tenant={tenant}", app.token_for(user, Some(tenant)))).await
}

impl Phx {
    async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    /// Sends `[join_ref, ref, topic, event, payload]`; returns the ref.
    async fn push(&mut self, topic: &str, event: &str, payload: Value) -> String {
        self.refs += 1;
        let r = self.refs.to_string();
        self.send_raw(Message::text(json!([r, r, topic, event, payload]).to_string())).await;
        r
    }

    async fn next_message(&mut self) -> Option<Message> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame") {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                _ => return None,
            }
        }
    }

    async fn next(&mut self) -> Value {
        match self.next_message().await {
            Some(Message::Text(t)) => serde_json::from_str(&t).expect("JSON frames"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame of `event` (others skipped).
    async fn next_of(&mut self, event: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame[3] == event {
                return frame;
            }
        }
    }

    /// Joins and returns the reply's payload (`{status, response}`).
    async fn join(&mut self, topic: &str, config: Value) -> Value {
        self.push(topic, "phx_join", json!({"config": config})).await;
        self.next_of("phx_reply").await[4].clone()
    }

    async fn expect_close(&mut self) -> u16 {
        loop {
            match self.next_message().await {
                Some(Message::Close(Some(frame))) => return u16::from(frame.code),
                Some(Message::Close(None)) | None => panic!("socket ended without a close frame"),
                Some(_) => continue,
            }
        }
    }
}

fn binding(table: &str, filter: Option<&str>) -> Value {
    let mut b = json!({"event": "*", "schema": "public", "table": table});
    if let Some(f) = filter {
        b["filter"] = json!(f);
    }
    b
}

#[tokio::test]
async fn phoenix_heartbeat_join_reply_system_and_change_frames_have_the_exact_shapes() {
    let (app, owner, w) = setup().await;
    let mut c = phx_as(&app, w.user_a, w.tenant_a).await;
    let r = c.push("phoenix", "heartbeat", json!({})).await;
    assert_eq!(c.next().await, json!([r, r, "phoenix", "phx_reply", {"status": "ok", "response": {}}]));

    let r =
        c.push("realtime:room", "phx_join", json!({"config": {"postgres_changes": [binding("contacts", Some("language=eq.fr"))]}})).await;
    let reply = c.next().await;
    let id = reply[4]["response"]["postgres_changes"][0]["id"].as_u64().expect("binding id");
    assert_eq!(
        reply,
        json!([r, r, "realtime:room", "phx_reply", {"status": "ok", "response": {"postgres_changes": [
            {"event": "*", "schema": "public", "table": "contacts", "filter": "language=eq.fr", "id": id}
        ]}}])
    );
    assert_eq!(
        c.next().await,
        json!([r, null, "realtime:room", "system",
            {"channel": "room", "extension": "postgres_changes", "message": "Subscribed to PostgreSQL", "status": "ok"}])
    );

    let other = add_contact(&owner, w.tenant_a).await;
    let row: Value = owner
        .query_one("UPDATE contacts SET language = 'fr' WHERE id = $1 RETURNING to_jsonb(contacts.*)", &[&other])
        .await
        .unwrap()
        .get(0);
    let change = c.next().await;
    assert_eq!(change[0], Value::Null);
    assert_eq!(change[1], Value::Null);
    assert_eq!(change[2], "realtime:room");
    assert_eq!(change[3], "postgres_changes");
    assert_eq!(change[4]["ids"], json!([id]));
    let data = &change[4]["data"];
    assert_eq!(
        (data["schema"].clone(), data["table"].clone(), data["type"].clone()),
        (json!("public"), json!("contacts"), json!("UPDATE"))
    );
    assert_eq!(data["record"], row, "the insert did not match the filter; the update did");
    assert_eq!(data["old_record"]["language"], Value::Null);
    assert_eq!(data["old_record"]["id"], row["id"]);
    assert_eq!(data["errors"], Value::Null);
    assert!(data["commit_timestamp"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{data}");
    let columns = data["columns"].as_array().unwrap();
    assert!(columns.contains(&json!({"name": "id", "type": "uuid"})), "{columns:?}");
    assert!(columns.contains(&json!({"name": "attributes", "type": "jsonb"})), "{columns:?}");
}

#[tokio::test]
async fn phoenix_bad_input_gets_error_replies_and_never_affects_another_session() {
    let (app, owner, w) = setup().await;
    let mut bystander = phx_as(&app, w.user_a, w.tenant_a).await;
    assert_eq!(bystander.join("realtime:watch", json!({"postgres_changes": [binding("contacts", None)]})).await["status"], "ok");
    let mut admin = phx_as(&app, w.admin_a, w.tenant_a).await;
    let mut c = phx_as(&app, w.user_a, w.tenant_a).await;

    let refused = [
        (json!({"postgres_changes": [binding("no_such_table", None)]}), "does not exist"),
        (json!({"postgres_changes": [binding("webhooks", None)]}), "not visible"),
        (json!({"postgres_changes": [binding("contacts", Some("nope=eq.1"))]}), "filter column"),
        (json!({"postgres_changes": [binding("contacts", Some("phone=like.1*"))]}), "operators"),
        (json!({"postgres_changes": [binding("contacts", Some("garbage"))]}), "col=op.value"),
        (json!({"postgres_changes": [{"event": "TRUNCATE", "schema": "public", "table": "contacts"}]}), "unknown event"),
        (json!({"postgres_changes": [{"event": "*", "schema": "app", "table": "events"}]}), "schema"),
        (json!({"postgres_changes": [{"event": "*", "schema": "public", "filter": "id=eq.1"}]}), "needs a table"),
        (json!({"postgres_changes": "contacts"}), "list"),
        (json!({"private": true}), "private"),
    ];
    for (config, why) in refused {
        let reply = c.join("realtime:bad", config.clone()).await;
        assert_eq!(reply["status"], "error", "{config}: {reply}");
        assert!(reply["response"]["reason"].as_str().unwrap().contains(why), "{config}: {reply}");
    }
    let hidden = admin.join("realtime:hooks", json!({"postgres_changes": [binding("webhooks", Some("secret=eq.x"))]})).await;
    assert_eq!(hidden["status"], "error", "a redacted column cannot be filtered on: {hidden}");
    assert_eq!(admin.join("realtime:hooks", json!({"postgres_changes": [binding("webhooks", Some("url=eq.x"))]})).await["status"], "ok");

    c.send_raw(Message::text("{not json")).await;
    assert_eq!(c.next().await[3], "phx_error");
    c.send_raw(Message::text(r#"{"topic":"phoenix"}"#)).await;
    assert_eq!(c.next().await[3], "phx_error", "2.0.0 wants arrays");
    c.send_raw(Message::binary(vec![9u8, 0, 0])).await;
    assert_eq!(c.next().await[3], "phx_error");
    c.push("realtime:never-joined", "broadcast", json!({"type": "broadcast", "event": "x", "payload": {}})).await;
    assert_eq!(c.next().await[4]["status"], "error");
    assert_eq!(c.join("realtime:ok", json!({})).await["status"], "ok");
    c.push("realtime:ok", "dance", json!({})).await;
    let unknown = c.next().await;
    assert_eq!(unknown[4]["status"], "error");
    assert!(unknown[4]["response"]["reason"].as_str().unwrap().contains("unknown event"));
    c.push("realtime:notopic", "phx_join", json!({})).await;
    assert_eq!(c.next().await[4]["status"], "ok");
    c.push("room-without-prefix", "phx_join", json!({})).await;
    assert_eq!(c.next().await[4]["status"], "error");

    c.send_raw(Message::text("x".repeat(70 * 1024))).await;
    assert_eq!(c.expect_close().await, 1009);

    let id = add_contact(&owner, w.tenant_a).await;
    let change = bystander.next_of("postgres_changes").await;
    assert_eq!(change[4]["data"]["record"]["id"], json!(id), "the other session never noticed");
}

#[tokio::test]
async fn phoenix_upgrade_refusals_are_http_errors() {
    let (app, _owner, w) = setup().await;
    let get = |query: &str, origin: Option<&str>| {
        let mut req = app.http.get(app.url(&format!("/realtime/v1/websocket?{query}")));
        req = req.header("connection", "upgrade").header("upgrade", "websocket").header("sec-websocket-version", "13");
        req = req.header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(get("vsn=3.0.0", None).await.unwrap().status(), 400);
    assert_eq!(get("vsn=2.0.0&tenant=nope", None).await.unwrap().status(), 400);
    assert_eq!(get("vsn=2.0.0", Some("https://evil.test")).await.unwrap().status(), 403);
    let outsider = format!("vsn=2.0.0&apikey={}&tenant={}", app.token_for(w.user_b, None), w.tenant_a);
    assert_eq!(get(&outsider, None).await.unwrap().status(), 403, "not a member of the tenant asked for");
    let plain = app.http.get(app.url("/realtime/v1/websocket?vsn=2.0.0")).send().await.unwrap();
    assert_eq!(plain.status(), 426);
}

#[tokio::test]
async fn phoenix_identity_comes_from_the_join_access_token_when_the_apikey_is_not_a_jwt() {
    let (app, owner, w) = setup().await;
    let mut c = phx(&app, &format!("vsn=1.0.0&apikey=anon-key&tenant={}", w.tenant_a)).await;
    let join = |token: Option<String>| {
        let mut payload = json!({"config": {"postgres_changes": [binding("contacts", None)]}});
        if let Some(t) = token {
            payload["access_token"] = json!(t);
        }
        json!({"topic": "realtime:v1", "event": "phx_join", "payload": payload, "ref": "1", "join_ref": "1"}).to_string()
    };
    c.send_raw(Message::text(join(None))).await;
    let refused = c.next().await;
    assert_eq!((refused["event"].clone(), refused["payload"]["status"].clone()), (json!("phx_reply"), json!("error")), "{refused}");
    c.send_raw(Message::text(join(Some("not-a-jwt".into())))).await;
    assert_eq!(c.next().await["payload"]["status"], "error");
    c.send_raw(Message::text(join(Some(app.token_for(w.user_a, Some(w.tenant_a)))))).await;
    let ok = c.next().await;
    assert_eq!(ok["payload"]["status"], "ok", "{ok}");
    assert_eq!(ok["ref"], "1", "serializer 1.0.0: object frames");
    assert_eq!(c.next().await["event"], "system");
    let id = add_contact(&owner, w.tenant_a).await;
    let change = c.next().await;
    assert_eq!((change["event"].clone(), change["payload"]["data"]["record"]["id"].clone()), (json!("postgres_changes"), json!(id)));
}

#[tokio::test]
async fn revoking_the_membership_closes_the_phoenix_channels() {
    let (app, owner, w) = setup().await;
    let mut c = phx_as(&app, w.user_a, w.tenant_a).await;
    assert_eq!(c.join("realtime:room", json!({"postgres_changes": [binding("contacts", None)]})).await["status"], "ok");
    assert_eq!(c.next_of("system").await[4]["status"], "ok");
    owner.execute("DELETE FROM memberships WHERE user_id = $1 AND tenant_id = $2", &[&w.user_a, &w.tenant_a]).await.unwrap();
    let system = c.next_of("system").await;
    assert_eq!(system[4]["status"], "error", "{system}");
    assert_eq!(c.next().await[3], "phx_close");
    add_contact(&owner, w.tenant_a).await;
    c.push("phoenix", "heartbeat", json!({})).await;
    assert_eq!(c.next().await[3], "phx_reply", "no change arrives after the revocation; the socket lives on");
    assert_eq!(c.join("realtime:room", json!({})).await["status"], "error", "and cannot join again");
}

#[tokio::test]
async fn an_expired_token_closes_the_channels_and_a_refresh_prevents_it() {
    let (app, _owner, w) = setup().await;
    let short = app.state.jwt.mint(w.user_a, Some(w.tenant_a), Duration::from_secs(2)).unwrap();
    let mut c = phx(&app, &format!("vsn=2.0.0&apikey={short}&tenant={}", w.tenant_a)).await;
    assert_eq!(c.join("realtime:a", json!({})).await["status"], "ok");
    let system = c.next_of("system").await;
    assert_eq!(system[4]["message"], "Token has expired");
    assert_eq!(c.next().await[3], "phx_close");

    let short = app.state.jwt.mint(w.user_a, Some(w.tenant_a), Duration::from_secs(2)).unwrap();
    let mut d = phx(&app, &format!("vsn=2.0.0&apikey={short}&tenant={}", w.tenant_a)).await;
    assert_eq!(d.join("realtime:b", json!({})).await["status"], "ok");
    d.push("realtime:b", "access_token", json!({"access_token": app.token_for(w.user_a, Some(w.tenant_a))})).await;
    assert_eq!(d.next().await[4]["status"], "ok");
    tokio::time::sleep(Duration::from_secs(3)).await; // past the first token's expiry: nothing may come
    d.push("phoenix", "heartbeat", json!({})).await;
    let next = d.next().await;
    assert_eq!((next[2].clone(), next[3].clone()), (json!("phoenix"), json!("phx_reply")), "the channel outlived the first token");
}

#[tokio::test]
async fn a_crashed_instance_presences_leave_within_the_staleness_bound() {
    let (app, owner, w) = setup().await;
    let ghost = Uuid::new_v4();
    owner
        .batch_execute(&format!(
            "INSERT INTO app.realtime_instances (instance_id, heartbeat_at) VALUES ('{ghost}', now() - interval '1 hour');
             INSERT INTO app.realtime_presence (instance_id, session_id, tenant_id, topic, presence_key, meta)
             VALUES ('{ghost}', 1, '{}', 'realtime:lobby', 'ghost', '{{\"phx_ref\": \"g1\"}}')",
            w.tenant_a
        ))
        .await
        .unwrap();
    let mut c = phx_as(&app, w.user_a, w.tenant_a).await;
    assert_eq!(c.join("realtime:lobby", json!({"presence": {"enabled": true, "key": "ann"}})).await["status"], "ok");
    let state = c.next_of("presence_state").await;
    assert_eq!(state[4], json!({"ghost": {"metas": [{"phx_ref": "g1"}]}}));
    // Swept by the next heartbeat (every 5 s): a leave diff, then the row is gone.
    let diff = tokio::time::timeout(Duration::from_secs(15), c.next_of("presence_diff")).await.expect("swept within the bound");
    assert_eq!(diff[4], json!({"joins": {}, "leaves": {"ghost": {"metas": [{"phx_ref": "g1"}]}}}));
    let left: i64 = owner.query_one("SELECT count(*) FROM app.realtime_presence WHERE instance_id = $1", &[&ghost]).await.unwrap().get(0);
    assert_eq!(left, 0);
    let (_, status) = app.state.realtime.listener_status();
    assert_eq!(status["clusterRelay"], "up", "the broadcast/presence relay reports itself: {status}");
}

#[tokio::test]
async fn webhook_changes_reach_admins_without_the_secret() {
    let (app, owner, w) = setup().await;
    let mut admin = phx_as(&app, w.admin_a, w.tenant_a).await;
    assert_eq!(admin.join("realtime:hooks", json!({"postgres_changes": [binding("webhooks", None)]})).await["status"], "ok");
    let id = add_webhook(&owner, w.tenant_a).await;
    let change = admin.next_of("postgres_changes").await;
    let data = &change[4]["data"];
    assert_eq!(data["record"]["id"], json!(id));
    assert!(data["record"].get("secret").is_none());
    assert!(!data["columns"].as_array().unwrap().iter().any(|c| c["name"] == "secret"), "nor its column");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_phoenix_socket_is_cut_as_lagging_while_others_continue() {
    let app = crate::helpers::spawn_app_with(|v| v.push(("ROWCAST_WS_QUEUE_CAPACITY".into(), "8".into()))).await;
    let owner = app.db.owner().await;
    let w = crate::helpers::World::create(&owner).await;
    crate::helpers::ws::relay_caught_up(&app, &owner).await;
    // The slow reader: a tiny receive window, and it stops reading after the join.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(format!("127.0.0.1:{}", app.port).parse().unwrap()).await.unwrap();
    let url = phx_url(app.port, &format!("vsn=2.0.0&apikey={}&tenant={}", app.token_for(w.user_a, Some(w.tenant_a)), w.tenant_a));
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await.unwrap();
    let mut slow = Phx { ws, refs: 0 };
    let contacts = json!({"postgres_changes": [binding("contacts", None)]});
    assert_eq!(slow.join("realtime:slow", contacts.clone()).await["status"], "ok");
    let mut fast = phx_as(&app, w.user_a, w.tenant_a).await;
    assert_eq!(fast.join("realtime:fast", contacts).await["status"], "ok");
    let root = app.token_for(w.platform_admin, None);

    let attributes = json!({"pad": "p".repeat(16 * 1024)}).to_string();
    for n in 1.. {
        let id = crate::helpers::ws::add_contact_with(&owner, w.tenant_a, &attributes).await;
        assert_eq!(fast.next_of("postgres_changes").await[4]["data"]["record"]["id"], json!(id), "the fast reader keeps up");
        if n % 10 == 0 && app.get_json("/api/ws/stats", &root, 200).await["eventsDropped"].as_u64() > Some(0) {
            break;
        }
        assert!(n < 3000, "the slow reader was never cut");
    }
    assert_eq!(slow.expect_close().await, 1013);
    let id = add_contact(&owner, w.tenant_a).await;
    assert_eq!(fast.next_of("postgres_changes").await[4]["data"]["record"]["id"], json!(id));
}

#[tokio::test]
async fn a_stopping_instance_removes_its_presences_at_once() {
    let (app, _owner, w) = setup().await;
    let (port_b, stop_b) = crate::clients_realtime::second_instance(&app).await;
    let query = format!("vsn=2.0.0&apikey={}&tenant={}", app.token_for(w.user_a, Some(w.tenant_a)), w.tenant_a);
    let (ws, _) = connect_async(phx_url(port_b, &query)).await.unwrap();
    let mut on_b = Phx { ws, refs: 0 };
    assert_eq!(on_b.join("realtime:lobby", json!({"presence": {"key": "bee"}})).await["status"], "ok");
    let mut on_a = phx_as(&app, w.admin_a, w.tenant_a).await;
    assert_eq!(on_a.join("realtime:lobby", json!({"presence": {"enabled": true, "key": "ay"}})).await["status"], "ok");
    assert_eq!(on_a.next_of("presence_state").await[4], json!({}));
    on_b.push("realtime:lobby", "presence", json!({"type": "presence", "event": "track", "payload": {"n": 1}})).await;
    assert_eq!(on_b.next_of("phx_reply").await[4]["status"], "ok");
    let joined = on_a.next_of("presence_diff").await;
    assert_eq!(joined[4]["joins"]["bee"]["metas"][0]["n"], 1, "{joined}");
    stop_b.cancel();
    let left = on_a.next_of("presence_diff").await;
    assert_eq!(left[4]["leaves"]["bee"]["metas"][0]["n"], 1, "{left}");
}

#[tokio::test]
async fn shutdown_closes_phoenix_sockets_with_1001_joined_or_not() {
    let (app, _owner, w) = setup().await;
    let mut joined = phx_as(&app, w.user_a, w.tenant_a).await;
    assert_eq!(joined.join("realtime:a", json!({})).await["status"], "ok");
    let mut idle = phx(&app, "vsn=2.0.0&apikey=anon").await;
    idle.push("phoenix", "heartbeat", json!({})).await;
    assert_eq!(idle.next().await[3], "phx_reply");
    app.shutdown.cancel();
    assert_eq!(joined.expect_close().await, 1001);
    assert_eq!(idle.expect_close().await, 1001);
}

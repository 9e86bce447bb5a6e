//! Realtime under faults and abuse: slow and broken clients, expired tokens, refused
//! upgrades, oversized frames, graceful shutdown.

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::helpers::ws::{WsClient, add_contact, add_contact_with, connect, connect_port, relay_caught_up, setup, ws_url};
use crate::helpers::{World, spawn_app_with};

/// Tries an upgrade with extra headers; returns the HTTP status of a refusal and its body.
pub async fn refused(url: &str, headers: &[(&'static str, &str)]) -> (u16, Value) {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("the upgrade should have been refused: {url}"),
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().map(|b| serde_json::from_slice(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_upgrades_and_bad_origins_are_refused_before_the_upgrade() {
    let (app, _owner, w) = setup().await;
    let base = format!("ws://127.0.0.1:{}/ws", app.port);
    let (status, body) = refused(&base, &[]).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("PGRST302")), "{body}");
    assert_eq!(refused(&format!("{base}?token=garbage"), &[]).await.0, 401);
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let url = ws_url(app.port, &token, Some(w.tenant_a));
    let (status, body) = refused(&url, &[("origin", "https://evil.test")]).await;
    assert_eq!(status, 403, "{body}");
    let other_tenant = ws_url(app.port, &app.token_for(w.user_b, None), Some(w.tenant_a));
    assert_eq!(refused(&other_tenant, &[]).await.0, 403, "not a member of that tenant");
    let plain = app.http.get(app.url(&format!("/ws?token={token}"))).send().await.unwrap();
    assert_eq!(plain.status().as_u16(), 426, "no upgrade headers");

    // The allowed twins: same-origin pages, and no Origin at all.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("origin", format!("http://127.0.0.1:{}", app.port).parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("same-origin upgrade");
    WsClient::wrap(ws).await;
    connect(&app, w.user_a, Some(w.tenant_a)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_are_honoured() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_ALLOWED_ORIGINS".into(), "https://app.test".into()))).await;
    let owner = app.db.owner().await;
    let w = World::create(&owner).await;
    let url = ws_url(app.port, &app.token_for(w.user_a, Some(w.tenant_a)), Some(w.tenant_a));
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://app.test".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("listed origin");
    WsClient::wrap(ws).await;
    let same_origin = format!("http://127.0.0.1:{}", app.port);
    assert_eq!(refused(&url, &[("origin", &same_origin)]).await.0, 403, "a list replaces the same-origin default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_the_session_unless_auth_refreshes_it() {
    let (app, owner, w) = setup().await;
    let short = app.state.jwt.mint(w.user_a, Some(w.tenant_a), Duration::from_secs(2)).unwrap();
    let mut expiring = connect_port(app.port, &short, Some(w.tenant_a)).await;
    let mut refreshed = connect_port(app.port, &short, Some(w.tenant_a)).await;
    refreshed.send_json(json!({"type": "auth", "payload": {"token": app.token_for(w.user_b, None)}})).await;
    assert_eq!(refreshed.next_frame().await["payload"]["code"], "token_user_mismatch");
    refreshed.send_json(json!({"type": "auth", "payload": {"token": app.token_for(w.user_a, Some(w.tenant_a))}})).await;
    assert_eq!(refreshed.next_frame().await["type"], "authenticated");

    let (code, reason) = expiring.expect_close().await;
    assert_eq!(code, 4401);
    assert_eq!(reason["reason"], "token_expired");
    assert!(reason["cursor"].is_i64(), "{reason}");
    // The expiry has passed (the other session proves it): the refreshed one still delivers.
    let marker = add_contact(&owner, w.tenant_a).await;
    assert_eq!(refreshed.events_until(marker).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_session_does_not_stop_delivery_to_others() {
    let (app, owner, w) = setup().await;
    let mut good = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let vanished = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut oversized = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut garbage = connect(&app, w.user_a, Some(w.tenant_a)).await;

    drop(vanished); // TCP gone without a close handshake
    oversized.ws.send(Message::text("x".repeat(70 * 1024))).await.unwrap();
    let (code, _) = oversized.expect_close().await;
    assert_eq!(code, 1009, "inbound frames over 64 KiB close the session");
    garbage.ws.send(Message::text("\u{0}\u{1}garbage")).await.unwrap();
    assert_eq!(garbage.next_frame().await["type"], "error");

    let mut written = Vec::new();
    for _ in 0..5 {
        written.push(add_contact(&owner, w.tenant_a).await);
    }
    let events = good.events_until(written[4]).await;
    assert_eq!(events.len(), 5);
    assert_eq!(garbage.events_until(written[4]).await.len(), 5, "a client error does not end its session either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_cut_with_lagging_while_others_continue() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_WS_QUEUE_CAPACITY".into(), "8".into()))).await;
    let owner = app.db.owner().await;
    let w = World::create(&owner).await;
    relay_caught_up(&app, &owner).await;
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    // The slow reader: a tiny receive window, and it stops reading after the welcome.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(format!("127.0.0.1:{}", app.port).parse().unwrap()).await.unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(ws_url(app.port, &token, Some(w.tenant_a)), tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut slow = WsClient::wrap(ws).await;
    let mut fast = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let root = app.token_for(w.platform_admin, None);

    let attributes = json!({"pad": "p".repeat(16 * 1024)}).to_string();
    let mut written = Vec::new();
    loop {
        let id = add_contact_with(&owner, w.tenant_a, &attributes).await;
        written.push(id);
        assert_eq!(fast.events_until(id).await.len(), 1, "the fast reader keeps up");
        if written.len() % 10 == 0 && app.get_json("/api/ws/stats", &root, 200).await["eventsDropped"].as_u64() > Some(0) {
            break;
        }
        assert!(written.len() < 3000, "the slow reader was never cut");
    }
    let last = add_contact(&owner, w.tenant_a).await;
    written.push(last);
    assert_eq!(fast.events_until(last).await.len(), 1);

    // The slow reader finally reads: events in order, then `lagging`, then a close with its cursor.
    let mut got: Vec<Value> = Vec::new();
    let lagging = loop {
        let frame = slow.next_frame().await;
        if frame["type"] == "lagging" {
            break frame;
        }
        got.push(frame);
    };
    let (code, reason) = slow.expect_close().await;
    assert_eq!(code, 1013);
    let cursor = reason["cursor"].as_i64().unwrap();
    assert_eq!(lagging["payload"]["cursor"].as_i64(), Some(cursor));
    let last_seen = got.last().map_or(0, |e| e["seq"].as_i64().unwrap());
    assert!(cursor <= last_seen.max(slow.head()), "the cursor never skips what the client did not get");

    // Resuming from the cursor delivers the rest: nothing lost.
    let url = format!("{}&since={cursor}", ws_url(app.port, &token, Some(w.tenant_a)));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut resumed = WsClient::wrap(ws).await;
    got.extend(resumed.events_until(last).await.into_iter().filter(|e| e["seq"].as_i64().unwrap() > last_seen));
    let ids: Vec<Uuid> = got.iter().map(|e| serde_json::from_value(e["payload"]["id"].clone()).unwrap()).collect();
    assert_eq!(ids, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_sessions_with_1001_and_their_cursor() {
    let (app, owner, w) = setup().await;
    let mut client = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let id = add_contact(&owner, w.tenant_a).await;
    let seq = client.events_until(id).await[0]["seq"].as_i64().unwrap();
    app.shutdown.cancel();
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1001);
    assert_eq!(reason, json!({"reason": "shutdown", "cursor": seq}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_stats_show_platform_admins_everything_and_members_their_tenant() {
    let (app, owner, w) = setup().await;
    let mut a = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let _b = connect(&app, w.user_b, Some(w.tenant_b)).await;
    let marker = add_contact(&owner, w.tenant_a).await;
    a.events_until(marker).await;
    let all = app.get_json("/api/ws/stats", &app.token_for(w.platform_admin, None), 200).await;
    assert_eq!(all["connections"], 2, "{all}");
    assert_eq!(all["sessionsPerTenant"][w.tenant_a.to_string()], 1);
    assert!(all["eventsSent"].as_u64() >= Some(1));
    assert_eq!(all["listener"]["status"], "up");
    let mine = app.get_json("/api/ws/stats", &app.token_for(w.user_a, Some(w.tenant_a)), 200).await;
    assert_eq!(mine["sessions"], 1, "{mine}");
    assert!(mine.get("sessionsPerTenant").is_none() && mine.get("eventsSent").is_none(), "no other tenant's figures");
    app.get_json("/api/ws/stats", "not-a-token", 401).await;
    let health = app.get_json("/health", "", 200).await;
    assert_eq!(health["listener"]["status"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_a_user_closes_their_sessions_only() {
    let (app, owner, w) = setup().await;
    let mut disabled = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut other = connect(&app, w.admin_a, Some(w.tenant_a)).await;
    owner.execute("UPDATE users SET is_active = false WHERE id = $1", &[&w.user_a]).await.unwrap();
    let (code, reason) = disabled.expect_close().await;
    assert_eq!((code, reason["reason"].as_str()), (4403, Some("user_disabled")));
    let marker = add_contact(&owner, w.tenant_a).await;
    assert_eq!(other.events_until(marker).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_reach_the_client() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_WS_KEEPALIVE_MS".into(), "100".into()))).await;
    let owner = app.db.owner().await;
    let w = World::create(&owner).await;
    let mut client = connect(&app, w.user_a, Some(w.tenant_a)).await;
    use futures::StreamExt;
    loop {
        match tokio::time::timeout(crate::helpers::ws::WAIT, client.ws.next()).await.expect("a ping in time") {
            Some(Ok(Message::Ping(_))) => break,
            Some(Ok(_)) => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
    // Answered pings keep the session alive: it still delivers after several intervals.
    let marker = add_contact(&owner, w.tenant_a).await;
    assert_eq!(client.events_until(marker).await.len(), 1);
}

/// Polls `/health` until it answers `status` (bounded): the relay's state is only observable there.
async fn health_becomes(app: &crate::helpers::TestApp, status: u16) -> Value {
    for _ in 0..500 {
        let response = app.http.get(app.url("/health")).send().await.unwrap();
        if response.status().as_u16() == status {
            return response.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/health never answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_reconnect_is_reported_by_health_and_fills_the_gap_when_back() {
    let (app, owner, w) = setup().await;
    let mut client = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let db = rowcast::db::quote_ident(&app.db.name);
    let cluster = crate::helpers::connect(&crate::helpers::cluster().await.cluster.pg_config("postgres")).await;
    cluster.batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false")).await.unwrap();
    owner
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'rowcast-listener'", &[])
        .await
        .unwrap();
    let mut written = Vec::new();
    for _ in 0..3 {
        written.push(add_contact(&owner, w.tenant_a).await);
    }
    let down = health_becomes(&app, 503).await;
    assert_eq!(down["listener"]["status"], "down", "{down}");
    cluster.batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true")).await.unwrap();
    let events = client.events_until(written[2]).await;
    let ids: Vec<Uuid> = events.iter().map(|e| serde_json::from_value(e["payload"]["id"].clone()).unwrap()).collect();
    assert_eq!(ids, written, "the hole is filled from app.events");
    health_becomes(&app, 200).await;
}

/// Upgrades `path` over a raw TCP socket and then never writes again (no pong either: a
/// WebSocket client library answers pings whenever it reads). Reads until the server ends the
/// connection; returns the pings received and the close code.
async fn silent_client(port: u16, path: &str) -> (usize, Option<u16>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut bytes))
        .await
        .expect("a silent client is disconnected in time")
        .expect("read");
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response") + 4;
    assert!(bytes.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&bytes[..head_end]));
    // Server frames are unmasked: opcode, length (7 bits, or 16/64 bits after 126/127), payload.
    let (mut at, mut pings, mut code) = (head_end, 0, None);
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, header) = match bytes[at + 1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize, 4),
            127 => (u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let payload = &bytes[at + header..(at + header + len).min(bytes.len())];
        match opcode {
            0x9 => pings += 1,
            0x8 if payload.len() >= 2 => code = Some(u16::from_be_bytes([payload[0], payload[1]])),
            _ => {}
        }
        at += header + len;
    }
    (pings, code)
}

/// A client that stops answering pings is closed with 1011 after two keepalive intervals, on
/// both endpoints (the session's own task reads the socket and notes when it last heard the
/// client).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_after_two_keepalive_intervals() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_WS_KEEPALIVE_MS".into(), "150".into()))).await;
    let owner = app.db.owner().await;
    let w = World::create(&owner).await;
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let (pings, code) = silent_client(app.port, &format!("/ws?token={token}&tenant={}", w.tenant_a)).await;
    assert!(pings >= 1, "pinged before giving up: {pings}");
    assert_eq!(code, Some(1011), "/ws: keepalive_timeout");
    let (pings, code) = silent_client(app.port, &format!("/realtime/v1/websocket?vsn=2.0.0&apikey={token}")).await;
    assert!(pings >= 1, "pinged before giving up: {pings}");
    assert_eq!(code, Some(1011), "Phoenix: keepalive_timeout");
}

//! The WebSocket test client: `WsClient` over a real socket, and the event fixtures the
//! `realtime_*` files share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_postgres::Client;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use uuid::Uuid;

use super::{TestApp, World, spawn_app};

/// Failure bound for anything awaited from the server.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn ws_url(port: u16, token: &str, tenant: Option<Uuid>) -> String {
    let tenant = tenant.map(|t| format!("&tenant={t}")).unwrap_or_default();
    format!("ws://127.0.0.1:{port}/ws?token={token}{tenant}")
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Value,
}

/// Connects as `user` (in `tenant`) and reads the welcome frame.
pub async fn connect(app: &TestApp, user: Uuid, tenant: Option<Uuid>) -> WsClient {
    connect_port(app.port, &app.token_for(user, tenant), tenant).await
}

pub async fn connect_port(port: u16, token: &str, tenant: Option<Uuid>) -> WsClient {
    let (ws, _) = connect_async(ws_url(port, token, tenant)).await.expect("websocket upgrade");
    WsClient::wrap(ws).await
}

impl WsClient {
    pub async fn wrap(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> WsClient {
        let mut client = WsClient { ws, welcome: Value::Null };
        let welcome = client.next_frame().await;
        assert_eq!(welcome["type"], "welcome", "first frame: {welcome}");
        client.welcome = welcome;
        client
    }

    /// The head seq announced by the welcome frame.
    pub fn head(&self) -> i64 {
        self.welcome["payload"]["seq"].as_i64().expect("welcome seq")
    }

    /// The next message, ping/pong excluded; `None` when the socket ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next text frame as JSON; panics on a close.
    pub async fn next_frame(&mut self) -> Value {
        match self.next_message().await {
            Some(Message::Text(t)) => serde_json::from_str(&t).expect("frames are JSON"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next event frame (frames with a top-level seq); control frames are skipped.
    pub async fn next_event(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame.get("seq").is_some() {
                return frame;
            }
        }
    }

    /// Event frames up to and including the one about row `id`.
    pub async fn events_until(&mut self, id: Uuid) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            let done = event["payload"]["id"] == json!(id);
            events.push(event);
            if done {
                return events;
            }
        }
    }

    pub async fn send_json(&mut self, value: Value) {
        self.ws.send(Message::text(value.to_string())).await.expect("send a frame");
    }

    /// Sends `subscribe` and returns the answer (`subscribed` or `error`).
    pub async fn subscribe(&mut self, payload: Value) -> Value {
        self.send_json(json!({"type": "subscribe", "payload": payload})).await;
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "subscribed" || frame["type"] == "error" {
                return frame;
            }
        }
    }

    /// Waits for the close frame: `(code, reason as JSON)`.
    pub async fn expect_close(&mut self) -> (u16, Value) {
        loop {
            match self.next_message().await {
                Some(Message::Close(Some(frame))) => {
                    let reason = serde_json::from_str(&frame.reason).unwrap_or(Value::Null);
                    return (u16::from(frame.code), reason);
                }
                Some(Message::Close(None)) | None => panic!("socket ended without a close frame"),
                Some(_) => continue,
            }
        }
    }
}

static PHONES: AtomicU64 = AtomicU64::new(0);

pub fn phone() -> String {
    format!("+336{:08}", PHONES.fetch_add(1, Ordering::Relaxed))
}

/// Inserts a contact as the owner; returns its id.
pub async fn add_contact(db: &Client, tenant: Uuid) -> Uuid {
    add_contact_with(db, tenant, "{}").await
}

pub async fn add_contact_with(db: &Client, tenant: Uuid, attributes: &str) -> Uuid {
    db.query_one(
        "INSERT INTO contacts (tenant_id, phone, attributes) VALUES ($1, $2, $3::text::jsonb) RETURNING id",
        &[&tenant, &phone(), &attributes],
    )
    .await
    .expect("insert a contact")
    .get(0)
}

pub async fn add_webhook(db: &Client, tenant: Uuid) -> Uuid {
    db.query_one("INSERT INTO webhooks (tenant_id, name, url) VALUES ($1, 'hook', 'https://hooks.test/in') RETURNING id", &[&tenant])
        .await
        .expect("insert a webhook")
        .get(0)
}

pub fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or_default().to_string()).collect()
}

pub async fn setup() -> (TestApp, Client, World) {
    let app = spawn_app().await;
    let owner = app.db.owner().await;
    let world = World::create(&owner).await;
    relay_caught_up(&app, &owner).await;
    (app, owner, world)
}

/// Waits until the hub has published every event already in the log. The relay is
/// asynchronous: under load it may still be delivering the fixtures' events (memberships…)
/// when the test connects, and a session goes live from the hub's head, so it would receive
/// them as new.
pub async fn relay_caught_up(app: &TestApp, owner: &Client) {
    let head: i64 = owner.query_one("SELECT coalesce(max(seq), 0) FROM app.events", &[]).await.expect("log head").get(0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.realtime.hub.head() < head {
        assert!(tokio::time::Instant::now() < deadline, "the relay did not reach seq {head}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

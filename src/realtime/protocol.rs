//! The WebSocket protocol of SPEC §5: client frames parsed, server frames built.
//!
//! Client → server: `subscribe`, `unsubscribe`, `ping`, `auth`, each as
//! `{"type": …, "payload": {…}}`. Server → client: `welcome`, events, `subscribed`,
//! `unsubscribed`, `resync_required`, `lagging`, `pong`, `authenticated`, `error`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::subscription::Channel;
use crate::i18n::Lang;

/// Close codes (RFC 6455 and the application range).
pub mod close {
    /// Server shutting down; the reason carries the resume cursor.
    pub const GOING_AWAY: u16 = 1001;
    /// More inbound frames per second than `ROWCAST_WS_FRAMES_PER_SEC`.
    pub const POLICY_VIOLATION: u16 = crate::limits::frames::CLOSE_POLICY_VIOLATION;
    /// Inbound frame over the 64 KiB limit.
    pub const TOO_BIG: u16 = 1009;
    /// Keepalive pong missing.
    pub const NO_PONG: u16 = 1011;
    /// Slow reader: the outbound queue overflowed; resume from the cursor.
    pub const LAGGING: u16 = 1013;
    /// The token expired and no `auth` frame refreshed it.
    pub const TOKEN_EXPIRED: u16 = 4401;
    /// The user was disabled.
    pub const FORBIDDEN: u16 = 4403;
}

/// Largest inbound frame or message accepted.
pub const MAX_INBOUND_BYTES: usize = 64 * 1024;

#[derive(Debug)]
pub enum ClientFrame {
    Subscribe(SubscribeRequest),
    Unsubscribe(Channel),
    Ping,
    Auth(String),
}

#[derive(Debug)]
pub struct SubscribeRequest {
    pub channel: Channel,
    pub tables: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    pub filter: Option<String>,
    pub since: Option<i64>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    payload: Value,
    /// `auth` also accepts the token at the top level.
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribe {
    channel: String,
    tables: Option<Vec<String>>,
    events: Option<Vec<String>>,
    filter: Option<String>,
    since: Option<i64>,
}

#[derive(Deserialize)]
struct RawChannel {
    channel: String,
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<ClientFrame, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("malformed frame: {e}"))?;
        match raw.kind.as_str() {
            "subscribe" => {
                let s: RawSubscribe = serde_json::from_value(raw.payload).map_err(|e| format!("malformed subscribe: {e}"))?;
                if s.since.is_some_and(|n| n < 0) {
                    return Err("since must be a seq (≥ 0)".into());
                }
                let channel = Channel::parse(&s.channel)?;
                Ok(ClientFrame::Subscribe(SubscribeRequest {
                    channel,
                    tables: s.tables,
                    events: s.events,
                    filter: s.filter,
                    since: s.since,
                }))
            }
            "unsubscribe" => {
                let c: RawChannel = serde_json::from_value(raw.payload).map_err(|e| format!("malformed unsubscribe: {e}"))?;
                Ok(ClientFrame::Unsubscribe(Channel::parse(&c.channel)?))
            }
            "ping" => Ok(ClientFrame::Ping),
            "auth" => {
                let token = raw.token.or_else(|| raw.payload.get("token").and_then(Value::as_str).map(str::to_string));
                token.map(ClientFrame::Auth).ok_or_else(|| "auth needs a token".into())
            }
            other => Err(format!("unknown frame type `{}`", other.chars().take(40).collect::<String>())),
        }
    }
}

pub fn welcome(session_id: &str, tenant_ids: &[String], seq: i64) -> String {
    json!({"type": "welcome", "payload": {"sessionId": session_id, "tenantIds": tenant_ids, "seq": seq}}).to_string()
}

pub fn subscribed(channel: Channel, seq: i64, replay_from: Option<i64>) -> String {
    json!({"type": "subscribed", "payload": {"channel": channel.to_string(), "seq": seq, "since": replay_from}}).to_string()
}

pub fn unsubscribed(channel: Channel, reason: &str) -> String {
    json!({"type": "unsubscribed", "payload": {"channel": channel.to_string(), "reason": reason}}).to_string()
}

pub fn resync_required(channel: Channel, seq: i64, pruned_through: i64) -> String {
    json!({"type": "resync_required", "payload": {"channel": channel.to_string(), "seq": seq, "prunedThrough": pruned_through}}).to_string()
}

pub fn lagging(cursor: i64) -> String {
    json!({"type": "lagging", "payload": {"cursor": cursor}}).to_string()
}

pub fn pong() -> String {
    json!({"type": "pong"}).to_string()
}

pub fn authenticated(expires_at: i64) -> String {
    json!({"type": "authenticated", "payload": {"expiresAt": expires_at}}).to_string()
}

/// An error the session survives; `message` is already in the session's language.
pub fn error(code: &str, message: &str) -> String {
    json!({"type": "error", "payload": {"code": code, "message": message}}).to_string()
}

/// The close reason: short JSON with the resume cursor (≤ 123 bytes).
pub fn close_reason(reason: &str, cursor: i64) -> String {
    json!({"reason": reason, "cursor": cursor}).to_string()
}

/// Picks the text of a message in the session's language.
pub fn tr(lang: Lang, en: &'static str, fr: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Fr => fr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        let t = uuid::Uuid::new_v4();
        let sub = format!(r#"{{"type":"subscribe","payload":{{"channel":"tenant:{t}","tables":["contacts"],"since":5}}}}"#);
        match ClientFrame::parse(&sub).unwrap() {
            ClientFrame::Subscribe(s) => {
                assert_eq!(s.channel, Channel::Tenant(t));
                assert_eq!(s.since, Some(5));
                assert_eq!(s.tables.unwrap(), vec!["contacts".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(ClientFrame::parse(r#"{"type":"ping"}"#), Ok(ClientFrame::Ping)));
        assert!(matches!(ClientFrame::parse(r#"{"type":"auth","payload":{"token":"x"}}"#), Ok(ClientFrame::Auth(t)) if t == "x"));
        assert!(matches!(
            ClientFrame::parse(r#"{"type":"unsubscribe","payload":{"channel":"tenant:*"}}"#),
            Ok(ClientFrame::Unsubscribe(Channel::All))
        ));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        for bad in [
            "",
            "{}",
            "[]",
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","payload":{"channel":"x"}}"#,
            r#"{"type":"subscribe","payload":{"channel":"tenant:*","since":-1}}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"dance"}"#,
        ] {
            assert!(ClientFrame::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn close_reasons_fit_in_a_close_frame() {
        assert!(close_reason("token_expired", i64::MAX).len() <= 123);
    }
}

//! The Phoenix channel framing: serializer 1.0.0 (one JSON object per frame) and 2.0.0 (a JSON
//! array `[join_ref, ref, topic, event, payload]`, plus the binary user-broadcast push of
//! realtime-js). Pure: strings and bytes in, messages and strings out.

use serde::Deserialize;
use serde_json::{Value, json};

/// Serializer version, from `?vsn=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// Phoenix's default is 1.0.0 when the client names none.
    pub fn parse(raw: Option<&str>) -> Result<Vsn, String> {
        match raw {
            None | Some("1.0.0") => Ok(Vsn::V1),
            Some("2.0.0") => Ok(Vsn::V2),
            Some(other) => Err(format!("unsupported serializer vsn `{}`: use 1.0.0 or 2.0.0", other.chars().take(20).collect::<String>())),
        }
    }

    /// An index for per-serializer caches.
    pub fn slot(self) -> usize {
        match self {
            Vsn::V1 => 0,
            Vsn::V2 => 1,
        }
    }
}

/// One client message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    join_ref: Value,
    #[serde(default, rename = "ref")]
    reference: Value,
    topic: String,
    event: String,
    #[serde(default)]
    payload: Value,
}

/// A ref as Phoenix sends it: a string (numbers are accepted and stringified), or null.
fn reference(v: Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= 64 => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err("a ref is a short string or null".into()),
    }
}

/// Decodes a text frame.
pub fn decode_text(vsn: Vsn, text: &str) -> Result<Message, String> {
    let object = match vsn {
        Vsn::V1 => serde_json::from_str::<Object>(text).map_err(|e| format!("malformed frame (serializer 1.0.0 wants an object): {e}"))?,
        Vsn::V2 => {
            let (join_ref, reference, topic, event, payload): (Value, Value, String, String, Value) = serde_json::from_str(text)
                .map_err(|e| format!("malformed frame (serializer 2.0.0 wants [join_ref, ref, topic, event, payload]): {e}"))?;
            Object { join_ref, reference, topic, event, payload }
        }
    };
    Ok(Message {
        join_ref: reference(object.join_ref)?,
        reference: reference(object.reference)?,
        topic: object.topic,
        event: object.event,
        payload: object.payload,
    })
}

/// The binary frame kinds of serializer 2.0.0.
const USER_BROADCAST_PUSH: u8 = 3;
const JSON_ENCODING: u8 = 1;

/// Decodes a binary frame: only 2.0.0's user-broadcast push (kind 3), which realtime-js uses
/// for `channel.send({type: 'broadcast', …})`, with a JSON payload.
pub fn decode_binary(vsn: Vsn, bytes: &[u8]) -> Result<Message, String> {
    if vsn != Vsn::V2 {
        return Err("binary frames need serializer 2.0.0".into());
    }
    let header: &[u8; 7] = bytes.get(..7).and_then(|h| h.try_into().ok()).ok_or("binary frame shorter than its header")?;
    let [kind, join_ref_len, ref_len, topic_len, event_len, meta_len, encoding] = *header;
    if kind != USER_BROADCAST_PUSH {
        return Err(format!("unsupported binary frame kind {kind}"));
    }
    let mut rest = &bytes[7..];
    let mut take = |n: u8| -> Result<String, String> {
        let n = usize::from(n);
        let (head, tail) = (rest.get(..n).ok_or("binary frame truncated")?, rest.get(n..).unwrap_or_default());
        rest = tail;
        String::from_utf8(head.to_vec()).map_err(|_| "binary frame field is not UTF-8".to_string())
    };
    let join_ref = take(join_ref_len)?;
    let reference = take(ref_len)?;
    let topic = take(topic_len)?;
    let event = take(event_len)?;
    let _meta = take(meta_len)?;
    if encoding != JSON_ENCODING {
        return Err("binary broadcast payloads are not supported: send JSON".into());
    }
    let payload: Value = serde_json::from_slice(rest).map_err(|e| format!("broadcast payload is not JSON: {e}"))?;
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    Ok(Message {
        join_ref: non_empty(join_ref),
        reference: non_empty(reference),
        topic,
        event: "broadcast".into(),
        payload: json!({"type": "broadcast", "event": event, "payload": payload}),
    })
}

/// Encodes a server message; `payload` is already JSON text (so shared parts are spliced in,
/// not re-serialized).
pub fn encode(vsn: Vsn, join_ref: Option<&str>, reference: Option<&str>, topic: &str, event: &str, payload: &str) -> String {
    let quote = |s: Option<&str>| s.map_or_else(|| "null".to_string(), |s| Value::from(s).to_string());
    let (join_ref, reference, topic, event) = (quote(join_ref), quote(reference), quote(Some(topic)), quote(Some(event)));
    let mut out = String::with_capacity(payload.len() + topic.len() + event.len() + 64);
    match vsn {
        Vsn::V1 => {
            for (i, (k, v)) in [("join_ref", &join_ref), ("ref", &reference), ("topic", &topic), ("event", &event)].into_iter().enumerate()
            {
                out.push_str(if i == 0 { "{\"" } else { ",\"" });
                out.push_str(k);
                out.push_str("\":");
                out.push_str(v);
            }
            out.push_str(",\"payload\":");
            out.push_str(payload);
            out.push('}');
        }
        Vsn::V2 => {
            out.push('[');
            for v in [&join_ref, &reference, &topic, &event] {
                out.push_str(v);
                out.push(',');
            }
            out.push_str(payload);
            out.push(']');
        }
    }
    out
}

/// `phx_reply` to a message.
pub fn reply(vsn: Vsn, to: &Message, status: &str, response: &Value) -> String {
    let payload = json!({"status": status, "response": response}).to_string();
    encode(vsn, to.join_ref.as_deref(), to.reference.as_deref(), &to.topic, "phx_reply", &payload)
}

/// `phx_reply` with status error and `{reason}`.
pub fn error_reply(vsn: Vsn, to: &Message, reason: &str) -> String {
    reply(vsn, to, "error", &json!({"reason": reason}))
}

/// A server push on a channel.
pub fn push(vsn: Vsn, join_ref: Option<&str>, topic: &str, event: &str, payload: &Value) -> String {
    encode(vsn, join_ref, None, topic, event, &payload.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_serializers_round_trip() {
        let v2 = decode_text(Vsn::V2, r#"["1","2","realtime:room","phx_join",{"config":{}}]"#).unwrap();
        assert_eq!(v2.join_ref.as_deref(), Some("1"));
        assert_eq!(v2.reference.as_deref(), Some("2"));
        assert_eq!(v2.topic, "realtime:room");
        assert_eq!(v2.event, "phx_join");
        let v1 = decode_text(Vsn::V1, r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}"#).unwrap();
        assert_eq!((v1.join_ref.as_deref(), v1.reference.as_deref()), (None, Some("7")));

        let out: Value = serde_json::from_str(&reply(Vsn::V2, &v2, "ok", &json!({}))).unwrap();
        assert_eq!(out, json!(["1", "2", "realtime:room", "phx_reply", {"status": "ok", "response": {}}]));
        let out: Value = serde_json::from_str(&reply(Vsn::V1, &v1, "ok", &json!({}))).unwrap();
        assert_eq!(
            out,
            json!({"join_ref": null, "ref": "7", "topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}}})
        );
        let quoted: Value = serde_json::from_str(&encode(Vsn::V2, None, None, "realtime:\"x\"", "e", "{}")).unwrap();
        assert_eq!(quoted[2], "realtime:\"x\"");
    }

    #[test]
    fn malformed_frames_are_errors() {
        for (vsn, bad) in [
            (Vsn::V2, ""),
            (Vsn::V2, "{}"),
            (Vsn::V2, "[1,2,3]"),
            (Vsn::V2, r#"[null,null,5,"e",{}]"#),
            (Vsn::V2, r#"[{},null,"t","e",{}]"#),
            (Vsn::V1, "[]"),
            (Vsn::V1, r#"{"topic":"t"}"#),
        ] {
            assert!(decode_text(vsn, bad).is_err(), "{bad}");
        }
        assert!(Vsn::parse(Some("3.0.0")).is_err());
        assert_eq!(Vsn::parse(None), Ok(Vsn::V1));
    }

    fn binary_push(topic: &str, event: &str, payload: &[u8], encoding: u8) -> Vec<u8> {
        let mut b = vec![3, 1, 1, topic.len() as u8, event.len() as u8, 0, encoding];
        b.extend_from_slice(b"45");
        b.extend_from_slice(topic.as_bytes());
        b.extend_from_slice(event.as_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn binary_user_broadcast_push() {
        let m = decode_binary(Vsn::V2, &binary_push("realtime:room", "shout", br#"{"a":1}"#, 1)).unwrap();
        assert_eq!(m.event, "broadcast");
        assert_eq!(m.reference.as_deref(), Some("5"));
        assert_eq!(m.payload, json!({"type": "broadcast", "event": "shout", "payload": {"a": 1}}));
        assert!(decode_binary(Vsn::V1, &binary_push("t", "e", b"{}", 1)).is_err());
        assert!(decode_binary(Vsn::V2, &binary_push("t", "e", b"\x00\x01", 0)).is_err());
        assert!(decode_binary(Vsn::V2, &[3, 200, 0, 0, 0, 0, 1]).is_err(), "lengths past the end");
        assert!(decode_binary(Vsn::V2, &[9, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(decode_binary(Vsn::V2, &[3]).is_err());
    }
}

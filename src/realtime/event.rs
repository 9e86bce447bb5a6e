//! One event of `app.events`, decoded once from its JSON (a notification, the relay or a
//! replay) and serialized into a WebSocket frame at most once per language, lazily.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tungstenite::Utf8Bytes;
use uuid::Uuid;

use crate::i18n::Lang;

/// The three roles of SPEC §3.2, as an audience bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    PlatformAdmin,
    TenantAdmin,
    TenantUser,
}

impl Role {
    pub fn parse(role: &str) -> Option<Role> {
        match role {
            "platform_admin" => Some(Role::PlatformAdmin),
            "tenant_admin" => Some(Role::TenantAdmin),
            "tenant_user" => Some(Role::TenantUser),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::TenantAdmin => "tenant_admin",
            Role::TenantUser => "tenant_user",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::PlatformAdmin => 1,
            Role::TenantAdmin => 2,
            Role::TenantUser => 4,
        }
    }
}

/// What a `rowcast_events` notification carries: one notification per transaction
/// (`app.rowcast_flush`, migration V60), whose events have the consecutive seqs `first..=seq`.
#[derive(Debug)]
pub enum Notice {
    /// A transaction with one event, whole.
    Full(Box<Event>),
    /// A transaction's events, whole, in seq order (`first` to `last`, consecutive).
    Batch { first: i64, last: i64, events: Vec<Event> },
    /// Too large to carry (a large row, or many events): only the range's last seq; the
    /// relay reads the events back from `app.events`.
    Stub { seq: i64 },
}

#[derive(Deserialize)]
struct Wire {
    seq: i64,
    tenant_id: Option<Uuid>,
    #[serde(default)]
    big: bool,
    first: Option<i64>,
    events: Option<Vec<Wire>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    table: Option<String>,
    op: Option<String>,
    row: Option<Value>,
    old: Option<Value>,
    audience: Option<Vec<String>>,
    created_at: Option<String>,
}

/// A decoded event, shared by every session that receives it.
#[derive(Debug)]
pub struct Event {
    pub seq: i64,
    pub tenant_id: Option<Uuid>,
    pub kind: String,
    pub table: String,
    pub op: String,
    pub row: Value,
    pub old: Value,
    audience: u8,
    pub created_at: String,
    frames: [OnceLock<Utf8Bytes>; 2],
    /// The Phoenix protocol's shared parts (`realtime::phoenix::changes`).
    pub(crate) phoenix: super::phoenix::changes::PhxCache,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: i64,
    tenant_id: Option<Uuid>,
    table: &'a str,
    payload: &'a Value,
    old: &'a Value,
    timestamp: &'a str,
    language: &'a str,
}

impl Notice {
    /// Decodes a notification payload (or a relay row: the same JSON shape).
    pub fn decode(json: &str) -> Result<Notice, String> {
        let wire: Wire = serde_json::from_str(json).map_err(|e| format!("undecodable event: {e}"))?;
        if wire.big {
            return Ok(Notice::Stub { seq: wire.seq });
        }
        if let Some(events) = wire.events {
            let (first, last) = (wire.first.unwrap_or(wire.seq), wire.seq);
            let events = events.into_iter().map(Event::from_wire).collect::<Result<Vec<_>, _>>()?;
            let consecutive = events.iter().zip(first..).all(|(e, seq)| e.seq == seq) && first + events.len() as i64 - 1 == last;
            if !consecutive {
                return Err(format!("batch {first}..={last} does not hold its consecutive events"));
            }
            return Ok(Notice::Batch { first, last, events });
        }
        Event::from_wire(wire).map(|e| Notice::Full(Box::new(e)))
    }

    /// The last seq the notification announces.
    pub fn seq(&self) -> i64 {
        match self {
            Notice::Full(e) => e.seq,
            Notice::Batch { last, .. } => *last,
            Notice::Stub { seq } => *seq,
        }
    }
}

impl Event {
    /// Decodes a complete event (relay and replay rows are never stubs).
    pub fn decode(json: &str) -> Result<Event, String> {
        match Notice::decode(json)? {
            Notice::Full(e) => Ok(*e),
            Notice::Batch { first, last, .. } => Err(format!("events {first}..={last} came back as a batch")),
            Notice::Stub { seq } => Err(format!("event {seq} came back as a stub")),
        }
    }

    fn from_wire(w: Wire) -> Result<Event, String> {
        let missing = |what: &str| format!("event {} has no {what}", w.seq);
        let audience = w.audience.ok_or_else(|| missing("audience"))?;
        Ok(Event {
            seq: w.seq,
            tenant_id: w.tenant_id,
            kind: w.kind.ok_or_else(|| missing("type"))?,
            table: w.table.ok_or_else(|| missing("table"))?,
            op: w.op.unwrap_or_default(),
            row: w.row.unwrap_or(Value::Null),
            old: w.old.unwrap_or(Value::Null),
            audience: audience.iter().filter_map(|r| Role::parse(r)).fold(0, |bits, r| bits | r.bit()),
            created_at: w.created_at.unwrap_or_default(),
            frames: Default::default(),
            phoenix: Default::default(),
        })
    }

    /// May a reader with this role receive the event?
    pub fn visible_to(&self, role: Role) -> bool {
        self.audience & role.bit() != 0
    }

    /// The text frame in `lang`, serialized on first use and shared afterwards: cloning it
    /// bumps a reference count, so every session sends the same bytes.
    pub fn frame(&self, lang: Lang) -> Utf8Bytes {
        let slot = match lang {
            Lang::En => &self.frames[0],
            Lang::Fr => &self.frames[1],
        };
        slot.get_or_init(|| {
            let frame = Frame {
                kind: &self.kind,
                seq: self.seq,
                tenant_id: self.tenant_id,
                table: &self.table,
                payload: &self.row,
                old: &self.old,
                timestamp: &self.created_at,
                language: lang.code(),
            };
            Utf8Bytes::from(serde_json::to_string(&frame).unwrap_or_default())
        })
        .clone()
    }

    /// Milliseconds from the commit that produced the event until now.
    pub fn age_ms(&self) -> Option<f64> {
        let at = chrono::DateTime::parse_from_rfc3339(&self.created_at).ok()?;
        let ms = (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_microseconds()? as f64 / 1000.0;
        Some(ms.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"seq": 7, "tenant_id": "7f1e7d52-8d6b-4b5e-9d8e-0c1a2b3c4d5e", "type": "contact_updated",
        "table": "contacts", "op": "UPDATE", "row_id": "x", "row": {"id": "x", "first_name": "Bo"},
        "old": {"first_name": "Bob"}, "audience": ["tenant_admin", "tenant_user"], "actor": null,
        "created_at": "2026-01-02T03:04:05.000006Z"}"#;

    #[test]
    fn full_events_decode_and_serialize_once_per_language() {
        let Notice::Full(e) = Notice::decode(FULL).unwrap() else { panic!("not a full event") };
        assert!(e.visible_to(Role::TenantUser));
        assert!(!e.visible_to(Role::PlatformAdmin));
        let en = e.frame(Lang::En);
        assert_eq!(en.as_str().as_ptr(), e.frame(Lang::En).as_str().as_ptr(), "the frame is shared, not rebuilt");
        let v: Value = serde_json::from_str(&en).unwrap();
        assert_eq!(v["type"], "contact_updated");
        assert_eq!(v["tenantId"], "7f1e7d52-8d6b-4b5e-9d8e-0c1a2b3c4d5e");
        assert_eq!(v["payload"]["first_name"], "Bo");
        assert_eq!(v["old"]["first_name"], "Bob");
        assert_eq!(v["timestamp"], "2026-01-02T03:04:05.000006Z");
        assert_eq!(v["language"], "en");
        let fr: Value = serde_json::from_str(&e.frame(Lang::Fr)).unwrap();
        assert_eq!(fr["language"], "fr");
    }

    #[test]
    fn stubs_and_garbage() {
        assert!(matches!(Notice::decode(r#"{"seq": 9, "tenant_id": null, "big": true}"#), Ok(Notice::Stub { seq: 9 })));
        assert!(Notice::decode("not json").is_err());
        assert!(Notice::decode(r#"{"seq": 9}"#).is_err());
        // A range stub (V60): the relay reads up to its last seq.
        assert!(matches!(Notice::decode(r#"{"seq": 12, "first": 3, "tenant_id": null, "big": true}"#), Ok(Notice::Stub { seq: 12 })));
    }

    #[test]
    fn batches_decode_in_order_and_must_be_consecutive() {
        let one = |seq: i64, kind: &str| {
            format!(
                r#"{{"seq": {seq}, "tenant_id": null, "type": "{kind}", "table": "campaigns", "op": "UPDATE", "row": {{}}, "old": null,
                   "audience": ["platform_admin"], "created_at": "2026-01-02T03:04:05.000006Z"}}"#
            )
        };
        let batch =
            format!(r#"{{"seq": 8, "first": 7, "events": [{}, {}]}}"#, one(7, "campaign_updated"), one(8, "campaign_status_changed"));
        let Ok(Notice::Batch { first: 7, last: 8, events }) = Notice::decode(&batch) else { panic!("not a batch") };
        assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["campaign_updated", "campaign_status_changed"]);
        let holed = format!(r#"{{"seq": 9, "first": 7, "events": [{}, {}]}}"#, one(7, "a"), one(9, "b"));
        assert!(Notice::decode(&holed).is_err());
        assert!(Event::decode(&batch).is_err(), "relay rows are single events");
    }
}

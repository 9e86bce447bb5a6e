//! `postgres_changes`: the bindings of a `phx_join`, checked against what the subscriber may
//! see, and the change messages built from rowcast's events.
//!
//! Serialization: the `data` object of a change (schema, table, commit_timestamp, type,
//! columns, record, old_record) is the same for every subscriber, so it is built once per
//! event and shared. A whole frame also carries the topic and the matching binding ids, which
//! differ between channels; binding ids are a hash of the binding (as Supabase's are), so
//! sessions that subscribed the same way on the same topic share the same frame. The event
//! keeps up to [`FRAME_SHAPES`] frames; a session whose (serializer, topic, ids) is not among
//! them splices the shared `data` into a fresh frame (one allocation and a copy, no JSON
//! serialization).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use serde_json::{Map, Value, json};
use tungstenite::Utf8Bytes;

use super::codec::{self, Vsn};
use crate::realtime::event::{Event, Role};
use crate::realtime::filter;
use crate::rest::catalog::Catalog;
use crate::rest::query::{CmpOp, Filter, Operation};

/// Frames kept per event, one per (serializer, topic, binding ids).
pub const FRAME_SHAPES: usize = 8;
/// Bindings one channel may hold.
pub const MAX_BINDINGS: usize = 32;

/// A captured table as `app.realtime_tables` describes it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub audience: Vec<String>,
    pub redact: Vec<String>,
}

/// One `postgres_changes` binding of a channel.
#[derive(Debug, Clone)]
pub struct Binding {
    pub id: u32,
    /// `None` for `*`.
    op: Option<&'static str>,
    pub table: Option<String>,
    filter: Vec<Filter>,
    /// What the join reply echoes: the client's fields and the id.
    pub echo: Value,
}

#[derive(Deserialize)]
struct RawBinding {
    event: String,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    filter: Option<String>,
}

impl Binding {
    /// Validates one requested binding for a subscriber of `role`.
    pub fn parse(raw: &Value, role: Role, captured: &HashMap<String, Captured>, catalog: &Catalog) -> Result<Binding, String> {
        let spec: RawBinding = serde_json::from_value(raw.clone())
            .map_err(|e| format!("a postgres_changes binding is {{event, schema, table?, filter?}}: {e}"))?;
        let op = match spec.event.to_ascii_uppercase().as_str() {
            "*" => None,
            "INSERT" => Some("INSERT"),
            "UPDATE" => Some("UPDATE"),
            "DELETE" => Some("DELETE"),
            _ => return Err(format!("unknown event `{}`: use *, INSERT, UPDATE or DELETE", short(&spec.event))),
        };
        let schema = spec.schema.as_deref().unwrap_or("public");
        if schema != "public" {
            return Err(format!("schema `{}` is not available: rowcast serves the public schema", short(schema)));
        }
        let table = spec.table.as_deref().filter(|t| *t != "*");
        if let Some(t) = table {
            let visible = captured.get(t).is_some_and(|c| c.audience.iter().any(|r| r == role.as_str())) && catalog.table(t).is_some();
            if !visible {
                return Err(format!("table `{}` does not exist or its changes are not visible to you", short(t)));
            }
        }
        let filter = match spec.filter.as_deref().filter(|f| !f.is_empty()) {
            None => Vec::new(),
            Some(f) => {
                let t = table.ok_or("a filter needs a table")?;
                let filters = parse_filter(f)?;
                check_columns(&filters, t, captured, catalog)?;
                filters
            }
        };
        let mut echo = Map::new();
        for key in ["event", "schema", "table", "filter"] {
            if let Some(v) = raw.get(key) {
                echo.insert(key.into(), v.clone());
            }
        }
        let id = binding_id(&spec.event, schema, spec.table.as_deref(), spec.filter.as_deref());
        echo.insert("id".into(), id.into());
        Ok(Binding { id, op, table: table.map(str::to_string), filter, echo: Value::Object(echo) })
    }

    /// Does the change concern this binding? (Tenant and audience were checked by the hub.)
    pub fn matches(&self, event: &Event) -> bool {
        self.op.is_none_or(|op| op == event.op)
            && self.table.as_ref().is_none_or(|t| *t == event.table)
            && (self.filter.is_empty() || filter::matches(&self.filter, &event.row))
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A stable id per distinct binding (FNV-1a over its fields).
fn binding_id(event: &str, schema: &str, table: Option<&str>, filter: Option<&str>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in [event, schema, table.unwrap_or(""), filter.unwrap_or("")] {
        for b in part.bytes().chain([0xff]) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h & 0x7fff_ffff
}

/// Supabase's filter syntax, `col=op.value` joined by commas (AND), with `eq neq lt lte gt gte
/// in is`, parsed by the shared PostgREST filter grammar.
pub fn parse_filter(raw: &str) -> Result<Vec<Filter>, String> {
    let mut query = String::new();
    for part in split_top_level(raw) {
        let (column, operation) = part.split_once('=').ok_or_else(|| format!("filter `{}` is not col=op.value", short(part)))?;
        if !query.is_empty() {
            query.push('&');
        }
        query.extend(form_urlencoded::byte_serialize(column.trim().as_bytes()));
        query.push('=');
        query.extend(form_urlencoded::byte_serialize(operation.as_bytes()));
    }
    let filters = filter::parse(&query)?;
    for f in &filters {
        let allowed = match f {
            Filter::Condition(c) => !c.negated && !matches!(c.operation, Operation::Cmp(CmpOp::Like | CmpOp::ILike, _)),
            Filter::Logic(_) => false,
        };
        if !allowed {
            return Err(format!("filter `{}`: the operators are eq, neq, lt, lte, gt, gte, in and is", short(raw)));
        }
    }
    Ok(filters)
}

/// Splits on commas outside parentheses (`id=in.(1,2),status=eq.x`).
fn split_top_level(raw: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&raw[start..]);
    parts
}

/// Filters may only name columns the subscriber receives: not redacted, selectable.
fn check_columns(filters: &[Filter], table: &str, captured: &HashMap<String, Captured>, catalog: &Catalog) -> Result<(), String> {
    let redact = captured.get(table).map(|c| c.redact.as_slice()).unwrap_or_default();
    let columns = catalog.table(table).map(|t| t.columns.as_slice()).unwrap_or_default();
    for f in filters {
        let Filter::Condition(c) = f else { continue };
        let name = c.column.as_str();
        let known = columns.iter().any(|col| col.name == name && col.can_select) && !redact.iter().any(|r| r == name);
        if !known {
            return Err(format!("filter column `{}` does not exist in `{table}` or is not visible", short(name)));
        }
    }
    Ok(())
}

/// Is the event a row change (as opposed to `campaign_status_changed`, `webhook_triggered`)?
pub fn is_row_change(event: &Event) -> bool {
    matches!(event.op.as_str(), "INSERT" | "UPDATE" | "DELETE")
        && [("_created", "INSERT"), ("_updated", "UPDATE"), ("_deleted", "UPDATE"), ("_deleted", "DELETE")]
            .iter()
            .any(|(suffix, op)| event.kind.ends_with(suffix) && event.op == *op)
}

/// One cached frame: its serializer, topic and binding ids.
type Shape = (Vsn, Box<str>, Vec<u32>, Utf8Bytes);

/// What an event keeps for Phoenix sessions.
#[derive(Debug, Default)]
pub struct PhxCache {
    data: OnceLock<Box<str>>,
    frames: Mutex<Vec<Shape>>,
}

/// The `data` of a change: built once per event.
fn data(event: &Event, catalog: impl FnOnce() -> Arc<Catalog>) -> &str {
    event.phoenix.data.get_or_init(|| {
        let catalog = catalog();
        let empty = Value::Object(Map::new());
        let (record, old_record) = match event.op.as_str() {
            "INSERT" => (event.row.clone(), empty),
            "DELETE" => (empty, event.row.clone()),
            _ => (event.row.clone(), previous_row(&event.row, &event.old)),
        };
        let present = |name: &str| record.get(name).is_some() || old_record.get(name).is_some();
        let columns: Vec<Value> = catalog
            .table(&event.table)
            .map(|t| t.columns.iter().filter(|c| present(&c.name)).map(|c| json!({"name": c.name, "type": c.base})).collect())
            .unwrap_or_default();
        json!({
            "schema": "public",
            "table": event.table,
            "commit_timestamp": event.created_at,
            "type": event.op,
            "columns": columns,
            "record": record,
            "old_record": old_record,
            "errors": null,
        })
        .to_string()
        .into_boxed_str()
    })
}

/// The full previous row of an update: the new row with the changed columns' old values
/// (`app.events.old` holds exactly those, redacted columns never included).
fn previous_row(row: &Value, old: &Value) -> Value {
    let mut prev = row.as_object().cloned().unwrap_or_default();
    if let Some(changed) = old.as_object() {
        for (k, v) in changed {
            prev.insert(k.clone(), v.clone());
        }
    }
    Value::Object(prev)
}

/// The `postgres_changes` frame for a channel: shared when another session of the same shape
/// already asked for it.
pub fn frame(event: &Event, catalog: impl FnOnce() -> Arc<Catalog>, vsn: Vsn, topic: &str, ids: &[u32]) -> Utf8Bytes {
    let data = data(event, catalog);
    let mut frames = event.phoenix.frames.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, _, f)) = frames.iter().find(|(v, t, i, _)| *v == vsn && &**t == topic && i == ids) {
        return f.clone();
    }
    let ids_json = Value::from(ids.to_vec()).to_string();
    let mut payload = String::with_capacity(data.len() + ids_json.len() + 20);
    payload.push_str("{\"ids\":");
    payload.push_str(&ids_json);
    payload.push_str(",\"data\":");
    payload.push_str(data);
    payload.push('}');
    let built = Utf8Bytes::from(codec::encode(vsn, None, None, topic, "postgres_changes", &payload));
    if frames.len() < FRAME_SHAPES {
        frames.push((vsn, topic.into(), ids.to_vec(), built.clone()));
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::event::Notice;

    fn event(op: &str, kind: &str, row: Value, old: Value) -> Event {
        let json = json!({"seq": 1, "tenant_id": null, "type": kind, "table": "contacts", "op": op, "row": row, "old": old,
                          "audience": ["tenant_user"], "created_at": "2026-01-02T03:04:05.000006+00:00"});
        match Notice::decode(&json.to_string()).unwrap() {
            Notice::Full(e) => *e,
            other => panic!("one event decodes whole: {other:?}"),
        }
    }

    #[test]
    fn supabase_filters_parse_and_match() {
        let row = json!({"first_name": "Ann", "n": 5, "tag": null});
        let m = |f: &str| filter::matches(&parse_filter(f).unwrap(), &row);
        assert!(m("first_name=eq.Ann"));
        assert!(!m("first_name=neq.Ann"));
        assert!(m("n=gt.4,n=lte.5"), "commas are AND");
        assert!(!m("n=gt.4,first_name=eq.Bob"));
        assert!(m("n=in.(1,5,9),first_name=eq.Ann"), "commas inside in.() belong to the list");
        assert!(m("tag=is.null"));
        assert!(filter::matches(&parse_filter("first_name=eq.A&B").unwrap(), &json!({"first_name": "A&B"})), "& is part of the value");
        for bad in ["first_name", "first_name=like.A*", "first_name=not.eq.A", "or=(a.eq.1)", "x=zz.1"] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn updates_carry_the_full_previous_row_and_deletes_the_old_one() {
        let e = event("UPDATE", "contact_updated", json!({"id": "c", "first_name": "Bo", "phone": "1"}), json!({"first_name": "Bob"}));
        let catalog = || Arc::new(Catalog::default());
        let d: Value = serde_json::from_str(data(&e, catalog)).unwrap();
        assert_eq!(d["type"], "UPDATE");
        assert_eq!(d["record"], json!({"id": "c", "first_name": "Bo", "phone": "1"}));
        assert_eq!(d["old_record"], json!({"id": "c", "first_name": "Bob", "phone": "1"}));
        assert_eq!(d["errors"], Value::Null);
        let gone = event("DELETE", "contact_deleted", json!({"id": "c"}), Value::Null);
        let d: Value = serde_json::from_str(data(&gone, catalog)).unwrap();
        assert_eq!((d["record"].clone(), d["old_record"].clone()), (json!({}), json!({"id": "c"})));
    }

    #[test]
    fn frames_are_shared_per_shape() {
        let e = event("INSERT", "contact_created", json!({"id": "c"}), Value::Null);
        let catalog = || Arc::new(Catalog::default());
        let a = frame(&e, catalog, Vsn::V2, "realtime:room", &[1, 2]);
        let b = frame(&e, catalog, Vsn::V2, "realtime:room", &[1, 2]);
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v[0], Value::Null);
        assert_eq!(v[2], "realtime:room");
        assert_eq!(v[3], "postgres_changes");
        assert_eq!(v[4]["ids"], json!([1, 2]));
        assert_eq!(v[4]["data"]["record"], json!({"id": "c"}));
        let other = frame(&e, catalog, Vsn::V1, "realtime:room", &[1, 2]);
        assert_ne!(a.as_str().as_ptr(), other.as_str().as_ptr());
    }

    #[test]
    fn only_row_changes_are_postgres_changes() {
        assert!(is_row_change(&event("INSERT", "contact_created", json!({}), Value::Null)));
        assert!(is_row_change(&event("UPDATE", "contact_deleted", json!({}), Value::Null)), "soft delete is an UPDATE");
        assert!(!is_row_change(&event("UPDATE", "campaign_status_changed", json!({}), Value::Null)));
        assert!(!is_row_change(&event("INSERT", "webhook_triggered", json!({}), Value::Null)));
    }

    #[test]
    fn binding_ids_are_stable_and_distinct() {
        assert_eq!(binding_id("*", "public", Some("contacts"), None), binding_id("*", "public", Some("contacts"), None));
        assert_ne!(binding_id("*", "public", Some("contacts"), None), binding_id("INSERT", "public", Some("contacts"), None));
        assert_ne!(binding_id("*", "public", Some("ab"), Some("c")), binding_id("*", "public", Some("a"), Some("bc")));
    }
}

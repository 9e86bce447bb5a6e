//! Request bodies: read with a size cap (413), parsed as JSON (400 when malformed), NUL
//! characters refused (PostgreSQL text cannot hold them), and the shape checked
//! (an object, or an array of objects with the same keys, as PostgREST requires).

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::Value;

use super::errors;
use crate::error::ApiError;

/// How much more than the limit is read and discarded, so the client can finish sending
/// and actually see the 413 instead of a reset connection.
const DRAIN_BEYOND_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads the whole body, or answers 413 when it is over `limit` bytes.
pub async fn read_limited<S, B>(stream: S, limit: u64, content_length: Option<u64>) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    let mut buf = BytesMut::new();
    let mut seen: u64 = 0;
    let too_big = content_length.is_some_and(|n| n > limit);
    if too_big && content_length.is_some_and(|n| n > limit + DRAIN_BEYOND_LIMIT) {
        return Err(errors::body_too_large(limit));
    }
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| errors::bad(format!("cannot read the request body: {e}"), "impossible de lire le corps de la requête"))?;
        seen += chunk.remaining() as u64;
        if seen > limit + DRAIN_BEYOND_LIMIT {
            break;
        }
        if too_big || seen > limit {
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    match too_big || seen > limit {
        true => Err(errors::body_too_large(limit)),
        false => Ok(buf.freeze()),
    }
}

/// Parses JSON, refusing malformed input and NUL characters anywhere.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        errors::bad(format!("malformed JSON body: {e}"), format!("corps JSON mal formé : {e}"))
            .with_hint("Send a JSON object or an array of objects.")
    })?;
    if has_nul(&value) {
        return Err(errors::bad(
            "JSON strings must not contain the NUL character (\\u0000)",
            "les chaînes JSON ne doivent pas contenir le caractère NUL (\\u0000)",
        ));
    }
    Ok(value)
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Rows to insert: always a JSON array of objects, with the first object's keys.
#[derive(Debug)]
pub struct Rows {
    /// The JSON array text bound as the statement's `$1`.
    pub json: String,
    pub keys: Vec<String>,
    pub count: usize,
}

/// An insert body: an object, or an array of objects. Without `columns=`, every object must
/// have the same keys (PostgREST's rule); with it, keys outside the list are ignored.
pub fn insert_rows(bytes: &[u8], has_columns_param: bool) -> Result<Rows, ApiError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| errors::bad("request body is not UTF-8", "le corps de la requête n'est pas en UTF-8"))?;
    let value = parse_json(bytes)?;
    let (objects, json) = match &value {
        Value::Object(_) => (std::slice::from_ref(&value), format!("[{text}]")),
        Value::Array(items) => (items.as_slice(), text.to_string()),
        _ => return Err(not_objects()),
    };
    let mut keys: Option<Vec<&String>> = None;
    for item in objects {
        let Value::Object(map) = item else { return Err(not_objects()) };
        let mut these: Vec<&String> = map.keys().collect();
        these.sort_unstable();
        match &keys {
            None => keys = Some(these),
            Some(first) if !has_columns_param && *first != these => {
                return Err(ApiError::new(
                    warp::http::StatusCode::BAD_REQUEST,
                    "PGRST102",
                    "all object keys must match",
                    "tous les objets doivent avoir les mêmes clés",
                )
                .with_hint("Give every object the same keys, or list them in the columns= parameter."));
            }
            Some(_) => {}
        }
    }
    let keys = keys.unwrap_or_default().into_iter().cloned().collect();
    Ok(Rows { json, keys, count: objects.len() })
}

/// An update body: exactly one object. Gives its JSON text and keys.
pub fn update_object(bytes: &[u8]) -> Result<(String, Vec<String>), ApiError> {
    let value = parse_json(bytes)?;
    let Value::Object(map) = &value else {
        return Err(errors::bad("PATCH body must be one JSON object", "le corps d'un PATCH doit être un objet JSON"));
    };
    let keys = map.keys().cloned().collect();
    let text = String::from_utf8_lossy(bytes).into_owned();
    Ok((text, keys))
}

fn not_objects() -> ApiError {
    errors::bad("body must be a JSON object or an array of objects", "le corps doit être un objet JSON ou un tableau d'objets")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<&'static [u8]>) -> impl Stream<Item = Result<Bytes, warp::Error>> {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p))))
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413_with_or_without_content_length() {
        let ok = read_limited(chunks(vec![b"ab", b"cd"]), 4, None).await.unwrap();
        assert_eq!(&ok[..], b"abcd");
        let e = read_limited(chunks(vec![b"ab", b"cde"]), 4, None).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
        let e = read_limited(chunks(vec![b"ab"]), 4, Some(5)).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
    }

    #[test]
    fn malformed_json_and_nul_characters_are_400() {
        assert_eq!(parse_json(b"{").unwrap_err().status.as_u16(), 400);
        assert_eq!(parse_json(b"").unwrap_err().status.as_u16(), 400);
        assert_eq!(parse_json(br#"{"a":"x\u0000y"}"#).unwrap_err().status.as_u16(), 400);
        assert_eq!(parse_json(br#"{"a\u0000":1}"#).unwrap_err().status.as_u16(), 400);
        assert_eq!(parse_json(br#"[{"a":["\u0000"]}]"#).unwrap_err().status.as_u16(), 400);
        assert!(parse_json(br#"{"a":"\u0001"}"#).is_ok());
    }

    #[test]
    fn insert_bodies_are_objects_or_arrays_of_objects_with_matching_keys() {
        let r = insert_rows(br#"{"b":1,"a":2}"#, false).unwrap();
        assert_eq!(r.json, r#"[{"b":1,"a":2}]"#);
        assert_eq!(r.keys, ["a", "b"]);
        let r = insert_rows(br#"[{"a":1},{"a":2}]"#, false).unwrap();
        assert_eq!(r.count, 2);
        assert_eq!(insert_rows(br#"[{"a":1},{"b":2}]"#, false).unwrap_err().code, "PGRST102");
        assert!(insert_rows(br#"[{"a":1},{"b":2}]"#, true).is_ok());
        assert_eq!(insert_rows(b"[1]", false).unwrap_err().status.as_u16(), 400);
        assert_eq!(insert_rows(b"5", false).unwrap_err().status.as_u16(), 400);
        assert_eq!(insert_rows(b"[]", false).unwrap().count, 0);
    }

    #[test]
    fn update_bodies_are_one_object() {
        assert_eq!(update_object(br#"{"a":1}"#).unwrap().1, ["a"]);
        assert_eq!(update_object(br#"[{"a":1}]"#).unwrap_err().status.as_u16(), 400);
    }
}

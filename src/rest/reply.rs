//! Responses as PostgREST shapes them: JSON text from the database passed through untouched,
//! `Content-Range` (`0-9/42`, `0-9/*`, `*/0`), 200/206/416 for reads, `Preference-Applied`.

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors;
use super::query::{CountPref, MissingPref, Prefer, Resolution, ReturnPref, TxPref};
use crate::error::ApiError;

const JSON: &str = "application/json; charset=utf-8";
const OBJECT: &str = "application/vnd.pgrst.object+json; charset=utf-8";

pub struct Reply {
    pub status: StatusCode,
    /// JSON text; `None` for no body (204, `return=minimal`, HEAD).
    pub body: Option<String>,
    pub singular: bool,
    /// The body is CSV (`text/csv`).
    pub csv: bool,
    pub content_range: Option<String>,
    pub applied: Vec<&'static str>,
}

impl Reply {
    pub fn new(status: StatusCode, body: Option<String>) -> Reply {
        Reply { status, body, singular: false, csv: false, content_range: None, applied: Vec::new() }
    }

    pub fn into_response(self) -> Response {
        let has_body = self.body.is_some();
        let mut response = Response::new(self.body.unwrap_or_default().into());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if has_body {
            let ct = match (self.csv, self.singular) {
                (true, _) => "text/csv; charset=utf-8",
                (false, true) => OBJECT,
                (false, false) => JSON,
            };
            headers.insert("content-type", HeaderValue::from_static(ct));
        }
        if let Some(range) = self.content_range.and_then(|r| HeaderValue::from_str(&r).ok()) {
            headers.insert("content-range", range);
        }
        if !self.applied.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.applied.join(", "))
        {
            headers.insert("preference-applied", v);
        }
        response
    }
}

/// `lower-upper/total` as PostgREST writes it: `*` for an empty page, `*` for an unknown total.
pub fn range_header(lower: i64, rows: i64, total: Option<i64>) -> String {
    let upper = lower.saturating_add(rows) - 1;
    let range = match total != Some(0) && rows > 0 {
        true => format!("{lower}-{upper}"),
        false => "*".to_string(),
    };
    let total = total.map_or("*".to_string(), |t| t.to_string());
    format!("{range}/{total}")
}

/// Status and `Content-Range` of a read: 206 when the page is part of a known total, 416
/// (an error response carrying `Content-Range: */total`) when the offset is past it.
pub fn read_status(offset: i64, rows: i64, total: Option<i64>) -> Result<(StatusCode, String), Response> {
    let header = range_header(offset, rows, total);
    match total {
        Some(t) if offset > t => {
            let err = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "PGRST103",
                "Requested range not satisfiable",
                "plage demandée impossible à satisfaire",
            )
            .with_details(format!("An offset of {offset} was requested, but there are only {t} rows."));
            let mut response = err.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("*/{t}")) {
                response.headers_mut().insert("content-range", v);
            }
            Err(response)
        }
        Some(t) if rows < t => Ok((StatusCode::PARTIAL_CONTENT, header)),
        _ => Ok((StatusCode::OK, header)),
    }
}

/// The one object of a one-row JSON array (`[{…}]` → `{…}`), or 406.
pub fn single(array: &str, rows: i64) -> Result<String, ApiError> {
    let trimmed = array.trim();
    match rows == 1 && trimmed.len() >= 2 {
        true => Ok(trimmed[1..trimmed.len() - 1].trim().to_string()),
        false => Err(errors::not_singular(rows)),
    }
}

/// Preferences honoured, for `Preference-Applied`.
pub fn applied(prefer: &Prefer, write: bool) -> Vec<&'static str> {
    let mut out = Vec::new();
    if write {
        match prefer.return_pref {
            Some(ReturnPref::Representation) => out.push("return=representation"),
            Some(ReturnPref::Minimal) => out.push("return=minimal"),
            Some(ReturnPref::HeadersOnly) => out.push("return=headers-only"),
            None => {}
        }
        match prefer.resolution {
            Some(Resolution::MergeDuplicates) => out.push("resolution=merge-duplicates"),
            Some(Resolution::IgnoreDuplicates) => out.push("resolution=ignore-duplicates"),
            None => {}
        }
        if prefer.missing == Some(MissingPref::Default) {
            out.push("missing=default");
        }
    }
    match prefer.tx {
        Some(TxPref::Rollback) => out.push("tx=rollback"),
        Some(TxPref::Commit) => out.push("tx=commit"),
        None => {}
    }
    if prefer.count.is_some() {
        out.push(match prefer.count {
            Some(CountPref::Planned) => "count=planned",
            Some(CountPref::Estimated) => "count=estimated",
            _ => "count=exact",
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_follow_postgrest() {
        assert_eq!(range_header(0, 10, Some(42)), "0-9/42");
        assert_eq!(range_header(0, 2, None), "0-1/*");
        assert_eq!(range_header(0, 0, None), "*/*");
        assert_eq!(range_header(0, 0, Some(0)), "*/0");
        assert_eq!(range_header(5, 3, Some(8)), "5-7/8");
    }

    #[test]
    fn partial_pages_are_206_and_offsets_past_the_end_416() {
        assert_eq!(read_status(0, 10, Some(42)).unwrap().0, StatusCode::PARTIAL_CONTENT);
        assert_eq!(read_status(0, 42, Some(42)).unwrap().0, StatusCode::OK);
        assert_eq!(read_status(0, 10, None).unwrap().0, StatusCode::OK);
        assert_eq!(read_status(0, 0, Some(0)).unwrap().0, StatusCode::OK);
        let r = read_status(50, 0, Some(42)).unwrap_err();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers()["content-range"], "*/42");
    }

    #[test]
    fn singular_bodies_unwrap_exactly_one_row() {
        assert_eq!(single("[{\"a\":1}]", 1).unwrap(), "{\"a\":1}");
        assert_eq!(single("[]", 0).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(single("[{}, \n {}]", 2).unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
    }
}

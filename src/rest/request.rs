//! One REST request as the handlers see it: the resource, the PostgREST query string (without
//! rowcast's own `tenantId`), and typed views of the headers PostgREST clients send
//! (`Prefer`, `Range`/`Range-Unit`, `Accept`).

use bytes::Bytes;
use uuid::Uuid;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use super::errors;
use super::query::{Prefer, QueryParams, parse_prefer, parse_range};
use crate::auth::Principal;
use crate::error::ApiError;

/// Most rows one request reads or returns. An explicit `limit` above it is a 400; a request
/// without `limit` (or with a wider `Range`) is capped to it, like PostgREST's `db-max-rows`.
pub const MAX_ROWS: u64 = 10_000;

/// Who calls, in which tenant (as the request asked; the database decides).
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    pub tenant: Option<Uuid>,
}

/// What the URL names under `/rest/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Root,
    Table(String),
    Rpc(String),
}

impl Target {
    /// `""` → root, `contacts` → table, `rpc/fn` → function; anything else is no route.
    pub fn parse(tail: &str) -> Option<Target> {
        let decoded = percent_decode(tail)?;
        // `/rest/v1/…` (supabase-js) serves exactly what `/rest/…` serves.
        let decoded = match decoded.as_str() {
            "v1" => "",
            d => d.strip_prefix("v1/").unwrap_or(d),
        };
        let parts: Vec<&str> = decoded.split('/').collect();
        match parts.as_slice() {
            [""] => Some(Target::Root),
            ["rpc", name] if !name.is_empty() => Some(Target::Rpc(name.to_string())),
            [name] => Some(Target::Table(name.to_string())),
            _ => None,
        }
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(bytes.len()), 0);
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|&b| (b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.contains('\0'))
}

/// The response media type PostgREST clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Media {
    /// `application/vnd.pgrst.object+json`: exactly one row, as an object (else 406).
    pub singular: bool,
    /// `;nulls=stripped`: fields whose value is null are left out.
    pub strip_nulls: bool,
    /// `text/csv`.
    pub csv: bool,
}

pub struct RestRequest {
    pub method: Method,
    pub target: Target,
    /// The raw query string without `tenantId`/`tenant`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub caller: Caller,
}

impl RestRequest {
    pub fn header(&self, name: &str) -> Result<Option<String>, ApiError> {
        let mut values = self.headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return Ok(None);
        }
        let mut joined = Vec::new();
        for v in values {
            let v = v
                .to_str()
                .map_err(|_| errors::bad(format!("header {name} is not ASCII"), format!("l'en-tête {name} n'est pas en ASCII")))?;
            joined.push(v);
        }
        Ok(Some(joined.join(", ")))
    }

    pub fn query_params(&self) -> Result<QueryParams, ApiError> {
        let params = super::query::parse_query(&self.query).map_err(errors::parse_error)?;
        check_select_items(&params)?;
        Ok(params)
    }

    /// The request body must be JSON (`application/json`, a `+json` type, or none given;
    /// `application/x-www-form-urlencoded`, curl's default for `-d`, is read as JSON text too).
    /// Anything else is 415 `PGRST107`, as PostgREST answers (e.g. a JSON text sent as
    /// `text/plain`).
    pub fn check_body_media(&self) -> Result<(), ApiError> {
        let Some(raw) = self.header("content-type")? else { return Ok(()) };
        let media = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let json = media.is_empty()
            || media == "application/json"
            || media.ends_with("+json")
            || media.starts_with("application/vnd.pgrst.")
            || media == "application/x-www-form-urlencoded";
        if json {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PGRST107",
            format!("the Content-Type of the request is not supported: {media}"),
            format!("le Content-Type de la requête n'est pas pris en charge : {media}"),
        )
        .with_hint("Send the body as application/json."))
    }

    pub fn prefer(&self) -> Result<Prefer, ApiError> {
        match self.header("prefer")? {
            Some(p) => parse_prefer(&p).map_err(errors::parse_error),
            None => Ok(Prefer::default()),
        }
    }

    /// The `Range` header (only with `Range-Unit: items` or none), as `(first, last)`.
    pub fn range(&self) -> Result<Option<(u64, Option<u64>)>, ApiError> {
        let unit = self.header("range-unit")?;
        if unit.is_some_and(|u| !u.trim().eq_ignore_ascii_case("items")) {
            return Ok(None);
        }
        match self.header("range")? {
            Some(r) => parse_range(&r).map(Some).map_err(errors::parse_error),
            None => Ok(None),
        }
    }

    pub fn media(&self) -> Result<Media, ApiError> {
        negotiate(self.header("accept")?.as_deref())
    }
}

/// Picks the first media range of `Accept` we can produce (406 when there is none).
pub fn negotiate(accept: Option<&str>) -> Result<Media, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else { return Ok(Media::default()) };
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<String> = parts.map(|p| p.to_ascii_lowercase().replace(' ', "")).collect();
        if params.iter().any(|p| p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000") {
            continue;
        }
        let strip_nulls = params.iter().any(|p| p == "nulls=stripped");
        let media = match media_type.as_str() {
            "application/json" | "application/*" | "*/*" => Media::default(),
            "text/csv" => Media { csv: true, ..Media::default() },
            "application/vnd.pgrst.array+json" | "application/vnd.pgrst.array" => Media { strip_nulls, ..Media::default() },
            "application/vnd.pgrst.object+json" | "application/vnd.pgrst.object" => Media { singular: true, strip_nulls, csv: false },
            _ => continue,
        };
        return Ok(media);
    }
    Err(errors::not_acceptable(accept))
}

/// The methods each kind of resource answers (405s carry them in `Allow`).
pub fn allowed_methods(target: &Target) -> &'static str {
    match target {
        Target::Root => "GET, HEAD",
        Target::Rpc(_) => "POST",
        Target::Table(_) => "GET, HEAD, POST, PATCH, DELETE",
    }
}

/// A 405 says which methods the resource does answer (RFC 9110 §15.5.6).
pub fn with_allow(mut response: Response, target: &Target) -> Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        response.headers_mut().insert("allow", HeaderValue::from_static(allowed_methods(target)));
    }
    response
}

/// At most this many items in one `select` (top level). PostgreSQL refuses more than 1,664
/// result columns, and long before that a URL of a thousand aliases costs a connection for
/// the whole statement timeout; no real client needs more.
pub const MAX_SELECT_ITEMS: usize = 200;

fn check_select_items(params: &QueryParams) -> Result<(), ApiError> {
    let n = params.select.as_ref().map_or(0, Vec::len);
    if n <= MAX_SELECT_ITEMS {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "PGRST100",
        format!("too many select items: {n} (at most {MAX_SELECT_ITEMS})"),
        format!("trop d'éléments dans select : {n} (au plus {MAX_SELECT_ITEMS})"),
    )
    .with_hint("Select fewer columns, or `*`."))
}

/// The raw query string without the tenant selector rowcast reads itself (`tenantId`, the
/// only reserved key: a column named `tenant` stays filterable).
pub fn without_tenant_params(raw: &str) -> String {
    raw.split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            key != "tenantId"
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `(offset, limit)` for a read: `limit`/`offset` intersected with `Range`, capped to
/// [`MAX_ROWS`]; an explicit `limit` over the cap or an offset past `i64` is a 400.
pub fn window(qp: &QueryParams, range: Option<(u64, Option<u64>)>) -> Result<(i64, i64), ApiError> {
    if qp.limit.is_some_and(|l| l > MAX_ROWS) {
        return Err(errors::bad(format!("limit must be at most {MAX_ROWS}"), format!("limit ne peut dépasser {MAX_ROWS}"))
            .with_hint("Page with offset, or with the Range header."));
    }
    let (offset, limit) = qp.effective_range(range);
    let offset = i64::try_from(offset)
        .map_err(|_| errors::bad(format!("offset must be at most {}", i64::MAX), format!("offset ne peut dépasser {}", i64::MAX)))?;
    let limit = limit.unwrap_or(MAX_ROWS).min(MAX_ROWS) as i64;
    Ok((offset, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::query::parse_query;

    #[test]
    fn targets_are_root_tables_or_functions() {
        assert_eq!(Target::parse(""), Some(Target::Root));
        assert_eq!(Target::parse("contacts"), Some(Target::Table("contacts".into())));
        assert_eq!(Target::parse("we%20ird"), Some(Target::Table("we ird".into())));
        assert_eq!(Target::parse("rpc/campaign_start"), Some(Target::Rpc("campaign_start".into())));
        assert_eq!(Target::parse("a/b"), None);
        assert_eq!(Target::parse("rpc/"), None);
        assert_eq!(Target::parse("%FF"), None);
        assert_eq!(Target::parse("a%00"), None);
        assert_eq!(Target::parse("v1/contacts"), Some(Target::Table("contacts".into())));
        assert_eq!(Target::parse("v1/rpc/f"), Some(Target::Rpc("f".into())));
        assert_eq!(Target::parse("v1"), Some(Target::Root));
        assert_eq!(Target::parse("v1/"), Some(Target::Root));
    }

    #[test]
    fn accept_picks_the_first_producible_media_type() {
        assert_eq!(negotiate(None).unwrap(), Media::default());
        assert_eq!(negotiate(Some("application/json")).unwrap(), Media::default());
        assert!(negotiate(Some("application/vnd.pgrst.object+json")).unwrap().singular);
        assert!(negotiate(Some("application/vnd.pgrst.object+json;nulls=stripped")).unwrap().strip_nulls);
        assert!(negotiate(Some("text/html, */*;q=0.8")).is_ok());
        assert!(negotiate(Some("text/csv")).unwrap().csv);
        assert_eq!(negotiate(Some("text/html")).unwrap_err().status.as_u16(), 406);
        assert_eq!(negotiate(Some("application/json;q=0")).unwrap_err().status.as_u16(), 406);
    }

    #[test]
    fn tenant_selectors_are_not_filters() {
        assert_eq!(without_tenant_params("tenantId=x&a=eq.1&tenant=eq.y"), "a=eq.1&tenant=eq.y");
        assert_eq!(without_tenant_params("tenant_id=eq.1"), "tenant_id=eq.1");
    }

    #[test]
    fn windows_cap_rows_and_refuse_huge_limits_and_offsets() {
        let w = |q: &str, r| window(&parse_query(q).unwrap(), r);
        assert_eq!(w("", None).unwrap(), (0, MAX_ROWS as i64));
        assert_eq!(w("limit=5&offset=10", None).unwrap(), (10, 5));
        assert_eq!(w("", Some((0, Some(9)))).unwrap(), (0, 10));
        assert_eq!(w("", Some((0, Some(u64::MAX - 1)))).unwrap(), (0, MAX_ROWS as i64));
        assert_eq!(w("limit=10001", None).unwrap_err().status.as_u16(), 400);
        assert_eq!(w("offset=18446744073709551615", None).unwrap_err().status.as_u16(), 400);
        assert_eq!(w("offset=9223372036854775807", None).unwrap(), (i64::MAX, MAX_ROWS as i64));
    }
}

//! One error type for the HTTP API, rendered like PostgREST: `{code, message, details, hint}`.
//!
//! This is the one place that maps SQLSTATEs and named constraints to HTTP statuses. A 5xx
//! is logged in full here and answered without internals.

mod classes;
pub mod constraints;

use crate::i18n::Lang;
use serde::Serialize;
use warp::http::StatusCode;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// A client-visible error. Each constructor's doc says its HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The SQLSTATE when the database decided, else PostgREST's `PGRST…` code.
    pub code: String,
    pub message: String,
    /// French text of `message`, when one is known.
    pub message_fr: Option<String>,
    pub details: Option<String>,
    /// Structured `details` (PostgREST's `PGRST201` gives an array of objects); rendered
    /// instead of `details` when set.
    pub details_json: Option<serde_json::Value>,
    pub hint: Option<String>,
    /// Extra response headers (`Retry-After`, `RateLimit-*` on a 429).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    details: Option<Details<'a>>,
    hint: Option<&'a str>,
}

/// `details` is text, or JSON for the few errors PostgREST details with a structure.
#[derive(Serialize)]
#[serde(untagged)]
enum Details<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: en.into(),
            message_fr: Some(fr.into()),
            details: None,
            details_json: None,
            hint: None,
            headers: Vec::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// Structured details (a JSON array or object), rendered as JSON in the body.
    pub fn with_details_json(mut self, details: serde_json::Value) -> Self {
        self.details_json = Some(details);
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a response header (a static lowercase name and a visible-ASCII value).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 `PGRST100`: the request (query string, header) is malformed.
    pub fn bad_request(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PGRST100", en, fr)
    }

    /// 400 `PGRST102`: the request body is malformed.
    pub fn bad_body(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PGRST102", en, fr)
    }

    /// 401 `PGRST301`: the token could not be decoded or verified.
    pub fn unauthorized(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "PGRST301", en, fr)
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "42501", en, fr)
    }

    /// 404 `PGRST125`: nothing at this address.
    pub fn not_found(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "PGRST125", en, fr)
    }

    /// 503 `PGRST000`: the database cannot serve now; retry later.
    pub fn unavailable(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "PGRST000", en, fr)
    }

    /// 500 `PGRSTX00`: a fault of ours. The cause is logged; the client sees nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "PGRSTX00", "internal server error", "erreur interne du serveur")
    }

    pub fn message_in(&self, lang: Lang) -> &str {
        match (lang, &self.message_fr) {
            (Lang::Fr, Some(fr)) => fr,
            _ => &self.message,
        }
    }

    pub fn body_json(&self, lang: Lang) -> Vec<u8> {
        let details = match (&self.details_json, &self.details) {
            (Some(json), _) => Some(Details::Json(json)),
            (None, text) => text.as_deref().map(Details::Text),
        };
        let body = Body { code: &self.code, message: self.message_in(lang), details, hint: self.hint.as_deref() };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The response, rendered in English; the request wrapper re-renders it in the caller's language.
    pub fn into_response(self) -> warp::reply::Response {
        let mut response = warp::http::Response::builder()
            .status(self.status)
            .header("content-type", "application/json; charset=utf-8")
            .body(self.body_json(Lang::En).into())
            .unwrap_or_default();
        for (name, value) in &self.headers {
            if let Ok(v) = warp::http::HeaderValue::from_str(value) {
                response.headers_mut().insert(*name, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", warp::http::HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl warp::reject::Reject for ApiError {}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Timeout(_) => {
                metrics::counter!("rowcast_pool_timeouts_total").increment(1);
                // PostgREST answers PGRST003 with 504; SPEC §7 keeps 503 for an exhausted pool.
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PGRST003",
                    "timed out acquiring connection from connection pool",
                    "délai dépassé pour obtenir une connexion du pool",
                )
                .with_hint("Retry later.")
            }
            PoolError::Backend(e) => {
                tracing::warn!(error = %e, "database connection failed");
                Self::unavailable("database unavailable", "base de données indisponible")
            }
            other => {
                tracing::warn!(error = %other, "database pool error");
                Self::unavailable("database unavailable", "base de données indisponible")
            }
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(db) => from_db_error(db),
            None => {
                tracing::warn!(error = %err, "database error without SQLSTATE");
                Self::unavailable("database unavailable", "base de données indisponible")
            }
        }
    }
}

/// PostgREST 13's HTTP status for a SQLSTATE (docs "Errors", table "HTTP Status Codes"):
/// classes first, then the exact codes it singles out. Every caller of rowcast is
/// authenticated, so `42501` is 403 (PostgREST's 401 is for its anonymous role).
pub fn sqlstate_status(code: &str, message: &str) -> StatusCode {
    let status = |n: u16| StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(n) = code.strip_prefix("PT") {
        return n.parse::<u16>().ok().filter(|n| (100..600).contains(n)).map_or(StatusCode::INTERNAL_SERVER_ERROR, status);
    }
    match code {
        "23503" | "23505" => status(409),
        "25006" => status(405),
        "21000" if message.ends_with("requires a WHERE clause") => status(400),
        "21000" => status(500),
        "53400" => status(500),
        "57P01" => status(503),
        "P0001" => status(400),
        "42883" => status(404),
        "42P01" => status(404),
        "42P17" => status(500),
        "42501" => status(403),
        _ => match code.get(..2).unwrap_or("") {
            "08" | "53" => status(503),
            "0L" | "0P" | "28" => status(403),
            "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0" | "HV" | "P0" | "XX" => status(500),
            _ => status(400),
        },
    }
}

/// French label for a status class of database errors.
fn fr_prefix(status: StatusCode) -> &'static str {
    match status.as_u16() {
        403 => "permission refusée",
        404 => "introuvable",
        405 => "opération non permise",
        409 => "conflit",
        _ => "requête refusée",
    }
}

/// Server-side database errors whose message is safe to show (no SQL, no internals).
fn safe_server_message(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "57014" => ("canceling statement due to statement timeout", "requête annulée : délai dépassé"),
        "40001" => ("could not serialize access due to concurrent update", "accès concurrent : réessayez"),
        "40P01" => ("deadlock detected", "interblocage détecté : réessayez"),
        _ => return None,
    })
}

fn from_db_error(db: &tokio_postgres::error::DbError) -> ApiError {
    if let Some(err) = classes::client_limit(db) {
        return err;
    }
    let code = db.code().code();
    let status = sqlstate_status(code, db.message());
    if status.is_server_error() {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(sqlstate = code, "transient database error");
            return ApiError::new(status, code, "database unavailable, retry later", "base de données indisponible, réessayez plus tard");
        }
        if let Some((en, fr)) = safe_server_message(code) {
            tracing::warn!(sqlstate = code, message = db.message(), "database error");
            return ApiError::new(status, code, en, fr).with_hint("Retry later, or narrow the query.");
        }
        tracing::error!(sqlstate = code, message = db.message(), "database error");
        return ApiError::new(status, code, "internal database error", "erreur interne de la base de données");
    }
    if let Some(c) = db.constraint().and_then(constraints::lookup) {
        return ApiError::new(status, code, c.en, c.fr).with_details(format!("constraint {}", c.name));
    }
    let mut err = ApiError::new(status, code, db.message(), format!("{} : {}", fr_prefix(status), db.message()));
    err.details = db.detail().map(str::to_string);
    err.hint = db.hint().map(str::to_string);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_render_as_text_or_as_structured_json() {
        let body = |e: ApiError| serde_json::from_slice::<serde_json::Value>(&e.body_json(Lang::En)).unwrap();
        let text = ApiError::bad_request("m", "m").with_details("d");
        assert_eq!(body(text)["details"], "d");
        let json = ApiError::bad_request("m", "m").with_details_json(serde_json::json!([{"a": 1}]));
        assert_eq!(body(json)["details"], serde_json::json!([{"a": 1}]));
        assert_eq!(body(ApiError::bad_request("m", "m"))["details"], serde_json::Value::Null);
    }

    #[test]
    fn sqlstates_map_to_postgrest_statuses() {
        for (code, want) in [
            ("23502", 400),
            ("23514", 400),
            ("P0001", 400),
            ("22P02", 400),
            ("42703", 400),
            ("23503", 409),
            ("23505", 409),
            ("42501", 403),
            ("42883", 404),
            ("42P01", 404),
            ("25006", 405),
            ("25001", 500),
            ("53400", 500),
            ("53300", 503),
            ("08006", 503),
            ("57P01", 503),
            ("57014", 500),
            ("40001", 500),
            ("54001", 500),
            ("XX000", 500),
            ("P0002", 500),
            ("28000", 403),
            ("0P000", 403),
            ("PT409", 409),
            ("PT402", 402),
            ("PTxyz", 500),
            ("PT999", 500),
        ] {
            assert_eq!(sqlstate_status(code, "").as_u16(), want, "{code}");
        }
        assert_eq!(sqlstate_status("21000", "UPDATE requires a WHERE clause").as_u16(), 400);
        assert_eq!(sqlstate_status("21000", "more than one row returned").as_u16(), 500);
    }
}

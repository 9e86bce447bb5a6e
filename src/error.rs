//! One error type for the HTTP API, rendered like PostgREST: `{code, message, details, hint}`.
//!
//! This is the one place that maps SQLSTATEs and named constraints to HTTP statuses. A 5xx
//! is logged in full here and answered without internals.

pub mod constraints;

use crate::i18n::Lang;
use serde::Serialize;
use warp::http::StatusCode;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// A client-visible error. Each constructor's doc says its HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// SQLSTATE or an `RC…` code.
    pub code: String,
    pub message: String,
    /// French text of `message`, when one is known.
    pub message_fr: Option<String>,
    pub details: Option<String>,
    pub hint: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    details: Option<&'a str>,
    hint: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: en.into(), message_fr: Some(fr.into()), details: None, hint: None }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "RC100", en, fr)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "RC301", en, fr)
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "42501", en, fr)
    }

    /// 404: nothing at this address.
    pub fn not_found(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "RC404", en, fr)
    }

    /// 503: the database (or the pool in front of it) cannot serve now; retry later.
    pub fn unavailable(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "RC503", en, fr)
    }

    /// 500: a fault of ours. The cause is logged; the client sees nothing of it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "RC500", "internal server error", "erreur interne du serveur")
    }

    pub fn message_in(&self, lang: Lang) -> &str {
        match (lang, &self.message_fr) {
            (Lang::Fr, Some(fr)) => fr,
            _ => &self.message,
        }
    }

    pub fn body_json(&self, lang: Lang) -> Vec<u8> {
        let body = Body { code: &self.code, message: self.message_in(lang), details: self.details.as_deref(), hint: self.hint.as_deref() };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The response, rendered in English; the request wrapper re-renders it in the caller's language.
    pub fn into_response(self) -> warp::reply::Response {
        let mut response = warp::http::Response::builder()
            .status(self.status)
            .header("content-type", "application/json; charset=utf-8")
            .body(self.body_json(Lang::En).into())
            .unwrap_or_default();
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
                Self::unavailable(
                    "database pool exhausted: no connection became free in time",
                    "pool de connexions saturé : aucune connexion libre à temps",
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

fn from_db_error(db: &tokio_postgres::error::DbError) -> ApiError {
    let code = db.code().code();
    if let Some(c) = db.constraint().and_then(constraints::lookup) {
        return ApiError::new(c.status, code, c.en, c.fr).with_details(format!("constraint {}", c.name));
    }
    let (status, fr_prefix) = match code {
        "42501" => (StatusCode::FORBIDDEN, "permission refusée"),
        "23505" | "23503" | "23P01" => (StatusCode::CONFLICT, "conflit"),
        "23502" | "23514" => (StatusCode::UNPROCESSABLE_ENTITY, "donnée invalide"),
        "P0001" => (StatusCode::CONFLICT, "action refusée"),
        c if c.starts_with("22") => (StatusCode::BAD_REQUEST, "valeur invalide"),
        "54000" => (StatusCode::PAYLOAD_TOO_LARGE, "trop volumineux"),
        "57014" => {
            return ApiError::unavailable("statement timeout: the query took too long", "délai dépassé : la requête a pris trop de temps")
                .with_hint("Narrow the query or retry later.");
        }
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") || c.starts_with("40") => {
            tracing::warn!(sqlstate = c, "transient database error");
            return ApiError::unavailable("database unavailable, retry later", "base de données indisponible, réessayez plus tard");
        }
        _ => return ApiError::internal(&format_args!("{code}: {}", db.message())),
    };
    let mut err = ApiError::new(status, code, db.message(), format!("{fr_prefix} : {}", db.message()));
    err.details = db.detail().map(str::to_string);
    err.hint = db.hint().map(str::to_string);
    err
}

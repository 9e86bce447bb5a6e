//! warp filters that turn headers into typed values. Nothing below them parses a header.

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;
use warp::{Filter, Rejection};

use crate::app::AppState;
use crate::auth::{AuthError, Principal};
use crate::error::ApiError;
use crate::i18n::Lang;

/// Per-request facts the response wrapper needs.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    pub id: String,
    pub lang: Lang,
    pub method: warp::http::Method,
    pub path: String,
    pub started: Instant,
}

fn usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

pub fn request_meta() -> impl Filter<Extract = (RequestMeta,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-request-id")
        .and(warp::header::optional::<String>("accept-language"))
        .and(warp::method())
        .and(warp::path::full())
        .map(|id: Option<String>, lang: Option<String>, method, path: warp::path::FullPath| RequestMeta {
            id: id.filter(|i| usable_request_id(i)).unwrap_or_else(|| Uuid::new_v4().to_string()),
            lang: Lang::negotiate(lang.as_deref()),
            method,
            path: path.as_str().to_string(),
            started: Instant::now(),
        })
}

/// Token errors about claims (PostgREST's "JWT claims validation", `PGRST303`).
const CLAIM_ERRORS: &[&str] = &["expired", "not valid yet", "audience", "issuer", "missing claim", "sub is not"];

pub fn auth_error(err: AuthError) -> ApiError {
    match err {
        // PostgREST's PGRST302: no token, and there is no anonymous role.
        AuthError::Missing => {
            ApiError::new(warp::http::StatusCode::UNAUTHORIZED, "PGRST302", "missing bearer token", "jeton d'accès manquant")
                .with_hint("Send `Authorization: Bearer <jwt>` (or an `apikey` header).")
        }
        // PGRST303: the token decoded and verified, but its claims are refused.
        AuthError::Invalid(why) if CLAIM_ERRORS.iter().any(|c| why.contains(c)) => {
            let mut e = ApiError::unauthorized(format!("invalid token: {why}"), format!("jeton invalide : {why}"));
            e.code = "PGRST303".into();
            e
        }
        // PGRST301: the token could not be decoded or its signature is wrong.
        AuthError::Invalid(why) => ApiError::unauthorized(format!("invalid token: {why}"), format!("jeton invalide : {why}")),
    }
}

/// The verified caller. 401 (before any database work) when the token is missing or bad.
pub fn principal(state: Arc<AppState>) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization").and_then(move |header: Option<String>| {
        let state = state.clone();
        async move { state.jwt.verify_header(header.as_deref()).map_err(|e| warp::reject::custom(auth_error(e))) }
    })
}

/// The raw query string, empty when there is none.
pub fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The tenant the request asks for: `X-Tenant-ID`, else `tenantId` in the query, else the
/// token's `tenant_id` claim, else `None` (the database then picks the user's only tenant).
pub fn tenant() -> impl Filter<Extract = (Option<Uuid>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-tenant-id").and(raw_query()).and_then(|header: Option<String>, query: String| async move {
        let from_query =
            || form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "tenantId" || k == "tenant").map(|(_, v)| v.into_owned());
        match header.or_else(from_query) {
            None => Ok(None),
            Some(raw) => Uuid::parse_str(raw.trim()).map(Some).map_err(|_| {
                warp::reject::custom(ApiError::bad_request(
                    "tenant id (X-Tenant-ID or tenantId) is not a uuid",
                    "l'identifiant de locataire (X-Tenant-ID ou tenantId) n'est pas un uuid",
                ))
            }),
        }
    })
}

/// Applies the token's `tenant_id` restriction to the requested tenant.
pub fn resolve_tenant(principal: &Principal, requested: Option<Uuid>) -> Result<Option<Uuid>, ApiError> {
    match (principal.tenant_claim, requested) {
        (Some(claim), Some(asked)) if claim != asked => {
            Err(ApiError::forbidden("this token is restricted to another tenant", "ce jeton est limité à un autre locataire"))
        }
        (Some(claim), _) => Ok(Some(claim)),
        (None, asked) => Ok(asked),
    }
}

/// The caller and the tenant they act in: `(Principal, Option<Uuid>)`.
pub fn caller(state: Arc<AppState>) -> impl Filter<Extract = (Principal, Option<Uuid>), Error = Rejection> + Clone {
    principal(state)
        .and(tenant())
        .and_then(|p: Principal, t: Option<Uuid>| async move {
            let tenant = resolve_tenant(&p, t).map_err(warp::reject::custom)?;
            Ok::<_, Rejection>((p, tenant))
        })
        .untuple_one()
}

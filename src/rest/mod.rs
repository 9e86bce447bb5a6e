//! REST in the PostgREST dialect, generated from the catalog (see `docs/rest.md`).
//!
//! The walk of a request: [`routes`] (auth → [`request::RestRequest`]) → a handler
//! ([`handlers`], [`rpc`]) that checks names against the [`catalog`] and parses the query
//! ([`query`], pure) → SQL text per shape ([`sql`], [`write`]) → one statement in the
//! caller's tenant transaction ([`exec`]) → the JSON the database built, passed through
//! ([`reply`]). `RestState` holds the catalog; [`state`] reloads it on `NOTIFY rowcast_reload`
//! and SIGHUP (the reloader is started by `Application::build`). The seed's `/api/rls/*` endpoints live in [`rls`].

pub mod body;
pub mod catalog;
pub mod errors;
pub mod exec;
pub mod handlers;
pub mod ident;
pub mod openapi;
#[cfg(test)]
mod props;
pub mod query;
pub mod reply;
pub mod request;
pub mod rls;
pub mod rpc;
pub mod sql;
pub mod state;
pub mod write;

use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::http::{filters, respond};
use request::{Caller, RestRequest, Target};
pub use state::RestState;

/// The verified caller and requested tenant as one value (401 before any database work).
pub fn caller_filter(core: Arc<Core>) -> impl Filter<Extract = (Caller,), Error = Rejection> + Clone {
    filters::caller(core).map(|principal: Principal, tenant: Option<Uuid>| Caller { principal, tenant })
}

/// Serves `/rest/…` and the seed endpoints `/api/rls/…`.
pub fn routes(state: Arc<RestState>) -> BoxedFilter<(Response,)> {
    let rest = warp::path("rest")
        .and(warp::path::tail())
        .and(warp::method())
        .and(filters::raw_query())
        .and(warp::header::headers_cloned())
        .and(caller_filter(state.core.clone()))
        .and(warp::body::stream())
        .and(warp::any().map({
            let state = state.clone();
            move || state.clone()
        }))
        .then(|tail: warp::path::Tail, method: Method, query: String, headers: HeaderMap, caller: Caller, body, state: Arc<RestState>| async move {
            let Some(target) = Target::parse(tail.as_str()) else {
                return respond(Err(ApiError::not_found("no such route", "route inconnue")));
            };
            let needs_body = method == Method::POST || method == Method::PATCH;
            let body = match needs_body {
                true => {
                    let length = headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
                    match body::read_limited(body, state.settings.max_body_bytes, length).await {
                        Ok(b) => b,
                        Err(e) => return respond(Err(e)),
                    }
                }
                false => Bytes::new(),
            };
            let query = request::without_tenant_params(&query);
            let req = RestRequest { method, target, query, headers, body, caller };
            respond(dispatch(&state, &req).await)
        });
    rest.or(rls::routes(state)).unify().boxed()
}

fn method_not_allowed(allowed: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "RC405",
        "method not allowed on this resource",
        "méthode non autorisée sur cette ressource",
    )
    .with_hint(format!("Allowed: {allowed}."))
}

async fn dispatch(state: &RestState, req: &RestRequest) -> Result<Response, ApiError> {
    match &req.target {
        Target::Root => match req.method {
            Method::GET | Method::HEAD => openapi_response(state, req.method == Method::HEAD),
            _ => Err(method_not_allowed("GET, HEAD")),
        },
        Target::Rpc(name) => match req.method {
            Method::POST => rpc::call(state, req, name).await,
            _ => Err(method_not_allowed("POST")),
        },
        Target::Table(name) => {
            let catalog = state.catalog();
            let table = catalog.table(name).ok_or_else(|| errors::table_not_found(name))?;
            match req.method {
                Method::GET => handlers::read(state, req, table, false).await,
                Method::HEAD => handlers::read(state, req, table, true).await,
                Method::POST => handlers::create(state, req, table).await,
                Method::PATCH => handlers::update(state, req, table).await,
                Method::DELETE => handlers::delete(state, req, table).await,
                _ => Err(method_not_allowed("GET, HEAD, POST, PATCH, DELETE")),
            }
        }
    }
}

fn openapi_response(state: &RestState, head: bool) -> Result<Response, ApiError> {
    let catalog = state.catalog();
    let text = catalog.openapi.get_or_init(|| openapi::document(&catalog).to_string());
    let mut response = Response::new(if head { String::new() } else { text.clone() }.into());
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/openapi+json; charset=utf-8"));
    Ok(response)
}

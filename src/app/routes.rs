//! Route composition and the outer wrapper every response leaves through: request id,
//! language, CORS, the one place rejections become responses, the log line, metrics and stats.

use std::convert::Infallible;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::AppState;
use crate::error::ApiError;
use crate::http::filters::{self, RequestMeta};
use crate::stats::Stats;

/// Request headers a PostgREST/Supabase browser client sends.
const CORS_HEADERS: &[&str] = &[
    "authorization",
    "apikey",
    "content-type",
    "accept",
    "accept-language",
    "accept-profile",
    "content-profile",
    "prefer",
    "range",
    "range-unit",
    "x-client-info",
    "x-tenant-id",
    "x-request-id",
];

/// CORS for `ROWCAST_ALLOWED_ORIGINS` (unset: no CORS headers, so only same-origin and
/// non-browser clients). Preflights from listed origins are answered; others are refused.
fn with_cors(api: BoxedFilter<(Response,)>, origins: Option<&Vec<String>>) -> BoxedFilter<(Response,)> {
    let Some(origins) = origins.filter(|o| !o.is_empty()) else { return api };
    let cors = warp::cors()
        .allow_origins(origins.iter().map(String::as_str))
        .allow_methods(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD"])
        .allow_headers(CORS_HEADERS.iter().copied())
        .expose_headers(["content-range", "content-location", "location", "preference-applied", "x-request-id"])
        .max_age(3600);
    api.with(cors).map(Reply::into_response).boxed()
}

/// Every feature's routes, each given its own state, inside the outer wrapper.
pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    let core = &state.core;
    let realtime = state.realtime.clone();
    let listener: crate::ops::ListenerProbe = Arc::new(move || realtime.listener_status());
    let api = crate::ops::routes(core.clone(), listener)
        .or(crate::me::routes(core.clone()))
        .unify()
        .or(crate::ops::perf::routes(core.clone()))
        .unify()
        .or(crate::rest::routes(state.rest.clone()))
        .unify()
        .or(crate::realtime::routes(state.realtime.clone()))
        .unify()
        .boxed();
    let api = with_cors(api, core.settings.allowed_origins.as_ref());
    let stats = core.stats.clone();
    filters::request_meta()
        .and(api.recover(rejection_to_response).unify())
        .map(move |meta, response| finish(&stats, meta, response))
        .boxed()
}

async fn rejection_to_response(rejection: Rejection) -> Result<Response, Infallible> {
    Ok(rejection_to_error(&rejection).into_response())
}

fn rejection_to_error(rejection: &Rejection) -> ApiError {
    if let Some(err) = rejection.find::<ApiError>() {
        return err.clone();
    }
    if rejection.is_not_found() {
        return ApiError::not_found("no such route", "route inconnue");
    }
    if rejection.find::<warp::filters::cors::CorsForbidden>().is_some() {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "RC403",
            "origin not allowed (ROWCAST_ALLOWED_ORIGINS)",
            "origine non autorisée (ROWCAST_ALLOWED_ORIGINS)",
        );
    }
    if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "RC405",
            "method not allowed on this route",
            "méthode non autorisée sur cette route",
        );
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "RC413", "request body too large", "corps de requête trop volumineux");
    }
    if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        return ApiError::bad_request(format!("invalid header: {e}"), format!("en-tête invalide : {e}"));
    }
    if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        return ApiError::bad_request(format!("missing header: {e}"), format!("en-tête manquant : {e}"));
    }
    if rejection.find::<warp::reject::UnsupportedMediaType>().is_some() {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "RC415",
            "unsupported content type",
            "type de contenu non pris en charge",
        );
    }
    if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        return ApiError::bad_request(format!("malformed JSON body: {e}"), format!("corps JSON mal formé : {e}"));
    }
    if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        return ApiError::bad_request(format!("invalid query string: {e}"), format!("paramètres invalides : {e}"));
    }
    ApiError::internal(&format_args!("unhandled rejection: {rejection:?}"))
}

/// Every response leaves through here: localized error body, `X-Request-Id`, log line, metrics.
fn finish(stats: &Stats, meta: RequestMeta, mut response: Response) -> Response {
    if let Some(err) = response.extensions().get::<ApiError>()
        && meta.lang != crate::i18n::Lang::En
    {
        *response.body_mut() = err.body_json(meta.lang).into();
    }
    if let Ok(id) = HeaderValue::from_str(&meta.id) {
        response.headers_mut().insert("x-request-id", id);
    }
    let status = response.status().as_u16();
    let elapsed = meta.started.elapsed();
    let route = crate::ops::metrics::record_request(meta.method.as_str(), &meta.path, status, elapsed);
    stats.record_request(meta.method.as_str(), &route, status, elapsed);
    tracing::info!(
        request_id = %meta.id,
        method = %meta.method,
        path = %meta.path,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    response
}

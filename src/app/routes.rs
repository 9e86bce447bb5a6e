//! Route composition and the outer wrapper every response leaves through: request id,
//! language, CORS, the one place rejections become responses, the log line, metrics and stats.

use std::convert::Infallible;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::AppState;
use crate::error::ApiError;
use crate::http::filters::{self, RequestMeta};
use crate::stats::Stats;

/// Request headers postgrest-js, supabase-js and postgrest-py send (lower case).
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
    "x-retry-count",
    "x-supabase-api-version",
    "x-tenant-id",
    "x-request-id",
    "traceparent",
    "tracestate",
    "baggage",
];
const CORS_METHODS: &[&str] = &["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD"];
const CORS_EXPOSED: &str = "content-range, content-location, location, preference-applied, x-request-id";

fn cors_refused(en: String, fr: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "PGRST100", en, fr).with_hint("Allowed origins are set by ROWCAST_ALLOWED_ORIGINS.")
}

/// The answer to a preflight: 200 with the allowances, or 403 naming what was refused
/// (the origin, the method or the first refused header).
fn preflight(origins: &[String], origin: &str, method: &str, headers: Option<&str>) -> Response {
    if !origins.iter().any(|o| o == origin) {
        return cors_refused(format!("origin not allowed: {origin}"), format!("origine non autorisée : {origin}")).into_response();
    }
    let method = method.trim().to_ascii_uppercase();
    if !CORS_METHODS.contains(&method.as_str()) {
        return cors_refused(format!("CORS method not allowed: {method}"), format!("méthode CORS non autorisée : {method}"))
            .into_response();
    }
    let requested = headers.unwrap_or("").split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty());
    let requested: Vec<String> = requested.collect();
    if let Some(h) = requested.iter().find(|h| !CORS_HEADERS.contains(&h.as_str())) {
        let h: String = h.chars().take(100).collect();
        return cors_refused(format!("CORS header not allowed: {h}"), format!("en-tête CORS non autorisé : {h}"))
            .with_details(format!("Allowed headers: {}", CORS_HEADERS.join(", ")))
            .into_response();
    }
    let mut response = Response::new(Default::default());
    let h = response.headers_mut();
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""));
    h.insert("access-control-allow-origin", value(origin));
    h.insert("access-control-allow-methods", value(&CORS_METHODS.join(", ")));
    h.insert("access-control-allow-headers", value(&CORS_HEADERS.join(", ")));
    h.insert("access-control-max-age", HeaderValue::from_static("3600"));
    h.insert("vary", HeaderValue::from_static("origin"));
    response
}

/// CORS for `ROWCAST_ALLOWED_ORIGINS` (unset: no CORS headers, so only same-origin and
/// non-browser clients). Preflights are answered (or refused naming the origin, method or
/// header); a request from an origin not listed is refused before it runs; responses to
/// listed origins, errors included, carry `Access-Control-Allow-Origin`.
fn with_cors(api: BoxedFilter<(Response,)>, origins: Option<&Vec<String>>) -> BoxedFilter<(Response,)> {
    let Some(origins) = origins.filter(|o| !o.is_empty()) else { return api };
    let origins = Arc::new(origins.clone());
    let allowed = origins.clone();
    let preflights = warp::options()
        .and(warp::header::<String>("origin"))
        .and(warp::header::<String>("access-control-request-method"))
        .and(warp::header::optional::<String>("access-control-request-headers"))
        .map(move |origin: String, method: String, headers: Option<String>| preflight(&allowed, &origin, &method, headers.as_deref()));
    let allowed = origins.clone();
    let gate = warp::header::optional::<String>("origin").and_then(move |origin: Option<String>| {
        let allowed = allowed.clone();
        async move {
            match origin {
                Some(o) if !allowed.contains(&o) => {
                    let o: String = o.chars().take(200).collect();
                    Err(warp::reject::custom(cors_refused(format!("origin not allowed: {o}"), format!("origine non autorisée : {o}"))))
                }
                origin => Ok(origin),
            }
        }
    });
    let requests = gate.and(api.recover(rejection_to_response).unify()).map(|origin: Option<String>, mut response: Response| {
        if let Some(v) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
            let h = response.headers_mut();
            h.insert("access-control-allow-origin", v);
            h.insert("access-control-expose-headers", HeaderValue::from_static(CORS_EXPOSED));
            h.insert("vary", HeaderValue::from_static("origin"));
        }
        response
    });
    preflights.or(requests).unify().boxed()
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
        .or(crate::realtime::routes(state.realtime.clone(), state.rest.clone()))
        .unify()
        .boxed();
    let api = filters::client_ip_limits(core.clone()).and(api).boxed();
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
    if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "PGRST117",
            "method not allowed on this route",
            "méthode non autorisée sur cette route",
        );
    }
    if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PGRST102", "request body too large", "corps de requête trop volumineux");
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
            "PGRST107",
            "unsupported content type",
            "type de contenu non pris en charge",
        );
    }
    if let Some(e) = rejection.find::<warp::filters::body::BodyDeserializeError>() {
        return ApiError::bad_body(format!("malformed JSON body: {e}"), format!("corps JSON mal formé : {e}"));
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
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key("allow")
        && let Some(allow) = allowed_outside_rest(&meta.path)
    {
        response.headers_mut().insert("allow", HeaderValue::from_static(allow));
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

/// The methods of the routes outside `/rest` (whose 405s name their own), for `Allow`.
fn allowed_outside_rest(path: &str) -> Option<&'static str> {
    match path.trim_end_matches('/') {
        "/health"
        | "/live"
        | "/ready"
        | "/metrics"
        | "/api/locales"
        | "/api/me"
        | "/api/performance/stats"
        | "/api/ws/stats"
        | "/api/rls/test"
        | "/api/rls/policies"
        | "/ws"
        | "/realtime/v1/websocket" => Some("GET"),
        "/api/rls/impersonate" => Some("POST"),
        _ => None,
    }
}

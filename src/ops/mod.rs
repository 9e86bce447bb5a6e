//! Operational endpoints: `/health`, `/live`, `/ready`, `/api/locales`, `/metrics`, and
//! `/api/performance/stats` ([`perf`]).

pub mod metrics;
pub mod perf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::core::Core;
use crate::error::ApiError;
use crate::http::{json, respond};
use crate::i18n::Lang;

/// `(up, details)` of the realtime listener, for `/health` (wired by the composition root, so
/// ops needs no other feature).
pub type ListenerProbe = Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>;

pub fn routes(state: Arc<Core>, listener: ListenerProbe) -> BoxedFilter<(Response,)> {
    let with_state = warp::any().map(move || state.clone());
    let with_listener = warp::any().map(move || listener.clone());
    let health = warp::path!("health")
        .and(warp::get())
        .and(with_state.clone())
        .and(with_listener)
        .then(|s: Arc<Core>, l: ListenerProbe| async move { health(&s, &l).await });
    let ready = warp::path!("ready").and(warp::get()).and(with_state.clone()).then(|s: Arc<Core>| async move { ready(&s).await });
    let live = warp::path!("live").and(warp::get()).map(|| json(StatusCode::OK, &json!({"status": "alive"})));
    let locales = warp::path!("api" / "locales").and(warp::get()).map(locales);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state)
        .map(|auth: Option<String>, s: Arc<Core>| respond(metrics_page(&s, auth.as_deref())));
    health.or(ready).unify().or(live).unify().or(locales).unify().or(metrics).unify().boxed()
}

/// Database round trip through the pool, bounded in time.
async fn database_status(state: &Core) -> (bool, serde_json::Value) {
    let started = Instant::now();
    let probe = async {
        let conn = state.db.conn().await.map_err(|e| e.message)?;
        conn.simple_query("SELECT 1").await.map_err(|_| "query failed".to_string())?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(())) => (true, json!({"status": "up", "latencyMs": started.elapsed().as_secs_f64() * 1000.0})),
        Ok(Err(why)) => (false, json!({"status": "down", "error": why})),
        Err(_) => (false, json!({"status": "down", "error": "timed out"})),
    }
}

async fn health(state: &Core, listener: &ListenerProbe) -> Response {
    let (db_up, database) = database_status(state).await;
    let (listener_up, listener) = listener();
    let ok = db_up && listener_up;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "database": database,
        "listener": listener,
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    json(status, &body)
}

async fn ready(state: &Core) -> Response {
    let (db_up, database) = database_status(state).await;
    let status = if db_up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, &json!({"ready": db_up, "database": database}))
}

fn locales() -> Response {
    let list: Vec<_> = Lang::ALL.iter().map(|l| json!({"code": l.code(), "name": l.name()})).collect();
    json(StatusCode::OK, &json!({"default": Lang::En.code(), "locales": list}))
}

fn metrics_page(state: &Core, auth: Option<&str>) -> Result<Response, ApiError> {
    if let Some(token) = &state.settings.metrics_token {
        let given = auth.and_then(|h| h.strip_prefix("Bearer "));
        if given != Some(token.expose().as_str()) {
            return Err(ApiError::unauthorized(
                "metrics need the ROWCAST_METRICS_TOKEN bearer token",
                "les métriques exigent le jeton ROWCAST_METRICS_TOKEN",
            ));
        }
    }
    metrics::record_pool(state.db.pool());
    let body = metrics::handle().render();
    Ok(warp::reply::with_header(body, "content-type", "text/plain; version=0.0.4").into_response())
}

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
        .and(warp::addr::remote())
        .and(with_state)
        .map(|auth: Option<String>, peer: Option<std::net::SocketAddr>, s: Arc<Core>| respond(metrics_page(&s, auth.as_deref(), peer)));
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

/// Who may read `/metrics`: with `ROWCAST_METRICS_TOKEN` set, whoever sends it; without,
/// only clients on this machine (loopback). Its event counters tell the platform's activity,
/// which no tenant member may learn (SPEC §3.4).
fn metrics_allowed(token: Option<&str>, auth: Option<&str>, peer: Option<std::net::SocketAddr>) -> Result<(), ApiError> {
    match token {
        Some(token) if auth.and_then(|h| h.strip_prefix("Bearer ")) == Some(token) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(
            "metrics need the ROWCAST_METRICS_TOKEN bearer token",
            "les métriques exigent le jeton ROWCAST_METRICS_TOKEN",
        )),
        None if peer.is_some_and(|p| p.ip().is_loopback()) => Ok(()),
        None => Err(ApiError::forbidden(
            "metrics are served to this machine only; set ROWCAST_METRICS_TOKEN to scrape them from elsewhere",
            "les métriques ne sont servies qu'à cette machine ; définissez ROWCAST_METRICS_TOKEN pour les lire d'ailleurs",
        )),
    }
}

fn metrics_page(state: &Core, auth: Option<&str>, peer: Option<std::net::SocketAddr>) -> Result<Response, ApiError> {
    metrics_allowed(state.settings.metrics_token.as_ref().map(|t| t.expose().as_str()), auth, peer)?;
    metrics::record_pool(state.db.pool());
    let body = metrics::handle().render();
    Ok(warp::reply::with_header(body, "content-type", "text/plain; version=0.0.4").into_response())
}

#[cfg(test)]
mod tests {
    use super::metrics_allowed;

    #[test]
    fn metrics_are_for_this_machine_or_the_token_holder() {
        let local = Some("127.0.0.1:5000".parse().unwrap());
        let remote = Some("192.0.2.7:5000".parse().unwrap());
        assert!(metrics_allowed(None, None, local).is_ok());
        assert_eq!(metrics_allowed(None, None, remote).unwrap_err().status.as_u16(), 403);
        assert_eq!(metrics_allowed(None, None, None).unwrap_err().status.as_u16(), 403);
        assert!(metrics_allowed(Some("t"), Some("Bearer t"), remote).is_ok());
        assert_eq!(metrics_allowed(Some("t"), None, local).unwrap_err().status.as_u16(), 401);
    }
}

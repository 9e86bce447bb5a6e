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

/// What `/health` and `/ready` know about the database.
enum DbHealth {
    Up(serde_json::Value),
    /// Reachable, but every pooled connection is busy: the instance is loaded, not broken.
    Saturated(serde_json::Value),
    Down(serde_json::Value),
}

const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// How long the pooled probe waits for a free connection before asking the database directly.
const POOL_PROBE_WAIT: Duration = Duration::from_millis(500);

fn pool_saturated(state: &Core) -> bool {
    let status = state.db.pool().status();
    status.available == 0 && status.size >= status.max_size
}

/// Database round trip through the pool, bounded in time. When no pooled connection frees up
/// in time and the pool is saturated, a connection of its own tells a loaded database from an
/// unreachable one: pool saturation is reported as such, never as "database down".
async fn database_status(state: &Core) -> DbHealth {
    let started = Instant::now();
    let latency = |started: Instant| started.elapsed().as_secs_f64() * 1000.0;
    let probe = async {
        let conn = state.db.conn().await.map_err(|e| e.message)?;
        conn.simple_query("SELECT 1").await.map_err(|_| "query failed".to_string())?;
        Ok::<_, String>(())
    };
    let outcome = tokio::time::timeout(POOL_PROBE_WAIT, probe).await;
    if let Ok(Ok(())) = outcome {
        return DbHealth::Up(json!({"status": "up", "latencyMs": latency(started)}));
    }
    if !pool_saturated(state) {
        let why = match outcome {
            Ok(Err(why)) => why,
            _ => "timed out".to_string(),
        };
        return DbHealth::Down(json!({"status": "down", "error": why}));
    }
    let pool = state.db.pool().status();
    let pool = json!({"size": pool.size, "maxSize": pool.max_size, "waiting": pool.waiting});
    let started = Instant::now();
    match tokio::time::timeout(PROBE_LIMIT, direct_probe(state)).await {
        Ok(Ok(())) => DbHealth::Saturated(json!({
            "status": "saturated", "reason": "pool saturated: every connection is busy", "latencyMs": latency(started), "pool": pool,
        })),
        Ok(Err(why)) => DbHealth::Down(json!({"status": "down", "error": why, "pool": pool})),
        Err(_) => DbHealth::Down(json!({"status": "down", "error": "timed out", "pool": pool})),
    }
}

/// `SELECT 1` on a connection outside the pool (as the serving role).
async fn direct_probe(state: &Core) -> Result<(), String> {
    let config = state.settings.app_pg_config().map_err(|e| e.to_string())?;
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(|_| "cannot connect".to_string())?;
    let conn = tokio::spawn(conn);
    let result = client.simple_query("SELECT 1").await.map(|_| ()).map_err(|_| "query failed".to_string());
    drop(client);
    let _ = conn.await;
    result
}

/// 200 while the database answers (`degraded`, with the reason, when the pool is saturated);
/// 503 when the database is really unreachable or the realtime listener is down.
async fn health(state: &Core, listener: &ListenerProbe) -> Response {
    let db = database_status(state).await;
    let (listener_up, listener) = listener();
    let (db_ok, saturated, database) = match db {
        DbHealth::Up(v) => (true, false, v),
        DbHealth::Saturated(v) => (true, true, v),
        DbHealth::Down(v) => (false, false, v),
    };
    let ok = db_ok && listener_up;
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = if ok && !saturated { "ok" } else { "degraded" };
    let mut body = json!({
        "status": word,
        "database": database,
        "listener": listener,
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if saturated {
        body["reason"] = json!("pool saturated");
    }
    json(status, &body)
}

/// Ready for new work: the database answers and a pooled connection is free. A saturated
/// pool refuses (503 with the reason), so a load balancer sends new work elsewhere without
/// declaring the instance dead (`/health` stays 200).
async fn ready(state: &Core) -> Response {
    match database_status(state).await {
        DbHealth::Up(database) => json(StatusCode::OK, &json!({"ready": true, "database": database})),
        DbHealth::Saturated(database) => {
            json(StatusCode::SERVICE_UNAVAILABLE, &json!({"ready": false, "reason": "pool saturated", "database": database}))
        }
        DbHealth::Down(database) => json(StatusCode::SERVICE_UNAVAILABLE, &json!({"ready": false, "database": database})),
    }
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

//! `GET /api/performance/stats` (platform admins): per-route latency percentiles,
//! per-tenant transaction counts and time, recent slow transactions, pool and process memory.

use std::sync::Arc;

use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::auth::Principal;
use crate::core::Core;
use crate::db::TenantTx;
use crate::error::ApiError;
use crate::http::{filters, json, respond};

pub fn routes(state: Arc<Core>) -> BoxedFilter<(Response,)> {
    let caller = filters::caller(state.clone());
    warp::path!("api" / "performance" / "stats")
        .and(warp::get())
        .and(caller)
        .and(warp::any().map(move || state.clone()))
        .then(|p: Principal, t: Option<Uuid>, s: Arc<Core>| async move { respond(stats(&s, &p, t).await) })
        .boxed()
}

async fn stats(state: &Core, principal: &Principal, tenant: Option<Uuid>) -> Result<Response, ApiError> {
    if principal.tenant_claim.is_some() {
        return Err(ApiError::forbidden(
            "a token restricted to one tenant cannot read platform-wide statistics",
            "un jeton limité à un locataire ne peut pas lire les statistiques de la plateforme",
        ));
    }
    {
        let mut conn = state.db.conn().await?;
        let tx = TenantTx::begin(&state.db, &mut conn, principal, tenant).await?;
        if tx.context().role != "platform_admin" {
            return Err(ApiError::forbidden(
                "performance stats are for platform admins",
                "les statistiques sont réservées aux administrateurs de la plateforme",
            ));
        }
        tx.commit().await?;
    }
    let mut body = state.stats.snapshot();
    let pool = state.db.pool().status();
    body["pool"] = serde_json::json!({"size": pool.size, "available": pool.available, "waiting": pool.waiting, "maxSize": pool.max_size});
    Ok(json(StatusCode::OK, &body))
}

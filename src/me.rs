//! `GET /api/me`: who the caller is, in which tenant, with which role — read from the
//! database through the request transaction, so the whole auth → tenant path is exercised.

use std::sync::Arc;

use serde_json::json;
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

const ME: &str = "SELECT u.id, u.email, u.name, t.id, t.name
                    FROM public.users u
                    LEFT JOIN public.tenants t ON t.id = app.current_tenant_id()
                   WHERE u.id = app.current_user_id()";

pub fn routes(state: Arc<Core>) -> BoxedFilter<(Response,)> {
    let caller = filters::caller(state.clone());
    warp::path!("api" / "me")
        .and(warp::get())
        .and(caller)
        .and(warp::any().map(move || state.clone()))
        .then(|p: Principal, t: Option<Uuid>, s: Arc<Core>| async move { respond(me(&s, &p, t).await) })
        .boxed()
}

async fn me(state: &Core, principal: &Principal, tenant: Option<Uuid>) -> Result<Response, ApiError> {
    let mut conn = state.db.conn().await?;
    let tx = TenantTx::begin(&state.db, &mut conn, principal, tenant).await?;
    let stmt = tx.prepare_cached(ME).await?;
    let row = tx.query_opt(&stmt, &[]).await?.ok_or_else(|| ApiError::forbidden("user not visible", "utilisateur invisible"))?;
    let ctx = tx.context().clone();
    tx.commit().await?;
    let tenant = row.get::<_, Option<Uuid>>(3).map(|id| json!({"id": id, "name": row.get::<_, Option<String>>(4)}));
    let body = json!({
        "user": {"id": row.get::<_, Uuid>(0), "email": row.get::<_, String>(1), "name": row.get::<_, String>(2)},
        "tenant": tenant,
        "tenantId": ctx.tenant_id,
        "role": ctx.role,
    });
    Ok(json(StatusCode::OK, &body))
}

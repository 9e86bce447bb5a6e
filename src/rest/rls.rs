//! The seed's RLS endpoints. `GET /api/rls/test[?detailed=true]`: per exposed table, how
//! many rows the caller can see (and, detailed, the policies on it). `GET /api/rls/policies`
//! and `POST /api/rls/impersonate {user_id, tenant_id, detailed}`: platform admins only; the
//! latter re-enters `app.begin_request` as another user inside the same transaction, runs
//! the test, and rolls back.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::body::{parse_json, read_limited};
use super::catalog::Catalog;
use super::errors;
use super::ident::quote_literal;
use super::request::Caller;
use super::state::RestState;
use crate::db::{RequestContext, TenantTx};
use crate::error::ApiError;
use crate::http::{json, respond};

const POLICIES_JSON: &str = "coalesce((SELECT json_agg(json_build_object('name', p.policyname, 'command', p.cmd, \
     'permissive', p.permissive, 'roles', p.roles, 'using', p.qual, 'withCheck', p.with_check) ORDER BY p.policyname) \
     FROM pg_policies p WHERE p.schemaname = 'public' AND p.tablename = t.name), '[]')";

/// Every public table, its RLS switches and policies (for DBAs and platform admins).
const ALL_POLICIES: &str = "SELECT coalesce(json_agg(json_build_object('table', t.name, 'rlsEnabled', t.enabled, \
     'rlsForced', t.forced, 'policies', POLICIES) ORDER BY t.name), '[]')::text \
     FROM (SELECT c.relname::text AS name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')) t";

/// One statement counting, per readable exposed table, the rows visible in this context.
fn test_sql(catalog: &Catalog, detailed: bool) -> String {
    let counts: Vec<String> = catalog
        .table_names()
        .into_iter()
        .filter(|n| catalog.tables[*n].can_select)
        .map(|n| format!("SELECT {}::text AS name, (SELECT count(*) FROM {}) AS n", quote_literal(n), catalog.tables[n].qualified))
        .collect();
    if counts.is_empty() {
        return "SELECT '[]'::text".into();
    }
    let policies = if detailed { format!(", 'policies', {POLICIES_JSON}") } else { String::new() };
    format!(
        "SELECT coalesce(json_agg(json_build_object('table', t.name, 'visibleRows', t.n{policies}) ORDER BY t.name), '[]')::text FROM ({}) t",
        counts.join(" UNION ALL ")
    )
}

async fn visible(tx: &TenantTx<'_>, catalog: &Catalog, detailed: bool) -> Result<Value, ApiError> {
    let stmt = tx.prepare_cached(&test_sql(catalog, detailed)).await.map_err(errors::pg)?;
    let text: String = tx.query_one(&stmt, &[]).await.map_err(errors::pg)?.get(0);
    serde_json::from_str(&text).map_err(|e| ApiError::internal(&e))
}

fn context_json(ctx: &RequestContext) -> Value {
    json!({"userId": ctx.user_id, "tenantId": ctx.tenant_id, "role": ctx.role})
}

fn require_platform_admin(tx: &TenantTx<'_>) -> Result<(), ApiError> {
    match tx.context().role.as_str() {
        "platform_admin" => Ok(()),
        _ => Err(ApiError::forbidden("platform admins only", "réservé aux administrateurs de la plateforme")),
    }
}

async fn rls_test(state: &RestState, caller: &Caller, detailed: bool) -> Result<Response, ApiError> {
    let catalog = state.catalog();
    let mut conn = state.db.conn().await?;
    let tx = TenantTx::begin(&state.db, &mut conn, &caller.principal, caller.tenant).await?;
    let tables = visible(&tx, &catalog, detailed).await?;
    let body = json!({"caller": context_json(tx.context()), "detailed": detailed, "tables": tables});
    tx.commit().await?;
    Ok(json(StatusCode::OK, &body))
}

async fn rls_policies(state: &RestState, caller: &Caller) -> Result<Response, ApiError> {
    let mut conn = state.db.conn().await?;
    let tx = TenantTx::begin(&state.db, &mut conn, &caller.principal, caller.tenant).await?;
    require_platform_admin(&tx)?;
    let sql = ALL_POLICIES.replace("POLICIES", POLICIES_JSON);
    let stmt = tx.prepare_cached(&sql).await.map_err(errors::pg)?;
    let text: String = tx.query_one(&stmt, &[]).await.map_err(errors::pg)?.get(0);
    tx.commit().await?;
    let tables: Value = serde_json::from_str(&text).map_err(|e| ApiError::internal(&e))?;
    Ok(json(StatusCode::OK, &json!({"tables": tables})))
}

#[derive(Deserialize)]
struct Impersonate {
    #[serde(alias = "userId")]
    user_id: Uuid,
    #[serde(default, alias = "tenantId")]
    tenant_id: Option<Uuid>,
    #[serde(default)]
    detailed: bool,
}

async fn impersonate(state: &RestState, caller: &Caller, body: &[u8]) -> Result<Response, ApiError> {
    let value = parse_json(body)?;
    let ask: Impersonate = serde_json::from_value(value).map_err(|e| {
        errors::bad(format!("invalid impersonation request: {e}"), format!("demande d'emprunt d'identité invalide : {e}"))
            .with_hint("Send {\"user_id\": \"<uuid>\", \"tenant_id\": \"<uuid>\" or null, \"detailed\": false}.")
    })?;
    if let Some(claim) = caller.principal.tenant_claim
        && ask.tenant_id != Some(claim)
    {
        return Err(ApiError::forbidden("this token is restricted to another tenant", "ce jeton est limité à un autre locataire"));
    }
    let catalog = state.catalog();
    let mut conn = state.db.conn().await?;
    let tx = TenantTx::begin(&state.db, &mut conn, &caller.principal, caller.tenant).await?;
    require_platform_admin(&tx)?;
    let stmt = tx.prepare_cached("SELECT r.user_id, r.tenant_id, r.role FROM app.begin_request($1, $2) AS r").await.map_err(errors::pg)?;
    let row = tx.query_one(&stmt, &[&ask.user_id, &ask.tenant_id]).await.map_err(|e| {
        let why = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "RC422",
            format!("cannot act as this user: {why}"),
            format!("impossible d'agir en tant que cet utilisateur : {why}"),
        )
    })?;
    let who = RequestContext { user_id: row.get(0), tenant_id: row.get(1), role: row.get(2) };
    let tables = visible(&tx, &catalog, ask.detailed).await?;
    let body =
        json!({"impersonatedBy": context_json(tx.context()), "caller": context_json(&who), "detailed": ask.detailed, "tables": tables});
    drop(tx); // ROLLBACK: the impersonated context never outlives this request
    Ok(json(StatusCode::OK, &body))
}

#[derive(Deserialize)]
struct TestQuery {
    #[serde(default)]
    detailed: Option<String>,
}

/// `/api/rls/test`, `/api/rls/policies`, `/api/rls/impersonate`.
pub fn routes(state: Arc<RestState>) -> BoxedFilter<(Response,)> {
    let caller = super::caller_filter(state.core.clone());
    let with_state = warp::any().map(move || state.clone());
    let test = warp::path!("api" / "rls" / "test")
        .and(warp::get())
        .and(caller.clone())
        .and(warp::query::<TestQuery>().or(warp::any().map(|| TestQuery { detailed: None })).unify())
        .and(with_state.clone())
        .then(|c: Caller, q: TestQuery, s: Arc<RestState>| async move {
            let detailed = q.detailed.is_some_and(|d| matches!(d.as_str(), "true" | "1" | "yes"));
            respond(rls_test(&s, &c, detailed).await)
        });
    let policies = warp::path!("api" / "rls" / "policies")
        .and(warp::get())
        .and(caller.clone())
        .and(with_state.clone())
        .then(|c: Caller, s: Arc<RestState>| async move { respond(rls_policies(&s, &c).await) });
    let impersonate = warp::path!("api" / "rls" / "impersonate")
        .and(warp::post())
        .and(caller)
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with_state)
        .then(|c: Caller, len: Option<u64>, body, s: Arc<RestState>| async move {
            let result = async {
                let bytes = read_limited(body, s.settings.max_body_bytes, len).await?;
                impersonate(&s, &c, &bytes).await
            };
            respond(result.await)
        });
    test.or(policies).unify().or(impersonate).unify().boxed()
}

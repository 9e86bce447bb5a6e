//! The Supabase Realtime protocol (SPEC §5b): Phoenix channels on `/realtime/v1/websocket`,
//! so that `@supabase/realtime-js` and `supabase-js` apps work unchanged.
//!
//! The seam with `/ws`: both protocols use the same hub (tenant → sessions, one `Arc<Event>`
//! per event, bounded queues, lagging cut-off), the same membership check under the
//! subscriber's identity (`replay::enter` → `app.begin_request`), the same revocation effects
//! (membership and user events applied by the hub), the same socket reader, upgrade checks
//! (Origin, tenant) and close codes. What differs is the framing (`codec`), and the shape of a
//! subscription: a Phoenix socket holds several channels (topics), each with several
//! `postgres_changes` bindings; the hub holds one coarse subscription per socket (tenant, role,
//! the union of the bound tables) and the session matches bindings per channel.
//!
//! Refusals before the upgrade use the REST error body: 403 Origin or not a member, 400 bad
//! `vsn` or tenant, 426 not a WebSocket upgrade.

pub mod changes;
pub mod codec;
pub(crate) mod session;

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::Role as WsRole;
use uuid::Uuid;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::hyper::upgrade::OnUpgrade;
use warp::reply::Response;

use super::Realtime;
use super::upgrade::{header, origin_refusal, socket_config, upgrade_request};
use crate::auth::Principal;
use crate::db::TenantTx;
use crate::error::ApiError;
use crate::http::filters::{Door, parse_tenant, resolve_tenant};
use crate::http::respond;
use crate::i18n::Lang;
use crate::limits::SessionPermit;
use crate::rest::RestState;
use codec::Vsn;

/// What a Phoenix session reaches: the realtime state and the REST catalog (columns and
/// their types for `postgres_changes`, visibility of tables and columns for bindings).
pub struct PhxState {
    pub realtime: Arc<Realtime>,
    pub rest: Arc<RestState>,
}

/// What the upgrade established.
pub struct Admission {
    pub vsn: Vsn,
    /// The tenant asked for (`tenant`/`tenantId`, `X-Tenant-ID`); else the token's claim or the
    /// user's only membership, resolved at the first join.
    pub tenant: Option<Uuid>,
    /// `apikey`, when it is a valid JWT: the identity of joins without an `access_token`.
    pub apikey: Option<Principal>,
    pub lang: Lang,
    /// The apikey user's session slot, when the apikey is a JWT.
    pub slot: Option<SessionPermit>,
}

pub fn route(realtime: Arc<Realtime>, rest: Arc<RestState>) -> BoxedFilter<(Response,)> {
    let state = Arc::new(PhxState { realtime, rest });
    let with_state = warp::any().map(move || state.clone());
    warp::path!("realtime" / "v1" / "websocket")
        .and(upgrade_request())
        .and(with_state)
        .then(|headers: HeaderMap, query: String, ws: Option<(String, OnUpgrade)>, state: Arc<PhxState>| async move {
            respond(upgrade(state, &headers, &query, ws).await)
        })
        .boxed()
}

#[derive(Default)]
struct Params {
    apikey: Option<String>,
    vsn: Option<String>,
    tenant: Option<String>,
}

fn params(query: &str) -> Params {
    let mut p = Params::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "apikey" => p.apikey = Some(v.into_owned()),
            "vsn" => p.vsn = Some(v.into_owned()),
            "tenant" | "tenantId" => p.tenant = Some(v.into_owned()),
            _ => {}
        }
    }
    p
}

async fn upgrade(state: Arc<PhxState>, headers: &HeaderMap, query: &str, ws: Option<(String, OnUpgrade)>) -> Result<Response, ApiError> {
    let p = params(query);
    let rt = &state.realtime;
    if let Some(refusal) = origin_refusal(&rt.settings, headers) {
        return Err(refusal);
    }
    let vsn = Vsn::parse(p.vsn.as_deref()).map_err(|e| ApiError::bad_request(e.clone(), e))?;
    let tenant = parse_tenant(header(headers, "x-tenant-id").map(str::to_string).or(p.tenant), Door::WebSocket)?;
    // An apikey that is a valid JWT is an identity; anything else (a project's anon key) is not
    // refused here: each join must then carry its own access_token.
    let apikey = p.apikey.as_deref().and_then(|k| rt.jwt.verify(k).ok());
    // Upgrades per minute and concurrent sessions of this user: 429 before any database work.
    let slot = apikey.as_ref().map(|principal| rt.limits.admit_session(principal.user_id)).transpose()?;
    if let Some(principal) = &apikey {
        // Refused before the upgrade, as on /ws, when the apikey's user may not enter.
        let tenant = resolve_tenant(principal, tenant)?;
        let mut conn = rt.db.conn_for(tenant.unwrap_or(principal.user_id)).await?;
        TenantTx::begin(&rt.db, &mut conn, principal, tenant).await?.commit().await?;
    }
    let Some((key, on_upgrade)) = ws else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "PGRST117",
            "this endpoint needs a WebSocket upgrade",
            "ce point d'accès exige une connexion WebSocket",
        ));
    };
    let lang = Lang::negotiate(header(headers, "accept-language"));
    let admission = Admission { vsn, tenant, apikey, lang, slot };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), WsRole::Server, Some(socket_config())).await;
                session::run(state, socket, admission).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade did not complete"),
        }
    });
    Ok(warp::http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .body(Default::default())
        .unwrap_or_default())
}

//! `GET /ws`: everything is checked BEFORE the upgrade — Origin (403), token from the
//! `Authorization` header or `?token=` (401), tenant from `X-Tenant-ID`, `?tenant=` or
//! `?tenantId=` and the database's `app.begin_request` (403) — so a refused client gets an
//! HTTP status and a JSON error body like the REST API, never a socket.
//!
//! The handshake is done here rather than by `warp::ws()` so that the socket gets rowcast's
//! own configuration: small read/write buffers (an idle session must stay cheap: warp's
//! default is 128 KiB of read buffer per socket; rowcast's is 512 bytes) and a 64 KiB
//! inbound limit.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role as WsRole, WebSocketConfig};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::hyper::upgrade::OnUpgrade;
use warp::reply::Response;

use super::Realtime;
use super::event::Role;
use super::protocol::MAX_INBOUND_BYTES;
use super::session::{self, Admission};
use crate::config::Settings;
use crate::db::TenantTx;
use crate::error::ApiError;
use crate::http::filters::{Door, identify, raw_query};
use crate::http::respond;
use crate::i18n::Lang;
use crate::limits::SessionPermit;

pub fn route(state: Arc<Realtime>) -> BoxedFilter<(Response,)> {
    let with_state = warp::any().map(move || state.clone());
    warp::path!("ws")
        .and(upgrade_request())
        .and(with_state)
        .then(|headers: HeaderMap, query: String, ws: Option<(String, OnUpgrade)>, state: Arc<Realtime>| async move {
            respond(upgrade(state, &headers, &query, ws).await)
        })
        .boxed()
}

/// What both socket protocols take from an upgrade request: its headers, its raw query, and —
/// when it is a valid WebSocket upgrade — the `Sec-WebSocket-Key` and the connection to take
/// over (`None` answers the request with an HTTP error instead).
pub(super) fn upgrade_request()
-> impl Filter<Extract = (HeaderMap, String, Option<(String, OnUpgrade)>), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and(raw_query())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(|method: Method, headers: HeaderMap, query: String, on_upgrade: Option<OnUpgrade>| {
            let ws = on_upgrade.and_then(|u| websocket_key(&method, &headers).map(|key| (key, u)));
            (headers, query, ws)
        })
        .untuple_one()
}

/// Bytes of an idle socket's read buffer, and the most one read call takes. Client frames are
/// small (commands, joins, heartbeats); a larger one grows the buffer to its size (at most
/// 64 KiB), in reads of this size.
pub(super) const READ_BUFFER_BYTES: usize = 512;

/// The socket configuration of every session: a small read buffer, and no write buffering
/// (each frame is written out at once; the write buffer only grows to the largest frame).
pub(super) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_INBOUND_BYTES))
        .max_frame_size(Some(MAX_INBOUND_BYTES))
}

/// `Sec-WebSocket-Key` of a well-formed RFC 6455 upgrade request.
pub(super) fn websocket_key(method: &Method, headers: &HeaderMap) -> Option<String> {
    let has_token =
        |name: &str, token: &str| header(headers, name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)));
    let ok = method == Method::GET
        && has_token("connection", "upgrade")
        && has_token("upgrade", "websocket")
        && header(headers, "sec-websocket-version") == Some("13");
    ok.then(|| header(headers, "sec-websocket-key").map(str::to_string)).flatten()
}

/// Answers 101 and starts the session once hyper hands the connection over.
/// The session holds its user's session slot until it ends.
fn switch(state: Arc<Realtime>, key: &str, on_upgrade: OnUpgrade, admission: Admission, slot: SessionPermit) -> Response {
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), WsRole::Server, Some(socket_config())).await;
                session::run(state, socket, admission).await;
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade did not complete"),
        }
        drop(slot);
    });
    warp::http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .body(Default::default())
        .unwrap_or_default()
}

#[derive(Default)]
struct Params {
    token: Option<String>,
    tenant: Option<String>,
    language: Option<String>,
    since: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Params {
        let mut p = Params::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "token" | "access_token" => p.token = Some(v.into_owned()),
                "tenant" | "tenantId" => p.tenant = Some(v.into_owned()),
                "language" | "lang" => p.language = Some(v.into_owned()),
                "since" => p.since = Some(v.into_owned()),
                _ => {}
            }
        }
        p
    }
}

pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn upgrade(state: Arc<Realtime>, headers: &HeaderMap, query: &str, ws: Option<(String, OnUpgrade)>) -> Result<Response, ApiError> {
    let params = Params::parse(query);
    if let Some(refusal) = origin_refusal(&state.settings, headers) {
        return Err(refusal);
    }
    let requested = header(headers, "x-tenant-id").map(str::to_string).or(params.tenant);
    let (principal, tenant) = identify(&state.jwt, Door::WebSocket, header(headers, "authorization"), params.token.as_deref(), requested)?;
    let since = match params.since.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => return Err(ApiError::bad_request("since must be a seq (an integer ≥ 0)", "since doit être un seq (entier ≥ 0)")),
    };
    let Some((key, on_upgrade)) = ws else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "PGRST117",
            "this endpoint needs a WebSocket upgrade",
            "ce point d'accès exige une connexion WebSocket",
        ));
    };
    // Upgrades per minute and concurrent sessions of this user: 429 before any database work.
    let slot = state.limits.admit_session(principal.user_id)?;
    let ctx = {
        let mut conn = state.db.conn_for(tenant.unwrap_or(principal.user_id)).await?;
        let tx = TenantTx::begin(&state.db, &mut conn, &principal, tenant).await?;
        let ctx = tx.context().clone();
        tx.commit().await?;
        ctx
    };
    let role = Role::parse(&ctx.role).ok_or_else(no_tenant_role)?;
    let lang = params.language.as_deref().and_then(Lang::from_tag).unwrap_or_else(|| Lang::negotiate(header(headers, "accept-language")));
    let admission = Admission { principal, tenant: ctx.tenant_id, role, lang, since };
    Ok(switch(state, &key, on_upgrade, admission, slot))
}

/// A signed-in user with no membership (role `none`: they may only answer invitations) has
/// no tenant whose events they could receive.
pub(crate) fn no_tenant_role() -> ApiError {
    ApiError::forbidden(
        "you are not a member of any tenant yet: accept an invitation first",
        "vous n'êtes membre d'aucun locataire : acceptez d'abord une invitation",
    )
}

/// Browsers send `Origin`; others do not. Without `ROWCAST_ALLOWED_ORIGINS` only same-origin
/// pages (Origin host == Host) and non-browser clients may connect.
pub(super) fn origin_refusal(settings: &Settings, headers: &HeaderMap) -> Option<ApiError> {
    let raw = headers.get("origin")?;
    let origin = raw.to_str().unwrap_or_default().trim().trim_end_matches('/');
    let allowed = match &settings.allowed_origins {
        Some(list) => list.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)),
        None => {
            // Same origin is scheme AND host: a plain-http page (or file://, null) is not the
            // https site it imitates. The scheme is the one the client used: the proxy's
            // X-Forwarded-Proto when there is one, else http (rowcast itself serves no TLS).
            let scheme = header(headers, "x-forwarded-proto").and_then(|p| p.split(',').next()).map(str::trim).unwrap_or("http");
            let expected = header(headers, "host").map(|host| format!("{scheme}://{host}"));
            expected.is_some_and(|e| e.eq_ignore_ascii_case(origin))
        }
    };
    (!allowed).then(|| {
        ApiError::forbidden(format!("origin {origin} is not allowed"), format!("l'origine {origin} n'est pas autorisée"))
            .with_hint("Add it to ROWCAST_ALLOWED_ORIGINS.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (warp::http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    fn settings(origins: Option<&[&str]>) -> Settings {
        let mut s = Settings::from_env(&crate::config::Env::from_pairs([("X".to_string(), "y".to_string())])).unwrap();
        s.allowed_origins = origins.map(|o| o.iter().map(|x| x.to_string()).collect());
        s
    }

    #[test]
    fn origins() {
        let same = headers(&[("origin", "http://localhost:8080"), ("host", "localhost:8080")]);
        let other = headers(&[("origin", "https://evil.test"), ("host", "localhost:8080")]);
        assert!(origin_refusal(&settings(None), &headers(&[])).is_none(), "no Origin: not a browser");
        assert!(origin_refusal(&settings(None), &same).is_none());
        assert!(origin_refusal(&settings(None), &other).is_some());
        assert!(origin_refusal(&settings(Some(&["https://evil.test"])), &other).is_none());
        assert!(origin_refusal(&settings(Some(&["https://app.test"])), &same).is_some());
    }

    #[test]
    fn same_origin_includes_the_scheme() {
        let plain_page = headers(&[("origin", "http://app.test"), ("host", "app.test"), ("x-forwarded-proto", "https")]);
        assert!(origin_refusal(&settings(None), &plain_page).is_some(), "http page against an https site");
        let tls_page = headers(&[("origin", "https://app.test"), ("host", "app.test"), ("x-forwarded-proto", "https")]);
        assert!(origin_refusal(&settings(None), &tls_page).is_none());
        let https_without_proxy = headers(&[("origin", "https://localhost:8080"), ("host", "localhost:8080")]);
        assert!(origin_refusal(&settings(None), &https_without_proxy).is_some(), "rowcast itself serves http only");
        for odd in ["file://localhost:8080", "null", "ws://localhost:8080"] {
            let h: HeaderMap = [("origin", odd), ("host", "localhost:8080")]
                .iter()
                .map(|(k, v)| (warp::http::HeaderName::from_static(k), v.parse().unwrap()))
                .collect();
            assert!(origin_refusal(&settings(None), &h).is_some(), "{odd}");
        }
    }
}

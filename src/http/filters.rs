//! warp filters that turn headers into typed values. Nothing below them parses a header.
//!
//! The one ingress path for callers: every door (REST and the other HTTP routes through
//! [`caller`], the `/ws` upgrade through [`identify`]) authenticates with [`authenticate`],
//! reads the requested tenant with [`parse_tenant`] and applies the token's restriction with
//! [`resolve_tenant`].

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;
use warp::{Filter, Rejection};

use crate::auth::{AuthError, JwtVerifier, Principal};
use crate::core::Core;
use crate::error::ApiError;
use crate::i18n::Lang;

/// Per-request facts the response wrapper needs.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    pub id: String,
    pub lang: Lang,
    pub method: warp::http::Method,
    pub path: String,
    pub started: Instant,
}

fn usable_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh request id: a v4 uuid from the thread's generator (seeded from the OS, reseeded
/// by `rand`), not a `getrandom` system call per request as `Uuid::new_v4` makes.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().hyphenated().to_string()
}

pub fn request_meta() -> impl Filter<Extract = (RequestMeta,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-request-id")
        .and(warp::header::optional::<String>("accept-language"))
        .and(warp::method())
        .and(warp::path::full())
        .map(|id: Option<String>, lang: Option<String>, method, path: warp::path::FullPath| RequestMeta {
            id: id.filter(|i| usable_request_id(i)).unwrap_or_else(new_request_id),
            lang: Lang::negotiate(lang.as_deref()),
            method,
            path: path.as_str().to_string(),
            started: Instant::now(),
        })
}

/// Token errors about claims (PostgREST's "JWT claims validation", `PGRST303`).
const CLAIM_ERRORS: &[&str] = &["expired", "not valid yet", "audience", "issuer", "missing claim", "sub is not"];

pub fn auth_error(err: AuthError) -> ApiError {
    match err {
        // PostgREST's PGRST302: no token, and there is no anonymous role.
        AuthError::Missing => {
            ApiError::new(warp::http::StatusCode::UNAUTHORIZED, "PGRST302", "missing bearer token", "jeton d'accès manquant")
                .with_hint("Send `Authorization: Bearer <jwt>` (or an `apikey` header).")
        }
        // PGRST303: the token decoded and verified, but its claims are refused.
        AuthError::Invalid(why) if CLAIM_ERRORS.iter().any(|c| why.contains(c)) => {
            let mut e = ApiError::unauthorized(format!("invalid token: {why}"), format!("jeton invalide : {why}"));
            e.code = "PGRST303".into();
            e
        }
        // PGRST301: the token could not be decoded or its signature is wrong.
        AuthError::Invalid(why) => ApiError::unauthorized(format!("invalid token: {why}"), format!("jeton invalide : {why}")),
    }
}

/// Which way a request came in: it decides only the wording of a refusal (the parameters
/// each door accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// REST and the other HTTP routes.
    Http,
    /// The `/ws` upgrade, where browsers cannot set headers (`?token=`, `?tenant=`).
    WebSocket,
}

impl Door {
    fn auth_error(self, err: AuthError) -> ApiError {
        match self {
            Door::Http => auth_error(err),
            Door::WebSocket => auth_error(err).with_hint("Send `Authorization: Bearer <jwt>` or `?token=<jwt>`."),
        }
    }
}

/// The caller from the `Authorization` header, else from a token given in the query string
/// (only the `/ws` upgrade passes one).
pub fn authenticate(jwt: &JwtVerifier, authorization: Option<&str>, query_token: Option<&str>) -> Result<Principal, AuthError> {
    match (authorization, query_token) {
        (None, Some(token)) => jwt.verify(token),
        (header, _) => jwt.verify_header(header),
    }
}

/// The tenant a caller asks for (`X-Tenant-ID`, else the query parameter), as a uuid.
pub fn parse_tenant(raw: Option<String>, door: Door) -> Result<Option<Uuid>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    Uuid::parse_str(raw.trim()).map(Some).map_err(|_| match door {
        Door::Http => ApiError::bad_request(
            "tenant id (X-Tenant-ID or tenantId) is not a uuid",
            "l'identifiant de locataire (X-Tenant-ID ou tenantId) n'est pas un uuid",
        ),
        Door::WebSocket => ApiError::bad_request(
            "tenant (?tenant= or X-Tenant-ID) is not a uuid",
            "le locataire (?tenant= ou X-Tenant-ID) n'est pas un uuid",
        ),
    })
}

/// The caller and the tenant they act in, from what a request carries: the `Authorization`
/// header, a query-string token, the raw requested tenant. 401, 400 or 403 in that order,
/// all before any database work.
pub fn identify(
    jwt: &JwtVerifier,
    door: Door,
    authorization: Option<&str>,
    query_token: Option<&str>,
    tenant: Option<String>,
) -> Result<(Principal, Option<Uuid>), ApiError> {
    let principal = authenticate(jwt, authorization, query_token).map_err(|e| door.auth_error(e))?;
    let requested = parse_tenant(tenant, door)?;
    let tenant = resolve_tenant(&principal, requested)?;
    Ok((principal, tenant))
}

/// The verified caller. 401 (before any database work) when the token is missing or bad.
pub fn principal(core: Arc<Core>) -> impl Filter<Extract = (Principal,), Error = Rejection> + Clone {
    // supabase-js sends `apikey`; without `Authorization` it is the bearer token.
    let header = warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("apikey"))
        .map(|auth: Option<String>, apikey: Option<String>| auth.or_else(|| apikey.map(|k| format!("Bearer {}", k.trim()))));
    header.and_then(move |header: Option<String>| {
        let core = core.clone();
        async move { authenticate(&core.jwt, header.as_deref(), None).map_err(|e| warp::reject::custom(Door::Http.auth_error(e))) }
    })
}

/// The raw query string, empty when there is none.
pub fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The tenant the request asks for: `X-Tenant-ID`, else `tenantId` in the query, else the
/// token's `tenant_id` claim, else `None` (the database then picks the user's only tenant).
pub fn tenant() -> impl Filter<Extract = (Option<Uuid>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("x-tenant-id").and(raw_query()).and_then(|header: Option<String>, query: String| async move {
        let from_query = || form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "tenantId").map(|(_, v)| v.into_owned());
        parse_tenant(header.or_else(from_query), Door::Http).map_err(warp::reject::custom)
    })
}

/// Applies the token's `tenant_id` restriction to the requested tenant.
pub fn resolve_tenant(principal: &Principal, requested: Option<Uuid>) -> Result<Option<Uuid>, ApiError> {
    match (principal.tenant_claim, requested) {
        (Some(claim), Some(asked)) if claim != asked => {
            Err(ApiError::forbidden("this token is restricted to another tenant", "ce jeton est limité à un autre locataire"))
        }
        (Some(claim), _) => Ok(Some(claim)),
        (None, asked) => Ok(asked),
    }
}

/// The caller and the tenant they act in: `(Principal, Option<Uuid>)`, within the user's
/// and the tenant's request rates (429 otherwise, still before any database work).
pub fn caller(core: Arc<Core>) -> impl Filter<Extract = (Principal, Option<Uuid>), Error = Rejection> + Clone {
    let limits = core.limits.clone();
    principal(core)
        .and(tenant())
        .and_then(move |p: Principal, t: Option<Uuid>| {
            let limits = limits.clone();
            async move {
                let tenant = resolve_tenant(&p, t).map_err(warp::reject::custom)?;
                limits.check_caller(p.user_id, tenant).map_err(warp::reject::custom)?;
                Ok::<_, Rejection>((p, tenant))
            }
        })
        .untuple_one()
}

/// Paths outside every rate limit: probes and scrapes must keep working under load.
fn unlimited_path(path: &str) -> bool {
    matches!(path, "/health" | "/live" | "/ready" | "/metrics")
}

/// Before authentication: the client IP's request rate, and for a WebSocket upgrade its
/// upgrade rate too (429, no database work). The IP is the socket's peer: behind a reverse
/// proxy every client shares the proxy's address (see docs/limits.md).
pub fn client_ip_limits(core: Arc<Core>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::addr::remote()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("upgrade"))
        .and_then(move |peer: Option<std::net::SocketAddr>, path: warp::path::FullPath, upgrade: Option<String>| {
            let limits = core.limits.clone();
            async move {
                let (Some(peer), false) = (peer, unlimited_path(path.as_str())) else { return Ok(()) };
                let ip = peer.ip();
                limits.ip.check(&ip).map_err(|e| warp::reject::custom(crate::limits::too_many_requests(&e)))?;
                if upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                    limits.ws_connect_ip.check(&ip).map_err(|e| warp::reject::custom(crate::limits::too_many_requests(&e)))?;
                }
                Ok::<_, Rejection>(())
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{JwtKey, JwtSettings};
    use crate::secret::Secret;

    fn jwt() -> JwtVerifier {
        let key = JwtKey::Hs256(Secret::new(b"0123456789abcdef0123456789abcdef".to_vec()));
        JwtVerifier::new(&JwtSettings { key, audience: "rowcast".into(), issuer: None }).unwrap()
    }

    fn token(jwt: &JwtVerifier, user: Uuid, tenant: Option<Uuid>) -> String {
        jwt.mint(user, tenant, std::time::Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn the_header_wins_over_a_query_token_which_is_used_alone_otherwise() {
        let (jwt, header_user, query_user) = (jwt(), Uuid::new_v4(), Uuid::new_v4());
        let header = format!("Bearer {}", token(&jwt, header_user, None));
        let query = token(&jwt, query_user, None);
        assert_eq!(authenticate(&jwt, Some(&header), Some(&query)).unwrap().user_id, header_user);
        assert_eq!(authenticate(&jwt, None, Some(&query)).unwrap().user_id, query_user);
        assert!(matches!(authenticate(&jwt, None, None), Err(AuthError::Missing)));
        assert!(matches!(authenticate(&jwt, Some("Bearer nope"), Some(&query)), Err(AuthError::Invalid(_))), "a bad header is not rescued");
    }

    #[test]
    fn every_door_refuses_in_the_same_order_401_then_400_then_403() {
        let (jwt, user, claim, other) = (jwt(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let header = format!("Bearer {}", token(&jwt, user, Some(claim)));
        for door in [Door::Http, Door::WebSocket] {
            let status = |r: Result<_, ApiError>| r.map(|_| 200).unwrap_or_else(|e| e.status.as_u16());
            assert_eq!(status(identify(&jwt, door, None, None, Some("not-a-uuid".into()))), 401);
            assert_eq!(status(identify(&jwt, door, Some(&header), None, Some("not-a-uuid".into()))), 400);
            assert_eq!(status(identify(&jwt, door, Some(&header), None, Some(other.to_string()))), 403);
            let (principal, tenant) = identify(&jwt, door, Some(&header), None, None).unwrap();
            assert_eq!((principal.user_id, tenant), (user, Some(claim)), "the claim is the tenant when none is asked for");
        }
    }
}

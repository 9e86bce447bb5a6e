//! Request rate limits, WebSocket limits and the fair pool (SPEC §11). Everything here is
//! memory-only: a refusal costs no database work and takes no pool connection.
//!
//! - [`rate`]: per-minute GCRA limits keyed by client IP, user, WebSocket upgrades;
//! - [`tenants`]: per-tenant limits whose figure comes from the tenant's plan;
//! - [`sessions`]: concurrent WebSocket sessions per user;
//! - [`frames`]: inbound frames per WebSocket session ([`FrameLimiter`], for every protocol);
//! - [`fair`]: per-tenant cap on concurrent transactions;
//! - [`reload`]: keeps the plan figures current (LISTEN rowcast_limits) and prunes idle keys.

pub mod fair;
pub mod frames;
pub mod rate;
pub mod reload;
pub mod sessions;
pub mod tenants;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

pub use fair::{GatePermit, TenantGate};
pub use frames::FrameLimiter;
pub use rate::{Exceeded, KeyedRate, Scope};
pub use sessions::{SessionLimit, SessionPermit};
pub use tenants::TenantRates;

use crate::config::RateSettings;
use crate::error::ApiError;

/// Every limit of one server instance.
pub struct Limits {
    pub ip: KeyedRate<IpAddr>,
    pub user: KeyedRate<Uuid>,
    pub tenants: TenantRates,
    pub ws_connect_ip: KeyedRate<IpAddr>,
    pub ws_connect_user: KeyedRate<Uuid>,
    pub sessions: Arc<SessionLimit>,
    pub frames_per_second: u32,
    pub gate: Arc<TenantGate>,
}

impl Limits {
    /// `pool_size` and `pool_timeout` size the fair pool: half the pool per tenant unless
    /// `ROWCAST_TENANT_MAX_CONCURRENCY` says otherwise; waiting at most the pool timeout.
    pub fn new(s: &RateSettings, pool_size: usize, pool_timeout: Duration) -> Self {
        let cap = s.tenant_max_concurrency.unwrap_or_else(|| (pool_size / 2).max(1));
        Self {
            ip: KeyedRate::new(Scope::Ip, s.ip_per_min),
            user: KeyedRate::new(Scope::User, s.user_per_min),
            tenants: TenantRates::new(s.tenant_per_min),
            ws_connect_ip: KeyedRate::new(Scope::WsConnectIp, s.ws_connect_per_min),
            ws_connect_user: KeyedRate::new(Scope::WsConnectUser, s.ws_connect_per_min),
            sessions: SessionLimit::new(s.ws_max_sessions_per_user),
            frames_per_second: s.ws_frames_per_sec,
            gate: TenantGate::new(cap, pool_timeout),
        }
    }

    /// After authentication: the user's and the tenant's allowance (the tenant when the
    /// request names it — header, query or token claim; otherwise the database picks the
    /// user's only tenant and the user's limit is what applies).
    pub fn check_caller(&self, user: Uuid, tenant: Option<Uuid>) -> Result<(), ApiError> {
        self.user.check(&user).map_err(|e| too_many_requests(&e))?;
        match tenant {
            Some(t) => self.tenants.check(t).map_err(|e| too_many_requests(&e)),
            None => Ok(()),
        }
    }

    /// A WebSocket upgrade by an authenticated user: upgrades per minute per user, then a
    /// session slot (held by the session until it ends).
    pub fn admit_session(&self, user: Uuid) -> Result<SessionPermit, ApiError> {
        self.ws_connect_user.check(&user).map_err(|e| too_many_requests(&e))?;
        self.sessions.try_open(user).map_err(|e| too_many_requests(&e))
    }

    /// A fresh per-session inbound frame limiter (`ROWCAST_WS_FRAMES_PER_SEC`).
    pub fn frame_limiter(&self) -> FrameLimiter {
        FrameLimiter::new(self.frames_per_second)
    }

    /// Forgets idle keys of every keyed limiter; returns the keys still tracked.
    pub fn prune(&self) -> usize {
        self.ip.prune() + self.user.prune() + self.tenants.prune() + self.ws_connect_ip.prune() + self.ws_connect_user.prune()
    }
}

/// 429 with `Retry-After`, `RateLimit-Limit/Remaining/Reset/Policy` and a PostgREST-shaped body.
pub fn too_many_requests(e: &Exceeded) -> ApiError {
    let (en, fr) = match e.scope {
        Scope::Ip => ("too many requests from this address", "trop de requêtes depuis cette adresse"),
        Scope::User => ("too many requests for this user", "trop de requêtes pour cet utilisateur"),
        Scope::Tenant => ("too many requests for this tenant", "trop de requêtes pour ce locataire"),
        Scope::WsConnectIp => ("too many WebSocket connections from this address", "trop de connexions WebSocket depuis cette adresse"),
        Scope::WsConnectUser => ("too many WebSocket connections for this user", "trop de connexions WebSocket pour cet utilisateur"),
        Scope::WsSessions => ("too many open WebSocket sessions for this user", "trop de sessions WebSocket ouvertes pour cet utilisateur"),
        Scope::WsFrames => ("too many WebSocket frames", "trop de trames WebSocket"),
        Scope::TenantConcurrency => ("too many concurrent requests for this tenant", "trop de requêtes simultanées pour ce locataire"),
    };
    let figure = match e.scope {
        Scope::WsSessions | Scope::TenantConcurrency => format!("at most {} at once", e.limit),
        _ => format!("{} per minute, bursts of {}", e.per_window, e.limit),
    };
    let secs = e.retry_after_secs();
    let mut err = ApiError::new(
        warp::http::StatusCode::TOO_MANY_REQUESTS,
        "PT429",
        format!("rate limit exceeded: {en} ({figure})"),
        format!("limite de débit dépassée : {fr} ({figure})"),
    )
    .with_details(format!("scope={} limit={} retry_after={secs}s", e.scope.as_str(), e.limit))
    .with_hint(format!("Retry after {secs} s (Retry-After header)."));
    for (name, value) in e.headers() {
        err = err.with_header(name, value);
    }
    err
}

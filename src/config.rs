//! Typed settings read once from the environment (`.env` honoured), validated up front.
//!
//! Precedence: process environment, then `.env`, then the state a `rowcast dev` keeps in
//! `./.rowcast/dev.env`. Secrets are wrapped in [`Secret`], whose `Debug` never prints them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use crate::auth::{JwtKey, JwtSettings};
pub use crate::secret::Secret;

/// One bad variable: which one and how to fix it. Displayed as a single line.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self { var, message: message.into() }
    }
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// Owner DSN, used by `migrate` and `admin`.
    pub database_url: Option<Secret<String>>,
    /// DSN used by `serve`; derived from `database_url` when unset.
    pub app_database_url: Option<Secret<String>>,
    pub app_password: Option<Secret<String>>,
    pub bind: SocketAddr,
    pub jwt: Option<JwtSettings>,
    pub pool_size: usize,
    pub pool_timeout: Duration,
    pub statement_timeout: Duration,
    /// `ROWCAST_DB_TRANSACTION_POOLER`: the pool reaches PostgreSQL through a transaction-mode
    /// pooler (PgBouncer), which cannot keep SQL `PREPARE`d statements between transactions.
    pub transaction_pooler: bool,
    pub slow_query: Duration,
    pub event_retention: Duration,
    pub allowed_origins: Option<Vec<String>>,
    pub metrics_token: Option<Secret<String>>,
    pub max_body_bytes: u64,
    pub log_json: bool,
    /// Events a WebSocket session may have queued before it is closed as lagging.
    pub ws_queue_capacity: usize,
    /// WebSocket keepalive ping interval; a session silent for two intervals is closed.
    pub ws_keepalive: Duration,
    /// Webhook delivery settings (SPEC §10).
    pub webhooks: WebhookSettings,
    /// Request rate limits, WebSocket limits and the fair pool (SPEC §11).
    pub rate: RateSettings,
}

/// How this instance delivers webhooks.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// `ROWCAST_WEBHOOK_ALLOW_PRIVATE`: let deliveries reach loopback/private/link-local addresses.
    pub allow_private: bool,
    /// `ROWCAST_WEBHOOK_CONCURRENCY`: attempts in flight in this instance, all tenants.
    pub concurrency: usize,
    /// `ROWCAST_WEBHOOK_TENANT_CONCURRENCY`: attempts in flight in this instance per tenant.
    pub tenant_concurrency: usize,
    /// `ROWCAST_WEBHOOK_TIMEOUT_MS`: whole-attempt bound (connect is at most 5 s of it).
    pub timeout: Duration,
    /// `ROWCAST_WEBHOOK_POLL_MS`: how often the dispatcher feeds and claims without a
    /// notification (due retries, expired leases, events it was not woken for).
    pub poll: Duration,
}

/// `ROWCAST_RATE_*`, `ROWCAST_WS_*` and `ROWCAST_TENANT_MAX_CONCURRENCY`; `0` switches a
/// limit off. Per-minute figures allow bursts of a tenth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSettings {
    pub ip_per_min: u32,
    pub user_per_min: u32,
    /// Per tenant, unless its plan's `api_requests_per_minute` says otherwise.
    pub tenant_per_min: u32,
    /// WebSocket upgrades per minute, per client IP and per user.
    pub ws_connect_per_min: u32,
    pub ws_max_sessions_per_user: usize,
    pub ws_frames_per_sec: u32,
    /// Concurrent transactions per tenant; `None`: half the pool.
    pub tenant_max_concurrency: Option<usize>,
}

impl RateSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let per_min = |var: &'static str, default: u32| parse_var(env, var, default, "a number per minute, 0 to switch it off");
        Ok(Self {
            ip_per_min: per_min("ROWCAST_RATE_IP_PER_MIN", 6000)?,
            user_per_min: per_min("ROWCAST_RATE_USER_PER_MIN", 3000)?,
            tenant_per_min: per_min("ROWCAST_RATE_TENANT_PER_MIN", 12000)?,
            ws_connect_per_min: per_min("ROWCAST_RATE_WS_CONNECT_PER_MIN", 60)?,
            ws_max_sessions_per_user: parse_var(env, "ROWCAST_WS_MAX_SESSIONS_PER_USER", 100, "a number of sessions, 0 to switch it off")?,
            ws_frames_per_sec: parse_var(env, "ROWCAST_WS_FRAMES_PER_SEC", 50, "a number of frames per second, 0 to switch it off")?,
            tenant_max_concurrency: match env.get("ROWCAST_TENANT_MAX_CONCURRENCY") {
                None => None,
                Some(_) => Some(parse_var(env, "ROWCAST_TENANT_MAX_CONCURRENCY", 0, "a number of transactions, 0 to switch it off")?),
            },
        })
    }
}

pub const APP_ROLE: &str = "rowcast_app";

/// Where `rowcast dev` keeps its state: `./.rowcast`, or `ROWCAST_STATE_DIR`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("ROWCAST_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".rowcast"))
}

/// The `dev.env` a `rowcast dev` writes and every command reads as its last source.
pub fn dev_env_path() -> PathBuf {
    state_dir().join("dev.env")
}

/// Where a variable comes from: the process environment first, then dev state.
pub struct Env {
    dev_state: HashMap<String, String>,
    overrides: HashMap<String, String>,
}

impl Env {
    /// Loads `.env` (never overriding the real environment) and `./.rowcast/dev.env` if present.
    pub fn load() -> Self {
        let _ = dotenvy::dotenv();
        let dev_state = read_env_file(&dev_env_path());
        Self { dev_state, overrides: HashMap::new() }
    }

    /// An environment made of explicit pairs only (tests, embedded callers).
    pub fn from_pairs<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Self { dev_state: HashMap::new(), overrides: pairs.into_iter().collect() }
    }

    pub fn get(&self, var: &str) -> Option<String> {
        if let Some(v) = self.overrides.get(var) {
            return Some(v.clone());
        }
        if !self.overrides.is_empty() {
            return None;
        }
        std::env::var(var).ok().filter(|v| !v.is_empty()).or_else(|| self.dev_state.get(var).cloned())
    }

    /// True when the variable is set by the user (process env or `.env`), not by dev state.
    pub fn is_explicit(&self, var: &str) -> bool {
        self.overrides.contains_key(var) || std::env::var(var).is_ok_and(|v| !v.is_empty())
    }
}

fn read_env_file(path: &Path) -> HashMap<String, String> {
    match dotenvy::from_path_iter(path) {
        Ok(iter) => iter.filter_map(Result::ok).collect(),
        Err(_) => HashMap::new(),
    }
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let jwt = jwt_settings(env)?;
        let allowed_origins = env
            .get("ROWCAST_ALLOWED_ORIGINS")
            .map(|v| v.split(',').map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect());
        let pool_size: usize = parse_var(env, "ROWCAST_POOL_SIZE", 16, "a positive integer, e.g. 16")?;
        if pool_size == 0 {
            return Err(ConfigError::new("ROWCAST_POOL_SIZE", "must be at least 1"));
        }
        Ok(Self {
            database_url: env.get("DATABASE_URL").map(Secret::new),
            app_database_url: env.get("ROWCAST_APP_DATABASE_URL").map(Secret::new),
            app_password: env.get("ROWCAST_APP_PASSWORD").map(Secret::new),
            bind: parse_var(env, "ROWCAST_BIND", SocketAddr::from(([127, 0, 0, 1], 8080)), "an address like 127.0.0.1:8080")?,
            jwt,
            pool_size,
            pool_timeout: millis(env, "ROWCAST_POOL_TIMEOUT_MS", 2000)?,
            statement_timeout: millis(env, "ROWCAST_STATEMENT_TIMEOUT_MS", 5000)?,
            transaction_pooler: flag(env, "ROWCAST_DB_TRANSACTION_POOLER", false)?,
            slow_query: millis(env, "ROWCAST_SLOW_QUERY_MS", 1000)?,
            event_retention: duration(env, "ROWCAST_EVENT_RETENTION", "7d")?,
            allowed_origins,
            metrics_token: env.get("ROWCAST_METRICS_TOKEN").map(Secret::new),
            max_body_bytes: parse_var(env, "ROWCAST_MAX_BODY_BYTES", 1024 * 1024, "a size in bytes, e.g. 1048576")?,
            log_json: env.get("ROWCAST_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")),
            ws_queue_capacity: parse_var(env, "ROWCAST_WS_QUEUE_CAPACITY", 1024, "a positive number of events, e.g. 1024")?.max(1),
            ws_keepalive: millis(env, "ROWCAST_WS_KEEPALIVE_MS", 30_000)?.max(Duration::from_millis(100)),
            webhooks: webhook_settings(env)?,
            rate: RateSettings::from_env(env)?,
        })
    }

    pub fn jwt(&self) -> Result<&JwtSettings, ConfigError> {
        self.jwt.as_ref().ok_or_else(|| {
            ConfigError::new(
                "ROWCAST_JWT_SECRET",
                "not set: give an HS256 secret of at least 32 bytes (e.g. `openssl rand -hex 32`) or ROWCAST_JWT_PUBLIC_KEY",
            )
        })
    }

    /// Owner connection settings (`DATABASE_URL`).
    pub fn owner_pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        let url = self.database_url.as_ref().ok_or_else(|| {
            ConfigError::new("DATABASE_URL", "not set: give the owner DSN, e.g. postgres://postgres:secret@localhost/rowcast")
        })?;
        parse_dsn("DATABASE_URL", url.expose())
    }

    /// App connection settings: `ROWCAST_APP_DATABASE_URL`, else `DATABASE_URL` with user `rowcast_app`.
    pub fn app_pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        if let Some(url) = &self.app_database_url {
            return parse_dsn("ROWCAST_APP_DATABASE_URL", url.expose());
        }
        let mut config = self.owner_pg_config().map_err(|_| {
            ConfigError::new(
                "ROWCAST_APP_DATABASE_URL",
                "not set: give the app DSN (user rowcast_app), or DATABASE_URL and ROWCAST_APP_PASSWORD",
            )
        })?;
        let password = self
            .app_password
            .as_ref()
            .ok_or_else(|| ConfigError::new("ROWCAST_APP_PASSWORD", "not set: needed to derive the app DSN from DATABASE_URL"))?;
        config.user(APP_ROLE).password(password.expose().as_bytes());
        Ok(config)
    }
}

fn webhook_settings(env: &Env) -> Result<WebhookSettings, ConfigError> {
    let concurrency: usize = parse_var(env, "ROWCAST_WEBHOOK_CONCURRENCY", 64, "a positive number of requests, e.g. 64")?;
    let tenant_concurrency: usize = parse_var(env, "ROWCAST_WEBHOOK_TENANT_CONCURRENCY", 8, "a positive number of requests, e.g. 8")?;
    if concurrency == 0 || tenant_concurrency == 0 {
        let var = if concurrency == 0 { "ROWCAST_WEBHOOK_CONCURRENCY" } else { "ROWCAST_WEBHOOK_TENANT_CONCURRENCY" };
        return Err(ConfigError::new(var, "must be at least 1"));
    }
    let timeout = millis(env, "ROWCAST_WEBHOOK_TIMEOUT_MS", 15_000)?;
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
        return Err(ConfigError::new("ROWCAST_WEBHOOK_TIMEOUT_MS", "must be between 100 and 60000 milliseconds (default 15000)"));
    }
    let poll = millis(env, "ROWCAST_WEBHOOK_POLL_MS", 250)?;
    if poll < Duration::from_millis(10) || poll > Duration::from_secs(60) {
        return Err(ConfigError::new("ROWCAST_WEBHOOK_POLL_MS", "must be between 10 and 60000 milliseconds (default 250)"));
    }
    Ok(WebhookSettings {
        allow_private: flag(env, "ROWCAST_WEBHOOK_ALLOW_PRIVATE", false)?,
        concurrency,
        tenant_concurrency,
        timeout,
        poll,
    })
}

/// A boolean variable: true/false, 1/0, yes/no, on/off.
fn flag(env: &Env, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env.get(var).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(var, format!("`{v}` is not valid: expected true or false"))),
        },
    }
}

fn parse_dsn(var: &'static str, url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    tokio_postgres::Config::from_str(url)
        .map_err(|_| ConfigError::new(var, "is not a valid PostgreSQL connection string (postgres://user:password@host:port/db)"))
}

fn jwt_settings(env: &Env) -> Result<Option<JwtSettings>, ConfigError> {
    let key = match (env.get("ROWCAST_JWT_SECRET"), env.get("ROWCAST_JWT_PUBLIC_KEY")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new("ROWCAST_JWT_PUBLIC_KEY", "set together with ROWCAST_JWT_SECRET: keep only one"));
        }
        (Some(secret), None) => {
            if secret.len() < 32 {
                return Err(ConfigError::new("ROWCAST_JWT_SECRET", "must be at least 32 bytes (generate one with `openssl rand -hex 32`)"));
            }
            JwtKey::Hs256(Secret::new(secret.into_bytes()))
        }
        (None, Some(pem)) => {
            let pem = if pem.contains("-----BEGIN") { pem } else { read_pem_file(&pem)? };
            crate::auth::check_public_key(&pem).map_err(|m| ConfigError::new("ROWCAST_JWT_PUBLIC_KEY", m))?;
            JwtKey::PublicPem(pem)
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(JwtSettings {
        key,
        audience: env.get("ROWCAST_JWT_AUDIENCE").unwrap_or_else(|| "rowcast".into()),
        issuer: env.get("ROWCAST_JWT_ISSUER"),
    }))
}

fn read_pem_file(path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("ROWCAST_JWT_PUBLIC_KEY", format!("is neither a PEM key nor a readable file ({e})")))
}

fn parse_var<T: FromStr>(env: &Env, var: &'static str, default: T, expected: &str) -> Result<T, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError::new(var, format!("`{raw}` is not valid: expected {expected}"))),
    }
}

fn millis(env: &Env, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
    parse_var(env, var, default, "a number of milliseconds").map(Duration::from_millis)
}

fn duration(env: &Env, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
    let raw = env.get(var).unwrap_or_else(|| default.to_string());
    humantime::parse_duration(raw.trim())
        .map_err(|_| ConfigError::new(var, format!("`{raw}` is not a duration: expected e.g. 7d, 12h, 30m")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::from_env(&env(&[("X", "y")])).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.pool_size, 16);
        assert_eq!(s.pool_timeout, Duration::from_millis(2000));
        assert!(!s.transaction_pooler, "reads in one message unless a transaction pooler is declared");
        assert_eq!(s.statement_timeout, Duration::from_millis(5000));
        assert_eq!(s.event_retention, Duration::from_secs(7 * 86400));
        assert!(s.jwt.is_none());
        let r = &s.rate;
        assert_eq!((r.ip_per_min, r.user_per_min, r.tenant_per_min, r.ws_connect_per_min), (6000, 3000, 12000, 60));
        assert_eq!((r.ws_max_sessions_per_user, r.ws_frames_per_sec, r.tenant_max_concurrency), (100, 50, None));
    }

    #[test]
    fn rate_limits_take_zero_and_refuse_garbage_naming_the_variable() {
        let s = Settings::from_env(&env(&[("ROWCAST_RATE_IP_PER_MIN", "0"), ("ROWCAST_TENANT_MAX_CONCURRENCY", "3")])).unwrap();
        assert_eq!((s.rate.ip_per_min, s.rate.tenant_max_concurrency), (0, Some(3)));
        for var in ["ROWCAST_RATE_USER_PER_MIN", "ROWCAST_WS_FRAMES_PER_SEC", "ROWCAST_TENANT_MAX_CONCURRENCY"] {
            let err = Settings::from_env(&env(&[(var, "-5")])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn short_jwt_secret_names_the_variable() {
        let err = Settings::from_env(&env(&[("ROWCAST_JWT_SECRET", "short")])).unwrap_err();
        assert_eq!(err.var, "ROWCAST_JWT_SECRET");
        assert!(err.to_string().contains("32 bytes"));
        assert!(!err.to_string().contains("short"), "the secret itself is never echoed");
    }

    #[test]
    fn bad_numbers_and_addresses_are_refused() {
        for (var, value) in
            [("ROWCAST_POOL_SIZE", "lots"), ("ROWCAST_POOL_SIZE", "0"), ("ROWCAST_BIND", "nowhere"), ("ROWCAST_EVENT_RETENTION", "forever")]
        {
            let err = Settings::from_env(&env(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }

    #[test]
    fn webhook_private_flag_is_validated() {
        assert!(!Settings::from_env(&env(&[("X", "y")])).unwrap().webhooks.allow_private, "off by default");
        assert!(Settings::from_env(&env(&[("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "true")])).unwrap().webhooks.allow_private);
        assert!(!Settings::from_env(&env(&[("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "false")])).unwrap().webhooks.allow_private);
        let err = Settings::from_env(&env(&[("ROWCAST_WEBHOOK_ALLOW_PRIVATE", "maybe")])).unwrap_err();
        assert_eq!(err.var, "ROWCAST_WEBHOOK_ALLOW_PRIVATE");
        assert_eq!(Settings::from_env(&env(&[])).unwrap().webhooks.poll, Duration::from_millis(250));
        assert_eq!(Settings::from_env(&env(&[("ROWCAST_WEBHOOK_POLL_MS", "60000")])).unwrap().webhooks.poll, Duration::from_secs(60));
        for bad in ["0", "9", "60001", "soon"] {
            assert_eq!(Settings::from_env(&env(&[("ROWCAST_WEBHOOK_POLL_MS", bad)])).unwrap_err().var, "ROWCAST_WEBHOOK_POLL_MS");
        }
        let err = Settings::from_env(&env(&[("ROWCAST_WEBHOOK_CONCURRENCY", "0")])).unwrap_err();
        assert_eq!(err.var, "ROWCAST_WEBHOOK_CONCURRENCY");
    }

    #[test]
    fn app_dsn_is_derived_from_the_owner_dsn() {
        let s = Settings::from_env(&env(&[
            ("DATABASE_URL", "postgres://postgres:owner@localhost:5433/rowcast"),
            ("ROWCAST_APP_PASSWORD", "apppw"),
        ]))
        .unwrap();
        let c = s.app_pg_config().unwrap();
        assert_eq!(c.get_user(), Some(APP_ROLE));
        assert_eq!(c.get_password(), Some(&b"apppw"[..]));
        assert_eq!(c.get_dbname(), Some("rowcast"));
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = Settings::from_env(&env(&[("ROWCAST_JWT_SECRET", "0123456789abcdef0123456789abcdef-very-secret")])).unwrap();
        assert!(!format!("{s:?}").contains("very-secret"));
    }
}

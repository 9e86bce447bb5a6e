//! The deadpool of `rowcast_app` connections, and the start-up checks on that role.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};

use crate::error::ApiError;
use crate::limits::{GatePermit, TenantGate};
use crate::stats::Stats;

/// The request-serving database handle: a bounded pool plus the per-request settings.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    statement_timeout_ms: String,
    slow_query: Duration,
    checkouts: Arc<AtomicU64>,
    stats: Arc<Stats>,
    /// The fair pool: per-tenant cap on concurrent transactions (`conn_for`).
    gate: Arc<TenantGate>,
    /// Which statements each pooled connection holds for one-message reads.
    prepared: Arc<super::one_message::Prepared>,
    /// Reads as one message of SQL-`PREPARE`d statements; off behind a transaction pooler.
    one_message_reads: bool,
}

/// A pooled connection taken through the fair pool: it holds its tenant's slot until it is
/// dropped (returned to the pool). Derefs to the pooled connection.
pub struct GatedConn {
    conn: Object,
    _slot: GatePermit,
}

impl std::ops::Deref for GatedConn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.conn
    }
}

impl std::ops::DerefMut for GatedConn {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.conn
    }
}

impl Db {
    pub fn new(config: tokio_postgres::Config, size: usize, wait: Duration, statement_timeout: Duration) -> Self {
        let manager = Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait.max(Duration::from_secs(1))))
            .recycle_timeout(Some(Duration::from_secs(1)))
            .build()
            .expect("a pool with a runtime and timeouts always builds");
        Self {
            pool,
            statement_timeout_ms: statement_timeout.as_millis().to_string(),
            slow_query: Duration::from_secs(1),
            checkouts: Arc::default(),
            stats: Arc::default(),
            gate: TenantGate::new(0, wait),
            prepared: Arc::default(),
            one_message_reads: true,
        }
    }

    /// Transactions slower than this are logged and listed in the performance stats.
    pub fn with_slow_query(mut self, threshold: Duration) -> Self {
        self.slow_query = threshold;
        self
    }

    /// Records transactions into `stats` (the application's) instead of a private registry.
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Self {
        self.stats = stats;
        self
    }

    /// Reads as one message of statements prepared with SQL `PREPARE` (the default), or, with
    /// `false` — a transaction-mode pooler in front, which cannot keep them — pipelined with
    /// protocol-level prepared statements.
    pub fn with_one_message_reads(mut self, on: bool) -> Self {
        self.one_message_reads = on;
        self
    }

    pub fn one_message_reads(&self) -> bool {
        self.one_message_reads
    }

    /// Caps each tenant's concurrent transactions taken through [`Db::conn_for`].
    pub fn with_gate(mut self, gate: Arc<TenantGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Where request transactions are recorded.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub(crate) fn slow_query(&self) -> Duration {
        self.slow_query
    }

    /// A pooled connection, waiting at most `ROWCAST_POOL_TIMEOUT_MS` (then 503).
    pub async fn conn(&self) -> Result<Object, ApiError> {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        Ok(self.pool.get().await?)
    }

    /// A pooled connection for a request of `key` (its tenant, else its user): first a slot
    /// in the fair pool (429 when the tenant's cap stays full for the pool timeout), then the
    /// connection. A request waiting for its tenant's slot holds no connection.
    pub async fn conn_for(&self, key: uuid::Uuid) -> Result<GatedConn, ApiError> {
        let slot = self.gate.enter(key).await.map_err(|e| crate::limits::too_many_requests(&e))?;
        let conn = self.conn().await?;
        Ok(GatedConn { conn, _slot: slot })
    }

    /// How many times a connection was asked for (requests, health checks, start-up work).
    pub fn checkouts(&self) -> u64 {
        self.checkouts.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub(crate) fn prepared(&self) -> &super::one_message::Prepared {
        &self.prepared
    }

    pub(crate) fn statement_timeout_ms(&self) -> &str {
        &self.statement_timeout_ms
    }
}

/// Why `serve` refuses a database role.
#[derive(Debug, thiserror::Error)]
pub enum RoleRefusal {
    #[error(
        "refusing to serve as `{0}`: it is a superuser, so row-level security would not apply. Connect as rowcast_app (ROWCAST_APP_DATABASE_URL)"
    )]
    Superuser(String),
    #[error(
        "refusing to serve as `{0}`: it has BYPASSRLS, so row-level security would not apply. Connect as rowcast_app (ROWCAST_APP_DATABASE_URL)"
    )]
    BypassRls(String),
    #[error(
        "refusing to serve as `{0}`: it owns table {1}, and owners can switch row-level security off. Give table ownership to the migration role"
    )]
    OwnsTable(String, String),
    #[error("the database is not migrated (app.begin_request is missing): run `rowcast migrate` first")]
    NotMigrated,
    #[error("cannot check the database role: {0}")]
    Db(#[from] tokio_postgres::Error),
}

/// Checks that the serving role is bound by RLS: not superuser, no BYPASSRLS, owns no table.
pub async fn check_serving_role(client: &tokio_postgres::Client) -> Result<(), RoleRefusal> {
    let row = client.query_one("SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user", &[]).await?;
    let name: String = row.get(0);
    if row.get::<_, bool>(1) {
        return Err(RoleRefusal::Superuser(name));
    }
    if row.get::<_, bool>(2) {
        return Err(RoleRefusal::BypassRls(name));
    }
    let owned = client
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
               AND c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'app') LIMIT 1",
            &[],
        )
        .await?;
    if let Some(row) = owned {
        return Err(RoleRefusal::OwnsTable(name, row.get(0)));
    }
    let migrated: bool = client.query_one("SELECT to_regprocedure('app.begin_request(uuid,uuid)') IS NOT NULL", &[]).await?.get(0);
    if !migrated {
        return Err(RoleRefusal::NotMigrated);
    }
    Ok(())
}

//! The only code path that runs request SQL: one pooled connection, `BEGIN`,
//! `app.begin_request` with a transaction-local statement timeout, the work, `COMMIT` —
//! or `ROLLBACK` when the transaction is dropped (on any error). Nothing outlives it.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Transaction};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::Db;
use crate::error::ApiError;
use crate::stats::Stats;

/// What the database decided about the caller (never taken from the token).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub user_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub role: String,
}

const BEGIN_REQUEST: &str = "SELECT r.user_id, r.tenant_id, r.role, set_config('statement_timeout', $3, true) \
                             FROM app.begin_request($1, $2) AS r";

/// An open request transaction in the caller's tenant context.
pub struct TenantTx<'c> {
    tx: Transaction<'c>,
    ctx: RequestContext,
    timer: TxTimer,
}

/// Records the transaction in the performance stats when it ends, committed or not.
struct TxTimer {
    started: Instant,
    tenant: Option<Uuid>,
    role: String,
    committed: bool,
    slow_after: Duration,
    stats: Arc<Stats>,
}

impl Drop for TxTimer {
    fn drop(&mut self) {
        self.stats.record_transaction(self.tenant, &self.role, self.started.elapsed(), self.committed, self.slow_after);
    }
}

impl<'c> TenantTx<'c> {
    /// `BEGIN`, then `app.begin_request(user, tenant)` in one round trip.
    pub async fn begin(db: &Db, conn: &'c mut Object, principal: &Principal, tenant: Option<Uuid>) -> Result<Self, ApiError> {
        let started = Instant::now();
        let tx = conn.transaction().await?;
        let stmt = tx.prepare_cached(BEGIN_REQUEST).await?;
        let row = tx.query_one(&stmt, &[&principal.user_id, &tenant, &db.statement_timeout_ms()]).await?;
        Ok(Self::entered(db, tx, &row, started))
    }

    /// `BEGIN`, then `app.begin_request` and the request's first statement pipelined: both
    /// are sent at once and run in order, so the statement already sees the context; one
    /// round trip less. The statement's own outcome (rows and affected-row count) is returned
    /// for the caller to map.
    pub async fn begin_with_query(
        db: &Db,
        conn: &'c mut Object,
        principal: &Principal,
        tenant: Option<Uuid>,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Self, Result<QueryOutcome, tokio_postgres::Error>), ApiError> {
        let started = Instant::now();
        let tx = conn.transaction().await?;
        let begin = tx.prepare_cached(BEGIN_REQUEST).await?;
        let args: [&(dyn ToSql + Sync); 3] = [&principal.user_id, &tenant, &db.statement_timeout_ms()];
        let work = async {
            let stream = tx.query_raw(statement, params.iter().map(|p| *p as &dyn ToSql)).await?;
            collect(stream).await
        };
        let (entered, outcome) = futures::join!(tx.query_one(&begin, &args), work);
        let entered = entered?;
        Ok((Self::entered(db, tx, &entered, started), outcome))
    }

    /// A read-only request in ONE round trip: `BEGIN`, `app.begin_request`, the statement and
    /// `COMMIT` are sent together and run in order. Nothing can be left open on the
    /// connection: all four messages leave on the first poll, so even if the caller goes
    /// away the transaction still ends (an error inside it turns the `COMMIT` into a
    /// rollback). Only for statements that write nothing and need no check before commit.
    pub async fn read_once(
        db: &Db,
        conn: &Object,
        principal: &Principal,
        tenant: Option<Uuid>,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(RequestContext, Result<QueryOutcome, tokio_postgres::Error>), ApiError> {
        let started = Instant::now();
        let begin = conn.prepare_cached(BEGIN_REQUEST).await?;
        let args: [&(dyn ToSql + Sync); 3] = [&principal.user_id, &tenant, &db.statement_timeout_ms()];
        let work = async {
            let stream = conn.query_raw(statement, params.iter().map(|p| *p as &dyn ToSql)).await?;
            collect(stream).await
        };
        let (opened, entered, outcome, closed) =
            futures::join!(conn.batch_execute("BEGIN"), conn.query_one(&begin, &args), work, conn.batch_execute("COMMIT"));
        opened?;
        let entered = entered?;
        closed?;
        let ctx = RequestContext { user_id: entered.get(0), tenant_id: entered.get(1), role: entered.get(2) };
        let committed = outcome.is_ok();
        drop(TxTimer {
            started,
            tenant: ctx.tenant_id,
            role: ctx.role.clone(),
            committed,
            slow_after: db.slow_query(),
            stats: db.stats().clone(),
        });
        Ok((ctx, outcome))
    }

    fn entered(db: &Db, tx: Transaction<'c>, row: &Row, started: Instant) -> Self {
        let ctx = RequestContext { user_id: row.get(0), tenant_id: row.get(1), role: row.get(2) };
        let timer = TxTimer {
            started,
            tenant: ctx.tenant_id,
            role: ctx.role.clone(),
            committed: false,
            slow_after: db.slow_query(),
            stats: db.stats().clone(),
        };
        Self { tx, ctx, timer }
    }

    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    pub async fn commit(self) -> Result<(), ApiError> {
        let TenantTx { tx, mut timer, .. } = self;
        tx.commit().await?;
        timer.committed = true;
        Ok(())
    }
}

/// What a statement produced: its rows and the affected-row count of its command tag.
pub struct QueryOutcome {
    pub rows: Vec<Row>,
    pub affected: u64,
}

async fn collect(stream: tokio_postgres::RowStream) -> Result<QueryOutcome, tokio_postgres::Error> {
    use futures::TryStreamExt;
    futures::pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await? {
        rows.push(row);
    }
    Ok(QueryOutcome { affected: stream.rows_affected().unwrap_or(rows.len() as u64), rows })
}

impl<'c> Deref for TenantTx<'c> {
    type Target = Transaction<'c>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

//! The only code path that runs request SQL: one pooled connection, `BEGIN`,
//! `app.begin_request` with a transaction-local statement timeout, the work, `COMMIT` —
//! or `ROLLBACK` when the transaction is dropped (on any error). Nothing outlives it.

use std::ops::Deref;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Transaction};
use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, SimpleQueryMessage, SimpleQueryRow, Statement};
use uuid::Uuid;

use crate::auth::Principal;
use crate::db::Db;
use crate::db::one_message::{self, Arg, Name};
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

/// Enters the request context: `app.begin_request` and the transaction-local statement timeout.
pub const BEGIN_REQUEST: &str = "SELECT r.user_id, r.tenant_id, r.role, set_config('statement_timeout', $3, true) \
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

impl TxTimer {
    /// A transaction of `tenant` as `role`, started at `started`, not committed (yet).
    fn new(db: &Db, started: Instant, tenant: Option<Uuid>, role: String) -> Self {
        Self { started, tenant, role, committed: false, slow_after: db.slow_query(), stats: db.stats().clone() }
    }
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

    /// A read-only request in ONE message: `app.begin_request` and the statement, both
    /// `EXECUTE`d from statements prepared on this connection, sent as one simple query that
    /// PostgreSQL runs in order as one implicit transaction and answers with one flush
    /// (`db::one_message`). Nothing can be left open on the connection: an error anywhere
    /// rolls the whole message back, and a message once sent runs to its end even if the
    /// caller goes away. Only for statements that write nothing and need no check before
    /// commit. Gives the statement's rows, as text.
    pub async fn read_once(
        db: &Db,
        conn: &Object,
        principal: &Principal,
        tenant: Option<Uuid>,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<SimpleQueryRow>, tokio_postgres::Error> {
        let started = Instant::now();
        static BEGIN_NAME: LazyLock<Name> = LazyLock::new(|| Name::of(BEGIN_REQUEST));
        let names = [*BEGIN_NAME, Name::of(sql)];
        let (user, tenant_text) = (principal.user_id.to_string(), tenant.map(|t| t.to_string()));
        let begin_args = [Arg::Text(&user), tenant_text.as_deref().map_or(Arg::Null, Arg::Text), Arg::Text(db.statement_timeout_ms())];
        // A wrong guess of what the connection holds costs one more attempt per statement
        // (26000 once, then 42P05 at most once per statement).
        let mut attempts = 0;
        let (rows, begin_row) = loop {
            attempts += 1;
            let plan = db.prepared().plan(conn, &names);
            if plan.reset {
                conn.batch_execute("DEALLOCATE ALL").await?;
                conn.statement_cache.clear();
                db.prepared().forget_all(conn);
            }
            let mut message = String::with_capacity(256 + if plan.prepare[1] { sql.len() } else { 0 });
            let mut prepared = Vec::with_capacity(2);
            for ((name, text), prepare) in names.iter().zip([BEGIN_REQUEST, sql]).zip(&plan.prepare) {
                if *prepare {
                    one_message::push_prepare(&mut message, *name, text);
                    prepared.push(*name);
                }
            }
            one_message::push_execute(&mut message, names[0], &begin_args);
            one_message::push_execute(&mut message, names[1], args);
            match run_message(conn, &message).await {
                Ok((completed, mut results)) => {
                    db.prepared().remember(conn, prepared.iter().copied().take(completed));
                    let read = results.pop().unwrap_or_default();
                    break (read, results.pop().and_then(|r| r.into_iter().next()));
                }
                Err((completed, err)) => {
                    db.prepared().remember(conn, prepared.iter().copied().take(completed));
                    match err.code() {
                        // a statement we took for prepared is not (a proxy's DISCARD ALL)
                        Some(c) if *c == SqlState::INVALID_SQL_STATEMENT_NAME && attempts < 4 => db.prepared().forget_all(conn),
                        // the one that failed to prepare is there already (a message cut short)
                        Some(c) if *c == SqlState::DUPLICATE_PSTATEMENT && attempts < 4 => {
                            db.prepared().remember(conn, prepared.get(completed).copied())
                        }
                        _ => {
                            record_read(db, started, None, false);
                            return Err(err);
                        }
                    }
                }
            }
        };
        record_read(db, started, begin_row.as_ref(), true);
        Ok(rows)
    }

    /// The same read as [`Self::read_once`] for a pool behind a transaction-mode pooler
    /// (`ROWCAST_DB_TRANSACTION_POOLER`), which cannot keep SQL `PREPARE`d statements: `BEGIN`,
    /// `app.begin_request`, the protocol-level prepared `statement` and `COMMIT`, pipelined in
    /// one round trip (all four leave on the first poll, so the transaction ends even if the
    /// caller goes away; an error inside it turns the `COMMIT` into a rollback).
    pub async fn read_pipelined(
        db: &Db,
        conn: &Object,
        principal: &Principal,
        tenant: Option<Uuid>,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
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
        let mut timer = TxTimer::new(db, started, entered.get(1), entered.get(2));
        timer.committed = outcome.is_ok();
        outcome.map(|o| o.rows)
    }

    fn entered(db: &Db, tx: Transaction<'c>, row: &Row, started: Instant) -> Self {
        let ctx = RequestContext { user_id: row.get(0), tenant_id: row.get(1), role: row.get(2) };
        let timer = TxTimer::new(db, started, ctx.tenant_id, ctx.role.clone());
        Self { tx, ctx, timer }
    }

    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// Enters `app.begin_request` again, as `user` in `tenant`, inside this transaction: for a
    /// platform admin's impersonation (`/api/rls/impersonate`), whose transaction is then
    /// dropped (rolled back) so the impersonated context never outlives the request.
    /// [`Self::context`] keeps naming the real caller; the impersonated one is returned.
    pub async fn reenter_as(&self, user: Uuid, tenant: Option<Uuid>, db: &Db) -> Result<RequestContext, tokio_postgres::Error> {
        let stmt = self.tx.prepare_cached(BEGIN_REQUEST).await?;
        let row = self.tx.query_one(&stmt, &[&user, &tenant, &db.statement_timeout_ms()]).await?;
        Ok(RequestContext { user_id: row.get(0), tenant_id: row.get(1), role: row.get(2) })
    }

    pub async fn commit(self) -> Result<(), ApiError> {
        let TenantTx { tx, mut timer, .. } = self;
        tx.commit().await?;
        timer.committed = true;
        Ok(())
    }
}

/// Records a one-message read in the performance stats, under the tenant and role
/// `app.begin_request` answered (its row: user, tenant, role).
fn record_read(db: &Db, started: Instant, begin_row: Option<&SimpleQueryRow>, committed: bool) {
    let tenant = begin_row.and_then(|r| r.get(1)).and_then(|t| t.parse().ok());
    let role = begin_row.and_then(|r| r.get(2)).unwrap_or_default().to_string();
    let mut timer = TxTimer::new(db, started, tenant, role);
    timer.committed = committed;
}

/// Runs one simple-protocol message; gives each statement's rows, in order, with how many
/// statements completed (also beside an error: the ones before it ran).
async fn run_message(conn: &Object, message: &str) -> Result<(usize, Vec<Vec<SimpleQueryRow>>), (usize, tokio_postgres::Error)> {
    use futures::TryStreamExt;
    let stream = conn.simple_query_raw(message).await.map_err(|e| (0, e))?;
    futures::pin_mut!(stream);
    let mut results = vec![Vec::new()];
    loop {
        match stream.try_next().await {
            Ok(Some(SimpleQueryMessage::Row(row))) => results.last_mut().expect("never empty").push(row),
            Ok(Some(SimpleQueryMessage::CommandComplete(_))) => results.push(Vec::new()),
            Ok(Some(_)) => {}
            Ok(None) => {
                results.pop();
                return Ok((results.len(), results));
            }
            Err(e) => return Err((results.len() - 1, e)),
        }
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

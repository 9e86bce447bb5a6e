//! Runs one REST statement in the caller's tenant transaction: pooled connection, `BEGIN` +
//! `app.begin_request`, the statement (prepared once per connection and shape), a check that
//! may still refuse the result (then the transaction rolls back), `COMMIT`.

use tokio_postgres::{Row, SimpleQueryRow};

use super::errors;
use super::request::Caller;
use super::sql::Params;
use super::state::RestState;
use crate::db::TenantTx;
use crate::error::ApiError;

/// Prepared statements kept per pooled connection before the cache is emptied; bounds the
/// memory that many distinct request shapes could pin on both ends.
const MAX_CACHED_STATEMENTS: usize = 512;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The statement returns exactly one row.
    Row,
    /// The statement returns nothing; its affected-row count is the result.
    Count,
}

pub enum Outcome {
    Row(Row),
    Count(u64),
}

impl Outcome {
    /// The row (only for [`Mode::Row`]).
    pub fn row(&self) -> Result<&Row, ApiError> {
        match self {
            Outcome::Row(r) => Ok(r),
            Outcome::Count(_) => Err(ApiError::internal(&"statement returned a count, a row was expected")),
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Outcome::Count(n) => *n,
            Outcome::Row(_) => 0,
        }
    }
}

/// Empties the connection's statement cache once it holds more than [`MAX_CACHED_STATEMENTS`].
fn bound_statement_cache(conn: &deadpool_postgres::Object) {
    if conn.statement_cache.size() > MAX_CACHED_STATEMENTS {
        conn.statement_cache.clear();
    }
}

/// The single row a one-row statement returns.
fn exactly_one<R>(rows: Vec<R>) -> Result<R, ApiError> {
    let count = rows.len();
    rows.into_iter()
        .next()
        .filter(|_| count == 1)
        .ok_or_else(|| ApiError::internal(&format_args!("a single-row statement returned {count} rows")))
}

/// The one row of a read: the total (with a count), the rows served, the body. As text from
/// a one-message read, typed from a pipelined one.
pub enum ReadRow {
    Text(SimpleQueryRow),
    Typed(Row),
}

impl ReadRow {
    fn int(&self, i: usize) -> Result<Option<i64>, ApiError> {
        let bad = |e: &dyn std::fmt::Display| ApiError::internal(&format_args!("read column {i}: {e}"));
        match self {
            ReadRow::Text(row) => row.get(i).map(str::parse).transpose().map_err(|e| bad(&e)),
            ReadRow::Typed(row) => row.try_get(i).map_err(|e| bad(&e)),
        }
    }

    pub fn total(&self) -> Result<Option<i64>, ApiError> {
        self.int(0)
    }

    pub fn rows(&self) -> Result<i64, ApiError> {
        self.int(1)?.ok_or_else(|| ApiError::internal(&"a read returned no row count"))
    }

    pub fn body(&self) -> Result<&str, ApiError> {
        let body = match self {
            ReadRow::Text(row) => row.get(2),
            ReadRow::Typed(row) => row.try_get(2).map_err(|e| ApiError::internal(&e))?,
        };
        body.ok_or_else(|| ApiError::internal(&"a read returned no body"))
    }
}

/// Runs a read-only `sql` returning one row: in one message (`TenantTx::read_once`), or
/// pipelined behind a transaction pooler (`TenantTx::read_pipelined`).
pub async fn read_row(state: &RestState, caller: &Caller, sql: &str, params: &Params) -> Result<ReadRow, ApiError> {
    let conn = state.db.conn_for(caller.tenant.unwrap_or(caller.principal.user_id)).await?;
    let rows: Vec<ReadRow> = match state.db.one_message_reads() {
        true => TenantTx::read_once(&state.db, &conn, &caller.principal, caller.tenant, sql, &params.as_args())
            .await
            .map_err(errors::pg)?
            .into_iter()
            .map(ReadRow::Text)
            .collect(),
        false => {
            bound_statement_cache(&conn);
            let stmt = conn.prepare_cached(sql).await.map_err(errors::pg)?;
            TenantTx::read_pipelined(&state.db, &conn, &caller.principal, caller.tenant, &stmt, &params.as_refs())
                .await
                .map_err(errors::pg)?
                .into_iter()
                .map(ReadRow::Typed)
                .collect()
        }
    };
    exactly_one(rows)
}

/// The planner's row estimate for `explain_sql` (an `EXPLAIN (FORMAT JSON) …`), run in the
/// caller's tenant transaction (so RLS shapes the plan), read-only and rolled back.
pub async fn planned_rows(state: &RestState, caller: &Caller, explain_sql: &str, params: &Params) -> Result<i64, ApiError> {
    let mut conn = state.db.conn().await?;
    bound_statement_cache(&conn);
    let tx = TenantTx::begin(&state.db, &mut conn, &caller.principal, caller.tenant).await?;
    let stmt = tx.prepare_cached(explain_sql).await.map_err(errors::pg)?;
    let row = tx.query_one(&stmt, &params.as_refs()).await.map_err(errors::pg)?;
    let plan: serde_json::Value = row.try_get(0).map_err(|e| ApiError::internal(&e))?;
    let rows = plan[0]["Plan"]["Plan Rows"].as_f64().ok_or_else(|| ApiError::internal(&"EXPLAIN gave no 'Plan Rows'"))?;
    Ok(rows.round() as i64)
}

/// Runs `sql` with `params`; `check` sees the outcome before `COMMIT` and may refuse it.
/// With `commit` false (`Prefer: tx=rollback`) the transaction is rolled back instead.
pub async fn run(
    state: &RestState,
    caller: &Caller,
    sql: &str,
    params: &Params,
    mode: Mode,
    commit: bool,
    check: impl FnOnce(&Outcome) -> Result<(), ApiError>,
) -> Result<Outcome, ApiError> {
    let mut conn = state.db.conn_for(caller.tenant.unwrap_or(caller.principal.user_id)).await?;
    bound_statement_cache(&conn);
    let stmt = conn.prepare_cached(sql).await.map_err(errors::pg)?;
    let refs = params.as_refs();
    let (tx, rows) = TenantTx::begin_with_query(&state.db, &mut conn, &caller.principal, caller.tenant, &stmt, &refs).await?;
    let result = rows.map_err(errors::pg)?;
    let outcome = match mode {
        Mode::Row => Outcome::Row(exactly_one(result.rows)?),
        Mode::Count => Outcome::Count(result.affected),
    };
    check(&outcome)?;
    match commit {
        true => tx.commit().await?,
        false => drop(tx), // ROLLBACK
    }
    Ok(outcome)
}

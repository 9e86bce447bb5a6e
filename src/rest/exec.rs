//! Runs one REST statement in the caller's tenant transaction: pooled connection, `BEGIN` +
//! `app.begin_request`, the statement (prepared once per connection and shape), a check that
//! may still refuse the result (then the transaction rolls back), `COMMIT`.

use tokio_postgres::Row;

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

/// The single row a `Mode::Row` statement returns.
fn exactly_one(rows: Vec<tokio_postgres::Row>) -> Result<tokio_postgres::Row, ApiError> {
    let count = rows.len();
    rows.into_iter()
        .next()
        .filter(|_| count == 1)
        .ok_or_else(|| ApiError::internal(&format_args!("a single-row statement returned {count} rows")))
}

/// Runs a read-only `sql` returning one row, in one round trip (see `TenantTx::read_once`).
pub async fn read_row(state: &RestState, caller: &Caller, sql: &str, params: &Params) -> Result<tokio_postgres::Row, ApiError> {
    let conn = state.db.conn().await?;
    if conn.statement_cache.size() > MAX_CACHED_STATEMENTS {
        conn.statement_cache.clear();
    }
    let stmt = conn.prepare_cached(sql).await.map_err(errors::pg)?;
    let (_, outcome) = TenantTx::read_once(&state.db, &conn, &caller.principal, caller.tenant, &stmt, &params.as_refs()).await?;
    exactly_one(outcome.map_err(errors::pg)?.rows)
}

/// Runs `sql` with `params`; `check` sees the outcome before `COMMIT` and may refuse it.
pub async fn run(
    state: &RestState,
    caller: &Caller,
    sql: &str,
    params: &Params,
    mode: Mode,
    check: impl FnOnce(&Outcome) -> Result<(), ApiError>,
) -> Result<Outcome, ApiError> {
    let mut conn = state.db.conn().await?;
    if conn.statement_cache.size() > MAX_CACHED_STATEMENTS {
        conn.statement_cache.clear();
    }
    let stmt = conn.prepare_cached(sql).await.map_err(errors::pg)?;
    let refs = params.as_refs();
    let (tx, rows) = TenantTx::begin_with_query(&state.db, &mut conn, &caller.principal, caller.tenant, &stmt, &refs).await?;
    let result = rows.map_err(errors::pg)?;
    let outcome = match mode {
        Mode::Row => Outcome::Row(exactly_one(result.rows)?),
        Mode::Count => Outcome::Count(result.affected),
    };
    check(&outcome)?;
    tx.commit().await?;
    Ok(outcome)
}

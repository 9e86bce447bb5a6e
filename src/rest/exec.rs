//! Runs one REST statement in the caller's tenant transaction: pooled connection, `BEGIN` +
//! `app.begin_request`, the statement (prepared once per connection and shape), a check that
//! may still refuse the result (then the transaction rolls back), `COMMIT`.

use tokio_postgres::Row;

use super::errors;
use super::request::Caller;
use super::sql::Params;
use crate::app::AppState;
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

/// Runs `sql` with `params`; `check` sees the outcome before `COMMIT` and may refuse it.
pub async fn run(
    state: &AppState,
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
    let tx = TenantTx::begin(&state.db, &mut conn, &caller.principal, caller.tenant).await?;
    let stmt = tx.prepare_cached(sql).await.map_err(errors::pg)?;
    let refs = params.as_refs();
    let outcome = match mode {
        Mode::Row => Outcome::Row(tx.query_one(&stmt, &refs).await.map_err(errors::pg)?),
        Mode::Count => Outcome::Count(tx.execute(&stmt, &refs).await.map_err(errors::pg)?),
    };
    check(&outcome)?;
    tx.commit().await?;
    Ok(outcome)
}

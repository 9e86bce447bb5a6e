//! Retention: a background task deletes events older than `ROWCAST_EVENT_RETENTION`, 1,000
//! rows per statement (short transactions, no long lock on the log), every minute.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::ApiError;

const BATCH: i32 = 1000;
const EVERY: Duration = Duration::from_secs(60);
const PRUNE_SQL: &str = "SELECT app.prune_events(make_interval(secs => $1), $2)";

pub fn spawn(db: Db, retention: Duration, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match prune(&db, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "pruned expired events"),
                Err(e) => tracing::warn!(error = %e, "event retention failed; retrying later"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    })
}

/// Deletes expired events batch by batch; returns how many went.
pub async fn prune(db: &Db, retention: Duration) -> Result<u64, ApiError> {
    let secs = retention.as_secs_f64();
    let mut total = 0;
    loop {
        let conn = db.conn().await?;
        let n: i32 = conn.query_one(PRUNE_SQL, &[&secs, &BATCH]).await?.get(0);
        total += u64::try_from(n).unwrap_or(0);
        if n < BATCH {
            return Ok(total);
        }
    }
}

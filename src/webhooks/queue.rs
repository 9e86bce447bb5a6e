//! The SQL the workers run: one function call per statement (the logic lives in V30 and V70),
//! prepared once per connection.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Client;
use uuid::Uuid;

use super::send::Outcome;

const FEED_SQL: &str = "SELECT created, more FROM app.webhook_feed_next($1, $2)";
const CLAIM_SQL: &str = "SELECT run, delivery_id, tenant_id, webhook_id, url, attempt, msg_id, sent_at, signature, body, \
                         event_created_at, lease_ms FROM app.webhook_claim_runs($1, $2, $3, $4, $5, $6, $7)";
const RECORD_SQL: &str = "SELECT delivery_id, result FROM app.webhook_record_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const RELEASE_SQL: &str = "SELECT app.webhook_release($1, $2, $3)";
const STATS_SQL: &str = "SELECT depth, oldest_seconds FROM app.webhook_queue_stats()";
const PRUNE_SQL: &str = "SELECT app.webhook_prune(make_interval(secs => $1), $2)";

/// Events turned into deliveries per feed statement.
const FEED_PAGE: i32 = 1000;

/// A claimed attempt, signed by the database.
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery: Uuid,
    pub tenant: Uuid,
    pub webhook: Uuid,
    pub url: String,
    pub attempt: i32,
    pub msg_id: String,
    pub sent_at: i64,
    pub signature: String,
    /// Shared with the request: sending never copies it.
    pub body: Bytes,
    pub event_created_at: Option<DateTime<Utc>>,
}

/// Deliveries claimed together, sent one after the other (in seq order for an ordered
/// webhook) by one task holding one per-tenant slot.
#[derive(Debug)]
pub struct Run {
    pub tenant: Uuid,
    pub jobs: Vec<Job>,
    /// How long the database holds these attempts for this instance.
    pub lease: std::time::Duration,
}

/// An attempt made, to record.
#[derive(Debug)]
pub struct Attempt {
    pub job: Job,
    pub outcome: Outcome,
}

/// Prepares (once per connection) every statement the dispatcher and the recorder pipeline.
/// A pipelined statement is sent when its future is first polled, unless it still has to
/// be prepared: then a later statement already prepared on the connection overtakes it. A
/// claim sent before the feed (or the release) it follows would miss what that queued, and
/// this instance skips its own feed's notification, so nothing would claim it until the
/// poll.
pub async fn prepare(client: &Client) -> Result<(), tokio_postgres::Error> {
    for sql in [FEED_SQL, CLAIM_SQL, RECORD_SQL, RELEASE_SQL] {
        client.prepare_cached(sql).await?;
    }
    Ok(())
}

/// Feeds one page: the deliveries created (-1 when another instance holds the cursor), and
/// whether the page was full (feed again at once).
pub async fn feed(client: &Client, worker: Uuid) -> Result<(i32, bool), tokio_postgres::Error> {
    let stmt = client.prepare_cached(FEED_SQL).await?;
    let row = client.query_one(&stmt, &[&worker, &FEED_PAGE]).await?;
    Ok((row.get(0), row.get(1)))
}

/// Claims at most `limit` runs of at most `run` deliveries (at most `per_tenant` runs per
/// tenant, counting `busy`), in sending order.
pub async fn claim(
    client: &Client,
    worker: Uuid,
    limit: i32,
    per_tenant: i32,
    busy: &[(Uuid, i32)],
    run: i32,
    failing: &[Uuid],
) -> Result<Vec<Run>, tokio_postgres::Error> {
    let tenants: Vec<Uuid> = busy.iter().map(|b| b.0).collect();
    let counts: Vec<i32> = busy.iter().map(|b| b.1).collect();
    let stmt = client.prepare_cached(CLAIM_SQL).await?;
    let rows = client.query(&stmt, &[&worker, &limit, &per_tenant, &tenants, &counts, &run, &failing]).await?;
    let mut runs: Vec<Run> = Vec::new();
    let mut current = None;
    for r in rows {
        let number: i32 = r.get(0);
        let body: String = r.get(9);
        let job = Job {
            delivery: r.get(1),
            tenant: r.get(2),
            webhook: r.get(3),
            url: r.get(4),
            attempt: r.get(5),
            msg_id: r.get(6),
            sent_at: r.get(7),
            signature: r.get(8),
            body: Bytes::from(body),
            event_created_at: r.get(10),
        };
        let lease_ms: i64 = r.get(11);
        match runs.last_mut() {
            Some(last) if current == Some(number) => last.jobs.push(job),
            _ => {
                current = Some(number);
                let lease = std::time::Duration::from_millis(u64::try_from(lease_ms).unwrap_or(0));
                runs.push(Run { tenant: job.tenant, jobs: vec![job], lease });
            }
        }
    }
    Ok(runs)
}

/// Logs the attempts and moves their deliveries on, in one transaction; returns, in the same
/// order, succeeded, retrying, failed, cancelled or stale.
pub async fn record(client: &Client, worker: Uuid, attempts: &[Attempt]) -> Result<Vec<String>, tokio_postgres::Error> {
    let n = attempts.len();
    let (mut ids, mut numbers, mut status, mut duration) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut error, mut response, mut retryable, mut retry_after) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for a in attempts {
        ids.push(a.job.delivery);
        numbers.push(a.job.attempt);
        status.push(a.outcome.status.map(i32::from));
        duration.push(i32::try_from(a.outcome.duration.as_millis()).unwrap_or(i32::MAX));
        error.push(a.outcome.error.as_deref());
        response.push(a.outcome.response.as_str());
        retryable.push(a.outcome.retryable);
        retry_after.push(a.outcome.retry_after);
    }
    let stmt = client.prepare_cached(RECORD_SQL).await?;
    let rows = client.query(&stmt, &[&worker, &ids, &numbers, &status, &duration, &error, &response, &retryable, &retry_after]).await?;
    // One row per attempt, in the order given.
    let mut results: Vec<String> = rows.into_iter().map(|r| r.get(1)).collect();
    results.resize(n, "stale".to_string());
    Ok(results)
}

/// Gives back claimed attempts that were not sent; returns how many this worker still held.
pub async fn release(client: &Client, worker: Uuid, jobs: &[(Uuid, i32)]) -> Result<i32, tokio_postgres::Error> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.0).collect();
    let attempts: Vec<i32> = jobs.iter().map(|j| j.1).collect();
    let stmt = client.prepare_cached(RELEASE_SQL).await?;
    Ok(client.query_one(&stmt, &[&worker, &ids, &attempts]).await?.get(0))
}

pub async fn queue_stats(client: &Client) -> Result<(i64, f64), tokio_postgres::Error> {
    let row = client.query_one(STATS_SQL, &[]).await?;
    Ok((row.get(0), row.get(1)))
}

pub async fn prune(client: &Client, older_than_secs: f64) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one(PRUNE_SQL, &[&older_than_secs, &1000i32]).await?.get(0))
}

//! The SQL the workers run: one function call per statement (the logic lives in V30).

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

use super::send::Outcome;

const FEED_SQL: &str = "SELECT app.webhook_feed($1)";
const CLAIM_SQL: &str = "SELECT delivery_id, tenant_id, webhook_id, url, attempt, msg_id, sent_at, signature, body, event_created_at \
                         FROM app.webhook_claim($1, $2, $3, $4, $5)";
const RECORD_SQL: &str = "SELECT app.webhook_record($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const STATS_SQL: &str = "SELECT depth, oldest_seconds FROM app.webhook_queue_stats()";
const PRUNE_SQL: &str = "SELECT app.webhook_prune(make_interval(secs => $1), $2)";

/// Events turned into deliveries per feed statement.
pub const FEED_PAGE: i32 = 1000;

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
    pub body: String,
    pub event_created_at: Option<DateTime<Utc>>,
}

/// Feeds one page; -1 when another instance holds the cursor.
pub async fn feed(client: &Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one(FEED_SQL, &[&FEED_PAGE]).await?.get(0))
}

pub async fn claim(
    client: &Client,
    worker: Uuid,
    limit: i32,
    per_tenant: i32,
    busy: &[(Uuid, i32)],
) -> Result<Vec<Job>, tokio_postgres::Error> {
    let tenants: Vec<Uuid> = busy.iter().map(|b| b.0).collect();
    let counts: Vec<i32> = busy.iter().map(|b| b.1).collect();
    let rows = client.query(CLAIM_SQL, &[&worker, &limit, &per_tenant, &tenants, &counts]).await?;
    Ok(rows
        .into_iter()
        .map(|r| Job {
            delivery: r.get(0),
            tenant: r.get(1),
            webhook: r.get(2),
            url: r.get(3),
            attempt: r.get(4),
            msg_id: r.get(5),
            sent_at: r.get(6),
            signature: r.get(7),
            body: r.get(8),
            event_created_at: r.get(9),
        })
        .collect())
}

/// Logs the attempt and moves the delivery on; returns succeeded, retrying, failed, cancelled or stale.
pub async fn record(client: &Client, worker: Uuid, job: &Job, outcome: &Outcome) -> Result<String, tokio_postgres::Error> {
    let status = outcome.status.map(i32::from);
    let duration = i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX);
    let row = client
        .query_one(
            RECORD_SQL,
            &[
                &job.delivery,
                &worker,
                &job.attempt,
                &status,
                &duration,
                &outcome.error,
                &outcome.response,
                &outcome.retryable,
                &outcome.retry_after,
            ],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn queue_stats(client: &Client) -> Result<(i64, f64), tokio_postgres::Error> {
    let row = client.query_one(STATS_SQL, &[]).await?;
    Ok((row.get(0), row.get(1)))
}

pub async fn prune(client: &Client, older_than_secs: f64) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one(PRUNE_SQL, &[&older_than_secs, &1000i32]).await?.get(0))
}

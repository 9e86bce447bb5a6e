//! Capture suites (issue 13 item 2, SPEC §9 noisy neighbour):
//!
//! - `capture`: pgbench, one-row INSERT transactions into three tables shaped like
//!   `contacts` (same columns, defaults, checks and indexes; no RLS, no foreign key), same
//!   run: no trigger, a bare `pg_notify(row_to_json(NEW))` trigger, and rowcast's capture
//!   (`app.enable_realtime`). A LISTEN connection drains both channels, as a server would.
//!   `LIKE` copies no trigger: none of the three carries the metering triggers of
//!   `contacts` (V40), so the trigger under test is the only difference between them.
//!   Then a 1,000-row POST through the real server, beside pgbench running the identical
//!   1,000-row transaction: events per second.
//! - `neighbour`: one tenant commits 10,000-row INSERTs in a loop while another tenant
//!   writes one row at a time; the one-row write's p50/p99, on the captured table and —
//!   the raw figure — on the trigger-less one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rowcast::db::embedded::EmbeddedCluster;

use super::{Options, TENANT, USER, percentile, pgbench, start_rowcast};

const OTHER_TENANT: &str = "b0000000-0000-4000-8000-000000000009";

async fn owner(cluster: &EmbeddedCluster) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = cluster.pg_config(super::DB).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// The three tables, once.
async fn prepare(cluster: &EmbeddedCluster) -> anyhow::Result<()> {
    owner(cluster)
        .await?
        .batch_execute(&format!(
            "INSERT INTO tenants (id, name) VALUES ('{OTHER_TENANT}', 'Bench neighbour') ON CONFLICT DO NOTHING;
             CREATE TABLE IF NOT EXISTS public.bench_plain (LIKE public.contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
             CREATE TABLE IF NOT EXISTS public.bench_notify (LIKE public.contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
             CREATE TABLE IF NOT EXISTS public.bench_captured (LIKE public.contacts INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
             CREATE OR REPLACE FUNCTION public.bench_bare_notify() RETURNS trigger LANGUAGE plpgsql AS
               $f$ BEGIN PERFORM pg_notify('bench_notify', row_to_json(NEW)::text); RETURN NULL; END $f$;
             DROP TRIGGER IF EXISTS bench_bare_notify ON public.bench_notify;
             CREATE TRIGGER bench_bare_notify AFTER INSERT ON public.bench_notify FOR EACH ROW EXECUTE FUNCTION public.bench_bare_notify();
             SELECT app.enable_realtime('public.bench_captured', 'bench_contact', '{{platform_admin,tenant_admin,tenant_user}}');
             GRANT SELECT, INSERT ON public.bench_plain, public.bench_notify, public.bench_captured TO rowcast_app;
             TRUNCATE public.bench_plain, public.bench_notify, public.bench_captured;"
        ))
        .await?;
    Ok(())
}

/// A LISTEN connection draining `rowcast_events` and `bench_notify` until dropped.
async fn drain(cluster: &EmbeddedCluster) -> anyhow::Result<(tokio_postgres::Client, Arc<AtomicU64>)> {
    let (client, mut conn) = cluster.pg_config(super::DB).connect(tokio_postgres::NoTls).await?;
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(_)) = messages.next().await {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    client.batch_execute("LISTEN rowcast_events; LISTEN bench_notify").await?;
    Ok((client, seen))
}

fn one_row(table: &str) -> String {
    format!(
        "BEGIN;\nINSERT INTO {table} (tenant_id, phone, first_name) VALUES ('{TENANT}', '+1' || (6000000000 + nextval('bench_phone'))::text, 'Bench');\nCOMMIT;\n"
    )
}

pub async fn capture_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    prepare(cluster).await?;
    let (_listener, _) = drain(cluster).await?;
    println!("capture throughput, pgbench -c {} -j 2, one-row INSERT transactions, {} s each, same run:", opts.clients, opts.seconds);
    let plain = pgbench(cluster, &one_row("public.bench_plain"), opts.clients, opts.seconds)?;
    let notify = pgbench(cluster, &one_row("public.bench_notify"), opts.clients, opts.seconds)?;
    let captured = pgbench(cluster, &one_row("public.bench_captured"), opts.clients, opts.seconds)?;
    println!("  plain INSERT            {plain:>8.0} tps");
    println!("  + bare pg_notify        {notify:>8.0} tps   ({:.2}x plain)", notify / plain);
    let ratio = captured / notify;
    println!(
        "  + rowcast capture       {captured:>8.0} tps   ({:.2}x plain, {ratio:.2}x bare notify; target >= 0.9x bare notify)  {}",
        captured / plain,
        if ratio >= 0.9 { "PASS" } else { "BELOW TARGET" }
    );

    // 1,000-row POSTs through the server, beside the identical transaction in pgbench.
    let (base, token, shutdown) = start_rowcast(cluster, opts).await?;
    let http = reqwest::Client::new();
    let clients = 4usize;
    let phones = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, base, token, phones) = (http.clone(), base.clone(), token.clone(), phones.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let first = phones.fetch_add(1_000, Ordering::Relaxed);
                    let body: Vec<_> = (first..first + 1_000)
                        .map(|n| serde_json::json!({"tenant_id": TENANT, "phone": format!("+1{}", 7_000_000_000u64 + n), "first_name": "Bulk"}))
                        .collect();
                    let sent = http.post(format!("{base}/rest/contacts")).bearer_auth(&token).header("prefer", "return=minimal").json(&body).send().await;
                    if sent.is_ok_and(|r| r.status().as_u16() == 201) { ok += 1 } else { failed += 1 }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await?;
        ok += o;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    shutdown.cancel();
    let ours = ok as f64 * 1_000.0 / elapsed;
    let raw = 1_000.0
        * pgbench(
            cluster,
            &format!(
                "BEGIN;\nSELECT * FROM app.begin_request('{USER}', NULL);\n\
                 INSERT INTO contacts (tenant_id, phone, first_name) SELECT '{TENANT}', '+1' || (8000000000 + nextval('bench_phone'))::text, 'Bulk' FROM generate_series(1, 1000);\n\
                 COMMIT;\n"
            ),
            clients,
            opts.seconds,
        )?;
    println!(
        "1,000-row POST, {clients} clients: rowcast {ours:>8.0} events/s ({ok} requests, {failed} errors)   pgbench same transaction {raw:>8.0} rows/s   ratio {:.2}",
        ours / raw
    );
    Ok(())
}

/// One-row writes by one tenant, one at a time, while another tenant commits 10,000-row
/// INSERTs in a loop into the same table.
async fn neighbour_run(cluster: &EmbeddedCluster, table: &str, seconds: u64) -> anyhow::Result<(f64, f64, u64, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let big = owner(cluster).await?;
    let bulk = format!(
        "INSERT INTO {table} (tenant_id, phone, first_name) SELECT '{OTHER_TENANT}', '+1' || (9000000000 + nextval('bench_phone'))::text, 'Big' FROM generate_series(1, 10000)"
    );
    let flag = stop.clone();
    let loader = tokio::spawn(async move {
        let mut commits = 0u64;
        while !flag.load(Ordering::Relaxed) {
            if big.batch_execute(&bulk).await.is_ok() {
                commits += 1;
            }
        }
        commits
    });
    let small = owner(cluster).await?;
    let insert = small
        .prepare(&format!(
            "INSERT INTO {table} (tenant_id, phone, first_name) VALUES ('{TENANT}', '+1' || (5000000000 + nextval('bench_phone'))::text, 'Small')"
        ))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        small.execute(&insert, &[]).await?;
        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    stop.store(true, Ordering::Relaxed);
    let commits = loader.await?;
    latencies.sort_unstable();
    Ok((percentile(&latencies, 0.50), percentile(&latencies, 0.99), commits, latencies.len()))
}

pub async fn neighbour_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    prepare(cluster).await?;
    let (_listener, _) = drain(cluster).await?;
    println!("noisy neighbour: one-row writes (tenant B) while tenant A commits 10,000-row INSERTs in a loop, {} s each:", opts.seconds);
    let (p50, p99, commits, n) = neighbour_run(cluster, "public.bench_captured", opts.seconds).await?;
    let (raw50, raw99, raw_commits, raw_n) = neighbour_run(cluster, "public.bench_plain", opts.seconds).await?;
    println!(
        "  rowcast capture  one-row p50 {p50:>7.2} ms  p99 {p99:>7.2} ms ({n} writes, {commits} big commits)   \
         no capture p50 {raw50:>7.2} ms  p99 {raw99:>7.2} ms ({raw_n} writes, {raw_commits} big commits)   (target p99 <= 50 ms)  {}",
        if p99 <= 50.0 { "PASS" } else { "BELOW TARGET" }
    );
    Ok(())
}

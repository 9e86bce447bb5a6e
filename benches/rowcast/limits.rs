//! `limits` suite (issue 12): the REST figures of SPEC §9 with every limit enabled but not
//! reached, beside the same server with every limit off, same cluster, same run. Target:
//! within 5% (ratio ≥ 0.95).
//!
//! "Unlimited": `ROWCAST_RATE_*`, `ROWCAST_WS_*` and `ROWCAST_TENANT_MAX_CONCURRENCY` at 0, the
//! bench tenant without a subscription (no quota). "Limited": per-IP, per-user and per-tenant
//! rates at 100,000,000/min, the fair pool capped at the pool size, and the tenant on a plan
//! with hard `contacts` and `api_requests_per_minute` policies far above what the run uses.
//! Usage metering runs in both (it is not optional: the triggers always meter). Runs
//! alternate (off, on, on, off) so table growth and cache warmth favour neither; the rows a
//! create run adds are removed before the next run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{EmbeddedCluster, Figures, Options, TENANT, create_contact, drive, read_contact, start_rowcast_with, wrk};

const PLAN: &str = "b1000000-0000-4000-8000-000000000001";
const HUGE: &str = "100000000";

async fn owner(cluster: &EmbeddedCluster) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = cluster.pg_config(super::DB).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Puts the bench tenant on a plan with generous hard limits, or takes it off.
async fn subscribe(db: &tokio_postgres::Client, on: bool) -> anyhow::Result<()> {
    if on {
        db.batch_execute(&format!(
            "INSERT INTO plans (id, code, name) VALUES ('{PLAN}', 'bench', 'Bench') ON CONFLICT DO NOTHING;
             INSERT INTO limit_policies (plan_id, metric, limit_value, period) VALUES
                ('{PLAN}', 'contacts', {HUGE}, 'lifetime'), ('{PLAN}', 'api_requests_per_minute', {HUGE}, 'month')
                ON CONFLICT DO NOTHING;
             INSERT INTO subscriptions (tenant_id, plan_id) SELECT '{TENANT}', '{PLAN}'
              WHERE NOT EXISTS (SELECT 1 FROM subscriptions WHERE tenant_id = '{TENANT}' AND status <> 'cancelled');"
        ))
        .await?;
    } else {
        db.batch_execute(&format!("DELETE FROM subscriptions WHERE tenant_id = '{TENANT}'")).await?;
    }
    Ok(())
}

fn env(limited: bool, clients: usize) -> Vec<(&'static str, String)> {
    let value = |on: &str| if limited { on.to_string() } else { "0".to_string() };
    vec![
        ("ROWCAST_RATE_IP_PER_MIN", value(HUGE)),
        ("ROWCAST_RATE_USER_PER_MIN", value(HUGE)),
        ("ROWCAST_RATE_TENANT_PER_MIN", value(HUGE)),
        ("ROWCAST_RATE_WS_CONNECT_PER_MIN", value("60")),
        ("ROWCAST_WS_MAX_SESSIONS_PER_USER", value("100")),
        ("ROWCAST_WS_FRAMES_PER_SEC", value("50")),
        ("ROWCAST_TENANT_MAX_CONCURRENCY", value(&clients.to_string())),
    ]
}

async fn one_run(cluster: &EmbeddedCluster, opts: &Options, limited: bool, create: bool) -> anyhow::Result<Figures> {
    let db = owner(cluster).await?;
    if create {
        // The phones of a run start at the same number: contacts an earlier suite of this
        // process created (the rest suite) would make them duplicates (409s, not figures).
        db.batch_execute(&format!("DELETE FROM contacts WHERE tenant_id = '{TENANT}' AND first_name = 'Bench'")).await?;
    }
    subscribe(&db, limited).await?;
    let (base, token, shutdown) = start_rowcast_with(cluster, opts, &env(limited, opts.clients)).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build()?;
    // One second of reads first, not measured: each pool connection's first request prepares
    // its statements on a cold backend (0.3–0.4 s each with 16 at once on 2 cores), and wrk's
    // coordinated-omission correction turns 16 such requests into a p99 of hundreds of ms.
    // Both sides of the comparison get the same warm-up.
    reads(&http, &base, &token, opts.clients, 1).await?;
    let figures = match (create, wrk::available()) {
        (true, true) => wrk::run(&base, &wrk::create_script(&token), opts.clients, opts.seconds)?,
        (true, false) => {
            let phones = Arc::new(AtomicU64::new(0));
            drive(opts.clients, opts.seconds, move |_| {
                let req = create_contact(&http, &base, &token, phones.fetch_add(1, Ordering::Relaxed));
                async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 201) }
            })
            .await
        }
        (false, _) => reads(&http, &base, &token, opts.clients, opts.seconds).await?,
    };
    shutdown.cancel();
    if create {
        db.batch_execute(&format!("DELETE FROM contacts WHERE tenant_id = '{TENANT}' AND first_name = 'Bench'")).await?;
        // Its own statement: a multi-statement batch is one implicit transaction, where VACUUM cannot run.
        db.batch_execute("VACUUM ANALYZE contacts").await?;
    }
    Ok(figures)
}

/// Reads by id for `seconds`: wrk when installed, else the in-process client.
async fn reads(http: &reqwest::Client, base: &str, token: &str, clients: usize, seconds: u64) -> anyhow::Result<Figures> {
    if wrk::available() {
        return wrk::run(base, &wrk::read_script(token), clients, seconds);
    }
    let (h, b, t) = (http.clone(), base.to_string(), token.to_string());
    Ok(drive(clients, seconds, move |n| {
        let req = read_contact(&h, &b, &t, n);
        async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 200) }
    })
    .await)
}

fn mean(a: &Figures, b: &Figures) -> Figures {
    Figures {
        per_second: (a.per_second + b.per_second) / 2.0,
        p50_ms: (a.p50_ms + b.p50_ms) / 2.0,
        p99_ms: (a.p99_ms + b.p99_ms) / 2.0,
        errors: a.errors + b.errors,
    }
}

pub async fn limits_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    println!(
        "REST with limits enabled but not reached vs. every limit off, {} clients, {} s per run, runs off/on/on/off:",
        opts.clients, opts.seconds
    );
    for (name, create) in [("create (POST contact)", true), ("read by id (GET)", false)] {
        let off1 = one_run(cluster, opts, false, create).await?;
        let on1 = one_run(cluster, opts, true, create).await?;
        let on2 = one_run(cluster, opts, true, create).await?;
        let off2 = one_run(cluster, opts, false, create).await?;
        let (off, on) = (mean(&off1, &off2), mean(&on1, &on2));
        let ratio = on.per_second / off.per_second.max(f64::MIN_POSITIVE);
        println!(
            "{name:<22} limited {:>8.0} req/s (p50 {:>6.2} ms, p99 {:>6.2} ms, errors {})   unlimited {:>8.0} req/s (p50 {:>6.2} ms, p99 {:>6.2} ms, errors {})   ratio {:>5.3}  (target >= 0.95)  {}",
            on.per_second,
            on.p50_ms,
            on.p99_ms,
            on.errors,
            off.per_second,
            off.p50_ms,
            off.p99_ms,
            off.errors,
            ratio,
            if ratio >= 0.95 { "PASS" } else { "BELOW TARGET" }
        );
        println!(
            "{:<22} runs: off {:.0}, on {:.0}, on {:.0}, off {:.0} req/s",
            "", off1.per_second, on1.per_second, on2.per_second, off2.per_second
        );
    }
    Ok(())
}

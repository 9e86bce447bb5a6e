//! The benchmark command: `cargo bench --bench rowcast -- [rest] [postgraphile] [capture] [neighbour] [latency] [fanout] [embed] [webhooks] [limits] [--seconds N] [--clients N]`.
//!
//! Starts a private cluster, migrates and seeds it, runs the real server in-process, drives
//! it over HTTP, and runs `pgbench` with the identical transaction (BEGIN, app.begin_request,
//! the same statement, COMMIT) against the same database in the same run, printing both.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use rowcast::db::embedded::{EmbeddedCluster, find_bindir, start_ephemeral};
use uuid::Uuid;

#[path = "rowcast/capture.rs"]
mod capture;
#[path = "rowcast/cpu.rs"]
mod cpu;
#[path = "rowcast/embed.rs"]
mod embed;
#[path = "rowcast/limits.rs"]
mod limits;
#[path = "rowcast/realtime.rs"]
mod realtime;
#[path = "rowcast/webhooks.rs"]
mod webhooks;
#[path = "rowcast/wrk.rs"]
mod wrk;

const APP_PASSWORD: &str = "bench-app-password";
const JWT_SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";
const DB: &str = "bench";
const READ_ROWS: u64 = 20_000;
const TENANT: &str = "b0000000-0000-4000-8000-000000000001";
const USER: &str = "b0000000-0000-4000-8000-000000000002";

struct Options {
    seconds: u64,
    clients: usize,
    suites: Vec<String>,
}

fn options() -> Options {
    let mut opts = Options { seconds: 10, clients: 16, suites: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => opts.seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(opts.seconds),
            "--clients" => opts.clients = args.next().and_then(|v| v.parse().ok()).unwrap_or(opts.clients),
            "--bench" => {}
            other if !other.starts_with('-') => opts.suites.push(other.to_string()),
            _ => {}
        }
    }
    if opts.suites.is_empty() {
        opts.suites =
            ["rest", "postgraphile", "capture", "neighbour", "latency", "fanout", "embed", "webhooks", "limits"].map(String::from).to_vec();
    }
    opts
}

/// Contact number `i` has a predictable id, so pgbench and the HTTP client pick the same rows.
fn contact_id(i: u64) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

const ID_SQL: &str = "('00000000-0000-4000-8000-' || lpad(to_hex((:i)::bigint), 12, '0'))::uuid";

async fn prepare(cluster: &EmbeddedCluster) -> anyhow::Result<()> {
    cluster.ensure_database(DB).await?;
    rowcast::db::migrate::migrate(&cluster.pg_config(DB), APP_PASSWORD).await?;
    let (client, conn) = cluster.pg_config(DB).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "INSERT INTO tenants (id, name) VALUES ('{TENANT}', 'Bench') ON CONFLICT DO NOTHING;
             INSERT INTO users (id, email, name) VALUES ('{USER}', 'bench@bench.test', 'Bench') ON CONFLICT DO NOTHING;
             INSERT INTO memberships (tenant_id, user_id, role) VALUES ('{TENANT}', '{USER}', 'tenant_user') ON CONFLICT DO NOTHING;
             INSERT INTO contacts (id, tenant_id, phone, first_name)
               SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, '{TENANT}', '+1555' || lpad(i::text, 7, '0'), 'Read'
               FROM generate_series(1, {READ_ROWS}) i ON CONFLICT DO NOTHING;
             CREATE SEQUENCE IF NOT EXISTS public.bench_phone START 1;
             GRANT USAGE ON SEQUENCE public.bench_phone TO rowcast_app;"
        ))
        .await?;
    client.batch_execute(&realtime::seed_sql()).await?;
    // `ROWCAST_BENCH_PRE_SQL`: SQL run once after the migrations, as the owner (A/B runs of a
    // schema change without a migration, e.g. docs/benchmarks.md's capture without its lock).
    if let Ok(sql) = std::env::var("ROWCAST_BENCH_PRE_SQL") {
        client.batch_execute(&sql).await?;
    }
    client.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

struct Figures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

/// Runs `clients` concurrent loops of `request` for `seconds`, returning throughput and latency.
async fn drive<F, Fut>(clients: usize, seconds: u64, request: F) -> Figures
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (request, counter, errors) = (request.clone(), counter.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    if !request(n).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    Figures {
        per_second: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Runs pgbench with `script` as rowcast_app; returns transactions per second.
fn pgbench(cluster: &EmbeddedCluster, script: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    pgbench_with(cluster, script, clients, seconds, &["-M", "prepared"])
}

/// [`pgbench`] with other options (`-M simple`, `-D var=value`).
fn pgbench_with(cluster: &EmbeddedCluster, script: &str, clients: usize, seconds: u64, options: &[&str]) -> anyhow::Result<f64> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), script)?;
    let bin: PathBuf = find_bindir()?.join("pgbench");
    let out = std::process::Command::new(bin)
        .arg("-n")
        .args(options)
        .args(["-h", "127.0.0.1", "-U", "rowcast_app"])
        .arg("-p")
        .arg(cluster.port().to_string())
        .arg("-c")
        .arg(clients.to_string())
        .args(["-j", "2", "-T"])
        .arg(seconds.to_string())
        .arg("-f")
        .arg(file.path())
        .arg(DB)
        .env("PGPASSWORD", APP_PASSWORD)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        anyhow::bail!("pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .ok_or_else(|| anyhow::anyhow!("no tps line in pgbench output: {text}"))
}

fn report(name: &str, ours: &Figures, raw_tps: f64, target: f64) {
    let ratio = ours.per_second / raw_tps;
    println!(
        "{name:<22} rowcast {:>9.0} req/s (p50 {:>6.2} ms, p99 {:>6.2} ms, errors {})   pgbench {:>9.0} tps   ratio {:>5.2}  (target >= {target})  {}",
        ours.per_second,
        ours.p50_ms,
        ours.p99_ms,
        ours.errors,
        raw_tps,
        ratio,
        match (ours.errors, ratio >= target) {
            (0, true) => "PASS",
            (0, false) => "BELOW TARGET",
            _ => "ERRORS: not a valid figure",
        }
    );
}

/// The real server in-process on a free port: (base url, token of the bench user, stop handle).
async fn start_rowcast(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<(String, String, tokio_util::sync::CancellationToken)> {
    start_rowcast_with(cluster, opts, &roomy_limits(opts)).await
}

/// Every limit on (production's code path) but none refusing: rates far above what a run
/// makes, and the bench tenant allowed all its connections (the default, half the pool, would
/// give it 8 of pgbench's 16). The cost of limiting itself is the `limits` suite's. Without
/// this the default 3,000 requests/min per user turned most of a run into 429s.
fn roomy_limits(opts: &Options) -> [(&'static str, String); 4] {
    [
        ("ROWCAST_RATE_IP_PER_MIN", "100000000".to_string()),
        ("ROWCAST_RATE_USER_PER_MIN", "100000000".to_string()),
        ("ROWCAST_RATE_TENANT_PER_MIN", "100000000".to_string()),
        ("ROWCAST_TENANT_MAX_CONCURRENCY", opts.clients.to_string()),
    ]
}

/// The same, with extra settings (the `limits` suite).
async fn start_rowcast_with(
    cluster: &EmbeddedCluster,
    opts: &Options,
    extra: &[(&str, String)],
) -> anyhow::Result<(String, String, tokio_util::sync::CancellationToken)> {
    serve(settings(cluster, opts, extra)?).await
}

/// The server on its own runtime, whose threads are all named [`cpu::SERVER_THREADS`], so
/// its CPU time can be told from the in-process load generator's (the `rest` suite).
async fn start_rowcast_isolated(
    cluster: &EmbeddedCluster,
    opts: &Options,
) -> anyhow::Result<(String, String, tokio_util::sync::CancellationToken)> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().thread_name(cpu::SERVER_THREADS).enable_all().build().expect("the server's runtime")
    });
    let settings = settings(cluster, opts, &roomy_limits(opts))?;
    runtime.spawn(serve(settings)).await?
}

fn settings(cluster: &EmbeddedCluster, opts: &Options, extra: &[(&str, String)]) -> anyhow::Result<Settings> {
    let base = [
        ("ROWCAST_APP_DATABASE_URL", format!("postgres://rowcast_app:{APP_PASSWORD}@127.0.0.1:{}/{DB}", cluster.port())),
        ("ROWCAST_BIND", "127.0.0.1:0".into()),
        ("ROWCAST_JWT_SECRET", JWT_SECRET.into()),
        ("ROWCAST_POOL_SIZE", opts.clients.to_string()),
        ("RUST_LOG", "warn".into()),
        // Thousands of sessions of one user from one address (fan-out, latency suites).
        ("ROWCAST_RATE_WS_CONNECT_PER_MIN", "0".into()),
        ("ROWCAST_WS_MAX_SESSIONS_PER_USER", "0".into()),
    ];
    Ok(Settings::from_env(&Env::from_pairs(base.into_iter().chain(extra.iter().cloned()).map(|(k, v)| (k.to_string(), v))))?)
}

/// Builds and runs the application on the current runtime.
async fn serve(settings: Settings) -> anyhow::Result<(String, String, tokio_util::sync::CancellationToken)> {
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let token = app.state().jwt.mint(Uuid::parse_str(USER)?, None, Duration::from_secs(3600)).map_err(anyhow::Error::msg)?;
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    Ok((base, token, shutdown))
}

fn create_contact(http: &reqwest::Client, base: &str, token: &str, n: u64) -> reqwest::RequestBuilder {
    http.post(format!("{base}/rest/contacts"))
        .bearer_auth(token)
        .header("prefer", "return=minimal")
        .json(&serde_json::json!({"tenant_id": TENANT, "phone": format!("+1{}", 3_000_000_000u64 + n), "first_name": "Bench"}))
}

fn read_contact(http: &reqwest::Client, base: &str, token: &str, n: u64) -> reqwest::RequestBuilder {
    let id = contact_id(1 + (n.wrapping_mul(7919) % READ_ROWS));
    http.get(format!("{base}/rest/contacts?id=eq.{id}")).bearer_auth(token).header("accept", "application/vnd.pgrst.object+json")
}

async fn rest_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    let (base, token, shutdown) = start_rowcast_isolated(cluster, opts).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build()?;

    // One request of each kind first: a bench of refusals measures nothing.
    for (req, expected) in [(create_contact(&http, &base, &token, 999_999_999), 201), (read_contact(&http, &base, &token, 0), 200)] {
        let response = req.send().await?;
        let status = response.status().as_u16();
        anyhow::ensure!(status == expected, "the probe got {status} instead of {expected}: {}", response.text().await.unwrap_or_default());
    }
    let use_wrk = wrk::available();
    println!(
        "REST, {} clients, {} s each, same cluster, same run (load: {}):",
        opts.clients,
        opts.seconds,
        if use_wrk { "wrk" } else { "in-process reqwest; install wrk for a lighter client" }
    );
    let create = async {
        match use_wrk {
            true => wrk::run(&base, &wrk::create_script(&token), opts.clients, opts.seconds),
            false => {
                let phones = Arc::new(AtomicU64::new(0));
                let (h, b, t) = (http.clone(), base.clone(), token.clone());
                Ok(drive(opts.clients, opts.seconds, move |_| {
                    let req = create_contact(&h, &b, &t, phones.fetch_add(1, Ordering::Relaxed));
                    async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 201) }
                })
                .await)
            }
        }
    };
    let (create, create_cpu) = cpu::measure(create, requests).await;
    let create = create?;
    let raw = pgbench(
        cluster,
        &format!(
            "BEGIN;\nSELECT * FROM app.begin_request('{USER}', NULL);\n\
             INSERT INTO contacts (tenant_id, phone, first_name) VALUES ('{TENANT}', '+1' || (4000000000 + nextval('bench_phone'))::text, 'Bench');\n\
             COMMIT;\n"
        ),
        opts.clients,
        opts.seconds,
    )?;
    report("create (POST contact)", &create, raw, 0.8);
    report_cpu(&create_cpu);

    let read = async {
        match use_wrk {
            true => wrk::run(&base, &wrk::read_script(&token), opts.clients, opts.seconds),
            false => {
                let (h, b, t) = (http.clone(), base.clone(), token.clone());
                Ok(drive(opts.clients, opts.seconds, move |n| {
                    let req = read_contact(&h, &b, &t, n);
                    async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 200) }
                })
                .await)
            }
        }
    };
    let (read, read_cpu) = cpu::measure(read, requests).await;
    let read = read?;
    let raw = pgbench(
        cluster,
        &format!(
            "\\set i random(1, {READ_ROWS})\nBEGIN;\nSELECT * FROM app.begin_request('{USER}', NULL);\n\
             SELECT * FROM contacts WHERE id = {ID_SQL};\nCOMMIT;\n"
        ),
        opts.clients,
        opts.seconds,
    )?;
    report("read by id (GET)", &read, raw, 0.8);
    report_cpu(&read_cpu);
    let identical = pgbench(
        cluster,
        &format!(
            "\\set i random(1, {READ_ROWS})\nBEGIN;\nSELECT * FROM app.begin_request('{USER}', NULL);\n{};\nCOMMIT;\n",
            rest_read_statement(cluster, true).await?
        ),
        opts.clients,
        opts.seconds,
    )?;
    report("read, same SELECT", &read, identical, 0.8);
    // The strictest comparison: pgbench sending what rowcast sends, the same statements
    // prepared once per connection and executed together in one message.
    let one_message = pgbench_with(
        cluster,
        &format!(
            "\\set i random(1, {READ_ROWS})\n\\if :prepared = 0\n\
             PREPARE rc_begin AS {};\nPREPARE rc_read AS {};\n\\set prepared 1\n\\endif\n\
             EXECUTE rc_begin('{USER}', NULL, '5000') \\; EXECUTE rc_read({ID_SQL}::text, 10000, 0);\n",
            rowcast::db::tenant_tx::BEGIN_REQUEST,
            rest_read_statement(cluster, false).await?
        ),
        opts.clients,
        opts.seconds,
        &["-M", "simple", "-D", "prepared=0"],
    )?;
    report("read, same message", &read, one_message, 0.8);
    shutdown.cancel();
    Ok(())
}

/// Requests answered in `elapsed`, from the figures.
fn requests(figures: &anyhow::Result<Figures>, elapsed: Duration) -> f64 {
    figures.as_ref().map_or(0.0, |f| f.per_second * elapsed.as_secs_f64())
}

/// rowcast's own CPU per request (its runtime's threads) beside the load generator's.
fn report_cpu(cpu: &cpu::PerRequest) {
    println!(
        "{:<22} rowcast server CPU {:>6.1} µs/request   in-process load generator {:>6.1} µs/request   (from /proc/self/task/*/schedstat)",
        "", cpu.server_us, cpu.client_us
    );
}

/// The exact statement the REST layer sends for `GET /rest/contacts?id=eq.<id>` (built by
/// its own SQL builder from the live catalog): the same JSON-building SELECT, not a plain
/// `SELECT *`. With `inline`, pgbench variables stand in place of its parameters.
async fn rest_read_statement(cluster: &EmbeddedCluster, inline: bool) -> anyhow::Result<String> {
    let mut config = cluster.pg_config(DB);
    config.user("rowcast_app").password(APP_PASSWORD);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let catalog = rowcast::rest::catalog::Catalog::load(&client).await?;
    let table = catalog.table("contacts").ok_or_else(|| anyhow::anyhow!("contacts is not exposed"))?;
    let query = rowcast::rest::query::parse_query(&format!("id=eq.{}", contact_id(1)))?;
    let read = rowcast::rest::sql::ReadSql {
        table,
        select: None,
        filters: &query.filters,
        order: &[],
        offset: 0,
        limit: rowcast::rest::request::MAX_ROWS as i64,
        count: false,
        shape: rowcast::rest::sql::BodyShape::default(),
    };
    let (sql, _) = read.build().map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(!sql.contains("$4"), "unexpected parameters in {sql}");
    if !inline {
        return Ok(sql);
    }
    Ok(sql.replace("$1", &format!("{ID_SQL}::text")).replace("$2", "10000").replace("$3", "0"))
}

/// Installs PostGraphile 4 (npm) under target/ once; returns the directory holding node_modules.
fn postgraphile_install() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-node");
    if !dir.join("node_modules/postgraphile").is_dir() {
        std::fs::create_dir_all(&dir)?;
        let status = std::process::Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .args(["postgraphile@4.14.1", "pg@8"])
            .status()?;
        anyhow::ensure!(status.success(), "npm install postgraphile@4 failed");
    }
    Ok(dir)
}

/// Starts PostGraphile as rowcast_app on a free port; returns the child and its GraphQL url.
fn start_postgraphile(cluster: &EmbeddedCluster, clients: usize) -> anyhow::Result<(std::process::Child, String)> {
    use std::io::BufRead;
    let dir = postgraphile_install()?;
    let port = rowcast::db::embedded::free_port()?;
    let dsn = format!("postgres://rowcast_app:{APP_PASSWORD}@127.0.0.1:{}/{DB}", cluster.port());
    let mut child = std::process::Command::new("node")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/postgraphile/server.js"))
        .args([dsn, port.to_string()])
        .env("NODE_PATH", dir.join("node_modules"))
        .env("POOL_SIZE", clients.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    anyhow::ensure!(line.trim() == "ready", "postgraphile did not start: {line}");
    Ok((child, format!("http://127.0.0.1:{port}/graphql")))
}

const GQL_CREATE: &str = "mutation($input: CreateContactInput!) { createContact(input: $input) { clientMutationId } }";
const GQL_READ: &str = "query($id: UUID!) { contactById(id: $id) { id tenantId phone firstName lastName email language attributes optedOut deletedAt createdAt updatedAt } }";

fn graphql(http: &reqwest::Client, url: &str, query: &str, variables: serde_json::Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header("x-user-id", USER)
        .header("x-tenant-id", TENANT)
        .header("x-role", "tenant_user")
        .json(&serde_json::json!({"query": query, "variables": variables}))
}

async fn graphql_ok(req: reqwest::RequestBuilder) -> bool {
    match req.send().await {
        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.is_ok_and(|v| v.get("errors").is_none()),
        _ => false,
    }
}

async fn postgraphile_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    let (mut child, gql) = start_postgraphile(cluster, opts.clients)?;
    let (base, token, shutdown) = start_rowcast(cluster, opts).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build()?;
    println!("rowcast REST vs PostGraphile 4 (npm), {} clients, {} s each, same database and tables:", opts.clients, opts.seconds);
    let phones = Arc::new(AtomicU64::new(0));
    let (h, b, t, p) = (http.clone(), base.clone(), token.clone(), phones.clone());
    let ours = drive(opts.clients, opts.seconds, move |_| {
        let req = create_contact(&h, &b, &t, 100_000_000 + p.fetch_add(1, Ordering::Relaxed));
        async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 201) }
    })
    .await;
    let (h, g, p) = (http.clone(), gql.clone(), phones.clone());
    let theirs = drive(opts.clients, opts.seconds, move |_| {
        let n = 200_000_000 + p.fetch_add(1, Ordering::Relaxed);
        let input = serde_json::json!({"input": {"contact": {"tenantId": TENANT, "phone": format!("+1{}", 3_000_000_000u64 + n), "firstName": "Bench"}}});
        graphql_ok(graphql(&h, &g, GQL_CREATE, input))
    })
    .await;
    report_vs("create", &ours, &theirs, 1.5);
    let (h, b, t) = (http.clone(), base.clone(), token.clone());
    let ours = drive(opts.clients, opts.seconds, move |n| {
        let req = read_contact(&h, &b, &t, n);
        async move { req.send().await.is_ok_and(|r| r.status().as_u16() == 200) }
    })
    .await;
    let (h, g) = (http.clone(), gql.clone());
    let theirs = drive(opts.clients, opts.seconds, move |n| {
        let id = contact_id(1 + (n.wrapping_mul(7919) % READ_ROWS));
        graphql_ok(graphql(&h, &g, GQL_READ, serde_json::json!({"id": id})))
    })
    .await;
    report_vs("read by id", &ours, &theirs, 1.8);
    shutdown.cancel();
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

fn report_vs(name: &str, ours: &Figures, theirs: &Figures, target: f64) {
    let ratio = ours.per_second / theirs.per_second.max(f64::MIN_POSITIVE);
    println!(
        "{name:<22} rowcast {:>9.0} req/s (p99 {:>6.2} ms, errors {})   postgraphile {:>9.0} req/s (p99 {:>6.2} ms, errors {})   ratio {:>5.2}  (target >= {target})  {}",
        ours.per_second,
        ours.p99_ms,
        ours.errors,
        theirs.per_second,
        theirs.p99_ms,
        theirs.errors,
        ratio,
        match (ours.errors + theirs.errors, ratio >= target) {
            (0, true) => "PASS",
            (0, false) => "BELOW TARGET",
            _ => "ERRORS: not a valid figure",
        }
    );
}

/// The allocator of `rowcast serve` (src/main.rs): the rest suite runs the server in-process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let opts = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let cluster = start_ephemeral(vec![("max_connections".into(), "300".into())]).await?;
        prepare(&cluster).await?;
        for suite in &opts.suites {
            match suite.as_str() {
                "rest" => rest_suite(&cluster, &opts).await?,
                "postgraphile" => postgraphile_suite(&cluster, &opts).await?,
                "latency" => realtime::latency_suite(&cluster, &opts).await?,
                "fanout" => realtime::fanout_suite(&cluster, &opts).await?,
                "embed" => embed::embed_suite(&cluster, &opts).await?,
                "webhooks" => webhooks::webhooks_suite(&cluster, &opts).await?,
                "limits" => limits::limits_suite(&cluster, &opts).await?,
                "capture" => capture::capture_suite(&cluster, &opts).await?,
                "neighbour" => capture::neighbour_suite(&cluster, &opts).await?,
                other => anyhow::bail!(
                    "unknown suite `{other}` (known: rest, postgraphile, capture, neighbour, latency, fanout, embed, webhooks, limits)"
                ),
            }
        }
        Ok(())
    })
}

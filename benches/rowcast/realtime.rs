//! Realtime suites: commit → WebSocket frame latency at a fixed write rate (beside the raw
//! LISTEN latency of the same writes), and fan-out to 10,000 sessions on one tenant
//! (deliveries per second, server memory per idle session).
//!
//! The server runs as its own process (`rowcast serve`), so its memory is its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rowcast::db::embedded::{EmbeddedCluster, free_port};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use super::{APP_PASSWORD, DB, JWT_SECRET, Options, percentile};

pub const TENANTS: u64 = 100;

pub fn tenant_id(i: u64) -> Uuid {
    Uuid::parse_str(&format!("b1000000-0000-4000-8000-{i:012x}")).expect("uuid")
}

pub fn user_id(i: u64) -> Uuid {
    Uuid::parse_str(&format!("b2000000-0000-4000-8000-{i:012x}")).expect("uuid")
}

/// SQL creating the realtime bench tenants, one tenant_user each.
pub fn seed_sql() -> String {
    format!(
        "INSERT INTO tenants (id, name) SELECT ('b1000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'RT ' || i
           FROM generate_series(0, {n}) i ON CONFLICT DO NOTHING;
         INSERT INTO users (id, email, name) SELECT ('b2000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'rt' || i || '@bench.test', 'RT'
           FROM generate_series(0, {n}) i ON CONFLICT DO NOTHING;
         INSERT INTO memberships (tenant_id, user_id, role)
           SELECT ('b1000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, ('b2000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'tenant_user'
           FROM generate_series(0, {n}) i ON CONFLICT DO NOTHING;",
        n = TENANTS
    )
}

/// `rowcast serve` as a child process; killed on drop.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    async fn start(cluster: &EmbeddedCluster) -> anyhow::Result<Server> {
        let port = free_port()?;
        // `ROWCAST_BENCH_SERVER`: another build of the server (before/after comparisons).
        let bin = std::env::var("ROWCAST_BENCH_SERVER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rowcast").to_string());
        let child = std::process::Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("ROWCAST_APP_DATABASE_URL", format!("postgres://rowcast_app:{APP_PASSWORD}@127.0.0.1:{}/{DB}", cluster.port()))
            .env("ROWCAST_JWT_SECRET", JWT_SECRET)
            .env("ROWCAST_BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            // 10,000 sessions of one user: the per-user and per-IP upgrade limits off (the
            // inbound frame limit stays at its default, as in production).
            .env("ROWCAST_RATE_WS_CONNECT_PER_MIN", "0")
            .env("ROWCAST_WS_MAX_SESSIONS_PER_USER", "0")
            .env("ROWCAST_RATE_IP_PER_MIN", "0")
            .env("ROWCAST_RATE_USER_PER_MIN", "0")
            .env("ROWCAST_RATE_TENANT_PER_MIN", "0")
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "rowcast serve did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    /// CPU time the server has used, all threads (ns; `/proc/<pid>/task/*/schedstat`). On a
    /// shared machine this moves far less than wall-clock rates do.
    fn cpu_ns(&self) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else { return 0 };
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }
}

fn token(user: Uuid) -> String {
    let settings = rowcast::config::Settings::from_env(&rowcast::config::Env::from_pairs([(
        "ROWCAST_JWT_SECRET".to_string(),
        JWT_SECRET.to_string(),
    )]))
    .expect("settings");
    rowcast::auth::JwtVerifier::new(settings.jwt().expect("jwt"))
        .expect("verifier")
        .mint(user, None, Duration::from_secs(3600))
        .expect("mint")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn session(port: u16, tenant: u64) -> anyhow::Result<Ws> {
    let url = format!("ws://127.0.0.1:{port}/ws?token={}&tenant={}", token(user_id(tenant)), tenant_id(tenant));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"welcome\"") => Ok(ws),
        other => anyhow::bail!("no welcome frame: {other:?}"),
    }
}

/// Row id and commit timestamp of event frames: `/ws` (`payload.id`, `timestamp`) or Phoenix
/// `postgres_changes` (`data.record.id`, `data.commit_timestamp`).
fn event_of(text: &str) -> Option<(Uuid, Option<String>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let at = |t: &serde_json::Value| t.as_str().map(str::to_string);
    if v[3] == "postgres_changes" {
        let data = &v[4]["data"];
        return Some((Uuid::parse_str(data["record"]["id"].as_str()?).ok()?, at(&data["commit_timestamp"])));
    }
    v.get("seq")?;
    Some((Uuid::parse_str(v["payload"]["id"].as_str()?).ok()?, at(&v["timestamp"])))
}

type Sent = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// Phone numbers of the latency writers.
static PHONES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `rate` rows per second for `seconds`, spread over `tenants`, recording when each
/// INSERT was issued (the latency clock starts before the commit, so it is conservative).
async fn write_at_rate(cluster: &EmbeddedCluster, tenants: u64, rate: u64, seconds: u64, sent: Sent) -> anyhow::Result<u64> {
    let writers = 4u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, conn) = cluster.pg_config(DB).connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare("INSERT INTO contacts (id, tenant_id, phone, first_name) VALUES ($1, $2, $3, 'RT')").await?;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * writers / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut n = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let id = Uuid::new_v4();
                let tenant = tenant_id((n * writers + w) % tenants);
                // Unique across every case of the run (random phones collided once cases shared a tenant).
                let phone = format!("+1{}", 6_000_000_000u64 + PHONES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                sent.lock().expect("lock").insert(id, Instant::now());
                client.execute(&stmt, &[&id, &tenant, &phone]).await?;
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// When a receiver got each frame (monotonic and wall clock) and the frame's text. Receivers
/// only take the time and keep the text: every frame is parsed after the run, so one frame's
/// parsing never delays the next frame's timestamp (the load generator shares the CPU).
type Seen = Arc<Mutex<Vec<(Instant, std::time::SystemTime, String)>>>;

/// A plain LISTEN connection: commit → notification latency of the same writes, the raw figure.
async fn raw_listener(cluster: &EmbeddedCluster, seen: Seen) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (client, mut conn) = cluster.pg_config(DB).connect(tokio_postgres::NoTls).await?;
    let handle = tokio::spawn(async move {
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let now = (Instant::now(), std::time::SystemTime::now());
                seen.lock().expect("lock").push((now.0, now.1, n.payload().to_string()));
            }
        }
    });
    client.batch_execute("LISTEN rowcast_events").await?;
    std::mem::forget(client);
    Ok(handle)
}

/// Row id and commit timestamp of a raw notification (`row.id`, `created_at`).
fn notification_of(text: &str) -> Option<(Uuid, Option<String>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = Uuid::parse_str(v["row"]["id"].as_str()?).ok()?;
    Some((id, v["created_at"].as_str().map(str::to_string)))
}

fn receive(mut ws: Ws, seen: Seen) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let now = (Instant::now(), std::time::SystemTime::now());
                seen.lock().expect("lock").push((now.0, now.1, t.as_str().to_string()));
            }
        }
    })
}

/// Reads a frame's row id and commit timestamp.
type Parse = fn(&str) -> Option<(Uuid, Option<String>)>;

/// Parses what the receivers saw, after the run, into `samples`.
fn analyse(seen: &[Seen], sent: &Sent, samples: &Samples, parse: Parse) {
    for frames in seen {
        for (at, wall, text) in frames.lock().expect("lock").iter() {
            if let Some((id, committed)) = parse(text) {
                samples.record(sent, id, committed.as_deref(), (*at, *wall));
            }
        }
    }
}

/// One side's latencies (µs): from the INSERT being issued, from the event's own commit
/// timestamp (`created_at`, taken by PostgreSQL at commit; same machine, same clock), and
/// per write.
#[derive(Default)]
struct Samples {
    from_insert: Mutex<Vec<u32>>,
    from_commit: Mutex<Vec<u32>>,
    by_id: Mutex<HashMap<Uuid, Vec<u32>>>,
}

impl Samples {
    fn record(&self, sent: &Sent, id: Uuid, committed: Option<&str>, (now, wall): (Instant, std::time::SystemTime)) {
        let Some(t0) = sent.lock().expect("lock").get(&id).copied() else { return };
        let us = now.duration_since(t0).as_micros() as u32;
        self.from_insert.lock().expect("lock").push(us);
        self.by_id.lock().expect("lock").entry(id).or_default().push(us);
        let committed = committed.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
        if let Some(at) = committed.and_then(|c| u64::try_from(c.timestamp_micros()).ok()) {
            let wall = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
            self.from_commit.lock().expect("lock").push(wall.saturating_sub(at) as u32);
        }
    }
}

/// Per write: its first frame's latency minus raw LISTEN's, and its median and last frame's
/// minus its first (p50 over writes); then, paired, every frame's latency minus raw LISTEN's
/// for the same write (p50 and p99 over frames).
struct Breakdown {
    first: f64,
    mid: f64,
    spread: f64,
    paired_p50: f64,
    paired_p99: f64,
}

fn breakdown(ours: &Samples, raw: &Samples) -> Breakdown {
    let (ours, raw) = (ours.by_id.lock().expect("lock"), raw.by_id.lock().expect("lock"));
    let (mut first, mut spread, mut mid, mut paired) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, frames) in ours.iter() {
        let Some(r) = raw.get(id).and_then(|v| v.first()) else { continue };
        let mut f = frames.clone();
        f.sort_unstable();
        first.push(f[0].saturating_sub(*r));
        spread.push(f[f.len() - 1] - f[0]);
        mid.push(f[f.len() / 2] - f[0]);
        // Signed: a frame may beat raw LISTEN's notification (both race for the same cores).
        paired.extend(f.iter().map(|x| i64::from(*x) - i64::from(*r)));
    }
    first.sort_unstable();
    spread.sort_unstable();
    mid.sort_unstable();
    paired.sort_unstable();
    let signed = |q: f64| paired.get(((paired.len() as f64 - 1.0) * q).round() as usize).map_or(0.0, |us| *us as f64 / 1000.0);
    Breakdown {
        first: percentile(&first, 0.5),
        mid: percentile(&mid, 0.5),
        spread: percentile(&spread, 0.5),
        paired_p50: signed(0.5),
        paired_p99: signed(0.99),
    }
}

fn summary(latencies: &Mutex<Vec<u32>>) -> (usize, f64, f64) {
    let mut l = latencies.lock().expect("lock").clone();
    l.sort_unstable();
    (l.len(), percentile(&l, 0.5), percentile(&l, 0.99))
}

/// Commit → frame latency with `sessions` sessions spread over `tenants` tenants.
async fn latency_case(
    cluster: &EmbeddedCluster,
    opts: &Options,
    sessions: u64,
    tenants: u64,
    p99_target: f64,
    proto: Proto,
) -> anyhow::Result<()> {
    let server = Server::start(cluster).await?;
    let sent: Sent = Arc::default();
    let (ours, raw): (Arc<Samples>, Arc<Samples>) = Default::default();
    let (mut readers, mut seen) = (Vec::new(), Vec::new());
    for s in 0..sessions {
        let frames = Seen::default();
        readers.push(receive(proto.session(server.port, s % tenants).await?, frames.clone()));
        seen.push(frames);
    }
    let raw_seen = Seen::default();
    let raw_task = raw_listener(cluster, raw_seen.clone()).await?;
    let written = write_at_rate(cluster, tenants, 1000, opts.seconds, sent.clone()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in &readers {
        r.abort();
    }
    raw_task.abort();
    analyse(&seen, &sent, &ours, event_of);
    analyse(&[raw_seen], &sent, &raw, notification_of);
    let (n, p50, p99) = summary(&ours.from_insert);
    let (rn, rp50, rp99) = summary(&raw.from_insert);
    println!(
        "latency {:<5} {sessions:>5} sessions/{tenants:>3} tenants  {:>6.0} writes/s  rowcast frames {n:>7} p50 {p50:>6.2} ms p99 {p99:>6.2} ms   raw LISTEN {rn:>6} p50 {rp50:>6.2} ms p99 {rp99:>6.2} ms   (target p99 <= {p99_target} ms{})  {}",
        proto.label(),
        written as f64 / opts.seconds as f64,
        if sessions == 1 { ", p50 <= 1 ms" } else { "" },
        if p99 <= p99_target && (sessions > 1 || p50 <= 1.0) { "PASS" } else { "BELOW TARGET" }
    );
    let (cn, cp50, cp99) = summary(&ours.from_commit);
    let (_, crp50, crp99) = summary(&raw.from_commit);
    println!(
        "                 from the commit (created_at): rowcast {cn:>7} p50 {cp50:>6.2} ms p99 {cp99:>6.2} ms   raw LISTEN p50 {crp50:>6.2} ms p99 {crp99:>6.2} ms   (SPEC §9: p99 <= {p99_target} ms{})  {}",
        if sessions == 1 { ", p50 <= 1 ms" } else { "" },
        if cn > 0 && cp99 <= p99_target && (sessions > 1 || cp50 <= 1.0) { "PASS" } else { "BELOW TARGET" }
    );
    let b = breakdown(&ours, &raw);
    println!(
        "                 per write (p50): first frame − raw LISTEN {:>5.2} ms, median frame − first {:>5.2} ms, last frame − first {:>5.2} ms",
        b.first, b.mid, b.spread
    );
    let ok = b.paired_p50 <= 0.2 && b.paired_p99 <= 1.0;
    println!(
        "                 paired, each frame − raw LISTEN of its write: p50 {:>5.2} ms p99 {:>5.2} ms   (issue 13: p50 <= 0.2 ms, p99 <= 1 ms)  {}",
        b.paired_p50,
        b.paired_p99,
        if ok { "PASS" } else { "BELOW TARGET" }
    );
    drop(server);
    Ok(())
}

pub async fn latency_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    println!(
        "realtime commit → frame latency at 1,000 writes/s for {} s (first line: clock started before the INSERT; second: from the event's commit timestamp):",
        opts.seconds
    );
    for proto in [Proto::Ws, Proto::Phx] {
        latency_case(cluster, opts, 1, 1, 5.0, proto).await?;
        latency_case(cluster, opts, 1000, TENANTS, 15.0, proto).await?;
    }
    Ok(())
}

/// 10,000 sessions on one tenant: memory per idle session, then deliveries per second; `/ws`
/// sessions, then Phoenix sessions.
pub async fn fanout_suite(cluster: &EmbeddedCluster, _opts: &Options) -> anyhow::Result<()> {
    fanout_case(cluster, Proto::Ws).await?;
    fanout_case(cluster, Proto::Phx).await
}

async fn fanout_case(cluster: &EmbeddedCluster, proto: Proto) -> anyhow::Result<()> {
    const SESSIONS: usize = 10_000;
    const EVENTS: usize = 50;
    let server = Server::start(cluster).await?;
    let warm = proto.session(server.port, 0).await?;
    drop(warm);
    let before = server.resident_bytes();
    let mut sockets = Vec::with_capacity(SESSIONS);
    let tasks: Vec<_> = (0..SESSIONS / 250)
        .map(|_| {
            let port = server.port;
            tokio::spawn(async move {
                let mut v = Vec::new();
                for _ in 0..250 {
                    v.push(proto.session(port, 0).await);
                }
                v
            })
        })
        .collect();
    for t in tasks {
        for s in t.await? {
            sockets.push(s?);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.resident_bytes();
    let per_session = after.saturating_sub(before) as f64 / SESSIONS as f64;
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let last = Arc::new(Mutex::new(Instant::now()));
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let (received, last) = (received.clone(), last.clone());
            tokio::spawn(async move {
                let mut got = 0;
                while got < EVENTS {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.contains(proto.event_marker()) => got += 1,
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                received.fetch_add(got as u64, std::sync::atomic::Ordering::Relaxed);
                *last.lock().expect("lock") = Instant::now();
            })
        })
        .collect();
    let (client, conn) = cluster.pg_config(DB).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    let cpu_before = server.cpu_ns();
    for i in 0..EVENTS {
        client
            .execute(
                "INSERT INTO contacts (tenant_id, phone, first_name) VALUES ($1, $2, 'Fan')",
                &[&tenant_id(0), &format!("+1{}", 7_000_000_000u64 + (Uuid::new_v4().as_u128() % 1_000_000_000) as u64 + i as u64)],
            )
            .await?;
    }
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(120), r).await;
    }
    let cpu_us = server.cpu_ns().saturating_sub(cpu_before) as f64 / 1000.0;
    let total = received.load(std::sync::atomic::Ordering::Relaxed);
    let elapsed = last.lock().expect("lock").duration_since(started).as_secs_f64();
    let rate = total as f64 / elapsed;
    println!(
        "fan-out {:<5} {SESSIONS} sessions, 1 tenant, {EVENTS} events: {total} deliveries in {elapsed:.2} s = {rate:>9.0}/s (target >= 250000) {}   server CPU {:.2} µs per delivery   \
         server memory {:.1} KiB per idle session (RSS {} → {} MiB; target <= 8) {}",
        proto.label(),
        if rate >= 250_000.0 { "PASS" } else { "BELOW TARGET" },
        cpu_us / total.max(1) as f64,
        per_session / 1024.0,
        before / (1024 * 1024),
        after / (1024 * 1024),
        if per_session <= 8.0 * 1024.0 { "PASS" } else { "BELOW TARGET" }
    );
    drop(server);
    Ok(())
}

// ---- Phoenix sessions (issue 10): the same suites over /realtime/v1/websocket ----------------

/// Which protocol a suite's sessions speak.
#[derive(Clone, Copy)]
enum Proto {
    /// rowcast's own `/ws`.
    Ws,
    /// Supabase Realtime (Phoenix 2.0.0) with one `postgres_changes` binding on contacts.
    Phx,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Ws => "/ws",
            Proto::Phx => "phx",
        }
    }

    /// A substring only event frames contain (the reader stays cheap: the load generator shares the CPU).
    fn event_marker(self) -> &'static str {
        match self {
            Proto::Ws => "\"seq\"",
            Proto::Phx => "\"postgres_changes\"",
        }
    }

    async fn session(self, port: u16, tenant: u64) -> anyhow::Result<Ws> {
        match self {
            Proto::Ws => session(port, tenant).await,
            Proto::Phx => phx_session(port, tenant).await,
        }
    }
}

/// Joins `realtime:bench` with `{event: "*", schema: "public", table: "contacts"}` and waits
/// for the reply and the `system` message.
async fn phx_session(port: u16, tenant: u64) -> anyhow::Result<Ws> {
    use futures::SinkExt;
    let url =
        format!("ws://127.0.0.1:{port}/realtime/v1/websocket?vsn=2.0.0&apikey={}&tenant={}", token(user_id(tenant)), tenant_id(tenant));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let join = serde_json::json!(["1", "1", "realtime:bench", "phx_join",
        {"config": {"postgres_changes": [{"event": "*", "schema": "public", "table": "contacts"}]}}]);
    ws.send(Message::text(join.to_string())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"ok\"") => {}
        other => anyhow::bail!("phx_join refused: {other:?}"),
    }
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"system\"") => Ok(ws),
        other => anyhow::bail!("no system message: {other:?}"),
    }
}

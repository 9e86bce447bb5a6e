//! Faults the server must survive: a database restart (pool exhaustion is in auth.rs,
//! listener drops in realtime.rs).

use std::time::{Duration, Instant};

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use rowcast::db::embedded::{EmbeddedCluster, start_ephemeral};
use serde_json::Value;

use crate::helpers::{JWT_SECRET, World, connect};

async fn status(http: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// A migrated cluster of the test's own, its world, and the application on it (pool timeout
/// 500 ms, `extra` on top).
async fn own_cluster_app(extra: &[(&str, &str)]) -> (EmbeddedCluster, World, Application) {
    let cluster = start_ephemeral(vec![]).await.unwrap();
    cluster.ensure_database("rowcast").await.unwrap();
    rowcast::db::migrate::migrate(&cluster.pg_config("rowcast"), "own-pw").await.unwrap();
    let world = World::create(&connect(&cluster.pg_config("rowcast")).await).await;
    let mut vars = vec![
        ("DATABASE_URL".to_string(), cluster.url("rowcast")),
        ("ROWCAST_APP_PASSWORD".to_string(), "own-pw".to_string()),
        ("ROWCAST_BIND".to_string(), "127.0.0.1:0".to_string()),
        ("ROWCAST_JWT_SECRET".to_string(), JWT_SECRET.to_string()),
        ("ROWCAST_POOL_TIMEOUT_MS".to_string(), "500".to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::from_env(&Env::from_pairs(vars)).unwrap();
    (cluster, world, Application::build(settings).await.unwrap())
}

#[tokio::test]
async fn the_server_keeps_running_through_a_database_restart_and_health_says_so() {
    // A cluster of its own: restarting the shared one would disturb the other tests.
    let (mut cluster, world, app) = own_cluster_app(&[]).await;
    let base = format!("http://127.0.0.1:{}", app.port());
    let token = app.state().jwt.mint(world.user_a, None, Duration::from_secs(600)).unwrap();
    let shutdown = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    assert_eq!(status(&http, &format!("{base}/api/me"), Some(&token)).await, 200);

    cluster.stop_server().await;
    assert_eq!(status(&http, &format!("{base}/health"), None).await, 503, "health reports the outage");
    let health: Value = http.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["database"]["status"], "down");
    assert_eq!(status(&http, &format!("{base}/api/me"), Some(&token)).await, 503, "requests fail fast, clearly");
    assert_eq!(status(&http, &format!("{base}/live"), None).await, 200, "the process itself is alive");

    cluster.start_server().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let code = status(&http, &format!("{base}/api/me"), Some(&token)).await;
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "requests did not resume after the restart (last status {code})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The realtime relay reconnects on its own backoff (at most 2 s between attempts).
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&http, &format!("{base}/health"), None).await != 200 {
        assert!(Instant::now() < deadline, "health did not recover after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
}

/// The postmaster of `cluster` and its children (backends, background workers).
fn cluster_processes(cluster: &EmbeddedCluster) -> Vec<nix::unistd::Pid> {
    let pid_file = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
    let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    let mut pids = vec![nix::unistd::Pid::from_raw(postmaster)];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // after the command's ")": state, then the parent's pid
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<i32>().ok());
        if parent == Some(postmaster) {
            pids.push(nix::unistd::Pid::from_raw(pid));
        }
    }
    pids
}

fn signal_all(pids: &[nix::unistd::Pid], signal: nix::sys::signal::Signal) {
    for pid in pids {
        let _ = nix::sys::signal::kill(*pid, signal);
    }
}

#[tokio::test]
async fn a_server_whose_database_hangs_still_stops_within_its_grace_period() {
    // A cluster of its own: it is frozen (SIGSTOP), which would stall every other test.
    let (mut cluster, world, app) = own_cluster_app(&[("ROWCAST_STATEMENT_TIMEOUT_MS", "1000")]).await;
    let grace = app.shutdown_grace();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let token = app.state().jwt.mint(world.user_a, None, Duration::from_secs(600)).unwrap();
    let shutdown = app.shutdown_token();
    let running = tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    assert_eq!(status(&http, &format!("{base}/api/me"), Some(&token)).await, 200, "served while the database answers");

    let frozen = cluster_processes(&cluster);
    signal_all(&frozen, nix::sys::signal::Signal::SIGSTOP);
    // A request now waits on a database that neither answers nor refuses.
    let before = state.db.checkouts();
    let stuck = tokio::spawn({
        let (http, url) = (http.clone(), format!("{base}/api/me"));
        async move { status(&http, &url, Some(&token)).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.db.checkouts() == before {
        assert!(Instant::now() < deadline, "the request never reached the pool");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    shutdown.cancel();
    let stopped = tokio::time::timeout(grace + Duration::from_secs(10), running).await;
    let took = asked.elapsed();
    let still_waiting = !stuck.is_finished();
    signal_all(&frozen, nix::sys::signal::Signal::SIGCONT);
    assert!(stopped.is_ok(), "still serving {took:?} after the stop, with a grace of {grace:?}");
    assert!(still_waiting, "the stop came while the request still waited on the database");
    assert!(took >= grace, "the request got its grace period ({took:?} < {grace:?})");
    // (In-process, the connection's task outlives the server; `rowcast serve` exits here.)
    stuck.abort();
    cluster.stop().await;
}

//! Faults the server must survive: a database restart (pool exhaustion is in auth.rs,
//! listener drops in realtime.rs).

use std::time::{Duration, Instant};

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use rowcast::db::embedded::start_ephemeral;
use serde_json::Value;

use crate::helpers::{JWT_SECRET, World, connect};

async fn status(http: &reqwest::Client, url: &str, token: Option<&str>) -> u16 {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn the_server_keeps_running_through_a_database_restart_and_health_says_so() {
    // A cluster of its own: restarting the shared one would disturb the other tests.
    let mut cluster = start_ephemeral(vec![]).await.unwrap();
    cluster.ensure_database("rowcast").await.unwrap();
    rowcast::db::migrate::migrate(&cluster.pg_config("rowcast"), "restart-pw").await.unwrap();
    let world = World::create(&connect(&cluster.pg_config("rowcast")).await).await;
    let vars = [
        ("DATABASE_URL", cluster.url("rowcast")),
        ("ROWCAST_APP_PASSWORD", "restart-pw".into()),
        ("ROWCAST_BIND", "127.0.0.1:0".into()),
        ("ROWCAST_JWT_SECRET", JWT_SECRET.into()),
        ("ROWCAST_POOL_TIMEOUT_MS", "500".into()),
    ];
    let settings = Settings::from_env(&Env::from_pairs(vars.map(|(k, v)| (k.to_string(), v)))).unwrap();
    let app = Application::build(settings).await.unwrap();
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

//! The composition root: what an `Application` owns. Its stats are its own, and its
//! background tasks (catalog reloader, realtime listener, retention) end with it.

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use serde_json::json;
use tokio_postgres::Client;

use crate::helpers::rest::setup;
use crate::helpers::ws::WAIT;
use crate::helpers::{TestDb, base_env};

const TASK_CONNECTIONS: &str = "SELECT count(*) FROM pg_stat_activity
                                WHERE datname = current_database()
                                  AND application_name IN ('rowcast-rest-reload', 'rowcast-listener')";

/// Waits until the background tasks hold `n` connections to the test database (they connect
/// and disconnect on their own; the database is the only place to watch them).
async fn task_connections_become(owner: &Client, n: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now: i64 = owner.query_one(TASK_CONNECTIONS, &[]).await.unwrap().get(0);
        if now == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "background task connections: {now}, expected {n}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn build(db: &TestDb) -> Application {
    let settings = Settings::from_env(&Env::from_pairs(base_env(db))).unwrap();
    Application::build(settings).await.expect("build the application")
}

#[tokio::test]
async fn two_applications_in_one_process_keep_their_own_stats() {
    let (app, w, _owner) = setup().await;
    let other = build(&app.db).await;
    let (theirs, stop) = (other.state(), other.shutdown_token());
    tokio::spawn(other.run_until_stopped());

    app.get_json("/api/me", &app.token_for(w.user_a, Some(w.tenant_a)), 200).await;
    let mine = app.state.stats.snapshot();
    assert!(mine["routes"].get("GET /api/me").is_some(), "the serving application counted the request: {mine}");
    assert!(mine["tenants"].as_array().unwrap().iter().any(|t| t["tenantId"] == json!(w.tenant_a)), "{mine}");
    let theirs = theirs.stats.snapshot();
    assert_eq!(theirs["routes"], json!({}), "the other application served nothing: {theirs}");
    assert_eq!(theirs["tenants"], json!([]), "…and ran no transaction: {theirs}");
    stop.cancel();
}

#[tokio::test]
async fn shutdown_ends_the_background_tasks_and_their_connections() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let app = build(&db).await;
    let stop = app.shutdown_token();
    task_connections_become(&owner, 2).await;
    let server = tokio::spawn(app.run_until_stopped());
    stop.cancel();
    server.await.unwrap();
    task_connections_become(&owner, 0).await;
}

#[tokio::test]
async fn an_application_dropped_without_running_ends_its_background_tasks_too() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let app = build(&db).await;
    task_connections_become(&owner, 2).await;
    drop(app);
    task_connections_become(&owner, 0).await;
}

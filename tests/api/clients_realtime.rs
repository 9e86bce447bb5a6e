//! The unmodified `@supabase/realtime-js` and `supabase-js` (`tests/clients/realtime_*.test.mjs`)
//! against two real servers on one database: postgres_changes with filters and exact payloads,
//! tenant and role isolation, token refresh, leave, broadcast and presence across instances.
//!
//! The scripts write through REST and through SQL; for SQL they call a small HTTP endpoint this
//! test serves, which runs `WITH t AS (<statement>) SELECT json_agg(t)` as the database owner.

use std::sync::Arc;

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use warp::Filter;

use crate::helpers::rest::setup;
use crate::helpers::{TestApp, base_env};
use crate::node::run_node_tests;

/// A second `rowcast serve` on the same database; stops when the token is cancelled.
pub async fn second_instance(app: &TestApp) -> (u16, CancellationToken) {
    let settings = Settings::from_env(&Env::from_pairs(base_env(&app.db))).expect("valid settings");
    let server = Application::build(settings).await.expect("build the second instance");
    let (port, stop) = (server.port(), server.shutdown_token());
    tokio::spawn(server.run_until_stopped());
    (port, stop)
}

/// Serves `POST /sql` (a statement with RETURNING) as the owner; returns the port.
async fn sql_helper(owner: Client) -> (u16, CancellationToken) {
    let owner = Arc::new(owner);
    let route = warp::path!("sql").and(warp::post()).and(warp::body::bytes()).then(move |body: bytes::Bytes| {
        let owner = owner.clone();
        async move {
            let statement = String::from_utf8_lossy(&body).into_owned();
            let sql = format!("WITH t AS ({statement}) SELECT coalesce(json_agg(t), '[]')::text FROM t");
            match owner.query_one(&sql, &[]).await {
                Ok(row) => warp::http::Response::builder().status(200).body(row.get::<_, String>(0)).unwrap(),
                Err(e) => warp::http::Response::builder().status(500).body(format!("{e:?}")).unwrap(),
            }
        }
    });
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stopped = stop.clone();
    tokio::spawn(warp::serve(route).incoming(listener).graceful(async move { stopped.cancelled().await }).run());
    (port, stop)
}

#[tokio::test]
async fn realtime_js_receives_postgres_changes_broadcast_and_presence_across_instances() {
    let (app, w, owner) = setup().await;
    let (port_b, stop_b) = second_instance(&app).await;
    let (sql_port, stop_sql) = sql_helper(owner).await;
    let env = [
        ("ROWCAST_URL", app.url("")),
        ("ROWCAST_URL_B", format!("http://127.0.0.1:{port_b}")),
        ("ROWCAST_SQL", format!("http://127.0.0.1:{sql_port}/sql")),
        ("TENANT_A", w.tenant_a.to_string()),
        ("TENANT_B", w.tenant_b.to_string()),
        ("TOKEN_USER_A", app.token_for(w.user_a, Some(w.tenant_a))),
        ("TOKEN_USER_A_FRESH", app.state.jwt.mint(w.user_a, Some(w.tenant_a), std::time::Duration::from_secs(7200)).unwrap()),
        ("TOKEN_ADMIN_A", app.token_for(w.admin_a, Some(w.tenant_a))),
        ("TOKEN_USER_B", app.token_for(w.user_b, Some(w.tenant_b))),
    ];
    run_node_tests("realtime_phoenix.test.mjs", &env).await;
    stop_b.cancel();
    stop_sql.cancel();
}

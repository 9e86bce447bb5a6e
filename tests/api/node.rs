//! Runs a test script of `tests/clients/` — the unmodified client libraries (postgrest-js,
//! supabase-js, realtime-js, standardwebhooks) installed by `npm ci` from the committed
//! lockfile — with `node --test` against a running server. Skipped with a notice when Node or
//! the installed clients are absent, unless `ROWCAST_REQUIRE_CONFORMANCE=1` (as `.ci/run`
//! sets) makes them required.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

pub const CLIENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

fn required() -> bool {
    std::env::var("ROWCAST_REQUIRE_CONFORMANCE").is_ok_and(|v| v == "1")
}

async fn node_ready() -> Result<(), String> {
    let probe = Command::new("node").arg("--version").output().await;
    if !probe.is_ok_and(|o| o.status.success()) {
        return Err("node is not installed".into());
    }
    if !Path::new(CLIENTS_DIR).join("node_modules/@supabase").is_dir() {
        return Err("tests/clients/node_modules is missing: run `npm ci` in tests/clients".into());
    }
    Ok(())
}

/// Runs `node --test <script>` (a file of `tests/clients/`) with `env`; panics with the
/// script's output when any of its tests fails. Returns its stdout, or `None` when skipped.
pub async fn run_node_tests(script: &str, env: &[(&str, String)]) -> Option<String> {
    if let Err(why) = node_ready().await {
        assert!(!required(), "ROWCAST_REQUIRE_CONFORMANCE=1 but {why}");
        eprintln!("skipped: {script} needs Node and the client libraries ({why})");
        return None;
    }
    let mut command = Command::new("node");
    command.arg("--test").arg("--test-reporter=spec").arg(script).current_dir(CLIENTS_DIR).kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .unwrap_or_else(|_| panic!("{script}: still running after 180 s"))
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    eprintln!("{stdout}");
    Some(stdout)
}

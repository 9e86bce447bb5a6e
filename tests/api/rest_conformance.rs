//! Client conformance: the unmodified PostgREST client `postgrest-py` (PyPI `postgrest`)
//! drives select/filter/order/insert/update/delete/rpc against a real server
//! (`tests/conformance/postgrest_py.py`). Skipped with a notice when the package is not
//! installed, unless `ROWCAST_REQUIRE_CONFORMANCE=1` (as `.ci/run` sets) makes it required.

use tokio::process::Command;

use crate::helpers::rest::setup;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/postgrest_py.py");

async fn postgrest_py_installed() -> bool {
    let probe = Command::new("python3").args(["-c", "import postgrest"]).output().await;
    probe.is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn postgrest_py_selects_filters_orders_inserts_updates_and_deletes_unchanged() {
    if !postgrest_py_installed().await {
        let required = std::env::var("ROWCAST_REQUIRE_CONFORMANCE").is_ok_and(|v| v == "1");
        assert!(!required, "ROWCAST_REQUIRE_CONFORMANCE=1 but python3 cannot import postgrest: pip install postgrest");
        eprintln!("skipped: postgrest-py conformance needs `pip install postgrest` (python3)");
        return;
    }
    let (app, w, _owner) = setup().await;
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let out = Command::new("python3")
        .arg(SCRIPT)
        .arg(app.url("/rest"))
        .arg(&token)
        .arg(w.tenant_a.to_string())
        .output()
        .await
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "postgrest-py conformance failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("checks passed"), "{stdout}");
    eprintln!("{stdout}");
}

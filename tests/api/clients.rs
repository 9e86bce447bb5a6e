//! The unmodified JavaScript clients (`tests/clients/*.test.mjs`) against a real server.

use crate::helpers::rest::setup;
use crate::node::run_node_tests;

#[tokio::test]
async fn postgrest_js_reads_and_writes_flat_rows_unchanged() {
    let (app, w, _owner) = setup().await;
    let env = [
        ("ROWCAST_URL", app.url("")),
        ("ROWCAST_TOKEN", app.token_for(w.user_a, Some(w.tenant_a))),
        ("ROWCAST_TENANT", w.tenant_a.to_string()),
    ];
    run_node_tests("postgrest_flat.test.mjs", &env).await;
}

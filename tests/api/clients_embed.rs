//! postgrest-js (unmodified) embedding and aggregates against a real server
//! (`tests/clients/postgrest_embed.test.mjs`).

use crate::helpers::rest::setup;
use crate::node::run_node_tests;
use crate::rest_embed::seed;

#[tokio::test]
async fn postgrest_js_embeds_and_aggregates_unchanged() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let env = [
        ("ROWCAST_URL", app.url("")),
        ("ROWCAST_TOKEN", app.token_for(w.user_a, Some(w.tenant_a))),
        ("ROWCAST_TENANT", w.tenant_a.to_string()),
    ];
    run_node_tests("postgrest_embed.test.mjs", &env).await;
}

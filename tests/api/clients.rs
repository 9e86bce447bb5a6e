//! The unmodified JavaScript clients (`tests/clients/*.test.mjs`) against a real server.

use crate::helpers::rest::{contact, setup};
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

#[tokio::test]
async fn postgrest_js_and_supabase_js_get_postgrest_codes_and_every_operator() {
    let (app, w, _owner) = setup().await;
    let env = [
        ("ROWCAST_URL", app.url("")),
        ("ROWCAST_TOKEN", app.token_for(w.user_a, Some(w.tenant_a))),
        ("ROWCAST_TENANT", w.tenant_a.to_string()),
    ];
    run_node_tests("postgrest_errors_operators.test.mjs", &env).await;
}

#[tokio::test]
async fn postgrest_js_and_supabase_js_get_csv_counts_and_shaped_rpc() {
    let (app, w, owner) = setup().await;
    for (phone, name) in [("+15550000001", "Ann"), ("+15550000002", "Bob"), ("+15550000003", "Cy")] {
        contact(&owner, w.tenant_a, phone, Some(name)).await;
    }
    contact(&owner, w.tenant_b, "+15550000004", Some("Bea")).await;
    owner
        .batch_execute(
            "ANALYZE contacts;
             CREATE FUNCTION rpc.contacts_from(p_prefix text DEFAULT '+1') RETURNS SETOF public.contacts LANGUAGE sql STABLE
               AS $$ SELECT * FROM public.contacts WHERE phone LIKE p_prefix || '%' $$;
             GRANT EXECUTE ON FUNCTION rpc.contacts_from(text) TO rowcast_app;
             NOTIFY rowcast_reload;",
        )
        .await
        .unwrap();
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = app.http.get(app.url("/rest/rpc/contacts_from")).bearer_auth(&token).send().await.unwrap();
        if r.status().as_u16() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rpc.contacts_from never appeared");
        owner.batch_execute("NOTIFY rowcast_reload").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let env = [("ROWCAST_URL", app.url("")), ("ROWCAST_TOKEN", token), ("ROWCAST_TENANT", w.tenant_a.to_string())];
    run_node_tests("postgrest_shapes_rpc.test.mjs", &env).await;
}

//! `POST /rest/rpc/{function}`, the seed endpoints `/api/rls/*`, and catalog reloads
//! (`NOTIFY rowcast_reload`, SIGHUP).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::rest::{Api, REPRESENTATION, SINGULAR, contact, count, setup};

/// A group with two contacts, a template and a draft campaign in tenant A; gives the campaign id.
async fn draft_campaign(api: &Api<'_>, owner: &tokio_postgres::Client, tenant: uuid::Uuid) -> String {
    let c1 = contact(owner, tenant, "+15550000001", Some("Ann")).await;
    let c2 = contact(owner, tenant, "+15550000002", Some("Bob")).await;
    let one = [REPRESENTATION, SINGULAR];
    let group = api.post("/rest/groups?select=id", json!({"name": "G"}), &one).await.expect(201).json()["id"].clone();
    let added = api.post("/rest/rpc/group_add_contacts", json!({"p_group_id": group, "p_contact_ids": [c1, c2]}), &[]).await.expect(200);
    assert_eq!(added.json(), json!(2), "a scalar result is a bare JSON value");
    let template = api
        .post("/rest/message_templates?select=id", json!({"name": "T", "body": "Hi {{first_name}}"}), &one)
        .await
        .expect(201)
        .json()["id"]
        .clone();
    let campaign = api
        .post("/rest/campaigns?select=id", json!({"name": "C", "group_id": group, "template_id": template}), &one)
        .await
        .expect(201)
        .json();
    campaign["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn rpc_calls_domain_actions_and_returns_their_row_as_an_object() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let id = draft_campaign(&api, &owner, w.tenant_a).await;
    let started = api.post("/rest/rpc/campaign_start", json!({"p_campaign_id": id}), &[]).await.expect(200).json();
    assert_eq!(started["status"], "running");
    assert_eq!(started["total_recipients"], 2);
    let messages = api.get(&format!("/rest/messages_history?select=body&campaign_id=eq.{id}&order=phone")).await.expect(200).json();
    assert_eq!(messages, json!([{"body": "Hi Ann"}, {"body": "Hi Bob"}]));
    let again = api.post("/rest/rpc/campaign_start", json!({"p_campaign_id": id}), &[]).await.expect(409);
    assert_eq!(again.error_code(), "P0001");
    assert!(again.json()["message"].as_str().unwrap().contains("running -> running"));
    let cancelled = api.post("/rest/rpc/campaign_cancel", json!({"p_campaign_id": id}), &[]).await.expect(200).json();
    assert_eq!(cancelled["status"], "cancelled");
}

#[tokio::test]
async fn a_failing_rpc_rolls_back_everything_it_did() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let group =
        api.post("/rest/groups?select=id", json!({"name": "Empty"}), &[REPRESENTATION, SINGULAR]).await.expect(201).json()["id"].clone();
    let template = api
        .post("/rest/message_templates?select=id", json!({"name": "T", "body": "x"}), &[REPRESENTATION, SINGULAR])
        .await
        .expect(201)
        .json()["id"]
        .clone();
    let campaign = api
        .post("/rest/campaigns?select=id", json!({"name": "C", "group_id": group, "template_id": template}), &[REPRESENTATION, SINGULAR])
        .await
        .expect(201)
        .json();
    let r = api.post("/rest/rpc/campaign_start", json!({"p_campaign_id": campaign["id"]}), &[]).await.expect(400);
    assert_eq!(r.error_code(), "22023");
    assert!(r.json()["hint"].as_str().is_some(), "the function's hint is passed on");
    assert_eq!(count(&owner, "campaigns", "status = 'draft'").await, 1, "the status change was rolled back");
}

#[tokio::test]
async fn rpc_arguments_are_checked_against_the_catalog() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.post("/rest/rpc/campaign_start", json!({}), &[]).await.expect(400);
    assert!(r.json()["message"].as_str().unwrap().contains("p_campaign_id"));
    assert!(r.json()["hint"].as_str().unwrap().contains("rpc.campaign_start(p_campaign_id uuid)"));
    api.post("/rest/rpc/campaign_start", json!({"p_campaign_id": "nope"}), &[]).await.expect(400);
    api.post("/rest/rpc/nope", json!({}), &[]).await.expect(404);
    let missing = api.post("/rest/rpc/message_update_status", json!({"p_message_id": uuid::Uuid::new_v4(), "p_status": "sent"}), &[]).await;
    assert_eq!(missing.status, 400, "a defaulted argument may be left out: {}", missing.text);
    assert!(missing.text.contains("not found"), "{}", missing.text);
}

#[tokio::test]
async fn rls_test_counts_the_rows_each_caller_can_see() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_a, "+15550000001", None).await;
    contact(&owner, w.tenant_a, "+15550000002", None).await;
    contact(&owner, w.tenant_b, "+15550000003", None).await;
    let visible = |body: &Value, table: &str| {
        body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .map(|t| t["visibleRows"].clone())
            .unwrap_or_else(|| panic!("{table} missing: {body}"))
    };
    let a = app.get_json("/api/rls/test", &app.token_for(w.user_a, Some(w.tenant_a)), 200).await;
    assert_eq!(visible(&a, "contacts"), 2);
    assert_eq!(visible(&a, "tenants"), 1);
    assert_eq!(visible(&a, "webhooks"), 0);
    assert_eq!(a["caller"]["role"], "tenant_user");
    let b = app.get_json("/api/rls/test", &app.token_for(w.user_b, Some(w.tenant_b)), 200).await;
    assert_eq!(visible(&b, "contacts"), 1, "the twin: B sees only its own row");
    let detailed = app.get_json("/api/rls/test?detailed=true", &app.token_for(w.user_a, Some(w.tenant_a)), 200).await;
    let contacts = detailed["tables"].as_array().unwrap().iter().find(|t| t["table"] == "contacts").unwrap().clone();
    let names: Vec<&str> = contacts["policies"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"tenant_isolation"), "{names:?}");
    let root = app.get_json("/api/rls/test", &app.token_for(w.platform_admin, None), 200).await;
    assert_eq!(visible(&root, "contacts"), 3, "a platform admin outside any tenant sees every tenant");
}

#[tokio::test]
async fn rls_policies_are_for_platform_admins_only() {
    let (app, w, _owner) = setup().await;
    app.get_json("/api/rls/policies", &app.token_for(w.admin_a, Some(w.tenant_a)), 403).await;
    app.get_json("/api/rls/policies", &app.token_for(w.user_a, Some(w.tenant_a)), 403).await;
    let body = app.get_json("/api/rls/policies", &app.token_for(w.platform_admin, None), 200).await;
    let contacts = body["tables"].as_array().unwrap().iter().find(|t| t["table"] == "contacts").unwrap().clone();
    assert_eq!(contacts["rlsEnabled"], true);
    assert_eq!(contacts["rlsForced"], true);
    assert!(!contacts["policies"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn impersonation_shows_what_another_user_sees_for_platform_admins_only() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_a, "+15550000001", None).await;
    contact(&owner, w.tenant_b, "+15550000002", None).await;
    let root = Api::new(&app, w.platform_admin, None);
    let ask = json!({"user_id": w.user_a, "tenant_id": w.tenant_a, "detailed": true});
    let r = root.post("/api/rls/impersonate", ask.clone(), &[]).await.expect(200).json();
    assert_eq!(r["caller"]["userId"], json!(w.user_a));
    assert_eq!(r["caller"]["role"], "tenant_user");
    assert_eq!(r["impersonatedBy"]["role"], "platform_admin");
    let contacts = r["tables"].as_array().unwrap().iter().find(|t| t["table"] == "contacts").unwrap().clone();
    assert_eq!(contacts["visibleRows"], 1);
    assert!(contacts["policies"].is_array());
    let refused = Api::new(&app, w.admin_a, Some(w.tenant_a));
    refused.post("/api/rls/impersonate", ask, &[]).await.expect(403);
    let not_member = json!({"user_id": w.user_a, "tenant_id": w.tenant_b});
    root.post("/api/rls/impersonate", not_member, &[]).await.expect(422);
    root.post("/api/rls/impersonate", json!({"tenant_id": w.tenant_a}), &[]).await.expect(400);
    let restricted = Api { app: &app, token: app.token_for(w.platform_admin, Some(w.tenant_a)), tenant: None };
    let other = json!({"user_id": w.user_b, "tenant_id": w.tenant_b});
    restricted.post("/api/rls/impersonate", other, &[]).await.expect(403);
    restricted.post("/api/rls/impersonate", json!({"user_id": w.user_a, "tenant_id": w.tenant_a}), &[]).await.expect(200);
    let me = root.get("/api/rls/test").await.expect(200).json();
    assert_eq!(me["caller"]["role"], "platform_admin", "impersonation did not outlive its request");
}

/// Creates `public.<name>` with RLS enabled and forced, a tenant policy, and the grant.
async fn create_exposed_table(owner: &tokio_postgres::Client, name: &str) {
    owner
        .batch_execute(&format!(
            "CREATE TABLE public.{name} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), body text);
             ALTER TABLE public.{name} ENABLE ROW LEVEL SECURITY; ALTER TABLE public.{name} FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON public.{name} USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
             GRANT SELECT, INSERT ON public.{name} TO rowcast_app;"
        ))
        .await
        .unwrap();
}

/// Polls `path` until it answers 200, running `nudge` between tries.
async fn until_exposed<F, Fut>(api: &Api<'_>, path: &str, mut nudge: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        nudge().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if api.get(path).await.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never appeared after the reload");
    }
}

#[tokio::test]
async fn notify_rowcast_reload_exposes_new_tables_and_functions_without_a_restart() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    create_exposed_table(&owner, "notes").await;
    owner
        .batch_execute(
            "CREATE TABLE public.loose (id int); GRANT SELECT ON public.loose TO rowcast_app;
        CREATE FUNCTION rpc.twice(n integer) RETURNS integer LANGUAGE sql AS 'SELECT n * 2';
        GRANT EXECUTE ON FUNCTION rpc.twice(integer) TO rowcast_app;",
        )
        .await
        .unwrap();
    api.get("/rest/notes").await.expect(404);
    until_exposed(&api, "/rest/notes", || async { owner.batch_execute("NOTIFY rowcast_reload").await.unwrap() }).await;
    api.post("/rest/notes", json!({"body": "hello"}), &[]).await.expect(201);
    assert_eq!(api.get("/rest/notes?select=body").await.expect(200).json(), json!([{"body": "hello"}]));
    api.get("/rest/loose").await.expect(404);
    assert_eq!(api.post("/rest/rpc/twice", json!({"n": 21}), &[]).await.expect(200).json(), json!(42));
    let doc = api.get("/rest/").await.expect(200).json();
    assert!(doc["paths"].get("/notes").is_some() && doc["paths"].get("/loose").is_none());
}

#[tokio::test]
async fn sighup_reloads_the_catalog_too() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    create_exposed_table(&owner, "first_notes").await;
    // Once NOTIFY has worked, this app's reloader (and its SIGHUP handler) is running.
    until_exposed(&api, "/rest/first_notes", || async { owner.batch_execute("NOTIFY rowcast_reload").await.unwrap() }).await;
    create_exposed_table(&owner, "second_notes").await;
    until_exposed(&api, "/rest/second_notes", || async {
        nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGHUP).unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_reload_listener_reconnects_and_catches_up_after_its_connection_is_killed() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    create_exposed_table(&owner, "before_kill").await;
    until_exposed(&api, "/rest/before_kill", || async { owner.batch_execute("NOTIFY rowcast_reload").await.unwrap() }).await;
    create_exposed_table(&owner, "while_away").await;
    let killed: i64 = owner
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE application_name = 'rowcast-rest-reload' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one reload listener per application");
    // No NOTIFY: the reload after reconnecting picks the change up.
    until_exposed(&api, "/rest/while_away", || async {}).await;
}

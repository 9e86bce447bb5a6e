//! Issue 14: the security review's findings, each with its allowed and forbidden twin.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::Client as PgClient;

use crate::helpers::{TestDb, sqlstate};
use crate::rest::{Api, contact, setup};

// =========================================================================================
// Item 1: `rowcast admin rls disable|enable` is atomic and reaches running servers.
// =========================================================================================

fn rls_command(disable: bool, table: &str) -> rowcast::admin::AdminCommand {
    use rowcast::admin::{AdminCommand, RlsCommand};
    let (table, reason) = (table.to_string(), Some("issue 14".to_string()));
    let command = if disable { RlsCommand::Disable { table, reason } } else { RlsCommand::Enable { table, reason } };
    AdminCommand::Rls { command }
}

/// Every ACL entry of rowcast_app on `table`, table- and column-level, sorted.
async fn app_acl(owner: &PgClient, table: &str) -> Vec<String> {
    owner
        .query(
            "SELECT 'table ' || a.privilege_type || ' ' || a.is_grantable FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = $1::text::regclass AND a.grantee = 'rowcast_app'::regrole
             UNION ALL
             SELECT 'column ' || att.attname || ' ' || a.privilege_type || ' ' || a.is_grantable
               FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid = $1::text::regclass AND a.grantee = 'rowcast_app'::regrole
             ORDER BY 1",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Waits until the server's catalog-reload listener is connected and listening, so a NOTIFY
/// sent from now on reaches it.
async fn reloader_listening(owner: &PgClient) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = owner
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rowcast-rest-reload'
                   AND datname = current_database() AND query ILIKE 'LISTEN%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the reload listener never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `path` until it answers `want`; every answer on the way must be one of `allowed`.
async fn until_status(api: &Api<'_>, path: &str, want: u16, allowed: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = api.get(path).await;
        if resp.status == want {
            return;
        }
        assert!(allowed.contains(&resp.status), "{path}: {} on the way to {want}: {}", resp.status, resp.text);
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn rls_disable_takes_the_table_off_a_running_server_and_enable_serves_it_again() {
    let (app, w, mut owner) = setup().await;
    contact(&owner, w.tenant_a, "+33100000001", Some("Ann")).await;
    contact(&owner, w.tenant_b, "+33100000002", Some("Bob")).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    assert_eq!(api.get("/rest/contacts?select=first_name").await.expect(200).json(), json!([{"first_name": "Ann"}]));
    reloader_listening(&owner).await;

    rowcast::admin::run(&mut owner, rls_command(true, "contacts")).await.unwrap();
    // From the commit on, the table is never served: privileges are gone (403) until the
    // reload lands (404). Never a 200 with another tenant's rows.
    until_status(&api, "/rest/contacts?select=first_name", 404, &[403]).await;
    let write = api.post("/rest/contacts", json!({"phone": "+33100000003"}), &[]).await;
    assert_eq!(write.status, 404, "no write either: {}", write.text);
    let doc = api.get("/rest/").await.expect(200).json();
    assert!(doc["paths"].get("/contacts").is_none(), "gone from the OpenAPI document too");

    rowcast::admin::run(&mut owner, rls_command(false, "contacts")).await.unwrap();
    until_status(&api, "/rest/contacts?select=first_name", 200, &[404]).await;
    assert_eq!(api.get("/rest/contacts?select=first_name").await.expect(200).json(), json!([{"first_name": "Ann"}]), "isolated again");
    api.post("/rest/contacts", json!({"phone": "+33100000004"}), &[]).await.expect(201);
}

#[tokio::test]
async fn rls_switch_revokes_and_restores_table_and_column_grants_exactly() {
    let db = TestDb::new().await;
    let mut owner = db.owner().await;
    owner
        .batch_execute(
            "CREATE TABLE public.notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL, body text, secret text);
             ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             GRANT SELECT, DELETE ON public.notes TO rowcast_app;
             GRANT INSERT (tenant_id, body), UPDATE (body) ON public.notes TO rowcast_app;
             GRANT REFERENCES ON public.notes TO rowcast_app WITH GRANT OPTION;",
        )
        .await
        .unwrap();
    let before = app_acl(&owner, "public.notes").await;
    assert_eq!(before.len(), 6, "{before:?}");
    let contacts_before = app_acl(&owner, "public.contacts").await;

    let out = rowcast::admin::run(&mut owner, rls_command(true, "notes")).await.unwrap();
    assert_eq!(out.json["appGrants"]["columns"].as_array().map(Vec::len), Some(3), "{}", out.json);
    assert!(app_acl(&owner, "public.notes").await.is_empty(), "nothing left to rowcast_app while RLS is off");
    // A second disable does not forget what the first saved.
    rowcast::admin::run(&mut owner, rls_command(true, "notes")).await.unwrap();
    assert!(app_acl(&owner, "public.contacts").await == contacts_before, "other tables untouched");

    rowcast::admin::run(&mut owner, rls_command(false, "notes")).await.unwrap();
    assert_eq!(app_acl(&owner, "public.notes").await, before, "restored exactly, column grants and grant options included");
    let saved: i64 = owner.query_one("SELECT count(*) FROM app.rls_saved_grants", &[]).await.unwrap().get(0);
    assert_eq!(saved, 0, "nothing left behind");
    let audit: i64 = owner.query_one("SELECT count(*) FROM app.rls_audit WHERE table_name = 'public.notes'", &[]).await.unwrap().get(0);
    assert_eq!(audit, 3, "every switch recorded");
}

#[tokio::test]
async fn a_failed_rls_switch_changes_nothing() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let before = app_acl(&owner, "public.contacts").await;
    // The switch and the grants commit together or not at all.
    owner.batch_execute("BEGIN; SELECT app.rls_switch('public.contacts', false, 'x'); ROLLBACK;").await.unwrap();
    assert_eq!(app_acl(&owner, "public.contacts").await, before);
    let rls: bool = owner
        .query_one("SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'public.contacts'::regclass", &[])
        .await
        .unwrap()
        .get(0);
    assert!(rls, "still enabled and forced");
    let err = owner.batch_execute("SELECT app.rls_switch('app.rls_audit', false, 'x')").await.expect_err("app tables refused");
    assert_eq!(sqlstate(&err), "42P01");
}

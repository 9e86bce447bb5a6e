//! Issue 14: the security review's findings, each with its allowed and forbidden twin.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::Client as PgClient;
use uuid::Uuid;

use crate::helpers::rest::{Api, Resp, contact, setup};
use crate::helpers::{TestDb, sqlstate};

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

// =========================================================================================
// Item 2: pending invitations; only acceptance creates a membership.
// =========================================================================================

async fn invite(api: &Api<'_>, email: &str, role: &str) -> Resp {
    api.post("/rest/rpc/invite_user", json!({"p_email": email, "p_name": "Invitee", "p_role": role}), &[]).await
}

async fn tenants_of(owner: &PgClient, user: Uuid) -> Vec<Uuid> {
    owner
        .query("SELECT tenant_id FROM memberships WHERE user_id = $1 ORDER BY tenant_id", &[&user])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn user_id(owner: &PgClient, email: &str) -> Uuid {
    owner.query_one("SELECT id FROM users WHERE lower(email) = lower($1)", &[&email]).await.unwrap().get(0)
}

#[tokio::test]
async fn an_invitation_adds_no_membership_until_the_invitee_accepts() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_a, "+33100000011", Some("Ann")).await;
    let admin_a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let invitation = invite(&admin_a, "user@b.test", "tenant_user").await.expect(200).json();
    assert!(invitation.as_str().and_then(|s| Uuid::parse_str(s).ok()).is_some(), "an invitation id: {invitation}");
    assert_eq!(tenants_of(&owner, w.user_b).await, vec![w.tenant_b], "not pulled into A");

    // The invitee is undisturbed: implicit-tenant requests still work.
    let invitee = Api::new(&app, w.user_b, None);
    assert_eq!(invitee.get("/api/me").await.expect(200).json()["tenantId"], json!(w.tenant_b));
    let mine = invitee.get("/rest/invitations?select=id,tenant_name,role,status").await.expect(200).json();
    assert_eq!(mine, json!([{"id": invitation, "tenant_name": "Tenant A", "role": "tenant_user", "status": "pending"}]));
    invitee.get("/rest/contacts").await.expect(200);

    let accepted = invitee.post("/rest/rpc/invitation_accept", json!({"p_id": invitation}), &[]).await.expect(200).json();
    assert_eq!(accepted, json!(w.tenant_a), "acceptance names the tenant joined");
    assert_eq!(tenants_of(&owner, w.user_b).await.len(), 2, "member of A now");
    let in_a = Api::new(&app, w.user_b, Some(w.tenant_a));
    assert_eq!(in_a.get("/rest/contacts?select=first_name").await.expect(200).json(), json!([{"first_name": "Ann"}]));
    let role: String = owner
        .query_one("SELECT role FROM memberships WHERE user_id = $1 AND tenant_id = $2", &[&w.user_b, &w.tenant_a])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, "tenant_user", "with the invited role");
    let again = invitee.post("/rest/rpc/invitation_accept", json!({"p_id": invitation}), &[]).await;
    assert!(again.status >= 400 && again.status < 500, "an answered invitation cannot be answered again: {}", again.status);
}

#[tokio::test]
async fn a_declined_expired_or_someone_elses_invitation_creates_no_membership() {
    let (app, w, owner) = setup().await;
    let admin_a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let invitation = invite(&admin_a, "user@b.test", "tenant_admin").await.expect(200).json();
    // Someone else (even a member of A, even its admin) cannot answer it.
    for thief in [Api::new(&app, w.user_a, Some(w.tenant_a)), Api::new(&app, w.admin_a, Some(w.tenant_a))] {
        thief.post("/rest/rpc/invitation_accept", json!({"p_id": invitation}), &[]).await.expect(403);
    }
    let other = Api::new(&app, w.user_a, Some(w.tenant_a));
    assert_eq!(other.get("/rest/invitations").await.expect(200).json(), json!([]), "a tenant user sees no invitation");
    let invitee = Api::new(&app, w.user_b, None);
    invitee.post("/rest/rpc/invitation_decline", json!({"p_id": invitation}), &[]).await.expect(200);
    assert_eq!(tenants_of(&owner, w.user_b).await, vec![w.tenant_b], "declined: no membership");
    let late = invitee.post("/rest/rpc/invitation_accept", json!({"p_id": invitation}), &[]).await;
    assert!(late.status >= 400 && late.status < 500, "{}", late.text);
    assert_eq!(tenants_of(&owner, w.user_b).await, vec![w.tenant_b]);

    let expired = invite(&admin_a, "user@b.test", "tenant_user").await.expect(200).json();
    owner
        .execute("UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1::text::uuid", &[&expired.as_str().unwrap()])
        .await
        .unwrap();
    let refused = invitee.post("/rest/rpc/invitation_accept", json!({"p_id": expired}), &[]).await;
    assert!(refused.status >= 400 && refused.status < 500 && refused.text.contains("expired"), "{}: {}", refused.status, refused.text);
    assert_eq!(tenants_of(&owner, w.user_b).await, vec![w.tenant_b], "expired: no membership");
}

#[tokio::test]
async fn the_inviter_learns_nothing_about_whether_the_account_exists() {
    let (app, w, _owner) = setup().await;
    let admin_a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let existing = invite(&admin_a, "root@platform.test", "tenant_user").await;
    let unknown = invite(&admin_a, "nobody-yet@x.test", "tenant_user").await;
    assert_eq!((existing.status, unknown.status), (200, 200));
    let shape = |r: &Resp| r.json().as_str().map(|s| Uuid::parse_str(s).is_ok());
    assert_eq!(shape(&existing), Some(true));
    assert_eq!(shape(&unknown), Some(true), "the same answer either way");
    // Neither account is visible to the inviter, nor is the platform admin's role.
    for email in ["root@platform.test", "nobody-yet@x.test"] {
        let seen = admin_a.get(&format!("/rest/users?email=eq.{email}")).await.expect(200).json();
        assert_eq!(seen, json!([]), "{email}");
    }
    let listed = admin_a.get("/rest/invitations?select=email,status&order=email").await.expect(200).json();
    assert_eq!(
        listed,
        json!([{"email": "nobody-yet@x.test", "status": "pending"}, {"email": "root@platform.test", "status": "pending"}]),
        "the admin sees their tenant's invitations, and what they typed only"
    );
    let admin_b = Api::new(&app, w.admin_b, Some(w.tenant_b));
    assert_eq!(admin_b.get("/rest/invitations").await.expect(200).json(), json!([]), "another tenant's admin sees none");
}

#[tokio::test]
async fn a_new_account_signs_in_outside_any_tenant_to_answer_its_invitation() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_a, "+33100000021", Some("Ann")).await;
    let admin_a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let invitation = invite(&admin_a, "fresh@x.test", "tenant_admin").await.expect(200).json();
    let fresh = user_id(&owner, "fresh@x.test").await;
    let api = Api::new(&app, fresh, None);
    let me = api.get("/api/me").await.expect(200).json();
    assert_eq!((me["role"].as_str(), me["tenantId"].is_null()), (Some("none"), true), "{me}");
    assert_eq!(api.get("/rest/contacts").await.expect(200).json(), json!([]), "no tenant, no rows");
    assert_eq!(api.get("/rest/invitations?select=id").await.expect(200).json(), json!([{"id": invitation}]));
    api.post("/rest/rpc/invite_user", json!({"p_email": "y@x.test", "p_name": "Y"}), &[]).await.expect(403);
    // No tenant, no event stream: refused before the upgrade (not a 500).
    let ws = crate::helpers::ws::ws_url(app.port, &api.token, None);
    assert_eq!(crate::realtime_faults::refused(&ws, &[]).await.0, 403);
    api.post("/rest/rpc/invitation_accept", json!({"p_id": invitation}), &[]).await.expect(200);
    let now_member = Api::new(&app, fresh, None);
    assert_eq!(now_member.get("/api/me").await.expect(200).json()["role"], "tenant_admin");
    assert_eq!(now_member.get("/rest/contacts?select=first_name").await.expect(200).json(), json!([{"first_name": "Ann"}]));
}

#[tokio::test]
async fn tenant_admins_manage_memberships_only_through_invitations() {
    let (app, w, owner) = setup().await;
    let newcomer: Uuid =
        owner.query_one("INSERT INTO users (email, name) VALUES ('direct@x.test', 'Direct') RETURNING id", &[]).await.unwrap().get(0);
    let admin_a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin_a.post("/rest/memberships", json!({"user_id": w.user_b, "role": "tenant_user"}), &[]).await.expect(403);
    admin_a.post("/rest/memberships", json!({"user_id": newcomer, "role": "tenant_user"}), &[]).await.expect(403);
    // Nor by moving an existing membership onto someone else.
    let moved = admin_a.patch(&format!("/rest/memberships?user_id=eq.{}", w.user_a), json!({"user_id": w.user_b}), &[]).await;
    assert!(moved.status >= 400 && moved.status < 500, "{}: {}", moved.status, moved.text);
    assert_eq!(tenants_of(&owner, w.user_b).await, vec![w.tenant_b]);
    // The twin: role changes and removals stay theirs, and platform admins may insert.
    let patched = admin_a.patch(&format!("/rest/memberships?user_id=eq.{}", w.user_a), json!({"role": "tenant_admin"}), &[]).await;
    assert!(patched.status < 300, "{}: {}", patched.status, patched.text);
    let platform = Api::new(&app, w.platform_admin, Some(w.tenant_a));
    platform.post("/rest/memberships", json!({"user_id": newcomer, "role": "tenant_user"}), &[]).await.expect(201);
    assert_eq!(tenants_of(&owner, newcomer).await, vec![w.tenant_a]);
    admin_a.delete(&format!("/rest/memberships?user_id=eq.{newcomer}"), &[]).await;
    assert!(tenants_of(&owner, newcomer).await.is_empty(), "a tenant admin removes a member");
}

// =========================================================================================
// Item 3: a platform admin inside a tenant is scoped to it for `users` too.
// =========================================================================================

async fn emails(api: &Api<'_>) -> Vec<String> {
    let rows = api.get("/rest/users?select=email&order=email").await.expect(200).json();
    rows.as_array().unwrap().iter().map(|r| r["email"].as_str().unwrap().to_string()).collect()
}

async fn is_active(owner: &PgClient, user: Uuid) -> bool {
    owner.query_one("SELECT is_active FROM users WHERE id = $1", &[&user]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_platform_admin_inside_a_tenant_sees_and_changes_only_its_members() {
    let (app, w, owner) = setup().await;
    let by_header = Api::new(&app, w.platform_admin, Some(w.tenant_a));
    let by_claim = Api { app: &app, token: app.token_for(w.platform_admin, Some(w.tenant_a)), tenant: None };
    for api in [&by_header, &by_claim] {
        assert_eq!(emails(api).await, vec!["admin@a.test", "root@platform.test", "user@a.test"], "A's members and themself");
        let other = api
            .patch(&format!("/rest/users?id=eq.{}", w.user_b), json!({"is_active": false}), &[("prefer", "return=representation")])
            .await;
        assert!(other.status == 404 || other.json() == json!([]), "{}: {}", other.status, other.text);
        assert!(is_active(&owner, w.user_b).await, "B's user untouched");
        let promote = api
            .patch(
                &format!("/rest/users?id=eq.{}", w.user_b),
                json!({"platform_role": "platform_admin"}),
                &[("prefer", "return=representation")],
            )
            .await;
        assert!(promote.status == 404 || promote.json() == json!([]), "{}", promote.text);
        api.post("/rest/users", json!({"email": "made@x.test", "name": "Made"}), &[]).await.expect(403);
        let member = api
            .patch(&format!("/rest/users?id=eq.{}", w.user_a), json!({"is_active": false}), &[("prefer", "return=representation")])
            .await;
        assert_eq!(member.expect(200).json()[0]["is_active"], json!(false), "A's member: theirs to change");
        owner.execute("UPDATE users SET is_active = true WHERE id = $1", &[&w.user_a]).await.unwrap();
    }
    let platform_admin_b: String =
        owner.query_one("SELECT coalesce(platform_role, '') FROM users WHERE id = $1", &[&w.user_b]).await.unwrap().get(0);
    assert_eq!(platform_admin_b, "", "never promoted");
}

#[tokio::test]
async fn a_platform_admin_outside_any_tenant_still_manages_every_user() {
    let (app, w, owner) = setup().await;
    let platform = Api::new(&app, w.platform_admin, None);
    assert_eq!(emails(&platform).await.len(), 5, "everyone");
    let patched = platform
        .patch(&format!("/rest/users?id=eq.{}", w.user_b), json!({"is_active": false}), &[("prefer", "return=representation")])
        .await;
    assert_eq!(patched.expect(200).json()[0]["is_active"], json!(false));
    assert!(!is_active(&owner, w.user_b).await);
    platform.post("/rest/users", json!({"email": "made@x.test", "name": "Made"}), &[]).await.expect(201);
}

// =========================================================================================
// Item 6 (hygiene), checked on the source itself.
// =========================================================================================

fn rust_sources(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((path.display().to_string(), std::fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn production_code_quotes_enters_and_waits_only_through_the_right_places() {
    let mut files = Vec::new();
    rust_sources(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 20, "found the sources");
    let through_dev: Vec<&String> = files.iter().filter(|(_, text)| text.contains("embedded::quote_ident")).map(|(p, _)| p).collect();
    assert!(through_dev.is_empty(), "quote_ident imported from the embedded-cluster module: {through_dev:?}");
    // A blocking sleep on an async worker (e.g. from a Drop) stalls every task on it.
    // Only TenantTx calls app.begin_request (rls.rs's impersonation goes through it too).
    let entering: Vec<&String> = files
        .iter()
        .filter(|(path, text)| text.contains("FROM app.begin_request") && !path.ends_with("tenant_tx.rs"))
        .map(|(p, _)| p)
        .collect();
    assert!(entering.is_empty(), "app.begin_request called outside TenantTx: {entering:?}");
    let sleepers: Vec<&String> = files.iter().filter(|(_, text)| text.contains("thread::sleep")).map(|(p, _)| p).collect();
    assert!(sleepers.is_empty(), "std::thread::sleep in production code: {sleepers:?}");
    // Error codes are PostgREST's (`PGRST…`, SQLSTATEs, `PTxyz`), never rowcast's old `RC…` (SPEC §4.2).
    let own_codes: Vec<&String> = files
        .iter()
        .filter(|(_, text)| text.match_indices("\"RC").any(|(i, _)| text.as_bytes().get(i + 3).is_some_and(u8::is_ascii_digit)))
        .map(|(p, _)| p)
        .collect();
    assert!(own_codes.is_empty(), "an RC… error code in production code: {own_codes:?}");
}

// =========================================================================================
// Item 4: the global sequence is not an oracle.
// =========================================================================================

/// Every key of a JSON document, at any depth.
fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            keys(v, out);
        }),
        serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn a_member_is_told_the_newest_seq_it_may_see_never_the_global_head() {
    use crate::helpers::ws::{add_contact, add_webhook, connect, relay_caught_up, setup};
    let (app, owner, w) = setup().await;
    let mine = add_contact(&owner, w.tenant_a).await;
    // Activity the members of A must not be able to measure: B's writes, and A's webhook
    // events (tenant admins only).
    add_webhook(&owner, w.tenant_a).await;
    for _ in 0..3 {
        add_contact(&owner, w.tenant_b).await;
    }
    relay_caught_up(&app, &owner).await;
    let global: i64 = owner.query_one("SELECT max(seq) FROM app.events", &[]).await.unwrap().get(0);
    let visible: i64 = owner.query_one("SELECT seq FROM app.events WHERE row_id = $1::uuid::text", &[&mine]).await.unwrap().get(0);
    assert!(visible < global);

    let member = connect(&app, w.user_a, Some(w.tenant_a)).await;
    assert_eq!(member.head(), visible, "welcome: the newest seq a tenant user of A may see");
    let stats = app.get_json("/api/ws/stats", &app.token_for(w.user_a, Some(w.tenant_a)), 200).await;
    assert_eq!(stats["headSeq"], json!(visible), "{stats}");
    let health: serde_json::Value = app.http.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    let mut all = Vec::new();
    keys(&health, &mut all);
    assert!(!all.iter().any(|k| k.to_lowercase().contains("seq")), "no seq in /health without a token: {health}");

    // The twins: an admin of A sees its webhook events too; a platform admin outside any
    // tenant is the one who learns the global head.
    let admin = connect(&app, w.admin_a, Some(w.tenant_a)).await;
    assert!(admin.head() > visible && admin.head() < global, "{} vs {visible}..{global}", admin.head());
    let root = app.get_json("/api/ws/stats", &app.token_for(w.platform_admin, None), 200).await;
    assert_eq!(root["headSeq"], json!(global));
}

// =========================================================================================
// Item 9: health under load.
// =========================================================================================

#[tokio::test]
async fn a_saturated_pool_is_degraded_not_down() {
    let app = crate::helpers::spawn_app_with(|v| {
        v.push(("ROWCAST_POOL_SIZE".into(), "1".into()));
        v.push(("ROWCAST_POOL_TIMEOUT_MS".into(), "300".into()));
    })
    .await;
    let get = |path: &'static str| {
        let app = &app;
        async move {
            let resp = app.http.get(app.url(path)).send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");

    let held = app.state.db.conn().await.unwrap(); // the only pooled connection, busy
    let (status, body) = get("/health").await;
    assert_eq!(status, 200, "a loaded instance is not a dead one: {body}");
    assert_eq!((body["status"].as_str(), body["reason"].as_str()), (Some("degraded"), Some("pool saturated")), "{body}");
    assert_eq!(body["database"]["status"], "saturated");
    let (status, body) = get("/ready").await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("pool saturated")), "new work goes elsewhere: {body}");

    drop(held);
    let (status, body) = get("/ready").await;
    assert_eq!((status, body["ready"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) = get("/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");
}

// =========================================================================================
// Item 8: bad input that used to get a 5xx.
// =========================================================================================

#[tokio::test]
async fn oversized_selects_and_twice_named_upsert_keys_are_clear_400s() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let select = |n: usize| (0..n).map(|i| format!("a{i}:id")).collect::<Vec<_>>().join(",");
    let huge = api.get(&format!("/rest/contacts?select={}", select(1700))).await.expect(400);
    assert_eq!(huge.error_code(), "PGRST100", "{}", huge.text);
    let capped = api.get(&format!("/rest/contacts?select={}", select(201))).await.expect(400);
    assert!(capped.text.contains("200"), "the cap is named: {}", capped.text);
    api.get(&format!("/rest/contacts?select={}", select(200))).await.expect(200);

    let id = Uuid::new_v4();
    let row = |phone: &str| json!({"id": id, "phone": phone});
    let merge = [("prefer", "resolution=merge-duplicates")];
    let twice = api.post("/rest/contacts?on_conflict=id", json!([row("+33100000031"), row("+33100000032")]), &merge).await.expect(400);
    assert_eq!(twice.error_code(), "21000", "{}", twice.text);
    assert_eq!(crate::helpers::rest::count(&owner, "contacts", "phone LIKE '+3310000003%'").await, 0, "nothing partial written");
    let once = json!([row("+33100000031"), {"id": Uuid::new_v4(), "phone": "+33100000033"}]);
    api.post("/rest/contacts?on_conflict=id", once, &merge).await.expect(201);
}

#[tokio::test]
async fn a_405_names_the_allowed_methods_and_a_json_body_must_say_json() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    for (path, allow) in [("/rest/contacts", "GET, HEAD, POST, PATCH, DELETE"), ("/rest/rpc/invite_user", "POST"), ("/rest/", "GET, HEAD")]
    {
        let resp = api.send("PUT", path, &[], None).await.expect(405);
        assert_eq!(resp.header("allow"), Some(allow), "{path}");
    }
    for (path, allow) in [("/health", "GET"), ("/api/me", "GET"), ("/api/rls/impersonate", "POST")] {
        let resp = app.http.put(app.url(path)).send().await.unwrap();
        assert_eq!((resp.status().as_u16(), resp.headers().get("allow").and_then(|v| v.to_str().ok())), (405, Some(allow)), "{path}");
    }
    let post = |content_type: &'static str| {
        let (app, token) = (&app, api.token.clone());
        async move {
            let resp = app
                .http
                .post(app.url("/rest/contacts"))
                .bearer_auth(token)
                .header("x-tenant-id", w.tenant_a.to_string())
                .header("content-type", content_type)
                .body(json!({"phone": "+33100000041"}).to_string())
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, body) = post("text/plain").await;
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("PGRST107"), "{body}");
    let (status, body) = post("application/json; charset=utf-8").await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_column_named_tenant_is_filterable() {
    let (app, w, owner) = setup().await;
    owner
        .batch_execute(
            "CREATE TABLE public.rooms (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(), tenant text);
             ALTER TABLE public.rooms ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON public.rooms USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
             GRANT SELECT ON public.rooms TO rowcast_app;",
        )
        .await
        .unwrap();
    owner
        .execute("INSERT INTO rooms (tenant_id, tenant) VALUES ($1, 'north'), ($1, 'south'), ($2, 'north')", &[&w.tenant_a, &w.tenant_b])
        .await
        .unwrap();
    reloader_listening(&owner).await;
    owner.batch_execute("NOTIFY rowcast_reload").await.unwrap();
    let api = Api::new(&app, w.user_a, None);
    let path = format!("/rest/rooms?select=tenant&tenant=eq.north&tenantId={}", w.tenant_a);
    until_status(&api, &path, 200, &[404]).await;
    assert_eq!(api.get(&path).await.expect(200).json(), json!([{"tenant": "north"}]), "`tenant` filters; `tenantId` picks the tenant");
}

#[tokio::test]
async fn the_openapi_document_declares_errors_and_typed_rpc_arguments() {
    let (app, w, _owner) = setup().await;
    let doc = Api::new(&app, w.admin_a, Some(w.tenant_a)).get("/rest/").await.expect(200).json();
    let accept = &doc["paths"]["/rpc/invitation_accept"]["post"];
    assert_eq!(accept["requestBody"]["content"]["application/json"]["schema"]["properties"]["p_id"]["format"], "uuid", "{accept}");
    assert_eq!(accept["responses"]["default"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/PostgrestError");
    let invite = &doc["paths"]["/rpc/invite_user"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"];
    assert_eq!(invite["p_email"]["type"], "string");
    assert!(doc["paths"]["/contacts"]["get"]["responses"]["default"].is_object());
}

#[tokio::test]
async fn an_admin_withdraws_a_pending_invitation_and_a_tenant_user_cannot() {
    let (app, w, owner) = setup().await;
    let admin_a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let invitation = invite(&admin_a, "user@b.test", "tenant_user").await.expect(200).json();
    let id = invitation.as_str().unwrap();
    let user_a = Api::new(&app, w.user_a, Some(w.tenant_a));
    user_a.delete(&format!("/rest/invitations?id=eq.{id}"), &[("prefer", "return=representation")]).await;
    let left: i64 = owner.query_one("SELECT count(*) FROM invitations", &[]).await.unwrap().get(0);
    assert_eq!(left, 1, "a tenant user cannot withdraw it");
    let gone = admin_a.delete(&format!("/rest/invitations?id=eq.{id}"), &[("prefer", "return=representation")]).await.expect(200).json();
    assert_eq!(gone.as_array().map(Vec::len), Some(1));
    let invitee = Api::new(&app, w.user_b, None);
    assert_eq!(invitee.get("/rest/invitations").await.expect(200).json(), json!([]), "withdrawn: the invitee no longer sees it");
    let late = invitee.post("/rest/rpc/invitation_accept", json!({"p_id": id}), &[]).await;
    assert_eq!(late.status, 403, "{}", late.text);
    assert_eq!(tenants_of(&owner, w.user_b).await, vec![w.tenant_b]);
}

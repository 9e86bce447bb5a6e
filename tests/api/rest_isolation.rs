//! The isolation matrix again, through HTTP: tenant A's token with tenant B's ids reads
//! nothing and changes nothing; a write naming B's tenant is refused with nothing written.
//! Every forbidden case has its allowed twin.

use serde_json::json;
use uuid::Uuid;

use crate::helpers::rest::{Api, REPRESENTATION, SINGULAR, contact, count, setup};

#[tokio::test]
async fn tenant_a_reading_tenant_b_ids_gets_nothing() {
    let (app, w, owner) = setup().await;
    let b = contact(&owner, w.tenant_b, "+15550000009", Some("Bea")).await;
    let a = Api::new(&app, w.user_a, Some(w.tenant_a));
    assert_eq!(a.get(&format!("/rest/contacts?id=eq.{b}")).await.expect(200).json(), json!([]));
    assert_eq!(a.get(&format!("/rest/contacts?tenant_id=eq.{}", w.tenant_b)).await.expect(200).json(), json!([]));
    assert_eq!(a.get(&format!("/rest/contacts?or=(id.eq.{b},tenant_id.eq.{})", w.tenant_b)).await.json(), json!([]));
    a.get_with(&format!("/rest/contacts?id=eq.{b}"), &[SINGULAR]).await.expect(406);
    let counted = a.get_with("/rest/contacts", &[("prefer", "count=exact")]).await.expect(200);
    assert_eq!(counted.header("content-range"), Some("*/0"), "counts never include B's rows");
}

#[tokio::test]
async fn tenant_b_reading_its_own_ids_gets_them() {
    let (app, w, owner) = setup().await;
    let b = contact(&owner, w.tenant_b, "+15550000009", Some("Bea")).await;
    let api = Api::new(&app, w.user_b, Some(w.tenant_b));
    let rows = api.get(&format!("/rest/contacts?id=eq.{b}")).await.expect(200).json();
    assert_eq!(rows[0]["first_name"], "Bea");
}

#[tokio::test]
async fn tenant_a_cannot_update_or_delete_tenant_b_rows() {
    let (app, w, owner) = setup().await;
    let b = contact(&owner, w.tenant_b, "+15550000009", Some("Bea")).await;
    let a = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let r = a.patch(&format!("/rest/contacts?id=eq.{b}"), json!({"first_name": "Pwned"}), &[REPRESENTATION]).await.expect(200);
    assert_eq!(r.json(), json!([]));
    a.patch(&format!("/rest/contacts?id=eq.{b}"), json!({"first_name": "Pwned"}), &[SINGULAR]).await.expect(406);
    let r = a.delete(&format!("/rest/contacts?id=eq.{b}"), &[("prefer", "count=exact")]).await.expect(204);
    assert_eq!(r.header("content-range"), Some("*/0"));
    assert_eq!(
        count(&owner, "contacts", &format!("id = '{b}' AND first_name = 'Bea' AND deleted_at IS NULL")).await,
        1,
        "B's row is untouched"
    );
}

#[tokio::test]
async fn tenant_b_can_update_and_delete_its_own_rows() {
    let (app, w, owner) = setup().await;
    let b = contact(&owner, w.tenant_b, "+15550000009", Some("Bea")).await;
    let api = Api::new(&app, w.user_b, Some(w.tenant_b));
    let r = api.patch(&format!("/rest/contacts?id=eq.{b}"), json!({"first_name": "Bee"}), &[REPRESENTATION]).await.expect(200);
    assert_eq!(r.json()[0]["first_name"], "Bee");
    api.delete(&format!("/rest/contacts?id=eq.{b}"), &[]).await.expect(204);
    assert_eq!(count(&owner, "contacts", &format!("id = '{b}' AND deleted_at IS NOT NULL")).await, 1);
}

#[tokio::test]
async fn a_write_naming_another_tenant_is_403_and_writes_nothing() {
    let (app, w, owner) = setup().await;
    let a = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = a.post("/rest/contacts", json!({"tenant_id": w.tenant_b, "phone": "+15550000001"}), &[]).await.expect(403);
    assert_eq!(r.error_code(), "42501");
    let mixed = json!([{"tenant_id": w.tenant_a, "phone": "+15550000002"}, {"tenant_id": w.tenant_b, "phone": "+15550000003"}]);
    a.post("/rest/contacts", mixed, &[]).await.expect(403);
    let mine = contact(&owner, w.tenant_a, "+15550000004", None).await;
    a.patch(&format!("/rest/contacts?id=eq.{mine}"), json!({"tenant_id": w.tenant_b}), &[]).await.expect(403);
    let upsert = ("prefer", "resolution=merge-duplicates");
    a.post("/rest/contacts", json!({"id": mine, "tenant_id": w.tenant_b, "phone": "+15550000004"}), &[upsert]).await.expect(403);
    assert_eq!(count(&owner, "contacts", &format!("tenant_id = '{}'", w.tenant_b)).await, 0, "nothing reached B");
    assert_eq!(count(&owner, "contacts", "true").await, 1, "nothing else was written");
}

#[tokio::test]
async fn a_write_naming_the_callers_own_tenant_is_accepted() {
    let (app, w, owner) = setup().await;
    let a = Api::new(&app, w.user_a, Some(w.tenant_a));
    a.post("/rest/contacts", json!({"tenant_id": w.tenant_a, "phone": "+15550000001"}), &[]).await.expect(201);
    assert_eq!(count(&owner, "contacts", &format!("tenant_id = '{}'", w.tenant_a)).await, 1);
}

#[tokio::test]
async fn a_tenant_user_reads_no_webhooks_but_a_tenant_admin_does() {
    let (app, w, _owner) = setup().await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin
        .post("/rest/webhooks", json!({"name": "h", "url": "https://example.test/h", "events": ["contact_created"]}), &[])
        .await
        .expect(201);
    assert_eq!(admin.get("/rest/webhooks").await.expect(200).json().as_array().unwrap().len(), 1);
    let user = Api::new(&app, w.user_a, Some(w.tenant_a));
    assert_eq!(user.get("/rest/webhooks").await.expect(200).json(), json!([]));
    user.post("/rest/webhooks", json!({"name": "u", "url": "https://example.test/u", "events": []}), &[]).await.expect(403);
}

#[tokio::test]
async fn asking_for_a_tenant_one_is_not_a_member_of_is_403_before_any_sql() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_b, "+15550000009", None).await;
    let wrong = Api::new(&app, w.user_a, Some(w.tenant_b));
    wrong.get("/rest/contacts").await.expect(403);
    wrong.post("/rest/contacts", json!({"phone": "+15550000001"}), &[]).await.expect(403);
    let query_param = Api::new(&app, w.user_a, None);
    query_param.get(&format!("/rest/contacts?tenantId={}", w.tenant_b)).await.expect(403);
    let right = Api::new(&app, w.user_a, None);
    right.get(&format!("/rest/contacts?tenantId={}", w.tenant_a)).await.expect(200);
    assert_eq!(count(&owner, "contacts", "true").await, 1);
}

#[tokio::test]
async fn an_rpc_cannot_reach_another_tenants_rows() {
    let (app, w, owner) = setup().await;
    let a = Api::new(&app, w.user_a, Some(w.tenant_a));
    let group = a.post("/rest/groups?select=id", json!({"name": "G"}), &[REPRESENTATION, SINGULAR]).await.expect(201).json()["id"].clone();
    let theirs = contact(&owner, w.tenant_b, "+15550000009", None).await;
    let r = a.post("/rest/rpc/group_add_contacts", json!({"p_group_id": group, "p_contact_ids": [theirs]}), &[]).await;
    assert!([403, 409, 422].contains(&r.status), "refused: {} {}", r.status, r.text);
    assert_eq!(count(&owner, "group_contacts", "true").await, 0, "nothing written");
    let mine = contact(&owner, w.tenant_a, "+15550000001", None).await;
    let added = a.post("/rest/rpc/group_add_contacts", json!({"p_group_id": group, "p_contact_ids": [mine]}), &[]).await.expect(200);
    assert_eq!(added.json(), json!(1), "the twin: its own contact is added");
    let b = Api::new(&app, w.user_b, Some(w.tenant_b));
    let r = b.post("/rest/rpc/group_add_contacts", json!({"p_group_id": group, "p_contact_ids": [theirs]}), &[]).await.expect(400);
    assert!(r.json()["message"].as_str().unwrap().contains("not found"), "B cannot see A's group");
    let _ = Uuid::nil();
}

/// Tenant B's data in every messaging table, written through the API by B's own users.
async fn seed_tenant_b(app: &crate::helpers::TestApp, w: &crate::helpers::World) {
    let b = Api::new(app, w.user_b, Some(w.tenant_b));
    let one = [REPRESENTATION, SINGULAR];
    let id = |r: crate::helpers::rest::Resp| r.expect(201).json()["id"].clone();
    let c1 = id(b.post("/rest/contacts", json!({"phone": "+15550000091", "first_name": "B1"}), &one).await);
    let c2 = id(b.post("/rest/contacts", json!({"phone": "+15550000092", "first_name": "B2"}), &one).await);
    let group = id(b.post("/rest/groups", json!({"name": "B group"}), &one).await);
    b.post("/rest/rpc/group_add_contacts", json!({"p_group_id": group, "p_contact_ids": [c1, c2]}), &[]).await.expect(200);
    let template = id(b.post("/rest/message_templates", json!({"name": "B t", "body": "Hi {{first_name}}"}), &one).await);
    let campaign = id(b.post("/rest/campaigns", json!({"name": "B c", "group_id": group, "template_id": template}), &one).await);
    b.post("/rest/rpc/campaign_start", json!({"p_campaign_id": campaign}), &[]).await.expect(200);
    let admin = Api::new(app, w.admin_b, Some(w.tenant_b));
    admin.post("/rest/webhooks", json!({"name": "B h", "url": "https://b.test/h", "events": ["contact_created"]}), &[]).await.expect(201);
}

#[tokio::test]
async fn across_every_tenant_table_tenant_a_never_reads_or_changes_tenant_b_rows_by_id() {
    let (app, w, owner) = setup().await;
    seed_tenant_b(&app, &w).await;
    let exposed = Api::new(&app, w.admin_a, Some(w.tenant_a)).get("/rest/").await.expect(200).json();
    let tables: Vec<String> = owner
        .query("SELECT table_name::text FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|t| exposed["paths"].get(format!("/{t}")).is_some())
        .collect();
    let mut checked = 0;
    for table in &tables {
        let sql = format!("SELECT id::text, md5(t::text) FROM public.{table} t WHERE tenant_id = $1 ORDER BY id");
        let before: Vec<(String, String)> = owner.query(&sql, &[&w.tenant_b]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        if before.is_empty() {
            continue;
        }
        checked += 1;
        let ids = before.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(",");
        let filter = format!("id=in.({ids})");
        for (user, who) in [(w.user_a, "tenant_user"), (w.admin_a, "tenant_admin")] {
            let a = Api::new(&app, user, Some(w.tenant_a));
            let read = a.get(&format!("/rest/{table}?{filter}")).await.expect(200);
            assert_eq!(read.json(), json!([]), "{who} of A read B's {table}");
            let all = a.get(&format!("/rest/{table}?or=(deleted_at.is.null,deleted_at.not.is.null)")).await;
            let all = if all.status == 400 { a.get(&format!("/rest/{table}")).await } else { all };
            assert!(!all.text.contains(&w.tenant_b.to_string()), "{who} of A saw a B row in {table}");
            let patch = a.patch(&format!("/rest/{table}?{filter}"), json!({"updated_at": "2000-01-01T00:00:00Z"}), &[REPRESENTATION]).await;
            assert!(
                patch.status == 200 && patch.json() == json!([]) || (400..500).contains(&patch.status),
                "{who} PATCH {table}: {} {}",
                patch.status,
                patch.text
            );
            let delete = a.delete(&format!("/rest/{table}?{filter}"), &[REPRESENTATION]).await;
            assert!(
                delete.status == 200 && delete.json() == json!([]) || (400..500).contains(&delete.status),
                "{who} DELETE {table}: {} {}",
                delete.status,
                delete.text
            );
        }
        let after: Vec<(String, String)> = owner.query(&sql, &[&w.tenant_b]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(before, after, "B's {table} rows changed");
        let b = Api::new(&app, w.admin_b, Some(w.tenant_b));
        let twin = b.get(&format!("/rest/{table}?select=id&{filter}&or=(id.not.is.null)")).await;
        let visible = if twin.status == 200 { twin.json().as_array().map_or(0, Vec::len) } else { 0 };
        assert!(visible > 0 || table == "webhook_logs", "the twin: B's admin reads its own {table}: {}", twin.text);
    }
    assert!(checked >= 8, "B had rows in only {checked} of {tables:?}");
}

//! REST writes over real HTTP: POST (object, array, upsert, `missing=default`), PATCH,
//! DELETE (soft and hard), `Prefer: return=…`, singular writes, typed conversion, and
//! constraint errors. A failed write leaves nothing written (checked as the owner).

use serde_json::{Value, json};

use crate::helpers::rest::{Api, REPRESENTATION, SINGULAR, contact, count, field, setup};

#[tokio::test]
async fn post_of_one_object_answers_201_without_a_body_by_default() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.post("/rest/contacts", json!({"phone": "+15551230001", "first_name": "Ann"}), &[]).await.expect(201);
    assert_eq!(r.text, "");
    assert_eq!(count(&owner, "contacts", &format!("phone = '+15551230001' AND tenant_id = '{}'", w.tenant_a)).await, 1);
}

#[tokio::test]
async fn post_with_return_representation_answers_the_rows_with_their_defaults() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api
        .post("/rest/contacts?select=phone,opted_out,attributes,tenant_id", json!({"phone": "+15551230001"}), &[REPRESENTATION])
        .await
        .expect(201);
    assert_eq!(r.json(), json!([{"phone": "+15551230001", "opted_out": false, "attributes": {}, "tenant_id": w.tenant_a}]));
    assert_eq!(r.header("preference-applied"), Some("return=representation"));
    let r = api.post("/rest/contacts", json!({"phone": "+15551230002"}), &[REPRESENTATION, SINGULAR]).await.expect(201);
    assert_eq!(r.json()["phone"], "+15551230002", "a singular insert answers one object");
}

#[tokio::test]
async fn post_of_an_array_inserts_every_row_and_counts_them() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let rows: Vec<Value> = (1..=3).map(|i| json!({"phone": format!("+1555123000{i}"), "first_name": format!("n{i}")})).collect();
    let r = api.post("/rest/contacts?select=phone", json!(rows), &[("prefer", "return=representation,count=exact")]).await.expect(201);
    assert_eq!(field(&r.json(), "phone").len(), 3);
    assert_eq!(r.header("content-range"), Some("0-2/3"));
    assert_eq!(count(&owner, "contacts", "phone LIKE '+155512300%'").await, 3);
    let r = api.post("/rest/contacts", json!([]), &[REPRESENTATION]).await.expect(201);
    assert_eq!(r.json(), json!([]), "an empty array inserts nothing");
}

#[tokio::test]
async fn arrays_with_different_keys_need_columns_and_missing_default_fills_the_gaps() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let rows = json!([{"phone": "+15551230001", "opted_out": true}, {"phone": "+15551230002"}]);
    let r = api.post("/rest/contacts", rows.clone(), &[]).await.expect(400);
    assert_eq!(r.error_code(), "RC102");
    let r = api.post("/rest/contacts?columns=phone,opted_out", rows.clone(), &[]).await.expect(422);
    assert_eq!(r.error_code(), "23502", "a missing key is NULL without missing=default");
    assert_eq!(count(&owner, "contacts", "true").await, 0, "nothing written");
    let prefer = ("prefer", "return=representation,missing=default");
    let r = api.post("/rest/contacts?columns=phone,opted_out&select=phone,opted_out", rows, &[prefer]).await.expect(201);
    assert_eq!(r.json(), json!([{"phone": "+15551230001", "opted_out": true}, {"phone": "+15551230002", "opted_out": false}]));
}

#[tokio::test]
async fn typed_values_convert_between_json_and_columns() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let body = json!({"name": "T", "body": "Hello {{x}}", "variables": ["x", "y"], "language": "fr"});
    let t = api.post("/rest/message_templates?select=variables,language", body, &[REPRESENTATION]).await.expect(201).json();
    assert_eq!(t, json!([{"variables": ["x", "y"], "language": "fr"}]), "text[] round-trips as a JSON array");
    let body = json!({"phone": "+15551230001", "attributes": {"vip": true, "n": [1, 2.5]}, "opted_out": true});
    let c = api.post("/rest/contacts", body, &[REPRESENTATION]).await.expect(201).json();
    assert_eq!(c[0]["attributes"], json!({"vip": true, "n": [1, 2.5]}), "jsonb keeps its structure");
    assert_eq!(c[0]["opted_out"], true);
    let created = c[0]["created_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok(), "timestamptz is RFC 3339: {created}");
    let id = c[0]["id"].as_str().unwrap();
    let rows =
        api.get(&format!("/rest/contacts?select=id&id=eq.{id}&created_at=lte.{}", created.replace('+', "%2B"))).await.expect(200).json();
    assert_eq!(rows.as_array().unwrap().len(), 1, "timestamps filter with their own text form");
    let campaign =
        api.post("/rest/campaigns?select=name,total_recipients", json!({"name": "C"}), &[REPRESENTATION]).await.expect(201).json();
    assert_eq!(campaign[0]["total_recipients"], 0, "integers are JSON numbers");
    let rows = api.get("/rest/campaigns?select=name&total_recipients=lt.1").await.expect(200).json();
    assert_eq!(field(&rows, "name"), [json!("C")]);
}

#[tokio::test]
async fn wrong_types_are_400_and_write_nothing() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.post("/rest/contacts", json!({"phone": "+15551230001", "opted_out": "maybe"}), &[]).await.expect(400);
    assert_eq!(r.error_code(), "22P02");
    api.post("/rest/contacts", json!({"phone": "+15551230001", "id": 12}), &[]).await.expect(400);
    api.post("/rest/campaigns", json!({"name": "C", "sent_count": "lots"}), &[]).await.expect(400);
    api.post("/rest/campaigns", json!({"name": "C", "scheduled_at": "next tuesday"}), &[]).await.expect(400);
    api.get("/rest/contacts?id=eq.not-a-uuid").await.expect(400);
    api.get("/rest/campaigns?sent_count=gt.many").await.expect(400);
    assert_eq!(count(&owner, "contacts", "true").await + count(&owner, "campaigns", "true").await, 0);
}

#[tokio::test]
async fn unknown_body_keys_are_400_naming_the_column_and_write_nothing() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.post("/rest/contacts", json!({"phone": "+15551230001", "nickname": "x"}), &[]).await.expect(400);
    assert_eq!(r.error_code(), "RC204");
    assert!(r.json()["message"].as_str().unwrap().contains("'nickname'"));
    let id = contact(&owner, w.tenant_a, "+15551230009", Some("Old")).await;
    api.patch(&format!("/rest/contacts?id=eq.{id}"), json!({"first_name": "New", "nickname": "x"}), &[]).await.expect(400);
    assert_eq!(count(&owner, "contacts", "first_name = 'New' OR phone = '+15551230001'").await, 0);
}

#[tokio::test]
async fn constraint_violations_are_409_or_422_with_their_message() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    contact(&owner, w.tenant_a, "+15551230001", None).await;
    let r = api.post("/rest/contacts", json!({"phone": "+15551230001"}), &[]).await.expect(409);
    assert_eq!(r.error_code(), "23505");
    let r = api.post("/rest/contacts", json!({"phone": "not a phone"}), &[]).await.expect(422);
    assert_eq!(r.error_code(), "23514");
    let fr = api
        .send("POST", "/rest/contacts", &[("accept-language", "fr")], Some(json!({"phone": "+15551230001"}).to_string()))
        .await
        .expect(409);
    assert_ne!(fr.json()["message"], r.json()["message"], "French message differs");
    assert_eq!(count(&owner, "contacts", "true").await, 1);
}

#[tokio::test]
async fn upsert_with_merge_duplicates_updates_the_conflicting_row() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let id = contact(&owner, w.tenant_a, "+15551230001", Some("Old")).await;
    let prefer = ("prefer", "return=representation,resolution=merge-duplicates");
    let rows = json!([{"id": id, "phone": "+15551230001", "first_name": "New"}, {"id": uuid::Uuid::new_v4(), "phone": "+15551230002", "first_name": "Two"}]);
    let r = api.post("/rest/contacts?select=first_name", rows, &[prefer]).await.expect(201);
    assert_eq!(field(&r.json(), "first_name"), [json!("New"), json!("Two")]);
    assert_eq!(r.header("preference-applied"), Some("return=representation, resolution=merge-duplicates"));
    assert_eq!(count(&owner, "contacts", "true").await, 2);
    assert_eq!(count(&owner, "contacts", "first_name = 'New'").await, 1);
    let ignore = ("prefer", "return=representation,resolution=ignore-duplicates");
    let r = api
        .post("/rest/contacts?on_conflict=id", json!({"id": id, "phone": "+15551230001", "first_name": "Ignored"}), &[ignore])
        .await
        .expect(201);
    assert_eq!(r.json(), json!([]), "ignored duplicates return nothing");
    assert_eq!(count(&owner, "contacts", "first_name = 'Ignored'").await, 0);
    let r = api.post("/rest/contacts?on_conflict=first_name", json!({"phone": "+15551230003"}), &[prefer]).await.expect(400);
    assert_eq!(r.error_code(), "42P10", "no unique key on the conflict target");
    api.post("/rest/contacts?on_conflict=nope", json!({"phone": "+15551230003"}), &[prefer]).await.expect(400);
}

#[tokio::test]
async fn patch_updates_the_filtered_rows_and_can_return_them() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let a = contact(&owner, w.tenant_a, "+15551230001", Some("A")).await;
    contact(&owner, w.tenant_a, "+15551230002", Some("B")).await;
    let r = api.patch(&format!("/rest/contacts?id=eq.{a}"), json!({"first_name": "A2", "attributes": {"k": 1}}), &[]).await.expect(204);
    assert_eq!(r.text, "");
    assert_eq!(r.header("content-range"), Some("0-0/*"));
    let r =
        api.patch("/rest/contacts?first_name=in.(A2,B)&select=first_name", json!({"last_name": "L"}), &[REPRESENTATION]).await.expect(200);
    assert_eq!(field(&r.json(), "first_name").len(), 2);
    assert_eq!(count(&owner, "contacts", "last_name = 'L'").await, 2);
    assert_eq!(count(&owner, "contacts", "attributes = '{\"k\": 1}'").await, 1);
    let r = api.patch("/rest/contacts?first_name=eq.nobody", json!({"last_name": "X"}), &[REPRESENTATION]).await.expect(200);
    assert_eq!(r.json(), json!([]));
}

#[tokio::test]
async fn patch_and_delete_without_a_filter_are_refused_and_change_nothing() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    contact(&owner, w.tenant_a, "+15551230001", Some("A")).await;
    let r = api.patch("/rest/contacts", json!({"first_name": "Z"}), &[]).await.expect(400);
    assert_eq!(r.error_code(), "RC106");
    api.patch(&format!("/rest/contacts?tenantId={}", w.tenant_a), json!({"first_name": "Z"}), &[]).await.expect(400);
    api.patch("/rest/contacts?select=id", json!({"first_name": "Z"}), &[]).await.expect(400);
    api.delete("/rest/contacts", &[]).await.expect(400);
    api.delete("/rest/contacts?order=id", &[]).await.expect(400);
    assert_eq!(count(&owner, "contacts", "first_name = 'A' AND deleted_at IS NULL").await, 1);
}

#[tokio::test]
async fn delete_on_a_soft_delete_table_sets_deleted_at_and_hides_the_row() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let id = contact(&owner, w.tenant_a, "+15551230001", Some("A")).await;
    let r = api.delete(&format!("/rest/contacts?id=eq.{id}&select=id,deleted_at"), &[REPRESENTATION]).await.expect(200);
    let rows = r.json();
    assert_eq!(rows[0]["id"], json!(id));
    assert!(rows[0]["deleted_at"].is_string(), "the representation shows the soft delete: {rows}");
    assert_eq!(count(&owner, "contacts", &format!("id = '{id}' AND deleted_at IS NOT NULL")).await, 1, "the row is kept");
    assert_eq!(api.get(&format!("/rest/contacts?id=eq.{id}")).await.expect(200).json(), json!([]));
    let again = api.delete(&format!("/rest/contacts?id=eq.{id}"), &[("prefer", "count=exact")]).await.expect(204);
    assert_eq!(again.header("content-range"), Some("*/0"), "deleting twice touches nothing");
    let restored = api
        .patch(&format!("/rest/contacts?id=eq.{id}&deleted_at=not.is.null"), json!({"deleted_at": null}), &[REPRESENTATION])
        .await
        .expect(200);
    assert_eq!(restored.json().as_array().unwrap().len(), 1, "a restore names deleted_at explicitly");
    assert_eq!(api.get(&format!("/rest/contacts?id=eq.{id}")).await.json().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn delete_on_a_table_without_deleted_at_removes_the_rows() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let c = contact(&owner, w.tenant_a, "+15551230001", None).await;
    let g = api.post("/rest/groups?select=id", json!({"name": "G"}), &[REPRESENTATION, SINGULAR]).await.expect(201).json()["id"].clone();
    api.post("/rest/group_contacts", json!({"group_id": g, "contact_id": c}), &[]).await.expect(201);
    let r = api.delete(&format!("/rest/group_contacts?group_id=eq.{}", g.as_str().unwrap()), &[]).await.expect(204);
    assert_eq!(r.header("content-range"), Some("0-0/*"));
    assert_eq!(count(&owner, "group_contacts", "true").await, 0);
}

#[tokio::test]
async fn singular_writes_touching_several_rows_are_406_and_rolled_back() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    contact(&owner, w.tenant_a, "+15551230001", Some("A")).await;
    contact(&owner, w.tenant_a, "+15551230002", Some("A")).await;
    let r = api.patch("/rest/contacts?first_name=eq.A", json!({"last_name": "Z"}), &[SINGULAR]).await.expect(406);
    assert_eq!(r.error_code(), "RC116");
    api.patch("/rest/contacts?first_name=eq.A", json!({"last_name": "Z"}), &[SINGULAR, REPRESENTATION]).await.expect(406);
    api.delete("/rest/contacts?first_name=eq.A", &[SINGULAR]).await.expect(406);
    api.post("/rest/contacts", json!([{"phone": "+15551230003"}, {"phone": "+15551230004"}]), &[SINGULAR]).await.expect(406);
    assert_eq!(count(&owner, "contacts", "last_name = 'Z' OR deleted_at IS NOT NULL").await, 0, "rolled back");
    assert_eq!(count(&owner, "contacts", "true").await, 2, "rolled back");
    let one = api.patch("/rest/contacts?phone=eq.%2B15551230001", json!({"last_name": "Y"}), &[SINGULAR, REPRESENTATION]).await.expect(200);
    assert_eq!(one.json()["last_name"], "Y");
}

#[tokio::test]
async fn columns_without_write_privilege_are_403_and_webhook_secrets_stay_unreadable() {
    let (app, w, owner) = setup().await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let hook = json!({"name": "h", "url": "https://example.test/h", "events": ["contact_created"]});
    let id = admin.post("/rest/webhooks?select=id", hook, &[REPRESENTATION, SINGULAR]).await.expect(201).json()["id"].clone();
    let id = id.as_str().unwrap();
    let r = admin.patch(&format!("/rest/webhooks?id=eq.{id}"), json!({"secret": "x".repeat(40)}), &[]).await.expect(403);
    assert_eq!(r.error_code(), "42501");
    let secret: String = owner.query_one("SELECT secret FROM webhooks", &[]).await.unwrap().get(0);
    assert!(secret.starts_with("whsec_"), "the secret is unchanged");
    let rotated = admin.post("/rest/rpc/webhook_regenerate_secret", json!({"p_webhook_id": id}), &[]).await.expect(200).json();
    assert!(rotated.as_str().unwrap().starts_with("whsec_"), "rotation returns the new secret once");
}

#[tokio::test]
async fn max_affected_refuses_and_rolls_back_writes_touching_too_many_rows() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    contact(&owner, w.tenant_a, "+15551230001", Some("A")).await;
    contact(&owner, w.tenant_a, "+15551230002", Some("A")).await;
    let strict = ("prefer", "handling=strict, max-affected=1");
    let r = api.patch("/rest/contacts?first_name=eq.A", json!({"last_name": "Z"}), &[strict]).await.expect(400);
    assert_eq!(r.error_code(), "RC124");
    api.delete("/rest/contacts?first_name=eq.A", &[strict]).await.expect(400);
    assert_eq!(count(&owner, "contacts", "last_name IS NULL AND deleted_at IS NULL").await, 2, "rolled back");
    api.patch("/rest/contacts?phone=eq.%2B15551230001", json!({"last_name": "Y"}), &[strict]).await.expect(204);
    assert_eq!(count(&owner, "contacts", "last_name = 'Y'").await, 1);
}

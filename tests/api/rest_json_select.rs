//! JSON paths in `select=` over real HTTP, as PostgREST 13: `data->a` (json), `data->>a`
//! (text), nested keys, array indexes, aliases and casts; the key is the last path element
//! unless aliased. In flat reads, embeds, `return=representation` and CSV. Bad paths are a
//! 4xx with PostgREST's code; a hidden column stays hidden behind a path (isolation pair).

use serde_json::{Value, json};
use tokio_postgres::Client as PgClient;
use uuid::Uuid;

use crate::helpers::rest::{Api, REPRESENTATION, setup};

async fn person(owner: &PgClient, tenant: Uuid, phone: &str, first: &str, attributes: Value) -> Uuid {
    let sql = "INSERT INTO contacts (tenant_id, phone, first_name, attributes) VALUES ($1, $2, $3, $4) RETURNING id";
    owner.query_one(sql, &[&tenant, &phone, &first, &attributes]).await.unwrap().get(0)
}

async fn seed(owner: &PgClient, a: Uuid, b: Uuid) -> Uuid {
    let ann = json!({"city": "Lyon", "score": 9, "tags": ["vip", "eu"], "address": {"zip": "69001"}});
    let ann = person(owner, a, "+15550000001", "Ann", ann).await;
    person(owner, a, "+15550000002", "Bob", json!({"score": 3})).await;
    person(owner, b, "+15550000003", "Bea", json!({"city": "Oslo", "score": 100})).await;
    ann
}

#[tokio::test]
async fn json_paths_in_select_are_keyed_by_their_last_step_or_alias() {
    let (app, w, owner) = setup().await;
    seed(&owner, w.tenant_a, w.tenant_b).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let get = |select: &str| {
        let path = format!("/rest/contacts?select={select}&order=first_name");
        let api = &api;
        async move { api.get(&path).await.expect(200).json() }
    };
    let body = get("first_name,attributes->score,attributes->>city,attributes->address->zip,attributes->tags->0").await;
    assert_eq!(
        body,
        json!([
            {"first_name": "Ann", "score": 9, "city": "Lyon", "zip": "69001", "0": "vip"},
            {"first_name": "Bob", "score": 3, "city": null, "zip": null, "0": null},
        ]),
        "-> keeps JSON, ->> gives text; B's contact is not seen"
    );
    let body = get("s:attributes->>score,n:attributes->>score::int,attributes->tags->>-1,attributes->\"tags\"").await;
    assert_eq!(body[0], json!({"s": "9", "n": 9, "-1": "eu", "tags": ["vip", "eu"]}));
    // keys and indexes are bind parameters: a quote in a key is just a key
    let body = get("attributes->>%22x'%3B%20select%201%3B--%22").await;
    assert_eq!(body, json!([{"x'; select 1;--": null}, {"x'; select 1;--": null}]));
    let csv = api.get_with("/rest/contacts?select=first_name,attributes->>city&order=first_name", &[("accept", "text/csv")]).await;
    assert_eq!(csv.expect(200).text, "first_name,city\nAnn,Lyon\nBob,");
}

#[tokio::test]
async fn json_paths_in_embeds_and_in_written_representations() {
    let (app, w, owner) = setup().await;
    let ann = seed(&owner, w.tenant_a, w.tenant_b).await;
    let group: Uuid =
        owner.query_one("INSERT INTO groups (tenant_id, name) VALUES ($1, 'G') RETURNING id", &[&w.tenant_a]).await.unwrap().get(0);
    owner
        .execute("INSERT INTO group_contacts (tenant_id, group_id, contact_id) VALUES ($1, $2, $3)", &[&w.tenant_a, &group, &ann])
        .await
        .unwrap();
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/groups?select=name,contacts(first_name,attributes->>city,z:attributes->address->>zip)").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "G", "contacts": [{"first_name": "Ann", "city": "Lyon", "z": "69001"}]}]));
    let r = api.get(&format!("/rest/contacts?select=attributes->>city,groups(name)&id=eq.{ann}")).await.expect(200);
    assert_eq!(r.json(), json!([{"city": "Lyon", "groups": [{"name": "G"}]}]));

    let new = json!({"phone": "+15550000077", "first_name": "Cy", "attributes": {"city": "Nice", "n": [1, 2]}});
    let r = api.post("/rest/contacts?select=first_name,attributes->>city,attributes->n->1", new, &[REPRESENTATION]).await.expect(201);
    assert_eq!(r.json(), json!([{"first_name": "Cy", "city": "Nice", "1": 2}]));
    let patch = json!({"attributes": {"city": "Metz"}});
    let r = api.patch("/rest/contacts?phone=eq.%2B15550000077&select=c:attributes->>city,groups(name)", patch, &[REPRESENTATION]).await;
    assert_eq!(r.expect(200).json(), json!([{"c": "Metz", "groups": []}]));
}

#[tokio::test]
async fn bad_json_paths_in_select_are_4xx_with_postgrest_codes() {
    let (app, w, owner) = setup().await;
    seed(&owner, w.tenant_a, w.tenant_b).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    for (select, status, code) in [
        ("attributes->", 400, "PGRST100"),
        ("attributes->>a->b", 400, "PGRST100"),
        ("attributes->a::regclass", 400, "PGRST100"),
        ("first_name->a", 404, "42883"),
        ("nope->a", 400, "42703"),
        ("groups(attributes->>a)", 400, "42703"),
    ] {
        let r = api.get(&format!("/rest/contacts?select={select}")).await.expect(status);
        assert_eq!(r.error_code(), code, "{select}");
    }
}

#[tokio::test]
async fn a_hidden_column_is_refused_through_a_json_path_as_when_selected_directly() {
    let (app, w, owner) = setup().await;
    seed(&owner, w.tenant_a, w.tenant_b).await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin.post("/rest/webhooks", json!({"name": "h", "url": "https://example.test/h", "events": ["*"]}), &[]).await.expect(201);
    // allowed twin: a visible json column through a path
    admin.get("/rest/contacts?select=attributes->>city").await.expect(200);
    let direct = admin.get("/rest/webhooks?select=id,secret").await;
    assert!(direct.status >= 400 && direct.status < 500, "{}", direct.text);
    let direct_code = direct.error_code();
    for select in ["id,secret->a", "id,secret->>a", "x:secret->a->>b::text", "id,secret->0"] {
        let r = admin.get(&format!("/rest/webhooks?select={select}")).await.expect(direct.status);
        assert_eq!(r.error_code(), direct_code, "{select}");
        assert!(!r.text.contains("whsec"), "no secret in the error");
    }
    let r = admin.get("/rest/webhook_logs?select=id,webhooks(secret->>a)").await.expect(direct.status);
    assert_eq!(r.error_code(), direct_code);
    let body = json!({"name": "h2", "url": "https://example.test/h2", "events": ["*"]});
    let r = admin.post("/rest/webhooks?select=id,secret->>a", body, &[REPRESENTATION]).await.expect(direct.status);
    assert_eq!(r.error_code(), direct_code);
}

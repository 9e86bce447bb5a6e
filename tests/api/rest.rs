//! REST API over real HTTP (PostgREST dialect): reads, every filter operator, ordering,
//! paging headers, counts, singular objects, soft delete, shared templates, OpenAPI.
//! The HTTP client the `rest_*` files share (`Api`, `Resp`, …) lives in `helpers::rest`.

use serde_json::{Value, json};
use tokio_postgres::Client as PgClient;

use crate::helpers::World;
use crate::helpers::rest::{Api, REPRESENTATION, SINGULAR, contact, count, field, setup};

/// Five contacts in tenant A (first names Ann, bob, Cid, Dee, none), one in tenant B.
async fn five_contacts(owner: &PgClient, w: &World) {
    for (phone, name) in [
        ("+15550000001", Some("Ann")),
        ("+15550000002", Some("bob")),
        ("+15550000003", Some("Cid")),
        ("+15550000004", Some("Dee")),
        ("+15550000005", None),
    ] {
        contact(owner, w.tenant_a, phone, name).await;
    }
    contact(owner, w.tenant_b, "+15550000009", Some("Bea")).await;
}

#[tokio::test]
async fn get_lists_the_callers_rows_as_a_json_array_with_a_content_range() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/contacts").await.expect(200);
    assert_eq!(r.header("content-range"), Some("0-4/*"));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    assert!(r.header("x-request-id").is_some());
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 5);
    assert!(field(&rows, "tenant_id").iter().all(|t| t == &json!(w.tenant_a)), "only tenant A rows");
}

#[tokio::test]
async fn select_picks_renames_and_casts_columns() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let rows = api.get("/rest/contacts?select=name:first_name,phone,opted_out::text&phone=eq.%2B15550000001").await.expect(200).json();
    assert_eq!(rows, json!([{"name": "Ann", "phone": "+15550000001", "opted_out": "false"}]));
}

#[tokio::test]
async fn comparison_operators_eq_neq_gt_gte_lt_lte_filter_rows() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let phones = |q: &'static str| {
        let api = &api;
        async move {
            let rows = api.get(&format!("/rest/contacts?select=phone&order=phone&{q}")).await.expect(200).json();
            field(&rows, "phone").into_iter().map(|p| p.as_str().unwrap()[11..].to_string()).collect::<Vec<_>>().join(",")
        }
    };
    assert_eq!(phones("phone=eq.%2B15550000002").await, "2");
    assert_eq!(phones("phone=neq.%2B15550000002").await, "1,3,4,5");
    assert_eq!(phones("phone=gt.%2B15550000003").await, "4,5");
    assert_eq!(phones("phone=gte.%2B15550000003").await, "3,4,5");
    assert_eq!(phones("phone=lt.%2B15550000003").await, "1,2");
    assert_eq!(phones("phone=lte.%2B15550000003").await, "1,2,3");
    assert_eq!(phones("opted_out=eq.false&phone=lt.%2B15550000002").await, "1");
}

#[tokio::test]
async fn like_and_ilike_match_patterns_with_star_wildcards() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let names = |rows: Value| field(&rows, "first_name");
    assert_eq!(names(api.get("/rest/contacts?select=first_name&first_name=like.*o*").await.expect(200).json()), [json!("bob")]);
    assert_eq!(names(api.get("/rest/contacts?select=first_name&first_name=like.B*").await.expect(200).json()), Vec::<Value>::new());
    assert_eq!(names(api.get("/rest/contacts?select=first_name&first_name=ilike.B*").await.expect(200).json()), [json!("bob")]);
    let rows = api.get("/rest/contacts?select=phone&created_at=like.2*").await.expect(200).json();
    assert_eq!(rows.as_array().unwrap().len(), 5, "like on a timestamp compares its text form");
}

#[tokio::test]
async fn in_and_is_filter_by_lists_nulls_and_booleans() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let rows = api.get("/rest/contacts?select=first_name&first_name=in.(Ann,Dee,Zed)&order=first_name").await.expect(200).json();
    assert_eq!(field(&rows, "first_name"), [json!("Ann"), json!("Dee")]);
    let rows = api.get("/rest/contacts?select=phone&first_name=is.null").await.expect(200).json();
    assert_eq!(field(&rows, "phone"), [json!("+15550000005")]);
    let rows = api.get("/rest/contacts?select=phone&opted_out=is.false").await.expect(200).json();
    assert_eq!(rows.as_array().unwrap().len(), 5);
    let rows = api.get("/rest/contacts?select=phone&first_name=in.()").await.expect(200).json();
    assert_eq!(rows, json!([]), "an empty list matches nothing");
}

#[tokio::test]
async fn not_negates_every_operator() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let n = |q: &'static str| {
        let api = &api;
        async move { api.get(&format!("/rest/contacts?select=id&{q}")).await.expect(200).json().as_array().unwrap().len() }
    };
    assert_eq!(n("first_name=not.is.null").await, 4);
    assert_eq!(n("first_name=not.in.(Ann,bob)").await, 2, "NULL is neither in nor not in");
    assert_eq!(n("first_name=not.ilike.*E*").await, 3);
    assert_eq!(n("first_name=not.eq.Ann").await, 3);
}

#[tokio::test]
async fn or_and_nested_logic_trees_combine_conditions() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let names = |q: &'static str| {
        let api = &api;
        async move {
            let rows = api.get(&format!("/rest/contacts?select=first_name&order=phone&{q}")).await.expect(200).json();
            field(&rows, "first_name")
        }
    };
    assert_eq!(names("or=(first_name.eq.Ann,first_name.eq.Dee)").await, [json!("Ann"), json!("Dee")]);
    assert_eq!(names("or=(first_name.eq.Ann,and(first_name.like.*e*,phone.gt.%2B15550000003))").await, [json!("Ann"), json!("Dee")]);
    assert_eq!(names("not.or=(first_name.is.null,first_name.ilike.*b*)&first_name=neq.Cid").await, [json!("Ann"), json!("Dee")]);
    assert_eq!(names("and=(phone.gte.%2B15550000002,phone.lte.%2B15550000003)").await, [json!("bob"), json!("Cid")]);
}

#[tokio::test]
async fn order_sorts_by_several_columns_with_nulls_first_or_last() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let rows = api.get("/rest/contacts?select=first_name&order=first_name.desc.nullslast").await.expect(200).json();
    assert_eq!(field(&rows, "first_name"), [json!("bob"), json!("Dee"), json!("Cid"), json!("Ann"), Value::Null]);
    let rows = api.get("/rest/contacts?select=first_name&order=first_name.asc.nullsfirst").await.expect(200).json();
    assert_eq!(field(&rows, "first_name")[0], Value::Null);
    let rows = api.get("/rest/contacts?select=phone&order=opted_out.asc,phone.desc&limit=2").await.expect(200).json();
    assert_eq!(field(&rows, "phone"), [json!("+15550000005"), json!("+15550000004")]);
}

#[tokio::test]
async fn limit_and_offset_page_through_the_rows() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/contacts?select=phone&order=phone&limit=2&offset=1").await.expect(200);
    assert_eq!(field(&r.json(), "phone"), [json!("+15550000002"), json!("+15550000003")]);
    assert_eq!(r.header("content-range"), Some("1-2/*"));
    let r = api.get("/rest/contacts?limit=0").await.expect(200);
    assert_eq!(r.json(), json!([]));
    assert_eq!(r.header("content-range"), Some("*/*"));
}

#[tokio::test]
async fn range_headers_and_count_exact_give_206_with_the_total() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api
        .get_with("/rest/contacts?select=phone&order=phone", &[("range", "0-1"), ("range-unit", "items"), ("prefer", "count=exact")])
        .await
        .expect(206);
    assert_eq!(r.header("content-range"), Some("0-1/5"));
    assert_eq!(field(&r.json(), "phone"), [json!("+15550000001"), json!("+15550000002")]);
    assert_eq!(r.header("preference-applied"), Some("count=exact"));
    let r = api.get_with("/rest/contacts?select=phone", &[("prefer", "count=exact")]).await.expect(200);
    assert_eq!(r.header("content-range"), Some("0-4/5"));
    let r = api.get_with("/rest/contacts?select=phone&order=phone", &[("range", "3-")]).await.expect(200);
    assert_eq!(r.header("content-range"), Some("3-4/*"));
    let r = api.get_with("/rest/contacts?first_name=eq.nobody", &[("prefer", "count=exact")]).await.expect(200);
    assert_eq!(r.header("content-range"), Some("*/0"));
}

#[tokio::test]
async fn an_offset_past_the_counted_total_is_416() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get_with("/rest/contacts?offset=10", &[("prefer", "count=exact")]).await.expect(416);
    assert_eq!(r.header("content-range"), Some("*/5"));
    assert_eq!(r.error_code(), "PGRST103");
    api.get_with("/rest/contacts", &[("range", "5-2")]).await.expect(416);
}

#[tokio::test]
async fn singular_accept_returns_one_object_or_406() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get_with("/rest/contacts?select=first_name&phone=eq.%2B15550000001", &[SINGULAR]).await.expect(200);
    assert_eq!(r.json(), json!({"first_name": "Ann"}));
    assert!(r.header("content-type").unwrap().starts_with("application/vnd.pgrst.object+json"));
    let r = api.get_with("/rest/contacts", &[SINGULAR]).await.expect(406);
    assert_eq!(r.error_code(), "PGRST116");
    assert!(r.json()["details"].as_str().unwrap().contains("5 rows"));
    api.get_with("/rest/contacts?first_name=eq.nobody", &[SINGULAR]).await.expect(406);
}

#[tokio::test]
async fn head_answers_the_headers_of_get_without_a_body() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.send("HEAD", "/rest/contacts", &[("prefer", "count=exact")], None).await.expect(200);
    assert_eq!(r.header("content-range"), Some("0-4/5"));
    assert_eq!(r.text, "");
}

#[tokio::test]
async fn nulls_stripped_leaves_null_fields_out() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let accept = ("accept", "application/vnd.pgrst.array+json;nulls=stripped");
    let rows = api.get_with("/rest/contacts?select=phone,first_name&first_name=is.null", &[accept]).await.expect(200).json();
    assert_eq!(rows, json!([{"phone": "+15550000005"}]));
}

#[tokio::test]
async fn soft_deleted_rows_are_hidden_unless_the_request_filters_on_deleted_at() {
    let (app, w, owner) = setup().await;
    five_contacts(&owner, &w).await;
    owner.execute("UPDATE contacts SET deleted_at = now() WHERE phone = '+15550000001'", &[]).await.unwrap();
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    assert_eq!(api.get("/rest/contacts").await.expect(200).json().as_array().unwrap().len(), 4);
    api.get("/rest/contacts?phone=eq.%2B15550000001").await.expect(200);
    assert_eq!(api.get("/rest/contacts?phone=eq.%2B15550000001").await.json(), json!([]), "hidden even by id");
    let bin = api.get("/rest/contacts?select=phone&deleted_at=not.is.null").await.expect(200).json();
    assert_eq!(field(&bin, "phone"), [json!("+15550000001")]);
    let all = api.get("/rest/contacts?or=(deleted_at.is.null,deleted_at.not.is.null)").await.expect(200).json();
    assert_eq!(all.as_array().unwrap().len(), 5, "an explicit deleted_at filter shows everything it matches");
}

#[tokio::test]
async fn shared_templates_are_read_by_every_tenant_and_written_only_by_platform_admins() {
    let (app, w, owner) = setup().await;
    let admin = Api::new(&app, w.platform_admin, Some(w.tenant_a));
    let shared = json!({"tenant_id": null, "name": "Welcome", "body": "Hi {{first_name}}"});
    let r = admin.post("/rest/message_templates", shared.clone(), &[REPRESENTATION]).await.expect(201);
    let id = r.json()[0]["id"].as_str().unwrap().to_string();
    for (user, tenant) in [(w.user_a, w.tenant_a), (w.user_b, w.tenant_b)] {
        let api = Api::new(&app, user, Some(tenant));
        let rows = api.get(&format!("/rest/message_templates?id=eq.{id}")).await.expect(200).json();
        assert_eq!(rows[0]["name"], "Welcome", "the shared template is visible in every tenant");
        let r = api.patch(&format!("/rest/message_templates?id=eq.{id}"), json!({"name": "Hijacked"}), &[REPRESENTATION]).await.expect(200);
        assert_eq!(r.json(), json!([]), "a member cannot change a shared template");
    }
    let user = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = user.post("/rest/message_templates", json!({"tenant_id": null, "name": "Mine", "body": "x"}), &[]).await.expect(403);
    assert_eq!(r.error_code(), "42501");
    assert_eq!(count(&owner, "message_templates", "name IN ('Mine', 'Hijacked')").await, 0, "nothing written");
    let own = user.post("/rest/message_templates", json!({"name": "Own", "body": "x"}), &[REPRESENTATION]).await.expect(201).json();
    assert_eq!(own[0]["tenant_id"], json!(w.tenant_a), "tenant_id defaults to the request's tenant");
}

#[tokio::test]
async fn unreadable_columns_never_appear_and_cannot_be_selected() {
    let (app, w, _owner) = setup().await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let hook = json!({"name": "h", "url": "https://example.test/hook", "events": ["contact_created"]});
    let rows = admin.post("/rest/webhooks", hook, &[REPRESENTATION]).await.expect(201).json();
    assert!(rows[0].get("secret").is_none(), "return=representation leaves secret out: {rows}");
    let rows = admin.get("/rest/webhooks").await.expect(200).json();
    assert!(rows[0].get("secret").is_none() && rows[0].get("url").is_some(), "select=* leaves secret out: {rows}");
    admin.get("/rest/webhooks?select=secret").await.expect(403);
    admin.get("/rest/webhooks?secret=like.whsec*").await.expect(403);
    admin.get("/rest/webhooks?order=secret").await.expect(403);
    let doc = admin.get("/rest/").await.expect(200).json();
    assert!(doc["components"]["schemas"]["webhooks"]["properties"].get("secret").is_none());
}

#[tokio::test]
async fn the_openapi_document_describes_tables_and_functions_from_the_catalog() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/").await.expect(200);
    assert!(r.header("content-type").unwrap().starts_with("application/openapi+json"));
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in ["/contacts", "/groups", "/campaigns", "/message_templates", "/rpc/campaign_start", "/rpc/group_add_contacts"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from {}", doc["paths"]);
    }
    assert_eq!(doc["components"]["schemas"]["contacts"]["properties"]["id"]["format"], "uuid");
    let tables: Vec<&String> = doc["components"]["schemas"].as_object().unwrap().keys().collect();
    assert!(!tables.iter().any(|t| t.starts_with("pg_") || t.as_str() == "events"), "only exposed tables: {tables:?}");
    api.get("/rest").await.expect(200);
    let anonymous = app.http.get(app.url("/rest/")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
}

/// Reads the same rows with `ROWCAST_DB_TRANSACTION_POOLER` set as given; gives how many
/// statements the (only) pooled connection holds from SQL `PREPARE`.
async fn read_behind(pooler: &str) -> i64 {
    let app = crate::helpers::spawn_app_with(|vars| {
        vars.push(("ROWCAST_DB_TRANSACTION_POOLER".into(), pooler.into()));
        vars.push(("ROWCAST_POOL_SIZE".into(), "1".into()));
    })
    .await;
    let owner = app.db.owner().await;
    let w = World::create(&owner).await;
    five_contacts(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    for _ in 0..2 {
        let r = api.get("/rest/contacts?select=first_name&order=phone&first_name=not.is.null").await.expect(200);
        assert_eq!(r.json(), json!([{"first_name": "Ann"}, {"first_name": "bob"}, {"first_name": "Cid"}, {"first_name": "Dee"}]));
        let r = api.get_with("/rest/contacts?first_name=eq.Zed", &[("Prefer", "count=exact")]).await.expect(200);
        assert_eq!(r.header("content-range"), Some("*/0"));
    }
    let conn = app.state.db.conn().await.unwrap();
    conn.query_one("SELECT count(*) FROM pg_prepared_statements WHERE from_sql", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn reads_use_sql_prepared_statements_unless_a_transaction_pooler_is_declared() {
    assert!(read_behind("false").await >= 2, "one-message reads: app.begin_request and the reads prepared with SQL PREPARE");
    assert_eq!(read_behind("true").await, 0, "behind a transaction pooler: the same answers, no SQL PREPARE");
}

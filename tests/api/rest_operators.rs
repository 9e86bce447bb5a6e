//! Every PostgREST 13 filter operator over real HTTP: JSON paths in filters, logic trees and
//! `order`, `match imatch isdistinct`, `cs cd ov` (and the range operators refused on the
//! wrong type), `(any)`/`(all)`, full-text search with configs. Wrong types are a 4xx with
//! PostgREST's code, never a 5xx; hidden columns stay hidden behind every operator.

use serde_json::{Value, json};
use tokio_postgres::Client as PgClient;
use uuid::Uuid;

use crate::helpers::rest::{Api, field, setup};

async fn person(owner: &PgClient, tenant: Uuid, phone: &str, first: &str, last: Option<&str>, attributes: Value) -> Uuid {
    owner
        .query_one(
            "INSERT INTO contacts (tenant_id, phone, first_name, last_name, attributes) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&tenant, &phone, &first, &last, &attributes],
        )
        .await
        .unwrap()
        .get(0)
}

fn names(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = field(body, "first_name").iter().map(|n| n.as_str().unwrap_or_default().to_string()).collect();
    v.sort();
    v
}

async fn seed(owner: &PgClient, a: Uuid, b: Uuid) {
    person(
        owner,
        a,
        "+15550000001",
        "Ann",
        Some("Lee"),
        json!({"plan": "pro", "score": 9, "tags": ["vip", "eu"], "bio": "quick brown foxes jump"}),
    )
    .await;
    person(owner, a, "+15550000002", "Bob", None, json!({"plan": "free", "score": 3, "tags": ["us"], "bio": "lazy dogs sleep"})).await;
    person(owner, a, "+15550000003", "alice", Some("Lee"), json!({"plan": "pro", "score": 5})).await;
    person(owner, b, "+15550000004", "Bea", None, json!({"plan": "pro", "score": 100, "tags": ["vip"]})).await;
}

#[tokio::test]
async fn json_paths_filter_and_order_within_the_tenant() {
    let (app, w, owner) = setup().await;
    seed(&owner, w.tenant_a, w.tenant_b).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let get = |q: &str| {
        let path = format!("/rest/contacts?select=first_name&{q}");
        let api = &api;
        async move { api.get(&path).await.expect(200).json() }
    };
    assert_eq!(names(&get("attributes->>plan=eq.pro").await), ["Ann", "alice"], "B's pro contact is not seen");
    assert_eq!(names(&get("attributes->score=gt.4").await), ["Ann", "alice"], "-> compares as jsonb");
    assert_eq!(names(&get("attributes->tags->>0=eq.vip").await), ["Ann"], "array index");
    assert_eq!(names(&get("attributes->tags=cs.%5B%22eu%22%5D").await), ["Ann"], "jsonb containment on a path");
    assert_eq!(names(&get("attributes->>plan=in.(free)").await), ["Bob"]);
    assert_eq!(names(&get("or=(attributes->>plan.eq.free,first_name.eq.alice)").await), ["Bob", "alice"]);
    assert_eq!(names(&get("attributes->>missing=is.null").await).len(), 3);
    let ordered = get("order=attributes->score.desc&attributes->>plan=not.is.null").await;
    assert_eq!(field(&ordered, "first_name"), [json!("Ann"), json!("alice"), json!("Bob")]);
    let ordered = get("order=attributes->>plan.asc,first_name.desc").await;
    assert_eq!(field(&ordered, "first_name"), [json!("Bob"), json!("alice"), json!("Ann")]);
    // Malformed paths: PostgREST's parse error; a path on a text column: the database's 42883 (404).
    let r = api.get("/rest/contacts?attributes->=eq.1").await.expect(400);
    assert_eq!(r.error_code(), "PGRST100");
    let r = api.get("/rest/contacts?attributes->>a->b=eq.1").await.expect(400);
    assert_eq!(r.error_code(), "PGRST100");
    let r = api.get("/rest/contacts?first_name->a=eq.1").await.expect(404);
    assert_eq!(r.error_code(), "42883");
    let r = api.get("/rest/contacts?order=nope->a").await.expect(400);
    assert_eq!(r.error_code(), "42703");
}

#[tokio::test]
async fn match_isdistinct_quantifiers_and_full_text_search() {
    let (app, w, owner) = setup().await;
    seed(&owner, w.tenant_a, w.tenant_b).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let get = |q: &str| {
        let path = format!("/rest/contacts?select=first_name&{q}");
        let api = &api;
        async move { api.get(&path).await.expect(200).json() }
    };
    assert_eq!(names(&get("first_name=match.%5EA").await), ["Ann"]);
    assert_eq!(names(&get("first_name=imatch.%5Ea").await), ["Ann", "alice"]);
    assert_eq!(names(&get("first_name=not.imatch.%5Ea").await), ["Bob"]);
    assert_eq!(names(&get("last_name=isdistinct.Lee").await), ["Bob"], "NULL is distinct from Lee");
    assert_eq!(names(&get("last_name=not.isdistinct.Lee").await), ["Ann", "alice"]);
    assert_eq!(names(&get("first_name=like(any).%7BA*,B*%7D").await), ["Ann", "Bob"]);
    assert_eq!(names(&get("first_name=ilike(all).%7Ba*,*e%7D").await), ["alice"]);
    assert_eq!(names(&get("first_name=eq(any).%7BAnn,alice,Nobody%7D").await), ["Ann", "alice"]);
    assert_eq!(names(&get("first_name=not.eq(any).%7BAnn,alice%7D").await), ["Bob"]);
    assert_eq!(names(&get("or=(first_name.like(any).%7BA*%7D,first_name.eq.Bob)").await), ["Ann", "Bob"]);
    // Full-text search: to_tsvector is applied to text (and json) columns, as PostgREST 13 does.
    assert_eq!(names(&get("first_name=fts.bob").await), ["Bob"]);
    assert_eq!(names(&get("attributes->>bio=fts(english).fox").await), ["Ann"], "english stems foxes → fox");
    assert_eq!(names(&get("attributes->>bio=fts(simple).fox").await), Vec::<String>::new(), "simple does not stem");
    assert_eq!(names(&get("attributes->>bio=plfts(english).lazy+dog").await), ["Bob"]);
    assert_eq!(names(&get("attributes->>bio=phfts(english).brown+fox").await), ["Ann"]);
    assert_eq!(names(&get("attributes->>bio=phfts(english).fox+brown").await), Vec::<String>::new());
    assert_eq!(names(&get("attributes->>bio=wfts(english).%22lazy+dogs%22+or+quick").await), ["Ann", "Bob"]);
    assert_eq!(names(&get("attributes->>bio=not.wfts.sleep").await), ["Ann"], "NULL bio: NOT NULL is NULL, so alice is out");
    let r = api.get("/rest/contacts?first_name=fts(klingon).x").await.expect(400);
    assert_eq!(r.error_code(), "42704", "unknown text search configuration: {}", r.text);
}

#[tokio::test]
async fn array_operators_and_operators_on_the_wrong_type() {
    let (app, w, owner) = setup().await;
    seed(&owner, w.tenant_a, w.tenant_b).await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    for (name, events) in [("a", json!(["contact_created", "contact_updated"])), ("b", json!(["message_sent"]))] {
        admin.post("/rest/webhooks", json!({"name": name, "url": "https://example.test/h", "events": events}), &[]).await.expect(201);
    }
    let hooks = |q: &str| {
        let path = format!("/rest/webhooks?select=name&order=name&{q}");
        let admin = &admin;
        async move { field(&admin.get(&path).await.expect(200).json(), "name") }
    };
    assert_eq!(hooks("events=cs.%7Bcontact_created%7D").await, [json!("a")]);
    assert_eq!(hooks("events=cd.%7Bmessage_sent,message_failed%7D").await, [json!("b")]);
    assert_eq!(hooks("events=ov.%7Bmessage_sent,contact_updated%7D").await, [json!("a"), json!("b")]);
    assert_eq!(hooks("events=not.ov.%7Bmessage_sent%7D").await, [json!("a")]);
    assert_eq!(hooks("or=(events.cs.%7Bmessage_sent%7D,name.eq.zzz)").await, [json!("b")]);
    // Operators on the wrong type: the database refuses (42883 → 404, 22P02 → 400), nothing is a 5xx.
    for (q, status, code) in [
        ("first_name=cs.%7Ba%7D", 404, "42883"),
        ("first_name=sl.x", 404, "42883"),
        ("first_name=adj.x", 404, "42883"),
        ("opted_out=fts.x", 404, "42883"),
        ("attributes=ov.x", 404, "42883"),
        ("created_at=nxr.%5B1,2%5D", 404, "42883"),
        ("created_at=gt.notadate", 400, "22007"),
        ("phone=eq(any).notanarray", 400, "22P02"),
    ] {
        let r = admin.get(&format!("/rest/contacts?{q}")).await;
        assert_eq!((r.status, r.error_code().as_str()), (status, code), "{q}: {}", r.text);
    }
}

#[tokio::test]
async fn hidden_columns_stay_hidden_behind_every_operator_and_path() {
    let (app, w, _owner) = setup().await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin.post("/rest/webhooks", json!({"name": "h", "url": "https://example.test/h", "events": ["*"]}), &[]).await.expect(201);
    // The allowed twin of each probe answers 200; the probe on `secret` is refused before any SQL.
    for (allowed, forbidden) in [
        ("name->>a=is.null", "secret->>a=is.null"),
        ("name=like.*", "secret=like.*"),
        ("name=fts.h", "secret=fts.h"),
        ("name=like(any).%7B*%7D", "secret=like(any).%7B*%7D"),
        ("or=(name.match.x,id.is.null)", "or=(secret.match.x,id.is.null)"),
        ("order=name", "order=secret"),
        ("order=name->a", "order=secret->a"),
    ] {
        let ok = admin.get(&format!("/rest/webhooks?select=id&{allowed}")).await;
        assert!(ok.status == 200 || ok.status == 404, "{allowed}: {}", ok.text);
        let r = admin.get(&format!("/rest/webhooks?select=id&{forbidden}")).await.expect(403);
        assert_eq!(r.error_code(), "42501", "{forbidden}");
        assert!(!r.text.contains("whsec"), "no secret in the error");
    }
}

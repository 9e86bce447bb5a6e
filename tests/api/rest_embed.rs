//! Resource embedding and aggregates over real HTTP: many-to-one, one-to-many, many-to-many
//! through `group_contacts`, nesting, `!inner`, null filters, hints, aliases, spreads,
//! parameters on embeds, related orders (`order=rel(col)`, to-one only), `count()`/`sum()`/…,
//! embeds in `return=representation`; isolation
//! pairs (tenants, `webhooks` for tenant users, `webhooks.secret`); PGRST200/201/108 and
//! absurd nesting as 4xx.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_postgres::Client as PgClient;
use uuid::Uuid;

use crate::helpers::World;
use crate::helpers::rest::{Api, REPRESENTATION, SINGULAR, count, setup};

/// What [`seed`] created in tenant A (and B).
pub struct Seeded {
    pub friends: Uuid,
    pub empty: Uuid,
    pub template: Uuid,
    pub c1: Uuid,
    pub group_b: Uuid,
    pub template_b: Uuid,
}

async fn one(owner: &PgClient, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Uuid {
    owner.query_one(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {:?}", e.as_db_error())).get(0)
}

/// Tenant A: contacts Ann, Bob, Cid and a soft-deleted Del; group Friends (Ann, Bob, Del) and
/// group Empty; template T; campaigns C1 (Friends, T) and C2 (nothing).
/// Tenant B: contact Bea in group B-team; template TB; campaign CB.
pub async fn seed(owner: &PgClient, w: &World) -> Seeded {
    let contact = |t: Uuid, phone: &'static str, name: &'static str| async move {
        one(owner, "INSERT INTO contacts (tenant_id, phone, first_name) VALUES ($1, $2, $3) RETURNING id", &[&t, &phone, &name]).await
    };
    let (a, b) = (w.tenant_a, w.tenant_b);
    let ann = contact(a, "+15550000001", "Ann").await;
    let bob = contact(a, "+15550000002", "Bob").await;
    contact(a, "+15550000003", "Cid").await;
    let del = contact(a, "+15550000004", "Del").await;
    let bea = contact(b, "+15550000009", "Bea").await;
    let group = |t: Uuid, name: &'static str| async move {
        one(owner, "INSERT INTO groups (tenant_id, name) VALUES ($1, $2) RETURNING id", &[&t, &name]).await
    };
    let friends = group(a, "Friends").await;
    let empty = group(a, "Empty").await;
    let group_b = group(b, "B-team").await;
    for (t, g, c) in [(a, friends, ann), (a, friends, bob), (a, friends, del), (b, group_b, bea)] {
        owner.execute("INSERT INTO group_contacts (tenant_id, group_id, contact_id) VALUES ($1, $2, $3)", &[&t, &g, &c]).await.unwrap();
    }
    owner.execute("UPDATE contacts SET deleted_at = now() WHERE id = $1", &[&del]).await.unwrap();
    let template = |t: Uuid, name: &'static str| async move {
        one(owner, "INSERT INTO message_templates (tenant_id, name, body) VALUES ($1, $2, 'Hi') RETURNING id", &[&t, &name]).await
    };
    let t = template(a, "T").await;
    let template_b = template(b, "TB").await;
    // the counters are the database's own: set them with its guard off (test data only)
    owner.batch_execute("ALTER TABLE campaigns DISABLE TRIGGER rowcast_campaign_status_guard").await.unwrap();
    let c1 = one(
        owner,
        "INSERT INTO campaigns (tenant_id, name, group_id, template_id, total_recipients) VALUES ($1, 'C1', $2, $3, 5) RETURNING id",
        &[&a, &friends, &t],
    )
    .await;
    owner.execute("INSERT INTO campaigns (tenant_id, name, total_recipients) VALUES ($1, 'C2', 7)", &[&a]).await.unwrap();
    owner
        .execute("INSERT INTO campaigns (tenant_id, name, group_id, template_id) VALUES ($1, 'CB', $2, $3)", &[&b, &group_b, &template_b])
        .await
        .unwrap();
    owner.batch_execute("ALTER TABLE campaigns ENABLE TRIGGER rowcast_campaign_status_guard").await.unwrap();
    Seeded { friends, empty, template: t, c1, group_b, template_b }
}

#[tokio::test]
async fn many_to_one_embeds_an_object_or_null() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/campaigns?select=name,groups(name),message_templates(name)&order=name").await.expect(200);
    assert_eq!(
        r.json(),
        json!([
            {"name": "C1", "groups": {"name": "Friends"}, "message_templates": {"name": "T"}},
            {"name": "C2", "groups": null, "message_templates": null},
        ])
    );
    let r = api.get_with("/rest/campaigns?select=name,groups(name)&name=eq.C1", &[SINGULAR]).await.expect(200);
    assert_eq!(r.json(), json!({"name": "C1", "groups": {"name": "Friends"}}));
}

#[tokio::test]
async fn one_to_many_and_many_to_many_embed_arrays() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/groups?select=name,campaigns(name)&order=name").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Empty", "campaigns": []}, {"name": "Friends", "campaigns": [{"name": "C1"}]}]));
    // through the junction table; the soft-deleted Del is hidden
    let r = api.get("/rest/groups?select=name,contacts(first_name)&order=name&contacts.order=first_name").await.expect(200);
    assert_eq!(
        r.json(),
        json!([{"name": "Empty", "contacts": []}, {"name": "Friends", "contacts": [{"first_name": "Ann"}, {"first_name": "Bob"}]}])
    );
    // and back
    let r = api.get("/rest/contacts?select=first_name,groups(name)&order=first_name").await.expect(200);
    assert_eq!(
        r.json(),
        json!([
            {"first_name": "Ann", "groups": [{"name": "Friends"}]},
            {"first_name": "Bob", "groups": [{"name": "Friends"}]},
            {"first_name": "Cid", "groups": []},
        ])
    );
    // filtering the embed on deleted_at shows the bin
    let r = api.get("/rest/groups?select=name,contacts(first_name)&name=eq.Friends&contacts.deleted_at=not.is.null").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Friends", "contacts": [{"first_name": "Del"}]}]));
}

#[tokio::test]
async fn filters_order_limit_offset_and_or_apply_to_the_embed() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let names = |v: Value| -> Vec<String> {
        v[0]["contacts"].as_array().unwrap().iter().map(|c| c["first_name"].as_str().unwrap().to_string()).collect()
    };
    let base = "/rest/groups?select=name,contacts(first_name)&name=eq.Friends";
    assert_eq!(names(api.get(&format!("{base}&contacts.first_name=eq.Ann")).await.expect(200).json()), ["Ann"]);
    assert_eq!(names(api.get(&format!("{base}&contacts.order=first_name.desc&contacts.limit=1")).await.expect(200).json()), ["Bob"]);
    assert_eq!(names(api.get(&format!("{base}&contacts.order=first_name&contacts.offset=1")).await.expect(200).json()), ["Bob"]);
    assert_eq!(names(api.get(&format!("{base}&contacts.or=(first_name.eq.Ann,first_name.eq.Cid)")).await.expect(200).json()), ["Ann"]);
    // the parent rows are not filtered by a filter on a left-joined embed
    let r = api.get("/rest/groups?select=name,contacts(first_name)&contacts.first_name=eq.Zed&order=name").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Empty", "contacts": []}, {"name": "Friends", "contacts": []}]));
}

#[tokio::test]
async fn inner_joins_and_null_filters_filter_the_parent_rows() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/campaigns?select=name,groups!inner(name)").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "groups": {"name": "Friends"}}]));
    let r = api.get("/rest/campaigns?select=name,groups(name)&groups=not.is.null").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "groups": {"name": "Friends"}}]));
    let r = api.get("/rest/campaigns?select=name,groups(name)&groups=is.null").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C2", "groups": null}]));
    let r = api
        .get_with("/rest/groups?select=name,contacts!inner(first_name)&contacts.first_name=eq.Ann", &[("prefer", "count=exact")])
        .await
        .expect(200);
    assert_eq!(r.json(), json!([{"name": "Friends", "contacts": [{"first_name": "Ann"}]}]));
    assert_eq!(r.header("content-range"), Some("0-0/1"));
    let r = api.get("/rest/groups?select=name,contacts()&contacts=not.is.null").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Friends"}]), "an empty embed filters without showing anything");
    let r = api.get("/rest/groups?select=name,campaigns!left(name)&order=name").await.expect(200);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn hints_aliases_spreads_and_nesting() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/campaigns?select=name,grp:groups!campaigns_group_id_fkey(name)&name=eq.C1").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "grp": {"name": "Friends"}}]));
    let r = api.get("/rest/campaigns?select=name,groups!group_id(name)&name=eq.C1").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "groups": {"name": "Friends"}}]));
    let r =
        api.get("/rest/groups?select=name,contacts!group_contacts(first_name)&name=eq.Friends&contacts.order=first_name").await.expect(200);
    assert_eq!(r.json()[0]["contacts"], json!([{"first_name": "Ann"}, {"first_name": "Bob"}]));
    let r = api.get("/rest/campaigns?select=name,...groups(group_name:name)&name=eq.C1").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "group_name": "Friends"}]));
    let r = api
        .get("/rest/campaigns?select=name,groups(name,people:contacts(first_name,groups(name)))&name=eq.C1&groups.people.order=first_name")
        .await
        .expect(200);
    assert_eq!(
        r.json(),
        json!([{"name": "C1", "groups": {"name": "Friends", "people": [
            {"first_name": "Ann", "groups": [{"name": "Friends"}]},
            {"first_name": "Bob", "groups": [{"name": "Friends"}]},
        ]}}])
    );
}

#[tokio::test]
async fn aggregates_group_by_the_other_columns_and_work_inside_embeds() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    assert_eq!(api.get("/rest/contacts?select=count()").await.expect(200).json(), json!([{"count": 3}]));
    let r = api.get("/rest/campaigns?select=total:total_recipients.sum(),most:total_recipients.max(),least:total_recipients.min()").await;
    assert_eq!(r.expect(200).json(), json!([{"total": 12, "most": 7, "least": 5}]));
    let r = api.get("/rest/campaigns?select=avg:total_recipients.avg()::int").await.expect(200);
    assert_eq!(r.json(), json!([{"avg": 6}]));
    let r = api.get("/rest/campaigns?select=group_id,n:count()&order=group_id.nullsfirst").await.expect(200);
    assert_eq!(r.json()[0]["n"], json!(1));
    let r = api.get("/rest/groups?select=name,contacts(count)&order=name").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Empty", "contacts": [{"count": 0}]}, {"name": "Friends", "contacts": [{"count": 2}]}]));
    let r = api.get("/rest/groups?select=name,contacts(n:count())&name=eq.Friends").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Friends", "contacts": [{"n": 2}]}]));
    // grouped by an embed
    let r = api.get("/rest/campaigns?select=count(),groups(name)&order=count").await.expect(400);
    assert!(!r.text.is_empty());
    let r = api.get("/rest/campaigns?select=n:count(),groups(name)").await.expect(200);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn writes_return_their_rows_with_embeds() {
    let (app, w, owner) = setup().await;
    let s = seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api
        .post(
            "/rest/campaigns?select=name,groups(name),message_templates(name)",
            json!({"name": "C3", "group_id": s.friends, "template_id": s.template}),
            &[REPRESENTATION],
        )
        .await
        .expect(201);
    assert_eq!(r.json(), json!([{"name": "C3", "groups": {"name": "Friends"}, "message_templates": {"name": "T"}}]));
    let r = api
        .patch(
            &format!("/rest/groups?id=eq.{}&select=name,contacts(first_name)&contacts.order=first_name", s.friends),
            json!({"name": "Pals"}),
            &[REPRESENTATION],
        )
        .await
        .expect(200);
    assert_eq!(r.json(), json!([{"name": "Pals", "contacts": [{"first_name": "Ann"}, {"first_name": "Bob"}]}]));
    let r = api.delete(&format!("/rest/campaigns?id=eq.{}&select=name,groups(name)", s.c1), &[REPRESENTATION]).await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "groups": {"name": "Pals"}}]));
    let r = api
        .patch(&format!("/rest/groups?id=eq.{}&select=name,nope(*)", s.empty), json!({"name": "X"}), &[REPRESENTATION])
        .await
        .expect(400);
    assert_eq!(r.error_code(), "PGRST200");
    assert_eq!(count(&owner, "groups", "name = 'X'").await, 0, "nothing written");
}

#[tokio::test]
async fn an_embed_never_shows_another_tenants_row() {
    let (app, w, owner) = setup().await;
    let s = seed(&owner, &w).await;
    let a = Api::new(&app, w.user_a, Some(w.tenant_a));
    let b = Api::new(&app, w.user_b, Some(w.tenant_b));
    // allowed: each tenant sees its own embedded rows
    let r = b.get("/rest/groups?select=name,contacts(first_name),campaigns(name)").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "B-team", "contacts": [{"first_name": "Bea"}], "campaigns": [{"name": "CB"}]}]));
    let r = a.get(&format!("/rest/campaigns?select=name,message_templates(name)&id=eq.{}", s.c1)).await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "message_templates": {"name": "T"}}]));
    // forbidden: a campaign of A pointing at B's template (a row the trigger would refuse,
    // written with it disabled) embeds nothing, because the template's own RLS applies
    owner.batch_execute("ALTER TABLE campaigns DISABLE TRIGGER rowcast_campaign_template_check").await.unwrap();
    owner.execute("UPDATE campaigns SET template_id = $1 WHERE id = $2", &[&s.template_b, &s.c1]).await.unwrap();
    owner.batch_execute("ALTER TABLE campaigns ENABLE TRIGGER rowcast_campaign_template_check").await.unwrap();
    let r = a.get(&format!("/rest/campaigns?select=name,message_templates(name,body)&id=eq.{}", s.c1)).await.expect(200);
    assert_eq!(r.json(), json!([{"name": "C1", "message_templates": null}]));
    let r = a.get(&format!("/rest/campaigns?select=name,message_templates!inner(name)&id=eq.{}", s.c1)).await.expect(200);
    assert_eq!(r.json(), json!([]));
    // and A's embeds of everything hold no row of B
    let r = a.get("/rest/groups?select=*,contacts(*),campaigns(*,message_templates(*))").await.expect(200);
    assert!(!r.text.contains(&w.tenant_b.to_string()) && !r.text.contains(&s.group_b.to_string()), "{}", r.text);
    let r = a.get("/rest/tenants?select=name,groups(name)&groups.order=name").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Tenant A", "groups": [{"name": "Empty"}, {"name": "Friends"}]}]));
}

#[tokio::test]
async fn a_tenant_user_embedding_webhooks_gets_nothing_and_the_secret_is_unreachable() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    let user = Api::new(&app, w.user_a, Some(w.tenant_a));
    admin
        .post("/rest/webhooks", json!({"name": "h", "url": "https://example.test/h", "events": ["contact_created"]}), &[])
        .await
        .expect(201);
    // allowed twin: the tenant admin sees the hook through the embed (without its secret)
    let r = admin.get("/rest/tenants?select=name,webhooks(*)").await.expect(200);
    let hooks = r.json()[0]["webhooks"].clone();
    assert_eq!(hooks.as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(hooks[0]["name"], "h");
    assert!(hooks[0].get("secret").is_none(), "{hooks}");
    assert!(!r.text.contains("whsec"), "{}", r.text);
    // forbidden twin: the tenant user gets nothing
    let r = user.get("/rest/tenants?select=name,webhooks(*)").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Tenant A", "webhooks": []}]));
    let r = user.get("/rest/tenants?select=name,webhooks(count)").await.expect(200);
    assert_eq!(r.json(), json!([{"name": "Tenant A", "webhooks": [{"count": 0}]}]));
    let r = user.get("/rest/tenants?select=name,webhooks!inner(name)").await.expect(200);
    assert_eq!(r.json(), json!([]));
    // the secret: not through an embed, an aggregate, a filter or an order on the embed
    for path in [
        "/rest/tenants?select=webhooks(secret)",
        "/rest/tenants?select=webhooks(s:secret)",
        "/rest/tenants?select=webhooks(secret.max())",
        "/rest/tenants?select=webhooks(secret::text)",
        "/rest/tenants?select=...webhooks(secret)",
        "/rest/tenants?select=webhooks(*)&webhooks.secret=like.whsec*",
        "/rest/tenants?select=webhooks(*)&webhooks.or=(secret.like.whsec*,name.eq.h)",
        "/rest/tenants?select=webhooks(*)&webhooks.order=secret",
        "/rest/webhooks?select=secret.max()",
        "/rest/webhooks?select=secret.count()",
    ] {
        let r = admin.get(path).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert!(!r.text.contains("whsec"), "{path}: {}", r.text);
    }
}

async fn create_ambiguous_tables(owner: &PgClient) {
    owner
        .batch_execute(
            "CREATE TABLE public.group_links (
               id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
               tenant_id uuid NOT NULL DEFAULT app.current_tenant_id(),
               from_group uuid NOT NULL, to_group uuid NOT NULL, parent_id uuid,
               CONSTRAINT group_links_tenant_id_id_key UNIQUE (tenant_id, id),
               CONSTRAINT group_links_from_fkey FOREIGN KEY (tenant_id, from_group) REFERENCES groups (tenant_id, id),
               CONSTRAINT group_links_to_fkey FOREIGN KEY (tenant_id, to_group) REFERENCES groups (tenant_id, id),
               CONSTRAINT group_links_parent_fkey FOREIGN KEY (tenant_id, parent_id) REFERENCES group_links (tenant_id, id));
             ALTER TABLE public.group_links ENABLE ROW LEVEL SECURITY;
             ALTER TABLE public.group_links FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON public.group_links USING (tenant_id = ANY ((SELECT app.tenant_scope())::uuid[]));
             GRANT SELECT, INSERT ON public.group_links TO rowcast_app;",
        )
        .await
        .unwrap();
}

/// Nudges the catalog reload until `path` answers `status`.
async fn until_status(api: &Api<'_>, owner: &PgClient, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        owner.batch_execute("NOTIFY rowcast_reload").await.unwrap();
        if api.get(path).await.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ambiguous_embeds_are_300_pgrst201_and_hints_resolve_them() {
    let (app, w, owner) = setup().await;
    let s = seed(&owner, &w).await;
    create_ambiguous_tables(&owner).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    until_status(&api, &owner, "/rest/group_links", 200).await;
    let link = |parent: Option<Uuid>| json!({"from_group": s.friends, "to_group": s.empty, "parent_id": parent});
    let root = api.post("/rest/group_links", link(None), &[REPRESENTATION]).await.expect(201).json()[0]["id"].clone();
    let root: Uuid = serde_json::from_value(root).unwrap();
    api.post("/rest/group_links", link(Some(root)), &[]).await.expect(201);

    let r = api.get("/rest/group_links?select=*,groups(*)").await.expect(300);
    assert_eq!(r.error_code(), "PGRST201");
    let body = r.json();
    assert_eq!(body["message"], "Could not embed because more than one relationship was found for 'group_links' and 'groups'");
    // `details` is a JSON array of candidates (not a string), as PostgREST's
    let details = body["details"].as_array().unwrap_or_else(|| panic!("details is not an array: {body}"));
    for d in details {
        assert_eq!(d["cardinality"], "many-to-one", "{d}");
        assert_eq!(d["embedding"], "group_links with groups", "{d}");
    }
    let rels: Vec<&str> = details.iter().map(|d| d["relationship"].as_str().unwrap()).collect();
    assert_eq!(
        rels,
        [
            "group_links_from_fkey using group_links(tenant_id, from_group) and groups(tenant_id, id)",
            "group_links_to_fkey using group_links(tenant_id, to_group) and groups(tenant_id, id)",
        ]
    );
    assert_eq!(
        body["hint"],
        "Try changing 'groups' to one of the following: 'groups!group_links_from_fkey', 'groups!group_links_to_fkey'. \
         Find the desired relationship in the 'details' key."
    );
    api.get("/rest/groups?select=*,group_links(*)").await.expect(300);
    // the hints pick one
    let r = api
        .get("/rest/group_links?select=from:groups!group_links_from_fkey(name),to:groups!to_group(name)&parent_id=is.null")
        .await
        .expect(200);
    assert_eq!(r.json(), json!([{"from": {"name": "Friends"}, "to": {"name": "Empty"}}]));
    let r = api.get("/rest/groups?select=name,outgoing:group_links!from_group(id)&order=name").await.expect(200);
    assert_eq!(r.json()[1]["outgoing"].as_array().unwrap().len(), 2);
    // self reference: the parent by column, the children by table name
    let r = api.get("/rest/group_links?select=id,parent_id(id),group_links(id)&parent_id=is.null").await.expect(200);
    let row = &r.json()[0];
    assert_eq!(row["parent_id"], Value::Null);
    assert_eq!(row["group_links"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_embeds_are_clear_4xx_never_5xx() {
    let (app, w, owner) = setup().await;
    seed(&owner, &w).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get("/rest/campaigns?select=*,nope(*)").await.expect(400);
    assert_eq!(r.error_code(), "PGRST200");
    assert_eq!(r.json()["message"], "Could not find a relationship between 'campaigns' and 'nope' in the schema cache");
    assert_eq!(api.get("/rest/campaigns?select=*,groups!nope(*)").await.expect(400).error_code(), "PGRST200");
    assert_eq!(api.get("/rest/contacts?select=*,webhook_logs(*)").await.expect(400).error_code(), "PGRST200");
    assert_eq!(api.get("/rest/campaigns?select=*&groups.name=eq.x").await.expect(400).error_code(), "PGRST108");
    let deep = format!("/rest/groups?select={}*{}", "contacts(groups(".repeat(6), "))".repeat(6));
    let r = api.get(&deep).await.expect(400);
    assert!(r.json()["message"].as_str().unwrap().contains("nested too deeply"), "{}", r.text);
    for path in [
        "/rest/groups?select=contacts(",
        "/rest/groups?select=contacts(*))",
        "/rest/groups?select=contacts!(*)",
        "/rest/groups?select=contacts!a!b(*)",
        "/rest/groups?select=contacts(nope)",
        "/rest/groups?select=contacts(first_name::regclass)",
        "/rest/groups?select=contacts(*),contacts(*)",
        "/rest/groups?select=contacts(*)&contacts.limit=-1",
        "/rest/groups?select=contacts(*)&contacts.limit=99999999999999999999",
        "/rest/groups?select=contacts(*)&contacts.select=id",
        "/rest/groups?select=contacts(*)&contacts.nope=eq.1",
        "/rest/groups?select=contacts(*)&contacts.order=nope",
        "/rest/groups?select=contacts(*)&contacts.first_name=foo.1",
        "/rest/groups?select=name.median()",
        "/rest/groups?select=nope.sum()",
        "/rest/groups?select=name,count()&order=id",
        "/rest/groups?select=contacts(*)&contacts=eq.1",
        "/rest/groups?select=...contacts(*)&contacts=is.null",
        "/rest/groups?select=contacts(id.sum())",
        "/rest/groups?select=contacts(*)&contacts.created_at=eq.notadate",
    ] {
        let r = api.get(path).await;
        assert!((400..500).contains(&r.status), "{path}: {} {}", r.status, r.text);
        r.error_code();
    }
}

#[tokio::test]
async fn related_orders_sort_by_a_to_one_embed_and_refuse_to_many() {
    let (app, w, owner) = setup().await;
    let s = seed(&owner, &w).await;
    // C3 uses template "A": C1 → "T", C2 → none, C3 → "A"
    let a = one(&owner, "INSERT INTO message_templates (tenant_id, name, body) VALUES ($1, 'A', 'Hi') RETURNING id", &[&w.tenant_a]).await;
    owner.execute("INSERT INTO campaigns (tenant_id, name, template_id) VALUES ($1, 'C3', $2)", &[&w.tenant_a, &a]).await.unwrap();
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let names = |body: Value| body.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let get = |q: &str| {
        let path = format!("/rest/campaigns?{q}");
        let api = &api;
        async move { names(api.get(&path).await.expect(200).json()) }
    };
    assert_eq!(get("select=name,message_templates(name)&order=message_templates(name).desc").await, ["C2", "C1", "C3"]);
    assert_eq!(get("select=name,message_templates(name)&order=message_templates(name).desc.nullslast").await, ["C1", "C3", "C2"]);
    assert_eq!(get("select=name,message_templates(name)&order=message_templates(name)").await, ["C3", "C1", "C2"]);
    // by alias; the ordered column need not be shown; spreads; ties broken by the next term
    assert_eq!(get("select=name,t:message_templates(id)&order=t(name).asc.nullsfirst").await, ["C2", "C3", "C1"]);
    assert_eq!(get("select=name,...message_templates(tpl:name)&order=message_templates(name).desc.nullslast").await, ["C1", "C3", "C2"]);
    assert_eq!(get("select=name,groups(name)&order=groups(name).nullsfirst,name.desc").await, ["C3", "C2", "C1"]);
    let r = api.get("/rest/campaigns?select=name,message_templates(name)&order=message_templates(name).desc.nullslast").await;
    assert_eq!(r.json()[0], json!({"name": "C1", "message_templates": {"name": "T"}}), "no order value leaks into the object");
    // on an embed's own rows
    let r = api.get(&format!("/rest/groups?select=name,campaigns(name,message_templates(name))&id=eq.{}", s.friends)).await.expect(200);
    assert_eq!(r.json()[0]["campaigns"], json!([{"name": "C1", "message_templates": {"name": "T"}}]));

    // to-many: PGRST118; not embedded: PGRST108
    let r = api.get("/rest/groups?select=name,contacts(first_name)&order=contacts(first_name)").await.expect(400);
    assert_eq!(r.error_code(), "PGRST118");
    let body = r.json();
    assert_eq!(body["message"], "A related order on 'contacts' is not possible");
    assert_eq!(body["details"], "'groups' and 'contacts' do not form a many-to-one or one-to-one relationship");
    for (path, code) in [
        ("/rest/campaigns?select=name&order=message_templates(name)", "PGRST108"),
        ("/rest/campaigns?select=name,t:message_templates(name)&order=message_templates(name)", "PGRST108"),
        ("/rest/campaigns?select=name,message_templates(name)&order=message_templates(nope)", "42703"),
        ("/rest/campaigns?select=name,message_templates(name)&order=message_templates(name", "PGRST100"),
        ("/rest/groups?select=name,campaigns(name,contacts(id))&campaigns.order=contacts(id)", "PGRST118"),
    ] {
        let r = api.get(path).await.expect(400);
        assert_eq!(r.error_code(), code, "{path}");
    }
}

#[tokio::test]
async fn related_orders_cannot_read_a_hidden_column() {
    let (app, w, _owner) = setup().await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin.post("/rest/webhooks", json!({"name": "h", "url": "https://example.test/h", "events": ["*"]}), &[]).await.expect(201);
    let direct = admin.get("/rest/webhook_logs?select=id,webhooks(secret)").await;
    assert!((400..500).contains(&direct.status), "{}", direct.text);
    admin.get("/rest/webhook_logs?select=id,webhooks(id)&order=webhooks(url)").await.expect(200);
    let r = admin.get("/rest/webhook_logs?select=id,webhooks(id)&order=webhooks(secret)").await.expect(direct.status);
    assert_eq!(r.error_code(), direct.error_code());
    let r = admin.get("/rest/webhook_logs?select=id,webhooks(id)&order=webhooks(secret->>a)").await.expect(direct.status);
    assert_eq!(r.error_code(), direct.error_code());
}

//! Response shapes: `Accept: text/csv` (reads), hidden columns never in a CSV.

use serde_json::json;

use crate::helpers::rest::{Api, contact, setup};

const CSV: (&str, &str) = ("accept", "text/csv");

#[tokio::test]
async fn csv_reads_have_a_header_line_and_one_line_per_row() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_a, "+15550000001", Some("Ann")).await;
    contact(&owner, w.tenant_a, "+15550000002", Some("Bob, \"the\" builder")).await;
    contact(&owner, w.tenant_a, "+15550000003", None).await;
    contact(&owner, w.tenant_b, "+15550000004", Some("Bea")).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get_with("/rest/contacts?select=phone,first_name&order=phone", &[CSV]).await.expect(200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        r.text, "phone,first_name\n+15550000001,Ann\n+15550000002,\"Bob, \"\"the\"\" builder\"\n+15550000003,",
        "tenant A's rows only; quoting as PostgREST (record text)"
    );
    let r = api.get_with("/rest/contacts?select=phone,n:first_name&phone=eq.%2B15550000001", &[CSV, ("prefer", "count=exact")]).await;
    let r = r.expect(200);
    assert_eq!(r.text, "phone,n\n+15550000001,Ann", "aliases name the header");
    assert_eq!(r.header("content-range"), Some("0-0/1"));
    let r = api.get_with("/rest/contacts?phone=eq.none", &[CSV]).await.expect(200);
    assert_eq!(r.text, "\n", "no rows: an empty header line");
}

#[tokio::test]
async fn hidden_columns_never_appear_in_csv() {
    let (app, w, _owner) = setup().await;
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin.post("/rest/webhooks", json!({"name": "h", "url": "https://example.test/h", "events": ["*"]}), &[]).await.expect(201);
    let all = admin.get_with("/rest/webhooks", &[CSV]).await.expect(200);
    let header = all.text.lines().next().unwrap();
    assert!(header.contains("name") && header.contains("url"), "{header}");
    assert!(!header.contains("secret") && !all.text.contains("whsec"), "select=* leaves the secret out: {}", all.text);
    let allowed = admin.get_with("/rest/webhooks?select=name,url", &[CSV]).await.expect(200);
    assert_eq!(allowed.text, "name,url\nh,https://example.test/h");
    let r = admin.get_with("/rest/webhooks?select=name,secret", &[CSV]).await.expect(403);
    assert_eq!(r.error_code(), "42501");
    assert!(!r.text.contains("whsec"));
}

#[tokio::test]
async fn planned_and_estimated_counts_come_from_the_planner() {
    let (app, w, owner) = setup().await;
    for i in 0..3 {
        contact(&owner, w.tenant_a, &format!("+1555000010{i}"), Some("Ann")).await;
    }
    contact(&owner, w.tenant_b, "+15550000200", Some("Bea")).await;
    owner.batch_execute("ANALYZE contacts").await.unwrap();
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let planned = api.get_with("/rest/contacts?select=id&limit=2", &[("prefer", "count=planned")]).await;
    let range = planned.header("content-range").unwrap().to_string();
    let total: i64 = range.split('/').nth(1).unwrap().parse().unwrap_or_else(|_| panic!("a number: {range}"));
    assert!(total >= 2, "{range}");
    assert_eq!(planned.header("preference-applied"), Some("count=planned"));
    // Estimated: exact when the estimate is under the row cap, so tenant A's 3 rows.
    let r = api.get_with("/rest/contacts?select=id&limit=2", &[("prefer", "count=estimated")]).await.expect(206);
    assert_eq!(r.header("content-range"), Some("0-1/3"));
    assert_eq!(r.header("preference-applied"), Some("count=estimated"));
    // Filters are planned with their bound values; a hidden column is still refused.
    api.get_with("/rest/contacts?select=id&first_name=eq.Ann", &[("prefer", "count=planned")]).await.expect(200);
    let admin = Api::new(&app, w.admin_a, Some(w.tenant_a));
    admin.get_with("/rest/webhooks?secret=eq.x", &[("prefer", "count=planned")]).await.expect(403);
}

#[tokio::test]
async fn return_headers_only_is_a_201_with_location_and_no_body() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let prefer = ("prefer", "return=headers-only");
    let r = api.post("/rest/contacts", json!({"phone": "+15550000301", "first_name": "Hed"}), &[prefer]).await.expect(201);
    assert!(r.text.is_empty(), "no body: {}", r.text);
    assert_eq!(r.header("preference-applied"), Some("return=headers-only"));
    let location = r.header("location").expect("Location").to_string();
    assert!(location.starts_with("/contacts?id=eq."), "{location}");
    let read = api.get(&format!("/rest{location}&select=first_name")).await.expect(200);
    assert_eq!(read.json(), json!([{"first_name": "Hed"}]), "Location addresses the new row");
    // Several rows: 201, no body, no Location (as PostgREST).
    let rows = json!([{"phone": "+15550000302"}, {"phone": "+15550000303"}]);
    let r = api.post("/rest/contacts", rows, &[prefer]).await.expect(201);
    assert!(r.text.is_empty() && r.header("location").is_none());
    assert_eq!(r.header("content-range"), Some("0-1/*"));
    let n: i64 = owner.query_one("SELECT count(*) FROM contacts", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
}

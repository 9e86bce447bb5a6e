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

//! What supabase-js needs beyond postgrest-js: `/rest/v1/…`, the `apikey` header as the
//! token, and CORS preflights that allow the headers it sends (and name what they refuse).

use serde_json::{Value, json};

use crate::helpers::rest::{contact, setup};
use crate::helpers::{TestApp, World, spawn_app_with};

async fn preflight(app: &TestApp, origin: &str, headers: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/rest/v1/contacts"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap();
    let (status, h) = (r.status().as_u16(), r.headers().clone());
    (status, h, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn rest_v1_serves_what_rest_serves_and_apikey_is_the_token_without_authorization() {
    let (app, w, owner) = setup().await;
    contact(&owner, w.tenant_a, "+15551230001", Some("Ann")).await;
    contact(&owner, w.tenant_b, "+15551230002", Some("Bea")).await;
    let token = app.token_for(w.user_a, None);
    let get = |path: &str, auth: Option<&str>, apikey: Option<&str>| {
        let mut req = app.http.get(app.url(path)).header("x-tenant-id", w.tenant_a.to_string());
        if let Some(a) = auth {
            req = req.header("authorization", a.to_string());
        }
        if let Some(k) = apikey {
            req = req.header("apikey", k.to_string());
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let bearer = format!("Bearer {token}");
    let plain = get("/rest/contacts?select=first_name", Some(&bearer), None).await;
    let v1 = get("/rest/v1/contacts?select=first_name", Some(&bearer), None).await;
    assert_eq!(plain, v1);
    assert_eq!(serde_json::from_str::<Value>(&v1.1).unwrap(), json!([{"first_name": "Ann"}]), "tenant A only");
    let by_key = get("/rest/v1/contacts?select=first_name", None, Some(&token)).await;
    assert_eq!(by_key, v1, "apikey alone authenticates");
    let (status, _) = get("/rest/v1/contacts", None, Some("garbage")).await;
    assert_eq!(status, 401, "a bad apikey is a bad token");
    let (status, body) = get("/rest/v1/contacts", Some("Bearer garbage"), Some(&token)).await;
    assert_eq!(status, 401, "Authorization wins over apikey: {body}");
    let (status, body) = get("/rest/v1/", Some(&bearer), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("openapi"));
    let (status, body) = get("/rest/v1/rpc/nope", Some(&bearer), None).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["code"].clone()), (404, json!("PGRST202")));
    let (status, body) = get("/rest/v1/a/b", Some(&bearer), None).await;
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["code"].clone()), (404, json!("PGRST125")));
}

#[tokio::test]
async fn preflights_allow_what_supabase_js_sends_and_name_what_they_refuse() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_ALLOWED_ORIGINS".into(), "https://app.example".into()))).await;
    let sent = "authorization,apikey,x-client-info,x-retry-count,prefer,range,accept-profile,content-profile,content-type,\
                traceparent,tracestate,baggage,x-tenant-id";
    let (status, h, body) = preflight(&app, "https://app.example", sent).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for header in sent.split(',') {
        assert!(allowed.contains(header), "{header} not in {allowed}");
    }
    let (status, h, body) = preflight(&app, "https://app.example", "authorization,x-evil-header").await;
    assert_eq!(status, 403);
    assert!(h.get("access-control-allow-origin").is_none());
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["message"].as_str().unwrap().contains("x-evil-header"), "names the header: {body}");
    let (status, _, body) = preflight(&app, "https://evil.example", "authorization").await;
    assert_eq!(status, 403);
    assert!(body.contains("origin not allowed: https://evil.example"), "{body}");
    // Actual requests: an allowed origin gets the header on errors too; another is refused before running.
    let w = World::create(&app.db.owner().await).await;
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let ok = app.http.get(app.url("/rest/v1/nope")).bearer_auth(&token).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 404);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    assert!(ok.headers()["access-control-expose-headers"].to_str().unwrap().contains("content-range"));
    let refused = app
        .http
        .post(app.url("/rest/v1/contacts"))
        .bearer_auth(&token)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"phone":"+15551239999"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let n: i64 = app.db.owner().await.query_one("SELECT count(*) FROM contacts", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "nothing written for a refused origin");
}

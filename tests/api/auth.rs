//! Authentication and tenant selection over real HTTP. A bad token is a 401 before any
//! database work: the pool never even opens a connection.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, TestApp, World, spawn_app, spawn_app_with};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(claims: &Value, secret: &str) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn claims(user: Uuid) -> Value {
    json!({"sub": user, "aud": "rowcast", "exp": now() + 600, "iat": now()})
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

fn alg_none(user: Uuid) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(user).to_string());
    format!("{header}.{body}.")
}

async fn status_of(app: &TestApp, auth: Option<String>) -> (u16, Value) {
    let mut req = app.http.get(app.url("/api/me"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_bad_token_is_a_401_without_touching_the_database_and_a_good_one_passes() {
    let app = spawn_app().await;
    let world = World::create(&app.db.owner().await).await;
    let user = world.user_a;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong scheme", Some(format!("Basic {}", sign(&claims(user), JWT_SECRET)))),
        ("wrong key", Some(format!("Bearer {}", sign(&claims(user), "another-secret-0123456789abcdef0123456789")))),
        ("alg none", Some(format!("Bearer {}", alg_none(user)))),
        ("expired", Some(format!("Bearer {}", sign(&with(claims(user), "exp", json!(now() - 120)), JWT_SECRET)))),
        ("future nbf", Some(format!("Bearer {}", sign(&with(claims(user), "nbf", json!(now() + 600)), JWT_SECRET)))),
        ("missing aud", Some(format!("Bearer {}", sign(&without(claims(user), "aud"), JWT_SECRET)))),
        ("wrong aud", Some(format!("Bearer {}", sign(&with(claims(user), "aud", json!("someone-else")), JWT_SECRET)))),
        ("missing exp", Some(format!("Bearer {}", sign(&without(claims(user), "exp"), JWT_SECRET)))),
        ("sub not a uuid", Some(format!("Bearer {}", sign(&with(claims(user), "sub", json!("bob")), JWT_SECRET)))),
        ("garbage", Some("Bearer not-a-token-at-all".into())),
        ("two parts", Some("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0".into())),
    ];
    let checkouts = app.state.db.checkouts();
    for (name, header) in cases {
        let (status, body) = status_of(&app, header).await;
        assert_eq!(status, 401, "{name}: expected 401, got {status} {body}");
        let want = match name {
            "no header" => "PGRST302",
            "expired" | "future nbf" | "wrong aud" | "sub not a uuid" => "PGRST303",
            _ => "PGRST301",
        };
        assert_eq!(body["code"], want, "{name}: PostgREST's code: {body}");
    }
    assert_eq!(app.state.db.checkouts(), checkouts, "no pool connection was taken for a bad token");
    let (status, body) = status_of(&app, Some(format!("Bearer {}", sign(&claims(user), JWT_SECRET)))).await;
    assert_eq!(status, 200, "the valid twin passes: {body}");
    assert_eq!(body["user"]["id"], json!(user));
    assert_eq!(body["role"], "tenant_user");
    assert_eq!(app.state.db.checkouts(), checkouts + 1, "the valid twin took exactly one");
}

#[tokio::test]
async fn expiry_within_the_30_second_leeway_is_still_accepted() {
    let app = spawn_app().await;
    let world = World::create(&app.db.owner().await).await;
    let token = sign(&with(claims(world.user_a), "exp", json!(now() - 10)), JWT_SECRET);
    assert_eq!(status_of(&app, Some(format!("Bearer {token}"))).await.0, 200);
}

#[tokio::test]
async fn me_reports_the_database_role_and_tenant_not_the_token() {
    let app = spawn_app().await;
    let w = World::create(&app.db.owner().await).await;
    let token = sign(&with(claims(w.admin_a), "role", json!("platform_admin")), JWT_SECRET);
    let body = app.get_json("/api/me", &token, 200).await;
    assert_eq!(body["role"], "tenant_admin", "a role claim in the token is ignored");
    assert_eq!(body["tenant"]["id"], json!(w.tenant_a));
    assert_eq!(body["tenant"]["name"], "Tenant A");
}

#[tokio::test]
async fn tenant_comes_from_the_header_or_the_query_and_non_members_are_refused() {
    let app = spawn_app().await;
    let w = World::create(&app.db.owner().await).await;
    let owner = app.db.owner().await;
    owner
        .execute("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'tenant_user')", &[&w.tenant_b, &w.admin_a])
        .await
        .unwrap();
    let token = app.token_for(w.admin_a, None);
    let ambiguous = app.get_json("/api/me", &token, 400).await;
    assert_eq!(ambiguous["code"], "22023", "two tenants and no choice: {ambiguous}");
    let via_query = app.get_json(&format!("/api/me?tenantId={}", w.tenant_b), &token, 200).await;
    assert_eq!(via_query["role"], "tenant_user");
    let resp = app.http.get(app.url("/api/me")).bearer_auth(&token).header("x-tenant-id", w.tenant_a.to_string()).send().await.unwrap();
    let via_header: Value = resp.json().await.unwrap();
    assert_eq!(via_header["role"], "tenant_admin");
    let stranger = app.token_for(w.user_b, None);
    let refused =
        app.http.get(app.url("/api/me")).bearer_auth(&stranger).header("x-tenant-id", w.tenant_a.to_string()).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 403, "a member of B cannot enter A");
    let bad = app.http.get(app.url("/api/me")).bearer_auth(&token).header("x-tenant-id", "not-a-uuid").send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn a_tenant_claim_restricts_the_token_to_that_tenant() {
    let app = spawn_app().await;
    let w = World::create(&app.db.owner().await).await;
    let token = app.token_for(w.platform_admin, Some(w.tenant_a));
    let inside = app.get_json("/api/me", &token, 200).await;
    assert_eq!(inside["tenantId"], json!(w.tenant_a), "the claim is the default tenant");
    let resp = app.http.get(app.url("/api/me")).bearer_auth(&token).header("x-tenant-id", w.tenant_b.to_string()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "asking for another tenant than the claim");
}

#[tokio::test]
async fn errors_speak_french_when_asked_and_english_otherwise() {
    let app = spawn_app().await;
    let fr: Value =
        app.http.get(app.url("/api/me")).header("accept-language", "fr-FR,fr;q=0.9").send().await.unwrap().json().await.unwrap();
    assert_eq!(fr["message"], "jeton d'accès manquant");
    let en: Value = app.http.get(app.url("/api/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(en["message"], "missing bearer token");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_clients() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/live")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app.http.get(app.url("/no/such/route")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let generated = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(Uuid::parse_str(generated).is_ok(), "a fresh id when the client sends none");
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_after_the_wait_bound_then_recovers() {
    let app = spawn_app_with(|v| {
        v.push(("ROWCAST_POOL_SIZE".into(), "1".into()));
        v.push(("ROWCAST_POOL_TIMEOUT_MS".into(), "200".into()));
    })
    .await;
    let w = World::create(&app.db.owner().await).await;
    let token = app.token_for(w.user_a, None);
    let held = app.state.db.conn().await.unwrap();
    let busy = app.get_json("/api/me", &token, 503).await;
    assert!(busy["message"].as_str().unwrap().contains("pool"), "{busy}");
    drop(held);
    app.get_json("/api/me", &token, 200).await;
}

#[tokio::test]
async fn health_live_ready_and_locales_answer_without_a_token() {
    let app = spawn_app().await;
    for path in ["/health", "/live", "/ready", "/api/locales"] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    let health: Value = app.http.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["database"]["status"], "up");
    let locales: Value = app.http.get(app.url("/api/locales")).send().await.unwrap().json().await.unwrap();
    assert_eq!(locales["locales"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text() {
    let app = spawn_app().await;
    app.http.get(app.url("/live")).send().await.unwrap();
    let body = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("rowcast_http_requests_total"), "{body}");
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_configured() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_METRICS_TOKEN".into(), "scrape-me".into()))).await;
    let refused = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let allowed = app.http.get(app.url("/metrics")).bearer_auth("scrape-me").send().await.unwrap();
    assert_eq!(allowed.status().as_u16(), 200);
}

#[tokio::test]
async fn performance_stats_are_for_platform_admins_only() {
    let app = spawn_app().await;
    let w = World::create(&app.db.owner().await).await;
    app.get_json("/api/me", &app.token_for(w.user_a, None), 200).await;
    let stats = app.get_json("/api/performance/stats", &app.token_for(w.platform_admin, None), 200).await;
    assert!(stats["routes"]["GET /api/me"]["requests"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(stats["tenants"].as_array().is_some_and(|t| !t.is_empty()), "{stats}");
    assert!(stats["pool"]["maxSize"].as_u64().is_some());
    app.get_json("/api/performance/stats", &app.token_for(w.admin_a, None), 403).await;
    app.get_json("/api/performance/stats", &app.token_for(w.platform_admin, Some(w.tenant_a)), 403).await;
}

#[tokio::test]
async fn transactions_over_the_slow_threshold_are_listed() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_SLOW_QUERY_MS".into(), "0".into()))).await;
    let w = World::create(&app.db.owner().await).await;
    app.get_json("/api/me", &app.token_for(w.user_b, None), 200).await;
    let stats = app.get_json("/api/performance/stats", &app.token_for(w.platform_admin, None), 200).await;
    let slow = stats["slowTransactions"].as_array().unwrap();
    assert!(slow.iter().any(|s| s["tenantId"] == json!(w.tenant_b)), "{stats}");
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url("/rest/contacts"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization,prefer,range")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let app = spawn_app_with(|v| v.push(("ROWCAST_ALLOWED_ORIGINS".into(), "https://app.example".into()))).await;
    let ok = preflight(&app, "https://app.example").await;
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    let refused = preflight(&app, "https://evil.example").await;
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_allowed_origins_no_cors_headers_are_sent() {
    let app = spawn_app().await;
    let resp = preflight(&app, "https://app.example").await;
    assert!(!resp.status().is_success(), "{}", resp.status());
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

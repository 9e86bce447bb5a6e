//! Bad input gets a 4xx with a PostgREST-shaped body, never a 5xx, never a partial write.

use serde_json::json;

use crate::helpers::rest::{Api, Resp, contact, count, setup};

struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<String>,
    status: u16,
}

fn case(what: &'static str, method: &'static str, path: &str, body: Option<&str>, status: u16) -> Case {
    Case { what, method, path: path.to_string(), headers: vec![], body: body.map(str::to_string), status }
}

fn with_header(mut c: Case, name: &'static str, value: &'static str) -> Case {
    c.headers.push((name, value));
    c
}

fn cases(contact_id: uuid::Uuid) -> Vec<Case> {
    let deep = format!("/rest/contacts?or=({}a.eq.1{})", "or(".repeat(40), ")".repeat(40));
    let wide = format!("/rest/contacts?id=in.({})", vec!["00000000-0000-0000-0000-000000000000"; 1000].join(","));
    vec![
        case("malformed JSON", "POST", "/rest/contacts", Some("{\"phone\": "), 400),
        case("trailing garbage", "POST", "/rest/contacts", Some("{} x"), 400),
        case("JSON scalar", "POST", "/rest/contacts", Some("42"), 400),
        case("array of scalars", "POST", "/rest/contacts", Some("[1,2]"), 400),
        case("PATCH with an array", "PATCH", &format!("/rest/contacts?id=eq.{contact_id}"), Some("[{}]"), 400),
        case("NUL in a JSON string", "POST", "/rest/contacts", Some(r#"{"phone":"+15550000001","first_name":"a\u0000b"}"#), 400),
        case("NUL in a JSON key", "POST", "/rest/contacts", Some(r#"{"ph\u0000one":"+15550000001"}"#), 400),
        case("raw NUL byte in the body", "POST", "/rest/contacts", Some("{\"phone\":\"+1555\0\"}"), 400),
        case("NUL in the query", "GET", "/rest/contacts?first_name=eq.a%00b", None, 400),
        case("unknown table", "GET", "/rest/nope", None, 404),
        case("internal schema table", "GET", "/rest/events", None, 404),
        case("schema-qualified name", "GET", "/rest/app.events", None, 404),
        case("nested path", "GET", "/rest/contacts/1", None, 404),
        case("unknown function", "POST", "/rest/rpc/nope", Some("{}"), 404),
        case("internal function", "POST", "/rest/rpc/begin_request", Some("{}"), 404),
        case("unknown select column", "GET", "/rest/contacts?select=nope", None, 400),
        case("unknown filter column", "GET", "/rest/contacts?nope=eq.1", None, 400),
        case("unknown order column", "GET", "/rest/contacts?order=nope.desc", None, 400),
        case("unknown operator", "GET", "/rest/contacts?phone=approx.1", None, 400),
        case("unsupported operator", "GET", "/rest/contacts?attributes=cs.{}", None, 400),
        case("missing operator", "GET", "/rest/contacts?phone=1", None, 400),
        case("embedding", "GET", "/rest/contacts?select=*,groups(*)", None, 400),
        case("disallowed cast", "GET", "/rest/contacts?select=id::regclass", None, 400),
        case("wrong type in a filter", "GET", "/rest/contacts?id=eq.42", None, 400),
        case("wrong type in an in list", "GET", "/rest/contacts?id=in.(1,2)", None, 400),
        case("is true on a uuid", "GET", "/rest/contacts?id=is.true", None, 400),
        case("malformed jsonb in a filter", "GET", "/rest/contacts?attributes=eq.%7Bbad", None, 400),
        case("like on a number with a bad cast", "GET", "/rest/campaigns?select=sent_count::uuid", None, 400),
        case("negative limit", "GET", "/rest/contacts?limit=-1", None, 400),
        case("huge limit", "GET", "/rest/contacts?limit=1000000", None, 400),
        case("limit past u64", "GET", "/rest/contacts?limit=99999999999999999999999", None, 400),
        case("huge offset", "GET", "/rest/contacts?offset=18446744073709551615", None, 400),
        case("offset past u64", "GET", "/rest/contacts?offset=99999999999999999999999", None, 400),
        case("non-numeric limit", "GET", "/rest/contacts?limit=ten", None, 400),
        case("repeated select", "GET", "/rest/contacts?select=id&select=phone", None, 400),
        case("logic nested too deeply", "GET", &deep, None, 400),
        case("unbalanced parentheses", "GET", "/rest/contacts?or=(phone.eq.1", None, 400),
        with_header(case("unsatisfiable range", "GET", "/rest/contacts", None, 416), "range", "9-1"),
        with_header(case("malformed range", "GET", "/rest/contacts", None, 400), "range", "x-y"),
        with_header(case("unsupported Accept", "GET", "/rest/contacts", None, 406), "accept", "text/csv"),
        with_header(case("strict unknown preference", "GET", "/rest/contacts", None, 400), "prefer", "handling=strict, tx=rollback"),
        case("filters on POST", "POST", "/rest/contacts?phone=eq.1", Some("{}"), 400),
        case("limit on PATCH", "PATCH", &format!("/rest/contacts?id=eq.{contact_id}&limit=1"), Some("{}"), 400),
        case("unknown rpc argument", "POST", "/rest/rpc/campaign_start", Some(r#"{"nope":1}"#), 400),
        case("missing rpc argument", "POST", "/rest/rpc/campaign_start", Some("{}"), 400),
        case("rpc arguments not an object", "POST", "/rest/rpc/campaign_start", Some("[1]"), 400),
        case("rpc argument of the wrong type", "POST", "/rest/rpc/campaign_start", Some(r#"{"p_campaign_id":"x"}"#), 400),
        case("PUT", "PUT", "/rest/contacts", Some("{}"), 405),
        case("GET on an rpc", "GET", "/rest/rpc/campaign_start", None, 405),
        case("wide in list of the right type", "GET", &wide, None, 200),
    ]
}

async fn run(api: &Api<'_>, c: &Case) -> Resp {
    api.send(c.method, &c.path, &c.headers, c.body.clone()).await
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_a_postgrest_body_and_never_a_write() {
    let (app, w, owner) = setup().await;
    let id = contact(&owner, w.tenant_a, "+15550000042", Some("Keep")).await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let mut failures = Vec::new();
    for c in cases(id) {
        let r = run(&api, &c).await;
        if r.status != c.status {
            failures.push(format!(
                "{}: {} {} → {} (expected {}): {}",
                c.what,
                c.method,
                c.path.chars().take(80).collect::<String>(),
                r.status,
                c.status,
                r.text
            ));
            continue;
        }
        if r.status >= 400 && c.method != "HEAD" {
            let body = r.json();
            let shaped = ["code", "message", "details", "hint"].iter().all(|k| body.get(k).is_some());
            if !shaped {
                failures.push(format!("{}: body is not PostgREST-shaped: {body}", c.what));
            }
        }
        assert!(r.header("x-request-id").is_some(), "{}: no X-Request-Id", c.what);
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(count(&owner, "contacts", "true").await, 1, "nothing was written");
    assert_eq!(count(&owner, "contacts", "first_name = 'Keep' AND deleted_at IS NULL").await, 1, "nothing was changed");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_writes_nothing() {
    let (app, w, owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let big = json!({"phone": "+15550000001", "first_name": "x".repeat(2 * 1024 * 1024)}).to_string();
    let r = api.send("POST", "/rest/contacts", &[], Some(big)).await.expect(413);
    assert_eq!(r.error_code(), "RC413");
    let streamed = chunked_post(&app, &api.token, w.tenant_a, 64, 32 * 1024).await;
    assert!(streamed.starts_with("HTTP/1.1 413"), "a chunked body without Content-Length is capped too: {streamed}");
    assert_eq!(count(&owner, "contacts", "true").await, 0);
}

/// POSTs `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` (no
/// Content-Length) over a raw socket; gives the response head.
async fn chunked_post(app: &crate::helpers::TestApp, token: &str, tenant: uuid::Uuid, chunks: usize, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    let head = format!(
        "POST /rest/contacts HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\nx-tenant-id: {tenant}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{size:x}\r\n{}\r\n", "x".repeat(size));
    for _ in 0..chunks {
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn errors_are_in_french_with_accept_language_fr() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let en = api.get("/rest/nope").await.expect(404).json();
    let fr = api.get_with("/rest/nope", &[("accept-language", "fr-FR,fr;q=0.9")]).await.expect(404).json();
    assert_eq!(en["code"], fr["code"]);
    assert!(fr["message"].as_str().unwrap().contains("introuvable"), "{fr}");
    let fr = api.get_with("/rest/contacts?nope=eq.1", &[("accept-language", "fr")]).await.expect(400).json();
    assert!(fr["message"].as_str().unwrap().contains("n'existe pas"), "{fr}");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_clients() {
    let (app, w, _owner) = setup().await;
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    let r = api.get_with("/rest/contacts", &[("x-request-id", "trace-123")]).await.expect(200);
    assert_eq!(r.header("x-request-id"), Some("trace-123"));
    let r = api.get("/rest/nope").await.expect(404);
    assert!(r.header("x-request-id").is_some());
    let r = app.http.get(app.url("/rest/contacts")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("x-request-id").is_some());
}

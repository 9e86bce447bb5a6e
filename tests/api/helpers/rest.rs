//! The REST test client: `Api` (one user in one tenant over real HTTP), `Resp`, and the
//! fixtures the `rest_*` files share.

use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio_postgres::Client as PgClient;
use uuid::Uuid;

use super::{TestApp, World, spawn_app};

/// One HTTP response, read whole.
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text);
        self
    }

    /// The `code` of a PostgREST-shaped error body (asserting the shape).
    pub fn error_code(&self) -> String {
        let body = self.json();
        for key in ["code", "message", "details", "hint"] {
            assert!(body.get(key).is_some(), "error body lacks {key}: {body}");
        }
        body["code"].as_str().unwrap_or_default().to_string()
    }
}

/// An HTTP client acting as one user in one tenant.
pub struct Api<'a> {
    pub app: &'a TestApp,
    pub token: String,
    pub tenant: Option<Uuid>,
}

impl<'a> Api<'a> {
    pub fn new(app: &'a TestApp, user: Uuid, tenant: Option<Uuid>) -> Self {
        Api { app, token: app.token_for(user, None), tenant }
    }

    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.app.http.request(method, self.app.url(path)).bearer_auth(&self.token);
        if let Some(t) = self.tenant {
            req = req.header("x-tenant-id", t.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        Resp { status, headers, text: resp.text().await.unwrap_or_default() }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], None).await
    }

    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("GET", path, headers, None).await
    }

    pub async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.send("POST", path, headers, Some(body.to_string())).await
    }

    pub async fn patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.send("PATCH", path, headers, Some(body.to_string())).await
    }

    pub async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("DELETE", path, headers, None).await
    }
}

pub const REPRESENTATION: (&str, &str) = ("prefer", "return=representation");
pub const SINGULAR: (&str, &str) = ("accept", "application/vnd.pgrst.object+json");

/// A spawned app with the two-tenant world.
pub async fn setup() -> (TestApp, World, PgClient) {
    let app = spawn_app().await;
    let owner = app.db.owner().await;
    let world = World::create(&owner).await;
    (app, world, owner)
}

/// Inserts a contact as the owner (bypassing RLS); gives its id.
pub async fn contact(owner: &PgClient, tenant: Uuid, phone: &str, first_name: Option<&str>) -> Uuid {
    owner
        .query_one("INSERT INTO contacts (tenant_id, phone, first_name) VALUES ($1, $2, $3) RETURNING id", &[&tenant, &phone, &first_name])
        .await
        .unwrap()
        .get(0)
}

/// Rows of `table` matching `where_sql`, counted by the owner (RLS bypassed).
pub async fn count(owner: &PgClient, table: &str, where_sql: &str) -> i64 {
    owner.query_one(&format!("SELECT count(*) FROM {table} WHERE {where_sql}"), &[]).await.unwrap().get(0)
}

/// The values of `field` in a JSON array body.
pub fn field(body: &Value, name: &str) -> Vec<Value> {
    body.as_array().unwrap_or_else(|| panic!("not an array: {body}")).iter().map(|r| r[name].clone()).collect()
}

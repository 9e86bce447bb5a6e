//! Test harness: one private PostgreSQL cluster per test process, a migrated template
//! database, a fresh database cloned from it per test, and the real server on port 0.

pub mod rest;
pub mod ws;

use std::time::Duration;

use rowcast::app::Application;
use rowcast::config::{Env, Settings};
use rowcast::db::embedded::{EmbeddedCluster, quote_ident, start_ephemeral};
use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";
pub const TEMPLATE: &str = "rowcast_template";

pub struct TestCluster {
    pub cluster: EmbeddedCluster,
    pub app_password: String,
}

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();

/// The process-wide cluster with a migrated template database.
pub async fn cluster() -> &'static TestCluster {
    CLUSTER
        .get_or_init(|| async {
            let cluster = start_ephemeral(vec![("max_connections".into(), "400".into())]).await.expect("start the embedded cluster");
            cluster.ensure_database(TEMPLATE).await.expect("create the template database");
            let app_password = "app-password-for-tests".to_string();
            rowcast::db::migrate::migrate(&cluster.pg_config(TEMPLATE), &app_password).await.expect("migrate the template");
            TestCluster { cluster, app_password }
        })
        .await
}

pub async fn connect(config: &tokio_postgres::Config) -> Client {
    let (client, conn) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// A fresh database cloned from the migrated template.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let c = cluster().await;
        let name = format!("t_{}", Uuid::new_v4().simple());
        let admin = connect(&c.cluster.pg_config("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {} TEMPLATE {}", quote_ident(&name), quote_ident(TEMPLATE)))
            .await
            .expect("clone the template database");
        TestDb { name }
    }

    /// Superuser connection settings (the owner: bypasses RLS).
    pub fn owner_config(&self) -> tokio_postgres::Config {
        CLUSTER.get().expect("cluster started").cluster.pg_config(&self.name)
    }

    /// `rowcast_app` connection settings (bound by RLS).
    pub fn app_config(&self) -> tokio_postgres::Config {
        let c = CLUSTER.get().expect("cluster started");
        let mut config = c.cluster.pg_config(&self.name);
        config.user("rowcast_app").password(c.app_password.as_bytes());
        config
    }

    pub async fn owner(&self) -> Client {
        connect(&self.owner_config()).await
    }

    pub async fn app(&self) -> Client {
        connect(&self.app_config()).await
    }

    pub fn owner_url(&self) -> String {
        CLUSTER.get().expect("cluster started").cluster.url(&self.name)
    }
}

/// Two tenants with one user of each role in each, plus a platform admin.
#[derive(Clone, Debug)]
pub struct World {
    pub tenant_a: Uuid,
    pub tenant_b: Uuid,
    pub platform_admin: Uuid,
    pub admin_a: Uuid,
    pub user_a: Uuid,
    pub admin_b: Uuid,
    pub user_b: Uuid,
}

impl World {
    pub async fn create(owner: &Client) -> World {
        let tenant = |name: &'static str| async move {
            owner.query_one("INSERT INTO tenants (name) VALUES ($1) RETURNING id", &[&name]).await.unwrap().get::<_, Uuid>(0)
        };
        let tenant_a = tenant("Tenant A").await;
        let tenant_b = tenant("Tenant B").await;
        let user = |email: &'static str, platform: bool| async move {
            owner
                .query_one(
                    "INSERT INTO users (email, name, platform_role) VALUES ($1, $1, CASE WHEN $2 THEN 'platform_admin' END) RETURNING id",
                    &[&email, &platform],
                )
                .await
                .unwrap()
                .get::<_, Uuid>(0)
        };
        let platform_admin = user("root@platform.test", true).await;
        let admin_a = user("admin@a.test", false).await;
        let user_a = user("user@a.test", false).await;
        let admin_b = user("admin@b.test", false).await;
        let user_b = user("user@b.test", false).await;
        for (t, u, role) in [
            (tenant_a, admin_a, "tenant_admin"),
            (tenant_a, user_a, "tenant_user"),
            (tenant_b, admin_b, "tenant_admin"),
            (tenant_b, user_b, "tenant_user"),
        ] {
            owner.execute("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)", &[&t, &u, &role]).await.unwrap();
        }
        World { tenant_a, tenant_b, platform_admin, admin_a, user_a, admin_b, user_b }
    }
}

/// Runs `sql` as rowcast_app in a transaction entered with `app.begin_request(user, tenant)`,
/// then rolls back. Returns the rows, or the database error.
pub async fn as_user(
    app: &mut Client,
    user: Uuid,
    tenant: Option<Uuid>,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let tx = app.transaction().await?;
    tx.query("SELECT * FROM app.begin_request($1, $2)", &[&user, &tenant]).await?;
    let rows = tx.query(sql, params).await;
    tx.rollback().await?;
    rows
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {err}"))
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub state: std::sync::Arc<rowcast::app::AppState>,
}

pub fn base_env(db: &TestDb) -> Vec<(String, String)> {
    let c = CLUSTER.get().expect("cluster started");
    [
        ("DATABASE_URL", db.owner_url()),
        ("ROWCAST_APP_PASSWORD", c.app_password.clone()),
        ("ROWCAST_BIND", "127.0.0.1:0".into()),
        ("ROWCAST_JWT_SECRET", JWT_SECRET.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the server on a fresh database; `tweak` may add or replace environment variables.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Vec<(String, String)>)) -> TestApp {
    let db = TestDb::new().await;
    let mut vars = base_env(&db);
    tweak(&mut vars);
    let settings = Settings::from_env(&Env::from_pairs(vars)).expect("valid test settings");
    let app = Application::build(settings).await.expect("build the application");
    let port = app.port();
    let shutdown = app.shutdown_token();
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        shutdown,
        state,
    }
}

impl TestApp {
    pub fn token_for(&self, user: Uuid, tenant: Option<Uuid>) -> String {
        self.state.jwt.mint(user, tenant, Duration::from_secs(3600)).expect("mint")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// GET with a bearer token, asserting the status; returns the JSON body.
    pub async fn get_json(&self, path: &str, token: &str, expect: u16) -> serde_json::Value {
        let resp = self.http.get(self.url(path)).bearer_auth(token).send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, expect, "GET {path}: unexpected status, body: {body}");
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

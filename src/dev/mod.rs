//! `rowcast dev`: a private cluster, migrations, demo data, the server, and ready-to-paste
//! tokens and commands. A second run reuses the cluster and its data.

pub mod state;

use std::time::Duration;

use uuid::Uuid;

use crate::app::Application;
use crate::config::{Env, Settings};
use state::DevState;

const SEED: &str = include_str!("seed.sql");

/// The demo users printed with a token each: (id, email, role, tenant).
pub const DEMO_USERS: &[(&str, &str, &str, Option<&str>)] = &[
    ("20000000-0000-4000-8000-000000000001", "admin@rowcast.dev", "platform_admin", None),
    ("20000000-0000-4000-8000-000000000002", "alice@acme.test", "tenant_admin", Some("10000000-0000-4000-8000-000000000001")),
    ("20000000-0000-4000-8000-000000000003", "bob@acme.test", "tenant_user", Some("10000000-0000-4000-8000-000000000001")),
    ("20000000-0000-4000-8000-000000000004", "carol@globex.test", "tenant_admin", Some("10000000-0000-4000-8000-000000000002")),
    ("20000000-0000-4000-8000-000000000005", "dan@globex.test", "tenant_user", Some("10000000-0000-4000-8000-000000000002")),
];

pub async fn run() -> anyhow::Result<()> {
    let env = Env::load();
    let mut state = DevState::load_or_create()?;
    let mut cluster = if env.is_explicit("DATABASE_URL") {
        None
    } else {
        eprintln!("starting the private PostgreSQL cluster in {} …", state::pg_data_dir().display());
        Some(state.start_cluster().await?)
    };
    let env = Env::load();
    let mut settings = Settings::from_env(&env)?;
    if !env.is_explicit("ROWCAST_WEBHOOK_ALLOW_PRIVATE") {
        settings.webhooks.allow_private = true;
        eprintln!("ROWCAST_WEBHOOK_ALLOW_PRIVATE=true (set by rowcast dev): webhooks may reach loopback and private addresses");
    }
    let report = crate::db::migrate::migrate(
        &settings.owner_pg_config()?,
        settings.app_password.as_ref().map(|p| p.expose().as_str()).unwrap_or(&state.app_password),
    )
    .await?;
    if !report.applied.is_empty() {
        eprintln!("applied migrations: {}", report.applied.join(", "));
    }
    seed(&settings.owner_pg_config()?).await?;
    if settings.app_database_url.is_none() && settings.app_password.is_none() {
        settings.app_password = Some(crate::config::Secret::new(state.app_password.clone()));
    }
    let app = Application::build(settings).await?;
    let stop = crate::app::shutdown_signal()?;
    print_banner(&app, &state, cluster.as_ref().map(|c| c.port()));
    let shutdown = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    stop.await;
    eprintln!("stopping …");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    if let Some(cluster) = cluster.as_mut() {
        cluster.stop().await;
    }
    eprintln!("stopped");
    Ok(())
}

async fn seed(owner: &tokio_postgres::Config) -> anyhow::Result<()> {
    let (client, conn) = owner.connect(tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    client.batch_execute(SEED).await?;
    drop(client);
    let _ = conn.await;
    Ok(())
}

fn print_banner(app: &Application, state: &DevState, pg_port: Option<u16>) {
    let st = app.state();
    let addr = format!("127.0.0.1:{}", app.port());
    let base = format!("http://{addr}");
    println!("rowcast dev is running");
    println!("listening on {base}");
    if let Some(port) = pg_port {
        println!("\nDBA (psql):\n  psql \"{}\"", state.owner_url(port));
    }
    println!("\nenvironment for other tools: {}", state::dev_env_path().display());
    println!("\ndemo users (tokens valid 24h):");
    for (id, email, role, tenant) in DEMO_USERS {
        let user = Uuid::parse_str(id).unwrap_or_default();
        let Ok(token) = st.jwt.mint(user, None, Duration::from_secs(24 * 3600)) else { continue };
        println!("\n  {email} ({role}{})", tenant.map(|t| format!(", tenant {t}")).unwrap_or_default());
        println!("  TOKEN={token}");
    }
    let (_, _, _, tenant) = DEMO_USERS[1];
    println!("\ntry it (as alice, tenant admin of Acme):");
    println!("  curl -s {base}/api/me -H \"Authorization: Bearer $TOKEN\"");
    println!("  curl -s {base}/health");
    println!("  websocat \"ws://{addr}/ws?token=$TOKEN&tenant={}\"", tenant.unwrap_or_default());
    println!("  # resume after a disconnect without losing an event: add &since=<last seq received>");
    println!("  curl -s \"{base}/rest/contacts?select=id,phone,first_name&limit=5\" -H \"Authorization: Bearer $TOKEN\"");
    println!("\nCtrl-C stops the server and the cluster.");
}

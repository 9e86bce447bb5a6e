//! Command line: `dev`, `serve`, `migrate`, `token`, `admin`. Every failure is one line on
//! stderr and a non-zero exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::admin::AdminCommand;
use crate::app::Application;
use crate::config::{Env, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "rowcast",
    version,
    about = "Multi-tenant PostgreSQL backend: RLS-enforced REST (PostgREST dialect) and resumable realtime events"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Zero-config demo: private PostgreSQL under ./.rowcast/pg, migrations, demo data, server on 127.0.0.1:8080.
    Dev,
    /// Serve HTTP and WebSocket as rowcast_app (refuses roles that bypass row-level security).
    Serve,
    /// Create/update the rowcast_app role and run the migrations (as the owner, DATABASE_URL). Idempotent.
    Migrate {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Mint a JWT with the configured key; prints the token alone on stdout.
    Token {
        /// User id (uuid) or email.
        #[arg(long)]
        user: String,
        /// Restrict the token to this tenant (uuid).
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Management commands (run as the owner, DATABASE_URL).
    Admin {
        /// Print one JSON object instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(raw).map_err(|_| format!("`{raw}` is not a duration (e.g. 15m, 1h, 7d)"))?;
    if ttl.is_zero() { Err("ttl must be positive".into()) } else { Ok(ttl) }
}

/// clap's multi-line usage error as one line (the part before `Usage:`), for scripts.
fn one_line(message: &str) -> String {
    let text: Vec<&str> = message.lines().map(str::trim).take_while(|l| !l.starts_with("Usage:")).filter(|l| !l.is_empty()).collect();
    format!("{} (see --help)", text.join(" "))
}

/// Parses arguments, runs the command, maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Env::load();
    crate::telemetry::init(env.get("ROWCAST_LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")));
    match cli.command {
        Command::Dev => crate::dev::run().await,
        Command::Serve => serve(&env).await,
        Command::Migrate { json } => migrate(env, json).await,
        Command::Token { user, tenant, ttl } => token(env, &user, tenant, ttl).await,
        Command::Admin { json, command } => admin(env, json, command).await,
    }
}

async fn serve(env: &Env) -> anyhow::Result<()> {
    let settings = Settings::from_env(env)?;
    let app = Application::build(settings).await?;
    let stop = crate::app::shutdown_signal()?;
    tracing::info!(port = app.port(), "listening");
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    app.run_until_stopped().await;
    Ok(())
}

/// Settings for a command that talks to the database as the owner; starts the dev cluster
/// for the duration of the command when run in a `rowcast dev` directory.
async fn owner_session(env: Env) -> anyhow::Result<(Settings, Option<crate::db::embedded::EmbeddedCluster>)> {
    let cluster = crate::dev::state::attach(&env).await?;
    let env = if cluster.is_some() { Env::load() } else { env };
    Ok((Settings::from_env(&env)?, cluster))
}

/// Stops a dev cluster that a command started for itself, waiting for it (so the next
/// command does not find it still shutting down).
async fn finish<T>(cluster: Option<crate::db::embedded::EmbeddedCluster>, result: anyhow::Result<T>) -> anyhow::Result<T> {
    if let Some(mut cluster) = cluster {
        cluster.stop().await;
    }
    result
}

async fn migrate(env: Env, json: bool) -> anyhow::Result<()> {
    let (settings, cluster) = owner_session(env).await?;
    let report = finish(cluster, run_migrations(&settings).await).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.applied.is_empty() {
        println!("database is up to date");
    } else {
        println!("applied: {}", report.applied.join(", "));
    }
    Ok(())
}

async fn run_migrations(settings: &Settings) -> anyhow::Result<crate::db::migrate::MigrateReport> {
    let password = settings.app_password.as_ref().ok_or(crate::db::migrate::MigrateError::NoAppPassword)?;
    Ok(crate::db::migrate::migrate(&settings.owner_pg_config()?, password.expose()).await?)
}

async fn connect_owner(settings: &Settings) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = settings
        .owner_pg_config()?
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    tokio::spawn(conn);
    Ok(client)
}

async fn token(env: Env, user: &str, tenant: Option<Uuid>, ttl: Duration) -> anyhow::Result<()> {
    let verifier = crate::auth::JwtVerifier::new(Settings::from_env(&env)?.jwt()?).map_err(anyhow::Error::msg)?;
    let user_id = match Uuid::parse_str(user) {
        Ok(id) => id,
        Err(_) => {
            let (settings, cluster) = owner_session(env).await?;
            let found = async {
                let client = connect_owner(&settings).await?;
                let row = client.query_opt("SELECT id FROM public.users WHERE lower(email) = lower($1)", &[&user]).await?;
                row.map(|r| r.get(0)).ok_or_else(|| anyhow::anyhow!("no user with email {user}"))
            };
            finish(cluster, found.await).await?
        }
    };
    println!("{}", verifier.mint(user_id, tenant, ttl).map_err(anyhow::Error::msg)?);
    Ok(())
}

async fn admin(env: Env, json: bool, command: AdminCommand) -> anyhow::Result<()> {
    let (settings, cluster) = owner_session(env).await?;
    let out = async {
        let mut client = connect_owner(&settings).await?;
        crate::admin::run(&mut client, command).await
    };
    let out = finish(cluster, out.await).await?;
    if json {
        println!("{}", out.json);
    } else {
        println!("{}", out.text);
    }
    Ok(())
}

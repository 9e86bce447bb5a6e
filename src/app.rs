//! `Application::build(settings)` → `.port()` → `.run_until_stopped()`: the real server,
//! buildable on port 0 by the tests.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::auth::JwtVerifier;
use crate::config::{ConfigError, Settings};
use crate::db::Db;
use crate::db::pool::{RoleRefusal, check_serving_role};

/// Shared by every request.
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub jwt: JwtVerifier,
    pub started: Instant,
    pub rest: crate::rest::RestState,
    pub realtime: crate::realtime::Realtime,
    pub webhooks: crate::webhooks::Webhooks,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Role(#[from] RoleRefusal),
    #[error("cannot reach the database: {0}")]
    Database(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(std::net::SocketAddr, std::io::Error),
}

pub struct Application {
    listener: tokio::net::TcpListener,
    port: u16,
    state: Arc<AppState>,
    shutdown: CancellationToken,
}

impl Application {
    /// Checks configuration and the database role, binds the listener; serves nothing yet.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let jwt = JwtVerifier::new(settings.jwt()?).map_err(|m| ConfigError::new("ROWCAST_JWT_PUBLIC_KEY", m))?;
        let app_config = settings.app_pg_config()?;
        check_role(&app_config).await?;
        let db =
            Db::new(app_config, settings.pool_size, settings.pool_timeout, settings.statement_timeout).with_slow_query(settings.slow_query);
        let rest = crate::rest::RestState::load(&db).await?;
        let realtime = crate::realtime::Realtime::start(&settings, settings.app_pg_config()?, &db).await?;
        let webhooks = crate::webhooks::Webhooks::start(&settings, settings.app_pg_config()?).map_err(StartError::Database)?;
        let listener = tokio::net::TcpListener::bind(settings.bind).await.map_err(|e| StartError::Bind(settings.bind, e))?;
        let port = listener.local_addr().map_err(|e| StartError::Bind(settings.bind, e))?.port();
        let state = Arc::new(AppState { settings, db, jwt, started: Instant::now(), rest, realtime, webhooks });
        Ok(Self { listener, port, state, shutdown: CancellationToken::new() })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Cancel it to stop: in-flight requests finish, then `run_until_stopped` returns.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run_until_stopped(self) {
        let routes = crate::http::routes(self.state.clone());
        let shutdown = self.shutdown.clone();
        let state = self.state.clone();
        let stopping = async move {
            shutdown.cancelled().await;
            state.webhooks.shutdown();
            state.realtime.shutdown().await;
        };
        warp::serve(routes).incoming(self.listener).graceful(stopping).run().await;
    }
}

/// Checks the serving role on a connection of its own, so the pool starts empty.
async fn check_role(config: &tokio_postgres::Config) -> Result<(), StartError> {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(|e| StartError::Database(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let checked = check_serving_role(&client).await;
    drop(client);
    let _ = conn.await;
    Ok(checked?)
}

/// Installs SIGINT (Ctrl-C) and SIGTERM handlers now, and returns a future that resolves
/// when either arrives. Installed before anything is announced, so an early signal is not lost.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

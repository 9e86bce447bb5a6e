//! The composition root: `Application::build(settings)` → `.port()` → `.run_until_stopped()`.
//! It builds the core, each feature's state, starts the background tasks and composes the
//! routes; it imports every module and no module imports it (only the entry points `cli`,
//! `dev` and the tests drive it).

mod routes;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::auth::JwtVerifier;
use crate::config::{ConfigError, Settings};
pub use crate::core::{Core, StartError};
use crate::db::Db;
use crate::db::pool::check_serving_role;
use crate::realtime::Realtime;
use crate::rest::RestState;

/// The core and every feature's state: what the routes are built from. Derefs to the
/// [`Core`] (so `state.db`, `state.jwt`, …).
pub struct AppState {
    pub core: Arc<Core>,
    pub rest: Arc<RestState>,
    pub realtime: Arc<Realtime>,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

impl Deref for AppState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

pub struct Application {
    listener: tokio::net::TcpListener,
    port: u16,
    state: Arc<AppState>,
    shutdown: CancellationToken,
    /// The background tasks (catalog reloader, realtime listener, retention) stop when it is
    /// cancelled: at shutdown, or when the application is dropped without running.
    tasks: CancellationToken,
    _tasks_guard: DropGuard,
}

impl Application {
    /// Checks configuration and the database role, loads the REST catalog, starts the
    /// background tasks and binds the listener; serves nothing yet.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let jwt = JwtVerifier::new(settings.jwt()?).map_err(|m| ConfigError::new("ROWCAST_JWT_PUBLIC_KEY", m))?;
        let app_config = settings.app_pg_config()?;
        check_role(&app_config).await?;
        let db = Db::new(app_config.clone(), settings.pool_size, settings.pool_timeout, settings.statement_timeout)
            .with_slow_query(settings.slow_query)
            .with_one_message_reads(!settings.transaction_pooler);
        let core = Arc::new(Core::new(settings, db, jwt));
        let tasks = CancellationToken::new();
        // The Prometheus recorder before any background task records (webhook queue gauges,
        // listener counters): a metric recorded before it is installed is lost.
        crate::ops::metrics::handle();
        crate::ops::metrics::spawn_upkeep(tasks.child_token());

        let rest = Arc::new(RestState::load(core.clone()).await?);
        let mut reload_config = app_config.clone();
        reload_config.application_name("rowcast-rest-reload");
        crate::rest::state::spawn_reloader(&rest, reload_config, tasks.child_token());

        let webhooks =
            Arc::new(crate::webhooks::start(&core.settings, app_config.clone(), tasks.child_token()).map_err(StartError::Database)?);
        let mut limits_config = app_config.clone();
        limits_config.application_name(crate::limits::reload::APPLICATION_NAME);
        let realtime = Arc::new(Realtime::start(core.clone(), app_config, tasks.child_token()).await?);
        crate::realtime::retention::spawn(core.db.clone(), core.settings.event_retention, tasks.child_token());

        crate::limits::reload::start(limits_config, core.limits.clone(), tasks.child_token()).await.map_err(StartError::Database)?;

        let bind = core.settings.bind;
        let listener = listen(bind).map_err(|e| StartError::Bind(bind, e))?;
        let port = listener.local_addr().map_err(|e| StartError::Bind(bind, e))?.port();
        let state = Arc::new(AppState { core, rest, realtime, webhooks });
        Ok(Self { listener, port, state, shutdown: CancellationToken::new(), _tasks_guard: tasks.clone().drop_guard(), tasks })
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

    /// Serves until the shutdown token is cancelled, then stops gracefully: realtime sessions
    /// are closed, in-flight requests finish. The graceful part is bounded by
    /// [`Application::shutdown_grace`]: a database that stopped answering (not refusing:
    /// hanging) must not keep a stopping server alive, so what is still open then is dropped.
    pub async fn run_until_stopped(self) {
        let grace = self.shutdown_grace();
        let Application { listener, state, shutdown, tasks, _tasks_guard, .. } = self;
        let routes = routes::routes(&state);
        let realtime = state.realtime.clone();
        let stop = shutdown.clone();
        let stopping = async move {
            stop.cancelled().await;
            realtime.shutdown().await;
            tasks.cancel();
        };
        let server = warp::serve(routes).incoming(listener).graceful(stopping).run();
        let overdue = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = server => {}
            () = overdue => tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown: requests or sessions still open after the grace period (is the database answering?); closing them"
            ),
        }
    }

    /// How long a graceful stop may take: what a request may legitimately still need (the
    /// pool wait and the statement timeout), the realtime sessions' close, and a second.
    pub fn shutdown_grace(&self) -> Duration {
        let settings = &self.state.core.settings;
        settings.pool_timeout + settings.statement_timeout + crate::realtime::SHUTDOWN_BOUND + Duration::from_secs(1)
    }
}

/// The server socket, with `TCP_NODELAY` (accepted connections inherit it on Linux): realtime
/// frames written back to back on one socket must not wait for the peer's delayed ACK (Nagle),
/// which cost a single busy WebSocket 20–40 ms per frame.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
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

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = super::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap(), "accepted sockets inherit TCP_NODELAY from the listener");
    }
}

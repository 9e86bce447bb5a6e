//! The catalog the REST layer serves from, and its reloading: on `NOTIFY rowcast_reload`
//! (a small dedicated LISTEN connection, reconnecting with backoff) and on SIGHUP. Requests
//! take an `Arc` of the current catalog and never wait on a reload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::catalog::{Catalog, CatalogError};
use crate::app::{AppState, StartError};
use crate::db::Db;

/// The channel a DBA (or a migration) notifies after changing the schema.
pub const RELOAD_CHANNEL: &str = "rowcast_reload";

/// What the REST layer keeps between requests.
pub struct RestState {
    catalog: RwLock<Arc<Catalog>>,
    reloader_started: AtomicBool,
}

impl RestState {
    /// Reads the catalog through the pool (as the serving role).
    pub async fn load(db: &Db) -> Result<Self, StartError> {
        let conn = db.conn().await.map_err(|e| StartError::Database(e.message))?;
        let catalog = Catalog::load(&conn).await.map_err(|e| StartError::Database(e.to_string()))?;
        tracing::info!(tables = catalog.tables.len(), functions = catalog.functions.len(), "REST catalog loaded");
        Ok(Self::with_catalog(catalog))
    }

    pub fn with_catalog(catalog: Catalog) -> Self {
        Self { catalog: RwLock::new(Arc::new(catalog)), reloader_started: AtomicBool::new(false) }
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }
}

/// Starts the reload task once per application (`routes` calls this: it is the first place
/// that has both the settings and the shared state).
pub fn start_reloader(state: &Arc<AppState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("REST catalog reload not started: routes built outside a Tokio runtime");
        return;
    };
    if state.rest.reloader_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let mut config = match state.settings.app_pg_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "REST catalog reload disabled: no database settings");
            return;
        }
    };
    config.application_name("rowcast-rest-reload");
    runtime.spawn(reload_loop(config, Arc::downgrade(state)));
}

/// Connects, LISTENs, and forwards reload notifications; the receiver ends when the
/// connection does.
async fn listen(config: &tokio_postgres::Config) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<()>), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == RELOAD_CHANNEL => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "REST reload connection lost");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {RELOAD_CHANNEL}")).await?;
    Ok((client, rx))
}

async fn reload(state: &Weak<AppState>, client: &tokio_postgres::Client, why: &str) -> bool {
    let Some(state) = state.upgrade() else { return false };
    match Catalog::load(client).await {
        Ok(catalog) => {
            tracing::info!(tables = catalog.tables.len(), functions = catalog.functions.len(), why, "REST catalog reloaded");
            state.rest.replace(catalog);
            state.db.pool().manager().statement_caches.clear();
        }
        Err(CatalogError::Db(e)) => tracing::warn!(error = %e, "REST catalog reload failed; keeping the previous one"),
        Err(e) => tracing::error!(error = %e, "REST catalog reload failed; keeping the previous one"),
    }
    true
}

async fn hangup(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn reload_loop(config: tokio_postgres::Config, state: Weak<AppState>) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut backoff = Duration::from_millis(100);
    let (mut first, mut failures) = (true, 0u32);
    while state.strong_count() > 0 {
        let (client, mut notes) = match listen(&config).await {
            Ok(ok) => ok,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(error = %e, failures, retry_in_ms = backoff.as_millis() as u64, "REST reload listener cannot connect");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        (backoff, failures) = (Duration::from_millis(100), 0);
        // After a reconnect, changes made while we were away would otherwise be missed.
        if !first && !reload(&state, &client, "listener reconnected").await {
            return;
        }
        first = false;
        loop {
            let why = tokio::select! {
                note = notes.recv() => match note {
                    Some(()) => "NOTIFY rowcast_reload",
                    None => break,
                },
                _ = hangup(&mut hup) => "SIGHUP",
            };
            while notes.try_recv().is_ok() {}
            if !reload(&state, &client, why).await {
                return;
            }
        }
    }
}

//! The catalog the REST layer serves from, and its reloading: on `NOTIFY rowcast_reload`
//! (a small dedicated LISTEN connection, reconnecting with backoff) and on SIGHUP. Requests
//! take an `Arc` of the current catalog and never wait on a reload.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, CatalogError};
use crate::core::{Core, StartError};
use crate::db::listen::{Listening, listen};

/// The channel a DBA (or a migration) notifies after changing the schema.
pub const RELOAD_CHANNEL: &str = "rowcast_reload";

/// What the REST layer keeps between requests: the REST feature's state. Derefs to the
/// [`Core`] (so `state.db`, `state.settings`, …).
pub struct RestState {
    pub core: Arc<Core>,
    catalog: RwLock<Arc<Catalog>>,
}

impl std::ops::Deref for RestState {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl RestState {
    /// Reads the catalog through the pool (as the serving role).
    pub async fn load(core: Arc<Core>) -> Result<Self, StartError> {
        let conn = core.db.conn().await.map_err(|e| StartError::Database(e.message))?;
        let catalog = Catalog::load(&conn).await.map_err(|e| StartError::Database(e.to_string()))?;
        drop(conn);
        tracing::info!(tables = catalog.tables.len(), functions = catalog.functions.len(), "REST catalog loaded");
        Ok(Self::with_catalog(core, catalog))
    }

    pub fn with_catalog(core: Arc<Core>, catalog: Catalog) -> Self {
        Self { core, catalog: RwLock::new(Arc::new(catalog)) }
    }

    /// The current catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }
}

/// Starts the reload task (`Application::build` calls this once); it stops when `stop` is
/// cancelled or the state is dropped. `config` is the serving role's, on a connection of its own.
pub fn spawn_reloader(state: &Arc<RestState>, config: tokio_postgres::Config, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let state = Arc::downgrade(state);
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = reload_loop(config, state) => {}
        }
    })
}

async fn reload(state: &Weak<RestState>, client: &tokio_postgres::Client, why: &str) -> bool {
    let Some(state) = state.upgrade() else { return false };
    match Catalog::load(client).await {
        Ok(catalog) => {
            tracing::info!(tables = catalog.tables.len(), functions = catalog.functions.len(), why, "REST catalog reloaded");
            state.replace(catalog);
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

async fn reload_loop(config: tokio_postgres::Config, state: Weak<RestState>) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut backoff = Duration::from_millis(100);
    let (mut first, mut failures) = (true, 0u32);
    while state.strong_count() > 0 {
        let Listening { client, mut notes } = match listen(&config, &format!("LISTEN {RELOAD_CHANNEL}"), "REST reload").await {
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
                    Some(_) => "NOTIFY rowcast_reload",
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

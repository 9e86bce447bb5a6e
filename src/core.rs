//! The core every feature receives: settings, the database, the JWT verifier, the start time
//! and the application's own stats. Built once by `Application::build`; features get an
//! `Arc<Core>` inside their own state (`RestState`, `Realtime`) and never see each other.

use std::sync::Arc;
use std::time::Instant;

use crate::auth::JwtVerifier;
use crate::config::{ConfigError, Settings};
use crate::db::Db;
use crate::db::pool::RoleRefusal;
use crate::stats::Stats;

/// What every request may need, whatever the feature.
pub struct Core {
    pub settings: Settings,
    pub db: Db,
    pub jwt: JwtVerifier,
    pub started: Instant,
    /// The application's performance stats: the database records transactions into them
    /// (it holds the same `Arc`), the response wrapper records requests.
    pub stats: Arc<Stats>,
}

impl Core {
    /// The core of one application, with stats of its own.
    pub fn new(settings: Settings, db: Db, jwt: JwtVerifier) -> Self {
        let stats = Arc::new(Stats::default());
        let db = db.with_stats(stats.clone());
        Self { settings, db, jwt, started: Instant::now(), stats }
    }
}

/// Why an application could not start.
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

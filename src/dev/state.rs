//! The state a `rowcast dev` keeps under `./.rowcast/`: cluster data, secrets, `dev.env`.
//! `token`, `admin` and `migrate` read it, so they work there with no environment at all.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::config::{dev_env_path, state_dir};
use crate::db::embedded::{ClusterOptions, EmbeddedCluster};
pub use crate::secret::random_token;

pub const DATABASE: &str = "rowcast";

fn state_file() -> PathBuf {
    state_dir().join("state.json")
}

pub fn pg_data_dir() -> PathBuf {
    state_dir().join("pg")
}

#[derive(Clone, Serialize, Deserialize)]
pub struct DevState {
    pub superuser_password: String,
    pub app_password: String,
    pub jwt_secret: String,
    pub port: Option<u16>,
}

impl std::fmt::Debug for DevState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevState").field("port", &self.port).finish_non_exhaustive()
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

impl DevState {
    pub fn load() -> Option<Self> {
        let raw = std::fs::read(state_file()).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    /// Loads the state, or creates it (and `./.rowcast/`) with fresh secrets.
    pub fn load_or_create() -> std::io::Result<Self> {
        if let Some(state) = Self::load() {
            return Ok(state);
        }
        let dir = state_dir();
        std::fs::create_dir_all(&dir)?;
        // The postgres OS user must be able to traverse it to reach pg/; files inside are 0600.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let state =
            DevState { superuser_password: random_token(32), app_password: random_token(32), jwt_secret: random_token(48), port: None };
        state.save()?;
        Ok(state)
    }

    pub fn save(&self) -> std::io::Result<()> {
        write_private(&state_file(), &serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)
    }

    pub fn owner_url(&self, port: u16) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{port}/{DATABASE}", self.superuser_password)
    }

    pub fn app_url(&self, port: u16) -> String {
        format!("postgres://{}:{}@127.0.0.1:{port}/{DATABASE}", crate::config::APP_ROLE, self.app_password)
    }

    /// Writes `./.rowcast/dev.env` (mode 0600) for any tool that wants to reach the cluster.
    pub fn write_dev_env(&self, port: u16) -> std::io::Result<()> {
        let contents = format!(
            "# Written by `rowcast dev`. Source it, or let rowcast read it.\n\
             DATABASE_URL={}\nROWCAST_APP_DATABASE_URL={}\nROWCAST_APP_PASSWORD={}\nROWCAST_JWT_SECRET={}\n",
            self.owner_url(port),
            self.app_url(port),
            self.app_password,
            self.jwt_secret
        );
        write_private(&dev_env_path(), contents.as_bytes())
    }

    /// Starts (or reuses the data of) the dev cluster, remembering its port.
    pub async fn start_cluster(&mut self) -> anyhow::Result<EmbeddedCluster> {
        let cluster = EmbeddedCluster::start(ClusterOptions {
            data_dir: std::path::absolute(pg_data_dir())?,
            port: self.port,
            superuser_password: self.superuser_password.clone(),
            ephemeral: false,
            settings: vec![("max_connections".into(), "200".into())],
        })
        .await?;
        cluster.ensure_database(DATABASE).await?;
        if self.port != Some(cluster.port()) {
            self.port = Some(cluster.port());
            self.save()?;
        }
        self.write_dev_env(cluster.port())?;
        Ok(cluster)
    }
}

/// For `token`, `admin` and `migrate` run where a `rowcast dev` keeps its state: when the
/// user gave no `DATABASE_URL` and the dev cluster is not running, start it for the
/// duration of the command. Returns the cluster to keep alive (None when nothing was started).
pub async fn attach(env: &crate::config::Env) -> anyhow::Result<Option<EmbeddedCluster>> {
    if env.is_explicit("DATABASE_URL") || !pg_data_dir().join("PG_VERSION").is_file() {
        return Ok(None);
    }
    let Some(mut state) = DevState::load() else { return Ok(None) };
    if let Some(port) = state.port {
        let url = state.owner_url(port);
        if let Ok(Ok((client, conn))) =
            tokio::time::timeout(std::time::Duration::from_secs(2), tokio_postgres::connect(&url, tokio_postgres::NoTls)).await
        {
            drop(client);
            let _ = conn.await;
            return Ok(None);
        }
    }
    Ok(Some(state.start_cluster().await?))
}

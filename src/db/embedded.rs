//! A private PostgreSQL cluster, started from the machine's server binaries.
//!
//! Used by `rowcast dev` (durable, under `./.rowcast/pg`) and by the test suite (ephemeral,
//! in a temporary directory, fsync off). The cluster listens on 127.0.0.1 on a free port
//! with password (SCRAM) auth and a socket directory of its own. When running as root, the
//! binaries run as the `postgres` OS user, which owns the data directory.
//!
//! A small watchdog process holds the read end of a pipe whose write end only this process
//! holds: whenever this process ends, however it ends, the watchdog sees EOF and stops the
//! server (and, for an ephemeral cluster, removes its directory). A clean [`EmbeddedCluster::stop`]
//! (or drop) does the same without waiting for that.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

pub const SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found: install them (Debian/Ubuntu: `apt-get install postgresql`), \
         or put their directory on PATH, or set ROWCAST_PG_BINDIR"
    )]
    NoBinaries,
    #[error("running as root, but there is no `postgres` OS user to run the cluster as (create it, or run as a normal user)")]
    NoPostgresUser,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("PostgreSQL did not become ready within {0:?}; its log says:\n{1}")]
    NotReady(Duration, String),
}

fn step(step: &'static str) -> impl Fn(std::io::Error) -> EmbeddedError {
    move |e| EmbeddedError::Step { step, detail: e.to_string() }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The data directory; created and initialised when it holds no cluster yet.
    pub data_dir: PathBuf,
    /// Port to listen on; a free one when `None` or when this one is taken.
    pub port: Option<u16>,
    /// Password of the `postgres` superuser (used only by initdb, on a new cluster).
    pub superuser_password: String,
    /// Fast and disposable: fsync off, directory removed when this process ends.
    pub ephemeral: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A running cluster. Dropping it stops the server.
#[derive(Debug)]
pub struct EmbeddedCluster {
    child: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
    port: u16,
    password: String,
    data_dir: PathBuf,
    socket_dir: tempfile::TempDir,
    opts: ClusterOptions,
    bindir: PathBuf,
    run_as: Option<RunAs>,
}

/// The OS user the server binaries run as: `postgres` when this process is root.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: Uid,
    gid: Gid,
}

impl RunAs {
    fn resolve() -> Result<Option<RunAs>, EmbeddedError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let user = User::from_name(SUPERUSER).ok().flatten().ok_or(EmbeddedError::NoPostgresUser)?;
        Ok(Some(RunAs { uid: user.uid, gid: user.gid }))
    }

    fn chown(run_as: Option<RunAs>, path: &Path) -> Result<(), EmbeddedError> {
        if let Some(r) = run_as {
            std::os::unix::fs::chown(path, Some(r.uid.as_raw()), Some(r.gid.as_raw())).map_err(step("chown to the postgres user"))?;
        }
        Ok(())
    }

    fn command(run_as: Option<RunAs>, program: PathBuf) -> Command {
        let mut cmd = Command::new(program);
        if let Some(r) = run_as {
            cmd.uid(r.uid.as_raw()).gid(r.gid.as_raw());
        }
        cmd.env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST");
        cmd
    }
}

/// Finds the directory holding `initdb` and `postgres`: `ROWCAST_PG_BINDIR`, `pg_config
/// --bindir`, `PATH`, then `/usr/lib/postgresql/*/bin` (newest first).
pub fn find_bindir() -> Result<PathBuf, EmbeddedError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(dir) = std::env::var("ROWCAST_PG_BINDIR") {
        candidates.push(dir.into());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output()
        && out.status.success()
    {
        candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if let Ok(real) = std::fs::canonicalize(&initdb)
                && let Some(parent) = real.parent()
            {
                candidates.push(parent.to_path_buf());
            }
        }
    }
    candidates.extend(versioned_dirs(Path::new("/usr/lib/postgresql")));
    candidates.into_iter().find(|d| has_both(d)).ok_or(EmbeddedError::NoBinaries)
}

fn versioned_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().split('.').next()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A port nobody listens on right now (the OS picks it).
pub fn free_port() -> Result<u16, EmbeddedError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(step("finding a free port"))?;
    Ok(listener.local_addr().map_err(step("finding a free port"))?.port())
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

impl EmbeddedCluster {
    /// Initialises the cluster when needed, starts it, and waits until it accepts connections.
    pub async fn start(opts: ClusterOptions) -> Result<Self, EmbeddedError> {
        let bindir = find_bindir()?;
        let run_as = RunAs::resolve()?;
        if !opts.data_dir.join("PG_VERSION").is_file() {
            initdb(&bindir, run_as, &opts)?;
        }
        let port = match opts.port {
            Some(p) if port_is_free(p) => p,
            _ => free_port()?,
        };
        let socket_dir = tempfile::Builder::new().prefix("rowcast-sock-").tempdir().map_err(step("creating the socket directory"))?;
        RunAs::chown(run_as, socket_dir.path())?;
        let child = spawn_postgres(&bindir, run_as, &opts, port, socket_dir.path())?;
        let watchdog = spawn_watchdog(&opts.data_dir, opts.ephemeral.then_some(opts.data_dir.parent()).flatten())?;
        let mut cluster = EmbeddedCluster {
            watchdog: Some(watchdog),
            port,
            password: opts.superuser_password.clone(),
            data_dir: opts.data_dir.clone(),
            socket_dir,
            child: Some(child),
            opts,
            bindir,
            run_as,
        };
        cluster.wait_ready(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Connection settings for the superuser on `dbname`.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1").port(self.port).user(SUPERUSER).password(&self.password).dbname(dbname);
        c.connect_timeout(Duration::from_secs(5));
        c
    }

    /// The superuser DSN for `dbname` (contains the password: never log it).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/{dbname}", self.password, self.port)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), EmbeddedError> {
        let started = Instant::now();
        let config = self.pg_config("postgres");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EmbeddedError::Step {
                    step: "starting postgres",
                    detail: format!("it exited ({status}); log:\n{}", self.log_tail()),
                });
            }
            match config.connect(tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    drop(client);
                    let _ = conn.await;
                    return Ok(());
                }
                Err(_) if started.elapsed() < limit => tokio::time::sleep(Duration::from_millis(25)).await,
                Err(_) => return Err(EmbeddedError::NotReady(limit, self.log_tail())),
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(log_path(&self.data_dir)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Creates `dbname` if it does not exist yet.
    pub async fn ensure_database(&self, dbname: &str) -> Result<(), tokio_postgres::Error> {
        let (client, conn) = self.pg_config("postgres").connect(tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname]).await?.is_some();
        if !exists {
            client.batch_execute(&format!("CREATE DATABASE {}", quote_ident(dbname))).await?;
        }
        drop(client);
        let _ = conn.await;
        Ok(())
    }

    /// Stops the server only (fast shutdown), keeping the data and the port for [`Self::start_server`].
    /// For fault tests: a database "restart" as clients see it.
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = child.try_wait() {
                let _ = kill(pid, Signal::SIGQUIT);
                let _ = child.wait();
            }
        }
    }

    /// Starts the server again after [`Self::stop_server`], on the same port and data.
    pub async fn start_server(&mut self) -> Result<(), EmbeddedError> {
        if self.child.is_none() {
            self.child = Some(spawn_postgres(&self.bindir, self.run_as, &self.opts, self.port, self.socket_dir.path())?);
            self.wait_ready(Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// Fast shutdown: waits for the server to exit (sessions are disconnected, data is safe).
    pub fn stop(&mut self) {
        self.stop_server();
        // Closing the pipe lets the watchdog finish (and clean an ephemeral directory).
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = watchdog.wait();
        }
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("log")
}

fn initdb(bindir: &Path, run_as: Option<RunAs>, opts: &ClusterOptions) -> Result<(), EmbeddedError> {
    let data = &opts.data_dir;
    let parent = data.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(data).map_err(step("creating the data directory"))?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).map_err(step("securing the data directory"))?;
    RunAs::chown(run_as, data)?;
    let pwfile = tempfile::NamedTempFile::new().map_err(step("writing the password file"))?;
    std::fs::write(pwfile.path(), &opts.superuser_password).map_err(step("writing the password file"))?;
    RunAs::chown(run_as, pwfile.path())?;
    let out = RunAs::command(run_as, bindir.join("initdb"))
        .arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.path().display()))
        .args(if opts.ephemeral { &["--no-sync"][..] } else { &[][..] })
        .current_dir(parent)
        .output()
        .map_err(step("running initdb"))?;
    if !out.status.success() {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.contains("ermission denied") {
            detail.push_str(&format!(
                "\n(hint: the `postgres` OS user must be able to reach {}: make its parent directories world-searchable, or pick another directory)",
                data.display()
            ));
        }
        let _ = std::fs::remove_dir_all(data);
        return Err(EmbeddedError::Step { step: "initdb", detail });
    }
    Ok(())
}

fn spawn_postgres(
    bindir: &Path,
    run_as: Option<RunAs>,
    opts: &ClusterOptions,
    port: u16,
    socket_dir: &Path,
) -> Result<Child, EmbeddedError> {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(log_path(&opts.data_dir)).map_err(step("opening the server log"))?;
    let mut cmd = RunAs::command(run_as, bindir.join("postgres"));
    cmd.arg("-D").arg(&opts.data_dir).arg("-p").arg(port.to_string()).arg("-k").arg(socket_dir).args(["-c", "listen_addresses=127.0.0.1"]);
    let mut settings: Vec<(String, String)> = Vec::new();
    if opts.ephemeral {
        for (k, v) in [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")] {
            settings.push((k.into(), v.into()));
        }
    }
    settings.extend(opts.settings.iter().cloned());
    for (k, v) in settings {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(step("opening the server log"))?)
        .stderr(log)
        .current_dir(opts.data_dir.parent().unwrap_or(Path::new("/")))
        // Its own process group: a Ctrl-C meant for rowcast reaches postgres only through us.
        .process_group(0);
    cmd.spawn().map_err(step("starting postgres"))
}

/// A `sh` that waits for EOF on its stdin, then stops whatever server runs on the data
/// directory (its pid is the first line of `postmaster.pid`, so restarts are covered) and
/// optionally removes a directory.
fn spawn_watchdog(data_dir: &Path, remove: Option<&Path>) -> Result<(Child, ChildStdin), EmbeddedError> {
    const SCRIPT: &str = r#"cat >/dev/null
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null
if [ -n "$2" ]; then
  i=0
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
  rm -rf "$2"
fi"#;
    let mut child = Command::new("sh")
        .args(["-c", SCRIPT, "rowcast-pg-watchdog"])
        .arg(data_dir)
        .arg(remove.map(|p| p.display().to_string()).unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(step("starting the cluster watchdog"))?;
    let stdin = child.stdin.take().ok_or(EmbeddedError::Step { step: "starting the cluster watchdog", detail: "no stdin".into() })?;
    Ok((child, stdin))
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A disposable cluster in a fresh temporary directory, for tests and benchmarks.
pub async fn start_ephemeral(settings: Vec<(String, String)>) -> Result<EmbeddedCluster, EmbeddedError> {
    let root = tempfile::Builder::new().prefix("rowcast-pg-").tempdir().map_err(step("creating a temporary directory"))?;
    let root = root.keep();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).map_err(step("creating a temporary directory"))?;
    let opts = ClusterOptions {
        data_dir: root.join("data"),
        port: None,
        superuser_password: crate::secret::random_token(24),
        ephemeral: true,
        settings,
    };
    EmbeddedCluster::start(opts).await
}

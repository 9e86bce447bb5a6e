//! The binary and its subcommands: help, migrate, serve's role refusal, token, admin, dev.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use rowcast::app::{Application, StartError};
use rowcast::config::{Env, Settings};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{JWT_SECRET, TestDb, World, base_env, cluster};

const BIN: &str = env!("CARGO_BIN_EXE_rowcast");

/// The binary in an empty directory with a clean environment plus `vars`.
fn rowcast(dir: &Path, args: &[&str], vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("RUST_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn run(dir: &Path, args: &[&str], vars: &[(String, String)]) -> Output {
    rowcast(dir, args, vars).output().expect("run rowcast")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn every_subcommand_has_help() {
    let dir = workdir();
    for args in [
        vec!["--help"],
        vec!["dev", "--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["token", "--help"],
        vec!["admin", "--help"],
        vec!["admin", "test-rls", "--help"],
    ] {
        let out = run(dir.path(), &args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("Usage"), "{args:?}");
    }
}

#[test]
fn a_cli_error_is_one_clear_line_and_a_failure_exit() {
    let dir = workdir();
    let out = run(dir.path(), &["admin", "create-tenant", "--name", "x"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("DATABASE_URL"), "names the variable: {err}");
    let out = run(dir.path(), &["serve"], &[("ROWCAST_JWT_SECRET".into(), "short".into())]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ROWCAST_JWT_SECRET") && stderr(&out).contains("32 bytes"), "{}", stderr(&out));
    for args in [&["token", "--user", "x", "--ttl", "soon"][..], &["admin", "create-tenant"], &["frobnicate"]] {
        let out = run(dir.path(), args, &[]);
        assert!(!out.status.success(), "{args:?} is refused");
        assert_eq!(stderr(&out).lines().count(), 1, "{args:?}: one line: {}", stderr(&out));
    }
}

async fn build_with(db: &TestDb, app_url: String) -> Result<Application, StartError> {
    let mut vars = base_env(db);
    vars.push(("ROWCAST_APP_DATABASE_URL".into(), app_url));
    Application::build(Settings::from_env(&Env::from_pairs(vars)).unwrap()).await
}

fn url_for(db: &TestDb, user: &str, password: &str) -> String {
    let port = db.owner_config().get_ports()[0];
    format!("postgres://{user}:{password}@127.0.0.1:{port}/{}", db.name)
}

#[tokio::test]
async fn serve_refuses_a_superuser_but_accepts_rowcast_app() {
    let db = TestDb::new().await;
    let err = build_with(&db, db.owner_url()).await.err().expect("superuser refused");
    assert!(matches!(err, StartError::Role(_)) && err.to_string().contains("superuser"), "{err}");
    let ok = build_with(&db, url_for(&db, "rowcast_app", &cluster().await.app_password)).await;
    assert!(ok.is_ok(), "rowcast_app is accepted");
}

#[tokio::test]
async fn serve_refuses_a_role_with_bypassrls() {
    let db = TestDb::new().await;
    let role = format!("bypass_{}", Uuid::new_v4().simple());
    db.owner().await.batch_execute(&format!("CREATE ROLE {role} LOGIN BYPASSRLS PASSWORD 'pw'")).await.unwrap();
    let err = build_with(&db, url_for(&db, &role, "pw")).await.err().expect("bypassrls refused");
    assert!(err.to_string().contains("BYPASSRLS"), "{err}");
}

#[tokio::test]
async fn serve_refuses_a_role_that_owns_a_table() {
    let db = TestDb::new().await;
    let role = format!("owner_{}", Uuid::new_v4().simple());
    let owner = db.owner().await;
    owner
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'pw'; GRANT CONNECT ON DATABASE {} TO {role}; \
             CREATE TABLE public.mine (id int); ALTER TABLE public.mine OWNER TO {role};",
            db.name
        ))
        .await
        .unwrap();
    let err = build_with(&db, url_for(&db, &role, "pw")).await.err().expect("table owner refused");
    assert!(err.to_string().contains("owns table public.mine"), "{err}");
}

#[test]
fn serve_as_superuser_exits_non_zero_saying_why() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let dir = workdir();
    let mut vars = rt.block_on(async { base_env(&db) });
    vars.push(("ROWCAST_APP_DATABASE_URL".into(), db.owner_url()));
    let out = run(dir.path(), &["serve"], &vars);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("superuser"), "{}", stderr(&out));
}

async fn catalog_snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    let sql = "SELECT 'policy ' || tablename || '.' || policyname || coalesce(qual, '') || coalesce(with_check, '') FROM pg_policies
               UNION ALL SELECT 'function ' || p.oid::regprocedure::text || md5(p.prosrc) FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('app', 'rpc', 'public')
               UNION ALL SELECT 'relation ' || c.oid::regclass::text || c.relrowsecurity || c.relforcerowsecurity FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('app', 'rpc', 'public')
               UNION ALL SELECT 'role ' || rolname || rolsuper || rolbypassrls || rolinherit || rolcreatedb || rolcreaterole
                 FROM pg_roles WHERE rolname = 'rowcast_app'
               UNION ALL SELECT 'grant ' || table_name || privilege_type FROM information_schema.role_table_grants WHERE grantee = 'rowcast_app'
               ORDER BY 1";
    client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn migrate_twice_changes_nothing_the_second_time() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let before = catalog_snapshot(&owner).await;
    let report = rowcast::db::migrate::migrate(&db.owner_config(), &cluster().await.app_password).await.unwrap();
    assert!(report.applied.is_empty(), "nothing left to apply: {:?}", report.applied);
    assert!(!report.role_created, "the role already existed");
    assert_eq!(catalog_snapshot(&owner).await, before);
    let attrs = owner
        .query_one("SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolinherit FROM pg_roles WHERE rolname = 'rowcast_app'", &[])
        .await
        .unwrap();
    assert_eq!((attrs.get(0), attrs.get(1), attrs.get(2), attrs.get(3), attrs.get(4)), (false, false, false, false, false));
}

#[tokio::test]
async fn after_migrate_only_the_app_role_and_the_owner_may_connect() {
    let db = TestDb::new().await;
    rowcast::db::migrate::migrate(&db.owner_config(), &cluster().await.app_password).await.unwrap();
    let role = format!("outsider_{}", Uuid::new_v4().simple());
    db.owner().await.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'")).await.unwrap();
    let mut outsider = db.owner_config();
    outsider.user(&role).password("pw");
    let err = outsider.connect(tokio_postgres::NoTls).await.err().expect("an unrelated role is refused");
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    assert!(db.app_config().connect(tokio_postgres::NoTls).await.is_ok(), "rowcast_app still connects");
}

#[tokio::test]
async fn migrate_applies_everything_on_an_empty_database() {
    let c = cluster().await;
    let name = format!("empty_{}", Uuid::new_v4().simple());
    c.cluster.ensure_database(&name).await.unwrap();
    let (listener, mut conn) = c.cluster.pg_config(&name).connect(tokio_postgres::NoTls).await.unwrap();
    let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = futures::StreamExt::next(&mut messages).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.channel().to_string());
            }
        }
    });
    listener.batch_execute("LISTEN rowcast_reload").await.unwrap();
    let report = rowcast::db::migrate::migrate(&c.cluster.pg_config(&name), &c.app_password).await.unwrap();
    assert!(report.applied.iter().any(|m| m.contains("V1__request_context")), "{:?}", report.applied);
    let channel = tokio::time::timeout(std::time::Duration::from_secs(10), notified.recv()).await.unwrap();
    assert_eq!(channel.as_deref(), Some("rowcast_reload"), "running servers are told to reload their catalog");
    let again = rowcast::db::migrate::migrate(&c.cluster.pg_config(&name), &c.app_password).await.unwrap();
    assert!(again.applied.is_empty());
}

#[test]
fn migrate_command_is_idempotent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let vars = base_env(&db);
    let dir = workdir();
    let first = run(dir.path(), &["migrate", "--json"], &vars);
    assert!(first.status.success(), "{}", stderr(&first));
    let report: Value = serde_json::from_str(&stdout(&first)).unwrap();
    assert_eq!(report["applied"], Value::Array(vec![]), "the clone was already migrated");
    let second = run(dir.path(), &["migrate"], &vars);
    assert_eq!(stdout(&second), "database is up to date");
}

#[test]
fn token_prints_a_verifiable_token_alone_on_stdout() {
    let dir = workdir();
    let user = Uuid::new_v4();
    let out = run(dir.path(), &["token", "--user", &user.to_string(), "--ttl", "5m"], &[("ROWCAST_JWT_SECRET".into(), JWT_SECRET.into())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    assert_eq!(token.lines().count(), 1);
    let settings = Settings::from_env(&Env::from_pairs([("ROWCAST_JWT_SECRET".to_string(), JWT_SECRET.to_string())])).unwrap();
    let verifier = rowcast::auth::JwtVerifier::new(settings.jwt().unwrap()).unwrap();
    let principal = verifier.verify(&token).unwrap();
    assert_eq!(principal.user_id, user);
    let remaining = principal.expires_at - chrono::Utc::now().timestamp();
    assert!((250..=300).contains(&remaining), "ttl honoured: {remaining}");
}

#[test]
fn admin_create_commands_print_ids_and_add_memberships_to_existing_users() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let vars = base_env(&db);
    let dir = workdir();
    let admin = |args: &[&str]| {
        let mut full = vec!["admin"];
        full.extend_from_slice(args);
        let out = run(dir.path(), &full, &vars);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let tenant = admin(&["create-tenant", "--name", "Initech"]);
    assert!(Uuid::parse_str(&tenant).is_ok(), "the id alone: {tenant}");
    assert_eq!(admin(&["create-tenant", "--name", "Initech"]), tenant, "the same name gives the same tenant");
    let json: Value =
        serde_json::from_str(&admin(&["--json", "create-platform-admin", "--email", "root@x.test", "--name", "Root"])).unwrap();
    assert!(json["id"].as_str().is_some_and(|id| Uuid::parse_str(id).is_ok()), "{json}");
    let peter = admin(&["create-tenant-admin", "--email", "peter@initech.test", "--name", "Peter", "--tenant", "Initech"]);
    let again = admin(&["create-tenant-user", "--email", "peter@initech.test", "--name", "Peter", "--tenant", "Umbrella"]);
    assert_eq!(peter, again, "an existing user gets the membership added");
    let owner = rt.block_on(db.owner());
    let n: i64 = rt.block_on(owner.query_one("SELECT count(*) FROM memberships WHERE user_id = $1::text::uuid", &[&peter])).unwrap().get(0);
    assert_eq!(n, 2, "member of Initech and of the newly created Umbrella");
    let rls: Value = serde_json::from_str(&admin(&["test-rls", "--json", "--user", "peter@initech.test", "--tenant", "Initech"])).unwrap();
    assert_eq!(rls["role"], "tenant_admin");
    assert_eq!(rls["tables"]["tenants"], 1, "sees only Initech: {rls}");
    let policies = admin(&["list-policies"]);
    assert!(policies.contains("memberships.tenant_isolation"), "{policies}");
}

#[test]
fn admin_test_rls_of_a_stranger_fails_cleanly() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::new());
    let w = rt.block_on(async { World::create(&db.owner().await).await });
    let dir = workdir();
    let out = run(dir.path(), &["admin", "test-rls", "--user", &w.user_a.to_string(), "--tenant", &w.tenant_b.to_string()], &base_env(&db));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a member"), "{}", stderr(&out));
}

/// Runs `rowcast dev` in `dir` until it prints its address; returns the child and the stdout so far.
/// The caller owns the child and waits for it in `stop`.
#[allow(clippy::zombie_processes)]
fn start_dev(dir: &Path) -> (std::process::Child, String) {
    let mut child = rowcast(dir, &["dev"], &[("ROWCAST_BIND".into(), "127.0.0.1:0".into())])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("rowcast dev exited early ({status:?}); output so far:\n{seen}");
        }
        seen.push_str(&line);
        if line.starts_with("Ctrl-C") {
            return (child, seen);
        }
    }
}

fn stop(mut child: std::process::Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "dev stops cleanly on Ctrl-C: {status}");
}

#[tokio::test]
async fn dev_boots_in_an_empty_directory_and_a_second_run_reuses_the_data() {
    let dir = workdir();
    let path = dir.path().to_path_buf();
    let (child, banner) = tokio::task::spawn_blocking(move || start_dev(&path)).await.unwrap();
    let base = banner.lines().find_map(|l| l.strip_prefix("listening on ")).unwrap().trim().to_string();
    let token = banner.lines().filter_map(|l| l.trim().strip_prefix("TOKEN=")).nth(1).unwrap().to_string();
    assert!(banner.contains("psql \"postgres://"), "a psql line for DBAs");
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status().as_u16(), 200);
    let me: Value = http.get(format!("{base}/api/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["user"]["email"], "alice@acme.test");
    let env = std::fs::read_to_string(dir.path().join(".rowcast/dev.env")).unwrap();
    for var in ["DATABASE_URL=", "ROWCAST_APP_DATABASE_URL=", "ROWCAST_JWT_SECRET="] {
        assert!(env.contains(var), "dev.env has {var}");
    }
    let out = run(dir.path(), &["admin", "create-tenant", "--name", "Made While Running"], &[]);
    assert!(out.status.success(), "admin works with no environment next to a running dev: {}", stderr(&out));
    stop(child);

    let out = run(dir.path(), &["admin", "--json", "test-rls", "--user", "admin@rowcast.dev"], &[]);
    assert!(out.status.success(), "admin starts the stopped cluster by itself: {}", stderr(&out));
    let seen: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(seen["tables"]["tenants"], 3, "Acme, Globex and the one made while running: {seen}");
    let token = run(dir.path(), &["token", "--user", "bob@acme.test"], &[]);
    assert!(token.status.success(), "token resolves an email with no environment: {}", stderr(&token));

    let path = dir.path().to_path_buf();
    let (child, _) = tokio::task::spawn_blocking(move || start_dev(&path)).await.unwrap();
    stop(child);
}

/// `rowcast dev` with stderr sent to `log`, stdout read until its banner ends.
#[allow(clippy::zombie_processes)]
fn start_dev_logging(dir: &Path, log: &Path) -> (std::process::Child, String) {
    let log = std::fs::File::create(log).unwrap();
    let mut child = rowcast(dir, &["dev"], &[("ROWCAST_BIND".into(), "127.0.0.1:0".into()), ("RUST_LOG".into(), "info".into())])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("rowcast dev exited early ({status:?}); output so far:\n{seen}");
        }
        seen.push_str(&line);
        if line.starts_with("Ctrl-C") {
            return (child, seen);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test]
async fn dev_as_root_works_in_a_directory_only_root_may_enter() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (as in CI)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("dev.log");
    for run in 0..2 {
        let (path, log_path) = (dir.path().to_path_buf(), log.clone());
        let (child, banner) = tokio::task::spawn_blocking(move || start_dev_logging(&path, &log_path)).await.unwrap();
        let base = banner.lines().find_map(|l| l.strip_prefix("listening on ")).unwrap().trim().to_string();
        let token = banner.lines().filter_map(|l| l.trim().strip_prefix("TOKEN=")).nth(1).unwrap().to_string();
        let http = reqwest::Client::new();
        assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status().as_u16(), 200, "run {run}");
        let me: Value = http.get(format!("{base}/api/me")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(me["user"]["email"], "alice@acme.test", "run {run}");
        stop(child);
    }
    let state = dir.path().join(".rowcast");
    for file in ["pg.log", "state.json", "dev.env"] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file} holds secrets or logs: owner only");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "logs were written: {text}");
    assert!(!text.contains('\u{1b}'), "no ANSI colour in a file: {text:?}");
    // The cluster lives where the postgres OS user can use it; .rowcast/pg leads there.
    let target = std::fs::read_link(state.join("pg")).expect(".rowcast/pg links to the relocated cluster");
    assert!(target.join("PG_VERSION").is_file());
    std::fs::remove_dir_all(target.parent().unwrap()).unwrap();
}

/// SIGKILLs every descendant of `pid` (deepest first), from /proc's children lists.
fn kill_descendants(pid: u32) {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
        kill_descendants(child);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child as i32), nix::sys::signal::Signal::SIGKILL);
    }
}

#[tokio::test]
async fn logs_are_coloured_on_a_terminal() {
    // The twin of the check above: under a pseudo-terminal (`script`), colour is kept.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to provide a terminal");
        return;
    }
    let db = TestDb::new().await;
    let dir = workdir();
    let mut vars = base_env(&db);
    vars.push(("RUST_LOG".into(), "info".into()));
    let cmd = format!("{BIN} serve");
    let mut script = Command::new("script");
    script.args(["-qefc", &cmd, "/dev/null"]).current_dir(dir.path()).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &vars {
        script.env(k, v);
    }
    let mut running = script.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::piped()).spawn().unwrap();
    let out = running.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(out);
        let mut seen = String::new();
        while !seen.contains("listening") {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push_str(&line);
        }
        seen
    })
    .await
    .unwrap();
    // `script` runs the server in a session of its own, and the server outlives the terminal's
    // hang-up (SIGHUP reloads its REST catalog): end the server itself, then `script`.
    kill_descendants(running.id());
    let _ = running.kill();
    let _ = running.wait();
    assert!(seen.contains("listening"), "{seen}");
    assert!(seen.contains('\u{1b}'), "colour on a terminal: {seen:?}");
}

#[tokio::test]
async fn migrates_of_several_databases_of_one_cluster_may_set_the_app_role_at_once() {
    let c = cluster().await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let name = format!("roles_{}", Uuid::new_v4().simple());
        c.cluster.ensure_database(&name).await.unwrap();
        let (client, conn) = c.cluster.pg_config(&name).connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        clients.push(client);
    }
    // The role is one row of the cluster's pg_authid: concurrent ALTER ROLEs collide.
    for round in 0..5 {
        let all =
            futures::future::join_all(clients.iter().map(|client| rowcast::db::migrate::ensure_app_role(client, &c.app_password))).await;
        for result in all {
            result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    let db = &clients[0];
    let login: bool = db.query_one("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'rowcast_app'", &[]).await.unwrap().get(0);
    assert!(login);
}

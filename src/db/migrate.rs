//! `rowcast migrate`: the app role, then the refinery migrations embedded in the binary.

use crate::config::APP_ROLE;
use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot connect to the database: {0}")]
    Connect(tokio_postgres::Error),
    #[error(
        "the owner role `{0}` must be a superuser (or have BYPASSRLS and CREATEROLE): it owns the tables and the SECURITY DEFINER functions"
    )]
    NotPrivileged(String),
    #[error(
        "PostgreSQL {0} is too old: rowcast needs PostgreSQL 15 or newer (the migrations use NULLS NOT DISTINCT); upgrade the server, or point DATABASE_URL at a newer one"
    )]
    OldServer(String),
    #[error("ROWCAST_APP_PASSWORD: not set: `migrate` needs the password to give the `rowcast_app` role")]
    NoAppPassword,
    #[error("creating the app role failed: {}", db_message(.0))]
    Role(tokio_postgres::Error),
    #[error("migrations applied, but announcing them (NOTIFY rowcast_reload) failed: {0}")]
    Reload(tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Refinery(#[from] refinery::Error),
}

/// What a run did, for the CLI to report.
#[derive(Debug, Default, serde::Serialize)]
pub struct MigrateReport {
    pub role_created: bool,
    pub applied: Vec<String>,
}

/// Connects as the owner and migrates. `app_password` sets (or resets) `rowcast_app`'s password.
pub async fn migrate(owner: &tokio_postgres::Config, app_password: &str) -> Result<MigrateReport, MigrateError> {
    let (mut client, conn) = owner.connect(tokio_postgres::NoTls).await.map_err(MigrateError::Connect)?;
    let conn = tokio::spawn(conn);
    let report = migrate_client(&mut client, app_password).await;
    drop(client);
    let _ = conn.await;
    report
}

pub async fn migrate_client(client: &mut Client, app_password: &str) -> Result<MigrateReport, MigrateError> {
    let version = client
        .query_one("SELECT current_setting('server_version_num')::int, current_setting('server_version')", &[])
        .await
        .map_err(MigrateError::Connect)?;
    check_server_version(version.get(0), version.get(1))?;
    check_owner(client).await?;
    let role_created = ensure_app_role(client, app_password).await?;
    let report = embedded::migrations::runner().run_async(client).await?;
    let applied: Vec<String> = report.applied_migrations().iter().map(|m| m.to_string()).collect();
    if !applied.is_empty() {
        // Running servers reload their REST catalog.
        client.batch_execute("NOTIFY rowcast_reload").await.map_err(MigrateError::Reload)?;
    }
    Ok(MigrateReport { role_created, applied })
}

/// The oldest server the migrations run on: 15 (`UNIQUE NULLS NOT DISTINCT`).
pub const MIN_SERVER_VERSION_NUM: i32 = 150_000;

/// `server_version_num` (e.g. 150004) against [`MIN_SERVER_VERSION_NUM`]; `display` is the
/// human version (`14.11 (Debian …)`) named in the error.
pub fn check_server_version(version_num: i32, display: &str) -> Result<(), MigrateError> {
    if version_num >= MIN_SERVER_VERSION_NUM { Ok(()) } else { Err(MigrateError::OldServer(display.trim().to_string())) }
}

async fn check_owner(client: &Client) -> Result<(), MigrateError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper OR (rolbypassrls AND rolcreaterole) FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(MigrateError::Connect)?;
    if row.get::<_, bool>(1) { Ok(()) } else { Err(MigrateError::NotPrivileged(row.get(0))) }
}

/// Creates or updates `rowcast_app`. The password travels as a SCRAM verifier, so the
/// clear text never reaches the server (nor its logs).
/// The server's own message (and SQLSTATE) of a database error; the driver's `Display` says only "db error".
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Creates or updates the `rowcast_app` login role and lets only it (and the owner) connect.
///
/// Roles are cluster-wide: two `migrate`s of two databases of one cluster (tests, a fleet of
/// deploys) may create or alter `rowcast_app` at the same moment. PostgreSQL then refuses one
/// with "tuple concurrently updated" (XX000) or "role already exists" (42710 / 23505 on
/// pg_authid); the statement is simply tried again, against the role as it now is.
fn concurrent_role_change(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| match db.code().code() {
        "42710" | "23505" => true,
        "XX000" => db.message().contains("concurrently"),
        _ => false,
    })
}

pub async fn ensure_app_role(client: &Client, password: &str) -> Result<bool, MigrateError> {
    if password.is_empty() {
        return Err(MigrateError::NoAppPassword);
    }
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let attrs = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION";
    let mut attempt = 0;
    let exists = loop {
        let exists =
            client.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&APP_ROLE]).await.map_err(MigrateError::Role)?.is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        let sql = format!("{verb} ROLE {APP_ROLE} WITH {attrs} PASSWORD '{}'", verifier.replace('\'', "''"));
        match client.batch_execute(&sql).await {
            Ok(()) => break exists,
            Err(e) if attempt < 20 && concurrent_role_change(&e) => {
                attempt += 1;
                // A little jitter, so that the losers of one collision do not collide again.
                let jitter =
                    u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos() % 20);
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt + jitter)).await;
            }
            Err(e) => return Err(MigrateError::Role(e)),
        }
    };
    let db = client.query_one("SELECT current_database()::text", &[]).await.map_err(MigrateError::Role)?;
    let db: String = db.get(0);
    client
        .batch_execute(&format!(
            // Only the app role (and the owner) may connect: any other role could otherwise
            // LISTEN to, or forge, the database's rowcast_events notifications.
            "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {APP_ROLE}",
            db = crate::db::quote_ident(&db)
        ))
        .await
        .map_err(MigrateError::Role)?;
    Ok(!exists)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_15_are_refused_in_one_line() {
        let err = check_server_version(140_011, "14.11 (Debian 14.11-1)").unwrap_err().to_string();
        assert!(err.contains("PostgreSQL 14.11") && err.contains("15 or newer"), "{err}");
        assert_eq!(err.lines().count(), 1);
        assert!(check_server_version(150_000, "15.0").is_ok());
        assert!(check_server_version(170_002, "17.2").is_ok());
    }
}

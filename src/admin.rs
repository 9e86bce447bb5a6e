//! `rowcast admin …`: management commands, run as the owner (`DATABASE_URL`).
//! `create-*` print the id alone on stdout; `--json` prints one JSON object instead.

use clap::Subcommand;
use serde_json::{Value, json};
use tokio_postgres::{Client, GenericClient};
use uuid::Uuid;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create (or promote) a platform admin.
    CreatePlatformAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
    /// Create a tenant (prints the existing id if the name is taken).
    CreateTenant {
        #[arg(long)]
        name: String,
    },
    /// Create a tenant admin (the tenant, by id or name, is created when it does not exist).
    CreateTenantAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// Create a tenant user (the tenant, by id or name, is created when it does not exist).
    CreateTenantUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// Row counts per table as seen by a user (through app.act_as, rolled back).
    TestRls {
        #[arg(long)]
        user: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Every row-level security policy.
    ListPolicies,
    /// EMERGENCY: switch row-level security off or back on for one table of schema public.
    Rls {
        #[command(subcommand)]
        command: RlsCommand,
    },
}

/// `rowcast admin rls …`: the emergency switch. Every use is logged loudly and recorded in
/// `app.rls_audit`, in the same transaction as the `ALTER TABLE`.
#[derive(Debug, Subcommand)]
pub enum RlsCommand {
    /// EMERGENCY: DISABLE and NO FORCE row-level security: rowcast_app then sees every tenant's rows
    /// (and the REST API stops exposing the table).
    Disable {
        /// Table of schema public (`contacts` or `public.contacts`).
        #[arg(long)]
        table: String,
        /// Why, recorded in app.rls_audit.
        #[arg(long)]
        reason: Option<String>,
    },
    /// ENABLE and FORCE row-level security again.
    Enable {
        /// Table of schema public (`contacts` or `public.contacts`).
        #[arg(long)]
        table: String,
        /// Why, recorded in app.rls_audit.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// What a command printed: plain text for humans/scripts, or JSON with `--json`.
pub struct Output {
    pub text: String,
    pub json: Value,
}

pub async fn run(client: &mut Client, cmd: AdminCommand) -> anyhow::Result<Output> {
    match cmd {
        AdminCommand::CreatePlatformAdmin { email, name } => {
            let id = upsert_user(client, &email, &name, true).await?;
            Ok(created(id))
        }
        AdminCommand::CreateTenant { name } => Ok(created(tenant_by_name(client, &name).await?)),
        AdminCommand::CreateTenantAdmin { email, name, tenant } => create_member(client, &email, &name, &tenant, "tenant_admin").await,
        AdminCommand::CreateTenantUser { email, name, tenant } => create_member(client, &email, &name, &tenant, "tenant_user").await,
        AdminCommand::TestRls { user, tenant } => test_rls(client, &user, tenant.as_deref()).await,
        AdminCommand::ListPolicies => list_policies(client).await,
        AdminCommand::Rls { command: RlsCommand::Disable { table, reason } } => switch_rls(client, &table, false, reason.as_deref()).await,
        AdminCommand::Rls { command: RlsCommand::Enable { table, reason } } => switch_rls(client, &table, true, reason.as_deref()).await,
    }
}

fn created(id: Uuid) -> Output {
    Output { text: id.to_string(), json: json!({ "id": id }) }
}

async fn upsert_user(client: &impl GenericClient, email: &str, name: &str, platform_admin: bool) -> anyhow::Result<Uuid> {
    let row = client
        .query_one(
            "INSERT INTO public.users (email, name, platform_role) VALUES ($1, $2, CASE WHEN $3 THEN 'platform_admin' END)
             ON CONFLICT (lower(email)) DO UPDATE
                SET platform_role = CASE WHEN $3 THEN 'platform_admin' ELSE users.platform_role END
             RETURNING id",
            &[&email, &name, &platform_admin],
        )
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}

async fn tenant_by_name(client: &impl GenericClient, name: &str) -> anyhow::Result<Uuid> {
    let row = client
        .query_one(
            "WITH ins AS (INSERT INTO public.tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id)
             SELECT id FROM ins UNION ALL SELECT id FROM public.tenants WHERE name = $1 LIMIT 1",
            &[&name],
        )
        .await
        .map_err(db_error)?;
    Ok(row.get(0))
}

/// A tenant by id (must exist) or by name (created when missing, as the seed commands do).
async fn resolve_tenant(client: &impl GenericClient, tenant: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(tenant) {
        let found = client.query_opt("SELECT id FROM public.tenants WHERE id = $1", &[&id]).await.map_err(db_error)?;
        return found.map(|r| r.get(0)).ok_or_else(|| anyhow::anyhow!("no tenant with id {id}"));
    }
    tenant_by_name(client, tenant).await
}

async fn resolve_user(client: &impl GenericClient, user: &str) -> anyhow::Result<Uuid> {
    let row = match Uuid::parse_str(user) {
        Ok(id) => client.query_opt("SELECT id FROM public.users WHERE id = $1", &[&id]).await,
        Err(_) => client.query_opt("SELECT id FROM public.users WHERE lower(email) = lower($1)", &[&user]).await,
    }
    .map_err(db_error)?;
    row.map(|r| r.get(0)).ok_or_else(|| anyhow::anyhow!("no user {user}"))
}

async fn create_member(client: &mut Client, email: &str, name: &str, tenant: &str, role: &str) -> anyhow::Result<Output> {
    let tx = client.transaction().await?;
    let tenant_id = resolve_tenant(&tx, tenant).await?;
    let user_id = upsert_user(&tx, email, name, false).await?;
    tx.execute(
        "INSERT INTO public.memberships (tenant_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        &[&tenant_id, &user_id, &role],
    )
    .await
    .map_err(db_error)?;
    tx.commit().await?;
    Ok(Output { text: user_id.to_string(), json: json!({ "id": user_id, "tenantId": tenant_id, "role": role }) })
}

/// Lists the tables that have row-level security, visible-row counts as `user` in `tenant`.
async fn test_rls(client: &mut Client, user: &str, tenant: Option<&str>) -> anyhow::Result<Output> {
    let user_id = resolve_user(client, user).await?;
    let tenant_id = match tenant {
        Some(t) => Some(resolve_tenant(client, t).await?),
        None => None,
    };
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity
               AND has_any_column_privilege('rowcast_app', c.oid, 'SELECT') ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let tx = client.transaction().await?;
    let ctx = tx.query_one("SELECT role, tenant_id FROM app.act_as($1, $2)", &[&user_id, &tenant_id]).await.map_err(db_error)?;
    let role: String = ctx.get(0);
    let in_tenant: Option<Uuid> = ctx.get(1);
    let mut counts = serde_json::Map::new();
    let mut text = format!("user {user_id} as {role} in tenant {}\n", in_tenant.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into()));
    for table in &tables {
        let sql = format!("SELECT count(*) FROM public.{}", crate::db::quote_ident(table));
        let n: i64 = tx.query_one(&sql, &[]).await.map_err(db_error)?.get(0);
        text.push_str(&format!("{table:<24} {n}\n"));
        counts.insert(table.clone(), json!(n));
    }
    tx.rollback().await?;
    Ok(Output {
        text: text.trim_end().to_string(),
        json: json!({ "userId": user_id, "tenantId": in_tenant, "role": role, "tables": counts }),
    })
}

async fn list_policies(client: &Client) -> anyhow::Result<Output> {
    let rows = client
        .query(
            "SELECT tablename::text, policyname::text, permissive::text, cmd::text, coalesce(qual, ''), coalesce(with_check, '')
             FROM pg_policies WHERE schemaname IN ('public', 'app') ORDER BY tablename, policyname",
            &[],
        )
        .await?;
    let mut text = String::new();
    let mut list = Vec::new();
    for r in &rows {
        let (table, name, kind, cmd, using, check): (String, String, String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        text.push_str(&format!("{table}.{name} [{kind} {cmd}]\n    USING {using}\n    CHECK {check}\n"));
        list.push(json!({"table": table, "policy": name, "permissive": kind, "command": cmd, "using": using, "withCheck": check}));
    }
    Ok(Output { text: text.trim_end().to_string(), json: json!({ "policies": list }) })
}

/// The emergency switch: `app.rls_switch` (V23) on a table of schema public, in one
/// transaction: rowcast_app's table and column privileges revoked (disable) or restored
/// exactly (enable), RLS switched with `FORCE`, the switch recorded in `app.rls_audit`, and
/// `NOTIFY rowcast_reload` so running servers drop or serve the table the moment it commits.
/// Loud on purpose: a warning in the log and a line on stderr, whatever `--json` says.
async fn switch_rls(client: &mut Client, table: &str, enable: bool, reason: Option<&str>) -> anyhow::Result<Output> {
    let name = table.strip_prefix("public.").unwrap_or(table);
    let tx = client.transaction().await?;
    let found = tx
        .query_opt(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind IN ('r', 'p')",
            &[&name],
        )
        .await
        .map_err(db_error)?;
    let Some(row) = found else { anyhow::bail!("no table {name} in schema public") };
    let oid: tokio_postgres::types::Oid = row.get(0);
    let audit = tx
        .query_one(
            "SELECT audit_id, table_name, actor, at::text, grants FROM app.rls_switch($1::oid::regclass, $2, $3)",
            &[&oid, &enable, &reason],
        )
        .await
        .map_err(db_error)?;
    tx.commit().await?;
    let (audit_id, qualified, actor, at, grants): (i64, String, String, String, Value) =
        (audit.get(0), audit.get(1), audit.get(2), audit.get(3), audit.get(4));
    let action = if enable { "enable" } else { "disable" };
    let line = if enable {
        format!(
            "row-level security ENABLED and FORCED again on {qualified}, rowcast_app's privileges restored, servers told to reload (audit #{audit_id}, by {actor})"
        )
    } else {
        format!(
            "!!! EMERGENCY: row-level security DISABLED on {qualified}: tenant isolation is OFF for this table; rowcast_app's privileges are revoked and servers told to reload, so the API no longer serves it (audit #{audit_id}, by {actor}); re-enable with `rowcast admin rls enable --table {name}`"
        )
    };
    tracing::warn!(table = %qualified, action, actor = %actor, reason = reason.unwrap_or(""), audit_id, "{line}");
    eprintln!("{line}");
    Ok(Output {
        text: format!("{action}d row-level security on {qualified}"),
        json: json!({ "table": qualified, "action": action, "rlsEnabled": enable, "rlsForced": enable, "auditId": audit_id, "actor": actor, "at": at, "appGrants": grants }),
    })
}

fn db_error(err: tokio_postgres::Error) -> anyhow::Error {
    match err.as_db_error() {
        Some(db) => anyhow::anyhow!("{} ({})", db.message(), db.code().code()),
        None => anyhow::anyhow!("database error: {err}"),
    }
}

//! The DBA scripts (sql/*.sql) and the demo seed.

use super::*;

fn psql_binary() -> Option<std::path::PathBuf> {
    let bundled = rowcast::db::embedded::find_bindir().ok().map(|d| d.join("psql")).filter(|p| p.exists());
    bundled
        .or_else(|| std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("psql")).find(|p| p.exists())))
}

async fn psql(url: &str, script: &str, vars: &[(&str, String)]) -> (bool, String) {
    let psql = psql_binary().expect("psql");
    let path = format!("{}/sql/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(psql);
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", &path]);
    for (k, v) in vars {
        cmd.arg("-v").arg(format!("{k}={v}"));
    }
    let out = cmd.output().await.expect("run psql");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn dba_scripts_run_with_psql_and_the_rls_check_fails_when_it_should() {
    if psql_binary().is_none() {
        eprintln!("skipped: no psql binary next to the PostgreSQL server nor on PATH");
        return;
    }
    let s = Schema::new().await;
    let url = s.db.owner_url();
    let (ok, out) = psql(&url, "policies.sql", &[]).await;
    assert!(ok && out.contains("tenant_isolation") && out.contains("webhooks_read_admins"), "policies.sql: {out}");
    let (ok, out) = psql(&url, "policies.sql", &[("table", "webhooks".into())]).await;
    assert!(ok && out.contains("webhooks_write_admins") && !out.contains("contacts_read"), "policies.sql -v table: {out}");
    let (ok, out) = psql(&url, "triggers.sql", &[]).await;
    assert!(ok && out.contains("rowcast_campaign_status_guard") && out.contains("(0 rows)"), "triggers.sql: {out}");
    let as_user = [("user", s.w.user_a.to_string()), ("tenant", s.w.tenant_a.to_string()), ("table", "webhooks".into())];
    let (ok, out) = psql(&url, "act_as.sql", &as_user).await;
    assert!(ok && out.contains("tenant_user") && out.contains("contacts") && out.contains("ROLLBACK"), "act_as.sql: {out}");
    assert!(out.contains("(0 rows)"), "a tenant user sees no webhook: {out}");
    let (ok, out) = psql(&url, "check_rls.sql", &[]).await;
    assert!(ok && out.contains("check passed"), "check_rls.sql on a sound schema: {out}");
    s.owner.batch_execute("ALTER TABLE public.contacts NO FORCE ROW LEVEL SECURITY").await.unwrap();
    let (ok, out) = psql(&url, "check_rls.sql", &[]).await;
    assert!(!ok && out.contains("table public.contacts: RLS not forced"), "check_rls.sql must fail: {out}");
}

#[tokio::test]
async fn demo_seed_is_idempotent_and_fills_every_tenant_table() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let seed = include_str!("../../../src/dev/seed.sql");
    owner.batch_execute(seed).await.expect("seed once");
    owner.batch_execute(seed).await.expect("seed twice");
    for table in ISSUE_TABLES {
        let n: i64 = owner.query_one(&format!("SELECT count(*) FROM public.{table}"), &[]).await.unwrap().get(0);
        if table != "webhook_logs" {
            assert!(n > 0, "the demo has rows in {table}");
        }
    }
    let mut app = db.app().await;
    let (acme, globex) = (
        Uuid::parse_str("10000000-0000-4000-8000-000000000001").unwrap(),
        Uuid::parse_str("10000000-0000-4000-8000-000000000002").unwrap(),
    );
    let (alice, dan) = (
        Uuid::parse_str("20000000-0000-4000-8000-000000000002").unwrap(),
        Uuid::parse_str("20000000-0000-4000-8000-000000000005").unwrap(),
    );
    for (user, tenant, sql, expected) in [
        (alice, acme, "SELECT count(*) FROM contacts", 3),
        (alice, acme, "SELECT count(*) FROM message_templates", 2),
        (alice, acme, "SELECT count(*) FROM webhooks", 1),
        (dan, globex, "SELECT count(*) FROM campaigns", 3),
        (dan, globex, "SELECT count(*) FROM messages_history WHERE status = 'queued'", 2),
        (dan, globex, "SELECT count(*) FROM webhooks", 0),
    ] {
        let n: i64 = first(&as_user(&mut app, user, Some(tenant), sql, &[]).await.unwrap());
        assert_eq!(n, expected, "{sql} as {user} in {tenant}");
    }
}

//! Catalog invariants.

use super::*;

async fn names(owner: &Client, sql: &str) -> Vec<String> {
    owner.query(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn every_public_table_has_row_level_security_enabled_and_forced() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let bad = names(
        &owner,
        "SELECT c.relname::text || CASE WHEN NOT c.relrowsecurity THEN ' (not enabled)' ELSE ' (not forced)' END
           FROM pg_class c
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT (c.relrowsecurity AND c.relforcerowsecurity)",
    )
    .await;
    assert!(bad.is_empty(), "public tables without enabled and forced RLS: {bad:?}");
    // Tables the server can use have policies (a table without any is closed to everyone but its owner).
    let closed = names(
        &owner,
        "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
            AND has_any_column_privilege('rowcast_app', c.oid, 'SELECT') AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)",
    )
    .await;
    assert!(closed.is_empty(), "tables granted to rowcast_app without any policy: {closed:?}");
    let all = names(&owner, "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'").await;
    for t in ISSUE_TABLES {
        assert!(all.iter().any(|x| x == t), "table {t} exists");
    }
    // The twin: the check does catch a table without forced RLS.
    owner.batch_execute("ALTER TABLE public.usages NO FORCE ROW LEVEL SECURITY").await.unwrap();
    let caught = names(
        &owner,
        "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND NOT relforcerowsecurity",
    )
    .await;
    assert_eq!(caught, vec!["usages".to_string()]);
}

#[tokio::test]
async fn every_security_definer_function_pins_its_search_path() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let unpinned = "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prosecdef AND n.nspname IN ('app', 'rpc', 'public')
            AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS s WHERE s LIKE 'search\\_path=%')";
    assert_eq!(names(&owner, unpinned).await, Vec::<String>::new(), "SECURITY DEFINER functions without a pinned search_path");
    let definers = names(
        &owner,
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.prosecdef AND p.pronamespace = 'rpc'::regnamespace ORDER BY 1",
    )
    .await;
    assert_eq!(
        definers,
        vec!["rpc.invite_user(text,text,text)", "rpc.webhook_regenerate_secret(uuid)"],
        "the only definers in rpc, on purpose"
    );
    // The twin: an unpinned definer is caught.
    owner.batch_execute("CREATE FUNCTION app.unpinned() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'").await.unwrap();
    assert_eq!(names(&owner, unpinned).await, vec!["app.unpinned()".to_string()]);
}

#[tokio::test]
async fn every_tenant_table_follows_the_conventions() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let tables: Vec<String> = ISSUE_TABLES.iter().map(|t| format!("'{t}'")).collect();
    let list = tables.join(", ");
    let check = |what: &str, sql: String| (what.to_string(), sql);
    let checks = [
        check("table without a comment", format!(
            "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname IN ({list})
                AND obj_description(oid, 'pg_class') IS NULL"
        )),
        check("policy without a comment", format!(
            "SELECT polrelid::regclass::text || '.' || polname FROM pg_policy WHERE polrelid::regclass::text IN ({list})
                AND obj_description(oid, 'pg_policy') IS NULL"
        )),
        check("tenant table without a RESTRICTIVE tenant_isolation USING + WITH CHECK", format!(
            "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({list})
                AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation' AND NOT p.polpermissive
                                AND p.polcmd = '*' AND p.polqual IS NOT NULL AND p.polwithcheck IS NOT NULL)")),
        check("tenant table without UNIQUE (tenant_id, id)", format!(
            "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({list})
                AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.conname = c.relname || '_tenant_id_id_key' AND k.contype = 'u')")),
        check("table without rowcast_touch_updated_at", format!(
            "SELECT c.relname::text FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({list})
                AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'rowcast_touch_updated_at')")),
        check("trigger not named rowcast_…", "SELECT tgrelid::regclass::text || '.' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE NOT t.tgisinternal AND c.relnamespace IN ('public'::regnamespace, 'app'::regnamespace) AND t.tgname NOT LIKE 'rowcast\\_%'".into()),
        check("unnamed (default-named) constraint", format!(
            "SELECT conname::text FROM pg_constraint WHERE conrelid::regclass::text IN ({list}) AND contype IN ('p', 'u', 'f', 'c')
                AND conname !~ '_(pkey|key|fkey|check)$'")),
        // Non-unique indexes of tenant tables serve tenant queries, so they lead with tenant_id;
        // the two exceptions index a column pointing at a GLOBAL table (foreign-key support).
        check("tenant-table index not led by tenant_id", format!(
            "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname IN ({list}) AND NOT x.indisprimary
                AND x.indkey[0] <> a.attnum AND i.relname NOT IN ('subscriptions_plan_id_idx', 'campaigns_template_id_idx')")),
        // References between tenant tables are composite (tenant_id, …) — except to templates,
        // which may be shared (checked by rowcast_campaign_template_check instead).
        check("reference between tenant tables that is not composite", format!(
            "SELECT k.conname::text FROM pg_constraint k
               JOIN pg_attribute ta ON ta.attrelid = k.conrelid AND ta.attname = 'tenant_id'
               JOIN pg_attribute fa ON fa.attrelid = k.confrelid AND fa.attname = 'tenant_id'
              WHERE k.contype = 'f' AND k.conrelid::regclass::text IN ({list})
                AND (k.conkey[1] <> ta.attnum OR k.confkey[1] <> fa.attnum) AND k.conname <> 'campaigns_template_id_fkey'")),
    ];
    let mut failures = Vec::new();
    for (what, sql) in checks {
        let found = names(&owner, &sql).await;
        if !found.is_empty() {
            failures.push(format!("{what}: {found:?}"));
        }
    }
    assert!(failures.is_empty(), "convention violations:\n{}", failures.join("\n"));
}

#[tokio::test]
async fn every_rpc_function_is_executable_by_rowcast_app_and_not_by_public() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let functions =
        names(&owner, "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'rpc'::regnamespace ORDER BY 1").await;
    for f in [
        "rpc.campaign_cancel(uuid)",
        "rpc.campaign_start(uuid)",
        "rpc.group_add_contacts(uuid,uuid[])",
        "rpc.group_remove_contacts(uuid,uuid[])",
        "rpc.invite_user(text,text,text)",
        "rpc.message_update_status(uuid,text,text)",
        "rpc.webhook_regenerate_secret(uuid)",
    ] {
        assert!(functions.iter().any(|x| x == f), "{f} exists: {functions:?}");
    }
    let wrong = names(
        &owner,
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'rpc'::regnamespace
            AND (NOT has_function_privilege('rowcast_app', p.oid, 'EXECUTE')
                 OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a WHERE a.grantee = 0))",
    )
    .await;
    assert!(wrong.is_empty(), "rpc functions not executable by rowcast_app, or executable by PUBLIC: {wrong:?}");
}

#[tokio::test]
async fn every_named_constraint_a_client_can_trip_has_a_message() {
    let db = TestDb::new().await;
    let owner = db.owner().await;
    let list = ISSUE_TABLES.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let ours = names(
        &owner,
        &format!(
            "SELECT conname::text FROM pg_constraint WHERE conrelid::regclass::text IN ({list}) AND contype IN ('p', 'u', 'f', 'c')
             UNION ALL
             SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              WHERE x.indrelid::regclass::text IN ({list}) AND x.indisunique AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)"
        ),
    )
    .await;
    // Not trippable by a client: RLS refuses another tenant's tenant_id first, the primary key
    // fires before (tenant_id, id), and the counters guard before campaigns_counts_check.
    let unreachable = |n: &str| n.ends_with("_tenant_id_fkey") || n.ends_with("_tenant_id_id_key") || n == "campaigns_counts_check";
    let unmapped: Vec<&String> = ours.iter().filter(|n| !unreachable(n) && rowcast::error::constraints::lookup(n).is_none()).collect();
    assert!(unmapped.is_empty(), "constraints without a client message in src/db/constraints.rs: {unmapped:?}");
    let everything =
        names(&owner, "SELECT conname::text FROM pg_constraint UNION ALL SELECT relname::text FROM pg_class WHERE relkind = 'i'").await;
    let stale: Vec<&str> =
        rowcast::error::constraints::all().iter().map(|c| c.name).filter(|n| !everything.iter().any(|e| e == n)).collect();
    assert!(stale.is_empty(), "mapped constraints that do not exist: {stale:?}");
}

//! `rowcast admin rls disable|enable`.

use super::*;

fn rls_switch(disable: bool, table: &str) -> rowcast::admin::AdminCommand {
    use rowcast::admin::{AdminCommand, RlsCommand};
    let (table, reason) = (table.to_string(), Some("incident 42".to_string()));
    let command = if disable { RlsCommand::Disable { table, reason } } else { RlsCommand::Enable { table, reason } };
    AdminCommand::Rls { command }
}

#[tokio::test]
async fn admin_rls_switch_disables_and_reenables_rls_and_records_it() {
    let mut s = Schema::new().await;
    let mut owner = s.db.owner().await;
    let leak = s.b("SELECT count(*) FROM contacts WHERE tenant_id = @tenant");
    let state = "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = 'public.contacts'::regclass";
    assert_eq!(first::<i64>(&s.one(s.w.user_a, Some(s.w.tenant_a), &leak).await.unwrap()), 0, "isolated before");

    let out = rowcast::admin::run(&mut owner, rls_switch(true, "contacts")).await.unwrap();
    assert_eq!(out.json["action"], "disable");
    assert_eq!(out.json["table"], "public.contacts");
    assert!(!s.owner_scalar::<bool>(state).await, "RLS off");
    assert_eq!(first::<i64>(&s.one(s.w.user_a, Some(s.w.tenant_a), &leak).await.unwrap()), 2, "the emergency really is one");

    let out = rowcast::admin::run(&mut owner, rls_switch(false, "public.contacts")).await.unwrap();
    assert_eq!((out.json["action"].as_str(), out.json["rlsForced"].as_bool()), (Some("enable"), Some(true)));
    assert!(s.owner_scalar::<bool>(state).await, "RLS enabled and forced again");
    assert_eq!(first::<i64>(&s.one(s.w.user_a, Some(s.w.tenant_a), &leak).await.unwrap()), 0, "isolated again");

    let audit: String = s
        .owner_scalar("SELECT string_agg(table_name || ' ' || action || ' ' || (actor = current_user) || ' ' || reason, ' | ' ORDER BY id) FROM app.rls_audit")
        .await;
    assert_eq!(audit, "public.contacts disable true incident 42 | public.contacts enable true incident 42", "who, what, why");
}

#[tokio::test]
async fn admin_rls_switch_refuses_what_is_not_a_public_table() {
    let db = TestDb::new().await;
    let mut owner = db.owner().await;
    for table in ["nope", "contacts; DROP TABLE contacts", "app.rls_audit", "rls_audit", "contacts_tenant_phone_key"] {
        let err = rowcast::admin::run(&mut owner, rls_switch(true, table)).await.err().unwrap_or_else(|| panic!("{table} accepted"));
        assert!(err.to_string().contains("no table"), "{table}: {err}");
    }
    let intact: bool = owner
        .query_one("SELECT bool_and(relrowsecurity AND relforcerowsecurity) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(intact, "nothing was switched");
    let audited: i64 = owner.query_one("SELECT count(*) FROM app.rls_audit", &[]).await.unwrap().get(0);
    assert_eq!(audited, 0, "nor recorded");
}

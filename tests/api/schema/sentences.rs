//! The sentences of the issue, one by one.

use super::*;

#[tokio::test]
async fn tenant_user_can_neither_read_nor_write_webhooks_while_tenant_admin_can() {
    let mut s = Schema::new().await;
    let (a, user, admin) = (Some(s.w.tenant_a), s.w.user_a, s.w.admin_a);
    let read = "SELECT id, name, url FROM webhooks";
    assert!(s.one(user, a, read).await.unwrap().is_empty(), "tenant user reads no webhook");
    assert_eq!(s.one(admin, a, read).await.unwrap().len(), 2, "tenant admin reads their tenant's two webhooks");
    assert!(s.one(user, a, "SELECT id FROM webhook_logs").await.unwrap().is_empty(), "tenant user reads no webhook log");
    assert_eq!(s.one(admin, a, "SELECT id FROM webhook_logs").await.unwrap().len(), 2, "tenant admin reads the logs");
    let insert = s.a("INSERT INTO webhooks (tenant_id, name, url) VALUES (@tenant, 'Mine', 'https://u.test/h') RETURNING id");
    expect_err(s.one(user, a, &insert).await, "42501", "tenant user creating a webhook");
    assert_eq!(s.one(admin, a, &insert).await.unwrap().len(), 1, "tenant admin creates one");
}

#[tokio::test]
async fn tenant_admin_cannot_create_plans_while_platform_admin_can() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let insert = "INSERT INTO plans (code, name, price_cents) VALUES ('gold', 'Gold', 9900) RETURNING id";
    expect_err(s.one(s.w.admin_a, a, insert).await, "42501", "tenant admin creating a plan");
    expect_err(s.one(s.w.user_a, a, insert).await, "42501", "tenant user creating a plan");
    assert_eq!(s.one(s.w.platform_admin, None, insert).await.unwrap().len(), 1, "platform admin outside a tenant");
    assert_eq!(s.one(s.w.platform_admin, a, insert).await.unwrap().len(), 1, "platform admin inside a tenant");
    assert_eq!(s.one(s.w.admin_a, a, "SELECT id FROM plans").await.unwrap().len(), 2, "tenant admin reads the price list");
}

#[tokio::test]
async fn nobody_can_put_another_tenants_contact_in_a_group() {
    let mut s = Schema::new().await;
    let foreign = format!(
        "INSERT INTO group_contacts (tenant_id, group_id, contact_id) VALUES ('{}', {}, {})",
        s.w.tenant_a,
        s.a("@groups.spare"),
        s.b("@contacts")
    );
    let via_rpc = format!("SELECT rpc.group_add_contacts({}, ARRAY[{}])", s.a("@groups.spare"), s.b("@contacts"));
    let own = s.a("INSERT INTO group_contacts (tenant_id, group_id, contact_id) VALUES (@tenant, @groups.spare, @contacts) RETURNING id");
    for &role in ALL {
        let (user, a) = (role.user(&s.w), Some(s.w.tenant_a));
        let e = expect_err(s.one(user, a, &foreign).await, "23503", &format!("{role:?}: B's contact into A's group"));
        assert_eq!(constraint(&e).as_deref(), Some("group_contacts_contact_id_fkey"));
        let e = expect_err(s.one(user, a, &via_rpc).await, "23503", &format!("{role:?}: rpc.group_add_contacts with B's contact"));
        assert_eq!(constraint(&e).as_deref(), Some("group_contacts_contact_id_fkey"));
        assert_eq!(s.one(user, a, &own).await.unwrap().len(), 1, "{role:?}: own contact into own group");
    }
    // Even a platform admin outside any tenant, who sees both rows, cannot mix tenants.
    let e = expect_err(s.one(s.w.platform_admin, None, &foreign).await, "23503", "platform admin mixing tenants");
    assert_eq!(constraint(&e).as_deref(), Some("group_contacts_contact_id_fkey"));
    let claimed_b = format!(
        "INSERT INTO group_contacts (tenant_id, group_id, contact_id) VALUES ('{}', {}, {})",
        s.w.tenant_b,
        s.a("@groups.spare"),
        s.b("@contacts")
    );
    let e = expect_err(s.one(s.w.platform_admin, None, &claimed_b).await, "23503", "A's group under B's tenant_id");
    assert_eq!(constraint(&e).as_deref(), Some("group_contacts_group_id_fkey"));
}

#[tokio::test]
async fn every_composite_reference_refuses_another_tenants_row() {
    let mut s = Schema::new().await;
    let pa = s.w.platform_admin;
    // (constraint, statement pointing at B's row from a tenant-A row, same statement on A's row)
    let cases = [
        ("campaigns_group_id_fkey", "INSERT INTO campaigns (tenant_id, name, group_id) VALUES (@tenant, 'x', {ref})", "groups"),
        (
            "campaign_recipients_contact_id_fkey",
            "INSERT INTO campaign_recipients (tenant_id, campaign_id, contact_id, phone) VALUES (@tenant, @campaigns.spare, {ref}, '+33699999999')",
            "contacts",
        ),
        (
            "campaign_recipients_campaign_id_fkey",
            "INSERT INTO campaign_recipients (tenant_id, campaign_id, phone) VALUES (@tenant, {ref}, '+33699999999')",
            "campaigns",
        ),
        (
            "messages_history_campaign_id_fkey",
            "INSERT INTO messages_history (tenant_id, campaign_id, phone, body) VALUES (@tenant, {ref}, '+33699999999', 'x')",
            "campaigns",
        ),
        (
            "messages_history_contact_id_fkey",
            "INSERT INTO messages_history (tenant_id, contact_id, phone, body) VALUES (@tenant, {ref}, '+33699999999', 'x')",
            "contacts",
        ),
        (
            "messages_history_recipient_id_fkey",
            "INSERT INTO messages_history (tenant_id, recipient_id, phone, body) VALUES (@tenant, {ref}, '+33699999999', 'x')",
            "campaign_recipients",
        ),
        // webhook_logs_webhook_id_fkey: no role inserts webhook_logs through rowcast_app (V62).
    ];
    for (name, template, table) in cases {
        let foreign = s.a(&template.replace("{ref}", &s.b(&format!("@{table}"))));
        let own = s.a(&template.replace("{ref}", &format!("@{table}")));
        let e = expect_err(s.one(pa, None, &foreign).await, "23503", &format!("{name}: B's {table} from an A row"));
        assert_eq!(constraint(&e).as_deref(), Some(name));
        s.one(pa, None, &own).await.unwrap_or_else(|e| panic!("{name}: the own-tenant twin fails: {e:?}"));
    }
}

#[tokio::test]
async fn shared_templates_are_readable_by_every_role_and_writable_only_by_platform_admins() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    for &role in ALL {
        let rows = s.one(role.user(&s.w), a, "SELECT id FROM message_templates WHERE tenant_id IS NULL").await.unwrap();
        assert_eq!(rows.len(), 2, "{role:?} reads both shared templates");
    }
    assert_eq!(s.one(s.w.user_b, Some(s.w.tenant_b), "SELECT id FROM message_templates WHERE tenant_id IS NULL").await.unwrap().len(), 2);
    let insert = "INSERT INTO message_templates (tenant_id, name, body) VALUES (NULL, 'welcome', 'Hi') RETURNING id";
    let update = counted(&s.a("UPDATE message_templates SET body = 'Hacked' WHERE id = @shared"));
    let unshare = counted(&s.a("UPDATE message_templates SET tenant_id = @tenant WHERE id = @shared"));
    let share = s.a("UPDATE message_templates SET tenant_id = NULL WHERE id = @message_templates");
    for role in [TA, TU] {
        let user = role.user(&s.w);
        expect_err(s.one(user, a, insert).await, "42501", &format!("{role:?} creating a shared template"));
        assert_eq!(first::<i64>(&s.one(user, a, &update).await.unwrap()), 0, "{role:?} changing a shared template");
        assert_eq!(first::<i64>(&s.one(user, a, &unshare).await.unwrap()), 0, "{role:?} taking a shared template");
        expect_err(s.one(user, a, &share).await, "42501", &format!("{role:?} sharing their own template"));
    }
    let pa = s.w.platform_admin;
    assert_eq!(s.one(pa, a, insert).await.unwrap().len(), 1, "platform admin creates a shared template");
    assert_eq!(s.one(pa, None, insert).await.unwrap().len(), 1, "also outside any tenant");
    assert_eq!(first::<i64>(&s.one(pa, a, &update).await.unwrap()), 1, "platform admin changes a shared template");
    assert_eq!(
        s.owner_scalar::<String>(&s.a("SELECT body FROM message_templates WHERE id = @shared")).await,
        "Shared hello {{first_name}}"
    );
}

#[tokio::test]
async fn a_campaign_can_use_its_tenants_or_a_shared_template_but_not_another_tenants() {
    let mut s = Schema::new().await;
    let insert = |template: &str| {
        s.a(&format!("INSERT INTO campaigns (tenant_id, name, template_id) VALUES (@tenant, 'x', {template}) RETURNING id"))
    };
    let (own, shared, foreign) = (insert("@message_templates"), insert("@shared"), insert(&s.b("@message_templates")));
    let a = Some(s.w.tenant_a);
    assert_eq!(s.one(s.w.user_a, a, &own).await.unwrap().len(), 1, "own template");
    assert_eq!(s.one(s.w.user_a, a, &shared).await.unwrap().len(), 1, "shared template");
    let e = expect_err(s.one(s.w.user_a, a, &foreign).await, "23503", "B's template in an A campaign");
    assert_eq!(constraint(&e).as_deref(), Some("campaigns_template_id_fkey"));
    let e = expect_err(s.one(s.w.platform_admin, None, &foreign).await, "23503", "even for a platform admin who sees it");
    assert_eq!(constraint(&e).as_deref(), Some("campaigns_template_id_fkey"));
    let switch = s.a(&format!("UPDATE campaigns SET template_id = {} WHERE id = @campaigns", s.b("@message_templates")));
    expect_err(s.one(s.w.admin_a, a, &switch).await, "23503", "switching a draft to B's template");
}

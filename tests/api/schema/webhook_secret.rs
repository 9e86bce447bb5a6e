//! The webhook secret.

use super::*;

#[tokio::test]
async fn webhook_secret_is_never_selectable_by_rowcast_app() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    for sql in [
        "SELECT secret FROM webhooks",
        "SELECT * FROM webhooks",
        "SELECT id FROM webhooks WHERE secret LIKE 'whsec_%'",
        "SELECT id FROM webhooks ORDER BY secret",
        "UPDATE webhooks SET secret = repeat('x', 40) WHERE id = @webhooks",
        "INSERT INTO webhooks (tenant_id, name, url) VALUES (@tenant, 'n', 'https://n.test/h') RETURNING *",
    ] {
        for user in [s.w.admin_a, s.w.platform_admin] {
            expect_err(s.one(user, a, &s.a(sql)).await, "42501", sql);
        }
    }
    let twin =
        s.a("SELECT id, tenant_id, name, url, events, is_active, deleted_at, created_at, updated_at FROM webhooks WHERE id = @webhooks");
    assert_eq!(s.one(s.w.admin_a, a, &twin).await.unwrap().len(), 1, "every other column is readable");
    let own_secret =
        s.a("INSERT INTO webhooks (tenant_id, name, url, secret) VALUES (@tenant, 'n', 'https://n.test/h', repeat('s', 32)) RETURNING id");
    assert!(s.one(s.w.admin_a, a, &own_secret).await.is_ok(), "a client may bring its own secret on insert");
    let weak = own_secret.replace("repeat('s', 32)", "'short'");
    let e = expect_err(s.one(s.w.admin_a, a, &weak).await, "23514", "a weak secret");
    assert_eq!(constraint(&e).as_deref(), Some("webhooks_secret_check"));
    let privileges: (bool, bool) = {
        let r = s
            .owner
            .query_one(
                "SELECT has_column_privilege('rowcast_app', 'public.webhooks', 'secret', 'SELECT'), \
                    has_column_privilege('rowcast_app', 'public.webhooks', 'url', 'SELECT')",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(privileges, (false, true), "column privileges: secret no, url yes");
}

#[tokio::test]
async fn regenerating_a_webhook_secret_returns_it_once_to_admins_only() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let regenerate = s.a("SELECT rpc.webhook_regenerate_secret(@webhooks)");
    let stored = s.a("SELECT secret FROM webhooks WHERE id = @webhooks");
    let before: String = s.owner_scalar(&stored).await;
    let first_secret: String = first(&s.commit(s.w.admin_a, a, &regenerate).await.unwrap());
    assert!(first_secret.starts_with("whsec_") && first_secret.len() == 70, "{first_secret}");
    assert_ne!(first_secret, before);
    assert_eq!(s.owner_scalar::<String>(&stored).await, first_secret, "the returned secret is the stored one");
    let second: String = first(&s.commit(s.w.platform_admin, None, &regenerate).await.unwrap());
    assert_ne!(second, first_secret, "each call rotates: the previous secret is gone for good");

    expect_err(s.one(s.w.user_a, a, &regenerate).await, "42501", "tenant user");
    expect_err(s.app.query(&regenerate, &[]).await, "42501", "no context");
    let foreign = s.b("SELECT rpc.webhook_regenerate_secret(@webhooks)");
    let b_before: String = s.owner_scalar(&s.b("SELECT secret FROM webhooks WHERE id = @webhooks")).await;
    expect_err(s.commit(s.w.admin_a, a, &foreign).await, "22023", "admin of A on B's webhook");
    assert_eq!(s.owner_scalar::<String>(&s.b("SELECT secret FROM webhooks WHERE id = @webhooks")).await, b_before, "B's secret untouched");
    let deleted = [s.a("UPDATE webhooks SET deleted_at = now() WHERE id = @webhooks"), regenerate.clone()];
    expect_err(s.run(s.w.admin_a, a, &deleted).await, "22023", "a soft-deleted webhook");
    assert_eq!(s.owner_scalar::<String>(&stored).await, second, "failed calls changed nothing");
}

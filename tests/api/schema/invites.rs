//! rpc.invite_user.

use super::*;

#[tokio::test]
async fn invite_user_adds_members_to_the_current_tenant_for_admins_only() {
    let mut s = Schema::new().await;
    let (a, b) = (Some(s.w.tenant_a), Some(s.w.tenant_b));
    let invite = |email: &str, role: &str| format!("SELECT rpc.invite_user('{email}', 'Newcomer', '{role}')");
    let new_id: Uuid = first(&s.commit(s.w.admin_a, a, &invite("new@a.test", "tenant_user")).await.unwrap());
    let membership =
        |user: Uuid| format!("SELECT string_agg(tenant_id::text || ':' || role, ',') FROM memberships WHERE user_id = '{user}'");
    assert_eq!(s.owner_scalar::<String>(&membership(new_id)).await, format!("{}:tenant_user", s.w.tenant_a), "created and added to A only");
    let existing: Uuid = first(&s.commit(s.w.admin_a, a, &invite("USER@B.TEST", "tenant_admin")).await.unwrap());
    assert_eq!(existing, s.w.user_b, "an existing user (email case-insensitive) is reused");
    assert_eq!(s.owner_scalar::<String>(&format!("SELECT name FROM users WHERE id = '{existing}'")).await, "user@b.test", "name kept");
    let via_platform: Uuid = first(&s.commit(s.w.platform_admin, b, &invite("pa-guest@x.test", "tenant_user")).await.unwrap());
    assert_eq!(s.owner_scalar::<String>(&membership(via_platform)).await, format!("{}:tenant_user", s.w.tenant_b), "platform admin in B");

    expect_err(s.one(s.w.user_a, a, &invite("x@a.test", "tenant_user")).await, "42501", "tenant user inviting");
    expect_err(s.app.query(&invite("x@a.test", "tenant_user"), &[]).await, "42501", "no context");
    expect_err(s.one(s.w.platform_admin, None, &invite("x@a.test", "tenant_user")).await, "22023", "platform admin outside a tenant");
    let e = expect_err(s.one(s.w.admin_a, a, &invite("user@a.test", "tenant_user")).await, "23505", "inviting a member again");
    assert_eq!(constraint(&e).as_deref(), Some("memberships_tenant_user_key"));
    expect_err(s.one(s.w.admin_a, a, &invite("x@a.test", "owner")).await, "22023", "unknown role");
    let none: i64 = s.owner_scalar("SELECT count(*) FROM users WHERE email = 'x@a.test'").await;
    assert_eq!(none, 0, "refused invitations created nobody");
}

#[tokio::test]
async fn invite_user_never_grants_platform_admin_nor_reaches_another_tenant() {
    let mut s = Schema::new().await;
    let (a, b) = (Some(s.w.tenant_a), Some(s.w.tenant_b));
    let grant_pa = |email: &str| format!("SELECT rpc.invite_user('{email}', 'Sneaky', 'platform_admin')");
    expect_err(s.one(s.w.admin_a, a, &grant_pa("sneaky@a.test")).await, "42501", "tenant admin granting platform_admin");
    expect_err(s.one(s.w.admin_a, a, &grant_pa("user@a.test")).await, "42501", "promoting an existing member");
    expect_err(s.one(s.w.platform_admin, a, &grant_pa("sneaky@a.test")).await, "42501", "not even a platform admin, through invite_user");
    let promoted: i64 = s.owner_scalar("SELECT count(*) FROM users WHERE platform_role IS NOT NULL").await;
    assert_eq!(promoted, 1, "still only the one platform admin");
    let into_b = "SELECT rpc.invite_user('reach@b.test', 'Reach', 'tenant_user')";
    expect_err(s.one(s.w.admin_a, b, into_b).await, "42501", "admin of A cannot even enter B");
    let twin: Uuid = first(&s.commit(s.w.admin_b, b, into_b).await.unwrap());
    let tenants: String =
        s.owner_scalar(&format!("SELECT string_agg(tenant_id::text, ',') FROM memberships WHERE user_id = '{twin}'")).await;
    assert_eq!(tenants, s.w.tenant_b.to_string(), "B's admin invites into B, and only B");
}

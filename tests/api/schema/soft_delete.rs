//! Soft delete and per-tenant unique keys.

use super::*;

#[tokio::test]
async fn soft_deleted_rows_are_hidden_by_the_default_read_and_found_when_asked_for() {
    let mut s = Schema::new().await;
    for (table, _) in SOFT_DELETE_TABLES {
        let default_read = s.a(&format!("SELECT count(*) FROM {table} WHERE id = @{table} AND deleted_at IS NULL"));
        let sql = [
            default_read.clone(),
            counted(&s.a(&format!("UPDATE {table} SET deleted_at = now() WHERE id = @{table}"))),
            default_read,
            s.a(&format!("SELECT count(*) FROM {table} WHERE id = @{table} AND deleted_at IS NOT NULL")),
        ];
        let out = s.run(s.w.admin_a, Some(s.w.tenant_a), &sql).await.unwrap_or_else(|e| panic!("{table}: {e:?}"));
        let counts: Vec<i64> = out.iter().map(|rows| first(rows)).collect();
        assert_eq!(counts, vec![1, 1, 0, 1], "{table}: live and shown; soft-deleted; hidden by default; found when asked for");
        let comment: String = s
            .owner_scalar(&format!(
                "SELECT col_description(attrelid, attnum) FROM pg_attribute \
             WHERE attrelid = 'public.{table}'::regclass AND attname = 'deleted_at'"
            ))
            .await;
        assert!(comment.contains("REST reads hide deleted rows"), "{table}.deleted_at documents the default read: {comment}");
    }
}

#[tokio::test]
async fn soft_deleted_rows_are_frozen_until_restored() {
    let mut s = Schema::new().await;
    for (table, change) in SOFT_DELETE_TABLES {
        let delete = s.a(&format!("UPDATE {table} SET deleted_at = now() WHERE id = @{table}"));
        let edit = counted(&s.a(&format!("UPDATE {table} SET {change} WHERE id = @{table}")));
        let restore = counted(&s.a(&format!("UPDATE {table} SET deleted_at = NULL WHERE id = @{table}")));
        let e = expect_err(
            s.run(s.w.admin_a, Some(s.w.tenant_a), &[delete.clone(), edit.clone()]).await,
            "P0001",
            &format!("{table}: editing a deleted row"),
        );
        assert!(message(&e).contains("is deleted: restore it"), "{}", message(&e));
        let out = s.run(s.w.admin_a, Some(s.w.tenant_a), &[delete, restore, edit]).await.unwrap_or_else(|e| panic!("{table}: {e:?}"));
        assert_eq!((first::<i64>(&out[1]), first::<i64>(&out[2])), (1, 1), "{table}: restored, then editable again");
    }
}

#[tokio::test]
async fn one_live_contact_per_phone_per_tenant() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let dup = s.a("INSERT INTO contacts (tenant_id, phone) VALUES (@tenant, '+336100000011') RETURNING id");
    let e = expect_err(s.one(s.w.user_a, a, &dup).await, "23505", "a second live contact with the same phone");
    assert_eq!(constraint(&e).as_deref(), Some("contacts_tenant_phone_key"));
    let other_tenant = s.b("INSERT INTO contacts (tenant_id, phone) VALUES (@tenant, '+336100000011') RETURNING id");
    assert!(s.one(s.w.user_b, Some(s.w.tenant_b), &other_tenant).await.is_ok(), "the same number in another tenant");
    let reuse = [s.a("UPDATE contacts SET deleted_at = now() WHERE id = @contacts"), dup.clone()];
    assert!(s.run(s.w.user_a, a, &reuse).await.is_ok(), "a soft-deleted contact's number can be reused");
    let restore = [reuse[0].clone(), dup, s.a("UPDATE contacts SET deleted_at = NULL WHERE id = @contacts")];
    let e = expect_err(s.run(s.w.user_a, a, &restore).await, "23505", "restoring onto a reused number");
    assert_eq!(constraint(&e).as_deref(), Some("contacts_tenant_phone_key"));
}

#[tokio::test]
async fn group_add_and_remove_contacts_count_what_they_did() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let sql = [
        s.a("SELECT rpc.group_add_contacts(@groups.spare, ARRAY[@contacts, @contacts.spare, @contacts])"),
        s.a("SELECT rpc.group_add_contacts(@groups.spare, ARRAY[@contacts])"),
        s.a("SELECT rpc.group_remove_contacts(@groups.spare, ARRAY[@contacts])"),
        s.a("SELECT rpc.group_remove_contacts(@groups.spare, ARRAY[@contacts])"),
    ];
    let out = s.run(s.w.user_a, a, &sql).await.unwrap();
    let counts: Vec<i32> = out.iter().map(|r| first(r)).collect();
    assert_eq!(counts, vec![2, 0, 1, 0], "added 2 (duplicates once), then nothing new, removed 1, then nothing");
    let deleted = [s.a("UPDATE contacts SET deleted_at = now() WHERE id = @contacts"), sql[1].clone()];
    expect_err(s.run(s.w.user_a, a, &deleted).await, "22023", "adding a soft-deleted contact");
    expect_err(
        s.one(s.w.user_a, a, &format!("SELECT rpc.group_add_contacts('{}', ARRAY[]::uuid[])", Uuid::new_v4())).await,
        "22023",
        "unknown group",
    );
    let foreign_group = format!("SELECT rpc.group_remove_contacts({}, ARRAY[{}])", s.b("@groups"), s.b("@contacts"));
    expect_err(s.one(s.w.user_a, a, &foreign_group).await, "22023", "B's group is not found from A");
}

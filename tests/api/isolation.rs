//! Tenant isolation at the SQL level, through app.begin_request, and the request context
//! never outliving its transaction. Every allowed case has its forbidden twin.

use std::time::Duration;

use rowcast::auth::Principal;
use rowcast::db::one_message::{self, Arg};
use rowcast::db::{Db, TenantTx};
use uuid::Uuid;

use crate::helpers::{TestDb, World, as_user, sqlstate};

async fn world() -> (TestDb, World) {
    let db = TestDb::new().await;
    let world = World::create(&db.owner().await).await;
    (db, world)
}

fn ids(rows: &[tokio_postgres::Row], col: &str) -> Vec<Uuid> {
    rows.iter().map(|r| r.get::<_, Uuid>(col)).collect()
}

#[tokio::test]
async fn member_of_a_sees_tenant_a_memberships_and_never_tenant_b() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let rows = as_user(&mut app, w.user_a, Some(w.tenant_a), "SELECT tenant_id FROM memberships", &[]).await.unwrap();
    assert_eq!(rows.len(), 2, "both memberships of tenant A are visible");
    assert!(ids(&rows, "tenant_id").iter().all(|t| *t == w.tenant_a), "only tenant A rows");
    let rows =
        as_user(&mut app, w.user_a, Some(w.tenant_a), "SELECT 1 FROM memberships WHERE tenant_id = $1", &[&w.tenant_b]).await.unwrap();
    assert!(rows.is_empty(), "tenant B rows are invisible even when asked for by id");
}

#[tokio::test]
async fn without_context_every_table_reads_zero_rows_and_no_error() {
    let (db, _w) = world().await;
    let app = db.app().await;
    for table in ["tenants", "users", "memberships"] {
        let n: i64 = app.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{table} leaks rows without a request context");
    }
    let owner = db.owner().await;
    let n: i64 = owner.query_one("SELECT count(*) FROM memberships", &[]).await.unwrap().get(0);
    assert_eq!(n, 4, "the rows exist: the zero above is RLS, not an empty table");
}

#[tokio::test]
async fn only_platform_admins_insert_memberships_and_only_into_their_scope() {
    let (db, w) = world().await;
    let owner = db.owner().await;
    let newcomer: Uuid =
        owner.query_one("INSERT INTO users (email, name) VALUES ('new@x.test', 'New') RETURNING id", &[]).await.unwrap().get(0);
    let mut app = db.app().await;
    let insert = "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'tenant_user') RETURNING id";
    let ok = as_user(&mut app, w.platform_admin, Some(w.tenant_a), insert, &[&w.tenant_a, &newcomer]).await;
    assert!(ok.is_ok(), "a platform admin in A may add a member to A: {ok:?}");
    let err = as_user(&mut app, w.platform_admin, Some(w.tenant_a), insert, &[&w.tenant_b, &newcomer]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "writing into tenant B is a policy violation");
    // Tenant admins bring people in only through invitations (issue 14): no direct INSERT.
    let err = as_user(&mut app, w.admin_a, Some(w.tenant_a), insert, &[&w.tenant_a, &newcomer]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "a tenant admin cannot pull an account into their tenant");
}

#[tokio::test]
async fn a_row_cannot_be_moved_to_another_tenant_but_can_be_updated_in_place() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let moved = as_user(
        &mut app,
        w.admin_a,
        Some(w.tenant_a),
        "UPDATE memberships SET tenant_id = $1 WHERE user_id = $2",
        &[&w.tenant_b, &w.user_a],
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&moved), "42501");
    let kept = as_user(
        &mut app,
        w.admin_a,
        Some(w.tenant_a),
        "UPDATE memberships SET role = 'tenant_admin' WHERE user_id = $1 RETURNING id",
        &[&w.user_a],
    )
    .await
    .unwrap();
    assert_eq!(kept.len(), 1, "the same update inside tenant A succeeds");
}

#[tokio::test]
async fn tenant_user_reads_memberships_but_cannot_write_them() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let read = as_user(&mut app, w.user_a, Some(w.tenant_a), "SELECT id FROM memberships", &[]).await.unwrap();
    assert_eq!(read.len(), 2);
    let deleted = as_user(&mut app, w.user_a, Some(w.tenant_a), "DELETE FROM memberships WHERE user_id = $1 RETURNING id", &[&w.admin_a])
        .await
        .unwrap();
    assert!(deleted.is_empty(), "a tenant_user's delete matches no row");
}

#[tokio::test]
async fn begin_request_admits_members_and_refuses_strangers() {
    let (db, w) = world().await;
    let app = db.app().await;
    let row = app.query_one("SELECT role FROM app.begin_request($1, $2)", &[&w.user_a, &Some(w.tenant_a)]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "tenant_user", "the role comes from memberships");
    let err = app.query_one("SELECT role FROM app.begin_request($1, $2)", &[&w.user_a, &Some(w.tenant_b)]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let err = app.query_one("SELECT role FROM app.begin_request($1, $2)", &[&Uuid::new_v4(), &Some(w.tenant_a)]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "unknown users are refused too");
}

#[tokio::test]
async fn the_only_membership_is_picked_when_no_tenant_is_given_but_several_need_a_choice() {
    let (db, w) = world().await;
    let app = db.app().await;
    let row = app.query_one("SELECT tenant_id FROM app.begin_request($1, NULL)", &[&w.user_a]).await.unwrap();
    assert_eq!(row.get::<_, Option<Uuid>>(0), Some(w.tenant_a));
    db.owner()
        .await
        .execute("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'tenant_user')", &[&w.tenant_b, &w.user_a])
        .await
        .unwrap();
    let err = app.query_one("SELECT tenant_id FROM app.begin_request($1, NULL)", &[&w.user_a]).await.unwrap_err();
    assert_eq!(sqlstate(&err), "22023", "two memberships: the caller must choose");
}

#[tokio::test]
async fn platform_admin_enters_any_tenant_and_sees_all_tenants_outside_one() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let in_b = as_user(&mut app, w.platform_admin, Some(w.tenant_b), "SELECT tenant_id FROM memberships", &[]).await.unwrap();
    assert!(!in_b.is_empty() && ids(&in_b, "tenant_id").iter().all(|t| *t == w.tenant_b), "inside B: B only");
    let all = as_user(&mut app, w.platform_admin, None, "SELECT id FROM tenants", &[]).await.unwrap();
    assert_eq!(all.len(), 2, "outside any tenant: every tenant");
    let member = as_user(&mut app, w.admin_a, Some(w.tenant_a), "SELECT id FROM tenants", &[]).await.unwrap();
    assert_eq!(ids(&member, "id"), vec![w.tenant_a], "a tenant admin sees only their tenant");
}

#[tokio::test]
async fn a_user_renames_themself_but_cannot_become_platform_admin() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let renamed =
        as_user(&mut app, w.user_a, Some(w.tenant_a), "UPDATE users SET name = 'Renamed' WHERE id = $1 RETURNING id", &[&w.user_a])
            .await
            .unwrap();
    assert_eq!(renamed.len(), 1);
    let err =
        as_user(&mut app, w.user_a, Some(w.tenant_a), "UPDATE users SET platform_role = 'platform_admin' WHERE id = $1", &[&w.user_a])
            .await
            .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    let other = as_user(&mut app, w.user_a, Some(w.tenant_a), "UPDATE users SET name = 'x' WHERE id = $1 RETURNING id", &[&w.admin_a])
        .await
        .unwrap();
    assert!(other.is_empty(), "another user's row is not theirs to update");
}

#[tokio::test]
async fn users_see_the_users_of_their_tenant_and_not_of_others() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let rows = as_user(&mut app, w.user_a, Some(w.tenant_a), "SELECT id FROM users", &[]).await.unwrap();
    let seen = ids(&rows, "id");
    assert!(seen.contains(&w.admin_a) && seen.contains(&w.user_a));
    assert!(!seen.contains(&w.admin_b) && !seen.contains(&w.user_b), "tenant B users stay hidden");
}

const READ_CONTEXT: &str = "SELECT app.current_tenant_id(), app.current_user_id(), app.current_user_role()";

fn context_of(row: tokio_postgres::Row) -> (Option<Uuid>, Option<Uuid>, Option<String>) {
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_pooled_connection_reused_after_a_failed_request_carries_no_settings() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let principal = Principal { user_id: w.admin_a, tenant_claim: None, expires_at: i64::MAX };
    let first_pid: i32 = {
        let mut conn = pool.conn().await.unwrap();
        let tx = TenantTx::begin(&pool, &mut conn, &principal, Some(w.tenant_a)).await.unwrap();
        let (tenant, user, role) = context_of(tx.query_one(READ_CONTEXT, &[]).await.unwrap());
        assert_eq!((tenant, user, role.as_deref()), (Some(w.tenant_a), Some(w.admin_a), Some("tenant_admin")), "inside: set");
        assert!(tx.query_one("SELECT 1 / 0", &[]).await.is_err(), "the request fails");
        let pid = tx.query_one("SELECT pg_backend_pid()", &[]).await;
        assert!(pid.is_err(), "the transaction is aborted");
        drop(tx);
        conn.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
    };
    let conn = pool.conn().await.unwrap();
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_eq!(pid, first_pid, "pool size 1: the very same connection");
    assert_eq!(context_of(conn.query_one(READ_CONTEXT, &[]).await.unwrap()), (None, None, None), "nothing survived the failed request");
    let n: i64 = conn.query_one("SELECT count(*) FROM memberships", &[]).await.unwrap().get(0);
    assert_eq!(n, 0, "and therefore nothing is visible");
}

#[tokio::test]
async fn settings_vanish_after_a_committed_request_too() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let principal = Principal { user_id: w.user_b, tenant_claim: None, expires_at: i64::MAX };
    let mut conn = pool.conn().await.unwrap();
    let tx = TenantTx::begin(&pool, &mut conn, &principal, None).await.unwrap();
    assert_eq!(tx.context().tenant_id, Some(w.tenant_b), "the only membership was picked");
    tx.commit().await.unwrap();
    assert_eq!(context_of(conn.query_one(READ_CONTEXT, &[]).await.unwrap()), (None, None, None));
    let timeout: String = conn.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(timeout, "0", "the statement timeout was transaction-local as well");
}

#[tokio::test]
async fn tenant_id_defaults_to_the_request_tenant_and_cannot_be_forged() {
    let (db, w) = world().await;
    let owner = db.owner().await;
    let newcomer: Uuid =
        owner.query_one("INSERT INTO users (email, name) VALUES ('def@x.test', 'Def') RETURNING id", &[]).await.unwrap().get(0);
    let mut app = db.app().await;
    let rows = as_user(
        &mut app,
        w.platform_admin,
        Some(w.tenant_a),
        "INSERT INTO memberships (user_id, role) VALUES ($1, 'tenant_user') RETURNING tenant_id",
        &[&newcomer],
    )
    .await
    .unwrap();
    assert_eq!(rows[0].get::<_, Uuid>(0), w.tenant_a, "an omitted tenant_id is the caller's tenant");
    let err = as_user(
        &mut app,
        w.platform_admin,
        Some(w.tenant_a),
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'tenant_user')",
        &[&w.tenant_b, &newcomer],
    )
    .await
    .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "an explicit other tenant is refused");
}

fn text(rows: &[tokio_postgres::SimpleQueryRow], column: usize) -> Option<&str> {
    rows.first().and_then(|r| r.get(column))
}

/// The name a one-message read prepares `sql` under.
fn spelled(sql: &str) -> String {
    let mut name = String::from("rc_");
    one_message::Name::of(sql).hex(&mut name);
    name
}

/// How many statements the connection holds that were prepared with SQL `PREPARE`.
async fn sql_prepared(conn: &tokio_postgres::Client) -> i64 {
    conn.query_one("SELECT count(*) FROM pg_prepared_statements WHERE from_sql", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn a_one_message_read_leaves_nothing_open_whether_it_fails_or_not() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let principal = Principal { user_id: w.user_a, tenant_claim: None, expires_at: i64::MAX };
    let conn = pool.conn().await.unwrap();
    let sql = "SELECT (SELECT count(*) FROM memberships), $1::text::uuid, app.current_tenant_id()";
    let valid = Uuid::new_v4().to_string();
    let ok = TenantTx::read_once(&pool, &conn, &principal, None, sql, &[Arg::Text(&valid)]).await.unwrap();
    assert_eq!(text(&ok, 0), Some("2"), "the statement ran inside the context");
    assert_eq!(text(&ok, 2), Some(w.tenant_a.to_string().as_str()));
    assert_eq!(context_of(conn.query_one(READ_CONTEXT, &[]).await.unwrap()), (None, None, None), "committed and gone");
    let failed = TenantTx::read_once(&pool, &conn, &principal, None, sql, &[Arg::Text("not-a-uuid")]).await;
    assert_eq!(sqlstate(&failed.err().unwrap()), "22P02");
    assert_eq!(context_of(conn.query_one(READ_CONTEXT, &[]).await.unwrap()), (None, None, None), "rolled back and gone");
    let refused = TenantTx::read_once(&pool, &conn, &principal, Some(w.tenant_b), sql, &[Arg::Text(&valid)]).await;
    assert_eq!(sqlstate(&refused.err().unwrap()), "42501", "a stranger's tenant is refused");
    assert_eq!(context_of(conn.query_one(READ_CONTEXT, &[]).await.unwrap()), (None, None, None));
    let timeout: String = conn.query_one("SHOW statement_timeout", &[]).await.unwrap().get(0);
    assert_eq!(timeout, "0", "the statement timeout was transaction-local as well");
}

#[tokio::test]
async fn one_message_reads_on_one_connection_each_see_only_their_own_tenant() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let conn = pool.conn().await.unwrap();
    let sql = "SELECT app.current_tenant_id(), (SELECT count(*) FROM memberships WHERE tenant_id <> app.current_tenant_id())";
    let admin = Principal { user_id: w.platform_admin, tenant_claim: None, expires_at: i64::MAX };
    for tenant in [w.tenant_a, w.tenant_b, w.tenant_a] {
        let rows = TenantTx::read_once(&pool, &conn, &admin, Some(tenant), sql, &[]).await.unwrap();
        assert_eq!(text(&rows, 0), Some(tenant.to_string().as_str()), "the tenant entered");
        assert_eq!(text(&rows, 1), Some("0"), "no other tenant's row, on the connection the previous tenant used");
    }
    let user_b = Principal { user_id: w.user_b, tenant_claim: None, expires_at: i64::MAX };
    let refused = TenantTx::read_once(&pool, &conn, &user_b, Some(w.tenant_a), sql, &[]).await;
    assert_eq!(sqlstate(&refused.err().unwrap()), "42501", "and the forbidden twin: a user of B may not enter A");
}

#[tokio::test]
async fn one_message_arguments_reach_the_database_exactly() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let principal = Principal { user_id: w.user_a, tenant_claim: None, expires_at: i64::MAX };
    let conn = pool.conn().await.unwrap();
    let sql = "SELECT $1::text, length($1::text), $2::bigint, array_to_json($3::text[])::text, $4::text IS NULL";
    let items = ["a'b".to_string(), r"c\d".to_string(), "{\"e\",}".to_string()];
    for value in ["", "it's", r"back\slash\'", "'); DROP TABLE contacts; --", "$$ $1 E'x'", "é ✓ 🙂", "line\nbreak\ttab"] {
        let rows = TenantTx::read_once(
            &pool,
            &conn,
            &principal,
            None,
            sql,
            &[Arg::Text(value), Arg::Int(i64::MIN), Arg::TextArray(&items), Arg::Null],
        )
        .await
        .unwrap();
        assert_eq!(text(&rows, 0), Some(value));
        assert_eq!(text(&rows, 1), Some(value.chars().count().to_string().as_str()));
        assert_eq!(text(&rows, 2), Some(i64::MIN.to_string().as_str()));
        assert_eq!(text(&rows, 3), Some(serde_json::to_string(&items).unwrap().as_str()));
        assert_eq!(text(&rows, 4), Some("t"));
    }
    let nul =
        TenantTx::read_once(&pool, &conn, &principal, None, sql, &[Arg::Text("a\0b"), Arg::Int(1), Arg::TextArray(&[]), Arg::Null]).await;
    assert_eq!(sqlstate(&nul.err().unwrap()), "22021", "a NUL is refused as a bound text parameter's is");
    let n: i64 = conn.query_one("SELECT count(*) FROM pg_class WHERE relname = 'contacts'", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_one_message_read_prepares_again_when_its_statements_were_discarded_and_not_when_they_exist() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let principal = Principal { user_id: w.user_a, tenant_claim: None, expires_at: i64::MAX };
    let conn = pool.conn().await.unwrap();
    let sql = "SELECT $1::text || '!'";
    let read = || TenantTx::read_once(&pool, &conn, &principal, None, sql, &[Arg::Text("hi")]);
    assert_eq!(text(&read().await.unwrap(), 0), Some("hi!"));
    assert_eq!(sql_prepared(&conn).await, 2, "app.begin_request and the read");
    assert_eq!(text(&read().await.unwrap(), 0), Some("hi!"));
    assert_eq!(sql_prepared(&conn).await, 2, "prepared once, executed twice");
    // A proxy's DISCARD ALL (or anyone's DEALLOCATE) empties the connection behind our back.
    conn.batch_execute("DEALLOCATE ALL").await.unwrap();
    assert_eq!(text(&read().await.unwrap(), 0), Some("hi!"), "26000, then prepared again");
    assert_eq!(sql_prepared(&conn).await, 2);
    // Only the read discarded: 26000, then app.begin_request's PREPARE meets the one still
    // there (42P05), then the read is prepared again.
    conn.batch_execute(&format!("DEALLOCATE {}", spelled(sql))).await.unwrap();
    assert_eq!(text(&read().await.unwrap(), 0), Some("hi!"));
    assert_eq!(sql_prepared(&conn).await, 2);
    // And a statement already there that the registry does not know of (42P05).
    let other = "SELECT $1::text || '?'";
    conn.batch_execute(&format!("PREPARE {} AS {other}", spelled(other))).await.unwrap();
    let rows = TenantTx::read_once(&pool, &conn, &principal, None, other, &[Arg::Text("hi")]).await.unwrap();
    assert_eq!(text(&rows, 0), Some("hi?"));
    assert_eq!(sql_prepared(&conn).await, 3);
}

#[tokio::test]
async fn a_one_message_read_runs_under_the_request_statement_timeout() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_millis(200));
    let principal = Principal { user_id: w.user_a, tenant_claim: None, expires_at: i64::MAX };
    let conn = pool.conn().await.unwrap();
    let started = std::time::Instant::now();
    let slow = TenantTx::read_once(&pool, &conn, &principal, None, "SELECT pg_sleep(5)", &[]).await;
    assert_eq!(sqlstate(&slow.err().unwrap()), "57014", "cancelled by the timeout app.begin_request's message set");
    assert!(started.elapsed() < Duration::from_secs(4), "cancelled after {:?}", started.elapsed());
    let quick = TenantTx::read_once(&pool, &conn, &principal, None, "SELECT pg_sleep(0.05)::text", &[]).await.unwrap();
    assert_eq!(text(&quick, 0), Some(""), "a statement within the timeout runs");
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_one_message_statements() {
    let (db, w) = world().await;
    let pool = Db::new(db.app_config(), 1, Duration::from_secs(2), Duration::from_secs(5));
    let principal = Principal { user_id: w.user_a, tenant_claim: None, expires_at: i64::MAX };
    let conn = pool.conn().await.unwrap();
    let shapes = one_message::MAX_PREPARED + 40;
    for i in 0..shapes {
        let sql = format!("SELECT {i}");
        let rows = TenantTx::read_once(&pool, &conn, &principal, None, &sql, &[]).await.unwrap();
        assert_eq!(text(&rows, 0), Some(i.to_string().as_str()));
    }
    let held = sql_prepared(&conn).await as usize;
    assert!(held <= one_message::MAX_PREPARED, "{held} statements held after {shapes} shapes");
    assert!(held >= 40, "the newest ones are still there ({held})");
}

#[tokio::test]
async fn a_user_cannot_take_over_an_email_but_a_platform_admin_may_change_it() {
    let (db, w) = world().await;
    let mut app = db.app().await;
    let err = as_user(&mut app, w.user_a, Some(w.tenant_a), "UPDATE users SET email = 'admin@newco.test' WHERE id = $1", &[&w.user_a])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "invitations match accounts by email: a user may not pick one");
    let case_only =
        as_user(&mut app, w.user_a, Some(w.tenant_a), "UPDATE users SET email = upper(email) WHERE id = $1 RETURNING id", &[&w.user_a])
            .await
            .unwrap();
    assert_eq!(case_only.len(), 1, "changing only the letter case is the same address");
    let done =
        as_user(&mut app, w.platform_admin, None, "UPDATE users SET email = 'moved@a.test' WHERE id = $1 RETURNING id", &[&w.user_a])
            .await
            .unwrap();
    assert_eq!(done.len(), 1, "a platform admin may");
}

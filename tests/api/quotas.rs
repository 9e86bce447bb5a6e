//! Issue 12, plan quotas in SQL (SPEC §11): metered usages, hard limits (PT402, nothing
//! written), soft limits (one usage_limit_reached event), exact under racing writers, metered
//! rows out of the members' reach, and the REST 402.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::helpers::rest::Api;
use crate::helpers::{TestDb, World, spawn_app, sqlstate};

type DbResult<T = Vec<tokio_postgres::Row>> = Result<T, tokio_postgres::Error>;

struct Quotas {
    db: TestDb,
    owner: Client,
    app: Client,
    w: World,
}

impl Quotas {
    async fn new() -> Quotas {
        let db = TestDb::new().await;
        let owner = db.owner().await;
        let app = db.app().await;
        let w = World::create(&owner).await;
        Quotas { db, owner, app, w }
    }

    /// Puts `tenants` on a fresh plan whose only policy is `metric`.
    async fn plan(&self, tenants: &[Uuid], metric: &str, limit: i64, period: &str, hard: bool) -> Uuid {
        let code = format!("p{}", &Uuid::new_v4().simple().to_string()[..12]);
        let plan: Uuid =
            self.owner.query_one("INSERT INTO plans (code, name) VALUES ($1, $1) RETURNING id", &[&code]).await.unwrap().get(0);
        self.owner
            .execute(
                "INSERT INTO limit_policies (plan_id, metric, limit_value, period, is_hard) VALUES ($1, $2, $3, $4, $5)",
                &[&plan, &metric, &limit, &period, &hard],
            )
            .await
            .unwrap();
        for t in tenants {
            self.owner.execute("INSERT INTO subscriptions (tenant_id, plan_id) VALUES ($1, $2)", &[t, &plan]).await.unwrap();
        }
        plan
    }

    /// One statement as `user` in `tenant`, committed.
    async fn commit(&mut self, user: Uuid, tenant: Uuid, sql: &str) -> DbResult {
        commit_on(&mut self.app, user, tenant, sql).await
    }

    async fn contact(&mut self, user: Uuid, tenant: Uuid) -> DbResult {
        let sql = format!("INSERT INTO contacts (phone) VALUES ('{}') RETURNING id", phone());
        self.commit(user, tenant, &sql).await
    }

    async fn usage(&self, tenant: Uuid, metric: &str) -> i64 {
        self.owner
            .query_opt("SELECT quantity FROM usages WHERE tenant_id = $1 AND metric = $2", &[&tenant, &metric])
            .await
            .unwrap()
            .map_or(0, |r| r.get(0))
    }

    async fn count(&self, sql: &str, tenant: Uuid) -> i64 {
        self.owner.query_one(sql, &[&tenant]).await.unwrap().get(0)
    }
}

async fn commit_on(app: &mut Client, user: Uuid, tenant: Uuid, sql: &str) -> DbResult {
    let tx = app.transaction().await?;
    tx.query("SELECT * FROM app.begin_request($1, $2)", &[&user, &Some(tenant)]).await?;
    let rows = tx.query(sql, &[]).await?;
    tx.commit().await?;
    Ok(rows)
}

fn phone() -> String {
    format!("+33{}", 600_000_000 + rand::random::<u32>() % 99_999_999)
}

#[track_caller]
fn expect_pt402<T: std::fmt::Debug>(res: DbResult<T>, what: &str) -> String {
    match res {
        Ok(v) => panic!("{what}: expected PT402, got {v:?}"),
        Err(e) => {
            assert_eq!(sqlstate(&e), "PT402", "{what}: {e:?}");
            e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default()
        }
    }
}

const LIVE_CONTACTS: &str = "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND deleted_at IS NULL";

#[tokio::test]
async fn under_a_hard_limit_writes_pass_and_at_it_they_fail_with_pt402_naming_metric_limit_and_period() {
    let mut q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "contacts", 2, "lifetime", true).await;
    q.contact(admin, a).await.expect("first contact, under the limit");
    q.contact(admin, a).await.expect("second contact, reaches the limit");
    let msg = expect_pt402(q.contact(admin, a).await, "third contact");
    assert!(msg.contains("contacts") && msg.contains('2') && msg.contains("lifetime"), "names metric, limit, period: {msg}");
    assert_eq!(q.count(LIVE_CONTACTS, a).await, 2, "nothing written");
    assert_eq!(q.usage(a, "contacts").await, 2, "the usages row is exact");

    // A bulk insert crossing the limit writes nothing at all.
    let mut q2 = Quotas::new().await;
    let (a2, admin2) = (q2.w.tenant_a, q2.w.admin_a);
    q2.plan(&[a2], "contacts", 3, "lifetime", true).await;
    let bulk = format!("INSERT INTO contacts (phone) VALUES ('{}'), ('{}'), ('{}'), ('{}')", phone(), phone(), phone(), phone());
    expect_pt402(q2.commit(admin2, a2, &bulk).await, "four contacts at once over a limit of three");
    assert_eq!(q2.count(LIVE_CONTACTS, a2).await, 0);
    let three = format!("INSERT INTO contacts (phone) VALUES ('{}'), ('{}'), ('{}')", phone(), phone(), phone());
    q2.commit(admin2, a2, &three).await.expect("three at once fit");
}

#[tokio::test]
async fn a_tenant_at_its_limit_leaves_another_tenant_on_the_same_plan_unaffected() {
    let mut q = Quotas::new().await;
    let (a, b) = (q.w.tenant_a, q.w.tenant_b);
    q.plan(&[a, b], "contacts", 1, "lifetime", true).await;
    q.contact(q.w.user_a, a).await.expect("A's one contact");
    expect_pt402(q.contact(q.w.user_a, a).await, "A over its limit");
    q.contact(q.w.user_b, b).await.expect("B still has its own unit");
    assert_eq!((q.usage(a, "contacts").await, q.usage(b, "contacts").await), (1, 1));
}

#[tokio::test]
async fn without_a_subscription_there_is_no_quota_but_usage_is_still_metered() {
    let mut q = Quotas::new().await;
    let (a, b) = (q.w.tenant_a, q.w.tenant_b);
    q.plan(&[b], "contacts", 0, "lifetime", true).await;
    for _ in 0..3 {
        q.contact(q.w.user_a, a).await.expect("no subscription: no quota");
    }
    assert_eq!(q.usage(a, "contacts").await, 3);
    expect_pt402(q.contact(q.w.user_b, b).await, "the twin: a zero limit refuses the first contact");
    // A cancelled subscription is no subscription.
    q.owner.execute("UPDATE subscriptions SET status = 'cancelled', cancelled_at = now() WHERE tenant_id = $1", &[&b]).await.unwrap();
    q.contact(q.w.user_b, b).await.expect("cancelled: no quota");
}

#[tokio::test]
async fn soft_deleting_frees_a_unit_and_restoring_takes_it_back() {
    let mut q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "contacts", 2, "lifetime", true).await;
    let first: Uuid = q.contact(admin, a).await.unwrap()[0].get(0);
    q.contact(admin, a).await.unwrap();
    q.commit(admin, a, &format!("UPDATE contacts SET deleted_at = now() WHERE id = '{first}'")).await.expect("soft delete");
    assert_eq!(q.usage(a, "contacts").await, 1, "soft-deleted contacts do not count");
    q.contact(admin, a).await.expect("the freed unit is usable");
    let restore = q.commit(admin, a, &format!("UPDATE contacts SET deleted_at = NULL WHERE id = '{first}'")).await;
    expect_pt402(restore, "restoring a third live contact");
    q.commit(admin, a, "DELETE FROM contacts WHERE id = (SELECT id FROM contacts WHERE deleted_at IS NULL LIMIT 1)")
        .await
        .expect("hard delete");
    assert_eq!(q.usage(a, "contacts").await, q.count(LIVE_CONTACTS, a).await);
}

#[tokio::test]
async fn a_soft_limit_never_refuses_and_emits_exactly_one_event_for_tenant_admins() {
    let mut q = Quotas::new().await;
    let (a, b) = (q.w.tenant_a, q.w.tenant_b);
    q.plan(&[a, b], "contacts", 2, "month", false).await;
    for n in 0..4 {
        q.contact(q.w.user_a, a).await.unwrap_or_else(|e| panic!("soft limit never refuses (contact {n}): {e}"));
    }
    q.contact(q.w.user_b, b).await.unwrap();
    let events = q
        .owner
        .query("SELECT tenant_id, \"row\", audience FROM app.events WHERE type = 'usage_limit_reached' ORDER BY seq", &[])
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "one event per metric and period, none for B under the limit");
    let tenant: Uuid = events[0].get(0);
    let row: Value = events[0].get(1);
    let audience: Vec<String> = events[0].get(2);
    assert_eq!(tenant, a);
    assert_eq!((row["metric"].clone(), row["limit"].clone(), row["quantity"].clone()), (json!("contacts"), json!(2), json!(2)));
    assert_eq!(row["period"], "month");
    assert!(audience.contains(&"tenant_admin".to_string()) && !audience.contains(&"tenant_user".to_string()), "{audience:?}");

    // Tenant admins read it through RLS; tenant users do not.
    let seen = "SELECT count(*) FROM app.events WHERE type = 'usage_limit_reached'";
    let admin_sees: i64 = q.commit(q.w.admin_a, a, seen).await.unwrap()[0].get(0);
    let user_sees: i64 = q.commit(q.w.user_a, a, seen).await.unwrap()[0].get(0);
    assert_eq!((admin_sees, user_sees), (1, 0));
}

#[tokio::test]
async fn parallel_writers_racing_for_the_last_unit_leave_exactly_one_winner() {
    let q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "contacts", 3, "lifetime", true).await;
    let mut setup = q.db.app().await;
    for _ in 0..2 {
        commit_on(&mut setup, admin, a, &format!("INSERT INTO contacts (phone) VALUES ('{}')", phone())).await.unwrap();
    }
    const RACERS: usize = 8;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let mut client = q.db.app().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let tx = client.transaction().await?;
            tx.query("SELECT * FROM app.begin_request($1, $2)", &[&admin, &Some(a)]).await?;
            barrier.wait().await; // every racer is inside its transaction before anyone writes
            tx.execute(&format!("INSERT INTO contacts (phone) VALUES ('{}')", phone()), &[]).await?;
            tx.commit().await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(e) => assert_eq!(sqlstate(&e), "PT402", "losers fail on the quota: {e:?}"),
        }
    }
    assert_eq!(wins, 1, "exactly one racer gets the last unit");
    assert_eq!(q.count(LIVE_CONTACTS, a).await, 3);
    assert_eq!(q.usage(a, "contacts").await, 3);
}

#[tokio::test]
async fn outbound_messages_are_counted_per_period_and_inbound_ones_are_not() {
    let mut q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "messages", 2, "day", true).await;
    let out = "INSERT INTO messages_history (phone, body) VALUES ('+33600000001', 'hi')";
    let inbound = "INSERT INTO messages_history (phone, body, direction, status) VALUES ('+33600000001', 'yo', 'inbound', 'received')";
    q.commit(admin, a, out).await.unwrap();
    q.commit(admin, a, inbound).await.expect("inbound messages are not metered");
    q.commit(admin, a, out).await.unwrap();
    let msg = expect_pt402(q.commit(admin, a, out).await, "third outbound message of the day");
    assert!(msg.contains("messages") && msg.contains("day"), "{msg}");
    q.commit(admin, a, inbound).await.expect("inbound still passes at the limit");
    let (start, quantity): (chrono::NaiveDate, i64) = {
        let r = q
            .owner
            .query_one("SELECT period_start, quantity FROM usages WHERE tenant_id = $1 AND metric = 'messages'", &[&a])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(start, chrono::Utc::now().date_naive(), "a day policy meters per UTC day");
    assert_eq!(quantity, 2);
    q.commit(admin, a, "DELETE FROM messages_history WHERE direction = 'outbound'").await.unwrap();
    expect_pt402(q.commit(admin, a, out).await, "deleting messages gives no quota back");
}

#[tokio::test]
async fn campaigns_webhooks_and_members_are_metered_as_live_counts() {
    let mut q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "webhooks", 1, "lifetime", true).await;
    q.commit(admin, a, "INSERT INTO webhooks (name, url) VALUES ('one', 'https://x.test/1')").await.unwrap();
    expect_pt402(q.commit(admin, a, "INSERT INTO webhooks (name, url) VALUES ('two', 'https://x.test/2')").await, "second webhook");
    q.commit(admin, a, "UPDATE webhooks SET deleted_at = now()").await.unwrap();
    q.commit(admin, a, "INSERT INTO webhooks (name, url) VALUES ('two', 'https://x.test/2')").await.expect("after a soft delete");

    q.commit(admin, a, "INSERT INTO groups (name) VALUES ('g')").await.unwrap();
    q.commit(admin, a, "INSERT INTO message_templates (name, body) VALUES ('t', 'hello')").await.unwrap();
    let campaign = "INSERT INTO campaigns (name, group_id, template_id) SELECT 'c', g.id, t.id FROM groups g, message_templates t WHERE t.tenant_id IS NOT NULL";
    q.commit(admin, a, campaign).await.unwrap();
    q.commit(admin, a, campaign).await.unwrap();
    q.commit(admin, a, "UPDATE campaigns SET deleted_at = now() WHERE id = (SELECT min(id::text)::uuid FROM campaigns)").await.unwrap();
    assert_eq!(q.usage(a, "campaigns").await, 1);
    assert_eq!(q.usage(a, "webhooks").await, 1);

    let newcomer: Uuid =
        q.owner.query_one("INSERT INTO users (email, name) VALUES ('new@a.test', 'New') RETURNING id", &[]).await.unwrap().get(0);
    // Members join through the invitation flow (SPEC §3.2): the admin invites, the invitee accepts.
    let invited = q.commit(admin, a, "SELECT rpc.invite_user('new@a.test', 'New', 'tenant_user')").await.unwrap();
    let invitation: Uuid = invited[0].get(0);
    let tx = q.app.transaction().await.unwrap();
    tx.query("SELECT * FROM app.begin_request($1, NULL)", &[&newcomer]).await.unwrap();
    tx.query("SELECT rpc.invitation_accept($1)", &[&invitation]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(q.usage(a, "members").await, 3, "two world members, seeded from the actual count, plus the newcomer");
    q.commit(admin, a, &format!("DELETE FROM memberships WHERE user_id = '{newcomer}'")).await.unwrap();
    assert_eq!(q.usage(a, "members").await, 2);

    // The DBA recount agrees with the triggers.
    let recount = q.owner.query("SELECT metric, quantity FROM app.usage_recount($1) ORDER BY metric", &[&a]).await.unwrap();
    for r in recount {
        let (metric, quantity): (String, i64) = (r.get(0), r.get(1));
        if metric != "messages" {
            assert_eq!(q.usage(a, &metric).await, quantity, "{metric}");
        }
    }
}

#[tokio::test]
async fn members_cannot_change_metered_usages_but_still_record_custom_metrics() {
    let mut q = Quotas::new().await;
    let (a, admin, user) = (q.w.tenant_a, q.w.admin_a, q.w.user_a);
    q.plan(&[a], "contacts", 5, "lifetime", true).await;
    q.contact(user, a).await.unwrap();
    for who in [admin, user] {
        let reset = q.commit(who, a, "UPDATE usages SET quantity = 0 WHERE metric = 'contacts' RETURNING id").await.unwrap();
        assert!(reset.is_empty(), "a metered row is out of reach");
        let gone = q.commit(who, a, "DELETE FROM usages WHERE metric = 'contacts' RETURNING id").await.unwrap();
        assert!(gone.is_empty(), "a metered row cannot be deleted");
        let forged = q
            .commit(
                who,
                a,
                "INSERT INTO usages (metric, period_start, period_end, quantity) VALUES ('contacts', '2000-01-01', '2000-02-01', 0)",
            )
            .await;
        assert_eq!(sqlstate(&forged.unwrap_err()), "42501", "nor forged");
        assert_eq!(q.usage(a, "contacts").await, 1);

        // The twin: a custom metric is theirs to write.
        let metric = format!("sms_segments_{}", if who == admin { "admin" } else { "user" });
        q.commit(who, a, &format!("INSERT INTO usages (metric, quantity) VALUES ('{metric}', 3)")).await.expect("custom metric");
        let bumped = q
            .commit(who, a, &format!("UPDATE usages SET quantity = quantity + 1 WHERE metric = '{metric}' RETURNING quantity"))
            .await
            .unwrap();
        assert_eq!(bumped[0].get::<_, i64>(0), 4);
        let renamed = q.commit(who, a, &format!("UPDATE usages SET metric = 'contacts' WHERE metric = '{metric}'")).await;
        assert_eq!(sqlstate(&renamed.unwrap_err()), "42501", "a custom metric cannot become a metered one");
    }
    // The members can still read their metered usage.
    let read = q.commit(user, a, "SELECT quantity FROM usages WHERE metric = 'contacts'").await.unwrap();
    assert_eq!(read[0].get::<_, i64>(0), 1);
}

#[tokio::test]
async fn rest_answers_402_with_the_pt402_code_at_a_hard_limit() {
    let app = spawn_app().await;
    let owner = app.db.owner().await;
    let w = World::create(&owner).await;
    let plan: Uuid = owner.query_one("INSERT INTO plans (code, name) VALUES ('tiny', 'Tiny') RETURNING id", &[]).await.unwrap().get(0);
    owner
        .execute("INSERT INTO limit_policies (plan_id, metric, limit_value, period) VALUES ($1, 'contacts', 1, 'lifetime')", &[&plan])
        .await
        .unwrap();
    owner.execute("INSERT INTO subscriptions (tenant_id, plan_id) VALUES ($1, $2)", &[&w.tenant_a, &plan]).await.unwrap();
    let api = Api::new(&app, w.user_a, Some(w.tenant_a));
    api.post("/rest/contacts", json!({"phone": "+33611111111"}), &[]).await.expect(201);
    let body = api.post("/rest/contacts", json!({"phone": "+33622222222"}), &[]).await.expect(402).json();
    assert_eq!(body["code"], "PT402", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("contacts"), "{body}");
    assert!(body.get("details").is_some() && body.get("hint").is_some(), "PostgREST-shaped: {body}");
}

#[tokio::test]
async fn the_dba_script_shows_a_tenants_limits_and_usage() {
    if crate::schema::dba::psql_binary().is_none() {
        eprintln!("skipped: no psql binary next to the PostgreSQL server nor on PATH");
        return;
    }
    let mut q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "contacts", 4, "lifetime", true).await;
    q.contact(admin, a).await.unwrap();
    q.contact(admin, a).await.unwrap();
    let (ok, out) = crate::schema::dba::psql(&q.db.owner_url(), "quotas.sql", &[("tenant", "Tenant A".into())]).await;
    assert!(ok, "quotas.sql: {out}");
    let line = out.lines().find(|l| l.contains("contacts") && l.contains("hard")).unwrap_or_else(|| panic!("a contacts line: {out}"));
    let cells: Vec<&str> = line.split('|').map(str::trim).collect();
    assert_eq!(&cells[..7], ["Tenant A", "contacts", "4", "lifetime", "hard", "2", "2"], "{line}");
    assert!(!out.contains("Tenant B"), "only the tenant asked for: {out}");
}

#[tokio::test]
async fn metered_usages_rows_are_not_captured_as_events_but_custom_metrics_are() {
    let mut q = Quotas::new().await;
    let (a, admin) = (q.w.tenant_a, q.w.admin_a);
    q.plan(&[a], "contacts", 5, "lifetime", true).await;
    let usage_events = "SELECT type, \"row\" ->> 'metric' FROM app.events WHERE table_name = 'usages' ORDER BY seq";
    q.contact(admin, a).await.unwrap();
    q.contact(admin, a).await.unwrap();
    assert_eq!(q.usage(a, "contacts").await, 2);
    let seen = q.owner.query(usage_events, &[]).await.unwrap();
    assert!(seen.is_empty(), "metered rows are written by the triggers, not captured: {} events", seen.len());

    // The twin: a custom metric's row is captured, insert and update.
    q.commit(admin, a, "INSERT INTO usages (metric, quantity) VALUES ('sms_segments', 3)").await.unwrap();
    q.commit(admin, a, "UPDATE usages SET quantity = 4 WHERE metric = 'sms_segments'").await.unwrap();
    let seen: Vec<(String, Option<String>)> =
        q.owner.query(usage_events, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    let custom = Some("sms_segments".to_string());
    assert_eq!(seen, vec![("usage_created".to_string(), custom.clone()), ("usage_updated".to_string(), custom.clone())]);

    // One statement over both kinds (the owner may): the custom row is captured, the
    // metered one is not (V73 returns early only when every row is metered).
    q.owner.batch_execute(&format!("UPDATE usages SET quantity = quantity WHERE tenant_id = '{a}'")).await.unwrap();
    let seen: Vec<(String, Option<String>)> =
        q.owner.query(usage_events, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2], ("usage_updated".to_string(), custom));
    // A metered row renamed to a custom metric is the custom metric's update: captured.
    q.owner
        .batch_execute(&format!("UPDATE usages SET metric = 'renamed_contacts' WHERE tenant_id = '{a}' AND metric = 'contacts'"))
        .await
        .unwrap();
    let last = q.owner.query_one(&format!("{usage_events} DESC LIMIT 1"), &[]).await.unwrap();
    assert_eq!(
        (last.get::<_, String>(0), last.get::<_, Option<String>>(1)),
        ("usage_updated".to_string(), Some("renamed_contacts".to_string()))
    );
}

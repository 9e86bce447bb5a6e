//! Issue 3, the whole schema, tested at the SQL level through `app.begin_request`: every cell
//! of the SPEC §3.2 role matrix next to its forbidden twin, composite tenant foreign keys,
//! shared templates, the campaign and message state machines, soft delete, the rpc domain
//! functions, the webhook secret, the emergency RLS switch, the DBA scripts, the demo seed,
//! and the catalog invariants (forced RLS everywhere, pinned search_path on every SECURITY
//! DEFINER function, named and mapped constraints).

mod admin_rls;
mod campaigns;
mod catalog;
mod dba;
mod invites;
mod matrix;
mod messages;
mod sentences;
mod soft_delete;
mod webhook_secret;

use std::collections::HashMap;

use tokio_postgres::{Client, Row};
use uuid::Uuid;

use crate::helpers::{TestDb, World, as_user, sqlstate};

type DbResult<T = Vec<Row>> = Result<T, tokio_postgres::Error>;

// =========================================================================================
// Harness: a world (two tenants, one user of each role) plus fixture rows in every table.
// =========================================================================================

const TENANT_TABLES: [&str; 11] = [
    "contacts",
    "groups",
    "group_contacts",
    "message_templates",
    "campaigns",
    "campaign_recipients",
    "messages_history",
    "webhooks",
    "webhook_logs",
    "subscriptions",
    "usages",
];

/// Tables this issue creates in `public`.
const ISSUE_TABLES: [&str; 13] = [
    "plans",
    "limit_policies",
    "subscriptions",
    "usages",
    "contacts",
    "groups",
    "group_contacts",
    "message_templates",
    "campaigns",
    "campaign_recipients",
    "messages_history",
    "webhooks",
    "webhook_logs",
];

const SOFT_DELETE_TABLES: [(&str, &str); 5] = [
    ("contacts", "first_name = 'Changed'"),
    ("groups", "description = 'Changed'"),
    ("message_templates", "body = 'Changed'"),
    ("campaigns", "name = 'Changed'"),
    ("webhooks", "name = 'Changed'"),
];

/// Ids of the fixture rows. Each table has a main row (read and update target) and a spare
/// one (delete target, so deletes never depend on what references the main row). Keys:
/// `a.contacts`, `a.contacts.spare`, `b.webhooks`, …, and global `plans`, `limit_policies`,
/// `shared` (a shared template), each with `.spare`.
struct Fixtures {
    ids: HashMap<String, Uuid>,
    tenant_a: Uuid,
    tenant_b: Uuid,
}

impl Fixtures {
    async fn create(owner: &Client, w: &World) -> Fixtures {
        let mut ids = HashMap::new();
        for suffix in ["", ".spare"] {
            for key in ["plans", "limit_policies", "shared"] {
                ids.insert(format!("{key}{suffix}"), Uuid::new_v4());
            }
            for prefix in ["a", "b"] {
                for table in TENANT_TABLES {
                    ids.insert(format!("{prefix}.{table}{suffix}"), Uuid::new_v4());
                }
            }
        }
        let fx = Fixtures { ids, tenant_a: w.tenant_a, tenant_b: w.tenant_b };
        owner.batch_execute(&fx.fill("a", GLOBAL_FIXTURES)).await.expect("global fixtures");
        for (prefix, digit) in [("a", "1"), ("b", "2")] {
            owner.batch_execute(&fx.fill(prefix, &TENANT_FIXTURES.replace('#', digit))).await.expect("tenant fixtures");
        }
        fx
    }

    /// Replaces `@table`, `@table.spare` (rows of tenant `prefix`), `@plans`, `@shared`, … and
    /// `@tenant` by quoted uuids.
    fn fill(&self, prefix: &str, sql: &str) -> String {
        let mut keys: Vec<(String, Uuid)> = self
            .ids
            .iter()
            .filter_map(|(k, v)| match k.split_once('.') {
                Some((p, rest)) if p == prefix => Some((rest.to_string(), *v)),
                Some(("a" | "b", _)) => None,
                _ => Some((k.clone(), *v)),
            })
            .collect();
        keys.push(("tenant".into(), if prefix == "a" { self.tenant_a } else { self.tenant_b }));
        keys.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        keys.iter().fold(sql.to_string(), |acc, (k, v)| acc.replace(&format!("@{k}"), &format!("'{v}'::uuid")))
    }
}

const GLOBAL_FIXTURES: &str = "
INSERT INTO plans (id, code, name) VALUES (@plans, 'main', 'Main'), (@plans.spare, 'spare', 'Spare');
INSERT INTO limit_policies (id, plan_id, metric, limit_value) VALUES
    (@limit_policies, @plans, 'messages_sent', 10), (@limit_policies.spare, @plans, 'contacts', 10);
INSERT INTO message_templates (id, tenant_id, name, body) VALUES
    (@shared, NULL, 'shared', 'Shared hello {{first_name}}'), (@shared.spare, NULL, 'shared spare', 'Spare');";

/// `#` is the tenant's digit, so phone numbers differ between tenants.
const TENANT_FIXTURES: &str = "
INSERT INTO contacts (id, tenant_id, phone, first_name) VALUES
    (@contacts, @tenant, '+3361000000#1', 'Main'), (@contacts.spare, @tenant, '+3361000000#2', 'Spare');
INSERT INTO groups (id, tenant_id, name) VALUES (@groups, @tenant, 'Main'), (@groups.spare, @tenant, 'Spare');
INSERT INTO group_contacts (id, tenant_id, group_id, contact_id) VALUES
    (@group_contacts, @tenant, @groups, @contacts), (@group_contacts.spare, @tenant, @groups, @contacts.spare);
INSERT INTO message_templates (id, tenant_id, name, body) VALUES
    (@message_templates, @tenant, 'main', 'Hello {{first_name}}'), (@message_templates.spare, @tenant, 'spare', 'Bye');
INSERT INTO campaigns (id, tenant_id, name, group_id, template_id) VALUES
    (@campaigns, @tenant, 'Main', @groups, @message_templates), (@campaigns.spare, @tenant, 'Spare', @groups, @message_templates);
INSERT INTO campaign_recipients (id, tenant_id, campaign_id, contact_id, phone) VALUES
    (@campaign_recipients, @tenant, @campaigns, @contacts, '+3361000000#1'),
    (@campaign_recipients.spare, @tenant, @campaigns, @contacts.spare, '+3361000000#2');
INSERT INTO messages_history (id, tenant_id, contact_id, phone, body) VALUES
    (@messages_history, @tenant, @contacts, '+3361000000#1', 'Hi'), (@messages_history.spare, @tenant, @contacts.spare, '+3361000000#2', 'Hi');
INSERT INTO webhooks (id, tenant_id, name, url) VALUES
    (@webhooks, @tenant, 'Main', 'https://t#.test/main'), (@webhooks.spare, @tenant, 'Spare', 'https://t#.test/spare');
INSERT INTO webhook_logs (id, tenant_id, webhook_id, event_type, status_code, duration_ms) VALUES
    (@webhook_logs, @tenant, @webhooks, 'contact_created', 200, 12), (@webhook_logs.spare, @tenant, @webhooks, 'contact_created', 500, 40);
INSERT INTO subscriptions (id, tenant_id, plan_id, status, cancelled_at) VALUES
    (@subscriptions, @tenant, @plans, 'active', NULL), (@subscriptions.spare, @tenant, @plans, 'cancelled', now());
INSERT INTO usages (id, tenant_id, metric, quantity) VALUES
    (@usages, @tenant, 'messages_sent', 1), (@usages.spare, @tenant, 'contacts', 2);";

struct Schema {
    db: TestDb,
    owner: Client,
    app: Client,
    w: World,
    fx: Fixtures,
}

impl Schema {
    async fn new() -> Schema {
        let db = TestDb::new().await;
        let owner = db.owner().await;
        let app = db.app().await;
        let w = World::create(&owner).await;
        let fx = Fixtures::create(&owner, &w).await;
        Schema { db, owner, app, w, fx }
    }

    /// SQL with the fixtures of tenant A filled in.
    fn a(&self, sql: &str) -> String {
        self.fx.fill("a", sql)
    }

    /// SQL with the fixtures of tenant B filled in.
    fn b(&self, sql: &str) -> String {
        self.fx.fill("b", sql)
    }

    /// Runs several statements in one request context, rolled back; the rows of each.
    async fn run(&mut self, user: Uuid, tenant: Option<Uuid>, statements: &[String]) -> DbResult<Vec<Vec<Row>>> {
        in_request(&mut self.app, user, tenant, statements, false).await
    }

    /// One statement in a request context, rolled back.
    async fn one(&mut self, user: Uuid, tenant: Option<Uuid>, sql: &str) -> DbResult {
        as_user(&mut self.app, user, tenant, sql, &[]).await
    }

    /// One statement in a request context, committed.
    async fn commit(&mut self, user: Uuid, tenant: Option<Uuid>, sql: &str) -> DbResult {
        let mut all = in_request(&mut self.app, user, tenant, &[sql.to_string()], true).await?;
        Ok(all.remove(0))
    }

    async fn owner_scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        self.owner.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }
}

async fn in_request(app: &mut Client, user: Uuid, tenant: Option<Uuid>, statements: &[String], commit: bool) -> DbResult<Vec<Vec<Row>>> {
    let tx = app.transaction().await?;
    tx.query("SELECT * FROM app.begin_request($1, $2)", &[&user, &tenant]).await?;
    let mut out = Vec::new();
    for sql in statements {
        out.push(tx.query(sql.as_str(), &[]).await?);
    }
    if commit {
        tx.commit().await?
    } else {
        tx.rollback().await?
    }
    Ok(out)
}

fn first<T: for<'a> tokio_postgres::types::FromSql<'a>>(rows: &[Row]) -> T {
    rows.first().expect("one row").get(0)
}

/// Asserts a failure with `state`; returns the error for further checks.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(res: DbResult<T>, state: &str, what: &str) -> tokio_postgres::Error {
    match res {
        Ok(v) => panic!("{what}: expected SQLSTATE {state}, got success: {v:?}"),
        Err(e) => {
            assert_eq!(sqlstate(&e), state, "{what}: {e:?}");
            e
        }
    }
}

fn message(err: &tokio_postgres::Error) -> String {
    err.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| err.to_string())
}

fn constraint(err: &tokio_postgres::Error) -> Option<String> {
    err.as_db_error().and_then(|d| d.constraint()).map(str::to_string)
}

/// `WITH changed AS (<stmt> RETURNING 1) SELECT count(*)`: how many rows a write touched.
fn counted(stmt: &str) -> String {
    format!("WITH changed AS ({stmt} RETURNING 1) SELECT count(*) FROM changed")
}

/// The three roles of SPEC §3.2, as the users of the world that hold them in tenant A.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    PlatformAdmin,
    TenantAdmin,
    TenantUser,
}

use Role::{PlatformAdmin as PA, TenantAdmin as TA, TenantUser as TU};

const ALL: &[Role] = &[PA, TA, TU];
const ADMINS: &[Role] = &[PA, TA];

impl Role {
    /// The user of this role acting in tenant A (the platform admin enters tenant A too).
    fn user(self, w: &World) -> Uuid {
        match self {
            PA => w.platform_admin,
            TA => w.admin_a,
            TU => w.user_a,
        }
    }
}

//! SPEC §9 embedding: `GET /rest/campaigns?select=*,message_templates(*),groups(name,contacts(*))`
//! (20 contacts per group) beside pgbench running the statement rowcast generates for it
//! (built by the REST planner from the live catalog), same cluster, same run.

use rowcast::db::embedded::EmbeddedCluster;

use super::{APP_PASSWORD, DB, Options, TENANT, USER, drive, pgbench, report, start_rowcast};

const CAMPAIGNS: u64 = 10;
const PER_GROUP: u64 = 20;
pub const QUERY: &str = "select=*,message_templates(*),groups(name,contacts(*))";

/// One template; `CAMPAIGNS` groups of `PER_GROUP` of the seeded contacts; one campaign each.
async fn seed(cluster: &EmbeddedCluster) -> anyhow::Result<()> {
    let (client, conn) = cluster.pg_config(DB).connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "INSERT INTO message_templates (id, tenant_id, name, body)
               VALUES ('e0000000-0000-4000-8000-000000000001', '{TENANT}', 'Bench', 'Hi') ON CONFLICT DO NOTHING;
             INSERT INTO groups (id, tenant_id, name)
               SELECT ('e1000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, '{TENANT}', 'Bench group ' || g
               FROM generate_series(1, {CAMPAIGNS}) g ON CONFLICT DO NOTHING;
             INSERT INTO group_contacts (tenant_id, group_id, contact_id)
               SELECT '{TENANT}', ('e1000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
                      ('00000000-0000-4000-8000-' || lpad(to_hex((g - 1) * {PER_GROUP} + c), 12, '0'))::uuid
               FROM generate_series(1, {CAMPAIGNS}) g, generate_series(1, {PER_GROUP}) c ON CONFLICT DO NOTHING;
             INSERT INTO campaigns (id, tenant_id, name, group_id, template_id)
               SELECT ('e2000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, '{TENANT}', 'Bench campaign ' || g,
                      ('e1000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'e0000000-0000-4000-8000-000000000001'
               FROM generate_series(1, {CAMPAIGNS}) g ON CONFLICT DO NOTHING;
             ANALYZE message_templates, groups, group_contacts, campaigns;"
        ))
        .await?;
    Ok(())
}

/// The exact statement the REST layer sends for the embedding read, parameters inlined.
async fn statement(cluster: &EmbeddedCluster) -> anyhow::Result<String> {
    let mut config = cluster.pg_config(DB);
    config.user("rowcast_app").password(APP_PASSWORD);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let catalog = rowcast::rest::catalog::Catalog::load(&client).await?;
    let table = catalog.table("campaigns").ok_or_else(|| anyhow::anyhow!("campaigns is not exposed"))?;
    let query = rowcast::rest::query::parse_query(QUERY)?;
    let plan = rowcast::rest::plan::plan(&catalog, table, &query, &table.ident).map_err(|e| anyhow::anyhow!("{e}"))?;
    let limit = rowcast::rest::request::MAX_ROWS as i64;
    let (sql, _) = rowcast::rest::sql::plan_read_sql(&plan, 0, limit, false, rowcast::rest::sql::BodyShape::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(!sql.contains("$3"), "unexpected parameters in {sql}");
    Ok(sql.replace("$1", &limit.to_string()).replace("$2", "0"))
}

pub async fn embed_suite(cluster: &EmbeddedCluster, opts: &Options) -> anyhow::Result<()> {
    seed(cluster).await?;
    let (base, token, shutdown) = start_rowcast(cluster, opts).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build()?;
    let url = format!("{base}/rest/campaigns?{QUERY}");
    let check = http.get(&url).bearer_auth(&token).send().await?.json::<serde_json::Value>().await?;
    let rows = check.as_array().map_or(0, Vec::len);
    let contacts = check.get(0).and_then(|c| c["groups"]["contacts"].as_array()).map_or(0, Vec::len);
    anyhow::ensure!(
        rows as u64 == CAMPAIGNS && contacts as u64 == PER_GROUP,
        "unexpected embedding result: {rows} rows, {contacts} contacts"
    );
    println!(
        "Embedding, {} clients, {} s, {CAMPAIGNS} campaigns x {PER_GROUP} contacts per group per response:",
        opts.clients, opts.seconds
    );
    let (h, u, t) = (http.clone(), url.clone(), token.clone());
    let ours = drive(opts.clients, opts.seconds, move |_| {
        let req = h.get(&u).bearer_auth(&t);
        async move {
            match req.send().await {
                Ok(r) if r.status().as_u16() == 200 => r.bytes().await.is_ok(),
                _ => false,
            }
        }
    })
    .await;
    let raw = pgbench(
        cluster,
        &format!("BEGIN;\nSELECT * FROM app.begin_request('{USER}', NULL);\n{};\nCOMMIT;\n", statement(cluster).await?),
        opts.clients,
        opts.seconds,
    )?;
    report("embed (GET campaigns)", &ours, raw, 0.8);
    shutdown.cancel();
    Ok(())
}

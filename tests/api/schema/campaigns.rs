//! Campaign state machine (SPEC §3.3).

use super::*;

const STATUSES: [&str; 5] = ["draft", "scheduled", "running", "completed", "cancelled"];
const LEGAL: [(&str, &str); 7] = [
    ("draft", "scheduled"),
    ("scheduled", "running"),
    ("running", "completed"),
    ("draft", "running"),
    ("draft", "cancelled"),
    ("scheduled", "cancelled"),
    ("running", "cancelled"),
];

/// Statements creating a fresh draft campaign over tenant A's main group, then moving it to `status`.
fn campaign_in(s: &Schema, id: Uuid, status: &str) -> Vec<String> {
    let path: &[&str] = match status {
        "draft" => &[],
        "scheduled" => &["scheduled"],
        "running" => &["running"],
        "completed" => &["running", "completed"],
        _ => &["cancelled"],
    };
    let mut sql = vec![s.a(&format!(
        "INSERT INTO campaigns (id, tenant_id, name, group_id, template_id) VALUES ('{id}', @tenant, 'C', @groups, @message_templates)"
    ))];
    sql.extend(path.iter().map(|to| move_campaign(id, to)));
    sql
}

fn move_campaign(id: Uuid, to: &str) -> String {
    format!(
        "UPDATE campaigns SET status = '{to}', scheduled_at = coalesce(scheduled_at, now() + interval '1 hour') WHERE id = '{id}' RETURNING status"
    )
}

#[tokio::test]
async fn legal_campaign_moves_succeed_and_stamp_their_time() {
    let mut s = Schema::new().await;
    for (from, to) in LEGAL {
        let id = Uuid::new_v4();
        let mut sql = campaign_in(&s, id, from);
        sql.push(move_campaign(id, to));
        sql.push(format!(
            "SELECT started_at IS NOT NULL, completed_at IS NOT NULL, cancelled_at IS NOT NULL FROM campaigns WHERE id = '{id}'"
        ));
        let out = s.run(s.w.user_a, Some(s.w.tenant_a), &sql).await.unwrap_or_else(|e| panic!("{from} -> {to}: {e:?}"));
        assert_eq!(out[out.len() - 2][0].get::<_, String>(0), to, "{from} -> {to}");
        let stamps = &out[out.len() - 1][0];
        let (started, completed, cancelled): (bool, bool, bool) = (stamps.get(0), stamps.get(1), stamps.get(2));
        assert_eq!(started, to == "running" || from == "running", "{from} -> {to}: started_at");
        assert_eq!((completed, cancelled), (to == "completed", to == "cancelled"), "{from} -> {to}: completed_at/cancelled_at");
    }
    let created_scheduled = s.a("INSERT INTO campaigns (tenant_id, name, group_id, template_id, status, scheduled_at) \
         VALUES (@tenant, 'Later', @groups, @message_templates, 'scheduled', now() + interval '1 day') RETURNING id");
    assert!(s.one(s.w.user_a, Some(s.w.tenant_a), &created_scheduled).await.is_ok(), "a campaign may be created scheduled");
}

#[tokio::test]
async fn illegal_campaign_moves_fail_naming_both_states() {
    let mut s = Schema::new().await;
    let mut checked = 0;
    for from in STATUSES {
        for to in STATUSES.iter().copied().filter(|to| *to != from && !LEGAL.contains(&(from, *to))) {
            let id = Uuid::new_v4();
            let mut sql = campaign_in(&s, id, from);
            sql.push(move_campaign(id, to));
            let e = expect_err(s.run(s.w.admin_a, Some(s.w.tenant_a), &sql).await, "P0001", &format!("{from} -> {to}"));
            assert_eq!(message(&e), format!("illegal campaign status change: {from} -> {to}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 13, "every illegal pair of the five states was tried");
    for status in ["running", "completed", "cancelled"] {
        let sql = s.a(&format!(
            "INSERT INTO campaigns (tenant_id, name, group_id, template_id, status) \
             VALUES (@tenant, 'x', @groups, @message_templates, '{status}')"
        ));
        let e = expect_err(s.one(s.w.admin_a, Some(s.w.tenant_a), &sql).await, "P0001", &format!("created {status}"));
        assert!(message(&e).contains(&format!("-> {status}")), "{}", message(&e));
    }
    let unready = s.a("INSERT INTO campaigns (tenant_id, name, status, scheduled_at) VALUES (@tenant, 'x', 'scheduled', now())");
    let e = expect_err(s.one(s.w.admin_a, Some(s.w.tenant_a), &unready).await, "23514", "scheduled without group and template");
    assert_eq!(constraint(&e).as_deref(), Some("campaigns_ready_check"));
}

#[tokio::test]
async fn campaign_start_snapshots_live_contacts_and_queues_one_rendered_message_each() {
    let mut s = Schema::new().await;
    let (g, t, k) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (zoe, gone, quiet) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let sql = [
        format!("INSERT INTO groups (id, tenant_id, name) VALUES ('{g}', '{}', 'Audience')", s.w.tenant_a),
        format!(
            "INSERT INTO contacts (id, tenant_id, phone, first_name, attributes) VALUES \
             ('{zoe}', '{a}', '+33620000001', 'Zoe', '{{\"city\": \"Paris\"}}'), ('{gone}', '{a}', '+33620000002', 'Gone', '{{}}'), \
             ('{quiet}', '{a}', '+33620000003', 'Quiet', '{{}}')",
            a = s.w.tenant_a
        ),
        format!("UPDATE contacts SET opted_out = true WHERE id = '{quiet}'"),
        s.a(&format!("SELECT rpc.group_add_contacts('{g}', ARRAY['{zoe}', '{gone}', '{quiet}', @contacts])")),
        format!("UPDATE contacts SET deleted_at = now() WHERE id = '{gone}'"),
        format!(
            "INSERT INTO message_templates (id, tenant_id, name, body) VALUES ('{t}', '{}', 'greet', 'Hi {{{{first_name}}}} from {{{{ city }}}}!')",
            s.w.tenant_a
        ),
        format!(
            "INSERT INTO campaigns (id, tenant_id, name, group_id, template_id) VALUES ('{k}', '{}', 'Go', '{g}', '{t}')",
            s.w.tenant_a
        ),
        format!("SELECT status, total_recipients, started_at IS NOT NULL FROM rpc.campaign_start('{k}')"),
        format!("SELECT phone, body, status FROM messages_history WHERE campaign_id = '{k}' ORDER BY phone"),
        format!("SELECT count(*) FROM campaign_recipients WHERE campaign_id = '{k}'"),
    ];
    let out = s.run(s.w.user_a, Some(s.w.tenant_a), &sql).await.unwrap();
    assert_eq!(first::<i32>(&out[3]), 4, "four contacts added to the group");
    let started = &out[7][0];
    assert_eq!((started.get::<_, String>(0), started.get::<_, i32>(1), started.get::<_, bool>(2)), ("running".into(), 2, true));
    let messages: Vec<(String, String, String)> = out[8].iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        messages,
        vec![
            ("+336100000011".into(), "Hi Main from !".into(), "queued".into()),
            ("+33620000001".into(), "Hi Zoe from Paris!".into(), "queued".into())
        ],
        "one queued, rendered message per live, not opted-out contact"
    );
    assert_eq!(first::<i64>(&out[9]), 2, "the recipients snapshot holds the same two");
}

#[tokio::test]
async fn campaign_start_and_cancel_refuse_what_is_not_theirs_to_do() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let start = |id: &str| format!("SELECT status FROM rpc.campaign_start({id})");
    let twice = [s.a(&start("@campaigns.spare")), s.a(&start("@campaigns.spare"))];
    let e = expect_err(s.run(s.w.user_a, a, &twice).await, "P0001", "starting a running campaign");
    assert_eq!(message(&e), "illegal campaign status change: running -> running");
    let empty = [s.a("UPDATE campaigns SET group_id = @groups.spare WHERE id = @campaigns.spare"), s.a(&start("@campaigns.spare"))];
    let e = expect_err(s.run(s.w.user_a, a, &empty).await, "22023", "starting over an empty group");
    assert!(message(&e).contains("no live contact"), "{}", message(&e));
    expect_err(s.one(s.w.user_a, a, &s.b(&start("@campaigns"))).await, "22023", "starting B's campaign from A");
    let deleted = [s.a("UPDATE campaigns SET deleted_at = now() WHERE id = @campaigns.spare"), s.a(&start("@campaigns.spare"))];
    expect_err(s.run(s.w.user_a, a, &deleted).await, "22023", "starting a soft-deleted campaign");
    let done = [
        s.a(&start("@campaigns.spare")),
        s.a("UPDATE campaigns SET status = 'completed' WHERE id = @campaigns.spare"),
        s.a("SELECT rpc.campaign_cancel(@campaigns.spare)"),
    ];
    let e = expect_err(s.run(s.w.user_a, a, &done).await, "P0001", "cancelling a completed campaign");
    assert_eq!(message(&e), "illegal campaign status change: completed -> cancelled");
    let twin = s.run(s.w.user_a, a, &[s.a(&start("@campaigns.spare"))]).await.unwrap();
    assert_eq!(first::<String>(&twin[0]), "running", "the legal start works");
}

#[tokio::test]
async fn campaign_cancel_cancels_queued_messages_only() {
    let mut s = Schema::new().await;
    let sql = [
        s.a("SELECT rpc.campaign_start(@campaigns.spare)"),
        s.a("SELECT rpc.message_update_status(id, 'sending') FROM messages_history WHERE campaign_id = @campaigns.spare AND contact_id = @contacts"),
        s.a("SELECT status FROM rpc.campaign_cancel(@campaigns.spare)"),
        s.a("SELECT contact_id = @contacts, status FROM messages_history WHERE campaign_id = @campaigns.spare ORDER BY 1"),
        s.a("SELECT rpc.campaign_cancel(@campaigns.spare)"),
    ];
    let e = expect_err(s.run(s.w.admin_a, Some(s.w.tenant_a), &sql).await, "P0001", "cancelling twice");
    assert_eq!(message(&e), "illegal campaign status change: cancelled -> cancelled");
    let out = s.run(s.w.admin_a, Some(s.w.tenant_a), &sql[..4]).await.unwrap();
    assert_eq!(first::<String>(&out[2]), "cancelled");
    let states: Vec<(bool, String)> = out[3].iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(states, vec![(false, "cancelled".into()), (true, "sending".into())], "queued → cancelled, sending goes on");
}

#[tokio::test]
async fn campaign_counters_are_maintained_by_the_database_and_complete_the_campaign() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let counters = "SELECT status, total_recipients, sent_count, delivered_count, read_count, failed_count, completed_at IS NOT NULL \
                    FROM campaigns WHERE id = @campaigns.spare";
    let sql = [
        s.a("SELECT rpc.campaign_start(@campaigns.spare)"),
        s.a("SELECT rpc.message_update_status(id, 'sending') FROM messages_history WHERE campaign_id = @campaigns.spare"),
        s.a("SELECT rpc.message_update_status(id, 'sent') FROM messages_history WHERE campaign_id = @campaigns.spare AND contact_id = @contacts"),
        s.a(counters),
        s.a("SELECT rpc.message_update_status(id, 'failed', 'unreachable') FROM messages_history WHERE campaign_id = @campaigns.spare AND contact_id = @contacts.spare"),
        s.a(counters),
        s.a("SELECT rpc.message_update_status(id, 'read') FROM messages_history WHERE campaign_id = @campaigns.spare AND contact_id = @contacts"),
        s.a(counters),
    ];
    let out = s.run(s.w.user_a, a, &sql).await.unwrap();
    type Counters = (String, i32, i32, i32, i32, i32, bool);
    let read = |rows: &[Row]| -> Counters {
        let r = &rows[0];
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))
    };
    assert_eq!(read(&out[3]), ("running".into(), 2, 1, 0, 0, 0, false), "one of two sent: still running");
    assert_eq!(read(&out[5]), ("completed".into(), 2, 1, 0, 0, 1, true), "every message sent or failed: completed by itself");
    assert_eq!(read(&out[7]), ("completed".into(), 2, 1, 1, 1, 1, true), "read counts as delivered too");
    for forged in [
        "UPDATE campaigns SET sent_count = 5 WHERE id = @campaigns",
        "UPDATE campaigns SET started_at = now() WHERE id = @campaigns",
        "INSERT INTO campaigns (tenant_id, name, total_recipients) VALUES (@tenant, 'x', 3)",
    ] {
        expect_err(s.one(s.w.admin_a, a, &s.a(forged)).await, "42501", forged);
    }
}

#[tokio::test]
async fn campaign_group_and_template_are_frozen_once_started() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let change = s.a("UPDATE campaigns SET group_id = @groups.spare WHERE id = @campaigns.spare RETURNING id");
    assert_eq!(s.one(s.w.user_a, a, &change).await.unwrap().len(), 1, "a draft may change its group");
    let e = expect_err(s.run(s.w.user_a, a, &[s.a("SELECT rpc.campaign_start(@campaigns.spare)"), change]).await, "P0001", "after start");
    assert_eq!(message(&e), "campaign is running: its group and template can no longer change");
}

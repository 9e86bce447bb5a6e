//! Message status machine.

use super::*;

const MESSAGE_LEGAL: [(&str, &str); 9] = [
    ("queued", "sending"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    ("sending", "sent"),
    ("sending", "failed"),
    ("sent", "delivered"),
    ("sent", "read"),
    ("sent", "failed"),
    ("delivered", "read"),
];
const MESSAGE_STATUSES: [&str; 7] = ["queued", "sending", "sent", "delivered", "read", "failed", "cancelled"];

fn message_in(s: &Schema, id: Uuid, status: &str) -> Vec<String> {
    let path: &[&str] = match status {
        "queued" => &[],
        "sending" => &["sending"],
        "sent" => &["sending", "sent"],
        "delivered" => &["sending", "sent", "delivered"],
        "read" => &["sending", "sent", "read"],
        "failed" => &["failed"],
        _ => &["cancelled"],
    };
    let mut sql =
        vec![s.a(&format!("INSERT INTO messages_history (id, tenant_id, phone, body) VALUES ('{id}', @tenant, '+33611111111', 'Hi')"))];
    sql.extend(path.iter().map(|to| format!("SELECT status FROM rpc.message_update_status('{id}', '{to}')")));
    sql
}

#[tokio::test]
async fn legal_message_moves_succeed_and_stamp_their_time() {
    let mut s = Schema::new().await;
    for (from, to) in MESSAGE_LEGAL {
        let id = Uuid::new_v4();
        let mut sql = message_in(&s, id, from);
        sql.push(format!("SELECT status FROM rpc.message_update_status('{id}', '{to}')"));
        let column = match to {
            "cancelled" | "sending" => "updated_at".to_string(),
            other => format!("{other}_at"),
        };
        sql.push(format!("SELECT {column} IS NOT NULL FROM messages_history WHERE id = '{id}'"));
        let out = s.run(s.w.user_a, Some(s.w.tenant_a), &sql).await.unwrap_or_else(|e| panic!("{from} -> {to}: {e:?}"));
        assert_eq!(first::<String>(&out[out.len() - 2]), to, "{from} -> {to}");
        assert!(first::<bool>(&out[out.len() - 1]), "{from} -> {to} stamps {column}");
    }
    let id = Uuid::new_v4();
    let mut repeated = message_in(&s, id, "sent");
    repeated.push(format!("SELECT status FROM rpc.message_update_status('{id}', 'sent')"));
    assert!(s.run(s.w.user_a, Some(s.w.tenant_a), &repeated).await.is_ok(), "a repeated callback (sent -> sent) is accepted");
    let inbound = s.a("INSERT INTO messages_history (tenant_id, direction, status, phone, body) VALUES (@tenant, 'inbound', 'received', '+33611111111', 'STOP')");
    assert!(s.one(s.w.user_a, Some(s.w.tenant_a), &inbound).await.is_ok(), "inbound messages are created received");
}

#[tokio::test]
async fn illegal_message_moves_fail_naming_both_states() {
    let mut s = Schema::new().await;
    let mut checked = 0;
    for from in MESSAGE_STATUSES {
        for to in MESSAGE_STATUSES.iter().copied().filter(|to| *to != from && !MESSAGE_LEGAL.contains(&(from, *to))) {
            let id = Uuid::new_v4();
            let mut sql = message_in(&s, id, from);
            sql.push(format!("SELECT rpc.message_update_status('{id}', '{to}')"));
            let e = expect_err(s.run(s.w.user_a, Some(s.w.tenant_a), &sql).await, "P0001", &format!("{from} -> {to}"));
            assert_eq!(message(&e), format!("illegal message status change: {from} -> {to}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 7 * 6 - 9);
    let direct = s.a("UPDATE messages_history SET status = 'delivered' WHERE id = @messages_history");
    let e = expect_err(s.one(s.w.user_a, Some(s.w.tenant_a), &direct).await, "P0001", "a plain UPDATE is checked too");
    assert_eq!(message(&e), "illegal message status change: queued -> delivered");
    let created_sent = s.a("INSERT INTO messages_history (tenant_id, status, phone, body) VALUES (@tenant, 'sent', '+33611111111', 'Hi')");
    expect_err(s.one(s.w.user_a, Some(s.w.tenant_a), &created_sent).await, "P0001", "created sent");
}

#[tokio::test]
async fn message_update_status_checks_its_arguments() {
    let mut s = Schema::new().await;
    let a = Some(s.w.tenant_a);
    let call = |args: &str| format!("SELECT status, error_message FROM rpc.message_update_status({args})");
    expect_err(s.one(s.w.user_a, a, &s.a(&call("@messages_history, 'lost'"))).await, "22023", "unknown status");
    expect_err(s.one(s.w.user_a, a, &s.a(&call("@messages_history, 'sending', 'oops'"))).await, "22023", "error text without failed");
    expect_err(s.one(s.w.user_a, a, &s.b(&call("@messages_history, 'sending'"))).await, "22023", "B's message from A");
    let rows = s.one(s.w.user_a, a, &s.a(&call("@messages_history, 'failed', 'number unreachable'"))).await.unwrap();
    assert_eq!((rows[0].get::<_, String>(0), rows[0].get::<_, String>(1)), ("failed".into(), "number unreachable".into()));
}

//! Realtime over real sockets: event log, listener, hub, sessions.
//!
//! The WebSocket client the `realtime_*` files share (`WsClient`, …) lives in
//! `helpers::ws`; this file holds the isolation and protocol tests. "Never receives X" is
//! proven without sleeping: the listener waits for a later marker event it may see; delivery
//! is in seq order, so what did not arrive before the marker never will.

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::as_user;
use crate::helpers::ws::{WsClient, add_contact, add_webhook, connect, connect_port, phone, setup, types, ws_url};

// ----- isolation -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_listener_receives_a_events_and_never_b_events_including_deletes() {
    let (app, owner, w) = setup().await;
    let mut a = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let mut b = connect(&app, w.user_b, Some(w.tenant_b)).await;

    let in_b = add_contact(&owner, w.tenant_b).await;
    owner.execute("UPDATE contacts SET first_name = 'Bea' WHERE id = $1", &[&in_b]).await.unwrap();
    owner.execute("UPDATE contacts SET deleted_at = now() WHERE id = $1", &[&in_b]).await.unwrap();
    owner.execute("DELETE FROM contacts WHERE id = $1", &[&in_b]).await.unwrap();
    let marker_b = add_contact(&owner, w.tenant_b).await;
    let marker_a = add_contact(&owner, w.tenant_a).await;

    let seen_by_a = a.events_until(marker_a).await;
    assert_eq!(types(&seen_by_a), ["contact_created"], "tenant A saw only its own event: {seen_by_a:?}");
    assert_eq!(seen_by_a[0]["tenantId"], json!(w.tenant_a));

    let seen_by_b = b.events_until(marker_b).await;
    assert_eq!(types(&seen_by_b), ["contact_created", "contact_updated", "contact_deleted", "contact_deleted", "contact_created"]);
    assert!(seen_by_b.iter().all(|e| e["tenantId"] == json!(w.tenant_b)));
    let old = seen_by_b[1]["old"].as_object().expect("updates carry old");
    assert!(old.contains_key("first_name") && old["first_name"].is_null(), "old holds the previous values of changed columns: {old:?}");
    assert!(!old.contains_key("phone"), "…and only of changed columns");
    assert!(seen_by_b.windows(2).all(|p| p[0]["seq"].as_i64() < p[1]["seq"].as_i64()), "ordered by seq");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admin_receives_webhook_events_and_tenant_user_never_does() {
    let (app, owner, w) = setup().await;
    let mut admin = connect(&app, w.admin_a, Some(w.tenant_a)).await;
    let mut user = connect(&app, w.user_a, Some(w.tenant_a)).await;

    let hook = add_webhook(&owner, w.tenant_a).await;
    let secret: String = owner.query_one("SELECT secret FROM webhooks WHERE id = $1", &[&hook]).await.unwrap().get(0);
    owner
        .execute(
            "INSERT INTO webhook_logs (tenant_id, webhook_id, event_type, status_code) VALUES ($1, $2, 'contact_created', 200)",
            &[&w.tenant_a, &hook],
        )
        .await
        .unwrap();
    owner.execute("UPDATE webhooks SET secret = repeat('z', 40), name = 'renamed' WHERE id = $1", &[&hook]).await.unwrap();
    let marker = add_contact(&owner, w.tenant_a).await;

    let seen_by_admin = admin.events_until(marker).await;
    assert_eq!(
        types(&seen_by_admin),
        ["webhook_created", "webhook_log_created", "webhook_triggered", "webhook_updated", "contact_created"]
    );
    let seen_by_user = user.events_until(marker).await;
    assert_eq!(types(&seen_by_user), ["contact_created"], "tenant users get no webhook event: {seen_by_user:?}");

    // The secret never enters an event: not in the frames, not in the log.
    let frames = serde_json::to_string(&seen_by_admin).unwrap();
    assert!(!frames.contains(&secret) && !frames.contains(&"z".repeat(40)) && !frames.contains("\"secret\""));
    let leaked: i64 = owner
        .query_one(
            "SELECT count(*) FROM app.events WHERE \"row\"::text LIKE '%' || $1 || '%' OR \"row\" ? 'secret' OR old ? 'secret'",
            &[&secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_log_rls_shows_own_tenant_and_audience_only() {
    let (app, owner, w) = setup().await;
    add_contact(&owner, w.tenant_a).await;
    add_contact(&owner, w.tenant_b).await;
    add_webhook(&owner, w.tenant_a).await;
    let mut db = app.db.app().await;
    let sql = "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1 OR tenant_id IS NULL), count(*) FILTER (WHERE table_name = 'webhooks') FROM app.events";
    let visible = as_user(&mut db, w.user_a, Some(w.tenant_a), sql, &[&w.tenant_a]).await.unwrap();
    assert!(visible[0].get::<_, i64>(0) > 0, "a tenant user reads its tenant's events");
    assert_eq!(visible[0].get::<_, i64>(1), 0, "…and never another tenant's");
    assert_eq!(visible[0].get::<_, i64>(2), 0, "…nor webhook events");
    let admin = as_user(&mut db, w.admin_a, Some(w.tenant_a), sql, &[&w.tenant_a]).await.unwrap();
    assert_eq!(admin[0].get::<_, i64>(2), 1, "a tenant admin reads webhook events");
    assert_eq!(admin[0].get::<_, i64>(1), 0);
    let none: i64 = db.query_one("SELECT count(*) FROM app.events", &[]).await.unwrap().get(0);
    assert_eq!(none, 0, "no context, no events");
    let relay: i64 = db.query_one("SELECT count(*) FROM app.relay_events_since(0, 1000)", &[]).await.unwrap().get(0);
    assert!(relay >= 3, "the relay function sees every tenant");
    let denied = db
        .execute("INSERT INTO app.events (seq, type, table_name, op, \"row\", audience) VALUES (1, 'x', 'x', 'INSERT', '{}', '{}')", &[])
        .await;
    assert!(denied.is_err(), "nobody writes the log directly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_table_is_captured_by_a_rowcast_trigger() {
    let (app, owner, _) = setup().await;
    let missing: Vec<String> = owner
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND c.relname <> 'refinery_schema_history' AND (n.nspname = 'public' OR (n.nspname = 'app' AND c.relname = 'rls_audit'))
               AND (SELECT count(*) FROM pg_trigger t WHERE t.tgrelid = c.oid
                     AND t.tgname IN ('rowcast_capture_insert', 'rowcast_capture_update', 'rowcast_capture_delete')) <> 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(missing.is_empty(), "tables without the three rowcast_capture_* triggers: {missing:?}");
    let registered: i64 = owner.query_one("SELECT count(*) FROM app.realtime_tables", &[]).await.unwrap().get(0);
    assert!(registered >= 17);
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_is_checked_on_subscribe_and_revocation_ends_the_subscription() {
    let (app, owner, w) = setup().await;
    // A token without a tenant claim: the session may subscribe wherever the database allows.
    let mut user = connect_port(app.port, &app.token_for(w.user_a, None), Some(w.tenant_a)).await;
    let refused = user.subscribe(json!({"channel": format!("tenant:{}", w.tenant_b)})).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["payload"]["code"], "42501");
    let star = user.subscribe(json!({"channel": "tenant:*"})).await;
    assert_eq!(star["type"], "error", "tenant:* is for platform admins");

    // A member of A and B: subscribed to both, then loses A.
    owner
        .execute("INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'tenant_user')", &[&w.tenant_b, &w.user_a])
        .await
        .unwrap();
    let ok = user.subscribe(json!({"channel": format!("tenant:{}", w.tenant_b)})).await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let mut restricted = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let claim = restricted.subscribe(json!({"channel": format!("tenant:{}", w.tenant_b)})).await;
    assert_eq!(claim["type"], "error", "a token restricted to A cannot subscribe to B: {claim}");
    owner.execute("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2", &[&w.tenant_a, &w.user_a]).await.unwrap();
    loop {
        let frame = user.next_frame().await;
        if frame["type"] == "unsubscribed" {
            assert_eq!(frame["payload"]["channel"], format!("tenant:{}", w.tenant_a));
            assert_eq!(frame["payload"]["reason"], "membership_revoked");
            break;
        }
    }
    add_contact(&owner, w.tenant_a).await;
    let marker_b = add_contact(&owner, w.tenant_b).await;
    let after = user.events_until(marker_b).await;
    assert!(after.iter().all(|e| e["tenantId"] == json!(w.tenant_b)), "no tenant A event after revocation: {after:?}");

    // The allowed twin: a platform admin on tenant:* sees both tenants.
    let mut root = connect(&app, w.platform_admin, None).await;
    assert_eq!(root.welcome["payload"]["tenantIds"], json!(["*"]));
    let (in_a, in_b) = (add_contact(&owner, w.tenant_a).await, add_contact(&owner, w.tenant_b).await);
    let seen = root.events_until(in_b).await;
    assert!(seen.iter().any(|e| e["payload"]["id"] == json!(in_a)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_filters_narrow_by_table_event_and_row() {
    let (app, owner, w) = setup().await;
    let mut c = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let ack = c
        .subscribe(json!({"channel": format!("tenant:{}", w.tenant_a), "tables": ["campaigns"], "events": ["campaign_status_changed"], "filter": "status=eq.cancelled"}))
        .await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    add_contact(&owner, w.tenant_a).await;
    let campaign: Uuid =
        owner.query_one("INSERT INTO campaigns (tenant_id, name) VALUES ($1, 'c') RETURNING id", &[&w.tenant_a]).await.unwrap().get(0);
    owner.execute("UPDATE campaigns SET status = 'cancelled' WHERE id = $1", &[&campaign]).await.unwrap();
    let event = c.next_event().await;
    assert_eq!(event["type"], "campaign_status_changed", "{event}");
    assert_eq!(event["payload"]["status"], "cancelled");
    assert_eq!(event["payload"]["previousStatus"], "draft");
    assert_eq!(event["table"], "campaigns");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    let bad = c.subscribe(json!({"channel": format!("tenant:{}", w.tenant_a), "filter": "status=zz.x"})).await;
    assert_eq!(bad["type"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_transaction_emits_nothing() {
    let (app, mut owner, w) = setup().await;
    let mut c = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let tx = owner.transaction().await.unwrap();
    let ghost: Uuid = tx
        .query_one("INSERT INTO contacts (tenant_id, phone) VALUES ($1, $2) RETURNING id", &[&w.tenant_a, &phone()])
        .await
        .unwrap()
        .get(0);
    tx.rollback().await.unwrap();
    let marker = add_contact(&owner, w.tenant_a).await;
    let seen = c.events_until(marker).await;
    assert_eq!(seen.len(), 1, "only the marker: {seen:?}");
    let logged: i64 = owner.query_one("SELECT count(*) FROM app.events WHERE row_id = $1", &[&ghost.to_string()]).await.unwrap().get(0);
    assert_eq!(logged, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_errors_and_language() {
    let (app, _owner, w) = setup().await;
    let token = app.token_for(w.user_a, Some(w.tenant_a));
    let url = format!("{}&language=fr", ws_url(app.port, &token, Some(w.tenant_a)));
    let (ws, _) = connect_async(url).await.unwrap();
    let mut c = WsClient::wrap(ws).await;
    c.send_json(json!({"type": "ping"})).await;
    assert_eq!(c.next_frame().await["type"], "pong");
    c.ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(c.next_frame().await["payload"]["code"], "bad_frame");
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let err = c.next_frame().await;
    assert!(err["payload"]["message"].as_str().unwrap().contains("binaires"), "French: {err}");
    let owner = app.db.owner().await;
    let marker = add_contact(&owner, w.tenant_a).await;
    let event = c.events_until(marker).await.pop().unwrap();
    assert_eq!(event["language"], "fr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demoted_admin_stops_receiving_admin_only_events_and_a_promoted_user_starts() {
    let (app, owner, w) = setup().await;
    let mut admin = connect(&app, w.admin_a, Some(w.tenant_a)).await;
    let mut user = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let hook = add_webhook(&owner, w.tenant_a).await;
    let seen = admin.events_until(hook).await;
    assert!(seen.iter().any(|e| e["payload"]["id"] == json!(hook)), "an admin receives webhook events");

    // Swap the roles; every later event is judged with the new ones (events arrive in seq order).
    owner
        .execute("UPDATE memberships SET role = 'tenant_user' WHERE tenant_id = $1 AND user_id = $2", &[&w.tenant_a, &w.admin_a])
        .await
        .unwrap();
    owner
        .execute("UPDATE memberships SET role = 'tenant_admin' WHERE tenant_id = $1 AND user_id = $2", &[&w.tenant_a, &w.user_a])
        .await
        .unwrap();
    let second = add_webhook(&owner, w.tenant_a).await;
    let marker = add_contact(&owner, w.tenant_a).await;
    let demoted = admin.events_until(marker).await;
    assert!(!demoted.iter().any(|e| e["payload"]["id"] == json!(second)), "demoted: no webhook event: {:?}", types(&demoted));
    let promoted = user.events_until(marker).await;
    assert!(promoted.iter().any(|e| e["payload"]["id"] == json!(second)), "promoted: the webhook event arrives: {:?}", types(&promoted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_who_loses_the_role_loses_tenant_star() {
    let (app, owner, w) = setup().await;
    let mut root = connect(&app, w.platform_admin, None).await;
    let before = add_contact(&owner, w.tenant_b).await;
    assert!(root.events_until(before).await.iter().any(|e| e["payload"]["id"] == json!(before)), "tenant:* sees tenant B");
    owner.execute("UPDATE users SET platform_role = NULL WHERE id = $1", &[&w.platform_admin]).await.unwrap();
    let after = add_contact(&owner, w.tenant_b).await;
    // The session must not see tenant B's event any more: it is either told and unsubscribed, or closed.
    loop {
        match root.next_message().await {
            None | Some(Message::Close(_)) => break,
            Some(Message::Text(t)) => {
                let frame: Value = serde_json::from_str(&t).unwrap();
                assert_ne!(frame["payload"]["id"], json!(after), "tenant B event delivered after the role was removed");
                if frame["type"] == "unsubscribed" && frame["payload"]["channel"] == "tenant:*" {
                    break;
                }
            }
            Some(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_membership_notification_revokes_nothing_and_real_events_still_flow() {
    let (app, owner, w) = setup().await;
    let mut user = connect(&app, w.user_a, Some(w.tenant_a)).await;
    let forged = json!({
        "seq": user.head() + 1, "tenant_id": w.tenant_a, "type": "membership_deleted", "table": "memberships", "op": "DELETE",
        "row": {"tenant_id": w.tenant_a, "user_id": w.user_a, "role": "tenant_user"}, "old": null,
        "audience": ["platform_admin", "tenant_admin", "tenant_user"], "created_at": "2026-01-01T00:00:00Z"
    });
    owner.execute("SELECT pg_notify('rowcast_events', $1)", &[&forged.to_string()]).await.unwrap();
    let real = add_contact(&owner, w.tenant_a).await;
    loop {
        let frame = user.next_frame().await;
        assert_ne!(frame["type"], "unsubscribed", "a forged notification ended a subscription: {frame}");
        assert_ne!(frame["type"], "membership_deleted", "a forged event was delivered: {frame}");
        if frame["payload"]["id"] == json!(real) {
            break;
        }
    }
}

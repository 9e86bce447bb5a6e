//! Joining and leaving channels, token refresh and expiry.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Identity, Joined, Session, Stop};
use crate::auth::Principal;
use crate::db::TenantTx;
use crate::error::ApiError;
use crate::http::filters::resolve_tenant;
use crate::realtime::event::Role;
use crate::realtime::hub::SessionLink;
use crate::realtime::phoenix::changes::{Binding, Captured, MAX_BINDINGS};
use crate::realtime::phoenix::codec::{self, Message};
use crate::realtime::replay;
use crate::realtime::session::deadline_of;
use crate::realtime::subscription::Subscription;

/// Channels one socket may join.
const MAX_CHANNELS: usize = 100;
const CAPTURED_SQL: &str = "SELECT c.relname::text, t.audience, t.redact FROM app.realtime_tables t \
                            JOIN pg_class c ON c.oid = t.table_name JOIN pg_namespace n ON n.oid = c.relnamespace \
                            WHERE n.nspname = 'public'";

impl Session {
    // ---- join ---------------------------------------------------------------------------

    pub(super) async fn join(&mut self, m: &Message) -> Result<(), Stop> {
        match self.try_join(m).await {
            Ok(Some(reply)) => self.after_join(m, reply).await,
            Ok(None) => Ok(()),
            Err(reason) => self.error(m, &reason).await,
        }
    }

    /// Checks and registers a join; returns the reply's response, or why it was refused.
    async fn try_join(&mut self, m: &Message) -> Result<Option<Value>, String> {
        let sub_topic = m.topic.strip_prefix("realtime:").filter(|t| !t.is_empty() && m.topic.len() <= 255);
        if sub_topic.is_none() {
            return Err("a channel topic is realtime:<name> (at most 255 bytes)".into());
        }
        if self.channels.len() >= MAX_CHANNELS && !self.channels.contains_key(&m.topic) {
            return Err(format!("too many channels on this socket ({MAX_CHANNELS})"));
        }
        let config = m.payload.get("config").cloned().unwrap_or(Value::Null);
        if config.get("private").and_then(Value::as_bool) == Some(true) {
            return Err("private channels (RLS on realtime.messages) are not supported by rowcast".into());
        }
        let principal = self.principal_of(m)?;
        let role = self.admit(&principal).await?;
        let raw_bindings = match config.get("postgres_changes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.len() <= MAX_BINDINGS => a.clone(),
            Some(Value::Array(_)) => return Err(format!("at most {MAX_BINDINGS} postgres_changes bindings per channel")),
            Some(_) => return Err("config.postgres_changes is a list of bindings".into()),
        };
        let bindings = self.bindings(&raw_bindings, role).await?;
        if self.channels.contains_key(&m.topic) {
            self.drop_channel(&m.topic).await;
        }
        let flag = |path: [&str; 2]| config.get(path[0]).and_then(|c| c.get(path[1])).and_then(Value::as_bool) == Some(true);
        let key = config.get("presence").and_then(|p| p.get("key")).and_then(Value::as_str).filter(|k| !k.is_empty());
        let joined = Joined {
            join_ref: m.join_ref.clone(),
            broadcast_self: flag(["broadcast", "self"]),
            broadcast_ack: flag(["broadcast", "ack"]),
            presence_key: key.map_or_else(|| Uuid::new_v4().to_string(), |k| k.chars().take(255).collect()),
            tracked: false,
            bindings,
        };
        let echo: Vec<Value> = joined.bindings.iter().map(|b| b.echo.clone()).collect();
        self.channels.insert(m.topic.clone(), joined);
        let Some(ident) = &self.ident else { return Err("no identity".into()) };
        self.state.realtime.cluster.join(ident.room(), &m.topic, &ident.link);
        self.resubscribe();
        // Checked again now that the subscription is in the hub: a revocation committed before
        // this check is seen here, one committed after it reaches the hub with the subscription in.
        if let Err(e) = replay::enter(&self.state.realtime.db, &principal, ident.hub_channel()).await {
            self.drop_channel(&m.topic).await;
            return Err(self.api_reason(&e));
        }
        Ok(Some(json!({"postgres_changes": echo})))
    }

    /// The reply, then `system` (the subscription is already live), then the presence state.
    async fn after_join(&mut self, m: &Message, response: Value) -> Result<(), Stop> {
        let has_bindings = response["postgres_changes"].as_array().is_some_and(|a| !a.is_empty());
        self.reply(m, "ok", response).await?;
        let sub_topic = m.topic.trim_start_matches("realtime:").to_string();
        if has_bindings {
            let system =
                json!({"channel": sub_topic, "extension": "postgres_changes", "message": "Subscribed to PostgreSQL", "status": "ok"});
            self.send_text(codec::push(self.vsn, m.join_ref.as_deref(), &m.topic, "system", &system)).await?;
        }
        let presence_enabled =
            m.payload.get("config").and_then(|c| c.get("presence")).and_then(|p| p.get("enabled")).and_then(Value::as_bool) == Some(true);
        if presence_enabled {
            let room = self.ident.as_ref().map(Identity::room).unwrap_or_default();
            match self.state.realtime.cluster.presence_state(room, &m.topic).await {
                Ok(state) => self.send_text(codec::push(self.vsn, m.join_ref.as_deref(), &m.topic, "presence_state", &state)).await?,
                Err(e) => {
                    let reason = self.api_reason(&e);
                    self.system_error(&m.topic, "presence", &reason).await?;
                }
            }
        }
        Ok(())
    }

    /// The join's identity: its `access_token`, else the socket's `apikey` when it is a JWT.
    fn principal_of(&self, m: &Message) -> Result<Principal, String> {
        let principal = match m.payload.get("access_token").and_then(Value::as_str) {
            Some(token) => self.state.realtime.jwt.verify(token).map_err(|e| format!("invalid access_token: {e}"))?,
            None => self.apikey.clone().ok_or("no identity: send the user's JWT as access_token (or as apikey)")?,
        };
        if let Some(ident) = &self.ident
            && ident.principal.user_id != principal.user_id
        {
            return Err("this socket belongs to another user".into());
        }
        Ok(principal)
    }

    /// The membership check: the first join resolves the tenant and registers the socket in
    /// the hub; later joins re-check the same tenant. Returns the role there.
    async fn admit(&mut self, principal: &Principal) -> Result<Role, String> {
        if let Some(ident) = &mut self.ident {
            let role = replay::enter(&self.state.realtime.db, principal, ident.hub_channel())
                .await
                .map_err(|e| e.message_in(self.lang).to_string())?;
            ident.role = role;
            ident.principal = principal.clone();
            self.deadline = Some(deadline_of(principal.expires_at));
            return Ok(role);
        }
        if self.slot.is_none() {
            let slot = self.state.realtime.limits.admit_session(principal.user_id).map_err(|e| self.api_reason(&e))?;
            self.slot = Some(slot);
        }
        let (tenant, role) = self.enter(principal).await.map_err(|e| self.api_reason(&e))?;
        let link = SessionLink::new(self.id, principal.user_id, self.state.realtime.queue_capacity);
        self.state.realtime.hub.register(link.clone());
        self.ident = Some(Identity { principal: principal.clone(), tenant, role, link });
        self.deadline = Some(deadline_of(principal.expires_at));
        Ok(role)
    }

    async fn enter(&self, principal: &Principal) -> Result<(Option<Uuid>, Role), ApiError> {
        let tenant = resolve_tenant(principal, self.requested_tenant)?;
        let mut conn = self.state.realtime.db.conn_for(tenant.unwrap_or(principal.user_id)).await?;
        let tx = TenantTx::begin(&self.state.realtime.db, &mut conn, principal, tenant).await?;
        let ctx = tx.context().clone();
        tx.commit().await?;
        let role = Role::parse(&ctx.role).ok_or_else(crate::realtime::upgrade::no_tenant_role)?;
        Ok((ctx.tenant_id, role))
    }

    async fn bindings(&self, raw: &[Value], role: Role) -> Result<Vec<Binding>, String> {
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let captured = self.captured().await.map_err(|e| self.api_reason(&e))?;
        let catalog = self.state.rest.catalog();
        let mut out: Vec<Binding> = Vec::with_capacity(raw.len());
        for b in raw {
            let binding = Binding::parse(b, role, &captured, &catalog)?;
            out.push(binding);
        }
        Ok(out)
    }

    async fn captured(&self) -> Result<HashMap<String, Captured>, ApiError> {
        let conn = self.state.realtime.db.conn().await?;
        let rows = conn.query(CAPTURED_SQL, &[]).await?;
        Ok(rows.iter().map(|r| (r.get::<_, String>(0), Captured { audience: r.get(1), redact: r.get(2) })).collect())
    }

    /// Puts the socket's one hub subscription in line with its channels: tenant and role, and
    /// the union of the bound tables (none bound: no subscription).
    fn resubscribe(&self) {
        let Some(ident) = &self.ident else { return };
        let hub = &self.state.realtime.hub;
        let channel = ident.hub_channel();
        let bindings: Vec<&Binding> = self.channels.values().flat_map(|c| c.bindings.iter()).collect();
        if bindings.is_empty() {
            hub.unsubscribe(self.id, channel);
            return;
        }
        // The hub may have re-scoped the role since (a membership role change): keep its view.
        let role = hub.subscriptions(self.id).into_iter().find(|s| s.channel == channel).map_or(ident.role, |s| s.role);
        let tables = match bindings.iter().any(|b| b.table.is_none()) {
            true => None,
            false => {
                let mut t: Vec<String> = bindings.iter().filter_map(|b| b.table.clone()).collect();
                t.sort_unstable();
                t.dedup();
                Some(t)
            }
        };
        let sub = Subscription { channel, role, tables, events: None, filter: Vec::new() };
        hub.subscribe(self.id, Arc::new(sub));
    }

    /// Leaves a channel: its bindings, its room, its presence.
    pub(super) async fn drop_channel(&mut self, topic: &str) {
        let Some(joined) = self.channels.remove(topic) else { return };
        if let Some(ident) = &self.ident {
            self.state.realtime.cluster.leave(ident.room(), topic, self.id);
        }
        self.resubscribe();
        if joined.tracked {
            let _ = self.state.realtime.cluster.untrack(self.id, Some(topic)).await;
        }
    }

    async fn system_error(&mut self, topic: &str, extension: &str, message: &str) -> Result<(), Stop> {
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        let payload =
            json!({"channel": topic.trim_start_matches("realtime:"), "extension": extension, "message": message, "status": "error"});
        self.send_text(codec::push(self.vsn, join_ref.as_deref(), topic, "system", &payload)).await
    }

    /// `system` error then `phx_close`: the channel is over (the client may join again).
    async fn close_channel(&mut self, topic: &str, message: &str) -> Result<(), Stop> {
        self.system_error(topic, "system", message).await?;
        let join_ref = self.channels.get(topic).and_then(|c| c.join_ref.clone());
        self.drop_channel(topic).await;
        self.send_text(codec::push(self.vsn, join_ref.as_deref(), topic, "phx_close", &json!({}))).await
    }

    pub(super) async fn close_all(&mut self, message: &str) -> Result<(), Stop> {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            self.close_channel(&topic, message).await?;
        }
        Ok(())
    }

    // ---- token refresh and expiry --------------------------------------------------------

    /// `access_token`: same user, membership re-checked; otherwise the channel closes.
    pub(super) async fn refresh(&mut self, m: &Message) -> Result<(), Stop> {
        let Some(token) = m.payload.get("access_token").and_then(Value::as_str) else {
            return self.error(m, "access_token needs {access_token}").await;
        };
        let principal = match self.state.realtime.jwt.verify(token) {
            Ok(p) => p,
            Err(e) => return self.close_channel(&m.topic, &format!("invalid access_token: {e}")).await,
        };
        let Some(ident) = &self.ident else { return Ok(()) };
        if principal.user_id != ident.principal.user_id {
            return self.close_channel(&m.topic, "the new token is for another user").await;
        }
        match replay::enter(&self.state.realtime.db, &principal, ident.hub_channel()).await {
            Ok(_) => {
                self.deadline = Some(deadline_of(principal.expires_at));
                if let Some(ident) = &mut self.ident {
                    ident.principal = principal;
                }
                self.reply(m, "ok", json!({})).await
            }
            Err(e) => {
                let reason = self.api_reason(&e);
                self.close_channel(&m.topic, &reason).await
            }
        }
    }

    /// The token expired without a refresh: every channel closes (the socket stays, so the
    /// client can join again with a fresh token).
    pub(super) async fn expired(&mut self) -> Result<(), Stop> {
        self.deadline = None;
        self.close_all("Token has expired").await
    }
}

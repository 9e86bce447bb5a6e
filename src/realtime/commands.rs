//! What a session does with client frames: subscribe (membership check, replay, join the
//! live stream without gap or duplicate), unsubscribe, ping, auth.

use std::sync::Arc;

use super::event::Event;
use super::filter;
use super::protocol::{self, ClientFrame, SubscribeRequest, close, tr};
use super::replay;
use super::session::{Inbound, Session, Stop, deadline_of};
use super::subscription::{Channel, Subscription};
use crate::error::ApiError;

/// The subscription a `subscribe` replaces: it delivered its matching events in (from, through].
struct Prior {
    sub: Arc<Subscription>,
    from: i64,
    through: i64,
}

impl Prior {
    fn delivered(&self, event: &Event) -> bool {
        event.seq > self.from && event.seq <= self.through && self.sub.matches(event)
    }
}

/// Most subscriptions one session may hold.
const MAX_SUBSCRIPTIONS: usize = 32;

impl Session {
    pub(super) async fn on_inbound(&mut self, message: Option<Inbound>) -> Result<(), Stop> {
        match message {
            None | Some(Inbound::Closed) => Err(Stop::Gone),
            Some(Inbound::TooBig) => Err(Stop::Close(close::TOO_BIG, "frame_too_big")),
            Some(Inbound::Binary) => {
                let msg = tr(
                    self.lang,
                    "binary frames are not supported: send JSON text",
                    "les trames binaires ne sont pas prises en charge : envoyez du JSON",
                );
                self.send_text(protocol::error("unsupported_frame", msg)).await
            }
            Some(Inbound::Text(text)) => match ClientFrame::parse(&text) {
                Ok(frame) => self.on_frame(frame).await,
                Err(why) => self.send_text(protocol::error("bad_frame", &why)).await,
            },
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Result<(), Stop> {
        match frame {
            ClientFrame::Ping => self.send_text(protocol::pong()).await,
            ClientFrame::Auth(token) => self.reauthenticate(&token).await,
            ClientFrame::Unsubscribe(channel) => {
                let head = self.state.hub.unsubscribe(self.link.id, channel);
                self.recheck_through = self.recheck_through.max(head);
                self.replayed.remove(&channel);
                self.started.remove(&channel);
                self.send_text(protocol::unsubscribed(channel, "requested")).await
            }
            ClientFrame::Subscribe(request) => self.subscribe(request).await,
        }
    }

    async fn api_error(&mut self, err: &ApiError) -> Result<(), Stop> {
        let text = protocol::error(&err.code, err.message_in(self.lang));
        self.send_text(text).await
    }

    async fn subscribe(&mut self, req: SubscribeRequest) -> Result<(), Stop> {
        let filter = match req.filter.as_deref().map(filter::parse).transpose() {
            Ok(f) => f.unwrap_or_default(),
            Err(why) => return self.send_text(protocol::error("bad_filter", &why)).await,
        };
        let hub = self.state.hub.clone();
        let subs = hub.subscriptions(self.link.id);
        if subs.len() >= MAX_SUBSCRIPTIONS && !subs.iter().any(|s| s.channel == req.channel) {
            let msg = tr(self.lang, "too many subscriptions on this session (32)", "trop d'abonnements sur cette session (32)");
            return self.send_text(protocol::error("too_many_subscriptions", msg)).await;
        }
        // Membership re-checked in the database, under the subscriber's own identity.
        let role = match replay::enter(&self.state.db, &self.principal, req.channel).await {
            Ok(role) => role,
            Err(e) => return self.api_error(&e).await,
        };
        let sub = Arc::new(Subscription { channel: req.channel, role, tables: req.tables, events: req.events, filter });
        self.open(sub, req.since, None).await
    }

    /// Puts a subscription live, greets (`welcome` for the connect-time subscription,
    /// `subscribed` otherwise), then replays from `since` or asks for a resync.
    pub(super) async fn open(&mut self, sub: Arc<Subscription>, since: Option<i64>, welcome: Option<Vec<String>>) -> Result<(), Stop> {
        let (hub, channel) = (self.state.hub.clone(), sub.channel);
        let prior = self.prior(channel);
        let mut head = hub.subscribe(self.link.id, sub.clone()).ok_or(Stop::Gone)?;
        // The caller checked membership before this subscription was in the hub; a revocation
        // processed in between would have found nothing to revoke. Check again now that it is
        // in: a revocation committed before this check is seen here, one committed after it
        // reaches the hub with the subscription in place.
        let sub = match replay::enter(&self.state.db, &self.principal, channel).await {
            Ok(role) if role == sub.role => sub,
            Ok(role) => {
                let sub = Arc::new(Subscription { role, ..(*sub).clone() });
                head = hub.subscribe(self.link.id, sub.clone()).ok_or(Stop::Gone)?;
                sub
            }
            Err(e) => {
                hub.unsubscribe(self.link.id, channel);
                self.api_error(&e).await?;
                return match welcome {
                    Some(_) => Err(Stop::Close(4403, "membership revoked")),
                    None => Ok(()),
                };
            }
        };
        self.started.insert(channel, head);
        self.recheck_through = self.recheck_through.max(head);
        self.replayed.remove(&channel);
        let greeting = match welcome {
            Some(tenant_ids) => {
                self.cursor = head;
                protocol::welcome(&self.link.id.to_string(), &tenant_ids, head)
            }
            None => protocol::subscribed(channel, head, since),
        };
        self.send_text(greeting).await?;
        match since {
            Some(since) => self.replay(&sub, since, head, prior).await,
            None => Ok(()),
        }
    }

    /// Sends the channel's events after `since` as the subscriber may see them, then marks
    /// them so that the same events waiting in the live queue are not sent twice. Events the
    /// replaced subscription of the same channel already delivered are skipped too. A cursor
    /// below the retention watermark gets `resync_required` instead.
    async fn replay(&mut self, sub: &Subscription, since: i64, head: i64, prior: Option<Prior>) -> Result<(), Stop> {
        let mut after = since;
        self.replaying = Some(after);
        loop {
            let (page, pruned) = match replay::page(&self.state.db, &self.principal, sub.channel, after).await {
                Ok(page) => page,
                Err(e) => return self.replay_failed(sub.channel, after, &e).await,
            };
            if after < pruned {
                self.replaying = None;
                return self.send_text(protocol::resync_required(sub.channel, head, pruned)).await;
            }
            let full = page.len() as i64 == replay::PAGE;
            for event in page {
                let delivered = prior.as_ref().is_some_and(|p| p.delivered(&event));
                if !delivered && sub.matches(&event) {
                    self.send(tungstenite::Message::Text(event.frame(self.lang))).await?;
                }
                after = event.seq;
                self.replaying = Some(after);
            }
            if !full {
                break;
            }
        }
        self.replaying = None;
        let through = after.max(head);
        self.started.insert(sub.channel, since);
        self.replayed.insert(sub.channel, through);
        self.recheck_through = self.recheck_through.max(through);
        Ok(())
    }

    /// What the subscription being replaced on `channel` has already sent.
    fn prior(&self, channel: Channel) -> Option<Prior> {
        let sub = self.state.hub.subscriptions(self.link.id).into_iter().find(|s| s.channel == channel)?;
        let from = *self.started.get(&channel)?;
        let through = self.replayed.get(&channel).map_or(self.cursor, |r| self.cursor.max(*r));
        Some(Prior { sub, from, through })
    }

    /// A replay that cannot finish ends its subscription: the client resumes from `after`.
    async fn replay_failed(&mut self, channel: Channel, after: i64, err: &ApiError) -> Result<(), Stop> {
        self.replaying = None;
        let head = self.state.hub.unsubscribe(self.link.id, channel);
        self.recheck_through = self.recheck_through.max(head);
        self.api_error(err).await?;
        let text = serde_json::json!({"type": "unsubscribed", "payload": {"channel": channel.to_string(), "reason": "replay_failed", "cursor": after}});
        self.send_text(text.to_string()).await
    }

    /// `auth`: a fresh token for the same user pushes the session's deadline back.
    async fn reauthenticate(&mut self, token: &str) -> Result<(), Stop> {
        let principal = match self.state.jwt.verify(token) {
            Ok(p) => p,
            Err(e) => return self.send_text(protocol::error("invalid_token", &e.to_string())).await,
        };
        if principal.user_id != self.principal.user_id {
            let msg = tr(self.lang, "the new token is for another user", "le nouveau jeton concerne un autre utilisateur");
            return self.send_text(protocol::error("token_user_mismatch", msg)).await;
        }
        if let Some(claim) = principal.tenant_claim {
            let subs = self.state.hub.subscriptions(self.link.id);
            if subs.iter().any(|s| s.channel != Channel::Tenant(claim)) {
                let msg =
                    tr(self.lang, "the new token is restricted to another tenant", "le nouveau jeton est limité à un autre locataire");
                return self.send_text(protocol::error("token_tenant_mismatch", msg)).await;
            }
        }
        // A fresh token is no fresh membership: every subscription is re-checked in the database.
        for sub in self.state.hub.subscriptions(self.link.id) {
            if let Err(e) = replay::enter(&self.state.db, &principal, sub.channel).await {
                let head = self.state.hub.unsubscribe(self.link.id, sub.channel);
                self.recheck_through = self.recheck_through.max(head);
                self.api_error(&e).await?;
                self.send_text(protocol::unsubscribed(sub.channel, "membership_revoked")).await?;
            }
        }
        self.deadline = deadline_of(principal.expires_at);
        let expires_at = principal.expires_at;
        self.principal = principal;
        self.send_text(protocol::authenticated(expires_at)).await
    }
}

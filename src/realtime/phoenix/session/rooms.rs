//! Broadcast and Presence: a socket's messages to its rooms and the rooms' messages to it.

use serde_json::{Value, json};
use tungstenite::Message as WsMessage;

use super::{Identity, Session, Stop};
use crate::realtime::cluster::{ClusterMessage, Kind};
use crate::realtime::phoenix::codec::{self, Message};

impl Session {
    // ---- broadcast and presence ----------------------------------------------------------

    pub(super) async fn broadcast(&mut self, m: &Message) -> Result<(), Stop> {
        let (Some(event), Some(ident)) = (m.payload.get("event").and_then(Value::as_str), &self.ident) else {
            return self.error(m, "broadcast needs {type: \"broadcast\", event, payload}").await;
        };
        let payload = m.payload.get("payload").cloned().unwrap_or(Value::Null);
        let cluster = &self.state.realtime.cluster;
        let origin = cluster.origin(self.id);
        let sent = cluster.broadcast(ident.room(), &m.topic, &origin, event, &payload).await;
        let ack = self.channels.get(&m.topic).is_some_and(|c| c.broadcast_ack);
        match sent {
            Ok(()) if ack => self.reply(m, "ok", json!({})).await,
            Ok(()) => Ok(()),
            Err(e) => {
                let reason = self.api_reason(&e);
                self.error(m, &reason).await
            }
        }
    }

    pub(super) async fn presence(&mut self, m: &Message) -> Result<(), Stop> {
        let Some(room) = self.ident.as_ref().map(Identity::room) else { return Ok(()) };
        let cluster = self.state.realtime.cluster.clone();
        let outcome = match m.payload.get("event").and_then(Value::as_str) {
            Some("track") => {
                let mut meta = match m.payload.get("payload") {
                    Some(Value::Object(o)) => o.clone(),
                    None | Some(Value::Null) => Default::default(),
                    Some(_) => return self.error(m, "a presence payload is an object").await,
                };
                self.presence_refs += 1;
                meta.insert(
                    "phx_ref".into(),
                    format!("{}-{}-{}", &cluster.instance.simple().to_string()[..8], self.id, self.presence_refs).into(),
                );
                let key = self.channels.get(&m.topic).map(|c| c.presence_key.clone()).unwrap_or_default();
                let tracked = cluster.track(self.id, room, &m.topic, &key, &Value::Object(meta)).await;
                if tracked.is_ok()
                    && let Some(c) = self.channels.get_mut(&m.topic)
                {
                    c.tracked = true;
                }
                tracked
            }
            Some("untrack") => {
                if let Some(c) = self.channels.get_mut(&m.topic) {
                    c.tracked = false;
                }
                cluster.untrack(self.id, Some(&m.topic)).await
            }
            _ => return self.error(m, "presence needs {type: \"presence\", event: \"track\"|\"untrack\", payload}").await,
        };
        match outcome {
            Ok(()) => self.reply(m, "ok", json!({})).await,
            Err(e) => {
                let reason = self.api_reason(&e);
                self.error(m, &reason).await
            }
        }
    }

    pub(super) async fn relay(&mut self, message: &ClusterMessage) -> Result<(), Stop> {
        let Some(joined) = self.channels.get(&message.topic) else { return Ok(()) };
        let frame = match message.kind {
            Kind::Broadcast => {
                let own = message.origin.as_deref() == Some(self.state.realtime.cluster.origin(self.id).as_str());
                if own && !joined.broadcast_self {
                    return Ok(());
                }
                message.frames[self.vsn.slot()].get_or_init(|| {
                    let payload = json!({"type": "broadcast", "event": message.event, "payload": message.payload});
                    codec::push(self.vsn, None, &message.topic, "broadcast", &payload).into()
                })
            }
            Kind::Presence => message.frames[self.vsn.slot()].get_or_init(|| {
                let payload = json!({"joins": message.joins, "leaves": message.leaves});
                codec::push(self.vsn, None, &message.topic, "presence_diff", &payload).into()
            }),
        };
        let frame = frame.clone();
        self.send(WsMessage::Text(frame)).await
    }
}

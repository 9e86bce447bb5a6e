//! What a session asked to receive, and the one predicate deciding whether an event goes out.

use std::fmt;

use uuid::Uuid;

use super::event::{Event, Role};
use super::filter;
use crate::grammar::filter::Filter;

/// `tenant:<uuid>` or `tenant:*` (platform admins: every tenant, and tenant-less events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Tenant(Uuid),
    All,
}

impl Channel {
    pub fn parse(raw: &str) -> Result<Channel, String> {
        match raw.strip_prefix("tenant:") {
            Some("*") => Ok(Channel::All),
            Some(id) => Uuid::parse_str(id).map(Channel::Tenant).map_err(|_| format!("`{raw}`: the tenant is not a uuid")),
            None => Err(format!("`{raw}`: a channel is tenant:<uuid> or tenant:*")),
        }
    }

    /// The tenant to enter for the membership check and replays (`None` for `tenant:*`).
    pub fn tenant(self) -> Option<Uuid> {
        match self {
            Channel::Tenant(t) => Some(t),
            Channel::All => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Tenant(t) => write!(f, "tenant:{t}"),
            Channel::All => f.write_str("tenant:*"),
        }
    }
}

/// One active subscription of a session.
#[derive(Clone, Debug)]
pub struct Subscription {
    pub channel: Channel,
    /// The subscriber's role in that tenant, as the database resolved it.
    pub role: Role,
    pub tables: Option<Vec<String>>,
    pub events: Option<Vec<String>>,
    pub filter: Vec<Filter>,
}

impl Subscription {
    pub fn whole(channel: Channel, role: Role) -> Self {
        Self { channel, role, tables: None, events: None, filter: Vec::new() }
    }

    /// Tenant, audience, table, event type and row filter, cheapest first.
    pub fn matches(&self, event: &Event) -> bool {
        let tenant_ok = match self.channel {
            Channel::Tenant(t) => event.tenant_id == Some(t),
            Channel::All => self.role == Role::PlatformAdmin,
        };
        tenant_ok
            && event.visible_to(self.role)
            && self.tables.as_ref().is_none_or(|t| t.contains(&event.table))
            && self.events.as_ref().is_none_or(|e| e.contains(&event.kind))
            && (self.filter.is_empty() || filter::matches(&self.filter, &event.row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::event::Notice;

    fn event(tenant: Uuid, table: &str, kind: &str, audience: &str) -> Event {
        let json = format!(
            r#"{{"seq": 1, "tenant_id": "{tenant}", "type": "{kind}", "table": "{table}", "op": "INSERT",
                "row": {{"status": "running"}}, "old": null, "audience": {audience}, "created_at": ""}}"#
        );
        match Notice::decode(&json).unwrap() {
            Notice::Full(e) => *e,
            Notice::Batch { .. } | Notice::Stub { .. } => unreachable!(),
        }
    }

    #[test]
    fn tenant_and_audience_come_first() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let all_roles = r#"["platform_admin","tenant_admin","tenant_user"]"#;
        let admins = r#"["platform_admin","tenant_admin"]"#;
        let user_a = Subscription::whole(Channel::Tenant(a), Role::TenantUser);
        assert!(user_a.matches(&event(a, "contacts", "contact_created", all_roles)));
        assert!(!user_a.matches(&event(b, "contacts", "contact_created", all_roles)));
        assert!(!user_a.matches(&event(a, "webhooks", "webhook_created", admins)));
        let admin_a = Subscription::whole(Channel::Tenant(a), Role::TenantAdmin);
        assert!(admin_a.matches(&event(a, "webhooks", "webhook_created", admins)));
        let star = Subscription::whole(Channel::All, Role::PlatformAdmin);
        assert!(star.matches(&event(b, "webhooks", "webhook_created", admins)));
        assert!(!Subscription::whole(Channel::All, Role::TenantAdmin).matches(&event(b, "contacts", "contact_created", all_roles)));
    }

    #[test]
    fn tables_events_and_filters_narrow() {
        let a = Uuid::new_v4();
        let all_roles = r#"["tenant_user"]"#;
        let mut sub = Subscription::whole(Channel::Tenant(a), Role::TenantUser);
        sub.tables = Some(vec!["campaigns".into()]);
        sub.filter = filter::parse("status=eq.running").unwrap();
        assert!(sub.matches(&event(a, "campaigns", "campaign_updated", all_roles)));
        assert!(!sub.matches(&event(a, "contacts", "contact_created", all_roles)));
        sub.filter = filter::parse("status=eq.draft").unwrap();
        assert!(!sub.matches(&event(a, "campaigns", "campaign_updated", all_roles)));
        sub.filter.clear();
        sub.events = Some(vec!["campaign_status_changed".into()]);
        assert!(!sub.matches(&event(a, "campaigns", "campaign_updated", all_roles)));
    }

    #[test]
    fn channels_parse() {
        assert_eq!(Channel::parse("tenant:*").unwrap(), Channel::All);
        let t = Uuid::new_v4();
        assert_eq!(Channel::parse(&format!("tenant:{t}")).unwrap(), Channel::Tenant(t));
        assert!(Channel::parse("room:1").is_err());
        assert!(Channel::parse("tenant:nope").is_err());
    }
}

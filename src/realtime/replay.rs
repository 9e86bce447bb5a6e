//! Reads under the subscriber's own context: the membership check of a subscription and
//! the replay of `app.events` after a cursor (so RLS decides what a replay may contain).

use super::event::{Event, Role};
use super::subscription::Channel;
use crate::auth::Principal;
use crate::db::{Db, TenantTx};
use crate::error::ApiError;

/// Events read per transaction; the pool connection is released between pages.
pub const PAGE: i64 = 500;

const TENANT_PAGE_SQL: &str = "SELECT app.event_json(e)::text FROM app.events e \
                               WHERE e.tenant_id = $3 AND e.seq > $1 ORDER BY e.seq LIMIT $2";
const ALL_PAGE_SQL: &str = "SELECT app.event_json(e)::text FROM app.events e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2";
const PRUNED_SQL: &str = "SELECT pruned_through FROM app.relay_bounds()";
/// The newest event at or below the hub's head that this subscriber may see (RLS on
/// app.events decides: tenant and audience). SPEC §3.4: the global head is not an oracle.
const VISIBLE_HEAD_SQL: &str = "SELECT coalesce(max(e.seq), 0) FROM app.events e WHERE e.tenant_id = $1 AND e.seq <= $2";

/// `app.begin_request` for the channel's tenant: the role the subscriber has there, or the
/// database's refusal (42501 → 403). `tenant:*` needs a platform admin.
pub async fn enter(db: &Db, principal: &Principal, channel: Channel) -> Result<Role, ApiError> {
    Ok(enter_at(db, principal, channel, None).await?.0)
}

/// [`enter`], and with `head` (the hub's head once the subscription is live) the seq this
/// subscriber is told about: `head` itself for a platform admin on `tenant:*`, otherwise the
/// newest event at or below it that the subscriber may see — a valid resume point for it that
/// says nothing about other tenants' volume.
pub async fn enter_at(db: &Db, principal: &Principal, channel: Channel, head: Option<i64>) -> Result<(Role, i64), ApiError> {
    // A token restricted to one tenant subscribes to that tenant only.
    let tenant = crate::http::filters::resolve_tenant(principal, channel.tenant())?;
    let mut conn = db.conn().await?;
    let tx = TenantTx::begin(db, &mut conn, principal, tenant).await?;
    let ctx = tx.context().clone();
    let shown = match (head, channel) {
        (Some(head), Channel::Tenant(t)) if ctx.tenant_id == Some(t) => tx.query_one(VISIBLE_HEAD_SQL, &[&t, &head]).await?.get(0),
        (Some(head), _) => head,
        (None, _) => 0,
    };
    tx.commit().await?;
    let role = Role::parse(&ctx.role).ok_or_else(super::upgrade::no_tenant_role)?;
    let allowed = match channel {
        Channel::All => role == Role::PlatformAdmin && ctx.tenant_id.is_none(),
        Channel::Tenant(t) => ctx.tenant_id == Some(t),
    };
    if !allowed {
        return Err(ApiError::forbidden(
            "tenant:* is for platform admins only",
            "tenant:* est réservé aux administrateurs de la plateforme",
        ));
    }
    Ok((role, shown))
}

/// The newest seq the caller may see in `tenant` (0 when none), inside its own transaction.
pub async fn visible_head(tx: &TenantTx<'_>, tenant: uuid::Uuid, head: i64) -> Result<i64, ApiError> {
    Ok(tx.query_one(VISIBLE_HEAD_SQL, &[&tenant, &head]).await?.get(0))
}

/// One page of events after `after`, as the subscriber may see them (RLS on app.events),
/// and the retention watermark read after it: when `after` is below the watermark, events
/// the page should hold may have been pruned and the client must resync.
pub async fn page(db: &Db, principal: &Principal, channel: Channel, after: i64) -> Result<(Vec<Event>, i64), ApiError> {
    let mut conn = db.conn().await?;
    let tx = TenantTx::begin(db, &mut conn, principal, channel.tenant()).await?;
    let rows = match channel {
        Channel::Tenant(t) => tx.query(TENANT_PAGE_SQL, &[&after, &PAGE, &t]).await?,
        Channel::All => tx.query(ALL_PAGE_SQL, &[&after, &PAGE]).await?,
    };
    let pruned: i64 = tx.query_one(PRUNED_SQL, &[]).await?.get(0);
    tx.commit().await?;
    let events: Result<Vec<Event>, String> = rows.iter().map(|r| Event::decode(r.get(0))).collect();
    Ok((events.map_err(|e| ApiError::internal(&e))?, pruned))
}

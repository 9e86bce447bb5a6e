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

/// `app.begin_request` for the channel's tenant: the role the subscriber has there, or the
/// database's refusal (42501 → 403). `tenant:*` needs a platform admin.
pub async fn enter(db: &Db, principal: &Principal, channel: Channel) -> Result<Role, ApiError> {
    // A token restricted to one tenant subscribes to that tenant only.
    let tenant = crate::http::filters::resolve_tenant(principal, channel.tenant())?;
    let mut conn = db.conn().await?;
    let tx = TenantTx::begin(db, &mut conn, principal, tenant).await?;
    let ctx = tx.context().clone();
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
    Ok(role)
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

//! Everything that talks to PostgreSQL.

pub mod embedded;
pub mod migrate;
pub mod pool;
pub mod tenant_tx;

pub use pool::Db;
pub use tenant_tx::{RequestContext, TenantTx};

//! Everything that talks to PostgreSQL.

pub mod embedded;
pub mod ident;
pub mod listen;
pub mod migrate;
pub mod one_message;
pub mod pool;
pub mod tenant_tx;

pub use ident::quote_ident;
pub use pool::Db;
pub use tenant_tx::{RequestContext, TenantTx};

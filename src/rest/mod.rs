//! REST in the PostgREST dialect.

pub mod query;

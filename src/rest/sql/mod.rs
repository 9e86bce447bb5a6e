//! SQL text for reads, and the pieces every statement shares: bind parameters, filters,
//! select lists, ordering. Identifiers come only from the catalog (quoted there); values are
//! only ever bind parameters, sent as text and cast by PostgreSQL to the column's type, so
//! a wrong type is the database's own clean 22P02 (→ 400).
//!
//! The SQL text depends only on the request's *shape* (columns, operators, options), never
//! on its values, so `prepare_cached` reuses one prepared statement per shape.

mod filter;
mod order;
pub mod path;
mod plan;
mod read;
mod select;
#[cfg(test)]
pub(crate) mod tests;

pub use filter::{explain_count_sql, filter_sql, mentions, where_sql};
pub use order::{order_sql, order_sql_on};
pub use read::{BodyShape, ReadSql, plan_read_sql, plan_returning_sql};
pub use select::{cast_type, field_sql, select_sql};

use tokio_postgres::types::ToSql;

use super::catalog::{Column, Table};
use super::errors;
use crate::error::ApiError;

/// A bind parameter. Text is cast in SQL (`$1::text::uuid`).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    TextArray(Vec<String>),
    Int(i64),
}

/// The parameters of one statement, numbered in push order.
#[derive(Debug, Default)]
pub struct Params(Vec<Param>);

impl Params {
    /// Adds a parameter; gives its placeholder (`$3`).
    pub fn push(&mut self, p: Param) -> String {
        self.0.push(p);
        format!("${}", self.0.len())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn values(&self) -> &[Param] {
        &self.0
    }

    /// The values as `EXECUTE` arguments (`db::one_message`).
    pub fn as_args(&self) -> Vec<crate::db::one_message::Arg<'_>> {
        use crate::db::one_message::Arg;
        self.0
            .iter()
            .map(|p| match p {
                Param::Text(s) => Arg::Text(s),
                Param::TextArray(v) => Arg::TextArray(v),
                Param::Int(i) => Arg::Int(*i),
            })
            .collect()
    }

    pub fn as_refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0
            .iter()
            .map(|p| match p {
                Param::Text(s) => s as &(dyn ToSql + Sync),
                Param::TextArray(v) => v as &(dyn ToSql + Sync),
                Param::Int(i) => i as &(dyn ToSql + Sync),
            })
            .collect()
    }
}

/// A column of `table` that may be read (filters, order and select all read it).
pub fn readable<'t>(table: &'t Table, name: &str) -> Result<&'t Column, ApiError> {
    let col = table.column(name).ok_or_else(|| errors::column_not_found(&table.name, name))?;
    match col.can_select {
        true => Ok(col),
        false => Err(errors::column_forbidden(&table.name, name, "read")),
    }
}

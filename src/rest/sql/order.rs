//! `ORDER BY`.

use super::readable;
use crate::error::ApiError;
use crate::rest::catalog::Table;
use crate::rest::query::{Direction, NullsOrder, OrderTerm};

/// `ORDER BY …`, or empty.
pub fn order_sql(table: &Table, terms: &[OrderTerm]) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(terms.len());
    for t in terms {
        let col = readable(table, t.column.as_str())?;
        let dir = if t.direction == Direction::Desc { "DESC" } else { "ASC" };
        let nulls = match t.nulls {
            Some(NullsOrder::First) => " NULLS FIRST",
            Some(NullsOrder::Last) => " NULLS LAST",
            None => "",
        };
        parts.push(format!("{}.{} {dir}{nulls}", table.ident, col.ident));
    }
    Ok(match parts.is_empty() {
        true => String::new(),
        false => format!(" ORDER BY {}", parts.join(", ")),
    })
}

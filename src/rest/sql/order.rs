//! `ORDER BY`.

use super::path::json_path_sql;
use super::{Params, readable};
use crate::error::ApiError;
use crate::rest::catalog::Table;
use crate::rest::query::{Direction, NullsOrder, OrderTerm};

/// `ORDER BY …`, or empty. JSON path keys become parameters in `params`.
pub fn order_sql(table: &Table, terms: &[OrderTerm], params: &mut Params) -> Result<String, ApiError> {
    order_sql_on(table, &table.ident, terms, params)
}

/// [`order_sql`] over the rows of `qual` (e.g. a function's results).
pub fn order_sql_on(table: &Table, qual: &str, terms: &[OrderTerm], params: &mut Params) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(terms.len());
    for t in terms {
        if let Some(rel) = &t.relation {
            // a related order needs its embed, which only the read planner renders
            return Err(crate::rest::plan::not_embedded(std::slice::from_ref(rel)));
        }
        let col = readable(table, t.column.as_str())?;
        let dir = if t.direction == Direction::Desc { "DESC" } else { "ASC" };
        let nulls = match t.nulls {
            Some(NullsOrder::First) => " NULLS FIRST",
            Some(NullsOrder::Last) => " NULLS LAST",
            None => "",
        };
        let lhs = format!("{qual}.{}", col.ident);
        let (lhs, _) = json_path_sql(lhs, col, &t.path, params);
        parts.push(format!("{lhs} {dir}{nulls}"));
    }
    Ok(match parts.is_empty() {
        true => String::new(),
        false => format!(" ORDER BY {}", parts.join(", ")),
    })
}

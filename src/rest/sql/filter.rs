//! Filters and logic trees as SQL boolean expressions; `WHERE` clauses.

use std::fmt::Write;

use super::{Param, Params, readable};
use crate::error::ApiError;
use crate::grammar::filter::{Condition, Filter, LogicOp, Operation};
use crate::rest::catalog::{Column, Table};

/// `$n::text` cast to the column's type.
fn typed_param(col: &Column, placeholder: &str) -> String {
    match col.type_sql.as_str() {
        "text" => format!("{placeholder}::text"),
        ty => format!("{placeholder}::text::{ty}"),
    }
}

/// Renders a filter as a boolean SQL expression over `qual` (the table reference).
pub fn filter_sql(table: &Table, qual: &str, f: &Filter, params: &mut Params, out: &mut String) -> Result<(), ApiError> {
    match f {
        Filter::Condition(c) => condition_sql(table, qual, c, params, out),
        Filter::Logic(tree) => {
            out.push_str(if tree.negated { "NOT (" } else { "(" });
            let joiner = if tree.op == LogicOp::And { " AND " } else { " OR " };
            for (i, child) in tree.children.iter().enumerate() {
                if i > 0 {
                    out.push_str(joiner);
                }
                filter_sql(table, qual, child, params, out)?;
            }
            out.push(')');
            Ok(())
        }
    }
}

fn condition_sql(table: &Table, qual: &str, c: &Condition, params: &mut Params, out: &mut String) -> Result<(), ApiError> {
    let col = readable(table, c.column.as_str())?;
    let lhs = format!("{qual}.{}", col.ident);
    if c.negated {
        out.push_str("NOT ");
    }
    let expr = match &c.operation {
        Operation::Cmp(op, value) if matches!(op.sql(), "LIKE" | "ILIKE") => {
            let p = params.push(Param::Text(value.clone()));
            let lhs = if col.is_text() { lhs } else { format!("{lhs}::text") };
            format!("{lhs} {} {p}::text", op.sql())
        }
        Operation::Cmp(op, value) => {
            let p = params.push(Param::Text(value.clone()));
            format!("{lhs} {} {}", op.sql(), typed_param(col, &p))
        }
        Operation::In(values) => {
            let p = params.push(Param::TextArray(values.clone()));
            format!("{lhs} = ANY({p}::text[]::{}[])", col.type_sql)
        }
        Operation::Is(v) => format!("{lhs} IS {}", v.sql()),
    };
    let _ = write!(out, "({expr})");
    Ok(())
}

/// Whether any filter (at any depth) names `column`.
pub fn mentions(filters: &[Filter], column: &str) -> bool {
    filters.iter().any(|f| match f {
        Filter::Condition(c) => c.column.as_str() == column,
        Filter::Logic(tree) => mentions(&tree.children, column),
    })
}

/// `WHERE …` for the filters (ANDed), plus `deleted_at IS NULL` on soft-delete tables
/// unless a filter names `deleted_at` (or `always_live`). Empty when there is nothing.
pub fn where_sql(table: &Table, filters: &[Filter], always_live: bool, params: &mut Params) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(filters.len() + 1);
    for f in filters {
        let mut s = String::new();
        filter_sql(table, &table.ident, f, params, &mut s)?;
        parts.push(s);
    }
    if let Some(col) = table.soft_delete()
        && (always_live || !mentions(filters, &col.name))
    {
        parts.push(format!("{}.{} IS NULL", table.ident, col.ident));
    }
    Ok(match parts.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", parts.join(" AND ")),
    })
}

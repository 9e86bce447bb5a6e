//! Filters and logic trees as SQL boolean expressions; `WHERE` clauses.

use std::fmt::Write;

use super::path::json_path_sql;
use super::{Param, Params, readable};
use crate::error::ApiError;
use crate::grammar::filter::{Condition, Filter, LogicOp, Operation};
use crate::rest::catalog::Table;

/// `$n::text` cast to the SQL type `ty`.
fn typed_param(ty: &str, placeholder: &str) -> String {
    match ty {
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
    let base = format!("{qual}.{}", col.ident);
    let (lhs, ty) = match c.path.is_empty() {
        true => (base, col.type_sql.clone()),
        false => json_path_sql(base, col, &c.path, params),
    };
    let is_text = ty == "text" || (c.path.is_empty() && col.is_text());
    let as_text = |lhs: &str| if is_text { lhs.to_string() } else { format!("{lhs}::text") };
    if c.negated {
        out.push_str("NOT ");
    }
    let expr = match &c.operation {
        Operation::Cmp(op, value) if op.is_textual() => {
            let p = params.push(Param::Text(value.clone()));
            format!("{} {} {p}::text", as_text(&lhs), op.sql())
        }
        Operation::Cmp(op, value) => {
            let p = params.push(Param::Text(value.clone()));
            format!("{lhs} {} {}", op.sql(), typed_param(&ty, &p))
        }
        Operation::Quant(op, q, value) if op.is_textual() => {
            let p = params.push(Param::Text(value.clone()));
            format!("{} {} {}({p}::text::text[])", as_text(&lhs), op.sql(), q.sql())
        }
        Operation::Quant(op, q, value) => {
            let p = params.push(Param::Text(value.clone()));
            format!("{lhs} {} {}({p}::text::{ty}[])", op.sql(), q.sql())
        }
        Operation::Fts(op, config, value) => {
            let config = config.as_ref().map(|cfg| format!("{}::text::regconfig, ", params.push(Param::Text(cfg.clone()))));
            let config = config.unwrap_or_default();
            let p = params.push(Param::Text(value.clone()));
            let query = format!("{}({config}{p}::text)", op.function());
            match ty.as_str() {
                "tsvector" => format!("{lhs} @@ {query}"),
                _ => format!("to_tsvector({config}{lhs}) @@ {query}"),
            }
        }
        Operation::In(values) => {
            let p = params.push(Param::TextArray(values.clone()));
            format!("{lhs} = ANY({p}::text[]::{ty}[])")
        }
        Operation::Is(v) => format!("{lhs} IS {}", v.sql()),
    };
    let _ = write!(out, "({expr})");
    Ok(())
}

/// `EXPLAIN (FORMAT JSON) SELECT 1 FROM t WHERE …`: the planner's estimate of the rows the
/// filters select (PostgREST's `count=planned`), with its own parameters.
pub fn explain_count_sql(table: &Table, filters: &[Filter]) -> Result<(String, Params), ApiError> {
    let mut params = Params::default();
    let filter = where_sql(table, filters, false, &mut params)?;
    Ok((format!("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}{filter}", table.qualified), params))
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

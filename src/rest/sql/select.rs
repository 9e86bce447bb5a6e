//! The select list.

use std::fmt::Write;

use super::path::json_path_sql;
use super::{Params, readable};
use crate::error::ApiError;
use crate::grammar::path::JsonStep;
use crate::rest::catalog::Table;
use crate::rest::errors;
use crate::rest::ident::quote_ident;
use crate::rest::query::SelectItem;

/// Type casts allowed in `select=col::type`.
const CASTS: &[&str] = &[
    "text",
    "varchar",
    "int",
    "int2",
    "int4",
    "int8",
    "integer",
    "bigint",
    "smallint",
    "numeric",
    "float4",
    "float8",
    "real",
    "bool",
    "boolean",
    "date",
    "time",
    "timestamp",
    "timestamptz",
    "uuid",
    "json",
    "jsonb",
];

/// A whitelisted cast type (lowercased), or 400.
pub fn cast_type(cast: &str) -> Result<String, ApiError> {
    let cast = cast.to_ascii_lowercase();
    match CASTS.contains(&cast.as_str()) {
        true => Ok(cast),
        false => Err(errors::bad(format!("cast to '{cast}' is not allowed"), format!("conversion en '{cast}' non autorisée"))
            .with_hint(format!("Allowed casts: {}.", CASTS.join(", ")))),
    }
}

/// One selected field: `qual.col[->path][::cast] AS key`. JSON path keys become parameters.
pub fn field_sql(
    table: &Table,
    qual: &str,
    (column, path, alias, cast): (&str, &[JsonStep], Option<&str>, Option<&str>),
    params: &mut Params,
) -> Result<(String, String), ApiError> {
    let col = readable(table, column)?;
    let (mut expr, _) = json_path_sql(format!("{qual}.{}", col.ident), col, path, params);
    if let Some(cast) = cast {
        // `::` binds tighter than `->`: the path is parenthesised before the cast
        expr = match path.is_empty() {
            true => format!("{expr}::{}", cast_type(cast)?),
            false => format!("({expr})::{}", cast_type(cast)?),
        };
    }
    Ok((expr, SelectItem::field_key(&col.name, path, alias)))
}

/// The select list over `qual`: `*` is every column the role may read.
pub fn select_sql(table: &Table, qual: &str, items: Option<&[SelectItem]>, params: &mut Params) -> Result<String, ApiError> {
    let star = [SelectItem::Star];
    // One string written in place (this runs on every read): no string per column.
    let mut out = String::with_capacity(64 * table.columns.len());
    let next = |out: &mut String| {
        if !out.is_empty() {
            out.push_str(", ");
        }
    };
    for item in items.unwrap_or(&star) {
        match item {
            SelectItem::Star => {
                for c in table.selectable() {
                    next(&mut out);
                    let _ = write!(out, "{qual}.{}", c.ident);
                }
            }
            SelectItem::Field { column, path, alias, cast } => {
                let (expr, key) = field_sql(table, qual, (column.as_str(), path, alias.as_deref(), cast.as_deref()), params)?;
                next(&mut out);
                let _ = write!(out, "{expr} AS {}", quote_ident(&key));
            }
            // the read planner renders these (see `plan`); a flat list never holds them
            SelectItem::Aggregate(_) | SelectItem::Embed(_) => {
                return Err(errors::bad(
                    "embedded resources and aggregates are not supported here",
                    "ressources incluses et agrégats non pris en charge ici",
                ));
            }
        }
    }
    match out.is_empty() {
        true => Err(errors::table_forbidden(&table.name, "read")),
        false => Ok(out),
    }
}

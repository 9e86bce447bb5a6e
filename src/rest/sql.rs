//! SQL text for reads, and the pieces every statement shares: bind parameters, filters,
//! select lists, ordering. Identifiers come only from the catalog (quoted there); values are
//! only ever bind parameters, sent as text and cast by PostgreSQL to the column's type, so
//! a wrong type is the database's own clean 22P02 (→ 400).
//!
//! The SQL text depends only on the request's *shape* (columns, operators, options), never
//! on its values, so `prepare_cached` reuses one prepared statement per shape.

use std::fmt::Write;

use tokio_postgres::types::ToSql;

use super::catalog::{Column, Table};
use super::errors;
use super::query::{Condition, Direction, Filter, LogicOp, NullsOrder, Operation, OrderTerm, SelectItem};
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

/// `$n::text` cast to the column's type.
fn typed_param(col: &Column, placeholder: &str) -> String {
    match col.type_sql.as_str() {
        "text" => format!("{placeholder}::text"),
        ty => format!("{placeholder}::text::{ty}"),
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

/// The select list over `qual`: `*` is every column the role may read.
pub fn select_sql(table: &Table, qual: &str, items: Option<&[SelectItem]>) -> Result<String, ApiError> {
    let star = [SelectItem::Star];
    let mut out = Vec::new();
    for item in items.unwrap_or(&star) {
        match item {
            SelectItem::Star => out.extend(table.selectable().map(|c| format!("{qual}.{}", c.ident))),
            SelectItem::Field { column, alias, cast } => {
                let col = readable(table, column.as_str())?;
                let mut s = format!("{qual}.{}", col.ident);
                if let Some(cast) = cast {
                    let cast = cast.to_ascii_lowercase();
                    if !CASTS.contains(&cast.as_str()) {
                        return Err(errors::bad(
                            format!("cast to '{cast}' is not allowed"),
                            format!("conversion en '{cast}' non autorisée"),
                        )
                        .with_hint(format!("Allowed casts: {}.", CASTS.join(", "))));
                    }
                    let _ = write!(s, "::{cast}");
                }
                let _ = write!(s, " AS {}", super::ident::quote_ident(alias.as_deref().unwrap_or(&col.name)));
                out.push(s);
            }
        }
    }
    match out.is_empty() {
        true => Err(errors::table_forbidden(&table.name, "read")),
        false => Ok(out.join(", ")),
    }
}

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

/// How the JSON body is built from the rows of `pgrst_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyShape {
    pub strip_nulls: bool,
}

impl BodyShape {
    /// `coalesce(json_agg(pgrst_s), '[]')`, optionally without null fields.
    pub fn agg(self) -> &'static str {
        match self.strip_nulls {
            false => "coalesce(json_agg(pgrst_s), '[]')::text",
            true => "json_strip_nulls(coalesce(json_agg(pgrst_s), '[]'))::text",
        }
    }
}

/// A read: one statement giving `(total or NULL, page row count, JSON array text)`.
pub struct ReadSql<'a> {
    pub table: &'a Table,
    pub select: Option<&'a [SelectItem]>,
    pub filters: &'a [Filter],
    pub order: &'a [OrderTerm],
    pub offset: i64,
    pub limit: i64,
    pub count: bool,
    pub shape: BodyShape,
}

impl ReadSql<'_> {
    pub fn build(&self) -> Result<(String, Params), ApiError> {
        let t = self.table;
        let mut params = Params::default();
        let select = select_sql(t, &t.ident, self.select)?;
        let filter = where_sql(t, self.filters, false, &mut params)?;
        let order = order_sql(t, self.order)?;
        let limit = params.push(Param::Int(self.limit));
        let offset = params.push(Param::Int(self.offset));
        let total = match self.count {
            true => format!("(SELECT count(*) FROM {}{filter})", t.qualified),
            false => "NULL::bigint".to_string(),
        };
        let sql = format!(
            "SELECT {total}, count(*), {agg} FROM (SELECT {select} FROM {q}{filter}{order} LIMIT {limit} OFFSET {offset}) pgrst_s",
            agg = self.shape.agg(),
            q = t.qualified,
        );
        Ok((sql, params))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rest::catalog::Catalog;
    use crate::rest::query::parse_query;

    pub fn catalog() -> Catalog {
        let col = |name: &str, ty: &str, cat: &str, select: bool| {
            format!(
                r#"{{"name":"{name}","type":"{ty}","category":"{cat}","base":"{ty}","nullable":true,"default":null,
                "generated":false,"can_select":{select},"can_insert":true,"can_update":true,"comment":null,"enum_values":null}}"#
            )
        };
        let cols = [
            col("id", "uuid", "U", true),
            col("tenant_id", "uuid", "U", true),
            col("name", "text", "S", true),
            col("n", "integer", "N", true),
            col("tags", "text[]", "A", true),
            col("secret", "text", "S", false),
            col("deleted_at", "timestamp with time zone", "D", true),
        ]
        .join(",");
        let tables = format!(
            r#"[{{"name":"things","comment":null,"can_select":true,"can_insert":true,"can_update":true,
            "can_delete":true,"primary_key":["id"],"columns":[{cols}]}}]"#
        );
        Catalog::from_json(&tables, "[]").unwrap()
    }

    fn read(query: &str, count: bool) -> Result<(String, Params), ApiError> {
        let c = catalog();
        let q = parse_query(query).unwrap();
        let read = ReadSql {
            table: c.table("things").unwrap(),
            select: q.select.as_deref(),
            filters: &q.filters,
            order: &q.order,
            offset: 0,
            limit: 10,
            count,
            shape: BodyShape::default(),
        };
        read.build()
    }

    #[test]
    fn star_expands_to_readable_columns_and_hides_soft_deleted_rows() {
        let (sql, params) = read("", false).unwrap();
        assert_eq!(
            sql,
            "SELECT NULL::bigint, count(*), coalesce(json_agg(pgrst_s), '[]')::text FROM (SELECT \"things\".\"id\", \
             \"things\".\"tenant_id\", \"things\".\"name\", \"things\".\"n\", \"things\".\"tags\", \"things\".\"deleted_at\" \
             FROM public.\"things\" WHERE \"things\".\"deleted_at\" IS NULL LIMIT $1 OFFSET $2) pgrst_s"
        );
        assert_eq!(params.values(), &[Param::Int(10), Param::Int(0)]);
    }

    #[test]
    fn filters_bind_values_as_text_cast_to_the_column_type() {
        let (sql, params) = read("id=eq.abc&n=not.gt.5&name=ilike.*x*&tags=eq.{a,b}&n=in.(1,2)&name=is.null", false).unwrap();
        assert!(sql.contains("(\"things\".\"id\" = $1::text::uuid)"), "{sql}");
        assert!(sql.contains("NOT (\"things\".\"n\" > $2::text::integer)"), "{sql}");
        assert!(sql.contains("(\"things\".\"name\" ILIKE $3::text)"), "{sql}");
        assert!(sql.contains("(\"things\".\"tags\" = $4::text::text[])"), "{sql}");
        assert!(sql.contains("(\"things\".\"n\" = ANY($5::text[]::integer[]))"), "{sql}");
        assert!(sql.contains("(\"things\".\"name\" IS NULL)"), "{sql}");
        assert_eq!(params.values()[0], Param::Text("abc".into()));
        assert_eq!(params.values()[2], Param::Text("%x%".into()));
        assert_eq!(params.values()[4], Param::TextArray(vec!["1".into(), "2".into()]));
    }

    #[test]
    fn like_on_a_non_text_column_compares_its_text_form() {
        let (sql, _) = read("n=like.1*", false).unwrap();
        assert!(sql.contains("(\"things\".\"n\"::text LIKE $1::text)"), "{sql}");
    }

    #[test]
    fn logic_trees_nest_and_negate() {
        let (sql, _) = read("or=(n.eq.1,not.and(name.eq.a,n.lt.3))", false).unwrap();
        assert!(
            sql.contains("((\"things\".\"n\" = $1::text::integer) OR NOT ((\"things\".\"name\" = $2::text) AND (\"things\".\"n\" < $3::text::integer)))"),
            "{sql}"
        );
    }

    #[test]
    fn filtering_on_deleted_at_shows_soft_deleted_rows() {
        let (sql, _) = read("deleted_at=not.is.null", false).unwrap();
        assert!(!sql.contains("IS NULL LIMIT"), "{sql}");
        let (sql, _) = read("or=(deleted_at.is.null,n.eq.1)", false).unwrap();
        assert_eq!(sql.matches("deleted_at").count(), 2, "select list and the filter only: {sql}");
    }

    #[test]
    fn counts_reuse_the_filter_parameters() {
        let (sql, params) = read("n=eq.1", true).unwrap();
        assert!(sql.starts_with("SELECT (SELECT count(*) FROM public.\"things\" WHERE (\"things\".\"n\" = $1::text::integer)"), "{sql}");
        assert_eq!(params.len(), 3);
    }

    #[test]
    fn select_aliases_casts_and_order() {
        let (sql, _) = read("select=label:name,n::text&order=n.desc.nullslast,name", false).unwrap();
        assert!(sql.contains("\"things\".\"name\" AS \"label\", \"things\".\"n\"::text AS \"n\""), "{sql}");
        assert!(sql.contains("ORDER BY \"things\".\"n\" DESC NULLS LAST, \"things\".\"name\" ASC"), "{sql}");
    }

    #[test]
    fn unknown_unreadable_and_uncastable_columns_are_refused() {
        assert_eq!(read("select=nope", false).unwrap_err().status.as_u16(), 400);
        assert_eq!(read("nope=eq.1", false).unwrap_err().status.as_u16(), 400);
        assert_eq!(read("order=nope", false).unwrap_err().status.as_u16(), 400);
        assert_eq!(read("select=secret", false).unwrap_err().status.as_u16(), 403);
        assert_eq!(read("secret=eq.x", false).unwrap_err().status.as_u16(), 403);
        assert_eq!(read("select=n::regclass", false).unwrap_err().status.as_u16(), 400);
    }

    #[test]
    fn hostile_names_never_reach_the_sql_text() {
        let err = read("select=%22a\\%22;drop table x;--%22", false).unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        let (sql, params) = read("name=eq.');drop table things;--", false).unwrap();
        assert!(!sql.contains("drop"), "{sql}");
        assert_eq!(params.values()[0], Param::Text("');drop table things;--".into()));
    }
}

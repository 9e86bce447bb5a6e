//! SQL text for a [`ReadPlan`]: one statement whatever the depth. Each embedded resource is
//! a `LEFT` (or `INNER`) `JOIN LATERAL` subquery over its own table — so that table's RLS
//! policies and column privileges apply — correlated to its parent row by the relationship's
//! columns (through the junction table for many-to-many), with its own filters, soft-delete
//! rule, order and window; its rows become JSON in SQL (`row_to_json` for to-one,
//! `json_agg` for to-many), or plain columns for a spread. Aggregates group by the node's
//! other outputs.

use std::fmt::Write;

use super::path::json_path_sql;
use super::{Param, Params, filter_sql, mentions, readable};
use crate::error::ApiError;
use crate::rest::ident::quote_ident;
use crate::rest::plan::{EmbedPlan, PlanItem, ReadPlan};
use crate::rest::query::{Direction, NullsOrder, SelectItem};
use crate::rest::relationship::Cardinality;

/// Where a node's rows come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// The node's table (reads): filters and the soft-delete rule apply.
    Table,
    /// Rows a write returned (`pgrst_source`): shown as they are.
    Returned(&'a str),
}

/// What to render.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The node's rows with every output.
    Rows,
    /// Only what decides which rows there are (for `count=exact`).
    Count,
}

/// `ORDER BY …` of a node: its own columns (with JSON paths), or (`rel(col)`) the value its
/// to-one embed's lateral exposes as `pgrst_o{i}` (see [`related_order_outputs`]).
fn ordering(node: &ReadPlan<'_>, params: &mut Params) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(node.order.len());
    for (i, t) in node.order.iter().enumerate() {
        let dir = if t.direction == Direction::Desc { "DESC" } else { "ASC" };
        let nulls = match t.nulls {
            Some(NullsOrder::First) => " NULLS FIRST",
            Some(NullsOrder::Last) => " NULLS LAST",
            None => "",
        };
        let lhs = match &t.relation {
            Some(rel) => {
                let e =
                    node.embeds.iter().find(|e| &e.key == rel).ok_or_else(|| crate::rest::plan::not_embedded(std::slice::from_ref(rel)))?;
                format!("{}.pgrst_o{i}", e.lateral)
            }
            None => {
                let col = readable(node.table, t.column.as_str())?;
                json_path_sql(format!("{}.{}", node.qual, col.ident), col, &t.path, params).0
            }
        };
        parts.push(format!("{lhs} {dir}{nulls}"));
    }
    Ok(match parts.is_empty() {
        true => String::new(),
        false => format!(" ORDER BY {}", parts.join(", ")),
    })
}

/// The values `order=rel(col)` sorts on, as extra outputs `expr AS pgrst_o{i}` of the embed
/// `e` (`i`: the term's position in the parent's order).
fn related_order_outputs(parent: &ReadPlan<'_>, e: &EmbedPlan<'_>, params: &mut Params) -> Result<Vec<(usize, String)>, ApiError> {
    let mut out = Vec::new();
    for (i, t) in parent.order.iter().enumerate().filter(|(_, t)| t.relation.as_deref() == Some(e.key.as_str())) {
        let col = readable(e.node.table, t.column.as_str())?;
        let (expr, _) = json_path_sql(format!("{}.{}", e.node.qual, col.ident), col, &t.path, params);
        out.push((i, expr));
    }
    Ok(out)
}

/// `a.x = b.y AND …` over column pairs.
fn equal_pairs(left: &str, right: &str, pairs: &[(String, String)], out: &mut Vec<String>) {
    for (l, r) in pairs {
        out.push(format!("{left}.{} = {right}.{}", quote_ident(l), quote_ident(r)));
    }
}

/// The node's `SELECT … FROM … WHERE … GROUP BY … ORDER BY` (window excluded for the root).
/// `parent` is the parent's qualifier and the embed that leads here.
pub fn node_sql(
    node: &ReadPlan<'_>,
    parent: Option<(&str, &EmbedPlan<'_>)>,
    source: Source<'_>,
    mode: Mode,
    params: &mut Params,
) -> Result<String, ApiError> {
    node_sql_with(node, parent, source, mode, &[], params)
}

/// [`node_sql`] with `extra` outputs `(i, expr)` shown as `pgrst_o{i}` (related orders).
fn node_sql_with(
    node: &ReadPlan<'_>,
    parent: Option<(&str, &EmbedPlan<'_>)>,
    source: Source<'_>,
    mode: Mode,
    extra: &[(usize, String)],
    params: &mut Params,
) -> Result<String, ApiError> {
    let q = node.qual.as_str();
    let t = node.table;
    let grouped = node.has_aggregates();
    let (mut outputs, mut group_by) = (Vec::new(), Vec::new());
    let mut joins = String::new();

    for item in &node.items {
        match item {
            PlanItem::Column { col, path, alias, cast } => {
                let (expr, _) = json_path_sql(format!("{q}.{}", col.ident), col, path, params);
                let expr = match (cast, path.is_empty()) {
                    (Some(c), true) => format!("{expr}::{c}"),
                    // `::` binds tighter than `->`
                    (Some(c), false) => format!("({expr})::{c}"),
                    (None, _) => expr,
                };
                let key = SelectItem::field_key(&col.name, path, alias.as_deref());
                outputs.push(format!("{expr} AS {}", quote_ident(&key)));
                group_by.push(expr);
            }
            PlanItem::Aggregate { func, col, alias, input_cast, cast } => {
                let arg = match (col, input_cast) {
                    (None, _) => "*".to_string(),
                    (Some(c), None) => format!("{q}.{}", c.ident),
                    (Some(c), Some(ic)) => format!("{q}.{}::{ic}", c.ident),
                };
                let mut expr = format!("{}({arg})", func.name());
                if let Some(c) = cast {
                    let _ = write!(expr, "::{c}");
                }
                outputs.push(format!("{expr} AS {}", quote_ident(alias.as_deref().unwrap_or(func.name()))));
            }
            PlanItem::Embed(i) => {
                let e = &node.embeds[*i];
                if !e.shown() {
                    continue;
                }
                let to_one = e.rel.is_to_one();
                let mut push = |expr: String, key: &str| {
                    // json has no equality: a grouped node groups by (and shows) jsonb
                    let expr = if grouped { format!("({expr})::jsonb") } else { expr };
                    outputs.push(format!("{expr} AS {}", quote_ident(key)));
                    group_by.push(expr);
                };
                match (e.spread, to_one) {
                    (true, true) => e.node.output_names().iter().for_each(|n| push(format!("{}.{}", e.lateral, quote_ident(n)), n)),
                    (true, false) => {
                        e.node.output_names().iter().for_each(|n| push(format!("coalesce({}.{}, '[]')", e.lateral, quote_ident(n)), n))
                    }
                    (false, true) => push(format!("{}.pgrst_j", e.lateral), &e.key),
                    (false, false) => push(format!("coalesce({}.pgrst_j, '[]')", e.lateral), &e.key),
                }
            }
        }
    }

    for (i, expr) in extra {
        outputs.push(format!("{expr} AS pgrst_o{i}"));
        if grouped {
            group_by.push(expr.clone());
        }
    }

    let mut conds = Vec::new();
    for e in &node.embeds {
        if mode == Mode::Count && !e.filters_parent() {
            continue;
        }
        let related = match mode {
            Mode::Rows => related_order_outputs(node, e, params)?,
            Mode::Count => Vec::new(),
        };
        let sub = node_sql_with(&e.node, Some((q, e)), Source::Table, Mode::Rows, &related, params)?;
        let names = e.node.output_names();
        let lateral = match (e.spread, e.rel.is_to_one()) {
            // the order values ride beside the object, outside it
            (false, true) if !related.is_empty() => {
                let shown: Vec<String> = names.iter().map(|n| format!("pgrst_x.{}", quote_ident(n))).collect();
                let keys: Vec<String> = related.iter().map(|(i, _)| format!(", pgrst_x.pgrst_o{i}")).collect();
                format!(
                    "SELECT row_to_json(pgrst_r) AS pgrst_j{} FROM ({sub}) pgrst_x CROSS JOIN LATERAL (SELECT {}) pgrst_r",
                    keys.concat(),
                    shown.join(", ")
                )
            }
            (false, true) => format!("SELECT row_to_json(pgrst_r) AS pgrst_j FROM ({sub}) pgrst_r"),
            (false, false) => format!("SELECT json_agg(pgrst_r) AS pgrst_j FROM ({sub}) pgrst_r"),
            (true, true) => sub,
            (true, false) => {
                let mut cols: Vec<String> = names.iter().map(|n| format!("json_agg(pgrst_r.{0}) AS {0}", quote_ident(n))).collect();
                cols.push("count(*) AS pgrst_n".into());
                format!("SELECT {} FROM ({sub}) pgrst_r", cols.join(", "))
            }
        };
        // a to-many lateral always gives one row: "no rows" is a NULL aggregate (or 0)
        let present = match (e.spread, e.rel.is_to_one()) {
            (_, true) => None,
            (false, false) => Some(format!("{}.pgrst_j IS NOT NULL", e.lateral)),
            (true, false) => Some(format!("{}.pgrst_n > 0", e.lateral)),
        };
        let on = match (e.inner, &present) {
            (true, Some(p)) => p.clone(),
            _ => "TRUE".to_string(),
        };
        let kind = if e.inner { "INNER" } else { "LEFT" };
        let _ = write!(joins, " {kind} JOIN LATERAL ({lateral}) {} ON {on}", e.lateral);
        if let Some(is_null) = e.null_filter {
            // to-one: the lateral row exists or not; to-many: the aggregate is NULL or not
            let marker = match &present {
                Some(p) => format!("({p})"),
                None => format!("({}.pgrst_j IS NOT NULL)", e.lateral),
            };
            conds.push(if is_null { format!("NOT {marker}") } else { marker });
        }
    }

    let mut from = match source {
        Source::Table if parent.is_none() && q == t.ident => t.qualified.clone(),
        Source::Table => format!("{} {q}", t.qualified),
        Source::Returned(cte) => format!("{cte} {q}"),
    };
    let mut wheres = Vec::new();
    if let Some((pq, e)) = parent {
        match &e.rel.cardinality {
            Cardinality::ManyToOne { pairs, .. } | Cardinality::OneToMany { pairs, .. } | Cardinality::OneToOne { pairs, .. } => {
                // pairs are (parent column, this node's column)
                let swapped: Vec<(String, String)> = pairs.iter().map(|(a, b)| (b.clone(), a.clone())).collect();
                equal_pairs(q, pq, &swapped, &mut wheres);
            }
            Cardinality::ManyToMany(j) => {
                let jt = e.junction.expect("many-to-many plans carry their junction");
                let jq = format!("{q}_j");
                let _ = write!(from, ", {} {jq}", jt.qualified);
                equal_pairs(&jq, pq, &j.source, &mut wheres);
                let target: Vec<(String, String)> = j.target.iter().map(|(a, b)| (b.clone(), a.clone())).collect();
                equal_pairs(q, &jq, &target, &mut wheres);
                if let Some(col) = jt.soft_delete() {
                    wheres.push(format!("{jq}.{} IS NULL", col.ident));
                }
            }
        }
    }
    if let Source::Table = source {
        for f in &node.filters {
            let mut s = String::new();
            filter_sql(t, q, f, params, &mut s)?;
            wheres.push(s);
        }
        if let Some(col) = t.soft_delete()
            && !mentions(&node.filters, &col.name)
        {
            wheres.push(format!("{q}.{} IS NULL", col.ident));
        }
    }
    wheres.extend(conds);

    let select = match (mode, grouped) {
        (Mode::Count, false) => "1".to_string(),
        _ => outputs.join(", "),
    };
    let mut sql = format!("SELECT {select} FROM {from}{joins}");
    if !wheres.is_empty() {
        let _ = write!(sql, " WHERE {}", wheres.join(" AND "));
    }
    if grouped && !group_by.is_empty() {
        let _ = write!(sql, " GROUP BY {}", group_by.join(", "));
    }
    if mode == Mode::Rows {
        sql.push_str(&ordering(node, params)?);
    }
    if parent.is_some() {
        if let Some(limit) = node.limit {
            let _ = write!(sql, " LIMIT {}", params.push(Param::Int(i64::try_from(limit).unwrap_or(i64::MAX))));
        }
        if let Some(offset) = node.offset {
            let _ = write!(sql, " OFFSET {}", params.push(Param::Int(i64::try_from(offset).unwrap_or(i64::MAX))));
        }
    }
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::plan::tests::{catalog, planned};

    fn sql(table: &str, query: &str) -> String {
        let c = catalog();
        let p = planned(&c, table, query).unwrap();
        node_sql(&p, None, Source::Table, Mode::Rows, &mut Params::default()).unwrap()
    }

    #[test]
    fn many_to_one_is_a_lateral_row_correlated_on_the_composite_key() {
        let s = sql("campaigns", "select=name,groups(name)");
        assert_eq!(
            s,
            "SELECT \"campaigns\".\"name\" AS \"name\", pgrst_1_e.pgrst_j AS \"groups\" FROM public.\"campaigns\" \
             LEFT JOIN LATERAL (SELECT row_to_json(pgrst_r) AS pgrst_j FROM (SELECT pgrst_1.\"name\" AS \"name\" \
             FROM public.\"groups\" pgrst_1 WHERE pgrst_1.\"tenant_id\" = \"campaigns\".\"tenant_id\" AND \
             pgrst_1.\"id\" = \"campaigns\".\"group_id\" AND pgrst_1.\"deleted_at\" IS NULL) pgrst_r) pgrst_1_e ON TRUE \
             WHERE \"campaigns\".\"deleted_at\" IS NULL"
        );
    }

    #[test]
    fn many_to_many_goes_through_the_junction() {
        let s = sql("groups", "select=name,contacts(first_name)&contacts.order=first_name.desc&contacts.limit=2");
        assert!(
            s.contains(
                "FROM public.\"contacts\" pgrst_1, public.\"group_contacts\" pgrst_1_j WHERE pgrst_1_j.\"tenant_id\" = \
                 \"groups\".\"tenant_id\" AND pgrst_1_j.\"group_id\" = \"groups\".\"id\" AND pgrst_1.\"tenant_id\" = \
                 pgrst_1_j.\"tenant_id\" AND pgrst_1.\"id\" = pgrst_1_j.\"contact_id\" AND pgrst_1.\"deleted_at\" IS NULL \
                 ORDER BY pgrst_1.\"first_name\" DESC LIMIT $1"
            ),
            "{s}"
        );
        assert!(s.contains("coalesce(pgrst_1_e.pgrst_j, '[]') AS \"contacts\""), "{s}");
        assert!(s.contains("SELECT json_agg(pgrst_r) AS pgrst_j"), "{s}");
    }

    #[test]
    fn inner_joins_and_null_filters() {
        let s = sql("groups", "select=name,contacts!inner(first_name)");
        assert!(s.contains("INNER JOIN LATERAL") && s.contains("ON pgrst_1_e.pgrst_j IS NOT NULL"), "{s}");
        let s = sql("campaigns", "select=name,groups(name)&groups=is.null");
        assert!(s.ends_with("WHERE \"campaigns\".\"deleted_at\" IS NULL AND NOT (pgrst_1_e.pgrst_j IS NOT NULL)"), "{s}");
        let s = sql("campaigns", "select=name,groups()&groups=not.is.null");
        assert!(!s.contains("AS \"groups\""), "an empty embed shows nothing: {s}");
    }

    #[test]
    fn embedded_filters_and_explicit_deleted_at() {
        let s = sql("groups", "select=name,contacts(*)&contacts.deleted_at=not.is.null&contacts.or=(first_name.eq.a,first_name.eq.b)");
        assert!(!s.contains("AND pgrst_1.\"deleted_at\" IS NULL"), "{s}");
        assert!(s.contains("NOT (pgrst_1.\"deleted_at\" IS NULL)"), "{s}");
        assert!(s.contains("((pgrst_1.\"first_name\" = $1::text) OR (pgrst_1.\"first_name\" = $2::text))"), "{s}");
    }

    #[test]
    fn aggregates_group_by_the_other_outputs() {
        let s = sql("campaigns", "select=group_id,count(),total:template_id::text.max()");
        assert!(s.starts_with("SELECT \"campaigns\".\"group_id\" AS \"group_id\", count(*) AS \"count\", max(\"campaigns\".\"template_id\"::text) AS \"total\""), "{s}");
        assert!(s.ends_with("GROUP BY \"campaigns\".\"group_id\""), "{s}");
        let s = sql("groups", "select=name,contacts(count)");
        assert!(s.contains("SELECT count(*) AS \"count\" FROM public.\"contacts\" pgrst_1"), "{s}");
        assert!(!s.contains("GROUP BY"), "{s}");
        let s = sql("campaigns", "select=count(),groups(name)");
        assert!(s.contains("GROUP BY (pgrst_1_e.pgrst_j)::jsonb"), "{s}");
    }

    #[test]
    fn spreads_lift_columns() {
        let s = sql("campaigns", "select=name,...groups(group_name:name)");
        assert!(s.starts_with("SELECT \"campaigns\".\"name\" AS \"name\", pgrst_1_e.\"group_name\" AS \"group_name\" FROM"), "{s}");
        assert!(s.contains("LEFT JOIN LATERAL (SELECT pgrst_1.\"name\" AS \"group_name\" FROM public.\"groups\" pgrst_1"), "{s}");
        let s = sql("groups", "select=name,...contacts(first_name)");
        assert!(s.contains("coalesce(pgrst_1_e.\"first_name\", '[]') AS \"first_name\""), "{s}");
    }

    #[test]
    fn related_orders_sort_on_a_value_beside_the_to_one_object() {
        let s = sql("campaigns", "select=name,groups(id)&order=groups(name).desc.nullslast,name");
        assert!(
            s.contains(
                "LEFT JOIN LATERAL (SELECT row_to_json(pgrst_r) AS pgrst_j, pgrst_x.pgrst_o0 FROM (SELECT pgrst_1.\"id\" AS \"id\", \
                 pgrst_1.\"name\" AS pgrst_o0 FROM public.\"groups\" pgrst_1"
            ),
            "{s}"
        );
        assert!(s.contains("CROSS JOIN LATERAL (SELECT pgrst_x.\"id\") pgrst_r) pgrst_1_e ON TRUE"), "{s}");
        assert!(s.ends_with("ORDER BY pgrst_1_e.pgrst_o0 DESC NULLS LAST, \"campaigns\".\"name\" ASC"), "{s}");
        let s = sql("campaigns", "select=name,...groups(name)&order=groups(name)");
        assert!(s.ends_with("ORDER BY pgrst_1_e.pgrst_o0 ASC"), "a spread exposes the value as a column: {s}");
        // JSON paths order embedded nodes too
        let s = sql("groups", "select=name,contacts(first_name)&contacts.order=first_name->>x");
        assert!(s.contains("ORDER BY pgrst_1.\"first_name\"->>$1::text ASC"), "{s}");
    }

    #[test]
    fn one_statement_for_any_depth() {
        let s = sql("campaigns", "select=*,message_templates(*),groups(name,contacts(*,groups(name,campaigns(name))))");
        assert_eq!(s.matches("JOIN LATERAL").count(), 5, "{s}");
        assert!(!s.contains("\"secret\""));
    }
}

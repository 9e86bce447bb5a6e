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
use crate::rest::catalog::Table;
use crate::rest::ident::quote_ident;
use crate::rest::plan::{EmbedPlan, PlanItem, ReadPlan};
use crate::rest::query::{Direction, NullsOrder, OrderTerm, SelectItem};
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

fn ordering(table: &Table, qual: &str, terms: &[OrderTerm]) -> Result<String, ApiError> {
    let mut parts = Vec::with_capacity(terms.len());
    for t in terms {
        let col = readable(table, t.column.as_str())?;
        let dir = if t.direction == Direction::Desc { "DESC" } else { "ASC" };
        let nulls = match t.nulls {
            Some(NullsOrder::First) => " NULLS FIRST",
            Some(NullsOrder::Last) => " NULLS LAST",
            None => "",
        };
        parts.push(format!("{qual}.{} {dir}{nulls}", col.ident));
    }
    Ok(match parts.is_empty() {
        true => String::new(),
        false => format!(" ORDER BY {}", parts.join(", ")),
    })
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

    let mut conds = Vec::new();
    for e in &node.embeds {
        if mode == Mode::Count && !e.filters_parent() {
            continue;
        }
        let sub = node_sql(&e.node, Some((q, e)), Source::Table, Mode::Rows, params)?;
        let names = e.node.output_names();
        let lateral = match (e.spread, e.rel.is_to_one()) {
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
        sql.push_str(&ordering(t, q, &node.order)?);
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
    fn one_statement_for_any_depth() {
        let s = sql("campaigns", "select=*,message_templates(*),groups(name,contacts(*,groups(name,campaigns(name))))");
        assert_eq!(s.matches("JOIN LATERAL").count(), 5, "{s}");
        assert!(!s.contains("\"secret\""));
    }
}

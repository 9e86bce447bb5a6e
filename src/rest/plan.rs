//! The read plan: the step between the parser and the SQL builder (parse → plan → SQL, as
//! PostgREST's ReadPlan). A [`ReadPlan`] is a tree with one node per table read — the
//! requested table at the root, one child per embedded resource — in which every name is
//! resolved against the catalog: columns (readable ones only), casts, relationships (with
//! PostgREST's `PGRST200`/`PGRST201`), junction tables, and the filters, order and window
//! of each embed (`rel.col=…`, `rel.order=…`, `rel.limit=…`). Pure: no I/O.

use warp::http::StatusCode;

use super::catalog::{Catalog, Column, Table};
use super::errors;
use super::query::{Aggregate, AggregateFn, Condition, Embed, Filter, IsValue, JoinType, Operation, OrderTerm, QueryParams, SelectItem};
use super::relationship::{Cardinality, Relationship};
use super::sql::{cast_type, readable};
use crate::error::ApiError;
use crate::grammar::path::JsonStep;

/// One output of a node.
#[derive(Debug)]
pub enum PlanItem<'c> {
    Column {
        col: &'c Column,
        /// A JSON path into the column (`data->a->>b`); empty for the column itself.
        path: Vec<JsonStep>,
        alias: Option<String>,
        cast: Option<String>,
    },
    Aggregate {
        func: AggregateFn,
        col: Option<&'c Column>,
        alias: Option<String>,
        input_cast: Option<String>,
        cast: Option<String>,
    },
    /// Index into the node's `embeds`.
    Embed(usize),
}

impl PlanItem<'_> {
    /// The key this item has in the JSON object (`None` for embeds: see the embed).
    fn name(&self) -> Option<String> {
        match self {
            PlanItem::Column { col, path, alias, .. } => Some(SelectItem::field_key(&col.name, path, alias.as_deref())),
            PlanItem::Aggregate { func, alias, .. } => Some(alias.clone().unwrap_or_else(|| func.name().to_string())),
            PlanItem::Embed(_) => None,
        }
    }
}

/// An embedded resource: the relationship that reaches it and its own node.
#[derive(Debug)]
pub struct EmbedPlan<'c> {
    /// Key in the parent object (alias or name), and the name used in parameter paths.
    pub key: String,
    pub rel: &'c Relationship,
    /// The junction table of a many-to-many relationship.
    pub junction: Option<&'c Table>,
    pub inner: bool,
    pub spread: bool,
    /// `embed=is.null` (`Some(true)`) / `embed=not.is.null` (`Some(false)`).
    pub null_filter: Option<bool>,
    /// SQL alias of the lateral subquery.
    pub lateral: String,
    pub node: ReadPlan<'c>,
}

impl EmbedPlan<'_> {
    /// Whether the embed shows anything (`rel()` joins and filters only).
    pub fn shown(&self) -> bool {
        !self.node.items.is_empty()
    }

    /// Whether it joins like `!inner` (explicitly, or through `embed=not.is.null`).
    pub fn filters_parent(&self) -> bool {
        self.inner || self.null_filter.is_some()
    }
}

/// One table read.
#[derive(Debug)]
pub struct ReadPlan<'c> {
    pub table: &'c Table,
    /// How the SQL refers to this node's rows.
    pub qual: String,
    pub items: Vec<PlanItem<'c>>,
    pub filters: Vec<Filter>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub embeds: Vec<EmbedPlan<'c>>,
}

impl<'c> ReadPlan<'c> {
    pub fn has_aggregates(&self) -> bool {
        self.items.iter().any(|i| matches!(i, PlanItem::Aggregate { .. }))
    }

    /// The keys of the objects this node produces, in order (a spread contributes its own).
    pub fn output_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for item in &self.items {
            match item {
                PlanItem::Embed(i) => {
                    let e = &self.embeds[*i];
                    match e.spread {
                        true => out.extend(e.node.output_names()),
                        false => out.push(e.key.clone()),
                    }
                }
                other => out.extend(other.name()),
            }
        }
        out
    }

    /// The node at `path` (embed keys from here).
    fn node_mut(&mut self, path: &[String]) -> Option<&mut ReadPlan<'c>> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self.embeds.iter_mut().find(|e| &e.key == first)?.node.node_mut(rest),
        }
    }
}

/// `'rel' is not an embedded resource in this request` (400 `PGRST108`).
pub(crate) fn not_embedded(path: &[String]) -> ApiError {
    let name = path.join(".");
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "PGRST108",
        format!("'{name}' is not an embedded resource in this request"),
        format!("'{name}' n'est pas une ressource incluse dans cette requête"),
    )
    .with_hint(format!("Verify that '{name}' is included in the 'select' query parameter."))
}

struct Builder<'c> {
    catalog: &'c Catalog,
    next_alias: usize,
}

impl<'c> Builder<'c> {
    fn alias(&mut self, prefix: &str) -> String {
        self.next_alias += 1;
        format!("{prefix}_{}", self.next_alias)
    }

    fn node(&mut self, table: &'c Table, qual: String, select: &[SelectItem]) -> Result<ReadPlan<'c>, ApiError> {
        if !table.can_select {
            return Err(errors::table_forbidden(&table.name, "read"));
        }
        let mut node = ReadPlan {
            table,
            qual,
            items: Vec::new(),
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
            offset: None,
            embeds: Vec::new(),
        };
        for item in select {
            match item {
                SelectItem::Star => {
                    node.items.extend(table.selectable().map(|col| PlanItem::Column { col, path: Vec::new(), alias: None, cast: None }))
                }
                // `rel(count)`: PostgREST's shorthand for the number of embedded rows
                SelectItem::Field { column, path, alias, cast }
                    if column.as_str() == "count" && path.is_empty() && table.column("count").is_none() =>
                {
                    node.items.push(PlanItem::Aggregate {
                        func: AggregateFn::Count,
                        col: None,
                        alias: alias.clone(),
                        input_cast: None,
                        cast: cast.clone(),
                    })
                }
                SelectItem::Field { column, path, alias, cast } => {
                    let col = readable(table, column.as_str())?;
                    let cast = cast.as_deref().map(cast_type).transpose()?;
                    node.items.push(PlanItem::Column { col, path: path.clone(), alias: alias.clone(), cast });
                }
                SelectItem::Aggregate(Aggregate { func, column, alias, input_cast, cast }) => {
                    let col = column.as_ref().map(|c| readable(table, c.as_str())).transpose()?;
                    node.items.push(PlanItem::Aggregate {
                        func: *func,
                        col,
                        alias: alias.clone(),
                        input_cast: input_cast.as_deref().map(cast_type).transpose()?,
                        cast: cast.as_deref().map(cast_type).transpose()?,
                    });
                }
                SelectItem::Embed(e) => {
                    let embed = self.embed(table, e)?;
                    if node.embeds.iter().any(|x| x.key == embed.key) {
                        return Err(errors::bad(
                            format!("'{}' is embedded twice: give one of them an alias", embed.key),
                            format!("'{}' est inclus deux fois : donnez un alias à l'un d'eux", embed.key),
                        ));
                    }
                    node.items.push(PlanItem::Embed(node.embeds.len()));
                    node.embeds.push(embed);
                }
            }
        }
        Ok(node)
    }

    fn embed(&mut self, parent: &'c Table, e: &Embed) -> Result<EmbedPlan<'c>, ApiError> {
        let rel = self.catalog.relationships.find(&parent.name, &e.name, e.hint.as_deref())?;
        let target = self.catalog.table(&rel.target).ok_or_else(|| errors::table_not_found(&rel.target))?;
        let junction = match &rel.cardinality {
            Cardinality::ManyToMany(j) => {
                let t = self.catalog.table(&j.table).ok_or_else(|| errors::table_not_found(&j.table))?;
                if !t.can_select {
                    return Err(errors::table_forbidden(&t.name, "read"));
                }
                Some(t)
            }
            _ => None,
        };
        // `campaigns?select=group_id(*)` embeds `groups` under the key `group_id`
        let key = e.key().to_string();
        let qual = self.alias("pgrst");
        let lateral = format!("{qual}_e");
        let node = self.node(target, qual, &e.select)?;
        Ok(EmbedPlan { key, rel, junction, inner: e.join == Some(JoinType::Inner), spread: e.spread, null_filter: None, lateral, node })
    }
}

/// 400 `PGRST118`: `order=rel(col)` on an embed that gives many rows per parent.
fn related_order_not_to_one(origin: &str, key: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "PGRST118",
        format!("A related order on '{key}' is not possible"),
        format!("impossible de trier sur '{key}'"),
    )
    .with_details(format!("'{origin}' and '{key}' do not form a many-to-one or one-to-one relationship"))
}

/// Checks every `order=rel(col)` (on every node): `rel` is an embed of that node (else
/// `PGRST108`), a to-one one (else `PGRST118`), and `col` a readable column of it.
fn check_related_orders(node: &ReadPlan<'_>) -> Result<(), ApiError> {
    for t in &node.order {
        let Some(rel) = &t.relation else { continue };
        let e = node.embeds.iter().find(|e| &e.key == rel).ok_or_else(|| not_embedded(std::slice::from_ref(rel)))?;
        if !e.rel.is_to_one() {
            return Err(related_order_not_to_one(&node.table.name, rel));
        }
        readable(e.node.table, t.column.as_str())?;
    }
    node.embeds.iter().try_for_each(|e| check_related_orders(&e.node))
}

/// Takes `embed=is.null` / `embed=not.is.null` out of `node.filters` (keys naming an embed,
/// not a column).
fn take_null_filters(node: &mut ReadPlan<'_>) -> Result<(), ApiError> {
    let mut kept = Vec::with_capacity(node.filters.len());
    for f in std::mem::take(&mut node.filters) {
        let embed = match &f {
            Filter::Condition(Condition { column, path, negated, operation: Operation::Is(IsValue::Null) })
                if path.is_empty() && node.table.column(column.as_str()).is_none() =>
            {
                node.embeds.iter_mut().find(|e| e.key == column.as_str()).map(|e| (e, *negated))
            }
            _ => None,
        };
        match embed {
            Some((e, _)) if e.spread => {
                return Err(errors::bad(
                    format!("'{}' is a spread: it cannot be filtered with is.null", e.key),
                    format!("'{}' est étalé : pas de filtre is.null possible", e.key),
                ));
            }
            Some((e, negated)) => e.null_filter = Some(!negated),
            None => kept.push(f),
        }
    }
    node.filters = kept;
    for e in &mut node.embeds {
        take_null_filters(&mut e.node)?;
    }
    Ok(())
}

/// Plans a read of `table` for the query (`select=` defaults to `*`). The root's rows are
/// referred to as `root_qual` (the table's own name for reads, the CTE for writes).
pub fn plan<'c>(catalog: &'c Catalog, table: &'c Table, qp: &QueryParams, root_qual: &str) -> Result<ReadPlan<'c>, ApiError> {
    let star = [SelectItem::Star];
    let select = qp.select.as_deref().unwrap_or(&star);
    let mut builder = Builder { catalog, next_alias: 0 };
    let mut root = builder.node(table, root_qual.to_string(), select)?;
    root.filters = qp.filters.clone();
    root.order = qp.order.clone();
    for (path, sub) in &qp.embedded {
        let node = root.node_mut(path).filter(|_| !path.is_empty()).ok_or_else(|| not_embedded(path))?;
        node.filters = sub.filters.clone();
        node.order = sub.order.clone();
        node.limit = sub.limit;
        node.offset = sub.offset;
    }
    take_null_filters(&mut root)?;
    check_related_orders(&root)?;
    Ok(root)
}

/// Whether a read needs the planner (anything beyond a flat column list).
pub fn needed(qp: &QueryParams) -> bool {
    !qp.embedded.is_empty() || qp.select.as_deref().is_some_and(SelectItem::needs_plan) || qp.order.iter().any(|t| t.relation.is_some())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rest::query::parse_query;

    /// The rowcast tables that matter for embedding, with composite tenant keys.
    pub fn catalog() -> Catalog {
        let col = |name: &str, ty: &str, select: bool| {
            format!(
                r#"{{"name":"{name}","type":"{ty}","category":"{}","base":"{ty}","nullable":true,"default":null,
                "generated":false,"can_select":{select},"can_insert":true,"can_update":true,"comment":null,"enum_values":null}}"#,
                if ty == "text" { "S" } else { "U" }
            )
        };
        let table = |name: &str, cols: &[(&str, &str)], can_select: bool| {
            let mut all = vec![col("id", "uuid", true), col("tenant_id", "uuid", true)];
            all.extend(cols.iter().map(|(c, t)| col(c, t, *c != "secret")));
            format!(
                r#"{{"name":"{name}","comment":null,"can_select":{can_select},"can_insert":true,"can_update":true,
                "can_delete":true,"primary_key":["id"],"columns":[{}]}}"#,
                all.join(",")
            )
        };
        let tables = [
            table("contacts", &[("first_name", "text"), ("deleted_at", "timestamp with time zone")], true),
            table("groups", &[("name", "text"), ("deleted_at", "timestamp with time zone")], true),
            table("group_contacts", &[("group_id", "uuid"), ("contact_id", "uuid")], true),
            table(
                "campaigns",
                &[("name", "text"), ("group_id", "uuid"), ("template_id", "uuid"), ("deleted_at", "timestamp with time zone")],
                true,
            ),
            table("message_templates", &[("body", "text")], true),
            table("campaign_recipients", &[("campaign_id", "uuid"), ("contact_id", "uuid")], true),
            table("webhooks", &[("url", "text"), ("secret", "text")], true),
            table("webhook_logs", &[("webhook_id", "uuid")], true),
            table("tenants", &[("name", "text")], true),
            table("employees", &[("manager_id", "uuid")], true),
            table("profiles", &[("contact_id", "uuid")], true),
        ];
        let mut c = Catalog::from_json(&format!("[{}]", tables.join(",")), "[]").unwrap();
        let (mut fks, keys) = crate::rest::relationship::tests::rowcast_keys();
        fks.push(crate::rest::relationship::ForeignKey {
            name: "webhook_logs_webhook_id_fkey".into(),
            table: "webhook_logs".into(),
            columns: vec!["tenant_id".into(), "webhook_id".into()],
            ref_table: "webhooks".into(),
            ref_columns: vec!["tenant_id".into(), "id".into()],
        });
        c.set_keys(&fks, &keys);
        c
    }

    pub fn planned<'c>(c: &'c Catalog, table: &str, query: &str) -> Result<ReadPlan<'c>, ApiError> {
        let qp = parse_query(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        plan(c, c.table(table).unwrap(), &qp, &c.table(table).unwrap().ident)
    }

    #[test]
    fn embeds_resolve_relationships_and_expand_stars() {
        let c = catalog();
        let p = planned(&c, "campaigns", "select=*,message_templates(*),grp:groups(name,contacts(*))").unwrap();
        assert_eq!(p.output_names(), ["id", "tenant_id", "name", "group_id", "template_id", "deleted_at", "message_templates", "grp"]);
        let grp = &p.embeds[1];
        assert!(grp.rel.is_to_one());
        assert_eq!(grp.node.output_names(), ["name", "contacts"]);
        let contacts = &grp.node.embeds[0];
        assert!(!contacts.rel.is_to_one());
        assert_eq!(contacts.junction.unwrap().name, "group_contacts");
        assert_ne!(grp.node.qual, contacts.node.qual, "every table read has its own alias");
    }

    #[test]
    fn embedded_parameters_land_on_their_node() {
        let c = catalog();
        let p = planned(&c, "groups", "select=name,people:contacts(*)&people.first_name=eq.Ann&people.order=first_name&people.limit=2")
            .unwrap();
        let n = &p.embeds[0].node;
        assert_eq!((n.filters.len(), n.order.len(), n.limit), (1, 1, Some(2)));
        let p = planned(&c, "groups", "select=name,contacts(*)&order=name.desc").unwrap();
        assert_eq!((p.order.len(), p.embeds[0].node.order.len()), (1, 0), "the root keeps its own order");
        let e = planned(&c, "groups", "select=name,contacts(*)&people.limit=2").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (400, "PGRST108"));
    }

    #[test]
    fn null_filters_on_embeds_become_join_conditions() {
        let c = catalog();
        let p = planned(&c, "campaigns", "select=*,groups(*)&groups=not.is.null&name=is.null").unwrap();
        assert_eq!(p.filters.len(), 1, "the column filter stays");
        assert_eq!(p.embeds[0].null_filter, Some(false));
        assert!(p.embeds[0].filters_parent());
        let p = planned(&c, "campaigns", "select=*,groups(*)&groups=is.null").unwrap();
        assert_eq!(p.embeds[0].null_filter, Some(true));
    }

    #[test]
    fn count_inside_an_embed_and_spreads() {
        let c = catalog();
        let p = planned(&c, "groups", "select=name,contacts(count),...campaigns(*)").unwrap();
        assert!(p.embeds[0].node.has_aggregates());
        assert_eq!(p.embeds[0].node.output_names(), ["count"]);
        let p = planned(&c, "campaigns", "select=name,...groups(group_name:name)").unwrap();
        assert_eq!(p.output_names(), ["name", "group_name"]);
    }

    #[test]
    fn bad_embeds_are_4xx() {
        let c = catalog();
        let code = |t: &str, q: &str| {
            let e = planned(&c, t, q).unwrap_err();
            (e.status.as_u16(), e.code)
        };
        assert_eq!(code("campaigns", "select=*,nope(*)"), (400, "PGRST200".into()));
        assert_eq!(code("campaigns", "select=*,groups!nope(*)"), (400, "PGRST200".into()));
        assert_eq!(code("contacts", "select=*,webhooks(*)"), (400, "PGRST200".into()));
        assert_eq!(code("webhook_logs", "select=*,webhooks(secret)").0, 403);
        assert_eq!(code("webhook_logs", "select=*,webhooks(secret.max())").0, 403);
        assert_eq!(code("campaigns", "select=*,groups(nope)").0, 400);
        assert_eq!(code("campaigns", "select=*,groups(*),groups(*)").0, 400);
        assert_eq!(code("campaigns", "select=groups(name::regclass)").0, 400);
        assert!(planned(&c, "campaigns", "select=*,g1:groups(*),g2:groups(*)").is_ok());
        assert_eq!(code("groups", "select=*,contacts(*)&order=contacts(first_name)"), (400, "PGRST118".into()));
        assert_eq!(code("campaigns", "select=*&order=groups(name)"), (400, "PGRST108".into()));
        assert_eq!(code("campaigns", "select=*,g:groups(*)&order=groups(name)"), (400, "PGRST108".into()));
        assert_eq!(code("campaigns", "select=*,groups(*)&order=groups(nope)").0, 400);
        assert_eq!(code("webhook_logs", "select=*,webhooks(url)&order=webhooks(secret)").0, 403);
        assert!(planned(&c, "campaigns", "select=*,g:groups(*)&order=g(name).desc").is_ok());
        assert!(planned(&c, "webhook_logs", "select=*,webhooks(*)").unwrap().embeds[0].node.output_names().iter().all(|n| n != "secret"));
    }
}

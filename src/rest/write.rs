//! SQL text for writes: INSERT (many rows from one JSON parameter, optional upsert), UPDATE
//! from one JSON object, DELETE (a soft delete — `deleted_at = now()` — on tables that have
//! a `deleted_at` column). The JSON body is `$1`, converted by PostgreSQL
//! (`json_to_recordset`) into the columns' own types.

use std::fmt::Write;

use super::catalog::{Column, Table};
use super::errors;
use super::ident::quote_literal;
use super::plan::ReadPlan;
use super::query::{Column as ColName, Filter, SelectItem};
use super::sql::{BodyShape, Param, Params, plan_returning_sql, select_sql, where_sql};
use crate::error::ApiError;

/// What comes back: nothing (`return=minimal`, executed without RETURNING), or rows shaped
/// by `select=` as `(row count, JSON array text)`.
#[derive(Clone, Copy)]
pub enum Returning<'a> {
    Minimal,
    Rows { select: Option<&'a [SelectItem]>, shape: BodyShape, plan: Option<&'a ReadPlan<'a>> },
}

/// `ON CONFLICT (target) DO UPDATE SET …` or `DO NOTHING`.
pub struct Conflict<'a> {
    pub target: Vec<&'a Column>,
    pub merge: bool,
}

pub struct InsertSql<'a> {
    pub table: &'a Table,
    /// The payload's columns, in catalog order.
    pub columns: Vec<&'a Column>,
    /// `Prefer: missing=default`: a key absent from a row takes the column default.
    pub missing_default: bool,
    /// `tenant_id` absent from the payload: fill it from the request context.
    pub fill_tenant: Option<&'a Column>,
    pub conflict: Option<Conflict<'a>>,
    pub returning: Returning<'a>,
}

/// Resolves payload keys (or `columns=`) to columns in catalog order; unknown → 400.
pub fn payload_columns<'t>(table: &'t Table, keys: &[String], columns_param: Option<&[ColName]>) -> Result<Vec<&'t Column>, ApiError> {
    let names: Vec<&str> = match columns_param {
        Some(list) => list.iter().map(ColName::as_str).collect(),
        None => keys.iter().map(String::as_str).collect(),
    };
    let mut cols = Vec::with_capacity(names.len());
    for name in names {
        let col = table.column(name).ok_or_else(|| errors::unknown_body_key(&table.name, name))?;
        if !cols.iter().any(|c: &&Column| c.name == col.name) {
            cols.push(col);
        }
    }
    cols.sort_by_key(|c| table.position(&c.name));
    Ok(cols)
}

/// `"a" type, "b" type` for `json_to_record(…) AS pgrst_body(…)`.
fn record_definition(cols: &[&Column]) -> String {
    cols.iter().map(|c| format!("{} {}", c.ident, c.type_sql)).collect::<Vec<_>>().join(", ")
}

/// `RETURNING` every readable column, then `(count, JSON)` over them shaped by `select=`.
fn wrap_returning(
    table: &Table,
    statement: String,
    select: Option<&[SelectItem]>,
    shape: BodyShape,
    params: &mut Params,
) -> Result<String, ApiError> {
    let returned: Vec<String> = table.selectable().map(|c| format!("{}.{}", table.ident, c.ident)).collect();
    if returned.is_empty() {
        return Err(errors::table_forbidden(&table.name, "read"));
    }
    let select = select_sql(table, "pgrst_source", select, params)?;
    Ok(format!(
        "WITH pgrst_source AS ({statement} RETURNING {}) SELECT count(*), {} FROM (SELECT {select} FROM pgrst_source) pgrst_s",
        returned.join(", "),
        shape.agg()
    ))
}

fn finish(table: &Table, statement: String, returning: Returning<'_>, params: &mut Params) -> Result<String, ApiError> {
    match returning {
        Returning::Minimal => Ok(statement),
        // embeds and aggregates: the read planner shapes the returned rows (hook, see `sql::plan`)
        Returning::Rows { shape, plan: Some(plan), .. } => {
            let returned: Vec<String> = table.selectable().map(|c| format!("{}.{}", table.ident, c.ident)).collect();
            let with = format!("WITH pgrst_source AS ({statement} RETURNING {})", returned.join(", "));
            plan_returning_sql(plan, &with, params, shape)
        }
        Returning::Rows { select, shape, plan: None } => wrap_returning(table, statement, select, shape, params),
    }
}

impl InsertSql<'_> {
    /// `$1` is the JSON array of rows (already in `params`).
    pub fn build(&self, params: &mut Params) -> Result<String, ApiError> {
        let t = self.table;
        let mut targets: Vec<&str> = self.columns.iter().map(|c| c.ident.as_str()).collect();
        let mut values: Vec<String> = self.columns.iter().map(|c| self.value(c)).collect();
        if let Some(tenant) = self.fill_tenant {
            targets.push(&tenant.ident);
            values.push("app.current_tenant_id()".into());
        }
        let source = match (self.columns.is_empty(), self.missing_default) {
            (true, _) => "json_array_elements($1::text::json) AS pgrst_e".to_string(),
            (false, false) => format!("json_to_recordset($1::text::json) AS pgrst_body({})", record_definition(&self.columns)),
            (false, true) => format!(
                "jsonb_array_elements($1::text::jsonb) AS pgrst_e CROSS JOIN LATERAL jsonb_to_record(pgrst_e) AS pgrst_body({})",
                record_definition(&self.columns)
            ),
        };
        let mut sql = match targets.is_empty() {
            true => format!("INSERT INTO {} SELECT FROM {source}", t.qualified),
            false => format!("INSERT INTO {} ({}) SELECT {} FROM {source}", t.qualified, targets.join(", "), values.join(", ")),
        };
        if let Some(conflict) = &self.conflict {
            self.on_conflict(conflict, &mut sql);
        }
        finish(t, sql, self.returning, params)
    }

    fn value(&self, c: &Column) -> String {
        match (&c.default, self.missing_default) {
            (Some(default), true) => {
                format!("CASE WHEN pgrst_e ? {} THEN pgrst_body.{} ELSE {default} END", quote_literal(&c.name), c.ident)
            }
            _ => format!("pgrst_body.{}", c.ident),
        }
    }

    fn on_conflict(&self, conflict: &Conflict<'_>, sql: &mut String) {
        let target: Vec<&str> = conflict.target.iter().map(|c| c.ident.as_str()).collect();
        let _ = write!(sql, " ON CONFLICT ({})", target.join(", "));
        let sets: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !conflict.target.iter().any(|t| t.name == c.name))
            .map(|c| format!("{0} = EXCLUDED.{0}", c.ident))
            .collect();
        match conflict.merge && !sets.is_empty() {
            true => {
                let _ = write!(sql, " DO UPDATE SET {}", sets.join(", "));
            }
            false => sql.push_str(" DO NOTHING"),
        }
    }
}

/// `UPDATE … SET … FROM json_to_record($1)`; `$1` is the JSON object.
pub fn update_sql(
    table: &Table,
    body: String,
    columns: &[&Column],
    filters: &[Filter],
    returning: Returning<'_>,
) -> Result<(String, Params), ApiError> {
    let mut params = Params::default();
    params.push(Param::Text(body));
    let filter = where_sql(table, filters, false, &mut params)?;
    let sets: Vec<String> = columns.iter().map(|c| format!("{0} = pgrst_body.{0}", c.ident)).collect();
    let sql = format!(
        "UPDATE {} SET {} FROM json_to_record($1::text::json) AS pgrst_body({}){filter}",
        table.qualified,
        sets.join(", "),
        record_definition(columns)
    );
    let sql = finish(table, sql, returning, &mut params)?;
    Ok((sql, params))
}

/// `DELETE`, or on soft-delete tables `UPDATE … SET deleted_at = now()` of live rows only.
pub fn delete_sql(table: &Table, filters: &[Filter], returning: Returning<'_>) -> Result<(String, Params), ApiError> {
    let mut params = Params::default();
    let sql = match table.soft_delete() {
        Some(col) => {
            let filter = where_sql(table, filters, true, &mut params)?;
            format!("UPDATE {} SET {} = now(){filter}", table.qualified, col.ident)
        }
        None => {
            let filter = where_sql(table, filters, false, &mut params)?;
            format!("DELETE FROM {}{filter}", table.qualified)
        }
    };
    let sql = finish(table, sql, returning, &mut params)?;
    Ok((sql, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::query::parse_query;
    use crate::rest::sql::tests::catalog;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn inserts_convert_the_json_rows_in_sql_and_fill_the_tenant() {
        let c = catalog();
        let t = c.table("things").unwrap();
        let columns = payload_columns(t, &keys(&["name", "id"]), None).unwrap();
        let sql = InsertSql {
            table: t,
            columns,
            missing_default: false,
            fill_tenant: t.column("tenant_id"),
            conflict: None,
            returning: Returning::Minimal,
        }
        .build(&mut Params::default())
        .unwrap();
        assert_eq!(
            sql,
            "INSERT INTO public.\"things\" (\"id\", \"name\", \"tenant_id\") SELECT pgrst_body.\"id\", pgrst_body.\"name\", \
             app.current_tenant_id() FROM json_to_recordset($1::text::json) AS pgrst_body(\"id\" uuid, \"name\" text)"
        );
    }

    #[test]
    fn unknown_payload_keys_are_named_in_a_400() {
        let c = catalog();
        let e = payload_columns(c.table("things").unwrap(), &keys(&["name", "bogus"]), None).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.contains("'bogus'"), "{}", e.message);
    }

    #[test]
    fn upserts_merge_every_non_target_column_and_return_rows() {
        let c = catalog();
        let t = c.table("things").unwrap();
        let sql = InsertSql {
            table: t,
            columns: payload_columns(t, &keys(&["id", "name"]), None).unwrap(),
            missing_default: false,
            fill_tenant: None,
            conflict: Some(Conflict { target: vec![t.column("id").unwrap()], merge: true }),
            returning: Returning::Rows { select: None, shape: BodyShape::default(), plan: None },
        }
        .build(&mut Params::default())
        .unwrap();
        assert!(sql.starts_with("WITH pgrst_source AS (INSERT INTO public.\"things\""), "{sql}");
        assert!(sql.contains("ON CONFLICT (\"id\") DO UPDATE SET \"name\" = EXCLUDED.\"name\" RETURNING \"things\".\"id\""), "{sql}");
        assert!(!sql.contains("\"secret\""), "unreadable columns are never returned: {sql}");
    }

    #[test]
    fn empty_payloads_insert_defaults() {
        let c = catalog();
        let t = c.table("things").unwrap();
        let insert = InsertSql {
            table: t,
            columns: vec![],
            missing_default: false,
            fill_tenant: None,
            conflict: None,
            returning: Returning::Minimal,
        };
        assert_eq!(
            insert.build(&mut Params::default()).unwrap(),
            "INSERT INTO public.\"things\" SELECT FROM json_array_elements($1::text::json) AS pgrst_e"
        );
    }

    #[test]
    fn missing_default_uses_the_catalog_default_for_absent_keys() {
        let tables = r#"[{"name":"d","comment":null,"can_select":true,"can_insert":true,"can_update":true,"can_delete":true,
            "primary_key":[],"columns":[{"name":"lang","type":"text","category":"S","base":"text","nullable":false,
            "default":"'en'::text","generated":false,"can_select":true,"can_insert":true,"can_update":true,"comment":null,
            "enum_values":null}]}]"#;
        let c = crate::rest::catalog::Catalog::from_json(tables, "[]").unwrap();
        let t = c.table("d").unwrap();
        let insert = InsertSql {
            table: t,
            columns: vec![t.column("lang").unwrap()],
            missing_default: true,
            fill_tenant: None,
            conflict: None,
            returning: Returning::Minimal,
        };
        let sql = insert.build(&mut Params::default()).unwrap();
        assert!(sql.contains("CASE WHEN pgrst_e ? 'lang' THEN pgrst_body.\"lang\" ELSE 'en'::text END"), "{sql}");
    }

    #[test]
    fn updates_take_the_body_as_the_first_parameter() {
        let c = catalog();
        let t = c.table("things").unwrap();
        let q = parse_query("id=eq.1").unwrap();
        let (sql, params) = update_sql(t, "{}".into(), &[t.column("name").unwrap()], &q.filters, Returning::Minimal).unwrap();
        assert_eq!(
            sql,
            "UPDATE public.\"things\" SET \"name\" = pgrst_body.\"name\" FROM json_to_record($1::text::json) AS pgrst_body(\"name\" text) \
             WHERE (\"things\".\"id\" = $2::text::uuid) AND \"things\".\"deleted_at\" IS NULL"
        );
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn deletes_on_soft_delete_tables_set_deleted_at_on_live_rows_only() {
        let c = catalog();
        let t = c.table("things").unwrap();
        let q = parse_query("deleted_at=is.null&id=eq.1").unwrap();
        let (sql, _) = delete_sql(t, &q.filters, Returning::Minimal).unwrap();
        assert!(sql.starts_with("UPDATE public.\"things\" SET \"deleted_at\" = now() WHERE"), "{sql}");
        assert!(sql.ends_with("AND \"things\".\"deleted_at\" IS NULL"), "{sql}");
    }
}

//! Reads: one statement giving the total, the page's row count and the JSON body.

use super::plan::{Mode, Source, node_sql};
use super::{Param, Params, order_sql, select_sql, where_sql};
use crate::error::ApiError;
use crate::grammar::filter::Filter;
use crate::rest::catalog::Table;
use crate::rest::plan::ReadPlan;
use crate::rest::query::{OrderTerm, SelectItem};

/// How the JSON body is built from the rows of `pgrst_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyShape {
    pub strip_nulls: bool,
    /// `text/csv`: a header line of the column names, then one line per row (as PostgREST).
    pub csv: bool,
}

/// CSV from the rows of `pgrst_s`: the first row's keys, then each row's record text
/// (`(a,"b c",)` without its parentheses: quoted where needed, NULL empty), as PostgREST.
const CSV_AGG: &str = "coalesce((SELECT string_agg(pgrst_k, ',') FROM json_object_keys((array_agg(row_to_json(pgrst_s)))[1]) pgrst_k), '') \
                       || chr(10) || coalesce(string_agg(substring(pgrst_s::text, 2, length(pgrst_s::text) - 2), chr(10)), '')";

impl BodyShape {
    /// `coalesce(json_agg(pgrst_s), '[]')`, optionally without null fields, or CSV.
    pub fn agg(self) -> &'static str {
        match (self.csv, self.strip_nulls) {
            (true, _) => CSV_AGG,
            (false, false) => "coalesce(json_agg(pgrst_s), '[]')::text",
            (false, true) => "json_strip_nulls(coalesce(json_agg(pgrst_s), '[]'))::text",
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
        let select = select_sql(t, &t.ident, self.select, &mut params)?;
        let filter = where_sql(t, self.filters, false, &mut params)?;
        let order = order_sql(t, self.order, &mut params)?;
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

/// A read through the planner (embeds, aggregates): one statement giving
/// `(total or NULL, page row count, JSON array text)`, as [`ReadSql`].
pub fn plan_read_sql(plan: &ReadPlan<'_>, offset: i64, limit: i64, count: bool, shape: BodyShape) -> Result<(String, Params), ApiError> {
    let mut params = Params::default();
    let rows = node_sql(plan, None, Source::Table, Mode::Rows, &mut params)?;
    let limit = params.push(Param::Int(limit));
    let offset = params.push(Param::Int(offset));
    let total = match count {
        true => format!("(SELECT count(*) FROM ({}) pgrst_c)", node_sql(plan, None, Source::Table, Mode::Count, &mut params)?),
        false => "NULL::bigint".to_string(),
    };
    let sql = format!("SELECT {total}, count(*), {} FROM ({rows} LIMIT {limit} OFFSET {offset}) pgrst_s", shape.agg());
    Ok((sql, params))
}

/// The rows a write returned (`WITH pgrst_source AS (… RETURNING …)`), shaped by the plan
/// (rooted at `pgrst_source`): `(row count, JSON array text)`. Embeds read their own tables.
pub fn plan_returning_sql(plan: &ReadPlan<'_>, with: &str, params: &mut Params, shape: BodyShape) -> Result<String, ApiError> {
    let rows = node_sql(plan, None, Source::Returned("pgrst_source"), Mode::Rows, params)?;
    Ok(format!("{with} SELECT count(*), {} FROM ({rows}) pgrst_s", shape.agg()))
}

//! `GET`/`HEAD`, `POST`, `PATCH`, `DELETE` on `/rest/{table}`: validate against the catalog,
//! build one statement, run it in the caller's tenant transaction, shape the response.

use warp::http::StatusCode;
use warp::reply::Response;

use super::body;
use super::catalog::Catalog;
use super::catalog::{Column, Table};
use super::errors;
use super::exec::{Mode, Outcome, planned_rows, read_row, run};
use super::plan::{self, ReadPlan};
use super::query::{CountPref, Prefer, QueryParams, Resolution, ReturnPref, SelectItem, TxPref};
use super::reply::{Reply, applied, range_header, read_status, single};
use super::request::{MAX_ROWS, Media, RestRequest, window};
use super::sql::{BodyShape, Param, Params, ReadSql, explain_count_sql, plan_read_sql};
use super::state::RestState;
use super::write::{Conflict, InsertSql, Returning, delete_sql, payload_columns, update_sql};
use crate::error::ApiError;

/// Refuses query parameters that make no sense for the method (rather than ignoring them).
fn refuse_params(qp: &QueryParams, method: &str, names: &[&str]) -> Result<(), ApiError> {
    let given = |n: &str| match n {
        "filters" => !qp.filters.is_empty(),
        "order" => !qp.order.is_empty(),
        "limit" => qp.limit.is_some(),
        "offset" => qp.offset.is_some(),
        "columns" => qp.columns.is_some(),
        "on_conflict" => qp.on_conflict.is_some(),
        _ => false,
    };
    match names.iter().find(|n| given(n)) {
        Some(n) => Err(errors::bad(format!("'{n}' is not supported on {method}"), format!("'{n}' n'est pas pris en charge pour {method}"))),
        None => Ok(()),
    }
}

/// `GET`/`HEAD /rest/{table}`.
pub async fn read(state: &RestState, req: &RestRequest, table: &Table, head: bool) -> Result<Response, ApiError> {
    let qp = req.query_params()?;
    refuse_params(&qp, "GET", &["columns", "on_conflict"])?;
    let (prefer, media) = (req.prefer()?, req.media()?);
    if !table.can_select {
        return Err(errors::table_forbidden(&table.name, "read"));
    }
    let (offset, limit) = window(&qp, req.range()?)?;
    // count=planned: the planner's estimate; count=estimated: exact below the row cap,
    // else the estimate (PostgREST's rule, with db-max-rows = MAX_ROWS).
    let planned = match prefer.count {
        Some(CountPref::Planned | CountPref::Estimated) => {
            let (explain, explain_params) = explain_count_sql(table, &qp.filters)?;
            Some(planned_rows(state, &req.caller, &explain, &explain_params).await?)
        }
        _ => None,
    };
    let exact = match (prefer.count, planned) {
        (Some(CountPref::Exact), _) => true,
        (Some(CountPref::Estimated), Some(p)) => p <= MAX_ROWS as i64,
        _ => false,
    };
    let shape = BodyShape { strip_nulls: media.strip_nulls, csv: media.csv };
    let (sql, params) = match plan::needed(&qp) {
        // embeds and aggregates go through the read planner
        true => {
            let catalog = state.catalog();
            let table = catalog.table(&table.name).ok_or_else(|| errors::table_not_found(&table.name))?;
            let plan = plan::plan(&catalog, table, &qp, &table.ident)?;
            plan_read_sql(&plan, offset, limit, exact, shape)?
        }
        false => {
            let read =
                ReadSql { table, select: qp.select.as_deref(), filters: &qp.filters, order: &qp.order, offset, limit, count: exact, shape };
            read.build()?
        }
    };
    let row = read_row(state, &req.caller, &sql, &params).await?;
    let (total, rows, body) = (row.total()?, row.rows()?, row.body()?);
    // An estimate never claims fewer rows than were served (no false 206/416).
    let total = total.or(planned.map(|p| p.max(offset.saturating_add(rows))));
    let (status, content_range) = match read_status(offset, rows, total) {
        Ok(s) => s,
        Err(response) => return Ok(response),
    };
    // The body is copied once out of the row's buffer: the object alone when one is asked for.
    let body = if media.singular { single(body, rows)? } else { body.to_string() };
    let reply = Reply {
        status: if media.singular { StatusCode::OK } else { status },
        body: (!head).then_some(body),
        singular: media.singular,
        csv: media.csv,
        content_range: Some(content_range),
        applied: applied(&prefer, false),
    };
    Ok(reply.into_response())
}

fn returning<'a>(prefer: &Prefer, qp: &'a QueryParams, media: Media, plan: Option<&'a ReadPlan<'a>>) -> Returning<'a> {
    match prefer.return_pref {
        Some(ReturnPref::Representation) => {
            Returning::Rows { select: qp.select.as_deref(), shape: BodyShape { strip_nulls: media.strip_nulls, csv: media.csv }, plan }
        }
        _ => Returning::Minimal,
    }
}

/// The plan shaping `return=representation` when `select=` embeds or aggregates.
fn returning_plan<'c>(catalog: &'c Catalog, table: &Table, qp: &QueryParams, prefer: &Prefer) -> Result<Option<ReadPlan<'c>>, ApiError> {
    if prefer.return_pref != Some(ReturnPref::Representation) || !plan::needed(qp) {
        return Ok(None);
    }
    let table = catalog.table(&table.name).ok_or_else(|| errors::table_not_found(&table.name))?;
    // filters and windows belong to the write; the rows shown are the ones written
    let shown = QueryParams { select: qp.select.clone(), embedded: qp.embedded.clone(), ..QueryParams::default() };
    plan::plan(catalog, table, &shown, "pgrst_source").map(Some)
}

/// Refuses the result — the transaction then rolls back — when a single object was asked
/// for and the write touched ≠ 1 row, or when it touched more than `Prefer: max-affected`.
fn write_check(media: Media, max_affected: Option<u64>) -> impl FnOnce(&Outcome) -> Result<(), ApiError> {
    move |outcome| {
        let rows = match outcome {
            Outcome::Row(r) => r.get::<_, i64>(0),
            Outcome::Count(n) => *n as i64,
        };
        if media.singular && rows != 1 {
            return Err(errors::not_singular(rows));
        }
        match max_affected {
            Some(max) if rows as u64 > max => Err(errors::too_many_affected(rows, max)),
            _ => Ok(()),
        }
    }
}

/// The response of a write: rows (representation) or none (minimal).
fn write_reply(outcome: &Outcome, ret: Returning<'_>, prefer: &Prefer, media: Media, created: bool) -> Result<Response, ApiError> {
    let (rows, body) = match (ret, outcome) {
        (Returning::Rows { .. }, Outcome::Row(row)) => (row.get::<_, i64>(0), Some(row.get::<_, String>(1))),
        (_, other) => (other.count() as i64, None),
    };
    let total = prefer.count.map(|_| rows);
    let body = match (body, media.singular) {
        (Some(b), true) => Some(single(&b, rows)?),
        (b, _) => b,
    };
    let status = match (created, body.is_some()) {
        (true, _) => StatusCode::CREATED,
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::NO_CONTENT,
    };
    let content_range = Some(range_header(0, rows, total));
    Ok(Reply { status, body, singular: media.singular, csv: media.csv, content_range, applied: applied(prefer, true) }.into_response())
}

fn check_writable(table: &Table, columns: &[&Column], insert: bool) -> Result<(), ApiError> {
    for c in columns {
        let allowed = if insert { c.can_insert } else { c.can_update };
        if !allowed {
            return Err(errors::column_forbidden(&table.name, &c.name, "write"));
        }
    }
    Ok(())
}

/// `ON CONFLICT` target: `on_conflict=` columns, else the primary key.
fn conflict<'t>(table: &'t Table, qp: &QueryParams, prefer: &Prefer) -> Result<Option<Conflict<'t>>, ApiError> {
    let Some(resolution) = prefer.resolution else { return Ok(None) };
    let names: Vec<&str> = match &qp.on_conflict {
        Some(cols) => cols.iter().map(|c| c.as_str()).collect(),
        None => table.primary_key.iter().map(String::as_str).collect(),
    };
    if names.is_empty() {
        return Err(errors::bad(
            format!("table {} has no primary key: name the conflict columns with on_conflict=", table.name),
            format!("la table {} n'a pas de clé primaire : indiquez les colonnes avec on_conflict=", table.name),
        ));
    }
    let target = names.iter().map(|n| table.column(n).ok_or_else(|| errors::column_not_found(&table.name, n))).collect::<Result<_, _>>()?;
    Ok(Some(Conflict { target, merge: resolution == Resolution::MergeDuplicates }))
}

/// `POST /rest/{table}`: one object or an array of objects; upsert with `resolution=`.
pub async fn create(state: &RestState, req: &RestRequest, table: &Table) -> Result<Response, ApiError> {
    let qp = req.query_params()?;
    refuse_params(&qp, "POST", &["filters", "order", "limit", "offset"])?;
    let (prefer, media) = (req.prefer()?, req.media()?);
    if !table.can_insert {
        return Err(errors::table_forbidden(&table.name, "insert into"));
    }
    let rows = body::insert_rows(&req.body, qp.columns.is_some())?;
    let columns = payload_columns(table, &rows.keys, qp.columns.as_deref())?;
    check_writable(table, &columns, true)?;
    let catalog = state.catalog();
    let plan = returning_plan(&catalog, table, &qp, &prefer)?;
    // return=headers-only: the primary key is returned, only to build `Location`.
    let key_select: Vec<SelectItem> = table.primary_key.iter().map(|k| SelectItem::column(k)).collect();
    let headers_only = prefer.return_pref == Some(ReturnPref::HeadersOnly)
        && !key_select.is_empty()
        && table.primary_key.iter().all(|k| table.column(k).is_some_and(|c| c.can_select));
    let ret = match headers_only {
        true => Returning::Rows { select: Some(&key_select), shape: BodyShape::default(), plan: None },
        false => returning(&prefer, &qp, media, plan.as_ref()),
    };
    if rows.count == 0 {
        return nothing_written(&prefer, media, ret, true);
    }
    let fill_tenant = table
        .column("tenant_id")
        .filter(|t| t.can_insert && t.default.is_none() && !columns.iter().any(|c| c.name == t.name) && qp.columns.is_none());
    let insert = InsertSql {
        table,
        columns,
        missing_default: prefer.missing == Some(super::query::MissingPref::Default),
        fill_tenant,
        conflict: conflict(table, &qp, &prefer)?,
        returning: ret,
    };
    let mut params = Params::default();
    params.push(Param::Text(rows.json));
    let sql = insert.build(&mut params)?;
    let mode = if matches!(ret, Returning::Minimal) { Mode::Count } else { Mode::Row };
    let outcome = run(state, &req.caller, &sql, &params, mode, prefer.tx != Some(TxPref::Rollback), write_check(media, None)).await?;
    if headers_only {
        return headers_only_reply(&outcome, table, &prefer);
    }
    write_reply(&outcome, ret, &prefer, media, true)
}

/// 201 without a body; `Location: /table?pk=eq.value` when one row was created (PostgREST).
fn headers_only_reply(outcome: &Outcome, table: &Table, prefer: &Prefer) -> Result<Response, ApiError> {
    let row = outcome.row()?;
    let (rows, body): (i64, String) = (row.get(0), row.get(1));
    let content_range = Some(range_header(0, rows, prefer.count.map(|_| rows)));
    let reply =
        Reply { status: StatusCode::CREATED, body: None, singular: false, csv: false, content_range, applied: applied(prefer, true) };
    let mut response = reply.into_response();
    let keys: serde_json::Value = serde_json::from_str(&body).map_err(|e| ApiError::internal(&e))?;
    if let (1, Some(key)) = (rows, keys.get(0)) {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for k in &table.primary_key {
            let v = match &key[k.as_str()] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            query.append_pair(k, &format!("eq.{v}"));
        }
        let location = format!("/{}?{}", table.name, query.finish());
        if let Ok(v) = warp::http::HeaderValue::from_str(&location) {
            response.headers_mut().insert("location", v);
        }
    }
    Ok(response)
}

/// The answer when the body holds nothing to write (`[]`, or `{}` for PATCH): no statement.
fn nothing_written(prefer: &Prefer, media: Media, ret: Returning<'_>, created: bool) -> Result<Response, ApiError> {
    if media.singular {
        return Err(errors::not_singular(0));
    }
    let body = matches!(ret, Returning::Rows { .. }).then(|| "[]".to_string());
    let status = match (created, body.is_some()) {
        (true, _) => StatusCode::CREATED,
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::NO_CONTENT,
    };
    let content_range = Some(range_header(0, 0, prefer.count.map(|_| 0)));
    Ok(Reply { status, body, singular: false, csv: false, content_range, applied: applied(prefer, true) }.into_response())
}

fn require_filter(qp: &QueryParams, method: &str) -> Result<(), ApiError> {
    match qp.filters.is_empty() {
        true => Err(errors::requires_where(method)),
        false => Ok(()),
    }
}

/// `PATCH /rest/{table}?filters`: one object; soft-deleted rows are left alone.
pub async fn update(state: &RestState, req: &RestRequest, table: &Table) -> Result<Response, ApiError> {
    let qp = req.query_params()?;
    require_filter(&qp, "PATCH")?;
    refuse_params(&qp, "PATCH", &["order", "limit", "offset", "on_conflict"])?;
    let (prefer, media) = (req.prefer()?, req.media()?);
    if !table.can_update {
        return Err(errors::table_forbidden(&table.name, "update"));
    }
    let (text, keys) = body::update_object(&req.body)?;
    let columns = payload_columns(table, &keys, qp.columns.as_deref())?;
    check_writable(table, &columns, false)?;
    let catalog = state.catalog();
    let plan = returning_plan(&catalog, table, &qp, &prefer)?;
    let ret = returning(&prefer, &qp, media, plan.as_ref());
    if columns.is_empty() {
        return nothing_written(&prefer, media, ret, false);
    }
    let (sql, params) = update_sql(table, text, &columns, &qp.filters, ret)?;
    let mode = if matches!(ret, Returning::Minimal) { Mode::Count } else { Mode::Row };
    let outcome =
        run(state, &req.caller, &sql, &params, mode, prefer.tx != Some(TxPref::Rollback), write_check(media, prefer.max_affected)).await?;
    write_reply(&outcome, ret, &prefer, media, false)
}

/// `DELETE /rest/{table}?filters`: a soft delete on tables with `deleted_at`.
pub async fn delete(state: &RestState, req: &RestRequest, table: &Table) -> Result<Response, ApiError> {
    let qp = req.query_params()?;
    require_filter(&qp, "DELETE")?;
    refuse_params(&qp, "DELETE", &["order", "limit", "offset", "on_conflict", "columns"])?;
    let (prefer, media) = (req.prefer()?, req.media()?);
    let allowed = match table.soft_delete() {
        Some(col) => col.can_update,
        None => table.can_delete,
    };
    if !allowed {
        return Err(errors::table_forbidden(&table.name, "delete from"));
    }
    let catalog = state.catalog();
    let plan = returning_plan(&catalog, table, &qp, &prefer)?;
    let ret = returning(&prefer, &qp, media, plan.as_ref());
    let (sql, params) = delete_sql(table, &qp.filters, ret)?;
    let mode = if matches!(ret, Returning::Minimal) { Mode::Count } else { Mode::Row };
    let outcome =
        run(state, &req.caller, &sql, &params, mode, prefer.tx != Some(TxPref::Rollback), write_check(media, prefer.max_affected)).await?;
    write_reply(&outcome, ret, &prefer, media, false)
}

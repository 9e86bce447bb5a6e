//! `POST /rest/rpc/{function}` with a JSON object of named arguments. The arguments reach the
//! function through `json_to_record($1)` typed with the catalog's argument types, and are
//! passed by name (`arg => value`), so omitted arguments take their defaults.

use serde_json::Value;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::body::parse_json;
use super::catalog::{Arg, Function, Returns, Table};
use super::errors;
use super::exec::{Mode, run};
use super::query::TxPref;
use super::query::{Prefer, QueryParams, RESERVED_PARAMS, parse_query};
use super::reply::{Reply, applied, read_status, single};
use super::request::{Media, RestRequest, window};
use super::sql::{BodyShape, Param, Params, filter_sql, order_sql_on, select_sql};
use super::state::RestState;
use crate::error::ApiError;

/// The overload whose arguments fit the given keys: every key known, every argument
/// without a default given.
fn pick<'f>(overloads: &'f [Function], keys: &[&str]) -> Result<(&'f Function, Vec<&'f Arg>), ApiError> {
    for f in overloads {
        let known = keys.iter().all(|k| f.args.iter().any(|a| a.name == *k));
        let complete = f.args.iter().all(|a| a.has_default || keys.contains(&a.name.as_str()));
        if known && complete {
            return Ok((f, f.args.iter().filter(|a| keys.contains(&a.name.as_str())).collect()));
        }
    }
    let f = &overloads[0];
    let unknown = keys.iter().find(|k| !f.args.iter().any(|a| a.name == **k));
    let missing = f.args.iter().find(|a| !a.has_default && !keys.contains(&a.name.as_str()));
    let (en, fr) = match (unknown, missing) {
        (Some(k), _) => {
            (format!("function rpc.{} has no argument named '{k}'", f.name), format!("la fonction rpc.{} n'a pas d'argument '{k}'", f.name))
        }
        (_, Some(a)) => (
            format!("function rpc.{} requires the argument '{}'", f.name, a.name),
            format!("la fonction rpc.{} exige l'argument '{}'", f.name, a.name),
        ),
        _ => (
            format!("no overload of rpc.{} takes these arguments", f.name),
            format!("aucune version de rpc.{} n'accepte ces arguments", f.name),
        ),
    };
    let signature: Vec<String> = f.args.iter().map(|a| format!("{} {}", a.name, a.type_sql)).collect();
    Err(errors::function_args_not_found(&f.name, keys, en, fr).with_hint(format!("rpc.{}({})", f.name, signature.join(", "))))
}

/// The statement calling `f` with `args` (from `$1` when there are any).
pub fn call_sql(f: &Function, args: &[&Arg]) -> String {
    let named: Vec<String> = args.iter().map(|a| format!("{0} => pgrst_args.{0}", a.ident)).collect();
    let call = format!("{}({})", f.qualified, named.join(", "));
    let defs: Vec<String> = args.iter().map(|a| format!("{} {}", a.ident, a.type_sql)).collect();
    let from_args = format!("json_to_record($1::text::json) AS pgrst_args({})", defs.join(", "));
    let from = |lateral: bool| match (args.is_empty(), lateral) {
        (true, true) => format!(" FROM {call} AS pgrst_f"),
        (true, false) => String::new(),
        (false, true) => format!(" FROM {from_args} CROSS JOIN LATERAL {call} AS pgrst_f"),
        (false, false) => format!(" FROM {from_args}"),
    };
    match f.returns {
        Returns::Void => format!("SELECT {call}{}", from(false)),
        Returns::Scalar => format!("SELECT 1::bigint, to_json({call})::text{}", from(false)),
        Returns::Row => format!("SELECT 1::bigint, to_json(pgrst_f)::text{}", from(true)),
        Returns::Set => format!("SELECT count(*), coalesce(json_agg(pgrst_f), '[]')::text{}", from(true)),
    }
}

pub async fn call(state: &RestState, req: &RestRequest, name: &str) -> Result<Response, ApiError> {
    let catalog = state.catalog();
    let overloads = catalog.functions(name).ok_or_else(|| errors::function_not_found(name))?;
    let get = req.method == Method::GET || req.method == Method::HEAD;
    // GET/HEAD: query parameters named like an argument are arguments (each given once), as
    // in PostgREST; the rest (and, for POST, the whole query) shapes the results.
    let is_arg = |k: &str| overloads.iter().any(|f| f.args.iter().any(|a| a.name == k));
    let mut rest_query = Vec::new();
    let body = match get {
        true => {
            let mut map = serde_json::Map::new();
            for pair in req.query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = form_urlencoded::parse(pair.as_bytes()).next().unwrap_or_default();
                let reserved = RESERVED_PARAMS.contains(&k.as_ref()) || matches!(k.as_ref(), "or" | "and" | "not.or" | "not.and");
                if reserved || !is_arg(&k) && k.contains(['.', '-', '(']) || !is_arg(&k) && is_filter_value(&v) {
                    rest_query.push(pair);
                    continue;
                }
                if map.insert(k.to_string(), Value::String(v.into_owned())).is_some() {
                    return Err(errors::bad(
                        format!("argument '{k}' is given more than once"),
                        format!("l'argument '{k}' est donné plusieurs fois"),
                    ));
                }
            }
            Value::Object(map)
        }
        false => {
            rest_query.extend(req.query.split('&').filter(|p| !p.is_empty()));
            match req.body.iter().all(u8::is_ascii_whitespace) {
                true => Value::Object(Default::default()),
                false => parse_json(&req.body)?,
            }
        }
    };
    let qp = parse_query(&rest_query.join("&")).map_err(errors::parse_error)?;
    let media = req.media()?;
    if media.csv {
        return Err(errors::not_acceptable("text/csv"));
    }
    let prefer = req.prefer()?;
    let commit = prefer.tx != Some(TxPref::Rollback);
    let Value::Object(map) = &body else {
        return Err(errors::bad("rpc arguments must be one JSON object", "les arguments rpc doivent être un objet JSON"));
    };
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    let (f, args) = pick(overloads, &keys)?;
    if get && f.volatility == "v" {
        return Err(errors::invalid_rpc_method(req.method.as_str()).with_hint("Only STABLE or IMMUTABLE functions can be called with GET."));
    }
    let shaped = qp != QueryParams::default() || prefer.count.is_some();
    if shaped {
        let catalog = state.catalog();
        let table = match f.returns {
            Returns::Set | Returns::Row => catalog.table(f.returns_type.strip_prefix("public.").unwrap_or(&f.returns_type)),
            _ => None,
        };
        let Some(table) = table else {
            return Err(errors::bad(
                "select, filters, order, limit, offset and count apply to functions returning rows of an exposed table",
                "select, filtres, order, limit, offset et count s'appliquent aux fonctions qui renvoient des lignes d'une table exposée",
            ));
        };
        return shaped_call(state, req, f, &args, &body, table, &qp, &prefer, media, commit).await;
    }
    let sql = call_sql(f, &args);
    let mut params = Params::default();
    if !args.is_empty() {
        params.push(Param::Text(body.to_string()));
    }
    if f.returns == Returns::Void {
        run(state, &req.caller, &sql, &params, Mode::Count, commit, |_| Ok(())).await?;
        return Ok(Reply::new(StatusCode::NO_CONTENT, None).into_response());
    }
    let outcome = run(state, &req.caller, &sql, &params, Mode::Row, commit, |_| Ok(())).await?;
    let row = outcome.row()?;
    let (rows, mut text): (i64, String) = (row.get(0), row.get(1));
    let singular = media.singular && f.returns == Returns::Set;
    if singular {
        text = single(&text, rows)?;
    }
    let mut reply = Reply::new(StatusCode::OK, Some(text));
    reply.singular = singular;
    Ok(reply.into_response())
}

/// A plain value (`1`, `abc`) rather than `op.value`: for GET, an unknown key with such a
/// value is an (unknown) argument, so the caller hears PGRST202 rather than a parse error.
fn is_filter_value(v: &str) -> bool {
    v.split_once('.').is_some_and(|(op, _)| {
        let op = op.strip_prefix("not").map_or(op, |_| "not");
        op.chars().all(|c| c.is_ascii_lowercase() || c == '(' || c == ')') && !op.is_empty()
    })
}

/// A set-returning call shaped like a read: `select=`, filters, `order`, `limit`/`offset`
/// (and `Range`), `Prefer: count=exact` over the rows of `table`'s type, in one statement.
#[allow(clippy::too_many_arguments)]
async fn shaped_call(
    state: &RestState,
    req: &RestRequest,
    f: &Function,
    args: &[&Arg],
    body: &Value,
    table: &Table,
    qp: &QueryParams,
    prefer: &Prefer,
    media: Media,
    commit: bool,
) -> Result<Response, ApiError> {
    let (offset, limit) = window(qp, req.range()?)?;
    let mut params = Params::default();
    if !args.is_empty() {
        params.push(Param::Text(body.to_string())); // $1, as call_sql's FROM expects
    }
    let named: Vec<String> = args.iter().map(|a| format!("{0} => pgrst_args.{0}", a.ident)).collect();
    let call = format!("{}({})", f.qualified, named.join(", "));
    let defs: Vec<String> = args.iter().map(|a| format!("{} {}", a.ident, a.type_sql)).collect();
    let from = match args.is_empty() {
        true => format!(" FROM {call} AS pgrst_f"),
        false => format!(" FROM json_to_record($1::text::json) AS pgrst_args({}) CROSS JOIN LATERAL {call} AS pgrst_f", defs.join(", ")),
    };
    let select = select_sql(table, "pgrst_f", qp.select.as_deref(), &mut params)?;
    let mut conds = Vec::new();
    for filter in &qp.filters {
        let mut s = String::new();
        filter_sql(table, "pgrst_f", filter, &mut params, &mut s)?;
        conds.push(s);
    }
    let filter = match conds.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conds.join(" AND ")),
    };
    let order = order_sql_on(table, "pgrst_f", &qp.order, &mut params)?;
    let lim = params.push(Param::Int(limit));
    let off = params.push(Param::Int(offset));
    let total = match prefer.count.is_some() {
        true => format!("(SELECT count(*){from}{filter})"),
        false => "NULL::bigint".to_string(),
    };
    let shape = BodyShape { strip_nulls: media.strip_nulls, csv: false };
    let sql = format!(
        "SELECT {total}, count(*), {agg} FROM (SELECT {select}{from}{filter}{order} LIMIT {lim} OFFSET {off}) pgrst_s",
        agg = shape.agg()
    );
    let outcome = run(state, &req.caller, &sql, &params, Mode::Row, commit, |_| Ok(())).await?;
    let row = outcome.row()?;
    let (total, rows, text): (Option<i64>, i64, String) = (row.get(0), row.get(1), row.get(2));
    let (status, content_range) = match read_status(offset, rows, total) {
        Ok(s) => s,
        Err(response) => return Ok(response),
    };
    let (status, text) = match media.singular {
        true => (StatusCode::OK, single(&text, rows)?),
        false => (status, text),
    };
    let mut reply = Reply::new(status, (req.method != Method::HEAD).then_some(text));
    reply.singular = media.singular;
    reply.content_range = Some(content_range);
    reply.applied = applied(prefer, false);
    Ok(reply.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::catalog::Catalog;

    fn catalog() -> Catalog {
        let functions = r#"[
          {"name":"start","comment":null,"arg_names":["p_id","p_note"],"arg_modes":[],"arg_types":["uuid","text"],
           "n_defaults":1,"returns":"campaigns","returns_set":false,"returns_composite":true,"returns_void":false,"volatility":"v"},
          {"name":"count_it","comment":null,"arg_names":[],"arg_modes":[],"arg_types":[],
           "n_defaults":0,"returns":"integer","returns_set":false,"returns_composite":false,"returns_void":false,"volatility":"s"},
          {"name":"ids","comment":null,"arg_names":["n"],"arg_modes":[],"arg_types":["integer"],
           "n_defaults":0,"returns":"uuid","returns_set":true,"returns_composite":false,"returns_void":false,"volatility":"s"},
          {"name":"noop","comment":null,"arg_names":[],"arg_modes":[],"arg_types":[],
           "n_defaults":0,"returns":"void","returns_set":false,"returns_composite":false,"returns_void":true,"volatility":"v"}]"#;
        Catalog::from_json("[]", functions).unwrap()
    }

    #[test]
    fn calls_pass_arguments_by_name_from_the_json_parameter() {
        let c = catalog();
        let (f, args) = pick(c.functions("start").unwrap(), &["p_id"]).unwrap();
        assert_eq!(
            call_sql(f, &args),
            "SELECT 1::bigint, to_json(pgrst_f)::text FROM json_to_record($1::text::json) AS pgrst_args(\"p_id\" uuid) \
             CROSS JOIN LATERAL rpc.\"start\"(\"p_id\" => pgrst_args.\"p_id\") AS pgrst_f"
        );
        let (f, args) = pick(c.functions("count_it").unwrap(), &[]).unwrap();
        assert_eq!(call_sql(f, &args), "SELECT 1::bigint, to_json(rpc.\"count_it\"())::text");
        let (f, args) = pick(c.functions("ids").unwrap(), &["n"]).unwrap();
        assert!(call_sql(f, &args).starts_with("SELECT count(*), coalesce(json_agg(pgrst_f), '[]')::text FROM json_to_record"));
        let (f, args) = pick(c.functions("noop").unwrap(), &[]).unwrap();
        assert_eq!(call_sql(f, &args), "SELECT rpc.\"noop\"()");
    }

    #[test]
    fn unknown_and_missing_arguments_are_404_pgrst202_naming_them() {
        let c = catalog();
        let e = pick(c.functions("start").unwrap(), &["p_id", "bogus"]).unwrap_err();
        assert!(e.details.unwrap().contains("'bogus'"));
        let e = pick(c.functions("start").unwrap(), &["p_note"]).unwrap_err();
        assert!(e.details.as_deref().unwrap().contains("requires the argument 'p_id'"), "{:?}", e.details);
        assert_eq!((e.status.as_u16(), e.code.as_str()), (404, "PGRST202"));
    }
}

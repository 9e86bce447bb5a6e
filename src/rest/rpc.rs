//! `POST /rest/rpc/{function}` with a JSON object of named arguments. The arguments reach the
//! function through `json_to_record($1)` typed with the catalog's argument types, and are
//! passed by name (`arg => value`), so omitted arguments take their defaults.

use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;

use super::body::parse_json;
use super::catalog::{Arg, Function, Returns};
use super::errors;
use super::exec::{Mode, run};
use super::reply::{Reply, single};
use super::request::RestRequest;
use super::sql::{Param, Params};
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
    Err(errors::bad(en, fr).with_hint(format!("rpc.{}({})", f.name, signature.join(", "))))
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
    if !req.query.split('&').all(str::is_empty) {
        return Err(errors::bad(
            "query parameters are not supported on rpc calls",
            "les paramètres de requête ne sont pas pris en charge pour rpc",
        ));
    }
    let media = req.media()?;
    let body = if req.body.iter().all(u8::is_ascii_whitespace) { Value::Object(Default::default()) } else { parse_json(&req.body)? };
    let Value::Object(map) = &body else {
        return Err(errors::bad("rpc arguments must be one JSON object", "les arguments rpc doivent être un objet JSON"));
    };
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    let (f, args) = pick(overloads, &keys)?;
    let sql = call_sql(f, &args);
    let mut params = Params::default();
    if !args.is_empty() {
        params.push(Param::Text(body.to_string()));
    }
    if f.returns == Returns::Void {
        run(state, &req.caller, &sql, &params, Mode::Count, |_| Ok(())).await?;
        return Ok(Reply::new(StatusCode::NO_CONTENT, None).into_response());
    }
    let outcome = run(state, &req.caller, &sql, &params, Mode::Row, |_| Ok(())).await?;
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
    fn unknown_and_missing_arguments_are_400_naming_them() {
        let c = catalog();
        let e = pick(c.functions("start").unwrap(), &["p_id", "bogus"]).unwrap_err();
        assert!(e.message.contains("'bogus'"), "{}", e.message);
        let e = pick(c.functions("start").unwrap(), &["p_note"]).unwrap_err();
        assert!(e.message.contains("requires the argument 'p_id'"), "{}", e.message);
        assert_eq!(e.status.as_u16(), 400);
    }
}

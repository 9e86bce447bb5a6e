//! REST-specific client errors with PostgREST 13's codes, statuses and (English) messages
//! (`PGRST205` for an unknown table, …), in English and French.

use warp::http::StatusCode;

use super::query::{ErrorKind, ParseError};
use crate::error::ApiError;

/// 400/416 from the query-string, `Prefer` or `Range` parser.
pub fn parse_error(e: ParseError) -> ApiError {
    let (status, code) = match e.kind {
        ErrorKind::InvalidRange => (StatusCode::RANGE_NOT_SATISFIABLE, "PGRST103"),
        ErrorKind::InvalidPreference => (StatusCode::BAD_REQUEST, "PGRST122"),
        ErrorKind::Syntax | ErrorKind::UnsupportedFeature => (StatusCode::BAD_REQUEST, "PGRST100"),
    };
    let fr = format!("requête invalide : {}", e.message);
    let err = ApiError::new(status, code, e.message, fr);
    match e.details {
        Some(d) => err.with_details(d),
        None => err,
    }
}

/// 404: no exposed table of that name.
pub fn table_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "PGRST205",
        format!("Could not find the table 'public.{name}' in the schema cache"),
        format!("table introuvable : la table 'public.{name}' n'existe pas"),
    )
    .with_hint("GET /rest/ lists the exposed tables.")
}

/// 404: no exposed function of that name.
pub fn function_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "PGRST202",
        format!("Could not find the function rpc.{name} in the schema cache"),
        format!("fonction introuvable : la fonction 'rpc.{name}' n'existe pas"),
    )
    .with_hint("GET /rest/ lists the exposed functions.")
}

/// 404 `PGRST202`: the function exists, but no overload takes these argument names; the
/// reason (unknown or missing argument) is in `details`.
pub fn function_args_not_found(name: &str, keys: &[&str], en: String, fr: String) -> ApiError {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    let what = match sorted.is_empty() {
        true => format!("rpc.{name} without parameters"),
        false => format!("rpc.{name}({})", sorted.join(", ")),
    };
    let mut e = ApiError::new(
        StatusCode::NOT_FOUND,
        "PGRST202",
        format!("Could not find the function {what} in the schema cache"),
        format!("fonction introuvable : {what}"),
    );
    e.details = Some(en);
    e.message_fr = Some(format!("{} ({fr})", e.message_fr.unwrap_or_default()));
    e
}

/// 400: a column the table does not have (select, filter, order, columns, on_conflict).
pub fn column_not_found(table: &str, column: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "42703",
        format!("column {table}.{column} does not exist"),
        format!("la colonne {table}.{column} n'existe pas"),
    )
}

/// 400: a key of the JSON body that is not a column of the table.
pub fn unknown_body_key(table: &str, key: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "PGRST204",
        format!("Could not find the '{key}' column of '{table}' in the schema cache"),
        format!("la colonne '{key}' n'existe pas dans '{table}'"),
    )
}

/// 403: a column the serving role may not read or write.
pub fn column_forbidden(table: &str, column: &str, action: &str) -> ApiError {
    ApiError::forbidden(
        format!("permission denied to {action} column {table}.{column}"),
        format!("permission refusée sur la colonne {table}.{column}"),
    )
}

/// 403: a table the serving role may not use this way.
pub fn table_forbidden(table: &str, action: &str) -> ApiError {
    ApiError::forbidden(format!("permission denied to {action} table {table}"), format!("permission refusée sur la table {table}"))
}

/// 400 with a message of ours.
pub fn bad(en: impl Into<String>, fr: impl Into<String>) -> ApiError {
    ApiError::bad_request(en, fr)
}

/// 406: the `Accept` header names nothing we produce.
pub fn not_acceptable(accept: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "PGRST107",
        format!("None of these media types are available: {}", accept.chars().take(200).collect::<String>()),
        "aucun de ces types de média n'est disponible",
    )
    .with_hint("Use application/json, application/vnd.pgrst.object+json or text/csv.")
}

/// 406: `application/vnd.pgrst.object+json` asked for, but not exactly one row.
pub fn not_singular(rows: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        "objet JSON demandé, mais plusieurs lignes (ou aucune) trouvées",
    )
    .with_details(format!("The result contains {rows} rows"))
}

/// 400: `Prefer: max-affected=<n>` and the write touched more rows (rolled back).
pub fn too_many_affected(rows: i64, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "PGRST124",
        "Query result exceeds max-affected preference constraint",
        "le résultat dépasse la préférence max-affected",
    )
    .with_details(format!("The query affects {rows} rows"))
    .with_hint(format!("At most {max} rows may be affected."))
}

/// 413 `PGRST102` (an invalid body; PostgREST itself sets no size limit): the body is over
/// `ROWCAST_MAX_BODY_BYTES`.
pub fn body_too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PGRST102",
        format!("request body too large (limit {limit} bytes)"),
        format!("corps de requête trop volumineux (limite {limit} octets)"),
    )
}

/// Maps a database error with PostgREST's SQLSTATE table (`crate::error`); a syntax error
/// in generated SQL is a fault of ours (500, logged, nothing shown).
pub fn pg(err: tokio_postgres::Error) -> ApiError {
    match err.as_db_error() {
        Some(db) if db.code().code() == "42601" => ApiError::internal(&format_args!("42601: {}", db.message())),
        _ => ApiError::from(err),
    }
}

/// 405 `PGRST117`: a method no resource offers.
pub fn unsupported_method(method: &str, allowed: &'static str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "PGRST117",
        format!("Unsupported HTTP method: {method}"),
        format!("méthode HTTP non prise en charge : {method}"),
    )
    .with_hint(format!("Allowed: {allowed}."))
}

/// 405 `PGRST101`: a method rpc does not offer (or GET on a volatile function).
pub fn invalid_rpc_method(method: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "PGRST101",
        format!("Cannot use the {method} method on RPC"),
        format!("impossible d'utiliser la méthode {method} sur rpc"),
    )
}

/// 400 `21000`, as PostgREST with pg-safeupdate (Supabase's setup): PATCH/DELETE without a filter.
pub fn requires_where(method: &str) -> ApiError {
    let verb = if method == "PATCH" { "UPDATE" } else { "DELETE" };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "21000",
        format!("{verb} requires a WHERE clause"),
        format!("{method} exige un filtre (clause WHERE)"),
    )
    .with_hint("Add a filter such as ?id=eq.<uuid>; a request without one would change every row.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::query::parse_range;

    #[test]
    fn parse_errors_map_to_400_and_416() {
        let e = parse_error(crate::rest::query::parse_query("a=foo.1").unwrap_err());
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(parse_error(parse_range("9-1").unwrap_err()).status, StatusCode::RANGE_NOT_SATISFIABLE);
    }

    #[test]
    fn singular_errors_name_the_row_count_like_postgrest() {
        let e = not_singular(0);
        assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
        assert!(e.details.unwrap().contains("0 rows"));
    }
}

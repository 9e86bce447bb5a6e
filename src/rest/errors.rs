//! REST-specific client errors, PostgREST-shaped (`RC` + PostgREST's number where one
//! exists: `RC205` for PGRST205, …), in English and French.

use warp::http::StatusCode;

use super::query::{ErrorKind, ParseError};
use crate::error::ApiError;

/// 400/416 from the query-string, `Prefer` or `Range` parser.
pub fn parse_error(e: ParseError) -> ApiError {
    let (status, code) = match e.kind {
        ErrorKind::InvalidRange => (StatusCode::RANGE_NOT_SATISFIABLE, "RC103"),
        ErrorKind::InvalidPreference => (StatusCode::BAD_REQUEST, "RC122"),
        ErrorKind::Syntax | ErrorKind::UnsupportedFeature => (StatusCode::BAD_REQUEST, "RC100"),
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
        "RC205",
        format!("table not found: could not find the table 'public.{name}'"),
        format!("table introuvable : la table 'public.{name}' n'existe pas"),
    )
    .with_hint("GET /rest/ lists the exposed tables.")
}

/// 404: no exposed function of that name.
pub fn function_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "RC202",
        format!("function not found: could not find the function 'rpc.{name}'"),
        format!("fonction introuvable : la fonction 'rpc.{name}' n'existe pas"),
    )
    .with_hint("GET /rest/ lists the exposed functions.")
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
        "RC204",
        format!("could not find the '{key}' column of '{table}'"),
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
        "RC107",
        "none of these media types are available",
        "aucun de ces types de média n'est disponible",
    )
    .with_details(accept.chars().take(200).collect::<String>())
    .with_hint("Use application/json or application/vnd.pgrst.object+json.")
}

/// 406: `application/vnd.pgrst.object+json` asked for, but not exactly one row.
pub fn not_singular(rows: i64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "RC116",
        "JSON object requested, multiple (or no) rows returned",
        "objet JSON demandé, mais plusieurs lignes (ou aucune) trouvées",
    )
    .with_details(format!("The result contains {rows} rows"))
}

/// 400: `Prefer: max-affected=<n>` and the write touched more rows (rolled back).
pub fn too_many_affected(rows: i64, max: u64) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "RC124",
        "query result exceeds max-affected preference constraint",
        "le résultat dépasse la préférence max-affected",
    )
    .with_details(format!("The query affects {rows} rows, more than the {max} allowed"))
}

/// 413: the body is over `ROWCAST_MAX_BODY_BYTES`.
pub fn body_too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RC413",
        format!("request body too large (limit {limit} bytes)"),
        format!("corps de requête trop volumineux (limite {limit} octets)"),
    )
}

/// Maps a database error: the shared SQLSTATE map, plus the class-42 errors a client's
/// input can cause (wrong operator for a type, no unique key for `on_conflict`, …) as 400.
pub fn pg(err: tokio_postgres::Error) -> ApiError {
    let Some(db) = err.as_db_error() else { return ApiError::from(err) };
    let code = db.code().code();
    let status = match code {
        "42501" => return ApiError::from(err),
        // A table or function dropped since the catalog was read.
        "42P01" => StatusCode::NOT_FOUND,
        "42883" if db.message().starts_with("function") => StatusCode::NOT_FOUND,
        "42601" => return ApiError::internal(&format_args!("{code}: {}", db.message())),
        c if c.starts_with("42") || c.starts_with("0A") => StatusCode::BAD_REQUEST,
        _ => return ApiError::from(err),
    };
    let mut e = ApiError::new(status, code, db.message(), format!("requête refusée : {}", db.message()));
    e.details = db.detail().map(str::to_string);
    e.hint = db.hint().map(str::to_string);
    e
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

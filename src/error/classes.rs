//! SQLSTATE classes that mean "the request asked for something the database will not do",
//! answered as clear 400s (issue 14, item 8) instead of PostgREST's 500:
//! - class 21, cardinality violation: e.g. an upsert batch naming the same key twice
//!   (`ON CONFLICT DO UPDATE command cannot affect row a second time`);
//! - class 54, program limit exceeded (except `54000`, a value too large: 413): e.g. more
//!   select items than a row may hold (`54011`), a statement too complex (`54001`).
//!
//! Decided by SQLSTATE class alone, never by the text of the message (which depends on the
//! server's `lc_messages`).

use tokio_postgres::error::DbError;
use warp::http::StatusCode;

use super::ApiError;

/// The 400 for a database error of these classes, or `None`.
pub fn client_limit(db: &DbError) -> Option<ApiError> {
    let code = db.code().code();
    let hint = match code.get(..2)? {
        "21" => "Name each key once per request (an upsert batch cannot change the same row twice).",
        "54" if code != "54000" => "Ask for fewer items at once (fewer select items, a smaller batch, a simpler filter).",
        _ => return None,
    };
    let mut err = ApiError::new(StatusCode::BAD_REQUEST, code, db.message(), format!("requête refusée : {}", db.message()));
    err.details = db.detail().map(str::to_string);
    err.hint = Some(db.hint().map_or_else(|| hint.to_string(), str::to_string));
    Some(err)
}

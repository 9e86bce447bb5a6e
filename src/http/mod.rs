//! The shared ingress every feature builds on: the warp filters that turn headers into typed
//! values (request meta, principal, tenant, caller), and the two ways a handler answers
//! (`respond`, `json`). It imports no feature; routes are composed in `app`.

pub mod filters;

use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::error::ApiError;

/// Turns a handler's result into a response.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// A JSON response with a status.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    let mut response = warp::reply::json(value).into_response();
    *response.status_mut() = status;
    response
}

//! REST in the PostgREST dialect, generated from the catalog.
//!
//! `RestState::load` reads what is exposed from pg_catalog; `routes` serves `/rest`.

pub mod query;

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::app::{AppState, StartError};
use crate::db::Db;

/// What the REST layer keeps between requests.
pub struct RestState {}

impl RestState {
    pub async fn load(_db: &Db) -> Result<Self, StartError> {
        Ok(Self {})
    }
}

/// Serves `/rest/…`.
pub fn routes(_state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path("rest").and_then(|| async { Err::<Response, _>(warp::reject::not_found()) }).boxed()
}

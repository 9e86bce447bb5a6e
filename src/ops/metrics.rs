//! Prometheus metrics: one process-wide recorder (the `metrics` facade has exactly one), rendered
//! by `GET /metrics`. The per-application numbers live in `crate::stats`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle()))
}

/// Routes are labelled by their first segments only, so ids never explode cardinality.
fn route_label(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if !b.is_empty() => format!("/{a}/{b}"),
        (Some(a), _) => format!("/{a}"),
        _ => "/".into(),
    }
}

/// Distinct route labels kept before new ones are folded into `other`: paths come from
/// clients, and neither Prometheus series nor the stats registry may grow without bound.
const MAX_ROUTES: usize = 256;

fn bounded_route(path: &str, status: u16) -> String {
    static SEEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> = std::sync::LazyLock::new(Default::default);
    if status == 404 {
        return "unmatched".into();
    }
    let label = route_label(path);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen.contains(&label) || (seen.len() < MAX_ROUTES && seen.insert(label.clone())) { label } else { "other".into() }
}

/// Counts the request in Prometheus; returns its bounded route label (the stats use it too).
pub fn record_request(method: &str, path: &str, status: u16, elapsed: Duration) -> String {
    handle();
    let route = bounded_route(path, status);
    let labels = [("method", method.to_string()), ("route", route.clone()), ("status", status.to_string())];
    metrics::counter!("rowcast_http_requests_total", &labels).increment(1);
    metrics::histogram!("rowcast_http_request_duration_seconds", &labels[..2]).record(elapsed.as_secs_f64());
    route
}

pub fn record_pool(pool: &deadpool_postgres::Pool) {
    let status = pool.status();
    metrics::gauge!("rowcast_pool_size").set(status.size as f64);
    metrics::gauge!("rowcast_pool_available").set(status.available as f64);
    metrics::gauge!("rowcast_pool_waiting").set(status.waiting as f64);
    metrics::gauge!("rowcast_pool_max_size").set(status.max_size as f64);
}

#[cfg(test)]
mod tests {
    #[test]
    fn unmatched_and_excess_routes_are_folded() {
        assert_eq!(super::bounded_route("/random-1", 404), "unmatched");
        for i in 0..(super::MAX_ROUTES + 10) {
            let _ = super::bounded_route(&format!("/rest/t{i}"), 401);
        }
        assert_eq!(super::bounded_route("/rest/one-too-many", 401), "other");
    }

    #[test]
    fn route_labels_drop_ids() {
        assert_eq!(super::route_label("/rest/contacts"), "/rest/contacts");
        assert_eq!(super::route_label("/rest/contacts/abc"), "/rest/contacts");
        assert_eq!(super::route_label("/health"), "/health");
    }
}

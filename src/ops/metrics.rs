//! Prometheus metrics: one process-wide recorder (the `metrics` facade has exactly one), rendered
//! by `GET /metrics`. The per-application numbers live in `crate::stats`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often the recorder's upkeep runs. A histogram keeps every sample recorded since its
/// last drain; a render (`GET /metrics`) drains it, and so does the upkeep, so a server nobody
/// scrapes does not grow by 8 bytes per request (~290 MB an hour at 10,000 requests/s).
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Upkeep runs completed (any application's), and a signal for each.
static UPKEEPS: AtomicU64 = AtomicU64::new(0);
static UPKEPT: Notify = Notify::const_new();

/// The recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle()))
}

/// Runs the recorder's upkeep every [`UPKEEP_EVERY`] until cancelled. Each application runs
/// one on its own runtime (the recorder is process-wide; two upkeeps are harmless).
pub fn spawn_upkeep(cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    let handle = handle();
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + UPKEEP_EVERY, UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => {}
            }
            handle.run_upkeep();
            UPKEEPS.fetch_add(1, Ordering::Release);
            UPKEPT.notify_waiters();
        }
    })
}

/// Waits until `runs` more upkeeps have completed, at most `bound`; whether they did.
#[cfg(test)]
async fn await_upkeeps(runs: u64, bound: Duration) -> bool {
    let target = UPKEEPS.load(Ordering::Acquire) + runs;
    tokio::time::timeout(bound, async {
        loop {
            let upkept = UPKEPT.notified();
            if UPKEEPS.load(Ordering::Acquire) >= target {
                return;
            }
            upkept.await;
        }
    })
    .await
    .is_ok()
}

/// Routes are labelled by their first segments only, so ids never explode cardinality. The
/// label is a slice of the path when the path is already in that form (the usual case).
fn route_label(path: &str) -> Cow<'_, str> {
    let trimmed = path.trim_start_matches('/');
    let mut parts = trimmed.splitn(3, '/');
    let len = match (parts.next(), parts.next()) {
        (Some(a), Some(b)) if !b.is_empty() => a.len() + 1 + b.len(),
        (Some(a), _) => a.len(),
        _ => 0,
    };
    match path.len() - trimmed.len() {
        1 => Cow::Borrowed(&path[..=len]),
        _ => Cow::Owned(format!("/{}", &trimmed[..len])),
    }
}

/// Distinct route labels kept before new ones are folded into `other`: paths come from
/// clients, and neither Prometheus series nor the stats registry may grow without bound.
const MAX_ROUTES: usize = 256;

/// Series per route label (method × status) before unseen methods are folded into `other`.
const MAX_SERIES_PER_ROUTE: usize = 64;

/// One route label and its series, registered with the recorder once.
struct Route {
    label: Arc<str>,
    series: Vec<(String, u16, Counter, Histogram)>,
}

impl Route {
    fn new(label: &str) -> Self {
        Route { label: Arc::from(label), series: Vec::new() }
    }

    /// The series of `method` and `status`. Past [`MAX_SERIES_PER_ROUTE`], a method the route
    /// has not seen counts as `other` (methods are the client's to choose; statuses are ours).
    fn series(&mut self, method: &str, status: u16) -> (Counter, Histogram) {
        let label = &self.label;
        let (_, _, counter, histogram) = bounded_entry(
            &mut self.series,
            MAX_SERIES_PER_ROUTE,
            method,
            |(m, s, _, _), name| *s == status && m == name,
            |name| {
                handle();
                let labels = [("method", name.to_string()), ("route", label.to_string()), ("status", status.to_string())];
                let counter = metrics::counter!("rowcast_http_requests_total", &labels);
                let histogram = metrics::histogram!("rowcast_http_request_duration_seconds", &labels[..2]);
                (name.to_string(), status, counter, histogram)
            },
        );
        (counter.clone(), histogram.clone())
    }
}

/// The entry of `list` that `is` `name`, added by `new` if there is none; once `list` holds
/// `max` entries, a name it has not seen is taken as `other` (added past `max` if need be).
/// Labels that come from clients stay bounded this way (here and in `crate::stats`).
pub(crate) fn bounded_entry<'l, T>(
    list: &'l mut Vec<T>,
    max: usize,
    name: &str,
    is: impl Fn(&T, &str) -> bool,
    new: impl FnOnce(&str) -> T,
) -> &'l mut T {
    let at = match list.iter().position(|e| is(e, name)) {
        Some(at) => Some(at),
        None if list.len() >= max => list.iter().position(|e| is(e, "other")),
        None => None,
    };
    let at = at.unwrap_or_else(|| {
        list.push(new(if list.len() >= max { "other" } else { name }));
        list.len() - 1
    });
    &mut list[at]
}

fn bounded_route<'r>(routes: &'r mut HashMap<String, Route>, path: &str, status: u16) -> &'r mut Route {
    let label = if status == 404 { Cow::Borrowed("unmatched") } else { route_label(path) };
    let label = if routes.contains_key(&*label) || routes.len() < MAX_ROUTES { label } else { Cow::Borrowed("other") };
    if !routes.contains_key(&*label) {
        routes.insert(label.to_string(), Route::new(&label));
    }
    routes.get_mut(&*label).expect("inserted above")
}

/// Counts the request in Prometheus; returns its bounded route label (the stats use it too).
pub fn record_request(method: &str, path: &str, status: u16, elapsed: Duration) -> Arc<str> {
    static ROUTES: LazyLock<Mutex<HashMap<String, Route>>> = LazyLock::new(Default::default);
    let (label, (counter, histogram)) = {
        let mut routes = ROUTES.lock().unwrap_or_else(|p| p.into_inner());
        let route = bounded_route(&mut routes, path, status);
        (route.label.clone(), route.series(method, status))
    };
    counter.increment(1);
    histogram.record(elapsed.as_secs_f64());
    label
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
    use std::collections::HashMap;
    use std::time::Duration;

    #[test]
    fn unmatched_and_excess_routes_are_folded() {
        let mut routes = HashMap::new();
        assert_eq!(&*super::bounded_route(&mut routes, "/random-1", 404).label, "unmatched");
        for i in 0..(super::MAX_ROUTES + 10) {
            let _ = super::bounded_route(&mut routes, &format!("/rest/t{i}"), 401);
        }
        assert_eq!(&*super::bounded_route(&mut routes, "/rest/one-too-many", 401).label, "other");
        assert_eq!(&*super::bounded_route(&mut routes, "/rest/t1/abc", 200).label, "/rest/t1");
        assert!(routes.len() <= super::MAX_ROUTES + 1);
    }

    #[test]
    fn route_labels_drop_ids() {
        for (path, label) in [
            ("/rest/contacts", "/rest/contacts"),
            ("/rest/contacts/abc", "/rest/contacts"),
            ("/health", "/health"),
            ("//rest/contacts/x", "/rest/contacts"),
            ("/rest//contacts", "/rest"),
            ("/", "/"),
            ("", "/"),
            ("/é/ü/x", "/é/ü"),
        ] {
            assert_eq!(super::route_label(path), label, "{path}");
        }
    }

    #[test]
    fn a_route_keeps_a_bounded_number_of_series() {
        let mut route = super::Route::new("/rest/bounded");
        for i in 0..(super::MAX_SERIES_PER_ROUTE + 10) {
            let _ = route.series(&format!("M{i}"), 200);
        }
        let _ = route.series("M0", 200);
        let _ = route.series("M0", 500);
        let methods: Vec<_> = route.series.iter().map(|(m, s, _, _)| format!("{m} {s}")).collect();
        assert_eq!(methods.len(), super::MAX_SERIES_PER_ROUTE + 2, "{methods:?}");
        assert!(methods.contains(&"other 200".to_string()) && methods.contains(&"other 500".to_string()), "{methods:?}");
    }

    /// Histogram samples are drained by the recorder's upkeep, not only by a scrape; the
    /// upkeep stops with its application.
    #[tokio::test]
    async fn the_recorder_is_upkept_without_a_scrape_until_cancelled() {
        super::record_request("GET", "/rest/upkept", 200, Duration::from_millis(1));
        let cancel = tokio_util::sync::CancellationToken::new();
        let upkeep = super::spawn_upkeep(cancel.clone());
        assert!(super::await_upkeeps(2, super::UPKEEP_EVERY * 10).await, "no upkeep ran");
        cancel.cancel();
        tokio::time::timeout(super::UPKEEP_EVERY * 5, upkeep).await.expect("the upkeep stops when cancelled").expect("no panic");
    }
}

//! In-process request statistics for `GET /api/performance/stats`: per-route latency
//! percentiles, per-tenant transaction counts and time, the recent slow transactions.
//! Bounded memory: fixed histogram buckets per route, a capped slow list.
//!
//! Owned by the application (one [`Stats`] per `Application`, shared with its `Db`, which
//! records transactions, and with the response wrapper, which records requests), so two
//! applications in one process never mix their numbers.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

/// Upper bounds of the latency buckets, in microseconds (log scale, 50 µs … 60 s).
const BUCKETS_US: [u64; 24] = [
    50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 60_000_000,
];
const SLOW_KEPT: usize = 50;
/// Methods kept per route; further ones (methods are the client's to choose) count as `other`.
const METHODS_KEPT: usize = 16;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_US.len() + 1],
    total: u64,
    errors: u64,
    sum_us: u64,
}

impl Histogram {
    fn record(&mut self, elapsed: Duration, error: bool) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let idx = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(BUCKETS_US.len());
        self.counts[idx] += 1;
        self.total += 1;
        self.errors += u64::from(error);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// The bucket bound below which `p` of the observations fall, in milliseconds.
    fn percentile_ms(&self, p: f64) -> f64 {
        let rank = (self.total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank.max(1) {
                let bound = BUCKETS_US.get(i).copied().unwrap_or(60_000_000);
                return bound as f64 / 1000.0;
            }
        }
        0.0
    }

    fn summary(&self) -> Value {
        json!({
            "requests": self.total,
            "errors": self.errors,
            "meanMs": if self.total == 0 { 0.0 } else { self.sum_us as f64 / self.total as f64 / 1000.0 },
            "p50Ms": self.percentile_ms(0.50),
            "p95Ms": self.percentile_ms(0.95),
            "p99Ms": self.percentile_ms(0.99),
        })
    }
}

#[derive(Default)]
struct TenantStats {
    transactions: u64,
    rollbacks: u64,
    total_us: u64,
}

struct Slow {
    at: chrono::DateTime<chrono::Utc>,
    tenant: Option<Uuid>,
    role: String,
    ms: f64,
    committed: bool,
}

#[derive(Default)]
struct Registry {
    /// Per bounded route label, per method.
    routes: HashMap<String, Vec<(String, Histogram)>>,
    tenants: HashMap<Option<Uuid>, TenantStats>,
    slow: VecDeque<Slow>,
}

/// Resident memory of this process, from /proc (Linux), in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// The statistics of one application.
#[derive(Default)]
pub struct Stats {
    registry: Mutex<Registry>,
}

impl Stats {
    fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut guard = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// One response left; `route` is already a bounded label.
    pub fn record_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.with(|r| {
            if !r.routes.contains_key(route) {
                r.routes.insert(route.to_string(), Vec::new());
            }
            let methods = r.routes.get_mut(route).expect("inserted above");
            let (_, histogram) = crate::ops::metrics::bounded_entry(
                methods,
                METHODS_KEPT,
                method,
                |(m, _), name| m == name,
                |name| (name.to_string(), Histogram::default()),
            );
            histogram.record(elapsed, status >= 500);
        });
    }

    /// One request transaction ended. Slow ones are logged (never with parameters).
    pub fn record_transaction(&self, tenant: Option<Uuid>, role: &str, elapsed: Duration, committed: bool, slow_after: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slow = elapsed >= slow_after;
        if slow {
            tracing::warn!(tenant = ?tenant, role, duration_ms = us as f64 / 1000.0, committed, "slow request transaction");
            metrics::counter!("rowcast_slow_transactions_total").increment(1);
        }
        self.with(|r| {
            let t = r.tenants.entry(tenant).or_default();
            t.transactions += 1;
            t.rollbacks += u64::from(!committed);
            t.total_us = t.total_us.saturating_add(us);
            if slow {
                if r.slow.len() == SLOW_KEPT {
                    r.slow.pop_front();
                }
                r.slow.push_back(Slow { at: chrono::Utc::now(), tenant, role: role.to_string(), ms: us as f64 / 1000.0, committed });
            }
        });
    }

    /// Routes, tenants, slow transactions and process memory, for `/api/performance/stats`.
    pub fn snapshot(&self) -> Value {
        self.with(|r| {
            let mut routes: Vec<_> =
                r.routes.iter().flat_map(|(route, methods)| methods.iter().map(move |(m, h)| (format!("{m} {route}"), h))).collect();
            routes.sort_by(|a, b| a.0.cmp(&b.0));
            let routes: serde_json::Map<String, Value> = routes.into_iter().map(|(k, h)| (k, h.summary())).collect();
            let tenants: Vec<Value> = r
                .tenants
                .iter()
                .map(|(t, s)| {
                    json!({"tenantId": t, "transactions": s.transactions, "rollbacks": s.rollbacks, "totalMs": s.total_us as f64 / 1000.0})
                })
                .collect();
            let slow: Vec<Value> = r
                .slow
                .iter()
                .rev()
                .map(|s| json!({"at": s.at.to_rfc3339(), "tenantId": s.tenant, "role": s.role, "durationMs": s.ms, "committed": s.committed}))
                .collect();
            json!({
                "routes": routes,
                "tenants": tenants,
                "slowTransactions": slow,
                "process": {"residentBytes": resident_bytes()},
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_buckets() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms), false);
        }
        assert_eq!(h.total, 100);
        assert!(h.percentile_ms(0.5) >= 50.0 && h.percentile_ms(0.5) <= 100.0);
        assert!(h.percentile_ms(0.99) >= 99.0);
        assert!(h.percentile_ms(0.5) <= h.percentile_ms(0.95));
    }

    #[test]
    fn requests_are_kept_per_method_and_route_with_methods_bounded() {
        let stats = Stats::default();
        stats.record_request("GET", "/rest/contacts", 200, Duration::from_millis(1));
        stats.record_request("GET", "/rest/contacts", 500, Duration::from_millis(3));
        stats.record_request("POST", "/rest/contacts", 201, Duration::from_millis(2));
        for i in 0..(METHODS_KEPT + 5) {
            stats.record_request(&format!("X{i}"), "/rest/odd", 405, Duration::from_millis(1));
        }
        let routes = stats.snapshot()["routes"].clone();
        assert_eq!(routes["GET /rest/contacts"]["requests"], 2);
        assert_eq!(routes["GET /rest/contacts"]["errors"], 1);
        assert_eq!(routes["POST /rest/contacts"]["requests"], 1);
        let odd: Vec<_> = routes.as_object().expect("routes").keys().filter(|k| k.ends_with(" /rest/odd")).collect();
        assert_eq!(odd.len(), METHODS_KEPT + 1, "{odd:?}");
        assert_eq!(routes["other /rest/odd"]["requests"], 5);
    }
}

//! CPU time of this process's threads, split between the in-process rowcast server (its own
//! runtime, threads named [`SERVER_THREADS`]) and everything else (the load generator), from
//! `/proc/self/task/*/schedstat` (nanoseconds on CPU). The load generator shares the 2 cores,
//! so the throughput ratio alone cannot say how much of the gap is rowcast's own work: the
//! server's CPU divided by the requests it answered can.

use std::time::Duration;

/// The name of every thread of the server's runtime (workers and blocking pool).
pub const SERVER_THREADS: &str = "rowcast-srv";

/// `(server, rest of the process)` CPU time so far.
pub fn split() -> (Duration, Duration) {
    let (mut server, mut other) = (0u64, 0u64);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return (Duration::ZERO, Duration::ZERO) };
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
            .unwrap_or(0);
        match comm.trim() == SERVER_THREADS {
            true => server += ns,
            false => other += ns,
        }
    }
    (Duration::from_nanos(server), Duration::from_nanos(other))
}

/// CPU per request over an interval: `(server µs, load generator µs)`.
pub struct PerRequest {
    pub server_us: f64,
    pub client_us: f64,
}

/// Measures [`split`] around `work`, which returns its figures; `requests` reads the count.
pub async fn measure<T>(work: impl std::future::Future<Output = T>, requests: impl Fn(&T, Duration) -> f64) -> (T, PerRequest) {
    let started = std::time::Instant::now();
    let (s0, o0) = split();
    let out = work.await;
    let (s1, o1) = split();
    let n = requests(&out, started.elapsed()).max(1.0);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n;
    let cpu = PerRequest { server_us: per(s1.saturating_sub(s0)), client_us: per(o1.saturating_sub(o0)) };
    (out, cpu)
}

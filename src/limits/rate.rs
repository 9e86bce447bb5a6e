//! Per-minute request rates on governor's GCRA: `n` per minute sustained, bursts of `n / 10`
//! (at least 1); `0` switches the limit off.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// What a refused request is told: the figures behind the `RateLimit-*` and `Retry-After`
/// headers, and which limit refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: Scope,
    /// Requests the limit lets through at once (the burst): `RateLimit-Limit`.
    pub limit: u32,
    /// The sustained figure, e.g. requests per minute: `RateLimit-Policy`.
    pub per_window: u32,
    pub window: Duration,
    /// When the next request will be let through.
    pub retry_after: Duration,
}

impl Exceeded {
    /// Whole seconds, rounded up, at least 1: `Retry-After` and `RateLimit-Reset`.
    pub fn retry_after_secs(&self) -> u64 {
        let ms = self.retry_after.as_millis() as u64;
        ms.div_ceil(1000).max(1)
    }

    /// `(name, value)` of every header a 429 carries.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let secs = self.retry_after_secs().to_string();
        vec![
            ("retry-after", secs.clone()),
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", "0".into()),
            ("ratelimit-reset", secs),
            ("ratelimit-policy", format!("{};w={};burst={}", self.per_window, self.window.as_secs().max(1), self.limit)),
        ]
    }
}

/// Which limit said no (the `scope` label of `rowcast_rate_limited_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Ip,
    User,
    Tenant,
    WsConnectIp,
    WsConnectUser,
    WsSessions,
    WsFrames,
    TenantConcurrency,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::User => "user",
            Scope::Tenant => "tenant",
            Scope::WsConnectIp => "ws_connect_ip",
            Scope::WsConnectUser => "ws_connect_user",
            Scope::WsSessions => "ws_sessions",
            Scope::WsFrames => "ws_frames",
            Scope::TenantConcurrency => "tenant_concurrency",
        }
    }

    /// Counts the refusal in `rowcast_rate_limited_total{scope}`.
    pub fn count(self) {
        metrics::counter!("rowcast_rate_limited_total", "scope" => self.as_str()).increment(1);
    }
}

/// The GCRA quota of "`per_minute` per minute, bursts of a tenth"; `None` when off.
pub fn per_minute_quota(per_minute: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new((per_minute / 10).max(1)).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_minute(rate).allow_burst(burst))
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One per-minute limit applied to each key (client IP, user, tenant) separately.
pub struct KeyedRate<K: Hash + Eq + Clone> {
    scope: Scope,
    per_minute: u32,
    limiter: Option<Keyed<K>>,
}

impl<K: Hash + Eq + Clone> KeyedRate<K> {
    pub fn new(scope: Scope, per_minute: u32) -> Self {
        let limiter = per_minute_quota(per_minute).map(|q| RateLimiter::keyed(q).with_middleware::<StateInformationMiddleware>());
        Self { scope, per_minute, limiter }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one request from `key`'s allowance. Pure memory: no I/O, no await.
    pub fn check(&self, key: &K) -> Result<(), Exceeded> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        match limiter.check_key(key) {
            Ok(_) => Ok(()),
            Err(not_until) => {
                let quota = not_until.quota();
                self.scope.count();
                Err(Exceeded {
                    scope: self.scope,
                    limit: quota.burst_size().get(),
                    per_window: self.per_minute,
                    window: Duration::from_secs(60),
                    retry_after: not_until.wait_time_from(limiter.clock().now()),
                })
            }
        }
    }

    /// Forgets keys whose allowance is full again (bounded memory); returns how many remain.
    pub fn prune(&self) -> usize {
        let Some(limiter) = &self.limiter else { return 0 };
        limiter.retain_recent();
        limiter.shrink_to_fit();
        limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_a_tenth_passes_then_the_next_request_is_refused_with_its_wait() {
        let rate = KeyedRate::new(Scope::User, 600);
        for n in 0..60 {
            rate.check(&1).unwrap_or_else(|e| panic!("request {n} is within the burst of 60: {e:?}"));
        }
        let e = rate.check(&1).expect_err("the 61st is over the burst");
        assert_eq!((e.scope, e.limit, e.per_window), (Scope::User, 60, 600));
        assert!(e.retry_after <= Duration::from_millis(100), "600/min refills one every 100 ms: {:?}", e.retry_after);
        assert_eq!(e.retry_after_secs(), 1);
        rate.check(&2).expect("another key has its own allowance");
    }

    #[test]
    fn zero_switches_the_limit_off_and_small_figures_still_allow_one() {
        let off = KeyedRate::new(Scope::Ip, 0);
        for _ in 0..10_000 {
            off.check(&"10.0.0.1").expect("off");
        }
        let tiny = KeyedRate::new(Scope::Ip, 3);
        tiny.check(&"a").expect("a burst of at least one");
        let e = tiny.check(&"a").expect_err("then 3 per minute: one every 20 s");
        assert!(e.retry_after > Duration::from_secs(19) && e.retry_after <= Duration::from_secs(20), "{:?}", e.retry_after);
        assert_eq!(e.retry_after_secs(), 20);
    }

    #[test]
    fn headers_carry_the_limit_the_reset_and_the_policy() {
        let e = Exceeded {
            scope: Scope::Tenant,
            limit: 12,
            per_window: 120,
            window: Duration::from_secs(60),
            retry_after: Duration::from_millis(1500),
        };
        let h: std::collections::HashMap<_, _> = e.headers().into_iter().collect();
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["ratelimit-limit"], "12");
        assert_eq!(h["ratelimit-remaining"], "0");
        assert_eq!(h["ratelimit-reset"], "2");
        assert_eq!(h["ratelimit-policy"], "120;w=60;burst=12");
    }

    #[test]
    fn prune_forgets_keys_whose_allowance_is_full() {
        let rate = KeyedRate::new(Scope::Ip, 6000);
        for k in 0..1000u32 {
            rate.check(&k).unwrap();
        }
        let slow = KeyedRate::new(Scope::Ip, 60);
        slow.check(&1u32).unwrap();
        assert_eq!(slow.prune(), 1, "a key whose allowance is still refilling is kept");
        // Each key spent one unit; 6000/min refills it in 10 ms: pruning drops them then.
        let start = std::time::Instant::now();
        while rate.prune() != 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "idle keys are dropped once refilled");
            std::thread::yield_now();
        }
    }
}

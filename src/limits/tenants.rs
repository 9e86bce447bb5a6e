//! Per-tenant request rates: the tenant's plan `api_requests_per_minute` when its live
//! subscription's plan sets one, else `ROWCAST_RATE_TENANT_PER_MIN`. One keyed limiter per
//! distinct figure (plans are few), so the check stays a map lookup and a GCRA step.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use uuid::Uuid;

use super::rate::{Exceeded, KeyedRate, Scope};

pub struct TenantRates {
    default_per_minute: u32,
    plans: RwLock<HashMap<Uuid, u32>>,
    by_rate: RwLock<HashMap<u32, Arc<KeyedRate<Uuid>>>>,
    generation: watch::Sender<u64>,
}

impl TenantRates {
    pub fn new(default_per_minute: u32) -> Self {
        Self { default_per_minute, plans: RwLock::default(), by_rate: RwLock::default(), generation: watch::Sender::new(0) }
    }

    /// The figure that applies to `tenant` now.
    pub fn per_minute(&self, tenant: Uuid) -> u32 {
        self.plans.read().unwrap_or_else(|p| p.into_inner()).get(&tenant).copied().unwrap_or(self.default_per_minute)
    }

    pub fn check(&self, tenant: Uuid) -> Result<(), Exceeded> {
        let rate = self.per_minute(tenant);
        if rate == 0 {
            return Ok(());
        }
        let existing = self.by_rate.read().unwrap_or_else(|p| p.into_inner()).get(&rate).cloned();
        let limiter = match existing {
            Some(l) => l,
            None => self
                .by_rate
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(rate)
                .or_insert_with(|| Arc::new(KeyedRate::new(Scope::Tenant, rate)))
                .clone(),
        };
        limiter.check(&tenant)
    }

    /// Replaces the plan figures (a reload); tenants left out fall back to the default.
    pub fn replace(&self, plans: HashMap<Uuid, u32>) {
        *self.plans.write().unwrap_or_else(|p| p.into_inner()) = plans;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Bumped after every reload: tests and operators can await the next one.
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Prunes idle tenants, and limiters of figures no plan uses any more.
    pub fn prune(&self) -> usize {
        let in_use: std::collections::HashSet<u32> = {
            let plans = self.plans.read().unwrap_or_else(|p| p.into_inner());
            plans.values().copied().chain([self.default_per_minute]).collect()
        };
        let mut by_rate = self.by_rate.write().unwrap_or_else(|p| p.into_inner());
        let mut keys = 0;
        by_rate.retain(|rate, limiter| {
            let left = limiter.prune();
            keys += left;
            left > 0 || in_use.contains(rate)
        });
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_figure_overrides_the_default_for_its_tenant_only() {
        let rates = TenantRates::new(600);
        let (small, other) = (Uuid::new_v4(), Uuid::new_v4());
        rates.replace(HashMap::from([(small, 10)]));
        assert_eq!((rates.per_minute(small), rates.per_minute(other)), (10, 600));
        rates.check(small).expect("a burst of one");
        let e = rates.check(small).expect_err("10/min: bursts of 1");
        assert_eq!((e.scope, e.per_window, e.limit), (Scope::Tenant, 10, 1));
        for _ in 0..60 {
            rates.check(other).expect("the default's burst of 60");
        }
        rates.replace(HashMap::new());
        assert_eq!(rates.per_minute(small), 600, "a removed policy falls back to the default");
        assert_eq!(*rates.reloads().borrow(), 2);
    }

    #[test]
    fn a_zero_figure_switches_the_tenant_limit_off() {
        let rates = TenantRates::new(0);
        let t = Uuid::new_v4();
        for _ in 0..1000 {
            rates.check(t).expect("off");
        }
    }
}

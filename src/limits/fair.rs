//! The fair pool: at most `cap` concurrent transactions per tenant, so one tenant's burst
//! cannot take every pooled connection. A request over its tenant's cap waits (FIFO, tokio's
//! fair semaphore) up to the pool timeout, then gets 429: the tenant is over its own share,
//! while a 503 keeps meaning "the whole pool is exhausted". The permit is taken BEFORE the
//! pool connection, so a waiting request holds nothing another tenant could use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::rate::{Exceeded, Scope};

pub struct TenantGate {
    cap: usize,
    wait: Duration,
    slots: Mutex<HashMap<Uuid, Arc<Semaphore>>>,
    waiting: AtomicUsize,
}

/// A tenant's slot, held for the transaction's whole life (with its pooled connection).
pub struct GatePermit {
    gate: Arc<TenantGate>,
    key: Uuid,
    permit: Option<OwnedSemaphorePermit>,
}

impl TenantGate {
    /// `cap` concurrent transactions per key (`0`: off); a request waits at most `wait`.
    pub fn new(cap: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self { cap, wait, slots: Mutex::default(), waiting: AtomicUsize::new(0) })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Semaphore>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot of `key` (the tenant; the user when the tenant is not known before
    /// the database picks it).
    pub async fn enter(self: &Arc<Self>, key: Uuid) -> Result<GatePermit, Exceeded> {
        if self.cap == 0 {
            return Ok(GatePermit { gate: self.clone(), key, permit: None });
        }
        let semaphore = self.slots().entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.cap))).clone();
        let acquired = match semaphore.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                metrics::counter!("rowcast_tenant_gate_waits_total").increment(1);
                self.waiting.fetch_add(1, Ordering::Relaxed);
                let got = tokio::time::timeout(self.wait, semaphore.clone().acquire_owned()).await.ok().and_then(Result::ok);
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                got
            }
        };
        drop(semaphore);
        match acquired {
            Some(permit) => Ok(GatePermit { gate: self.clone(), key, permit: Some(permit) }),
            None => {
                self.forget_if_idle(key);
                Scope::TenantConcurrency.count();
                Err(Exceeded {
                    scope: Scope::TenantConcurrency,
                    limit: self.cap as u32,
                    per_window: self.cap as u32,
                    window: Duration::from_secs(1),
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }

    /// Drops `key`'s semaphore once nobody holds or awaits it (bounded memory).
    fn forget_if_idle(&self, key: Uuid) {
        let mut slots = self.slots();
        if slots.get(&key).is_some_and(|s| Arc::strong_count(s) == 1) {
            slots.remove(&key);
        }
    }

    /// Requests waiting for a slot now, all tenants together.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Keys with a transaction running or waiting (stats and tests).
    pub fn busy(&self) -> usize {
        self.slots().len()
    }
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            drop(permit);
            self.gate.forget_if_idle(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_over_its_cap_waits_then_is_refused_while_another_tenant_enters() {
        let gate = TenantGate::new(2, Duration::from_millis(50));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let p1 = gate.enter(a).await.unwrap();
        let _p2 = gate.enter(a).await.unwrap();
        let refused = gate.enter(a).await.err().expect("a third concurrent transaction of A");
        assert_eq!(refused.scope, Scope::TenantConcurrency);
        let _pb = gate.enter(b).await.expect("B is not held up by A");
        drop(p1);
        let _p3 = gate.enter(a).await.expect("a freed slot is reusable");
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_freed_within_the_wait() {
        let gate = TenantGate::new(1, Duration::from_secs(5));
        let a = Uuid::new_v4();
        let first = gate.enter(a).await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(a).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        drop(first);
        waiter.await.unwrap().expect("the waiter enters when the slot frees");
    }

    #[tokio::test]
    async fn idle_tenants_leave_no_semaphore_and_zero_is_off() {
        let gate = TenantGate::new(3, Duration::from_millis(10));
        let permits: Vec<_> = futures::future::join_all((0..50).map(|_| gate.enter(Uuid::new_v4()))).await;
        assert_eq!(gate.busy(), 50);
        drop(permits);
        assert_eq!(gate.busy(), 0);
        let off = TenantGate::new(0, Duration::from_millis(10));
        let t = Uuid::new_v4();
        let _all: Vec<_> = futures::future::join_all((0..100).map(|_| off.enter(t))).await;
    }
}

//! Concurrent WebSocket sessions per user: a counter per user, released when the session's
//! permit drops. A user with no session has no entry (bounded memory).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::rate::{Exceeded, Scope};

pub struct SessionLimit {
    max: usize,
    open: Mutex<HashMap<Uuid, usize>>,
}

/// Held by a session for its whole life; dropping it frees the slot.
#[must_use = "the slot is freed when the permit drops"]
pub struct SessionPermit {
    limit: Arc<SessionLimit>,
    user: Uuid,
}

impl SessionLimit {
    /// `max` concurrent sessions per user; `0` switches the limit off.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, open: Mutex::default() })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for one more session of `user`, or the refusal (429 before the upgrade).
    pub fn try_open(self: &Arc<Self>, user: Uuid) -> Result<SessionPermit, Exceeded> {
        let mut open = self.open();
        let n = open.entry(user).or_insert(0);
        if self.max > 0 && *n >= self.max {
            Scope::WsSessions.count();
            return Err(Exceeded {
                scope: Scope::WsSessions,
                limit: self.max as u32,
                per_window: self.max as u32,
                window: Duration::from_secs(1),
                retry_after: Duration::from_secs(1),
            });
        }
        *n += 1;
        Ok(SessionPermit { limit: self.clone(), user })
    }

    /// Sessions `user` has open now.
    pub fn open_for(&self, user: Uuid) -> usize {
        self.open().get(&user).copied().unwrap_or(0)
    }

    /// Users with at least one session.
    pub fn users(&self) -> usize {
        self.open().len()
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let mut open = self.limit.open();
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_max_sessions_and_a_closed_one_frees_its_slot() {
        let limit = SessionLimit::new(2);
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = limit.try_open(alice).unwrap();
        let _second = limit.try_open(alice).unwrap();
        let refused = limit.try_open(alice).err().expect("a third is refused");
        assert_eq!(refused.scope, Scope::WsSessions);
        let _bobs = limit.try_open(bob).expect("another user is unaffected");
        drop(first);
        let _third = limit.try_open(alice).expect("a closed session frees its slot");
        assert_eq!(limit.open_for(alice), 2);
    }

    #[test]
    fn users_without_sessions_leave_no_entry_and_zero_is_off() {
        let limit = SessionLimit::new(1);
        let permits: Vec<_> = (0..100).map(|_| limit.try_open(Uuid::new_v4()).unwrap()).collect();
        assert_eq!(limit.users(), 100);
        drop(permits);
        assert_eq!(limit.users(), 0);
        let off = SessionLimit::new(0);
        let u = Uuid::new_v4();
        let _many: Vec<_> = (0..1000).map(|_| off.try_open(u).unwrap()).collect();
    }
}

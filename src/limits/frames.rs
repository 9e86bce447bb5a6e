//! Inbound frames per WebSocket session, for every socket protocol (`/ws` and the Phoenix
//! endpoint): create one [`FrameLimiter`] per session and call [`FrameLimiter::check`] for
//! each frame the client sends, before decoding it. Over the limit the session is closed
//! with 1008 (policy violation) and [`FrameLimiter::close_reason`].

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::rate::Scope;

/// WebSocket close code for a client over its frame rate.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;

/// One session's inbound frame allowance: `per_second` sustained, a burst of one second's
/// worth; `0` switches it off.
pub struct FrameLimiter {
    per_second: u32,
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock>>,
}

impl FrameLimiter {
    pub fn new(per_second: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|n| RateLimiter::direct(Quota::per_second(n)));
        Self { per_second, limiter }
    }

    /// Takes one frame from the allowance; `Err(wait)` when the client is over it.
    pub fn check(&self) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check().map_err(|not_until| {
            Scope::WsFrames.count();
            not_until.wait_time_from(limiter.clock().now())
        })
    }

    /// The close frame's reason text (≤ 123 bytes).
    pub fn close_reason(&self) -> String {
        format!("rate limit: more than {} frames per second", self.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seconds_worth_of_frames_passes_and_the_next_one_is_refused() {
        let frames = FrameLimiter::new(5);
        for n in 0..5 {
            frames.check().unwrap_or_else(|_| panic!("frame {n} is within the burst"));
        }
        let wait = frames.check().expect_err("the sixth within the same instant is over");
        assert!(wait <= Duration::from_millis(200), "{wait:?}");
        assert!(frames.close_reason().len() <= 123);
        let off = FrameLimiter::new(0);
        for _ in 0..10_000 {
            off.check().expect("off");
        }
    }
}

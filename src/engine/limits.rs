//! Rate limits on host starts: governor token buckets driven by tokio's clock,
//! so tests under a paused clock control them.
//!
//! Owns the clock adapter and the translation of playbook rates into quotas.
//! It must not decide which host starts (that is the scheduler).

use std::num::NonZeroU32;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, keyed::HashMapStateStore};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::playbook::Rate;

/// A governor clock reading tokio's clock (which `tokio::time::pause` controls).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

/// A tokio instant as governor wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(pub Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;
    fn add(self, other: Nanos) -> TokioInstant {
        TokioInstant(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(
            self.0
                .checked_sub(Duration::from(duration))
                .unwrap_or(self.0),
        )
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;
type Keyed =
    RateLimiter<String, HashMapStateStore<String>, TokioClock, NoOpMiddleware<TokioInstant>>;

/// One token bucket, stage-wide (or global) or keyed by a label value.
pub enum Limiter {
    Direct(Direct),
    Keyed(Keyed),
}

/// A quota that spaces starts evenly: `50/s` lets one host start every 20 ms
/// (burst of one), because a burst of 50 simultaneous reboots is exactly what
/// rate limits are there to prevent.
pub fn quota(rate: Rate) -> Quota {
    let count = rate.count.max(1);
    let period = rate.per / count;
    Quota::with_period(period.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
}

impl Limiter {
    pub fn direct(rate: Rate) -> Limiter {
        Limiter::Direct(RateLimiter::direct_with_clock(quota(rate), TokioClock))
    }

    pub fn keyed(rate: Rate) -> Limiter {
        Limiter::Keyed(RateLimiter::new(
            quota(rate),
            HashMapStateStore::default(),
            TokioClock,
        ))
    }

    /// Takes a token for `key` (ignored when not keyed), or says when to try again.
    pub fn check(&self, key: &str) -> Result<(), Instant> {
        let res = match self {
            Limiter::Direct(l) => l.check(),
            Limiter::Keyed(l) => l.check_key(&key.to_owned()),
        };
        res.map_err(|not_until| not_until.earliest_possible().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_clock_drives_the_bucket() {
        let l = Limiter::direct(Rate {
            count: 2,
            per: Duration::from_secs(1),
        });
        assert!(l.check("").is_ok());
        let again = l.check("").expect_err("second token must wait");
        assert_eq!(again - Instant::now(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(l.check("").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn keyed_buckets_are_independent() {
        let l = Limiter::keyed(Rate {
            count: 1,
            per: Duration::from_secs(2),
        });
        assert!(l.check("pdu-a").is_ok());
        assert!(l.check("pdu-b").is_ok());
        assert!(l.check("pdu-a").is_err());
    }
}

//! Exponential backoff with full jitter for polling (wait_ssh, reboot wait,
//! health), so a recovering fleet is not hit by synchronized retries.
//!
//! Owns delay computation only; callers bound every wait by their deadline.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

/// Never sleep less than this, so a jitter draw near zero cannot spin.
const FLOOR: Duration = Duration::from_millis(10);

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The default for SSH polling: 250 ms doubling to 10 s.
    pub fn ssh() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
    }

    /// Waiting for a rebooted host to answer again: the same jitter, capped
    /// at 1 s at first; [`Backoff::cap_for_elapsed`] widens the cap as the
    /// wait grows. The cap decides how late a host that is back gets
    /// noticed (a third of the cap on average): with the fixed 10 s cap of
    /// [`Backoff::ssh`] a rolling reboot of 10-20 s boots ran 28 % past
    /// what its window allows (BENCHMARKS.md, rolling reboot).
    pub fn reboot_wait() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(1))
    }

    /// Cap = a twentieth of the time waited so far, between 1 s and 10 s:
    /// a host is noticed within about 2 % of its own boot time, and a host
    /// that never returns is polled a few hundred times in 15 minutes, not
    /// thousands.
    pub fn cap_for_elapsed(&mut self, elapsed: Duration) {
        self.cap = (elapsed / 20)
            .clamp(Duration::from_secs(1), Duration::from_secs(10))
            .max(self.base);
    }

    /// The next delay: uniform in [0, min(cap, base * 2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos)).max(FLOOR)
    }

    /// Sleeps the next delay, but never past `deadline`. Returns false when
    /// the deadline has already passed (the caller should give up).
    pub async fn sleep_until_next(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wake = (now + self.next_delay()).min(deadline);
        tokio::time::sleep_until(wake).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_but_stay_capped() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        for attempt in 0..40u32 {
            let d = b.next_delay();
            let ceiling = Duration::from_millis(250)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(10));
            assert!(d <= ceiling.max(FLOOR), "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn reboot_wait_cap_follows_the_time_waited() {
        let mut b = Backoff::reboot_wait();
        b.cap_for_elapsed(Duration::from_secs(5));
        assert_eq!(b.cap, Duration::from_secs(1));
        b.cap_for_elapsed(Duration::from_secs(60));
        assert_eq!(b.cap, Duration::from_secs(3));
        b.cap_for_elapsed(Duration::from_secs(900));
        assert_eq!(b.cap, Duration::from_secs(10));
    }
}

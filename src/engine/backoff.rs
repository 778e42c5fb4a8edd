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
    /// What `cap_for_elapsed` may widen the cap to.
    ceiling: Duration,
    attempt: u32,
}

/// Never sleep less than this, so a jitter draw near zero cannot spin.
const FLOOR: Duration = Duration::from_millis(10);
/// A poll's backoff cap is at most its timeout divided by this.
const POLLS_PER_TIMEOUT: u32 = 60;

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            ceiling: Duration::from_secs(10),
            attempt: 0,
        }
    }

    /// The default for SSH polling: 250 ms doubling to 10 s.
    pub fn ssh() -> Backoff {
        Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
    }

    /// SSH polling bounded by a step's `timeout`: as [`Backoff::ssh`], but
    /// the cap never exceeds a sixtieth of the timeout, so a short timeout
    /// (a drill compresses them) still gets about sixty looks at the host
    /// instead of a handful, and notices it back as soon, relatively.
    pub fn ssh_within(timeout: Duration) -> Backoff {
        let cap = (timeout / POLLS_PER_TIMEOUT).clamp(FLOOR, Duration::from_secs(10));
        Backoff::new(Duration::from_millis(250).min(cap), cap)
    }

    /// Health polling every `interval`, backing off to at most 10 s, or a
    /// sixtieth of the `timeout` when that is shorter (never below `interval`).
    pub fn health(interval: Duration, timeout: Duration) -> Backoff {
        let cap = (timeout / POLLS_PER_TIMEOUT).min(Duration::from_secs(10));
        Backoff::new(interval, cap.max(interval))
    }

    /// Waiting for a rebooted host to answer again: the same jitter, capped
    /// at 1 s at first; [`Backoff::cap_for_elapsed`] widens the cap as the
    /// wait grows. The cap decides how late a host that is back gets
    /// noticed (a third of the cap on average): with the fixed 10 s cap of
    /// [`Backoff::ssh`] a rolling reboot of 10-20 s boots ran 28 % past
    /// what its window allows (BENCHMARKS.md, rolling reboot).
    /// Never above [`Backoff::ssh_within`]'s cap for the step's `timeout`
    /// (a drill compresses timeouts).
    pub fn reboot_wait(timeout: Duration) -> Backoff {
        let ceiling = Backoff::ssh_within(timeout).cap;
        Backoff {
            ceiling,
            ..Backoff::new(
                Duration::from_millis(250).min(ceiling),
                Duration::from_secs(1).min(ceiling),
            )
        }
    }

    /// Cap = a twentieth of the time waited so far, between 1 s and 10 s:
    /// a host is noticed within about 2 % of its own boot time, and a host
    /// that never returns is polled a few hundred times in 15 minutes, not
    /// thousands.
    pub fn cap_for_elapsed(&mut self, elapsed: Duration) {
        self.cap = (elapsed / 20)
            .clamp(Duration::from_secs(1), Duration::from_secs(10))
            .min(self.ceiling)
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
    /// the deadline is reached (the caller should give up with its last
    /// error): an attempt started at the deadline would have no time left and
    /// could only fail with a timeout that hides the real cause.
    pub async fn sleep_until_next(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let wake = (now + self.next_delay()).min(deadline);
        tokio::time::sleep_until(wake).await;
        wake < deadline
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

    /// Regression: health and wait_ssh used to run one more attempt at the
    /// deadline, with 1 ms left, and reported its "no answer within 1ms"
    /// instead of the real failure (a 503, a refused port).
    #[tokio::test(start_paused = true)]
    async fn a_sleep_that_reaches_the_deadline_says_stop() {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(1);
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(5));
        // Every delay of at least 10 ms would overshoot eventually: keep sleeping.
        let mut sleeps = 0;
        while b.sleep_until_next(deadline).await {
            sleeps += 1;
            assert!(Instant::now() < deadline);
            assert!(sleeps < 1000, "bounded");
        }
        assert_eq!(
            Instant::now(),
            deadline,
            "slept up to the deadline, not past"
        );
        assert!(!b.sleep_until_next(deadline).await);
    }

    #[test]
    fn short_timeouts_cap_the_delay() {
        // Long timeouts keep the usual 250 ms .. 10 s.
        let b = Backoff::ssh_within(Duration::from_secs(15 * 60));
        assert_eq!(
            (b.base, b.cap),
            (Duration::from_millis(250), Duration::from_secs(10))
        );
        // A 9 s timeout (15 min compressed 100x) polls at most every 150 ms.
        let mut b = Backoff::ssh_within(Duration::from_secs(9));
        assert_eq!(b.cap, Duration::from_millis(150));
        for _ in 0..30 {
            assert!(b.next_delay() <= Duration::from_millis(150));
        }
        let h = Backoff::health(Duration::from_secs(10), Duration::from_secs(15 * 60));
        assert_eq!(
            (h.base, h.cap),
            (Duration::from_secs(10), Duration::from_secs(10))
        );
        let h = Backoff::health(Duration::from_millis(100), Duration::from_secs(9));
        assert_eq!(h.cap, Duration::from_millis(150));
        let h = Backoff::health(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(h.cap, Duration::from_secs(2), "never below the interval");
    }

    #[test]
    fn reboot_wait_cap_follows_the_time_waited() {
        let mut b = Backoff::reboot_wait(Duration::from_secs(15 * 60));
        b.cap_for_elapsed(Duration::from_secs(5));
        assert_eq!(b.cap, Duration::from_secs(1));
        b.cap_for_elapsed(Duration::from_secs(60));
        assert_eq!(b.cap, Duration::from_secs(3));
        b.cap_for_elapsed(Duration::from_secs(900));
        assert_eq!(b.cap, Duration::from_secs(10));
        // A drill's compressed 6 s timeout keeps polling at most every 100 ms.
        let mut b = Backoff::reboot_wait(Duration::from_secs(6));
        b.cap_for_elapsed(Duration::from_secs(5));
        assert_eq!(b.cap, Duration::from_millis(100));
    }
}

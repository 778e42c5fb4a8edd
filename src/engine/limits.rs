//! Rate limits on starts: token buckets of burst one, driven by the instant
//! their caller passes in, so they read no clock and a test can hand them
//! synthetic instants.
//!
//! Owns the translation of playbook rates into spacing and the bucket
//! arithmetic (GCRA with a burst of one: a start is allowed once the bucket's
//! theoretical arrival time has come, and moves it one period past the later
//! of that time and now). It must not decide which host starts (that is
//! `admission`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::playbook::Rate;

/// The spacing a rate asks for: `50/s` lets one start through every 20 ms
/// (burst of one), because a burst of 50 simultaneous reboots is exactly what
/// rate limits are there to prevent.
pub fn period(rate: Rate) -> Duration {
    let count = rate.count.max(1);
    (rate.per / count).max(Duration::from_nanos(1))
}

/// One bucket, stage-wide (or run-wide), or one per label value.
#[derive(Debug)]
pub enum Limiter {
    Direct {
        period: Duration,
        next: Option<Instant>,
    },
    Keyed {
        period: Duration,
        next: HashMap<String, Instant>,
    },
}

impl Limiter {
    pub fn direct(rate: Rate) -> Limiter {
        Limiter::Direct {
            period: period(rate),
            next: None,
        }
    }

    pub fn keyed(rate: Rate) -> Limiter {
        Limiter::Keyed {
            period: period(rate),
            next: HashMap::new(),
        }
    }

    /// Takes a token for `key` (ignored when not keyed) at `now`, or says
    /// when to try again.
    pub fn check(&mut self, key: &str, now: Instant) -> Result<(), Instant> {
        match self {
            Limiter::Direct { period, next } => take(next, *period, now),
            Limiter::Keyed { period, next } => match next.get_mut(key) {
                Some(at) => {
                    let mut slot = Some(*at);
                    let r = take(&mut slot, *period, now);
                    if let Some(t) = slot {
                        *at = t;
                    }
                    r
                }
                None => {
                    next.insert(key.to_owned(), now + *period);
                    Ok(())
                }
            },
        }
    }

    /// When the next token is due, for an unkeyed bucket (None: now).
    pub fn due(&self) -> Option<Instant> {
        match self {
            Limiter::Direct { next, .. } => *next,
            Limiter::Keyed { .. } => None,
        }
    }

    pub fn is_keyed(&self) -> bool {
        matches!(self, Limiter::Keyed { .. })
    }
}

fn take(next: &mut Option<Instant>, period: Duration, now: Instant) -> Result<(), Instant> {
    match *next {
        Some(at) if now < at => Err(at),
        Some(at) => {
            *next = Some(at.max(now) + period);
            Ok(())
        }
        None => {
            *next = Some(now + period);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spaces_tokens_by_its_period() {
        let mut l = Limiter::direct(Rate {
            count: 2,
            per: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        assert!(l.check("", t0).is_ok());
        let again = l.check("", t0).expect_err("second token must wait");
        assert_eq!(again - t0, Duration::from_millis(500));
        assert!(l.check("", t0 + Duration::from_millis(499)).is_err());
        assert!(l.check("", t0 + Duration::from_millis(500)).is_ok());
        // Idle time does not bank tokens: a burst of one stays one.
        let later = t0 + Duration::from_secs(10);
        assert!(l.check("", later).is_ok());
        assert_eq!(l.check("", later), Err(later + Duration::from_millis(500)));
    }

    #[test]
    fn keyed_buckets_are_independent() {
        let mut l = Limiter::keyed(Rate {
            count: 1,
            per: Duration::from_secs(2),
        });
        let t0 = Instant::now();
        assert!(l.check("pdu-a", t0).is_ok());
        assert!(l.check("pdu-b", t0).is_ok());
        assert_eq!(l.check("pdu-a", t0), Err(t0 + Duration::from_secs(2)));
        assert!(l.check("pdu-a", t0 + Duration::from_secs(2)).is_ok());
    }
}

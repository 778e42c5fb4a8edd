//! Humane units in playbooks: rates (`50/s`, `3000/m`, `2/h`) and amounts
//! (`10`, `25%`), parsed and printed; durations (`90s`, `1h30m`) are
//! [`crate::time`]'s, re-exported here.
//!
//! Owns only the text forms; it must not know where a value came from (the
//! caller attaches spans) nor what a value is used for.

use std::fmt;
use std::time::Duration;

use super::{Amount, Rate};
// Durations are read and printed by `crate::time`, the one rule for playbooks,
// flags and the simulator; re-exported here beside the other units.
pub use crate::time::{HumanDuration, humane, parse_duration};

/// Why a unit did not parse; the caller turns it into a diagnostic at the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// Parses `50/s`, `3000/m`, `2/h` (also `/sec`, `/min`, `/hour`). The count must be positive.
pub fn parse_rate(text: &str) -> Result<Rate, UnitError> {
    let s = text.trim();
    let bad = |why: &str| UnitError(format!("invalid rate `{text}`: {why}"));
    let Some((count, per)) = s.split_once('/') else {
        return Err(bad("expected COUNT/UNIT, e.g. `50/s`, `3000/m`, `2/h`"));
    };
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| bad("the count must be a whole number, e.g. `50/s`"))?;
    if count == 0 {
        return Err(bad("the count must be at least 1"));
    }
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => return Err(bad(&format!("unknown unit `{other}` (use s, m or h)"))),
    };
    Ok(Rate { count, per })
}

/// Parses a count (`10`) or a percentage (`25%`, `0.5%`), as for `parallel`.
/// A percentage must be above 0 and at most 100.
pub fn parse_amount(text: &str) -> Result<Amount, UnitError> {
    let s = text.trim();
    let bad = |why: &str| UnitError(format!("invalid amount `{text}`: {why}"));
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| bad("expected a number before `%`"))?;
        if !p.is_finite() || p <= 0.0 || p > 100.0 {
            return Err(bad("a percentage must be above 0% and at most 100%"));
        }
        return Ok(Amount::Percent(p));
    }
    match s.replace('_', "").parse::<usize>() {
        Ok(n) => Ok(Amount::Count(n)),
        Err(_) => Err(bad(
            "expected a whole number or a percentage, e.g. `10` or `5%`",
        )),
    }
}

impl Amount {
    /// `Count` as is; `Percent` of `total`, rounded up (`parallel`) or down (budgets).
    pub fn resolve(self, total: usize, round_up: bool) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) => {
                let exact = p / 100.0 * total as f64;
                // Guard against 10% of 30 being 3.0000000000000004 and rounding up to 4.
                let exact = (exact * 1e9).round() / 1e9;
                (if round_up {
                    exact.ceil()
                } else {
                    exact.floor()
                }) as usize
            }
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Rate {
    /// Starts per second, for estimates.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => return write!(f, "{}/{}", self.count, HumanDuration(self.per)),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn no_input_panics(s in "\\PC{0,12}") {
            let _ = (parse_rate(&s), parse_amount(&s));
        }
    }

    #[test]
    fn rates() {
        let r = parse_rate("50/s").unwrap();
        assert_eq!((r.count, r.per), (50, Duration::from_secs(1)));
        assert_eq!(parse_rate("3000/m").unwrap().per_second(), 50.0);
        assert_eq!(parse_rate("2/h").unwrap().to_string(), "2/h");
        assert_eq!(parse_rate("10 / min").unwrap().to_string(), "10/m");
        for bad in ["50", "0/s", "-1/s", "1.5/s", "5/d", "/s", "x/s"] {
            assert!(parse_rate(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            parse_rate("50/d").unwrap_err().0,
            "invalid rate `50/d`: unknown unit `d` (use s, m or h)"
        );
    }

    #[test]
    fn the_rate_spellings_the_readme_lists() {
        // README "Values": keep the two in step.
        let per = |s: &str| parse_rate(s).map(|r| r.per.as_secs()).unwrap();
        for (unit, secs) in [("s", 1), ("sec", 1), ("second", 1), ("m", 60), ("min", 60)] {
            assert_eq!(per(&format!("5/{unit}")), secs, "5/{unit}");
        }
        for (unit, secs) in [("minute", 60), ("h", 3600), ("hour", 3600)] {
            assert_eq!(per(&format!("5/{unit}")), secs, "5/{unit}");
        }
        for bad in ["5/secs", "5/d", "0.5/s", "5/S", "5/hours"] {
            assert!(parse_rate(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("10"), Ok(Amount::Count(10)));
        assert_eq!(parse_amount("0"), Ok(Amount::Count(0)));
        assert_eq!(parse_amount("25%"), Ok(Amount::Percent(25.0)));
        assert_eq!(parse_amount("0.5%"), Ok(Amount::Percent(0.5)));
        for bad in ["0%", "101%", "-1", "ten", "%", "1.5", "-5%", "NaN%", "inf%"] {
            assert!(parse_amount(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn percentages_resolve_without_float_noise() {
        assert_eq!(Amount::Percent(10.0).resolve(30, true), 3);
        assert_eq!(Amount::Percent(10.0).resolve(31, true), 4);
        assert_eq!(Amount::Percent(1.0).resolve(50, false), 0);
        assert_eq!(Amount::Percent(1.0).resolve(250, false), 2);
        assert_eq!(Amount::Percent(100.0).resolve(7, false), 7);
        assert_eq!(Amount::Count(5).resolve(3, true), 5);
    }
}

//! Humane units in playbooks: durations (`90s`, `1h30m`, `500ms`), rates
//! (`50/s`, `3000/m`, `2/h`) and amounts (`10`, `25%`), parsed and printed.
//!
//! Owns only the text forms; it must not know where a value came from (the
//! caller attaches spans) nor what a value is used for.

use std::fmt;
use std::time::Duration;

use super::{Amount, Rate};

/// Why a unit did not parse; the caller turns it into a diagnostic at the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// `90s`, `15m`, `1h30m`: how durations read in messages.
pub fn humane(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 && secs < 10 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses `90s`, `15m`, `1h30m`, `500ms`, `2d`: one or more `<integer><unit>`
/// parts, units `ms`, `s`, `m`, `h`, `d`, largest first. A bare number is
/// refused: `30` could mean seconds or minutes, and a restart plan must not guess.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let s = text.trim();
    let bad = |why: &str| UnitError(format!("invalid duration `{text}`: {why}"));
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&format!("add a unit, e.g. `{s}s` or `{s}m`")));
    }
    if s.contains('.') {
        return Err(bad(
            "use whole numbers of each unit, e.g. `1h30m` or `1500ms`",
        ));
    }
    if s.contains(char::is_whitespace) {
        return Err(bad("write it without spaces, e.g. `15m` or `1h30m`"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad(
                "expected a number, e.g. `90s`, `15m`, `1h30m`, `500ms`",
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (rank, millis) = match unit {
            "d" => (0, 86_400_000),
            "h" => (1, 3_600_000),
            "m" => (2, 60_000),
            "s" => (3, 1_000),
            "ms" => (4, 1),
            "" => return Err(bad("every number needs a unit (ms, s, m, h, d)")),
            other => return Err(bad(&format!("unknown unit `{other}` (use ms, s, m, h, d)"))),
        };
        if rank <= last_rank && last_rank != usize::MAX {
            return Err(bad("units must go from largest to smallest, each once"));
        }
        last_rank = rank;
        let part = number.checked_mul(millis).ok_or_else(|| bad("too large"))?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

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

/// Prints a duration the way playbooks write them: `1h30m`, `90ms`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<Duration, String> {
        parse_duration(s).map_err(|e| e.0)
    }

    #[test]
    fn durations() {
        assert_eq!(d("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("1m30s500ms"), Ok(Duration::from_millis(90_500)));
        assert_eq!(d("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_why() {
        assert_eq!(
            d("30"),
            Err("invalid duration `30`: add a unit, e.g. `30s` or `30m`".into())
        );
        assert_eq!(
            d("5 minutes"),
            Err(
                "invalid duration `5 minutes`: write it without spaces, e.g. `15m` or `1h30m`"
                    .into()
            )
        );
        assert_eq!(
            d("5min"),
            Err("invalid duration `5min`: unknown unit `min` (use ms, s, m, h, d)".into())
        );
        assert_eq!(
            d("30m1h"),
            Err(
                "invalid duration `30m1h`: units must go from largest to smallest, each once"
                    .into()
            )
        );
        assert_eq!(
            d("1.5h"),
            Err(
                "invalid duration `1.5h`: use whole numbers of each unit, e.g. `1h30m` or `1500ms`"
                    .into()
            )
        );
        assert!(d("").is_err());
        assert!(d("s").is_err());
        assert!(d("-5s").is_err());
        assert!(d("99999999999999999999s").is_err());
        assert!(d("1s1s").is_err());
    }

    #[test]
    fn human_duration_round_trips() {
        for s in ["0s", "90ms", "1m30s", "1h30m", "2d3h", "1h0m5s500ms"] {
            let parsed = parse_duration(s).unwrap();
            let printed = HumanDuration(parsed).to_string();
            assert_eq!(
                parse_duration(&printed).unwrap(),
                parsed,
                "{s} -> {printed}"
            );
        }
        assert_eq!(
            HumanDuration(Duration::from_secs(5400)).to_string(),
            "1h30m"
        );
    }

    proptest::proptest! {
        #[test]
        fn printed_durations_parse_back(ms in 0u64..30 * 86_400_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&HumanDuration(d).to_string()), Ok(d));
        }

        #[test]
        fn no_input_panics(s in "\\PC{0,12}") {
            let _ = (parse_duration(&s), parse_rate(&s), parse_amount(&s));
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

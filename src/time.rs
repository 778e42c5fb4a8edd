//! Time as rekindle reads and writes it: durations (`90s`, `1h30m`,
//! `500ms`), parsed and printed by one rule for playbooks, flags and the
//! simulator alike, and the RFC 3339 time stamps journals, locks and reports
//! carry (`2026-11-21T22:15:00.123Z`).
//!
//! A leaf module: it owns only the text forms and must not import anything
//! of the crate (the caller attaches spans and names the flag or key).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a duration did not parse; the caller turns it into a diagnostic at
/// the value or an error naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(pub String);

/// Whether a number in a duration may have a fraction (`1.5s`): the
/// simulator's flags take one; playbooks and the run's own flags do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fractions {
    Refused,
    Allowed,
}

/// Parses `90s`, `15m`, `1h30m`, `500ms`, `2d`: one or more `<integer><unit>`
/// parts, units `ms`, `s`, `m`, `h`, `d`, largest first. A bare number is
/// refused: `30` could mean seconds or minutes, and a restart plan must not guess.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    parse_duration_as(text, Fractions::Refused)
}

/// A part with a fraction above this is refused (about 31 years).
const MAX_FRACTIONAL_MS: f64 = 1e12;

/// [`parse_duration`], with fractions allowed or not: with
/// [`Fractions::Allowed`], `1.5s` and `0.25m` read as written.
pub fn parse_duration_as(text: &str, fractions: Fractions) -> Result<Duration, DurationError> {
    let s = text.trim();
    let bad = |why: &str| DurationError(format!("invalid duration `{text}`: {why}"));
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(&format!("add a unit, e.g. `{s}s` or `{s}m`")));
    }
    if s.contains('.') && fractions == Fractions::Refused {
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
        let digits = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if digits == 0 {
            return Err(bad(
                "expected a number, e.g. `90s`, `15m`, `1h30m`, `500ms`",
            ));
        }
        let number = &rest[..digits];
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
        let part = if number.contains('.') {
            // Only with `Fractions::Allowed` (refused above otherwise).
            let n: f64 = number
                .parse()
                .map_err(|_| bad("expected a number, e.g. `1.5s`"))?;
            let ms = n * millis as f64;
            if !(ms.is_finite() && ms < MAX_FRACTIONAL_MS) {
                return Err(bad("too large"));
            }
            Duration::from_secs_f64(ms / 1000.0)
        } else {
            let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
            Duration::from_millis(n.checked_mul(millis).ok_or_else(|| bad("too large"))?)
        };
        total = total.checked_add(part).ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// `90s`, `15m`, `1h30m`: how durations read in messages (whole seconds,
/// or milliseconds below ten seconds).
pub fn humane(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 && secs < 10 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    let _ = write_parts(&mut out, u128::from(secs) * 1000, &UNITS[1..4]);
    out
}

/// Prints a duration the way playbooks write them: `1h30m`, `90ms`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_parts(f, self.0.as_millis(), &UNITS)
    }
}

/// The units durations are written in, largest first, in milliseconds.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The one duration printer: `ms` as `<n><unit>` parts from the largest of
/// `units` down, each only when not zero (what is below the smallest unit
/// is dropped); `0s` for nothing.
fn write_parts(out: &mut impl fmt::Write, mut ms: u128, units: &[(&str, u128)]) -> fmt::Result {
    if units.last().is_none_or(|(_, size)| ms < *size) {
        return out.write_str("0s");
    }
    for (unit, size) in units {
        if ms >= *size {
            write!(out, "{}{unit}", ms / size)?;
            ms %= size;
        }
    }
    Ok(())
}

/// `2026-11-21T22:15:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses what [`rfc3339`] writes back into a time.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ms = if b.get(19) == Some(&b'.') {
        num(20..23).unwrap_or(0)
    } else {
        0
    };
    let days = days_from_civil(i64::try_from(y).ok()?, mo, d);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
}

// Howard Hinnant's civil calendar algorithms (public domain).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let (m, d) = (m as i64, d as i64);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
            let _ = (parse_duration(&s), parse_duration_as(&s, Fractions::Allowed));
        }
    }

    #[test]
    fn fractions_only_where_allowed() {
        let f = |s: &str| parse_duration_as(s, Fractions::Allowed).map_err(|e| e.0);
        assert_eq!(f("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(f("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(f("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(f("500ms"), Ok(Duration::from_millis(500)));
        assert!(f("30").is_err());
        assert!(f(".").is_err());
        assert!(f("1.2.3s").is_err());
        assert!(f("1e9s").is_err());
        assert!(f("99999999999999h").is_err());
        assert!(d("1.5s").is_err());
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_299_300_123);
        let s = rfc3339(t);
        assert_eq!(s, "2026-11-21T22:15:00.123Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.000Z")
                .map(rfc3339)
                .as_deref(),
            Some("2024-02-29T12:00:00.000Z")
        );
    }
}

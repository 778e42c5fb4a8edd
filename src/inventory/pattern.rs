//! Host-name patterns and `{N}` capture templates.
//!
//! Owns the range syntax (`pg-r[001-200]-db[1-2]`, `web[1,3,5-7]`, Ansible's
//! `web[01:50]`, `[a:f]`, `[1:9:2]`), the size check done *before* expansion,
//! expansion order (first range varies slowest, as Ansible does) and
//! templates that refer to a pattern's ranges. It must not know about files,
//! YAML or hosts: errors carry a character offset into the pattern text and
//! callers turn that into a file position.

use std::borrow::Cow;
use std::collections::HashSet;

/// Patterns expanding to more hosts than this are refused before expansion.
pub const MAX_HOSTS_PER_PATTERN: u64 = 1_000_000;

/// Which bracket syntax a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// rekindle's own: comma lists of `N`, `N-M`, `N:M`, `a-f`.
    Native,
    /// Ansible's: exactly one `begin:end[:step]` per bracket; `begin` may be empty (0).
    Ansible,
}

/// A problem in a pattern or template; `offset`/`len` are in characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
}

fn err(offset: usize, len: usize, message: impl Into<String>) -> PatternError {
    PatternError {
        offset,
        len: len.max(1),
        message: message.into(),
    }
}

/// A parsed host pattern: literal text and range slots.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Slot(Vec<Piece>),
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Number {
        start: u64,
        end: u64,
        step: u64,
        width: usize,
    },
    /// Indices into [`LETTERS`], Ansible's `string.ascii_letters` order.
    Letter {
        start: usize,
        end: usize,
        step: usize,
    },
}

const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl Piece {
    fn count(&self) -> u64 {
        match *self {
            Piece::Number {
                start, end, step, ..
            } => (end - start) / step + 1,
            Piece::Letter { start, end, step } => ((end - start) / step + 1) as u64,
        }
    }

    fn push_values(&self, out: &mut Vec<String>) {
        match *self {
            Piece::Number {
                start,
                end,
                step,
                width,
            } => {
                let mut v = start;
                loop {
                    out.push(format!("{v:0width$}"));
                    match v.checked_add(step) {
                        Some(next) if next <= end => v = next,
                        _ => break,
                    }
                }
            }
            Piece::Letter { start, end, step } => {
                for i in (start..=end).step_by(step) {
                    out.push(LETTERS[i..=i].to_owned());
                }
            }
        }
    }
}

impl HostPattern {
    /// Parses `text`. Every range is checked (order, widths, steps), and so is
    /// the total count, so a valid pattern is safe to expand.
    pub fn parse(text: &str, syntax: Syntax) -> Result<HostPattern, PatternError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.is_empty() {
            return Err(err(0, 1, "empty host name"));
        }
        if let Some(at) = text.find("{{").or_else(|| text.find("{%")) {
            return Err(err(
                text[..at].chars().count(),
                chars.len() - text[..at].chars().count(),
                "host names cannot be Jinja templates: templates are evaluated in variable values (e.g. ansible_host), not in names",
            ));
        }
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '[' => {
                    let Some(close) = chars[i + 1..].iter().position(|&c| c == ']') else {
                        return Err(err(i, chars.len() - i, "unclosed `[` in host pattern"));
                    };
                    let close = i + 1 + close;
                    let inner: String = chars[i + 1..close].iter().collect();
                    if let Some(nested) = inner.find('[') {
                        return Err(err(
                            i + 1 + inner[..nested].chars().count(),
                            1,
                            "`[` inside a range",
                        ));
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Slot(parse_slot(&inner, i + 1, syntax)?));
                    i = close + 1;
                }
                ']' => return Err(err(i, 1, "`]` without a matching `[`")),
                c if c.is_whitespace() || c.is_control() => {
                    return Err(err(i, 1, "host names cannot contain whitespace"));
                }
                c => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        let pattern = HostPattern { segments };
        let count = pattern.count();
        if count > MAX_HOSTS_PER_PATTERN {
            return Err(err(
                0,
                chars.len(),
                format!(
                    "pattern expands to {} hosts, over the limit of {MAX_HOSTS_PER_PATTERN}",
                    if count == u64::MAX {
                        "too many".to_owned()
                    } else {
                        count.to_string()
                    }
                ),
            ));
        }
        Ok(pattern)
    }

    /// How many names the pattern expands to (saturating at `u64::MAX`).
    pub fn count(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 1,
                Segment::Slot(pieces) => pieces
                    .iter()
                    .fold(0u64, |acc, p| acc.saturating_add(p.count())),
            })
            .fold(1u64, u64::saturating_mul)
    }

    /// Number of ranges (`{1}`..`{N}` in templates).
    pub fn ranges(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Slot(_)))
            .count()
    }

    /// Calls `f(name, captures)` for every expansion, first range slowest.
    pub fn for_each(&self, mut f: impl FnMut(&str, &[&str])) {
        let slots: Vec<Vec<String>> = self
            .segments
            .iter()
            .filter_map(|s| match s {
                Segment::Slot(pieces) => {
                    let mut values = Vec::new();
                    for p in pieces {
                        p.push_values(&mut values);
                    }
                    Some(values)
                }
                Segment::Literal(_) => None,
            })
            .collect();
        if slots.iter().any(Vec::is_empty) {
            return;
        }
        let mut index = vec![0usize; slots.len()];
        let mut name = String::new();
        let mut captures: Vec<&str> = Vec::with_capacity(slots.len());
        loop {
            name.clear();
            captures.clear();
            let mut slot = 0;
            for s in &self.segments {
                match s {
                    Segment::Literal(text) => name.push_str(text),
                    Segment::Slot(_) => {
                        let value = &slots[slot][index[slot]];
                        name.push_str(value);
                        captures.push(value);
                        slot += 1;
                    }
                }
            }
            f(&name, &captures);
            // Odometer: the last range turns fastest.
            let mut k = slots.len();
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                index[k] += 1;
                if index[k] < slots[k].len() {
                    break;
                }
                index[k] = 0;
            }
        }
    }

    /// Every expanded name (convenience for tests and small patterns).
    pub fn expand(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each(|name, _| out.push(name.to_owned()));
        out
    }
}

/// Parses the inside of one `[...]`; `base` is the offset of its first character.
fn parse_slot(inner: &str, base: usize, syntax: Syntax) -> Result<Vec<Piece>, PatternError> {
    let inner_len = inner.chars().count();
    if inner.trim().is_empty() {
        return Err(err(
            base.saturating_sub(1),
            inner_len + 2,
            "empty range `[]`",
        ));
    }
    let mut pieces = Vec::new();
    let mut offset = base;
    let items: Vec<&str> = match syntax {
        Syntax::Native => inner.split(',').collect(),
        Syntax::Ansible => vec![inner],
    };
    for item in items {
        let len = item.chars().count();
        if item.is_empty() {
            return Err(err(offset, 1, "empty item in range list"));
        }
        pieces.push(parse_piece(item, offset, syntax)?);
        offset += len + 1;
    }
    if syntax == Syntax::Native {
        let mut seen = HashSet::new();
        let mut values = Vec::new();
        for p in &pieces {
            values.clear();
            // Bounded: the caller refuses oversized patterns, but one slot could
            // still be huge; only look for repeats in slots that are listed by hand.
            if pieces.len() > 1 && p.count() <= MAX_HOSTS_PER_PATTERN {
                p.push_values(&mut values);
                for v in values.drain(..) {
                    if !seen.insert(v.clone()) {
                        return Err(err(
                            base,
                            inner_len,
                            format!("range lists `{v}` more than once"),
                        ));
                    }
                }
            }
        }
    }
    Ok(pieces)
}

fn parse_piece(item: &str, offset: usize, syntax: Syntax) -> Result<Piece, PatternError> {
    let len = item.chars().count();
    let here = |message: String| err(offset, len, message);
    let parts: Vec<&str> = match syntax {
        Syntax::Ansible => {
            let parts: Vec<&str> = item.split(':').collect();
            if parts.len() != 2 && parts.len() != 3 {
                return Err(here(format!(
                    "`{item}` is not an Ansible range: write `begin:end` or `begin:end:step`, e.g. `[01:50]`"
                )));
            }
            parts
        }
        Syntax::Native => {
            if item.contains(':') {
                item.split(':').collect()
            } else {
                item.splitn(2, '-').collect()
            }
        }
    };
    let (mut begin, end, step) = match parts.as_slice() {
        [one] => (*one, *one, None),
        [a, b] => (*a, *b, None),
        [a, b, s] => (*a, *b, Some(*s)),
        _ => return Err(here(format!("`{item}` has too many `:`"))),
    };
    if begin.is_empty() && syntax == Syntax::Ansible {
        // Ansible reads `[:5]` as `[0:5]`.
        begin = "0";
    }
    if begin.is_empty() || end.is_empty() {
        return Err(here(format!("range `{item}` needs a begin and an end")));
    }
    let step = match step {
        None => 1u64,
        Some(s) => match s.parse::<u64>() {
            Ok(0) => return Err(here("range step cannot be 0".into())),
            Ok(n) => n,
            Err(_) => return Err(here(format!("range step `{s}` is not a number"))),
        },
    };
    let is_letter = |s: &str| s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic());
    let is_number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if is_letter(begin) && is_letter(end) {
        let (start, stop) = (
            LETTERS.find(begin).unwrap_or(0),
            LETTERS.find(end).unwrap_or(0),
        );
        if start > stop {
            return Err(here(format!("range `{item}` runs backwards")));
        }
        return Ok(Piece::Letter {
            start,
            end: stop,
            step: usize::try_from(step).unwrap_or(usize::MAX),
        });
    }
    if !is_number(begin) || !is_number(end) {
        return Err(here(format!(
            "range `{item}` must be numbers (`01-50`) or single letters (`a-f`)"
        )));
    }
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| here(format!("number `{s}` in range is too large")))
    };
    let (start, stop) = (number(begin)?, number(end)?);
    let padded = begin.len() > 1 && begin.starts_with('0');
    let width = if padded { begin.len() } else { 0 };
    let end_padded = end.len() > 1 && end.starts_with('0');
    if (padded || end_padded) && begin.len() != end.len() {
        return Err(here(format!(
            "range `{item}` mixes widths: zero-padded bounds must have the same number of digits"
        )));
    }
    if start > stop {
        return Err(here(format!("range `{item}` runs backwards")));
    }
    Ok(Piece::Number {
        start,
        end: stop,
        step,
        width,
    })
}

/// A string with `{N}` references to a pattern's ranges (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Capture(usize),
}

impl Template {
    /// Parses `text`; `ranges` is how many ranges the host pattern has.
    /// `{` not followed by digits and `}` is taken literally.
    pub fn parse(text: &str, ranges: usize) -> Result<Template, PatternError> {
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '{' {
                let digits = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if digits > 0 && chars.get(i + 1 + digits) == Some(&'}') {
                    let n: String = chars[i + 1..i + 1 + digits].iter().collect();
                    let n: usize = n.parse().unwrap_or(usize::MAX);
                    if n == 0 || n > ranges {
                        let have = match ranges {
                            0 => "the host pattern has no ranges".to_owned(),
                            1 => "the host pattern has 1 range: use {1}".to_owned(),
                            r => format!("the host pattern has {r} ranges: use {{1}} to {{{r}}}"),
                        };
                        return Err(err(
                            i,
                            digits + 2,
                            format!("`{{{n}}}` refers to no range ({have})"),
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Capture(n - 1));
                    i += digits + 2;
                    continue;
                }
            }
            literal.push(chars[i]);
            i += 1;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    pub fn has_captures(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Capture(_)))
    }

    /// The text with captures filled in.
    pub fn render(&self, captures: &[&str]) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Capture(i) => out.push_str(captures.get(*i).copied().unwrap_or("")),
            }
        }
        out
    }
}

/// A dotted quad whose octets carry zero padding from a capture
/// (`10.1.{1}.{2}` with `{1}` = `001`) is rewritten without it: the writer
/// meant decimal, while C resolvers would read `010` as octal 8.
/// `Err` when it looks like an IPv4 address but an octet is over 255.
pub fn tidy_ipv4(s: &str) -> Result<Cow<'_, str>, String> {
    // Fast path: most labels and names are not dotted quads (called per host).
    if !s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok(Cow::Borrowed(s));
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 || parts.iter().any(|p| p.is_empty() || p.len() > 10) {
        return Ok(Cow::Borrowed(s));
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        *o = p
            .parse::<u64>()
            .ok()
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| {
                format!("`{s}` is not a valid IPv4 address (octet `{p}` is over 255)")
            })?;
    }
    if parts.iter().any(|p| p.len() > 1 && p.starts_with('0')) {
        let [a, b, c, d] = octets;
        Ok(Cow::Owned(format!("{a}.{b}.{c}.{d}")))
    } else {
        Ok(Cow::Borrowed(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn native(text: &str) -> Vec<String> {
        HostPattern::parse(text, Syntax::Native)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .expand()
    }

    fn native_err(text: &str) -> PatternError {
        match HostPattern::parse(text, Syntax::Native) {
            Ok(p) => panic!("{text} should be refused, expands to {:?}", p.expand()),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_name_is_itself() {
        assert_eq!(native("db1.example.net"), ["db1.example.net"]);
    }

    #[test]
    fn zero_padding_is_kept() {
        assert_eq!(native("n[08-10]"), ["n08", "n09", "n10"]);
        assert_eq!(native("n[8-10]"), ["n8", "n9", "n10"]);
        assert_eq!(native("n[001-003]")[2], "n003");
    }

    #[test]
    fn lists_and_ranges_mix() {
        assert_eq!(
            native("web[1,3,5-7]"),
            ["web1", "web3", "web5", "web6", "web7"]
        );
    }

    #[test]
    fn several_ranges_first_slowest() {
        assert_eq!(
            native("r[1-2]-db[a-b].x"),
            ["r1-dba.x", "r1-dbb.x", "r2-dba.x", "r2-dbb.x"]
        );
        let p = HostPattern::parse("pg-r[001-200]-db[1-2]", Syntax::Native).unwrap();
        assert_eq!(p.count(), 400);
        assert_eq!(p.ranges(), 2);
        let names = p.expand();
        assert_eq!(names.len(), 400);
        assert_eq!(names[0], "pg-r001-db1");
        assert_eq!(names[399], "pg-r200-db2");
    }

    #[test]
    fn ansible_forms() {
        let a = |t: &str| HostPattern::parse(t, Syntax::Ansible).unwrap().expand();
        assert_eq!(a("web[01:03]"), ["web01", "web02", "web03"]);
        assert_eq!(a("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(a("n[1:9:4]"), ["n1", "n5", "n9"]);
        assert_eq!(a("n[:2]"), ["n0", "n1", "n2"]);
        assert_eq!(a("x[y:B]"), ["xy", "xz", "xA", "xB"]);
        // The native syntax accepts the colon form too.
        assert_eq!(native("web[01:02]"), ["web01", "web02"]);
        let e = HostPattern::parse("web[1-3]", Syntax::Ansible).unwrap_err();
        assert!(e.message.contains("begin:end"), "{e}");
    }

    #[test]
    fn invalid_forms_have_a_place() {
        let e = native_err("web[10-1]");
        assert_eq!((e.offset, e.len), (4, 4));
        assert_eq!(e.message, "range `10-1` runs backwards");
        let e = native_err("web[1-3");
        assert_eq!(
            (e.offset, e.message.as_str()),
            (3, "unclosed `[` in host pattern")
        );
        let e = native_err("web[]x");
        assert_eq!((e.offset, e.message.as_str()), (3, "empty range `[]`"));
        let e = native_err("web[1,,2]");
        assert_eq!(e.offset, 6);
        assert_eq!(native_err("web1]").offset, 4);
        assert!(native_err("web[01-100]").message.contains("mixes widths"));
        assert!(native_err("web[1-010]").message.contains("mixes widths"));
        assert!(native_err("web[a-5]").message.contains("numbers"));
        assert!(native_err("web[1-3,2]").message.contains("more than once"));
        assert!(native_err("web[1:5:0]").message.contains("step"));
        assert!(native_err("web[[1-2]]").message.contains("inside"));
        assert!(native_err("we b").message.contains("whitespace"));
        assert!(native_err("").message.contains("empty"));
        assert!(
            native_err("n[0-99999999999999999999]")
                .message
                .contains("too large")
        );
    }

    #[test]
    fn oversized_patterns_are_refused_before_expanding() {
        let e = native_err("n[0-999999999999]");
        assert!(e.message.contains("over the limit"), "{e}");
        // Each range alone is fine; the product is not.
        let e = native_err("a[1-1000]b[1-1000]c[1-2]");
        assert_eq!(
            e.message,
            "pattern expands to 2000000 hosts, over the limit of 1000000"
        );
        assert!(
            native_err("a[0-4294967295]b[0-4294967295]c[0-4294967295]")
                .message
                .contains("too many")
        );
        assert_eq!(native("a[1-1000]b[1-1000]").len(), 1_000_000);
    }

    #[test]
    fn templates_fill_captures() {
        let t = Template::parse("10.1.{1}.{2}", 2).unwrap();
        assert!(t.has_captures());
        assert_eq!(t.render(&["007", "2"]), "10.1.007.2");
        let t = Template::parse("{x} {} {12", 0).unwrap();
        assert_eq!(t.render(&[]), "{x} {} {12");
        let e = Template::parse("r{3}", 2).unwrap_err();
        assert_eq!((e.offset, e.len), (1, 3));
        assert_eq!(
            e.message,
            "`{3}` refers to no range (the host pattern has 2 ranges: use {1} to {2})"
        );
        assert!(Template::parse("{0}", 1).is_err());
    }

    #[test]
    fn ipv4_padding_is_tidied() {
        assert_eq!(tidy_ipv4("10.1.001.02").unwrap(), "10.1.1.2");
        assert_eq!(tidy_ipv4("10.1.010.2").unwrap(), "10.1.10.2");
        assert_eq!(tidy_ipv4("db01.example.net").unwrap(), "db01.example.net");
        assert_eq!(tidy_ipv4("1.2.3").unwrap(), "1.2.3");
        assert!(tidy_ipv4("10.1.300.2").is_err());
    }

    /// A random pattern of literals and ranges, with the names and captures it
    /// must give, built independently of the parser.
    #[allow(clippy::type_complexity)]
    fn arb_pattern() -> impl Strategy<Value = (String, Vec<(String, Vec<String>)>)> {
        let literal = "[a-z][a-z0-9.-]{0,3}";
        let range = (0u64..40, 0u64..6, prop::bool::ANY).prop_map(|(start, extra, pad)| {
            let end = start + extra;
            let width = if pad { end.to_string().len() + 1 } else { 0 };
            let text = format!("[{start:0width$}-{end:0width$}]");
            let values: Vec<String> = (start..=end).map(|v| format!("{v:0width$}")).collect();
            (text, values)
        });
        (literal, prop::collection::vec((range, "[a-z-]{0,3}"), 0..3)).prop_map(|(head, slots)| {
            let mut text = head.clone();
            let mut hosts = vec![(head, Vec::new())];
            for ((range_text, values), tail) in slots {
                text.push_str(&range_text);
                text.push_str(&tail);
                hosts = hosts
                    .iter()
                    .flat_map(|(n, caps)| {
                        let tail = tail.clone();
                        values.iter().map(move |v| {
                            let mut caps = caps.clone();
                            caps.push(v.clone());
                            (format!("{n}{v}{tail}"), caps)
                        })
                    })
                    .collect();
            }
            (text, hosts)
        })
    }

    proptest! {
        #[test]
        fn expansion_matches_the_model((text, hosts) in arb_pattern()) {
            let p = HostPattern::parse(&text, Syntax::Native).unwrap();
            prop_assert_eq!(p.count(), hosts.len() as u64);
            let mut got = Vec::new();
            p.for_each(|name, caps| {
                got.push((name.to_owned(), caps.iter().map(|c| c.to_string()).collect::<Vec<_>>()));
            });
            prop_assert_eq!(&got, &hosts);
            // A template naming every range renders the captures in order.
            let spec: Vec<String> = (1..=p.ranges()).map(|i| format!("{{{i}}}")).collect();
            let t = Template::parse(&spec.join("/"), p.ranges()).unwrap();
            for (_, caps) in &hosts {
                let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
                prop_assert_eq!(t.render(&caps), caps.join("/"));
            }
        }

        #[test]
        fn parser_never_panics(text in "[a-z0-9\\[\\]:,-]{0,24}") {
            if let Ok(p) = HostPattern::parse(&text, Syntax::Native) {
                prop_assert!(p.count() <= MAX_HOSTS_PER_PATTERN);
                if p.count() <= 10_000 {
                    prop_assert_eq!(p.expand().len() as u64, p.count());
                }
            }
            let _ = HostPattern::parse(&text, Syntax::Ansible);
        }
    }
}

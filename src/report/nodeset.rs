//! Folding host names into ranges, as ClusterShell's `nodeset -f` and pdsh's
//! dshbak do: `pg-r001-db1 pg-r002-db1 pg-r003-db1 pg-r007-db1` becomes
//! `pg-r[001-003,007]-db1`, so a thousand failed hosts read as a few lines.
//!
//! Owns only the folding. The patterns it writes are rekindle's own host
//! patterns (`inventory::pattern`, native syntax), so they expand back to
//! exactly the names folded, and `host=PATTERN` selectors accept them. It
//! must not know where the names came from.

use std::collections::{BTreeMap, BTreeSet};

/// One name split at its digit runs: literal text around numeric fields.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Split {
    /// `fields.len() + 1` literal parts (possibly empty), interleaved with the fields.
    literals: Vec<String>,
    fields: Vec<String>,
}

fn split(name: &str) -> Split {
    let mut literals = vec![String::new()];
    let mut fields = Vec::new();
    let mut in_digits = false;
    for c in name.chars() {
        let digit = c.is_ascii_digit();
        if digit && !in_digits {
            fields.push(String::new());
        } else if !digit && in_digits {
            literals.push(String::new());
        }
        in_digits = digit;
        let part = if digit {
            fields.last_mut()
        } else {
            literals.last_mut()
        };
        if let Some(part) = part {
            part.push(c);
        }
    }
    if in_digits {
        literals.push(String::new());
    }
    Split { literals, fields }
}

/// Whether a host pattern can spell `name` (no brackets, braces, commas or
/// spaces); other names are passed through unfolded.
pub fn foldable(name: &str) -> bool {
    !name.is_empty()
        && !name.chars().any(|c| {
            matches!(c, '[' | ']' | ',' | '{' | '}') || c.is_whitespace() || c.is_control()
        })
}

/// Folds `names` (duplicates ignored) into as few patterns as this method
/// finds, each listed once, sorted. Numeric fields fold one at a time, the
/// way ClusterShell folds multi-dimensional names: a field folds across
/// names whose other parts are identical, so `pg-r[001-002]-db[1-2]` means
/// every combination and nothing else.
pub fn fold<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let unique: BTreeSet<&str> = names.into_iter().collect();
    let mut out = Vec::new();
    // Names of one shape (same literals, same number of fields) fold together.
    let mut shapes: BTreeMap<Vec<String>, Vec<Vec<String>>> = BTreeMap::new();
    for name in unique {
        if !foldable(name) {
            out.push(name.to_owned());
            continue;
        }
        let s = split(name);
        shapes.entry(s.literals).or_default().push(s.fields);
    }
    for (literals, rows) in shapes {
        let dims = literals.len() - 1;
        // Try folding the last field first and the first field first; keep
        // the shorter result (ClusterShell also picks among orders).
        let backward: Vec<usize> = (0..dims).rev().collect();
        let forward: Vec<usize> = (0..dims).collect();
        let a = fold_fields(rows.clone(), &backward);
        let b = fold_fields(rows, &forward);
        let best = if b.len() < a.len() { b } else { a };
        for fields in best {
            let mut text = String::new();
            for (i, lit) in literals.iter().enumerate() {
                text.push_str(lit);
                if let Some(f) = fields.get(i) {
                    text.push_str(f);
                }
            }
            out.push(text);
        }
    }
    // In the order of each pattern's first name: `pg-r[004,011]-db2` sorts as `pg-r004-db2`.
    out.sort_by_cached_key(|p| (natural(&first_name(p)), p.clone()));
    out
}

/// The first name a folded pattern stands for (each range at its first value).
fn first_name(pattern: &str) -> String {
    let mut name = String::with_capacity(pattern.len());
    let mut in_range = false;
    let mut taking = false;
    for c in pattern.chars() {
        match c {
            '[' if !in_range => (in_range, taking) = (true, true),
            ']' if in_range => in_range = false,
            '-' | ',' if in_range => taking = false,
            c if in_range => {
                if taking {
                    name.push(c);
                }
            }
            c => name.push(c),
        }
    }
    name
}

/// `fold` joined with commas, for one line of text: `db[1-3],web[01-04]`.
pub fn fold_text<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    fold(names).join(",")
}

/// Folds each dimension in `order`: rows equal outside dimension `d` merge,
/// their `d` values becoming one range set. A folded field holds its text
/// (`[001-003,007]`, or the bare value when it is one).
fn fold_fields(mut rows: Vec<Vec<String>>, order: &[usize]) -> Vec<Vec<String>> {
    for &d in order {
        let mut groups: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for mut row in rows {
            let value = std::mem::take(&mut row[d]);
            groups.entry(row).or_default().push(value);
        }
        rows = groups
            .into_iter()
            .map(|(mut row, values)| {
                row[d] = range_set(values);
                row
            })
            .collect();
    }
    rows
}

/// `["001","002","003","007"]` -> `[001-003,007]`; one value stays bare.
/// Values are digit strings; zero padding is kept: a run continues only
/// while the next number, printed at the run's width, is the next value.
fn range_set(mut values: Vec<String>) -> String {
    if values.len() == 1 {
        return values.pop().unwrap_or_default();
    }
    let number = |s: &str| s.parse::<u128>().unwrap_or(u128::MAX);
    values.sort_by(|a, b| number(a).cmp(&number(b)).then(a.cmp(b)));
    let mut runs: Vec<(String, String)> = Vec::new();
    let mut prev: Option<(u128, usize)> = None;
    for v in values {
        let n = number(&v);
        let continues = match (prev, runs.last()) {
            (Some((p, width)), Some(_)) => {
                p.checked_add(1) == Some(n) && format!("{n:0width$}") == v
            }
            _ => false,
        };
        if continues {
            if let Some(run) = runs.last_mut() {
                run.1 = v;
            }
            prev = prev.map(|(_, w)| (n, w));
        } else {
            let width = if v.len() > 1 && v.starts_with('0') {
                v.len()
            } else {
                0
            };
            prev = Some((n, width));
            runs.push((v.clone(), v));
        }
    }
    let items: Vec<String> = runs
        .into_iter()
        .map(|(a, b)| if a == b { a } else { format!("{a}-{b}") })
        .collect();
    format!("[{}]", items.join(","))
}

/// A sort key that orders `web2` before `web10`.
fn natural(s: &str) -> Vec<(String, u128, usize)> {
    let parts = split(s);
    let mut key = Vec::with_capacity(parts.literals.len());
    for (i, lit) in parts.literals.iter().enumerate() {
        let (n, w) = parts.fields.get(i).map_or((0, 0), |f| {
            (f.parse::<u128>().unwrap_or(u128::MAX), f.len())
        });
        key.push((lit.clone(), n, w));
    }
    key
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::inventory::pattern::{HostPattern, Syntax};

    fn f(names: &[&str]) -> Vec<String> {
        fold(names.iter().copied())
    }

    fn expand(patterns: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for p in patterns {
            out.extend(
                HostPattern::parse(p, Syntax::Native)
                    .unwrap_or_else(|e| panic!("`{p}` is not a host pattern: {e}"))
                    .expand(),
            );
        }
        out
    }

    #[test]
    fn folds_like_clustershell() {
        assert_eq!(
            f(&["pg-r001-db1", "pg-r002-db1", "pg-r003-db1", "pg-r007-db1"]),
            ["pg-r[001-003,007]-db1"]
        );
        assert_eq!(
            f(&["pg-r001-db1", "pg-r001-db2", "pg-r002-db1", "pg-r002-db2"]),
            ["pg-r[001-002]-db[1-2]"]
        );
        // Not a full product: one field folds, the other stays apart.
        assert_eq!(
            f(&["pg-r001-db1", "pg-r001-db2", "pg-r002-db1"]),
            ["pg-r001-db[1-2]", "pg-r002-db1"]
        );
        assert_eq!(f(&["web9", "web10", "web11", "web2"]), ["web[2,9-11]"]);
        assert_eq!(f(&["n09", "n10", "n8"]), ["n[8,09-10]"]);
        assert_eq!(f(&["lb", "db1", "db1", "db3"]), ["db[1,3]", "lb"]);
        assert_eq!(
            f(&["web01.gasan.example.net", "web02.gasan.example.net"]),
            ["web[01-02].gasan.example.net"]
        );
        assert_eq!(fold_text(["a1", "b2", "a2"]), "a[1-2],b2");
        // Ordered by each pattern's first name.
        assert_eq!(
            f(&["pg-r016-db1", "pg-r004-db2", "pg-r011-db2"]),
            ["pg-r[004,011]-db2", "pg-r016-db1"]
        );
        assert_eq!(f(&[]), Vec::<String>::new());
    }

    #[test]
    fn names_a_pattern_cannot_spell_pass_through() {
        assert_eq!(f(&["odd[1]", "x 1", "x1"]), ["odd[1]", "x1", "x 1"]);
    }

    #[test]
    fn kakao_like_racks_fold_to_a_line_per_shape() {
        let names: Vec<String> = (1..=200)
            .flat_map(|r| (1..=2).map(move |d| format!("pg-r{r:03}-db{d}.example.net")))
            .collect();
        let folded = fold(names.iter().map(String::as_str));
        assert_eq!(folded, ["pg-r[001-200]-db[1-2].example.net"]);
    }

    fn name() -> impl Strategy<Value = String> {
        // Small alphabets so names collide, share shapes and fold.
        (
            prop::sample::select(vec!["pg-r", "web", "", "n", "as-h"]),
            0u32..40,
            prop::sample::select(vec![0usize, 0, 2, 3]),
            prop::sample::select(vec!["", "-db", ".x", "-st"]),
            prop::option::of(0u32..4),
        )
            .prop_map(|(pre, n, width, mid, tail)| {
                let mut s = format!("{pre}{n:0width$}{mid}");
                if let Some(t) = tail {
                    s.push_str(&t.to_string());
                }
                if s.is_empty() { "z".into() } else { s }
            })
    }

    proptest! {
        #[test]
        fn fold_then_expand_gives_the_same_names(names in prop::collection::vec(name(), 0..60)) {
            let set: BTreeSet<String> = names.iter().cloned().collect();
            let folded = fold(names.iter().map(String::as_str));
            let expanded = expand(&folded);
            // Every name exactly once: patterns do not overlap.
            prop_assert_eq!(expanded.len(), set.len(), "{:?} -> {:?}", set, folded);
            prop_assert_eq!(expanded.into_iter().collect::<BTreeSet<_>>(), set);
            prop_assert!(folded.len() <= names.len().max(1));
        }
    }
}

//! CSV exports from a CMDB: a header row naming the columns, one host per
//! row. `name` is required; `address`, `port`, `user` and `jump` are the
//! connection; every other column is a label (empty cells are no label).
//! Fields follow RFC 4180: commas, `"quoted, fields"`, `""` for a quote.
//! A UTF-8 byte order mark before the header (Excel's "CSV UTF-8") is
//! skipped. A column named like a secret (`password`, `*_token`, ...) is
//! never a label: labels are printed and journaled, so it is left out with a
//! warning that names the column and never its values.
//!
//! Owns that format and its diagnostics (file:line:col). It must not merge
//! files (mod.rs does).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::connection::looks_secret;
use super::pattern::tidy_ipv4;
use super::{FileInventory, Host, check_label_key, take_budget};
use crate::diag::{Diagnostic, Span};

const CONNECTION: &[&str] = &["name", "address", "port", "user", "jump"];

/// U+FEFF, which Excel writes before the header of a "CSV UTF-8" file.
const BOM: char = '\u{feff}';

/// A header row with a `name` column and at least one comma, and no INI
/// `key=value`s or `[sections]`: content that must never be read as INI.
pub(crate) fn looks_like_csv(text: &str) -> bool {
    let Some(first) = text
        .trim_start_matches(BOM)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    else {
        return false;
    };
    first.contains(',')
        && !first.starts_with('[')
        && !first.contains('=')
        && first
            .split(',')
            .any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case("name"))
}

/// One row's fields with their 1-based columns; `Err` for an unclosed quote.
fn fields(line: &str) -> Result<Vec<(String, u32)>, u32> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut col = 1u32;
    loop {
        let start = col;
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            col += 1;
            loop {
                match chars.next() {
                    None => return Err(start),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        col += 2;
                        field.push('"');
                    }
                    Some('"') => {
                        col += 1;
                        break;
                    }
                    Some(c) => {
                        col += 1;
                        field.push(c);
                    }
                }
            }
            // Anything between the closing quote and the comma is kept.
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
                col += 1;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
                col += 1;
            }
        }
        out.push((field.trim().to_owned(), start));
        if chars.next().is_none() {
            return Ok(out);
        }
        col += 1;
    }
}

pub(crate) fn read(
    file: &Arc<str>,
    text: &str,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) -> FileInventory {
    let mut out = FileInventory::default();
    let mut header: Option<Vec<(String, u32)>> = None;
    let mut name_col = 0;
    let mut secret = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n as u32 + 1;
        let raw = if n == 0 {
            raw.trim_start_matches(BOM)
        } else {
            raw
        };
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || (header.is_none() && line.trim_start().starts_with('#')) {
            continue;
        }
        let at = |col: u32, len: usize| Span::new(file.clone(), line_no, col, len.max(1) as u32);
        let row = match fields(line) {
            Ok(r) => r,
            Err(col) => {
                diags.push(Diagnostic::error(
                    "bad-csv",
                    at(col, 1),
                    "unclosed `\"` in a CSV field (CSV fields do not span lines here)",
                ));
                continue;
            }
        };
        let Some(columns) = &header else {
            let mut ok = true;
            for (i, (c, col)) in row.iter().enumerate() {
                let lower = c.to_ascii_lowercase();
                if row[..i].iter().any(|(o, _)| o.eq_ignore_ascii_case(c)) {
                    diags.push(Diagnostic::error(
                        "bad-csv",
                        at(*col, c.len()),
                        format!("column `{c}` appears twice in the header"),
                    ));
                    ok = false;
                } else if !CONNECTION.contains(&lower.as_str()) && looks_secret(c) {
                    diags.push(Diagnostic::warning(
                        "secret-column",
                        at(*col, c.len()),
                        format!("column `{c}` looks like a secret: left out (labels are printed and journaled; its values are never read as one)"),
                    ));
                    secret.push(i);
                } else if !CONNECTION.contains(&lower.as_str())
                    && let Err(e) = check_label_key(c)
                {
                    diags.push(Diagnostic::error(
                        "bad-label",
                        at(*col, c.len()),
                        format!("column `{c}` cannot be a label: {e}"),
                    ));
                    ok = false;
                }
            }
            match row.iter().position(|(c, _)| c.eq_ignore_ascii_case("name")) {
                Some(i) => name_col = i,
                None => {
                    diags.push(Diagnostic::error(
                        "bad-csv",
                        at(1, line.len()),
                        "the CSV header has no `name` column",
                    ));
                    return out;
                }
            }
            if !ok {
                return out;
            }
            header = Some(row);
            continue;
        };
        if row.len() != columns.len() {
            diags.push(Diagnostic::error(
                "bad-csv",
                at(1, line.chars().count()),
                format!(
                    "row has {} fields, the header has {}",
                    row.len(),
                    columns.len()
                ),
            ));
            continue;
        }
        let (name, name_at) = &row[name_col];
        let name_span = at(*name_at, name.chars().count());
        if name.is_empty() || name.contains(char::is_whitespace) {
            diags.push(Diagnostic::error(
                "bad-host",
                name_span,
                format!("`{name}` is not a host name"),
            ));
            continue;
        }
        if !take_budget(budget, 1, &name_span, diags) {
            return out;
        }
        let mut host = Host {
            name: name.clone(),
            address: name.clone(),
            port: 22,
            user: None,
            jump: None,
            labels: BTreeMap::new(),
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: Vec::new(),
            span: name_span,
        };
        for (i, ((column, _), (value, col))) in columns.iter().zip(&row).enumerate() {
            if value.is_empty() || secret.contains(&i) {
                continue;
            }
            match column.to_ascii_lowercase().as_str() {
                "name" => {}
                "address" => {
                    host.address =
                        tidy_ipv4(value).map_or_else(|_| value.clone(), |t| t.into_owned());
                }
                "port" => match value.parse::<u16>() {
                    Ok(p) if p > 0 => host.port = p,
                    _ => diags.push(Diagnostic::error(
                        "wrong-type",
                        at(*col, value.chars().count()),
                        format!("port `{value}` is not a port number (1-65535)"),
                    )),
                },
                "user" => host.user = Some(value.clone()),
                "jump" => host.jump = Some(value.clone()),
                _ => {
                    host.labels.insert(column.clone(), value.clone());
                }
            }
        }
        out.hosts.push(host);
    }
    if header.is_none() {
        diags.push(Diagnostic::error(
            "bad-csv",
            Span::file(file.clone()),
            "the CSV file has no header row",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4180_fields() {
        let f = |l: &str| {
            fields(l)
                .unwrap()
                .into_iter()
                .map(|(f, _)| f)
                .collect::<Vec<_>>()
        };
        assert_eq!(f("a,b,c"), ["a", "b", "c"]);
        assert_eq!(f(r#"a,"b, c","say ""hi""""#), ["a", "b, c", r#"say "hi""#]);
        assert_eq!(f("a,,"), ["a", "", ""]);
        assert_eq!(fields(r#"a,"b"#).unwrap_err(), 3);
        assert_eq!(fields("ab,cd").unwrap()[1].1, 4);
    }

    #[test]
    fn detection() {
        assert!(looks_like_csv("name,address,role\nweb1,10.0.0.1,web\n"));
        assert!(looks_like_csv("# export\nhostname,Name\n"));
        assert!(!looks_like_csv("[web]\nname,x\n"));
        assert!(!looks_like_csv("web1 a=1,2\n"));
        assert!(!looks_like_csv("web1,web2\n"));
    }
}

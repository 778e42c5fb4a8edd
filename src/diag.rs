//! Diagnostics: source spans, the source cache, and rendering problems as
//! `file:line:col: severity: message` with the offending line and a caret.
//!
//! Owns how every input problem looks to a user (text, JSON, GitHub
//! annotations, SARIF). It must not decide *what* is a problem: parsers and
//! validators build [`Diagnostic`]s, this module only stores and renders them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

/// A place in a source file. Lines and columns are 1-based; `len` is the
/// number of characters to underline (at least one is drawn).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

impl Span {
    pub fn new(file: Arc<str>, line: u32, col: u32, len: u32) -> Self {
        Span {
            file,
            line,
            col,
            len,
        }
    }

    /// A span covering a whole file, for problems with no better place.
    pub fn file(file: Arc<str>) -> Self {
        Span::new(file, 0, 0, 0)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in the input. `code` is a stable kebab-case identifier
/// (`unknown-key`, `dependency-cycle`, ...) that JSON consumers can match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub span: Option<Span>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(
        code: &'static str,
        span: impl Into<Option<Span>>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: span.into(),
            help: None,
        }
    }

    pub fn warning(
        code: &'static str,
        span: impl Into<Option<Span>>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// True when any diagnostic is an error (warnings alone keep input valid).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

/// The nearest candidate to `word`, if one is close enough to be a typo:
/// at most 2 edits (a third of a long name), and fewer edits than half the
/// longer name, so `dbs` never suggests `b`.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let chars = |s: &str| s.chars().count();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d <= 2.max(chars(c) / 3) && 2 * d < chars(word).max(chars(c)))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// The text of every file read, so diagnostics can quote their line.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: HashMap<Arc<str>, Arc<str>>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers `text` under `name` and returns the shared name to put in spans.
    pub fn add(&mut self, name: &str, text: Arc<str>) -> Arc<str> {
        let name: Arc<str> = Arc::from(name);
        self.files.insert(name.clone(), text);
        name
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.files.get(name).map(|t| &**t)
    }

    fn line(&self, span: &Span) -> Option<&str> {
        if span.line == 0 {
            return None;
        }
        self.text(&span.file)?.lines().nth(span.line as usize - 1)
    }
}

/// Sorts by file, line, column, then severity, and drops exact duplicates.
pub fn sort(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        let key = |d: &Diagnostic| {
            d.span
                .as_ref()
                .map(|s| (s.file.clone(), s.line, s.col))
                .unwrap_or_else(|| (Arc::from(""), 0, 0))
        };
        key(a).cmp(&key(b)).then(a.severity.cmp(&b.severity))
    });
    diags.dedup();
}

/// Compiler-style text: location, severity, message, the source line and a caret.
pub fn render_text(sources: &Sources, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        match &d.span {
            Some(span) => {
                let _ = writeln!(out, "{span}: {}: {}", d.severity.as_str(), d.message);
            }
            None => {
                let _ = writeln!(out, "{}: {}", d.severity.as_str(), d.message);
            }
        }
        if let Some(span) = &d.span
            && let Some(line) = sources.line(span)
        {
            let number = span.line.to_string();
            let pad = " ".repeat(number.len());
            let line = line.replace('\t', " ");
            let col = (span.col.max(1) - 1) as usize;
            let width =
                (span.len.max(1) as usize).min(line.chars().count().saturating_sub(col).max(1));
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{number} | {line}");
            let _ = writeln!(out, "{pad} | {}{}", " ".repeat(col), "^".repeat(width));
        }
        if let Some(help) = &d.help {
            let _ = writeln!(out, "  = help: {help}");
        }
    }
    out
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    file: Option<&'a str>,
    line: Option<u32>,
    column: Option<u32>,
    severity: Severity,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
}

/// A JSON array of `{file, line, column, severity, code, message, help?}`.
pub fn render_json(diags: &[Diagnostic]) -> String {
    let items: Vec<JsonDiagnostic<'_>> = diags
        .iter()
        .map(|d| JsonDiagnostic {
            file: d.span.as_ref().map(|s| &*s.file),
            line: d.span.as_ref().filter(|s| s.line > 0).map(|s| s.line),
            column: d.span.as_ref().filter(|s| s.line > 0).map(|s| s.col),
            severity: d.severity,
            code: d.code,
            message: &d.message,
            help: d.help.as_deref(),
        })
        .collect();
    serde_json::to_string_pretty(&items).expect("diagnostics serialize") + "\n"
}

/// A SARIF 2.1.0 log (the OASIS static-analysis format GitHub code scanning
/// reads): one run of the tool `rekindle`, one rule per diagnostic code seen
/// (rule id = the code), one result per diagnostic with its level, message
/// (and help) and, when it has one, its file, line and column. Columns count
/// characters, as everywhere in rekindle, so the run says
/// `columnKind: unicodeCodePoints`.
pub fn render_sarif(diags: &[Diagnostic]) -> String {
    use serde_json::{Value, json};
    let mut rules: Vec<&str> = diags.iter().map(|d| d.code).collect();
    rules.sort_unstable();
    rules.dedup();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(help) => format!("{}\nhelp: {help}", d.message),
                None => d.message.clone(),
            };
            let mut result = json!({
                "ruleId": d.code,
                "ruleIndex": rules.binary_search(&d.code).expect("every code is a rule"),
                "level": d.severity.as_str(),
                "message": { "text": text },
            });
            if let Some(span) = &d.span {
                let mut physical = json!({ "artifactLocation": { "uri": file_uri(&span.file) } });
                if span.line > 0 {
                    physical["region"] = json!({
                        "startLine": span.line,
                        "startColumn": span.col.max(1),
                        "endColumn": span.col.max(1) + span.len.max(1),
                    });
                }
                result["locations"] = json!([{ "physicalLocation": physical }]);
            }
            result
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "rekindle",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules.iter().map(|id| json!({
                    "id": id,
                    "shortDescription": { "text": format!("rekindle diagnostic `{id}`") },
                })).collect::<Vec<_>>(),
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&log).expect("SARIF serializes") + "\n"
}

/// A file name as a SARIF artifact URI: a relative path stays relative (code
/// scanning resolves it against the checkout), an absolute one becomes a
/// `file://` URI; anything but unreserved characters and `/` is
/// percent-encoded.
fn file_uri(path: &str) -> String {
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// GitHub Actions workflow commands (`::error file=..,line=..,col=..::msg`).
pub fn render_github(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str(&format!(" (help: {help})"));
        }
        let _ = write!(out, "::{} ", d.severity.as_str());
        let mut props = vec![format!("title={}", escape_property(d.code))];
        if let Some(s) = &d.span {
            props.insert(0, format!("file={}", escape_property(&s.file)));
            if s.line > 0 {
                props.insert(1, format!("line={},col={}", s.line, s.col));
            }
        }
        let _ = writeln!(out, "{}::{}", props.join(","), escape_data(&message));
    }
    out
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// What `rekindle validate` says of one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
    Unreadable,
}

/// A file's verdict from its diagnostics.
pub fn verdict(diags: &[Diagnostic]) -> Verdict {
    if diags.iter().any(|d| d.code == "unreadable") {
        Verdict::Unreadable
    } else if has_errors(diags) {
        Verdict::Invalid
    } else {
        Verdict::Valid
    }
}

impl Verdict {
    /// `valid (2 warnings)`, `invalid (1 error)`, `unreadable`.
    pub fn describe(&self, diags: &[Diagnostic]) -> String {
        let count = |sev| diags.iter().filter(|d| d.severity == sev).count();
        let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
        let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
        match self {
            Verdict::Unreadable => "unreadable".into(),
            Verdict::Invalid if warnings > 0 => {
                format!(
                    "invalid ({}, {})",
                    n(errors, "error"),
                    n(warnings, "warning")
                )
            }
            Verdict::Invalid => format!("invalid ({})", n(errors, "error")),
            Verdict::Valid if warnings > 0 => format!("valid ({})", n(warnings, "warning")),
            Verdict::Valid => "valid".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_quotes_the_line_with_a_caret() {
        let mut sources = Sources::new();
        let file = sources.add("p.yaml", Arc::from("a: 1\nparalel: 2\n"));
        let d = Diagnostic::error(
            "unknown-key",
            Span::new(file, 2, 1, 7),
            "unknown key `paralel`",
        )
        .with_help("did you mean `parallel`?");
        assert_eq!(
            render_text(&sources, &[d]),
            "p.yaml:2:1: error: unknown key `paralel`\n  |\n2 | paralel: 2\n  | ^^^^^^^\n  = help: did you mean `parallel`?\n"
        );
    }

    #[test]
    fn suggest_finds_typos_only() {
        let keys = ["parallel", "rate", "select"];
        assert_eq!(suggest("paralel", keys), Some("parallel"));
        assert_eq!(suggest("selcet", keys), Some("select"));
        assert_eq!(suggest("banana", keys), None);
    }

    #[test]
    fn suggest_only_close_names() {
        // Regression: an unknown stage `dbs` suggested the stage `b`.
        assert_eq!(suggest("dbs", ["a", "b"]), None);
        assert_eq!(suggest("dbs", ["b", "db"]), Some("db"));
        assert_eq!(suggest("ab", ["xy"]), None);
        assert_eq!(suggest("netwrk", ["network", "storage"]), Some("network"));
    }

    #[test]
    fn sarif_has_rules_results_and_regions() {
        let file: Arc<str> = Arc::from("dir/a b.yaml");
        let diags = [
            Diagnostic::error(
                "unknown-key",
                Span::new(file.clone(), 2, 3, 7),
                "unknown key",
            )
            .with_help("did you mean `parallel`?"),
            Diagnostic::warning("deprecated", Span::file(file), "old"),
            Diagnostic::error("bad", None, "no place"),
        ];
        let log: serde_json::Value = serde_json::from_str(&render_sarif(&diags)).unwrap();
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        let ids: Vec<&str> = run["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["bad", "deprecated", "unknown-key"]);
        let first = &run["results"][0];
        assert_eq!(first["ruleId"], "unknown-key");
        assert_eq!(first["ruleIndex"], 2);
        assert_eq!(first["level"], "error");
        assert_eq!(
            first["message"]["text"],
            "unknown key\nhelp: did you mean `parallel`?"
        );
        let location = &first["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "dir/a%20b.yaml");
        assert_eq!(location["region"]["startLine"], 2);
        assert_eq!(location["region"]["startColumn"], 3);
        assert_eq!(location["region"]["endColumn"], 10);
        assert!(run["results"][1]["locations"][0]["physicalLocation"]["region"].is_null());
        assert!(run["results"][2]["locations"].is_null());
        assert_eq!(file_uri("/abs/p.yaml"), "file:///abs/p.yaml");
    }

    #[test]
    fn github_escapes_properties() {
        let d = Diagnostic::warning("x", Span::new(Arc::from("a,b.yaml"), 3, 4, 1), "50%\nbad");
        assert_eq!(
            render_github(&[d]),
            "::warning file=a%2Cb.yaml,line=3,col=4,title=x::50%25%0Abad\n"
        );
    }
}

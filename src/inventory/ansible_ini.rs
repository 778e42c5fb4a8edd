//! Ansible INI inventories, read as Ansible's `ini` inventory plugin reads
//! them: hosts before any section are `ungrouped`; `[g]`, `[g:children]`,
//! `[g:vars]`; host lines are split like `shlex` (quotes, `#` comments);
//! values are typed like Python's `ast.literal_eval` (`'5'` is a string,
//! `5` a number, `True` a boolean).
//!
//! Owns the INI syntax and its diagnostics (file:line:col). Groups,
//! precedence and the mapping onto hosts belong to `ansible.rs`.

use std::sync::Arc;

use super::ansible::{Model, UNGROUPED, Var, split_port};
use super::pattern::{HostPattern, PatternError, Syntax};
use super::take_budget;
use crate::diag::{Diagnostic, Span};

#[derive(Clone, Copy, PartialEq)]
enum State {
    Hosts,
    Children,
    Vars,
}

/// A group named before this file declared it (Ansible's `pending_declarations`).
enum Pending {
    /// `[g:vars]` of a group not (yet) declared.
    Vars(Span),
    /// `[p:children]` entries naming `g`: (parent, place).
    Children(Vec<(usize, Span)>),
}

/// Reads one INI file into `model`, which may already hold other sources'
/// groups: a group they declared counts as declared here, as in Ansible.
pub(crate) fn read(
    model: &mut Model,
    file: &Arc<str>,
    text: &str,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) {
    let mut group = UNGROUPED;
    let mut state = State::Hosts;
    let mut pending: Vec<(String, Pending)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n as u32 + 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        let col = raw[..indent].chars().count() as u32 + 1;
        let at = |offset: usize, len: usize| {
            Span::new(
                file.clone(),
                line_no,
                col + offset as u32,
                len.max(1) as u32,
            )
        };
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((name, kind)) = section(line) {
            let span = at(1, name.chars().count());
            state = match kind {
                None | Some("hosts") => State::Hosts,
                Some("children") => State::Children,
                Some("vars") => State::Vars,
                Some(other) => {
                    diags.push(
                        Diagnostic::error(
                            "bad-section",
                            at(0, line.chars().count()),
                            format!("section [{name}:{other}] has unknown type `{other}`"),
                        )
                        .with_help("a section is [group], [group:children] or [group:vars]"),
                    );
                    State::Hosts
                }
            };
            let waiting = pending.iter().position(|(g, _)| g == name);
            if !model.has_group(name) && state == State::Vars && waiting.is_none() {
                pending.push((name.to_owned(), Pending::Vars(span)));
            }
            group = model.group(name);
            if state != State::Vars
                && let Some(i) = waiting
            {
                declare(model, &mut pending, i, diags);
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            diags.push(Diagnostic::error(
                "bad-section",
                at(0, line.chars().count()),
                format!("invalid section `{line}`: a section is [group], [group:children] or [group:vars], without spaces"),
            ));
            continue;
        }
        match state {
            State::Hosts => host_line(model, group, line, &at, budget, diags),
            State::Vars => match line.split_once('=') {
                Some((k, v)) => {
                    let (k, v) = (k.trim(), v.trim());
                    model.set_group_var(group, k, literal(v), at(0, k.chars().count()));
                }
                None => diags.push(Diagnostic::error(
                    "bad-variable",
                    at(0, line.chars().count()),
                    format!("expected key=value in a [:vars] section, found `{line}`"),
                )),
            },
            State::Children => {
                let name = line.split('#').next().unwrap_or("").trim();
                if name.is_empty()
                    || name.contains([':', ']'])
                    || name.contains(char::is_whitespace)
                {
                    diags.push(Diagnostic::error(
                        "bad-group",
                        at(0, line.chars().count()),
                        format!("expected a group name in a [:children] section, found `{line}`"),
                    ));
                    continue;
                }
                let span = at(0, name.chars().count());
                match model.find_group(name) {
                    Some(child) => {
                        if let Err(e) = model.add_child(group, child) {
                            diags.push(Diagnostic::error("group-loop", span, e));
                        }
                    }
                    None => match pending.iter_mut().find(|(g, _)| g == name) {
                        Some((_, Pending::Children(parents))) => parents.push((group, span)),
                        // `[g:vars]` adds g to the inventory: not reachable.
                        Some((_, Pending::Vars(_))) => {}
                        None => {
                            pending.push((name.to_owned(), Pending::Children(vec![(group, span)])))
                        }
                    },
                }
            }
        }
    }
    // Whatever is still pending was never declared in this file or before it.
    for (name, p) in pending {
        match p {
            Pending::Vars(span) => diags.push(
                Diagnostic::error(
                    "undefined-group",
                    span,
                    format!("section [{name}:vars] is for group `{name}`, which is never defined"),
                )
                .with_help(format!("declare it with a [{name}] section")),
            ),
            Pending::Children(parents) => {
                for (parent, span) in parents {
                    diags.push(
                        Diagnostic::error(
                            "undefined-group",
                            span,
                            format!(
                                "[{}:children] includes undefined group `{name}`",
                                model.group_name(parent)
                            ),
                        )
                        .with_help(format!("declare it with a [{name}] section")),
                    );
                }
            }
        }
    }
}

/// The group `pending[i]` is declared now: its waiting parents adopt it.
fn declare(
    model: &mut Model,
    pending: &mut Vec<(String, Pending)>,
    i: usize,
    diags: &mut Vec<Diagnostic>,
) {
    let (name, p) = pending.remove(i);
    let Pending::Children(parents) = p else {
        return;
    };
    let child = model.group(&name);
    for (parent, span) in parents {
        if let Err(e) = model.add_child(parent, child) {
            diags.push(Diagnostic::error("group-loop", span, e));
        }
    }
}

/// `[name]` or `[name:kind]`, with an optional trailing `# comment`.
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let close = rest.find(']')?;
    let (inside, after) = (&rest[..close], rest[close + 1..].trim());
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let (name, kind) = match inside.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inside, None),
    };
    let name_ok = !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains(']');
    let kind_ok =
        kind.is_none_or(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && kind_ok).then_some((name, kind))
}

fn host_line(
    model: &mut Model,
    group: usize,
    line: &str,
    at: &dyn Fn(usize, usize) -> Span,
    budget: &mut u64,
    diags: &mut Vec<Diagnostic>,
) {
    let tokens = match shlex(line) {
        Ok(t) => t,
        Err(e) => {
            diags.push(Diagnostic::error(
                "bad-host",
                at(0, line.chars().count()),
                e,
            ));
            return;
        }
    };
    let Some((first, first_at)) = tokens.first() else {
        return;
    };
    let span = at(*first_at, first.chars().count());
    if line.starts_with("{{") || line.starts_with("{%") {
        diags.push(Diagnostic::error(
            "bad-pattern",
            at(0, line.chars().count()),
            "host names cannot be Jinja templates: templates are evaluated in variable values (e.g. ansible_host), not in names",
        ));
        return;
    }
    if first.contains(',') {
        diags.push(
            Diagnostic::error(
                "bad-host",
                span,
                format!("host name `{first}` contains `,`"),
            )
            .with_help(
                "a CSV export needs a header row naming a `name` column (or a .csv file name)",
            ),
        );
        return;
    }
    let (pattern_text, port) = match split_port(first) {
        Ok(p) => p,
        Err(e) => {
            diags.push(Diagnostic::error("bad-host", span, e));
            return;
        }
    };
    let pattern = match HostPattern::parse(pattern_text, Syntax::Ansible) {
        Ok(p) => p,
        Err(PatternError {
            offset,
            len,
            message,
        }) => {
            diags.push(Diagnostic::error(
                "bad-pattern",
                at(first_at + offset, len),
                message,
            ));
            return;
        }
    };
    let mut vars = Vec::new();
    for (token, offset) in &tokens[1..] {
        match token.split_once('=') {
            Some((k, v)) => vars.push((k.to_owned(), literal(v), at(*offset, k.chars().count()))),
            None => diags.push(Diagnostic::error(
                "bad-variable",
                at(*offset, token.chars().count()),
                format!("expected key=value after the host name, found `{token}`"),
            )),
        }
    }
    if !take_budget(budget, pattern.count(), &span, diags) {
        return;
    }
    pattern.for_each(|name, _| {
        let h = model.add_host(name, group, &span);
        if let Some(p) = port {
            model.set_host_var(h, "ansible_port", Var::Scalar(p.to_string()), span.clone());
        }
        for (k, v, s) in &vars {
            model.set_host_var(h, k, v.clone(), s.clone());
        }
    });
}

/// POSIX `shlex.split(line, comments=True)`: words with their character
/// offsets; quotes group, backslash escapes, `#` starts a comment.
fn shlex(line: &str) -> Result<Vec<(String, usize)>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().enumerate().peekable();
    let mut word: Option<(String, usize)> = None;
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '#' => break,
            '\'' | '"' => {
                let w = word.get_or_insert_with(|| (String::new(), i));
                let mut closed = false;
                while let Some((_, q)) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if c == '"'
                        && q == '\\'
                        && let Some(&(_, e @ ('\\' | '"' | '$' | '`' | '\n'))) = chars.peek()
                    {
                        w.0.push(e);
                        chars.next();
                        continue;
                    }
                    w.0.push(q);
                }
                if !closed {
                    return Err(format!("no closing quotation in `{line}`"));
                }
            }
            '\\' => {
                let w = word.get_or_insert_with(|| (String::new(), i));
                match chars.next() {
                    Some((_, e)) => w.0.push(e),
                    None => return Err(format!("no escaped character at the end of `{line}`")),
                }
            }
            c => word.get_or_insert_with(|| (String::new(), i)).0.push(c),
        }
    }
    if let Some(w) = word.take() {
        words.push(w);
    }
    Ok(words)
}

/// Python's `ast.literal_eval` as far as inventories need it; what it would
/// refuse stays the raw string, as in Ansible.
pub(crate) fn literal(v: &str) -> Var {
    let v = v.trim();
    if let Some(var) = python_literal(v) {
        return var;
    }
    // `ast` ignores a trailing comment after a literal: `1  # one`.
    if let Some(code) = strip_comment(v)
        && let Some(var) = python_literal(code.trim())
    {
        return var;
    }
    Var::Scalar(v.to_owned())
}

fn strip_comment(v: &str) -> Option<&str> {
    let mut quote = None;
    for (i, c) in v.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return Some(&v[..i]),
            _ => {}
        }
    }
    None
}

fn python_literal(v: &str) -> Option<Var> {
    match v {
        "True" => return Some(Var::Scalar("true".into())),
        "False" => return Some(Var::Scalar("false".into())),
        "None" => return Some(Var::Null),
        _ => {}
    }
    let first = v.chars().next()?;
    if (first == '\'' || first == '"') && v.len() >= 2 && v.ends_with(first) {
        let inner = &v[1..v.len() - 1];
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == first {
                // An unescaped quote inside: not one string literal.
                return None;
            }
            if c == '\\' {
                match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    e => out.push(e),
                }
            } else {
                out.push(c);
            }
        }
        return Some(Var::Scalar(out));
    }
    // `{{ x }}` is no Python literal (`ast` refuses a set of sets): a template string.
    if matches!(first, '[' | '{' | '(') && !super::template::is_template(v) {
        let last = v.chars().last()?;
        let pair = matches!((first, last), ('[', ']') | ('{', '}') | ('(', ')'));
        return pair.then_some(Var::Complex);
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
        && digits.starts_with(|c: char| c.is_ascii_digit())
        && !digits.ends_with('_')
        && !digits.contains("__")
    {
        let clean: String = digits.chars().filter(|&c| c != '_').collect();
        // Python 3 refuses `0755`: it stays a string.
        if clean.len() > 1 && clean.starts_with('0') && clean.chars().any(|c| c != '0') {
            return None;
        }
        let n: i128 = clean.parse().ok()?;
        let n = if v.starts_with('-') { -n } else { n };
        return Some(Var::Scalar(n.to_string()));
    }
    if digits.contains(['.', 'e', 'E'])
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        && let Ok(f) = v.parse::<f64>()
    {
        let mut text = f.to_string();
        if f.is_finite() && !text.contains(['.', 'e', 'E']) {
            text.push_str(".0");
        }
        return Some(Var::Scalar(text));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shlex_like_python() {
        let w =
            |s: &str| -> Vec<String> { shlex(s).unwrap().into_iter().map(|(w, _)| w).collect() };
        assert_eq!(w("h1 a=1 b='x y' # c"), ["h1", "a=1", "b=x y"]);
        assert_eq!(w(r#"h "a\"b" c\ d"#), ["h", "a\"b", "c d"]);
        assert_eq!(w("h1#x y"), ["h1"]);
        assert_eq!(shlex("h1 a=1").unwrap()[1].1, 3);
        assert!(shlex("h 'open").is_err());
    }

    #[test]
    fn literals_like_ast() {
        let s = |v: &str| match literal(v) {
            Var::Scalar(s) => s,
            other => format!("{other:?}"),
        };
        assert_eq!(s("22"), "22");
        assert_eq!(s("'22'"), "22");
        assert_eq!(s("1_000"), "1000");
        assert_eq!(s("0755"), "0755");
        assert_eq!(s("True"), "true");
        assert_eq!(s("yes"), "yes");
        assert_eq!(s("None"), "Null");
        assert_eq!(s("[1, 2]"), "Complex");
        assert_eq!(s("1 # one"), "1");
        assert_eq!(s("a b # c"), "a b # c");
        assert_eq!(s("1.5"), "1.5");
        assert_eq!(s("10.0.0.1"), "10.0.0.1");
        assert_eq!(s("-3"), "-3");
    }

    proptest::proptest! {
        #[test]
        fn any_text_reads_without_panicking(text in "([\\[\\]a-c0-2:=#;'\" \\\\]{0,12}\n){0,8}") {
            let mut diags = Vec::new();
            let mut budget = crate::inventory::MAX_HOSTS;
            let file: Arc<str> = Arc::from("t.ini");
            let mut model = Model::new();
            read(&mut model, &file, &text, &mut budget, &mut diags);
            let _ = model.resolve(0, &mut diags);
        }
    }

    #[test]
    fn sections() {
        assert_eq!(section("[web]"), Some(("web", None)));
        assert_eq!(section("[web:vars] # x"), Some(("web", Some("vars"))));
        assert_eq!(section("[web prod]"), None);
        assert_eq!(section("[web]x"), None);
    }
}

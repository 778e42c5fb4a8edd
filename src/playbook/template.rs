//! Placeholders in step commands and URLs: `{name}`, `{address}`, `{port}`,
//! `{label.KEY}`; `{{` and `}}` stand for literal braces.
//!
//! Owns the placeholder syntax, its validation and substitution (shell-quoted
//! for commands), the parsed [`Template`] that steps keep (parsed once, while
//! the playbook is read; the engine expands that same parse), and the rule that a command's placeholder stands outside
//! the author's own quotes (inside them, rekindle's quoting would be undone).
//! It must not run anything.

use crate::inventory::Host;

/// One piece of a command or URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// A literal `{` or `}` written as `{{` or `}}`.
    Brace(char),
    Name,
    Address,
    Port,
    Label(&'a str),
}

/// A malformed placeholder, with its 0-based character offset in the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    /// How to write it instead, when there is a clear way.
    pub help: Option<String>,
}

/// Splits a template into pieces, refusing unknown or unterminated placeholders.
pub fn parse(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while !rest.is_empty() {
        let Some(at) = rest.find(['{', '}']) else {
            pieces.push(Piece::Text(rest));
            break;
        };
        if at > 0 {
            pieces.push(Piece::Text(&rest[..at]));
        }
        let chars_before = offset + rest[..at].chars().count();
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            pieces.push(Piece::Brace(tail.as_bytes()[0] as char));
            offset = chars_before + 2;
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(TemplateError {
                offset: chars_before,
                len: 1,
                message: "unmatched `}` (write `}}` for a literal brace)".into(),
                help: None,
            });
        }
        let Some(end) = tail.find('}') else {
            return Err(TemplateError {
                offset: chars_before,
                len: tail.chars().count(),
                message: "unterminated placeholder `{` (write `{{` for a literal brace)".into(),
                help: None,
            });
        };
        let inner = &tail[1..end];
        let len = inner.chars().count() + 2;
        let piece = match inner {
            "name" => Piece::Name,
            "address" => Piece::Address,
            "port" => Piece::Port,
            _ => match inner.strip_prefix("label.") {
                Some(key) if valid_label_key(key) => Piece::Label(key),
                Some(_) => {
                    return Err(TemplateError {
                        offset: chars_before,
                        len,
                        message: format!(
                            "placeholder `{{{inner}}}` needs a label key of letters, digits, `_`, `-` or `.`"
                        ),
                        help: None,
                    });
                }
                None => {
                    let hint = crate::diag::suggest(inner, ["name", "address", "port"])
                        .map(|s| format!("did you mean `{{{s}}}`? "))
                        .unwrap_or_default();
                    return Err(TemplateError {
                        offset: chars_before,
                        len,
                        message: format!(
                            "unknown placeholder `{{{inner}}}`: {hint}placeholders are {{name}}, {{address}}, {{port}} and {{label.KEY}}; write `{{{{` and `}}}}` for literal braces"
                        ),
                        help: None,
                    });
                }
            },
        };
        pieces.push(piece);
        offset = chars_before + len;
        rest = &tail[end + 1..];
    }
    Ok(pieces)
}

/// Parses a template for where its values go: for [`Quote::Shell`] (a
/// command) it also refuses a placeholder inside single, double or `$'...'`
/// quotes, or right after a backslash. rekindle writes each value as one
/// shell word, already quoted; inside the author's quotes that quoting is
/// undone, and a value like `$(...)` would run. Conservative: inside `"$(...)"`
/// a placeholder is refused too.
pub fn parse_for(template: &str, quote: Quote) -> Result<Vec<Piece<'_>>, TemplateError> {
    let pieces = parse(template)?;
    if quote == Quote::Shell {
        check_shell_quoting(&pieces)?;
    }
    Ok(pieces)
}

/// Where a shell reading the command stands, character by character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    None,
    Single,
    Double,
    /// `$'...'`: like single quotes, but a backslash escapes.
    AnsiC,
}

fn check_shell_quoting(pieces: &[Piece<'_>]) -> Result<(), TemplateError> {
    let mut state = Quoting::None;
    // The next character is escaped by a backslash.
    let mut escaped = false;
    let mut offset = 0;
    for piece in pieces {
        let len = piece_len(piece);
        match piece {
            Piece::Text(t) => {
                let mut prev = None;
                for c in t.chars() {
                    if escaped {
                        escaped = false;
                    } else {
                        state = match (state, c) {
                            (Quoting::None | Quoting::Double | Quoting::AnsiC, '\\') => {
                                escaped = true;
                                state
                            }
                            (Quoting::None, '\'') if prev == Some('$') => Quoting::AnsiC,
                            (Quoting::None, '\'') => Quoting::Single,
                            (Quoting::None, '"') => Quoting::Double,
                            (Quoting::Single | Quoting::AnsiC, '\'') | (Quoting::Double, '"') => {
                                Quoting::None
                            }
                            (s, _) => s,
                        };
                    }
                    prev = Some(c);
                }
            }
            Piece::Brace(_) => escaped = false,
            _ => {
                let written = placeholder_text(piece);
                let (why, help) = match (state, escaped) {
                    (Quoting::None, false) => {
                        offset += len;
                        continue;
                    }
                    (Quoting::None, true) => (
                        "right after a backslash".to_owned(),
                        format!("remove the backslash before `{written}`"),
                    ),
                    (q, _) => (
                        format!(
                            "inside {} quotes",
                            match q {
                                Quoting::Double => "double",
                                Quoting::AnsiC => "`$'...'`",
                                _ => "single",
                            }
                        ),
                        format!(
                            "close the quotes before `{written}` and open them again after it if needed, e.g. `echo \"host=\"{written}`"
                        ),
                    ),
                };
                return Err(TemplateError {
                    offset,
                    len,
                    message: format!(
                        "placeholder `{written}` is {why}: rekindle shell-quotes every value itself, and this undoes that quoting (a value such as `$(...)` would run)"
                    ),
                    help: Some(help),
                });
            }
        }
        offset += len;
    }
    Ok(())
}

/// A placeholder as written in the template.
fn placeholder_text(piece: &Piece<'_>) -> String {
    match piece {
        Piece::Text(t) => (*t).to_owned(),
        Piece::Brace(c) => format!("{c}{c}"),
        Piece::Name => "{name}".into(),
        Piece::Address => "{address}".into(),
        Piece::Port => "{port}".into(),
        Piece::Label(k) => format!("{{label.{k}}}"),
    }
}

/// A piece's length in characters of the template.
fn piece_len(piece: &Piece<'_>) -> usize {
    placeholder_text(piece).chars().count()
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

/// How substituted host values are written into the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// POSIX single-quoted, for commands run by a shell.
    Shell,
    /// Percent-encoded (everything but RFC 3986 unreserved characters), for URLs.
    Url,
    /// As is.
    None,
}

/// A command or URL with placeholders, parsed once: validation builds it
/// (refusing what [`parse_for`] refuses) and the engine expands it per host
/// from the parsed form, so what validated is exactly what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    quote: Quote,
    parts: Vec<Part>,
}

/// A parsed piece that owns its text; literal braces are already single.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Name,
    Address,
    Port,
    Label(String),
}

impl Template {
    /// Parses `text` for where its values go ([`parse_for`]).
    pub fn new(text: impl Into<String>, quote: Quote) -> Result<Self, TemplateError> {
        let text = text.into();
        let mut parts: Vec<Part> = Vec::new();
        for piece in parse_for(&text, quote)? {
            let literal = match piece {
                Piece::Text(t) => t,
                Piece::Brace('{') => "{",
                Piece::Brace(_) => "}",
                Piece::Name => {
                    parts.push(Part::Name);
                    continue;
                }
                Piece::Address => {
                    parts.push(Part::Address);
                    continue;
                }
                Piece::Port => {
                    parts.push(Part::Port);
                    continue;
                }
                Piece::Label(k) => {
                    parts.push(Part::Label(k.to_owned()));
                    continue;
                }
            };
            match parts.last_mut() {
                Some(Part::Text(t)) => t.push_str(literal),
                _ => parts.push(Part::Text(literal.to_owned())),
            }
        }
        Ok(Template { text, quote, parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn quote(&self) -> Quote {
        self.quote
    }

    /// Label keys the template refers to, in order.
    pub fn label_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Label(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// `host`'s values substituted: `{{`/`}}` are single braces, each value
    /// one shell word (or percent-encoded in a URL). A label the host lacks
    /// is an error, never an empty word in a command.
    pub fn expand(&self, host: &Host) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.text.len() + 16);
        for part in &self.parts {
            let value: std::borrow::Cow<'_, str> = match part {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::Name => host.name.as_str().into(),
                Part::Address => host.address.as_str().into(),
                Part::Port => host.port.to_string().into(),
                Part::Label(k) => match host.label(k) {
                    Some(v) => v.into(),
                    None => {
                        return Err(TemplateError {
                            offset: 0,
                            len: 0,
                            message: format!(
                                "host {} has no label `{k}` for `{{label.{k}}}`",
                                host.name
                            ),
                            help: None,
                        });
                    }
                },
            };
            match self.quote {
                Quote::None => out.push_str(&value),
                Quote::Shell => out.push_str(&crate::shell::quote(&value)),
                Quote::Url => percent_encode(&value, &mut out),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
impl Template {
    /// A command template for tests; panics on a malformed one.
    pub(crate) fn sh(text: &str) -> Self {
        Self::new(text, Quote::Shell).unwrap()
    }
    /// A URL template for tests.
    pub(crate) fn url(text: &str) -> Self {
        Self::new(text, Quote::Url).unwrap()
    }
    /// A unit name (expanded unquoted) for tests.
    pub(crate) fn unit(text: &str) -> Self {
        Self::new(text, Quote::None).unwrap()
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Appends `s` with every byte outside `A-Za-z0-9-._~` written as `%XX`.
pub fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::diag::Span;

    fn expand(template: &str, host: &Host, quote: Quote) -> Result<String, TemplateError> {
        Template::new(template, quote)?.expand(host)
    }

    fn host() -> Host {
        Host {
            name: "pg-r001-db1".into(),
            address: "10.1.1.1".into(),
            port: 2222,
            user: None,
            jump: None,
            labels: BTreeMap::from([
                ("rack".to_string(), "pg-r001".to_string()),
                ("lb".to_string(), "pool a; rm -rf /'".to_string()),
            ]),
            identity_file: None,
            escalation: None,
            bmc: None,
            groups: vec![],
            span: Span::file(Arc::from("t")),
        }
    }

    #[test]
    fn expands_and_quotes() {
        let h = host();
        assert_eq!(
            expand(
                "drain {name} --rack {label.rack} -p {port}",
                &h,
                Quote::Shell
            )
            .unwrap(),
            "drain 'pg-r001-db1' --rack 'pg-r001' -p '2222'"
        );
        assert_eq!(
            expand("lb-ctl drain {label.lb}", &h, Quote::Shell).unwrap(),
            r"lb-ctl drain 'pool a; rm -rf /'\'''"
        );
        assert_eq!(
            expand("http://{address}:8080/health", &h, Quote::None).unwrap(),
            "http://10.1.1.1:8080/health"
        );
        assert_eq!(
            expand(
                "http://{address}:{port}/pool/{label.lb}?rack={label.rack}",
                &h,
                Quote::Url
            )
            .unwrap(),
            "http://10.1.1.1:2222/pool/pool%20a%3B%20rm%20-rf%20%2F%27?rack=pg-r001"
        );
        assert_eq!(
            expand("awk '{{print $1}}' {name}", &h, Quote::Shell).unwrap(),
            "awk '{print $1}' 'pg-r001-db1'"
        );
        assert_eq!(
            expand("echo ${{HOME}} a{{b}}c", &h, Quote::Shell).unwrap(),
            "echo ${HOME} a{b}c"
        );
    }

    #[test]
    fn a_missing_label_is_an_error() {
        let e = expand("echo {label.pdu}", &host(), Quote::Shell).unwrap_err();
        assert!(e.message.contains("no label `pdu`"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_or_is_refused_without_panicking(s in "[{}a-z. é]{0,16}") {
            if let Err(e) = parse(&s) {
                proptest::prop_assert!(e.offset + e.len <= s.chars().count());
            }
        }

        #[test]
        fn text_without_braces_expands_to_itself(s in "[^{}]{0,24}") {
            proptest::prop_assert_eq!(expand(&s, &host(), Quote::Shell).unwrap(), s);
        }
    }

    #[test]
    fn malformed_placeholders_are_refused_with_their_place() {
        let e = parse("echo {hostname}").unwrap_err();
        assert_eq!((e.offset, e.len), (5, 10));
        assert_eq!(
            e.message,
            "unknown placeholder `{hostname}`: placeholders are {name}, {address}, {port} and {label.KEY}; write `{{` and `}}` for literal braces"
        );
        assert!(
            parse("ping {adress}")
                .unwrap_err()
                .message
                .contains("did you mean `{address}`?")
        );
        let e = parse("echo {name").unwrap_err();
        assert_eq!(
            (e.offset, e.message.as_str()),
            (
                5,
                "unterminated placeholder `{` (write `{{` for a literal brace)"
            )
        );
        assert_eq!(parse("a } b").unwrap_err().offset, 2);
        assert!(parse("{label.}").is_err());
        assert!(parse("{label.a b}").is_err());
        assert_eq!(
            Template::new("{label.rack} {name} {label.pdu}", Quote::Shell)
                .unwrap()
                .label_keys()
                .collect::<Vec<_>>(),
            ["rack", "pdu"]
        );
    }
}

#[cfg(test)]
mod quoting_tests {
    use super::*;

    fn refused(template: &str) -> TemplateError {
        match parse_for(template, Quote::Shell) {
            Err(e) => e,
            Ok(p) => panic!("{template} should be refused, parses to {p:?}"),
        }
    }

    #[test]
    fn placeholder_inside_the_authors_own_quotes_is_refused() {
        let e = refused(r#"echo "{label.sub}""#);
        assert_eq!((e.offset, e.len), (6, 11));
        assert_eq!(
            e.message,
            "placeholder `{label.sub}` is inside double quotes: rekindle shell-quotes every value itself, and this undoes that quoting (a value such as `$(...)` would run)"
        );
        assert_eq!(
            e.help.as_deref(),
            Some(
                "close the quotes before `{label.sub}` and open them again after it if needed, e.g. `echo \"host=\"{label.sub}`"
            )
        );
        let e = refused("logger '{label.role}'");
        assert_eq!((e.offset, e.len), (8, 12));
        assert!(e.message.contains("inside single quotes"), "{}", e.message);
        assert!(
            refused("printf $'x {name}'")
                .message
                .contains("inside `$'...'` quotes")
        );
        assert!(
            refused(r"echo \{name}")
                .message
                .contains("right after a backslash")
        );
        // Quotes closed before it, escaped quotes, and `{{`/`}}` braces do not count.
        for ok in [
            r#"echo "host="{name} 'done'"#,
            r#"echo \"{name}"#,
            r#"awk '{{print $1}}' {label.rack}"#,
            r#"echo "a \" b" {address}"#,
            r#"echo 'it'\''s' {port}"#,
        ] {
            assert!(parse_for(ok, Quote::Shell).is_ok(), "{ok}");
        }
        // Only commands: a URL's values are percent-encoded whatever surrounds them.
        assert!(parse_for("http://x/'{name}'", Quote::Url).is_ok());
        // What validation refuses never becomes a template the engine could expand.
        assert!(Template::new(r#"echo "{name}""#, Quote::Shell).is_err());
    }
}

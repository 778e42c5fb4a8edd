//! A YAML document as a tree of spanned nodes, built from saphyr-parser's
//! events, with limits against hostile input, and helpers to turn nodes into
//! typed models while collecting every problem in one pass.
//!
//! Owns YAML syntax, anchors/aliases (expanded under a node budget and a
//! byte budget, so an alias bomb is refused instead of eating memory, whether
//! it multiplies nodes or one large string), merge keys (`<<`),
//! duplicate keys, and the "unknown key, did you mean" diagnostics. It must not
//! know what an inventory or a playbook is: nothing downstream sees YAML events.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle};

use crate::diag::{Diagnostic, Sources, Span, suggest};

/// Input bounds. A document over them is refused with a diagnostic.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_depth: usize,
    /// Nodes in the tree after aliases are expanded.
    pub max_nodes: usize,
    /// Bytes of scalar text in the tree after aliases are expanded. At least
    /// `max_bytes`, so a document without aliases never reaches it.
    pub max_expanded_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024 * 1024,
            max_depth: 64,
            max_nodes: 3_000_000,
            max_expanded_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in document order; duplicate keys were reported at load.
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted) scalars are subject to type resolution: `null`,
    /// `true`, `10`. Quoted ones are always strings.
    pub plain: bool,
    /// Ansible's `!unsafe` tag: text that is never a template.
    pub unsafe_text: bool,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text, whatever its resolved type (`10` gives "10").
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if !self.is_null() => Some(&s.text),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match &self.value {
            Value::Scalar(s) if s.plain => s.text.replace('_', "").parse().ok(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar(s) if s.plain => match s.text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// "a mapping", "a list", "a number", ... for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar(_) if self.is_null() => "nothing (null)",
            Value::Scalar(_) if self.as_bool().is_some() => "a boolean",
            Value::Scalar(s) if s.plain && s.text.parse::<f64>().is_ok() => "a number",
            Value::Scalar(_) => "a string",
        }
    }

    /// The diagnostic for a node of the wrong shape.
    pub fn expected(&self, what: &str) -> Diagnostic {
        Diagnostic::error(
            "wrong-type",
            self.span.clone(),
            format!("expected {what}, found {}", self.kind_name()),
        )
    }

    /// This node as a string (any non-null scalar), or a wrong-type diagnostic.
    pub fn string(&self, diags: &mut Vec<Diagnostic>) -> Option<String> {
        match self.as_scalar() {
            Some(s) => Some(s.to_owned()),
            None => {
                diags.push(self.expected("a string"));
                None
            }
        }
    }

    /// A scalar or a list of scalars, as a list (`role: db` or `role: [db, cache]`).
    pub fn string_or_list(&self, diags: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
        match &self.value {
            Value::Seq(items) => items.iter().map(|n| n.string(diags)).collect(),
            _ => match self.as_scalar() {
                Some(s) => Some(vec![s.to_owned()]),
                None => {
                    diags.push(self.expected("a string or a list of strings"));
                    None
                }
            },
        }
    }
}

/// Reads a file into `sources` and parses it. Unreadable files and files over
/// the size limit give `Err` with one diagnostic.
pub fn load_file(sources: &mut Sources, path: &str, limits: Limits) -> Result<Node, Diagnostic> {
    let text = read_bounded(path, limits.max_bytes)?;
    let text: Arc<str> = Arc::from(text);
    let file = sources.add(path, text.clone());
    parse(file, &text, limits)
}

/// Reads a whole text file, refusing files over `max_bytes` before reading them.
pub fn read_bounded(path: &str, max_bytes: u64) -> Result<String, Diagnostic> {
    let span = Span::file(Arc::from(path));
    let meta = std::fs::metadata(path).map_err(|e| {
        Diagnostic::error(
            "unreadable",
            span.clone(),
            format!("cannot read {path}: {e}"),
        )
    })?;
    if meta.len() > max_bytes {
        return Err(Diagnostic::error(
            "too-large",
            span,
            format!(
                "{path} is {} MiB, over the {} MiB limit for an input file",
                meta.len() / (1024 * 1024),
                max_bytes / (1024 * 1024)
            ),
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::error("unreadable", span, format!("cannot read {path}: {e}")))
}

/// Parses the first document of `text`. An empty document is a null node.
pub fn parse(file: Arc<str>, text: &str, limits: Limits) -> Result<Node, Diagnostic> {
    let mut builder = Builder {
        limits,
        nodes: 0,
        bytes: 0,
        anchors: HashMap::new(),
        stack: Vec::new(),
        root: None,
    };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            Diagnostic::error(
                "yaml-syntax",
                Span::new(file.clone(), m.line() as u32, m.col() as u32 + 1, 1),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        let at = Span::new(
            file.clone(),
            span.start.line() as u32,
            span.start.col() as u32 + 1,
            (span.end.index().saturating_sub(span.start.index())).max(1) as u32,
        );
        if builder.event(event, at)? {
            break;
        }
    }
    Ok(builder.root.unwrap_or_else(|| Node {
        value: Value::Scalar(Scalar {
            text: String::new(),
            plain: true,
            unsafe_text: false,
        }),
        span: Span::new(file, 1, 1, 1),
    }))
}

enum Open {
    Seq {
        anchor: usize,
        span: Span,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        span: Span,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

struct Builder {
    limits: Limits,
    nodes: usize,
    /// Bytes of scalar text so far, aliases expanded.
    bytes: u64,
    /// Anchored nodes with their size, so an alias is counted before it is copied.
    anchors: HashMap<usize, (Node, Size)>,
    stack: Vec<Open>,
    root: Option<Node>,
}

impl Builder {
    /// Feeds one event; returns true once the first document is complete.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, Diagnostic> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                refuse_python_tag(tag.as_deref(), &span)?;
                let unsafe_text = tag.is_some_and(|t| t.handle == "!" && t.suffix == "unsafe");
                let node = Node {
                    value: Value::Scalar(Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain && !unsafe_text,
                        unsafe_text,
                    }),
                    span,
                };
                let bytes = text_len(&node);
                self.count(Size { nodes: 1, bytes }, &node.span)?;
                self.finish_node(node, anchor)
            }
            Event::Alias(id) => {
                let Some(&(_, size)) = self.anchors.get(&id) else {
                    return Err(Diagnostic::error(
                        "yaml-syntax",
                        span,
                        "alias to an unknown anchor",
                    ));
                };
                self.count(size, &span)?;
                let mut node = self.anchors[&id].0.clone();
                node.span = span;
                self.finish_node(node, 0)
            }
            Event::SequenceStart(anchor, tag) => {
                refuse_python_tag(tag.as_deref(), &span)?;
                self.open(Open::Seq {
                    anchor,
                    span,
                    items: Vec::new(),
                })?;
                Ok(false)
            }
            Event::MappingStart(anchor, tag) => {
                refuse_python_tag(tag.as_deref(), &span)?;
                self.open(Open::Map {
                    anchor,
                    span,
                    entries: Vec::new(),
                    key: None,
                })?;
                Ok(false)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop().expect("parser balances collections") {
                    Open::Seq {
                        anchor,
                        span,
                        items,
                    } => (
                        Node {
                            value: Value::Seq(items),
                            span,
                        },
                        anchor,
                    ),
                    Open::Map {
                        anchor,
                        span,
                        entries,
                        ..
                    } => (
                        Node {
                            value: Value::Map(merge_keys(entries)?),
                            span,
                        },
                        anchor,
                    ),
                };
                self.finish_node(node.0, node.1)
            }
            Event::DocumentEnd => Ok(self.root.is_some()),
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::Nothing => {
                Ok(false)
            }
        }
    }

    fn open(&mut self, open: Open) -> Result<(), Diagnostic> {
        let span = match &open {
            Open::Seq { span, .. } | Open::Map { span, .. } => span.clone(),
        };
        if self.stack.len() >= self.limits.max_depth {
            return Err(Diagnostic::error(
                "too-deep",
                span,
                format!(
                    "document is nested more than {} levels deep",
                    self.limits.max_depth
                ),
            ));
        }
        self.count(Size { nodes: 1, bytes: 0 }, &span)?;
        self.stack.push(open);
        Ok(())
    }

    /// Adds a node (or an alias's whole copy) to the budget, before it is built.
    fn count(&mut self, size: Size, span: &Span) -> Result<(), Diagnostic> {
        self.nodes += size.nodes;
        self.bytes += size.bytes;
        if self.bytes > self.limits.max_expanded_bytes {
            return Err(Diagnostic::error(
                "too-large",
                span.clone(),
                format!(
                    "document expands to more than {} of text through its aliases (an alias bomb?)",
                    in_mib(self.limits.max_expanded_bytes)
                ),
            ));
        }
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::error(
                "too-large",
                span.clone(),
                format!(
                    "document expands to more than {} nodes (an alias bomb?)",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn finish_node(&mut self, node: Node, anchor: usize) -> Result<bool, Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(true)
            }
            Some(Open::Seq { items, .. }) => {
                items.push(node);
                Ok(false)
            }
            Some(Open::Map { entries, key, .. }) => {
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        if let Some(text) = k.as_scalar()
                            && let Some((first, _)) = entries
                                .iter()
                                .find(|(e, _)| e.as_scalar() == Some(text) && text != "<<")
                        {
                            return Err(Diagnostic::error(
                                "duplicate-key",
                                k.span.clone(),
                                format!(
                                    "duplicate key `{text}` (first defined at line {})",
                                    first.span.line
                                ),
                            ));
                        }
                        entries.push((k, node));
                    }
                }
                Ok(false)
            }
        }
    }
}

/// PyYAML's `!!python/...` tags construct Python objects (and run code:
/// `!!python/object/apply:os.system`); Ansible's loader refuses them, and
/// so does rekindle, at the tag's node.
fn refuse_python_tag(tag: Option<&saphyr_parser::Tag>, span: &Span) -> Result<(), Diagnostic> {
    match tag {
        Some(t) if t.is_yaml_core_schema() && t.suffix.starts_with("python/") => {
            Err(Diagnostic::error(
                "yaml-tag",
                span.clone(),
                format!(
                    "YAML tag `!!{}` constructs a Python object: refused (Ansible refuses it too)",
                    t.suffix
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// What a node costs once expanded: every node and every byte of scalar
/// text below it, merged entries included.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: u64,
}

impl std::ops::Add for Size {
    type Output = Size;
    fn add(self, other: Size) -> Size {
        Size {
            nodes: self.nodes + other.nodes,
            bytes: self.bytes + other.bytes,
        }
    }
}

fn size(node: &Node) -> Size {
    let own = Size {
        nodes: 1,
        bytes: text_len(node),
    };
    match &node.value {
        Value::Scalar(_) => own,
        Value::Seq(items) => items.iter().map(size).fold(own, |a, b| a + b),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| size(k) + size(v))
            .fold(own, |a, b| a + b),
    }
}

/// `64 MiB`, or `1000 bytes` when not a whole number of MiB.
fn in_mib(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

fn text_len(node: &Node) -> u64 {
    match &node.value {
        Value::Scalar(s) => s.text.len() as u64,
        _ => 0,
    }
}

/// Applies YAML merge keys: entries of `<<: *base` (or a list of them) that
/// the mapping does not set itself.
fn merge_keys(entries: Vec<(Node, Node)>) -> Result<Vec<(Node, Node)>, Diagnostic> {
    if !entries
        .iter()
        .any(|(k, _)| matches!(&k.value, Value::Scalar(s) if s.plain && s.text == "<<"))
    {
        return Ok(entries);
    }
    let mut own = Vec::new();
    let mut merged = Vec::new();
    for (k, v) in entries {
        if matches!(&k.value, Value::Scalar(s) if s.plain && s.text == "<<") {
            let sources: Vec<Node> = match v.value {
                Value::Map(_) => vec![v],
                Value::Seq(items) => items,
                _ => return Err(v.expected("a mapping or a list of mappings to merge")),
            };
            for source in sources {
                match source.value {
                    Value::Map(inner) => merged.extend(inner),
                    _ => return Err(source.expected("a mapping to merge")),
                }
            }
        } else {
            own.push((k, v));
        }
    }
    for (k, v) in merged {
        let present = own
            .iter()
            .any(|(o, _)| o.as_scalar().is_some() && o.as_scalar() == k.as_scalar());
        if !present {
            own.push((k, v));
        }
    }
    Ok(own)
}

/// Reads a mapping field by field and reports, at `finish`, every key that was
/// never asked for, with the nearest known key suggested.
pub struct MapReader<'a> {
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
    known: &'static [&'static str],
    what: &'static str,
}

impl<'a> MapReader<'a> {
    /// `what` names the mapping in messages ("stage", "inventory defaults").
    /// Pushes a wrong-type diagnostic and returns `None` if `node` is not a mapping.
    pub fn new(
        node: &'a Node,
        what: &'static str,
        known: &'static [&'static str],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Self> {
        match node.as_map() {
            Some(entries) => Some(MapReader {
                entries,
                used: vec![false; entries.len()],
                known,
                what,
            }),
            None => {
                diags.push(node.expected(&format!("a mapping ({what})")));
                None
            }
        }
    }

    /// The value under `key`, marking it as known.
    pub fn get(&mut self, key: &str) -> Option<&'a Node> {
        debug_assert!(
            self.known.contains(&key),
            "{key} missing from the known keys of {}",
            self.what
        );
        let i = self
            .entries
            .iter()
            .position(|(k, _)| k.as_scalar() == Some(key))?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// The key node itself (for spans), if present.
    pub fn key_span(&self, key: &str) -> Option<&'a Span> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(k, _)| &k.span)
    }

    /// Like `get`, but a missing key is an error at `parent`.
    pub fn require(
        &mut self,
        key: &str,
        parent: &Span,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<&'a Node> {
        let found = self.get(key);
        if found.is_none() {
            diags.push(Diagnostic::error(
                "missing-key",
                parent.clone(),
                format!("{} is missing required key `{key}`", self.what),
            ));
        }
        found
    }

    /// Reports every key not read by `get`, suggesting the nearest known key.
    pub fn finish(self, diags: &mut Vec<Diagnostic>) {
        for ((k, _), used) in self.entries.iter().zip(self.used) {
            if used {
                continue;
            }
            let name = k.as_scalar().unwrap_or("?");
            let mut d = Diagnostic::error(
                "unknown-key",
                k.span.clone(),
                format!("unknown key `{name}` in {}", self.what),
            );
            d = match suggest(name, self.known.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("expected one of: {}", self.known.join(", "))),
            };
            diags.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Node, Diagnostic> {
        parse(Arc::from("t.yaml"), text, Limits::default())
    }

    #[test]
    fn spans_are_one_based() {
        let doc = p("a: 1\nbb:\n  - x\n").unwrap();
        let map = doc.as_map().unwrap();
        assert_eq!((map[1].0.span.line, map[1].0.span.col), (2, 1));
        let item = &map[1].1.as_seq().unwrap()[0];
        assert_eq!(
            (item.span.line, item.span.col, item.as_scalar()),
            (3, 5, Some("x"))
        );
    }

    #[test]
    fn syntax_error_has_a_place() {
        let e = p("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(e.code, "yaml-syntax");
        assert!(e.span.unwrap().line >= 1);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = p("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.code, "duplicate-key");
        assert_eq!(e.span.unwrap().line, 3);
    }

    #[test]
    fn merge_keys_fill_in_missing_entries() {
        let doc = p("base: &b {x: 1, y: 2}\nthis:\n  <<: *b\n  y: 3\n").unwrap();
        let this = &doc.as_map().unwrap()[1].1;
        let m: Vec<(&str, &str)> = this
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_scalar().unwrap(), v.as_scalar().unwrap()))
            .collect();
        assert_eq!(m, [("y", "3"), ("x", "1")]);
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = p(&text).unwrap_err();
        assert_eq!(e.code, "too-large");
    }

    /// A 1 KiB budget of expanded text: a kilobyte string repeated by aliases
    /// is refused whatever form carries it.
    fn small(text: &str) -> Result<Node, Diagnostic> {
        let limits = Limits {
            max_expanded_bytes: 1024,
            ..Limits::default()
        };
        parse(Arc::from("t.yaml"), text, limits)
    }

    #[test]
    fn alias_bomb_of_one_large_string_is_refused_in_every_form() {
        let big = "A".repeat(300);
        let forms = [
            // Scalars.
            format!("x: &a \"{big}\"\ny: [*a, *a, *a, *a]\n"),
            // A sequence holding the string.
            format!("x: &s [\"{big}\"]\ny: [*s, *s, *s, *s]\n"),
            // A mapping holding it, aliased as values.
            format!("x: &m {{ k: \"{big}\" }}\ny: [*m, *m, *m, *m]\n"),
            // Merge keys.
            format!(
                "x: &m {{ k: \"{big}\" }}\ny: [ {{ <<: *m }}, {{ <<: *m }}, {{ <<: [*m, *m] }} ]\n"
            ),
        ];
        for text in &forms {
            let e = small(text).unwrap_err();
            assert_eq!(e.code, "too-large", "{text}");
            assert_eq!(
                e.message,
                "document expands to more than 1024 bytes of text through its aliases (an alias bomb?)"
            );
            // The alias that crossed the budget, on line 2.
            assert_eq!(e.span.unwrap().line, 2, "{text}");
        }
        // Three copies fit: the same forms with fewer aliases load.
        assert!(small(&format!("x: &a \"{big}\"\ny: [*a, *a]\n")).is_ok());
        // Without aliases, text up to the file size limit is never refused.
        let d = Limits::default();
        assert!(d.max_expanded_bytes >= d.max_bytes);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(p(&text).unwrap_err().code, "too-deep");
    }

    #[test]
    fn map_reader_suggests_the_nearest_key() {
        let doc = p("name: x\nparalel: 3\n").unwrap();
        let mut diags = Vec::new();
        let mut r = MapReader::new(&doc, "stage", &["name", "parallel"], &mut diags).unwrap();
        assert_eq!(r.get("name").and_then(Node::as_scalar), Some("x"));
        r.finish(&mut diags);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].message, "unknown key `paralel` in stage");
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `parallel`?"));
    }
}

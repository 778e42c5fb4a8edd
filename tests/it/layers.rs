//! The crate's import graph, read from its source: no module circle at any
//! level (between the top-level modules, and between the files of one
//! directory), and no arrow that runs up the floors lib.rs draws
//! ([`FLOORS`]): so the models (inventory, playbook, plan, select) import
//! no transport, journal or engine; the transport imports no journal or
//! playbook; nothing but the entry point imports the commands, and what the
//! pipelines use (report, live, etcd, engine, journal, transport, sim)
//! imports no pipeline (session, audit); leaf modules import only leaves.
//! Beside the floors: the engine never imports the simulator, nor the live
//! views etcd.
//!
//! An import is a `crate::`/`super::`/`self::` path (in a `use` or in code)
//! outside test code (`#[cfg(test)] mod`, `tests.rs`, `tests/`), resolved
//! to the deepest module it names. A failure prints every offending
//! `file:line`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::root;

/// The floors lib.rs draws, top first: a module imports only its own floor
/// and the floors below it.
const FLOORS: &[&[&str]] = &[
    &["cli", "commands"],
    &["audit"],
    &["session"],
    &["live", "etcd"],
    &["report"],
    &["journal", "exit"],
    &["engine", "sim"],
    &["transport"],
    &["plan"],
    &["playbook", "select"],
    &["inventory"],
    LEAVES,
];

/// Leaf modules: used by all, importing none of the layered modules.
const LEAVES: &[&str] = &[
    "diag",
    "yaml",
    "files",
    "shell",
    "time",
    "secret",
    "child_env",
];

fn floor(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// Top-level arrows that run up: (from, to, why).
fn forbidden(from: &str, to: &str) -> Option<String> {
    let (Some(a), Some(b)) = (floor(from), floor(to)) else {
        return Some(format!(
            "`{from}` or `{to}` is on no floor: add it to FLOORS (and to lib.rs's overview)"
        ));
    };
    if b < a {
        return Some(format!(
            "an arrow up, from floor {a} ({}) to floor {b} ({})",
            FLOORS[a].join(", "),
            FLOORS[b].join(", ")
        ));
    }
    if from == "engine" && to == "sim" {
        return Some("the engine never imports the simulator".to_owned());
    }
    if from == "live" && to == "etcd" || from == "etcd" && to == "live" {
        return Some("the live views and etcd stand beside each other".to_owned());
    }
    None
}

/// Circles still being taken apart, as the report names them (none left:
/// issue 21 took the last two apart):
/// (parent module, members). Each must still be a circle, or leave the list.
const KNOWN_CIRCLES: &[(&str, &str)] = &[];

type ModPath = Vec<String>;

/// One import: where it is written and the module it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    at: String,
    from: ModPath,
    to: ModPath,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` -> `[a, b]`; `src/a/mod.rs` -> `[a]`; `src/lib.rs` -> `[]`.
fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// `text` with comments, strings and char literals blanked (newlines kept,
/// so line numbers still hold).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, s: &[char]| {
        out.extend(s.iter().map(|&ch| if ch == '\n' { '\n' } else { ' ' }));
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    // Every branch advances `i`: bounded by the file's length.
    while i < c.len() {
        let rest = &c[i..];
        if rest.starts_with(&['/', '/']) {
            let end = rest.iter().position(|&ch| ch == '\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(&['/', '*']) {
            let end = (2..rest.len())
                .find(|&k| rest[k - 1] == '*' && rest[k] == '/')
                .map_or(rest.len(), |k| k + 1);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]))
            && rest[1..].iter().take_while(|&&ch| ch == '#').count() + 1 < rest.len()
            && rest[1 + rest[1..].iter().take_while(|&&ch| ch == '#').count()] == '"'
        {
            let hashes = rest[1..].iter().take_while(|&&ch| ch == '#').count();
            let body = 2 + hashes;
            let end = (body..rest.len())
                .find(|&k| {
                    rest[k] == '"'
                        && rest[k + 1..].iter().take_while(|&&ch| ch == '#').count() >= hashes
                })
                .map_or(rest.len(), |k| k + 1 + hashes);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if c[i] == '"' {
            let mut k = 1;
            while k < rest.len() && rest[k] != '"' {
                k += if rest[k] == '\\' { 2 } else { 1 };
            }
            let end = (k + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if c[i] == '\'' && rest.get(1) == Some(&'\\') {
            let end = (2..rest.len())
                .find(|&k| rest[k] == '\'')
                .map_or(rest.len(), |k| k + 1);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if c[i] == '\'' && rest.get(2) == Some(&'\'') {
            blank(&mut out, &rest[..3]);
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Blanks every `#[cfg(test)] mod NAME { ... }` and returns the names of
/// `#[cfg(test)] mod NAME;` (test code in files of their own).
fn drop_test_modules(text: &mut String) -> Vec<String> {
    let mut files = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("#[cfg(test)]") {
        let start = from + found;
        from = start + 1;
        let after = text[start + "#[cfg(test)]".len()..].trim_start();
        let after = after
            .strip_prefix("pub(crate)")
            .or_else(|| after.strip_prefix("pub"))
            .unwrap_or(after)
            .trim_start();
        let Some(decl) = after.strip_prefix("mod ") else {
            continue;
        };
        let name: String = decl
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let tail = decl[name.len()..].trim_start();
        if tail.starts_with(';') {
            files.push(name);
            continue;
        }
        let Some(open) = text[start..].find('{').map(|k| start + k) else {
            continue;
        };
        let mut depth = 0usize;
        let mut end = text.len();
        for (k, ch) in text[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let blanked: String = text[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        text.replace_range(start..end, &blanked);
    }
    files
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    // `x as y` names `x`: drop each alias, keeping the punctuation after it.
    let mut words = tree.split_whitespace();
    let mut tree = String::new();
    while let Some(w) = words.next() {
        if w == "as" {
            let alias = words.next().unwrap_or("");
            tree.extend(
                alias
                    .chars()
                    .filter(|c| !(c.is_alphanumeric() || *c == '_')),
            );
        } else {
            tree.push_str(w);
        }
    }
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0usize, String::new());
    for ch in tree.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur);
    let mut out = Vec::new();
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        match (p.find('{'), p.rfind('}')) {
            (Some(open), Some(close)) if open < close => {
                for inner in expand(&p[open + 1..close]) {
                    out.push(format!("{}{inner}", &p[..open]));
                }
            }
            _ => out.push(p),
        }
    }
    out
}

/// The module `path` names, written in module `here`; `None` for a path
/// outside the crate.
fn resolve(
    path: &str,
    here: &ModPath,
    in_use: bool,
    modules: &BTreeSet<ModPath>,
) -> Option<ModPath> {
    let segs: Vec<&str> = path
        .split("::")
        .filter(|s| !s.is_empty() && *s != "*" && *s != "self")
        .collect();
    let (base, rest): (ModPath, &[&str]) = match path.split("::").next()? {
        "crate" => (Vec::new(), &segs[1..]),
        "super" => {
            let ups = path.split("::").take_while(|s| *s == "super").count();
            let keep = here.len().checked_sub(ups)?;
            (here[..keep].to_vec(), &segs[ups..])
        }
        "self" => (here.clone(), &segs[..]),
        first if in_use => {
            let mut child = here.clone();
            child.push(first.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            (here.clone(), &segs[..])
        }
        _ => return None,
    };
    let mut full = base;
    full.extend(rest.iter().map(|s| (*s).to_owned()));
    (0..=full.len())
        .rev()
        .map(|k| full[..k].to_vec())
        .find(|p| modules.contains(p))
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

fn imports() -> Vec<Import> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_path(&src, f)).collect();
    let mut test_only: BTreeSet<ModPath> = BTreeSet::new();
    let mut texts = Vec::new();
    for file in &files {
        let here = module_path(&src, file);
        let mut text = strip(&std::fs::read_to_string(file).expect("read source"));
        for name in drop_test_modules(&mut text) {
            let mut m = here.clone();
            m.push(name);
            test_only.insert(m);
        }
        texts.push((file, here, text));
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for (file, here, text) in texts {
        if test_only.iter().any(|t| here.starts_with(t)) {
            continue;
        }
        let shown = file
            .strip_prefix(root())
            .unwrap_or(file)
            .display()
            .to_string();
        let mut push = |path: &str, at: usize, in_use: bool| {
            if let Some(to) = resolve(path, &here, in_use, &modules) {
                out.push(Import {
                    at: format!("{shown}:{}", line_of(&text, at)),
                    from: here.clone(),
                    to,
                });
            }
        };
        for (at, _) in text.match_indices("use ") {
            if text[..at].chars().next_back().is_some_and(ident) {
                continue;
            }
            let body = &text[at + 4..];
            let Some(end) = body.find(';') else { continue };
            for path in expand(&body[..end]) {
                push(&path, at, true);
            }
        }
        for root_word in ["crate::", "super::", "self::"] {
            for (at, _) in text.match_indices(root_word) {
                if text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| ident(c) || c == ':')
                {
                    continue;
                }
                let path: String = text[at..]
                    .chars()
                    .take_while(|&c| ident(c) || c == ':')
                    .collect();
                push(path.trim_end_matches(':'), at, false);
            }
        }
    }
    // A path in a `use` is also seen as a `crate::` path: count it once.
    out.sort();
    out.dedup();
    out
}

/// Arrows between siblings: for each parent module, `from -> to -> [places]`.
type Levels = BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Vec<String>>>>;

fn levels(imports: &[Import]) -> Levels {
    let mut levels: Levels = BTreeMap::new();
    for i in imports {
        let common = i.from.iter().zip(&i.to).take_while(|(a, b)| a == b).count();
        if common == i.from.len() || common == i.to.len() {
            continue; // a module and its own ancestor or descendant
        }
        levels
            .entry(i.from[..common].to_vec())
            .or_default()
            .entry(i.from[common].clone())
            .or_default()
            .entry(i.to[common].clone())
            .or_default()
            .push(i.at.clone());
    }
    for graph in levels.values_mut() {
        for places in graph.values_mut().flat_map(|m| m.values_mut()) {
            places.dedup();
        }
    }
    levels
}

/// The strongly connected components with more than one member (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> T<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flat_map(|m| m.keys()) {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let lw = self.low[w.as_str()];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on.contains(w.as_str()) {
                    let iw = self.index[w.as_str()];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

fn name(path: &[String]) -> String {
    std::iter::once("crate")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("::")
}

/// Every circle, one paragraph each, with the places of its arrows; those
/// in `known` are left out.
fn circle_report(levels: &Levels, known: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (parent, graph) in levels {
        for comp in circles(graph) {
            let members = comp.join(" <-> ");
            if known.contains(&(name(parent).as_str(), members.as_str())) {
                continue;
            }
            let mut s = format!("circle in {}: {members}", name(parent));
            for a in &comp {
                for (b, places) in graph.get(a).into_iter().flatten() {
                    if comp.contains(b) {
                        s.push_str(&format!("\n    {a} -> {b}: {}", places.join(", ")));
                    }
                }
            }
            out.push(s);
        }
    }
    out
}

#[test]
fn the_import_graph_has_no_circle_and_no_arrow_up() {
    let imports = imports();
    assert!(
        imports.len() > 500,
        "the reader found only {} imports: it no longer reads the source",
        imports.len()
    );
    let levels = levels(&imports);
    let mut problems = circle_report(&levels, KNOWN_CIRCLES);
    let all = circle_report(&levels, &[]);
    for (parent, members) in KNOWN_CIRCLES {
        let named = format!("circle in {parent}: {members}\n");
        if !all.iter().any(|c| format!("{c}\n").starts_with(&named)) {
            problems.push(format!(
                "{parent}: {members} is no circle any more: take it out of KNOWN_CIRCLES"
            ));
        }
    }
    for i in &imports {
        let (Some(from), Some(to)) = (i.from.first(), i.to.first()) else {
            continue;
        };
        if from != to
            && let Some(why) = forbidden(from, to)
        {
            problems.push(format!(
                "{}: {} imports {}: {why}",
                i.at,
                name(&i.from),
                name(&i.to)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} layering problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_reader_sees_circles_and_nested_imports() {
    // The checker's own parts, on text it must read right.
    assert_eq!(
        expand("crate::{a::{b, c as d}, e}"),
        ["crate::a::b", "crate::a::c", "crate::e"]
    );
    let stripped = strip("let s = \"crate::x\"; // crate::y\nlet c = '\"'; crate::z::w");
    assert!(!stripped.contains("crate::x") && !stripped.contains("crate::y"));
    assert!(stripped.contains("crate::z::w"), "{stripped}");
    assert_eq!(stripped.matches('\n').count(), 1);
    let mut with_tests = "use crate::a;\n#[cfg(test)]\nmod tests {\n use crate::b;\n}\n".to_owned();
    drop_test_modules(&mut with_tests);
    assert!(with_tests.contains("crate::a") && !with_tests.contains("crate::b"));
    let modules: BTreeSet<ModPath> = [vec![], vec!["a".into()], vec!["a".into(), "b".into()]]
        .into_iter()
        .collect();
    let here = vec!["a".to_owned(), "b".to_owned()];
    assert_eq!(
        resolve("super::b::X", &here, true, &modules),
        Some(here.clone())
    );
    assert_eq!(resolve("std::fmt", &here, true, &modules), None);
    let edge = |from: &str, to: &str| Import {
        at: format!("src/{from}.rs:1"),
        from: vec!["m".into(), from.into()],
        to: vec!["m".into(), to.into()],
    };
    let three = levels(&[edge("x", "y"), edge("y", "z"), edge("z", "x")]);
    let found = circle_report(&three, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("circle in crate::m: x <-> y <-> z\n"),
        "{found:?}"
    );
    assert!(circle_report(&three, &[("crate::m", "x <-> y <-> z")]).is_empty());
    assert!(circle_report(&levels(&[edge("x", "y"), edge("y", "z")]), &[]).is_empty());
}

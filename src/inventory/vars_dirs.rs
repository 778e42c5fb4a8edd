//! `group_vars/` and `host_vars/` beside each inventory source, read as
//! Ansible's `host_group_vars` plugin reads them: for an entity `NAME`, the
//! first of `NAME` (a file, or a directory of files), `NAME.yml`,
//! `NAME.yaml`, `NAME.json`; a directory's files are taken in sorted order,
//! recursively, skipping hidden files, backups (`~`) and other extensions.
//!
//! The directory is `DIR/group_vars` for `-i DIR` and `dirname(FILE)/group_vars`
//! for `-i FILE`. Each directory is listed once (not probed per host), so a
//! 36,000-host `host_vars/` costs one `readdir` plus one read per file.
//!
//! Owns finding and parsing those files; precedence is `ansible.rs`'s.
//! It must not know what a variable means.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ansible::{Model, Setting};
use super::ansible_yaml::var_map;
use crate::diag::{Diagnostic, Sources, Span};
use crate::yaml::{self, Limits};

/// Ansible's `YAML_FILENAME_EXTENSIONS`, in its lookup order after the bare name.
const EXTENSIONS: &[&str] = &["", ".yml", ".yaml", ".json"];

#[derive(Clone, Copy, PartialEq)]
enum Entity {
    Group,
    Host,
}

/// Applies the vars directories of every source (`basedirs[i]` is source `i`).
pub(crate) fn apply(
    model: &mut Model,
    basedirs: &[PathBuf],
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) {
    for (source, base) in basedirs.iter().enumerate() {
        for (sub, entity) in [("group_vars", Entity::Group), ("host_vars", Entity::Host)] {
            let dir = base.join(sub);
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() => apply_dir(model, source, &dir, entity, sources, diags),
                Ok(_) => diags.push(Diagnostic::warning(
                    "not-a-directory",
                    Span::file(Arc::from(dir.to_string_lossy().as_ref())),
                    format!(
                        "{} is not a directory: skipped, as Ansible skips it",
                        dir.display()
                    ),
                )),
                Err(_) => {}
            }
        }
    }
}

fn apply_dir(
    model: &mut Model,
    source: usize,
    dir: &Path,
    entity: Entity,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(unreadable(dir, &e));
            return;
        }
    };
    let mut files: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    // NAME -> (rank of the extension in EXTENSIONS, file name): the best wins.
    let mut best: HashMap<&str, (usize, &str)> = HashMap::new();
    for file_name in &files {
        for (rank, ext) in EXTENSIONS.iter().enumerate() {
            let Some(name) = file_name.strip_suffix(ext).filter(|n| !n.is_empty()) else {
                continue;
            };
            let slot = best.entry(name).or_insert((rank, file_name));
            if rank < slot.0 {
                *slot = (rank, file_name);
            }
        }
    }
    let kind = match entity {
        Entity::Group => "group",
        Entity::Host => "host",
    };
    let mut used: HashMap<&str, &str> = HashMap::new();
    let mut names: Vec<(&str, &str)> = best.into_iter().map(|(n, (_, f))| (n, f)).collect();
    names.sort();
    for (name, file_name) in names {
        let index = match entity {
            Entity::Group => model.find_group(name),
            Entity::Host => model.find_host(name),
        };
        let Some(index) = index else { continue };
        used.insert(file_name, name);
        let path = dir.join(file_name);
        let mut paths = Vec::new();
        if path.is_dir() {
            dir_files(&path, &mut paths, diags);
        } else {
            paths.push(path);
        }
        for file in paths {
            let Some(vars) = read_vars_file(&file, sources, diags) else {
                continue;
            };
            match entity {
                Entity::Group => model.add_group_file_vars(index, source, vars),
                Entity::Host => model.add_host_file_vars(index, source, vars),
            }
        }
    }
    // Files that look like vars files but were not read: say why.
    for file_name in &files {
        if used.contains_key(file_name.as_str())
            || file_name.starts_with('.')
            || file_name.ends_with('~')
        {
            continue;
        }
        let Some((rank, stem)) = EXTENSIONS.iter().enumerate().rev().find_map(|(rank, ext)| {
            file_name
                .strip_suffix(ext)
                .filter(|n| !n.is_empty())
                .map(|n| (rank, n))
        }) else {
            continue;
        };
        if rank == 0 && file_name.contains('.') {
            // `README.md`, `x.bak`: not a vars file name at all.
            continue;
        }
        let path = dir.join(file_name);
        let why = match used.iter().find(|(_, n)| **n == stem) {
            Some((winner, _)) => {
                format!("`{winner}` is read for {kind} `{stem}` instead, as in Ansible")
            }
            None => format!("the inventory has no {kind} `{stem}`"),
        };
        diags.push(Diagnostic::warning(
            "unmatched-vars-file",
            Span::file(Arc::from(path.to_string_lossy().as_ref())),
            format!("{} is not read: {why}", path.display()),
        ));
    }
}

/// Ansible's `_get_dir_vars_files`: sorted, recursive into directories
/// without an extension, files with no extension or a YAML one.
fn dir_files(dir: &Path, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(e) => e
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            diags.push(unreadable(dir, &e));
            return;
        }
    };
    names.sort();
    for name in names {
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = dir.join(&name);
        let ext = Path::new(&name)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()));
        if path.is_dir() {
            if ext.is_none() {
                dir_files(&path, out, diags);
            }
        } else if ext.as_deref().is_none_or(|e| EXTENSIONS[1..].contains(&e)) {
            out.push(path);
        }
    }
}

fn unreadable(path: &Path, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        "unreadable",
        Span::file(Arc::from(path.to_string_lossy().as_ref())),
        format!("cannot read {}: {e}", path.display()),
    )
}

/// One vars file: a YAML (or JSON) mapping of variables; empty is nothing.
fn read_vars_file(
    path: &Path,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Setting>> {
    let name = path.to_string_lossy().into_owned();
    let limits = Limits::default();
    let text = match yaml::read_bounded(&name, limits.max_bytes) {
        Ok(t) => t,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let file_span = Span::file(Arc::from(name.as_str()));
    if text.starts_with("$ANSIBLE_VAULT;") {
        diags.push(
            Diagnostic::warning(
                "vault",
                file_span,
                format!(
                    "{name} is encrypted with ansible-vault: skipped, rekindle cannot decrypt it"
                ),
            )
            .with_help(
                "keep connection variables (ansible_host, ansible_user, ...) outside vault files",
            ),
        );
        return None;
    }
    let text: Arc<str> = Arc::from(text);
    let file = sources.add(&name, text.clone());
    let root = match yaml::parse(file, &text, limits) {
        Ok(r) => r,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    if root.is_null() {
        return Some(Vec::new());
    }
    if root.as_map().is_none() {
        diags.push(root.expected("a mapping of variables"));
        return None;
    }
    Some(
        var_map(&root, diags)
            .into_iter()
            .map(|(k, v, key)| (k, v, key.span.clone()))
            .collect(),
    )
}

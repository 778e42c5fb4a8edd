//! `group_vars/` and `host_vars/` beside each inventory source, read as
//! Ansible's `host_group_vars` plugin reads them: for an entity `NAME`, the
//! first of `NAME` (a file, or a directory of files), `NAME.yml`,
//! `NAME.yaml`, `NAME.json`; a directory's files are taken in sorted order,
//! recursively, skipping hidden files, backups (`~`) and other extensions.
//!
//! The directory is `DIR/group_vars` for `-i DIR` and `dirname(FILE)/group_vars`
//! for `-i FILE`, and then the playbook directory's (`--playbook-dir`, by
//! default the current directory, as `ansible-inventory` reads it): it comes
//! after every source's at each precedence level. A directory reached again
//! through a symlink (a loop: `a -> .`) is skipped with a warning, found by
//! (device, inode). Each directory is listed once (not probed per host), so a
//! 36,000-host `host_vars/` costs one `readdir` plus one read per file.
//!
//! Owns finding and parsing those files; precedence is `ansible.rs`'s.
//! It must not know what a variable means.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::VarsFile;
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

/// Applies the vars directories of every source (`basedirs[i]` is source
/// `i`), then the playbook directory's as source `basedirs.len()`. Returns
/// the files read, in that order.
pub(crate) fn apply(
    model: &mut Model,
    basedirs: &[PathBuf],
    playbook_dir: &Path,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) -> Vec<VarsFile> {
    let mut read = Vec::new();
    let playbook = basedirs.len();
    let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let all = basedirs
        .iter()
        .map(PathBuf::as_path)
        .chain(std::iter::once(playbook_dir));
    for (source, base) in all.enumerate() {
        if source == playbook
            && let Some(twin) = basedirs.iter().position(|b| same(b, playbook_dir))
        {
            // Ansible applies the directory again at the playbook's place in
            // the order; its files are read (and warned about) once.
            model.copy_file_vars(twin, source);
            continue;
        }
        for (sub, entity) in [("group_vars", Entity::Group), ("host_vars", Entity::Host)] {
            let dir = base.join(sub);
            match std::fs::metadata(&dir) {
                Ok(m) if m.is_dir() => {
                    let files = apply_dir(model, source, &dir, entity, sources, diags);
                    read.extend(files.into_iter().map(|path| VarsFile {
                        path,
                        playbook_dir: source == playbook,
                    }));
                }
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
    read
}

fn apply_dir(
    model: &mut Model,
    source: usize,
    dir: &Path,
    entity: Entity,
    sources: &mut Sources,
    diags: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut read = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(unreadable(dir, &e));
            return read;
        }
    };
    // The entry's type comes from readdir: no stat per host file.
    let mut kinds: HashMap<String, bool> = HashMap::new();
    for e in entries.flatten() {
        let is_dir = match e.file_type() {
            Ok(t) if t.is_symlink() => e.path().is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => false,
        };
        kinds.insert(e.file_name().to_string_lossy().into_owned(), is_dir);
    }
    let mut files: Vec<String> = kinds.keys().cloned().collect();
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
    // (entity, file) in Ansible's order; read in parallel, applied in order.
    let mut jobs: Vec<(usize, PathBuf)> = Vec::new();
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
        if kinds.get(file_name).copied().unwrap_or(false) {
            let mut paths = Vec::new();
            let mut ancestors = Vec::new();
            dir_files(&path, &mut ancestors, &mut paths, diags);
            jobs.extend(paths.into_iter().map(|p| (index, p)));
        } else {
            jobs.push((index, path));
        }
    }
    let opened = std::fs::File::open(dir).ok();
    let base = opened.as_ref().map(|f| (dir, f));
    for (index, loaded) in jobs.iter().map(|(i, _)| *i).zip(read_all(&jobs, base)) {
        diags.extend(loaded.diags);
        if let Some(text) = loaded.text {
            sources.add(&loaded.name, text);
        }
        let Some(vars) = loaded.vars else { continue };
        read.push(loaded.name);
        match entity {
            Entity::Group => model.add_group_file_vars(index, source, vars),
            Entity::Host => model.add_host_file_vars(index, source, vars),
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
    read
}

/// A directory's (device, inode): the same directory however it is reached.
pub(crate) fn dir_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The warning for a directory that leads back to one being read.
pub(crate) fn loop_warning(path: &Path) -> Diagnostic {
    Diagnostic::warning(
        "symlink-loop",
        Span::file(Arc::from(path.to_string_lossy().as_ref())),
        format!(
            "{} leads back to a directory already being read (a symlink loop): skipped",
            path.display()
        ),
    )
}

/// Ansible's `_get_dir_vars_files`: sorted, recursive into directories
/// without an extension, files with no extension or a YAML one.
fn dir_files(
    dir: &Path,
    ancestors: &mut Vec<(u64, u64)>,
    out: &mut Vec<PathBuf>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(id) = dir_id(dir) else {
        return;
    };
    if ancestors.contains(&id) {
        diags.push(loop_warning(dir));
        return;
    }
    ancestors.push(id);
    dir_files_in(dir, ancestors, out, diags);
    ancestors.pop();
}

fn dir_files_in(
    dir: &Path,
    ancestors: &mut Vec<(u64, u64)>,
    out: &mut Vec<PathBuf>,
    diags: &mut Vec<Diagnostic>,
) {
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
                dir_files(&path, ancestors, out, diags);
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

/// One vars file, read and parsed off the main thread.
struct Loaded {
    name: String,
    text: Option<Arc<str>>,
    vars: Option<Vec<Setting>>,
    diags: Vec<Diagnostic>,
}

/// Reads and parses `jobs`' files, on a few threads when there are many
/// (a `host_vars/` per host is tens of thousands of small files).
fn read_all(jobs: &[(usize, PathBuf)], base: Option<(&Path, &std::fs::File)>) -> Vec<Loaded> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    if jobs.len() < 256 || threads < 2 {
        return jobs.iter().map(|(_, p)| read_vars_file(p, base)).collect();
    }
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, p)| read_vars_file(p, base))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a vars file reader panicked"))
            .collect()
    })
}

/// Opens `name` inside the already open directory `dir`: the kernel walks
/// one path component, not the whole path, for each of thousands of files.
fn open_at(dir: &std::fs::File, name: &std::ffi::OsStr) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(name.as_bytes())?;
    // SAFETY: `dir` is an open descriptor for the call's duration and `name`
    // a NUL-terminated string; a non-negative result is a new descriptor
    // that nothing else owns.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above; the File takes sole ownership of `fd`.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A whole small file, refusing one over `max` bytes (one open, no stat).
fn read_text(
    path: &Path,
    base: Option<(&Path, &std::fs::File)>,
    max: u64,
) -> Result<String, Diagnostic> {
    use std::io::Read as _;
    let name = path.to_string_lossy();
    let span = || Span::file(Arc::from(name.as_ref()));
    let file = match (base, path.parent(), path.file_name()) {
        (Some((dir, opened)), Some(parent), Some(file_name)) if parent == dir => {
            open_at(opened, file_name)
        }
        _ => std::fs::File::open(path),
    };
    // Most vars files fit one read; `take` bounds the rest.
    let mut bytes = Vec::with_capacity(4096);
    file.and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| Diagnostic::error("unreadable", span(), format!("cannot read {name}: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Diagnostic::error(
            "too-large",
            span(),
            format!(
                "{name} is over the {} MiB limit for an input file",
                max / (1024 * 1024)
            ),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        Diagnostic::error(
            "unreadable",
            span(),
            format!("cannot read {name}: stream did not contain valid UTF-8"),
        )
    })
}

/// One vars file: a YAML (or JSON) mapping of variables; empty is nothing.
fn read_vars_file(path: &Path, base: Option<(&Path, &std::fs::File)>) -> Loaded {
    let name = path.to_string_lossy().into_owned();
    let mut out = Loaded {
        name,
        text: None,
        vars: None,
        diags: Vec::new(),
    };
    let limits = Limits::default();
    let text = match read_text(path, base, limits.max_bytes) {
        Ok(t) => t,
        Err(d) => {
            out.diags.push(d);
            return out;
        }
    };
    if text.starts_with("$ANSIBLE_VAULT;") {
        out.diags.push(
            Diagnostic::warning(
                "vault",
                Span::file(Arc::from(out.name.as_str())),
                format!(
                    "{} is encrypted with ansible-vault: skipped, rekindle cannot decrypt it",
                    out.name
                ),
            )
            .with_help(
                "keep connection variables (ansible_host, ansible_user, ...) outside vault files",
            ),
        );
        return out;
    }
    let text: Arc<str> = Arc::from(text);
    out.text = Some(text.clone());
    let root = match yaml::parse(Arc::from(out.name.as_str()), &text, limits) {
        Ok(r) => r,
        Err(d) => {
            out.diags.push(d);
            return out;
        }
    };
    if root.is_null() {
        out.vars = Some(Vec::new());
    } else if root.as_map().is_none() {
        out.diags.push(root.expected("a mapping of variables"));
    } else {
        out.vars = Some(
            var_map(&root, &mut out.diags)
                .into_iter()
                .map(|(k, v, key)| (k, v, key.span.clone()))
                .collect(),
        );
    }
    out
}

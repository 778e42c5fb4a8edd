//! Inventories read into one [`Inventory`] of fully expanded [`Host`]s:
//! rekindle's native YAML, and what SREs already have: Ansible INI and YAML
//! files, Ansible directories (every inventory file in it, Ansible's order and
//! ignored extensions), `group_vars/` and `host_vars/`, inventory scripts and
//! their JSON, comma-separated host lists, and CSV exports from a CMDB.
//! Plus host-pattern expansion.
//!
//! Owns file formats, range expansion, `{N}` captures, merging several `-i`
//! sources, the typed fields a host carries for the layers above (its BMC
//! address, [`bmc`], and its become policy, [`escalation`], each read once)
//! and the diagnostics for all of that. Every Ansible source of one
//! load feeds one Ansible model (as Ansible merges its sources); native and
//! CSV files are merged host by host. It must not know about playbooks,
//! plans or SSH sessions.

mod ansible;
mod ansible_ini;
mod ansible_yaml;
pub mod bmc;
mod connection;
mod csv;
pub mod escalation;
mod native;
pub mod pattern;
mod script;
mod template;
mod var;
mod vars_dirs;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, Sources, Span};
use crate::yaml::{self, Limits, Node, Value};

/// One host, after every pattern, default and group variable is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    /// Where to connect (an IP or DNS name); the name when the inventory gives none.
    pub address: String,
    pub port: u16,
    /// Login user; `None` leaves it to `~/.ssh/config` or the local user.
    pub user: Option<String>,
    /// ProxyJump host (`[user@]host[:port]`), if this host is reached through one.
    pub jump: Option<String>,
    /// Free-form labels; `dc`, `rack`, `role`, `pdu` and `bmc` are conventional.
    pub labels: BTreeMap<String, String>,
    /// Identity file for this host alone (Ansible's `ansible_ssh_private_key_file`),
    /// offered before the run's own identity files.
    pub identity_file: Option<std::path::PathBuf>,
    /// Privilege escalation this host asks for (Ansible's `ansible_become*`);
    /// it takes precedence over the playbook's `become`.
    pub escalation: Option<Become>,
    /// The `bmc` label, read once when the inventory loads; `None` without
    /// one. A label that is no BMC address keeps its error: it is one only
    /// for the stages that reach the host through its BMC (validate's
    /// `bad-bmc`), as a host never powered may carry any label.
    pub bmc: Option<Result<BmcAddress, BadBmc>>,
    /// Groups the host belongs to, sorted: Ansible groups with their ancestors,
    /// without `all` (Ansible's `group_names`). Empty for native inventories.
    pub groups: Vec<String>,
    /// Where the host was defined, for diagnostics.
    pub span: Span,
}

impl Host {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// The host's BMC, when its `bmc` label is a BMC address.
    pub fn bmc_address(&self) -> Option<&BmcAddress> {
        self.bmc.as_ref()?.as_ref().ok()
    }

    /// Reads [`Host::bmc`] from the labels: what [`load`] does for every
    /// host once its labels are merged (and code that builds hosts itself).
    pub fn read_bmc_label(mut self) -> Self {
        self.bmc = BmcAddress::from_labels(&self.labels);
        self
    }
}

/// The merged result of every `-i` file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    /// Identity files named by the inventories' `defaults.identity_file`.
    pub identity_files: Vec<String>,
    /// known_hosts file named by the inventories' `defaults.known_hosts`.
    pub known_hosts: Option<String>,
    /// Hosts rekindle cannot reach (`ansible_connection=local`, ...), by
    /// name: an error only for a run or listing that selects them.
    pub refused: Vec<(String, Refusal)>,
    /// `group_vars/`/`host_vars/` files that were read, in precedence order.
    pub vars_files: Vec<VarsFile>,
}

pub use bmc::{BadBmc, BmcAddress};
pub use connection::Refusal;
pub use escalation::{Become, BecomeMethod};

/// One `group_vars/` or `host_vars/` file read for an Ansible inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct VarsFile {
    pub path: String,
    /// Read from the playbook directory (`--playbook-dir`, default: the
    /// current directory), not beside an inventory source.
    pub playbook_dir: bool,
}

impl Inventory {
    /// The refusals of the `selected` hosts that cannot be reached, one
    /// diagnostic per place ("host `a` and 3 more").
    pub fn refusals<'a>(&self, selected: impl IntoIterator<Item = &'a Host>) -> Vec<Diagnostic> {
        if self.refused.is_empty() {
            return Vec::new();
        }
        let by_name: HashMap<&str, &Refusal> =
            self.refused.iter().map(|(n, r)| (n.as_str(), r)).collect();
        let mut places: Vec<(&Refusal, &str, usize)> = Vec::new();
        for host in selected {
            let Some(r) = by_name.get(host.name.as_str()) else {
                continue;
            };
            match places.iter_mut().find(|(p, _, _)| *p == *r) {
                Some(place) => place.2 += 1,
                None => places.push((r, &host.name, 1)),
            }
        }
        places
            .into_iter()
            .map(|(r, first, n)| {
                let hosts = match n {
                    1 => format!("host `{first}`"),
                    _ => format!("host `{first}` and {} more", n - 1),
                };
                Diagnostic::error(
                    "unsupported-connection",
                    r.span.clone(),
                    format!("{hosts}: {}", r.message),
                )
                .with_help("leave such hosts out with `--select`/`--limit`, or give them an SSH connection")
            })
            .collect()
    }
}

/// `--playbook-dir`, for every command that reads inventories.
static PLAYBOOK_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets where [`load`] reads the playbook directory's `group_vars/` and
/// `host_vars/` (the `--playbook-dir` flag, which every command that reads
/// inventories takes alike); unset, it is the current directory, as for
/// `ansible-inventory`.
pub fn set_playbook_dir(dir: PathBuf) {
    let _ = PLAYBOOK_DIR.set(dir);
}

/// Hosts over this many in one `load` are refused (memory bound).
pub const MAX_HOSTS: u64 = 1_000_000;

/// Reads and merges inventory sources (format detected per file: native
/// YAML has `version:` and `datacenters:`, Ansible YAML has `all:`/groups,
/// script JSON has `_meta` or host lists, CSV a header row with `name`, an
/// executable with a `#!` line is run with `--list`, else INI; a directory is
/// an Ansible directory inventory). Returns every problem found; warnings may
/// accompany an `Ok`.
///
/// Merging: a host named in several places is one host; its labels and groups
/// are united. Different `address`, `port`, `user` or `jump`, or two values for
/// one label, are errors naming both places.
pub fn load(
    paths: &[String],
    sources: &mut Sources,
) -> Result<(Inventory, Vec<Diagnostic>), Vec<Diagnostic>> {
    let dir = PLAYBOOK_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("."));
    load_with(paths, &dir, sources)
}

/// [`load`] with the playbook directory given: Ansible reads `group_vars/`
/// and `host_vars/` there too, after those beside each source.
pub fn load_with(
    paths: &[String],
    playbook_dir: &Path,
    sources: &mut Sources,
) -> Result<(Inventory, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut reader = Reader {
        sources,
        budget: MAX_HOSTS,
        model: ansible::Model::new(),
        basedirs: Vec::new(),
        parts: Vec::new(),
        open_dirs: Vec::new(),
    };
    for path in paths {
        reader.source(path, &mut diags);
    }
    let Reader {
        sources,
        mut model,
        basedirs,
        parts,
        ..
    } = reader;
    let mut ansible_hosts = None;
    let mut refused = Vec::new();
    let mut vars_files = Vec::new();
    if parts.iter().any(|p| matches!(p, Part::Ansible)) {
        vars_files = vars_dirs::apply(&mut model, &basedirs, playbook_dir, sources, &mut diags);
        let (hosts, r) = model.resolve(basedirs.len() + 1, &mut diags);
        ansible_hosts = Some(hosts);
        refused = r;
    }
    let mut merged = Merger::default();
    for part in parts {
        match part {
            Part::Other(file) => merged.add(file, &mut diags),
            Part::Ansible => {
                let hosts = ansible_hosts.take().unwrap_or_default();
                merged.add(
                    FileInventory {
                        hosts,
                        ..FileInventory::default()
                    },
                    &mut diags,
                );
            }
        }
    }
    let mut inventory = merged.finish();
    for host in &mut inventory.hosts {
        host.bmc = BmcAddress::from_labels(&host.labels);
    }
    inventory.refused = refused;
    inventory.vars_files = vars_files;
    if inventory.hosts.is_empty() && !crate::diag::has_errors(&diags) {
        diags.push(Diagnostic::error(
            "no-hosts",
            None,
            format!("no hosts in {}", paths.join(", ")),
        ));
    }
    crate::diag::sort(&mut diags);
    if crate::diag::has_errors(&diags) {
        Err(diags)
    } else {
        Ok((inventory, diags))
    }
}
/// What one file contributes before merging.
#[derive(Debug, Default)]
pub(crate) struct FileInventory {
    pub hosts: Vec<Host>,
    pub identity_files: Vec<String>,
    pub known_hosts: Option<(String, Span)>,
}

/// Where each source's hosts go: native and CSV files are merged host by
/// host; every Ansible source goes into the one model, placed where the first
/// Ansible source was named (so `hosts` lists hosts in `-i` order).
enum Part {
    Other(FileInventory),
    Ansible,
}

struct Reader<'a> {
    sources: &'a mut Sources,
    budget: u64,
    model: ansible::Model,
    /// The `group_vars/`/`host_vars/` base of each Ansible `-i` source, in order.
    basedirs: Vec<PathBuf>,
    parts: Vec<Part>,
    /// (device, inode) of the directories being read, outermost first.
    open_dirs: Vec<(u64, u64)>,
}

/// Names Ansible skips in an inventory directory (`IGNORED_ALWAYS`), and
/// the endings of its default `INVENTORY_IGNORE_EXTS`.
const IGNORED_NAMES: &[&str] = &["host_vars", "group_vars", "vars_plugins"];
const IGNORED_ENDINGS: &[&str] = &[
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
];

fn file_span(path: &Path) -> Span {
    Span::file(Arc::from(path.to_string_lossy().as_ref()))
}

impl Reader<'_> {
    fn source(&mut self, path: &str, diags: &mut Vec<Diagnostic>) {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                self.basedirs.push(PathBuf::from(path));
                self.ansible();
                self.directory(Path::new(path), diags);
            }
            Ok(_) => {
                if self.file(path, diags) {
                    let base = Path::new(path).parent().unwrap_or(Path::new(""));
                    let base = if base.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        base
                    };
                    self.basedirs.push(base.to_path_buf());
                }
            }
            // Ansible's `host_list` plugin: `-i 'web1,web2:2222,'`.
            Err(_) if path.contains(',') => {
                self.ansible();
                self.host_list(path, diags);
            }
            Err(e) => diags.push(Diagnostic::error(
                "unreadable",
                file_span(Path::new(path)),
                format!("cannot read {path}: {e}"),
            )),
        }
    }

    fn ansible(&mut self) {
        if !self.parts.iter().any(|p| matches!(p, Part::Ansible)) {
            self.parts.push(Part::Ansible);
        }
    }

    /// Ansible's directory inventory: entries in byte order, recursively;
    /// a directory that leads back to one being read (a symlink loop, found
    /// by device and inode) is skipped with a warning.
    fn directory(&mut self, dir: &Path, diags: &mut Vec<Diagnostic>) {
        let Some(id) = vars_dirs::dir_id(dir) else {
            return self.directory_entries(dir, diags);
        };
        if self.open_dirs.contains(&id) {
            diags.push(vars_dirs::loop_warning(dir));
            return;
        }
        self.open_dirs.push(id);
        self.directory_entries(dir, diags);
        self.open_dirs.pop();
    }

    fn directory_entries(&mut self, dir: &Path, diags: &mut Vec<Diagnostic>) {
        let mut names: Vec<std::ffi::OsString> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.flatten().map(|e| e.file_name()).collect(),
            Err(e) => {
                diags.push(Diagnostic::error(
                    "unreadable",
                    file_span(dir),
                    format!("cannot read {}: {e}", dir.display()),
                ));
                return;
            }
        };
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let text = name.to_string_lossy();
            let path = dir.join(&name);
            if text.starts_with('.') || IGNORED_NAMES.contains(&text.as_ref()) {
                continue;
            }
            if let Some(ending) = IGNORED_ENDINGS.iter().find(|e| text.ends_with(*e)) {
                if *ending == ".cfg" && path.is_file() {
                    diags.push(Diagnostic::warning(
                        "ignored-file",
                        file_span(&path),
                        format!(
                            "{} is skipped: Ansible ignores `{ending}` files in an inventory directory (INVENTORY_IGNORE_EXTS)",
                            path.display()
                        ),
                    ));
                }
                continue;
            }
            if path.is_dir() {
                self.directory(&path, diags);
            } else {
                self.file(&path.to_string_lossy(), diags);
            }
        }
    }

    /// Reads one inventory file; true when it went into the Ansible model.
    fn file(&mut self, path: &str, diags: &mut Vec<Diagnostic>) -> bool {
        let limits = Limits::default();
        if is_executable_binary(Path::new(path)) {
            self.ansible();
            script::read(path, &mut self.model, self.sources, &mut self.budget, diags);
            return true;
        }
        let text = match yaml::read_bounded(path, limits.max_bytes) {
            Ok(text) => text,
            Err(d) => {
                diags.push(d);
                return false;
            }
        };
        let base = Path::new(path).parent().unwrap_or(Path::new(""));
        let text: Arc<str> = Arc::from(text);
        let file = self.sources.add(path, text.clone());
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if text.starts_with("#!") {
            self.ansible();
            script::read(path, &mut self.model, self.sources, &mut self.budget, diags);
            return true;
        }
        if ext.as_deref() == Some("csv") || csv::looks_like_csv(&text) {
            let hosts = csv::read(&file, &text, &mut self.budget, diags);
            self.parts.push(Part::Other(hosts));
            return false;
        }
        if ext.as_deref() == Some("toml") {
            diags.push(Diagnostic::error(
                "unsupported-format",
                Span::file(file),
                format!("{path}: TOML inventories are not supported; convert it with `ansible-inventory -i {path} --list > inventory.json`"),
            ));
            return false;
        }
        if !looks_like_yaml(path, &text) {
            self.ansible();
            ansible_ini::read(&mut self.model, &file, &text, &mut self.budget, diags);
            return true;
        }
        let root = match yaml::parse(file.clone(), &text, limits) {
            Ok(root) => root,
            Err(d) => {
                diags.push(d);
                return false;
            }
        };
        if is_native(&root) {
            let hosts = native::read(&root, base, &mut self.budget, diags);
            self.parts.push(Part::Other(hosts));
            return false;
        }
        if let Some((_, plugin)) = root
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_scalar() == Some("plugin")))
        {
            diags.push(
                Diagnostic::error(
                    "unsupported-format",
                    plugin.span.clone(),
                    format!(
                        "inventory plugin configuration (`plugin: {}`) is not supported",
                        plugin.as_scalar().unwrap_or("?")
                    ),
                )
                .with_help(format!(
                    "export it once: `ansible-inventory -i {path} --list > inventory.json`, then use that file"
                )),
            );
            return false;
        }
        self.ansible();
        if ansible_yaml::is_script_json(&root) {
            // Saved script output without `_meta`: its hosts have only group
            // variables (there is no script to ask with `--host`).
            let _ = ansible_yaml::read_script(&mut self.model, &root, &mut self.budget, diags);
        } else {
            ansible_yaml::read(&mut self.model, &root, &mut self.budget, diags);
        }
        true
    }

    /// `web1,web2:2222,[2001:db8::1]:22` as Ansible's `host_list` reads it.
    fn host_list(&mut self, list: &str, diags: &mut Vec<Diagnostic>) {
        let file = self.sources.add(&format!("-i {list}"), Arc::from(list));
        let mut col = 1u32;
        for part in list.split(',') {
            let name = part.trim();
            let lead = (part.len() - part.trim_start().len()) as u32;
            let span = Span::new(
                file.clone(),
                1,
                col + lead,
                name.chars().count().max(1) as u32,
            );
            col += part.chars().count() as u32 + 1;
            if name.is_empty() {
                continue;
            }
            match ansible::split_port(name) {
                Ok((host, port)) if !host.contains(['[', ']']) => {
                    if !take_budget(&mut self.budget, 1, &span, diags) {
                        return;
                    }
                    let h = self.model.add_host(host, ansible::UNGROUPED, &span);
                    if let Some(p) = port {
                        self.model.set_host_var(
                            h,
                            "ansible_port",
                            ansible::Var::Scalar(p.to_string()),
                            span,
                        );
                    }
                }
                Ok(_) => diags.push(Diagnostic::error(
                    "bad-host",
                    span,
                    format!("`{name}`: a comma-separated host list takes no ranges"),
                )),
                Err(e) => diags.push(Diagnostic::error("bad-host", span, e)),
            }
        }
    }
}

/// A compiled inventory program (ELF, executable): run it like a script.
fn is_executable_binary(path: &Path) -> bool {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let executable = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
    let mut magic = [0u8; 4];
    executable
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && magic == *b"\x7fELF"
}

/// `.yaml`/`.yml`/`.json` are YAML; other names (Ansible's `hosts`, `*.ini`)
/// are INI unless the first meaningful line reads as a YAML mapping key
/// (`key:` at the end or before a space, not `host:2222`) or a JSON object.
fn looks_like_yaml(path: &str, text: &str) -> bool {
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yaml" | "yml" | "json") => true,
        Some("ini" | "cfg") => false,
        _ => text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
            .is_some_and(|l| {
                l == "---"
                    || l.starts_with('{')
                    || (!l.starts_with('[')
                        && (l.ends_with(':') || l.contains(": ") || l.contains(":\t")))
            }),
    }
}

fn is_native(root: &Node) -> bool {
    root.as_map().is_some_and(|entries| {
        entries
            .iter()
            .any(|(k, _)| matches!(k.as_scalar(), Some("version" | "datacenters")))
    })
}

/// The span of the part of a scalar that a pattern error points at.
pub(crate) fn inner_span(node: &Node, e: &pattern::PatternError) -> Span {
    let quote = match &node.value {
        Value::Scalar(s) if !s.plain => 1,
        _ => 0,
    };
    let mut span = node.span.clone();
    span.col += quote + e.offset as u32;
    span.len = e.len as u32;
    span
}

/// A relative `identity_file`/`known_hosts` is relative to the inventory file,
/// so an inventory written next to its key (as `rekindle sim` does) works from
/// any directory. `~` is left for the SSH layer to expand.
pub(crate) fn resolve_path(base: &Path, value: &str) -> String {
    if value.starts_with('~') || Path::new(value).is_absolute() || base.as_os_str().is_empty() {
        value.to_owned()
    } else {
        base.join(value).to_string_lossy().into_owned()
    }
}

/// Takes `n` hosts from the load-wide budget, or reports why not.
pub(crate) fn take_budget(
    budget: &mut u64,
    n: u64,
    span: &Span,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if n > *budget {
        diags.push(Diagnostic::error(
            "too-many-hosts",
            span.clone(),
            format!("inventories hold more than {MAX_HOSTS} hosts; refusing to expand further"),
        ));
        *budget = 0;
        return false;
    }
    *budget -= n;
    true
}

/// Checks a label key is usable in `--select` (`key=value,key=value`).
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty label key".into());
    }
    if matches!(key, "name" | "group") {
        return Err(format!(
            "label `{key}` is reserved: selectors read `{key}=` as the host's {key}"
        ));
    }
    if let Some(c) = key
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '=' | ',' | '*' | '?' | '[' | ']'))
    {
        return Err(format!(
            "label key `{key}` contains `{c}`, which selectors cannot express"
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Merger {
    hosts: Vec<Host>,
    index: HashMap<String, usize>,
    identity_files: Vec<String>,
    known_hosts: Option<(String, Span)>,
}

impl Merger {
    fn add(&mut self, file: FileInventory, diags: &mut Vec<Diagnostic>) {
        for f in file.identity_files {
            if !self.identity_files.contains(&f) {
                self.identity_files.push(f);
            }
        }
        if let Some((path, span)) = file.known_hosts {
            match &self.known_hosts {
                Some((first, first_span)) if *first != path => diags.push(Diagnostic::error(
                    "conflicting-defaults",
                    span,
                    format!("known_hosts `{path}` differs from `{first}` set at {first_span}"),
                )),
                Some(_) => {}
                None => self.known_hosts = Some((path, span)),
            }
        }
        self.hosts.reserve(file.hosts.len());
        for host in file.hosts {
            match self.index.entry(host.name.clone()) {
                Entry::Vacant(v) => {
                    v.insert(self.hosts.len());
                    self.hosts.push(host);
                }
                Entry::Occupied(o) => merge_host(&mut self.hosts[*o.get()], host, diags),
            }
        }
    }

    fn finish(self) -> Inventory {
        Inventory {
            hosts: self.hosts,
            identity_files: self.identity_files,
            known_hosts: self.known_hosts.map(|(p, _)| p),
            ..Inventory::default()
        }
    }
}

fn merge_host(first: &mut Host, other: Host, diags: &mut Vec<Diagnostic>) {
    let name = &first.name;
    let mut conflict = |what: &str, a: &str, b: &str| {
        diags.push(
            Diagnostic::error(
                "conflicting-host",
                other.span.clone(),
                format!(
                    "host `{name}` has {what} `{b}` here but `{a}` at {}",
                    first.span
                ),
            )
            .with_help("a host defined twice must agree; remove one definition or make them match"),
        );
    };
    if first.address != other.address {
        conflict("address", &first.address, &other.address);
    }
    if first.port != other.port {
        conflict("port", &first.port.to_string(), &other.port.to_string());
    }
    let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "(none)".into());
    if other.user.is_some() && first.user.is_some() && first.user != other.user {
        conflict("user", &show(&first.user), &show(&other.user));
    }
    if other.jump.is_some() && first.jump.is_some() && first.jump != other.jump {
        conflict("jump", &show(&first.jump), &show(&other.jump));
    }
    for (k, v) in &other.labels {
        if let Some(mine) = first.labels.get(k)
            && mine != v
        {
            conflict(&format!("label {k}"), mine, v);
        }
    }
    if let (Some(a), Some(b)) = (&first.identity_file, &other.identity_file)
        && a != b
    {
        conflict("identity file", &a.to_string_lossy(), &b.to_string_lossy());
    }
    if let (Some(a), Some(b)) = (&first.escalation, &other.escalation)
        && a != b
    {
        conflict("escalation", &format!("{a:?}"), &format!("{b:?}"));
    }
    if first.identity_file.is_none() {
        first.identity_file = other.identity_file;
    }
    if first.escalation.is_none() {
        first.escalation = other.escalation;
    }
    if first.user.is_none() {
        first.user = other.user;
    }
    if first.jump.is_none() {
        first.jump = other.jump;
    }
    for (k, v) in other.labels {
        first.labels.entry(k).or_insert(v);
    }
    for g in other.groups {
        if let Err(i) = first.groups.binary_search(&g) {
            first.groups.insert(i, g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection() {
        assert!(looks_like_yaml("inv.yaml", "[web]\n"));
        assert!(looks_like_yaml("inv.YML", ""));
        assert!(!looks_like_yaml("hosts.ini", "all:\n"));
        assert!(!looks_like_yaml("hosts", "# c\n[web]\nweb1\n"));
        assert!(!looks_like_yaml("hosts", "web1 ansible_port=22\n"));
        assert!(looks_like_yaml("hosts", "; c\nall:\n  hosts:\n"));
        assert!(looks_like_yaml("hosts", "---\nall: {}\n"));
    }

    #[test]
    fn overlapping_entries_in_one_file_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.yaml");
        std::fs::write(
            &path,
            "version: 1\ndatacenters:\n  x:\n    hosts:\n      - { name: \"w[1-3]\", labels: { role: web } }\n      - { name: \"w[3-4]\", labels: { role: db } }\n",
        )
        .unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut sources = Sources::new();
        let diags = load(std::slice::from_ref(&path), &mut sources).unwrap_err();
        assert_eq!(diags.len(), 1);
        assert_eq!(
            diags[0].message,
            format!("host `w3` has label role `db` here but `web` at {path}:5:17")
        );
        assert_eq!(diags[0].span.as_ref().map(|s| s.line), Some(6));
    }

    #[test]
    fn relative_key_paths_follow_the_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.yaml");
        std::fs::write(
            &path,
            "version: 1\ndefaults: { identity_file: id_ed25519, known_hosts: /etc/kh }\ndatacenters:\n  sim:\n    hosts: [ { name: h1, address: 127.0.0.2 } ]\n",
        )
        .unwrap();
        let mut sources = Sources::new();
        let (inv, warnings) = load(&[path.to_string_lossy().into_owned()], &mut sources).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            inv.identity_files,
            [dir.path().join("id_ed25519").to_string_lossy().into_owned()]
        );
        assert_eq!(inv.known_hosts.as_deref(), Some("/etc/kh"));
        assert_eq!(inv.hosts[0].address, "127.0.0.2");
    }
}

//! What an Ansible host's variables mean to rekindle: where and how to
//! connect, which privilege escalation to use, and which labels it has.
//!
//! Mapping (the README's table says the same for users):
//! - `ansible_host`/`ansible_ssh_host` -> address (default: the name),
//!   `ansible_port`/`ansible_ssh_port` -> port (default 22),
//!   `ansible_user`/`ansible_ssh_user` -> user; when both spellings are set,
//!   the `ansible_ssh_*` one wins, as in Ansible;
//! - `ansible_ssh_common_args`, `ansible_ssh_extra_args`, `ansible_ssh_args`,
//!   split with shell quoting: `-J X`, `-o ProxyJump=X` (or `-o "ProxyJump X"`)
//!   -> jump; `ProxyCommand` is refused; any other option is a warning;
//! - `ansible_ssh_private_key_file`/`ansible_private_key_file` -> identity file;
//! - `ansible_become` (true) with `ansible_become_method` (sudo, doas; others
//!   refused) and `ansible_become_user` (default root) -> escalation;
//! - `ansible_connection` other than ssh/smart/paramiko is refused (rekindle
//!   reaches hosts over SSH only, `local` included: see README);
//! - the rest of [`VARS`]: warnings naming the variable, or errors;
//! - every other scalar variable not starting with `ansible_` -> a label,
//!   unless it is vault-encrypted or named like a secret (`*password*`,
//!   `*token*`, ...): labels are printed and journaled, secrets never are.
//!
//! Values that are Jinja templates are rendered first (`template.rs`).
//! Problems are reported once per place (a `[all:vars]` line read by 36,000
//! hosts gives one diagnostic), naming the first host and how many more.
//!
//! It must not parse inventory files nor apply variable precedence.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::escalation::{Become, BecomeMethod};
use super::pattern::tidy_ipv4;
use super::template::{Compiled, is_template};
use super::var::Var;
use super::{Host, check_label_key};
use crate::diag::{Diagnostic, Severity, Span};

/// How rekindle treats a connection-affecting variable it does not map.
#[derive(Debug, Clone, Copy)]
enum Handling {
    /// Mapped onto the host (see the module docs).
    Used,
    /// Cannot be honoured, but connecting without it is safe: a warning.
    Warn(&'static str),
}

/// Connection-affecting variables rekindle knows. Not listed and starting
/// with one of [`UNSUPPORTED_PREFIXES`]: a warning too.
const VARS: &[(&str, Handling)] = &[
    ("ansible_host", Handling::Used),
    ("ansible_ssh_host", Handling::Used),
    ("ansible_port", Handling::Used),
    ("ansible_ssh_port", Handling::Used),
    ("ansible_user", Handling::Used),
    ("ansible_ssh_user", Handling::Used),
    ("ansible_ssh_common_args", Handling::Used),
    ("ansible_ssh_extra_args", Handling::Used),
    ("ansible_ssh_args", Handling::Used),
    ("ansible_ssh_private_key_file", Handling::Used),
    ("ansible_private_key_file", Handling::Used),
    ("ansible_become", Handling::Used),
    ("ansible_become_user", Handling::Used),
    ("ansible_become_method", Handling::Used),
    ("ansible_connection", Handling::Used),
    ("ansible_shell_type", Handling::Used),
    ("ansible_group_priority", Handling::Used),
    ("ansible_password", Handling::Warn(PASSWORD)),
    ("ansible_ssh_pass", Handling::Warn(PASSWORD)),
    ("ansible_ssh_password", Handling::Warn(PASSWORD)),
    ("ansible_become_password", Handling::Warn(BECOME_PASSWORD)),
    ("ansible_become_pass", Handling::Warn(BECOME_PASSWORD)),
    (
        "ansible_become_exe",
        Handling::Warn("rekindle runs `sudo` or `doas` from the PATH"),
    ),
    (
        "ansible_become_flags",
        Handling::Warn("rekindle passes no extra flags to sudo or doas"),
    ),
    (
        "ansible_ssh_executable",
        Handling::Warn("rekindle speaks SSH itself and runs no ssh program"),
    ),
    ("ansible_host_key_checking", Handling::Warn(HOST_KEYS)),
    ("ansible_ssh_host_key_checking", Handling::Warn(HOST_KEYS)),
    ("ansible_ssh_timeout", Handling::Warn(TIMEOUT)),
    ("ansible_timeout", Handling::Warn(TIMEOUT)),
    (
        "ansible_ssh_retries",
        Handling::Warn("retries are the playbook's `wait_ssh` and `on_unreachable`"),
    ),
    (
        "ansible_shell_executable",
        Handling::Warn("commands run in the login shell of the SSH user"),
    ),
    ("ansible_ssh_transfer_method", Handling::Warn(NO_FILES)),
    ("ansible_scp_if_ssh", Handling::Warn(NO_FILES)),
    ("ansible_scp_extra_args", Handling::Warn(NO_FILES)),
    ("ansible_sftp_extra_args", Handling::Warn(NO_FILES)),
    ("ansible_sftp_batch_mode", Handling::Warn(NO_FILES)),
    (
        "ansible_ssh_pipelining",
        Handling::Warn("rekindle runs each command in its own SSH channel"),
    ),
    (
        "ansible_pipelining",
        Handling::Warn("rekindle runs each command in its own SSH channel"),
    ),
];

const PASSWORD: &str =
    "rekindle authenticates with ssh-agent and identity files only; the password is not used";
const BECOME_PASSWORD: &str =
    "escalation runs non-interactively; the password is not used (the host needs NOPASSWD)";
const HOST_KEYS: &str = "rekindle always checks host keys against known_hosts";
const TIMEOUT: &str = "the playbook's `connect_timeout` applies";
const NO_FILES: &str = "rekindle copies no files";

/// Families of connection variables rekindle has no use for.
const UNSUPPORTED_PREFIXES: &[&str] = &[
    "ansible_ssh_",
    "ansible_sftp_",
    "ansible_scp_",
    "ansible_paramiko_",
    "ansible_become_",
    "ansible_sudo",
    "ansible_su_",
    "ansible_winrm_",
    "ansible_psrp_",
    "ansible_docker_",
    "ansible_libssh_",
];

/// Problems of many hosts, kept once per place.
#[derive(Default)]
pub(crate) struct Reports {
    seen: HashMap<(Span, &'static str, String), usize>,
    list: Vec<(Diagnostic, String, usize)>,
}

impl Reports {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        span: &Span,
        host: &str,
        message: String,
    ) {
        let key = (span.clone(), code, message);
        if let Some(&i) = self.seen.get(&key) {
            self.list[i].2 += 1;
            return;
        }
        let d = match severity {
            Severity::Error => Diagnostic::error(code, span.clone(), String::new()),
            Severity::Warning => Diagnostic::warning(code, span.clone(), String::new()),
        };
        self.seen.insert(key.clone(), self.list.len());
        self.list.push((
            Diagnostic {
                message: key.2,
                ..d
            },
            host.to_owned(),
            1,
        ));
    }

    /// Like `push`, for a place whose source line holds a secret: the
    /// diagnostic names the file and line but does not quote the line.
    fn push_secret(&mut self, span: &Span, host: &str, message: String) {
        let line = span.line;
        self.push(
            Severity::Warning,
            "unsupported-variable",
            &Span::file(span.file.clone()),
            host,
            format!("line {line}: {message}"),
        );
    }

    /// Emits every problem, naming its first host and how many more share it.
    pub(crate) fn finish(self, diags: &mut Vec<Diagnostic>) {
        for (mut d, host, n) in self.list {
            let hosts = match n {
                1 => format!("host `{host}`"),
                2 => format!("host `{host}` and 1 more"),
                _ => format!("host `{host}` and {} more", n - 1),
            };
            d.message = format!("{hosts}: {}", d.message);
            diags.push(d);
        }
    }
}

/// The host's merged variables, templates rendered on use.
struct Vars<'a> {
    host: &'a str,
    /// The host's number in the load, for `Compiled::render`.
    index: usize,
    list: &'a [(&'a str, &'a Var, &'a Span)],
    compiled: Option<&'a Compiled>,
}

impl<'a> Vars<'a> {
    fn raw(&self, name: &str) -> Option<(&'a Var, &'a Span)> {
        self.list
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, v, s)| (*v, *s))
    }

    /// A scalar variable's value, rendered if it is a template.
    fn text(&mut self, name: &str, reports: &mut Reports) -> Option<(String, &'a Span)> {
        let (var, span) = self.raw(name)?;
        let value = match var {
            Var::Scalar(value) => value,
            Var::Unsafe(text) => return Some((text.clone(), span)),
            Var::Null | Var::Complex => return None,
        };
        if is_vault(value) {
            reports.push(
                Severity::Error,
                "vault",
                span,
                self.host,
                format!("{name} is encrypted with ansible-vault: rekindle cannot decrypt it"),
            );
            return None;
        }
        match self.render(value) {
            Ok(text) => text.map(|t| (t, span)),
            Err(e) => {
                reports.push(
                    Severity::Error,
                    "template",
                    span,
                    self.host,
                    format!("cannot evaluate {name} `{value}`: {e}"),
                );
                None
            }
        }
    }

    /// `None` when the template gives Ansible's null (the variable is then unset).
    fn render(&self, value: &str) -> Result<Option<String>, String> {
        match self.compiled.filter(|_| is_template(value)) {
            Some(compiled) => compiled.render(value, self.index),
            None => Ok(Some(value.to_owned())),
        }
    }

    /// The first of `names` that is set. Callers list the `ansible_ssh_*`
    /// spelling first: Ansible's ssh plugin takes the last matching name of
    /// its option's variable list, and that is the legacy one (checked with
    /// ansible-core 2.19.14 `-vvv`: `ansible_ssh_host` beats `ansible_host`).
    fn first(&mut self, names: &[&str], reports: &mut Reports) -> Option<(String, &'a Span)> {
        names.iter().find_map(|n| self.text(n, reports))
    }
}

/// Maps one host's merged variables (lowest precedence first, later entries
/// already replaced earlier ones) onto a [`Host`].
pub(crate) fn to_host(
    name: &str,
    index: usize,
    span: &Span,
    vars: &[(&str, &Var, &Span)],
    groups: Vec<String>,
    compiled: Option<&Compiled>,
    reports: &mut Reports,
) -> (Host, Option<Refusal>) {
    let mut v = Vars {
        host: name,
        index,
        list: vars,
        compiled,
    };
    let mut address = v
        .first(&["ansible_ssh_host", "ansible_host"], reports)
        .map(|(a, _)| a)
        .unwrap_or_else(|| name.to_owned());
    if let Ok(tidy) = tidy_ipv4(&address) {
        address = tidy.into_owned();
    }
    let port = match v.first(&["ansible_ssh_port", "ansible_port"], reports) {
        None => 22,
        Some((text, span)) => match text.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                reports.push(
                    Severity::Error,
                    "wrong-type",
                    span,
                    name,
                    format!("ansible_port `{text}` is not a port number (1-65535)"),
                );
                22
            }
        },
    };
    let user = v
        .first(&["ansible_ssh_user", "ansible_user"], reports)
        .map(|(u, _)| u);
    // In the order Ansible puts them on ssh's command line; ssh keeps the
    // first ProxyJump it is given.
    let mut jump = None;
    for var in [
        "ansible_ssh_args",
        "ansible_ssh_common_args",
        "ansible_ssh_extra_args",
    ] {
        if let Some((args, span)) = v.text(var, reports)
            && let Some(j) = ssh_args(var, &args, span, name, reports)
        {
            jump.get_or_insert(j);
        }
    }
    let identity_file = v
        .first(
            &["ansible_ssh_private_key_file", "ansible_private_key_file"],
            reports,
        )
        .map(|(path, _)| PathBuf::from(path));
    let escalation = escalation(&mut v, reports);
    // A host rekindle cannot reach is refused only if a run selects it
    // (kolla-ansible's `localhost ansible_connection=local` sits beside the
    // hosts it deploys): kept as a refusal, reported by `Inventory::refusals`.
    let mut refusal = None;
    if let Some((conn, span)) = v.text("ansible_connection", reports) {
        let plugin = conn.strip_prefix("ansible.builtin.").unwrap_or(&conn);
        if !matches!(plugin, "ssh" | "smart" | "paramiko" | "paramiko_ssh") {
            let why = if plugin == "local" {
                "rekindle reaches every host over SSH; put the host's address in ansible_host to reach it by SSH, or use a `local:` step for work on the bastion"
            } else {
                "rekindle reaches hosts over SSH only"
            };
            refusal = Some(Refusal {
                span: span.clone(),
                message: format!("ansible_connection `{conn}` is not supported: {why}"),
            });
        }
    }
    if let Some((shell, span)) = v.text("ansible_shell_type", reports) {
        match shell.as_str() {
            "sh" | "bash" => {}
            "powershell" | "cmd" => {
                refusal.get_or_insert(Refusal {
                    span: span.clone(),
                    message: format!(
                        "ansible_shell_type `{shell}` is not supported: rekindle's commands are POSIX shell"
                    ),
                });
            }
            _ => reports.push(
                Severity::Warning,
                "unsupported-variable",
                span,
                name,
                format!("ansible_shell_type `{shell}`: rekindle quotes commands for a POSIX shell"),
            ),
        }
    }
    let mut labels = BTreeMap::new();
    for (k, var, span) in vars {
        if k.starts_with("ansible_") {
            match VARS.iter().find(|(n, _)| n == k) {
                Some((_, Handling::Used)) => {}
                Some((_, Handling::Warn(why))) if looks_secret(k) => {
                    reports.push_secret(span, name, format!("{k} is not used: {why}"));
                }
                Some((_, Handling::Warn(why))) => reports.push(
                    Severity::Warning,
                    "unsupported-variable",
                    span,
                    name,
                    format!("{k} is not used: {why}"),
                ),
                None if looks_secret(k) => reports.push_secret(
                    span,
                    name,
                    format!("{k} is not used: rekindle does not support this connection setting"),
                ),
                None if UNSUPPORTED_PREFIXES.iter().any(|p| k.starts_with(p)) => reports.push(
                    Severity::Warning,
                    "unsupported-variable",
                    span,
                    name,
                    format!("{k} is not used: rekindle does not support this connection setting"),
                ),
                None => {}
            }
            continue;
        }
        let (value, template) = match var {
            Var::Scalar(value) => (value, true),
            Var::Unsafe(value) => (value, false),
            Var::Null | Var::Complex => continue,
        };
        if is_vault(value) || looks_secret(k) {
            // Labels are printed and journaled; a secret must never be one.
            reports.push_secret(
                span,
                name,
                format!("variable `{k}` is not a label: it looks like a secret"),
            );
            continue;
        }
        if let Err(e) = check_label_key(k) {
            reports.push(
                Severity::Warning,
                "unusable-variable",
                span,
                name,
                format!("variable `{k}` is not a label: {e}"),
            );
            continue;
        }
        let rendered = if template {
            v.render(value)
        } else {
            Ok(Some(value.clone()))
        };
        match rendered {
            Ok(Some(text)) => {
                labels.insert((*k).to_owned(), text);
            }
            // Ansible's null: no label, as a null variable is none.
            Ok(None) => {}
            // A label is not worth refusing the inventory for: dropped, loudly.
            Err(e) => reports.push(
                Severity::Warning,
                "template",
                span,
                name,
                format!("label `{k}` left out: cannot evaluate `{value}`: {e}"),
            ),
        }
    }
    let host = Host {
        name: name.to_owned(),
        address,
        port,
        user,
        jump,
        labels,
        identity_file,
        escalation,
        bmc: None,
        groups,
        span: span.clone(),
    };
    (host, refusal)
}

/// Why a host cannot be reached, reported only when a run selects it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub span: Span,
    pub message: String,
}

/// An inline `!vault` value (its tag is not kept, its text is recognisable).
fn is_vault(value: &str) -> bool {
    value.trim_start().starts_with("$ANSIBLE_VAULT;")
}

/// Variable names that hold credentials by convention.
pub(crate) fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_pass")
        || k == "pass"
}

/// Ansible's `boolean()`: the spellings it accepts, case-insensitively.
fn boolean(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "y" | "yes" | "on" | "1" | "true" | "t" | "1.0" => Some(true),
        "n" | "no" | "off" | "0" | "false" | "f" | "0.0" | "" => Some(false),
        _ => None,
    }
}

fn escalation(v: &mut Vars<'_>, reports: &mut Reports) -> Option<Become> {
    let host = v.host;
    let method = match v.text("ansible_become_method", reports) {
        None => Some(BecomeMethod::Sudo),
        Some((text, span)) => {
            let plugin = text.strip_prefix("ansible.builtin.").unwrap_or(&text);
            let method = BecomeMethod::parse(plugin);
            if method.is_none() {
                reports.push(
                    Severity::Error,
                    "unsupported-become",
                    span,
                    host,
                    format!("ansible_become_method `{text}` is not supported: rekindle escalates with sudo or doas"),
                );
            }
            method
        }
    };
    let (become_text, span) = v.text("ansible_become", reports)?;
    let on = match boolean(&become_text) {
        Some(on) => on,
        None => {
            reports.push(
                Severity::Error,
                "wrong-type",
                span,
                host,
                format!("ansible_become `{become_text}` is not a boolean"),
            );
            false
        }
    };
    if !on {
        return None;
    }
    let user = v
        .text("ansible_become_user", reports)
        .map_or_else(|| "root".to_owned(), |(u, _)| u);
    Some(Become {
        method: method?,
        user,
    })
}

/// Reads ssh command-line arguments as ssh would (after shell quoting): the
/// jump host, `ProxyCommand` refused, anything else warned about.
fn ssh_args(
    var: &str,
    args: &str,
    span: &Span,
    host: &str,
    reports: &mut Reports,
) -> Option<String> {
    let Some(words) = shlex::split(args) else {
        reports.push(
            Severity::Error,
            "bad-value",
            span,
            host,
            format!("{var} `{args}` has unbalanced quotes"),
        );
        return None;
    };
    let mut jump = None;
    let mut ignored = Vec::new();
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let (flag, inline) = match w.strip_prefix('-') {
            Some(rest) if !rest.is_empty() => rest.split_at(1),
            _ => {
                ignored.push(w);
                continue;
            }
        };
        let takes_value = matches!(
            flag,
            "J" | "o"
                | "p"
                | "l"
                | "i"
                | "F"
                | "E"
                | "c"
                | "m"
                | "b"
                | "D"
                | "L"
                | "R"
                | "W"
                | "w"
                | "S"
                | "O"
                | "Q"
                | "B"
                | "I"
                | "e"
        );
        let value = if !takes_value {
            None
        } else if inline.is_empty() {
            words.next()
        } else {
            Some(inline.to_owned())
        };
        match (flag, value) {
            ("J", Some(target)) => {
                jump.get_or_insert(target);
            }
            ("o", Some(option)) => {
                let option = option.trim();
                let (key, val) = option
                    .split_once(|c: char| c == '=' || c.is_whitespace())
                    .map_or((option, ""), |(k, v)| {
                        (k.trim(), v.trim().trim_start_matches('=').trim())
                    });
                match key.to_ascii_lowercase().as_str() {
                    "proxyjump" if val.eq_ignore_ascii_case("none") => {}
                    "proxyjump" => {
                        jump.get_or_insert(val.to_owned());
                    }
                    "proxycommand" => match proxy_command_jump(val) {
                        Some(j) => {
                            jump.get_or_insert(j);
                        }
                        None => reports.push(
                            Severity::Error,
                            "unsupported-ssh-option",
                            span,
                            host,
                            format!("ProxyCommand in {var} is not supported: use ProxyJump (`-o ProxyJump=HOST` or `-J HOST`); only `ssh -W %h:%p [-q] [-p PORT] [-l USER] [USER@]HOST` is read as one"),
                        ),
                    },
                    _ => ignored.push(format!("-o {option}")),
                }
            }
            (_, Some(value)) => ignored.push(format!("-{flag} {value}")),
            (_, None) => ignored.push(w),
        }
    }
    if !ignored.is_empty() {
        reports.push(
            Severity::Warning,
            "unsupported-ssh-option",
            span,
            host,
            format!(
                "{var}: `{}` ignored: rekindle honours only ProxyJump (`-J`, `-o ProxyJump=`) here",
                ignored.join(" ")
            ),
        );
    }
    jump
}

/// The bastion idiom `ProxyCommand="ssh -W %h:%p -q user@bastion"` is a
/// ProxyJump to `user@bastion` (what OpenSSH's `-J` itself runs): read as
/// `[user@]host[:port]`. Any other command (`nc`, options that change the
/// jump's own connection) is `None`: rekindle runs no ProxyCommand.
fn proxy_command_jump(command: &str) -> Option<String> {
    let words = shlex::split(command)?;
    let (program, args) = words.split_first()?;
    if program != "ssh" && !program.ends_with("/ssh") {
        return None;
    }
    let (mut forward, mut port, mut user, mut dest) = (false, None, None, None);
    let mut it = args.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-W" => forward = matches!(it.next()?.as_str(), "%h:%p" | "[%h]:%p"),
            "-q" | "-T" | "-4" | "-6" | "-C" => {}
            "-p" => port = Some(it.next()?.parse::<u16>().ok()?),
            "-l" => user = Some(it.next()?.clone()),
            w if w.starts_with('-') || dest.is_some() => return None,
            w => dest = Some(w.to_owned()),
        }
    }
    let dest = dest?;
    if !forward || dest.contains(['%', ':', '/']) {
        return None;
    }
    let mut out = match (user, dest.contains('@')) {
        (Some(_), true) => return None,
        (Some(u), false) => format!("{u}@{dest}"),
        (None, _) => dest,
    };
    if let Some(p) = port {
        out.push_str(&format!(":{p}"));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jump(args: &str) -> (Option<String>, Vec<String>) {
        let mut reports = Reports::default();
        let span = Span::new(std::sync::Arc::from("f"), 1, 1, 1);
        let j = ssh_args("ansible_ssh_common_args", args, &span, "h", &mut reports);
        let mut diags = Vec::new();
        reports.finish(&mut diags);
        (j, diags.into_iter().map(|d| d.message).collect())
    }

    #[test]
    fn proxy_jump_forms() {
        assert_eq!(jump("-J bastion").0.as_deref(), Some("bastion"));
        assert_eq!(jump("-Jops@b:22").0.as_deref(), Some("ops@b:22"));
        assert_eq!(jump("-o ProxyJump=b1").0.as_deref(), Some("b1"));
        assert_eq!(jump("-oProxyJump=b2").0.as_deref(), Some("b2"));
        assert_eq!(jump(r#"-o ProxyJump="u@h""#).0.as_deref(), Some("u@h"));
        assert_eq!(jump(r#"-o "ProxyJump h2""#).0.as_deref(), Some("h2"));
        assert_eq!(jump("-o 'proxyjump = h3'").0.as_deref(), Some("h3"));
        assert_eq!(jump("-o ProxyJump=none"), (None, vec![]));
    }

    #[test]
    fn other_options_are_named_and_proxy_command_refused() {
        let (j, msgs) = jump("-o StrictHostKeyChecking=no -J b -C");
        assert_eq!(j.as_deref(), Some("b"));
        assert_eq!(
            msgs,
            [
                "host `h`: ansible_ssh_common_args: `-o StrictHostKeyChecking=no -C` ignored: rekindle honours only ProxyJump (`-J`, `-o ProxyJump=`) here"
            ]
        );
        let (j, msgs) = jump(r#"-o ProxyCommand="nc -X connect -x proxy:3128 %h %p""#);
        assert_eq!(j, None);
        assert_eq!(
            msgs,
            [
                "host `h`: ProxyCommand in ansible_ssh_common_args is not supported: use ProxyJump (`-o ProxyJump=HOST` or `-J HOST`); only `ssh -W %h:%p [-q] [-p PORT] [-l USER] [USER@]HOST` is read as one"
            ]
        );
    }

    #[test]
    fn the_ssh_w_proxy_command_is_a_proxy_jump() {
        for (args, want) in [
            (
                r#"-o ProxyCommand="ssh -W %h:%p -q user@bastion""#,
                Some("user@bastion"),
            ),
            (
                r#"-o ProxyCommand="ssh -q -W %h:%p -p 2222 bastion""#,
                Some("bastion:2222"),
            ),
            (r#"-o 'ProxyCommand=ssh -l ops -W %h:%p b'"#, Some("ops@b")),
            (r#"-o ProxyCommand="ssh -i key -W %h:%p b""#, None),
            (r#"-o ProxyCommand="ssh b nc %h %p""#, None),
        ] {
            assert_eq!(jump(args).0.as_deref(), want, "{args}");
        }
    }

    #[test]
    fn booleans_as_ansible_reads_them() {
        assert_eq!(boolean("Yes"), Some(true));
        assert_eq!(boolean("1"), Some(true));
        assert_eq!(boolean("off"), Some(false));
        assert_eq!(boolean("maybe"), None);
    }
}

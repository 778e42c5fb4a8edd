//! Step one of reading a playbook: the spanned YAML tree into typed models,
//! with the spans validation needs kept beside them ([`StageSpans`]).
//!
//! Owns keys, shapes, defaults and unit parsing; every problem becomes a
//! diagnostic and parsing goes on, so one pass reports them all. It must not
//! check relations between stages (that is `validate`) or look at hosts.

use std::sync::Arc;
use std::time::Duration;

use super::StepKind;
use super::template;
use super::units::{parse_amount, parse_duration, parse_rate};
use super::{
    Amount, Check, Health, MAX_POWER_CYCLES, OnUnreachable, Playbook, PowerOn, Rate, Remediate,
    Stage, Step,
};
use crate::diag::{Diagnostic, Span, suggest};
use crate::inventory::{Become, BecomeMethod};
use crate::select::Selector;
use crate::yaml::{MapReader, Node, Value};

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_WAIT_SSH_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const DEFAULT_REBOOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_REBOOT_COMMAND: &str = "systemctl reboot";

/// [`DEFAULT_REBOOT_COMMAND`] as the template a `reboot` step keeps.
pub fn default_reboot_command() -> template::Template {
    template::Template::new(DEFAULT_REBOOT_COMMAND, template::Quote::Shell)
        .expect("the default reboot command has no placeholders")
}
pub const DEFAULT_POWER_ON_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_PDU_INTERVAL: Duration = Duration::from_secs(2);
pub const MIN_PDU_INTERVAL: Duration = Duration::from_millis(100);
pub const DEFAULT_POWER_ON_RATE: Rate = Rate {
    count: 20,
    per: Duration::from_secs(1),
};
pub const DEFAULT_REPROBE: Duration = Duration::from_secs(60);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Redfish `ResetType` values a `power_on` step may ask for. `On` is the
/// default; the others only when the playbook says so explicitly.
pub const RESET_TYPES: &[&str] = &[
    "On",
    "ForceOn",
    "PowerCycle",
    "ForceRestart",
    "GracefulRestart",
];

/// The step keys, as [`StepKind::as_str`] names them.
pub const STEP_KINDS: [&str; StepKind::ALL.len()] = {
    let mut names = [""; StepKind::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = StepKind::ALL[i].as_str();
        i += 1;
    }
    names
};
const PLAYBOOK_KEYS: &[&str] = &["version", "name", "defaults", "stages"];
const DEFAULTS_KEYS: &[&str] = &[
    "connect_timeout",
    "command_timeout",
    "parallel",
    "rate",
    "rate_per",
    "max_unavailable",
    "max_failures",
    "on_unreachable",
    "retry_failed_hosts",
    "remediate",
    "become",
];
const BECOME_KEYS: &[&str] = &["method", "user"];
const REMEDIATE_KEYS: &[&str] = &["power_cycle"];
const BECOME_METHODS: &[&str] = &[BecomeMethod::Sudo.name(), BecomeMethod::Doas.name()];
const STAGE_KEYS: &[&str] = &[
    "name",
    "after",
    "select",
    "parallel",
    "rate",
    "rate_per",
    "max_unavailable",
    "max_failures",
    "canary",
    "on_unreachable",
    "retry_failed_hosts",
    "remediate",
    "become",
    "estimate",
    "connect_timeout",
    "command_timeout",
    "steps",
];

/// Where the parts of one stage were written, for diagnostics that come later.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpans {
    pub name: Span,
    pub select: Span,
    /// False when `select` was missing or broken (already reported).
    pub select_ok: bool,
    /// One per entry of `Stage::after`.
    pub after: Vec<Span>,
    pub canary: Option<Span>,
    /// The key of each `max_unavailable` entry, in order.
    pub max_unavailable: Vec<Span>,
    pub rate_per: Option<Span>,
    /// The `max_failures` value (the stage's or the defaults').
    pub max_failures: Option<Span>,
    /// Every command or URL with placeholders, where it was written.
    pub templates: Vec<(template::Template, Span)>,
    /// The first `power_on` step, if any.
    pub power_on: Option<Span>,
    /// The `remediate` key, when the stage itself (not `defaults`) has it.
    pub remediate: Option<Span>,
    /// The `remediate` value in effect (the stage's or the defaults').
    pub remediate_value: Option<Span>,
}

/// A playbook as read (possibly with errors already reported), with its spans.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub playbook: Playbook,
    pub spans: Vec<StageSpans>,
}

/// Stage policy that `defaults` may set for every stage.
#[derive(Debug, Clone)]
struct Policy {
    connect_timeout: Duration,
    command_timeout: Duration,
    parallel: Amount,
    ramp: Vec<Amount>,
    rate: Option<Rate>,
    rate_per: Option<(String, Span)>,
    max_unavailable: Vec<(String, Amount, Span)>,
    max_failures: Amount,
    max_failures_span: Option<Span>,
    on_unreachable: OnUnreachable,
    retry_failed_hosts: bool,
    remediate: Option<(Remediate, Span)>,
    escalation: Option<Become>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            parallel: Amount::Count(1),
            ramp: Vec::new(),
            rate: None,
            rate_per: None,
            max_unavailable: Vec::new(),
            max_failures: Amount::Count(0),
            max_failures_span: None,
            on_unreachable: OnUnreachable::Fail,
            retry_failed_hosts: false,
            remediate: None,
            escalation: None,
        }
    }
}

/// Reads a whole playbook document. Problems go to `diags`; the result is
/// `None` only when the document is not a mapping at all.
pub fn parse(root: &Node, file: &Arc<str>, diags: &mut Vec<Diagnostic>) -> Option<Parsed> {
    let mut r = MapReader::new(root, "playbook", PLAYBOOK_KEYS, diags)?;
    match require(&mut r, root, "version", PLAYBOOK_KEYS, &root.span, diags) {
        // `version: "1"` is as clear as `version: 1`.
        Some(v) if v.as_scalar() == Some("1") => {}
        Some(v) => diags.push(Diagnostic::error(
            "unsupported-version",
            v.span.clone(),
            format!(
                "unsupported playbook version `{}`: this rekindle reads version 1",
                v.as_scalar().unwrap_or("?")
            ),
        )),
        None => {}
    }
    let name = match r.get("name") {
        Some(n) => n.string(diags).unwrap_or_default(),
        None => std::path::Path::new(&**file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mut policy = Policy::default();
    if let Some(d) = r.get("defaults") {
        read_defaults(d, &mut policy, diags);
    }
    let mut stages = Vec::new();
    let mut spans = Vec::new();
    if let Some(list) = require(&mut r, root, "stages", PLAYBOOK_KEYS, &root.span, diags) {
        match list.as_seq() {
            Some([]) => diags.push(Diagnostic::error(
                "no-stages",
                list.span.clone(),
                "the playbook has no stages",
            )),
            Some(items) => {
                for item in items {
                    if let Some((stage, span)) = read_stage(item, &policy, diags) {
                        stages.push(stage);
                        spans.push(span);
                    }
                }
            }
            None => diags.push(list.expected("a list of stages")),
        }
    }
    r.finish(diags);
    Some(Parsed {
        playbook: Playbook {
            name,
            file: file.to_string(),
            stages,
        },
        spans,
    })
}

fn read_defaults(node: &Node, policy: &mut Policy, diags: &mut Vec<Diagnostic>) {
    let Some(mut r) = MapReader::new(node, "defaults", DEFAULTS_KEYS, diags) else {
        return;
    };
    read_policy(&mut r, policy, diags);
    r.finish(diags);
}

/// The policy keys shared by `defaults` and stages; present keys override `policy`.
fn read_policy(r: &mut MapReader<'_>, policy: &mut Policy, diags: &mut Vec<Diagnostic>) {
    if let Some(d) = r
        .get("connect_timeout")
        .and_then(|n| positive_duration(n, "connect_timeout", diags))
    {
        policy.connect_timeout = d;
    }
    if let Some(d) = r
        .get("command_timeout")
        .and_then(|n| positive_duration(n, "command_timeout", diags))
    {
        policy.command_timeout = d;
    }
    if let Some(n) = r.get("parallel") {
        if let Some(items) = n.as_seq() {
            if let Some((last, ramp)) = growing_waves(n, items, diags) {
                policy.parallel = last;
                policy.ramp = ramp;
            }
        } else if n.as_scalar().is_none() {
            diags.push(n.expected(
                "a count or a percentage like `10` or `5%`, or growing waves like `[1, 1%, 5%, 10%]`",
            ));
        } else if let Some(a) = amount(n, diags) {
            if a == Amount::Count(0) {
                diags.push(Diagnostic::error(
                    "bad-amount",
                    n.span.clone(),
                    "`parallel` must be at least 1",
                ));
            } else {
                policy.parallel = a;
                policy.ramp = Vec::new();
            }
        }
    }
    if let Some(n) = r.get("rate") {
        policy.rate = rate(n, diags);
    }
    if let Some(n) = r.get("rate_per")
        && let Some(key) = label_key(n, diags)
    {
        policy.rate_per = Some((key, n.span.clone()));
    }
    if let Some(n) = r.get("max_unavailable") {
        policy.max_unavailable = max_unavailable(n, diags);
    }
    if let Some(n) = r.get("max_failures")
        && let Some(a) = amount(n, diags)
    {
        policy.max_failures = a;
        policy.max_failures_span = Some(n.span.clone());
    }
    if let Some(n) = r.get("become") {
        policy.escalation = read_become(n, diags).unwrap_or(policy.escalation.clone());
    }
    if let Some(n) = r.get("on_unreachable") {
        match n.as_scalar() {
            Some("fail") => policy.on_unreachable = OnUnreachable::Fail,
            Some("skip") => policy.on_unreachable = OnUnreachable::Skip,
            Some(other) => diags.push(one_of(n, "on_unreachable", other, &["fail", "skip"])),
            None => diags.push(n.expected("`fail` or `skip`")),
        }
    }
    if let Some(n) = r.get("retry_failed_hosts") {
        match n.as_bool() {
            Some(b) => policy.retry_failed_hosts = b,
            None => diags.push(n.expected("`true` or `false`")),
        }
    }
    if let Some(n) = r.get("remediate")
        && let Some(remediate) = read_remediate(n, diags)
    {
        policy.remediate = Some((remediate, n.span.clone()));
    }
}

/// `remediate: { power_cycle: N }`, N in 1..=[`MAX_POWER_CYCLES`].
fn read_remediate(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Remediate> {
    let mut r = MapReader::new(node, "remediate", REMEDIATE_KEYS, diags)?;
    let n = require(
        &mut r,
        node,
        "power_cycle",
        REMEDIATE_KEYS,
        &node.span,
        diags,
    );
    let mut remediate = None;
    if let Some(n) = n {
        match n.as_u64() {
            Some(0) => diags.push(
                Diagnostic::error(
                    "bad-value",
                    n.span.clone(),
                    "`power_cycle` must be at least 1",
                )
                .with_help("leave `remediate` out for no power cycles"),
            ),
            Some(c) if c <= u64::from(MAX_POWER_CYCLES) => {
                remediate = Some(Remediate::new(c as u32));
            }
            Some(_) => diags.push(
                Diagnostic::error(
                    "bad-value",
                    n.span.clone(),
                    format!("`power_cycle` is at most {MAX_POWER_CYCLES}"),
                )
                .with_help(
                    "a host that did not come back after a few power cycles needs a person at its BMC",
                ),
            ),
            None => diags.push(n.expected("a whole number of power cycles (power_cycle)")),
        }
    }
    r.finish(diags);
    remediate
}

/// `become: true|false` or `become: { method: sudo|doas, user: NAME }`
/// (method defaults to sudo, user to root). `Some(None)` turns it off;
/// `None` means an error was reported.
fn read_become(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Option<Become>> {
    let root = Become::root;
    if let Some(on) = node.as_bool() {
        return Some(on.then(root));
    }
    if node.as_map().is_none() {
        diags.push(node.expected("`true`, `false` or a mapping `{ method, user }` (become)"));
        return None;
    }
    let mut r = MapReader::new(node, "become", BECOME_KEYS, diags)?;
    let mut escalation = root();
    let mut ok = true;
    if let Some(m) = r.get("method") {
        match m.as_scalar() {
            Some(name) => match BecomeMethod::parse(name) {
                Some(method) => escalation.method = method,
                None => {
                    diags.push(
                        one_of(m, "method", name, BECOME_METHODS)
                            .with_help("rekindle knows the become methods sudo and doas"),
                    );
                    ok = false;
                }
            },
            None => {
                diags.push(m.expected("`sudo` or `doas`"));
                ok = false;
            }
        }
    }
    if let Some(u) = r.get("user") {
        match u.as_scalar() {
            Some(name) if !name.trim().is_empty() && !name.contains(char::is_whitespace) => {
                escalation.user = name.to_owned();
            }
            _ => {
                diags.push(Diagnostic::error(
                    "bad-value",
                    u.span.clone(),
                    "`user` must be a user name (no spaces)",
                ));
                ok = false;
            }
        }
    }
    r.finish(diags);
    ok.then_some(Some(escalation))
}

fn read_stage(
    node: &Node,
    defaults: &Policy,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Stage, StageSpans)> {
    let mut r = MapReader::new(node, "stage", STAGE_KEYS, diags)?;
    let name_node = require(&mut r, node, "name", STAGE_KEYS, &node.span, diags);
    let name = name_node.and_then(|n| n.string(diags)).unwrap_or_default();
    if let Some(n) = name_node
        && n.as_scalar().is_some_and(|s| s.trim().is_empty())
    {
        diags.push(Diagnostic::error(
            "bad-value",
            n.span.clone(),
            "a stage name must not be empty",
        ));
    }
    let mut spans = StageSpans {
        name: name_node.map_or_else(|| node.span.clone(), |n| n.span.clone()),
        select: node.span.clone(),
        select_ok: false,
        after: Vec::new(),
        canary: None,
        max_unavailable: Vec::new(),
        rate_per: None,
        max_failures: None,
        templates: Vec::new(),
        power_on: None,
        remediate: r.key_span("remediate").cloned(),
        remediate_value: None,
    };
    let mut after = Vec::new();
    let mut gates = Vec::new();
    if let Some(n) = r.get("after") {
        match &n.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let Some(s) = k.string(diags) else {
                        continue;
                    };
                    if let Some(p) = gate_share(v, diags)
                        && p < 100.0
                    {
                        gates.push((s.clone(), p));
                    }
                    after.push(s);
                    spans.after.push(k.span.clone());
                }
            }
            Value::Seq(items) => {
                for item in items {
                    if let Some(s) = item.string(diags) {
                        after.push(s);
                        spans.after.push(item.span.clone());
                    }
                }
            }
            _ => {
                if let Some(s) = n.as_scalar() {
                    after.push(s.to_owned());
                    spans.after.push(n.span.clone());
                } else {
                    diags.push(n.expected(
                        "a stage name, a list of stage names, or a mapping of stage: percentage done, e.g. `{ storage: 95% }`",
                    ));
                }
            }
        }
    }
    let mut select = Selector::default();
    if let Some(n) = require(&mut r, node, "select", STAGE_KEYS, &spans.name, diags) {
        // The key reads better under a caret than a flow mapping's opening brace.
        spans.select = r.key_span("select").unwrap_or(&n.span).clone();
        if let Some(s) = Selector::from_node(n, diags) {
            select = s;
            spans.select_ok = true;
        }
    }
    let mut policy = defaults.clone();
    read_policy(&mut r, &mut policy, diags);
    spans.rate_per = policy.rate_per.as_ref().map(|(_, s)| s.clone());
    spans.max_failures = policy.max_failures_span.clone();
    spans.remediate_value = policy.remediate.as_ref().map(|(_, s)| s.clone());
    spans.max_unavailable = policy
        .max_unavailable
        .iter()
        .map(|(_, _, s)| s.clone())
        .collect();
    let mut canary = 0;
    if let Some(n) = r.get("canary") {
        spans.canary = Some(n.span.clone());
        match n.as_u64().and_then(|c| usize::try_from(c).ok()) {
            Some(c) => canary = c,
            None => diags.push(n.expected("a whole number of canary hosts")),
        }
    }
    let estimate = r
        .get("estimate")
        .and_then(|n| positive_duration(n, "estimate", diags));
    let mut steps = Vec::new();
    if let Some(n) = require(&mut r, node, "steps", STAGE_KEYS, &spans.name, diags) {
        match n.as_seq() {
            Some([]) => diags.push(Diagnostic::error(
                "no-steps",
                n.span.clone(),
                format!("stage `{name}` has no steps"),
            )),
            Some(items) => {
                for item in items {
                    if let Some(step) = read_step(item, &policy, &mut spans, diags) {
                        steps.push(step);
                    }
                }
            }
            None => diags.push(n.expected("a list of steps")),
        }
    }
    r.finish(diags);
    let stage = Stage {
        name,
        // The name reads better under a caret than the mapping's first character.
        span: spans.name.clone(),
        after,
        gates,
        select,
        parallel: policy.parallel,
        ramp: policy.ramp.clone(),
        rate: policy.rate,
        rate_per: policy.rate_per.map(|(k, _)| k),
        max_unavailable: policy
            .max_unavailable
            .into_iter()
            .map(|(k, a, _)| (k, a))
            .collect(),
        max_failures: policy.max_failures,
        canary,
        on_unreachable: policy.on_unreachable,
        retry_failed_hosts: policy.retry_failed_hosts,
        remediate: policy.remediate.map(|(r, _)| r),
        escalation: policy.escalation,
        estimate,
        connect_timeout: policy.connect_timeout,
        command_timeout: policy.command_timeout,
        steps,
    };
    Some((stage, spans))
}

fn read_step(
    node: &Node,
    policy: &Policy,
    spans: &mut StageSpans,
    diags: &mut Vec<Diagnostic>,
) -> Option<Step> {
    // A step is a bare kind (`- reboot`) or a one-key mapping (`- run: CMD`).
    let (kind_node, value) = match &node.value {
        Value::Scalar(_) => (node, None),
        Value::Map(entries) => {
            let kinds: Vec<&(Node, Node)> = entries
                .iter()
                .filter(|(k, _)| k.as_scalar().is_some_and(|k| STEP_KINDS.contains(&k)))
                .collect();
            match (kinds.as_slice(), entries.len()) {
                ([(k, v)], 1) => (k, Some(v).filter(|v| !v.is_null())),
                ([(k, _)], _) => {
                    let kind = k.as_scalar().unwrap_or_default();
                    let extra = entries
                        .iter()
                        .find(|(e, _)| e.span != k.span)
                        .map(|(e, _)| e);
                    let at = extra.map_or(&node.span, |e| &e.span);
                    diags.push(
                        Diagnostic::error(
                            "step-shape",
                            at.clone(),
                            format!(
                                "`{}` is not a step; a step is one mapping key",
                                extra.and_then(Node::as_scalar).unwrap_or("?")
                            ),
                        )
                        .with_help(format!(
                            "put options under the step, e.g. `{kind}: {{ {}, timeout: 5m }}`",
                            match kind {
                                "run" | "local" => "command: ...",
                                "restart_service" => "name: ...",
                                "health" => "checks: [...]",
                                _ => "...",
                            }
                        )),
                    );
                    return None;
                }
                ([], _) => {
                    let first = &entries.first()?.0;
                    diags.push(unknown_step(first));
                    return None;
                }
                (many, _) => {
                    diags.push(Diagnostic::error(
                        "step-shape",
                        many[1].0.span.clone(),
                        format!(
                            "one step per list item: `{}` and `{}` are two steps",
                            many[0].0.as_scalar().unwrap_or("?"),
                            many[1].0.as_scalar().unwrap_or("?")
                        ),
                    ));
                    return None;
                }
            }
        }
        Value::Seq(_) => {
            diags.push(node.expected("a step (e.g. `reboot` or `run: CMD`)"));
            return None;
        }
    };
    let kind = kind_node.as_scalar().unwrap_or_default();
    let step = match kind {
        "wait_ssh" => {
            let mut timeout = DEFAULT_WAIT_SSH_TIMEOUT;
            if let Some(v) = value {
                let mut r = MapReader::new(v, "wait_ssh step", &["timeout"], diags)?;
                timeout = opt_timeout(&mut r, timeout, diags);
                r.finish(diags);
            }
            Step::WaitSsh { timeout }
        }
        "run" | "local" => {
            let (command, timeout) =
                command_and_timeout(kind_node, value, "command", policy, spans, diags)?;
            if kind == "run" {
                Step::Run { command, timeout }
            } else {
                Step::Local { command, timeout }
            }
        }
        "restart_service" => {
            let (unit, timeout) =
                command_and_timeout(kind_node, value, "name", policy, spans, diags)?;
            Step::RestartService { unit, timeout }
        }
        "reboot" => {
            let mut timeout = DEFAULT_REBOOT_TIMEOUT;
            let mut command = default_reboot_command();
            if let Some(v) = value {
                let mut r = MapReader::new(v, "reboot step", &["timeout", "command"], diags)?;
                timeout = opt_timeout(&mut r, timeout, diags);
                if let Some(c) = r.get("command") {
                    command = checked_template(c, template::Quote::Shell, spans, diags)?;
                }
                r.finish(diags);
            }
            Step::Reboot { timeout, command }
        }
        "power_on" => {
            spans.power_on.get_or_insert_with(|| kind_node.span.clone());
            Step::PowerOn(read_power_on(value, diags)?)
        }
        "health" => {
            let Some(v) = value else {
                diags.push(Diagnostic::error(
                    "missing-key",
                    kind_node.span.clone(),
                    "`health` needs `checks`, e.g. `health: { checks: [ { tcp: 22 } ] }`",
                ));
                return None;
            };
            Step::Health(read_health(v, spans, diags)?)
        }
        _ => {
            diags.push(unknown_step(kind_node));
            return None;
        }
    };
    Some(step)
}

fn unknown_step(kind: &Node) -> Diagnostic {
    let name = kind.as_scalar().unwrap_or("?");
    let d = Diagnostic::error(
        "unknown-step",
        kind.span.clone(),
        format!("unknown step `{name}`"),
    );
    if name.split_whitespace().count() > 1
        && name
            .split_whitespace()
            .all(|w| STEP_KINDS.contains(&w.trim_end_matches(':')))
    {
        return d.with_help("one step per list item: is a `- ` missing?");
    }
    match suggest(name, STEP_KINDS.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!("steps are: {}", STEP_KINDS.join(", "))),
    }
}

/// True when the mapping has an unknown key that is a typo of `key`: the
/// unknown-key diagnostic already says so, a "missing" one would repeat it.
fn misspelled(node: &Node, key: &str, known: &[&str]) -> bool {
    node.as_map().is_some_and(|entries| {
        entries.iter().any(|(k, _)| {
            k.as_scalar().is_some_and(|k| {
                !known.contains(&k) && suggest(k, known.iter().copied()) == Some(key)
            })
        })
    })
}

/// `MapReader::require`, quiet when a misspelled key was meant.
fn require<'a>(
    r: &mut MapReader<'a>,
    node: &Node,
    key: &str,
    known: &[&str],
    at: &Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a Node> {
    if misspelled(node, key, known) {
        return r.get(key);
    }
    r.require(key, at, diags)
}

/// `run: CMD` or `run: { command: CMD, timeout: 5m }` (and the same shape for
/// `local` and `restart_service`, whose key is `name`).
fn command_and_timeout(
    kind: &Node,
    value: Option<&Node>,
    key: &'static str,
    policy: &Policy,
    spans: &mut StageSpans,
    diags: &mut Vec<Diagnostic>,
) -> Option<(template::Template, Duration)> {
    let what = kind.as_scalar().unwrap_or_default();
    // A unit name is shell-quoted whole when it is used; a command is run by a shell.
    let quote = if key == "name" {
        template::Quote::None
    } else {
        template::Quote::Shell
    };
    let Some(v) = value else {
        diags.push(Diagnostic::error(
            "missing-key",
            kind.span.clone(),
            format!("`{what}` needs a {key}, e.g. `{what}: ...`"),
        ));
        return None;
    };
    if v.as_map().is_some() {
        let known: &'static [&'static str] = if key == "name" {
            &["name", "timeout"]
        } else {
            &["command", "timeout"]
        };
        let mut r = MapReader::new(v, step_what(what), known, diags)?;
        let text = r
            .require(key, &v.span, diags)
            .and_then(|c| checked_template(c, quote, spans, diags));
        let timeout = opt_timeout(&mut r, policy.command_timeout, diags);
        r.finish(diags);
        return Some((text?, timeout));
    }
    if v.as_scalar().is_none() {
        diags.push(v.expected(&format!("a {key} or a mapping with `{key}` and `timeout`")));
        return None;
    }
    Some((
        checked_template(v, quote, spans, diags)?,
        policy.command_timeout,
    ))
}

fn step_what(kind: &str) -> &'static str {
    match kind {
        "run" => "run step",
        "local" => "local step",
        _ => "restart_service step",
    }
}

fn read_power_on(value: Option<&Node>, diags: &mut Vec<Diagnostic>) -> Option<PowerOn> {
    let mut p = PowerOn::default();
    let Some(v) = value else {
        return Some(p);
    };
    let mut r = MapReader::new(
        v,
        "power_on step",
        &[
            "timeout",
            "pdu_interval",
            "rate",
            "reprobe",
            "jitter",
            "reset_type",
        ],
        diags,
    )?;
    p.timeout = opt_timeout(&mut r, p.timeout, diags);
    if let Some(n) = r.get("pdu_interval")
        && let Some(d) = duration(n, diags)
    {
        if d < MIN_PDU_INTERVAL {
            diags.push(Diagnostic::error(
                "bad-duration",
                n.span.clone(),
                "`pdu_interval` must be at least 100ms: faster power-ons on one PDU trip breakers",
            ));
        } else {
            p.pdu_interval = d;
        }
    }
    if let Some(rate) = r.get("rate").and_then(|n| rate(n, diags)) {
        p.rate = rate;
    }
    if let Some(d) = r
        .get("reprobe")
        .and_then(|n| positive_duration(n, "reprobe", diags))
    {
        p.reprobe = d;
    }
    if let Some(d) = r.get("jitter").and_then(|n| duration(n, diags)) {
        p.jitter = d;
    }
    if let Some(n) = r.get("reset_type") {
        match n.as_scalar() {
            Some(t) if RESET_TYPES.contains(&t) => p.reset_type = t.to_owned(),
            Some(t) => diags.push(one_of(n, "reset_type", t, RESET_TYPES)),
            None => diags.push(n.expected("a Redfish ResetType such as `On`")),
        }
    }
    r.finish(diags);
    Some(p)
}

fn read_health(v: &Node, spans: &mut StageSpans, diags: &mut Vec<Diagnostic>) -> Option<Health> {
    let mut r = MapReader::new(v, "health step", &["checks", "timeout", "interval"], diags)?;
    let mut checks = Vec::new();
    let mut ok = true;
    if let Some(list) = r.require("checks", &v.span, diags) {
        match list.as_seq() {
            Some([]) => {
                diags.push(Diagnostic::error(
                    "no-checks",
                    list.span.clone(),
                    "`checks` is empty: a health step needs at least one check",
                ));
                ok = false;
            }
            Some(items) => {
                for item in items {
                    match read_check(item, spans, diags) {
                        Some(c) => checks.push(c),
                        None => ok = false,
                    }
                }
            }
            None => {
                diags.push(list.expected("a list of checks"));
                ok = false;
            }
        }
    } else {
        ok = false;
    }
    let timeout = opt_timeout(&mut r, DEFAULT_HEALTH_TIMEOUT, diags);
    let interval = match r.get("interval") {
        Some(n) => positive_duration(n, "interval", diags).unwrap_or(DEFAULT_HEALTH_INTERVAL),
        None => DEFAULT_HEALTH_INTERVAL,
    };
    r.finish(diags);
    ok.then_some(Health {
        checks,
        timeout,
        interval,
    })
}

fn read_check(node: &Node, spans: &mut StageSpans, diags: &mut Vec<Diagnostic>) -> Option<Check> {
    let mut r = MapReader::new(
        node,
        "health check",
        &["tcp", "ssh", "http", "status", "body"],
        diags,
    )?;
    let (tcp, ssh, http) = (r.get("tcp"), r.get("ssh"), r.get("http"));
    let (status, body) = (r.get("status"), r.get("body"));
    r.finish(diags);
    let given = [tcp, ssh, http].iter().filter(|n| n.is_some()).count();
    if given != 1 {
        diags.push(Diagnostic::error(
            "check-shape",
            node.span.clone(),
            "a health check is exactly one of `tcp: PORT`, `ssh: CMD` or `http: URL`",
        ));
        return None;
    }
    if http.is_none()
        && let Some(extra) = status.or(body)
    {
        diags.push(Diagnostic::error(
            "check-shape",
            extra.span.clone(),
            "`status` and `body` belong to `http` checks only",
        ));
        return None;
    }
    if let Some(n) = tcp {
        return match n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p > 0)
        {
            Some(port) => Some(Check::Tcp(port)),
            None => {
                diags.push(n.expected("a TCP port (1-65535)"));
                None
            }
        };
    }
    if let Some(n) = ssh {
        return checked_template(n, template::Quote::Shell, spans, diags).map(Check::Ssh);
    }
    let n = http?;
    let url = checked_template(n, template::Quote::Url, spans, diags)?;
    if !(url.as_str().starts_with("http://") || url.as_str().starts_with("https://")) {
        diags.push(Diagnostic::error(
            "bad-url",
            n.span.clone(),
            format!("`{url}` is not an http:// or https:// URL"),
        ));
        return None;
    }
    let status = match status {
        None => 200,
        Some(s) => match s
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (100..=599).contains(c))
        {
            Some(c) => c,
            None => {
                diags.push(s.expected("an HTTP status code (100-599)"));
                return None;
            }
        },
    };
    let body_contains = match body {
        None => None,
        Some(b) => Some(b.string(diags)?),
    };
    Some(Check::Http {
        url,
        status,
        body_contains,
    })
}

fn opt_timeout(r: &mut MapReader<'_>, default: Duration, diags: &mut Vec<Diagnostic>) -> Duration {
    r.get("timeout")
        .and_then(|n| positive_duration(n, "timeout", diags))
        .unwrap_or(default)
}

fn duration(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    let Some(text) = node.as_scalar() else {
        diags.push(node.expected("a duration like `90s`, `15m` or `1h30m`"));
        return None;
    };
    match parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(Diagnostic::error("bad-duration", node.span.clone(), e.0));
            None
        }
    }
}

fn positive_duration(node: &Node, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Duration> {
    let d = duration(node, diags)?;
    if d.is_zero() {
        diags.push(Diagnostic::error(
            "bad-duration",
            node.span.clone(),
            format!("`{key}` must be longer than 0s"),
        ));
        return None;
    }
    Some(d)
}

fn rate(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Rate> {
    let Some(text) = node.as_scalar() else {
        diags.push(node.expected("a rate like `50/s` or `3000/m`"));
        return None;
    };
    match parse_rate(text) {
        Ok(r) => Some(r),
        Err(e) => {
            diags.push(Diagnostic::error("bad-rate", node.span.clone(), e.0));
            None
        }
    }
}

/// `parallel: [1, 1%, 5%, 10%]`: the size that holds to the end (the last)
/// and the wave sizes before it. Every size is a count of at least 1 or a
/// percentage; sizes of one kind must not shrink.
fn growing_waves(
    node: &Node,
    items: &[Node],
    diags: &mut Vec<Diagnostic>,
) -> Option<(Amount, Vec<Amount>)> {
    if items.is_empty() {
        diags.push(Diagnostic::error(
            "bad-waves",
            node.span.clone(),
            "`parallel` as a list needs at least one size, e.g. `[1, 1%, 5%, 10%]`",
        ));
        return None;
    }
    let before = diags.len();
    let mut sizes: Vec<Amount> = Vec::new();
    let (mut last_count, mut last_percent) = (None::<usize>, None::<f64>);
    for item in items {
        if item.as_scalar().is_none() {
            diags.push(item.expected("a count or a percentage like `10` or `5%`"));
            continue;
        }
        let Some(a) = amount(item, diags) else {
            continue;
        };
        let shrinks = match a {
            Amount::Count(0) => {
                diags.push(Diagnostic::error(
                    "bad-waves",
                    item.span.clone(),
                    "a wave of `parallel` must be at least 1 host",
                ));
                continue;
            }
            Amount::Count(c) => last_count
                .replace(c)
                .filter(|&p| c < p)
                .map(|p| p.to_string()),
            Amount::Percent(x) => last_percent
                .replace(x)
                .filter(|&p| x < p)
                .map(|p| format!("{p}%")),
        };
        if let Some(previous) = shrinks {
            diags.push(
                Diagnostic::error(
                    "bad-waves",
                    item.span.clone(),
                    format!(
                        "waves of `parallel` must grow: `{}` comes after `{previous}`",
                        item.as_scalar().unwrap_or_default().trim()
                    ),
                )
                .with_help(
                    "each wave must finish cleanly before the window grows to the next size",
                ),
            );
            continue;
        }
        sizes.push(a);
    }
    if diags.len() > before {
        return None;
    }
    let last = sizes.pop()?;
    Some((last, sizes))
}

/// A readiness gate's share of a stage's hosts: a percentage in (0, 100].
fn gate_share(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    let expected = "a percentage of the stage's hosts done, above 0% and at most 100%, e.g. `95%`";
    let Some(text) = node.as_scalar() else {
        diags.push(node.expected(expected));
        return None;
    };
    match parse_amount(text) {
        Ok(Amount::Percent(p)) => Some(p),
        Ok(Amount::Count(_)) => {
            diags.push(Diagnostic::error(
                "bad-gate",
                node.span.clone(),
                format!("invalid readiness gate `{text}`: expected {expected}"),
            ));
            None
        }
        Err(e) => {
            diags.push(Diagnostic::error("bad-gate", node.span.clone(), e.0));
            None
        }
    }
}

fn amount(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Amount> {
    let Some(text) = node.as_scalar() else {
        diags.push(node.expected("a count or a percentage like `10` or `5%`"));
        return None;
    };
    match parse_amount(text) {
        Ok(a) => Some(a),
        Err(e) => {
            diags.push(Diagnostic::error("bad-amount", node.span.clone(), e.0));
            None
        }
    }
}

fn label_key(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let key = node.string(diags)?;
    if matches!(key.as_str(), "name" | "group") || key.is_empty() {
        diags.push(Diagnostic::error(
            "bad-label",
            node.span.clone(),
            format!("`{key}` is not a label key"),
        ));
        return None;
    }
    Some(key)
}

fn max_unavailable(node: &Node, diags: &mut Vec<Diagnostic>) -> Vec<(String, Amount, Span)> {
    let Some(entries) = node.as_map() else {
        diags.push(node.expected("a mapping of label: count or percentage, e.g. `{ rack: 1 }`"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(key) = label_key(k, diags) else {
            continue;
        };
        let Some(a) = amount(v, diags) else {
            continue;
        };
        if a == Amount::Count(0) {
            diags.push(Diagnostic::error(
                "bad-amount",
                v.span.clone(),
                format!(
                    "`max_unavailable` for `{key}` must be at least 1, or no host could ever start"
                ),
            ));
            continue;
        }
        out.push((key, a, k.span.clone()));
    }
    out
}

fn one_of(node: &Node, key: &str, found: &str, allowed: &[&str]) -> Diagnostic {
    let d = Diagnostic::error(
        "bad-value",
        node.span.clone(),
        format!("invalid `{key}` value `{found}`"),
    );
    match suggest(found, allowed.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!("expected one of: {}", allowed.join(", "))),
    }
}

/// A command or URL whose placeholders are well-formed (and, in a command,
/// outside the author's quotes); remembered in `spans` so label placeholders
/// can be checked against hosts later. `quote` says how values are written in.
fn checked_template(
    node: &Node,
    quote: template::Quote,
    spans: &mut StageSpans,
    diags: &mut Vec<Diagnostic>,
) -> Option<template::Template> {
    let text = node.string(diags)?;
    if text.trim().is_empty() {
        diags.push(Diagnostic::error(
            "empty-command",
            node.span.clone(),
            "empty command",
        ));
        return None;
    }
    match template::Template::new(text.as_str(), quote) {
        Ok(t) => {
            spans.templates.push((t.clone(), node.span.clone()));
            Some(t)
        }
        Err(e) => {
            let mut d = Diagnostic::error(
                "bad-placeholder",
                inner_span(node, &text, e.offset, e.len),
                e.message,
            );
            if let Some(help) = e.help {
                d = d.with_help(help);
            }
            diags.push(d);
            None
        }
    }
}

/// The span of characters `offset..offset+len` of a scalar's text, when the
/// scalar is written on one line without escapes (plain or quoted); else the
/// whole scalar.
fn inner_span(node: &Node, text: &str, offset: usize, len: usize) -> Span {
    let chars = text.chars().count() as u32;
    let quote = match node.span.len {
        l if l == chars => 0,
        l if l == chars + 2 => 1,
        _ => return node.span.clone(),
    };
    let mut s = node.span.clone();
    s.col += quote + offset as u32;
    s.len = len as u32;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Sources, render_text};

    fn load(text: &str) -> Playbook {
        let mut sources = Sources::new();
        match crate::playbook::load_str("p.yaml", text, None, &mut sources) {
            Ok((p, _)) => p,
            Err(e) => panic!("{}", render_text(&sources, &e)),
        }
    }

    #[test]
    fn every_step_form_reads_into_its_model() {
        let p = load(
            r#"
version: 1
name: forms
defaults: { command_timeout: 3m, parallel: 10%, max_failures: 2, max_unavailable: { rack: 1 }, on_unreachable: skip }
stages:
  - name: s
    select: { role: [db, cache], dc: "pg*" }
    parallel: 4
    rate: 3000/m
    rate_per: pdu
    canary: 2
    estimate: 1h30m
    steps:
      - wait_ssh
      - wait_ssh: { timeout: 2m }
      - run: "uptime"
      - run: { command: "sync", timeout: 10s }
      - reboot
      - reboot: { timeout: 20m, command: "shutdown -r now" }
      - restart_service: nginx
      - restart_service: { name: "kafka", timeout: 4m }
      - power_on
      - power_on: { timeout: 1h, pdu_interval: 500ms, rate: 5/s, reprobe: 30s, jitter: 3s, reset_type: PowerCycle }
      - health:
          checks: [ { tcp: 22 }, { ssh: "true" }, { http: "http://{address}/", status: 204, body: ok } ]
      - local: "notify {name}"
"#,
        );
        assert_eq!(p.name, "forms");
        let s = &p.stages[0];
        assert_eq!(s.select.to_string(), "role=db,role=cache,dc=pg*");
        assert_eq!(s.parallel, Amount::Count(4));
        assert_eq!(
            s.rate,
            Some(Rate {
                count: 3000,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(s.rate_per.as_deref(), Some("pdu"));
        // From the defaults:
        assert_eq!(s.max_failures, Amount::Count(2));
        assert_eq!(s.max_unavailable, [("rack".to_string(), Amount::Count(1))]);
        assert_eq!(s.on_unreachable, OnUnreachable::Skip);
        assert_eq!(s.command_timeout, Duration::from_secs(180));
        assert_eq!(s.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!((s.canary, s.estimate), (2, Some(Duration::from_secs(5400))));
        let m = Duration::from_secs(60);
        let power = |timeout, pdu_interval, rate, reprobe, jitter, reset_type: &str| {
            Step::PowerOn(PowerOn {
                timeout,
                pdu_interval,
                rate,
                reprobe,
                jitter,
                reset_type: reset_type.into(),
            })
        };
        assert_eq!(
            s.steps,
            [
                Step::WaitSsh {
                    timeout: DEFAULT_WAIT_SSH_TIMEOUT
                },
                Step::WaitSsh { timeout: 2 * m },
                Step::Run {
                    command: crate::playbook::Template::sh("uptime"),
                    timeout: 3 * m
                },
                Step::Run {
                    command: crate::playbook::Template::sh("sync"),
                    timeout: Duration::from_secs(10)
                },
                Step::Reboot {
                    timeout: DEFAULT_REBOOT_TIMEOUT,
                    command: crate::playbook::Template::sh("systemctl reboot")
                },
                Step::Reboot {
                    timeout: 20 * m,
                    command: crate::playbook::Template::sh("shutdown -r now")
                },
                Step::RestartService {
                    unit: crate::playbook::Template::unit("nginx"),
                    timeout: 3 * m
                },
                Step::RestartService {
                    unit: crate::playbook::Template::unit("kafka"),
                    timeout: 4 * m
                },
                power(
                    DEFAULT_POWER_ON_TIMEOUT,
                    Duration::from_secs(2),
                    DEFAULT_POWER_ON_RATE,
                    DEFAULT_REPROBE,
                    Duration::ZERO,
                    "On"
                ),
                power(
                    60 * m,
                    Duration::from_millis(500),
                    Rate {
                        count: 5,
                        per: Duration::from_secs(1)
                    },
                    Duration::from_secs(30),
                    Duration::from_secs(3),
                    "PowerCycle"
                ),
                Step::Health(Health {
                    checks: vec![
                        Check::Tcp(22),
                        Check::Ssh(crate::playbook::Template::sh("true")),
                        Check::Http {
                            url: crate::playbook::Template::url("http://{address}/"),
                            status: 204,
                            body_contains: Some("ok".into())
                        },
                    ],
                    timeout: DEFAULT_HEALTH_TIMEOUT,
                    interval: DEFAULT_HEALTH_INTERVAL,
                }),
                Step::Local {
                    command: crate::playbook::Template::sh("notify {name}"),
                    timeout: 3 * m
                },
            ]
        );
    }

    #[test]
    fn name_defaults_to_the_file_stem_and_version_may_be_quoted() {
        let mut sources = Sources::new();
        let (p, _) = crate::playbook::load_str(
            "dir/cold-start.yaml",
            "version: \"1\"\nstages: [ { name: a, select: { role: x }, steps: [ wait_ssh ] } ]\n",
            None,
            &mut sources,
        )
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.file.as_str()),
            ("cold-start", "dir/cold-start.yaml")
        );
    }
}

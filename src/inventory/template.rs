//! Jinja templates in Ansible variable values (`ansible_host: "{{
//! inventory_hostname }}.mgmt.example.com"`), evaluated from the host's own
//! variables with minijinja, as Ansible evaluates them before it connects.
//!
//! Only values containing `{{`, `{%` or `{#` are templates; each distinct
//! template string is compiled once per load and rendered per host. Variables
//! a template reads are themselves rendered on demand (bounded depth), and
//! `inventory_hostname`, `inventory_hostname_short`, `group_names` and
//! `groups` are provided as Ansible provides them. Undefined variables are
//! errors (Ansible's default). What needs Ansible's runtime (`lookup`,
//! `query`, `vault`, Ansible-only filters such as `regex_replace`) is refused
//! with the template named.
//!
//! Owns template compilation and rendering; it must not decide which
//! variables rekindle uses (`connection.rs` does).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use super::var::Var;

/// True when Ansible would template this value.
pub(crate) fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Nested variable references deeper than this are a loop (Ansible: recursion error).
const MAX_DEPTH: usize = 32;
/// Variables rendered for one value, nested ones included: thirty variables
/// that each use the next one twice are 2^30 renders, refused here early.
const MAX_NESTED: usize = 10_000;
/// minijinja's fuel for one render (instructions, and about 64 bytes of
/// memory each): `range(100000)` nested in itself stops here, not hours later.
const FUEL: u64 = 2_000_000;

/// One host as templates see it: through its own variables and `hostvars`.
#[derive(Debug)]
pub(crate) struct HostData {
    pub name: String,
    /// `group_names`: the host's groups, sorted, without `all`.
    pub groups: Vec<String>,
    pub vars: HashMap<String, Var>,
}

/// What every render of one load shares.
#[derive(Debug)]
struct Shared {
    env: Environment<'static>,
    groups: Value,
    hosts: Vec<HostData>,
    index: HashMap<String, usize>,
}

/// Every template of one load, compiled, with every host's variables.
pub(crate) struct Compiled {
    shared: Arc<Shared>,
    /// Template source -> compile error, for templates minijinja refused.
    broken: HashMap<String, String>,
}

impl Compiled {
    /// Compiles each distinct template once. `groups` maps each group to its
    /// hosts; `hosts` are every host's merged variables (for `hostvars`).
    pub(crate) fn new<'a>(
        templates: impl IntoIterator<Item = &'a str>,
        groups: &[(&str, Vec<&str>)],
        hosts: Vec<HostData>,
    ) -> Compiled {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Ansible's Jinja settings: a block tag's own newline is dropped, the
        // value's last newline is kept, and `None` prints as nothing.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_fuel(Some(FUEL));
        env.set_formatter(|out, state, value| {
            if value.is_none() {
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        let mut broken = HashMap::new();
        for source in templates {
            if env.get_template(source).is_ok() || broken.contains_key(source) {
                continue;
            }
            if let Err(e) = env.add_template_owned(source.to_owned(), source.to_owned()) {
                broken.insert(source.to_owned(), describe(&e, None));
            }
        }
        let groups: BTreeMap<String, Value> = groups
            .iter()
            .map(|(g, hosts)| {
                let hosts: Vec<Value> = hosts.iter().map(|h| Value::from(*h)).collect();
                ((*g).to_owned(), Value::from(hosts))
            })
            .collect();
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        Compiled {
            shared: Arc::new(Shared {
                env,
                groups: Value::from(groups),
                hosts,
                index,
            }),
            broken,
        }
    }

    /// Renders `source` for host number `host` (as given to `new`). `None`
    /// is Ansible's null: a template that is one expression giving `None`.
    /// A variable the template uses that fails to evaluate fails the whole
    /// value, even under `default()`: a value computed from a failed input
    /// would differ from Ansible's.
    pub(crate) fn render(&self, source: &str, host: usize) -> Result<Option<String>, String> {
        if let Some(e) = self.broken.get(source) {
            return Err(e.clone());
        }
        let ctx = Arc::new(HostContext {
            shared: self.shared.clone(),
            host,
            state: Arc::new(Mutex::new(State::default())),
        });
        let result = ctx.eval(source);
        let mut state = ctx.state.lock().expect("not poisoned");
        if let Some(nested) = state.nested.take() {
            return Err(nested);
        }
        match result {
            Ok(v) if v.is_none() => Ok(None),
            Ok(v) => Ok(Some(v.to_string())),
            Err(e) => Err(describe(&e, state.missing.take().as_deref())),
        }
    }
}

/// A template that is one `{{ expression }}` and nothing else: Ansible
/// keeps its value's type (a number, `None`) instead of making it text.
fn sole_expression(source: &str) -> Option<&str> {
    let inner = source.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("}}")
        && !inner.contains("{{")
        && !inner.contains("{%")
        && !inner.contains("{#"))
    .then_some(inner)
}

#[derive(Debug, Default)]
struct State {
    depth: usize,
    /// Variables rendered so far for this value, nested ones included.
    nested_renders: usize,
    /// The last variable a template asked for and did not find.
    missing: Option<String>,
    /// The first error of a nested variable's template.
    nested: Option<String>,
}

/// One host's variables during one render (shared `state` across
/// `hostvars` hops, so depth and work are bounded for the whole value).
#[derive(Debug)]
struct HostContext {
    shared: Arc<Shared>,
    host: usize,
    state: Arc<Mutex<State>>,
}

impl HostContext {
    fn data(&self) -> &HostData {
        &self.shared.hosts[self.host]
    }

    /// Renders (or, for a sole expression, evaluates) `source` here.
    fn eval(self: &Arc<Self>, source: &str) -> Result<Value, minijinja::Error> {
        let ctx = Value::from_dyn_object(self.clone());
        if let Some(expr) = sole_expression(source) {
            let value = self.shared.env.compile_expression(expr)?.eval(ctx)?;
            if value.is_undefined() {
                return Err(minijinja::Error::new(
                    ErrorKind::UndefinedError,
                    "undefined value",
                ));
            }
            return Ok(value);
        }
        let text = self.shared.env.get_template(source)?.render(ctx)?;
        Ok(Value::from(text))
    }

    fn fail(&self, message: String) -> Option<Value> {
        self.state
            .lock()
            .expect("not poisoned")
            .nested
            .get_or_insert(message);
        None
    }

    fn variable(self: &Arc<Self>, key: &str) -> Option<Value> {
        let data = self.data();
        match key {
            "inventory_hostname" => return Some(Value::from(data.name.as_str())),
            "inventory_hostname_short" => {
                return Some(Value::from(data.name.split('.').next().unwrap_or("")));
            }
            "group_names" => return Some(Value::from(data.groups.clone())),
            "groups" => return Some(self.shared.groups.clone()),
            "hostvars" => {
                return Some(Value::from_object(HostVars {
                    shared: self.shared.clone(),
                    state: self.state.clone(),
                }));
            }
            _ => {}
        }
        let value = match data.vars.get(key) {
            None => {
                self.state.lock().expect("not poisoned").missing = Some(key.to_owned());
                return None;
            }
            Some(Var::Null) => return Some(Value::from(())),
            Some(Var::Unsafe(s)) => return Some(Value::from(s.as_str())),
            // Lists and maps are not carried into rekindle's model: using one
            // must not fall back to a `default()` Ansible would not take.
            Some(Var::Complex) => {
                return self.fail(format!(
                    "variable `{key}` is a list or mapping, which rekindle does not evaluate in templates"
                ));
            }
            Some(Var::Scalar(s)) => s,
        };
        if value.trim_start().starts_with("$ANSIBLE_VAULT;") {
            return self.fail(format!(
                "variable `{key}` is encrypted with ansible-vault: rekindle cannot decrypt it"
            ));
        }
        if !is_template(value) {
            return Some(typed(value));
        }
        {
            let mut state = self.state.lock().expect("not poisoned");
            if state.depth >= MAX_DEPTH {
                state.nested.get_or_insert_with(|| {
                    format!("variable `{key}` refers to itself (recursive templates)")
                });
                return None;
            }
            state.nested_renders += 1;
            if state.nested_renders > MAX_NESTED {
                state.nested.get_or_insert_with(|| {
                    format!(
                        "evaluating it takes more than {MAX_NESTED} variable evaluations (variable `{key}` is used over and over by the variables that use it)"
                    )
                });
                return None;
            }
            state.depth += 1;
        }
        let rendered = self.eval(value);
        let mut state = self.state.lock().expect("not poisoned");
        state.depth -= 1;
        match rendered {
            Ok(v) if sole_expression(value).is_some() => Some(v),
            Ok(v) => Some(typed(v.as_str().unwrap_or_default())),
            Err(e) => {
                let missing = state.missing.take();
                state.nested.get_or_insert_with(|| {
                    format!("in variable `{key}`: {}", describe(&e, missing.as_deref()))
                });
                None
            }
        }
    }
}

impl Object for HostContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.variable(key.as_str()?)
    }
}

/// Ansible's `hostvars`: every host's variables, by name, each rendered in
/// its own host's context.
#[derive(Debug)]
struct HostVars {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
}

impl Object for HostVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let host = *self.shared.index.get(key.as_str()?)?;
        Some(Value::from_object(HostContext {
            shared: self.shared.clone(),
            host,
            state: self.state.clone(),
        }))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.shared
                .hosts
                .iter()
                .map(|h| Value::from(h.name.as_str()))
                .collect(),
        )
    }
}

/// Ansible's JSON types for a scalar rekindle keeps as text: numbers and
/// booleans compare and add as numbers and booleans in templates.
fn typed(text: &str) -> Value {
    match text {
        "true" => return Value::from(true),
        "false" => return Value::from(false),
        _ => {}
    }
    // Only canonical numbers: `007` stays the string it was.
    if let Ok(n) = text.parse::<i64>()
        && n.to_string() == text
    {
        return Value::from(n);
    }
    Value::from(text)
}

/// A message for a template error, in terms an Ansible user recognises.
fn describe(e: &minijinja::Error, missing: Option<&str>) -> String {
    let detail = e.detail().unwrap_or("");
    // minijinja says "filter regex_replace is unknown": the name alone.
    let named = detail
        .trim_start_matches("filter ")
        .trim_start_matches("test ")
        .trim_start_matches("function ");
    match e.kind() {
        ErrorKind::UnknownFunction => {
            let name = named.split_whitespace().next().unwrap_or("?");
            if matches!(name, "lookup" | "query" | "q") {
                format!(
                    "`{name}(...)` needs Ansible's runtime (lookup plugins); rekindle cannot evaluate it"
                )
            } else {
                format!(
                    "`{name}(...)` is not a Jinja function rekindle knows (Ansible-only functions need Ansible's runtime)"
                )
            }
        }
        ErrorKind::UnknownFilter => {
            let name = named.split_whitespace().next().unwrap_or("?");
            if name == "vault" || name == "unvault" {
                format!("filter `{name}` needs Ansible's vault; rekindle cannot decrypt it")
            } else {
                format!("filter `{name}` is Ansible-only or unknown; rekindle cannot evaluate it")
            }
        }
        ErrorKind::UnknownTest => format!(
            "test `{}` is Ansible-only or unknown",
            named.split_whitespace().next().unwrap_or("?")
        ),
        ErrorKind::UndefinedError => match missing {
            Some(name) => format!("`{name}` is undefined"),
            None => "a variable it uses is undefined".to_owned(),
        },
        ErrorKind::SyntaxError => format!("invalid Jinja syntax: {detail}"),
        ErrorKind::OutOfFuel => format!(
            "the template does more than {FUEL} steps of work (a loop over a huge range?): refused"
        ),
        _ if detail.is_empty() => e.kind().to_string(),
        _ => format!("{}: {detail}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, vars: &[(&str, Var)]) -> Result<String, String> {
        let compiled = Compiled::new(
            std::iter::once(source).chain(vars.iter().filter_map(|(_, v)| match v {
                Var::Scalar(s) if is_template(s) => Some(s.as_str()),
                _ => None,
            })),
            &[
                ("all", vec!["web1.example.net"]),
                ("web", vec!["web1.example.net"]),
            ],
            vec![HostData {
                name: "web1.example.net".into(),
                groups: vec!["web".into()],
                vars: vars
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            }],
        );
        compiled
            .render(source, 0)
            .map(|v| v.unwrap_or_else(|| "(null)".into()))
    }

    #[test]
    fn rendered_as_ansible_renders() {
        let s = |v: &str| Var::Scalar(v.to_owned());
        assert_eq!(
            render("{% if true %}\nyes\n{% endif %}\n", &[]).unwrap(),
            "yes\n"
        );
        assert_eq!(render("{{ 'a' }}\n", &[]).unwrap(), "a\n");
        assert_eq!(render("{{ None }}", &[]).unwrap(), "(null)");
        assert_eq!(render("a{{ None }}b", &[]).unwrap(), "ab");
        assert_eq!(render("{{ '' }}", &[]).unwrap(), "");
        assert_eq!(
            render("{{ u }}", &[("u", Var::Unsafe("{{ x }}".into()))]).unwrap(),
            "{{ x }}"
        );
        // A failed input is an error even under default().
        assert_eq!(
            render("{{ j | default('fallback') }}", &[("j", s("{{ nope }}"))]).unwrap_err(),
            "in variable `j`: `nope` is undefined"
        );
    }

    #[test]
    fn runaway_templates_are_stopped() {
        let e = render(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            &[],
        )
        .unwrap_err();
        assert!(e.contains("steps of work"), "{e}");
        let mut vars = vec![("v30", Var::Scalar("x".into()))];
        for i in 0..30 {
            vars.push((
                Box::leak(format!("v{i}").into_boxed_str()),
                Var::Scalar(format!("{{{{ v{n} }}}}{{{{ v{n} }}}}", n = i + 1)),
            ));
        }
        let e = render("{{ v0 }}", &vars).unwrap_err();
        assert!(e.contains("more than 10000 variable evaluations"), "{e}");
    }

    #[test]
    fn magic_and_nested_variables() {
        let s = |v: &str| Var::Scalar(v.to_owned());
        assert_eq!(
            render("{{ inventory_hostname_short }}.mgmt", &[]).unwrap(),
            "web1.mgmt"
        );
        assert_eq!(
            render(
                "{{ user }}",
                &[("user", s("{{ prefix }}-ops")), ("prefix", s("dc1"))]
            )
            .unwrap(),
            "dc1-ops"
        );
        assert_eq!(
            render("{{ base + 1 }}", &[("base", s("2200"))]).unwrap(),
            "2201"
        );
        assert_eq!(
            render("r{{ rack }}", &[("rack", s("007"))]).unwrap(),
            "r007"
        );
        assert_eq!(
            render("{{ groups['web'][0] }}", &[]).unwrap(),
            "web1.example.net"
        );
        assert_eq!(
            render("{% if 'web' in group_names %}yes{% endif %}", &[]).unwrap(),
            "yes"
        );
        assert_eq!(render("{{ x | default('d') }}", &[]).unwrap(), "d");
    }

    #[test]
    fn what_needs_ansible_is_refused_by_name() {
        assert_eq!(
            render("{{ lookup('env', 'USER') }}", &[]).unwrap_err(),
            "`lookup(...)` needs Ansible's runtime (lookup plugins); rekindle cannot evaluate it"
        );
        assert_eq!(
            render("{{ deploy_user }}", &[]).unwrap_err(),
            "`deploy_user` is undefined"
        );
        assert!(
            render("{{ a }}", &[("a", Var::Scalar("{{ a }}".into()))])
                .unwrap_err()
                .contains("recursive")
        );
        assert!(
            render(
                "{{ x | regex_replace('a', 'b') }}",
                &[("x", Var::Scalar("a".into()))]
            )
            .unwrap_err()
            .contains("regex_replace")
        );
    }
}

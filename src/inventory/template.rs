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

use minijinja::value::{Object, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use super::ansible::Var;

/// True when Ansible would template this value.
pub(crate) fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// Nested variable references deeper than this are a loop (Ansible: recursion error).
const MAX_DEPTH: usize = 32;

/// Every template of one load, compiled.
pub(crate) struct Compiled {
    env: Arc<Environment<'static>>,
    /// Template source -> compile error, for templates minijinja refused.
    broken: HashMap<String, String>,
    groups: Value,
}

impl Compiled {
    /// Compiles each distinct template once. `groups` maps each group to its hosts.
    pub(crate) fn new<'a>(
        templates: impl IntoIterator<Item = &'a str>,
        groups: &[(&str, Vec<&str>)],
    ) -> Compiled {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
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
        let groups = Value::from(groups);
        Compiled {
            env: Arc::new(env),
            broken,
            groups,
        }
    }

    /// Renders `source` for one host whose merged variables are `vars`.
    pub(crate) fn render(
        &self,
        source: &str,
        host: &str,
        group_names: &[String],
        vars: &HashMap<&str, &Var>,
    ) -> Result<String, String> {
        let ctx = Arc::new(HostContext {
            env: self.env.clone(),
            host: host.to_owned(),
            group_names: Value::from(group_names.to_vec()),
            groups: self.groups.clone(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).clone()))
                .collect(),
            state: Mutex::new(State::default()),
        });
        ctx.render(source, &self.broken)
    }
}

#[derive(Debug, Default)]
struct State {
    depth: usize,
    /// The last variable a template asked for and did not find.
    missing: Option<String>,
    /// The first error of a nested variable's template.
    nested: Option<String>,
}

#[derive(Debug)]
struct HostContext {
    env: Arc<Environment<'static>>,
    host: String,
    group_names: Value,
    groups: Value,
    vars: HashMap<String, Var>,
    state: Mutex<State>,
}

impl HostContext {
    fn render(
        self: &Arc<Self>,
        source: &str,
        broken: &HashMap<String, String>,
    ) -> Result<String, String> {
        if let Some(e) = broken.get(source) {
            return Err(e.clone());
        }
        let template = self
            .env
            .get_template(source)
            .map_err(|e| describe(&e, None))?;
        template
            .render(Value::from_dyn_object(self.clone()))
            .map_err(|e| {
                let mut state = self.state.lock().expect("not poisoned");
                match state.nested.take() {
                    Some(nested) => nested,
                    None => describe(&e, state.missing.take().as_deref()),
                }
            })
    }

    fn variable(self: &Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "inventory_hostname" => return Some(Value::from(self.host.as_str())),
            "inventory_hostname_short" => {
                return Some(Value::from(self.host.split('.').next().unwrap_or("")));
            }
            "group_names" => return Some(self.group_names.clone()),
            "groups" => return Some(self.groups.clone()),
            _ => {}
        }
        let value = match self.vars.get(key) {
            None => {
                self.state.lock().expect("not poisoned").missing = Some(key.to_owned());
                return None;
            }
            Some(Var::Null) => return Some(Value::from(())),
            // Lists and maps are not carried into rekindle's model.
            Some(Var::Complex) => {
                self.state.lock().expect("not poisoned").missing =
                    Some(format!("{key} (a list or mapping)"));
                return None;
            }
            Some(Var::Scalar(s)) => s,
        };
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
            state.depth += 1;
        }
        let template = self.env.get_template(value).ok()?;
        let rendered = template.render(Value::from_dyn_object(self.clone()));
        let mut state = self.state.lock().expect("not poisoned");
        state.depth -= 1;
        match rendered {
            Ok(text) => Some(typed(&text)),
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
        );
        let vars: HashMap<&str, &Var> = vars.iter().map(|(k, v)| (*k, v)).collect();
        compiled.render(source, "web1.example.net", &["web".to_owned()], &vars)
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

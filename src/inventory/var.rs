//! An Ansible variable's value, reduced to what rekindle can use: the one
//! type the Ansible model (`ansible.rs`), its templates (`template.rs`) and
//! the connection variables (`connection.rs`) share.
//!
//! Owns only the type; it must not import the modules that use it.

/// A variable value, reduced to what rekindle can use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Var {
    /// Strings, numbers and booleans, as Ansible's JSON shows them (`true`, `22`, `db`).
    Scalar(String),
    /// Text that is never a template (`!unsafe`, `{"__ansible_unsafe": ...}`).
    Unsafe(String),
    Null,
    /// Lists and mappings: kept by Ansible, not usable as a label.
    Complex,
}

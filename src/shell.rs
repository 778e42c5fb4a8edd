//! Shell quoting: the one rule for every value rekindle puts into a command
//! line a remote shell reads (template placeholders, unit names, the
//! escalation's user and command).
//!
//! A leaf module: it must not import anything of the crate.

/// `s` as one POSIX shell word, unchanged when read back: always single
/// quotes (a `'` inside becomes `'\''`).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_in_values_survive_one_shell_word() {
        assert_eq!(quote("r'1"), r"'r'\''1'");
        assert_eq!(quote(""), "''");
    }
}

//! [`ConfigError`]: one problem with the routing policy, located by file, line and key, and how
//! a list of them prints (`vigil check`, reload logs, `POST /v1/admin/reload`). The text is an
//! interface: operators and tests read it.

use std::fmt;
use std::path::PathBuf;

/// One problem with the routing policy, located for the operator who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in (the directory itself when it is not in any one file).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path inside the file, e.g. `policies.critical.steps[1].via[0]`; empty when
    /// the problem is the whole file.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All errors, one per line, for `vigil check` and reload logs.
pub fn format_errors(errors: &[ConfigError]) -> String {
    let mut out = String::new();
    for e in errors {
        out.push_str(&e.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_as_file_line_key_message() {
        let e = ConfigError {
            file: "routing/policies.yaml".into(),
            line: Some(14),
            key: "policies.critical.steps[1].via[0]".into(),
            message: r#"unknown channel "pagerduty2""#.into(),
        };
        assert_eq!(
            e.to_string(),
            r#"routing/policies.yaml:14: policies.critical.steps[1].via[0]: unknown channel "pagerduty2""#
        );
        let whole = ConfigError {
            file: "routing".into(),
            line: None,
            key: String::new(),
            message: "empty".into(),
        };
        assert_eq!(
            format_errors(&[e, whole]).lines().nth(1),
            Some("routing: empty")
        );
    }
}

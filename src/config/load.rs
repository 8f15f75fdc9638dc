//! The **read** phase: the routing directory from disk. Every `*.yaml` / `*.yml` file directly in
//! it (symlinks followed, so ConfigMap mounts load), sorted by file name, handed to
//! [`compile`]. The only I/O of a policy load.

use std::path::Path;

use super::compile::{SourceFile, compile};
use super::error::ConfigError;
use super::policy::Policy;

/// Loads and validates the routing policy in `dir`. See [`crate::config`] for the phases.
pub fn load_dir(dir: &Path) -> Result<Policy, Vec<ConfigError>> {
    let whole = |message: String| ConfigError {
        file: dir.to_path_buf(),
        line: None,
        key: String::new(),
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| vec![whole(format!("cannot read the policy directory: {e}"))])?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| vec![whole(format!("cannot read the policy directory: {e}"))])?;
        let path = entry.path();
        let is_yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        // `is_file` follows symlinks, so Kubernetes ConfigMap mounts (symlinked files) load.
        if is_yaml && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if paths.is_empty() {
        return Err(vec![whole(
            "no *.yaml or *.yml files: the policy would be empty".into(),
        )]);
    }

    let mut errors = Vec::new();
    let mut sources = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push(SourceFile { path, text }),
            Err(e) => errors.push(ConfigError {
                file: path,
                line: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    compile(&sources)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests_support::*;
    use crate::config::{Target, format_errors};
    use crate::domain::Severity;

    #[test]
    fn the_test_base_policy_is_valid() {
        let policy = base_policy();
        assert_eq!(policy.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(policy.rules.len(), 2);
    }

    #[test]
    fn the_shipped_policy_loads_without_errors() {
        let dir = shipped_routing_dir();
        let p = load_dir(&dir).unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        assert_eq!(p.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(p.severities.len(), 4);
        assert_eq!(
            p.severities[&Severity::Critical].respond_within,
            Duration::from_secs(300)
        );
        assert_eq!(
            p.severities[&Severity::Low].respond_within,
            Duration::from_secs(4 * 3600)
        );
        let critical = &p.policies[&p.severities[&Severity::Critical].policy];
        let afters: Vec<u64> = critical
            .steps
            .iter()
            .map(|s| s.after.as_secs() / 60)
            .collect();
        assert_eq!(afters, [0, 5, 10]);
        assert_eq!(
            critical.steps[0].targets,
            [Target::Schedule("primary".into())]
        );
        assert_eq!(critical.steps[2].targets, [Target::Person("ceo".into())]);
        for step in &critical.steps {
            let kinds: Vec<&str> = step.via.iter().map(|v| p.channels[v].kind()).collect();
            assert_eq!(kinds, ["pagerduty", "sms", "phone"]);
        }
        assert_eq!(p.schedules["primary"].layers[0].rotation.members.len(), 3);
        assert_eq!(p.schedules["secondary"].layers[0].rotation.members.len(), 3);
        assert_eq!(
            p.sns_allowed_topics,
            [
                "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts",
                "arn:aws:sns:us-east-1:123456789012:oncall-alerts-use1"
            ]
        );
        assert_eq!(p.rules.last().map(|r| r.matchers.len()), Some(0));
        assert_eq!(p.digest.len(), 64);
    }

    #[test]
    fn an_empty_directory_or_comment_only_file_is_handled() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load_dir(dir.path()).unwrap_err()[0]
                .message
                .contains("no *.yaml")
        );
        let (_d, result) = load_with(&[("00-notes.yaml", "# nothing here yet\n")]);
        assert!(result.is_ok(), "{}", format_errors(&result.unwrap_err()));
    }
}

//! The routing policy (`routing/*.yaml`): who is paged for what, how, and when.
//!
//! In: a directory. Out: a compiled, immutable [`Policy`] that `classify`, `oncall` and the
//! escalation stage read, or every [`ConfigError`] found, each with file, line and key.
//!
//! Loading runs in phases and touches nothing outside its arguments (no env lookups, no network,
//! no live state), so `vigil check`, SIGHUP and `POST /v1/admin/reload` can all call
//! [`load_dir`] and swap the result in only when it is `Ok`:
//! 1. **read** every `*.yaml` / `*.yml` file directly in the directory, sorted by file name;
//! 2. **parse** each one into a [`routing::RoutingFile`] (unknown keys, bad durations, bad phone
//!    numbers fail here, located by the YAML parser);
//! 3. **merge** the files into one policy: the maps (`severities`, `people`, `schedules`,
//!    `channels`, `policies`) are unioned and a name defined in two files is an error naming
//!    both; `timezone` and `sources` may appear in at most one file; `rules` are concatenated
//!    in file-name order (so `10-rules.yaml` is evaluated before `20-rules.yaml`);
//! 4. **compile**: resolve every name, check the desk's invariants, compile matchers.
//!
//! All errors are collected before returning. When any file fails to parse, the semantic checks
//! are skipped: they would run against a policy with a file missing and report noise ("unknown
//! channel" for every channel of the broken file) that hides the real error.

pub mod compile;
pub mod locate;
pub mod reload;
pub mod routing;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{EmailAddress, PhoneNumber, Severity};

pub use compile::{CompiledRule, MatchOp, Matcher, MatcherError};
pub use locate::{PathSeg, line_of};
pub use reload::{PolicyHandle, ReloadOutcome};

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

/// The compiled routing policy. Immutable once built; share it behind an `Arc` and replace it
/// whole on reload.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Zone of rotation hand-offs (and of any local times shown to people).
    pub timezone: chrono_tz::Tz,
    /// The escalation matrix; holds all four severities.
    pub severities: BTreeMap<Severity, SeverityPolicy>,
    /// People by id.
    pub people: BTreeMap<String, Person>,
    /// Schedules by name; every member is a known person.
    pub schedules: BTreeMap<String, Schedule>,
    /// Channels by name.
    pub channels: BTreeMap<String, ChannelSpec>,
    /// Escalation policies by name; every target and channel they name exists.
    pub policies: BTreeMap<String, EscalationPolicy>,
    /// Classification rules in evaluation order; the last one matches everything.
    pub rules: Vec<CompiledRule>,
    /// SNS topic ARNs whose subscription confirmations are accepted automatically.
    pub sns_allowed_topics: Vec<String>,
    /// sha256 (hex) of the policy files' contents in load order, to tell in logs which policy
    /// version was running.
    pub digest: String,
}

/// One row of the escalation matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityPolicy {
    /// How soon an incident of this severity must be acknowledged.
    pub respond_within: Duration,
    /// The escalation policy used unless a rule names another.
    pub policy: String,
}

/// A person who can be paged. Contact details are looked up when a step fires, so a reload that
/// fixes a phone number applies to escalations already in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The id schedules and steps use.
    pub id: String,
    /// Full name.
    pub name: String,
    /// For `sms` and `phone` channels.
    pub phone: Option<PhoneNumber>,
    /// For `email` channels without a fixed list.
    pub email: Option<EmailAddress>,
    /// Slack member id, for mentions.
    pub slack: Option<String>,
}

/// An on-call schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The schedule's name.
    pub id: String,
    /// Who is on call when.
    pub rotation: Rotation,
}

/// Members take turns of length `every`, the first from `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Person ids in hand-off order; never empty.
    pub members: Vec<String>,
    /// Shift length; never zero.
    pub every: Duration,
    /// The first hand-off, as an instant (converted from the policy's time zone at load).
    pub start: DateTime<Utc>,
}

/// A named destination, checked at load. Tokens are referenced by environment variable name and
/// read when the notifier is built, never here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSpec {
    /// PagerDuty Events API v2.
    Pagerduty {
        /// Env var with the routing key.
        routing_key_env: String,
    },
    /// SMS to each target person's phone.
    Sms,
    /// Voice call to each target person's phone.
    Phone,
    /// Email to `to`, or to each target person when `to` is empty.
    Email {
        /// Fixed recipients; empty = each target person's own address.
        to: Vec<EmailAddress>,
    },
    /// A Slack channel message.
    Slack {
        /// `#name` or channel id.
        channel: String,
        /// Env var with the bot token.
        token_env: String,
    },
    /// A generic JSON POST.
    Webhook {
        /// Target URL (http or https).
        url: url::Url,
        /// Env var with an optional bearer token.
        token_env: Option<String>,
    },
    /// vigil's own log; reaches nobody.
    Log,
}

impl ChannelSpec {
    /// The `type` as written in YAML: `pagerduty`, `sms`, `phone`, `email`, `slack`, `webhook`,
    /// `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pagerduty { .. } => "pagerduty",
            Self::Sms => "sms",
            Self::Phone => "phone",
            Self::Email { .. } => "email",
            Self::Slack { .. } => "slack",
            Self::Webhook { .. } => "webhook",
            Self::Log => "log",
        }
    }

    /// Whether the channel puts a message in front of a person (what the desk invariant counts):
    /// `log` and `webhook` do not.
    pub fn reaches_people(&self) -> bool {
        !matches!(self, Self::Log | Self::Webhook { .. })
    }
}

/// An escalation policy. Incidents store a snapshot of it when they open, so it serializes
/// (durations as humantime strings: `5m`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    /// Steps in firing order; `after` never decreases.
    pub steps: Vec<Step>,
    /// How many more times the chain runs after the first pass.
    pub repeat: u32,
    /// Gap between the last step of a pass and the first of the next; `Some` and non-zero when
    /// `repeat` > 0.
    #[serde(default, with = "humantime_serde")]
    pub repeat_delay: Option<Duration>,
}

/// One escalation step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Delay from the trigger (of this pass).
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// Who is notified; resolved to people when the step fires.
    pub targets: Vec<Target>,
    /// Channel names, all used at once.
    pub via: Vec<String>,
}

/// Who a step notifies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Whoever is on call on this schedule when the step fires.
    Schedule(String),
    /// A person by id.
    Person(String),
}

/// Loads and validates the routing policy in `dir`. See the module doc for the phases.
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
            Ok(text) => sources.push(compile::SourceFile { path, text }),
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
    compile::compile(&sources)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::path::PathBuf;

    /// The shipped `routing/` directory. The crate's own manifest dir when it has one; otherwise
    /// (when these sources are compiled from another crate through `#[path]`, where `file!()` is
    /// absolute) the `routing/` next to this file's `src/`.
    pub fn shipped_routing_dir() -> PathBuf {
        let own = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/routing"));
        if own.is_dir() {
            return own;
        }
        let this = PathBuf::from(file!());
        this.ancestors()
            .nth(3)
            .map(|root| root.join("routing"))
            .unwrap_or(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEOPLE: &str = r#"people:
  mei: { name: Mei Tan, phone: "+6591234567", email: mei@example.com, slack: U07QK3M2ZLP }
  raj: { name: Raj Kumar, phone: "+6598765432", email: raj@example.com }
  cto: { name: Sarah Koh, phone: "+6582223333", email: cto@example.com }
schedules:
  primary:
    rotation: { members: [mei, raj], every: 1w, start: "2026-11-02T09:00:00" }
"#;

    const CHANNELS: &str = r##"channels:
  pagerduty: { type: pagerduty, routing_key_env: VIGIL_PAGERDUTY_ROUTING_KEY }
  sms: { type: sms }
  email: { type: email }
  slack:
    type: slack
    channel: "#trading-alerts"
    token_env: VIGIL_SLACK_BOT_TOKEN
"##;

    const POLICY: &str = r#"timezone: Asia/Singapore
severities:
  critical: { respond_within: 5m, policy: critical }
  high: { respond_within: 15m, policy: calm }
  medium: { respond_within: 1h, policy: calm }
  low: { respond_within: 4h, policy: calm }
policies:
  critical:
    steps:
      - after: 0m
        targets: [{ schedule: primary }]
        via: [pagerduty, sms]
      - after: 5m
        targets: [{ person: cto }]
        via: [pagerduty, sms]
  calm:
    steps:
      - after: 0m
        targets: [{ schedule: primary }]
        via: [slack]
"#;

    const RULES: &str = r#"rules:
  - name: exchange
    matchers: ['kind="exchange_error"', 'error=~"timeout|http_5xx"']
    severity: high
  - name: catch-all
    matchers: []
    severity: medium
"#;

    /// Loads the base policy with some files replaced or added.
    fn load_with(
        changes: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<Policy, Vec<ConfigError>>) {
        let dir = tempfile::tempdir().unwrap();
        let mut files: BTreeMap<&str, &str> = [
            ("people.yaml", PEOPLE),
            ("channels.yaml", CHANNELS),
            ("policy.yaml", POLICY),
            ("rules.yaml", RULES),
        ]
        .into();
        files.extend(changes.iter().copied());
        for (name, text) in &files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let result = load_dir(dir.path());
        (dir, result)
    }

    /// 1-based line of the first line containing `needle`.
    fn line_with(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in text"))
            + 1
    }

    #[test]
    fn policies_can_be_shared_across_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Policy>();
        shareable::<EscalationPolicy>();
    }

    #[test]
    fn the_test_base_policy_is_valid() {
        let (_dir, result) = load_with(&[]);
        let policy = result.unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        assert_eq!(policy.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(policy.rules.len(), 2);
    }

    #[test]
    fn the_shipped_policy_loads_without_errors() {
        let dir = tests_support::shipped_routing_dir();
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
        assert_eq!(p.schedules["primary"].rotation.members.len(), 3);
        assert_eq!(p.schedules["secondary"].rotation.members.len(), 3);
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
    fn escalation_policies_round_trip_through_json() {
        let dir = tests_support::shipped_routing_dir();
        let p = load_dir(&dir).unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        let mut policy = p.policies["critical"].clone();
        policy.repeat = 2;
        policy.repeat_delay = Some(Duration::from_secs(600));
        let json = serde_json::to_string(&policy).unwrap();
        assert!(json.contains(r#""after":"5m""#), "{json}");
        let back: EscalationPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, policy);
    }

    struct Case {
        what: &'static str,
        file: &'static str,
        text: String,
        /// Text on the line the error must point at.
        at: &'static str,
        key: &'static str,
        message: &'static str,
    }

    fn case(
        what: &'static str,
        file: &'static str,
        text: String,
        at: &'static str,
        key: &'static str,
        message: &'static str,
    ) -> Case {
        Case {
            what,
            file,
            text,
            at,
            key,
            message,
        }
    }

    #[test]
    fn broken_policies_report_file_line_key_and_reason() {
        let cases = [
            case(
                "unknown key",
                "policy.yaml",
                POLICY.replace("  calm:\n", "  calm:\n    repaet: 2\n"),
                "repaet",
                "policies.calm.repaet",
                "unknown field `repaet`",
            ),
            case(
                "bad duration",
                "policy.yaml",
                POLICY.replace("after: 5m", "after: 5 fortnights"),
                "5 fortnights",
                "policies.critical.steps[1].after",
                "fortnights",
            ),
            case(
                "bad phone",
                "people.yaml",
                PEOPLE.replace("+6598765432", "98765432"),
                "98765432",
                "people.raj.phone",
                "E.164",
            ),
            case(
                "unknown channel in via",
                "policy.yaml",
                POLICY.replacen("via: [pagerduty, sms]", "via: [pagerduty2, sms]", 1),
                "pagerduty2",
                "policies.critical.steps[0].via[0]",
                r#"unknown channel "pagerduty2""#,
            ),
            case(
                "unknown schedule target",
                "policy.yaml",
                POLICY.replacen("schedule: primary", "schedule: primry", 1),
                "primry",
                "policies.critical.steps[0].targets[0].schedule",
                r#"unknown schedule "primry""#,
            ),
            case(
                "missing catch-all",
                "rules.yaml",
                RULES.replace("    matchers: []\n", "    matchers: ['kind=~\".+\"']\n"),
                "name: catch-all",
                "rules[1]",
                "catch-all rule with `matchers: []` is required",
            ),
            case(
                "bad regex",
                "rules.yaml",
                RULES.replace("timeout|http_5xx", "(timeout|http_5xx"),
                "(timeout",
                "rules[0].matchers[1]",
                "unclosed group",
            ),
            case(
                "decreasing after",
                "policy.yaml",
                POLICY.replace(
                    "after: 0m\n        targets: [{ schedule: primary }]\n        via: [pagerduty",
                    "after: 7m\n        targets: [{ schedule: primary }]\n        via: [pagerduty",
                ),
                "after: 5m",
                "policies.critical.steps[1].after",
                "must not decrease",
            ),
            case(
                "critical with one channel type",
                "policy.yaml",
                POLICY.replace(
                    "        targets: [{ person: cto }]\n        via: [pagerduty, sms]",
                    "        targets: [{ person: cto }]\n        via: [pagerduty, pagerduty]",
                ),
                "via: [pagerduty, pagerduty]",
                "policies.critical.steps[1].via",
                "at least two different channel types",
            ),
            case(
                "missing severity",
                "policy.yaml",
                POLICY.replace("  low: { respond_within: 4h, policy: calm }\n", ""),
                "severities:",
                "severities.low",
                r#"severity "low" is missing"#,
            ),
            case(
                "a literal secret is an unknown key",
                "channels.yaml",
                CHANNELS.replace(
                    "    token_env: VIGIL_SLACK_BOT_TOKEN",
                    "    token: xoxb-1234",
                ),
                "token: xoxb",
                "channels.slack.token",
                "unknown field `token`",
            ),
            case(
                "phone channel to a person without a phone",
                "people.yaml",
                PEOPLE.replace(
                    r#"cto: { name: Sarah Koh, phone: "+6582223333", "#,
                    "cto: { name: Sarah Koh, ",
                ),
                // The error is in policy.yaml (see below); this case checks the file field too.
                "",
                "",
                "",
            ),
        ];
        for c in cases.iter().filter(|c| !c.at.is_empty()) {
            let (dir, result) = load_with(&[(c.file, &c.text)]);
            let errors = result.err().unwrap_or_else(|| panic!("{}: loaded", c.what));
            assert_eq!(errors.len(), 1, "{}: {}", c.what, format_errors(&errors));
            let e = &errors[0];
            assert_eq!(e.file, dir.path().join(c.file), "{}: {e}", c.what);
            assert_eq!(e.line, Some(line_with(&c.text, c.at)), "{}: {e}", c.what);
            assert_eq!(e.key, c.key, "{}: {e}", c.what);
            assert!(e.message.contains(c.message), "{}: {e}", c.what);
        }

        let no_phone = &cases.last().unwrap().text;
        let (dir, result) = load_with(&[("people.yaml", no_phone)]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
        assert_eq!(errors[0].file, dir.path().join("policy.yaml"));
        assert_eq!(
            errors[0].key,
            "policies.critical.steps[1].targets[0].person"
        );
        assert_eq!(errors[0].line, Some(line_with(POLICY, "person: cto")));
        assert!(
            errors[0].message.contains(r#""cto" has no phone"#),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_name_defined_in_two_files_names_both() {
        let (dir, result) = load_with(&[(
            "zz-extra.yaml",
            "# more channels\nchannels:\n  sms: { type: sms }\n",
        )]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
        let e = &errors[0];
        assert_eq!(e.file, dir.path().join("zz-extra.yaml"));
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key, "channels.sms");
        let first = format!(
            "{}:{}",
            dir.path().join("channels.yaml").display(),
            line_with(CHANNELS, "sms:")
        );
        assert!(e.message.contains(&first), "{e}");
    }

    #[test]
    fn independent_errors_in_two_files_are_all_reported() {
        let policy = POLICY.replace("via: [slack]", "via: [slack, teams]");
        let rules = RULES
            .replace("timeout|http_5xx", "timeout|http_5xx|(")
            .replace(
                "  - name: catch-all\n    matchers: []\n    severity: medium\n",
                "",
            );
        let (dir, result) = load_with(&[("policy.yaml", &policy), ("rules.yaml", &rules)]);
        let errors = result.unwrap_err();
        let text = format_errors(&errors);
        assert_eq!(errors.len(), 3, "{text}");
        let found = |file: &str, key: &str, fragment: &str| {
            errors
                .iter()
                .find(|e| e.file == dir.path().join(file) && e.key == key)
                .unwrap_or_else(|| panic!("no {file} {key} in\n{text}"))
                .message
                .contains(fragment)
        };
        assert!(found(
            "policy.yaml",
            "policies.calm.steps[0].via[1]",
            r#"unknown channel "teams""#
        ));
        assert!(found(
            "rules.yaml",
            "rules[0].matchers[1]",
            "regular expression"
        ));
        assert!(found("rules.yaml", "rules[0]", "catch-all"));
    }

    #[test]
    fn parse_errors_in_every_file_are_reported() {
        let people = PEOPLE.replace("email: cto@example.com", "email: cto");
        let channels = CHANNELS.replace("type: sms", "type: carrier_pigeon");
        let (dir, result) = load_with(&[("people.yaml", &people), ("channels.yaml", &channels)]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 2, "{}", format_errors(&errors));
        assert_eq!(errors[0].file, dir.path().join("channels.yaml"));
        assert_eq!(errors[0].line, Some(line_with(&channels, "carrier_pigeon")));
        assert!(
            errors[0].message.contains("carrier_pigeon"),
            "{}",
            errors[0]
        );
        assert_eq!(errors[1].file, dir.path().join("people.yaml"));
        assert_eq!(errors[1].key, "people.cto.email");
        assert_eq!(errors[1].line, Some(line_with(&people, "email: cto")));
    }

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

    #[test]
    fn more_semantic_checks() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "policy.yaml",
                "timezone: Asia/Singapore",
                "timezone: Asia/Singapur",
                "unknown time zone",
            ),
            (
                "people.yaml",
                "members: [mei, raj]",
                "members: [mei, rja]",
                r#"unknown person "rja""#,
            ),
            (
                "people.yaml",
                "members: [mei, raj]",
                "members: []",
                "at least one member",
            ),
            (
                "people.yaml",
                "every: 1w",
                "every: 0s",
                "every must be more than 0",
            ),
            (
                "channels.yaml",
                "VIGIL_PAGERDUTY_ROUTING_KEY",
                "vigil-pd-key",
                "not an environment variable name",
            ),
            (
                "policy.yaml",
                "policy: calm }\n  medium",
                "policy: clam }\n  medium",
                r#"unknown policy "clam""#,
            ),
            (
                "policy.yaml",
                "  calm:\n    steps:\n",
                "  calm:\n    repeat: 1\n    steps:\n",
                "repeat needs repeat_delay",
            ),
            (
                "rules.yaml",
                "name: catch-all",
                "name: exchange",
                "duplicate rule name",
            ),
            (
                "rules.yaml",
                "'kind=\"exchange_error\"'",
                "'kind=exchange_error'",
                "double quotes",
            ),
        ];
        for (file, from, to, fragment) in cases {
            let base = match *file {
                "policy.yaml" => POLICY,
                "people.yaml" => PEOPLE,
                "channels.yaml" => CHANNELS,
                _ => RULES,
            };
            assert!(base.contains(from), "{from}");
            let text = base.replacen(from, to, 1);
            let (_dir, result) = load_with(&[(file, &text)]);
            let errors = result.err().unwrap_or_else(|| panic!("{to}: loaded"));
            assert!(
                errors.iter().any(|e| e.message.contains(fragment)),
                "{to}: {}",
                format_errors(&errors)
            );
            assert!(
                errors.iter().all(|e| e.line.is_some()),
                "{to}: {}",
                format_errors(&errors)
            );
        }
    }

    #[test]
    fn a_catch_all_above_other_rules_is_refused() {
        let rules = "rules:\n  - { name: all, matchers: [], severity: low }\n  - { name: late, matchers: ['a=\"b\"'], severity: high }\n  - { name: end, matchers: [], severity: low }\n";
        let (_dir, result) = load_with(&[("rules.yaml", rules)]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
        assert_eq!(
            (errors[0].key.as_str(), errors[0].line),
            ("rules[0].matchers", Some(2))
        );
        assert!(errors[0].message.contains("can never match"));
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

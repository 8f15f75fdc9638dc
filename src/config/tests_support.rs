//! Test fixtures shared by the tests of every config file: the shipped `routing/` directory, a
//! small valid base policy in four files, loaders that replace or add files, and the two table
//! runners the section tests use.

use std::collections::BTreeMap;

use super::{ConfigError, Policy, format_errors, load_dir};
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

/// The base policy, in four files: people and a schedule, channels, severities and policies, rules.
pub const PEOPLE: &str = r#"people:
  mei: { name: Mei Tan, phone: "+6591234567", email: mei@example.com, slack: U07QK3M2ZLP }
  raj: { name: Raj Kumar, phone: "+6598765432", email: raj@example.com }
  cto: { name: Sarah Koh, phone: "+6582223333", email: cto@example.com }
schedules:
  primary:
    rotation: { members: [mei, raj], every: 1w, start: "2026-11-02T09:00:00" }
"#;

pub const CHANNELS: &str = r##"channels:
  pagerduty: { type: pagerduty, routing_key_env: VIGIL_PAGERDUTY_ROUTING_KEY }
  sms: { type: sms }
  email: { type: email }
  slack:
    type: slack
    channel: "#trading-alerts"
    token_env: VIGIL_SLACK_BOT_TOKEN
"##;

pub const POLICY: &str = r#"timezone: Asia/Singapore
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

pub const RULES: &str = r#"rules:
  - name: exchange
    matchers: ['kind="exchange_error"', 'error=~"timeout|http_5xx"']
    severity: high
  - name: catch-all
    matchers: []
    severity: medium
"#;

/// Loads the base policy with some files replaced or added.
pub fn load_with(
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

/// The base policy, loaded (panics with every error when it does not load).
pub fn base_policy() -> Policy {
    let (_dir, result) = load_with(&[]);
    result.unwrap_or_else(|e| panic!("{}", format_errors(&e)))
}

/// The base policy with [`EXTRA_OK`] as `extra.yaml`, loaded.
pub fn extra_ok_policy() -> Policy {
    let (_dir, result) = load_with(&[("extra.yaml", EXTRA_OK)]);
    result.unwrap_or_else(|e| panic!("{}", format_errors(&e)))
}

/// Labels from `(name, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> crate::domain::Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// 1-based line of the first line containing `needle`.
pub fn line_with(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
        + 1
}

/// A broken policy and the one error it must produce: in `file`, on the line holding `at`, at
/// `key`, with a message containing `message`.
pub struct Case {
    pub what: &'static str,
    pub file: &'static str,
    pub text: String,
    /// Text on the line the error must point at.
    pub at: &'static str,
    pub key: &'static str,
    pub message: &'static str,
}

pub fn case(
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

/// Loads the base policy plus `extra.yaml` (or with `file` replaced) and returns the single
/// error it must produce.
pub fn single_error(file: &str, text: &str) -> (tempfile::TempDir, ConfigError) {
    let (dir, result) = load_with(&[(file, text)]);
    let mut errors = result.err().unwrap_or_else(|| panic!("loaded:\n{text}"));
    assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
    (dir, errors.remove(0))
}

/// The optional sections, all valid: business hours, a silence, an inhibition rule, a heartbeat,
/// flapping.
pub const EXTRA_OK: &str = r#"business_hours:
  days: [mon, tue, wed, thu, fri]
  from: "09:00"
  to: "18:00"
  holidays: [2026-12-25, "2027-01-01"]
silences:
  - matchers: ['region="ap-southeast-1"', 'alarm_name=~"rds-.*"']
    start: "2026-11-28T02:00:00"
    end: "2026-11-28T04:00:00"
    author: mei
    comment: RDS upgrade, CHG-1234
inhibit_rules:
  - source_matchers: ['kind="route53_health_check"']
    target_matchers: ['kind="cloudwatch_alarm"']
    equal: [region]
heartbeats:
  trading-bot: { interval: 1m, grace: 30s, severity: critical }
flapping:
  cooldown: 10m
"#;

/// For each `(text, key, fragment)`: the base policy plus `file` holding `text` fails with one
/// error, in `file`, at `key`, saying `fragment`, and on `line` when one is given.
pub fn assert_single_errors_in(file: &str, cases: &[(&str, &str, &str)], line: Option<usize>) {
    for &(text, key, fragment) in cases {
        let (dir, e) = single_error(file, text);
        assert_eq!(e.file, dir.path().join(file), "{text}: {e}");
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.message.contains(fragment), "{text}: {e}");
        if line.is_some() {
            assert_eq!(e.line, line, "{text}: {e}");
        }
    }
}

/// [`EXTRA_OK`] with its first `from` replaced by `to` (which must be in it).
pub fn extra(from: &str, to: &str) -> String {
    assert!(EXTRA_OK.contains(from), "{from}");
    EXTRA_OK.replacen(from, to, 1)
}

/// Loads each case's policy and checks it fails with exactly the case's one error, located.
pub fn assert_single_located_errors(cases: &[Case]) {
    for c in cases {
        let (dir, result) = load_with(&[(c.file, &c.text)]);
        let errors = result.err().unwrap_or_else(|| panic!("{}: loaded", c.what));
        assert_eq!(errors.len(), 1, "{}: {}", c.what, format_errors(&errors));
        let e = &errors[0];
        assert_eq!(e.file, dir.path().join(c.file), "{}: {e}", c.what);
        assert_eq!(e.line, Some(line_with(&c.text, c.at)), "{}: {e}", c.what);
        assert_eq!(e.key, c.key, "{}: {e}", c.what);
        assert!(e.message.contains(c.message), "{}: {e}", c.what);
    }
}

/// For each `(file, from, to, fragment)`: the base policy with `from` replaced by `to` in `file`
/// fails, one of its errors says `fragment`, and every error has a line.
pub fn assert_each_edit_is_refused(cases: &[(&str, &str, &str, &str)]) {
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

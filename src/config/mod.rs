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
//!    `channels`, `policies`, `heartbeats`) are unioned and a name defined in two files is an
//!    error naming both; `timezone`, `sources`, `business_hours` and `flapping` may appear in at
//!    most one file; `rules` are concatenated in file-name order (so `10-rules.yaml` is
//!    evaluated before `20-rules.yaml`), and so are `silences` and `inhibit_rules`;
//! 4. **compile**: resolve every name, check the desk's invariants, compile matchers.
//!
//! All errors are collected before returning. When any file fails to parse, the semantic checks
//! are skipped: they would run against a policy with a file missing and report noise ("unknown
//! channel" for every channel of the broken file) that hides the real error.

pub mod calendar;
pub mod compile;
mod escalation;
pub mod heartbeat;
pub mod locate;
pub mod reload;
pub mod routing;
pub mod suppress;
pub mod watchdog;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{EmailAddress, PhoneNumber, Severity};

pub use calendar::{Calendar, Days, WeeklyWindow};
pub use compile::{
    CompiledRule, MatchOp, Matcher, MatcherError, REGEX_DFA_SIZE_LIMIT, REGEX_SIZE_LIMIT,
    is_region_code,
};
pub use heartbeat::Heartbeat;
pub use locate::{PathSeg, line_of};
pub use reload::{PolicyHandle, ReloadOutcome};
pub use suppress::{
    InhibitRule, MAX_API_SILENCE_REGEXES, MAX_API_SILENCES, MAX_SILENCE_MATCHERS, Silence,
    SilenceError, SilenceSpec,
};
pub use watchdog::WatchdogSpec;

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
    /// `sources.sns.max_age`: an SNS Notification signed longer ago than this is a replay.
    pub sns_max_age: Duration,
    /// `sources.sns.dead_letter_queues`: SQS queue URLs drained through the SNS path.
    pub sns_dead_letter_queues: Vec<String>,
    /// `sources.cloudwatch.reconcile`; `None` = no reconciliation.
    pub reconcile: Option<Reconcile>,
    /// The business-hours calendar; always `Some` when a severity uses business hours.
    pub business_hours: Option<Calendar>,
    /// Silences written in `routing/` (API-made ones are stored and passed in by the caller).
    pub silences: Vec<Silence>,
    /// Inhibition rules, in file order (any one inhibiting is enough).
    pub inhibit_rules: Vec<InhibitRule>,
    /// Heartbeats by name.
    pub heartbeats: BTreeMap<String, Heartbeat>,
    /// An alarm that fires again within this long after its incident resolved reopens that
    /// incident instead of opening a new one; `None` = never (every firing after a resolve pages
    /// afresh).
    pub flap_cooldown: Option<Duration>,
    /// Channels told when an escalation step reached no one, in order; empty when none.
    pub last_resort: Vec<String>,
    /// The per-source bound on new incidents per minute beyond which alerts fold into a storm
    /// incident.
    pub storm: StormPolicy,
    /// `sources.cloudwatch.watchdog`: the heartbeat metric vigil publishes while ready; `None`
    /// when not configured (nothing is published).
    pub watchdog: Option<WatchdogSpec>,
    /// sha256 (hex) of the policy files' contents in load order, to tell in logs which policy
    /// version was running.
    pub digest: String,
}

/// The default of `storm.max_new_per_minute`.
pub const DEFAULT_STORM_BOUND: u32 = 100;

/// How many new incidents one source may open within a minute (`routing/` `storm`) before
/// further new alerts from it fold into its storm incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormPolicy {
    /// The bound for sources not in `per_source`.
    pub max_new_per_minute: u32,
    pub per_source: std::collections::HashMap<crate::domain::Source, u32>,
}

impl Default for StormPolicy {
    fn default() -> Self {
        Self {
            max_new_per_minute: DEFAULT_STORM_BOUND,
            per_source: Default::default(),
        }
    }
}

/// Reconciliation from CloudWatch (`sources.cloudwatch.reconcile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconcile {
    /// Region codes, in file order, without repeats.
    pub regions: Vec<String>,
    pub interval: Duration,
}

impl StormPolicy {
    /// The bound for `source`; `None` for heartbeats, which are never grouped.
    pub fn bound(&self, source: crate::domain::Source) -> Option<u32> {
        match source {
            crate::domain::Source::Heartbeat => None,
            s => Some(
                self.per_source
                    .get(&s)
                    .copied()
                    .unwrap_or(self.max_new_per_minute),
            ),
        }
    }
}

impl Policy {
    /// When an incident of `severity` that triggers at `at` should notify: `at`, or for a
    /// severity marked `business_hours` the next business-hours opening (`at` itself when the
    /// desk is open). Critical is never held.
    pub fn notify_at(&self, severity: Severity, at: DateTime<Utc>) -> DateTime<Utc> {
        let held = self
            .severities
            .get(&severity)
            .is_some_and(|s| s.business_hours);
        match &self.business_hours {
            Some(calendar) if held && severity != Severity::Critical => calendar.next_open(at),
            _ => at,
        }
    }

    /// The first silence, of the policy's own and then `extra` (the API-made ones), that
    /// silences an alert with `labels` at `at`.
    pub fn silenced_by<'a>(
        &'a self,
        labels: &crate::domain::Labels,
        at: DateTime<Utc>,
        extra: impl IntoIterator<Item = &'a Silence>,
    ) -> Option<&'a Silence> {
        self.silences
            .iter()
            .chain(extra)
            .find(|s| s.silences(labels, at))
    }

    /// Whether an open incident with `source` labels inhibits an alert with `target` labels
    /// under any of the policy's inhibition rules.
    pub fn inhibits(&self, source: &crate::domain::Labels, target: &crate::domain::Labels) -> bool {
        self.inhibit_rules
            .iter()
            .any(|r| r.inhibits(source, target))
    }

    /// Whether an alarm firing at `at` for an incident that resolved at `resolved_at` is a flap
    /// that reopens that incident: `resolved_at <= at < resolved_at + cooldown`. Exactly at the
    /// end of the cool-down it pages afresh. Always `false` without `flapping`.
    pub fn reopens_after_flap(&self, resolved_at: DateTime<Utc>, at: DateTime<Utc>) -> bool {
        let Some(cooldown) = self.flap_cooldown else {
            return false;
        };
        let Ok(cooldown) = chrono::TimeDelta::from_std(cooldown) else {
            return true;
        };
        resolved_at <= at && at.signed_duration_since(resolved_at) < cooldown
    }
}

/// One row of the escalation matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeverityPolicy {
    /// How soon an incident of this severity must be acknowledged.
    pub respond_within: Duration,
    /// The escalation policy used unless a rule names another.
    pub policy: String,
    /// Whether notifications wait for [`Policy::business_hours`] (never for critical).
    pub business_hours: bool,
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

/// An on-call schedule: layers, and planned overrides that win over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The schedule's name.
    pub id: String,
    /// Lowest first; the last layer that covers an instant decides (a `rotation:` is one
    /// unrestricted layer named `rotation`). Never empty.
    pub layers: Vec<Layer>,
    /// Overrides written in `routing/`; `schedule` is this schedule's id, `author` is `None`.
    pub overrides: Vec<Override>,
}

/// One layer of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Unique within the schedule.
    pub name: String,
    /// Who takes which turn.
    pub rotation: Rotation,
    /// The part of the week the layer applies to; `None` = always.
    pub restrict: Option<WeeklyWindow>,
}

/// Members take turns of length `every`, the first from `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Person ids in hand-off order; never empty.
    pub members: Vec<String>,
    /// Shift length; never zero. A whole number of days hands off at the same local wall-clock
    /// time in `timezone` (across daylight-saving changes); anything else every `every` of
    /// elapsed time.
    pub every: Duration,
    /// The first hand-off, as an instant (converted from the policy's time zone at load).
    pub start: DateTime<Utc>,
    /// The policy's zone, for wall-clock hand-offs.
    pub timezone: chrono_tz::Tz,
}

/// "`person` is on call on `schedule` from `start` until `end`", winning over the layers. Made
/// in `routing/` or through `POST /v1/overrides` (the caller stores those and passes them to
/// [`Policy::on_call_at`]); check an API-made one with [`Policy::check_override`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    /// Schedule name.
    pub schedule: String,
    /// Person id.
    pub person: String,
    /// First instant covered.
    pub start: DateTime<Utc>,
    /// First instant no longer covered; after `start`.
    pub end: DateTime<Utc>,
    /// Who made it (API overrides); `None` for overrides written in `routing/`.
    #[serde(default)]
    pub author: Option<String>,
}

impl Override {
    /// Whether the override covers `at`: `start <= at < end`.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
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
    /// An acknowledged incident not resolved this long after its acknowledgement is triggered
    /// again. `None` = acknowledgements do not expire. Defaulted so snapshots written before the
    /// field existed still read.
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
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
    fn storm_bounds_default_to_100_and_are_checked() {
        let (_dir, p) = load_with(&[]);
        let p = p.unwrap();
        assert_eq!(p.storm, StormPolicy::default());
        assert_eq!(
            p.storm.bound(crate::domain::Source::Sns),
            Some(DEFAULT_STORM_BOUND)
        );
        assert_eq!(p.storm.bound(crate::domain::Source::Heartbeat), None);

        let (_dir, p) = load_with(&[(
            "storm.yaml",
            "storm:\n  max_new_per_minute: 50\n  sources: { bot: 500 }\n",
        )]);
        let p = p.unwrap();
        assert_eq!(p.storm.bound(crate::domain::Source::Sns), Some(50));
        assert_eq!(p.storm.bound(crate::domain::Source::Bot), Some(500));

        for (text, key, fragment) in [
            (
                "storm:\n  max_new_per_minute: 0\n",
                "storm.max_new_per_minute",
                "at least 1",
            ),
            (
                "storm:\n  sources: { cloudwatch: 10 }\n",
                "storm.sources.cloudwatch",
                "unknown source \"cloudwatch\"",
            ),
            (
                "storm:\n  sources: { sns: 0 }\n",
                "storm.sources.sns",
                "at least 1",
            ),
            (
                "storm:\n  max_new_per_mintue: 10\n",
                "storm.max_new_per_mintue",
                "unknown field",
            ),
        ] {
            let (_dir, e) = single_error("storm.yaml", text);
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains(fragment), "{text}: {e}");
            assert_eq!(e.line, Some(2), "{text}: {e}");
        }
    }

    #[test]
    fn reconciliation_and_dead_letter_queues_are_read_and_checked() {
        let (_dir, p) = load_with(&[]);
        let p = p.unwrap();
        assert_eq!(p.reconcile, None, "no reconciliation unless configured");
        assert!(p.sns_dead_letter_queues.is_empty());

        let (_dir, p) = load_with(&[(
            "sources.yaml",
            "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues:\n      - https://sqs.ap-southeast-1.amazonaws.com/123456789012/vigil-dlq\n      - http://127.0.0.1:5000/123456789012/vigil-dlq.fifo\n  cloudwatch:\n    reconcile:\n      regions: [ap-southeast-1, us-east-1, ap-southeast-1]\n",
        )]);
        let p = p.unwrap();
        assert_eq!(
            p.reconcile,
            Some(Reconcile {
                regions: vec!["ap-southeast-1".into(), "us-east-1".into()],
                interval: std::time::Duration::from_secs(60),
            })
        );
        assert_eq!(p.sns_dead_letter_queues.len(), 2);

        for (text, key, fragment) in [
            (
                "sources:\n  cloudwatch:\n    reconcile: { regions: [] }\n",
                "sources.cloudwatch.reconcile.regions",
                "at least one region",
            ),
            (
                "sources:\n  cloudwatch:\n    reconcile: { regions: [Singapore] }\n",
                "sources.cloudwatch.reconcile.regions[0]",
                "not an AWS region code",
            ),
            (
                "sources:\n  cloudwatch:\n    reconcile: { regions: [us-east-1], interval: 1s }\n",
                "sources.cloudwatch.reconcile.interval",
                "at least 10s",
            ),
            (
                "sources:\n  cloudwatch:\n    reconcile: { regoins: [us-east-1] }\n",
                "sources.cloudwatch.reconcile.regoins",
                "unknown field",
            ),
            (
                "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues: [arn:aws:sqs:ap-southeast-1:123456789012:q]\n",
                "sources.sns.dead_letter_queues[0]",
                "not an SQS queue URL",
            ),
            (
                "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues: [\"https://sqs.ap-southeast-1.amazonaws.com/q\"]\n",
                "sources.sns.dead_letter_queues[0]",
                "/<12-digit account>/<queue name>",
            ),
            (
                "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues: [\"https://sqs.ap-southeast-1.amazonaws.com/123456789012/q\", \"https://sqs.ap-southeast-1.amazonaws.com/123456789012/q\"]\n",
                "sources.sns.dead_letter_queues[1]",
                "listed twice",
            ),
        ] {
            let (_dir, e) = single_error("sources.yaml", text);
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains(fragment), "{text}: {e}");
        }
        // `reconcile` is a storm source like the others.
        let (_dir, p) = load_with(&[("storm.yaml", "storm:\n  sources: { reconcile: 20 }\n")]);
        assert_eq!(
            p.unwrap().storm.bound(crate::domain::Source::Reconcile),
            Some(20)
        );
    }

    #[test]
    fn the_watchdog_takes_defaults_and_cloudwatch_limits() {
        let (_dir, p) = load_with(&[]);
        assert_eq!(p.unwrap().watchdog, None, "no watchdog unless configured");

        let (_dir, p) = load_with(&[(
            "sources.yaml",
            "sources:\n  cloudwatch:\n    watchdog: {}\n",
        )]);
        let w = p.unwrap().watchdog.expect("configured");
        assert_eq!(w, WatchdogSpec::default());
        assert_eq!(w.region, "us-east-1");
        assert_eq!(
            (w.namespace.as_str(), w.metric.as_str()),
            ("Vigil", "Heartbeat")
        );
        assert_eq!(
            w.dimensions,
            BTreeMap::from([("Service".to_string(), "vigil".to_string())])
        );
        assert_eq!(w.interval, Duration::from_secs(60));

        let (_dir, p) = load_with(&[(
            "sources.yaml",
            "sources:\n  cloudwatch:\n    watchdog:\n      region: eu-west-1\n      namespace: Desk/Vigil\n      metric: Alive\n      dimensions: { Service: vigil, Desk: fx }\n      interval: 30s\n",
        )]);
        let w = p.unwrap().watchdog.unwrap();
        assert_eq!(w.region, "eu-west-1");
        assert_eq!(w.namespace, "Desk/Vigil");
        assert_eq!(w.metric, "Alive");
        assert_eq!(w.dimensions.len(), 2);
        assert_eq!(w.interval, Duration::from_secs(30));

        let long = "x".repeat(256);
        let many: String = (0..31).map(|i| format!("D{i}: v, ")).collect();
        for (field, value, key, fragment) in [
            (
                "namespace",
                "\"AWS/EC2\"",
                "namespace",
                "must not start with 'AWS/'",
            ),
            (
                "namespace",
                "\":Vigil\"",
                "namespace",
                "must not start with ':'",
            ),
            ("namespace", "\"\"", "namespace", "1-255"),
            ("namespace", long.as_str(), "namespace", "1-255"),
            ("namespace", "\"Vigil!\"", "namespace", "may only hold"),
            ("metric", "\"\"", "metric", "1-255"),
            ("interval", "5s", "interval", "from 10s to 1m"),
            ("interval", "5m", "interval", "from 10s to 1m"),
            ("region", "mars", "region", "not an AWS region"),
            (
                "dimensions",
                "{ Service: \"\" }",
                "dimensions.Service",
                "1-1024",
            ),
            (
                "dimensions",
                "{ \":x\": vigil }",
                "dimensions.:x",
                "not starting with ':'",
            ),
            (
                "dimensions",
                &format!("{{ {many} }}"),
                "dimensions",
                "at most 30",
            ),
            ("intervall", "1m", "intervall", "unknown field"),
        ] {
            let text = format!("sources:\n  cloudwatch:\n    watchdog:\n      {field}: {value}\n");
            let (_dir, e) = single_error("sources.yaml", &text);
            assert_eq!(
                e.key,
                format!("sources.cloudwatch.watchdog.{key}"),
                "{text}: {e}"
            );
            assert!(e.message.contains(fragment), "{text}: {e}");
            assert_eq!(e.line, Some(4), "{text}: {e}");
            assert!(e.file.ends_with("sources.yaml"), "{e}");
        }
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
            (
                "rules.yaml",
                "'kind=\"exchange_error\"'",
                "'kind=~\"((a{50}){50}){50}\"'",
                "too large",
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

    /// Loads the base policy plus `extra.yaml` (or with `file` replaced) and returns the single
    /// error it must produce.
    fn single_error(file: &str, text: &str) -> (tempfile::TempDir, ConfigError) {
        let (dir, result) = load_with(&[(file, text)]);
        let mut errors = result.err().unwrap_or_else(|| panic!("loaded:\n{text}"));
        assert_eq!(errors.len(), 1, "{}", format_errors(&errors));
        (dir, errors.remove(0))
    }

    const EXTRA_OK: &str = r#"business_hours:
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

    #[test]
    fn the_new_sections_compile() {
        let (_dir, result) = load_with(&[("extra.yaml", EXTRA_OK)]);
        let p = result.unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        let cal = p.business_hours.as_ref().unwrap();
        assert_eq!(cal.timezone, chrono_tz::Asia::Singapore);
        assert_eq!(cal.holidays.len(), 2);
        assert_eq!(p.silences.len(), 1);
        assert_eq!(
            p.silences[0].start,
            "2026-11-27T18:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(p.silences[0].author, "mei");
        assert_eq!(p.inhibit_rules[0].equal, ["region"]);
        let hb = &p.heartbeats["trading-bot"];
        assert_eq!(hb.severity, Severity::Critical);
        assert_eq!(hb.summary, "No heartbeat from trading-bot for 1m 30s");
        assert_eq!(p.flap_cooldown, Some(Duration::from_secs(600)));
        // Without the sections: nothing silenced, no calendar, no flap handling.
        let (_dir, base) = load_with(&[]);
        let base = base.unwrap();
        assert!(base.business_hours.is_none() && base.silences.is_empty());
        assert!(base.heartbeats.is_empty() && base.flap_cooldown.is_none());
    }

    #[test]
    fn new_sections_report_file_line_key_and_reason() {
        let with_low_bh = POLICY.replace(
            "low: { respond_within: 4h, policy: calm }",
            "low: { respond_within: 4h, policy: calm, business_hours: true }",
        );
        let extra = |from: &str, to: &str| {
            assert!(EXTRA_OK.contains(from), "{from}");
            EXTRA_OK.replacen(from, to, 1)
        };
        let cases = [
            case(
                "business hours on critical",
                "policy.yaml",
                POLICY.replace(
                    "critical: { respond_within: 5m, policy: critical }",
                    "critical: { respond_within: 5m, policy: critical, business_hours: true }",
                ),
                "business_hours: true",
                "severities.critical.business_hours",
                "never applies to critical",
            ),
            case(
                "business hours without a calendar",
                "policy.yaml",
                with_low_bh.clone(),
                "business_hours: true",
                "severities.low.business_hours",
                "needs the top-level business_hours calendar",
            ),
            case(
                "silence without end",
                "extra.yaml",
                extra("    end: \"2026-11-28T04:00:00\"\n", ""),
                "- matchers: ['region",
                "silences[0]",
                "missing field `end`",
            ),
            case(
                "silence ending before it starts",
                "extra.yaml",
                extra("end: \"2026-11-28T04:00:00\"", "end: \"2026-11-28T02:00:00\""),
                "end: \"2026-11-28T02",
                "silences[0].end",
                "must be after start",
            ),
            case(
                "silence without matchers",
                "extra.yaml",
                extra(
                    "['region=\"ap-southeast-1\"', 'alarm_name=~\"rds-.*\"']",
                    "[]",
                ),
                "matchers: []",
                "silences[0].matchers",
                "silence of everything is refused",
            ),
            case(
                "silence with a bad matcher",
                "extra.yaml",
                extra("'alarm_name=~\"rds-.*\"'", "'alarm_name=~rds'"),
                "alarm_name=~rds",
                "silences[0].matchers[1]",
                "double quotes",
            ),
            case(
                "silence with a regex too large to compile",
                "extra.yaml",
                extra("'alarm_name=~\"rds-.*\"'", "'alarm_name=~\"((a{50}){50}){50}\"'"),
                "((a{50}",
                "silences[0].matchers[1]",
                "too large",
            ),
            case(
                "silence with too many matchers",
                "extra.yaml",
                extra(
                    "['region=\"ap-southeast-1\"', 'alarm_name=~\"rds-.*\"']",
                    &format!("['region=\"ap-southeast-1\"'{}]", ", 'a=\"b\"'".repeat(32)),
                ),
                "- matchers: ['region",
                "silences[0].matchers",
                "at most 32 matchers",
            ),
            case(
                "inhibit rule with a regex too large to compile",
                "extra.yaml",
                extra(
                    "target_matchers: ['kind=\"cloudwatch_alarm\"']",
                    "target_matchers: ['kind=~\"x{70000}\"']",
                ),
                "x{70000}",
                "inhibit_rules[0].target_matchers[0]",
                "too large",
            ),
            case(
                "unknown key in a silence",
                "extra.yaml",
                extra("    author: mei\n", "    author: mei\n    ends_at: tomorrow\n"),
                "ends_at",
                "silences[0].ends_at",
                "unknown field `ends_at`",
            ),
            case(
                "unknown key in business hours",
                "extra.yaml",
                extra("  holidays:", "  hollidays:"),
                "hollidays",
                "business_hours.hollidays",
                "unknown field `hollidays`",
            ),
            case(
                "closing before opening",
                "extra.yaml",
                extra("to: \"18:00\"", "to: \"08:00\""),
                "to: \"08:00\"",
                "business_hours.to",
                "must be after from",
            ),
            case(
                "a holiday that is not a date",
                "extra.yaml",
                extra("2026-12-25", "2026-12-32"),
                "2026-12-32",
                "business_hours.holidays[0]",
                "not a date",
            ),
            case(
                "a day that does not exist",
                "extra.yaml",
                extra("days: [mon,", "days: [mun,"),
                "days: [mun,",
                "business_hours.days[0]",
                "unknown variant `mun`",
            ),
            case(
                "inhibit rule with a bad equal label",
                "extra.yaml",
                extra("equal: [region]", "equal: [aws-region]"),
                "equal: [aws-region]",
                "inhibit_rules[0].equal[0]",
                "not a label name",
            ),
            case(
                "heartbeat with a zero interval",
                "extra.yaml",
                extra("interval: 1m", "interval: 0s"),
                "trading-bot:",
                "heartbeats.trading-bot.interval",
                "interval must be more than 0",
            ),
            case(
                "heartbeat with an unknown key",
                "extra.yaml",
                extra("grace: 30s", "grace: 30s, sevrity: low"),
                "trading-bot:",
                "heartbeats.trading-bot.sevrity",
                "unknown field `sevrity`",
            ),
            case(
                "flapping without a cooldown",
                "extra.yaml",
                extra("cooldown: 10m", "cooldown: 0s"),
                "cooldown: 0s",
                "flapping.cooldown",
                "more than 0",
            ),
            case(
                "group_window without group_by",
                "rules.yaml",
                RULES.replace(
                    "    severity: high\n",
                    "    severity: high\n    group_window: 5m\n",
                ),
                "group_window: 5m",
                "rules[0].group_window",
                "group_window needs group_by",
            ),
            case(
                "a zero ack_timeout",
                "policy.yaml",
                POLICY.replace("  calm:\n", "  calm:\n    ack_timeout: 0s\n"),
                "ack_timeout: 0s",
                "policies.calm.ack_timeout",
                "ack_timeout must be more than 0",
            ),
            case(
                "an override ending before it starts",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n    overrides:\n      - person: raj\n        start: \"2026-12-24T18:00:00\"\n        end: \"2026-12-24T09:00:00\"\n",
                ),
                "end: \"2026-12-24T09",
                "schedules.primary.overrides[0].end",
                "must be after start",
            ),
            case(
                "an override without end",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n    overrides:\n      - { person: raj, start: \"2026-12-24T18:00:00\" }\n",
                ),
                "- { person: raj",
                "schedules.primary.overrides[0]",
                "missing field `end`",
            ),
            case(
                "an unknown key in a layer",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    layers:\n      - name: weekly\n        members: [mei, raj]\n        every: 1w\n        start: \"2026-11-02T09:00:00\"\n        restirct: { days: [sat], from: \"09:00\", to: \"18:00\" }\n",
                ),
                "restirct",
                "schedules.primary.layers[0].restirct",
                "unknown field `restirct`",
            ),
            case(
                "rotation and layers together",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n    layers:\n      - { name: weekly, members: [mei], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                ),
                "layers:",
                "schedules.primary.layers",
                "either `rotation` (one layer) or `layers`",
            ),
            case(
                "a restriction time that is not HH:MM",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    layers:\n      - { name: weekly, members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n      - name: office\n        members: [cto]\n        every: 1w\n        start: \"2026-11-02T09:00:00\"\n        restrict:\n          days: [mon]\n          from: 9am\n          to: \"18:00\"\n",
                ),
                "from: 9am",
                "schedules.primary.layers[1].restrict.from",
                "not a time of day",
            ),
            case(
                "a critical schedule with a gap",
                "people.yaml",
                PEOPLE.replace(
                    "    rotation: { members: [mei, raj], every: 1w, start: \"2026-11-02T09:00:00\" }\n",
                    "    layers:\n      - name: office\n        members: [mei, raj]\n        every: 1w\n        start: \"2026-11-02T09:00:00\"\n        restrict: { days: [mon, tue, wed, thu, fri, sat, sun], from: \"08:00\", to: \"02:00\" }\n",
                ),
                "layers:",
                "schedules.primary.layers",
                "nobody is on call from mon 02:00 local time",
            ),
        ];
        for c in &cases {
            let (dir, e) = single_error(c.file, &c.text);
            assert_eq!(e.file, dir.path().join(c.file), "{}: {e}", c.what);
            assert_eq!(e.line, Some(line_with(&c.text, c.at)), "{}: {e}", c.what);
            assert_eq!(e.key, c.key, "{}: {e}", c.what);
            assert!(e.message.contains(c.message), "{}: {e}", c.what);
        }

        // The same calendar makes business hours on low valid.
        let (_dir, result) = load_with(&[("policy.yaml", &with_low_bh), ("extra.yaml", EXTRA_OK)]);
        let p = result.unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        assert!(p.severities[&Severity::Low].business_hours);
        assert!(!p.severities[&Severity::Critical].business_hours);
    }

    #[test]
    fn a_calendar_or_flapping_set_in_two_files_names_both() {
        let (dir, result) = load_with(&[
            ("extra.yaml", EXTRA_OK),
            (
                "zz.yaml",
                "# again\nbusiness_hours: { days: [sat], from: \"10:00\", to: \"12:00\" }\nflapping: { cooldown: 5m }\n",
            ),
        ]);
        let errors = result.unwrap_err();
        assert_eq!(errors.len(), 2, "{}", format_errors(&errors));
        for (e, key, line) in [
            (&errors[0], "business_hours", 2),
            (&errors[1], "flapping", 3),
        ] {
            assert_eq!(e.file, dir.path().join("zz.yaml"));
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)));
            let first = format!(
                "{}:{}",
                dir.path().join("extra.yaml").display(),
                line_with(EXTRA_OK, &format!("{key}:"))
            );
            assert!(e.message.contains(&first), "{e}");
        }
    }

    #[test]
    fn duplicate_silence_ids_are_refused() {
        let text = r#"silences:
  - id: s1
    matchers: ['a="b"']
    start: "2026-11-28T02:00:00"
    end: "2026-11-28T04:00:00"
    author: mei
    comment: first
  - id: s1
    matchers: ['a="c"']
    start: "2026-11-28T02:00:00"
    end: "2026-11-28T04:00:00"
    author: raj
    comment: second
"#;
        let (_dir, e) = single_error("extra.yaml", text);
        assert_eq!((e.key.as_str(), e.line), ("silences[1].id", Some(8)));
        assert!(e.message.contains(r#"duplicate silence id "s1""#), "{e}");
        assert!(e.message.contains("extra.yaml:2"), "{e}");
    }

    #[test]
    fn old_policy_snapshots_without_ack_timeout_still_read() {
        let old = r#"{"steps":[{"after":"0s","targets":[{"person":"mei"}],"via":["sms"]}],"repeat":0,"repeat_delay":null}"#;
        let p: EscalationPolicy = serde_json::from_str(old).unwrap();
        assert_eq!(p.ack_timeout, None);
        let mut with = p.clone();
        with.ack_timeout = Some(Duration::from_secs(1800));
        let json = serde_json::to_string(&with).unwrap();
        assert!(json.contains(r#""ack_timeout":"30m""#), "{json}");
        assert_eq!(
            serde_json::from_str::<EscalationPolicy>(&json).unwrap(),
            with
        );
    }

    #[test]
    fn the_shipped_policy_holds_low_for_business_hours_and_ships_the_new_sections() {
        let p = load_dir(&tests_support::shipped_routing_dir())
            .unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        let sg = |s: &str| {
            chrono::TimeZone::from_local_datetime(
                &chrono_tz::Asia::Singapore,
                &chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap(),
            )
            .unwrap()
            .with_timezone(&Utc)
        };
        // Friday 27 Nov 2026 19:00 → Monday 09:00 for low; critical and high at once.
        let friday = sg("2026-11-27 19:00");
        assert_eq!(p.notify_at(Severity::Low, friday), sg("2026-11-30 09:00"));
        assert_eq!(p.notify_at(Severity::Critical, friday), friday);
        assert_eq!(p.notify_at(Severity::High, friday), friday);
        // Christmas Eve evening → Monday 28 Dec (25th is a holiday, then the weekend).
        assert_eq!(
            p.notify_at(Severity::Low, sg("2026-12-24 18:00")),
            sg("2026-12-28 09:00")
        );
        assert!(!p.severities[&Severity::Critical].business_hours);
        assert_eq!(
            p.policies["critical"].ack_timeout,
            Some(Duration::from_secs(1800))
        );
        let bot = &p.heartbeats["trading-bot"];
        assert_eq!(
            (bot.interval, bot.grace, bot.severity),
            (
                Duration::from_secs(60),
                Duration::from_secs(30),
                Severity::Critical
            )
        );
        assert_eq!(
            bot.deadline(friday),
            friday + chrono::TimeDelta::seconds(90)
        );
        assert_eq!(p.flap_cooldown, Some(Duration::from_secs(600)));
        assert!(p.reopens_after_flap(friday, friday + chrono::TimeDelta::minutes(9)));
        assert!(!p.reopens_after_flap(friday, friday + chrono::TimeDelta::minutes(10)));
        assert!(!p.reopens_after_flap(friday, friday - chrono::TimeDelta::minutes(1)));
        assert_eq!(p.inhibit_rules.len(), 1);
        assert!(p.silences.is_empty());
    }

    #[test]
    fn policy_silences_and_api_silences_are_both_consulted() {
        let (_dir, result) = load_with(&[("extra.yaml", EXTRA_OK)]);
        let p = result.unwrap();
        let rds: crate::domain::Labels = [
            ("region".to_string(), "ap-southeast-1".to_string()),
            ("alarm_name".to_string(), "rds-cpu".to_string()),
        ]
        .into();
        let during = "2026-11-27T19:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let after = "2026-11-27T20:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            p.silenced_by(&rds, during, &[]).map(|s| s.comment.as_str()),
            Some("RDS upgrade, CHG-1234")
        );
        assert!(p.silenced_by(&rds, after, &[]).is_none());
        let api = Silence::parse_api(SilenceSpec {
            id: Some("api-1".into()),
            matchers: vec![r#"alarm_name="rds-cpu""#.into()],
            start: after,
            end: after + chrono::TimeDelta::hours(1),
            author: "raj".into(),
            comment: "failover test".into(),
        })
        .unwrap();
        let extra = [api];
        assert_eq!(
            p.silenced_by(&rds, after, &extra).map(|s| s.id.as_str()),
            Some("api-1")
        );
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

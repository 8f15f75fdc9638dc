//! The routing policy as written in `routing/*.yaml`: the **parse** phase of a (re)load.
//!
//! In: the text of one YAML file. Out: a [`RoutingFile`], every field still as the operator wrote
//! it (names are not resolved yet; `compile` does that for the whole directory at once).
//!
//! Every struct rejects unknown keys (a typo such as `repaet:` or a pasted `token:` must fail the
//! load, not be silently ignored), durations are humantime strings (`5m`, `1h 30m`), and phone
//! numbers and email addresses deserialize straight into the domain types, so a bad number fails
//! here with the line it is on. Each file may hold any subset of the top-level keys; how the files
//! of a directory are combined is described in [`crate::config`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{EmailAddress, PhoneNumber, Severity};

/// One YAML file of the routing directory. Every key is optional: the directory as a whole must
/// define everything, not each file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingFile {
    /// IANA time zone (chrono-tz name, e.g. `Asia/Singapore`) in which rotation hand-offs are
    /// written. At most one file may set it; `UTC` when none does.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Per-source settings (today: which SNS topics may be auto-confirmed). At most one file.
    #[serde(default)]
    pub sources: Option<SourcesConfig>,
    /// The escalation matrix: one row per severity; all four are required across the directory.
    #[serde(default)]
    pub severities: Option<BTreeMap<Severity, SeverityConfig>>,
    /// Everyone who can be paged, by id (the id is what schedules and steps refer to).
    #[serde(default)]
    pub people: Option<BTreeMap<String, PersonConfig>>,
    /// On-call rotations, by name, that resolve to one person at a given instant.
    #[serde(default)]
    pub schedules: Option<BTreeMap<String, ScheduleConfig>>,
    /// Named notification destinations that policy steps send `via`.
    #[serde(default)]
    pub channels: Option<BTreeMap<String, ChannelConfig>>,
    /// Escalation policies, by name: who is told, how, and after how long.
    #[serde(default)]
    pub policies: Option<BTreeMap<String, PolicyConfig>>,
    /// Classification rules, evaluated top to bottom, first match wins. Rules of several files
    /// are concatenated in file-name order.
    #[serde(default)]
    pub rules: Option<Vec<RuleConfig>>,
    /// The desk's working week, in the policy's `timezone`: severities marked
    /// `business_hours: true` are held until it next opens. At most one file.
    #[serde(default)]
    pub business_hours: Option<BusinessHoursConfig>,
    /// Maintenance windows: alerts matching a silence while it is active open no page. Silences
    /// of several files are concatenated.
    #[serde(default)]
    pub silences: Option<Vec<SilenceConfig>>,
    /// Drill windows: incidents that open inside one, matching all its matchers, are drills
    /// (they page normally, every message says DRILL, the response report keeps them apart).
    /// Written like silences; concatenated across files.
    #[serde(default)]
    pub drills: Option<Vec<SilenceConfig>>,
    /// While an incident matching a rule's source side is open, alerts matching its target side
    /// (with equal values for the `equal` labels) attach to it without paging. Concatenated
    /// across files.
    #[serde(default)]
    pub inhibit_rules: Option<Vec<InhibitRuleConfig>>,
    /// Dead-man switches, by name: a sender that stops beating opens an incident.
    #[serde(default)]
    pub heartbeats: Option<BTreeMap<String, HeartbeatConfig>>,
    /// How an alarm that fires again shortly after its incident resolved is treated. At most one
    /// file.
    #[serde(default)]
    pub flapping: Option<FlappingConfig>,
    /// Channels told when an escalation step reached no one (every delivery it made failed for
    /// good, or it found nobody to page): e.g. the log and a webhook to another system. At most
    /// one file.
    #[serde(default)]
    pub last_resort: Option<Vec<String>>,
    /// Alert storms: how many new incidents one source may open per minute before further new
    /// alerts from it fold into one storm incident. At most one file.
    #[serde(default)]
    pub storm: Option<StormConfig>,
}

/// Settings for the ingest sources.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// Amazon SNS HTTP(S) subscriptions.
    #[serde(default)]
    pub sns: Option<SnsSourceConfig>,
    /// Amazon CloudWatch: what vigil itself reads and writes there.
    #[serde(default)]
    pub cloudwatch: Option<CloudWatchSourceConfig>,
}

/// `sources.cloudwatch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchSourceConfig {
    /// Read every alarm's state (`DescribeAlarms`) at start-up, after a store outage and every
    /// interval, and act on the transitions vigil never received.
    #[serde(default)]
    pub reconcile: Option<ReconcileConfig>,
    /// The heartbeat metric vigil publishes while it is ready, for an alarm outside vigil.
    #[serde(default)]
    pub watchdog: Option<WatchdogConfig>,
}

/// `sources.cloudwatch.reconcile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// The regions whose alarms are read (Route 53 health-check alarms live in us-east-1).
    pub regions: Vec<String>,
    /// How often a pass runs. Default 1m.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

/// The heartbeat metric (`PutMetricData`, Value 1, Unit Count) vigil publishes every `interval`
/// while it is ready. Every key is optional; the defaults are those of
/// `deploy/aws/watchdog.yaml`'s alarm.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Region the metric is published to, where the alarm lives (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Metric namespace (default `Vigil`): 1-255 characters, not starting with `:` or `AWS/`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Metric name (default `Heartbeat`): 1-255 characters.
    #[serde(default)]
    pub metric: Option<String>,
    /// Metric dimensions (default `{Service: vigil}`): at most 30; names 1-255 characters,
    /// values 1-1024.
    #[serde(default)]
    pub dimensions: Option<BTreeMap<String, String>>,
    /// How often (default 1m): from 10s to 1m, the shipped alarm's period.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

/// Settings for the SNS endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsSourceConfig {
    /// Topic ARNs whose `SubscriptionConfirmation` vigil confirms by itself. A confirmation from
    /// any other topic is logged and ignored, so nobody can subscribe vigil to their own topic.
    pub allowed_topics: Vec<String>,
    /// A Notification whose signed `Timestamp` is older than this is a replay (SNS stops
    /// retrying a delivery within an hour): recorded, nobody paged. Default 1h.
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// SQS queue URLs of the subscriptions' redrive policies: what SNS could not deliver.
    /// vigil drains them at start-up and continuously.
    #[serde(default)]
    pub dead_letter_queues: Vec<String>,
}

/// One row of the escalation matrix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    /// How soon someone must acknowledge an incident of this severity (the desk's promise; shown
    /// to responders and used for reporting).
    #[serde(with = "humantime_serde")]
    pub respond_within: Duration,
    /// The escalation policy incidents of this severity follow unless their rule names another.
    pub policy: String,
    /// Hold notifications for incidents of this severity until the top-level `business_hours`
    /// calendar next opens (then notify). Never allowed on `critical`.
    #[serde(default)]
    pub business_hours: bool,
}

/// A person who can be paged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonConfig {
    /// Full name, for messages and the timeline.
    pub name: String,
    /// Mobile number in E.164 (`+6591234567`), for `sms` and `phone` channels.
    #[serde(default, deserialize_with = "checked::option")]
    pub phone: Option<PhoneNumber>,
    /// Address for `email` channels that mail each target person.
    #[serde(default, deserialize_with = "checked::option")]
    pub email: Option<EmailAddress>,
    /// Slack member id (`U07QK3M2ZLP`), to mention the person in channel messages.
    #[serde(default)]
    pub slack: Option<String>,
}

/// An on-call schedule: exactly one of `rotation` (a single layer) or `layers`, plus optional
/// `overrides`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Shorthand for a schedule with one unrestricted layer (named `rotation`).
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
    /// Layers, lowest first. At an instant the highest layer (the last listed) whose restriction
    /// covers it decides who is on call, as in PagerDuty.
    #[serde(default)]
    pub layers: Option<Vec<LayerConfig>>,
    /// Planned swaps ("Raj covers Mei's Christmas"): they win over every layer while they last.
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

/// A simple rotation: `members` take turns, each for `every`, starting at `start`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Person ids in hand-off order; the first is on call from `start`.
    pub members: Vec<String>,
    /// Length of one shift (`1w`, `1d`, `12h`, `3d`: any length).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// The first hand-off: a local date-time in the policy's `timezone`
    /// (`2026-11-02T09:00:00`) or an RFC 3339 instant with an offset. When `every` is a whole
    /// number of days, later hand-offs happen at the same local wall-clock time (09:00 stays
    /// 09:00 across a daylight-saving change); otherwise every `every` of elapsed time.
    pub start: String,
}

/// One layer of a schedule: a rotation, optionally restricted to part of the week.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerConfig {
    /// Unique within the schedule; shown by `GET /v1/oncall` as what decided.
    pub name: String,
    /// Person ids in hand-off order; the first is on call from `start`.
    pub members: Vec<String>,
    /// Length of one shift (see [`RotationConfig::every`]).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// The first hand-off (see [`RotationConfig::start`]).
    pub start: String,
    /// When set, the layer only counts inside this weekly window; outside it the layers below
    /// decide.
    #[serde(default)]
    pub restrict: Option<RestrictConfig>,
}

/// A weekly window in the policy's time zone, e.g. weekdays 09:00–18:00. When `to` is not after
/// `from` the window runs overnight into the next day (`from: "22:00"`, `to: "06:00"`), and
/// `days` are the days it starts on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictConfig {
    /// Days the window starts on: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    pub days: Vec<DayConfig>,
    /// Local start time, `HH:MM`.
    pub from: String,
    /// Local end time, `HH:MM` (exclusive).
    pub to: String,
}

/// A day of the week as written in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayConfig {
    /// Monday.
    #[serde(alias = "monday")]
    Mon,
    /// Tuesday.
    #[serde(alias = "tuesday")]
    Tue,
    /// Wednesday.
    #[serde(alias = "wednesday")]
    Wed,
    /// Thursday.
    #[serde(alias = "thursday")]
    Thu,
    /// Friday.
    #[serde(alias = "friday")]
    Fri,
    /// Saturday.
    #[serde(alias = "saturday")]
    Sat,
    /// Sunday.
    #[serde(alias = "sunday")]
    Sun,
}

impl DayConfig {
    /// The chrono weekday.
    pub fn weekday(self) -> chrono::Weekday {
        use chrono::Weekday as W;
        match self {
            Self::Mon => W::Mon,
            Self::Tue => W::Tue,
            Self::Wed => W::Wed,
            Self::Thu => W::Thu,
            Self::Fri => W::Fri,
            Self::Sat => W::Sat,
            Self::Sun => W::Sun,
        }
    }
}

/// A planned override: `person` is on call on this schedule from `start` until `end`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    /// Person id.
    pub person: String,
    /// Local date-time in the policy's zone, or RFC 3339 with an offset.
    pub start: String,
    /// Required, after `start` (an open-ended override would silently outlive its reason).
    pub end: String,
}

/// The business-hours calendar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHoursConfig {
    /// Working days: `mon` .. `sun`.
    pub days: Vec<DayConfig>,
    /// Local opening time, `HH:MM`.
    pub from: String,
    /// Local closing time, `HH:MM` (exclusive), after `from`.
    pub to: String,
    /// Local dates (`2026-12-25`) on which the desk is closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// A silence (maintenance window) written in the policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Stable id (shown on the timeline of silenced alerts); derived from the content when
    /// absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Alertmanager matchers, all of which must hold; at least one, and not all of them may
    /// match an alert with no labels (a silence of everything is refused).
    pub matchers: Vec<String>,
    /// Local date-time in the policy's zone, or RFC 3339 with an offset.
    pub start: String,
    /// Required, after `start`.
    pub end: String,
    /// Who asked for the silence.
    pub author: String,
    /// Why (the change ticket, the maintenance).
    pub comment: String,
}

/// An inhibition rule (Alertmanager semantics).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers the open (inhibiting) incident's labels must satisfy; at least one.
    pub source_matchers: Vec<String>,
    /// Matchers the inhibited alert's labels must satisfy; at least one.
    pub target_matchers: Vec<String>,
    /// Labels that must have the same value on both sides (missing on both counts as equal).
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A heartbeat (dead-man switch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// How often the sender beats.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Extra time allowed after a missed beat before an incident opens.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// Severity of the incident a missed heartbeat opens.
    pub severity: Severity,
    /// One line for the pager; a default naming the heartbeat when absent.
    #[serde(default)]
    pub summary: Option<String>,
    /// Extra labels on the incident (rules and inhibition see them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Flap handling.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlappingConfig {
    /// An alarm that fires again within this long after its incident resolved reopens that
    /// incident instead of paging afresh.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
}

/// The storm bound: `max_new_per_minute` for every source, `sources` for some of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StormConfig {
    /// New incidents one source may open within a minute before further new alerts from it are
    /// grouped into its storm incident (default 100).
    #[serde(default)]
    pub max_new_per_minute: Option<u32>,
    /// Per-source bounds by source name (`sns`, `eventbridge`, `bot`), overriding
    /// `max_new_per_minute`.
    #[serde(default)]
    pub sources: BTreeMap<String, u32>,
}

/// A named destination: `type` plus the keys that type takes. Secrets are never written here,
/// only the name of the environment variable that holds them. Which keys a type takes, and the
/// form of each, is the type's descriptor ([`super::channel::ChannelType`], submitted by its file
/// in `notify/`); `compile` checks them, by line.
///
/// | type        | keys                                              |
/// |-------------|---------------------------------------------------|
/// | `pagerduty` | `routing_key_env`                                 |
/// | `sms`       | (none) — to each target person's phone            |
/// | `phone`     | (none) — a voice call to each target person       |
/// | `email`     | optional `to`; without it, each target person     |
/// | `slack`     | `channel`, `token_env`                            |
/// | `webhook`   | `url`, optional `token_env`                       |
/// | `log`       | (none)                                            |
// A map read by hand rather than a struct with one field per key: the keys belong to the channel
// types, which plug in without touching this file. Not `#[serde(tag = "type")]` on an enum either:
// serde buffers an internally tagged enum before choosing the variant, so yaml_serde loses every
// position inside it. An unknown type and a key no type takes are refused here, at their line,
// with serde's own messages; `compile` checks the keys against the channel's own type.
#[derive(Debug)]
pub struct ChannelConfig {
    /// What kind of channel this is: a registered channel type's name.
    pub kind: String,
    /// Every other key as written, checked by `compile` against the type's keys.
    pub keys: BTreeMap<String, yaml_serde::Value>,
}

impl<'de> Deserialize<'de> for ChannelConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ChannelConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a channel: `type` and the keys that type takes")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ChannelConfig, A::Error> {
                let types = super::channel::channel_types();
                let mut kind = None;
                let mut keys = BTreeMap::new();
                while let Some(key) = map.next_key_seed(OneOf::Field(types.fields()))? {
                    if key == "type" {
                        if kind.is_some() {
                            return Err(serde::de::Error::duplicate_field("type"));
                        }
                        kind = Some(map.next_value_seed(OneOf::Variant(types.names()))?);
                    } else {
                        let value = map.next_value::<yaml_serde::Value>()?;
                        if keys.insert(key.clone(), value).is_some() {
                            return Err(serde::de::Error::custom(format!(
                                "duplicate field `{key}`"
                            )));
                        }
                    }
                }
                let kind = kind.ok_or_else(|| serde::de::Error::missing_field("type"))?;
                Ok(ChannelConfig { kind, keys })
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// A string that must be one of a list: a channel's key (`unknown field`) or its type (`unknown
/// variant`). Checked while the string itself is read, so the error carries its line.
#[derive(Clone, Copy)]
enum OneOf {
    Field(&'static [&'static str]),
    Variant(&'static [&'static str]),
}

impl<'de> serde::de::DeserializeSeed<'de> for OneOf {
    type Value = String;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for OneOf {
    type Value = String;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        match self {
            Self::Field(all) if !all.contains(&v) => Err(E::unknown_field(v, all)),
            Self::Variant(all) if !all.contains(&v) => Err(E::unknown_variant(v, all)),
            _ => Ok(v.to_string()),
        }
    }
}

/// An escalation policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Steps in firing order; each fires `after` its delay from the trigger unless the incident
    /// was acknowledged or resolved first.
    pub steps: Vec<StepConfig>,
    /// How many more times the whole chain runs after the first pass (0 = once).
    #[serde(default)]
    pub repeat: u32,
    /// Gap between the last step of one pass and the first step of the next; required when
    /// `repeat` > 0.
    #[serde(default, with = "humantime_serde")]
    pub repeat_delay: Option<Duration>,
    /// An acknowledged incident that is not resolved this long after the acknowledgement is
    /// triggered again (the acknowledger forgot it). Optional; more than 0.
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
}

/// One escalation step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Delay from the trigger (not from the previous step). Must not decrease along the steps.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// Who is notified: `{ schedule: name }` (whoever is on call when the step fires) or
    /// `{ person: id }`.
    pub targets: Vec<TargetConfig>,
    /// Channel names to notify through, all at once.
    pub via: Vec<String>,
}

/// A step target: exactly one of the two keys.
// A struct rather than an enum: yaml_serde reads enums only from YAML tags (`!schedule primary`),
// and `{ schedule: primary }` is what operators write.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A schedule name: the person on call when the step fires.
    #[serde(default)]
    pub schedule: Option<String>,
    /// A person id.
    #[serde(default)]
    pub person: Option<String>,
}

/// A classification rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name; shown in `vigil simulate` and on the timeline, and the fingerprint prefix
    /// when `group_by` is set.
    pub name: String,
    /// Alertmanager-style label matchers, all of which must hold (`kind="exchange_error"`,
    /// `error=~"timeout|http_5xx"`). An empty list matches every alert (the catch-all).
    pub matchers: Vec<String>,
    /// Severity given to matching alerts (an alert's own severity override still wins).
    pub severity: Severity,
    /// Escalation policy; defaults to the one the severity uses.
    #[serde(default)]
    pub policy: Option<String>,
    /// Extra labels added to matching alerts (they replace alert labels of the same name).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When set, matching alerts are deduplicated by the rule name and these label values
    /// instead of by the alert's own fingerprint (e.g. one incident per `alarm_name`).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// With `group_by`: how long alerts of one group (same rule and `group_by` values) are
    /// collected into one incident and notification after the group's first alert.
    #[serde(default, with = "humantime_serde")]
    pub group_window: Option<Duration>,
}

/// Reads an optional domain type (`PhoneNumber`, `EmailAddress`) from a YAML string through its
/// `TryFrom<String>`, converting *inside* the string visitor.
// Why not `#[serde(try_from = "String")]` on the field's type alone: serde converts after the
// scalar has been read, so yaml_serde attributes the error to the enclosing map (`people.raj`,
// its first line) instead of the key that is wrong (`people.raj.phone`, its own line).
mod checked {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::Deserializer;
    use serde::de::{self, Visitor};

    pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<String>,
        T::Error: fmt::Display,
    {
        d.deserialize_option(OptionVisitor(PhantomData))
    }

    struct OptionVisitor<T>(PhantomData<T>);

    impl<'de, T> Visitor<'de> for OptionVisitor<T>
    where
        T: TryFrom<String>,
        T::Error: fmt::Display,
    {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            T::try_from(s.to_string()).map(Some).map_err(E::custom)
        }
    }
}

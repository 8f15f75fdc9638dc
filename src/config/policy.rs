//! The compiled policy: what [`compile`](super::compile) builds and every stage reads. Immutable
//! once built; [`Policy`] is shared behind an `Arc` and replaced whole on reload.
//!
//! Owns the model (people, schedules, channels, escalation policies, rules, the storm bound,
//! reconciliation) and the questions answered from it alone: when a severity notifies (business
//! hours), whether a silence or an inhibition rule applies, whether a re-firing is a flap, which
//! rule matches. Who is on call is answered in `crate::oncall`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calendar::{Calendar, WeeklyWindow};
pub use super::channel::ChannelSpec;
use super::heartbeat::Heartbeat;
use super::matcher::Matcher;
use super::suppress::{InhibitRule, Silence};
use super::watchdog::WatchdogSpec;
use crate::domain::{EmailAddress, Labels, PhoneNumber, Severity};

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
    /// Drill windows written in `routing/` (`drills:`; API-made ones are stored and passed in by
    /// the caller). A window has the shape and checks of a silence; an incident that opens inside
    /// one is a drill.
    pub drills: Vec<Silence>,
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

    /// The first drill window, of the policy's own and then `extra` (the API-made ones), that an
    /// incident with `labels` opening at `at` falls in.
    pub fn drill_for<'a>(
        &'a self,
        labels: &crate::domain::Labels,
        at: DateTime<Utc>,
        extra: impl IntoIterator<Item = &'a Silence>,
    ) -> Option<&'a Silence> {
        self.drills
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

/// A classification rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Unique rule name.
    pub name: String,
    /// All must match; empty = catch-all.
    pub matchers: Vec<Matcher>,
    /// Severity for matching alerts.
    pub severity: Severity,
    /// Explicit policy, else the severity's.
    pub policy: Option<String>,
    /// Labels added to matching alerts.
    pub labels: Labels,
    /// Labels whose values (with the rule name) form the fingerprint, when non-empty.
    pub group_by: Vec<String>,
    /// How long alerts of one group are collected together; only with `group_by`.
    pub group_window: Option<Duration>,
}

impl CompiledRule {
    /// Whether every matcher holds for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests_support::*;
    use crate::config::{SilenceSpec, format_errors, load_dir};

    #[test]
    fn policies_can_be_shared_across_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Policy>();
        shareable::<EscalationPolicy>();
    }

    #[test]
    fn escalation_policies_round_trip_through_json() {
        let dir = shipped_routing_dir();
        let p = load_dir(&dir).unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        let mut policy = p.policies["critical"].clone();
        policy.repeat = 2;
        policy.repeat_delay = Some(Duration::from_secs(600));
        let json = serde_json::to_string(&policy).unwrap();
        assert!(json.contains(r#""after":"5m""#), "{json}");
        let back: EscalationPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, policy);
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
    fn the_shipped_policy_holds_low_until_business_hours_and_reopens_flaps_within_the_cool_down() {
        let p =
            load_dir(&shipped_routing_dir()).unwrap_or_else(|e| panic!("{}", format_errors(&e)));
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
        let p = extra_ok_policy();
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
}

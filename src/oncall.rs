//! **on-call resolution**: who a step's targets are at a given instant. Pure; `at` is passed in.
//!
//! In: the compiled [`Policy`], a schedule name or a step's [`Target`]s, an instant, and the
//! overrides made through the API (the caller stores them). Out: the [`Person`]s to notify, and
//! for `GET /v1/oncall` what decided. The escalation stage calls this when a step fires (not
//! when the incident opens), so a hand-off between trigger and escalation pages whoever is on
//! call by then.
//!
//! Precedence at an instant, PagerDuty-style:
//! 1. **overrides** covering it (from `routing/` and the API together): the one that starts
//!    latest wins; on equal starts an API override beats a routing one, and a later-listed API
//!    override beats an earlier one (the caller passes them oldest first). An override naming a
//!    person the policy no longer has (removed by a reload) is skipped, so the layers still
//!    page someone;
//! 2. otherwise the **highest layer** (last listed) whose restriction covers the instant;
//! 3. otherwise nobody (possible only for schedules no critical step uses; see `compile`).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::config::calendar::local_to_utc;
use crate::config::{Layer, Override, Person, Policy, Rotation, Schedule, Target};

const DAY_NANOS: u128 = 86_400 * 1_000_000_000;

/// Nanoseconds since the epoch, in i128 so that chrono's whole range (±262,000 years) fits.
fn nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

impl Rotation {
    /// Whether shifts are counted in local days (`every` is a whole number of days), so that
    /// hand-offs keep their wall-clock time across daylight-saving changes.
    pub fn hands_off_by_wall_clock(&self) -> bool {
        let every = self.every.as_nanos();
        every > 0 && every.is_multiple_of(DAY_NANOS)
    }

    /// The instant shift `k` begins (shift 0 at `start`, negative before it). `None` past
    /// chrono's range.
    pub fn handoff(&self, k: i64) -> Option<DateTime<Utc>> {
        if self.hands_off_by_wall_clock() {
            let days = i64::try_from(self.every.as_nanos() / DAY_NANOS).ok()?;
            let local = self
                .start_local()
                .checked_add_signed(TimeDelta::try_days(days.checked_mul(k)?)?)?;
            Some(local_to_utc(self.timezone, local))
        } else {
            let offset = i128::try_from(self.every.as_nanos()).ok()? * i128::from(k);
            let step = TimeDelta::new(
                i64::try_from(offset.div_euclid(1_000_000_000)).ok()?,
                u32::try_from(offset.rem_euclid(1_000_000_000)).ok()?,
            )?;
            self.start.checked_add_signed(step)
        }
    }

    fn start_local(&self) -> NaiveDateTime {
        self.start.with_timezone(&self.timezone).naive_local()
    }

    /// The number of the shift running at `at`: shift `k` runs from `handoff(k)` (inclusive) to
    /// `handoff(k + 1)` (exclusive). Before `start` the count goes negative, so the answer is
    /// defined for every instant. `None` only for a zero-length rotation, which a compiled
    /// policy never has, or an instant at the edge of chrono's range.
    pub fn shift_at(&self, at: DateTime<Utc>) -> Option<i64> {
        let every = i128::try_from(self.every.as_nanos())
            .ok()
            .filter(|&e| e > 0)?;
        if !self.hands_off_by_wall_clock() {
            let shift = (nanos(at) - nanos(self.start)).div_euclid(every);
            return i64::try_from(shift).ok();
        }
        // Estimate on local wall-clock time (exact except within an hour of a DST change),
        // then step to the shift whose hand-off instants bracket `at`.
        let local =
            |t: DateTime<Utc>| nanos(t.with_timezone(&self.timezone).naive_local().and_utc());
        let mut k = i64::try_from((local(at) - local(self.start)).div_euclid(every)).ok()?;
        for _ in 0..4 {
            if self.handoff(k)? > at {
                k -= 1;
            } else if self.handoff(k + 1)? <= at {
                k += 1;
            } else {
                break;
            }
        }
        Some(k)
    }

    /// Index into `members` of who is on call at `at`: `shift_at(at) mod n`.
    pub fn index_at(&self, at: DateTime<Utc>) -> Option<usize> {
        let n = i64::try_from(self.members.len()).ok().filter(|&n| n > 0)?;
        usize::try_from(self.shift_at(at)?.rem_euclid(n)).ok()
    }

    /// The id of the member on call at `at`.
    pub fn member_at(&self, at: DateTime<Utc>) -> Option<&str> {
        self.members.get(self.index_at(at)?).map(String::as_str)
    }

    /// When the shift running at `at` ends (the next hand-off).
    pub fn next_handoff(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.handoff(self.shift_at(at)?.checked_add(1)?)
    }
}

impl Layer {
    /// Whether the layer applies at `at` (always, without a restriction).
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.restrict
            .is_none_or(|w| w.covers_local(at.with_timezone(&self.rotation.timezone).naive_local()))
    }
}

/// What put someone on call, for `GET /v1/oncall` and the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// A layer of the schedule, by name (`rotation` for a `rotation:` schedule).
    Layer(String),
    /// An override written in `routing/`.
    RoutingOverride(Override),
    /// An override made through the API.
    ApiOverride(Override),
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layer(name) => write!(f, "layer {name}"),
            Self::RoutingOverride(o) => write!(f, "routing override until {}", o.end),
            Self::ApiOverride(o) => match &o.author {
                Some(a) => write!(f, "override by {a} until {}", o.end),
                None => write!(f, "override until {}", o.end),
            },
        }
    }
}

/// One row of `GET /v1/oncall`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnCallEntry {
    /// Schedule name.
    pub schedule: String,
    /// Person id on call, if anyone is.
    pub person: Option<String>,
    /// What decided; `None` when nobody is on call.
    pub decided_by: Option<DecidedBy>,
}

impl Schedule {
    /// Who is on call at `at` and why. `extra` are API overrides (those for other schedules are
    /// ignored); `known` says whether a person id still exists.
    pub fn decide(
        &self,
        at: DateTime<Utc>,
        extra: &[Override],
        known: impl Fn(&str) -> bool,
    ) -> Option<(String, DecidedBy)> {
        let routing = self.overrides.iter().map(|o| (o, false));
        let api = extra
            .iter()
            .filter(|o| o.schedule == self.id)
            .map(|o| (o, true));
        // `max_by_key` keeps the last of equal keys: API after routing, later API after earlier.
        let winner = routing
            .chain(api)
            .filter(|(o, _)| o.covers(at) && known(&o.person))
            .max_by_key(|(o, is_api)| (o.start, *is_api));
        if let Some((o, is_api)) = winner {
            let why = if is_api {
                DecidedBy::ApiOverride(o.clone())
            } else {
                DecidedBy::RoutingOverride(o.clone())
            };
            return Some((o.person.clone(), why));
        }
        let layer = self.layers.iter().rev().find(|l| l.covers(at))?;
        let id = layer.rotation.member_at(at)?;
        Some((id.to_string(), DecidedBy::Layer(layer.name.clone())))
    }
}

impl Policy {
    /// The person on call on `schedule` at `at`, with no API overrides; `None` for an unknown
    /// schedule or when nobody is.
    pub fn on_call(&self, schedule: &str, at: DateTime<Utc>) -> Option<&Person> {
        self.on_call_at(schedule, at, &[])
    }

    /// The person on call on `schedule` at `at`, taking the API-made overrides `extra` into
    /// account (see the module doc for precedence).
    pub fn on_call_at(
        &self,
        schedule: &str,
        at: DateTime<Utc>,
        extra: &[Override],
    ) -> Option<&Person> {
        let (id, _) = self.decide(schedule, at, extra)?;
        self.people.get(&id)
    }

    /// Who is on call on `schedule` at `at` and what decided it.
    pub fn decide(
        &self,
        schedule: &str,
        at: DateTime<Utc>,
        extra: &[Override],
    ) -> Option<(String, DecidedBy)> {
        self.schedules
            .get(schedule)?
            .decide(at, extra, |id| self.people.contains_key(id))
    }

    /// Every schedule, by name, with who is on call at `at` and why (for `GET /v1/oncall`).
    pub fn schedule_report(&self, at: DateTime<Utc>, extra: &[Override]) -> Vec<OnCallEntry> {
        self.schedules
            .keys()
            .map(|name| {
                let decided = self.decide(name, at, extra);
                OnCallEntry {
                    schedule: name.clone(),
                    person: decided.as_ref().map(|(id, _)| id.clone()),
                    decided_by: decided.map(|(_, why)| why),
                }
            })
            .collect()
    }

    /// The people `targets` resolve to at `at`, in target order, each once (the on-call engineer
    /// who is also named directly is paged once). Unknown names are skipped; a compiled policy has
    /// none. Same as [`Self::resolve_targets_with`] without API overrides.
    pub fn resolve_targets(&self, targets: &[Target], at: DateTime<Utc>) -> Vec<&Person> {
        self.resolve_targets_with(targets, at, &[])
    }

    /// [`Self::resolve_targets`] with the API-made overrides `extra`.
    pub fn resolve_targets_with(
        &self,
        targets: &[Target],
        at: DateTime<Utc>,
        extra: &[Override],
    ) -> Vec<&Person> {
        let mut out: Vec<&Person> = Vec::with_capacity(targets.len());
        for t in targets {
            let person = match t {
                Target::Schedule(s) => self.on_call_at(s, at, extra),
                Target::Person(p) => self.people.get(p),
            };
            if let Some(person) = person
                && !out.iter().any(|p| p.id == person.id)
            {
                out.push(person);
            }
        }
        out
    }

    /// Checks an override made through the API before it is stored: the schedule and person
    /// exist, it ends after it starts, and the person has the contact details every step that
    /// pages this schedule needs (a phone for `sms`/`phone`, an email for per-person `email`).
    /// The message is for a 400 response.
    pub fn check_override(&self, o: &Override) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.schedules.contains_key(&o.schedule) {
            problems.push(format!("unknown schedule {:?}", o.schedule));
        }
        match self.people.get(&o.person) {
            None => problems.push(format!("unknown person {:?}", o.person)),
            Some(person) => {
                let target = Target::Schedule(o.schedule.clone());
                let vias = self
                    .policies
                    .values()
                    .flat_map(|p| &p.steps)
                    .filter(|s| s.targets.contains(&target))
                    .flat_map(|s| &s.via);
                let mut missing: Vec<String> = Vec::new();
                for via in vias {
                    use crate::config::Contact;
                    let need = match self.channels.get(via).and_then(|c| c.contact()) {
                        Some(Contact::Phone) if person.phone.is_none() => Contact::Phone,
                        Some(Contact::Email) if person.email.is_none() => Contact::Email,
                        _ => continue,
                    }
                    .describe();
                    let line = format!("{need} (for channel {via:?})");
                    if !missing.contains(&line) {
                        missing.push(line);
                    }
                }
                if !missing.is_empty() {
                    problems.push(format!(
                        "{:?} cannot be paged on {:?}: needs {}",
                        o.person,
                        o.schedule,
                        missing.join(", ")
                    ));
                }
            }
        }
        if o.end <= o.start {
            problems.push(format!("end ({}) must be after start ({})", o.end, o.start));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_dir;
    use chrono::{Duration, TimeZone};

    fn policy() -> (tempfile::TempDir, Policy) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.yaml"),
            r##"
timezone: Asia/Singapore
people:
  mei: { name: Mei Tan, email: mei@example.com }
  raj: { name: Raj Kumar, email: raj@example.com }
  ana: { name: Ana Lim, email: ana@example.com }
  boss: { name: The Boss, email: boss@example.com }
schedules:
  primary:
    rotation: { members: [mei, raj, ana], every: 1w, start: "2026-11-02T09:00:00" }
  daily:
    rotation: { members: [raj, mei], every: 1d, start: "2026-11-02T09:00:00Z" }
  local-daily:
    rotation: { members: [mei, raj, ana], every: 1d, start: "2026-11-02T09:00:00" }
  desk:
    layers:
      - { name: weekly, members: [mei, raj], every: 1w, start: "2026-11-02T09:00:00" }
      - name: office
        members: [boss]
        every: 1w
        start: "2026-11-02T09:00:00"
        restrict: { days: [mon, tue, wed, thu, fri], from: "09:00", to: "18:00" }
    overrides:
      - { person: ana, start: "2026-12-24T18:00:00", end: "2026-12-26T09:00:00" }
channels:
  email: { type: email }
  slack: { type: slack, channel: "#desk", token_env: SLACK_TOKEN }
policies:
  p: { steps: [{ after: 0m, targets: [{ schedule: primary }], via: [email, slack] }] }
severities:
  critical: { respond_within: 5m, policy: p }
  high: { respond_within: 5m, policy: p }
  medium: { respond_within: 5m, policy: p }
  low: { respond_within: 5m, policy: p }
rules:
  - { name: all, matchers: [], severity: low }
"##,
        )
        .unwrap();
        let p =
            load_dir(dir.path()).unwrap_or_else(|e| panic!("{}", crate::config::format_errors(&e)));
        (dir, p)
    }

    fn who(p: &Policy, schedule: &str, at: DateTime<Utc>) -> String {
        p.on_call(schedule, at)
            .map(|x| x.id.clone())
            .unwrap_or_default()
    }

    #[test]
    fn hand_offs_happen_exactly_at_the_boundary_in_the_policy_zone() {
        let (_dir, p) = policy();
        // 09:00 Singapore = 01:00 UTC.
        let start = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap();
        let week = Duration::weeks(1);
        let tick = Duration::nanoseconds(1);
        assert_eq!(who(&p, "primary", start), "mei");
        assert_eq!(who(&p, "primary", start + week - tick), "mei");
        assert_eq!(who(&p, "primary", start + week), "raj");
        assert_eq!(who(&p, "primary", start + week * 2), "ana");
        assert_eq!(who(&p, "primary", start + week * 3 - tick), "ana");
        assert_eq!(who(&p, "primary", start + week * 3), "mei");
        assert_eq!(
            who(&p, "primary", start + week * 31 + Duration::hours(5)),
            "raj"
        );
    }

    #[test]
    fn before_start_the_rotation_runs_backwards() {
        let (_dir, p) = policy();
        let start = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap();
        let tick = Duration::nanoseconds(1);
        // The shift just before the first hand-off is the last member's.
        assert_eq!(who(&p, "primary", start - tick), "ana");
        assert_eq!(who(&p, "primary", start - Duration::weeks(1)), "ana");
        assert_eq!(who(&p, "primary", start - Duration::weeks(1) - tick), "raj");
        assert_eq!(who(&p, "primary", start - Duration::weeks(3)), "mei");
        // An RFC 3339 start ignores the policy zone.
        let daily = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
        assert_eq!(who(&p, "daily", daily), "raj");
        assert_eq!(who(&p, "daily", daily - tick), "mei");
        assert_eq!(p.on_call("nobody", daily), None);
    }

    #[test]
    fn targets_resolve_in_order_without_duplicates() {
        let (_dir, p) = policy();
        let at = Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap(); // raj's week, mei's day
        let targets = [
            Target::Schedule("primary".into()),
            Target::Person("boss".into()),
            Target::Person("raj".into()),
            Target::Schedule("daily".into()),
            Target::Person("ghost".into()),
        ];
        let ids: Vec<&str> = p
            .resolve_targets(&targets, at)
            .iter()
            .map(|x| x.id.as_str())
            .collect();
        assert_eq!(ids, ["raj", "boss", "mei"]);
    }

    /// An instant from a local wall-clock time in `tz`.
    fn local(tz: chrono_tz::Tz, s: &str) -> DateTime<Utc> {
        let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        tz.from_local_datetime(&naive)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    const SG: chrono_tz::Tz = chrono_tz::Asia::Singapore;
    const NY: chrono_tz::Tz = chrono_tz::America::New_York;

    #[test]
    fn a_daily_rotation_hands_off_at_local_nine_across_week_and_month_ends() {
        let (_dir, p) = policy();
        let tick = Duration::nanoseconds(1);
        // Sunday 29 Nov → Monday 30 Nov → Tuesday 1 Dec (mei, raj, ana from Mon 2 Nov).
        let sunday_9 = local(SG, "2026-11-29 09:00:00");
        let monday_9 = local(SG, "2026-11-30 09:00:00");
        let tuesday_9 = local(SG, "2026-12-01 09:00:00");
        assert_eq!(
            monday_9,
            Utc.with_ymd_and_hms(2026, 11, 30, 1, 0, 0).unwrap()
        );
        let day = |d: i64| ["mei", "raj", "ana"][d.rem_euclid(3) as usize];
        assert_eq!(who(&p, "local-daily", sunday_9), day(27));
        assert_eq!(who(&p, "local-daily", monday_9 - tick), day(27));
        assert_eq!(who(&p, "local-daily", monday_9), day(28));
        assert_eq!(who(&p, "local-daily", tuesday_9 - tick), day(28));
        assert_eq!(who(&p, "local-daily", tuesday_9), day(29));
        let r = &p.schedules["local-daily"].layers[0].rotation;
        assert!(r.hands_off_by_wall_clock());
        assert_eq!(r.next_handoff(monday_9), Some(tuesday_9));
        assert_eq!(r.next_handoff(monday_9 - tick), Some(monday_9));
    }

    /// A policy in New York (DST) with weekly, daily and 12-hour rotations.
    fn new_york() -> (tempfile::TempDir, Policy) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.yaml"),
            r##"
timezone: America/New_York
people:
  mei: { name: Mei Tan, email: mei@example.com }
  raj: { name: Raj Kumar, email: raj@example.com }
  ana: { name: Ana Lim, email: ana@example.com }
schedules:
  weekly:
    rotation: { members: [mei, raj], every: 1w, start: "2026-03-02T09:00:00" }
  daily:
    rotation: { members: [mei, raj], every: 1d, start: "2026-03-06T09:00:00" }
  halves:
    rotation: { members: [mei, raj], every: 12h, start: "2026-03-07T21:00:00" }
  nights:
    layers:
      - { name: days, members: [mei], every: 1w, start: "2026-03-02T09:00:00" }
      - name: nights
        members: [ana]
        every: 1w
        start: "2026-03-02T09:00:00"
        restrict: { days: [sat], from: "22:00", to: "06:00" }
channels:
  email: { type: email }
  slack: { type: slack, channel: "#desk", token_env: SLACK_TOKEN }
policies:
  p: { steps: [{ after: 0m, targets: [{ schedule: weekly }], via: [email, slack] }] }
severities:
  critical: { respond_within: 5m, policy: p }
  high: { respond_within: 5m, policy: p }
  medium: { respond_within: 5m, policy: p }
  low: { respond_within: 5m, policy: p }
rules:
  - { name: all, matchers: [], severity: low }
"##,
        )
        .unwrap();
        let p =
            load_dir(dir.path()).unwrap_or_else(|e| panic!("{}", crate::config::format_errors(&e)));
        (dir, p)
    }

    #[test]
    fn a_weekly_rotation_hands_off_at_nine_local_on_both_sides_of_dst() {
        let (_dir, p) = new_york();
        let tick = Duration::nanoseconds(1);
        // Spring forward on Sunday 2026-03-08: Monday 2 Mar 09:00 EST = 14:00Z, but Monday
        // 9 Mar 09:00 EDT = 13:00Z (167 hours later, not 168).
        let first = local(NY, "2026-03-02 09:00:00");
        let second = local(NY, "2026-03-09 09:00:00");
        assert_eq!(first, Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap());
        assert_eq!(second, Utc.with_ymd_and_hms(2026, 3, 9, 13, 0, 0).unwrap());
        assert_eq!(who(&p, "weekly", first), "mei");
        assert_eq!(who(&p, "weekly", second - tick), "mei");
        assert_eq!(who(&p, "weekly", second), "raj");
        // Fall back on Sunday 2026-11-01: Monday 2 Nov 09:00 EST = 14:00Z (35 weeks on: mei).
        let autumn = local(NY, "2026-11-02 09:00:00");
        assert_eq!(autumn, Utc.with_ymd_and_hms(2026, 11, 2, 14, 0, 0).unwrap());
        assert_eq!(who(&p, "weekly", autumn - tick), "mei");
        assert_eq!(who(&p, "weekly", autumn), "raj");
        assert_eq!(
            who(&p, "weekly", local(NY, "2026-10-26 09:00:00") - tick),
            "raj"
        );
        assert_eq!(who(&p, "weekly", local(NY, "2026-10-26 09:00:00")), "mei");
        // Before the start the weeks count backwards, also across DST (2 Nov 2025): 18 weeks
        // before the start, Monday 27 Oct 2025 09:00 EDT = 13:00Z.
        let before = local(NY, "2025-10-27 09:00:00");
        assert_eq!(
            before,
            Utc.with_ymd_and_hms(2025, 10, 27, 13, 0, 0).unwrap()
        );
        assert_eq!(who(&p, "weekly", before - tick), "raj");
        assert_eq!(who(&p, "weekly", before), "mei");
    }

    #[test]
    fn a_daily_rotation_keeps_the_wall_clock_and_a_12h_one_keeps_elapsed_time_across_dst() {
        let (_dir, p) = new_york();
        let tick = Duration::nanoseconds(1);
        // Daily at 09:00 local: Sat 7 Mar (EST), Sun 8 Mar (EDT), Mon 9 Mar (EDT).
        for (date, person) in [
            ("2026-03-07", "raj"),
            ("2026-03-08", "mei"),
            ("2026-03-09", "raj"),
        ] {
            let nine = local(NY, &format!("{date} 09:00:00"));
            assert_eq!(who(&p, "daily", nine), person, "{date}");
            assert_ne!(who(&p, "daily", nine - tick), person, "{date}");
        }
        // 12 hours from Sat 21:00 EST (02:00Z) is 14:00Z = 10:00 EDT, not 09:00.
        let halves = &p.schedules["halves"].layers[0].rotation;
        assert!(!halves.hands_off_by_wall_clock());
        let start = Utc.with_ymd_and_hms(2026, 3, 8, 2, 0, 0).unwrap();
        assert_eq!(
            halves.next_handoff(start),
            Some(start + Duration::hours(12))
        );
        assert_eq!(who(&p, "halves", start + Duration::hours(12) - tick), "mei");
        assert_eq!(who(&p, "halves", start + Duration::hours(12)), "raj");
    }

    #[test]
    fn an_overnight_layer_covers_the_night_the_clocks_go_forward() {
        let (_dir, p) = new_york();
        // Saturday 7 Mar 22:00 EST to Sunday 8 Mar 06:00 EDT: 7 hours of real time.
        assert_eq!(who(&p, "nights", local(NY, "2026-03-07 21:59:59")), "mei");
        assert_eq!(who(&p, "nights", local(NY, "2026-03-07 22:00:00")), "ana");
        assert_eq!(
            who(
                &p,
                "nights",
                Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap()
            ),
            "ana"
        );
        assert_eq!(who(&p, "nights", local(NY, "2026-03-08 05:59:59")), "ana");
        assert_eq!(who(&p, "nights", local(NY, "2026-03-08 06:00:00")), "mei");
        assert_eq!(
            local(NY, "2026-03-08 06:00:00") - local(NY, "2026-03-07 22:00:00"),
            Duration::hours(7)
        );
    }

    #[test]
    fn a_restricted_layer_wins_inside_its_window_only() {
        let (_dir, p) = policy();
        // Friday 27 Nov: the office layer (boss) until 18:00, then the weekly layer (raj's
        // week: 23 Nov is week 3 from 2 Nov, mei, raj alternate → raj).
        let friday_1759 = local(SG, "2026-11-27 17:59:59");
        let friday_18 = local(SG, "2026-11-27 18:00:00");
        assert_eq!(who(&p, "desk", friday_1759), "boss");
        assert_eq!(who(&p, "desk", friday_18), "raj");
        assert_eq!(who(&p, "desk", local(SG, "2026-11-28 12:00:00")), "raj");
        // Monday 30 Nov: a new week for the weekly layer (mei) but the office layer again
        // from 09:00.
        assert_eq!(who(&p, "desk", local(SG, "2026-11-30 08:59:59")), "raj");
        assert_eq!(who(&p, "desk", local(SG, "2026-11-30 09:00:00")), "boss");
        assert_eq!(who(&p, "desk", local(SG, "2026-11-30 18:00:00")), "mei");
        let report = p.schedule_report(friday_1759, &[]);
        let desk = report.iter().find(|r| r.schedule == "desk").unwrap();
        assert_eq!(desk.person.as_deref(), Some("boss"));
        assert_eq!(desk.decided_by, Some(DecidedBy::Layer("office".into())));
        assert_eq!(
            report
                .iter()
                .map(|r| r.schedule.as_str())
                .collect::<Vec<_>>(),
            ["daily", "desk", "local-daily", "primary"]
        );
    }

    fn api(schedule: &str, person: &str, start: &str, end: &str) -> Override {
        Override {
            schedule: schedule.into(),
            person: person.into(),
            start: local(SG, start),
            end: local(SG, end),
            author: Some("mei".into()),
        }
    }

    #[test]
    fn overrides_win_over_layers_and_the_latest_starting_one_wins() {
        let (_dir, p) = policy();
        // The routing override: ana from Christmas Eve 18:00 to Boxing Day 09:00.
        let eve = local(SG, "2026-12-24 18:00:00");
        let boxing_9 = local(SG, "2026-12-26 09:00:00");
        let tick = Duration::nanoseconds(1);
        assert_eq!(who(&p, "desk", eve - tick), "boss");
        assert_eq!(who(&p, "desk", eve), "ana");
        assert_eq!(who(&p, "desk", boxing_9 - tick), "ana");
        assert_ne!(who(&p, "desk", boxing_9), "ana");
        let (_, why) = p.decide("desk", eve, &[]).unwrap();
        assert!(matches!(why, DecidedBy::RoutingOverride(ref o) if o.author.is_none()));

        // An API override inside it, starting later, wins while it lasts.
        let raj = api("desk", "raj", "2026-12-25 09:00:00", "2026-12-25 12:00:00");
        let extra = [raj.clone()];
        let xmas_10 = local(SG, "2026-12-25 10:00:00");
        assert_eq!(p.on_call_at("desk", xmas_10, &extra).unwrap().id, "raj");
        assert_eq!(
            p.on_call_at("desk", local(SG, "2026-12-25 12:00:00"), &extra)
                .unwrap()
                .id,
            "ana"
        );
        // Without it (on_call means no API overrides) the routing one decides.
        assert_eq!(p.on_call("desk", xmas_10).unwrap().id, "ana");
        assert_eq!(
            p.decide("desk", xmas_10, &extra).unwrap().1,
            DecidedBy::ApiOverride(raj)
        );

        // Starting at the same instant, the API override wins; of two API overrides with the
        // same start, the later-listed (newer) one.
        let same = [
            api("desk", "mei", "2026-12-24 18:00:00", "2026-12-24 20:00:00"),
            api("desk", "raj", "2026-12-24 18:00:00", "2026-12-24 19:00:00"),
        ];
        assert_eq!(p.on_call_at("desk", eve, &same[..1]).unwrap().id, "mei");
        assert_eq!(p.on_call_at("desk", eve, &same).unwrap().id, "raj");
        assert_eq!(
            p.on_call_at("desk", local(SG, "2026-12-24 19:30:00"), &same)
                .unwrap()
                .id,
            "mei"
        );
        // An earlier-starting API override loses to the routing one that starts inside it.
        let early = [api(
            "desk",
            "raj",
            "2026-12-24 12:00:00",
            "2026-12-27 00:00:00",
        )];
        assert_eq!(p.on_call_at("desk", eve - tick, &early).unwrap().id, "raj");
        assert_eq!(p.on_call_at("desk", eve, &early).unwrap().id, "ana");

        // Overrides of other schedules, and of people the policy no longer has, are ignored.
        let ignored = [
            api(
                "primary",
                "raj",
                "2026-12-25 09:00:00",
                "2026-12-25 12:00:00",
            ),
            api(
                "desk",
                "ghost",
                "2026-12-25 09:00:00",
                "2026-12-25 12:00:00",
            ),
        ];
        assert_eq!(p.on_call_at("desk", xmas_10, &ignored).unwrap().id, "ana");
    }

    #[test]
    fn targets_and_the_report_take_api_overrides_into_account() {
        let (_dir, p) = policy();
        let at = Utc.with_ymd_and_hms(2026, 11, 10, 0, 0, 0).unwrap(); // raj's week on primary
        let extra = [Override {
            schedule: "primary".into(),
            person: "boss".into(),
            start: at - Duration::hours(1),
            end: at + Duration::hours(1),
            author: Some("raj".into()),
        }];
        let targets = [
            Target::Schedule("primary".into()),
            Target::Person("boss".into()),
            Target::Person("raj".into()),
        ];
        let ids = |v: Vec<&Person>| v.iter().map(|x| x.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(p.resolve_targets(&targets, at)), ["raj", "boss"]);
        assert_eq!(
            ids(p.resolve_targets_with(&targets, at, &extra)),
            ["boss", "raj"]
        );
        let report = p.schedule_report(at, &extra);
        let primary = report.iter().find(|r| r.schedule == "primary").unwrap();
        assert_eq!(primary.person.as_deref(), Some("boss"));
        let why = primary.decided_by.as_ref().unwrap();
        assert!(
            why.to_string().starts_with("override by raj until"),
            "{why}"
        );
        let json = serde_json::to_value(primary).unwrap();
        assert_eq!(json["decided_by"]["api_override"]["person"], "boss");
        let desk = report.iter().find(|r| r.schedule == "desk").unwrap();
        assert_eq!(
            serde_json::to_value(desk).unwrap()["decided_by"],
            serde_json::json!({ "layer": "weekly" })
        );
    }

    #[test]
    fn overrides_round_trip_through_json_and_are_checked_before_storing() {
        let (_dir, p) = policy();
        let o = api("desk", "raj", "2026-12-25 09:00:00", "2026-12-25 12:00:00");
        let json = serde_json::to_string(&o).unwrap();
        assert!(json.contains(r#""start":"2026-12-25T01:00:00Z""#), "{json}");
        assert_eq!(serde_json::from_str::<Override>(&json).unwrap(), o);
        assert!(
            serde_json::from_str::<Override>(
                r#"{"schedule":"desk","person":"raj","start":"2026-12-25T01:00:00Z"}"#
            )
            .is_err(),
            "end is required"
        );
        assert_eq!(p.check_override(&o), Ok(()));
        let mut bad = o.clone();
        bad.schedule = "nope".into();
        bad.person = "ghost".into();
        bad.end = bad.start;
        let err = p.check_override(&bad).unwrap_err();
        assert!(err.contains(r#"unknown schedule "nope""#), "{err}");
        assert!(err.contains(r#"unknown person "ghost""#), "{err}");
        assert!(err.contains("must be after start"), "{err}");
    }
}

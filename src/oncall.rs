//! **on-call resolution**: who a step's targets are at a given instant. Pure; `at` is passed in.
//!
//! In: the compiled [`Policy`], a schedule name or a step's [`Target`]s, and an instant. Out: the
//! [`Person`]s to notify. The escalation stage calls this when a step fires (not when the incident
//! opens), so a hand-off between trigger and escalation pages whoever is on call by then.

use chrono::{DateTime, Utc};

use crate::config::{Person, Policy, Rotation, Target};

impl Rotation {
    /// Index into `members` of who is on call at `at`:
    /// `floor((at − start) / every) mod n`. Before `start` the rotation runs backwards
    /// (`rem_euclid`), so the answer is defined for every instant. `None` only for an empty or
    /// zero-length rotation, which a compiled policy never has.
    pub fn index_at(&self, at: DateTime<Utc>) -> Option<usize> {
        let n = i128::try_from(self.members.len()).ok().filter(|&n| n > 0)?;
        let every = i128::try_from(self.every.as_nanos())
            .ok()
            .filter(|&e| e > 0)?;
        // i128 nanoseconds: chrono's range (±262,000 years) cannot overflow it.
        let elapsed = i128::from(at.timestamp()) * 1_000_000_000
            + i128::from(at.timestamp_subsec_nanos())
            - (i128::from(self.start.timestamp()) * 1_000_000_000
                + i128::from(self.start.timestamp_subsec_nanos()));
        let shift = elapsed.div_euclid(every);
        usize::try_from(shift.rem_euclid(n)).ok()
    }
}

impl Policy {
    /// The person on call on `schedule` at `at`; `None` for an unknown schedule.
    pub fn on_call(&self, schedule: &str, at: DateTime<Utc>) -> Option<&Person> {
        let rotation = &self.schedules.get(schedule)?.rotation;
        let id = rotation.members.get(rotation.index_at(at)?)?;
        self.people.get(id)
    }

    /// The people `targets` resolve to at `at`, in target order, each once (the on-call engineer
    /// who is also named directly is paged once). Unknown names are skipped; a compiled policy has
    /// none.
    pub fn resolve_targets(&self, targets: &[Target], at: DateTime<Utc>) -> Vec<&Person> {
        let mut out: Vec<&Person> = Vec::with_capacity(targets.len());
        for t in targets {
            let person = match t {
                Target::Schedule(s) => self.on_call(s, at),
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
}

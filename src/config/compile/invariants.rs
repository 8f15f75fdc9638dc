//! The **desk invariants**: the checks that look across sections, because no one section can
//! tell. Every person a step reaches has the contact its channels need (a phone for `sms` and
//! `phone`, an email for `email` without a fixed `to`); every step of a policy critical alerts
//! can use reaches people through at least two different channel types; every schedule such a
//! step targets has someone on call at every hour of the week.

use std::collections::{BTreeMap, BTreeSet};

use super::channels;
use super::ctx::{Ctx, key_path};
use super::merge::Merged;
use super::schedules::schedule_people;
use crate::config::calendar::WeeklyWindow;
use crate::config::channel::channel_types;
use crate::config::locate::PathSeg;
use crate::config::policy::Schedule;
use crate::config::routing::TargetConfig;
use crate::domain::Severity;

/// Every person a step can reach must have the contact details its channels need. For a schedule
/// that is every member: whoever is on call when the step fires must be reachable.
pub(super) fn check_contacts(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
    fi: usize,
    step_at: &dyn Fn(Vec<PathSeg>) -> Vec<PathSeg>,
    targets: &[TargetConfig],
    needs_phone: Option<&str>,
    needs_email: Option<&str>,
) {
    if needs_phone.is_none() && needs_email.is_none() {
        return;
    }
    for (ti, t) in targets.iter().enumerate() {
        let (who, key, members): (String, &str, Vec<&str>) = match (&t.schedule, &t.person) {
            (Some(s), None) => match m.schedules.get(s.as_str()) {
                Some((_, sc)) => (
                    format!("schedule {s:?} member "),
                    "schedule",
                    schedule_people(sc),
                ),
                None => continue,
            },
            (None, Some(p)) => (String::new(), "person", vec![p.as_str()]),
            _ => continue,
        };
        for id in members {
            let Some((_, person)) = m.people.get(id) else {
                continue;
            };
            if let Some(ch) = needs_phone
                && person.phone.is_none()
            {
                ctx.err(
                    fi,
                    step_at(key_path!["targets", ti, key]),
                    format!("{who}{id:?} has no phone, but this step notifies via {ch:?}"),
                );
            }
            if let Some(ch) = needs_email
                && person.email.is_none()
            {
                ctx.err(
                    fi,
                    step_at(key_path!["targets", ti, key]),
                    format!("{who}{id:?} has no email, but this step notifies via {ch:?} (which mails each target person)"),
                );
            }
        }
    }
}

/// The policies critical alerts can use: the severity table's, and any rule's explicit policy on
/// a critical rule. (A critical *override* on a non-critical rule uses the severity table's
/// policy; see `classify`.)
pub(super) fn critical_policies<'a>(m: &Merged<'a>) -> BTreeSet<&'a str> {
    let mut used: BTreeSet<&str> = BTreeSet::new();
    if let Some((_, s)) = m.severities.get(&Severity::Critical) {
        used.insert(s.policy.as_str());
    }
    for (_, _, rule) in &m.rules {
        if rule.severity == Severity::Critical {
            if let Some(p) = &rule.policy {
                used.insert(p.as_str());
            } else if let Some((_, s)) = m.severities.get(&Severity::Critical) {
                used.insert(s.policy.as_str());
            }
        }
    }
    used
}

/// The desk invariant "no step points at an empty schedule", for critical paths: a schedule a
/// critical step targets must have someone on call at every minute of the week, i.e. an
/// unrestricted layer or restrictions that together cover the week. (Overrides do not count:
/// they end.) Schedules only quieter severities use may have gaps (a weekday-only schedule).
pub(super) fn check_schedule_coverage(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
    schedules: &BTreeMap<String, Schedule>,
    critical: &BTreeSet<&str>,
) {
    let mut targeted: BTreeMap<&str, &str> = BTreeMap::new();
    for &name in critical {
        let Some((_, p)) = m.policies.get(name) else {
            continue;
        };
        for t in p.steps.iter().flat_map(|s| &s.targets) {
            if let (Some(s), None) = (&t.schedule, &t.person) {
                targeted.entry(s.as_str()).or_insert(name);
            }
        }
    }
    for (id, policy) in targeted {
        let (Some(&(fi, _)), Some(schedule)) = (m.schedules.get(id), schedules.get(id)) else {
            continue;
        };
        if schedule.layers.is_empty() || schedule.layers.iter().any(|l| l.restrict.is_none()) {
            continue;
        }
        let windows: Vec<WeeklyWindow> =
            schedule.layers.iter().filter_map(|l| l.restrict).collect();
        if let Some((day, time)) = WeeklyWindow::first_gap(&windows) {
            ctx.err(
                fi,
                key_path!["schedules", id, "layers"],
                format!(
                    "schedule {id:?} is paged for critical alerts (policy {policy:?}) but nobody is on call from {} {} local time; add an unrestricted layer as the first (lowest) one, or widen the restrictions",
                    day.to_string().to_lowercase(),
                    time.format("%H:%M")
                ),
            );
        }
    }
}

/// The desk invariant: a critical alert must reach a human through two independent channel types
/// at every step, so one provider outage (PagerDuty down, SMS throttled) never leaves it unseen.
/// Checked for every policy critical alerts can use ([`critical_policies`]).
pub(super) fn check_critical_paths(ctx: &mut Ctx<'_>, m: &Merged<'_>, used: &BTreeSet<&str>) {
    for &name in used {
        let Some(&(fi, p)) = m.policies.get(name) else {
            continue;
        };
        for (si, step) in p.steps.iter().enumerate() {
            if step
                .via
                .iter()
                .any(|v| !m.channels.contains_key(v.as_str()))
            {
                // Already reported as an unknown channel; counting without it would add noise.
                continue;
            }
            let kinds: BTreeSet<&str> = step
                .via
                .iter()
                .filter_map(|v| m.channels.get(v.as_str()))
                .filter_map(|(_, c)| channels::type_of(c))
                .filter(|t| t.reaches_people())
                .map(|t| t.name)
                .collect();
            if kinds.len() < 2 {
                let found = if kinds.is_empty() {
                    "none".to_string()
                } else {
                    kinds.into_iter().collect::<Vec<_>>().join(", ")
                };
                ctx.err(
                    fi,
                    key_path!["policies", name, "steps", si, "via"],
                    format!(
                        "policy {name:?} is used for critical alerts, so every step must reach people through at least two different channel types among {}; this step has: {found}",
                        people_types()
                    ),
                );
            }
        }
    }
}

/// The registered channel types that reach people, by name, for the message: `a, b and c`.
fn people_types() -> String {
    let names: Vec<&str> = channel_types()
        .iter()
        .filter(|t| t.reaches_people())
        .map(|t| t.name)
        .collect();
    match names.split_last() {
        None => "none".to_string(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::format_errors;
    use crate::config::tests_support::*;

    /// Every step of a critical policy reaches people through two channel types; a schedule it
    /// pages has someone on call all week.
    #[test]
    fn critical_paths_need_two_channel_types_and_a_schedule_with_no_gap() {
        assert_single_located_errors(&[
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
        ]);
    }

    /// A step that notifies by sms reaches a person without a phone: the error is in the policy
    /// file, at the step's target, although the fix may be in the people file.
    #[test]
    fn a_step_by_sms_to_a_person_without_a_phone_is_located_at_the_step() {
        let no_phone = PEOPLE.replace(
            r#"cto: { name: Sarah Koh, phone: "+6582223333", "#,
            "cto: { name: Sarah Koh, ",
        );
        let (dir, result) = load_with(&[("people.yaml", &no_phone)]);
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
}

//! The builders of who is paged for what, in what order: the severity table (`severities`) and
//! the escalation policies (`policies`: steps, targets, channels, `repeat`, `ack_timeout`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::channels;
use super::ctx::{Ctx, key_path};
use super::invariants;
use super::merge::Merged;
use crate::config::channel::Contact;
use crate::config::locate::PathSeg;
use crate::config::policy::{EscalationPolicy, SeverityPolicy, Step, Target};
use crate::domain::Severity;

/// The severity table: all four severities, each naming an existing policy; business-hours
/// deferral only below critical and only with a calendar.
pub(super) fn build_severities(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
) -> BTreeMap<Severity, SeverityPolicy> {
    let mut out = BTreeMap::new();
    for sev in Severity::ALL {
        let Some(&(fi, cfg)) = m.severities.get(&sev) else {
            let fi = m.severities_file.unwrap_or(0);
            ctx.err(
                fi,
                key_path!["severities", sev.as_str()],
                format!(
                    "severity {sev:?} is missing; critical, high, medium and low are all required",
                    sev = sev.as_str()
                ),
            );
            continue;
        };
        let base = key_path!["severities", sev.as_str()];
        if cfg.respond_within.is_zero() {
            ctx.err(
                fi,
                [base.clone(), key_path!["respond_within"]].concat(),
                "respond_within must be more than 0",
            );
        }
        if !m.policies.contains_key(cfg.policy.as_str()) {
            ctx.err(
                fi,
                [base.clone(), key_path!["policy"]].concat(),
                format!("unknown policy {:?}", cfg.policy),
            );
        }
        if cfg.business_hours {
            let at = [base, key_path!["business_hours"]].concat();
            if sev == Severity::Critical {
                ctx.err(
                    fi,
                    at,
                    "business-hours deferral never applies to critical: a critical alert pages at once, day or night",
                );
            } else if m.business_hours.is_none() {
                ctx.err(
                    fi,
                    at,
                    "business_hours: true needs the top-level business_hours calendar (days, from, to, holidays)",
                );
            }
        }
        out.insert(
            sev,
            SeverityPolicy {
                respond_within: cfg.respond_within,
                policy: cfg.policy.clone(),
                business_hours: cfg.business_hours && sev != Severity::Critical,
            },
        );
    }
    out
}

/// Escalation policies: steps whose `after` never decreases, targets and channels that exist,
/// contacts for every person a step reaches, `repeat` with a `repeat_delay`.
pub(super) fn build_policies(
    ctx: &mut Ctx<'_>,
    m: &Merged<'_>,
) -> BTreeMap<String, EscalationPolicy> {
    let mut out = BTreeMap::new();
    for (&name, &(fi, p)) in &m.policies {
        let base = key_path!["policies", name];
        let at = |rest: Vec<PathSeg>| [base.clone(), rest].concat();
        if p.steps.is_empty() {
            ctx.err(
                fi,
                at(key_path!["steps"]),
                "a policy needs at least one step",
            );
        }
        let mut steps = Vec::with_capacity(p.steps.len());
        let mut prev: Option<Duration> = None;
        for (si, step) in p.steps.iter().enumerate() {
            let step_at = |rest: Vec<PathSeg>| at([key_path!["steps", si], rest].concat());
            if let Some(prev) = prev
                && step.after < prev
            {
                ctx.err(
                    fi,
                    step_at(key_path!["after"]),
                    format!(
                        "after {} is earlier than the step before it ({}); `after` counts from the trigger and must not decrease",
                        humantime::format_duration(step.after),
                        humantime::format_duration(prev)
                    ),
                );
            }
            prev = Some(step.after);

            if step.targets.is_empty() {
                ctx.err(
                    fi,
                    step_at(key_path!["targets"]),
                    "a step needs at least one target",
                );
            }
            let mut targets = Vec::with_capacity(step.targets.len());
            for (ti, t) in step.targets.iter().enumerate() {
                match (&t.schedule, &t.person) {
                    (Some(s), None) => {
                        if !m.schedules.contains_key(s.as_str()) {
                            ctx.err(
                                fi,
                                step_at(key_path!["targets", ti, "schedule"]),
                                format!("unknown schedule {s:?}"),
                            );
                        }
                        targets.push(Target::Schedule(s.clone()));
                    }
                    (None, Some(p)) => {
                        if !m.people.contains_key(p.as_str()) {
                            ctx.err(
                                fi,
                                step_at(key_path!["targets", ti, "person"]),
                                format!("unknown person {p:?}"),
                            );
                        }
                        targets.push(Target::Person(p.clone()));
                    }
                    _ => ctx.err(
                        fi,
                        step_at(key_path!["targets", ti]),
                        "a target is exactly one of `schedule: <name>` or `person: <id>`",
                    ),
                }
            }

            if step.via.is_empty() {
                ctx.err(
                    fi,
                    step_at(key_path!["via"]),
                    "a step needs at least one channel in via",
                );
            }
            let mut needs_phone = None;
            let mut needs_email = None;
            for (vi, via) in step.via.iter().enumerate() {
                match m.channels.get(via.as_str()) {
                    None => ctx.err(
                        fi,
                        step_at(key_path!["via", vi]),
                        format!("unknown channel {via:?}"),
                    ),
                    // An unknown type is reported with the channel.
                    Some((_, c)) => match channels::type_of(c)
                        .and_then(|t| t.contact(|k| c.keys.contains_key(k)))
                    {
                        Some(Contact::Phone) => {
                            needs_phone.get_or_insert(via.as_str());
                        }
                        Some(Contact::Email) => {
                            needs_email.get_or_insert(via.as_str());
                        }
                        None => {}
                    },
                }
            }
            invariants::check_contacts(
                ctx,
                m,
                fi,
                &step_at,
                &step.targets,
                needs_phone,
                needs_email,
            );

            steps.push(Step {
                after: step.after,
                targets,
                via: step.via.clone(),
            });
        }
        if p.repeat > 0 {
            match p.repeat_delay {
                None => ctx.err(
                    fi,
                    at(key_path!["repeat"]),
                    "repeat needs repeat_delay (the gap between the last step of one pass and the first of the next)",
                ),
                Some(d) if d.is_zero() => {
                    ctx.err(fi, at(key_path!["repeat_delay"]), "repeat_delay must be more than 0 when repeat > 0")
                }
                Some(_) => {}
            }
        }
        if p.ack_timeout.is_some_and(|d| d.is_zero()) {
            ctx.err(
                fi,
                at(key_path!["ack_timeout"]),
                "ack_timeout must be more than 0 (leave it out so acknowledgements do not expire)",
            );
        }
        out.insert(
            name.to_string(),
            EscalationPolicy {
                steps,
                repeat: p.repeat,
                repeat_delay: p.repeat_delay,
                ack_timeout: p.ack_timeout,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::format_errors;
    use crate::config::tests_support::*;
    use crate::domain::Severity;

    /// A step names channels and schedules that exist, its `after` never decreases, and all four
    /// severities are present.
    #[test]
    fn broken_steps_and_missing_severities_are_located() {
        assert_single_located_errors(&[
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
                "missing severity",
                "policy.yaml",
                POLICY.replace("  low: { respond_within: 4h, policy: calm }\n", ""),
                "severities:",
                "severities.low",
                r#"severity "low" is missing"#,
            ),
            case(
                "a zero ack_timeout",
                "policy.yaml",
                POLICY.replace("  calm:\n", "  calm:\n    ack_timeout: 0s\n"),
                "ack_timeout: 0s",
                "policies.calm.ack_timeout",
                "ack_timeout must be more than 0",
            ),
        ]);
    }

    /// A severity names an existing policy; `repeat` needs `repeat_delay`.
    #[test]
    fn unknown_policies_and_repeat_without_delay_are_refused() {
        assert_each_edit_is_refused(&[
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
        ]);
    }

    /// Business-hours deferral never applies to critical and needs the calendar; with it, low
    /// waits for business hours.
    #[test]
    fn business_hours_apply_below_critical_only_and_need_the_calendar() {
        let with_low_bh = POLICY.replace(
            "low: { respond_within: 4h, policy: calm }",
            "low: { respond_within: 4h, policy: calm, business_hours: true }",
        );
        assert_single_located_errors(&[
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
        ]);

        // The same calendar makes business hours on low valid.
        let (_dir, result) = load_with(&[("policy.yaml", &with_low_bh), ("extra.yaml", EXTRA_OK)]);
        let p = result.unwrap_or_else(|e| panic!("{}", format_errors(&e)));
        assert!(p.severities[&Severity::Low].business_hours);
        assert!(!p.severities[&Severity::Critical].business_hours);
    }
}

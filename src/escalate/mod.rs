//! Stage 4: escalation. Deadlines come from the incident's snapshot of its policy's steps; when one
//! is due, `fire_due` resolves who is on call *now*, writes one delivery per (channel, person) and
//! moves the incident to its next step. Pure: the loop that finds due incidents is
//! `pipeline::scheduler`; imports `incident`'s records and `config`, nothing above.
//!
//! Step timing (`EscalationPolicy::due_at`): loop `L`, step `i` is due at
//! `anchor + L × (last step's after + repeat_delay) + steps[i].after`, where the anchor is when
//! the incident opened, moved later by a business-hours or group-window wait, by a hold
//! (silence, inhibition) or by an acknowledgement that ran out.

use chrono::{DateTime, Utc};

use crate::config::{ChannelSpec, Override, Policy};
use crate::incident::{
    Delivery, Incident, IncidentStatus, NotifyKind, TimelineEntry, TimelineEvent,
};

impl std::fmt::Display for crate::config::Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Schedule(s) => write!(f, "schedule {s}"),
            Self::Person(p) => write!(f, "person {p}"),
        }
    }
}

/// Channels that page each targeted person (one delivery per person); the others are
/// destinations told once per step who was targeted. The channel's type says which
/// (`config::Reach`).
pub fn is_personal(spec: &ChannelSpec) -> bool {
    spec.is_personal()
}

/// What else decides a step besides the incident and the policy, read by the caller from the
/// store: API on-call overrides, and whether something holds the escalation back right now.
#[derive(Debug, Default)]
pub struct FireContext<'a> {
    /// API overrides, oldest start first.
    pub overrides: &'a [Override],
    /// A silence or an inhibiting incident: who holds the chain, and until when.
    pub hold: Option<(String, DateTime<Utc>)>,
}

/// Fires every step of `inc` that is due at `now`, in order (after an outage several may be),
/// mutating `inc` and returning the timeline entries and deliveries. Bumps the version once if
/// anything changed. An acknowledgement that ran out re-triggers first; a held chain is shifted
/// (not skipped) so that its due step comes when the hold ends.
pub fn fire_due(
    inc: &mut Incident,
    policy: &Policy,
    now: DateTime<Utc>,
    ctx: &FireContext<'_>,
) -> (Vec<TimelineEntry>, Vec<Delivery>) {
    let mut entries = Vec::new();
    let mut deliveries = Vec::new();
    let mut changed = false;
    if inc.status == IncidentStatus::Acknowledged && inc.ack_until.is_some_and(|t| t <= now) {
        inc.status = IncidentStatus::Triggered;
        inc.acknowledged = None;
        inc.ack_until = None;
        inc.anchor = Some(now);
        inc.loop_ = 0;
        inc.step = 0;
        inc.next_due = inc.escalation.due_at(now, 0, 0);
        entries.push(TimelineEntry {
            at: now,
            event: TimelineEvent::AckExpired,
        });
        changed = true;
    }
    if inc.status != IncidentStatus::Triggered {
        return (entries, deliveries);
    }
    while let Some(due) = inc.next_due {
        if due > now {
            break;
        }
        if let Some((by, until)) = &ctx.hold {
            inc.anchor = Some(inc.anchor() + (*until - due));
            inc.next_due = Some(*until);
            if inc.held_by.as_deref() != Some(by.as_str()) {
                entries.push(TimelineEntry {
                    at: now,
                    event: TimelineEvent::Held {
                        by: by.clone(),
                        until: *until,
                    },
                });
                inc.held_by = Some(by.clone());
            }
            changed = true;
            break;
        }
        inc.held_by = None;
        changed = true;
        fire_one(
            inc,
            policy,
            now,
            ctx.overrides,
            &mut entries,
            &mut deliveries,
        );
        match inc.escalation.next_position(inc.loop_, inc.step) {
            Some((l, s)) => {
                inc.loop_ = l;
                inc.step = s;
                inc.next_due = inc.escalation.due_at(inc.anchor(), l, s);
            }
            None => {
                inc.step += 1;
                inc.next_due = None;
                entries.push(TimelineEntry {
                    at: now,
                    event: TimelineEvent::Exhausted,
                });
            }
        }
    }
    if changed {
        inc.version += 1;
    }
    (entries, deliveries)
}

fn fire_one(
    inc: &mut Incident,
    policy: &Policy,
    now: DateTime<Utc>,
    overrides: &[Override],
    entries: &mut Vec<TimelineEntry>,
    deliveries: &mut Vec<Delivery>,
) {
    let Some(step) = inc.escalation.steps.get(inc.step as usize).cloned() else {
        return;
    };
    let first = deliveries.len();
    inc.unreached = None;
    let kind = if inc.loop_ == 0 && inc.step == 0 {
        NotifyKind::Trigger
    } else {
        NotifyKind::Escalate
    };
    let position = Some((inc.loop_, inc.step));
    let mut people: Vec<String> = Vec::new();
    for target in &step.targets {
        let found = policy.resolve_targets_with(std::slice::from_ref(target), now, overrides);
        if found.is_empty() {
            entries.push(TimelineEntry {
                at: now,
                event: TimelineEvent::NoTarget {
                    step: inc.step,
                    target: target.to_string(),
                },
            });
        }
        for p in found {
            if !people.contains(&p.id) {
                people.push(p.id.clone());
            }
        }
    }
    let mut via = Vec::new();
    for channel in &step.via {
        let Some(spec) = policy.channels.get(channel) else {
            entries.push(TimelineEntry {
                at: now,
                event: TimelineEvent::NoTarget {
                    step: inc.step,
                    target: format!("channel {channel} (no longer in routing/)"),
                },
            });
            continue;
        };
        via.push(channel.clone());
        if is_personal(spec) {
            for person in &people {
                deliveries.push(Delivery::new(
                    inc.id,
                    kind,
                    channel,
                    Some(person.clone()),
                    vec![],
                    position,
                    now,
                ));
                inc.notified.insert((channel.clone(), Some(person.clone())));
            }
        } else {
            deliveries.push(Delivery::new(
                inc.id,
                kind,
                channel,
                None,
                people.clone(),
                position,
                now,
            ));
            inc.notified.insert((channel.clone(), None));
        }
    }
    let made: Vec<String> = deliveries[first..]
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    let nobody = made.is_empty();
    entries.push(TimelineEntry {
        at: now,
        event: TimelineEvent::Escalated {
            loop_: inc.loop_,
            step: inc.step,
            targets: people.clone(),
            via,
            deliveries: made,
        },
    });
    if nobody {
        let (entry, more) = last_resort(inc, policy, (inc.loop_, inc.step), &people, now);
        entries.push(entry);
        deliveries.extend(more);
    }
}

/// Whether an escalation step reached anyone, as far as its timeline tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// One of its deliveries was sent.
    Reached,
    /// Some are still being tried (or the timeline cannot tell: a later step fired, or the step
    /// predates the record of its deliveries).
    Pending,
    /// Every delivery it made (and every failover those made) failed for good or was skipped;
    /// with the people the step was for.
    Nobody(Vec<String>),
}

/// How step `pos` (loop, step), the last one fired, stands.
pub fn reach(timeline: &[TimelineEntry], pos: (u32, u32)) -> Reach {
    use crate::incident::DeliveryOutcome;
    let Some(start) = timeline
        .iter()
        .rposition(|e| matches!(e.event, TimelineEvent::Escalated { .. }))
    else {
        return Reach::Pending;
    };
    let TimelineEvent::Escalated {
        loop_,
        step,
        deliveries,
        targets,
        ..
    } = &timeline[start].event
    else {
        return Reach::Pending;
    };
    if (*loop_, *step) != pos || deliveries.is_empty() {
        return Reach::Pending;
    }
    let mut made: Vec<&str> = deliveries.iter().map(String::as_str).collect();
    let mut last = std::collections::HashMap::new();
    for e in &timeline[start..] {
        match &e.event {
            TimelineEvent::Failover { deliveries, .. } => {
                made.extend(deliveries.iter().map(String::as_str));
            }
            TimelineEvent::Delivery {
                delivery, outcome, ..
            } => {
                last.insert(delivery.as_str(), *outcome);
            }
            _ => {}
        }
    }
    if made
        .iter()
        .any(|id| last.get(id) == Some(&DeliveryOutcome::Sent))
    {
        Reach::Reached
    } else if made.iter().any(|id| {
        !matches!(
            last.get(id),
            Some(DeliveryOutcome::Failed | DeliveryOutcome::Skipped)
        )
    }) {
        Reach::Pending
    } else {
        Reach::Nobody(targets.clone())
    }
}

/// Step `pos` reached no one: marks the incident (`unreached`, which readiness and the metric
/// read; the caller bumps the version if it commits this on its own) and makes one delivery to
/// each of the policy's `last_resort` channels (per person of the step for a personal channel).
/// These carry no step, so their own failure never cascades.
pub fn last_resort(
    inc: &mut Incident,
    policy: &Policy,
    pos: (u32, u32),
    people: &[String],
    now: DateTime<Utc>,
) -> (TimelineEntry, Vec<Delivery>) {
    inc.unreached = Some(pos);
    let kind = if pos == (0, 0) {
        NotifyKind::Trigger
    } else {
        NotifyKind::Escalate
    };
    let mut out = Vec::new();
    for channel in &policy.last_resort {
        let Some(spec) = policy.channels.get(channel) else {
            continue;
        };
        if is_personal(spec) {
            for person in people {
                out.push(Delivery::new(
                    inc.id,
                    kind,
                    channel,
                    Some(person.clone()),
                    vec![],
                    None,
                    now,
                ));
            }
        } else {
            out.push(Delivery::new(
                inc.id,
                kind,
                channel,
                None,
                people.to_vec(),
                None,
                now,
            ));
        }
    }
    let told: Vec<String> = policy
        .last_resort
        .iter()
        .filter(|c| out.iter().any(|d| &d.channel == *c))
        .cloned()
        .collect();
    let entry = TimelineEntry {
        at: now,
        event: TimelineEvent::Unreached {
            loop_: pos.0,
            step: pos.1,
            last_resort: told,
        },
    };
    (entry, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::DeliveryOutcome;

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn escalated(pos: (u32, u32), ids: &[&str]) -> TimelineEntry {
        TimelineEntry {
            at: at(),
            event: TimelineEvent::Escalated {
                loop_: pos.0,
                step: pos.1,
                targets: vec!["ana".into()],
                via: vec![],
                deliveries: ids.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    fn attempt(id: &str, outcome: DeliveryOutcome) -> TimelineEntry {
        TimelineEntry {
            at: at(),
            event: TimelineEvent::Delivery {
                delivery: id.into(),
                channel: "c".into(),
                kind: "trigger".into(),
                target: None,
                attempt: 1,
                outcome,
                detail: String::new(),
                reference: None,
            },
        }
    }

    #[test]
    fn a_step_reached_no_one_only_when_every_delivery_and_failover_failed() {
        use DeliveryOutcome::*;
        let nobody = Reach::Nobody(vec!["ana".into()]);
        let t = vec![escalated((0, 0), &["a", "b"]), attempt("a", Failed)];
        assert_eq!(reach(&t, (0, 0)), Reach::Pending, "b not tried yet");
        let t = vec![
            escalated((0, 0), &["a", "b"]),
            attempt("a", Retrying),
            attempt("b", Failed),
        ];
        assert_eq!(reach(&t, (0, 0)), Reach::Pending, "a still retrying");
        let t = vec![
            escalated((0, 0), &["a", "b"]),
            attempt("a", Retrying),
            attempt("a", Failed),
            attempt("b", Skipped),
        ];
        assert_eq!(reach(&t, (0, 0)), nobody);
        let t = vec![
            escalated((0, 0), &["a", "b"]),
            attempt("a", Sent),
            attempt("b", Failed),
        ];
        assert_eq!(reach(&t, (0, 0)), Reach::Reached);
        // A failover's direct pages belong to the step.
        let failover = TimelineEntry {
            at: at(),
            event: TimelineEvent::Failover {
                from: "pd".into(),
                to: vec!["sms".into()],
                people: vec!["ana".into()],
                deliveries: vec!["f".into()],
            },
        };
        let t = vec![
            escalated((0, 0), &["a"]),
            attempt("a", Failed),
            failover.clone(),
        ];
        assert_eq!(
            reach(&t, (0, 0)),
            Reach::Pending,
            "the failover is still to try"
        );
        let t = vec![
            escalated((0, 0), &["a"]),
            attempt("a", Failed),
            failover,
            attempt("f", Sent),
        ];
        assert_eq!(reach(&t, (0, 0)), Reach::Reached);
        // Another step fired since, or the step predates the record of its deliveries.
        let t = vec![escalated((0, 0), &["a"]), attempt("a", Failed)];
        assert_eq!(reach(&t, (0, 1)), Reach::Pending);
        let t = vec![escalated((0, 0), &[]), attempt("a", Failed)];
        assert_eq!(reach(&t, (0, 0)), Reach::Pending);
    }
}

//! Pure incident decisions: given the stored incident (if any), an input and `now`, compute the
//! new incident, its timeline entries and the deliveries it owes. No I/O, no clock.

use chrono::{DateTime, Utc};

use super::model::{
    Actor, Delivery, Incident, IncidentStatus, NotifyKind, TimelineEntry, TimelineEvent,
};
use crate::classify::Classification;
use crate::config::EscalationPolicy;
use crate::domain::{Alert, AlertStatus, IncidentId};

/// What an alert does, decided against the fingerprint's current state.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEffect {
    /// Open a new incident (escalation is then run by `escalate::fire_due`).
    Open,
    /// Fold into the open incident: count it, record it; resolve it if the alert says resolved.
    Fold,
    /// Older than the newest state change already applied: record and ignore.
    Stale { newer: DateTime<Utc> },
    /// A resolve (or no-data) for a fingerprint with no open incident: nothing to do.
    Nothing,
}

///
/// A stored state-change time further ahead of `now` than [`MAX_CLOCK_AHEAD`] (written before
/// senders' times were bounded) is not believed: a future-dated event never makes real ones
/// stale.
pub fn effect(
    open: Option<&Incident>,
    last_change: Option<DateTime<Utc>>,
    alert: &Alert,
    now: DateTime<Utc>,
) -> AlertEffect {
    let believable = crate::clock::after(now, MAX_CLOCK_AHEAD);
    let newest = open
        .map(|i| i.last_change)
        .into_iter()
        .chain(last_change)
        .filter(|t| *t <= believable)
        .max();
    if let Some(newer) = newest
        && alert.occurred_at < newer
    {
        return AlertEffect::Stale { newer };
    }
    match (open, alert.status) {
        (Some(_), _) => AlertEffect::Fold,
        (None, AlertStatus::Firing | AlertStatus::InsufficientData) => AlertEffect::Open,
        (None, AlertStatus::Resolved) => AlertEffect::Nothing,
    }
}

/// How far ahead of vigil's own clock a sender's timestamp (a bot event's `occurred_at`, SNS's
/// `StateChangeTime`, EventBridge's `time`) may be and still be believed. Clocks drift, and a
/// little ahead is normal; beyond this the time is replaced by the receive time.
pub const MAX_CLOCK_AHEAD: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// When a sender's time is too far ahead of `now` to be believed: the time it claimed. The
/// caller then uses `now` (the receive time) in its place and records the claim on the
/// timeline, so that ordering ("an older state never overrides a newer one") can never be
/// captured by a clock running fast.
pub fn implausible_future(claimed: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (claimed > crate::clock::after(now, MAX_CLOCK_AHEAD)).then_some(claimed)
}

/// A new incident for `alert`, its escalation not yet started: `step` 0 is due at
/// `start + steps[0].after`, where `start` is when the first page may go (now, or later for
/// business hours or a group window; the caller decides).
pub fn open(
    alert: &Alert,
    cls: &Classification,
    escalation: EscalationPolicy,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
) -> (Incident, Vec<TimelineEntry>) {
    let next_due = escalation.due_at(start, 0, 0);
    let inc = Incident {
        id: IncidentId::new(now),
        fingerprint: cls.fingerprint.clone(),
        version: 1,
        status: IncidentStatus::Triggered,
        severity: cls.severity,
        rule: cls.rule.clone(),
        policy: cls.policy.clone(),
        escalation,
        source: alert.source,
        summary: alert.summary.clone(),
        description: alert.description.clone(),
        labels: cls.labels.clone(),
        details: alert.details.clone(),
        alert_status: alert.status,
        count: 1,
        first_seen: now,
        last_seen: now,
        last_change: alert.occurred_at,
        opened_at: now,
        loop_: 0,
        step: 0,
        next_due,
        acknowledged: None,
        resolved: None,
        notified: Default::default(),
        anchor: Some(start),
        ack_until: None,
        members: [alert.fingerprint.to_string()].into(),
        held_by: None,
        unreached: None,
        opened_by: Some(alert.occurred_at),
        peer_undelivered: Vec::new(),
        drill: None,
    };
    let entry = TimelineEntry {
        at: now,
        event: TimelineEvent::Opened {
            rule: cls.rule.clone(),
            severity: cls.severity,
            policy: cls.policy.clone(),
            summary: alert.summary.clone(),
        },
    };
    (inc, vec![entry])
}

/// Folds `alert` into the open incident `inc`. A resolved alert resolves it.
pub fn fold(
    inc: &mut Incident,
    alert: &Alert,
    now: DateTime<Utc>,
) -> (Vec<TimelineEntry>, Vec<Delivery>) {
    inc.version += 1;
    inc.count += 1;
    inc.last_seen = now;
    inc.last_change = inc.last_change.max(alert.occurred_at);
    inc.alert_status = alert.status;
    inc.details = alert.details.clone();
    let mut entries = vec![TimelineEntry {
        at: now,
        event: TimelineEvent::Alert {
            status: alert.status,
            summary: alert.summary.clone(),
            occurred_at: alert.occurred_at,
        },
    }];
    let mut deliveries = Vec::new();
    match alert.status {
        AlertStatus::Resolved => {
            inc.members.remove(alert.fingerprint.as_str());
        }
        AlertStatus::Firing | AlertStatus::InsufficientData => {
            inc.members.insert(alert.fingerprint.to_string());
        }
    }
    // A grouped incident stays open while any of its alerts still fires.
    if alert.status == AlertStatus::Resolved && inc.members.is_empty() {
        let actor = Actor {
            who: alert.source.as_str().to_string(),
            origin: super::Origin::Source,
        };
        let (e, d) = close(inc, actor, now);
        entries.extend(e);
        deliveries = d;
    }
    (entries, deliveries)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    Acknowledged,
    /// Already acknowledged: a repeated ack answers the same and changes nothing.
    AlreadyAcknowledged,
    AlreadyResolved,
}

/// Acknowledges: stops the escalation and tells everyone who was paged. With `until` (a timed
/// ack), or the policy's `ack_timeout`, the incident re-triggers at that instant unless resolved.
pub fn acknowledge(
    inc: &mut Incident,
    actor: Actor,
    now: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> (AckResult, Vec<TimelineEntry>, Vec<Delivery>) {
    match inc.status {
        IncidentStatus::Acknowledged => return (AckResult::AlreadyAcknowledged, vec![], vec![]),
        IncidentStatus::Resolved => return (AckResult::AlreadyResolved, vec![], vec![]),
        IncidentStatus::Triggered => {}
    }
    inc.version += 1;
    inc.status = IncidentStatus::Acknowledged;
    inc.ack_until = until.or_else(|| {
        inc.escalation
            .ack_timeout
            .map(|t| crate::clock::after(now, t))
    });
    // The due-index then holds the ack's end instead of the next step.
    inc.next_due = inc.ack_until;
    inc.held_by = None;
    let entry = TimelineEntry {
        at: now,
        event: TimelineEvent::Acknowledged {
            by: actor.who.clone(),
            origin: actor.origin,
            until: inc.ack_until,
        },
    };
    inc.acknowledged = Some((actor, now));
    let deliveries = tell_notified(inc, NotifyKind::Acknowledged, now);
    (AckResult::Acknowledged, vec![entry], deliveries)
}

/// Resolves an open incident. Returns `false` (and changes nothing) when it is already resolved.
pub fn resolve(
    inc: &mut Incident,
    actor: Actor,
    now: DateTime<Utc>,
) -> Option<(Vec<TimelineEntry>, Vec<Delivery>)> {
    if !inc.status.is_open() {
        return None;
    }
    inc.version += 1;
    Some(close(inc, actor, now))
}

fn close(
    inc: &mut Incident,
    actor: Actor,
    now: DateTime<Utc>,
) -> (Vec<TimelineEntry>, Vec<Delivery>) {
    inc.status = IncidentStatus::Resolved;
    inc.next_due = None;
    let entry = TimelineEntry {
        at: now,
        event: TimelineEvent::Resolved {
            by: actor.who.clone(),
            origin: actor.origin,
        },
    };
    inc.resolved = Some((actor, now));
    let deliveries = tell_notified(inc, NotifyKind::Resolved, now);
    (vec![entry], deliveries)
}

/// Reopens a resolved incident whose alarm came back within the flap cool-down: the same
/// incident, no fresh page; escalation resumes where it stood, its next step due after the same
/// gap it had from the previous one.
pub fn reopen(inc: &mut Incident, alert: &Alert, now: DateTime<Utc>) -> Vec<TimelineEntry> {
    let resolved_at = inc.resolved.as_ref().map(|(_, at)| *at).unwrap_or(now);
    inc.version += 1;
    inc.status = IncidentStatus::Triggered;
    inc.resolved = None;
    inc.acknowledged = None;
    inc.ack_until = None;
    inc.held_by = None;
    inc.count += 1;
    inc.last_seen = now;
    inc.last_change = inc.last_change.max(alert.occurred_at);
    inc.alert_status = alert.status;
    inc.details = alert.details.clone();
    inc.members.insert(alert.fingerprint.to_string());
    let esc = &inc.escalation;
    inc.next_due = match esc.due_at(inc.anchor(), inc.loop_, inc.step) {
        Some(due) => {
            let after = |i: u32| {
                esc.steps
                    .get(i as usize)
                    .map(|s| s.after)
                    .unwrap_or_default()
            };
            let gap = after(inc.step).saturating_sub(if inc.step > 0 {
                after(inc.step - 1)
            } else {
                Default::default()
            });
            let target = crate::clock::after(now, gap);
            inc.anchor = Some(inc.anchor() + (target - due));
            Some(target)
        }
        None => None,
    };
    vec![
        TimelineEntry {
            at: now,
            event: TimelineEvent::Reopened { resolved_at },
        },
        TimelineEntry {
            at: now,
            event: TimelineEvent::Alert {
                status: alert.status,
                summary: alert.summary.clone(),
                occurred_at: alert.occurred_at,
            },
        },
    ]
}

/// One status update to every (channel, person) the incident paged.
pub fn tell_notified(inc: &Incident, kind: NotifyKind, now: DateTime<Utc>) -> Vec<Delivery> {
    inc.notified
        .iter()
        .map(|(channel, person)| {
            Delivery::new(inc.id, kind, channel, person.clone(), vec![], None, now)
        })
        .collect()
}

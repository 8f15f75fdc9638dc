//! The incident record, its timeline entries and the deliveries it owes. Plain data: the
//! decisions that change it live in `incident::transition` and `escalate`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::EscalationPolicy;
pub use crate::domain::NotifyKind;
use crate::domain::{AlertStatus, Fingerprint, IncidentId, Labels, Severity, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Triggered => "triggered",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    pub fn is_open(self) -> bool {
        self != Self::Resolved
    }
}

/// Where an acknowledgement or resolution came from. Recorded so that two-way channels never
/// echo an ack back to the system it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The operator API.
    Api,
    /// The alert source itself (CloudWatch OK, the bot's `resolved`, `trading_resumed`).
    Source,
    Slack,
    Pagerduty,
    EmailLink,
    /// The operators' console (a signed-in person's session).
    Web,
    /// Mirrored from the peer (the primary or its warm standby) over the peer feed.
    Peer,
    /// A reply to a page by SMS (AWS End User Messaging two-way SMS, through SNS).
    Sms,
}

impl Origin {
    /// The name as serialized (`api`, `source`, `slack`, `pagerduty`, `email_link`, `web`, `peer`,
    /// `sms`): what a channel type's descriptor names when acks that came through it must not be
    /// echoed back (`config::ChannelType::echo`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Source => "source",
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
            Self::EmailLink => "email_link",
            Self::Web => "web",
            Self::Peer => "peer",
            Self::Sms => "sms",
        }
    }
}

/// Who did something to an incident, and through what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub who: String,
    pub origin: Origin,
}

/// The unit people acknowledge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub fingerprint: Fingerprint,
    /// Bumped by every transition; a transition commits only if the stored version is the one it
    /// read, so two writers (tasks or replicas) can never both fire the same step.
    pub version: u64,
    pub status: IncidentStatus,
    pub severity: Severity,
    /// The rule that classified the first alert.
    pub rule: String,
    /// The escalation policy's name, and its steps as they were when the incident opened: a reload
    /// never reshapes an escalation in flight.
    pub policy: String,
    pub escalation: EscalationPolicy,
    pub source: Source,
    pub summary: String,
    pub description: Option<String>,
    pub labels: Labels,
    /// The latest alert's raw details, for templates.
    pub details: serde_json::Value,
    /// The latest state the source reported.
    pub alert_status: AlertStatus,
    /// Alerts folded into this incident.
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The source's time of the latest state change applied (orders out-of-order deliveries).
    pub last_change: DateTime<Utc>,
    /// When vigil opened it: the anchor of every escalation deadline.
    pub opened_at: DateTime<Utc>,
    /// The next step to fire: loop number and index into `escalation.steps`.
    pub loop_: u32,
    pub step: u32,
    /// When that step is due; `None` once the chain is exhausted or the incident is acked/resolved.
    pub next_due: Option<DateTime<Utc>>,
    pub acknowledged: Option<(Actor, DateTime<Utc>)>,
    pub resolved: Option<(Actor, DateTime<Utc>)>,
    /// Every (channel, person) this incident has paged, so acks and resolutions reach them too.
    pub notified: BTreeSet<(String, Option<String>)>,
    /// The instant escalation deadlines count from: `opened_at`, or later when the first page
    /// waits (business hours, a group window) or the chain was held (silence, inhibition) or
    /// restarted (an ack that ran out). `None` in records written before it existed.
    #[serde(default)]
    pub anchor: Option<DateTime<Utc>>,
    /// An acknowledgement that runs out: at this instant the incident re-triggers.
    #[serde(default)]
    pub ack_until: Option<DateTime<Utc>>,
    /// The firing alerts (their own fingerprints) folded in; a grouped incident resolves when the
    /// last of them resolves.
    #[serde(default)]
    pub members: BTreeSet<String>,
    /// The silence or inhibiting incident currently holding the escalation back (so the timeline
    /// says so once, not at every check).
    #[serde(default)]
    pub held_by: Option<String>,
    /// The escalation step (loop, step) that reached no one: every delivery it made failed for
    /// good, or it found nobody to page. Cleared when the next step fires. While it is set on a
    /// critical incident, readiness fails, and the policy's `last_resort` channels were told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreached: Option<(u32, u32)>,
    /// The sender's time (`occurred_at`) of the alert that opened it: with the fingerprint, what
    /// names the incident the same way on the primary and its standby (ids are local). `None` in
    /// records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<DateTime<Utc>>,
    /// The pages the peer had fired for this incident but not yet delivered (rows in its
    /// outbox), as its feed last showed them: what this side sends if the peer goes silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_undelivered: Vec<PendingPage>,
    /// The drill window (its id) this incident opened inside: it pages as any other, every
    /// message says DRILL, and the response report keeps it apart from the promise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<String>,
}

impl Incident {
    /// See `anchor`.
    pub fn anchor(&self) -> DateTime<Utc> {
        self.anchor.unwrap_or(self.opened_at)
    }
}

/// What happened to an incident, when. The audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: TimelineEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// An alert opened the incident.
    Opened {
        rule: String,
        severity: Severity,
        policy: String,
        summary: String,
    },
    /// The incident opened inside a drill window: it pages normally, every message says DRILL,
    /// and the response report keeps it apart.
    Drill {
        window: String,
        comment: String,
        author: String,
    },
    /// An alert was folded into the open incident.
    Alert {
        status: AlertStatus,
        summary: String,
        occurred_at: DateTime<Utc>,
    },
    /// An alert older than the latest applied state change was ignored.
    StaleAlert {
        status: AlertStatus,
        occurred_at: DateTime<Utc>,
        newer: DateTime<Utc>,
    },
    /// The sender dated the alert further in the future than vigil believes (a clock running
    /// fast): it was ordered by the time vigil received it instead.
    FutureTimestamp {
        claimed: DateTime<Utc>,
        used: DateTime<Utc>,
    },
    /// A transport delivered an alert it had sent longer ago than it can still be retrying (an
    /// SNS Notification older than `sources.sns.max_age`): a replay, recorded, nobody paged and
    /// nothing changed.
    ReplayedAlert {
        status: AlertStatus,
        occurred_at: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    },
    /// The alert was not delivered to vigil: reconciliation found the alarm in this state when
    /// it read CloudWatch (`DescribeAlarms`), so its notification was lost (vigil was down, or
    /// SNS gave up).
    Reconciled {
        region: String,
        state: String,
        changed_at: DateTime<Utc>,
        /// In plain words: "found by reconciliation, not delivered".
        note: String,
    },
    /// The alert came from an SNS dead-letter queue: SNS gave up delivering it to vigil.
    DeadLetter {
        queue: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        /// In plain words: "delivered late, from SNS's dead-letter queue".
        note: String,
    },
    /// An escalation step fired.
    Escalated {
        #[serde(rename = "loop")]
        loop_: u32,
        step: u32,
        targets: Vec<String>,
        via: Vec<String>,
        /// The ids of the deliveries the step made, so that whether it reached anyone can be
        /// told from the timeline.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deliveries: Vec<String>,
    },
    /// Every delivery of an escalation step failed for good (or it found nobody to page):
    /// nobody was reached. The policy's `last_resort` channels are told.
    Unreached {
        #[serde(rename = "loop")]
        loop_: u32,
        step: u32,
        last_resort: Vec<String>,
    },
    /// A step named a schedule with nobody on call, or a person who no longer exists.
    NoTarget {
        step: u32,
        target: String,
    },
    /// The chain ran out of steps and repeats.
    Exhausted,
    /// The first page waits: business hours, or a group window collecting alerts.
    Deferred {
        until: DateTime<Utc>,
        reason: String,
    },
    /// A due step was held back: silenced, or inhibited by another open incident.
    Held {
        by: String,
        until: DateTime<Utc>,
    },
    /// A timed acknowledgement (or the policy's ack_timeout) ran out: escalation starts again.
    AckExpired,
    /// A flapping alarm came back within the cool-down: the same incident reopened.
    Reopened {
        resolved_at: DateTime<Utc>,
    },
    Acknowledged {
        by: String,
        origin: Origin,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<DateTime<Utc>>,
    },
    Resolved {
        by: String,
        origin: Origin,
    },
    /// A critical page failed for good on PagerDuty: the same people are paged directly.
    Failover {
        from: String,
        to: Vec<String>,
        people: Vec<String>,
        /// The ids of the direct deliveries it made.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deliveries: Vec<String>,
    },
    /// The peer (primary or standby) fired escalation steps up to here: this side moved its
    /// escalation on to match, without paging.
    PeerFired {
        #[serde(rename = "loop")]
        loop_: u32,
        step: u32,
        by: String,
    },
    /// The peer went silent with pages it had fired but not delivered: this side sent them.
    PeerResent {
        pages: usize,
        by: String,
    },
    /// The standby took over paging from its primary.
    Takeover {
        reason: String,
    },
    /// The active standby handed paging back to its primary.
    HandBack {
        by: String,
    },
    /// One delivery attempt and what came of it.
    Delivery {
        delivery: String,
        channel: String,
        kind: String,
        target: Option<String>,
        attempt: u32,
        outcome: DeliveryOutcome,
        detail: String,
        /// The provider's reference (Slack ts, SNS MessageId, PagerDuty dedup_key).
        reference: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Sent,
    Retrying,
    Failed,
    /// Not sent: the incident no longer needed it (acknowledged or resolved meanwhile).
    Skipped,
}

/// One message to one target on one channel for one incident event, persisted in the outbox in
/// the same transaction that decided it, and removed only once it is sent or has failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: ulid::Ulid,
    pub incident: IncidentId,
    pub kind: NotifyKind,
    /// The channel's name in `routing/`.
    pub channel: String,
    /// The person it is for (personal channels: sms, phone, email); `None` for a destination
    /// channel (a Slack channel, a webhook), which is told who the step targeted.
    pub target: Option<String>,
    /// Everyone the step targeted, for destination channels.
    pub people: Vec<String>,
    pub step: Option<(u32, u32)>,
    pub attempt: u32,
    pub not_before: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Delivery {
    pub fn new(
        incident: IncidentId,
        kind: NotifyKind,
        channel: &str,
        target: Option<String>,
        people: Vec<String>,
        step: Option<(u32, u32)>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: ulid::Ulid::from_parts(now.timestamp_millis().max(0) as u64, rand::random()),
            incident,
            kind,
            channel: channel.to_string(),
            target,
            people,
            step,
            attempt: 0,
            not_before: now,
            created_at: now,
        }
    }
}

/// One incident as a peer sees it (`GET /v1/peer/feed`): what the other side needs to follow
/// this side's escalation. Matched by `fingerprint` and `opened_by`, never by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentSync {
    pub fingerprint: Fingerprint,
    pub opened_by: Option<DateTime<Utc>>,
    pub status: IncidentStatus,
    #[serde(rename = "loop")]
    pub loop_: u32,
    pub step: u32,
    pub next_due: Option<DateTime<Utc>>,
    pub acknowledged: Option<SyncActor>,
    pub ack_until: Option<DateTime<Utc>>,
    pub resolved: Option<SyncActor>,
    pub summary: String,
    pub severity: Severity,
    pub source: Source,
    pub labels: Labels,
    /// Pages fired for it that are still in the sender's outbox (sent with retries pending, or
    /// not yet tried): what the other side sends in its place if this side goes silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undelivered: Vec<PendingPage>,
}

/// A page one side fired but has not delivered yet, as the peer feed carries it: enough to
/// send it again through the other side's channels (the incident is the other side's own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PendingPage {
    pub kind: NotifyKind,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<(u32, u32)>,
}

impl PendingPage {
    pub fn of(d: &Delivery) -> Self {
        Self {
            kind: d.kind,
            channel: d.channel.clone(),
            target: d.target.clone(),
            people: d.people.clone(),
            step: d.step,
        }
    }
}

/// Who acknowledged or resolved, and when, in the peer feed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncActor {
    pub by: String,
    pub at: DateTime<Utc>,
}

impl IncidentSync {
    pub fn of(inc: &Incident) -> Self {
        let actor = |a: &Option<(Actor, DateTime<Utc>)>| {
            a.as_ref().map(|(who, at)| SyncActor {
                by: who.who.clone(),
                at: *at,
            })
        };
        Self {
            fingerprint: inc.fingerprint.clone(),
            opened_by: inc.opened_by,
            status: inc.status,
            loop_: inc.loop_,
            step: inc.step,
            next_due: inc.next_due,
            acknowledged: actor(&inc.acknowledged),
            ack_until: inc.ack_until,
            resolved: actor(&inc.resolved),
            summary: inc.summary.clone(),
            severity: inc.severity,
            source: inc.source,
            labels: inc.labels.clone(),
            undelivered: Vec::new(),
        }
    }
}

//! Test notifications (`POST /v1/test-notifications`, `vigil notify-test`): the recovery
//! checklist's "Notifications working" in one request. In: the channels and people asked for
//! (or every channel, and whoever is on call). Out: one row per channel and person, sent with
//! the provider's reference or the exact failure.
//!
//! A test is about no incident: it opens none, escalates nothing and never enters the outbox.
//! Each message is rendered from the `test` templates (`templates/<type>/test.txt`, else
//! `templates/default/test.txt`), marked TEST, and sent once, directly, bounded by the channel's
//! timeout ([`super::ChannelSettings::http_timeout`]): a retry would hide the very failure the
//! test is for. At most [`MAX_TEST_SENDS`] sends per request.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::render::{RenderContext, Templates};
use super::worker::recipient_named;
use super::{Notification, Notifiers, NotifyError, Recipient};
use crate::config::Policy;
use crate::domain::{IncidentId, Severity};
use crate::incident::{IncidentStatus, NotifyKind};

/// Most sends one test request makes (channels × people); a request that needs more is
/// refused, naming how many it would make.
pub const MAX_TEST_SENDS: usize = 50;

/// One send a test will make: a channel, and the person for a personal channel (`None` for a
/// destination told once, such as a Slack channel or PagerDuty service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSend {
    pub channel: String,
    pub person: Option<String>,
    /// Everyone the test is for (what a destination channel is told).
    pub people: Vec<String>,
}

/// Why a test request cannot be planned: a name not in `routing/`, or too many sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("channels: {0:?} is not a channel in routing/")]
    UnknownChannel(String),
    #[error("people: {0:?} is not a person in routing/")]
    UnknownPerson(String),
    #[error(
        "this test would make {0} sends; at most {MAX_TEST_SENDS} per request (name fewer channels or people)"
    )]
    TooMany(usize),
}

/// What came of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    /// The provider accepted it.
    Sent,
    /// The provider refused it, did not answer in time, or the channel is unavailable.
    Failed,
    /// Not tried: there was nobody to send it to.
    Skipped,
}

/// One row of a test's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSend {
    pub channel: String,
    /// The channel's type (`slack`, `sms`, ...).
    #[serde(rename = "type")]
    pub channel_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    pub outcome: TestOutcome,
    /// The provider's reference (Slack `channel:ts`, SNS MessageId, PagerDuty dedup key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The exact failure, as the channel reported it (never a secret or a phone number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Plans the sends of a test: `channels` (empty = every channel of the policy), each personal
/// channel to every one of `people` (empty = `on_call`, who is on call now), each destination
/// once. A personal channel with nobody to send to is planned as one send without a person,
/// answered [`TestOutcome::Skipped`].
pub fn plan(
    policy: &Policy,
    channels: &[String],
    people: &[String],
    on_call: &[String],
) -> Result<Vec<PlannedSend>, PlanError> {
    for c in channels {
        if !policy.channels.contains_key(c) {
            return Err(PlanError::UnknownChannel(c.clone()));
        }
    }
    for p in people {
        if !policy.people.contains_key(p) {
            return Err(PlanError::UnknownPerson(p.clone()));
        }
    }
    let mut who: Vec<String> = if people.is_empty() {
        on_call.to_vec()
    } else {
        people.to_vec()
    };
    who.dedup();
    let names: Vec<&String> = if channels.is_empty() {
        policy.channels.keys().collect()
    } else {
        let mut v: Vec<&String> = channels.iter().collect();
        v.dedup();
        v
    };
    let mut out = Vec::new();
    for name in names {
        let spec = &policy.channels[name];
        if spec.is_personal() && !who.is_empty() {
            out.extend(who.iter().map(|p| PlannedSend {
                channel: name.clone(),
                person: Some(p.clone()),
                people: who.clone(),
            }));
        } else {
            out.push(PlannedSend {
                channel: name.clone(),
                person: None,
                people: who.clone(),
            });
        }
    }
    if out.len() > MAX_TEST_SENDS {
        return Err(PlanError::TooMany(out.len()));
    }
    Ok(out)
}

/// Sends every planned message at once, each bounded by `timeout`, and answers one row per
/// send in plan order. `test_id` names the test in every message (and is PagerDuty's dedup key).
pub async fn send_all(
    plan: &[PlannedSend],
    policy: &Policy,
    notifiers: &Notifiers,
    templates: &Templates,
    timeout: Duration,
    now: DateTime<Utc>,
    test_id: IncidentId,
) -> Vec<TestSend> {
    let sends = plan
        .iter()
        .map(|p| send_one(p, policy, notifiers, templates, timeout, now, test_id));
    futures::future::join_all(sends).await
}

async fn send_one(
    planned: &PlannedSend,
    policy: &Policy,
    notifiers: &Notifiers,
    templates: &Templates,
    timeout: Duration,
    now: DateTime<Utc>,
    test_id: IncidentId,
) -> TestSend {
    let spec = &policy.channels[&planned.channel];
    let mut row = TestSend {
        channel: planned.channel.clone(),
        channel_type: spec.kind().to_string(),
        person: planned.person.clone(),
        outcome: TestOutcome::Failed,
        reference: None,
        error: None,
    };
    if spec.is_personal() && planned.person.is_none() {
        row.outcome = TestOutcome::Skipped;
        row.error = Some("nobody to send it to: no people named and nobody is on call".into());
        return row;
    }
    let notifier = match notifiers.get(&planned.channel) {
        Ok(n) => n.clone(),
        Err(reason) => {
            row.error = Some(format!("channel unavailable: {reason}"));
            return row;
        }
    };
    let msg = message(planned, policy, templates, notifier.kind(), now, test_id);
    match tokio::time::timeout(timeout, notifier.send(&msg)).await {
        Ok(Ok(receipt)) => {
            row.outcome = TestOutcome::Sent;
            row.reference = receipt.reference;
        }
        Ok(Err(NotifyError::Permanent { reason })) => row.error = Some(reason),
        Ok(Err(NotifyError::Transient { reason, .. })) => {
            row.error = Some(format!("{reason} (not retried: this is a test)"))
        }
        Err(_) => row.error = Some(format!("no answer within {timeout:?}")),
    }
    row
}

/// The test message for one send, rendered from the `test` templates.
fn message(
    planned: &PlannedSend,
    policy: &Policy,
    templates: &Templates,
    channel_type: &str,
    now: DateTime<Utc>,
    test_id: IncidentId,
) -> Notification {
    let recipient = |id: &String| recipient_named(policy, id);
    let to = planned.person.as_ref().map(recipient);
    let people: Vec<Recipient> = if planned.person.is_some() {
        Vec::new()
    } else {
        planned.people.iter().map(recipient).collect()
    };
    let summary = "TEST notification from vigil: no action needed".to_string();
    let labels: BTreeMap<String, String> = [("test".to_string(), "true".to_string())].into();
    let ctx = RenderContext {
        kind: NotifyKind::Test.as_str().to_string(),
        incident: test_id.to_string(),
        severity: Severity::Low.to_string(),
        status: IncidentStatus::Triggered.as_str().to_string(),
        summary: summary.clone(),
        description: None,
        labels: labels.clone(),
        count: 1,
        opened_at: now.format("%Y-%m-%d %H:%M UTC").to_string(),
        step: None,
        people: people.iter().map(|p| p.name.clone()).collect(),
        recipient: to.as_ref().map(|r| r.name.clone()),
        by: None,
        link: None,
        ack_url: None,
        channel: planned.channel.clone(),
        drill: false,
    };
    let rendered = templates.render(channel_type, NotifyKind::Test, &ctx);
    Notification {
        delivery_id: test_id.to_string(),
        incident: test_id,
        kind: NotifyKind::Test,
        status: IncidentStatus::Triggered,
        severity: Severity::Low,
        summary,
        description: None,
        labels,
        channel: planned.channel.clone(),
        recipient: to,
        people,
        step: None,
        count: 1,
        opened_at: now,
        by: None,
        link: None,
        attempt: 1,
        now,
        text: rendered.text,
        subject: rendered.subject,
        html: rendered.html,
        ack_url: None,
        reference: None,
        drill: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_dir;
    use crate::config::tests_support::shipped_routing_dir;

    #[test]
    fn a_plan_sends_personal_channels_per_person_and_destinations_once_within_the_bound() {
        let policy = load_dir(&shipped_routing_dir()).expect("the shipped policy loads");
        let person = policy.people.keys().next().unwrap().clone();
        let personal = policy
            .channels
            .iter()
            .find(|(_, c)| c.is_personal())
            .map(|(n, _)| n.clone())
            .unwrap();
        let destination = policy
            .channels
            .iter()
            .find(|(_, c)| !c.is_personal())
            .map(|(n, _)| n.clone())
            .unwrap();
        let two = vec![person.clone(), policy.people.keys().nth(1).unwrap().clone()];
        let p = plan(&policy, &[personal.clone(), destination.clone()], &two, &[]).unwrap();
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[2].person, None);
        assert_eq!(p[2].people, two);
        assert_eq!(
            plan(&policy, &["nope".into()], &[], &[]),
            Err(PlanError::UnknownChannel("nope".into()))
        );
        assert_eq!(
            plan(&policy, &[], &["nobody".into()], &[]),
            Err(PlanError::UnknownPerson("nobody".into()))
        );
        let everyone: Vec<String> = policy.people.keys().cloned().collect();
        let personal_channels = policy.channels.values().filter(|c| c.is_personal()).count();
        let all = plan(&policy, &[], &everyone, &[]);
        if personal_channels * everyone.len() > MAX_TEST_SENDS {
            assert!(matches!(all, Err(PlanError::TooMany(_))), "{all:?}");
        } else {
            assert!(all.is_ok());
        }
    }
}

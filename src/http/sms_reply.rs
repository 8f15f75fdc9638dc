//! Acknowledging by SMS reply. Every SMS page names its incident by a short code
//! (`IncidentId::short_code`, `#0Y1A`); the person texts back, AWS End User Messaging two-way SMS
//! publishes the text to an SNS topic vigil is subscribed to, and the SNS endpoint, once the
//! signature, the topic's allow-listing and the replay window are checked as for any
//! Notification, hands an inbound-SMS `Message` here instead of ingesting it as an alert.
//!
//! The sender is matched to a person of `routing/` by phone number: a number no person has
//! changes nothing and is answered nothing (only logged, redacted). A known sender's text is read
//! by `ingest::sms_reply::parse_command`: `ACK <code>` acknowledges, `ACK` alone the newest open
//! incident paged to that person's phone (by SMS or call), `ACK <code> 1h` for an hour (then it
//! re-triggers), `RES <code>` resolves. The incident's timeline records the person with origin
//! `sms` ("via SMS"). The person gets one SMS back through the policy's `sms` channel: the
//! confirmation ("ACK #0Y1A by Mei Tan: Chen Tao will not be paged.") or what went wrong ("#0Y1A
//! is already resolved.", "No open incident #0Y1B."). STOP, HELP and the other opt-out keywords
//! are AWS's: nothing is done and nothing sent.
//!
//! A text is taken once: a repeated `inboundMessageId` (or SNS MessageId) within the last
//! [`SEEN_KEPT`] texts is answered as a duplicate, without a second SMS. The memory is this
//! process's; a redelivery after a restart acts again, which for an ack or resolve only repeats
//! the "already" answer.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::config::{Person, Policy, Reach};
use crate::domain::IncidentId;
use crate::incident::transition::AckResult;
use crate::incident::{Actor, Incident, IncidentStatus, NotifyKind, Origin};
use crate::ingest::sms_reply::{Command, InboundSms, parse_command};
use crate::notify::{Notification, Recipient};
use crate::pipeline::ServiceError;
use crate::pipeline::operator::Listing;

/// The channel type that pages by SMS and answers replies: two-way SMS is that type's feature.
const SMS: &str = "sms";
/// How many recent texts are remembered to drop duplicates.
pub const SEEN_KEPT: usize = 4096;
/// How many incidents a reply's code is looked for among (newest first, per status).
const LOOKED_AT: usize = 1000;

/// The texts already taken (the confirmation goes out through the `sms` channel's notifier in
/// `Shared::notifiers`).
#[derive(Default)]
pub struct SmsReplies {
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl SmsReplies {
    /// Records `id`; `false` when it was seen already.
    fn first_time(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *seen;
        if !set.insert(id.to_string()) {
            return false;
        }
        order.push_back(id.to_string());
        if order.len() > SEEN_KEPT
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

/// What a reply did, for the HTTP answer (SNS only looks at the status) and the log.
struct Outcome {
    /// `acknowledged`, `resolved`, `refused`, `ignored`, `duplicate`.
    result: &'static str,
    incident: Option<IncidentId>,
    /// The SMS sent back, if any.
    answer: Option<String>,
}

/// Takes one inbound SMS (already verified and allowed; `message_id` the SNS MessageId).
pub(super) async fn take(
    s: &AppState,
    sms: InboundSms,
    message_id: &str,
) -> Result<Value, ApiError> {
    let key = sms.inbound_message_id.as_deref().unwrap_or(message_id);
    if !s.sms_replies.first_time(key) {
        return Ok(json!({ "sms_reply": "duplicate" }));
    }
    let policy = s.policy.current();
    let Some(person) = policy
        .people
        .values()
        .find(|p| p.phone.as_ref() == Some(&sms.from))
    else {
        tracing::warn!(from = %sms.from.redacted(), "SMS reply from a number no person in routing/ has: ignored.");
        return Ok(json!({
            "sms_reply": "ignored",
            "detail": "the sender's number belongs to no person in routing/; nothing changed",
        }));
    };
    let outcome = act(s, &policy, person, &sms.body).await?;
    let mut sent = Value::Null;
    if let Some(text) = &outcome.answer {
        sent = match confirm(s, &policy, person, outcome.incident, text).await {
            Ok(()) => json!("sent"),
            Err(reason) => {
                tracing::error!(person = %person.id, reason = %reason, "The SMS answering a reply could not be sent.");
                json!(format!("not sent: {reason}"))
            }
        };
    }
    tracing::info!(person = %person.id, result = outcome.result, incident.id = ?outcome.incident, "SMS reply taken.");
    Ok(json!({
        "sms_reply": outcome.result,
        "incident": outcome.incident,
        "answer": outcome.answer,
        "answer_sms": sent,
    }))
}

/// Does what the text asks, as `person`.
async fn act(
    s: &AppState,
    policy: &Policy,
    person: &Person,
    body: &str,
) -> Result<Outcome, ApiError> {
    let refused = |incident, text: String| Outcome {
        result: "refused",
        incident,
        answer: Some(text),
    };
    let actor = Actor {
        who: person.name.clone(),
        origin: Origin::Sms,
    };
    match parse_command(body) {
        Command::ServiceKeyword => Ok(Outcome {
            result: "ignored",
            incident: None,
            answer: None,
        }),
        Command::Unknown(why) => Ok(refused(
            None,
            format!("Not understood: {why}. Reply ACK <code>, ACK <code> 1h or RES <code>."),
        )),
        Command::Ack { code, for_ } => {
            let found = match &code {
                Some(code) => find(s, policy, person, code).await?,
                None => newest_paged(s, policy, person).await?.ok_or_else(|| {
                    "No open incident was paged to your phone. Reply ACK <code>.".to_string()
                }),
            };
            let inc = match found {
                Ok(inc) => inc,
                Err(text) => return Ok(refused(None, text)),
            };
            let code = inc.id.short_code();
            let until = for_
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| s.clock.now() + d);
            match s.service.acknowledge(inc.id, actor, until).await {
                Ok((AckResult::Acknowledged, inc)) => Ok(Outcome {
                    result: "acknowledged",
                    incident: Some(inc.id),
                    answer: Some(acknowledged_text(
                        policy,
                        &inc,
                        person,
                        until,
                        s.clock.now(),
                    )),
                }),
                Ok((AckResult::AlreadyAcknowledged, inc)) => {
                    let by = inc
                        .acknowledged
                        .as_ref()
                        .map(|(a, _)| format!(" by {}", a.who))
                        .unwrap_or_default();
                    Ok(refused(
                        Some(inc.id),
                        format!("#{code} is already acknowledged{by}."),
                    ))
                }
                Ok((AckResult::AlreadyResolved, inc)) => Ok(refused(
                    Some(inc.id),
                    format!("#{code} is already resolved."),
                )),
                Err(ServiceError::NotFound) => Ok(refused(None, format!("No incident #{code}."))),
                Err(e) => Err(e.into()),
            }
        }
        Command::Resolve { code } => {
            let inc = match find(s, policy, person, &code).await? {
                Ok(inc) => inc,
                Err(text) => return Ok(refused(None, text)),
            };
            let code = inc.id.short_code();
            match s.service.resolve(inc.id, actor).await {
                Ok(inc) => Ok(Outcome {
                    result: "resolved",
                    incident: Some(inc.id),
                    answer: Some(format!(
                        "RESOLVED #{code} by {}: {}",
                        person.name, inc.summary
                    )),
                }),
                Err(ServiceError::AlreadyResolved) => Ok(refused(
                    Some(inc.id),
                    format!("#{code} is already resolved."),
                )),
                Err(ServiceError::NotFound) => Ok(refused(None, format!("No incident #{code}."))),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// The incident `code` names: among the open ones (those paged to `person` first, should two
/// share the code), else a resolved one (so the answer can say so). `Err` is the text to send.
async fn find(
    s: &AppState,
    policy: &Policy,
    person: &Person,
    code: &str,
) -> Result<Result<Incident, String>, ApiError> {
    let shown = code.trim_start_matches('#').to_ascii_uppercase();
    let open: Vec<Incident> = s
        .service
        .list(Listing::Open, LOOKED_AT)
        .await?
        .into_iter()
        .filter(|i| i.id.has_code(code))
        .collect();
    let mine: Vec<&Incident> = open
        .iter()
        .filter(|i| paged_by_sms(policy, i, person))
        .collect();
    let pick = match (open.len(), mine.len()) {
        (1, _) => Some(&open[0]),
        (_, 1) => Some(mine[0]),
        (0, _) => None,
        (n, _) => {
            return Ok(Err(format!(
                "#{shown} names {n} open incidents: reply with more of its id \
                 (e.g. ACK {}) or use the link.",
                open[0].id.to_string()[20..].to_owned()
            )));
        }
    };
    if let Some(inc) = pick {
        return Ok(Ok(inc.clone()));
    }
    let resolved = s
        .service
        .list(Listing::Only(IncidentStatus::Resolved), LOOKED_AT)
        .await?;
    Ok(match resolved.into_iter().find(|i| i.id.has_code(code)) {
        Some(inc) => Ok(inc),
        None => Err(format!("No open incident #{shown}.")),
    })
}

/// The newest open incident paged to `person`'s phone.
async fn newest_paged(
    s: &AppState,
    policy: &Policy,
    person: &Person,
) -> Result<Option<Incident>, ApiError> {
    Ok(s.service
        .list(Listing::Open, LOOKED_AT)
        .await?
        .into_iter()
        .filter(|i| paged_by_sms(policy, i, person))
        .max_by_key(|i| i.id))
}

/// Whether `inc` paged `person` at their phone (an `sms` text or a `phone` call: any channel
/// type that reaches a person's number).
fn paged_by_sms(policy: &Policy, inc: &Incident, person: &Person) -> bool {
    inc.notified.iter().any(|(channel, who)| {
        who.as_deref() == Some(person.id.as_str())
            && policy
                .channels
                .get(channel)
                .is_some_and(|spec| spec.channel_type().reach == Reach::PhonePerPerson)
    })
}

/// "ACK #0Y1A by Mei Tan: Chen Tao will not be paged." (the next step's people), with the
/// timed ack's end when there is one.
fn acknowledged_text(
    policy: &Policy,
    inc: &Incident,
    person: &Person,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let code = inc.id.short_code();
    let next: Vec<String> = inc
        .escalation
        .steps
        .get(inc.step as usize)
        .map(|step| {
            policy
                .resolve_targets(&step.targets, now)
                .into_iter()
                .filter(|p| p.id != person.id)
                .map(|p| p.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let what = if next.is_empty() {
        "escalation stopped".to_string()
    } else {
        format!("{} will not be paged", next.join(", "))
    };
    match until {
        Some(t) => format!(
            "ACK #{code} by {} until {}: {what}; it pages again then unless resolved.",
            person.name,
            t.with_timezone(&policy.timezone).format("%H:%M")
        ),
        None => format!("ACK #{code} by {}: {what}.", person.name),
    }
}

/// Sends `text` to `person` through the policy's `sms` channel (the first by name: there is
/// normally one).
async fn confirm(
    s: &AppState,
    policy: &Policy,
    person: &Person,
    incident: Option<IncidentId>,
    text: &str,
) -> Result<(), String> {
    let channel = policy
        .channels
        .iter()
        .find(|(_, spec)| spec.kind() == SMS)
        .map(|(name, _)| name.clone())
        .ok_or("routing/ has no sms channel to answer through")?;
    let notifiers = s.notifiers.load();
    let notifier = notifiers.get(&channel)?;
    let now = s.clock.now();
    let msg = Notification {
        delivery_id: format!("sms-reply-{}", ulid::Ulid::new()),
        // An answer about no incident still needs an id; nothing shows it.
        incident: incident.unwrap_or_else(|| IncidentId::new(now)),
        kind: NotifyKind::Acknowledged,
        status: IncidentStatus::Acknowledged,
        severity: crate::domain::Severity::Low,
        summary: text.to_string(),
        description: None,
        labels: Default::default(),
        channel,
        recipient: Some(Recipient {
            id: person.id.clone(),
            name: person.name.clone(),
            phone: person.phone.clone(),
            email: person.email.clone(),
            slack: person.slack.clone(),
        }),
        people: Vec::new(),
        step: None,
        count: 1,
        opened_at: now,
        by: Some(person.name.clone()),
        link: None,
        attempt: 1,
        now,
        text: text.to_string(),
        subject: None,
        html: None,
        ack_url: None,
        reference: None,
        drill: false,
    };
    notifier
        .send(&msg)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

//! `vigil simulate`: what the loaded policy would do with a payload, without touching a store or
//! sending anything. Prints the labels, the matched rule, the severity, the incident key and the
//! escalation plan as a timeline. The payload may be an SNS envelope (its signature is not checked
//! here), an EventBridge event (CloudWatch alarm, AWS Health, RDS), an Alertmanager webhook
//! notification, or a trading-bot event or batch; an SNS envelope carrying an inbound SMS reply
//! is described by [`sms_reply`] instead.
//!
//! `diff`: what changes between two policies for the same events (`vigil diff`).

pub mod diff;

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::classify::classify;
use crate::config::Policy;
use crate::domain::Alert;
use crate::ingest::{self, IngestError, SnsEnvelope, SnsMessage};

/// Parses any payload vigil ingests into alerts (none for an SMS reply to a page).
pub fn alerts_from_payload(body: &[u8], now: DateTime<Utc>) -> Result<Vec<Alert>, IngestError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| IngestError::Malformed(format!("not JSON: {e}")))?;
    if value.get("Type").is_some() && value.get("TopicArn").is_some() {
        let env = SnsEnvelope::parse(body)?;
        return match env.message {
            // A reply to an SMS page acts on an incident; it is no alert ([`sms_reply`]).
            SnsMessage::Notification { message, .. }
                if ingest::sms_reply::parse_inbound(&message).is_some() =>
            {
                Ok(Vec::new())
            }
            SnsMessage::Notification {
                topic_arn,
                subject,
                message,
                message_id,
                timestamp,
            } => Ok(vec![ingest::parse_notification(
                &topic_arn,
                subject.as_deref(),
                &message,
                &message_id,
                &timestamp,
                now,
            )]),
            other => Err(IngestError::Malformed(format!(
                "an SNS {} carries no alarm",
                other.type_name()
            ))),
        };
    }
    if value.get("detail-type").is_some() {
        return match ingest::parse_event(body)? {
            Some(a) => Ok(vec![a]),
            None => Err(IngestError::Malformed(
                "this EventBridge event is not a CloudWatch Alarm State Change, an AWS Health \
                 event or an RDS event"
                    .into(),
            )),
        };
    }
    if value.get("alerts").is_some() && value.get("groupKey").is_some() {
        return Ok(ingest::alertmanager::parse_webhook(body, now)?.alerts);
    }
    ingest::parse_events(body, now)
}

/// For an SNS envelope whose `Message` is an inbound SMS (a reply to a page): what vigil would
/// make of it, as text. `None` for any other payload.
pub fn sms_reply(policy: &Policy, body: &[u8]) -> Option<String> {
    use crate::ingest::sms_reply::{Command, parse_command, parse_inbound};
    let env = SnsEnvelope::parse(body).ok()?;
    let SnsMessage::Notification { message, .. } = &env.message else {
        return None;
    };
    let mut out = String::new();
    let sms = match parse_inbound(message)? {
        Ok(sms) => sms,
        Err(e) => {
            let _ = writeln!(out, "inbound SMS:  refused ({e})");
            return Some(out);
        }
    };
    let _ = writeln!(
        out,
        "inbound SMS:  from {}: {:?}",
        sms.from.redacted(),
        sms.body
    );
    let person = policy
        .people
        .values()
        .find(|p| p.phone.as_ref() == Some(&sms.from));
    let _ = match person {
        Some(p) => writeln!(out, "sender:       {} ({})", p.name, p.id),
        None => writeln!(
            out,
            "sender:       no person has this number: nothing changes"
        ),
    };
    let _ = match parse_command(&sms.body) {
        Command::Ack { code, for_ } => writeln!(
            out,
            "command:      acknowledge {}{}",
            code.map_or(
                "the newest incident paged to the sender".to_string(),
                |c| format!("incident #{c}")
            ),
            for_.map(|d| format!(" for {}", humantime::format_duration(d)))
                .unwrap_or_default()
        ),
        Command::Resolve { code } => writeln!(out, "command:      resolve incident #{code}"),
        Command::ServiceKeyword => writeln!(
            out,
            "command:      none (STOP/HELP are answered by AWS End User Messaging)"
        ),
        Command::Unknown(why) => writeln!(out, "command:      not understood ({why})"),
    };
    Some(out)
}

impl PlannedStep {
    /// Whom the step pages, as people read it: `Mei Tan (schedule primary); person cto: nobody`.
    pub fn people(&self) -> String {
        self.targets
            .iter()
            .map(|(t, who)| {
                if who.is_empty() {
                    format!("{t}: nobody")
                } else {
                    format!("{} ({t})", who.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What the policy does with one alert at one instant: the decision `report` prints and
/// `diff` compares.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub summary: String,
    pub status: crate::domain::AlertStatus,
    /// The labels after classification.
    pub labels: crate::domain::Labels,
    pub rule: String,
    pub severity: crate::domain::Severity,
    /// The severity came from the event (a rule honoured its `severity`).
    pub severity_overridden: bool,
    pub respond_within: Option<std::time::Duration>,
    pub fingerprint: String,
    /// The escalation policy's name.
    pub policy: String,
    pub effect: Effect,
}

/// What the alert sets going.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// The escalation policy named by the rule is not in the policy.
    MissingPolicy,
    /// A `trading_resumed`: resolves every open `trading_halted` incident.
    ResolvesHalts,
    /// A resolve: closes the open incident, if any.
    Resolves,
    /// Opens (or folds into) an incident and pages by the plan.
    Pages(Box<Plan>),
}

/// When and whom an incident pages.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The routing/ silence holding it: (id, end, author, comment).
    pub silenced: Option<(String, DateTime<Utc>, String, String)>,
    /// Summaries of the open alerts (`--open`) that inhibit it.
    pub inhibited_by: Vec<String>,
    /// The rule's `group_by` and window, when the first page waits for alerts to fold in.
    pub grouping: Option<(Vec<String>, std::time::Duration)>,
    /// When the first page waits for business hours, until when.
    pub deferred_until: Option<DateTime<Utc>>,
    /// When the escalation starts.
    pub start: DateTime<Utc>,
    pub steps: Vec<PlannedStep>,
    pub ack_timeout: Option<std::time::Duration>,
}

/// One step of the plan as it would fire.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub due: DateTime<Utc>,
    /// How long after the alert (`at`) it fires.
    pub offset: std::time::Duration,
    pub loop_: u32,
    /// 0-based.
    pub step: u32,
    /// Each target (`schedule primary`, `person cto`) with the names of the people it resolves
    /// to when the step fires (empty: nobody).
    pub targets: Vec<(String, Vec<String>)>,
    pub via: Vec<String>,
}

/// What `policy` does with `alert` at `at`, given alerts assumed already open (`open`, for
/// inhibition).
pub fn outcome(policy: &Policy, alert: &Alert, at: DateTime<Utc>, open: &[Alert]) -> Outcome {
    let cls = classify(policy, alert);
    let mut out = Outcome {
        summary: alert.summary.clone(),
        status: alert.status,
        labels: cls.labels.clone(),
        rule: cls.rule.clone(),
        severity: cls.severity,
        severity_overridden: cls.severity_overridden,
        respond_within: policy
            .severities
            .get(&cls.severity)
            .map(|s| s.respond_within),
        fingerprint: cls.fingerprint.to_string(),
        policy: cls.policy.clone(),
        effect: Effect::MissingPolicy,
    };
    let Some(esc) = policy.policies.get(&cls.policy) else {
        return out;
    };
    if alert.labels.get("kind").map(String::as_str)
        == Some(crate::pipeline::service::TRADING_RESUMED)
    {
        out.effect = Effect::ResolvesHalts;
        return out;
    }
    if alert.status == crate::domain::AlertStatus::Resolved {
        out.effect = Effect::Resolves;
        return out;
    }
    let silenced = policy
        .silenced_by(&cls.labels, at, &[])
        .map(|s| (s.id.clone(), s.end, s.author.clone(), s.comment.clone()));
    let inhibited_by = open
        .iter()
        .filter(|source| policy.inhibits(&classify(policy, source).labels, &cls.labels))
        .map(|source| source.summary.clone())
        .collect();
    // The first page waits for a group window, then for business hours.
    let window = cls.group_window.unwrap_or_default();
    let grouping = (!window.is_zero()).then(|| {
        let group_by = policy
            .rules
            .iter()
            .find(|r| r.name == cls.rule)
            .map(|r| r.group_by.clone())
            .unwrap_or_default();
        (group_by, window)
    });
    let collected = crate::clock::after(at, window);
    let start = policy.notify_at(cls.severity, collected);
    let steps = esc
        .plan(start)
        .into_iter()
        .map(|(due, l, s)| {
            let step = &esc.steps[s as usize];
            PlannedStep {
                due,
                offset: (due - at).to_std().unwrap_or_default(),
                loop_: l,
                step: s,
                targets: step
                    .targets
                    .iter()
                    .map(|t| {
                        let who = policy
                            .resolve_targets(std::slice::from_ref(t), due)
                            .iter()
                            .map(|p| p.name.clone())
                            .collect();
                        (t.to_string(), who)
                    })
                    .collect(),
                via: step.via.clone(),
            }
        })
        .collect();
    out.effect = Effect::Pages(Box::new(Plan {
        silenced,
        inhibited_by,
        grouping,
        deferred_until: (start > collected).then_some(start),
        start,
        steps,
        ack_timeout: esc.ack_timeout,
    }));
    out
}

/// The report for one alert at instant `at`, given alerts assumed already open (`open`, for
/// inhibition).
pub fn report(policy: &Policy, alert: &Alert, at: DateTime<Utc>, open: &[Alert]) -> String {
    let o = outcome(policy, alert, at, open);
    let local = |t: DateTime<Utc>| t.with_timezone(&policy.timezone);
    let mut out = String::new();
    let _ = writeln!(out, "summary:      {}", o.summary);
    let _ = writeln!(out, "status:       {}", o.status.as_str());
    let _ = writeln!(out, "labels:");
    for (k, v) in &o.labels {
        let _ = writeln!(out, "  {k} = {v}");
    }
    let _ = writeln!(out, "rule:         {}", o.rule);
    let respond = o
        .respond_within
        .map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "severity:     {}{} (respond within {respond})",
        o.severity,
        if o.severity_overridden {
            ", set by the event"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "incident key: {}", o.fingerprint);
    let plan = match &o.effect {
        Effect::MissingPolicy => {
            let _ = writeln!(out, "policy {} is missing", o.policy);
            return out;
        }
        Effect::ResolvesHalts => {
            let _ = writeln!(
                out,
                "escalation:   none (resolves every open {} incident and tells everyone it paged)",
                crate::pipeline::service::TRADING_HALTED
            );
            return out;
        }
        Effect::Resolves => {
            let _ = writeln!(
                out,
                "escalation:   none (a resolve closes the open incident, if any)"
            );
            return out;
        }
        Effect::Pages(plan) => plan,
    };
    if let Some((id, end, author, comment)) = &plan.silenced {
        let _ = writeln!(
            out,
            "silenced:     by {id} until {} ({author}: {comment}); the incident opens, nobody is paged until then",
            local(*end).format("%a %Y-%m-%d %H:%M"),
        );
    }
    for source in &plan.inhibited_by {
        let _ = writeln!(
            out,
            "inhibited:    by the open \"{source}\"; nobody is paged while it is open"
        );
    }
    if let Some((group_by, window)) = &plan.grouping {
        let _ = writeln!(
            out,
            "grouping:     alerts with the same {group_by:?} fold in for {} before the first page",
            humantime::format_duration(*window)
        );
    }
    if let Some(until) = plan.deferred_until {
        let _ = writeln!(
            out,
            "deferred:     outside business hours; the first page waits until {}",
            local(until).format("%a %Y-%m-%d %H:%M")
        );
    }
    let _ = writeln!(
        out,
        "escalation:   policy {} from {} ({})",
        o.policy,
        local(plan.start).format("%a %Y-%m-%d %H:%M"),
        policy.timezone
    );
    for step in &plan.steps {
        let _ = writeln!(
            out,
            "  +{:<8} {}  loop {} step {}  {}  via {}",
            humantime::format_duration(step.offset).to_string(),
            local(step.due).format("%a %H:%M"),
            step.loop_,
            step.step + 1,
            step.people(),
            step.via.join(", ")
        );
    }
    match plan.ack_timeout {
        Some(t) => {
            let _ = writeln!(
                out,
                "  (stops at the first acknowledgement or resolve; an ack not resolved within {} re-triggers)",
                humantime::format_duration(t)
            );
        }
        None => {
            let _ = writeln!(out, "  (stops at the first acknowledgement or resolve)");
        }
    }
    out
}

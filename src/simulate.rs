//! `vigil simulate`: what the loaded policy would do with a payload, without touching a store or
//! sending anything. Prints the labels, the matched rule, the severity, the incident key and the
//! escalation plan as a timeline. The payload may be an SNS envelope (its signature is not checked
//! here), an EventBridge event, or a trading-bot event or batch.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::classify::classify;
use crate::config::Policy;
use crate::domain::Alert;
use crate::ingest::{self, IngestError, SnsEnvelope, SnsMessage};

/// Parses any payload vigil ingests into alerts.
pub fn alerts_from_payload(body: &[u8], now: DateTime<Utc>) -> Result<Vec<Alert>, IngestError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| IngestError::Malformed(format!("not JSON: {e}")))?;
    if value.get("Type").is_some() && value.get("TopicArn").is_some() {
        let env = SnsEnvelope::parse(body)?;
        return match env.message {
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
                "this EventBridge event is not a CloudWatch Alarm State Change".into(),
            )),
        };
    }
    ingest::parse_events(body, now)
}

/// The report for one alert at instant `at`, given alerts assumed already open (`open`, for
/// inhibition).
pub fn report(policy: &Policy, alert: &Alert, at: DateTime<Utc>, open: &[Alert]) -> String {
    let mut out = String::new();
    let cls = classify(policy, alert);
    let _ = writeln!(out, "summary:      {}", alert.summary);
    let _ = writeln!(out, "status:       {}", alert.status.as_str());
    let _ = writeln!(out, "labels:");
    for (k, v) in &cls.labels {
        let _ = writeln!(out, "  {k} = {v}");
    }
    let _ = writeln!(out, "rule:         {}", cls.rule);
    let respond = policy
        .severities
        .get(&cls.severity)
        .map(|s| humantime::format_duration(s.respond_within).to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "severity:     {}{} (respond within {respond})",
        cls.severity,
        if cls.severity_overridden {
            ", set by the event"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "incident key: {}", cls.fingerprint);
    let Some(esc) = policy.policies.get(&cls.policy) else {
        let _ = writeln!(out, "policy {} is missing", cls.policy);
        return out;
    };
    if alert.labels.get("kind").map(String::as_str)
        == Some(crate::pipeline::service::TRADING_RESUMED)
    {
        let _ = writeln!(
            out,
            "escalation:   none (resolves every open {} incident and tells everyone it paged)",
            crate::pipeline::service::TRADING_HALTED
        );
        return out;
    }
    if alert.status == crate::domain::AlertStatus::Resolved {
        let _ = writeln!(
            out,
            "escalation:   none (a resolve closes the open incident, if any)"
        );
        return out;
    }
    if let Some(silence) = policy.silenced_by(&cls.labels, at, &[]) {
        let _ = writeln!(
            out,
            "silenced:     by {} until {} ({}: {}); the incident opens, nobody is paged until then",
            silence.id,
            silence
                .end
                .with_timezone(&policy.timezone)
                .format("%a %Y-%m-%d %H:%M"),
            silence.author,
            silence.comment
        );
    }
    for source in open {
        let source_labels = classify(policy, source).labels;
        if policy.inhibits(&source_labels, &cls.labels) {
            let _ = writeln!(
                out,
                "inhibited:    by the open \"{}\"; nobody is paged while it is open",
                source.summary
            );
        }
    }
    // The first page waits for a group window, then for business hours.
    let window = cls
        .group_window
        .and_then(|w| chrono::Duration::from_std(w).ok())
        .unwrap_or_default();
    if !window.is_zero() {
        let _ = writeln!(
            out,
            "grouping:     alerts with the same {:?} fold in for {} before the first page",
            policy
                .rules
                .iter()
                .find(|r| r.name == cls.rule)
                .map(|r| r.group_by.clone())
                .unwrap_or_default(),
            humantime::format_duration(window.to_std().unwrap_or_default())
        );
    }
    let collected = crate::clock::after(at, window.to_std().unwrap_or_default());
    let start = policy.notify_at(cls.severity, collected);
    if start > collected {
        let _ = writeln!(
            out,
            "deferred:     outside business hours; the first page waits until {}",
            start
                .with_timezone(&policy.timezone)
                .format("%a %Y-%m-%d %H:%M")
        );
    }
    let _ = writeln!(
        out,
        "escalation:   policy {} from {} ({})",
        cls.policy,
        start
            .with_timezone(&policy.timezone)
            .format("%a %Y-%m-%d %H:%M"),
        policy.timezone
    );
    for (due, l, s) in esc.plan(start) {
        let step = &esc.steps[s as usize];
        let people: Vec<String> = step
            .targets
            .iter()
            .map(|t| {
                let who: Vec<String> = policy
                    .resolve_targets(std::slice::from_ref(t), due)
                    .iter()
                    .map(|p| p.name.clone())
                    .collect();
                if who.is_empty() {
                    format!("{t}: nobody")
                } else {
                    format!("{} ({t})", who.join(", "))
                }
            })
            .collect();
        let offset = (due - at).to_std().unwrap_or_default();
        let _ = writeln!(
            out,
            "  +{:<8} {}  loop {} step {}  {}  via {}",
            humantime::format_duration(offset).to_string(),
            due.with_timezone(&policy.timezone).format("%a %H:%M"),
            l,
            s + 1,
            people.join("; "),
            step.via.join(", ")
        );
    }
    match esc.ack_timeout {
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

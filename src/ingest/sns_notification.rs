//! Ingest, any SNS Notification: the signed fields of a verified, allow-listed `Notification` in,
//! one [`Alert`] out, whatever its `Message` is.
//!
//! Comes in: the `TopicArn`, `Subject`, `Message`, `MessageId` and `Timestamp` of a
//! [`SnsMessage::Notification`] that [`verify`] accepted and whose topic is in
//! `sources.sns.allowed_topics`, plus `now`. Goes out:
//! - the CloudWatch alarm ([`parse_alarm`], with the topic's region as the fallback for a `Region`
//!   name no table knows) when the `Message` is one;
//! - an RDS event notification, the typed alert of `rds` (`kind=rds_event`);
//! - an ElastiCache notification, the typed alert of `elasticache` (`kind=elasticache_event`);
//! - otherwise a generic alert, `source=sns`, `kind=sns_notification`: plain text from
//!   `aws sns publish`, an S3 or SES notification, a person on the console.
//!   A topic on vigil's allow-list is an on-call topic: whatever was published to it was meant for
//!   someone, and refusing it (4xx) would make SNS drop it for good.
//!
//! A `Message` that claims to be an alarm (it has `NewStateValue`, `AlarmName` or `AlarmArn`) but
//! does not parse as one is taken as a generic alert too, with the reason in `details.parse_error`
//! and a warning in the log (the only log line of `ingest`): a page with the raw alarm in it is
//! better than a lost page, and the warning tells whoever maintains vigil that a shape changed.
//!
//! Never fails and never panics: every input gives an alert.
//!
//! [`SnsMessage::Notification`]: super::SnsMessage::Notification
//! [`verify`]: super::verify

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::cloudwatch::{has_alarm_markers, parse_alarm};
use super::sns::topic_region;
use super::{elasticache, rds};
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source};

/// The `kind` label of a Notification that is not a CloudWatch alarm.
pub const KIND: &str = "sns_notification";

/// A generic alert's summary (the Subject, or the message's first non-empty line) is cut to this
/// many characters. SNS caps a Subject at 100; a first line has no cap.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// A generic alert's description (the message) is cut to this many characters; `details` keeps
/// the whole message (SNS caps a message at 256 KiB).
pub const MAX_DESCRIPTION_CHARS: usize = 4096;

/// Appended to a summary or description that was cut.
const CUT: &str = "…";

/// The alert for one verified, allow-listed Notification. `timestamp` is the envelope's signed
/// `Timestamp` (RFC 3339); a generic alert happened then, or at `now` if it does not parse (the
/// caller's replay check refuses such a Timestamp anyway).
///
/// The generic alert's fingerprint is `sns/<TopicArn>/<16 hex digits of sha256(Subject "\n"
/// Message)>`: the same message published again folds into its open incident, a different one
/// opens its own. Its `delivery_id` is the `MessageId`, so a redelivery is a duplicate. It is
/// always firing: nothing ever resolves a notification but a person.
pub fn parse_notification(
    topic_arn: &str,
    subject: Option<&str>,
    message: &str,
    message_id: &str,
    timestamp: &str,
    now: DateTime<Utc>,
) -> Alert {
    let json: Option<Value> = serde_json::from_str(message).ok();
    let mut parse_error = None;
    if let Some(Value::Object(map)) = &json
        && has_alarm_markers(map)
    {
        match parse_alarm(
            message,
            Some(message_id.to_string()),
            topic_region(topic_arn),
        ) {
            Ok(alert) => return alert,
            Err(e) => {
                tracing::warn!(topic = topic_arn, message_id, error = %e, "SNS message looks like a CloudWatch alarm but does not parse as one: taken as a generic notification.");
                parse_error = Some(e.to_string());
            }
        }
    }

    if let Some(Value::Object(map)) = &json
        && parse_error.is_none()
    {
        let sent_at = DateTime::parse_from_rfc3339(timestamp)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        if rds::is_rds_message(map) {
            match rds::parse_sns(map, topic_arn, message_id, sent_at) {
                Ok(alert) => return alert,
                Err(e) => parse_error = Some(e.to_string()),
            }
        } else if let Some(alert) = elasticache::parse_sns(map, topic_arn, message_id, sent_at) {
            return alert;
        }
    }

    let details = match json {
        Some(Value::Object(mut map)) => {
            if let Some(e) = parse_error {
                map.insert("parse_error".into(), Value::String(e));
            }
            Value::Object(map)
        }
        _ => json!({ "message": message }),
    };
    let topic = TopicArn::parse(topic_arn);
    let summary = subject
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or_else(|| message.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(|s| cut(s, MAX_SUMMARY_CHARS))
        .unwrap_or_else(|| {
            let name = topic.map_or(topic_arn, |t| t.name);
            cut(&format!("SNS notification on {name}"), MAX_SUMMARY_CHARS)
        });
    let description = Some(message.trim())
        .filter(|m| !m.is_empty())
        .map(|m| cut(m, MAX_DESCRIPTION_CHARS));
    let occurred_at = DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);

    Alert {
        source: Source::Sns,
        fingerprint: fingerprint(topic_arn, subject, message),
        status: AlertStatus::Firing,
        summary,
        description,
        labels: labels(topic_arn, topic),
        details,
        occurred_at,
        delivery_id: Some(message_id.to_string()),
        severity_override: None,
    }
}

/// The parts of `arn:<partition>:sns:<region>:<account>:<name>`.
#[derive(Debug, Clone, Copy)]
struct TopicArn<'a> {
    region: &'a str,
    account: &'a str,
    name: &'a str,
}

impl<'a> TopicArn<'a> {
    fn parse(arn: &'a str) -> Option<Self> {
        let region = topic_region(arn)?;
        let mut parts = arn.splitn(6, ':').skip(4);
        Some(Self {
            region,
            account: parts.next()?,
            name: parts.next()?,
        })
    }
}

/// `source`, `kind`, `topic`, and when the TopicArn is one, `topic_name`, `region`, `account`.
fn labels(topic_arn: &str, topic: Option<TopicArn<'_>>) -> Labels {
    let mut labels = Labels::new();
    let mut put = |k: &str, v: &str| {
        labels.insert(k.to_string(), v.to_string());
    };
    put("source", Source::Sns.as_str());
    put("kind", KIND);
    put("topic", topic_arn);
    if let Some(t) = topic {
        put("topic_name", t.name);
        put("region", t.region);
        put("account", t.account);
    }
    labels
}

/// `sns/<topic>/<hash>`; `sns/<hash of the topic>/<hash>` should the topic not make a valid
/// fingerprint (too long, a control character: never for a verified TopicArn).
fn fingerprint(topic_arn: &str, subject: Option<&str>, message: &str) -> Fingerprint {
    let content = short_hash(&[subject.unwrap_or("").as_bytes(), b"\n", message.as_bytes()]);
    Fingerprint::parse(format!("sns/{topic_arn}/{content}")).unwrap_or_else(|_| {
        let topic = short_hash(&[topic_arn.as_bytes()]);
        Fingerprint::parse(format!("sns/{topic}/{content}"))
            .expect("invariant: an ASCII hex fingerprint of 37 bytes is valid")
    })
}

/// The first 8 bytes of the sha256 of the concatenated parts, as 16 lowercase hex digits.
pub(super) fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `s` cut to at most `max` characters (on a character boundary), `…` marking a cut.
pub(super) fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let keep = max.saturating_sub(CUT.chars().count());
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            format!("{}{CUT}", s[..end].trim_end())
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::ingest::sns::{SnsEnvelope, SnsMessage};
    use crate::ingest::testkit::{fixture, mutations};

    const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts";
    const TS: &str = "2026-11-20T02:15:41.452Z";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 2, 15, 45)
            .single()
            .expect("valid")
    }

    fn parse(subject: Option<&str>, message: &str) -> Alert {
        parse_notification(TOPIC, subject, message, "m-1", TS, now())
    }

    #[test]
    fn plain_text_becomes_a_firing_generic_alert() {
        let text = "\n\n  Deploy of trading-api v2.3.1 failed  \r\nrollback started";
        let alert = parse(None, text);
        assert_eq!(alert.source, Source::Sns);
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.summary, "Deploy of trading-api v2.3.1 failed");
        assert_eq!(alert.description.as_deref(), Some(text.trim()));
        assert_eq!(alert.details, json!({ "message": text }));
        assert_eq!(alert.delivery_id.as_deref(), Some("m-1"));
        assert_eq!(alert.severity_override, None);
        assert_eq!(
            alert.occurred_at.to_rfc3339(),
            "2026-11-20T02:15:41.452+00:00"
        );
        let expected: Labels = [
            ("source", "sns"),
            ("kind", "sns_notification"),
            ("topic", TOPIC),
            ("topic_name", "oncall-alerts"),
            ("region", "ap-southeast-1"),
            ("account", "123456789012"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(alert.labels, expected);
    }

    #[test]
    fn the_subject_is_the_summary() {
        let alert = parse(
            Some("  RDS Notification Message "),
            "Multi-AZ failover completed.",
        );
        assert_eq!(alert.summary, "RDS Notification Message");
        assert_eq!(
            alert.description.as_deref(),
            Some("Multi-AZ failover completed.")
        );
        // A blank Subject counts as none.
        assert_eq!(parse(Some("   "), "line one").summary, "line one");
    }

    #[test]
    fn an_empty_message_still_has_a_summary() {
        let alert = parse(None, " \n\t\n");
        assert_eq!(alert.summary, "SNS notification on oncall-alerts");
        assert_eq!(alert.description, None);
        let alert = parse_notification("not-an-arn", None, "", "m", TS, now());
        assert_eq!(alert.summary, "SNS notification on not-an-arn");
        assert_eq!(alert.labels["topic"], "not-an-arn");
        assert!(!alert.labels.contains_key("region"));
        assert!(!alert.labels.contains_key("topic_name"));
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        let line = "é".repeat(MAX_SUMMARY_CHARS + 50);
        let alert = parse(None, &line);
        assert_eq!(alert.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert!(alert.summary.ends_with(CUT));
        let body = "x".repeat(MAX_DESCRIPTION_CHARS * 3);
        let alert = parse(Some("s"), &body);
        let description = alert.description.expect("has one");
        assert_eq!(description.chars().count(), MAX_DESCRIPTION_CHARS);
        assert!(description.ends_with(CUT));
        assert_eq!(
            alert.details["message"], body,
            "details keep the whole message"
        );
        // Exactly at the bound: not cut.
        let exact = "y".repeat(MAX_SUMMARY_CHARS);
        assert_eq!(parse(None, &exact).summary, exact);
    }

    #[test]
    fn a_json_message_keeps_its_keys_in_details() {
        let s3 = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                     "s3": {"bucket": {"name": "reports"}}}]});
        let alert = parse(Some("Amazon S3 Notification"), &s3.to_string());
        assert_eq!(alert.labels["kind"], KIND);
        assert_eq!(alert.details, s3);
        assert_eq!(alert.summary, "Amazon S3 Notification");
        // JSON that is not an object is kept as text.
        for text in ["[1, 2]", "\"quoted\"", "42", "null"] {
            assert_eq!(
                parse(None, text).details,
                json!({ "message": text }),
                "{text}"
            );
        }
    }

    #[test]
    fn the_fingerprint_folds_repeats_and_separates_other_messages() {
        let a = parse(Some("s"), "disk full").fingerprint;
        assert!(a.as_str().starts_with(&format!("sns/{TOPIC}/")), "{a}");
        let hash = a.as_str().rsplit('/').next().expect("has a hash");
        assert_eq!(hash.len(), 16);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // Another MessageId and Timestamp: the same incident.
        let again = parse_notification(
            TOPIC,
            Some("s"),
            "disk full",
            "m-2",
            "2026-11-20T03:00:00Z",
            now(),
        );
        assert_eq!(again.fingerprint, a);
        assert_ne!(parse(Some("s"), "disk fuller").fingerprint, a);
        assert_ne!(parse(Some("t"), "disk full").fingerprint, a);
        assert_ne!(
            parse(None, "s\ndisk full").fingerprint,
            parse(Some("s\ndisk"), "full").fingerprint
        );
        let other_topic = "arn:aws:sns:us-east-1:123456789012:oncall-alerts-use1";
        assert_ne!(
            parse_notification(other_topic, Some("s"), "disk full", "m", TS, now()).fingerprint,
            a
        );
        // A topic that cannot be part of a fingerprint is hashed.
        let odd = format!("arn:aws:sns:ap-southeast-1:1:{}\u{7}", "t".repeat(600));
        let f = parse_notification(&odd, None, "x", "m", TS, now()).fingerprint;
        assert!(
            f.as_str().starts_with("sns/") && f.as_str().len() == 37,
            "{f}"
        );
    }

    #[test]
    fn an_unparseable_timestamp_means_now() {
        let alert = parse_notification(TOPIC, None, "x", "m", "yesterday", now());
        assert_eq!(alert.occurred_at, now());
    }

    /// The `Message` of an SNS fixture.
    fn message_of(name: &str) -> (String, String) {
        match SnsEnvelope::parse(&fixture(name)).map(|e| e.message) {
            Ok(SnsMessage::Notification {
                topic_arn, message, ..
            }) => (topic_arn, message),
            other => panic!("{name} is not a notification: {other:?}"),
        }
    }

    #[test]
    fn a_cloudwatch_alarm_is_the_alarm_alert() {
        let (topic, message) = message_of("cloudwatch-alarm-sns-notification.json");
        let alert = parse_notification(&topic, Some("ALARM: x"), &message, "m-9", TS, now());
        let alarm = parse_alarm(&message, Some("m-9".into()), None).expect("parses");
        assert_eq!(alert, alarm);
        assert_eq!(alert.labels["kind"], "cloudwatch_alarm");
    }

    #[test]
    fn a_2014_alarm_with_an_unknown_region_name_takes_the_topic_region() {
        let message = json!({
            "AlarmName": "legacy-disk-full", "AWSAccountId": "123456789012", "NewStateValue": "ALARM",
            "StateChangeTime": "2014-06-03T09:12:40.000+0000", "Region": "EU - Ireland",
            "Trigger": {"MetricName": "DiskSpaceUtilization", "Namespace": "System/Linux", "Dimensions": []}
        })
        .to_string();
        let topic = "arn:aws:sns:eu-west-1:123456789012:oncall-alerts-euw1";
        let alert = parse_notification(topic, None, &message, "m", TS, now());
        assert_eq!(
            alert.fingerprint.as_str(),
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:legacy-disk-full"
        );
        assert_eq!(alert.labels["source"], "cloudwatch");
        assert_eq!(alert.labels["region"], "eu-west-1");
    }

    #[test]
    fn an_alarm_that_does_not_parse_is_a_generic_alert_with_the_error() {
        let (topic, good) = message_of("cloudwatch-alarm-sns-notification.json");
        let bad = good.replace(
            "\"NewStateValue\":\"ALARM\"",
            "\"NewStateValue\":\"FIRING\"",
        );
        let alert = parse_notification(&topic, Some("ALARM: \"eks\""), &bad, "m", TS, now());
        assert_eq!(alert.labels["kind"], KIND);
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.summary, "ALARM: \"eks\"");
        assert_eq!(alert.details["AlarmName"], "eks-prod-apse1-node-cpu-high");
        let error = alert.details["parse_error"].as_str().expect("kept");
        assert!(error.contains("Message.NewStateValue"), "{error}");
        assert!(alert.fingerprint.as_str().starts_with("sns/"));
        // A message without the markers carries no parse_error.
        let plain = parse_notification(&topic, None, "{\"hello\":1}", "m", TS, now());
        assert!(plain.details.get("parse_error").is_none());
    }

    #[test]
    fn mutated_messages_never_panic() {
        let fixtures = [
            "cloudwatch-alarm-sns-notification.json",
            "cloudwatch-ok-sns-notification.json",
            "route53-healthcheck-alarm-sns-notification.json",
        ];
        let mut inputs: Vec<(String, String)> = fixtures.iter().map(|f| message_of(f)).collect();
        inputs.push((TOPIC.into(), "Deploy failed\nsecond line".into()));
        inputs.push((
            TOPIC.into(),
            json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}}}]})
                .to_string(),
        ));
        for (i, (topic, message)) in inputs.iter().enumerate() {
            for input in mutations(message.as_bytes(), 300, 0x5A5A + i as u64) {
                let text = String::from_utf8_lossy(&input);
                let subject = (i % 2 == 0).then_some("Subject");
                let alert = parse_notification(topic, subject, &text, "m", TS, now());
                assert!(!alert.summary.is_empty());
            }
            for input in mutations(topic.as_bytes(), 100, 0x7B7B + i as u64) {
                let topic = String::from_utf8_lossy(&input);
                let alert = parse_notification(&topic, None, message, "m", &topic, now());
                assert!(!alert.fingerprint.as_str().is_empty());
            }
        }
    }
}

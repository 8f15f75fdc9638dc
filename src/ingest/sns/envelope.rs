//! The SNS envelope: the POST body parsed into [`SnsEnvelope`] by its signed `Type`, the string
//! SNS signs, and the checks that need no key (replayed `Timestamp`, a topic ARN's region, a safe
//! `SubscribeURL`). Imports nothing above `ingest`.

use std::time::Duration;

use serde_json::Value;
use url::{Host, Url};

use crate::ingest::{Fields, IngestError, parse_json, type_name};

/// What SNS sent, by its signed `Type`, with exactly the fields that are signed for that type
/// (decoded strings: `\n` is a real newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnsMessage {
    /// Sent once when a subscription is created; confirm by GETting `subscribe_url` (after
    /// [`verify`], only for an allow-listed `topic_arn`, only if [`subscribe_url_is_safe`]).
    SubscriptionConfirmation {
        message_id: String,
        topic_arn: String,
        /// A fixed English sentence from SNS.
        message: String,
        timestamp: String,
        token: String,
        subscribe_url: String,
    },
    /// A published message: the alarm JSON from CloudWatch, or anything another publisher sent
    /// (`ingest::parse_notification` takes both).
    Notification {
        message_id: String,
        topic_arn: String,
        /// Only when the publisher set one (absent or `null` → `None`).
        subject: Option<String>,
        message: String,
        timestamp: String,
    },
    /// Sent after an unsubscribe. Its `SubscribeURL` RE-subscribes: never follow it automatically.
    UnsubscribeConfirmation {
        message_id: String,
        topic_arn: String,
        message: String,
        timestamp: String,
        token: Option<String>,
        subscribe_url: Option<String>,
    },
}

impl SnsMessage {
    /// The `Type` string SNS uses for this variant.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::SubscriptionConfirmation { .. } => "SubscriptionConfirmation",
            Self::Notification { .. } => "Notification",
            Self::UnsubscribeConfirmation { .. } => "UnsubscribeConfirmation",
        }
    }

    pub fn message_id(&self) -> &str {
        match self {
            Self::SubscriptionConfirmation { message_id, .. }
            | Self::Notification { message_id, .. }
            | Self::UnsubscribeConfirmation { message_id, .. } => message_id,
        }
    }

    pub fn topic_arn(&self) -> &str {
        match self {
            Self::SubscriptionConfirmation { topic_arn, .. }
            | Self::Notification { topic_arn, .. }
            | Self::UnsubscribeConfirmation { topic_arn, .. } => topic_arn,
        }
    }
}

/// One SNS delivery: the signed message plus what is needed to check the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsEnvelope {
    pub message: SnsMessage,
    /// `"1"` (SHA1withRSA) or `"2"` (SHA256withRSA); anything else fails [`verify`].
    pub signature_version: String,
    /// Base64 of the RSA signature over [`SnsEnvelope::string_to_sign`].
    pub signature: String,
    /// Where the signing certificate lives (`SigningCertURL`, or `SigningCertUrl` from Lambda-style
    /// payloads). Not signed itself, hence the strict URL rules in [`CertCache`].
    pub signing_cert_url: String,
    /// `UnsubscribeURL` / `UnsubscribeUrl` of a notification (not signed; informational).
    pub unsubscribe_url: Option<String>,
}

impl SnsEnvelope {
    /// Parses an SNS delivery body. The Content-Type is irrelevant; unknown keys (such as
    /// `MessageAttributes`) are ignored; `Subject: null` counts as absent.
    pub fn parse(body: &[u8]) -> Result<Self, IngestError> {
        let value = parse_json(body, "SNS body")?;
        let Value::Object(map) = &value else {
            return Err(IngestError::Malformed(format!(
                "SNS body: expected a JSON object, got {}",
                type_name(&value)
            )));
        };
        let f = Fields::new("", map);
        let owned = |key: &str| f.req_str(key).map(str::to_string);
        // Both spellings are seen in the wild (HTTP deliveries use `URL`, Lambda-relayed ones `Url`).
        let either = |a: &str, b: &str| -> Result<Option<String>, IngestError> {
            Ok(f.opt_str(a)?.or(f.opt_str(b)?).map(str::to_string))
        };

        let message = match f.req_str("Type")? {
            "Notification" => SnsMessage::Notification {
                message_id: owned("MessageId")?,
                topic_arn: owned("TopicArn")?,
                subject: f.opt_str("Subject")?.map(str::to_string),
                message: owned("Message")?,
                timestamp: owned("Timestamp")?,
            },
            "SubscriptionConfirmation" => SnsMessage::SubscriptionConfirmation {
                message_id: owned("MessageId")?,
                topic_arn: owned("TopicArn")?,
                message: owned("Message")?,
                timestamp: owned("Timestamp")?,
                token: owned("Token")?,
                subscribe_url: either("SubscribeURL", "SubscribeUrl")?
                    .ok_or_else(|| f.malformed("SubscribeURL", "missing"))?,
            },
            "UnsubscribeConfirmation" => SnsMessage::UnsubscribeConfirmation {
                message_id: owned("MessageId")?,
                topic_arn: owned("TopicArn")?,
                message: owned("Message")?,
                timestamp: owned("Timestamp")?,
                token: f.opt_str("Token")?.map(str::to_string),
                subscribe_url: either("SubscribeURL", "SubscribeUrl")?,
            },
            other => {
                return Err(f.malformed(
                    "Type",
                    format_args!(
                        "unknown SNS message type {other:?} (expected Notification, \
                         SubscriptionConfirmation or UnsubscribeConfirmation)"
                    ),
                ));
            }
        };

        Ok(Self {
            message,
            signature_version: owned("SignatureVersion")?,
            signature: owned("Signature")?,
            signing_cert_url: either("SigningCertURL", "SigningCertUrl")?
                .ok_or_else(|| f.malformed("SigningCertURL", "missing"))?,
            unsubscribe_url: either("UnsubscribeURL", "UnsubscribeUrl")?,
        })
    }

    /// The exact text SNS signed: for each signed key of this type, in byte-sorted order and only
    /// if present, `key\nvalue\n` (reference §1.4, following the AWS doc rather than the JS
    /// library for `UnsubscribeConfirmation`).
    pub fn string_to_sign(&self) -> String {
        let mut out = String::new();
        let mut push = |key: &str, value: Option<&str>| {
            if let Some(value) = value {
                out.push_str(key);
                out.push('\n');
                out.push_str(value);
                out.push('\n');
            }
        };
        let ty = self.message.type_name();
        match &self.message {
            SnsMessage::Notification {
                message_id,
                topic_arn,
                subject,
                message,
                timestamp,
            } => {
                push("Message", Some(message));
                push("MessageId", Some(message_id));
                push("Subject", subject.as_deref());
                push("Timestamp", Some(timestamp));
                push("TopicArn", Some(topic_arn));
                push("Type", Some(ty));
            }
            SnsMessage::SubscriptionConfirmation {
                message_id,
                topic_arn,
                message,
                timestamp,
                token,
                subscribe_url,
            } => {
                push("Message", Some(message));
                push("MessageId", Some(message_id));
                push("SubscribeURL", Some(subscribe_url));
                push("Timestamp", Some(timestamp));
                push("Token", Some(token));
                push("TopicArn", Some(topic_arn));
                push("Type", Some(ty));
            }
            SnsMessage::UnsubscribeConfirmation {
                message_id,
                topic_arn,
                message,
                timestamp,
                token,
                subscribe_url,
            } => {
                push("Message", Some(message));
                push("MessageId", Some(message_id));
                push("SubscribeURL", subscribe_url.as_deref());
                push("Timestamp", Some(timestamp));
                push("Token", token.as_deref());
                push("TopicArn", Some(topic_arn));
                push("Type", Some(ty));
            }
        }
        out
    }
}

/// When a Notification signed at `timestamp` is a replay at `now`: its signed `Timestamp` is
/// more than `max_age` ago, longer than SNS goes on retrying a delivery (at most 3,600 s), so
/// it is a recorded message played back, not news. `Some(sent_at)` for a replay; a future
/// `Timestamp` is never one. A `Timestamp` that is not RFC 3339 is malformed.
pub fn replay_sent_at(
    timestamp: &str,
    now: chrono::DateTime<chrono::Utc>,
    max_age: Duration,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, IngestError> {
    let sent = chrono::DateTime::parse_from_rfc3339(timestamp)
        .map_err(|e| {
            IngestError::Malformed(format!(
                "Timestamp: {timestamp:?} is not an RFC 3339 time ({e})"
            ))
        })?
        .with_timezone(&chrono::Utc);
    let max_age = chrono::TimeDelta::from_std(max_age).unwrap_or(chrono::TimeDelta::MAX);
    Ok((now.signed_duration_since(sent) > max_age).then_some(sent))
}

/// The region of an SNS topic ARN `arn:<partition>:sns:<region>:<account>:<name>`.
pub fn topic_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sns"), Some(region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let region_ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = partition.starts_with("aws")
        && region_ok
        && !account.is_empty()
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty();
    ok.then_some(region)
}

/// Whether a SubscriptionConfirmation's `SubscribeURL` may be fetched to confirm: `https`, host
/// exactly `sns.<region>.amazonaws.com` (`.com.cn` in the `aws-cn` partition) with the region of
/// `topic_arn`, default port, no userinfo, path `/`, `Action=ConfirmSubscription`, and a `TopicArn`
/// parameter, if present, equal to `topic_arn`. Check the signature and the topic allow-list first.
pub fn subscribe_url_is_safe(subscribe_url: &str, topic_arn: &str) -> bool {
    let Some(region) = topic_region(topic_arn) else {
        return false;
    };
    let Ok(url) = Url::parse(subscribe_url) else {
        return false;
    };
    let suffix = if topic_arn.starts_with("arn:aws-cn:") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let expected_host = format!("sns.{region}.{suffix}");
    let host_ok = matches!(url.host(), Some(Host::Domain(h)) if h == expected_host);
    if url.scheme() != "https"
        || !host_ok
        || url.port().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.fragment().is_some()
    {
        return false;
    }
    let mut actions = 0;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "Action" if value == "ConfirmSubscription" => actions += 1,
            "Action" => return false,
            "TopicArn" if value != topic_arn => return false,
            _ => {}
        }
    }
    actions == 1
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::sns::testkit::*;
    use crate::ingest::testkit::{fixture, mutations};

    #[test]
    fn fixtures_parse_into_their_message_types() {
        let env =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        let SnsMessage::Notification {
            message_id,
            topic_arn,
            subject,
            message,
            timestamp,
        } = &env.message
        else {
            panic!("expected a notification, got {:?}", env.message);
        };
        assert_eq!(message_id, "c2a7d9e4-31f6-5b8a-9d0c-4e7f1a2b3c5d");
        assert_eq!(
            topic_arn,
            "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts"
        );
        assert_eq!(
            subject.as_deref(),
            Some("ALARM: \"eks-prod-apse1-node-cpu-high\" in Asia Pacific (Singapore)")
        );
        assert!(message.starts_with("{\"AlarmName\":\"eks-prod-apse1-node-cpu-high\""));
        assert_eq!(timestamp, "2026-11-20T02:15:41.452Z");
        assert!(env.unsubscribe_url.is_some());

        let env =
            SnsEnvelope::parse(&fixture("sns-subscription-confirmation.json")).expect("parses");
        let SnsMessage::SubscriptionConfirmation {
            subscribe_url,
            token,
            topic_arn,
            message,
            ..
        } = &env.message
        else {
            panic!(
                "expected a subscription confirmation, got {:?}",
                env.message
            );
        };
        assert!(
            message.contains(".\nTo confirm"),
            "escapes are decoded before signing"
        );
        assert!(token.starts_with("2336412f"));
        assert!(subscribe_url_is_safe(subscribe_url, topic_arn));
    }

    #[test]
    fn string_to_sign_uses_decoded_values_in_key_order() {
        let env =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json")).expect("parses");
        let s = env.string_to_sign();
        let keys: Vec<&str> = s.lines().step_by(2).collect();
        assert_eq!(
            keys,
            [
                "Message",
                "MessageId",
                "Subject",
                "Timestamp",
                "TopicArn",
                "Type"
            ]
        );
        assert!(s.ends_with("Type\nNotification\n"));
        assert!(s.contains(
            "Subject\nALARM: \"eks-prod-apse1-node-cpu-high\" in Asia Pacific (Singapore)\n"
        ));

        let env =
            SnsEnvelope::parse(&fixture("sns-subscription-confirmation.json")).expect("parses");
        let s = env.string_to_sign();
        assert!(s.starts_with("Message\nYou have chosen"));
        for key in [
            "\nMessageId\n",
            "\nSubscribeURL\n",
            "\nTimestamp\n",
            "\nToken\n",
            "\nTopicArn\n",
        ] {
            assert!(s.contains(key), "{key:?}");
        }
        assert!(s.ends_with("Type\nSubscriptionConfirmation\n"));
    }

    #[test]
    fn null_or_absent_subject_is_none() {
        let mut map = json("cloudwatch-alarm-sns-notification.json");
        map.insert("Subject".into(), Value::Null);
        let SnsMessage::Notification { subject, .. } = envelope(&map).message else {
            panic!("expected a notification");
        };
        assert_eq!(subject, None);
        map.remove("Subject");
        let SnsMessage::Notification { subject, .. } = envelope(&map).message else {
            panic!("expected a notification");
        };
        assert_eq!(subject, None);
    }

    #[test]
    fn notifications_older_than_max_age_are_replays() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-20T03:15:41.452Z".parse().unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            replay_sent_at("2026-11-20T02:15:41.452Z", now, hour),
            Ok(None)
        );
        assert_eq!(
            replay_sent_at("2026-11-20T02:15:41.451Z", now, hour),
            Ok(Some("2026-11-20T02:15:41.451Z".parse().unwrap()))
        );
        // A Timestamp in the future is not a replay (bounding those is the parsers' business).
        assert_eq!(replay_sent_at("2026-11-21T00:00:00Z", now, hour), Ok(None));
        assert!(matches!(
            replay_sent_at("yesterday", now, hour),
            Err(IngestError::Malformed(m)) if m.starts_with("Timestamp: ")
        ));
    }

    #[test]
    fn topic_regions_come_from_well_formed_arns_only() {
        assert_eq!(
            topic_region("arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts"),
            Some("ap-southeast-1")
        );
        assert_eq!(
            topic_region("arn:aws-cn:sns:cn-north-1:123456789012:t"),
            Some("cn-north-1")
        );
        for bad in [
            "",
            "arn:aws:sqs:ap-southeast-1:123456789012:q",
            "arn:aws:sns::123456789012:t",
            "arn:aws:sns:ap-southeast-1:123456789012:",
            "arn:aws:sns:ap-southeast-1:acct:t",
            "arn:aws:sns:evil.example/x:123456789012:t",
            "nope:aws:sns:ap-southeast-1:123456789012:t",
        ] {
            assert_eq!(topic_region(bad), None, "{bad}");
        }
    }

    #[test]
    fn subscribe_urls_must_point_at_the_topics_own_region() {
        let topic = "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts";
        let good = format!(
            "https://sns.ap-southeast-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token=abc"
        );
        assert!(subscribe_url_is_safe(&good, topic));
        assert!(subscribe_url_is_safe(
            "https://sns.cn-north-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=a",
            "arn:aws-cn:sns:cn-north-1:123456789012:t"
        ));
        for bad in [
            "http://sns.ap-southeast-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc".to_string(),
            "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc".into(),
            "https://sns.ap-southeast-1.amazonaws.com.evil.example/?Action=ConfirmSubscription".into(),
            "https://sns.ap-southeast-1.amazonaws.com@evil.example/?Action=ConfirmSubscription".into(),
            "https://sns.ap-southeast-1.amazonaws.com:8443/?Action=ConfirmSubscription".into(),
            "https://sns.ap-southeast-1.amazonaws.com/x?Action=ConfirmSubscription".into(),
            "https://sns.ap-southeast-1.amazonaws.com/?Action=Unsubscribe".into(),
            "https://sns.ap-southeast-1.amazonaws.com/?Token=abc".into(),
            "https://sns.ap-southeast-1.amazonaws.com/?Action=ConfirmSubscription&Action=Unsubscribe".into(),
            "https://sns.ap-southeast-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:ap-southeast-1:123456789012:other".into(),
            "not a url".into(),
        ] {
            assert!(!subscribe_url_is_safe(&bad, topic), "{bad}");
        }
        assert!(!subscribe_url_is_safe(&good, "not-an-arn"));
    }

    #[test]
    fn bad_envelopes_are_malformed() {
        let cases: &[(&str, &str)] = &[
            ("", "not valid JSON"),
            ("[]", "expected a JSON object"),
            ("{}", "Type: missing"),
            (r#"{"Type": 1}"#, "Type: expected a string, got a number"),
            (r#"{"Type": "Surprise"}"#, "unknown SNS message type"),
            (r#"{"Type": "Notification"}"#, "MessageId: missing"),
            (
                r#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Message":{},"Timestamp":"x"}"#,
                "Message: expected a string, got an object",
            ),
            (
                r#"{"Type":"Notification","MessageId":"m","TopicArn":"t","Message":"x","Timestamp":"x","SignatureVersion":"1","Signature":"s"}"#,
                "SigningCertURL: missing",
            ),
            (
                r#"{"Type":"SubscriptionConfirmation","MessageId":"m","TopicArn":"t","Message":"x","Timestamp":"x","Token":"t"}"#,
                "SubscribeURL: missing",
            ),
        ];
        for (body, expected) in cases {
            match SnsEnvelope::parse(body.as_bytes()) {
                Err(IngestError::Malformed(m)) => assert!(m.contains(expected), "{body}: {m}"),
                other => panic!("{body}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn mutated_envelopes_never_panic() {
        for (i, name) in SNS_FIXTURES.iter().enumerate() {
            for input in mutations(&fixture(name), 300, 0x5EED + i as u64) {
                let _ = SnsEnvelope::parse(&input).map(|e| e.string_to_sign());
            }
        }
    }
}

//! Ingest, ElastiCache events: an ElastiCache notification delivered by SNS in, one typed
//! [`Alert`] out. `reference/aws-events-sources.md` §3.
//!
//! Two shapes of `Message` are taken: the one seen in the wild, the event name as the key and the
//! node or cluster id as its value (`{"ElastiCache:FailoverComplete": "prod-redis-0001-002"}`,
//! extra keys such as `"Cache Cluster ID"` allowed, the `ElastiCache:` prefix matched in any
//! case), and the DescribeEvents shape the AWS guide shows (`{"Date", "Message",
//! "SourceIdentifier", "SourceType"}` with a cache `SourceType`), whose event name is read from the
//! message text when vigil knows it.
//!
//! Labels: `source=elasticache`, `kind=elasticache_event`, `event` (`FailoverComplete`),
//! `source_id` (the node or cluster), `cache_cluster_id` when given, `source_type` (DescribeEvents
//! shape), `region` and `account` (from the SNS topic: the topic must be in the cluster's account
//! and Region).
//!
//! The one resolving pair: `CacheNodeReplaceStarted` opens, `CacheNodeReplaceComplete` resolves
//! (one incident per node). Every other event is its own incident per (source, event), firing
//! until a person resolves it.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::rds::{fingerprint, parse_event_time};
use super::sns::topic_region;
use super::sns_notification::{MAX_SUMMARY_CHARS, cut};
use crate::domain::{Alert, AlertStatus, Labels, Source};

/// The `kind` label.
pub const KIND: &str = "elasticache_event";
/// The key prefix of the wild shape, compared without case (`Elasticache:` is seen too).
const PREFIX: &str = "elasticache:";

/// The event found in a `Message`.
struct Found<'a> {
    event: String,
    source_id: &'a str,
    source_type: Option<&'a str>,
    text: Option<&'a str>,
    occurred_at: Option<DateTime<Utc>>,
}

/// The alert of an ElastiCache notification, or `None` when `message` has neither shape (it is
/// then some other notification).
pub fn parse_sns(
    message: &Map<String, Value>,
    topic_arn: &str,
    message_id: &str,
    sent_at: DateTime<Utc>,
) -> Option<Alert> {
    let found = event_key(message).or_else(|| describe_events(message))?;
    let region = topic_region(topic_arn).unwrap_or("");
    let account = topic_arn.split(':').nth(4).unwrap_or("");
    let mut labels = Labels::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.to_string());
        }
    };
    put("source", "elasticache");
    put("kind", KIND);
    put("event", &found.event);
    put("source_id", found.source_id);
    put("source_type", found.source_type.unwrap_or(""));
    if let Some(Value::String(id)) = message.get("Cache Cluster ID") {
        put("cache_cluster_id", id);
    }
    put("region", region);
    put("account", account);

    let (key, status) = match found.event.as_str() {
        "CacheNodeReplaceStarted" => ("CacheNodeReplace", AlertStatus::Firing),
        "CacheNodeReplaceComplete" => ("CacheNodeReplace", AlertStatus::Resolved),
        other => (other, AlertStatus::Firing),
    };
    let key = if key.is_empty() { "event" } else { key };
    let what = found.text.map(str::trim).filter(|t| !t.is_empty());
    let summary = cut(
        &format!(
            "ElastiCache {} {}{}",
            found.source_id,
            if found.event.is_empty() {
                "event"
            } else {
                &found.event
            },
            what.map(|t| format!(": {t}")).unwrap_or_default()
        ),
        MAX_SUMMARY_CHARS,
    );
    Some(Alert {
        source: Source::Sns,
        fingerprint: fingerprint(
            "elasticache",
            &format!("{account}:{region}:{}", found.source_id),
            key,
        ),
        status,
        summary,
        description: what.map(str::to_string),
        labels,
        details: Value::Object(message.clone()),
        occurred_at: found.occurred_at.unwrap_or(sent_at),
        delivery_id: Some(message_id.to_string()),
        severity_override: None,
    })
}

/// The wild shape: the first `ElastiCache:<Event>` key with a string value.
fn event_key(message: &Map<String, Value>) -> Option<Found<'_>> {
    message.iter().find_map(|(k, v)| {
        let head = k.get(..PREFIX.len())?;
        if !head.eq_ignore_ascii_case(PREFIX) {
            return None;
        }
        let event = k[PREFIX.len()..].trim();
        Some(Found {
            event: event.to_string(),
            source_id: v.as_str()?,
            source_type: None,
            text: None,
            occurred_at: None,
        })
    })
}

/// The DescribeEvents shape, with a cache `SourceType`.
fn describe_events(message: &Map<String, Value>) -> Option<Found<'_>> {
    let source_type = message.get("SourceType")?.as_str()?;
    let cache = source_type.starts_with("cache-")
        || matches!(
            source_type,
            "replication-group" | "serverless-cache" | "serverless-cache-snapshot"
        );
    if !cache {
        return None;
    }
    let text = message.get("Message").and_then(Value::as_str);
    Some(Found {
        event: text.and_then(event_of_text).unwrap_or("").to_string(),
        source_id: message.get("SourceIdentifier")?.as_str()?,
        source_type: Some(source_type),
        text,
        occurred_at: message
            .get("Date")
            .and_then(Value::as_str)
            .and_then(parse_event_time),
    })
}

/// The event name of a DescribeEvents message text vigil knows (the guide's table).
fn event_of_text(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    [
        ("failover to replica node", "FailoverComplete"),
        ("failover from primary node", "FailoverComplete"),
        ("cache node replacement started", "CacheNodeReplaceStarted"),
        (
            "cache node replacement complete",
            "CacheNodeReplaceComplete",
        ),
        ("cache node replaced", "CacheNodeReplaceComplete"),
        ("cache node(s) rebooted", "CacheNodesRebooted"),
        ("cache nodes rebooted", "CacheNodesRebooted"),
        ("snapshot failed", "SnapshotFailed"),
    ]
    .iter()
    .find(|(needle, _)| t.contains(needle))
    .map(|(_, event)| *event)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;
    use crate::ingest::testkit::mutations;

    const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:redis-events";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 2, 16, 0)
            .single()
            .unwrap()
    }

    fn parse(v: Value) -> Option<Alert> {
        parse_sns(v.as_object().unwrap(), TOPIC, "m-1", now())
    }

    #[test]
    fn the_event_key_shape_is_a_typed_alert() {
        let a = parse(
            json!({"ElastiCache:FailoverComplete": "prod-redis-0001-002",
                             "Cache Cluster ID": "prod-redis-0001-001"}),
        )
        .unwrap();
        assert_eq!(a.status, AlertStatus::Firing);
        for (k, v) in [
            ("kind", "elasticache_event"),
            ("event", "FailoverComplete"),
            ("source_id", "prod-redis-0001-002"),
            ("cache_cluster_id", "prod-redis-0001-001"),
            ("region", "ap-southeast-1"),
            ("account", "123456789012"),
        ] {
            assert_eq!(a.labels[k], v, "{k}");
        }
        assert_eq!(a.occurred_at, now());
        // The lower-case `c` seen in the wild.
        let b = parse(json!({"Elasticache:ServiceUpdateAvailableForNode": "n-1"})).unwrap();
        assert_eq!(b.labels["event"], "ServiceUpdateAvailableForNode");
    }

    #[test]
    fn node_replacement_is_a_resolving_pair() {
        let started = parse(json!({"ElastiCache:CacheNodeReplaceStarted": "n-1"})).unwrap();
        let done = parse(json!({"ElastiCache:CacheNodeReplaceComplete": "n-1"})).unwrap();
        assert_eq!(done.status, AlertStatus::Resolved);
        assert_eq!(done.fingerprint, started.fingerprint);
        let other = parse(json!({"ElastiCache:CacheNodeReplaceStarted": "n-2"})).unwrap();
        assert_ne!(other.fingerprint, started.fingerprint);
    }

    #[test]
    fn the_describe_events_shape_is_taken_and_others_are_not() {
        let a = parse(json!({"Date": "2026-11-20T02:15:00Z",
            "Message": "Failover to replica node prod-redis-0001-002 completed",
            "SourceIdentifier": "prod-redis-0001-002", "SourceType": "cache-cluster"}))
        .unwrap();
        assert_eq!(a.labels["event"], "FailoverComplete");
        assert_eq!(a.labels["source_type"], "cache-cluster");
        assert_eq!(a.occurred_at.to_rfc3339(), "2026-11-20T02:15:00+00:00");
        for other in [
            json!({"Records": []}),
            json!({"SourceType": "db-instance", "SourceIdentifier": "x", "Message": "m"}),
            json!({"ElastiCache:FailoverComplete": 5}),
        ] {
            assert!(parse(other.clone()).is_none(), "{other}");
        }
    }

    #[test]
    fn mutated_messages_never_panic() {
        let bytes =
            br#"{"ElastiCache:FailoverComplete":"prod-redis-0001-002","Cache Cluster ID":"x"}"#;
        for input in mutations(bytes, 400, 0xEC) {
            if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&input) {
                let _ = parse_sns(&m, TOPIC, "m", now());
            }
        }
    }
}

//! Ingest, RDS events: an RDS event notification in, one typed [`Alert`] out, whether it came as
//! an SNS Notification's `Message` (`{"Event Source", "Event Time", "Source ID", "Source ARN",
//! "Event ID", "Event Message", ...}`, keys with spaces, the id a documentation URL whose fragment
//! is `RDS-EVENT-nnnn`) or as an EventBridge event (`source: aws.rds`, detail-type `RDS DB
//! Instance Event` and its siblings, `detail.{EventID, SourceIdentifier, SourceType, SourceArn,
//! Date, Message, EventCategories}`). `reference/aws-events-sources.md` §2.
//!
//! Labels: `source=rds`, `kind=rds_event`, `event_id` (`RDS-EVENT-0049`), `source_id`,
//! `source_type` (`db-instance`, `db-cluster`, ...), `categories` (comma-separated: the event's
//! own on EventBridge; on SNS, from [`categories_of`], the documented ids vigil knows), `region`
//! and `account` (from the source ARN, else the SNS topic).
//!
//! Resolving pairs (one incident per pair and database; the second event resolves it):
//! - `failover`: 0013 "Multi-AZ failover started" opens; 0015 "failover complete" and 0049
//!   "Multi-AZ failover has completed" resolve;
//! - `cluster-failover`: 0072 / 0073 "failover began" (same AZ / across AZs) open; 0071
//!   "failover finished" resolves;
//! - `replication`: 0045 "replication error" opens; 0046 "replication resumed" resolves;
//! - `availability`: 0004 "instance shut down" opens; 0006 "instance restarted" resolves.
//!
//! A completion that arrives with no open incident (its start was never delivered) changes
//! nothing: the failover is over. Every other event is its own incident, keyed by its id and
//! database, and stays firing until a person resolves it.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use super::sns::topic_region;
use super::sns_notification::{MAX_DESCRIPTION_CHARS, MAX_SUMMARY_CHARS, cut, short_hash};
use super::{Fields, IngestError};
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source};

/// The `kind` label.
pub const KIND: &str = "rds_event";
/// The EventBridge `source` of RDS events.
pub const EVENTBRIDGE_SOURCE: &str = "aws.rds";

/// One RDS event, transport-neutral.
#[derive(Debug, Clone)]
struct RdsEvent<'a> {
    /// `RDS-EVENT-0049`.
    event_id: String,
    source_id: &'a str,
    source_type: Option<&'a str>,
    source_arn: Option<&'a str>,
    message: Option<&'a str>,
    occurred_at: Option<DateTime<Utc>>,
    categories: Vec<String>,
}

/// Whether an EventBridge event is an RDS event (`RDS DB Instance Event`, `RDS DB Cluster
/// Event`, `RDS DB Snapshot Event`, ...).
pub fn is_rds_event(source: &str, detail_type: &str) -> bool {
    source == EVENTBRIDGE_SOURCE
        && detail_type.starts_with("RDS ")
        && detail_type.ends_with("Event")
}

/// Whether an SNS `Message` object is an RDS event notification: it has `Event ID` and
/// `Source ID`.
pub fn is_rds_message(map: &Map<String, Value>) -> bool {
    map.contains_key("Event ID") && map.contains_key("Source ID")
}

/// The alert of an RDS event notification delivered by SNS (`message` its parsed `Message`,
/// `topic_arn` and `message_id` from the envelope, `sent_at` the envelope's time: used when
/// `Event Time` does not parse). `Malformed` when `Event ID` or `Source ID` is not a string.
pub fn parse_sns(
    message: &Map<String, Value>,
    topic_arn: &str,
    message_id: &str,
    sent_at: DateTime<Utc>,
) -> Result<Alert, IngestError> {
    let f = Fields::new("Message", message);
    let event = RdsEvent {
        event_id: event_id(f.req_str("Event ID")?),
        source_id: f.req_str("Source ID")?,
        source_type: f.lenient_str("Event Source"),
        source_arn: f
            .lenient_str("Source ARN")
            .filter(|a| a.starts_with("arn:")),
        message: f.lenient_str("Event Message"),
        occurred_at: f.lenient_str("Event Time").and_then(parse_event_time),
        categories: Vec::new(),
    };
    let categories = categories_of(&event.event_id)
        .iter()
        .map(|c| c.to_string())
        .collect();
    let event = RdsEvent {
        categories,
        ..event
    };
    let topic = topic_parts(topic_arn);
    Ok(alert(
        &event,
        Source::Sns,
        topic,
        Value::Object(message.clone()),
        Some(message_id.to_string()),
        sent_at,
    ))
}

/// The alert of an RDS event delivered by EventBridge. `Malformed` when `detail`,
/// `detail.EventID` or `detail.SourceIdentifier` is missing.
pub fn parse_eventbridge(event: &Map<String, Value>, value: &Value) -> Result<Alert, IngestError> {
    let f = Fields::new("", event);
    let d = Fields::new("detail", f.req_object("detail")?);
    let event_id = event_id(d.req_str("EventID")?);
    let mut categories: Vec<String> = d
        .get("EventCategories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if categories.is_empty() {
        categories = categories_of(&event_id)
            .iter()
            .map(|c| c.to_string())
            .collect();
    }
    let rds = RdsEvent {
        event_id,
        source_id: d.req_str("SourceIdentifier")?,
        source_type: d.lenient_str("SourceType").map(source_type_name),
        source_arn: d.lenient_str("SourceArn").filter(|a| a.starts_with("arn:")),
        message: d.lenient_str("Message"),
        occurred_at: d
            .lenient_str("Date")
            .or_else(|| f.lenient_str("time"))
            .and_then(parse_event_time),
        categories,
    };
    let envelope = (
        f.lenient_str("region").unwrap_or(""),
        f.lenient_str("account").unwrap_or(""),
    );
    let occurred_at = rds
        .occurred_at
        .ok_or_else(|| d.malformed("Date", "missing or not a time, and so is the event's time"))?;
    Ok(alert(
        &rds,
        Source::Eventbridge,
        Some(envelope),
        value.clone(),
        f.opt_str("id")?.map(str::to_string),
        occurred_at,
    ))
}

/// EventBridge's `DB_INSTANCE` / `SourceType` spellings in the SNS form (`db-instance`).
fn source_type_name(s: &str) -> &str {
    match s {
        "DB_INSTANCE" => "db-instance",
        "DB_CLUSTER" => "db-cluster",
        "DB_SNAPSHOT" => "db-snapshot",
        "DB_CLUSTER_SNAPSHOT" => "db-cluster-snapshot",
        "DB_PARAMETER_GROUP" => "db-parameter-group",
        "DB_SECURITY_GROUP" => "db-security-group",
        "DB_PROXY" => "db-proxy",
        other => other,
    }
}

/// `RDS-EVENT-0049` from `http://docs.amazonwebservices.com/...#RDS-EVENT-0049` (the fragment),
/// or the id itself when it is not a URL.
fn event_id(raw: &str) -> String {
    let id = raw.rsplit_once('#').map_or(raw, |(_, frag)| frag).trim();
    if id.is_empty() { raw.trim() } else { id }.to_string()
}

/// The number of `RDS-EVENT-nnnn`.
fn number(event_id: &str) -> Option<u32> {
    event_id
        .strip_prefix("RDS-EVENT-")
        .and_then(|n| n.parse().ok())
}

/// The categories of the documented event ids vigil pages on (the RDS user guide's event
/// table). Others have none on SNS (their category is in the EventBridge form only).
pub fn categories_of(event_id: &str) -> &'static [&'static str] {
    match number(event_id) {
        Some(13 | 15 | 34 | 49 | 50 | 51 | 65 | 69..=73) => &["failover"],
        Some(181..=187) => &["global database", "failover"],
        Some(45 | 46 | 57 | 62 | 63 | 202) => &["read replica"],
        Some(4 | 6) => &["availability"],
        Some(31) => &["failure"],
        Some(221) => &["failure", "low storage"],
        Some(7 | 89 | 222) => &["low storage"],
        _ => &[],
    }
}

/// The resolving pair an event belongs to, and whether it opens (`Firing`) or ends it.
fn pair(event_id: &str) -> Option<(&'static str, AlertStatus)> {
    use AlertStatus::{Firing, Resolved};
    Some(match number(event_id)? {
        13 => ("failover", Firing),
        15 | 49 => ("failover", Resolved),
        72 | 73 => ("cluster-failover", Firing),
        71 => ("cluster-failover", Resolved),
        45 => ("replication", Firing),
        46 => ("replication", Resolved),
        4 => ("availability", Firing),
        6 => ("availability", Resolved),
        _ => return None,
    })
}

/// RDS's `2026-11-20 02:15:41.452` (UTC, no zone), or RFC 3339.
pub fn parse_event_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// (region, account) of an SNS topic ARN.
fn topic_parts(topic_arn: &str) -> Option<(&str, &str)> {
    let region = topic_region(topic_arn)?;
    let account = topic_arn.split(':').nth(4)?;
    Some((region, account))
}

/// (region, account) of an ARN (`arn:aws:rds:<region>:<account>:db:<id>`).
fn arn_parts(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.split(':').skip(3);
    let region = parts.next().filter(|r| !r.is_empty())?;
    let account = parts.next().filter(|a| !a.is_empty())?;
    Some((region, account))
}

/// The alert of an event; `fallback` is the (region, account) when the event has no source ARN.
fn alert(
    ev: &RdsEvent<'_>,
    source: Source,
    fallback: Option<(&str, &str)>,
    details: Value,
    delivery_id: Option<String>,
    sent_at: DateTime<Utc>,
) -> Alert {
    let (region, account) = ev
        .source_arn
        .and_then(arn_parts)
        .or(fallback)
        .unwrap_or(("", ""));
    let mut labels = Labels::new();
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.to_string());
        }
    };
    put("source", "rds");
    put("kind", KIND);
    put("event_id", &ev.event_id);
    put("source_id", ev.source_id);
    put("source_type", ev.source_type.unwrap_or(""));
    put("categories", &ev.categories.join(","));
    put("region", region);
    put("account", account);

    let (key, status) = match pair(&ev.event_id) {
        Some((group, status)) => (group.to_string(), status),
        None => (ev.event_id.clone(), AlertStatus::Firing),
    };
    let database = ev.source_arn.map_or_else(
        || format!("{account}:{region}:{}", ev.source_id),
        str::to_string,
    );
    let message = ev.message.map(str::trim).filter(|m| !m.is_empty());
    let summary = cut(
        &format!(
            "RDS {} {}: {}",
            ev.source_id,
            ev.event_id,
            message.unwrap_or("(no message)")
        ),
        MAX_SUMMARY_CHARS,
    );
    Alert {
        source,
        fingerprint: fingerprint("rds", &database, &key),
        status,
        summary,
        description: message.map(|m| cut(m, MAX_DESCRIPTION_CHARS)),
        labels,
        details,
        occurred_at: ev.occurred_at.unwrap_or(sent_at),
        delivery_id,
        severity_override: None,
    }
}

/// `<prefix>/<resource>/<key>`, hashed should it not make a fingerprint. Shared with
/// `elasticache`.
pub(super) fn fingerprint(prefix: &str, resource: &str, key: &str) -> Fingerprint {
    Fingerprint::parse(format!("{prefix}/{resource}/{key}")).unwrap_or_else(|_| {
        let hash = short_hash(&[resource.as_bytes(), b"\n", key.as_bytes()]);
        Fingerprint::parse(format!("{prefix}/{hash}"))
            .expect("invariant: an ASCII hex fingerprint is valid")
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;
    use crate::ingest::testkit::mutations;

    const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:rds-events";

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 2, 16, 0)
            .single()
            .unwrap()
    }

    fn message(id: &str, text: &str) -> Map<String, Value> {
        let v = json!({"Event Source":"db-instance","Event Time":"2026-11-20 02:15:41.452",
          "Identifier Link":"https://console.aws.amazon.com/rds/home?region=ap-southeast-1#dbinstance:id=prod-db",
          "Source ID":"prod-db","Source ARN":"arn:aws:rds:ap-southeast-1:123456789012:db:prod-db",
          "Event ID":format!("http://docs.amazonwebservices.com/AmazonRDS/latest/UserGuide/USER_Events.html#{id}"),
          "Event Message":text});
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_sns_failover_is_a_typed_alert() {
        let a = parse_sns(
            &message("RDS-EVENT-0013", "A Multi-AZ failover has started."),
            TOPIC,
            "m-1",
            now(),
        )
        .unwrap();
        assert_eq!(a.status, AlertStatus::Firing);
        for (k, v) in [
            ("kind", "rds_event"),
            ("event_id", "RDS-EVENT-0013"),
            ("source_id", "prod-db"),
            ("source_type", "db-instance"),
            ("categories", "failover"),
            ("region", "ap-southeast-1"),
            ("account", "123456789012"),
        ] {
            assert_eq!(a.labels[k], v, "{k}");
        }
        assert_eq!(a.occurred_at.to_rfc3339(), "2026-11-20T02:15:41.452+00:00");
        assert_eq!(a.delivery_id.as_deref(), Some("m-1"));
        assert!(a.summary.contains("prod-db"), "{}", a.summary);
    }

    #[test]
    fn a_completed_failover_resolves_the_started_one() {
        let started = parse_sns(&message("RDS-EVENT-0013", "started"), TOPIC, "m", now()).unwrap();
        for done in ["RDS-EVENT-0015", "RDS-EVENT-0049"] {
            let d = parse_sns(&message(done, "completed"), TOPIC, "m", now()).unwrap();
            assert_eq!(d.status, AlertStatus::Resolved, "{done}");
            assert_eq!(d.fingerprint, started.fingerprint, "{done}");
        }
        let other = parse_sns(&message("RDS-EVENT-0045", "err"), TOPIC, "m", now()).unwrap();
        assert_ne!(other.fingerprint, started.fingerprint);
        assert_eq!(other.labels["categories"], "read replica");
    }

    #[test]
    fn an_old_payload_without_an_arn_takes_the_topic_and_an_unknown_id_has_no_category() {
        let mut m = message("RDS-EVENT-0088", "backup done");
        m.remove("Source ARN");
        m.insert("Event Time".into(), json!("garbage"));
        let a = parse_sns(&m, TOPIC, "m", now()).unwrap();
        assert_eq!(a.labels["region"], "ap-southeast-1");
        assert!(!a.labels.contains_key("categories"));
        assert_eq!(a.occurred_at, now());
        let mut m = message("RDS-EVENT-0088", "x");
        m.insert("Event ID".into(), json!(5));
        assert!(parse_sns(&m, TOPIC, "m", now()).is_err());
    }

    #[test]
    fn event_times_parse_with_or_without_a_fraction_and_a_zone() {
        for (text, want) in [
            ("2026-11-20 02:15:41.452", "2026-11-20T02:15:41.452+00:00"),
            ("2026-11-20 02:15:41", "2026-11-20T02:15:41+00:00"),
            ("2026-11-20T02:15:41.452Z", "2026-11-20T02:15:41.452+00:00"),
        ] {
            assert_eq!(
                parse_event_time(text).map(|t| t.to_rfc3339()).as_deref(),
                Some(want)
            );
        }
        assert_eq!(parse_event_time("Nov 20"), None);
    }

    #[test]
    fn the_eventbridge_form_gives_the_same_incident() {
        let sns = parse_sns(&message("RDS-EVENT-0049", "done"), TOPIC, "m", now()).unwrap();
        let v = json!({"version":"0","id":"e-1","detail-type":"RDS DB Instance Event","source":"aws.rds",
          "account":"123456789012","time":"2026-11-20T02:15:41Z","region":"ap-southeast-1",
          "detail":{"EventCategories":["failover"],"SourceType":"DB_INSTANCE",
            "SourceArn":"arn:aws:rds:ap-southeast-1:123456789012:db:prod-db",
            "Date":"2026-11-20T02:15:41.452Z","Message":"A Multi-AZ failover has completed.",
            "SourceIdentifier":"prod-db","EventID":"RDS-EVENT-0049"}});
        let eb = parse_eventbridge(v.as_object().unwrap(), &v).unwrap();
        assert_eq!(eb.fingerprint, sns.fingerprint);
        assert_eq!(eb.status, AlertStatus::Resolved);
        assert_eq!(eb.labels["source_type"], "db-instance");
        assert_eq!(eb.labels["categories"], "failover");
        assert_eq!(eb.delivery_id.as_deref(), Some("e-1"));
    }

    #[test]
    fn mutated_messages_never_panic() {
        let bytes = serde_json::to_vec(&message("RDS-EVENT-0013", "x")).unwrap();
        for input in mutations(&bytes, 400, 0x0D5) {
            if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&input) {
                let _ = parse_sns(&m, TOPIC, "m", now());
            }
        }
    }
}

//! Ingest, AWS Health: an EventBridge event from `aws.health` ("AWS Health Event", or "AWS Health
//! Abuse Event") in, one [`Alert`] out. `reference/aws-events-sources.md` §1.
//!
//! Labels: `source=aws_health`, `kind=aws_health`, `service` (upper case, `EC2`, `ELASTICACHE`,
//! `ROUTE53`), `event_type_code`, `category` (`issue`, `scheduledChange`, `accountNotification`,
//! `investigation`), `status` (`open`, `upcoming`, `closed`), `scope` (`PUBLIC`,
//! `ACCOUNT_SPECIFIC`), `region` (the impacted Region, `detail.eventRegion`; the envelope's own
//! region when absent: that is only where the event was delivered), `account` (the affected
//! account: `detail.affectedAccount` under the organizational view, else the envelope's).
//! The affected entities stay in `details` (the whole event) and are named in the description.
//!
//! The incident key is `aws_health/<account>/<eventArn>`: an eventArn is not unique across
//! accounts (public events share it), and its updates (upcoming → open → closed) reuse it, so they
//! fold into one incident and `closed` resolves it. Pages of a split entity list are updates of
//! the same event. The update's `lastUpdatedTime` orders deliveries.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::sns_notification::{MAX_DESCRIPTION_CHARS, MAX_SUMMARY_CHARS, cut, short_hash};
use super::{Fields, IngestError, type_name};
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source};

/// The EventBridge `source` of AWS Health events.
pub const SOURCE: &str = "aws.health";
/// The detail-types taken.
pub const DETAIL_TYPES: [&str; 2] = ["AWS Health Event", "AWS Health Abuse Event"];
/// The `kind` (and `source`) label.
pub const KIND: &str = "aws_health";
/// How many affected entities the description names.
const ENTITIES_NAMED: usize = 10;

/// Whether an EventBridge event with this `source` and `detail-type` is an AWS Health event.
pub fn is_health_event(source: &str, detail_type: &str) -> bool {
    source == SOURCE && DETAIL_TYPES.contains(&detail_type)
}

/// The alert of one AWS Health event (`event` is its top-level object, `value` the whole event
/// for `details`). `Malformed` when `detail`, `detail.eventArn`, `detail.eventTypeCategory` or
/// `detail.statusCode` is missing, the status is not one of the three, or `detail.service` /
/// `detail.eventTypeCode` is missing and the ARN does not say it either.
pub fn parse(event: &Map<String, Value>, value: &Value) -> Result<Alert, IngestError> {
    let f = Fields::new("", event);
    let d = Fields::new("detail", f.req_object("detail")?);
    let arn = d.req_str("eventArn")?;
    // `event/<SERVICE>/<CODE>/<id>` at the end of the ARN says both, should a field be missing.
    let mut from_arn = arn.split_once(":event/").map(|(_, rest)| rest.split('/'));
    let (arn_service, arn_code) = match &mut from_arn {
        Some(parts) => (parts.next(), parts.next()),
        None => (None, None),
    };
    let service = match d.opt_str("service")?.or(arn_service) {
        Some(s) => s.trim().to_ascii_uppercase(),
        None => return Err(d.malformed("service", "missing")),
    };
    let code = d
        .opt_str("eventTypeCode")?
        .or(arn_code)
        .ok_or_else(|| d.malformed("eventTypeCode", "missing"))?;
    let category = d.req_str("eventTypeCategory")?;
    let status_code = d.req_str("statusCode")?;
    let status = match status_code {
        "open" | "upcoming" => AlertStatus::Firing,
        "closed" => AlertStatus::Resolved,
        other => {
            return Err(d.malformed(
                "statusCode",
                format_args!("expected \"open\", \"upcoming\" or \"closed\", got {other:?}"),
            ));
        }
    };
    let account = d
        .opt_str("affectedAccount")?
        .or(f.opt_str("account")?)
        .filter(|a| !a.is_empty())
        .unwrap_or("unknown");
    let region = d
        .lenient_str("eventRegion")
        .or_else(|| f.lenient_str("region"))
        .filter(|r| !r.is_empty());

    let mut labels = Labels::new();
    let mut put = |k: &str, v: &str| {
        labels.insert(k.to_string(), v.to_string());
    };
    put("source", KIND);
    put("kind", KIND);
    put("service", &service);
    put("event_type_code", code);
    put("category", category);
    put("status", status_code);
    put("account", account);
    if let Some(region) = region {
        put("region", region);
    }
    if let Some(scope) = d.lenient_str("eventScopeCode") {
        put("scope", scope);
    }

    let entities = entities(d.get("affectedEntities"));
    let summary = cut(
        &format!(
            "AWS Health {category} ({status_code}): {service} {code}{}",
            region.map(|r| format!(" in {r}")).unwrap_or_default()
        ),
        MAX_SUMMARY_CHARS,
    );
    let mut description = latest_description(d.get("eventDescription")).unwrap_or_default();
    if !entities.is_empty() {
        let named: Vec<&str> = entities
            .iter()
            .take(ENTITIES_NAMED)
            .map(String::as_str)
            .collect();
        let more = entities.len().saturating_sub(ENTITIES_NAMED);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        description = format!("Affected: {}{tail}\n\n{description}", named.join(", "));
    }
    let description = Some(description.trim())
        .filter(|s| !s.is_empty())
        .map(|s| cut(s, MAX_DESCRIPTION_CHARS));

    let occurred_at = ["lastUpdatedTime", "startTime"]
        .iter()
        .filter_map(|k| d.lenient_str(k))
        .chain(f.lenient_str("time"))
        .find_map(parse_health_time)
        .ok_or_else(|| {
            d.malformed(
                "lastUpdatedTime",
                "no time (lastUpdatedTime, startTime or the event's time) parses",
            )
        })?;

    Ok(Alert {
        source: Source::Eventbridge,
        fingerprint: fingerprint(account, arn),
        status,
        summary,
        description,
        labels,
        details: value.clone(),
        occurred_at,
        delivery_id: f.opt_str("id")?.map(str::to_string),
        severity_override: None,
    })
}

/// `aws_health/<account>/<eventArn>`, or with the ARN hashed should it not make a fingerprint.
fn fingerprint(account: &str, arn: &str) -> Fingerprint {
    Fingerprint::parse(format!("{KIND}/{account}/{arn}")).unwrap_or_else(|_| {
        let hash = short_hash(&[account.as_bytes(), b"\n", arn.as_bytes()]);
        Fingerprint::parse(format!("{KIND}/{hash}"))
            .expect("invariant: an ASCII hex fingerprint is valid")
    })
}

/// Health's RFC 1123 times (`Wed, 12 Feb 2025 00:37:54 GMT`), or RFC 3339 (the envelope's).
pub fn parse_health_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s)
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The English `latestDescription` of `eventDescription`, else the first one.
fn latest_description(v: Option<&Value>) -> Option<String> {
    let list = v?.as_array()?;
    fn text(e: &Value) -> Option<&str> {
        e.get("latestDescription").and_then(Value::as_str)
    }
    list.iter()
        .find(|e| {
            e.get("language")
                .and_then(Value::as_str)
                .is_some_and(|l| l.starts_with("en"))
        })
        .and_then(text)
        .or_else(|| list.iter().find_map(text))
        .map(str::to_string)
}

/// The `entityValue`s of `affectedEntities` (with their `status` when given).
fn entities(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let value = e.get("entityValue")?.as_str()?;
            Some(match e.get("status").and_then(Value::as_str) {
                Some(s) => format!("{value} ({s})"),
                None => value.to_string(),
            })
        })
        .collect()
}

/// For callers that hold a `Value`: the event must be an object.
pub fn parse_value(value: &Value) -> Result<Alert, IngestError> {
    match value {
        Value::Object(map) => parse(map, value),
        other => Err(IngestError::Malformed(format!(
            "AWS Health event: expected a JSON object, got {}",
            type_name(other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ingest::testkit::mutations;

    fn event(status: &str) -> Value {
        json!({"version":"0","id":"5b53b920-3e7c-6003-589a-1","detail-type":"AWS Health Event",
         "source":"aws.health","account":"123456789012","time":"2025-02-12T00:38:36Z",
         "region":"ap-southeast-1","resources":["i-0abc123def4567890"],
         "detail":{"eventArn":"arn:aws:health:ap-southeast-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/AWS_EC2_OPERATIONAL_ISSUE_1a2b",
          "service":"EC2","eventTypeCode":"AWS_EC2_OPERATIONAL_ISSUE",
          "eventTypeCategory":"issue","eventScopeCode":"PUBLIC",
          "communicationId":"acf0ec86-1","startTime":"Wed, 12 Feb 2025 00:37:54 GMT",
          "lastUpdatedTime":"Wed, 12 Feb 2025 00:37:55 GMT",
          "statusCode":status,"eventRegion":"ap-southeast-1",
          "eventDescription":[{"language":"en_US","latestDescription":"Increased error rates."}],
          "affectedEntities":[{"entityValue":"i-0abc123def4567890","status":"IMPAIRED"}],
          "page":"1","totalPages":"1"}})
    }

    #[test]
    fn an_open_issue_is_a_firing_alert_with_typed_labels() {
        let alert = parse_value(&event("open")).unwrap();
        assert_eq!(alert.status, AlertStatus::Firing);
        for (k, v) in [
            ("kind", "aws_health"),
            ("service", "EC2"),
            ("event_type_code", "AWS_EC2_OPERATIONAL_ISSUE"),
            ("category", "issue"),
            ("status", "open"),
            ("region", "ap-southeast-1"),
            ("account", "123456789012"),
            ("scope", "PUBLIC"),
        ] {
            assert_eq!(alert.labels[k], v, "{k}");
        }
        assert!(
            alert
                .fingerprint
                .as_str()
                .starts_with("aws_health/123456789012/arn:aws:health")
        );
        let description = alert.description.unwrap();
        assert!(
            description.contains("i-0abc123def4567890 (IMPAIRED)"),
            "{description}"
        );
        assert!(description.contains("Increased error rates."));
        assert_eq!(alert.occurred_at.to_rfc3339(), "2025-02-12T00:37:55+00:00");
    }

    #[test]
    fn closed_resolves_the_same_incident_and_upcoming_fires() {
        let open = parse_value(&event("open")).unwrap();
        let closed = parse_value(&event("closed")).unwrap();
        assert_eq!(closed.status, AlertStatus::Resolved);
        assert_eq!(closed.fingerprint, open.fingerprint);
        assert_eq!(
            parse_value(&event("upcoming")).unwrap().status,
            AlertStatus::Firing
        );
        let err = parse_value(&event("gone")).unwrap_err();
        assert!(err.to_string().contains("detail.statusCode"), "{err}");
    }

    #[test]
    fn the_organizational_view_keys_on_the_affected_account() {
        let mut e = event("open");
        e["account"] = json!("999999999999");
        e["detail"]["affectedAccount"] = json!("123456789012");
        let org = parse_value(&e).unwrap();
        assert_eq!(org.labels["account"], "123456789012");
        assert_eq!(
            org.fingerprint,
            parse_value(&event("open")).unwrap().fingerprint
        );
        e["detail"]["affectedAccount"] = json!("222222222222");
        assert_ne!(parse_value(&e).unwrap().fingerprint, org.fingerprint);
    }

    #[test]
    fn missing_fields_are_named() {
        // Service and type code are read from the ARN when missing.
        for key in ["service", "eventTypeCode"] {
            let mut e = event("open");
            e["detail"].as_object_mut().unwrap().remove(key);
            let a = parse_value(&e).unwrap();
            assert_eq!(a.labels["service"], "EC2");
            assert_eq!(a.labels["event_type_code"], "AWS_EC2_OPERATIONAL_ISSUE");
            e["detail"]["eventArn"] = json!("arn:aws:health:ap-southeast-1::other");
            let err = parse_value(&e).unwrap_err().to_string();
            assert!(err.contains(&format!("detail.{key}")), "{err}");
        }
        for key in ["eventArn", "eventTypeCategory", "statusCode"] {
            let mut e = event("open");
            e["detail"].as_object_mut().unwrap().remove(key);
            let err = parse_value(&e).unwrap_err().to_string();
            assert!(err.contains(&format!("detail.{key}")), "{err}");
        }
    }

    #[test]
    fn mutated_events_never_panic() {
        let bytes = serde_json::to_vec(&event("open")).unwrap();
        for input in mutations(&bytes, 500, 0x4EA1) {
            if let Ok(v) = serde_json::from_slice::<Value>(&input) {
                let _ = parse_value(&v);
            }
        }
    }
}

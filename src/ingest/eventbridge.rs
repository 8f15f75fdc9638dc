//! Ingest, EventBridge: the body of an EventBridge API-destination POST in, an [`Alert`] out.
//!
//! Comes in: an EventBridge event (authenticated by the HTTP layer's API-key header; EventBridge
//! does not sign). Goes out: for a `CloudWatch Alarm State Change` from `aws.cloudwatch`, an
//! [`Alert`] with the same fingerprint (the alarm ARN) and the same labels the SNS path gives for
//! that alarm (both use `cloudwatch::alarm_labels`); for an AWS Health event, the alert of
//! `aws_health`; for an RDS event (`aws.rds`), the alert of `rds` (the same one its SNS
//! notification gives); for any other event, `None`, which the caller acknowledges and ignores
//! (e.g. `CloudWatch Alarm Configuration Change`).
//!
//! The event's shape differs from the SNS form: camelCase keys, dimensions as an object, the
//! composite rule under `configuration.alarmRule`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::cloudwatch::{
    AlarmArn, AlarmType, MetricEntry, MetricRef, alarm_description, alarm_labels_and_summary,
    alarm_status, alarmed_metric, build_alarm_arn, parse_cloudwatch_time,
};
use super::{Fields, IngestError, aws_health, parse_json, rds, type_name};
use crate::domain::{Alert, Fingerprint, Source};

/// The detail-type of the events that carry alarm state changes.
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";

/// Parses an EventBridge event: a CloudWatch alarm state change, an AWS Health event
/// (`aws_health`) or an RDS event (`rds`). `Ok(None)` for any other event; `Malformed` for invalid JSON or a state change missing `id`, `detail.alarmName`,
/// `detail.state.value` or `detail.state.timestamp`.
pub fn parse_event(body: &[u8]) -> Result<Option<Alert>, IngestError> {
    let value = parse_json(body, "EventBridge event")?;
    let Value::Object(map) = &value else {
        return Err(IngestError::Malformed(format!(
            "EventBridge event: expected a JSON object, got {}",
            type_name(&value)
        )));
    };
    let f = Fields::new("", map);
    let (detail_type, source) = (f.req_str("detail-type")?, f.req_str("source")?);
    if aws_health::is_health_event(source, detail_type) {
        return aws_health::parse(map, &value).map(Some);
    }
    if rds::is_rds_event(source, detail_type) {
        return rds::parse_eventbridge(map, &value).map(Some);
    }
    if detail_type != ALARM_STATE_CHANGE || source != "aws.cloudwatch" {
        return Ok(None);
    }
    let id = f.req_str("id")?.to_string();
    let detail = f.req_object("detail")?;
    let d = Fields::new("detail", detail);
    let name = d.req_str("alarmName")?;
    let state_map = d.req_object("state")?;
    let s = Fields::new("detail.state", state_map);
    let state = s.req_str("value")?;
    let status = alarm_status(state).ok_or_else(|| {
        s.malformed(
            "value",
            format_args!("expected \"ALARM\", \"OK\" or \"INSUFFICIENT_DATA\", got {state:?}"),
        )
    })?;
    let changed = s.req_str("timestamp")?;
    let occurred_at = parse_cloudwatch_time(changed).ok_or_else(|| {
        s.malformed(
            "timestamp",
            format_args!("expected a time like 2026-11-20T02:15:41.377+0000, got {changed:?}"),
        )
    })?;

    let arn = match alarm_arn_resource(map) {
        Some(arn) => arn.to_string(),
        None => {
            let region = f.opt_str("region")?.filter(|r| !r.is_empty());
            let account = f
                .opt_str("account")?
                .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
            match (region, account) {
                (Some(region), Some(account)) => build_alarm_arn(region, account, name),
                _ => {
                    return Err(IngestError::Malformed(
                        "resources[0]: no alarm ARN, and region/account are missing to rebuild it"
                            .into(),
                    ));
                }
            }
        }
    };
    let fingerprint = Fingerprint::parse(arn.as_str())
        .map_err(|e| IngestError::Malformed(format!("alarm ARN: {e}")))?;

    let configuration = d.opt_object("configuration")?;
    let (alarm_type, metric) = configuration
        .map(configuration_metric)
        .unwrap_or((AlarmType::Metric, MetricRef::default()));
    let (labels, summary) = alarm_labels_and_summary(name, &arn, state, alarm_type, &metric);
    let description = alarm_description(
        configuration
            .and_then(|c| c.get("description"))
            .and_then(Value::as_str),
        s.lenient_str("reason"),
    );

    Ok(Some(Alert {
        source: Source::Eventbridge,
        fingerprint,
        status,
        summary,
        description,
        labels,
        details: value,
        occurred_at,
        delivery_id: Some(id),
        severity_override: None,
    }))
}

/// `resources[0]` when it is a CloudWatch alarm ARN.
fn alarm_arn_resource(map: &Map<String, Value>) -> Option<&str> {
    let first = map.get("resources")?.as_array()?.first()?.as_str()?;
    AlarmArn::parse(first).map(|_| first)
}

/// The alarm type and alarmed metric of `detail.configuration`. A single `metricStat` entry is a
/// plain metric alarm (the SNS form shows it as `Trigger.MetricName`); several entries, or an
/// expression, are metric math.
fn configuration_metric(config: &Map<String, Value>) -> (AlarmType, MetricRef<'_>) {
    if config.get("alarmRule").is_some_and(|r| !r.is_null()) {
        return (AlarmType::Composite, MetricRef::default());
    }
    let entries: Vec<MetricEntry<'_>> = config
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|e| MetricEntry {
            return_data: e
                .get("returnData")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            metric: e
                .get("metricStat")
                .and_then(|s| s.get("metric"))
                .and_then(Value::as_object)
                .map(eventbridge_metric),
        })
        .collect();
    match entries.as_slice() {
        [] => (AlarmType::Metric, MetricRef::default()),
        [only] if only.metric.is_some() => {
            (AlarmType::Metric, only.metric.clone().unwrap_or_default())
        }
        _ => (
            AlarmType::MetricMath,
            alarmed_metric(&entries).cloned().unwrap_or_default(),
        ),
    }
}

/// `namespace`, `name` and `dimensions: {Name: value}` of an EventBridge-form metric.
fn eventbridge_metric(m: &Map<String, Value>) -> MetricRef<'_> {
    let dimensions: BTreeMap<String, String> = m
        .get("dimensions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    MetricRef {
        namespace: m.get("namespace").and_then(Value::as_str),
        name: m.get("name").and_then(Value::as_str),
        dimensions,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::AlertStatus;
    use crate::ingest::cloudwatch::parse_alarm;
    use crate::ingest::sns::{SnsEnvelope, SnsMessage};
    use crate::ingest::testkit::{fixture, mutations};

    const FIXTURE: &str = "eventbridge-cloudwatch-alarm-state-change.json";

    fn event() -> Value {
        serde_json::from_slice(&fixture(FIXTURE)).expect("fixture is JSON")
    }

    fn parse_value(v: &Value) -> Result<Option<Alert>, IngestError> {
        parse_event(&serde_json::to_vec(v).expect("serializes"))
    }

    #[test]
    fn the_fixture_matches_the_sns_alarm_for_the_same_alarm() {
        let alert = parse_event(&fixture(FIXTURE))
            .expect("parses")
            .expect("is an alarm state change");
        let Ok(SnsMessage::Notification { message, .. }) =
            SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json"))
                .map(|e| e.message)
        else {
            panic!("SNS fixture is a notification");
        };
        let via_sns = parse_alarm(&message, None, None).expect("SNS alarm parses");

        assert_eq!(alert.fingerprint, via_sns.fingerprint);
        assert_eq!(alert.labels, via_sns.labels);
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.occurred_at, via_sns.occurred_at);
        assert_eq!(alert.summary, via_sns.summary);
        assert_eq!(alert.description, via_sns.description);
        assert_eq!(alert.source, Source::Eventbridge);
        assert_eq!(
            alert.delivery_id.as_deref(),
            Some("3d8c1f5a-6b2e-9d47-0a1c-e5f7b3d9c2a8")
        );
        assert_eq!(
            alert.details["detail"]["alarmName"],
            "eks-prod-apse1-node-cpu-high"
        );
    }

    #[test]
    fn other_events_are_ignored() {
        let mut v = event();
        v["detail-type"] = json!("CloudWatch Alarm Configuration Change");
        assert_eq!(parse_value(&v), Ok(None));
        let mut v = event();
        v["source"] = json!("aws.ec2");
        assert_eq!(parse_value(&v), Ok(None));
        assert_eq!(
            parse_event(br#"{"detail-type": "Scheduled Event", "source": "aws.events"}"#),
            Ok(None)
        );
    }

    #[test]
    fn the_arn_is_rebuilt_when_resources_are_missing() {
        let mut v = event();
        v["resources"] = json!([]);
        let alert = parse_value(&v).expect("parses").expect("alert");
        assert_eq!(
            alert.fingerprint.as_str(),
            "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:eks-prod-apse1-node-cpu-high"
        );
    }

    #[test]
    fn composite_and_metric_math_events_get_their_alarm_type() {
        let mut v = event();
        v["detail"]["configuration"] =
            json!({"alarmRule": "ALARM(\"a\") AND ALARM(\"b\")", "description": null});
        let alert = parse_value(&v).expect("parses").expect("alert");
        assert_eq!(alert.labels["alarm_type"], "composite");
        assert!(!alert.labels.contains_key("metric"));

        let mut v = event();
        v["detail"]["configuration"]["metrics"] = json!([
            {"id": "m1", "metricStat": {"metric": {"namespace": "AWS/Route53", "name": "HealthCheckStatus",
              "dimensions": {"HealthCheckId": "hc-1"}}, "period": 60, "stat": "Minimum"}, "returnData": false},
            {"id": "e1", "expression": "m1 * 1", "label": "status", "returnData": true}
        ]);
        let alert = parse_value(&v).expect("parses").expect("alert");
        assert_eq!(alert.labels["alarm_type"], "metric_math");
        assert_eq!(alert.labels["kind"], "route53_health_check");
        assert_eq!(alert.labels["health_check_id"], "hc-1");
    }

    #[test]
    fn bad_events_are_malformed() {
        let mut cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not valid JSON"),
            (b"[]".to_vec(), "expected a JSON object"),
            (b"{}".to_vec(), "detail-type: missing"),
        ];
        let mut edit = |path: &[&str], new: Option<Value>, expected: &'static str| {
            let mut v = event();
            let mut target = &mut v;
            for key in &path[..path.len() - 1] {
                target = &mut target[*key];
            }
            let last = path[path.len() - 1];
            match (new, target.as_object_mut()) {
                (Some(n), Some(obj)) => {
                    obj.insert(last.into(), n);
                }
                (None, Some(obj)) => {
                    obj.remove(last);
                }
                _ => panic!("bad test path {path:?}"),
            }
            cases.push((serde_json::to_vec(&v).expect("serializes"), expected));
        };
        edit(&["id"], None, "id: missing");
        edit(
            &["detail"],
            Some(json!("x")),
            "detail: expected an object, got a string",
        );
        edit(&["detail", "alarmName"], None, "detail.alarmName: missing");
        edit(
            &["detail", "state", "value"],
            Some(json!("PANIC")),
            "detail.state.value: expected",
        );
        edit(
            &["detail", "state", "timestamp"],
            None,
            "detail.state.timestamp: missing",
        );
        edit(
            &["detail", "state", "timestamp"],
            Some(json!("noon")),
            "detail.state.timestamp: expected a time",
        );
        edit(&["resources"], Some(json!(["arn:aws:sqs:x"])), "");
        for (body, expected) in cases {
            let result = parse_event(&body);
            if expected.is_empty() {
                // A non-alarm resource falls back to region/account/name.
                assert!(result.is_ok(), "{result:?}");
                continue;
            }
            match result {
                Err(IngestError::Malformed(m)) => assert!(m.contains(expected), "{expected}: {m}"),
                other => panic!("{expected}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn mutated_events_never_panic() {
        for input in mutations(&fixture(FIXTURE), 500, 0xEB) {
            let _ = parse_event(&input);
        }
    }
}

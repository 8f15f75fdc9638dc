//! Ingest, CloudWatch `DescribeAlarms`: one alarm as reconciliation read it in, an [`Alert`] out.
//!
//! Comes in: a [`DescribedAlarm`], the transport-neutral copy of one `MetricAlarm` or
//! `CompositeAlarm` of a DescribeAlarms page (filled by `pipeline::reconcile` from the SDK's
//! types, so that this stays pure and testable without AWS). Goes out: the [`Alert`] the SNS
//! notification of the same state change would have given — the same fingerprint (the alarm ARN),
//! the same labels ([`alarm_labels`]), summary and description — so that SNS, EventBridge and
//! reconciliation never make two incidents of one alarm.
//!
//! The time of the change is `StateTransitionedTimestamp` ("StateValue most recently changed",
//! the same instant as SNS's `StateChangeTime`) when the response carries it, else
//! `StateUpdatedTimestamp` (which also moves when only the evaluation state changed; moto and
//! older responses only have this one).
//!
//! [`Alert`]: crate::domain::Alert

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::IngestError;
use super::cloudwatch::{
    AlarmArn, AlarmType, MetricEntry, MetricRef, alarm_description, alarm_labels_and_summary,
    alarm_status, alarmed_metric,
};
use crate::domain::{Alert, Fingerprint, Source};

/// One metric of a metric-math or anomaly-detection alarm (`Metrics[]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedMetric {
    pub id: Option<String>,
    pub expression: Option<String>,
    pub return_data: bool,
    /// `MetricStat.Metric`, when the entry is a metric rather than an expression.
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    pub dimensions: Vec<(String, String)>,
}

/// Whether the alarm came from the `MetricAlarms` or the `CompositeAlarms` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DescribedKind {
    #[default]
    Metric,
    Composite,
}

/// One alarm of a DescribeAlarms response. Every field is optional, as in the API model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribedAlarm {
    pub kind: DescribedKind,
    pub name: Option<String>,
    pub arn: Option<String>,
    pub description: Option<String>,
    /// `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: Option<String>,
    pub state_reason: Option<String>,
    pub state_updated: Option<DateTime<Utc>>,
    pub state_transitioned: Option<DateTime<Utc>>,
    /// Single-metric alarms.
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    pub dimensions: Vec<(String, String)>,
    /// Metric-math and anomaly-detection alarms.
    pub metrics: Vec<DescribedMetric>,
    /// Composite alarms.
    pub alarm_rule: Option<String>,
}

impl DescribedAlarm {
    /// When the alarm entered its current state, as well as the response tells.
    pub fn changed_at(&self) -> Option<DateTime<Utc>> {
        self.state_transitioned.or(self.state_updated)
    }
}

fn sorted(dims: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in dims {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    out
}

/// The alert for `alarm`'s current state, read by reconciliation in `region`.
///
/// Refused (`Malformed`, naming the field) when the alarm lacks what no alert can exist without:
/// a CloudWatch alarm ARN, a known state, and a state time.
pub fn described_alarm(alarm: &DescribedAlarm, region: &str) -> Result<Alert, IngestError> {
    let bad = |field: &str, why: String| {
        IngestError::Malformed(format!(
            "DescribeAlarms ({region}) alarm {:?}: {field}: {why}",
            alarm.name.as_deref().unwrap_or("?")
        ))
    };
    let arn_text = alarm
        .arn
        .as_deref()
        .ok_or_else(|| bad("AlarmArn", "missing".into()))?;
    let arn = AlarmArn::parse(arn_text).ok_or_else(|| {
        bad(
            "AlarmArn",
            format!("not a CloudWatch alarm ARN: {arn_text:?}"),
        )
    })?;
    let state = alarm
        .state
        .as_deref()
        .ok_or_else(|| bad("StateValue", "missing".into()))?;
    let status = alarm_status(state).ok_or_else(|| {
        bad(
            "StateValue",
            format!("expected \"ALARM\", \"OK\" or \"INSUFFICIENT_DATA\", got {state:?}"),
        )
    })?;
    let occurred_at = alarm
        .changed_at()
        .ok_or_else(|| bad("StateTransitionedTimestamp", "missing".into()))?;
    let name = alarm
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(arn.name);
    let fingerprint = Fingerprint::parse(arn_text).map_err(|e| bad("AlarmArn", e.to_string()))?;

    let single_dims = sorted(&alarm.dimensions);
    let entries: Vec<MetricEntry<'_>> = alarm
        .metrics
        .iter()
        .map(|m| MetricEntry {
            return_data: m.return_data,
            metric: (m.namespace.is_some() || m.metric_name.is_some()).then(|| MetricRef {
                namespace: m.namespace.as_deref(),
                name: m.metric_name.as_deref(),
                dimensions: sorted(&m.dimensions),
            }),
        })
        .collect();
    let (alarm_type, metric) = match alarm.kind {
        DescribedKind::Composite => (AlarmType::Composite, MetricRef::default()),
        DescribedKind::Metric if !entries.is_empty() => (
            AlarmType::MetricMath,
            alarmed_metric(&entries).cloned().unwrap_or_default(),
        ),
        DescribedKind::Metric => (
            AlarmType::Metric,
            MetricRef {
                namespace: alarm.namespace.as_deref(),
                name: alarm.metric_name.as_deref(),
                dimensions: single_dims.clone(),
            },
        ),
    };
    let (labels, summary) = alarm_labels_and_summary(name, arn_text, state, alarm_type, &metric);
    let description =
        alarm_description(alarm.description.as_deref(), alarm.state_reason.as_deref());

    // The keys of the SNS message for the same change, so details read alike on both paths.
    let mut details = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            details.insert(k.to_string(), v);
        }
    };
    put("AlarmName", Some(json!(name)));
    put("AlarmArn", Some(json!(arn_text)));
    put(
        "AlarmDescription",
        alarm.description.as_deref().map(|d| json!(d)),
    );
    put("NewStateValue", Some(json!(state)));
    put(
        "NewStateReason",
        alarm.state_reason.as_deref().map(|r| json!(r)),
    );
    put(
        "StateChangeTime",
        Some(json!(
            occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true)
        )),
    );
    put("AWSAccountId", Some(json!(arn.account)));
    put("AlarmRule", alarm.alarm_rule.as_deref().map(|r| json!(r)));
    if alarm.kind == DescribedKind::Metric {
        let dims = |d: &[(String, String)]| -> Value {
            d.iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect()
        };
        let trigger = if alarm.metrics.is_empty() {
            json!({
                "Namespace": alarm.namespace,
                "MetricName": alarm.metric_name,
                "Dimensions": dims(&alarm.dimensions),
            })
        } else {
            let metrics: Vec<Value> = alarm
                .metrics
                .iter()
                .map(|m| {
                    let mut e = json!({ "Id": m.id, "ReturnData": m.return_data });
                    if let Some(x) = &m.expression {
                        e["Expression"] = json!(x);
                    }
                    if m.namespace.is_some() || m.metric_name.is_some() {
                        e["MetricStat"] = json!({ "Metric": {
                            "Namespace": m.namespace,
                            "MetricName": m.metric_name,
                            "Dimensions": dims(&m.dimensions),
                        }});
                    }
                    e
                })
                .collect();
            json!({ "Metrics": metrics })
        };
        put("Trigger", Some(trigger));
    }
    put(
        "reconciled",
        Some(json!({ "region": region, "via": "DescribeAlarms" })),
    );

    Ok(Alert {
        source: Source::Reconcile,
        fingerprint,
        status,
        summary,
        description,
        labels,
        details: Value::Object(details),
        occurred_at,
        delivery_id: None,
        severity_override: None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::ingest::sns::{SnsEnvelope, SnsMessage};
    use crate::ingest::testkit::fixture;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 2, 15, s).unwrap()
    }

    fn metric_alarm() -> DescribedAlarm {
        DescribedAlarm {
            kind: DescribedKind::Metric,
            name: Some("eks-prod-apse1-node-cpu-high".into()),
            arn: Some(
                "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:eks-prod-apse1-node-cpu-high"
                    .into(),
            ),
            description: Some("EKS node CPU above 85%".into()),
            state: Some("ALARM".into()),
            state_reason: Some("Threshold Crossed".into()),
            state_updated: Some(at(50)),
            state_transitioned: Some(at(41)),
            namespace: Some("ContainerInsights".into()),
            metric_name: Some("node_cpu_utilization".into()),
            dimensions: vec![("ClusterName".into(), "eks-prod-apse1".into())],
            ..Default::default()
        }
    }

    #[test]
    fn a_metric_alarm_reads_like_its_sns_notification() {
        let a = described_alarm(&metric_alarm(), "ap-southeast-1").unwrap();
        assert_eq!(
            a.fingerprint.as_str(),
            "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:eks-prod-apse1-node-cpu-high"
        );
        assert_eq!(a.source, Source::Reconcile);
        assert_eq!(a.status, crate::domain::AlertStatus::Firing);
        // The transition time, not the last update of the evaluation.
        assert_eq!(a.occurred_at, at(41));
        assert_eq!(a.labels["source"], "cloudwatch");
        assert_eq!(a.labels["kind"], "cloudwatch_alarm");
        assert_eq!(a.labels["alarm_state"], "ALARM");
        assert_eq!(a.labels["region"], "ap-southeast-1");
        assert_eq!(a.labels["account"], "123456789012");
        assert_eq!(a.labels["namespace"], "ContainerInsights");
        assert_eq!(a.labels["metric"], "node_cpu_utilization");
        assert_eq!(a.labels["cluster_name"], "eks-prod-apse1");
        assert_eq!(
            a.summary,
            "ALARM: eks-prod-apse1-node-cpu-high (ap-southeast-1)"
        );
        assert_eq!(
            a.description.as_deref(),
            Some("EKS node CPU above 85%\nThreshold Crossed")
        );
        assert_eq!(a.details["reconciled"]["region"], "ap-southeast-1");
    }

    #[test]
    fn without_a_transition_time_the_update_time_is_used() {
        let mut alarm = metric_alarm();
        alarm.state_transitioned = None;
        assert_eq!(
            described_alarm(&alarm, "ap-southeast-1")
                .unwrap()
                .occurred_at,
            at(50)
        );
    }

    /// The Route 53 fixture's SNS message and the same alarm as DescribeAlarms returns it give
    /// the same fingerprint and labels: one incident whichever path saw it first.
    #[test]
    fn the_route53_alarm_matches_its_sns_fixture() {
        let env = SnsEnvelope::parse(&fixture("route53-healthcheck-alarm-sns-notification.json"))
            .unwrap();
        let SnsMessage::Notification {
            message,
            message_id,
            ..
        } = env.message
        else {
            panic!("fixture is a Notification");
        };
        let from_sns = crate::ingest::parse_alarm(&message, Some(message_id), None).unwrap();
        let msg: Value = serde_json::from_str(&message).unwrap();
        let trigger = &msg["Trigger"];
        let dims = trigger["Dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let described = DescribedAlarm {
            kind: DescribedKind::Metric,
            name: msg["AlarmName"].as_str().map(String::from),
            arn: Some(from_sns.fingerprint.to_string()),
            description: msg["AlarmDescription"].as_str().map(String::from),
            state: Some("ALARM".into()),
            state_reason: msg["NewStateReason"].as_str().map(String::from),
            state_transitioned: Some(from_sns.occurred_at),
            namespace: trigger["Namespace"].as_str().map(String::from),
            metric_name: trigger["MetricName"].as_str().map(String::from),
            dimensions: dims,
            ..Default::default()
        };
        let reconciled = described_alarm(&described, "us-east-1").unwrap();
        assert_eq!(reconciled.fingerprint, from_sns.fingerprint);
        assert_eq!(reconciled.labels, from_sns.labels);
        assert_eq!(reconciled.labels["kind"], "route53_health_check");
        assert!(reconciled.labels.contains_key("health_check_id"));
        assert_eq!(reconciled.summary, from_sns.summary);
        assert_eq!(reconciled.occurred_at, from_sns.occurred_at);
    }

    #[test]
    fn metric_math_and_composite_alarms() {
        let mut math = metric_alarm();
        math.namespace = None;
        math.metric_name = None;
        math.dimensions.clear();
        math.metrics = vec![
            DescribedMetric {
                id: Some("m1".into()),
                namespace: Some("AWS/RDS".into()),
                metric_name: Some("ReplicaLag".into()),
                dimensions: vec![("DBInstanceIdentifier".into(), "prod-db-replica".into())],
                ..Default::default()
            },
            DescribedMetric {
                id: Some("ad1".into()),
                expression: Some("ANOMALY_DETECTION_BAND(m1, 2)".into()),
                return_data: true,
                ..Default::default()
            },
        ];
        let a = described_alarm(&math, "ap-southeast-1").unwrap();
        assert_eq!(a.labels["alarm_type"], "metric_math");
        assert_eq!(a.labels["metric"], "ReplicaLag");
        assert_eq!(a.labels["db_instance_identifier"], "prod-db-replica");

        let composite = DescribedAlarm {
            kind: DescribedKind::Composite,
            name: Some("trading-degraded".into()),
            arn: Some(
                "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:trading-degraded".into(),
            ),
            state: Some("OK".into()),
            state_transitioned: Some(at(3)),
            alarm_rule: Some("ALARM(\"a\") OR ALARM(\"b\")".into()),
            ..Default::default()
        };
        let c = described_alarm(&composite, "ap-southeast-1").unwrap();
        assert_eq!(c.labels["alarm_type"], "composite");
        assert_eq!(c.status, crate::domain::AlertStatus::Resolved);
        assert_eq!(c.details["AlarmRule"], "ALARM(\"a\") OR ALARM(\"b\")");
        assert!(c.details.get("Trigger").is_none());

        let mut no_data = metric_alarm();
        no_data.state = Some("INSUFFICIENT_DATA".into());
        assert_eq!(
            described_alarm(&no_data, "ap-southeast-1").unwrap().status,
            crate::domain::AlertStatus::InsufficientData
        );
    }

    #[test]
    fn what_no_alert_can_exist_without_is_refused_by_name() {
        type Break = fn(&mut DescribedAlarm);
        let cases: [(Break, &str); 5] = [
            (|a| a.arn = None, "AlarmArn: missing"),
            (
                |a| a.arn = Some("arn:aws:sns:x".into()),
                "not a CloudWatch alarm ARN",
            ),
            (|a| a.state = None, "StateValue: missing"),
            (|a| a.state = Some("BROKEN".into()), "expected \"ALARM\""),
            (
                |a| {
                    a.state_transitioned = None;
                    a.state_updated = None;
                },
                "StateTransitionedTimestamp: missing",
            ),
        ];
        for (break_it, expected) in cases {
            let mut alarm = metric_alarm();
            break_it(&mut alarm);
            match described_alarm(&alarm, "ap-southeast-1") {
                Err(IngestError::Malformed(m)) => assert!(m.contains(expected), "{m}"),
                other => panic!("expected Malformed with {expected:?}, got {other:?}"),
            }
        }
    }
}

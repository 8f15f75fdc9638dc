//! Ingest, CloudWatch alarms: the JSON text of a verified SNS `Message` in, an [`Alert`] out.
//!
//! Comes in: a CloudWatch alarm notification (metric, metric-math/anomaly or composite alarm,
//! Route 53 health-check alarms included) as published to SNS, plus the SNS `MessageId`. Goes out:
//! an [`Alert`] keyed by the alarm ARN, with labels built by [`alarm_labels`], which
//! `ingest::eventbridge` shares so both transports give the same fingerprint and labels for an
//! alarm.
//!
//! Every field is treated as optional and cosmetic fields of the wrong type are ignored (a real
//! alarm must not be dropped over its `Unit`); only what the alert cannot exist without (the state,
//! the alarm's identity, when it changed) is required. A `Message` that is not a CloudWatch alarm
//! (topics also carry other publishers) is `Malformed`, never a panic; `ingest::sns_notification`
//! then takes it as a generic notification.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Fields, IngestError};
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source};

/// Which kind of CloudWatch alarm changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmType {
    /// One metric (`Trigger.MetricName` / a single `metricStat`).
    Metric,
    /// Metric math or anomaly detection (`Trigger.Metrics` / several `metrics` entries).
    MetricMath,
    /// A composite alarm (`AlarmRule`, no `Trigger`).
    Composite,
}

impl AlarmType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::MetricMath => "metric_math",
            Self::Composite => "composite",
        }
    }
}

/// What both transports know about an alarm, from which [`alarm_labels`] builds the label set.
#[derive(Debug, Clone, Copy)]
pub struct AlarmFacts<'a> {
    pub name: &'a str,
    /// The alarm ARN; `region` and `account` labels are taken from it.
    pub arn: &'a str,
    /// The raw state: `ALARM`, `OK` or `INSUFFICIENT_DATA`.
    pub state: &'a str,
    pub alarm_type: AlarmType,
    pub namespace: Option<&'a str>,
    pub metric: Option<&'a str>,
    /// Dimension name (as CloudWatch spells it, `ClusterName`) → value. Sorted, so when two
    /// names map to one label the result does not depend on the transport's ordering.
    pub dimensions: &'a BTreeMap<String, String>,
}

/// Label names a dimension may not overwrite.
const FIXED_LABELS: [&str; 9] = [
    "source",
    "kind",
    "alarm_name",
    "alarm_type",
    "alarm_state",
    "region",
    "account",
    "namespace",
    "metric",
];

/// The labels of a CloudWatch alarm, identical whichever transport delivered it:
/// `source`=`cloudwatch`, `kind` (`route53_health_check` for `AWS/Route53` `HealthCheckStatus`,
/// else `cloudwatch_alarm`), `alarm_name`, `alarm_type`, `alarm_state`, `region` (the code from the
/// ARN), `account`, `namespace` and `metric` when known, then each dimension in snake_case
/// (`HealthCheckId` → `health_check_id`) unless it would overwrite one of those.
pub fn alarm_labels(facts: &AlarmFacts<'_>) -> Labels {
    let mut labels = Labels::new();
    let mut put = |k: &str, v: &str| {
        labels.insert(k.to_string(), v.to_string());
    };
    let is_health_check =
        facts.namespace == Some("AWS/Route53") && facts.metric == Some("HealthCheckStatus");
    put("source", "cloudwatch");
    put(
        "kind",
        if is_health_check {
            "route53_health_check"
        } else {
            "cloudwatch_alarm"
        },
    );
    put("alarm_name", facts.name);
    put("alarm_type", facts.alarm_type.as_str());
    put("alarm_state", facts.state);
    if let Some(arn) = AlarmArn::parse(facts.arn) {
        put("region", arn.region);
        put("account", arn.account);
    }
    if let Some(ns) = facts.namespace {
        put("namespace", ns);
    }
    if let Some(metric) = facts.metric {
        put("metric", metric);
    }
    for (name, value) in facts.dimensions {
        let Some(label) = dimension_label_name(name) else {
            continue;
        };
        if FIXED_LABELS.contains(&label.as_str()) {
            continue;
        }
        labels.entry(label).or_insert_with(|| value.clone());
    }
    labels
}

/// A dimension name as a label name: `ClusterName` → `cluster_name`, `DBInstanceIdentifier` →
/// `db_instance_identifier`; characters outside `[a-zA-Z0-9_]` become `_`; a leading digit gets a
/// `_` prefix. `None` when nothing usable is left.
pub fn dimension_label_name(name: &str) -> Option<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    // Collapse runs of '_' and trim them at the ends.
    let mut label = String::with_capacity(out.len());
    for part in out.split('_').filter(|p| !p.is_empty()) {
        if !label.is_empty() {
            label.push('_');
        }
        label.push_str(part);
    }
    if label.is_empty() {
        return None;
    }
    if label.starts_with(|c: char| c.is_ascii_digit()) {
        label.insert(0, '_');
    }
    Some(label)
}

/// The parts of `arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmArn<'a> {
    pub region: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

impl<'a> AlarmArn<'a> {
    pub fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(7, ':');
        let (
            Some("arn"),
            Some(partition),
            Some("cloudwatch"),
            Some(region),
            Some(account),
            Some("alarm"),
            Some(name),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return None;
        };
        let ok = partition.starts_with("aws")
            && is_region_code(region)
            && !account.is_empty()
            && account.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty();
        ok.then_some(Self {
            region,
            account,
            name,
        })
    }
}

fn is_region_code(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The ARN CloudWatch would give alarm `name` in `region` of `account`, for payloads that lack one.
pub fn build_alarm_arn(region: &str, account: &str, name: &str) -> String {
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    format!("arn:{partition}:cloudwatch:{region}:{account}:alarm:{name}")
}

/// `ALARM` → firing, `OK` → resolved, `INSUFFICIENT_DATA` → insufficient data.
pub fn alarm_status(state: &str) -> Option<AlertStatus> {
    match state {
        "ALARM" => Some(AlertStatus::Firing),
        "OK" => Some(AlertStatus::Resolved),
        "INSUFFICIENT_DATA" => Some(AlertStatus::InsufficientData),
        _ => None,
    }
}

/// The labels ([`alarm_labels`]) and summary ([`alarm_summary`]) of alarm `name` (`arn`) in
/// `state`, of type `alarm_type`, alarming on `metric`: what every transport (SNS, EventBridge,
/// reconciliation) gives an alarm, so all three make the same incident of it.
pub(crate) fn alarm_labels_and_summary(
    name: &str,
    arn: &str,
    state: &str,
    alarm_type: AlarmType,
    metric: &MetricRef<'_>,
) -> (Labels, String) {
    let labels = alarm_labels(&AlarmFacts {
        name,
        arn,
        state,
        alarm_type,
        namespace: metric.namespace,
        metric: metric.name,
        dimensions: &metric.dimensions,
    });
    let summary = alarm_summary(state, name, labels.get("region").map(String::as_str));
    (labels, summary)
}

/// `ALARM: eks-prod-apse1-node-cpu-high (ap-southeast-1)`.
pub fn alarm_summary(state: &str, name: &str, region: Option<&str>) -> String {
    match region {
        Some(region) => format!("{state}: {name} ({region})"),
        None => format!("{state}: {name}"),
    }
}

/// The alarm description, then the state reason on a new line; empty parts are left out.
pub fn alarm_description(description: Option<&str>, reason: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [description, reason]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// CloudWatch's `2026-11-20T02:15:41.377+0000`, or RFC 3339.
pub fn parse_cloudwatch_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// One entry of a metric-math alarm's metric list, transport-neutral.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetricEntry<'a> {
    pub(crate) return_data: bool,
    /// `Some` when the entry is a metric (`MetricStat`), `None` for an expression.
    pub(crate) metric: Option<MetricRef<'a>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct MetricRef<'a> {
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) dimensions: BTreeMap<String, String>,
}

/// The alarmed series of a metric-math alarm: the `ReturnData` entry if it is a metric; if it is
/// an expression (anomaly band, math over one metric) and exactly one entry is a metric, that one.
pub(crate) fn alarmed_metric<'e, 'a>(entries: &'e [MetricEntry<'a>]) -> Option<&'e MetricRef<'a>> {
    if let Some(m) = entries
        .iter()
        .find(|e| e.return_data)
        .and_then(|e| e.metric.as_ref())
    {
        return Some(m);
    }
    let mut metrics = entries.iter().filter_map(|e| e.metric.as_ref());
    match (metrics.next(), metrics.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Region long names as they appear in CloudWatch's `Region` field, for rebuilding an ARN when a
/// payload has none. Only used as a fallback: the ARN's code is authoritative.
const REGION_NAMES: &[(&str, &str)] = &[
    ("US East (N. Virginia)", "us-east-1"),
    ("US East (Ohio)", "us-east-2"),
    ("US West (N. California)", "us-west-1"),
    ("US West (Oregon)", "us-west-2"),
    ("Africa (Cape Town)", "af-south-1"),
    ("Asia Pacific (Hong Kong)", "ap-east-1"),
    ("Asia Pacific (Hyderabad)", "ap-south-2"),
    ("Asia Pacific (Jakarta)", "ap-southeast-3"),
    ("Asia Pacific (Malaysia)", "ap-southeast-5"),
    ("Asia Pacific (Melbourne)", "ap-southeast-4"),
    ("Asia Pacific (Mumbai)", "ap-south-1"),
    ("Asia Pacific (Osaka)", "ap-northeast-3"),
    ("Asia Pacific (Seoul)", "ap-northeast-2"),
    ("Asia Pacific (Singapore)", "ap-southeast-1"),
    ("Asia Pacific (Sydney)", "ap-southeast-2"),
    ("Asia Pacific (Thailand)", "ap-southeast-7"),
    ("Asia Pacific (Tokyo)", "ap-northeast-1"),
    ("Canada (Central)", "ca-central-1"),
    ("Canada West (Calgary)", "ca-west-1"),
    ("China (Beijing)", "cn-north-1"),
    ("China (Ningxia)", "cn-northwest-1"),
    ("EU (Frankfurt)", "eu-central-1"),
    ("EU (Ireland)", "eu-west-1"),
    ("EU (London)", "eu-west-2"),
    ("EU (Milan)", "eu-south-1"),
    ("EU (Paris)", "eu-west-3"),
    ("EU (Spain)", "eu-south-2"),
    ("EU (Stockholm)", "eu-north-1"),
    ("EU (Zurich)", "eu-central-2"),
    ("Europe (Frankfurt)", "eu-central-1"),
    ("Europe (Ireland)", "eu-west-1"),
    ("Europe (London)", "eu-west-2"),
    ("Europe (Milan)", "eu-south-1"),
    ("Europe (Paris)", "eu-west-3"),
    ("Europe (Spain)", "eu-south-2"),
    ("Europe (Stockholm)", "eu-north-1"),
    ("Europe (Zurich)", "eu-central-2"),
    ("Israel (Tel Aviv)", "il-central-1"),
    ("Mexico (Central)", "mx-central-1"),
    ("Middle East (Bahrain)", "me-south-1"),
    ("Middle East (UAE)", "me-central-1"),
    ("South America (Sao Paulo)", "sa-east-1"),
    ("South America (São Paulo)", "sa-east-1"),
    ("AWS GovCloud (US-East)", "us-gov-east-1"),
    ("AWS GovCloud (US-West)", "us-gov-west-1"),
    ("AWS GovCloud (US)", "us-gov-west-1"),
];

fn region_code(long_name_or_code: &str) -> Option<&'static str> {
    REGION_NAMES
        .iter()
        .find(|(long, code)| *long == long_name_or_code || *code == long_name_or_code)
        .map(|(_, code)| *code)
}

/// Whether a JSON object claims to be a CloudWatch alarm: it has `NewStateValue`, `AlarmName` or
/// `AlarmArn`. Such a `Message` goes to [`parse_alarm`]; any other is a generic notification.
pub fn has_alarm_markers(map: &Map<String, Value>) -> bool {
    map.contains_key("NewStateValue")
        || map.contains_key("AlarmName")
        || map.contains_key("AlarmArn")
}

/// Parses the CloudWatch alarm JSON carried in an SNS `Message`. `delivery_id` is the SNS
/// `MessageId` (a repeat is a no-op downstream). `fallback_region` is the region of the signed
/// TopicArn (`ingest::topic_region`): CloudWatch publishes only to a topic of the alarm's own
/// region, so it stands in when an ARN must be rebuilt and the `Region` display name is in no
/// table (2014-era payloads say `"EU - Ireland"`).
///
/// Required: `NewStateValue` (`ALARM` | `OK` | `INSUFFICIENT_DATA`), `StateChangeTime`, and the
/// alarm's identity (`AlarmArn`, or `AlarmName` + `AWSAccountId` + a known `Region` or a
/// `fallback_region` to rebuild it).
pub fn parse_alarm(
    message: &str,
    delivery_id: Option<String>,
    fallback_region: Option<&str>,
) -> Result<Alert, IngestError> {
    let not_alarm = |why: String| {
        IngestError::Malformed(format!("SNS Message is not a CloudWatch alarm: {why}"))
    };
    let value: Value =
        serde_json::from_str(message).map_err(|e| not_alarm(format!("not JSON ({e})")))?;
    let Value::Object(map) = &value else {
        return Err(not_alarm("expected a JSON object".into()));
    };
    if !has_alarm_markers(map) {
        return Err(not_alarm("no AlarmName, AlarmArn or NewStateValue".into()));
    }
    let f = Fields::new("Message", map);

    let state = f.req_str("NewStateValue")?;
    let status = alarm_status(state).ok_or_else(|| {
        f.malformed(
            "NewStateValue",
            format_args!("expected \"ALARM\", \"OK\" or \"INSUFFICIENT_DATA\", got {state:?}"),
        )
    })?;
    let changed = f.req_str("StateChangeTime")?;
    let occurred_at = parse_cloudwatch_time(changed).ok_or_else(|| {
        f.malformed(
            "StateChangeTime",
            format_args!("expected a time like 2026-11-20T02:15:41.377+0000, got {changed:?}"),
        )
    })?;

    let arn_field = f.opt_str("AlarmArn")?;
    let parsed_arn = match arn_field {
        Some(arn) => Some(AlarmArn::parse(arn).ok_or_else(|| {
            f.malformed(
                "AlarmArn",
                format_args!("not a CloudWatch alarm ARN: {arn:?}"),
            )
        })?),
        None => None,
    };
    let name = match (f.opt_str("AlarmName")?, parsed_arn) {
        (Some(name), _) if !name.is_empty() => name,
        (_, Some(arn)) => arn.name,
        _ => return Err(f.malformed("AlarmName", "missing")),
    };
    let arn = match arn_field {
        Some(arn) => arn.to_string(),
        None => {
            let account = f
                .opt_str("AWSAccountId")?
                .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()));
            let region = f
                .lenient_str("Region")
                .and_then(region_code)
                .or(fallback_region.filter(|r| is_region_code(r)));
            match (region, account) {
                (Some(region), Some(account)) => build_alarm_arn(region, account, name),
                _ => {
                    return Err(f.malformed(
                        "AlarmArn",
                        "missing, and it cannot be rebuilt (needs AWSAccountId and a known Region or topic region)",
                    ));
                }
            }
        }
    };
    let fingerprint = Fingerprint::parse(arn.as_str()).map_err(|e| f.malformed("AlarmArn", e))?;

    let (alarm_type, metric) = match map.get("Trigger") {
        Some(Value::Object(trigger)) => trigger_metric(trigger),
        _ => (AlarmType::Composite, MetricRef::default()),
    };
    let (labels, summary) = alarm_labels_and_summary(name, &arn, state, alarm_type, &metric);
    let description = alarm_description(
        f.lenient_str("AlarmDescription"),
        f.lenient_str("NewStateReason"),
    );

    Ok(Alert {
        source: Source::Sns,
        fingerprint,
        status,
        summary,
        description,
        labels,
        details: value,
        occurred_at,
        delivery_id,
        severity_override: None,
    })
}

/// The alarm type and alarmed metric of an SNS-form `Trigger`.
fn trigger_metric(trigger: &Map<String, Value>) -> (AlarmType, MetricRef<'_>) {
    match trigger.get("Metrics") {
        Some(Value::Array(entries)) if !entries.is_empty() => {
            let entries: Vec<MetricEntry<'_>> = entries
                .iter()
                .filter_map(Value::as_object)
                .map(|e| MetricEntry {
                    return_data: e
                        .get("ReturnData")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    metric: e
                        .get("MetricStat")
                        .and_then(|s| s.get("Metric"))
                        .and_then(Value::as_object)
                        .map(sns_metric),
                })
                .collect();
            (
                AlarmType::MetricMath,
                alarmed_metric(&entries).cloned().unwrap_or_default(),
            )
        }
        _ => (AlarmType::Metric, sns_metric(trigger)),
    }
}

/// `Namespace`, `MetricName` and `Dimensions: [{"name", "value"}]` of an SNS-form metric.
fn sns_metric(m: &Map<String, Value>) -> MetricRef<'_> {
    let mut dimensions = BTreeMap::new();
    for d in m
        .get("Dimensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(value)) = (
            d.get("name").and_then(Value::as_str),
            d.get("value").and_then(Value::as_str),
        ) {
            dimensions
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    MetricRef {
        namespace: m.get("Namespace").and_then(Value::as_str),
        name: m.get("MetricName").and_then(Value::as_str),
        dimensions,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;
    use crate::ingest::sns::{SnsEnvelope, SnsMessage};
    use crate::ingest::testkit::{fixture, mutations};

    /// The `Message` and `MessageId` of an SNS notification fixture.
    fn message_of(name: &str) -> (String, String) {
        match SnsEnvelope::parse(&fixture(name)).map(|e| e.message) {
            Ok(SnsMessage::Notification {
                message,
                message_id,
                ..
            }) => (message, message_id),
            other => panic!("{name} is not a notification: {other:?}"),
        }
    }

    fn alert_of(name: &str) -> Alert {
        let (message, id) = message_of(name);
        parse_alarm(&message, Some(id), None).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const EKS_ARN: &str =
        "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:eks-prod-apse1-node-cpu-high";

    fn eks_alarm_labels(state: &str) -> Labels {
        labels(&[
            ("source", "cloudwatch"),
            ("kind", "cloudwatch_alarm"),
            ("alarm_name", "eks-prod-apse1-node-cpu-high"),
            ("alarm_type", "metric"),
            ("alarm_state", state),
            ("region", "ap-southeast-1"),
            ("account", "123456789012"),
            ("namespace", "ContainerInsights"),
            ("metric", "node_cpu_utilization"),
            ("cluster_name", "prod-apse1"),
            (
                "node_name",
                "ip-10-20-31-45.ap-southeast-1.compute.internal",
            ),
            ("instance_id", "i-0a1b2c3d4e5f60718"),
        ])
    }

    #[test]
    fn the_alarm_fixture_becomes_a_firing_alert() {
        let alert = alert_of("cloudwatch-alarm-sns-notification.json");
        assert_eq!(alert.source, Source::Sns);
        assert_eq!(alert.fingerprint.as_str(), EKS_ARN);
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(
            alert.summary,
            "ALARM: eks-prod-apse1-node-cpu-high (ap-southeast-1)"
        );
        assert_eq!(alert.labels, eks_alarm_labels("ALARM"));
        assert_eq!(
            alert.occurred_at,
            Utc.with_ymd_and_hms(2026, 11, 20, 2, 15, 41)
                .single()
                .expect("valid")
                + chrono::Duration::milliseconds(377)
        );
        assert_eq!(
            alert.delivery_id.as_deref(),
            Some("c2a7d9e4-31f6-5b8a-9d0c-4e7f1a2b3c5d")
        );
        assert_eq!(alert.severity_override, None);
        let description = alert.description.expect("has a description");
        let (first, second) = description.split_once('\n').expect("two lines");
        assert!(first.starts_with("Average CPU of an EKS worker node"));
        assert!(second.starts_with("Threshold Crossed: 3 out of the last 3"));
        assert_eq!(alert.details["Trigger"]["Threshold"], json!(85.0));
    }

    #[test]
    fn the_ok_fixture_resolves_the_same_fingerprint() {
        let alert = alert_of("cloudwatch-ok-sns-notification.json");
        assert_eq!(alert.fingerprint.as_str(), EKS_ARN);
        assert_eq!(alert.status, AlertStatus::Resolved);
        assert_eq!(
            alert.summary,
            "OK: eks-prod-apse1-node-cpu-high (ap-southeast-1)"
        );
        assert_eq!(alert.labels, eks_alarm_labels("OK"));
        assert_eq!(
            alert.occurred_at.to_rfc3339(),
            "2026-11-20T02:55:43.918+00:00"
        );
    }

    #[test]
    fn the_route53_fixture_is_a_health_check_in_us_east_1() {
        let alert = alert_of("route53-healthcheck-alarm-sns-notification.json");
        assert_eq!(
            alert.fingerprint.as_str(),
            "arn:aws:cloudwatch:us-east-1:123456789012:alarm:route53-hc-api-example-com-unhealthy"
        );
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(
            alert.summary,
            "ALARM: route53-hc-api-example-com-unhealthy (us-east-1)"
        );
        assert_eq!(
            alert.labels,
            labels(&[
                ("source", "cloudwatch"),
                ("kind", "route53_health_check"),
                ("alarm_name", "route53-hc-api-example-com-unhealthy"),
                ("alarm_type", "metric"),
                ("alarm_state", "ALARM"),
                ("region", "us-east-1"),
                ("account", "123456789012"),
                ("namespace", "AWS/Route53"),
                ("metric", "HealthCheckStatus"),
                ("health_check_id", "7c0d6a1e-92b4-4f3a-b8e5-1d2c3b4a5f60"),
            ])
        );
        assert_eq!(
            alert.occurred_at.to_rfc3339(),
            "2026-11-20T03:22:36.540+00:00"
        );
    }

    #[test]
    fn insufficient_data_is_its_own_state() {
        let (message, _) = message_of("cloudwatch-alarm-sns-notification.json");
        let message = message.replace(
            "\"NewStateValue\":\"ALARM\"",
            "\"NewStateValue\":\"INSUFFICIENT_DATA\"",
        );
        let alert = parse_alarm(&message, None, None).expect("parses");
        assert_eq!(alert.status, AlertStatus::InsufficientData);
        assert_eq!(alert.labels["alarm_state"], "INSUFFICIENT_DATA");
        assert_eq!(
            alert.summary,
            "INSUFFICIENT_DATA: eks-prod-apse1-node-cpu-high (ap-southeast-1)"
        );
        assert_eq!(alert.delivery_id, None);
    }

    #[test]
    fn metric_math_alarms_use_the_returned_series() {
        let make = |metric_returns: bool| {
            json!({
            "AlarmName": "p99-latency-anomaly",
            "AlarmDescription": null,
            "AWSAccountId": "123456789012",
            "NewStateValue": "ALARM",
            "NewStateReason": "Thresholds Crossed",
            "StateChangeTime": "2026-11-20T04:00:00.000+0000",
            "Region": "Asia Pacific (Singapore)",
            "AlarmArn": "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:p99-latency-anomaly",
            "OKActions": "[arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts]",
            "AlarmActions": "[]",
            "Trigger": {
                "Period": 60, "EvaluationPeriods": 3, "ComparisonOperator": "GreaterThanUpperThreshold",
                "ThresholdMetricId": "ad1", "TreatMissingData": "- TreatMissingData: missing",
                "EvaluateLowSampleCountPercentile": null, "Unit": null,
                "Metrics": [
                    {"Id": "m1", "ReturnData": metric_returns, "MetricStat": {"Metric": {
                        "Dimensions": [{"value": "app/prod-api/50dc6c495c0c9188", "name": "LoadBalancer"},
                                       {"value": "x", "name": "Region"},
                                       {"value": "1", "name": "9lives"}],
                        "MetricName": "TargetResponseTime", "Namespace": "AWS/ApplicationELB"},
                        "Period": 60, "Stat": "p99"}},
                    {"Id": "ad1", "Expression": "ANOMALY_DETECTION_BAND(m1, 2)", "Label": "band", "ReturnData": !metric_returns}
                ]
            }
        })
        .to_string()
        };
        let alert = parse_alarm(&make(true), None, None).expect("parses");
        assert_eq!(alert.labels["alarm_type"], "metric_math");
        assert_eq!(alert.labels["namespace"], "AWS/ApplicationELB");
        assert_eq!(alert.labels["metric"], "TargetResponseTime");
        assert_eq!(
            alert.labels["load_balancer"],
            "app/prod-api/50dc6c495c0c9188"
        );
        assert_eq!(
            alert.labels["region"], "ap-southeast-1",
            "a Region dimension never overwrites the code"
        );
        assert_eq!(alert.labels["_9lives"], "1");
        assert_eq!(alert.description.as_deref(), Some("Thresholds Crossed"));

        // When the returned series is an expression, the single metric it is built on counts.
        let alert = parse_alarm(&make(false), None, None).expect("parses");
        assert_eq!(alert.labels["alarm_type"], "metric_math");
        assert_eq!(alert.labels["metric"], "TargetResponseTime");
    }

    #[test]
    fn composite_alarms_have_no_metric() {
        let message = json!({
            "AlarmName": "trading-platform-down",
            "AlarmDescription": "Both API and DB unhealthy",
            "AWSAccountId": "123456789012",
            "NewStateValue": "ALARM",
            "NewStateReason": "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:api transitioned to ALARM at Friday 20 November, 2026 04:02:11 UTC",
            "StateChangeTime": "2026-11-20T04:02:11.520+0000",
            "Region": "Asia Pacific (Singapore)",
            "AlarmArn": "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:trading-platform-down",
            "OldStateValue": "OK",
            "AlarmRule": "ALARM(\"api\") AND ALARM(\"db\")",
            "TriggeringChildren": [{"Arn": "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:api",
                                    "State": {"Value": "ALARM", "Timestamp": "2026-11-20T04:02:11.510+0000"}}]
        })
        .to_string();
        let alert = parse_alarm(&message, Some("m".into()), None).expect("parses");
        assert_eq!(alert.labels["alarm_type"], "composite");
        assert_eq!(alert.labels["kind"], "cloudwatch_alarm");
        assert!(!alert.labels.contains_key("namespace") && !alert.labels.contains_key("metric"));
        assert_eq!(
            alert.summary,
            "ALARM: trading-platform-down (ap-southeast-1)"
        );
    }

    #[test]
    fn a_missing_arn_is_rebuilt_from_name_account_and_region() {
        let message = json!({
            "AlarmName": "disk-full", "AWSAccountId": "123456789012", "NewStateValue": "OK",
            "StateChangeTime": "2026-11-20T04:02:11Z", "Region": "EU (Ireland)",
            "Trigger": {"MetricName": "disk_used_percent", "Namespace": "CWAgent", "Dimensions": []}
        })
        .to_string();
        let alert = parse_alarm(&message, None, None).expect("parses");
        assert_eq!(
            alert.fingerprint.as_str(),
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:disk-full"
        );
        assert_eq!(alert.labels["region"], "eu-west-1");
        assert_eq!(alert.description, None);
    }

    #[test]
    fn an_unknown_region_name_falls_back_to_the_topic_region() {
        let message = json!({
            "AlarmName": "legacy-disk-full", "AWSAccountId": "123456789012", "NewStateValue": "ALARM",
            "StateChangeTime": "2014-06-03T09:12:40.000+0000", "Region": "EU - Ireland",
            "Trigger": {"MetricName": "DiskSpaceUtilization", "Namespace": "System/Linux", "Dimensions": []}
        })
        .to_string();
        // Without the topic's region the ARN cannot be rebuilt: refused, as before.
        match parse_alarm(&message, None, None) {
            Err(IngestError::Malformed(m)) => assert!(m.contains("Message.AlarmArn"), "{m}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
        let alert = parse_alarm(&message, None, Some("eu-west-1")).expect("parses");
        assert_eq!(
            alert.fingerprint.as_str(),
            "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:legacy-disk-full"
        );
        assert_eq!(alert.labels["region"], "eu-west-1");
        assert_eq!(alert.summary, "ALARM: legacy-disk-full (eu-west-1)");

        // A Region the table knows wins over the topic's; so does an AlarmArn.
        let known = message.replace("EU - Ireland", "Asia Pacific (Sydney)");
        let alert = parse_alarm(&known, None, Some("eu-west-1")).expect("parses");
        assert_eq!(alert.labels["region"], "ap-southeast-2");
        let (with_arn, _) = message_of("cloudwatch-alarm-sns-notification.json");
        let alert = parse_alarm(&with_arn, None, Some("eu-west-1")).expect("parses");
        assert_eq!(alert.fingerprint.as_str(), EKS_ARN);

        // A fallback that is not a region code is not used.
        assert!(parse_alarm(&message, None, Some("EU:Ireland")).is_err());
        assert!(parse_alarm(&message, None, Some("")).is_err());
    }

    #[test]
    fn dimension_names_become_snake_case_labels() {
        for (name, label) in [
            ("ClusterName", Some("cluster_name")),
            ("InstanceId", Some("instance_id")),
            ("HealthCheckId", Some("health_check_id")),
            ("NodeName", Some("node_name")),
            ("DBInstanceIdentifier", Some("db_instance_identifier")),
            ("AutoScalingGroupName", Some("auto_scaling_group_name")),
            ("already_snake", Some("already_snake")),
            ("Per-Instance Metric", Some("per_instance_metric")),
            ("9lives", Some("_9lives")),
            ("---", None),
            ("", None),
            ("é", None),
        ] {
            let got = dimension_label_name(name);
            assert_eq!(got.as_deref(), label, "{name}");
            if let Some(l) = got {
                assert!(crate::domain::is_label_name(&l), "{l}");
            }
        }
    }

    #[test]
    fn cloudwatch_and_rfc3339_times_parse() {
        let a = parse_cloudwatch_time("2026-11-20T02:15:41.377+0000").expect("cloudwatch form");
        let b = parse_cloudwatch_time("2026-11-20T02:15:41.377Z").expect("rfc3339");
        let c = parse_cloudwatch_time("2026-11-20T10:15:41.377+08:00").expect("offset");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(parse_cloudwatch_time("20/11/26 02:10:00").is_none());
    }

    #[test]
    fn bad_messages_are_malformed() {
        let (good, _) = message_of("cloudwatch-alarm-sns-notification.json");
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "not JSON"),
            ("hello from another publisher".into(), "not JSON"),
            ("[1,2]".into(), "expected a JSON object"),
            ("{\"hello\":\"world\"}".into(), "not a CloudWatch alarm"),
            (good.replace("\"NewStateValue\":\"ALARM\"", "\"NewStateValue\":\"FIRING\""), "Message.NewStateValue: expected"),
            (good.replace("\"NewStateValue\":\"ALARM\"", "\"NewStateValue\":1"), "Message.NewStateValue: expected a string"),
            (good.replace("\"StateChangeTime\":\"2026-11-20T02:15:41.377+0000\"", "\"StateChangeTime\":\"yesterday\""), "Message.StateChangeTime"),
            (good.replace(",\"StateChangeTime\":\"2026-11-20T02:15:41.377+0000\"", ""), "Message.StateChangeTime: missing"),
            (good.replace("arn:aws:cloudwatch:ap-southeast-1", "arn:aws:sqs:ap-southeast-1"), "Message.AlarmArn: not a CloudWatch alarm ARN"),
            (
                json!({"NewStateValue": "ALARM", "StateChangeTime": "2026-11-20T02:15:41Z"}).to_string(),
                "Message.AlarmName: missing",
            ),
            (
                json!({"AlarmName": "x", "NewStateValue": "ALARM", "StateChangeTime": "2026-11-20T02:15:41Z", "Region": "Atlantis"}).to_string(),
                "Message.AlarmArn: missing",
            ),
        ];
        for (message, expected) in cases {
            match parse_alarm(&message, None, None) {
                Err(IngestError::Malformed(m)) => assert!(m.contains(expected), "{message}: {m}"),
                other => panic!("{message}: expected Malformed, got {other:?}"),
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic() {
        for (i, name) in [
            "cloudwatch-alarm-sns-notification.json",
            "cloudwatch-ok-sns-notification.json",
            "route53-healthcheck-alarm-sns-notification.json",
        ]
        .into_iter()
        .enumerate()
        {
            let (message, _) = message_of(name);
            for input in mutations(message.as_bytes(), 400, 0xA1A2 + i as u64) {
                let text = String::from_utf8_lossy(&input);
                let _ = parse_alarm(&text, None, None);
                let _ = parse_alarm(&text, None, Some("ap-southeast-1"));
            }
        }
    }
}

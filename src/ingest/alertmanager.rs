//! Ingest, Prometheus Alertmanager: the body of a webhook notification (payload version 4) in,
//! one [`Alert`] per entry of `alerts` out. `reference/aws-events-sources.md` §5.
//!
//! Each alert keeps its labels (a name outside the classic grammar, such as Prometheus 3's
//! UTF-8 `service.name`, escaped to `service_name`; at most [`MAX_LABELS`], values cut to
//! [`MAX_LABEL_VALUE_CHARS`]; all of them as sent in `details.labels`) and gets
//! `source=alertmanager`, `kind=prometheus_alert` (an Alertmanager label of either name is kept
//! in `details.labels` only); its annotations stay in `details.annotations`, the `summary` (else
//! `description`, else the alertname) is the summary and `description` the description. The incident key is
//! `alertmanager/<fingerprint>` (Alertmanager's own, stable per label set), or one derived from
//! the labels when an old sender leaves it out. `status` decides firing or resolved (never
//! `endsAt`, which a firing alert may carry in the future); the time is `startsAt` for a firing
//! alert and `endsAt` for a resolved one.
//!
//! The group's `truncatedAlerts` is returned for the caller to log: with `max_alerts`, the
//! group's `status`, `commonLabels` and `commonAnnotations` describe only the included alerts, so
//! nothing here reads them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::sns_notification::{MAX_DESCRIPTION_CHARS, cut};
use super::{Fields, IngestError, parse_json, type_name};
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source, is_label_name};

/// The `kind` label.
pub const KIND: &str = "prometheus_alert";
/// The payload version taken.
pub const VERSION: &str = "4";
/// The most alerts one notification may carry (Alertmanager's `max_alerts` bounds it; 0 = all).
pub const MAX_ALERTS: usize = 1000;
/// The most labels an alert keeps.
pub const MAX_LABELS: usize = 64;
/// Label values are cut to this many characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// Summaries are cut to this many characters.
pub const MAX_SUMMARY_CHARS: usize = 200;

/// One webhook notification, parsed.
#[derive(Debug, Clone)]
pub struct Notification {
    pub alerts: Vec<Alert>,
    /// How many alerts Alertmanager left out (`max_alerts`); they come in a later notification.
    pub truncated_alerts: u64,
    /// The receiver's name (as Alertmanager quotes it) and the group key, for the log.
    pub receiver: Option<String>,
    pub group_key: Option<String>,
}

/// Parses a webhook body. `Malformed` for invalid JSON, a `version` other than "4", `alerts`
/// missing or not an array, or an alert without `status` ("firing" / "resolved") or `labels`
/// (an object of strings);
/// `TooLarge` for more than [`MAX_ALERTS`] alerts. `now` dates an alert whose times do not parse.
pub fn parse_webhook(body: &[u8], now: DateTime<Utc>) -> Result<Notification, IngestError> {
    let value = parse_json(body, "Alertmanager notification")?;
    let Value::Object(map) = &value else {
        return Err(IngestError::Malformed(format!(
            "Alertmanager notification: expected a JSON object, got {}",
            type_name(&value)
        )));
    };
    let f = Fields::new("", map);
    if let Some(version) = f.opt_str("version")?
        && version != VERSION
    {
        return Err(f.malformed(
            "version",
            format_args!("expected \"{VERSION}\", got {version:?}"),
        ));
    }
    let items = match f.get("alerts") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(f.malformed(
                "alerts",
                format_args!("expected an array, got {}", type_name(other)),
            ));
        }
        None => return Err(f.malformed("alerts", "missing")),
    };
    if items.len() > MAX_ALERTS {
        return Err(IngestError::TooLarge(format!(
            "alerts: {} alerts, at most {MAX_ALERTS} per notification (set max_alerts)",
            items.len()
        )));
    }
    let receiver = f.lenient_str("receiver").map(str::to_string);
    let group_key = f.lenient_str("groupKey").map(str::to_string);
    let common = json!({
        "receiver": receiver,
        "groupKey": group_key,
        "externalURL": f.lenient_str("externalURL"),
    });
    let alerts = items
        .iter()
        .enumerate()
        .map(|(i, item)| alert(&format!("alerts[{i}]"), item, &common, now))
        .collect::<Result<Vec<_>, _>>()?;
    let truncated_alerts = f
        .get("truncatedAlerts")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(Notification {
        alerts,
        truncated_alerts,
        receiver,
        group_key,
    })
}

/// One entry of `alerts`.
fn alert(
    path: &str,
    item: &Value,
    common: &Value,
    now: DateTime<Utc>,
) -> Result<Alert, IngestError> {
    let Value::Object(map) = item else {
        return Err(IngestError::Malformed(format!(
            "{path}: expected an object, got {}",
            type_name(item)
        )));
    };
    let f = Fields::new(path, map);
    let status = match f.req_str("status")? {
        "firing" => AlertStatus::Firing,
        "resolved" => AlertStatus::Resolved,
        other => {
            return Err(f.malformed(
                "status",
                format_args!("expected \"firing\" or \"resolved\", got {other:?}"),
            ));
        }
    };
    let am_labels = string_map(&f, "labels", true)?;
    let annotations = string_map(&f, "annotations", false)?;
    // Alertmanager does not retry a 4xx, so a label vigil cannot use loses nothing but itself:
    // a UTF-8 name (Prometheus 3) is escaped the legacy way, and past MAX_LABELS the rest stay in
    // `details.labels` only.
    let mut labels = Labels::new();
    for (name, value) in am_labels.iter().take(MAX_LABELS) {
        let name = legacy_name(name);
        labels
            .entry(name)
            .or_insert_with(|| cut(value, MAX_LABEL_VALUE_CHARS));
    }
    labels.insert("source".into(), "alertmanager".into());
    labels.insert("kind".into(), KIND.into());

    let alertname = am_labels.get("alertname").map(String::as_str);
    let first = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| annotations.get(*k))
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    };
    let headline = first(&["summary", "description", "message"]);
    let summary = match (alertname, headline) {
        (Some(name), Some(text)) => format!("{name}: {text}"),
        (None, Some(text)) => text.to_string(),
        (Some(name), None) => name.to_string(),
        (None, None) => "Prometheus alert".to_string(),
    };
    let description = first(&["description", "message"])
        .filter(|d| Some(*d) != headline || alertname.is_some())
        .map(|d| cut(d, MAX_DESCRIPTION_CHARS));

    let fingerprint = match f.lenient_str("fingerprint").map(str::trim) {
        Some(fp) if !fp.is_empty() => Fingerprint::parse(format!("alertmanager/{fp}"))
            .map_err(|e| f.malformed("fingerprint", e))?,
        _ => Fingerprint::from_labels("alertmanager", &am_labels),
    };
    let time = |key: &str| {
        f.lenient_str(key)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
            // Go's zero time: "not set".
            .filter(|t| t.timestamp() > 0)
    };
    let occurred_at = match status {
        AlertStatus::Resolved => time("endsAt").or_else(|| time("startsAt")),
        _ => time("startsAt"),
    }
    .unwrap_or(now);

    let details = json!({
        "labels": am_labels,
        "annotations": annotations,
        "startsAt": f.lenient_str("startsAt"),
        "endsAt": f.lenient_str("endsAt"),
        "generatorURL": f.lenient_str("generatorURL"),
        "fingerprint": f.lenient_str("fingerprint"),
        "receiver": common["receiver"],
        "groupKey": common["groupKey"],
        "externalURL": common["externalURL"],
    });
    Ok(Alert {
        source: Source::Alertmanager,
        fingerprint,
        status,
        summary: cut(&summary, MAX_SUMMARY_CHARS),
        description,
        labels,
        details,
        occurred_at,
        delivery_id: None,
        severity_override: None,
    })
}

/// `name` as a label name of the classic grammar: every other character becomes `_`, and a
/// leading digit (or an empty name) gets a `_` before it (`service.name` → `service_name`).
fn legacy_name(name: &str) -> String {
    if is_label_name(name) {
        return name.to_string();
    }
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// A `{string: string}` object (`labels` required when `required`); `null` counts as absent.
fn string_map(f: &Fields<'_>, key: &str, required: bool) -> Result<Labels, IngestError> {
    let map: Option<&Map<String, Value>> = if required {
        Some(f.req_object(key)?)
    } else {
        f.opt_object(key)?
    };
    map.into_iter()
        .flatten()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(f.malformed(
                key,
                format_args!("{k:?}: expected a string, got {}", type_name(other)),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;
    use crate::ingest::testkit::mutations;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 16, 12, 0)
            .single()
            .unwrap()
    }

    fn payload(status: &str) -> Value {
        json!({"receiver":"vigil","status":status,
         "alerts":[{"status":status,"labels":{"alertname":"HighErrorRate","env":"prod","service":"checkout","severity":"critical"},
           "annotations":{"runbook_url":"https://runbooks.example/5xx","summary":"5xx > 5%"},
           "startsAt":"2026-12-01T16:11:36Z","endsAt": if status == "resolved" {"2026-12-01T16:20:00Z"} else {"0001-01-01T00:00:00Z"},
           "generatorURL":"http://prometheus.example:9090/graph?g0.expr=rate","fingerprint":"69c2e62f0b0aec37"}],
         "groupLabels":{"alertname":"HighErrorRate","env":"prod"},
         "commonLabels":{},"commonAnnotations":{},
         "externalURL":"http://vm:9393","version":"4",
         "groupKey":"{}:{alertname=\"HighErrorRate\", env=\"prod\"}","truncatedAlerts":1})
    }

    fn parse(v: &Value) -> Result<Notification, IngestError> {
        parse_webhook(&serde_json::to_vec(v).unwrap(), now())
    }

    #[test]
    fn each_alert_keeps_its_labels_and_annotations() {
        let n = parse(&payload("firing")).unwrap();
        assert_eq!(n.truncated_alerts, 1);
        assert_eq!(n.alerts.len(), 1);
        let a = &n.alerts[0];
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.fingerprint.as_str(), "alertmanager/69c2e62f0b0aec37");
        assert_eq!(a.labels["alertname"], "HighErrorRate");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["kind"], KIND);
        assert_eq!(a.labels["source"], "alertmanager");
        assert_eq!(
            a.details["annotations"]["runbook_url"],
            "https://runbooks.example/5xx"
        );
        assert_eq!(a.summary, "HighErrorRate: 5xx > 5%");
        assert_eq!(a.occurred_at.to_rfc3339(), "2026-12-01T16:11:36+00:00");
    }

    #[test]
    fn resolved_resolves_the_same_incident_at_ends_at() {
        let firing = &parse(&payload("firing")).unwrap().alerts[0];
        let resolved = &parse(&payload("resolved")).unwrap().alerts[0];
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(resolved.fingerprint, firing.fingerprint);
        assert_eq!(
            resolved.occurred_at.to_rfc3339(),
            "2026-12-01T16:20:00+00:00"
        );
    }

    #[test]
    fn bad_payloads_are_named() {
        let mut v = payload("firing");
        v["version"] = json!("3");
        assert!(parse(&v).unwrap_err().to_string().contains("version"));
        let mut v = payload("firing");
        v["alerts"][0]["status"] = json!("pending");
        assert!(
            parse(&v)
                .unwrap_err()
                .to_string()
                .contains("alerts[0].status")
        );
        let mut v = payload("firing");
        v["alerts"][0]["labels"]["service.name"] = json!("x");
        v["alerts"][0]["labels"]["9lives"] = json!("y");
        let a = parse(&v).unwrap().alerts.remove(0);
        assert_eq!(a.labels["service_name"], "x", "escaped, not refused");
        assert_eq!(a.labels["_9lives"], "y");
        assert_eq!(a.details["labels"]["service.name"], "x");
        let mut v = payload("firing");
        v["alerts"][0]["labels"]["env"] = json!(5);
        assert!(
            parse(&v)
                .unwrap_err()
                .to_string()
                .contains("alerts[0].labels")
        );
        let mut v = payload("firing");
        v["alerts"] = json!(vec![v["alerts"][0].clone(); MAX_ALERTS + 1]);
        assert_eq!(parse(&v).unwrap_err().status_code(), 413);
        // No fingerprint (an old sender): derived from the labels, stable.
        let mut v = payload("firing");
        v["alerts"][0]
            .as_object_mut()
            .unwrap()
            .remove("fingerprint");
        let a = parse(&v).unwrap().alerts.remove(0);
        assert_eq!(a.fingerprint, parse(&v).unwrap().alerts[0].fingerprint);
    }

    #[test]
    fn mutated_payloads_never_panic() {
        let bytes = serde_json::to_vec(&payload("firing")).unwrap();
        for input in mutations(&bytes, 500, 0xA1E7) {
            let _ = parse_webhook(&input, now());
        }
    }
}

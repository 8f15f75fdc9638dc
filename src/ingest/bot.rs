//! Ingest, trading bot: the body of `POST /v1/events` in, [`Alert`]s out.
//!
//! Comes in: one JSON event object, or an array of up to [`MAX_BATCH`] of them (the bearer token
//! is checked by the HTTP layer). Goes out: one [`Alert`] per event, in order, or the first error,
//! which names the event and field (`events[1].summary: missing`). A batch is all or nothing.
//!
//! Unknown fields are refused so that a typo (`dedupe_key`) fails loudly instead of silently
//! opening a second incident. `kind` values such as `trading_resumed` mean nothing here; the
//! incident layer gives them meaning.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Fields, IngestError, parse_json, type_name};
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Severity, Source, is_label_name};

/// Most events accepted in one batch.
pub const MAX_BATCH: usize = 1000;
/// Longest `summary`, in characters.
pub const MAX_SUMMARY_CHARS: usize = 1024;
/// Most labels one event may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label value, in characters.
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// Largest `details`, serialized.
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;
/// Longest `kind`: `[a-z][a-z0-9_]{0,63}`.
pub const MAX_KIND_LEN: usize = 64;

/// The accepted event fields. `source` is not one of them: it is always "bot".
const FIELDS: [&str; 9] = [
    "kind",
    "summary",
    "status",
    "dedup_key",
    "severity",
    "labels",
    "details",
    "occurred_at",
    "description",
];

/// Parses one event or a batch. `now` is the `occurred_at` of events that do not give one.
pub fn parse_events(body: &[u8], now: DateTime<Utc>) -> Result<Vec<Alert>, IngestError> {
    let value = parse_json(body, "event body")?;
    match &value {
        Value::Object(map) => Ok(vec![parse_one("", map, now)?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(IngestError::Malformed("events: the batch is empty".into()));
            }
            if items.len() > MAX_BATCH {
                return Err(IngestError::TooLarge(format!(
                    "events: {} events in one batch (at most {MAX_BATCH})",
                    items.len()
                )));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let path = format!("events[{i}]");
                    match item {
                        Value::Object(map) => parse_one(&path, map, now),
                        other => Err(IngestError::Malformed(format!(
                            "{path}: expected an event object, got {}",
                            type_name(other)
                        ))),
                    }
                })
                .collect()
        }
        other => Err(IngestError::Malformed(format!(
            "event body: expected an event object or an array of them, got {}",
            type_name(other)
        ))),
    }
}

fn parse_one(
    path: &str,
    map: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Alert, IngestError> {
    let f = Fields::new(path, map);
    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(f.malformed(
            unknown,
            "unknown field (expected kind, summary, status, dedup_key, severity, labels, details, \
             occurred_at or description)",
        ));
    }

    let kind = f.req_str("kind")?;
    if !is_valid_kind(kind) {
        return Err(f.malformed(
            "kind",
            format_args!("{kind:?} must match [a-z][a-z0-9_]{{0,63}}"),
        ));
    }

    let summary = f.req_str("summary")?;
    if summary.trim().is_empty() {
        return Err(f.malformed("summary", "must not be empty"));
    }
    if summary.chars().count() > MAX_SUMMARY_CHARS {
        return Err(f.malformed(
            "summary",
            format_args!("longer than {MAX_SUMMARY_CHARS} characters"),
        ));
    }

    let status = match f.opt_str("status")? {
        None | Some("firing") => AlertStatus::Firing,
        Some("resolved") => AlertStatus::Resolved,
        Some(other) => {
            return Err(f.malformed(
                "status",
                format_args!("expected \"firing\" or \"resolved\", got {other:?}"),
            ));
        }
    };

    let dedup_key = f
        .opt_str("dedup_key")?
        .map(|k| Fingerprint::parse(k).map_err(|e| f.malformed("dedup_key", e)))
        .transpose()?;

    let severity_override = f
        .opt_str("severity")?
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| f.malformed("severity", e))
        })
        .transpose()?;

    let mut labels = Labels::new();
    if let Some(sent) = f.opt_object("labels")? {
        if sent.len() > MAX_LABELS {
            return Err(f.malformed(
                "labels",
                format_args!("{} labels (at most {MAX_LABELS})", sent.len()),
            ));
        }
        let label_path = f.name("labels");
        let lf = Fields::new(&label_path, sent);
        for (name, value) in sent {
            if !is_label_name(name) {
                return Err(lf.malformed(name, "label name must match [a-zA-Z_][a-zA-Z0-9_]*"));
            }
            let Value::String(value) = value else {
                return Err(lf.malformed(
                    name,
                    format_args!("expected a string, got {}", type_name(value)),
                ));
            };
            if value.chars().count() > MAX_LABEL_VALUE_CHARS {
                return Err(lf.malformed(
                    name,
                    format_args!("longer than {MAX_LABEL_VALUE_CHARS} characters"),
                ));
            }
            labels.insert(name.clone(), value.clone());
        }
    }
    labels.insert("source".into(), "bot".into());
    labels.insert("kind".into(), kind.into());

    let details = match f.get("details") {
        None => Value::Object(Map::new()),
        Some(details) => {
            let size = serde_json::to_vec(details)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_DETAILS_BYTES {
                return Err(f.malformed(
                    "details",
                    format_args!("larger than {MAX_DETAILS_BYTES} bytes serialized"),
                ));
            }
            details.clone()
        }
    };

    let occurred_at = match f.opt_str("occurred_at")? {
        None => now,
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                f.malformed(
                    "occurred_at",
                    format_args!("expected an RFC 3339 time, got {s:?} ({e})"),
                )
            })?,
    };

    let description = f.opt_str("description")?.map(str::to_string);
    let fingerprint = dedup_key.unwrap_or_else(|| Fingerprint::from_labels(kind, &labels));

    Ok(Alert {
        source: Source::Bot,
        fingerprint,
        status,
        summary: summary.to_string(),
        description,
        labels,
        details,
        occurred_at,
        delivery_id: None,
        severity_override,
    })
}

/// `[a-z][a-z0-9_]{0,63}`.
fn is_valid_kind(kind: &str) -> bool {
    let mut bytes = kind.bytes();
    kind.len() <= MAX_KIND_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;
    use crate::ingest::testkit::{fixture, mutations};

    const FIXTURES: [&str; 4] = [
        "bot-exchange-error-timeout.json",
        "bot-exchange-error-rate-limited.json",
        "bot-trading-halted.json",
        "bot-batch-mixed.json",
    ];

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
            .single()
            .expect("valid time")
    }

    fn one(body: &str) -> Result<Alert, IngestError> {
        parse_events(body.as_bytes(), now()).map(|mut v| v.remove(0))
    }

    #[test]
    fn the_timeout_fixture_uses_its_dedup_key() {
        let alerts =
            parse_events(&fixture("bot-exchange-error-timeout.json"), now()).expect("parses");
        let [alert] = alerts.as_slice() else {
            panic!("one alert expected")
        };
        assert_eq!(alert.fingerprint.as_str(), "exchange-error/binance/timeout");
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.source, Source::Bot);
        assert_eq!(alert.labels["source"], "bot");
        assert_eq!(alert.labels["kind"], "exchange_error");
        assert_eq!(alert.labels["exchange"], "binance");
        assert_eq!(alert.labels["error"], "timeout");
        assert_eq!(alert.occurred_at.to_rfc3339(), "2026-11-25T09:41:07+00:00");
        assert_eq!(alert.details["timeout_ms"], json!(10000));
        assert_eq!(alert.delivery_id, None);
        assert_eq!(alert.severity_override, None);
    }

    #[test]
    fn the_rate_limited_fixture_gets_a_label_fingerprint() {
        let alerts =
            parse_events(&fixture("bot-exchange-error-rate-limited.json"), now()).expect("parses");
        let [alert] = alerts.as_slice() else {
            panic!("one alert expected")
        };
        assert_eq!(
            alert.fingerprint,
            Fingerprint::from_labels("exchange_error", &alert.labels)
        );
        assert!(alert.fingerprint.as_str().starts_with("exchange_error/"));
        assert_eq!(alert.labels.len(), 6);
        assert_eq!(
            alert.summary,
            "Bybit answered HTTP 429: request weight limit exceeded"
        );
    }

    #[test]
    fn the_halt_fixture_parses() {
        let alerts = parse_events(&fixture("bot-trading-halted.json"), now()).expect("parses");
        let [alert] = alerts.as_slice() else {
            panic!("one alert expected")
        };
        assert_eq!(alert.fingerprint.as_str(), "trading-halted");
        assert_eq!(alert.labels["kind"], "trading_halted");
        assert_eq!(alert.labels["reason"], "drawdown_limit");
    }

    #[test]
    fn the_batch_fixture_gives_three_alerts_in_order() {
        let alerts = parse_events(&fixture("bot-batch-mixed.json"), now()).expect("parses");
        assert_eq!(alerts.len(), 3);
        assert_eq!(alerts[0].labels["error"], "http_5xx");
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        assert_eq!(alerts[1].status, AlertStatus::Resolved);
        assert_eq!(
            alerts[1].fingerprint.as_str(),
            "exchange-error/binance/timeout"
        );
        assert_eq!(alerts[2].labels["kind"], "trading_resumed");
        assert_eq!(
            alerts[2].occurred_at.to_rfc3339(),
            "2026-11-25T09:58:30+00:00"
        );
    }

    #[test]
    fn defaults_and_overrides_apply() {
        let alert = one(
            r#"{"kind": "k", "summary": "s", "severity": "critical", "description": "d",
                "labels": {"source": "spoofed", "kind": "other", "x": "1"}}"#,
        )
        .expect("parses");
        assert_eq!(alert.status, AlertStatus::Firing);
        assert_eq!(alert.occurred_at, now());
        assert_eq!(alert.severity_override, Some(Severity::Critical));
        assert_eq!(alert.description.as_deref(), Some("d"));
        assert_eq!(alert.labels["source"], "bot");
        assert_eq!(alert.labels["kind"], "k");
        assert_eq!(alert.details, json!({}));
        // The fingerprint is computed over the final labels (source and kind forced).
        let mut expected = Labels::new();
        expected.insert("source".into(), "bot".into());
        expected.insert("kind".into(), "k".into());
        expected.insert("x".into(), "1".into());
        assert_eq!(alert.fingerprint, Fingerprint::from_labels("k", &expected));
        // Nulls count as absent.
        let alert = one(
            r#"{"kind": "k", "summary": "s", "status": null, "labels": null, "dedup_key": null}"#,
        )
        .expect("parses");
        assert_eq!(alert.status, AlertStatus::Firing);
        // An offset is normalized to UTC.
        let alert =
            one(r#"{"kind": "k", "summary": "s", "occurred_at": "2026-11-25T17:41:07+08:00"}"#)
                .expect("parses");
        assert_eq!(alert.occurred_at.to_rfc3339(), "2026-11-25T09:41:07+00:00");
    }

    #[test]
    fn bad_inputs_give_the_right_error() {
        let big_batch = format!(
            "[{}]",
            vec![r#"{"kind":"k","summary":"s"}"#; MAX_BATCH + 1].join(",")
        );
        let full_batch = format!(
            "[{}]",
            vec![r#"{"kind":"k","summary":"s"}"#; MAX_BATCH].join(",")
        );
        assert_eq!(
            parse_events(full_batch.as_bytes(), now()).map(|v| v.len()),
            Ok(MAX_BATCH)
        );
        let many_labels: Map<String, Value> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), json!("v")))
            .collect();
        let long = "x".repeat(1025);
        let huge_details = json!({"kind": "k", "summary": "s", "details": {"blob": "y".repeat(MAX_DETAILS_BYTES)}});
        let long_kind = format!(r#"{{"kind": "{}", "summary": "s"}}"#, "k".repeat(65));

        let malformed: Vec<(String, &str)> = vec![
            ("".into(), "not valid JSON"),
            ("{".into(), "not valid JSON"),
            ("\"hello\"".into(), "expected an event object or an array"),
            ("[]".into(), "events: the batch is empty"),
            ("[1]".into(), "events[0]: expected an event object, got a number"),
            (r#"{"summary": "s"}"#.into(), "kind: missing"),
            (r#"{"kind": 3, "summary": "s"}"#.into(), "kind: expected a string, got a number"),
            (r#"{"kind": "Exchange-Error", "summary": "s"}"#.into(), "kind: \"Exchange-Error\" must match"),
            (r#"{"kind": "", "summary": "s"}"#.into(), "kind: \"\" must match"),
            (long_kind, "must match"),
            (r#"{"kind": "k"}"#.into(), "summary: missing"),
            (r#"{"kind": "k", "summary": "  "}"#.into(), "summary: must not be empty"),
            (format!(r#"{{"kind": "k", "summary": "{long}"}}"#), "summary: longer than 1024"),
            (r#"[{"kind":"k","summary":"s"},{"kind":"k"}]"#.into(), "events[1].summary: missing"),
            (
                r#"[{"kind":"k","summary":"s"},{"kind":"k","summary":"s"},{"kind":"k","summary":"s","status":"open"}]"#.into(),
                r#"events[2].status: expected "firing" or "resolved""#,
            ),
            (r#"{"kind": "k", "summary": "s", "status": true}"#.into(), "status: expected a string, got a boolean"),
            (r#"{"kind": "k", "summary": "s", "dedupe_key": "x"}"#.into(), "dedupe_key: unknown field"),
            (r#"{"kind": "k", "summary": "s", "source": "bot"}"#.into(), "source: unknown field"),
            (r#"[{"kind": "k", "summary": "s", "extra": 1}]"#.into(), "events[0].extra: unknown field"),
            (r#"{"kind": "k", "summary": "s", "dedup_key": ""}"#.into(), "dedup_key: fingerprint must be"),
            (r#"{"kind": "k", "summary": "s", "dedup_key": "a\nb"}"#.into(), "dedup_key: fingerprint must be"),
            (format!(r#"{{"kind": "k", "summary": "s", "dedup_key": "{}"}}"#, "d".repeat(513)), "dedup_key"),
            (r#"{"kind": "k", "summary": "s", "severity": "urgent"}"#.into(), "severity: unknown severity"),
            (r#"{"kind": "k", "summary": "s", "labels": []}"#.into(), "labels: expected an object, got an array"),
            (r#"{"kind": "k", "summary": "s", "labels": {"bad-name": "v"}}"#.into(), "labels.bad-name: label name must match"),
            (r#"{"kind": "k", "summary": "s", "labels": {"1x": "v"}}"#.into(), "labels.1x: label name"),
            (r#"{"kind": "k", "summary": "s", "labels": {"n": 5}}"#.into(), "labels.n: expected a string, got a number"),
            (format!(r#"{{"kind": "k", "summary": "s", "labels": {{"n": "{long}"}}}}"#), "labels.n: longer than 1024"),
            (json!({"kind": "k", "summary": "s", "labels": many_labels}).to_string(), "labels: 65 labels"),
            (huge_details.to_string(), "details: larger than"),
            (r#"{"kind": "k", "summary": "s", "occurred_at": "yesterday"}"#.into(), "occurred_at: expected an RFC 3339"),
            (r#"{"kind": "k", "summary": "s", "occurred_at": 1764064867}"#.into(), "occurred_at: expected a string"),
            (r#"{"kind": "k", "summary": "s", "description": {}}"#.into(), "description: expected a string"),
        ];
        for (body, expected) in malformed {
            match parse_events(body.as_bytes(), now()) {
                Err(IngestError::Malformed(m)) => assert!(m.contains(expected), "{body:.80}: {m}"),
                other => {
                    panic!("{body:.80}: expected Malformed containing {expected:?}, got {other:?}")
                }
            }
        }
        match parse_events(big_batch.as_bytes(), now()) {
            Err(e @ IngestError::TooLarge(_)) => assert_eq!(e.status_code(), 413),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn mutated_events_never_panic() {
        for (i, name) in FIXTURES.iter().enumerate() {
            for input in mutations(&fixture(name), 300, 0xB07 + i as u64) {
                let _ = parse_events(&input, now());
            }
        }
    }
}

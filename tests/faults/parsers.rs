//! Hostile input against every parser, as property tests: arbitrary bytes, byte-level edits of
//! the real fixtures and JSON-level edits (a node replaced by a value of another type, removed,
//! or a key added) never panic and always end in `Ok` or `Err`. Where a parser has a round trip
//! (a bot event built from valid fields, a signature over a body) it holds, and a signed field
//! changed after signing never verifies. `routing/` YAML: edits of the shipped files make
//! `load_dir` answer `Ok` or a non-empty error list.
//!
//! The case counts are bounded so the module runs in seconds in a debug build; each run draws new
//! cases, and a failure prints the minimal input.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use hmac::{KeyInit as _, Mac as _};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use vigil::domain::{AlertStatus, Severity};
use vigil::ingest::pagerduty::{parse_webhook, verify_signature};
use vigil::ingest::slack::{Interaction, parse_interaction, verify_request};
use vigil::ingest::{CertCache, IngestError, SnsEnvelope};
use vigil::settings::Secret;

use crate::helpers::{FixtureCerts, fixture, fixture_json, shipped_routing};

const SNS_FIXTURES: [&str; 4] = [
    "cloudwatch-alarm-sns-notification.json",
    "cloudwatch-ok-sns-notification.json",
    "route53-healthcheck-alarm-sns-notification.json",
    "sns-subscription-confirmation.json",
];
const BOT_FIXTURES: [&str; 4] = [
    "bot-exchange-error-timeout.json",
    "bot-exchange-error-rate-limited.json",
    "bot-trading-halted.json",
    "bot-batch-mixed.json",
];
const SLACK_SECRET: &str = "8f2b6c1e9d4a7f3b0e5c2d8a6b1f4e9c";
const PD_SECRET: &str = "pdwhsec-shared-T2h9wX4kQ7vN1bR6yF3mC8zL5pJ0aG4sE7dU2iO9";
const PD_FIXTURE: &str = "pagerduty-webhook-incident-acknowledged.json";
const PD_FIXTURE_SIG: &str = "v1=bd81a8ed674d239c94f1039fad0fb56d0aac61a8d59a82a9040c05e102aba99b";

/// Cases per property: the module takes a few seconds in a debug build.
const CASES: u32 = 1024;
/// Cases per `routing/` property (each writes and loads a policy directory).
const YAML_CASES: u32 = 256;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Regression files would land next to the sources; a failure prints the minimal case.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Generators

/// One byte-level edit; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, u8),
    Duplicate(usize, usize),
    Truncate(usize),
}

/// Bytes that matter to JSON, YAML and form parsers, plus anything at all.
fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => select(b"{}[]\":,0-1.eE\\ntrue\x00\xff\n\t #&*!|>%+=-'".to_vec()),
        1 => any::<u8>(),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
            (any::<usize>(), 1usize..80).prop_map(|(i, n)| Edit::Delete(i, n)),
            (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
            (any::<usize>(), 1usize..60).prop_map(|(i, n)| Edit::Duplicate(i, n)),
            any::<usize>().prop_map(Edit::Truncate),
        ],
        1..6,
    )
}

pub fn apply(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = input.to_vec();
    for e in edits {
        let len = v.len().max(1);
        match *e {
            Edit::Flip(i, bit) if !v.is_empty() => v[i % len] ^= 1 << bit,
            Edit::Delete(i, n) if !v.is_empty() => {
                let at = i % len;
                let end = (at + n).min(v.len());
                v.drain(at..end);
            }
            Edit::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Edit::Duplicate(i, n) if !v.is_empty() => {
                let at = i % len;
                let end = (at + n).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            Edit::Truncate(i) => v.truncate(i % (v.len() + 1)),
            _ => {}
        }
    }
    v
}

/// Any JSON value, biased towards the strings and numbers the parsers look for.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,40}".prop_map(Value::String),
        select(vec![
            "",
            " ",
            "ALARM",
            "OK",
            "INSUFFICIENT_DATA",
            "firing",
            "resolved",
            "critical",
            "Notification",
            "SubscriptionConfirmation",
            "block_actions",
            "ack",
            "ack_15m",
            "resolve",
            "incident.acknowledged",
            "incident.resolved",
            "CloudWatch Alarm State Change",
            "aws.cloudwatch",
            "2026-11-20T02:15:41.377+0000",
            "2026-11-20T02:15:41Z",
            "9999-12-31T23:59:59Z",
            "-262144-01-01T00:00:00Z",
            "0000-00-00T00:00:00Z",
            "01JD4Z8X3K7M2Q9R5T6V8W0Y1A",
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:x",
            "arn:aws:cloudwatch",
            "arn:::::::",
            "\u{0}",
            "\u{202e}",
            "1e400",
            "-1",
            "18446744073709551616",
        ])
        .prop_map(|s| Value::String(s.into())),
        (1usize..5000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-zA-Z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One JSON-level edit: `at` picks a node (pre-order, modulo the node count).
#[derive(Debug, Clone)]
pub enum JsonEdit {
    Replace(usize, Value),
    Remove(usize),
    AddKey(usize, String, Value),
}

pub fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    vec(
        prop_oneof![
            3 => (any::<usize>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
            2 => any::<usize>().prop_map(JsonEdit::Remove),
            1 => (any::<usize>(), "[a-zA-Z_-]{1,12}", json_value())
                .prop_map(|(i, k, v)| JsonEdit::AddKey(i, k, v)),
        ],
        1..4,
    )
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn node_paths(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Seg::Key(k.clone()));
                node_paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Seg::Index(i));
                node_paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get_mut(k.as_str()),
        Seg::Index(i) => v.get_mut(*i),
    })
}

pub fn apply_json(mut v: Value, edits: &[JsonEdit]) -> Value {
    for e in edits {
        let mut paths = Vec::new();
        node_paths(&v, &mut Vec::new(), &mut paths);
        let pick = |i: usize| paths[i % paths.len()].clone();
        match e {
            JsonEdit::Replace(i, new) => {
                if let Some(node) = node_mut(&mut v, &pick(*i)) {
                    *node = new.clone();
                }
            }
            JsonEdit::Remove(i) => {
                let path = pick(*i);
                if let Some((last, parent)) = path.split_last()
                    && let Some(parent) = node_mut(&mut v, parent)
                {
                    match (parent, last) {
                        (Value::Object(m), Seg::Key(k)) => {
                            m.remove(k);
                        }
                        (Value::Array(a), Seg::Index(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            JsonEdit::AddKey(i, key, new) => {
                if let Some(Value::Object(m)) = node_mut(&mut v, &pick(*i)) {
                    m.insert(key.clone(), new.clone());
                }
            }
        }
    }
    v
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..2048)
}

/// The CloudWatch alarm JSON inside each SNS notification fixture.
fn alarm_messages() -> Vec<String> {
    SNS_FIXTURES[..3]
        .iter()
        .map(|f| fixture_json(f)["Message"].as_str().unwrap().to_string())
        .collect()
}

fn slack_form(payload: &Value) -> Vec<u8> {
    slack_form_raw(&payload.to_string())
}

fn slack_form_raw(payload: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", payload)
        .finish()
        .into_bytes()
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    static CERTS: CertCache = CertCache::new(Arc::new(FixtureCerts), Vec::new());
}

/// Parses and verifies an SNS body the way the handler does (certificates from the fixtures).
fn sns_verify(body: &[u8]) -> Result<SnsEnvelope, IngestError> {
    let env = SnsEnvelope::parse(body)?;
    let _ = env.string_to_sign();
    RT.with(|rt| CERTS.with(|certs| rt.block_on(vigil::ingest::verify(&env, certs))))?;
    Ok(env)
}

/// The signed keys of an SNS message of this type.
fn signed_keys(ty: &str) -> &'static [&'static str] {
    match ty {
        "Notification" => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// Sanity: the fixtures themselves pass, so "never verifies" below is not vacuous.

#[test]
fn every_fixture_parses_and_every_signature_verifies() {
    for f in SNS_FIXTURES {
        sns_verify(&fixture(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    for m in alarm_messages() {
        vigil::ingest::parse_alarm(&m, None, None).unwrap();
    }
    vigil::ingest::parse_event(&fixture("eventbridge-cloudwatch-alarm-state-change.json"))
        .unwrap()
        .unwrap();
    for f in BOT_FIXTURES {
        vigil::ingest::parse_events(&fixture(f), now()).unwrap();
    }
    let click = slack_form(&fixture_json("slack-block-actions-ack.json"));
    assert!(matches!(
        parse_interaction(&click).unwrap(),
        Interaction::Action { .. }
    ));
    let pd = fixture(PD_FIXTURE);
    verify_signature(&[Secret::new(PD_SECRET)], Some(PD_FIXTURE_SIG), &pd).unwrap();
    parse_webhook(&pd).unwrap();
    vigil::config::load_dir(&shipped_routing()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// SNS envelope

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn sns_envelope_survives_arbitrary_bytes(body in any_bytes()) {
        let _ = sns_verify(&body);
    }

    #[test]
    fn sns_envelope_survives_edited_fixtures(f in select(SNS_FIXTURES.to_vec()), e in edits()) {
        let _ = sns_verify(&apply(&fixture(f), &e));
    }

    #[test]
    fn sns_envelope_survives_wrong_json_types(f in select(SNS_FIXTURES.to_vec()), e in json_edits()) {
        let body = serde_json::to_vec(&apply_json(fixture_json(f), &e)).unwrap();
        let _ = sns_verify(&body);
    }

    /// Changing, removing or retyping any signed field after signing never verifies.
    #[test]
    fn sns_envelope_with_a_changed_signed_field_never_verifies(
        f in select(SNS_FIXTURES.to_vec()),
        key in any::<usize>(),
        new in prop_oneof![
            3 => ".{0,80}".prop_map(|s| Some(Value::String(s))),
            1 => json_value().prop_map(Some),
            1 => Just(None),
        ],
    ) {
        let mut env = fixture_json(f);
        let keys = signed_keys(env["Type"].as_str().unwrap());
        let key = keys[key % keys.len()];
        let old = env.get(key).cloned();
        prop_assume!(old != new);
        match new {
            Some(v) => env[key] = v,
            None => {
                env.as_object_mut().unwrap().remove(key);
            }
        }
        let body = serde_json::to_vec(&env).unwrap();
        prop_assert!(sns_verify(&body).is_err(), "{key} changed and it still verified");
    }

    /// A changed signature, or the other SignatureVersion, never verifies.
    #[test]
    fn sns_envelope_with_a_changed_signature_never_verifies(
        f in select(SNS_FIXTURES.to_vec()),
        byte in any::<usize>(),
        bit in 0u8..8,
        swap_version in any::<bool>(),
    ) {
        let mut env = fixture_json(f);
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sig = b64.decode(env["Signature"].as_str().unwrap()).unwrap();
        if swap_version {
            env["SignatureVersion"] = json!("2");
        } else {
            let i = byte % sig.len();
            sig[i] ^= 1 << bit;
        }
        env["Signature"] = json!(b64.encode(sig));
        prop_assert!(sns_verify(&serde_json::to_vec(&env).unwrap()).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// CloudWatch alarm (the SNS Message)

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn cloudwatch_message_survives_arbitrary_text(m in ".{0,400}") {
        let _ = vigil::ingest::parse_alarm(&m, None, None);
    }

    #[test]
    fn cloudwatch_message_survives_edits(i in 0usize..3, e in edits()) {
        let m = apply(alarm_messages()[i].as_bytes(), &e);
        let _ = vigil::ingest::parse_alarm(&String::from_utf8_lossy(&m), Some("id".into()), None);
    }

    #[test]
    fn cloudwatch_message_survives_wrong_json_types(i in 0usize..3, e in json_edits()) {
        let v: Value = serde_json::from_str(&alarm_messages()[i]).unwrap();
        let m = apply_json(v, &e).to_string();
        if let Ok(alert) = vigil::ingest::parse_alarm(&m, None, None) {
            prop_assert!(!alert.fingerprint.as_str().is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Any SNS Notification (a CloudWatch alarm or not): every input gives an alert

const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts";

fn sns_notification(topic: &str, subject: Option<&str>, m: &str, ts: &str) -> vigil::domain::Alert {
    vigil::ingest::parse_notification(topic, subject, m, "id", ts, now())
}

/// What holds for every alert `parse_notification` gives.
fn check_notification_alert(alert: &vigil::domain::Alert) -> Result<(), TestCaseError> {
    use vigil::ingest::sns_notification::{KIND, MAX_DESCRIPTION_CHARS, MAX_SUMMARY_CHARS};
    prop_assert!(!alert.summary.is_empty());
    prop_assert!(!alert.fingerprint.as_str().is_empty());
    prop_assert_eq!(alert.delivery_id.as_deref(), Some("id"));
    let kind = alert.labels.get("kind").map(String::as_str);
    if kind == Some(KIND) {
        prop_assert_eq!(alert.status, AlertStatus::Firing);
        prop_assert!(alert.summary.chars().count() <= MAX_SUMMARY_CHARS);
        prop_assert!(
            alert
                .description
                .as_ref()
                .is_none_or(|d| d.chars().count() <= MAX_DESCRIPTION_CHARS)
        );
        prop_assert!(alert.details.is_object());
    } else if matches!(kind, Some("rds_event" | "elasticache_event")) {
        // Typed AWS event notifications: bounded summaries, the message kept in details.
        prop_assert!(alert.summary.chars().count() <= MAX_SUMMARY_CHARS);
        prop_assert!(alert.details.is_object());
        prop_assert_ne!(alert.status, AlertStatus::InsufficientData);
    } else {
        prop_assert!(
            matches!(kind, Some("cloudwatch_alarm" | "route53_health_check")),
            "{kind:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn sns_notification_survives_arbitrary_text(
        topic in ".{0,120}",
        subject in proptest::option::of(".{0,120}"),
        m in ".{0,400}",
        ts in ".{0,40}",
    ) {
        check_notification_alert(&sns_notification(&topic, subject.as_deref(), &m, &ts))?;
    }

    #[test]
    fn sns_notification_survives_edited_alarms(i in 0usize..3, e in edits()) {
        let m = apply(alarm_messages()[i].as_bytes(), &e);
        let m = String::from_utf8_lossy(&m);
        check_notification_alert(&sns_notification(TOPIC, Some("ALARM: x"), &m, "2026-11-20T02:15:41.452Z"))?;
    }

    #[test]
    fn sns_notification_survives_wrong_json_types(i in 0usize..3, e in json_edits()) {
        let v: Value = serde_json::from_str(&alarm_messages()[i]).unwrap();
        let m = apply_json(v, &e).to_string();
        check_notification_alert(&sns_notification(TOPIC, None, &m, "2026-11-20T02:15:41.452Z"))?;
    }
}

// ---------------------------------------------------------------------------------------------
// EventBridge event

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn eventbridge_event_survives_arbitrary_bytes(body in any_bytes()) {
        let _ = vigil::ingest::parse_event(&body);
    }

    #[test]
    fn eventbridge_event_survives_edits(e in edits()) {
        let body = apply(&fixture("eventbridge-cloudwatch-alarm-state-change.json"), &e);
        let _ = vigil::ingest::parse_event(&body);
    }

    #[test]
    fn eventbridge_event_survives_wrong_json_types(e in json_edits()) {
        let v = apply_json(fixture_json("eventbridge-cloudwatch-alarm-state-change.json"), &e);
        let _ = vigil::ingest::parse_event(&serde_json::to_vec(&v).unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// Bot events

/// A valid bot event's fields.
#[derive(Debug, Clone)]
struct BotEvent {
    kind: String,
    summary: String,
    status: Option<&'static str>,
    dedup_key: Option<String>,
    severity: Option<&'static str>,
    labels: std::collections::BTreeMap<String, String>,
    occurred_at: Option<i64>,
    description: Option<String>,
}

fn bot_event() -> impl Strategy<Value = BotEvent> {
    (
        "[a-z][a-z0-9_]{0,30}",
        ".{0,60}".prop_filter("not blank", |s| !s.trim().is_empty()),
        proptest::option::of(select(vec!["firing", "resolved"])),
        proptest::option::of("[^\\p{Cc}]{1,60}"),
        proptest::option::of(select(vec!["critical", "high", "medium", "low"])),
        btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,15}", ".{0,40}", 0..8)
            .prop_filter("source and kind are set by vigil", |m| {
                !m.contains_key("source") && !m.contains_key("kind")
            }),
        proptest::option::of(0i64..4_000_000_000),
        proptest::option::of(".{0,80}"),
    )
        .prop_map(
            |(kind, summary, status, dedup_key, severity, labels, occurred_at, description)| {
                BotEvent {
                    kind,
                    summary,
                    status,
                    dedup_key,
                    severity,
                    labels,
                    occurred_at,
                    description,
                }
            },
        )
}

impl BotEvent {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind));
        m.insert("summary".into(), json!(self.summary));
        if let Some(s) = self.status {
            m.insert("status".into(), json!(s));
        }
        if let Some(k) = &self.dedup_key {
            m.insert("dedup_key".into(), json!(k));
        }
        if let Some(s) = self.severity {
            m.insert("severity".into(), json!(s));
        }
        m.insert("labels".into(), json!(self.labels));
        if let Some(t) = self.occurred_at {
            let t = Utc.timestamp_opt(t, 0).unwrap();
            m.insert("occurred_at".into(), json!(t.to_rfc3339()));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        Value::Object(m)
    }

    fn check(&self, alert: &vigil::domain::Alert) -> Result<(), TestCaseError> {
        prop_assert_eq!(&alert.summary, &self.summary);
        let mut want = self.labels.clone();
        want.insert("source".into(), "bot".into());
        want.insert("kind".into(), self.kind.clone());
        let got: std::collections::BTreeMap<String, String> = alert
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(got, want);
        let status = match self.status {
            Some("resolved") => AlertStatus::Resolved,
            _ => AlertStatus::Firing,
        };
        prop_assert_eq!(alert.status, status);
        if let Some(k) = &self.dedup_key {
            prop_assert_eq!(alert.fingerprint.as_str(), k.as_str());
        }
        prop_assert_eq!(
            alert.severity_override,
            self.severity.map(|s| s.parse::<Severity>().unwrap())
        );
        let at = self
            .occurred_at
            .map(|t| Utc.timestamp_opt(t, 0).unwrap())
            .unwrap_or_else(now);
        prop_assert_eq!(alert.occurred_at, at);
        prop_assert_eq!(&alert.description, &self.description);
        Ok(())
    }
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn bot_events_survive_arbitrary_bytes(body in any_bytes()) {
        let _ = vigil::ingest::parse_events(&body, now());
    }

    #[test]
    fn bot_events_survive_edits(f in select(BOT_FIXTURES.to_vec()), e in edits()) {
        let _ = vigil::ingest::parse_events(&apply(&fixture(f), &e), now());
    }

    #[test]
    fn bot_events_survive_wrong_json_types(f in select(BOT_FIXTURES.to_vec()), e in json_edits()) {
        let v = apply_json(fixture_json(f), &e);
        let _ = vigil::ingest::parse_events(&serde_json::to_vec(&v).unwrap(), now());
    }

    /// An event built from valid fields parses to exactly those fields; a batch keeps its order.
    #[test]
    fn bot_events_built_from_valid_fields_round_trip(events in vec(bot_event(), 1..5)) {
        let one = serde_json::to_vec(&events[0].to_json()).unwrap();
        let alerts = vigil::ingest::parse_events(&one, now()).unwrap();
        prop_assert_eq!(alerts.len(), 1);
        events[0].check(&alerts[0])?;
        let batch = Value::Array(events.iter().map(BotEvent::to_json).collect());
        let alerts = vigil::ingest::parse_events(&serde_json::to_vec(&batch).unwrap(), now())
            .unwrap();
        prop_assert_eq!(alerts.len(), events.len());
        for (e, a) in events.iter().zip(&alerts) {
            e.check(a)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Slack interactions

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn slack_payload_survives_arbitrary_bytes(body in any_bytes()) {
        let _ = parse_interaction(&body);
        let _ = parse_interaction(&slack_form_raw(&String::from_utf8_lossy(&body)));
    }

    #[test]
    fn slack_payload_survives_edits(e in edits(), encoded in any::<bool>()) {
        let payload = fixture("slack-block-actions-ack.json");
        let body = if encoded {
            // Edits of the form encoding itself.
            apply(&slack_form_raw(&String::from_utf8_lossy(&payload)), &e)
        } else {
            slack_form_raw(&String::from_utf8_lossy(&apply(&payload, &e)))
        };
        let _ = parse_interaction(&body);
    }

    #[test]
    fn slack_payload_survives_wrong_json_types(e in json_edits()) {
        let v = apply_json(fixture_json("slack-block-actions-ack.json"), &e);
        let _ = parse_interaction(&slack_form(&v));
    }

    #[test]
    fn slack_signature_check_survives_arbitrary_headers(
        ts in proptest::option::of(".{0,24}"),
        sig in proptest::option::of(prop_oneof![".{0,80}", "v0=[0-9a-fA-F]{0,70}"]),
        body in any_bytes(),
        now in any::<i64>(),
    ) {
        let secret = Secret::new(SLACK_SECRET);
        prop_assert!(verify_request(&secret, ts.as_deref(), sig.as_deref(), &body, now).is_err());
    }

    /// A request signed now verifies within the 5-minute window, and never with a changed body,
    /// timestamp or secret, or outside the window.
    #[test]
    fn slack_signature_round_trips_and_nothing_changed_verifies(
        ts in 1_600_000_000i64..2_000_000_000,
        skew in -300i64..=300,
        e in edits(),
        late in 301i64..1_000_000,
    ) {
        let body = slack_form(&fixture_json("slack-block-actions-ack.json"));
        let ts_s = ts.to_string();
        let sig = format!("v0={}", hmac_hex(SLACK_SECRET, &[b"v0:", ts_s.as_bytes(), b":", &body]));
        let secret = Secret::new(SLACK_SECRET);
        prop_assert!(verify_request(&secret, Some(&ts_s), Some(&sig), &body, ts + skew).is_ok());
        prop_assert!(verify_request(&secret, Some(&ts_s), Some(&sig), &body, ts + late).is_err());
        prop_assert!(verify_request(&secret, Some(&ts_s), Some(&sig), &body, ts - late).is_err());
        let changed = apply(&body, &e);
        if changed != body {
            prop_assert!(verify_request(&secret, Some(&ts_s), Some(&sig), &changed, ts).is_err());
        }
        let other_ts = (ts + 1).to_string();
        prop_assert!(verify_request(&secret, Some(&other_ts), Some(&sig), &body, ts).is_err());
        let wrong = Secret::new("not-the-secret");
        prop_assert!(verify_request(&wrong, Some(&ts_s), Some(&sig), &body, ts).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// PagerDuty webhooks

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn pagerduty_webhook_survives_arbitrary_bytes(body in any_bytes()) {
        let _ = parse_webhook(&body);
    }

    #[test]
    fn pagerduty_webhook_survives_edits(e in edits()) {
        let _ = parse_webhook(&apply(&fixture(PD_FIXTURE), &e));
    }

    #[test]
    fn pagerduty_webhook_survives_wrong_json_types(e in json_edits()) {
        let v = apply_json(fixture_json(PD_FIXTURE), &e);
        let _ = parse_webhook(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn pagerduty_signature_check_survives_arbitrary_headers(
        header in proptest::option::of(prop_oneof![
            ".{0,200}",
            "(v[0-9]=[0-9a-f]{0,70},?){0,4}",
        ]),
        body in any_bytes(),
    ) {
        let secrets = [Secret::new(PD_SECRET), Secret::new("")];
        prop_assert!(verify_signature(&secrets, header.as_deref(), &body).is_err());
    }

    /// The fixture's signature verifies under the right secret, among others, and never over a
    /// changed body or with only wrong secrets.
    #[test]
    fn pagerduty_signature_never_verifies_a_changed_body(e in edits(), extra in ".{0,40}") {
        let body = fixture(PD_FIXTURE);
        let both = [Secret::new(extra.clone()), Secret::new(PD_SECRET)];
        prop_assert!(verify_signature(&both, Some(PD_FIXTURE_SIG), &body).is_ok());
        let rotating = format!("v1=00ff, {PD_FIXTURE_SIG}");
        prop_assert!(verify_signature(&both, Some(&rotating), &body).is_ok());
        let changed = apply(&body, &e);
        if changed != body {
            prop_assert!(verify_signature(&both, Some(PD_FIXTURE_SIG), &changed).is_err());
        }
        prop_assume!(extra != PD_SECRET);
        prop_assert!(verify_signature(&[Secret::new(extra)], Some(PD_FIXTURE_SIG), &body).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// routing/ YAML

/// One edit of the shipped policy directory.
#[derive(Debug, Clone)]
enum YamlEdit {
    /// A byte-level edit of one file.
    Bytes(usize, Vec<Edit>),
    DeleteLine(usize, usize),
    DuplicateLine(usize, usize),
    SwapLines(usize, usize, usize),
    /// Indent (true) or dedent a line by two spaces.
    Indent(usize, usize, bool),
    /// Replaces the value after the first `: ` on a line.
    Value(usize, usize, String),
    /// Adds a file with these contents.
    AddFile(Vec<u8>),
    RemoveFile(usize),
}

fn hostile_scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "",
            "~",
            "null",
            "[",
            "]",
            "{",
            "}",
            "&a x",
            "*a",
            "*nope",
            "!!binary aGk=",
            "!!int x",
            "-1",
            "0",
            "1e999",
            "99999999999999999999",
            "-9223372036854775809",
            "25:61",
            "0m",
            "-5m",
            "1000000000y",
            "18446744073709551615s",
            "P1Y",
            "\"\"",
            "'",
            "\"",
            "|",
            ">",
            "- a",
            "? x",
            "yes",
            "no",
            "true",
            "[a, b",
            "{a: 1",
            "\"\\u0000\"",
            "\u{feff}",
            "Mars/Olympus",
            "+0000000",
            "not-a-phone",
            "label=~\"(\"",
            "x=\"y",
        ])
        .prop_map(str::to_string),
        ".{0,30}",
        (1usize..3000).prop_map(|n| "a".repeat(n)),
    ]
}

fn yaml_edits() -> impl Strategy<Value = Vec<YamlEdit>> {
    let u = any::<usize>;
    vec(
        prop_oneof![
            2 => (u(), edits()).prop_map(|(f, e)| YamlEdit::Bytes(f, e)),
            2 => (u(), u()).prop_map(|(f, l)| YamlEdit::DeleteLine(f, l)),
            1 => (u(), u()).prop_map(|(f, l)| YamlEdit::DuplicateLine(f, l)),
            1 => (u(), u(), u()).prop_map(|(f, a, b)| YamlEdit::SwapLines(f, a, b)),
            1 => (u(), u(), any::<bool>()).prop_map(|(f, l, i)| YamlEdit::Indent(f, l, i)),
            4 => (u(), u(), hostile_scalar()).prop_map(|(f, l, v)| YamlEdit::Value(f, l, v)),
            1 => vec(interesting_byte(), 0..200).prop_map(YamlEdit::AddFile),
            1 => u().prop_map(YamlEdit::RemoveFile),
        ],
        1..4,
    )
}

fn edit_routing(dir: &Path, edits: &[YamlEdit]) {
    let files = || {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let with_lines = |f: usize, edit: &dyn Fn(&mut Vec<String>)| {
        let all = files();
        if all.is_empty() {
            return;
        }
        let path = &all[f % all.len()];
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            return;
        }
        edit(&mut lines);
        std::fs::write(path, lines.join("\n")).unwrap();
    };
    for e in edits {
        match e {
            YamlEdit::Bytes(f, e) => {
                let all = files();
                if let Some(path) = all.get(f % all.len().max(1)) {
                    let bytes = std::fs::read(path).unwrap();
                    std::fs::write(path, apply(&bytes, e)).unwrap();
                }
            }
            YamlEdit::DeleteLine(f, l) => with_lines(*f, &|ls| {
                let n = ls.len();
                ls.remove(l % n);
            }),
            YamlEdit::DuplicateLine(f, l) => with_lines(*f, &|ls| {
                let i = l % ls.len();
                let line = ls[i].clone();
                ls.insert(i, line);
            }),
            YamlEdit::SwapLines(f, a, b) => with_lines(*f, &|ls| {
                let n = ls.len();
                ls.swap(a % n, b % n);
            }),
            YamlEdit::Indent(f, l, more) => with_lines(*f, &|ls| {
                let i = l % ls.len();
                if *more {
                    ls[i].insert_str(0, "  ");
                } else if let Some(rest) = ls[i].strip_prefix("  ") {
                    ls[i] = rest.to_string();
                }
            }),
            YamlEdit::Value(f, l, v) => with_lines(*f, &|ls| {
                // The n-th line that has a value, so most edits land on one.
                let with_value: Vec<usize> =
                    (0..ls.len()).filter(|&i| ls[i].contains(": ")).collect();
                if with_value.is_empty() {
                    return;
                }
                let i = with_value[l % with_value.len()];
                let at = ls[i].find(": ").unwrap();
                ls[i] = format!("{}: {v}", &ls[i][..at]);
            }),
            YamlEdit::AddFile(bytes) => std::fs::write(dir.join("zz-extra.yaml"), bytes).unwrap(),
            YamlEdit::RemoveFile(f) => {
                let all = files();
                if !all.is_empty() {
                    std::fs::remove_file(&all[f % all.len()]).unwrap();
                }
            }
        }
    }
}

fn check_routing(dir: &Path) -> Result<(), TestCaseError> {
    match vigil::config::load_dir(dir) {
        Ok(policy) => {
            prop_assert!(!policy.digest.is_empty());
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "an Err with no errors");
            let text = vigil::config::format_errors(&errors);
            prop_assert!(!text.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(YAML_CASES))]

    #[test]
    fn routing_yaml_edits_load_or_give_errors(e in yaml_edits()) {
        let tmp = tempfile::tempdir().unwrap();
        crate::helpers::copy_routing(tmp.path());
        edit_routing(tmp.path(), &e);
        check_routing(tmp.path())?;
    }

    /// Any YAML node of the shipped files replaced by any JSON-shaped value (JSON is YAML).
    #[test]
    fn routing_yaml_with_wrong_types_gives_errors(f in 0usize..8, e in json_edits()) {
        let tmp = tempfile::tempdir().unwrap();
        crate::helpers::copy_routing(tmp.path());
        let mut all: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
        all.sort();
        let path = &all[f % all.len()];
        let v: Value = yaml_serde::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string(&apply_json(v, &e)).unwrap()).unwrap();
        check_routing(tmp.path())?;
    }
}

/// Alias bombs and deep nesting end in errors, quickly, not in a hang or a stack overflow. (The
/// YAML scanner is quadratic in flow-nesting depth — 100,000 brackets take half a minute in a
/// debug build — so the depth here is 10,000: `routing/` is the operator's own file, not input
/// from outside.)
#[test]
fn routing_yaml_bombs_give_errors() {
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let mut prev = 'a';
    for c in 'b'..='j' {
        laughs.push_str(&format!(
            "{c}: &{c} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
        prev = c;
    }
    let deep = format!("x: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let deep_map = format!(
        "x:\n{}",
        (0..5_000)
            .map(|i| format!("{}k:\n", " ".repeat(i + 1)))
            .collect::<String>()
    );
    for (name, text) in [("laughs", laughs), ("deep", deep), ("deep_map", deep_map)] {
        let tmp = tempfile::tempdir().unwrap();
        crate::helpers::copy_routing(tmp.path());
        std::fs::write(tmp.path().join("zz-bomb.yaml"), text).unwrap();
        let started = std::time::Instant::now();
        let errors = vigil::config::load_dir(tmp.path())
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        assert!(!errors.is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 15's sources: AWS Health, RDS and ElastiCache notifications, Alertmanager, SMS replies.
// Their payloads live in this repository's tests/fixtures/.

fn local(name: &str) -> Vec<u8> {
    std::fs::read(crate::helpers::repo().join("tests/fixtures").join(name)).unwrap()
}

fn local_json(name: &str) -> Value {
    serde_json::from_slice(&local(name)).unwrap()
}

const HEALTH_FIXTURES: [&str; 4] = [
    "aws-health-ec2-issue-open.json",
    "aws-health-ec2-issue-closed.json",
    "aws-health-rds-issue-us-east-1-org-view.json",
    "aws-health-elasticache-scheduled-change.json",
];
const AWS_EVENT_FIXTURES: [&str; 7] = [
    "rds-failover-started-sns-notification.json",
    "rds-failover-completed-sns-notification.json",
    "rds-replication-error-sns-notification.json",
    "rds-backup-sns-notification.json",
    "elasticache-failover-sns-notification.json",
    "elasticache-node-replace-started-sns-notification.json",
    "elasticache-node-replace-complete-sns-notification.json",
];
const AM_FIXTURES: [&str; 2] = ["alertmanager-firing.json", "alertmanager-resolved.json"];

/// The `Message` of one of the SNS fixtures above.
fn aws_event_message(name: &str) -> String {
    local_json(name)["Message"].as_str().unwrap().to_string()
}

/// What holds for an AWS Health alert: `closed` and only `closed` resolves, the labels carry
/// what the event said.
fn check_health(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(Some(alert)) = vigil::ingest::parse_event(body)
        && alert.labels.get("kind").map(String::as_str) == Some("aws_health")
    {
        let status = alert.labels.get("status").map(String::as_str);
        prop_assert_eq!(
            alert.status == AlertStatus::Resolved,
            status == Some("closed"),
            "{:?}",
            status
        );
        prop_assert!(alert.fingerprint.as_str().starts_with("aws_health/"));
        for key in ["service", "event_type_code", "category", "account"] {
            prop_assert!(alert.labels.contains_key(key), "{}", key);
        }
    }
    Ok(())
}

/// A valid RDS event notification's fields.
fn rds_message() -> impl Strategy<Value = (u32, String, String, bool)> {
    (0u32..300, "[a-z][a-z0-9-]{0,40}", ".{0,200}", any::<bool>())
}

/// A valid Alertmanager alert: its labels (with `alertname`), status and fingerprint.
fn am_alert() -> impl Strategy<Value = (std::collections::BTreeMap<String, String>, bool, String)> {
    (
        btree_map("[a-z_][a-z0-9_]{0,20}", ".{0,40}", 0..8),
        any::<bool>(),
        "[0-9a-f]{16}",
    )
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn aws_health_survives_edits(f in select(HEALTH_FIXTURES.to_vec()), e in edits()) {
        check_health(&apply(&local(f), &e))?;
    }

    #[test]
    fn aws_health_survives_wrong_json_types(f in select(HEALTH_FIXTURES.to_vec()), e in json_edits()) {
        let v = apply_json(local_json(f), &e);
        check_health(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn aws_event_messages_survive_edits(f in select(AWS_EVENT_FIXTURES.to_vec()), e in edits()) {
        let m = apply(aws_event_message(f).as_bytes(), &e);
        let m = String::from_utf8_lossy(&m);
        check_notification_alert(&sns_notification(TOPIC, None, &m, "2026-11-20T02:15:41.452Z"))?;
    }

    #[test]
    fn aws_event_messages_survive_wrong_json_types(f in select(AWS_EVENT_FIXTURES.to_vec()), e in json_edits()) {
        let v: Value = serde_json::from_str(&aws_event_message(f)).unwrap();
        let m = apply_json(v, &e).to_string();
        check_notification_alert(&sns_notification(TOPIC, None, &m, "2026-11-20T02:15:41.452Z"))?;
    }

    #[test]
    fn a_valid_rds_event_is_typed_whatever_its_fields(
        (n, source_id, text, arn) in rds_message()
    ) {
        let id = format!("RDS-EVENT-{n:04}");
        let mut m = json!({
            "Event Source": "db-instance", "Event Time": "2026-11-20 02:15:41.452",
            "Source ID": source_id,
            "Event ID": format!("https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.html#{id}"),
            "Event Message": text,
        });
        if arn {
            m["Source ARN"] = json!(format!("arn:aws:rds:ap-southeast-1:123456789012:db:{source_id}"));
        }
        let alert = sns_notification(TOPIC, None, &m.to_string(), "2026-11-20T02:15:41.452Z");
        check_notification_alert(&alert)?;
        prop_assert_eq!(alert.labels.get("kind").map(String::as_str), Some("rds_event"));
        prop_assert_eq!(alert.labels.get("event_id"), Some(&id));
        prop_assert_eq!(alert.labels.get("source_id"), Some(&source_id));
        prop_assert_eq!(alert.labels.get("region").map(String::as_str), Some("ap-southeast-1"));
    }

    #[test]
    fn an_elasticache_event_is_typed_whatever_its_event(event in "[A-Za-z]{1,40}", node in "[a-z0-9-]{1,40}") {
        let m = json!({ format!("ElastiCache:{event}"): node }).to_string();
        let alert = sns_notification(TOPIC, None, &m, "2026-11-20T02:15:41.452Z");
        check_notification_alert(&alert)?;
        prop_assert_eq!(alert.labels.get("kind").map(String::as_str), Some("elasticache_event"));
        prop_assert_eq!(alert.labels.get("event"), Some(&event));
        prop_assert_eq!(alert.labels.get("source_id"), Some(&node));
    }

    #[test]
    fn alertmanager_survives_arbitrary_bytes(body in any_bytes()) {
        let _ = vigil::ingest::alertmanager::parse_webhook(&body, now());
    }

    #[test]
    fn alertmanager_survives_edits(f in select(AM_FIXTURES.to_vec()), e in edits()) {
        let _ = vigil::ingest::alertmanager::parse_webhook(&apply(&local(f), &e), now());
    }

    #[test]
    fn alertmanager_survives_wrong_json_types(f in select(AM_FIXTURES.to_vec()), e in json_edits()) {
        let v = apply_json(local_json(f), &e);
        let _ = vigil::ingest::alertmanager::parse_webhook(&serde_json::to_vec(&v).unwrap(), now());
    }

    #[test]
    fn alertmanager_alerts_round_trip(alerts in vec(am_alert(), 0..20)) {
        let items: Vec<Value> = alerts
            .iter()
            .map(|(labels, firing, fp)| json!({
                "status": if *firing { "firing" } else { "resolved" },
                "labels": labels, "annotations": {}, "fingerprint": fp,
                "startsAt": "2026-11-20T02:14:36Z", "endsAt": "0001-01-01T00:00:00Z",
            }))
            .collect();
        let body = json!({"version": "4", "status": "firing", "receiver": "vigil",
                          "groupKey": "{}", "alerts": items, "truncatedAlerts": 0});
        let n = vigil::ingest::alertmanager::parse_webhook(&serde_json::to_vec(&body).unwrap(), now())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(n.alerts.len(), alerts.len());
        for (alert, (labels, firing, fp)) in n.alerts.iter().zip(&alerts) {
            prop_assert_eq!(alert.fingerprint.as_str(), format!("alertmanager/{fp}"));
            prop_assert_eq!(alert.status == AlertStatus::Firing, *firing);
            for (k, v) in labels.iter().filter(|(k, _)| !matches!(k.as_str(), "kind" | "source")) {
                prop_assert_eq!(alert.labels.get(k), Some(v));
            }
            prop_assert_eq!(alert.labels.get("kind").map(String::as_str), Some("prometheus_alert"));
        }
    }

    #[test]
    fn sms_replies_survive_arbitrary_text(m in ".{0,400}") {
        if let Some(Ok(sms)) = vigil::ingest::sms_reply::parse_inbound(&m) {
            let _ = vigil::ingest::sms_reply::parse_command(&sms.body);
        }
        let _ = vigil::ingest::sms_reply::parse_command(&m);
    }

    #[test]
    fn sms_replies_survive_wrong_json_types(e in json_edits()) {
        let v: Value = serde_json::from_str(&aws_event_message("sms-inbound-ack-sns-notification.json")).unwrap();
        let m = apply_json(v, &e).to_string();
        if let Some(Ok(sms)) = vigil::ingest::sms_reply::parse_inbound(&m) {
            let _ = vigil::ingest::sms_reply::parse_command(&sms.body);
        }
    }

    #[test]
    fn an_ack_with_a_code_and_a_time_reads_back(
        code in "[0-9A-HJKMNP-TV-Z]{4,6}",
        minutes in 1u64..=99,
        verb in select(vec!["ACK", "ack", "Ack", "ACKNOWLEDGE"]),
        pad in " {0,3}",
    ) {
        use vigil::ingest::sms_reply::{Command, parse_command};
        let text = format!("{pad}{verb} {pad}#{code} {minutes}m{pad}");
        prop_assert_eq!(
            parse_command(&text),
            Command::Ack {
                code: Some(code.clone()),
                for_: Some(std::time::Duration::from_secs(minutes * 60)),
            }
        );
    }
}

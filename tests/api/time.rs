//! On call and on time, through the API with the injected clock: business hours, ack timeouts
//! and timed acks, silences mid-incident, a grouped storm, inhibition and flapping.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::MockServer;

use crate::helpers::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// A policy whose every page is a webhook to `sink` (plus sms/email for the critical rule's
/// two-channel invariant), in Asia/Singapore, with one silence on `kind="maintenance_target"`.
pub(crate) fn policy(sink: String) -> impl FnOnce(&Path) {
    move |dir: &Path| {
        let yaml = format!(
            r#"
timezone: Asia/Singapore
business_hours:
  days: [mon, tue, wed, thu, fri]
  from: "09:00"
  to: "18:00"
  holidays: [2026-12-25]
flapping:
  cooldown: 10m
severities:
  critical: {{ respond_within: 5m, policy: critical }}
  high: {{ respond_within: 15m, policy: simple }}
  medium: {{ respond_within: 1h, policy: simple }}
  low: {{ respond_within: 4h, policy: simple, business_hours: true }}
people:
  ana: {{ name: Ana Lim, phone: "+6591110001", email: ana@example.com }}
  cto: {{ name: Chen Tao, phone: "+6591110002", email: cto@example.com }}
schedules:
  primary:
    rotation: {{ members: [ana], every: 1w, start: "2026-11-02T09:00:00" }}
channels:
  hook: {{ type: webhook, url: "{sink}/page" }}
  sms: {{ type: sms }}
  email: {{ type: email }}
policies:
  critical:
    ack_timeout: 30m
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [hook, sms, email] }}
      - {{ after: 5m, targets: [{{ person: cto }}], via: [hook, sms, email] }}
  simple:
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [hook] }}
silences:
  - id: window-1
    matchers: ['kind="maintenance_target"']
    start: "2026-11-20T02:17:45Z"
    end: "2026-11-20T02:23:45Z"
    author: ops
    comment: planned failover drill
inhibit_rules:
  - source_matchers: ['kind="region_down"']
    target_matchers: ['kind="eks_alarm"']
    equal: [region]
rules:
  - name: halted
    matchers: ['kind=~"trading_halted|maintenance_target|region_down"']
    severity: critical
  - name: storm
    matchers: ['kind="storm"']
    severity: high
    group_by: [region]
    group_window: 2m
  - name: report
    matchers: ['kind="report"']
    severity: low
  - name: catch-all
    matchers: []
    severity: medium
"#
        );
        std::fs::write(dir.join("policy.yaml"), yaml).unwrap();
    }
}

async fn setup() -> (MockServer, TestApp) {
    let sink = crate::helpers::ok_sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(policy(sink.uri()))),
        ..Default::default()
    })
    .await;
    (sink, app)
}

fn event(kind: &str, key: &str, labels: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "kind": kind, "summary": format!("{kind} {key}"), "dedup_key": key, "labels": labels })).unwrap()
}

async fn open(app: &TestApp, kind: &str, key: &str, labels: Value) -> String {
    let (status, body) = app.post_events(&event(kind, key, labels)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    incident_of(&body)
}

/// Pages (not status updates) the sink got for `incident`, as (kind, step).
async fn pages(sink: &MockServer, incident: &str) -> Vec<(String, Value)> {
    received(sink)
        .await
        .into_iter()
        .filter(|b| {
            b["incident"] == incident && (b["kind"] == "trigger" || b["kind"] == "escalate")
        })
        .map(|b| (b["kind"].as_str().unwrap().to_string(), b["step"].clone()))
        .collect()
}

async fn tick(app: &TestApp, by: Duration) {
    app.advance(by).await;
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[tokio::test]
async fn a_low_alert_on_friday_evening_is_notified_monday_morning() {
    let (sink, app) = setup().await;
    app.clock.set(utc(2026, 11, 20, 11, 0)); // Friday 19:00 in Singapore
    let id = open(&app, "report", "weekly-pnl", json!({})).await;
    tick(&app, Duration::ZERO).await;
    assert!(pages(&sink, &id).await.is_empty(), "nothing after hours");
    let inc = app.incident(&id).await;
    let deferred = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "deferred")
        .cloned()
        .unwrap();
    assert_eq!(
        deferred["until"], "2026-11-23T01:00:00Z",
        "Monday 09:00 in Singapore"
    );
    assert_eq!(deferred["reason"], "outside business hours");
    app.clock.set(utc(2026, 11, 23, 0, 59));
    tick(&app, Duration::ZERO).await;
    assert!(pages(&sink, &id).await.is_empty(), "not before 09:00");
    tick(&app, minutes(1)).await;
    assert_eq!(pages(&sink, &id).await.len(), 1, "Monday 09:00");
    // The same alert on Monday 10:00 pages at once.
    let now_open = open(&app, "report", "monday-report", json!({})).await;
    tick(&app, Duration::ZERO).await;
    assert_eq!(pages(&sink, &now_open).await.len(), 1);
}

#[tokio::test]
async fn an_ack_that_times_out_re_triggers_and_a_timed_ack_expires() {
    let (sink, app) = setup().await;
    // ack_timeout: the critical policy's 30 minutes.
    let id = open(&app, "trading_halted", "halt", json!({})).await;
    tick(&app, Duration::ZERO).await;
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{id}/ack"), json!({ "by": "ana" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["incident"]["ack_until"], "2026-11-20T02:45:45Z");
    tick(&app, minutes(29)).await;
    assert_eq!(pages(&sink, &id).await.len(), 1, "quiet while acknowledged");
    tick(&app, minutes(1)).await;
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "triggered");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "ack_expired")
    );
    assert_eq!(
        pages(&sink, &id).await.len(),
        2,
        "paged again from the first step"
    );
    tick(&app, minutes(5)).await;
    assert_eq!(
        pages(&sink, &id).await[2].0,
        "escalate",
        "and escalates again"
    );

    // A timed ack ("for": 15m) on an incident whose policy has no ack_timeout.
    let other = open(
        &app,
        "exchange_error",
        "binance-5xx",
        json!({ "exchange": "binance" }),
    )
    .await;
    tick(&app, Duration::ZERO).await;
    let (status, body) = app
        .post_op(
            &format!("/v1/incidents/{other}/ack"),
            json!({ "for": "15m" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tick(&app, minutes(14)).await;
    assert_eq!(app.incident(&other).await["status"], "acknowledged");
    tick(&app, minutes(1)).await;
    assert_eq!(app.incident(&other).await["status"], "triggered");
    assert_eq!(pages(&sink, &other).await.len(), 2);
    // An ack without a limit on that policy holds until resolved.
    app.post_op(&format!("/v1/incidents/{other}/ack"), json!({}))
        .await;
    tick(&app, minutes(600)).await;
    assert_eq!(app.incident(&other).await["status"], "acknowledged");
    let (status, _) = app
        .post_op(
            &format!("/v1/incidents/{other}/ack"),
            json!({ "until": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an ack until a past instant is refused"
    );
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{other}/ack"), json!({}))
        .await;
    assert_eq!(
        (status, body["changed"].clone()),
        (StatusCode::OK, json!(false)),
        "already acknowledged: the same answer"
    );
}

#[tokio::test]
async fn a_silence_that_starts_and_ends_mid_incident_holds_the_step_until_it_ends() {
    let (sink, app) = setup().await;
    // The silence runs from t0+2m to t0+8m; step 2 is due at +5m.
    let id = open(&app, "maintenance_target", "db-failover", json!({})).await;
    tick(&app, Duration::ZERO).await;
    assert_eq!(
        pages(&sink, &id).await.len(),
        1,
        "before the silence: paged"
    );
    tick(&app, minutes(5)).await;
    assert_eq!(
        pages(&sink, &id).await.len(),
        1,
        "step 2 held by the silence"
    );
    let inc = app.incident(&id).await;
    let held = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "held")
        .cloned()
        .unwrap();
    assert_eq!(held["by"], "silence window-1");
    assert_eq!(held["until"], "2026-11-20T02:23:45Z");
    tick(&app, minutes(2)).await;
    assert_eq!(pages(&sink, &id).await.len(), 1);
    tick(&app, minutes(1)).await; // +8m: the silence is over
    assert_eq!(
        pages(&sink, &id).await.len(),
        2,
        "the held step fires when the silence ends"
    );

    // During a silence a new incident opens, pages no one, and a resolve still resolves.
    app.clock.set(utc(2026, 11, 20, 2, 20));
    let quiet = open(&app, "maintenance_target", "cache-failover", json!({})).await;
    tick(&app, Duration::ZERO).await;
    assert!(pages(&sink, &quiet).await.is_empty());
    let resolved = serde_json::to_vec(&json!({ "kind": "maintenance_target", "summary": "ok", "dedup_key": "cache-failover", "status": "resolved" })).unwrap();
    let (_, body) = app.post_events(&resolved).await;
    assert_eq!(body["results"][0]["outcome"], "resolved");
    tick(&app, minutes(30)).await;
    assert!(
        pages(&sink, &quiet).await.is_empty(),
        "resolved during the silence: never paged"
    );
}

#[tokio::test]
async fn a_storm_of_thirty_alarms_in_a_region_is_one_incident_and_one_page() {
    let (sink, app) = setup().await;
    let mut ids = std::collections::BTreeSet::new();
    for n in 0..30 {
        ids.insert(
            open(
                &app,
                "storm",
                &format!("node-{n}"),
                json!({ "region": "ap-southeast-1" }),
            )
            .await,
        );
        app.clock.advance(Duration::from_secs(2));
    }
    assert_eq!(ids.len(), 1, "one incident");
    let id = ids.into_iter().next().unwrap();
    tick(&app, Duration::ZERO).await;
    assert!(
        pages(&sink, &id).await.is_empty(),
        "collecting for the group window"
    );
    tick(&app, minutes(2)).await;
    let got: Vec<Value> = received(&sink)
        .await
        .into_iter()
        .filter(|b| b["incident"] == id.as_str())
        .collect();
    assert_eq!(got.len(), 1, "one page");
    assert_eq!(got[0]["count"], 30, "which says how many");
    // The incident resolves when its last alarm does.
    for n in 0..29 {
        let body = serde_json::to_vec(&json!({ "kind": "storm", "summary": "ok", "dedup_key": format!("node-{n}"), "status": "resolved", "labels": { "region": "ap-southeast-1" } })).unwrap();
        app.post_events(&body).await;
    }
    assert_eq!(app.incident(&id).await["status"], "triggered");
    let body = serde_json::to_vec(&json!({ "kind": "storm", "summary": "ok", "dedup_key": "node-29", "status": "resolved", "labels": { "region": "ap-southeast-1" } })).unwrap();
    let (_, answer) = app.post_events(&body).await;
    assert_eq!(answer["results"][0]["outcome"], "resolved");
    // Another region is its own group.
    let other = open(
        &app,
        "storm",
        "node-x",
        json!({ "region": "ap-southeast-2" }),
    )
    .await;
    assert_ne!(other, id);
}

#[tokio::test]
async fn an_alarm_inhibited_by_its_region_going_down_pages_no_one() {
    let (sink, app) = setup().await;
    let down = open(
        &app,
        "region_down",
        "apse1-down",
        json!({ "region": "ap-southeast-1" }),
    )
    .await;
    tick(&app, Duration::ZERO).await;
    assert_eq!(pages(&sink, &down).await.len(), 1);
    let eks = open(
        &app,
        "eks_alarm",
        "eks-apse1",
        json!({ "region": "ap-southeast-1" }),
    )
    .await;
    let elsewhere = open(
        &app,
        "eks_alarm",
        "eks-apse2",
        json!({ "region": "ap-southeast-2" }),
    )
    .await;
    tick(&app, Duration::ZERO).await;
    assert!(pages(&sink, &eks).await.is_empty(), "inhibited");
    let held = app.incident(&eks).await["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "held")
        .cloned()
        .unwrap();
    assert_eq!(held["by"], format!("incident {down}"));
    assert_eq!(
        pages(&sink, &elsewhere).await.len(),
        1,
        "another region is not inhibited"
    );
    tick(&app, minutes(30)).await;
    assert!(
        pages(&sink, &eks).await.is_empty(),
        "still inhibited while the region is down"
    );
    // The region comes back: the EKS alarm, still firing, pages at the next check.
    app.post_op(&format!("/v1/incidents/{down}/resolve"), json!({}))
        .await;
    tick(&app, minutes(1)).await;
    assert_eq!(pages(&sink, &eks).await.len(), 1);
}

#[tokio::test]
async fn a_flapping_alarm_reopens_its_incident_instead_of_paging_afresh() {
    let (sink, app) = setup().await;
    let firing = |key: &str| event("flappy", key, json!({}));
    let resolved = serde_json::to_vec(
        &json!({ "kind": "flappy", "summary": "ok", "dedup_key": "disk", "status": "resolved" }),
    )
    .unwrap();
    let id = open(&app, "flappy", "disk", json!({})).await;
    tick(&app, Duration::ZERO).await;
    app.post_events(&resolved).await;
    tick(&app, minutes(3)).await;
    let (_, body) = app.post_events(&firing("disk")).await;
    assert_eq!(body["results"][0]["outcome"], "reopened");
    assert_eq!(incident_of(&body), id, "the same incident");
    tick(&app, Duration::ZERO).await;
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "triggered");
    assert_eq!(inc["count"], 3, "firing, resolved, firing again");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "reopened")
    );
    assert_eq!(pages(&sink, &id).await.len(), 1, "no fresh page");
    // After the cool-down, a return is a new incident that pages.
    app.post_events(&resolved).await;
    tick(&app, minutes(11)).await;
    let (_, body) = app.post_events(&firing("disk")).await;
    assert_eq!(body["results"][0]["outcome"], "opened");
    let fresh = incident_of(&body);
    assert_ne!(fresh, id);
    tick(&app, Duration::ZERO).await;
    assert_eq!(pages(&sink, &fresh).await.len(), 1);
}

#[tokio::test]
async fn api_overrides_and_api_silences_change_who_is_paged() {
    let (sink, app) = setup().await;
    // cto covers the primary schedule for the next hour.
    let (status, body) = app
        .post_override(json!({ "schedule": "primary", "person": "cto", "end": "2026-11-20T03:15:45Z", "author": "ana" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = open(&app, "exchange_error", "covered", json!({})).await;
    tick(&app, Duration::ZERO).await;
    let page = received(&sink)
        .await
        .into_iter()
        .find(|b| b["incident"] == id.as_str())
        .unwrap();
    assert_eq!(
        page["people"][0]["id"], "cto",
        "the override, not the rotation"
    );
    // An API silence on this kind: the next incident opens and pages no one.
    let (status, body) = app
        .post_silence(json!({ "matchers": ["kind=\"exchange_error\""], "end": "2026-11-20T02:45:45Z", "comment": "exchange maintenance" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let quiet = open(&app, "exchange_error", "during-maintenance", json!({})).await;
    tick(&app, Duration::ZERO).await;
    assert!(pages(&sink, &quiet).await.is_empty(), "silenced");
    tick(&app, minutes(30)).await; // the silence ends at +30m
    assert_eq!(
        pages(&sink, &quiet).await.len(),
        1,
        "paged when the silence ends"
    );
}

//! The real channels end to end through HTTP fakes that behave like PagerDuty and Slack: an
//! alarm pages PagerDuty and posts a Slack message with buttons; a signed Slack click
//! acknowledges (PagerDuty hears of it, the Slack message is edited, nothing more escalates); a
//! PagerDuty webhook ack stops vigil and is not echoed back; forged or stale signatures change
//! nothing; a critical page PagerDuty refuses fails over to direct paging.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil::clock::Clock;
use vigil::notify::SecretSource;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const SLACK_SECRET: &str = "8f2b6c1e9d4a7f3b0e5c2d8a6b1f4e9c";
const PD_WEBHOOK_SECRET: &str = "pdwhsec-shared-T2h9wX4kQ7vN1bR6yF3mC8zL5pJ0aG4sE7dU2iO9";
const PD_ROUTING_KEY: &str = "R0UT1NGKEY-secret-0123456789abcdef";
const SLACK_TOKEN: &str = "xoxb-test-token-do-not-leak";

/// The test policy. Each test posts to its own Slack channel: Slack pacing (one message a second
/// per channel) is process-wide, and tests run in parallel.
fn policy(slack_channel: String, phone: String) -> impl FnOnce(&Path) {
    move |dir: &Path| write_policy(dir, &slack_channel, &phone)
}

pub(crate) fn write_policy(dir: &Path, slack_channel: &str, phone: &str) {
    std::fs::write(
        dir.join("policy.yaml"),
        r#"
timezone: Asia/Singapore
sources:
  sns:
    allowed_topics: ["arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts"]
severities:
  critical: { respond_within: 5m, policy: critical }
  high: { respond_within: 15m, policy: critical }
  medium: { respond_within: 1h, policy: critical }
  low: { respond_within: 4h, policy: critical }
people:
  mei: { name: Mei Tan, phone: "MEI_PHONE", email: mei@example.com, slack: U07QK3M2ZLP }
  cto: { name: Chen Tao, phone: "+6591110002", email: cto@example.com }
schedules:
  primary:
    rotation: { members: [mei], every: 1w, start: "2026-11-02T09:00:00" }
channels:
  pagerduty: { type: pagerduty, routing_key_env: PD_KEY }
  slack: { type: slack, channel: "SLACK_CHANNEL", token_env: SLACK_TOKEN }
  sms: { type: sms }
  email: { type: email }
policies:
  critical:
    steps:
      - { after: 0m, targets: [{ schedule: primary }], via: [pagerduty, slack, sms] }
      - { after: 5m, targets: [{ person: cto }], via: [pagerduty, sms] }
rules:
  - name: everything
    matchers: []
    severity: critical
"#
        .replace("SLACK_CHANNEL", slack_channel)
        .replace("MEI_PHONE", phone),
    )
    .unwrap();
}

struct Fakes {
    pd: MockServer,
    slack: MockServer,
    /// Mei's number, unique per test so each finds its own SMS in the shared moto.
    phone: vigil::domain::PhoneNumber,
}

async fn fakes(pd_status: u16) -> Fakes {
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(
            ResponseTemplate::new(pd_status)
                .set_body_json(json!({ "status": "success", "message": "Event processed" })),
        )
        .mount(&pd)
        .await;
    let slack = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat.postMessage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "ok": true, "channel": "C07ALERTS01", "ts": "1763604942.114259" }),
        ))
        .mount(&slack)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat.update"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "ok": true, "channel": "C07ALERTS01", "ts": "1763604942.114259" }),
        ))
        .mount(&slack)
        .await;
    Fakes {
        pd,
        slack,
        phone: crate::channels::unique_phone(),
    }
}

async fn app_with(f: &Fakes) -> TestApp {
    let mut secrets = HashMap::new();
    secrets.insert("PD_KEY".to_string(), PD_ROUTING_KEY.to_string());
    secrets.insert("SLACK_TOKEN".to_string(), SLACK_TOKEN.to_string());
    let mut channels = crate::channels::aws_settings().await;
    let endpoints = [
        ("sms", crate::channels::emulator("VIGIL_TEST_MOTO_URL")),
        ("pagerduty", f.pd.uri()),
        ("slack", f.slack.uri()),
    ];
    channels.endpoints = endpoints.map(|(k, v)| (k.to_string(), v)).into();
    channels.secrets = SecretSource::from_map(secrets);
    spawn_app_with(Options {
        policy: Some(Box::new(policy(
            format!("#alerts-{}", ulid::Ulid::new().to_string().to_lowercase()),
            f.phone.as_ref().to_string(),
        ))),
        channels: Some(channels),
        slack_signing_secret: Some(SLACK_SECRET.into()),
        pagerduty_webhook_secret: Some(PD_WEBHOOK_SECRET.into()),
        ack_secret: Some("two-way-ack-secret".into()),
        ..Default::default()
    })
    .await
}

fn hmac_hex(secret: &str, data: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A Slack click on `action_id` for incident `id`, form-encoded and signed at `ts`.
fn slack_click(id: &str, action_id: &str, ts: i64, secret: &str) -> (Vec<u8>, String, String) {
    let mut payload = fixture_json("slack-block-actions-ack.json");
    payload["actions"][0]["value"] = json!(id);
    payload["actions"][0]["action_id"] = json!(action_id);
    payload["response_url"] = json!("http://127.0.0.1:9/unused");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish()
        .into_bytes();
    let base = format!("v0:{ts}:{}", String::from_utf8_lossy(&body));
    (
        body,
        ts.to_string(),
        format!("v0={}", hmac_hex(secret, base.as_bytes())),
    )
}

async fn post_slack(app: &TestApp, click: (Vec<u8>, String, String)) -> StatusCode {
    post_slack_answer(app, click).await.0
}

/// The status and the raw body of vigil's answer to a Slack interaction.
async fn post_slack_answer(
    app: &TestApp,
    click: (Vec<u8>, String, String),
) -> (StatusCode, String) {
    let r = app
        .http
        .post(app.url("/v1/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", click.1)
        .header("x-slack-signature", click.2)
        .body(click.0)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn post_pd(app: &TestApp, body: &[u8], signature: String) -> (StatusCode, Value) {
    let r = app
        .http
        .post(app.url("/v1/pagerduty/webhook"))
        .header("content-type", "application/json")
        .header("x-pagerduty-signature", signature)
        .header("x-webhook-id", "2b1f8a4e-0c55-4d6e-9f3b-7a1c2d3e4f50")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    answer(r).await
}

fn events(pd: &[Value]) -> Vec<String> {
    pd.iter()
        .map(|b| b["event_action"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn alarm_pages_pagerduty_and_slack_and_a_slack_ack_stops_everything() {
    let f = fakes(202).await;
    let app = app_with(&f).await;
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = incident_of(&body);
    app.handle.run_deliveries().await;

    let pd = crate::helpers::received_at(&f.pd, "/v2/enqueue").await;
    assert_eq!(events(&pd), ["trigger"]);
    assert_eq!(pd[0]["dedup_key"], id.as_str());
    assert_eq!(pd[0]["routing_key"], PD_ROUTING_KEY);
    assert_eq!(pd[0]["payload"]["severity"], "critical");
    let posted = crate::helpers::received_at(&f.slack, "/chat.postMessage").await;
    assert_eq!(posted.len(), 1);
    let buttons: Vec<(String, String)> = posted[0]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| {
            (
                e["action_id"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        buttons.contains(&("ack".into(), id.clone()))
            && buttons.contains(&("resolve".into(), id.clone())),
        "{buttons:?}"
    );

    // A button vigil does not act on (a link button) is answered with the empty 200 Slack
    // expects, and changes nothing.
    let now = app.clock.now().timestamp();
    assert_eq!(
        post_slack_answer(&app, slack_click(&id, "open_runbook", now, SLACK_SECRET)).await,
        (StatusCode::OK, String::new())
    );
    assert_eq!(app.incident(&id).await["status"], "triggered");

    // Mei clicks Acknowledge in Slack: an empty 200 too (the message is updated by the
    // acknowledged delivery).
    assert_eq!(
        post_slack_answer(&app, slack_click(&id, "ack", now, SLACK_SECRET)).await,
        (StatusCode::OK, String::new())
    );
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(
        inc["acknowledged"][0]["who"], "Mei Tan",
        "the Slack user maps to the person in routing/"
    );
    assert_eq!(inc["acknowledged"][0]["origin"], "slack");
    app.handle.run_deliveries().await;
    assert_eq!(
        events(&crate::helpers::received_at(&f.pd, "/v2/enqueue").await),
        ["trigger", "acknowledge"]
    );
    let updates = crate::helpers::received_at(&f.slack, "/chat.update").await;
    assert_eq!(
        updates.len(),
        1,
        "the original message is edited, not a new one posted"
    );
    assert_eq!(
        (updates[0]["channel"].as_str(), updates[0]["ts"].as_str()),
        (Some("C07ALERTS01"), Some("1763604942.114259"))
    );
    assert!(updates[0].to_string().contains("Mei Tan"));

    // Nothing escalates any more.
    app.advance(Duration::from_secs(10 * 60)).await;
    assert_eq!(
        events(&crate::helpers::received_at(&f.pd, "/v2/enqueue").await),
        ["trigger", "acknowledge"]
    );

    // The OK resolves everywhere.
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-ok-sns-notification.json"))
        .await;
    assert_eq!(
        (status, body["results"][0]["outcome"].clone()),
        (StatusCode::OK, json!("resolved"))
    );
    app.handle.run_deliveries().await;
    assert_eq!(
        events(&crate::helpers::received_at(&f.pd, "/v2/enqueue").await),
        ["trigger", "acknowledge", "resolve"]
    );
    assert_eq!(
        crate::helpers::received_at(&f.slack, "/chat.update")
            .await
            .len(),
        2
    );
    let timeline = app.incident(&id).await["timeline"]
        .as_array()
        .unwrap()
        .clone();
    assert!(timeline.iter().any(|e| e["type"] == "delivery"
        && e["channel"] == "slack"
        && e["reference"] == "C07ALERTS01:1763604942.114259"));
    assert!(timeline.iter().any(|e| e["type"] == "delivery"
        && e["channel"] == "pagerduty"
        && e["reference"] == id.as_str()));
    // No secret in the timeline or logs surfaced through the API.
    let text = serde_json::to_string(&timeline).unwrap();
    assert!(!text.contains(PD_ROUTING_KEY) && !text.contains(SLACK_TOKEN));
}

#[tokio::test]
async fn a_pagerduty_webhook_ack_stops_the_timers_and_is_not_echoed_back() {
    let f = fakes(202).await;
    let app = app_with(&f).await;
    let (_, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    let id = incident_of(&body);
    app.handle.run_deliveries().await;
    // The fixture, for this incident, re-signed.
    let text = String::from_utf8(fixture("pagerduty-webhook-incident-acknowledged.json"))
        .unwrap()
        .replace("01JD4Z8X3K7M2Q9R5T6V8W0Y1A", &id);
    let sig = format!(
        "v1=deadbeef, v1={}",
        hmac_hex(PD_WEBHOOK_SECRET, text.as_bytes())
    );
    let (status, body) = post_pd(&app, text.as_bytes(), sig).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "acknowledged");
    assert_eq!(inc["acknowledged"][0]["origin"], "pagerduty");
    assert_eq!(inc["acknowledged"][0]["who"], "Mei Tan");
    app.handle.run_deliveries().await;
    app.advance(Duration::from_secs(10 * 60)).await;
    assert_eq!(
        events(&crate::helpers::received_at(&f.pd, "/v2/enqueue").await),
        ["trigger"],
        "no acknowledge echoed, no escalation"
    );
    assert_eq!(
        crate::helpers::received_at(&f.slack, "/chat.update")
            .await
            .len(),
        1,
        "Slack still hears of the ack"
    );
    let timeline = inc["timeline"].as_array().unwrap().clone();
    assert!(
        timeline
            .iter()
            .any(|e| e["type"] == "acknowledged" && e["origin"] == "pagerduty")
    );
    // Unknown event types are answered 200 and ignored.
    let other = text.replace("incident.acknowledged", "incident.annotated");
    let sig = format!("v1={}", hmac_hex(PD_WEBHOOK_SECRET, other.as_bytes()));
    let (status, body) = post_pd(&app, other.as_bytes(), sig).await;
    assert_eq!(
        (status, body["ignored"].clone()),
        (StatusCode::OK, json!(true))
    );
}

#[tokio::test]
async fn forged_or_stale_signatures_get_401_and_change_nothing() {
    let f = fakes(202).await;
    let app = app_with(&f).await;
    let (_, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    let id = incident_of(&body);
    let now = app.clock.now().timestamp();
    assert_eq!(
        post_slack(&app, slack_click(&id, "ack", now, "not-the-secret")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_slack(&app, slack_click(&id, "ack", now - 301, SLACK_SECRET)).await,
        StatusCode::UNAUTHORIZED,
        "stale"
    );
    let mut tampered = slack_click(&id, "ack", now, SLACK_SECRET);
    tampered.0.extend_from_slice(b"&x=1");
    assert_eq!(post_slack(&app, tampered).await, StatusCode::UNAUTHORIZED);
    let text = String::from_utf8(fixture("pagerduty-webhook-incident-acknowledged.json"))
        .unwrap()
        .replace("01JD4Z8X3K7M2Q9R5T6V8W0Y1A", &id);
    let (status, _) = post_pd(
        &app,
        text.as_bytes(),
        format!("v1={}", hmac_hex("wrong", text.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_pd(&app, text.as_bytes(), String::new()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.incident(&id).await["status"], "triggered");
    // The untouched fixture with the README's signature verifies (and names an unknown incident).
    let (status, body) = post_pd(
        &app,
        &fixture("pagerduty-webhook-incident-acknowledged.json"),
        "v1=bd81a8ed674d239c94f1039fad0fb56d0aac61a8d59a82a9040c05e102aba99b".into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ignored"], true);
}

#[tokio::test]
async fn a_critical_page_pagerduty_refuses_fails_over_to_direct_paging() {
    let f = fakes(400).await;
    let app = app_with(&f).await;
    let (_, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    let id = incident_of(&body);
    app.handle.run_deliveries().await;
    app.handle.run_deliveries().await;
    let timeline = app.incident(&id).await["timeline"]
        .as_array()
        .unwrap()
        .clone();
    let failover: Vec<&Value> = timeline
        .iter()
        .filter(|e| e["type"] == "failover")
        .collect();
    assert_eq!(failover.len(), 1, "{timeline:#?}");
    assert_eq!(failover[0]["from"], "pagerduty");
    assert_eq!(failover[0]["to"], json!(["sms", "email"]));
    assert_eq!(failover[0]["people"], json!(["mei"]));
    let direct: Vec<&Value> = timeline
        .iter()
        .filter(|e| e["type"] == "delivery" && e["target"] == "mei")
        .collect();
    assert!(
        direct.iter().any(|e| e["channel"] == "email"),
        "the failover deliveries were attempted: {direct:#?}"
    );
    let pd_failed = timeline
        .iter()
        .find(|e| e["type"] == "delivery" && e["channel"] == "pagerduty")
        .unwrap();
    assert_eq!(pd_failed["outcome"], "failed");
    assert!(
        !pd_failed["detail"]
            .as_str()
            .unwrap()
            .contains(PD_ROUTING_KEY)
    );
}

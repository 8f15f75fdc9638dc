//! SNS deliveries that must not page: certificates and confirmations behind redirects, and
//! replays of old notifications (issue 10, item 9). Envelopes are signed with the fixtures' test
//! key; time moves only by the test app's `ManualClock`.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn body(env: &Value) -> Vec<u8> {
    serde_json::to_vec(env).unwrap()
}

#[tokio::test]
async fn a_trusted_cert_url_that_redirects_elsewhere_does_not_verify() {
    let server = MockServer::start().await;
    // The trusted URL answers 302 to a certificate outside the trusted prefix, one that would
    // verify the message.
    Mock::given(method("GET"))
        .and(path("/trusted/cert.pem"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/elsewhere/cert.pem", server.uri())),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/elsewhere/cert.pem"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(fixture("test-signing-cert.pem")))
        .expect(0)
        .mount(&server)
        .await;
    let app = spawn_app_with(Options {
        extra_trusted_prefixes: vec![format!("{}/trusted/", server.uri())],
        http_cert_fetcher: true,
        ..Default::default()
    })
    .await;
    // SigningCertURL is not signed: the fixture's signature still holds.
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    env["SigningCertURL"] = json!(format!("{}/trusted/cert.pem", server.uri()));
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("HTTP 302"),
        "{answer}"
    );
    assert!(app.incidents().await.is_empty());
    // The redirect target was never fetched (`expect(0)`, checked when the server drops).
}

#[tokio::test]
async fn a_subscribe_url_that_redirects_is_not_followed() {
    let sns = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .and(query_param("Action", "ConfirmSubscription"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", format!("{}/else", sns.uri())),
        )
        .expect(1)
        .mount(&sns)
        .await;
    Mock::given(method("GET"))
        .and(path("/else"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&sns)
        .await;
    let app = spawn_app_with(Options {
        extra_trusted_prefixes: vec![format!("{}/", sns.uri())],
        ..Default::default()
    })
    .await;
    let mut env = fixture_json("sns-subscription-confirmation.json");
    env["SubscribeURL"] = json!(format!(
        "{}/?Action=ConfirmSubscription&TopicArn={}&Token=t",
        sns.uri(),
        env["TopicArn"].as_str().unwrap()
    ));
    sign_sns(&mut env);
    let (status, answer) = app.post_sns(&body(&env)).await;
    // Not confirmed: SNS retries later.
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("HTTP 302"),
        "{answer}"
    );
}

/// The alarm fixture (signed 2026-11-20T02:15:41Z, four seconds before `t0`), with another
/// `MessageId` and `Timestamp`, signed again.
fn alarm_sent_at(timestamp: &str, message_id: &str) -> Value {
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    env["Timestamp"] = json!(timestamp);
    env["MessageId"] = json!(message_id);
    sign_sns(&mut env);
    env
}

fn replays_counted(metrics: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("vigil_alerts_total")
            && l.contains("outcome=\"replay\"")
            && l.contains("source=\"sns\"")
            && l.ends_with(" 1")
    })
}

#[tokio::test]
async fn a_notification_older_than_max_age_is_recorded_and_pages_nobody() {
    replay_is_recorded_and_pages_nobody(false).await;
}

#[tokio::test]
async fn a_notification_older_than_max_age_is_recorded_and_pages_nobody_on_redis() {
    replay_is_recorded_and_pages_nobody(true).await;
}

async fn replay_is_recorded_and_pages_nobody(redis: bool) {
    let app = spawn_app_with(Options {
        redis,
        ..Default::default()
    })
    .await;
    // Signed two hours before now: SNS stopped retrying it long ago, so this is a replay.
    let old = alarm_sent_at(
        "2026-11-20T00:15:41.452Z",
        "aaaaaaaa-0000-4000-8000-000000000001",
    );
    let (status, answer) = app.post_sns(&body(&old)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "replay");
    assert_eq!(answer["results"][0]["incidents"], json!([]));
    assert!(app.incidents().await.is_empty(), "no incident opened");
    app.handle.run_deliveries().await;
    assert!(replays_counted(&app.metrics().await));
    // Its MessageId is recorded: the same delivery again is a duplicate.
    let (_, answer) = app.post_sns(&body(&old)).await;
    assert_eq!(answer["results"][0]["outcome"], "duplicate");

    // One hour is still within SNS's retries: it pages.
    let fresh = alarm_sent_at(
        "2026-11-20T01:15:46.000Z",
        "aaaaaaaa-0000-4000-8000-000000000002",
    );
    let (_, answer) = app.post_sns(&body(&fresh)).await;
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    let id = incident_of(&answer);

    // A replayed OK for the open incident resolves nothing: a timeline entry on it, no more.
    let mut ok = fixture_json("cloudwatch-ok-sns-notification.json");
    ok["Timestamp"] = json!("2026-11-19T23:00:00.000Z");
    ok["MessageId"] = json!("aaaaaaaa-0000-4000-8000-000000000003");
    sign_sns(&mut ok);
    let (status, answer) = app.post_sns(&body(&ok)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "replay");
    assert_eq!(answer["results"][0]["incidents"], json!([id.clone()]));
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "triggered");
    let replayed: Vec<&Value> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "replayed_alert")
        .collect();
    assert_eq!(replayed.len(), 1, "{inc}");
    assert_eq!(replayed[0]["status"], "resolved");
    assert_eq!(replayed[0]["sent_at"], "2026-11-19T23:00:00Z");

    // The real OK still resolves it.
    let (_, answer) = app
        .post_sns(&fixture("cloudwatch-ok-sns-notification.json"))
        .await;
    assert_eq!(answer["results"][0]["outcome"], "resolved", "{answer}");
}

#[tokio::test]
async fn max_age_is_set_in_routing() {
    let app = spawn_app_with(Options {
        policy: Some(Box::new(|dir: &Path| {
            copy_routing(dir);
            let sources = std::fs::read_to_string(dir.join("sources.yaml")).unwrap();
            let sources = sources.replace("    # max_age: 1h", "    max_age: 3h");
            assert!(sources.contains("max_age: 3h"));
            std::fs::write(dir.join("sources.yaml"), sources).unwrap();
        })),
        ..Default::default()
    })
    .await;
    let two_hours_old = alarm_sent_at(
        "2026-11-20T00:15:41.452Z",
        "aaaaaaaa-0000-4000-8000-000000000004",
    );
    let (_, answer) = app.post_sns(&body(&two_hours_old)).await;
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    app.clock.advance(Duration::from_secs(2 * 3600));
    let five_hours_old = alarm_sent_at(
        "2026-11-19T23:15:41.452Z",
        "aaaaaaaa-0000-4000-8000-000000000005",
    );
    let (_, answer) = app.post_sns(&body(&five_hours_old)).await;
    assert_eq!(answer["results"][0]["outcome"], "replay", "{answer}");
}

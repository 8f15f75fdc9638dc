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

// ---------------------------------------------------------------------------------------------
// Issue 11, item 3: every signed Notification from an allowed topic is taken, alarm or not.

const TOPIC: &str = "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts";

/// A Notification on `topic` carrying `message` (and `subject`, if any), signed with the
/// fixtures' key. Its signed Timestamp is the alarm fixture's, four seconds before `t0`.
fn notification(topic: &str, subject: Option<&str>, message: &str, message_id: &str) -> Value {
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    let region = topic.split(':').nth(3).unwrap();
    env["TopicArn"] = json!(topic);
    env["Message"] = json!(message);
    env["MessageId"] = json!(message_id);
    env["SigningCertURL"] = json!(format!(
        "https://sns.{region}.amazonaws.com/SimpleNotificationService-7e2f0c9a4b1d4e8f9a3c6b5d2e1f0a97.pem"
    ));
    match subject {
        Some(s) => env["Subject"] = json!(s),
        None => {
            env.as_object_mut().unwrap().remove("Subject");
        }
    }
    sign_sns(&mut env);
    env
}

#[tokio::test]
async fn a_signed_plain_text_notification_from_an_allowed_topic_opens_an_incident() {
    let app = spawn_app().await;
    // What `aws sns publish --topic-arn ... --message ...` sends: no Subject.
    let text = "\n  Failover of trading-db started by ops  \nsecond line with details";
    let env = notification(TOPIC, None, text, "bbbbbbbb-0000-4000-8000-000000000001");
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    let id = incident_of(&answer);
    let inc = app.incident(&id).await;
    assert_eq!(inc["source"], "sns");
    assert_eq!(inc["labels"]["source"], "sns");
    assert_eq!(inc["labels"]["kind"], "sns_notification");
    assert_eq!(inc["labels"]["topic"], TOPIC);
    assert_eq!(inc["labels"]["topic_name"], "oncall-alerts");
    assert_eq!(inc["labels"]["region"], "ap-southeast-1");
    assert_eq!(inc["labels"]["account"], "123456789012");
    assert_eq!(inc["summary"], "Failover of trading-db started by ops");
    assert_eq!(inc["description"], text.trim());
    assert_eq!(inc["details"]["message"], text);
    assert_eq!(inc["alert_status"], "firing");
    assert_eq!(inc["rule"], "sns-notification");
    assert_eq!(inc["severity"], "high");
    assert!(
        inc["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with(&format!("sns/{TOPIC}/")),
        "{inc}"
    );

    // SNS redelivers it (the same MessageId): a duplicate, nothing new.
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "duplicate", "{answer}");

    // The same text published again (a new MessageId) folds into the open incident.
    let mut again = notification(TOPIC, None, text, "bbbbbbbb-0000-4000-8000-000000000002");
    again["Timestamp"] = json!("2026-11-20T02:15:44.000Z");
    sign_sns(&mut again);
    let (_, answer) = app.post_sns(&body(&again)).await;
    assert_eq!(answer["results"][0]["outcome"], "updated", "{answer}");
    assert_eq!(incident_of(&answer), id);

    // With a Subject, the Subject is the summary; another message is another incident.
    let env = notification(
        TOPIC,
        Some("RDS Notification Message"),
        "Multi-AZ instance failover completed.",
        "bbbbbbbb-0000-4000-8000-000000000003",
    );
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    let other = incident_of(&answer);
    assert_ne!(other, id);
    let inc = app.incident(&other).await;
    assert_eq!(inc["summary"], "RDS Notification Message");
    assert_eq!(inc["description"], "Multi-AZ instance failover completed.");
    assert_eq!(inc["labels"]["kind"], "sns_notification");
    assert_eq!(app.incidents().await.len(), 2);
}

#[tokio::test]
async fn a_signed_plain_text_notification_from_another_topic_is_forbidden() {
    let app = spawn_app().await;
    let env = notification(
        "arn:aws:sns:ap-southeast-1:123456789012:someone-elses-topic",
        None,
        "hello",
        "bbbbbbbb-0000-4000-8000-000000000010",
    );
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(app.incidents().await.is_empty());
}

#[tokio::test]
async fn a_json_notification_that_is_not_an_alarm_keeps_its_keys_in_details() {
    let app = spawn_app().await;
    let s3_event = json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "ap-southeast-1",
        "eventTime": "2026-11-20T02:15:40.000Z",
        "eventName": "ObjectRemoved:Delete",
        "s3": {"bucket": {"name": "trading-reports"}, "object": {"key": "2026/11/20/pnl.csv"}}
    }]})
    .to_string();
    let env = notification(
        TOPIC,
        Some("Amazon S3 Notification"),
        &s3_event,
        "bbbbbbbb-0000-4000-8000-000000000020",
    );
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    let inc = app.incident(&incident_of(&answer)).await;
    assert_eq!(inc["summary"], "Amazon S3 Notification");
    assert_eq!(inc["labels"]["kind"], "sns_notification");
    assert_eq!(
        inc["details"]["Records"][0]["eventName"],
        "ObjectRemoved:Delete"
    );
    assert_eq!(
        inc["details"]["Records"][0]["s3"]["bucket"]["name"],
        "trading-reports"
    );
}

#[tokio::test]
async fn an_alarm_that_fails_to_parse_is_taken_as_a_notification_with_the_error() {
    let app = spawn_app().await;
    let mut alarm: Value = serde_json::from_str(
        fixture_json("cloudwatch-alarm-sns-notification.json")["Message"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    alarm["NewStateValue"] = json!("FIRING");
    let env = notification(
        TOPIC,
        Some("ALARM: \"eks-prod-apse1-node-cpu-high\" in Asia Pacific (Singapore)"),
        &alarm.to_string(),
        "bbbbbbbb-0000-4000-8000-000000000030",
    );
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    let inc = app.incident(&incident_of(&answer)).await;
    assert_eq!(inc["labels"]["kind"], "sns_notification");
    assert_eq!(inc["details"]["AlarmName"], "eks-prod-apse1-node-cpu-high");
    assert!(
        inc["details"]["parse_error"]
            .as_str()
            .unwrap()
            .contains("NewStateValue"),
        "{inc}"
    );
}

#[tokio::test]
async fn a_2014_alarm_with_an_unknown_region_name_takes_the_region_of_its_topic() {
    const EU_TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:oncall-alerts-euw1";
    let app = spawn_app_with(Options {
        policy: Some(Box::new(|dir: &Path| {
            copy_routing(dir);
            let sources = std::fs::read_to_string(dir.join("sources.yaml")).unwrap();
            let sources = sources.replace(
                "    allowed_topics:\n",
                &format!("    allowed_topics:\n      - {EU_TOPIC}\n"),
            );
            assert!(sources.contains(EU_TOPIC));
            std::fs::write(dir.join("sources.yaml"), sources).unwrap();
        })),
        ..Default::default()
    })
    .await;
    // The 2014 shape: no AlarmArn, and a Region display name that is in no table.
    let alarm = json!({
        "AlarmName": "legacy-disk-full",
        "AlarmDescription": null,
        "AWSAccountId": "123456789012",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: 1 datapoint (97.0) was greater than the threshold (90.0).",
        "StateChangeTime": "2026-11-20T02:15:40.000+0000",
        "Region": "EU - Ireland",
        "OldStateValue": "OK",
        "Trigger": {"MetricName": "disk_used_percent", "Namespace": "CWAgent", "Statistic": "MAXIMUM",
                    "Dimensions": [{"name": "InstanceId", "value": "i-0123456789abcdef0"}],
                    "Period": 300, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
                    "Threshold": 90.0}
    })
    .to_string();
    let env = notification(
        EU_TOPIC,
        Some("ALARM: \"legacy-disk-full\" in EU - Ireland"),
        &alarm,
        "bbbbbbbb-0000-4000-8000-000000000040",
    );
    let (status, answer) = app.post_sns(&body(&env)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "opened", "{answer}");
    assert_eq!(
        answer["results"][0]["fingerprint"],
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:legacy-disk-full"
    );
    let inc = app.incident(&incident_of(&answer)).await;
    assert_eq!(inc["labels"]["source"], "cloudwatch");
    assert_eq!(inc["labels"]["kind"], "cloudwatch_alarm");
    assert_eq!(inc["labels"]["region"], "eu-west-1");
    assert_eq!(inc["labels"]["instance_id"], "i-0123456789abcdef0");
    assert_eq!(inc["rule"], "cloudwatch-alarm");
}

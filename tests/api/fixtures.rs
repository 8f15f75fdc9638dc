//! Every ingest fixture in `../shared/fixtures/` through the HTTP API, signatures verified against
//! the fixtures' test certificate; each test asserts the incident and its escalation plan.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn steps(inc: &Value) -> Vec<(String, Vec<String>)> {
    inc["escalation"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["after"].as_str().unwrap().to_string(),
                s["via"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn cloudwatch_alarm_opens_a_high_incident_and_ok_resolves_it() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "opened");
    let id = incident_of(&body);
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "triggered");
    assert_eq!(inc["severity"], "high");
    assert_eq!(
        inc["fingerprint"],
        "arn:aws:cloudwatch:ap-southeast-1:123456789012:alarm:eks-prod-apse1-node-cpu-high"
    );
    assert_eq!(inc["labels"]["region"], "ap-southeast-1");
    assert_eq!(inc["labels"]["alarm_name"], "eks-prod-apse1-node-cpu-high");
    // The plan: the desk's high row — Slack #trading-alerts and email at once, team lead at 15m.
    let plan = steps(&inc);
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert_eq!(plan[0].0, "0s");
    assert_eq!(plan[1].0, "15m");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "escalated")
    );

    // SNS retries reuse the MessageId: a no-op.
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["outcome"], "duplicate");
    assert_eq!(app.incident(&id).await["count"], 1);

    let (status, body) = app
        .post_sns(&fixture("cloudwatch-ok-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved");
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "resolved");
    assert_eq!(inc["resolved"][0]["origin"], "source");
}

#[tokio::test]
async fn route53_health_check_is_critical_with_the_three_step_plan() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_sns(&fixture("route53-healthcheck-alarm-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let inc = app.incident(&incident_of(&body)).await;
    assert_eq!(inc["severity"], "critical");
    assert_eq!(
        inc["labels"]["health_check_id"],
        "7c0d6a1e-92b4-4f3a-b8e5-1d2c3b4a5f60"
    );
    assert_eq!(inc["labels"]["kind"], "route53_health_check");
    assert_eq!(inc["labels"]["region"], "us-east-1");
    let plan = steps(&inc);
    let afters: Vec<&str> = plan.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(afters, ["0s", "5m", "10m"]);
    for (_, via) in &plan {
        assert!(
            via.iter().any(|v| v == "pagerduty") && via.iter().any(|v| v == "sms"),
            "{via:?}"
        );
    }
}

#[tokio::test]
async fn eventbridge_alarm_dedups_with_the_sns_alarm() {
    let app = spawn_app().await;
    let (_, sns) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    let (status, eb) = app
        .post_eventbridge(&fixture("eventbridge-cloudwatch-alarm-state-change.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{eb}");
    assert_eq!(eb["results"][0]["outcome"], "updated");
    assert_eq!(incident_of(&eb), incident_of(&sns));
    assert_eq!(app.incident(&incident_of(&sns)).await["count"], 2);
    // Another detail-type from the same source is acknowledged and ignored.
    let mut other = fixture_json("eventbridge-cloudwatch-alarm-state-change.json");
    other["detail-type"] = json!("CloudWatch Alarm Configuration Change");
    let (status, body) = app
        .post_eventbridge(&serde_json::to_vec(&other).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ignored"], true);
}

#[tokio::test]
async fn bot_events_classify_per_the_matrix_and_the_batch_resolves() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_events(&fixture("bot-exchange-error-timeout.json"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let timeout = incident_of(&body);
    let inc = app.incident(&timeout).await;
    assert_eq!(inc["severity"], "high");
    assert_eq!(inc["fingerprint"], "exchange-error/binance/timeout");

    let (_, body) = app
        .post_events(&fixture("bot-exchange-error-rate-limited.json"))
        .await;
    assert_eq!(
        app.incident(&incident_of(&body)).await["severity"],
        "medium"
    );

    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let halted = incident_of(&body);
    let inc = app.incident(&halted).await;
    assert_eq!(inc["severity"], "critical");
    assert_eq!(steps(&inc).len(), 3);

    let (status, body) = app.post_events(&fixture("bot-batch-mixed.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 3);
    let outcomes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["opened", "resolved", "resolved"]);
    assert_eq!(
        app.incident(&incident_of(&body)).await["severity"],
        "high",
        "a new 5xx error"
    );
    assert_eq!(app.incident(&timeout).await["status"], "resolved");
    let inc = app.incident(&halted).await;
    assert_eq!(
        inc["status"], "resolved",
        "trading_resumed resolves the halt"
    );
    assert!(
        inc["resolved"][0]["who"]
            .as_str()
            .unwrap()
            .contains("trading_resumed")
    );
}

#[tokio::test]
async fn subscription_confirmation_is_confirmed_only_for_allowed_topics() {
    let sns = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/"))
        .and(query_param("Action", "ConfirmSubscription"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<ConfirmSubscriptionResponse/>"))
        .expect(1)
        .mount(&sns)
        .await;
    let app = spawn_app_with(Options {
        extra_trusted_prefixes: vec![format!("{}/", sns.uri())],
        ..Default::default()
    })
    .await;
    let mut env = fixture_json("sns-subscription-confirmation.json");
    let token = env["Token"].as_str().unwrap().to_string();
    env["SubscribeURL"] = json!(format!(
        "{}/?Action=ConfirmSubscription&TopicArn={}&Token={token}",
        sns.uri(),
        env["TopicArn"].as_str().unwrap()
    ));
    sign_sns(&mut env);
    let (status, body) = app.post_sns(&serde_json::to_vec(&env).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["confirmed"], true);

    // The same, signed, for a topic nobody allowed: refused, SubscribeURL never fetched.
    let mut foreign = env.clone();
    foreign["TopicArn"] = json!("arn:aws:sns:ap-southeast-1:999999999999:someone-elses-topic");
    sign_sns(&mut foreign);
    let (status, body) = app.post_sns(&serde_json::to_vec(&foreign).unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // `expect(1)` on the mock checks that only the allowed one was fetched.
}

#[tokio::test]
async fn an_ok_older_than_the_alarm_does_not_resolve_it() {
    let app = spawn_app().await;
    let (_, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    let id = incident_of(&body);
    // An OK whose StateChangeTime is before the ALARM's, delivered late.
    let mut ok = fixture_json("cloudwatch-ok-sns-notification.json");
    let msg = ok["Message"].as_str().unwrap().replace(
        "2026-11-20T02:55:43.918+0000",
        "2026-11-20T02:10:00.000+0000",
    );
    ok["Message"] = json!(msg);
    ok["MessageId"] = json!("11111111-2222-3333-4444-555555555555");
    sign_sns(&mut ok);
    let (status, body) = app.post_sns(&serde_json::to_vec(&ok).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "stale");
    let inc = app.incident(&id).await;
    assert_eq!(inc["status"], "triggered");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "stale_alert")
    );
}

#[tokio::test]
async fn an_alarm_arriving_after_its_own_ok_opens_nothing() {
    let app = spawn_app().await;
    // OK first (newer), then the older ALARM.
    let (_, body) = app
        .post_sns(&fixture("cloudwatch-ok-sns-notification.json"))
        .await;
    assert_eq!(body["results"][0]["outcome"], "nothing_open");
    let (_, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(body["results"][0]["outcome"], "stale");
    assert!(app.incidents().await.is_empty());
}

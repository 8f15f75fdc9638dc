//! Escalation on the injected clock: steps fire on time, once; ack and resolve stop them; failed
//! deliveries are retried with backoff and recorded.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

async fn sink() -> MockServer {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    sink
}

/// The (kind, recipient-list) of each page the sink got, in order.
async fn pages(sink: &MockServer) -> Vec<(String, Vec<String>)> {
    received(sink)
        .await
        .iter()
        .map(|b| {
            let people = b["people"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| p["id"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            (b["kind"].as_str().unwrap_or("").to_string(), people)
        })
        .collect()
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[tokio::test]
async fn critical_alarm_escalates_on_time_and_an_ack_stops_it() {
    critical_alarm_escalates_and_an_ack_stops_it(false).await;
}

#[tokio::test]
async fn critical_alarm_escalates_on_time_and_an_ack_stops_it_on_redis() {
    critical_alarm_escalates_and_an_ack_stops_it(true).await;
}

async fn critical_alarm_escalates_and_an_ack_stops_it(redis: bool) {
    let sink = sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        redis,
        ..Default::default()
    })
    .await;
    let (status, body) = app
        .post_sns(&fixture("route53-healthcheck-alarm-sns-notification.json"))
        .await;
    // The route53 topic is not in this test policy's allow-list.
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = incident_of(&body);
    app.advance(Duration::ZERO).await;
    assert_eq!(
        pages(&sink).await,
        vec![("trigger".to_string(), vec!["ana".to_string()])],
        "step 1 at once"
    );

    app.advance(minutes(4)).await;
    assert_eq!(pages(&sink).await.len(), 1, "nothing more before +5 min");
    app.advance(minutes(1)).await;
    assert_eq!(
        pages(&sink).await[1],
        ("escalate".to_string(), vec!["cto".to_string()]),
        "step 2 at +5 min"
    );
    // Firing again at the same instant changes nothing: a step fires once.
    assert_eq!(app.handle.run_due_escalations().await, 0);
    app.handle.run_deliveries().await;
    assert_eq!(pages(&sink).await.len(), 2);

    app.advance(minutes(2)).await; // +7 min
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{id}/ack"), json!({ "by": "ana" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["incident"]["status"], "acknowledged");
    assert_eq!(body["changed"], true);
    // A repeated ack answers the same and changes nothing.
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{id}/ack"), json!({}))
        .await;
    assert_eq!(
        (status, body["changed"].clone()),
        (StatusCode::OK, json!(false))
    );

    app.advance(minutes(10)).await; // +17 min: step 3 (+10) would have fired
    let kinds: Vec<String> = pages(&sink).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        ["trigger", "escalate", "acknowledged"],
        "step 3 never fired; the channel heard about the ack"
    );
    let inc = app.incident(&id).await;
    assert_eq!(inc["next_due"], Value::Null);
    let timeline = inc["timeline"].as_array().unwrap();
    let escalated = timeline.iter().filter(|e| e["type"] == "escalated").count();
    assert_eq!(escalated, 2);
    assert!(
        timeline
            .iter()
            .any(|e| e["type"] == "acknowledged" && e["by"] == "ana")
    );
    // The test app loads no AWS configuration, so the sms channel is unavailable: its attempts
    // fail, visibly, on the timeline.
    assert!(
        timeline
            .iter()
            .any(|e| e["type"] == "delivery" && e["channel"] == "sms" && e["outcome"] == "failed")
    );
    assert!(
        timeline
            .iter()
            .any(|e| e["type"] == "delivery" && e["channel"] == "hook" && e["outcome"] == "sent")
    );
}

#[tokio::test]
async fn unacknowledged_critical_pages_all_three_steps_and_the_source_resolves_it() {
    let sink = sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        ..Default::default()
    })
    .await;
    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let id = incident_of(&body);
    app.advance(Duration::ZERO).await;
    app.advance(minutes(5)).await;
    app.advance(minutes(5)).await;
    let who: Vec<Vec<String>> = pages(&sink).await.into_iter().map(|(_, p)| p).collect();
    assert_eq!(who, [vec!["ana"], vec!["cto"], vec!["ceo"]]);
    let inc = app.incident(&id).await;
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "exhausted")
    );

    // The bot resolves: the halt is over.
    let mut resolved = fixture_json("bot-trading-halted.json");
    resolved["status"] = json!("resolved");
    resolved["occurred_at"] = json!("2026-11-25T10:00:00Z");
    let (status, body) = app
        .post_events(&serde_json::to_vec(&resolved).unwrap())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved");
    app.handle.run_deliveries().await;
    let kinds: Vec<String> = pages(&sink).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "resolved").count(),
        1,
        "the channel hears of the resolve once: {kinds:?}"
    );
    assert_eq!(app.incident(&id).await["status"], "resolved");
}

#[tokio::test]
async fn failing_webhook_is_retried_with_backoff_then_recorded_as_failed() {
    failing_webhook_is_retried_then_recorded_as_failed(false).await;
}

#[tokio::test]
async fn failing_webhook_is_retried_with_backoff_then_recorded_as_failed_on_redis() {
    failing_webhook_is_retried_then_recorded_as_failed(true).await;
}

async fn failing_webhook_is_retried_then_recorded_as_failed(redis: bool) {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "0"))
        .mount(&sink)
        .await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        redis,
        ..Default::default()
    })
    .await;
    let mut event = fixture_json("bot-exchange-error-timeout.json");
    event["kind"] = json!("exchange_error");
    let (_, body) = app.post_events(&serde_json::to_vec(&event).unwrap()).await;
    let id = incident_of(&body);
    // The test app allows 3 attempts, 10–50 ms apart.
    for _ in 0..3 {
        app.advance(Duration::from_secs(1)).await;
    }
    assert_eq!(received(&sink).await.len(), 3);
    let inc = app.incident(&id).await;
    let attempts: Vec<(u64, String)> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "delivery")
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (1, "retrying".into()),
            (2, "retrying".into()),
            (3, "failed".into())
        ]
    );
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready["outbox"], 0, "nothing left pending");
}

#[tokio::test]
async fn ingest_tokens_may_not_act_on_incidents() {
    let app = spawn_app().await;
    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let id = incident_of(&body);
    let resp = app
        .http
        .post(app.url(&format!("/v1/incidents/{id}/ack")))
        .bearer_auth(INGEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.incident(&id).await["status"], "triggered");
    let (status, _) = app
        .post_op(
            &format!("/v1/incidents/{id}/resolve"),
            json!({ "by": "ops" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{id}/ack"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, list) = app.get("/v1/incidents?status=resolved").await;
    assert_eq!(list["incidents"].as_array().unwrap().len(), 1);
}

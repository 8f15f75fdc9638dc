//! A critical incident that reached nobody is loud (issue 10, item 6): when every delivery of
//! a step fails for good, the incident is marked, `/readyz` fails naming it, a metric counts it
//! by severity, and the policy's `last_resort` channels are told — once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Options, fixture, incident_of, received, spawn_app_with, webhook_policy};

#[tokio::test]
async fn a_critical_step_that_reached_no_one_fails_readiness_and_tells_the_last_resort() {
    // The on-call's webhook is down; SMS and email have no provider settings in tests, so
    // every delivery of the step fails for good.
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&down)
        .await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/last-resort"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let base = webhook_policy(&down.uri());
    let other = elsewhere.uri();
    let app = spawn_app_with(Options {
        policy: Some(Box::new(move |dir: &std::path::Path| {
            base(dir);
            std::fs::write(
                dir.join("last_resort.yaml"),
                format!(
                    "channels:\n  elsewhere: {{ type: webhook, url: \"{other}/last-resort\" }}\n  \
                     trail: {{ type: log }}\nlast_resort: [trail, elsewhere]\n"
                ),
            )
            .unwrap();
        })),
        ..Default::default()
    })
    .await;
    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = incident_of(&body);
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "nothing has failed yet");
    let metrics = app.metrics().await;
    assert!(metrics.lines().any(|l| l == "vigil_ready 1"), "{metrics}");

    // Three attempts 10–50 ms apart (the tests' retry bounds), then failed for good.
    for _ in 0..6 {
        app.advance(Duration::from_secs(1)).await;
    }
    let inc = app.incident(&id).await;
    let timeline = inc["timeline"].as_array().unwrap();
    let unreached: Vec<_> = timeline
        .iter()
        .filter(|e| e["type"] == "unreached")
        .collect();
    assert_eq!(unreached.len(), 1, "{inc:#}");
    assert_eq!(unreached[0]["last_resort"], json!(["trail", "elsewhere"]));
    assert_eq!(
        received(&elsewhere).await.len(),
        1,
        "the last resort heard it once"
    );

    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["problems"].to_string().contains(&id),
        "readiness names the incident: {body}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"vigil_unreached_incidents{severity="critical"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "vigil_ready 0"),
        "a scrape says what /readyz says: {metrics}"
    );

    // The CTO's step (+5 min) is tried next; its failure is its own step, told once more.
    app.advance(Duration::from_secs(5 * 60)).await;
    for _ in 0..6 {
        app.advance(Duration::from_secs(1)).await;
    }
    assert_eq!(
        received(&elsewhere).await.len(),
        2,
        "step 2 reached no one either"
    );

    // Someone takes it: readiness is green again and the count drops.
    let (status, _) = app
        .post_op(&format!("/v1/incidents/{id}/ack"), json!({ "by": "ana" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        app.metrics()
            .await
            .contains(r#"vigil_unreached_incidents{severity="critical"} 0"#)
    );
}

#[tokio::test]
async fn a_step_with_one_delivery_sent_is_not_unreached() {
    let sink = crate::helpers::ok_sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        ..Default::default()
    })
    .await;
    // SMS and email fail for good, the webhook reaches the on-call: reached.
    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let id = incident_of(&body);
    for _ in 0..6 {
        app.advance(Duration::from_secs(1)).await;
    }
    let inc = app.incident(&id).await;
    assert!(
        !inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "unreached"),
        "{inc:#}"
    );
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

//! What `/metrics` says, scraped the way Prometheus does (nothing else called first): the open
//! incidents now, every escalation step counted (the first one too), latencies as histograms.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use vigil::clock::Clock;
use wiremock::MockServer;

use crate::helpers::*;

/// The value of an unlabelled series in a Prometheus text exposition.
fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn app() -> (TestApp, MockServer) {
    let sink = crate::helpers::ok_sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        ..Default::default()
    })
    .await;
    (app, sink)
}

/// A critical bot event (trading halted), dated now on the app's clock.
async fn halt(app: &TestApp) -> String {
    let mut event = fixture_json("bot-trading-halted.json");
    event["occurred_at"] = json!(app.clock.now().to_rfc3339());
    let (status, body) = app.post_events(event.to_string().as_bytes()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    incident_of(&body)
}

#[tokio::test]
async fn open_incidents_are_current_in_a_scrape_without_readyz() {
    let (app, _sink) = app().await;
    assert_eq!(
        value(&app.metrics().await, "vigil_open_incidents"),
        Some(0.0)
    );
    let id = halt(&app).await;
    assert_eq!(
        value(&app.metrics().await, "vigil_open_incidents"),
        Some(1.0)
    );
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{id}/resolve"), json!({"by": "ana"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        value(&app.metrics().await, "vigil_open_incidents"),
        Some(0.0)
    );
}

#[tokio::test]
async fn every_escalation_step_is_counted_the_first_one_too() {
    let (app, _sink) = app().await;
    halt(&app).await;
    app.handle.run_deliveries().await;
    assert_eq!(
        value(&app.metrics().await, "vigil_escalation_steps_total"),
        Some(1.0),
        "the step that fired when the incident opened"
    );
    app.advance(Duration::from_secs(5 * 60)).await;
    assert_eq!(
        value(&app.metrics().await, "vigil_escalation_steps_total"),
        Some(2.0)
    );
}

#[tokio::test]
async fn latencies_are_histograms_that_aggregate_across_replicas() {
    let (app, _sink) = app().await;
    halt(&app).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("# TYPE vigil_ingest_seconds histogram"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vigil_ingest_seconds_bucket{le="+Inf"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(r#"vigil_ingest_seconds_bucket{le="0.005"}"#)),
        "{metrics}"
    );
    assert_eq!(value(&metrics, "vigil_ingest_seconds_count"), Some(1.0));
    assert!(
        value(&metrics, "vigil_ingest_seconds_sum").is_some(),
        "{metrics}"
    );
    assert!(
        !metrics.contains("quantile="),
        "no summaries left: {metrics}"
    );
}

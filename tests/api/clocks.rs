//! Senders' clocks are not trusted beyond a bound (issue 10, item 4): a timestamp more than
//! `MAX_CLOCK_AHEAD` (5 min) ahead of vigil's clock is replaced by the receive time and kept on
//! the timeline, so a future-dated event can never make real alarms "stale".

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{fixture, fixture_json, incident_of, sign_sns, spawn_app, t0};

fn bot(status: &str, occurred_at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "exchange_error",
        "summary": "Binance REST API timed out",
        "status": status,
        "dedup_key": "exchange-error/binance/timeout",
        "labels": { "exchange": "binance", "error": "timeout" },
        "occurred_at": occurred_at,
    }))
    .unwrap()
}

fn outcome(body: &Value) -> &str {
    body["results"][0]["outcome"].as_str().unwrap_or("")
}

fn future_claims(inc: &Value) -> Vec<Value> {
    inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "future_timestamp")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_resolve_dated_in_the_year_9999_does_not_make_real_firings_stale() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_events(&bot("resolved", "9999-12-31T23:59:59Z"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(outcome(&body), "nothing_open");

    let now = t0().to_rfc3339();
    let (status, body) = app.post_events(&bot("firing", &now)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        outcome(&body),
        "opened",
        "a real firing after a future-dated resolve must page: {body}"
    );
}

#[tokio::test]
async fn a_firing_dated_an_hour_ahead_can_still_be_resolved_and_its_claim_is_kept() {
    let app = spawn_app().await;
    let ahead = (t0() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app.post_events(&bot("firing", &ahead)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(outcome(&body), "opened");
    let id = incident_of(&body);
    let inc = app.incident(&id).await;
    let claims = future_claims(&inc);
    assert_eq!(claims.len(), 1, "{inc:#}");
    assert_eq!(
        claims[0]["claimed"]
            .as_str()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.to_utc()),
        Some(t0() + chrono::Duration::hours(1)),
        "the original time is recorded"
    );

    app.clock.advance(std::time::Duration::from_secs(60));
    let now = (t0() + chrono::Duration::minutes(1)).to_rfc3339();
    let (status, body) = app.post_events(&bot("resolved", &now)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(outcome(&body), "resolved", "{body}");
    assert_eq!(app.incident(&id).await["status"], "resolved");
}

#[tokio::test]
async fn a_clock_a_minute_fast_is_still_believed() {
    let app = spawn_app().await;
    let ahead = (t0() + chrono::Duration::minutes(1)).to_rfc3339();
    let (_, body) = app.post_events(&bot("firing", &ahead)).await;
    let inc = app.incident(&incident_of(&body)).await;
    assert!(future_claims(&inc).is_empty(), "{inc:#}");
    // ... and so ordering still holds within the bound: an older resolve is stale.
    let (_, body) = app.post_events(&bot("resolved", &t0().to_rfc3339())).await;
    assert_eq!(outcome(&body), "stale", "{body}");
}

/// The same for SNS: an ALARM whose `StateChangeTime` is a year ahead is ordered by its receive
/// time, so the alarm's real OK resolves it.
#[tokio::test]
async fn an_sns_alarm_dated_a_year_ahead_is_resolved_by_its_real_ok() {
    let app = spawn_app().await;
    let mut env = fixture_json("cloudwatch-alarm-sns-notification.json");
    let mut msg: Value = serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
    msg["StateChangeTime"] = json!("2027-11-20T02:15:41.377+0000");
    env["Message"] = json!(msg.to_string());
    sign_sns(&mut env);
    let (status, body) = app.post_sns(&serde_json::to_vec(&env).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = incident_of(&body);
    assert_eq!(future_claims(&app.incident(&id).await).len(), 1);

    app.clock.advance(std::time::Duration::from_secs(30 * 60));
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-ok-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.incident(&id).await["status"], "resolved", "{body}");
}

/// And for EventBridge's `time` (and the state's own timestamp).
#[tokio::test]
async fn an_eventbridge_alarm_dated_a_year_ahead_is_resolved_by_its_real_ok() {
    let app = spawn_app().await;
    let mut ev = fixture_json("eventbridge-cloudwatch-alarm-state-change.json");
    ev["time"] = json!("2027-11-20T02:15:41Z");
    ev["detail"]["state"]["timestamp"] = json!("2027-11-20T02:15:41.377+0000");
    let (status, body) = app
        .post_eventbridge(&serde_json::to_vec(&ev).unwrap())
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let id = incident_of(&body);
    assert_eq!(future_claims(&app.incident(&id).await).len(), 1);

    app.clock.advance(std::time::Duration::from_secs(30 * 60));
    let mut ok = fixture_json("eventbridge-cloudwatch-alarm-state-change.json");
    ok["id"] = json!("0b6c5d2e-7f3a-4c1b-9e8d-2a1f0c9b8e7d");
    ok["time"] = json!("2026-11-20T02:45:41Z");
    ok["detail"]["previousState"] = ok["detail"]["state"].clone();
    ok["detail"]["state"]["value"] = json!("OK");
    ok["detail"]["state"]["timestamp"] = json!("2026-11-20T02:45:41.377+0000");
    let (status, body) = app
        .post_eventbridge(&serde_json::to_vec(&ok).unwrap())
        .await;
    assert!(status.is_success(), "{status}: {body}");
    assert_eq!(app.incident(&id).await["status"], "resolved", "{body}");
}

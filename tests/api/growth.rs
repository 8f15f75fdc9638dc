//! Growth with history and floods: the lookups on every alert read only open incidents, retention
//! prunes what has aged out, and a flood of new alerts from one source becomes one storm incident.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use vigil::classify::Classification;
use vigil::config::EscalationPolicy;
use vigil::domain::{Alert, AlertStatus, Fingerprint, Severity, Source};
use vigil::incident::{Actor, Incident, IncidentStatus, Origin};
use vigil::store::{CommitOutcome, Guard, Store, Transition};

use crate::helpers::*;

/// How many resolved incidents the history holds in the lookup test.
const HISTORY: usize = 20_000;

/// A `trading_halted` incident of `fp`, opened as vigil opens one and resolved, both at `at`.
fn resolved_halt(fp: Fingerprint, at: DateTime<Utc>) -> Incident {
    let alert = Alert {
        source: Source::Bot,
        fingerprint: fp.clone(),
        status: AlertStatus::Firing,
        summary: "Trading halted".into(),
        description: None,
        labels: BTreeMap::new(),
        details: Value::Null,
        occurred_at: at,
        delivery_id: None,
        severity_override: None,
    };
    let cls = Classification {
        rule: "history".into(),
        severity: Severity::High,
        policy: "history".into(),
        labels: BTreeMap::from([("kind".into(), "trading_halted".into())]),
        fingerprint: fp,
        severity_overridden: false,
        group_window: None,
    };
    let escalation = EscalationPolicy {
        steps: vec![],
        repeat: 0,
        repeat_delay: None,
        ack_timeout: None,
    };
    let (mut inc, _) = vigil::incident::transition::open(&alert, &cls, escalation, at, at);
    inc.status = IncidentStatus::Resolved;
    inc.next_due = None;
    inc.resolved = Some((
        Actor {
            who: "history".into(),
            origin: Origin::Api,
        },
        at,
    ));
    inc
}

/// Writes `HISTORY` resolved incidents straight into the store, many commits in flight at once
/// (the embedded store groups them into few durable commits).
async fn fill_history(store: &dyn Store) {
    let at = t0() - TimeDelta::days(1);
    let results: Vec<_> = futures::stream::iter(0..HISTORY)
        .map(|n| async move {
            let fp = Fingerprint::parse(format!("history/{n}")).unwrap();
            store
                .commit(Transition {
                    guard: Some(Guard::NoOpenIncident(fp.clone())),
                    incident: Some(resolved_halt(fp, at)),
                    ..Default::default()
                })
                .await
        })
        .buffer_unordered(256)
        .collect()
        .await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(CommitOutcome::Committed)))
    );
}

#[tokio::test]
async fn inhibition_and_trading_resumed_read_only_the_open_incidents_however_long_the_history() {
    let (app, store) = spawn_observed(Options::default()).await;
    fill_history(store.as_ref()).await;

    // One open halt; then a CloudWatch alarm, which the shipped inhibition rule checks against
    // the open incidents.
    let (status, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let halted = incident_of(&body);
    store.reset();
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["outcome"], "opened", "{body}");
    assert_eq!(
        store.listings.load(Ordering::SeqCst),
        0,
        "inhibition never lists the history"
    );
    assert!(
        store.open_read.load(Ordering::SeqCst) <= 2,
        "inhibition read {} incidents, with 2 open",
        store.open_read.load(Ordering::SeqCst)
    );

    // trading_resumed resolves the open halt, and only it, reading only what is open.
    store.reset();
    let resumed = json!({
        "kind": "trading_resumed", "summary": "Trading resumed", "status": "firing",
        "labels": { "service": "trading-bot" }, "occurred_at": "2026-11-25T09:58:30Z"
    });
    let (status, body) = app
        .post_events(&serde_json::to_vec(&resumed).unwrap())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["outcome"], "resolved", "{body}");
    assert_eq!(body["results"][0]["incidents"], json!([halted]));
    assert_eq!(
        store.listings.load(Ordering::SeqCst),
        0,
        "trading_resumed never lists the history"
    );
    assert_eq!(
        store.open_read.load(Ordering::SeqCst),
        2,
        "the halt and the alarm: the open incidents, none of the {HISTORY} resolved ones"
    );
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

#[tokio::test]
async fn the_prune_pass_deletes_aged_out_incidents_and_ended_api_silences_and_overrides() {
    prune_pass(false).await;
}

#[tokio::test]
async fn the_prune_pass_deletes_aged_out_incidents_and_ended_api_silences_and_overrides_on_redis() {
    prune_pass(true).await;
}

async fn prune_pass(redis: bool) {
    let app = spawn_app_with(Options {
        redis,
        ..Default::default()
    })
    .await;
    let end = t0() + TimeDelta::hours(1);
    let (status, body) = app
        .post_silence(json!({
            "matchers": ["region=\"ap-southeast-1\"", "alarm_name=~\"rds-.*\""],
            "end": rfc(end),
            "author": "mei",
            "comment": "RDS minor version upgrade, CHG-1234",
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post_override(json!({ "schedule": "primary", "person": "mei", "end": rfc(end) }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post_silence(json!({
            "matchers": ["region=\"ap-southeast-1\"", "alarm_name=~\"eks-.*\""],
            "end": rfc(t0() + TimeDelta::days(2)),
            "comment": "still running",
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = app.post_events(&fixture("bot-trading-halted.json")).await;
    let old = incident_of(&body);
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{old}/resolve"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Two hours on: the silence and the override have ended and are deleted; the rest stays.
    app.clock.advance(Duration::from_secs(2 * 3600));
    let report = app.handle.run_prune().await.unwrap();
    assert_eq!((report.records, report.incidents), (2, 0), "{report:?}");
    let store = &app.handle.store;
    assert!(store.records("override").await.unwrap().is_empty());
    let silences = store.records("silence").await.unwrap();
    assert_eq!(silences.len(), 1, "the running silence stays");

    // A new incident, left open; then past the 30-day retention of the resolved one.
    let (_, body) = app
        .post_events(&fixture("bot-exchange-error-timeout.json"))
        .await;
    let open = incident_of(&body);
    app.clock.advance(Duration::from_secs(31 * 24 * 3600));
    let report = app.handle.run_prune().await.unwrap();
    assert_eq!(report.incidents, 1, "{report:?}");
    // The stamps the standby's feed compares go a week after their change once their silence
    // or override is gone.
    let stamps = app.handle.store.records("stamp").await.unwrap();
    assert!(stamps.is_empty(), "{stamps:?}");
    let (status, _) = app.get(&format!("/v1/incidents/{old}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the resolved incident is gone"
    );
    assert_eq!(app.incident(&open).await["status"], "triggered");
    // (The shipped heartbeat may have opened its own incident meanwhile.)
    let ids: Vec<Value> = app
        .incidents()
        .await
        .iter()
        .filter(|i| !i["fingerprint"].as_str().unwrap().starts_with("heartbeat/"))
        .map(|i| i["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(open)]);
}

const STORM_BOUND: usize = 20;
const FLOOD: usize = 1000;

/// The webhook matrix with a storm bound of `STORM_BOUND` for the bot.
fn storm_policy(sink: &str) -> impl FnOnce(&Path) + 'static {
    let write = webhook_policy(sink);
    move |dir: &Path| {
        write(dir);
        std::fs::write(
            dir.join("storm.yaml"),
            format!("storm:\n  max_new_per_minute: 1000\n  sources: {{ bot: {STORM_BOUND} }}\n"),
        )
        .unwrap();
    }
}

fn distinct(n: usize) -> Value {
    json!({
        "kind": "exchange_error", "summary": format!("flood {n}"), "status": "firing",
        "dedup_key": format!("flood-{n}"),
        "labels": { "exchange": "binance", "error": "timeout" },
        "occurred_at": "2026-11-25T09:00:00Z",
    })
}

#[tokio::test]
async fn a_flood_of_new_alerts_from_one_source_opens_one_storm_incident_and_pages_once() {
    flood(false).await;
}

#[tokio::test]
async fn a_flood_of_new_alerts_from_one_source_opens_one_storm_incident_and_pages_once_on_redis() {
    flood(true).await;
}

async fn flood(redis: bool) {
    let sink = ok_sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(storm_policy(&sink.uri()))),
        redis,
        ..Default::default()
    })
    .await;

    // 1,000 distinct new alarms within one minute (50 ms apart on the injected clock).
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in (0..FLOOD).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<Value> = chunk.iter().map(|n| distinct(*n)).collect();
        let (status, body) = app.post_events(&serde_json::to_vec(&batch).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        for r in body["results"].as_array().unwrap() {
            *outcomes
                .entry(r["outcome"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        app.clock.advance(Duration::from_millis(50 * 50));
    }
    app.handle.run_deliveries().await;
    assert_eq!(outcomes.get("opened"), Some(&STORM_BOUND), "{outcomes:?}");
    assert_eq!(outcomes.get("storm"), Some(&(FLOOD - STORM_BOUND)));

    let (status, body) = app.get("/v1/incidents?status=open&limit=1000").await;
    assert_eq!(status, StatusCode::OK);
    let open = body["incidents"].as_array().unwrap();
    assert_eq!(
        open.len(),
        STORM_BOUND + 1,
        "the bound, plus one storm incident"
    );
    let storm: Vec<&Value> = open
        .iter()
        .filter(|i| i["fingerprint"].as_str().unwrap().starts_with("storm/bot/"))
        .collect();
    assert_eq!(storm.len(), 1);
    assert_eq!(storm[0]["count"], FLOOD - STORM_BOUND);
    let pages = received(&sink).await.len();
    assert_eq!(
        pages,
        STORM_BOUND + 1,
        "one page per incident, one for the storm"
    );
    let timeline = app.incident(storm[0]["id"].as_str().unwrap()).await["timeline"].clone();
    let listed = timeline
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["summary"]
                .as_str()
                .is_some_and(|s| s.contains("flood-") && s.contains(": flood "))
        })
        .count();
    assert_eq!(
        listed,
        FLOOD - STORM_BOUND,
        "the timeline lists each folded alert"
    );

    // A minute without the flood: a new alarm opens (and pages) on its own again.
    app.clock.advance(Duration::from_secs(61));
    let (status, body) = app
        .post_events(&serde_json::to_vec(&distinct(FLOOD + 1)).unwrap())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["outcome"], "opened", "{body}");
    app.handle.run_deliveries().await;
    assert_eq!(received(&sink).await.len(), STORM_BOUND + 2);
}

//! Is the desk's promise kept (issue 16)? The response report and metrics against the matrix's
//! `respond_within`, with the injected clock; test notifications through the real channels'
//! fakes (PagerDuty and Slack wiremocks, moto for SMS); drill windows whose incidents page with
//! DRILL and are reported apart; and `vigil report` / `vigil notify-test` through a real
//! `vigil serve`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil::notify::SecretSource;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// A trading-bot event of `kind` under its own dedup key, sent at the test clock's start.
fn bot_event(kind: &str, key: &str) -> Vec<u8> {
    json!({
        "kind": kind,
        "summary": format!("{kind} {key}"),
        "status": "firing",
        "dedup_key": key,
        "labels": { "service": "trading-bot", "region": "ap-southeast-1" },
        "occurred_at": t0().to_rfc3339(),
    })
    .to_string()
    .into_bytes()
}

async fn open(app: &TestApp, kind: &str, key: &str) -> String {
    let (status, body) = app.post_events(&bot_event(kind, key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    incident_of(&body)
}

async fn act(app: &TestApp, id: &str, what: &str, by: &str) {
    let (status, body) = app
        .post_op(&format!("/v1/incidents/{id}/{what}"), json!({ "by": by }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The line of `/metrics` that starts with `series` (name and labels), its value.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn severity<'a>(report: &'a Value, s: &str) -> &'a Value {
    report["severities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["severity"] == s)
        .unwrap_or_else(|| panic!("no {s} row in {report}"))
}

#[tokio::test]
async fn acks_inside_and_outside_the_promise_make_the_report_rows_percentiles_and_buckets() {
    let sink = ok_sink().await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        ..Default::default()
    })
    .await;
    // Critical promises 5 minutes, medium an hour (the webhook policy's matrix).
    let a = open(&app, "trading_halted", "halted-a").await;
    let b = open(&app, "trading_halted", "halted-b").await;
    let d = open(&app, "trading_halted", "halted-d").await;
    let c = open(&app, "exchange_error", "exchange-c").await;
    app.handle.run_deliveries().await;

    app.advance(minutes(2)).await;
    act(&app, &a, "ack", "ana").await; // 2 min: kept
    app.advance(minutes(5)).await; // 7 min: step 2 fired for b and d
    act(&app, &b, "ack", "cto").await; // 7 min: broken
    app.advance(minutes(23)).await; // 30 min
    act(&app, &c, "resolve", "ana").await; // medium, resolved in 30 min without an ack: kept

    let (status, report) = app.get("/v1/reports/response?since=1h").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["truncated"], false);
    let critical = severity(&report, "critical");
    assert_eq!(critical["respond_within_seconds"], 300.0);
    assert_eq!(critical["incidents"], 3);
    assert_eq!(critical["acknowledged"], 2);
    assert_eq!(critical["acked_in_time"], 1);
    let pct = critical["acked_in_time_pct"].as_f64().unwrap();
    assert!((pct - 100.0 / 3.0).abs() < 1e-9, "{pct}");
    assert_eq!(
        critical["p50_ack_seconds"], 120.0,
        "nearest rank of [120, 420]"
    );
    assert_eq!(critical["p90_ack_seconds"], 420.0);
    assert_eq!(
        critical["escalated_beyond_first_step"], 2,
        "b and d reached step 2"
    );
    assert_eq!(critical["answered_by"], json!({ "ana": 1, "cto": 1 }));
    assert_eq!(critical["broken"], 2);
    let medium = severity(&report, "medium");
    assert_eq!(
        (
            &medium["incidents"],
            &medium["acked_in_time"],
            &medium["broken"]
        ),
        (&json!(1), &json!(0), &json!(0))
    );
    assert_eq!(medium["p50_ack_seconds"], Value::Null);
    assert_eq!(severity(&report, "high")["incidents"], 0);
    assert_eq!(severity(&report, "high")["acked_in_time_pct"], Value::Null);

    let broken: Vec<(String, String)> = report["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["incident"].as_str().unwrap().to_string(),
                b["breach"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = vec![
        (b.clone(), "acked_late".to_string()),
        (d.clone(), "unacknowledged".to_string()),
    ];
    want.sort();
    let mut got = broken.clone();
    got.sort();
    assert_eq!(got, want);
    let late = report["broken"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["incident"] == b.as_str())
        .unwrap();
    assert_eq!(late["ack_seconds"], 420.0);
    assert_eq!(late["link"], format!("http://vigil.test/v1/incidents/{b}"));
    assert_eq!(report["drills"], json!([]));

    // The histograms observed each ack and resolve as it committed; only b's late ack counted as
    // broken (d is not answered yet).
    let m = app.metrics().await;
    let ack = |le: &str| {
        sample(
            &m,
            &format!("vigil_time_to_ack_seconds_bucket{{severity=\"critical\",le=\"{le}\"}}"),
        )
    };
    assert_eq!(ack("120"), Some(1.0), "{m}");
    assert_eq!(ack("300"), Some(1.0));
    assert_eq!(ack("600"), Some(2.0));
    assert_eq!(
        sample(&m, "vigil_time_to_ack_seconds_sum{severity=\"critical\"}"),
        Some(540.0)
    );
    assert_eq!(
        sample(
            &m,
            "vigil_time_to_resolve_seconds_bucket{severity=\"medium\",le=\"900\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            "vigil_time_to_resolve_seconds_bucket{severity=\"medium\",le=\"1800\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "vigil_promises_broken_total{severity=\"critical\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "vigil_promises_broken_total{severity=\"medium\"}"),
        None
    );

    // A window before the incidents has none of them; bad bounds are 400s that say why.
    let (status, early) = app
        .get(&format!(
            "/v1/reports/response?since={}&until={}",
            urlencode(&(t0() - chrono::Duration::hours(2)).to_rfc3339()),
            urlencode(&(t0() - chrono::Duration::hours(1)).to_rfc3339()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{early}");
    assert_eq!(severity(&early, "critical")["incidents"], 0);
    for (q, says) in [
        ("since=yesterday", "since"),
        ("since=1h&until=2h", "must be before"),
        ("since=1h&bogus=1", "bogus"),
    ] {
        let (status, body) = app.get(&format!("/v1/reports/response?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body.to_string().contains(says), "{q}: {body}");
    }
}

// ---- providers --------------------------------------------------------------------------------

const PD_ROUTING_KEY: &str = "R0UT1NGKEY-secret-0123456789abcdef";
const SLACK_TOKEN: &str = "xoxb-test-token-do-not-leak";

/// A desk with PagerDuty, Slack, SMS and email (no SMTP relay configured: the failing channel),
/// the policy of the two-way tests plus one drill window in `routing/` for the `drill="yaml"` label.
fn provider_policy(slack_channel: String, phone: String) -> impl FnOnce(&Path) {
    move |dir: &Path| {
        crate::two_way::write_policy(dir, &slack_channel, &phone);
        std::fs::write(
            dir.join("drills.yaml"),
            r#"
drills:
  - id: yaml-drill
    matchers: ['drill="yaml"']
    start: "2026-11-20T00:00:00"
    end: "2026-11-21T00:00:00"
    author: mei
    comment: written in routing/
"#,
        )
        .unwrap();
    }
}

struct Desk {
    app: TestApp,
    pd: MockServer,
    slack: MockServer,
    phone: vigil::domain::PhoneNumber,
    moto: String,
}

async fn desk() -> Desk {
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202).set_body_json(
            json!({ "status": "success", "message": "Event processed", "dedup_key": "from-pd" }),
        ))
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
    let phone = crate::channels::unique_phone();
    let moto = crate::channels::emulator("VIGIL_TEST_MOTO_URL");
    let mut secrets = HashMap::new();
    secrets.insert("PD_KEY".to_string(), PD_ROUTING_KEY.to_string());
    secrets.insert("SLACK_TOKEN".to_string(), SLACK_TOKEN.to_string());
    let mut channels = crate::channels::aws_settings().await;
    channels.endpoints = [
        ("sms", moto.clone()),
        ("pagerduty", pd.uri()),
        ("slack", slack.uri()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    channels.secrets = SecretSource::from_map(secrets);
    let app = spawn_app_with(Options {
        policy: Some(Box::new(provider_policy(
            format!("#alerts-{}", ulid::Ulid::new().to_string().to_lowercase()),
            phone.as_ref().to_string(),
        ))),
        channels: Some(channels),
        ..Default::default()
    })
    .await;
    Desk {
        app,
        pd,
        slack,
        phone,
        moto,
    }
}

fn row<'a>(results: &'a Value, channel: &str) -> &'a Value {
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} row in {results}"))
}

#[tokio::test]
async fn a_test_notification_reaches_every_provider_names_the_failing_channel_and_opens_nothing() {
    let d = desk().await;
    let (status, body) = d
        .app
        .post_op("/v1/test-notifications", json!({ "people": ["mei"] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["failed"], 1, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 4, "{body}");

    let pd = row(&body, "pagerduty");
    assert_eq!(
        (&pd["outcome"], &pd["type"]),
        (&json!("sent"), &json!("pagerduty"))
    );
    let slack = row(&body, "slack");
    assert_eq!(slack["outcome"], "sent", "{body}");
    assert_eq!(slack["reference"], "C07ALERTS01:1763604942.114259");
    let sms = row(&body, "sms");
    assert_eq!(
        (&sms["outcome"], &sms["person"]),
        (&json!("sent"), &json!("mei"))
    );
    let email = row(&body, "email");
    assert_eq!(
        (&email["outcome"], &email["person"]),
        (&json!("failed"), &json!("mei"))
    );
    assert!(
        email["error"].as_str().unwrap().contains("unavailable"),
        "the exact reason: {body}"
    );

    // What each provider received says TEST, offers no button, and pages for no incident.
    let sent = received_at(&d.pd, "/v2/enqueue").await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["event_action"], "trigger");
    assert_eq!(sent[0]["dedup_key"], body["test"]);
    assert!(
        sent[0]["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("TEST"),
        "{}",
        sent[0]
    );
    let posted = received_at(&d.slack, "/chat.postMessage").await;
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0]["text"].as_str().unwrap().starts_with("TEST"),
        "{}",
        posted[0]
    );
    assert!(
        posted[0].to_string().contains("*TEST* notification"),
        "{}",
        posted[0]
    );
    assert!(
        !posted[0]["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["type"] == "actions"),
        "a test has nothing to acknowledge: {}",
        posted[0]
    );
    let texts = crate::channels::moto_sms(&d.moto, &d.phone).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].1.starts_with("TEST from vigil"), "{texts:?}");
    assert_eq!(sms["reference"].as_str(), Some(texts[0].0.as_str()));

    assert!(
        d.app.incidents().await.is_empty(),
        "a test opens no incident"
    );
    assert_eq!(d.app.handle.run_due_escalations().await, 0);

    // Without people, personal channels go to whoever is on call (mei); unknown names are 400s.
    let (status, body) = d
        .app
        .post_op("/v1/test-notifications", json!({ "channels": ["sms"] }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(row(&body, "sms")["person"], "mei");
    assert_eq!(body["ok"], true);
    for (req, says) in [
        (json!({ "channels": ["telex"] }), "telex"),
        (json!({ "people": ["nobody"] }), "nobody"),
        (json!({ "channels": "sms" }), "channels"),
        (json!({ "to": ["mei"] }), "to"),
    ] {
        let (status, body) = d.app.post_op("/v1/test-notifications", req.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{req}: {body}");
        assert!(body.to_string().contains(says), "{req}: {body}");
    }
    assert!(d.app.incidents().await.is_empty());
}

#[tokio::test]
async fn a_drill_windows_incident_pages_with_drill_in_slack_and_sms_and_is_reported_apart() {
    let d = desk().await;
    let app = &d.app;
    let end = (t0() + chrono::Duration::hours(2)).to_rfc3339();
    let (status, drill) = app
        .post_op(
            "/v1/drills",
            json!({
                "id": "q4-failover",
                "matchers": ["service=\"trading-bot\""],
                "end": end,
                "author": "mei",
                "comment": "Q4 DR drill: trading halt",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{drill}");
    let (_, listed) = app.get("/v1/drills").await;
    let ids: Vec<&str> = listed["drills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["yaml-drill", "q4-failover"], "{listed}");

    // The alarm fires 30 s after the drill's alert was sent; the page goes at once.
    app.clock.advance(Duration::from_secs(30));
    let id = open(app, "trading_halted", "drill-halt").await;
    app.handle.run_deliveries().await;
    let inc = app.incident(&id).await;
    assert_eq!(inc["drill"], "q4-failover", "{inc}");
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "drill" && e["window"] == "q4-failover"),
        "{inc}"
    );
    let posted = received_at(&d.slack, "/chat.postMessage").await;
    assert_eq!(posted.len(), 1);
    assert!(
        posted[0]["text"].as_str().unwrap().starts_with("DRILL"),
        "{}",
        posted[0]
    );
    assert!(
        posted[0].to_string().contains("DRILL: *CRITICAL*"),
        "{}",
        posted[0]
    );
    let texts = crate::channels::moto_sms(&d.moto, &d.phone).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].1.starts_with("DRILL: CRITICAL"), "{texts:?}");
    let pd = received_at(&d.pd, "/v2/enqueue").await;
    assert!(
        pd[0]["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("DRILL"),
        "{}",
        pd[0]
    );

    app.clock.advance(minutes(3));
    act(app, &id, "ack", "mei").await;
    app.clock.advance(minutes(10));
    act(app, &id, "resolve", "mei").await;

    let (status, report) = app.get("/v1/reports/response?since=1d").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        severity(&report, "critical")["incidents"],
        0,
        "apart: {report}"
    );
    assert_eq!(report["broken"], json!([]));
    let drills = report["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{report}");
    assert_eq!(drills[0]["window"], "q4-failover");
    assert_eq!(drills[0]["comment"], "Q4 DR drill: trading halt");
    let t = &drills[0]["incidents"][0];
    assert_eq!(t["incident"], id.as_str());
    assert_eq!(t["first_alarm"], "2026-11-20T02:15:45Z");
    assert_eq!(t["first_page_seconds"], 30.0, "{t}");
    assert_eq!(t["ack_seconds"], 210.0);
    assert_eq!(t["resolve_seconds"], 810.0);
    assert_eq!(t["acknowledged_by"], "mei");
    assert_eq!(t["acked_in_time"], true);
    // Drills stay out of the promise's metrics.
    let m = app.metrics().await;
    assert!(
        !m.contains("vigil_time_to_ack_seconds_count{severity=\"critical\"}"),
        "{m}"
    );

    // The window written in routing/ marks incidents too; routing/'s windows are not deleted
    // through the API, the API's are.
    let (status, body) = app
        .post_events(
            &json!({
                "kind": "exchange_error",
                "summary": "drill from routing/",
                "status": "firing",
                "dedup_key": "yaml-drill-1",
                "labels": { "drill": "yaml" },
                "occurred_at": t0().to_rfc3339(),
            })
            .to_string()
            .into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let yaml = incident_of(&body);
    assert_eq!(app.incident(&yaml).await["drill"], "yaml-drill");
    assert_eq!(
        app.delete_op("/v1/drills/yaml-drill").await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.delete_op("/v1/drills/q4-failover").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_op("/v1/drills/q4-failover").await,
        StatusCode::NOT_FOUND
    );
    let (status, body) = app
        .post_op(
            "/v1/drills",
            json!({ "matchers": [], "end": end, "comment": "everything" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("matchers"), "{body}");
    // After the delete, a new incident of the same labels is no drill.
    let real = open(app, "trading_halted", "real-halt").await;
    assert_eq!(app.incident(&real).await.get("drill"), None);
}

// ---- the CLI ----------------------------------------------------------------------------------

#[tokio::test]
async fn vigil_report_and_notify_test_work_through_a_real_vigil_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = serve_command(
        crate::VIGIL,
        &shipped_routing(),
        &["--data".as_ref(), dir.path().join("data").as_os_str()],
        port,
    );
    cmd.env("VIGIL_PUBLIC_URL", "https://vigil.example.com");
    let _proc = Proc::spawn(cmd);
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let (status, body) = answer(
        http.post(format!("{base}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(fixture("bot-trading-halted.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = incident_of(&body);
    let r = http
        .post(format!("{base}/v1/incidents/{id}/ack"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({ "by": "mei" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let vigil = |args: &[&str]| {
        let out = Command::new(crate::VIGIL)
            .args(args)
            .env("VIGIL_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env_remove("VIGIL_OPERATOR_TOKENS")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = vigil(&["report", "--url", &base, "--since", "30d"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Response against the matrix"), "{out}");
    let critical = out
        .lines()
        .find(|l| l.starts_with("critical"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        critical.contains("5m") && critical.contains("1 (100%)"),
        "{out}"
    );
    assert!(out.contains("Who answered:\n  mei: 1"), "{out}");
    assert!(out.contains("No promise broken."), "{out}");
    let (code, json_out, err) = vigil(&["report", "--url", &base, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(severity(&v, "critical")["answered_by"]["mei"], 1);

    // The shipped policy's channels have no secrets here: each is reported unavailable by name
    // and the command exits 1; the log channel sends.
    let (code, out, err) = vigil(&[
        "notify-test",
        "--url",
        &base,
        "--channel",
        "audit-log",
        "--channel",
        "pagerduty",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("sent     audit-log [log]"), "{out}");
    assert!(
        out.contains("FAILED   pagerduty [pagerduty] -> (channel): channel unavailable")
            && out.contains("VIGIL_PAGERDUTY_ROUTING_KEY"),
        "{out}"
    );
    assert!(err.contains("1 test notification(s) failed"), "{err}");
    let (code, out, _) = vigil(&["notify-test", "--url", &base, "--channel", "audit-log"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, err) = vigil(&["notify-test", "--url", &base, "--channel", "telex"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("400") && err.contains("telex"), "{err}");
    // The report still holds one incident: tests opened none.
    let (_, out, _) = vigil(&["report", "--url", &base, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["read"], 1, "{v}");
}

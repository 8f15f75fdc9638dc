//! The operations API: on-call overrides, `GET /v1/oncall`, silences and heartbeats, on the
//! shipped `routing/` (schedules `primary`/`secondary`; heartbeat `trading-bot`, 1m + 30s grace,
//! critical). Time moves only by the test app's `ManualClock`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    INGEST_TOKEN, OPERATOR_TOKEN, Options, TestApp, copy_routing, spawn_app, spawn_app_with, t0,
};

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

async fn stored_overrides(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/v1/overrides").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["overrides"].as_array().unwrap().clone()
}

async fn stored_silences(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get("/v1/silences").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["silences"].as_array().unwrap().clone()
}

async fn heartbeat_incidents(app: &TestApp) -> Vec<Value> {
    app.incidents()
        .await
        .into_iter()
        .filter(|i| i["fingerprint"] == "heartbeat/trading-bot")
        .collect()
}

#[tokio::test]
async fn an_api_override_decides_who_is_on_call_until_it_ends_or_is_deleted() {
    let app = spawn_app().await;
    let before = app.oncall(None).await;
    let rotation = before["primary"]["person"].as_str().unwrap().to_string();
    assert_eq!(before["primary"]["decided_by"]["layer"], "rotation");
    let cover = ["mei", "raj", "ana"]
        .into_iter()
        .find(|p| *p != rotation)
        .unwrap();
    let end = t0() + TimeDelta::hours(2);

    let (status, body) = app
        .post_override(json!({
            "schedule": "primary",
            "person": cover,
            "end": rfc(end),
            "author": "mei",
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        body["override"]["start"],
        json!(t0()),
        "start defaults to now"
    );

    let now = app.oncall(None).await;
    assert_eq!(now["primary"]["person"], cover);
    assert_eq!(
        now["primary"]["decided_by"]["api_override"]["author"],
        "mei"
    );
    assert_eq!(
        now["secondary"], before["secondary"],
        "other schedules are untouched"
    );
    let later = app.oncall(Some(end + TimeDelta::minutes(1))).await;
    assert_eq!(later["primary"]["person"], rotation);
    assert_eq!(later["primary"]["decided_by"]["layer"], "rotation");

    let listed = stored_overrides(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["active"], true);

    assert_eq!(
        app.delete_op(&format!("/v1/overrides/{id}")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_op(&format!("/v1/overrides/{id}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete_op("/v1/overrides/not-an-id").await,
        StatusCode::NOT_FOUND
    );
    assert!(stored_overrides(&app).await.is_empty());
    assert_eq!(app.oncall(None).await["primary"]["person"], rotation);
}

#[tokio::test]
async fn bad_overrides_are_refused_naming_the_problem_and_store_nothing() {
    let app = spawn_app().await;
    let end = rfc(t0() + TimeDelta::hours(1));
    let cases = [
        (
            json!({"schedule": "primary", "person": "raj", "start": end, "end": rfc(t0())}),
            "must be after start",
        ),
        (
            json!({"schedule": "primary", "person": "nobody", "end": end}),
            "unknown person",
        ),
        (
            json!({"schedule": "tertiary", "person": "raj", "end": end}),
            "unknown schedule",
        ),
        (
            json!({"schedule": "primary", "person": "raj", "end": end, "reason": "x"}),
            "reason: unknown field",
        ),
        (
            json!({"schedule": "primary", "person": "raj"}),
            "end: required",
        ),
        (
            json!({"schedule": "primary", "person": "raj", "end": "tomorrow"}),
            "end: \"tomorrow\" is not an RFC 3339 time",
        ),
        (
            json!({"schedule": "primary", "person": 7, "end": end}),
            "person: invalid type",
        ),
        (
            json!({"schedule": "primary", "person": "raj", "start": rfc(t0() - TimeDelta::hours(3)), "end": rfc(t0() - TimeDelta::hours(2))}),
            "end: ",
        ),
        (json!(["primary"]), "expected a JSON object"),
    ];
    for (body, want) in cases {
        let (status, answer) = app.post_override(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        assert_eq!(answer["error"], "bad_request");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(want), "{body}: {detail:?} lacks {want:?}");
    }
    let (status, _) = app
        .send_as(
            Method::POST,
            "/v1/overrides",
            Some(INGEST_TOKEN),
            Some(json!({"schedule": "primary", "person": "raj", "end": end})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .send_as(Method::GET, "/v1/overrides", Some(INGEST_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.send_as(Method::GET, "/v1/oncall", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(stored_overrides(&app).await.is_empty());

    let (status, answer) = app.get("/v1/oncall?at=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["detail"].as_str().unwrap().starts_with("at: "));
    let (status, _) = app.get("/v1/oncall?when=now").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn rds_silence(end: DateTime<Utc>) -> Value {
    json!({
        "matchers": ["region=\"ap-southeast-1\"", "alarm_name=~\"rds-.*\""],
        "end": rfc(end),
        "author": "mei",
        "comment": "RDS minor version upgrade, CHG-1234",
    })
}

#[tokio::test]
async fn a_silence_is_listed_active_until_deleted() {
    let app = spawn_app().await;
    let end = t0() + TimeDelta::hours(2);
    let (status, body) = app.post_silence(rds_silence(end)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["source"], "api");
    assert_eq!(body["active"], true);
    assert_eq!(body["start"], json!(t0()), "start defaults to now");
    let id = body["id"].as_str().unwrap().to_string();

    let listed = stored_silences(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["source"], "api");
    assert_eq!(listed[0]["active"], true);
    assert_eq!(listed[0]["matchers"][1], "alarm_name=~\"rds-.*\"");

    // Without an author it is the API's; a future window is listed, not active.
    let mut later = rds_silence(end + TimeDelta::hours(5));
    later["start"] = json!(rfc(end + TimeDelta::hours(4)));
    later.as_object_mut().unwrap().remove("author");
    let (status, body) = app.post_silence(later).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["author"], "api");
    assert_eq!(body["active"], false);

    assert_eq!(
        app.delete_op(&format!("/v1/silences/{id}")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_op(&format!("/v1/silences/{id}")).await,
        StatusCode::NOT_FOUND
    );
    let listed = stored_silences(&app).await;
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0]["id"], id.as_str());

    // Expired API silences drop out of the list.
    app.clock.advance(Duration::from_secs(10 * 3600));
    assert!(stored_silences(&app).await.is_empty());
}

#[tokio::test]
async fn bad_silences_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let end = t0() + TimeDelta::hours(1);
    let mut no_end = rds_silence(end);
    no_end.as_object_mut().unwrap().remove("end");
    let mut backwards = rds_silence(end);
    backwards["start"] = json!(rfc(end + TimeDelta::minutes(1)));
    let mut empty = rds_silence(end);
    empty["matchers"] = json!([]);
    let mut bad_regex = rds_silence(end);
    bad_regex["matchers"] = json!(["alarm_name=~\"rds-(\""]);
    let mut unknown = rds_silence(end);
    unknown["createdBy"] = json!("mei");
    let mut no_comment = rds_silence(end);
    no_comment["comment"] = json!("  ");
    let cases = [
        (no_end, "end: required"),
        (backwards, "end: "),
        (empty, "matchers: "),
        (bad_regex, "matchers[0]: "),
        (unknown, "createdBy: unknown field"),
        (no_comment, "comment: "),
    ];
    for (body, want) in cases {
        let (status, answer) = app.post_silence(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(detail.contains(want), "{body}: {detail:?} lacks {want:?}");
    }
    let (status, _) = app
        .send_as(
            Method::POST,
            "/v1/silences",
            Some(INGEST_TOKEN),
            Some(rds_silence(end)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(stored_silences(&app).await.is_empty());
}

#[tokio::test]
async fn silences_beyond_the_limits_are_refused_with_422() {
    let app = spawn_app().await;
    let end = t0() + TimeDelta::hours(1);
    // The silence that got vigil OOM-killed: 600 matchers of nested repetitions. Refused on the
    // count, before any of them is compiled.
    let mut bomb = rds_silence(end);
    bomb["matchers"] = json!(vec!["alarm_name=~\"((a{50}){50}){50}\""; 600]);
    let (status, answer) = app.post_silence(bomb).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "over_limit");
    assert_eq!(
        answer["detail"],
        "matchers: 600 matchers; a silence has at most 32 matchers"
    );
    // One such regex is refused by its compiled size.
    let mut one = rds_silence(end);
    one["matchers"] = json!(["region=\"x\"", "alarm_name=~\"((a{50}){50}){50}\""]);
    let (status, answer) = app.post_silence(one).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("matchers[1]: ") && detail.contains("too large"),
        "{detail}"
    );
    assert!(stored_silences(&app).await.is_empty());

    // At most 1,000 API silences that have not ended.
    let store = &app.handle.store;
    for i in 0..1000 {
        let record = json!({
            "id": format!("maint-{i}"), "matchers": [format!("host=\"db-{i}\"")],
            "start": rfc(t0()), "end": rfc(end), "author": "mei", "comment": "patching",
        });
        store
            .put_record(
                vigil::pipeline::extras::SILENCES,
                &format!("maint-{i}"),
                serde_json::to_vec(&record).unwrap(),
            )
            .await
            .unwrap();
    }
    let (status, answer) = app.post_silence(rds_silence(end)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("already 1000 API silences that have not ended (at most 1000)"),
        "{answer}"
    );
    // Replacing one that exists is no new silence; deleting one makes room.
    let mut replace = rds_silence(end);
    replace["id"] = json!("maint-7");
    let (status, answer) = app.post_silence(replace).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        app.delete_op("/v1/silences/maint-0").await,
        StatusCode::NO_CONTENT
    );
    let (status, answer) = app.post_silence(rds_silence(end)).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(stored_silences(&app).await.len(), 1000);

    // And at most 1,000 regex matchers across them (each may compile to tens of KiB).
    let app = spawn_app().await;
    let regexes =
        |n: usize| -> Vec<String> { (0..n).map(|i| format!("host=~\"db-{i}-.*\"")).collect() };
    for i in 0..31 {
        let mut s = rds_silence(end);
        s["id"] = json!(format!("wide-{i}"));
        s["matchers"] = json!(regexes(32));
        let (status, answer) = app.post_silence(s).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let mut s = rds_silence(end);
    s["matchers"] = json!(regexes(9));
    let (status, answer) = app.post_silence(s).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains(
            "hold 992 regex matchers and this one 9; together they may hold at most 1000"
        ),
        "{answer}"
    );
    let mut s = rds_silence(end);
    s["matchers"] = json!(regexes(8));
    let (status, answer) = app.post_silence(s).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

#[tokio::test]
async fn silences_from_routing_are_listed_but_not_deleted_through_the_api() {
    let app = spawn_app_with(Options {
        policy: Some(Box::new(|dir| {
            copy_routing(dir);
            std::fs::write(
                dir.join("maintenance.yaml"),
                r#"
silences:
  - id: rds-upgrade
    matchers: ['alarm_name=~"rds-.*"']
    start: "2026-11-20T09:00:00"
    end: "2026-11-20T12:00:00"
    author: mei
    comment: CHG-1234
"#,
            )
            .unwrap();
        })),
        ..Options::default()
    })
    .await;
    let listed = stored_silences(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], "rds-upgrade");
    assert_eq!(listed[0]["source"], "routing");
    // t0 is 10:15 in Singapore.
    assert_eq!(listed[0]["active"], true);

    let (status, body) = app
        .send_as(
            Method::DELETE,
            "/v1/silences/rds-upgrade",
            Some(OPERATOR_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["detail"], "defined in routing/; edit the policy");

    let mut same_id = rds_silence(t0() + TimeDelta::hours(1));
    same_id["id"] = json!("rds-upgrade");
    let (status, _) = app.post_silence(same_id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(stored_silences(&app).await.len(), 1);
}

#[tokio::test]
async fn a_missed_heartbeat_opens_one_critical_incident_that_the_next_beat_resolves() {
    let app = spawn_app().await;
    let (status, body) = app.beat("trading-bot").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["heartbeat"], "trading-bot");
    assert_eq!(body["resolved"], json!([]));

    // Interval 1m + grace 30s: at 1m29s still fine.
    app.clock.advance(Duration::from_secs(89));
    app.handle.run_due_escalations().await;
    assert!(heartbeat_incidents(&app).await.is_empty());

    app.clock.advance(Duration::from_secs(2));
    app.handle.run_due_escalations().await;
    let open = heartbeat_incidents(&app).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let inc = &open[0];
    assert_eq!(inc["status"], "triggered");
    assert_eq!(inc["severity"], "critical");
    assert_eq!(inc["source"], "heartbeat");
    assert_eq!(inc["labels"]["kind"], "heartbeat_missed");
    assert_eq!(inc["labels"]["heartbeat"], "trading-bot");
    assert_eq!(inc["labels"]["team"], "trading");
    assert_eq!(inc["details"]["last_beat"], json!(t0()));
    let id = inc["id"].as_str().unwrap().to_string();

    app.clock.advance(Duration::from_secs(30));
    app.handle.run_due_escalations().await;
    assert_eq!(
        heartbeat_incidents(&app).await.len(),
        1,
        "a pass while the incident is open opens no second one"
    );

    let (status, body) = app.beat("trading-bot").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["resolved"], json!([id]));
    assert_eq!(app.incident(&id).await["status"], "resolved");

    // Beating on time keeps it quiet.
    for _ in 0..3 {
        app.clock.advance(Duration::from_secs(60));
        app.handle.run_due_escalations().await;
        let (status, body) = app.beat("trading-bot").await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(body["resolved"], json!([]));
    }
    let all = heartbeat_incidents(&app).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["status"], "resolved");
}

#[tokio::test]
async fn a_heartbeat_that_never_beat_counts_from_the_first_pass() {
    let app = spawn_app().await;
    app.handle.run_due_escalations().await;
    app.clock.advance(Duration::from_secs(89));
    app.handle.run_due_escalations().await;
    assert!(heartbeat_incidents(&app).await.is_empty());
    app.clock.advance(Duration::from_secs(1));
    app.handle.run_due_escalations().await;
    assert_eq!(heartbeat_incidents(&app).await.len(), 1);
}

#[tokio::test]
async fn an_incident_resolved_by_hand_is_not_reopened_until_the_heartbeat_misses_again() {
    let app = spawn_app().await;
    app.beat("trading-bot").await;
    app.clock.advance(Duration::from_secs(91));
    app.handle.run_due_escalations().await;
    let open = heartbeat_incidents(&app).await;
    assert_eq!(open.len(), 1);
    let id = open[0]["id"].as_str().unwrap();
    let (status, _) = app
        .post_op(&format!("/v1/incidents/{id}/resolve"), json!({"by": "mei"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(60));
    app.handle.run_due_escalations().await;
    let all = heartbeat_incidents(&app).await;
    assert!(
        all.iter().all(|i| i["status"] == "resolved"),
        "still the same outage: {all:?}"
    );

    // A beat, then silence again: a new miss pages again.
    app.beat("trading-bot").await;
    app.clock.advance(Duration::from_secs(15 * 60));
    app.handle.run_due_escalations().await;
    let all = heartbeat_incidents(&app).await;
    assert!(
        all.iter()
            .any(|i| i["status"] == "triggered" || i["status"] == "acknowledged"),
        "{all:?}"
    );
}

#[tokio::test]
async fn heartbeats_need_a_token_and_a_known_name() {
    let app = spawn_app().await;
    let (status, body) = app.beat("no-such-bot").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    let (status, _) = app
        .send_as(Method::POST, "/v1/heartbeats/trading-bot", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .send_as(
            Method::POST,
            "/v1/heartbeats/trading-bot",
            Some("wrong"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .send_as(
            Method::POST,
            "/v1/heartbeats/trading-bot",
            Some(OPERATOR_TOKEN),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = app
        .send_as(
            Method::GET,
            "/v1/heartbeats/trading-bot",
            Some(OPERATOR_TOKEN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

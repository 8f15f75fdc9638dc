//! Issue 12, item 2: silences and on-call overrides made through the API are mirrored between a
//! primary and its warm standby (both directions), deletes included, and a silence made on the
//! primary holds the standby's escalation after a takeover. Real `vigil serve` processes on
//! loopback, with the harness of `standby.rs`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::standby::{
    POLL, Pair, TAKEOVER_AFTER, UNREACHABLE, paged, pages, peer_view, sink, step, wait_page,
};

/// Long enough for a record to cross: a few polls.
const MIRRORED_WITHIN: Duration = Duration::from_secs(8);

async fn op(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = http.request(method, url).bearer_auth(OPERATOR_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req.send().await.unwrap()).await
}

fn in_two_hours() -> String {
    (chrono::Utc::now() + chrono::TimeDelta::hours(2)).to_rfc3339()
}

/// Creates an API silence on `b`; its id.
async fn silence(pair: &Pair, b: &str, id: &str, matcher: &str) -> String {
    let (status, body) = op(
        &pair.http,
        reqwest::Method::POST,
        format!("{b}/v1/silences"),
        Some(json!({
            "id": id,
            "matchers": [matcher],
            "end": in_two_hours(),
            "author": "mei",
            "comment": "exchange maintenance, CHG-77",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{b}: {body}");
    body["id"].as_str().unwrap().to_string()
}

/// The ids of the API silences `b` lists.
async fn api_silences(pair: &Pair, b: &str) -> Vec<String> {
    let (status, body) = op(
        &pair.http,
        reqwest::Method::GET,
        format!("{b}/v1/silences"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["silences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "api")
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

async fn delete(pair: &Pair, b: &str, what: &str) {
    let (status, body) = op(
        &pair.http,
        reqwest::Method::DELETE,
        format!("{b}/v1/{what}"),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "DELETE {what} on {b}: {body}"
    );
}

/// Who `b` says is on call for the schedule `primary`, and what decided it.
async fn on_call(pair: &Pair, b: &str) -> (String, Value) {
    let (status, body) = op(
        &pair.http,
        reqwest::Method::GET,
        format!("{b}/v1/oncall"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let primary = body["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["schedule"] == "primary")
        .cloned()
        .unwrap_or_else(|| panic!("no schedule primary in {body}"));
    (
        primary["person"].as_str().unwrap_or_default().to_string(),
        primary["decided_by"].clone(),
    )
}

/// Waits until `b` has finished a whole round of reading its peer that began after this call:
/// three successive new `peer_last_seen` values (the second round fetched after the first
/// ended; the third began only once the second had applied what it fetched).
async fn full_round(pair: &Pair, b: &str) {
    let mut seen = vec![peer_view(&pair.http, b).await["peer_last_seen"].clone()];
    let deadline = std::time::Instant::now() + POLL * 3 + MIRRORED_WITHIN;
    while seen.len() < 4 {
        let now = peer_view(&pair.http, b).await["peer_last_seen"].clone();
        if now.is_string() && Some(&now) != seen.last() {
            seen.push(now);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{b} did not complete three rounds: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_silence_made_on_either_side_reaches_the_other_and_so_does_its_delete() {
    let sink = sink().await;
    let pair = Pair::start(&sink, ["0s", "5s", "1h"]).await;
    let id = silence(&pair, &pair.p, "exchange-maint", r#"exchange="binance""#).await;
    pair.until(
        "the standby lists the primary's silence",
        MIRRORED_WITHIN,
        || async { api_silences(&pair, &pair.s).await.contains(&id) },
    )
    .await;
    delete(&pair, &pair.p, &format!("silences/{id}")).await;
    pair.until(
        "the standby drops the deleted silence",
        MIRRORED_WITHIN,
        || async { !api_silences(&pair, &pair.s).await.contains(&id) },
    )
    .await;
    // The other way: the primary follows its standby (`--peer`) and learns its silences too
    // (made there while it was active, for instance).
    let there = silence(&pair, &pair.s, "made-on-standby", r#"exchange="okx""#).await;
    pair.until(
        "the primary lists the standby's silence",
        MIRRORED_WITHIN,
        || async { api_silences(&pair, &pair.p).await.contains(&there) },
    )
    .await;
    // A deleted silence is not brought back by the side that had it: both stay without it.
    full_round(&pair, &pair.s).await;
    full_round(&pair, &pair.p).await;
    assert_eq!(api_silences(&pair, &pair.p).await, vec![there.clone()]);
    assert_eq!(api_silences(&pair, &pair.s).await, vec![there]);
}

#[tokio::test]
async fn an_override_made_on_the_primary_decides_who_the_standby_pages_until_it_is_deleted() {
    let sink = sink().await;
    let pair = Pair::start(&sink, ["0s", "5s", "1h"]).await;
    assert_eq!(on_call(&pair, &pair.s).await.0, "ana");
    let (status, body) = op(
        &pair.http,
        reqwest::Method::POST,
        format!("{}/v1/overrides", pair.p),
        Some(json!({
            "schedule": "primary",
            "person": "cto",
            "end": in_two_hours(),
            "author": "mei",
        })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    pair.until(
        "the standby's on-call follows the override",
        MIRRORED_WITHIN,
        || async { on_call(&pair, &pair.s).await.0 == "cto" },
    )
    .await;
    let (_, decided_by) = on_call(&pair, &pair.s).await;
    assert_eq!(decided_by["api_override"]["author"], "mei", "{decided_by}");
    delete(&pair, &pair.p, &format!("overrides/{id}")).await;
    pair.until(
        "the standby's on-call is the rotation again",
        MIRRORED_WITHIN,
        || async { on_call(&pair, &pair.s).await.0 == "ana" },
    )
    .await;
}

#[tokio::test]
async fn a_silence_made_on_the_primary_holds_the_standby_after_it_takes_over() {
    let sink = sink().await;
    let mut pair = Pair::start(&sink, ["0s", "4s", "1h"]).await;
    let id = silence(&pair, &pair.p, "halt-drill", r#"reason="drill""#).await;
    let mut halt = fixture_json("bot-trading-halted.json");
    halt["dedup_key"] = json!("halt-silenced");
    halt["summary"] = json!("silenced");
    halt["labels"]["reason"] = json!("drill");
    halt["occurred_at"] = json!(chrono::Utc::now().to_rfc3339());
    for b in [&pair.p, &pair.s] {
        let r = pair
            .http
            .post(format!("{b}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(&halt)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{b}: {body}");
    }
    // The standby has read (and applied) a feed made after the silence.
    full_round(&pair, &pair.s).await;
    pair.primary.kill().unwrap();
    pair.primary.wait().unwrap();
    let bound = TAKEOVER_AFTER + POLL + Duration::from_secs(3);
    wait_page(&sink, UNREACHABLE, &step(0, 0), bound).await;
    // The silenced incident's first step is due since it opened, its second 4 s later: the
    // standby holds both.
    pair.until(
        "the standby's timeline says the silence held the page",
        Duration::from_secs(6),
        || async {
            pair.find(&pair.s, "silenced").await.is_some_and(|inc| {
                inc["timeline"].as_array().unwrap().iter().any(|e| {
                    e["type"] == "held" && e["by"].as_str() == Some(&format!("silence {id}"))
                })
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pages = pages(&sink).await;
    assert!(
        pages.keys().all(|(summary, _)| summary != "silenced"),
        "the silenced alert was paged: {pages:?}"
    );
    assert_eq!(paged(&sink, UNREACHABLE, &step(0, 0)).await, 1, "{pages:?}");
    assert_eq!(
        peer_view(&pair.http, &pair.s).await["role"],
        "active-standby"
    );
    assert!(api_silences(&pair, &pair.s).await.contains(&id));
}

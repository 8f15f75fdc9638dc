//! A real `vigil serve` process killed with SIGKILL (no clean shutdown) and started again on the
//! same data directory: incidents and due timers survive, and the timers fire. On Redis, two
//! replicas share the state: one is killed, the other delivers what it left behind, and a step
//! the two race for fires once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn start(config: &std::path::Path, data: &std::path::Path, port: u16) -> Proc {
    start_with(config, &["--data".as_ref(), data.as_os_str()], port)
}

pub(crate) fn start_with(config: &std::path::Path, store: &[&std::ffi::OsStr], port: u16) -> Proc {
    Proc::spawn(serve_command(crate::VIGIL, config, store, port))
}

/// Waits until the sink has received a page of `kind`, up to `within`.
async fn wait_for(sink: &MockServer, kind: &str, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = received(sink)
            .await
            .iter()
            .filter(|b| b["kind"] == kind)
            .count();
        if n > 0 || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn incidents_and_timers_survive_kill_9_and_fire_after_restart() {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    std::fs::create_dir_all(&config).unwrap();
    // The critical chain with its second step 3 s after the first, so the restart test waits
    // seconds, not minutes.
    webhook_policy(&sink.uri())(&config);
    let policy = std::fs::read_to_string(config.join("policy.yaml"))
        .unwrap()
        .replace("after: 5m", "after: 3s")
        .replace("after: 10m", "after: 1h");
    std::fs::write(config.join("policy.yaml"), policy).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut first = start(&config, &data, port);
    wait_ready(&http, &base).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut e = fixture_json("bot-trading-halted.json");
        e["dedup_key"] = json!(format!("halt-{n}"));
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(&e)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(incident_of(&body));
    }
    // No clean shutdown: SIGKILL right after the 2xx answers.
    first.kill().unwrap();
    first.wait().unwrap();
    let escalations_before = received(&sink)
        .await
        .iter()
        .filter(|b| b["kind"] == "escalate")
        .count();
    assert_eq!(escalations_before, 0, "step 2 was not due before the kill");

    let mut second = start(&config, &data, port);
    wait_ready(&http, &base).await;
    for id in &ids {
        let r = http
            .get(format!("{base}/v1/incidents/{id}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        let (status, inc) = answer(r).await;
        assert_eq!(status, StatusCode::OK, "incident {id} survived: {inc}");
        assert_eq!(inc["status"], "triggered");
        assert!(inc["next_due"].is_string(), "its timer survived: {inc}");
    }
    wait_for(&sink, "escalate", Duration::from_secs(15)).await;
    // Give every timer its chance, then count: each step exactly once per incident.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pages = received(&sink).await;
        let escalated = pages.iter().filter(|b| b["kind"] == "escalate").count();
        if escalated >= ids.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pages = received(&sink).await;
    for id in &ids {
        let triggers = pages
            .iter()
            .filter(|b| b["incident"] == id.as_str() && b["kind"] == "trigger")
            .count();
        let escalations = pages
            .iter()
            .filter(|b| b["incident"] == id.as_str() && b["kind"] == "escalate")
            .count();
        assert!(
            triggers >= 1,
            "{id}: the first page was delivered (after the restart if need be)"
        );
        assert_eq!(escalations, 1, "{id}: step 2 fired once, after the restart");
    }
    // SIGTERM: a graceful shutdown that exits 0 within the drain limit.
    let status = terminate(&mut second).await;
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// The bound the design allows, asserted here: every escalation step of every incident becomes
/// exactly one delivery (one `delivery_id`: a step fires once across replicas, by the version
/// guard), and every delivery reaches the receiver at least once and at most twice — twice only
/// when the replica sending it was killed between the send and recording it, and another replica
/// took it over after the lease. The second send carries the same `Idempotency-Key`.
#[tokio::test]
async fn three_replicas_on_redis_one_killed_mid_escalation_deliver_every_step_once() {
    let url = std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("VIGIL_TEST_REDIS_URL is not set: run scripts/test, which starts redis-server")
    });
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    std::fs::create_dir_all(&config).unwrap();
    webhook_policy(&sink.uri())(&config);
    // Steps at 0 s, 2 s and 4 s, so the kill lands mid-escalation and the test waits seconds.
    let policy = std::fs::read_to_string(config.join("policy.yaml"))
        .unwrap()
        .replace("after: 5m", "after: 2s")
        .replace("after: 10m", "after: 4s");
    std::fs::write(config.join("policy.yaml"), policy).unwrap();
    let prefix = format!("api-{}", ulid::Ulid::new());
    // A short lease, so the killed replica's deliveries move over within seconds.
    let store = [
        "--redis".as_ref(),
        url.as_ref(),
        "--redis-prefix".as_ref(),
        prefix.as_ref(),
        "--redis-lease".as_ref(),
        "2s".as_ref(),
    ];
    let http = reqwest::Client::new();
    let ports = [free_port(), free_port(), free_port()];
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut replicas: Vec<Proc> = ports
        .iter()
        .map(|p| start_with(&config, &store, *p))
        .collect();
    for base in &bases {
        wait_ready(&http, base).await;
    }
    // A stream of alarms spread over the replicas; one replica is killed part-way.
    let mut ids = Vec::new();
    for n in 0..24 {
        if n == 12 {
            replicas[1].kill().unwrap();
            replicas[1].wait().unwrap();
        }
        let base = if n >= 12 {
            &bases[[0, 2][n % 2]]
        } else {
            &bases[n % 3]
        };
        let mut e = fixture_json("bot-trading-halted.json");
        e["dedup_key"] = json!(format!("halt-{n}"));
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(&e)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(incident_of(&body));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let want = |pages: &[serde_json::Value]| {
        ids.iter().all(|id| {
            (0..3).all(|step| {
                pages
                    .iter()
                    .any(|b| b["incident"] == id.as_str() && b["step"][1] == step)
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want(&received(&sink).await) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer, so a second firing of a step would have shown up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pages = received(&sink).await;
    let mut resends = 0;
    for id in &ids {
        for step in 0..3 {
            let sends: Vec<&serde_json::Value> = pages
                .iter()
                .filter(|b| b["incident"] == id.as_str() && b["step"][1] == step)
                .collect();
            assert!(!sends.is_empty(), "{id}: step {step} was delivered");
            let delivery_ids: std::collections::BTreeSet<&str> = sends
                .iter()
                .map(|b| b["delivery_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                delivery_ids.len(),
                1,
                "{id}: step {step} fired once across replicas"
            );
            assert!(
                sends.len() <= 2,
                "{id}: step {step} sent {} times",
                sends.len()
            );
            resends += sends.len() - 1;
        }
    }
    println!(
        "three replicas: {} incidents x 3 steps delivered; {resends} resent after the kill (same delivery id)",
        ids.len()
    );
    assert!(terminate(&mut replicas[0]).await.success());
    assert!(terminate(&mut replicas[2]).await.success());
}

/// Redis killed (SIGKILL) and restarted under load: while it is down ingest answers 503 (so the
/// sender retries) and `/readyz` fails; afterwards everything resumes, and every event that got a
/// 202 is there (Redis with `appendfsync always`; see the note at its start).
#[tokio::test]
async fn redis_killed_and_restarted_under_load_loses_no_accepted_event() {
    let server = std::env::var("VIGIL_TEST_REDIS_SERVER").unwrap_or_else(|_| {
        panic!("VIGIL_TEST_REDIS_SERVER is not set: run scripts/test, which finds redis-server")
    });
    let dir = tempfile::tempdir().unwrap();
    let redis_port = free_port();
    let start_redis = || {
        Command::new(&server)
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            // `always`: a write Redis acknowledged is on disk. With the production `everysec`,
            // a Redis crash can lose the last second or two of acknowledged writes (Redis
            // postpones the AOF write while a slow fsync runs) — that is the stated RPO, and
            // this test saw it happen under load, so it asserts zero loss only with `always`.
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .map(Proc)
            .unwrap()
    };
    let mut redis = start_redis();
    let url = format!("redis://127.0.0.1:{redis_port}/");
    let config = dir.path().join("routing");
    copy_routing(&config);
    let store = ["--redis".as_ref(), url.as_ref()];
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    // vigil needs Redis at start; wait for it to accept connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut vigil = start_with(&config, &store, port);
    wait_ready(&http, &base).await;

    let mut accepted: Vec<String> = Vec::new();
    let (mut unavailable, mut not_ready) = (0, false);
    for n in 0..300 {
        if n == 100 {
            redis.kill().unwrap();
            redis.wait().unwrap();
        }
        if n == 200 {
            redis = start_redis();
        }
        if (100..200).contains(&n) && n % 20 == 0 {
            let r = http.get(format!("{base}/readyz")).send().await.unwrap();
            not_ready |= r.status() == StatusCode::SERVICE_UNAVAILABLE;
        }
        let e = json!({ "kind": "exchange_error", "summary": format!("load {n}"), "dedup_key": format!("load-{n}"), "labels": { "exchange": "binance", "error": "timeout" } });
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(&e)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        match status {
            StatusCode::ACCEPTED => accepted.push(incident_of(&body)),
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            other => panic!("event {n}: unexpected {other}: {body}"),
        }
        if (200..210).contains(&n) {
            // Give the reconnect a moment after the restart.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(unavailable > 0, "503s while Redis was down");
    assert!(not_ready, "/readyz failed while Redis was down");
    assert!(
        accepted.len() >= 150,
        "recovered after the restart: {} accepted",
        accepted.len()
    );
    wait_ready(&http, &base).await;
    let mut found = 0;
    for id in &accepted {
        let r = http
            .get(format!("{base}/v1/incidents/{id}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            found += 1;
        }
    }
    println!(
        "redis kill under load: accepted {} / found {found} / lost {} / 503s {unavailable}",
        accepted.len(),
        accepted.len() - found
    );
    assert_eq!(
        found,
        accepted.len(),
        "every accepted event is in the store"
    );
    assert!(terminate(&mut vigil).await.success());
    redis.kill().unwrap();
    let _ = redis.wait();
}

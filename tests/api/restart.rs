//! A real `vigil serve` process killed with SIGKILL (no clean shutdown) and started again on the
//! same data directory: incidents and due timers survive, and the timers fire. On Redis, two
//! replicas share the state: one is killed, the other delivers what it left behind, and a step
//! the two race for fires once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &std::path::Path, data: &std::path::Path, port: u16) -> Child {
    start_with(config, &["--data".as_ref(), data.as_os_str()], port)
}

fn start_with(config: &std::path::Path, store: &[&std::ffi::OsStr], port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--config")
        .arg(config)
        .args(store)
        .arg("--templates")
        .arg(shipped_templates())
        .env("VIGIL_INGEST_TOKENS", INGEST_TOKEN)
        .env("VIGIL_OPERATOR_TOKENS", OPERATOR_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .expect("vigil binary starts")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("vigil did not become ready at {base}");
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
    let term = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "vigil did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// SIGTERM, then the exit status within 15 s.
async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "vigil did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn on_redis_a_killed_replicas_work_is_done_by_the_others_and_each_step_fires_once() {
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
    let policy = std::fs::read_to_string(config.join("policy.yaml"))
        .unwrap()
        .replace("after: 5m", "after: 3s")
        .replace("after: 10m", "after: 1h");
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
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{port_a}"),
        format!("http://127.0.0.1:{port_b}"),
    );
    let mut a = start_with(&config, &store, port_a);
    let mut b = start_with(&config, &store, port_b);
    wait_ready(&http, &base_a).await;
    wait_ready(&http, &base_b).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let mut e = fixture_json("bot-trading-halted.json");
        e["dedup_key"] = json!(format!("halt-{n}"));
        let r = http
            .post(format!("{base_a}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(&e)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(incident_of(&body));
    }
    a.kill().unwrap();
    a.wait().unwrap();
    // A second replica joins again, so two schedulers race for every step from here on.
    let mut a2 = start_with(&config, &store, port_a);
    wait_ready(&http, &base_a).await;
    for id in &ids {
        let r = http
            .get(format!("{base_b}/v1/incidents/{id}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        let (status, inc) = answer(r).await;
        assert_eq!(status, StatusCode::OK, "replica B sees {id}: {inc}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pages = received(&sink).await;
        let done = ids.iter().all(|id| {
            ["trigger", "escalate"].iter().all(|kind| {
                pages
                    .iter()
                    .any(|b| b["incident"] == id.as_str() && b["kind"] == *kind)
            })
        });
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer, so a second firing of a step would have shown up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pages = received(&sink).await;
    for id in &ids {
        let count = |kind: &str| {
            pages
                .iter()
                .filter(|b| b["incident"] == id.as_str() && b["kind"] == kind)
                .count()
        };
        assert!(count("trigger") >= 1, "{id}: the first page was delivered");
        assert_eq!(
            count("escalate"),
            1,
            "{id}: step 2 fired once across replicas"
        );
    }
    assert!(terminate(&mut a2).await.success());
    assert!(terminate(&mut b).await.success());
}

//! kill -9 under load: a real `vigil serve` on the embedded store takes 10,000 events (unique
//! dedup keys) from 16 concurrent clients while it is SIGKILLed and restarted four times.
//! Clients retry on connection errors and count an event as accepted only on a 2xx. Afterwards
//! every accepted incident is found through the API, and every incident's second step (due 2 s
//! after it opened, so many come due while the process is dead) reached the webhook sink.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::campaign::{heavy, report, runtime};
use crate::helpers::*;

const EVENTS: usize = 10_000;
const CLIENTS: usize = 16;
/// Kill points, as numbers of accepted events.
const KILL_AT: [usize; 4] = [1_500, 3_500, 5_500, 7_500];

fn start(config: &Path, data: &Path, port: u16) -> Proc {
    let mut cmd = serve_command(
        crate::VIGIL,
        config,
        &["--data".as_ref(), data.as_os_str()],
        port,
    );
    cmd.env("RUST_LOG", "error");
    Proc::spawn(cmd)
}

/// The webhook sink: answers 200 and remembers which (incident, step) pages it got, so counting
/// 20,000 pages does not mean re-reading them all.
#[derive(Clone, Default)]
struct Sink {
    pages: Arc<Mutex<HashMap<String, HashSet<u64>>>>,
    received: Arc<AtomicUsize>,
}

impl Respond for Sink {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.received.fetch_add(1, Ordering::Relaxed);
        if let Ok(b) = serde_json::from_slice::<Value>(&req.body)
            && let (Some(id), Some(step)) = (b["incident"].as_str(), b["step"][1].as_u64())
        {
            self.pages
                .lock()
                .unwrap()
                .entry(id.to_string())
                .or_default()
                .insert(step);
        }
        ResponseTemplate::new(200)
    }
}

impl Sink {
    fn with_step(&self, ids: &[String], step: u64) -> usize {
        let pages = self.pages.lock().unwrap();
        ids.iter()
            .filter(|id| pages.get(*id).is_some_and(|s| s.contains(&step)))
            .count()
    }
}

/// Two steps through the webhook, the second 2 s after the first; every event is medium; no storm
/// grouping. (The critical policy exists because the desk's invariants require it.)
fn write_policy(dir: &Path, sink: &str) {
    std::fs::create_dir_all(dir).unwrap();
    webhook_policy(sink)(dir);
    let policy = std::fs::read_to_string(dir.join("policy.yaml")).unwrap().replace(
        "      - { after: 0m, targets: [{ schedule: primary }], via: [hook] }\n",
        "      - { after: 0m, targets: [{ schedule: primary }], via: [hook] }\n      - { after: 2s, targets: [{ schedule: primary }], via: [hook] }\n",
    );
    assert!(
        policy.contains("after: 2s"),
        "the simple policy has two steps"
    );
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    // One incident per event is what is checked: no storm grouping.
    std::fs::write(
        dir.join("storm.yaml"),
        "storm: { max_new_per_minute: 4000000000 }\n",
    )
    .unwrap();
}

#[test]
fn kill_9_under_load_loses_no_accepted_event_and_every_due_step_fires() {
    let _heavy = heavy();
    runtime().block_on(kill9());
}

async fn kill9() {
    let started = Instant::now();
    let sink_state = Sink::default();
    let sink = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(sink_state.clone())
        .mount(&sink)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    write_policy(&config, &sink.uri());
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let child = Arc::new(Mutex::new(start(&config, &data, port)));
    wait_ready(&http, &base).await;

    let next = Arc::new(AtomicUsize::new(0));
    let accepted_n = Arc::new(AtomicUsize::new(0));
    let accepted: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let retries = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    // The killer: SIGKILL at each kill point, then start again on the same data and port
    // without waiting (clients keep retrying meanwhile).
    let killer = {
        let (child, accepted_n, done) = (child.clone(), accepted_n.clone(), done.clone());
        let (config, data) = (config.clone(), data.clone());
        tokio::spawn(async move {
            let mut restarts = 0;
            for at in KILL_AT {
                while accepted_n.load(Ordering::SeqCst) < at {
                    if done.load(Ordering::SeqCst) {
                        return restarts;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let mut c = child.lock().unwrap();
                c.kill().unwrap();
                c.wait().unwrap();
                *c = start(&config, &data, port);
                restarts += 1;
            }
            restarts
        })
    };

    let load_started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            let (next, accepted_n, accepted, retries) = (
                next.clone(),
                accepted_n.clone(),
                accepted.clone(),
                retries.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= EVENTS {
                        return;
                    }
                    let event = json!({
                        "kind": "exchange_error",
                        "summary": format!("load {n}"),
                        "dedup_key": format!("kill9-{n}"),
                        "labels": { "exchange": "binance", "n": n.to_string() },
                    });
                    let give_up = Instant::now() + Duration::from_secs(120);
                    loop {
                        assert!(Instant::now() < give_up, "event {n} never accepted");
                        let r = http
                            .post(format!("{base}/v1/events"))
                            .bearer_auth(INGEST_TOKEN)
                            .json(&event)
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => {
                                let body: Value = r.json().await.unwrap_or(Value::Null);
                                // A 2xx whose body was cut by the kill counts as not accepted:
                                // the client cannot know it was, so it retries.
                                if let Some(id) = body["results"][0]["incidents"][0].as_str() {
                                    accepted.lock().unwrap().push((n, id.to_string()));
                                    accepted_n.fetch_add(1, Ordering::SeqCst);
                                    break;
                                }
                            }
                            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {}
                            Ok(r) => panic!("event {n}: HTTP {}", r.status()),
                            Err(_) => {}
                        }
                        retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let load_took = load_started.elapsed();
    let restarts = killer.await.unwrap();
    wait_ready(&http, &base).await;

    // Every accepted event is an incident the API shows.
    let accepted = accepted.lock().unwrap().clone();
    let ids: Vec<String> = accepted.iter().map(|(_, id)| id.clone()).collect();
    let found = futures::stream::iter(ids.clone())
        .map(|id| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .get(format!("{base}/v1/incidents/{id}"))
                    .bearer_auth(OPERATOR_TOKEN)
                    .send()
                    .await
                    .unwrap();
                r.status() == StatusCode::OK
            }
        })
        .buffer_unordered(CLIENTS)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    let distinct: HashSet<&String> = ids.iter().collect();

    // Every incident's first and second step reach the sink.
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut first, mut second);
    loop {
        first = sink_state.with_step(&ids, 0);
        second = sink_state.with_step(&ids, 1);
        if (first == ids.len() && second == ids.len()) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let pages = sink_state.received.load(Ordering::Relaxed);
    let lost = ids.len() - found;
    report(&format!(
        "kill -9 campaign: accepted={} found={found} lost={lost} restarts={restarts} \
         (distinct incidents {}, client retries {}, step 1 paged {first}, step 2 paged {second}, \
         {pages} pages; load {:.1} s, total {:.1} s)",
        ids.len(),
        distinct.len(),
        retries.load(Ordering::Relaxed),
        load_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(ids.len(), EVENTS, "every event was accepted in the end");
    assert_eq!(distinct.len(), EVENTS, "one incident per dedup key");
    assert_eq!(lost, 0, "every accepted event is in the store");
    assert!(restarts >= 3, "killed and restarted at least 3 times");
    assert_eq!(first, ids.len(), "every incident's first step fired");
    assert_eq!(second, ids.len(), "every incident's due second step fired");
    let mut c = child.lock().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "vigil did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

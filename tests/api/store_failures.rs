//! When the store fails (issue 10, item 1): a full disk under the embedded store, and a store
//! that refuses to record what the delivery worker did. vigil answers 503 while it cannot
//! commit, says so on `/readyz` and in a metric, recovers by itself, and never re-sends a
//! delivery in a loop because its outcome could not be written down.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil::store::Store;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    ObservedStore, Options, incident_of, spawn_app_with, test_redis_store, webhook_policy,
};

/// How many times the sink received the delivery with this Idempotency-Key.
async fn sends_of(sink: &MockServer, key: &str) -> usize {
    sink.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                == Some(key)
        })
        .count()
}

async fn idempotency_keys(sink: &MockServer) -> Vec<String> {
    sink.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("idempotency-key")?
                .to_str()
                .ok()
                .map(String::from)
        })
        .collect()
}

fn deliveries(inc: &Value) -> Vec<Value> {
    inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "delivery")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_sent_delivery_whose_record_fails_is_not_sent_again_on_the_embedded_store() {
    sent_delivery_whose_record_fails_is_not_sent_again(false).await;
}

#[tokio::test]
async fn a_sent_delivery_whose_record_fails_is_not_sent_again_on_redis() {
    sent_delivery_whose_record_fails_is_not_sent_again(true).await;
}

/// The worker sends, the store refuses the record: the delivery is held back (the same bounded
/// backoff as a failed send) and only its record is retried. The provider hears it once.
async fn sent_delivery_whose_record_fails_is_not_sent_again(redis: bool) {
    let sink = crate::helpers::ok_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = if redis {
        Arc::new(test_redis_store().await)
    } else {
        Arc::new(vigil::store::EmbeddedStore::open(dir.path()).unwrap())
    };
    let store = Arc::new(ObservedStore::new(inner));
    store.refuse_finish.store(true, Ordering::SeqCst);
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        store: Some(store.clone()),
        ..Default::default()
    })
    .await;
    let (status, body) = app
        .post_events(&crate::helpers::fixture(
            "bot-exchange-error-rate-limited.json",
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = incident_of(&body);

    // The app's own delivery loop runs on real time; give it a second and a half to storm,
    // as it did before (every ~5 ms), and drive it by hand as well.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        app.handle.run_deliveries().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = idempotency_keys(&sink).await;
    assert_eq!(
        keys.len(),
        1,
        "one send, not a storm (main sent it {} times)",
        keys.len()
    );
    assert!(
        deliveries(&app.incident(&id).await).is_empty(),
        "nothing recorded yet"
    );
    assert!(
        app.metrics()
            .await
            .contains("vigil_delivery_record_failures_total"),
        "the failures to record are counted"
    );

    // The store takes writes again: the record is made once the hold ends, and nothing is
    // sent again.
    store.refuse_finish.store(false, Ordering::SeqCst);
    app.advance(Duration::from_secs(1)).await;
    let inc = app.incident(&id).await;
    let recorded = deliveries(&inc);
    assert_eq!(recorded.len(), 1, "{inc:#}");
    assert_eq!(recorded[0]["outcome"], "sent");
    assert_eq!(recorded[0]["attempt"], 1);
    assert_eq!(sends_of(&sink, &keys[0]).await, 1, "still one send");
    app.advance(Duration::from_secs(600)).await;
    assert_eq!(sends_of(&sink, &keys[0]).await, 1, "and no more later");
}

/// A small tmpfs, unmounted when dropped; `None` (with the reason printed) where this process
/// cannot mount one (not root, no tmpfs).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({}); the disk-full test needs root",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); the disk-full test needs root");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system at `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    let _ = f.sync_all();
    path
}

fn event(n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "exchange_error",
        "summary": format!("disk-full test event {n}"),
        "status": "firing",
        "dedup_key": format!("disk-full-{n}"),
        "labels": { "exchange": "binance", "error": "timeout" },
        // Big enough that each new incident needs fresh pages.
        "details": { "padding": "x".repeat(48 * 1024) },
    }))
    .unwrap()
}

/// The embedded store on a full disk: ingest answers 503, `/readyz` is red with the reason and
/// `vigil_store_writable` is 0; once space is freed the store re-opens itself within seconds and
/// nothing acknowledged is lost.
#[tokio::test]
async fn a_full_disk_refuses_ingest_turns_readiness_red_and_recovers_by_itself() {
    let Some(tmpfs) = Tmpfs::mount("8m") else {
        return;
    };
    // The provider answers slowly, so the disk fills while the sends are in flight and their
    // attempts cannot be recorded.
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(300)))
        .mount(&sink)
        .await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        data_dir: Some(tmpfs.path().join("data")),
        ..Default::default()
    })
    .await;
    let mut accepted = Vec::new();
    for n in 0..20 {
        let (status, body) = app.post_events(&event(n)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.push(incident_of(&body));
    }
    let filler = fill(tmpfs.path());
    // Two seconds for the delivery loop to storm, as it did (every ~5 ms), while the disk is
    // full.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut refused = false;
    for n in 20..200 {
        let (status, body) = app.post_events(&event(n)).await;
        match status {
            StatusCode::ACCEPTED => accepted.push(incident_of(&body)),
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = true;
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(refused, "a full disk must refuse ingest with 503");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let problems = body["problems"].to_string();
    assert!(problems.contains("store cannot write"), "{body}");
    assert!(
        app.metrics().await.contains("vigil_store_writable 0"),
        "the metric says so"
    );
    // Still refused while the disk stays full: no partial recovery.
    let (status, _) = app.post_events(&event(1000)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    loop {
        let (status, body) = app.get("/readyz").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "the store did not recover within 10 s of space being freed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = freed.elapsed();
    // While the disk was full, the worker kept sending what was due; no delivery went out in a
    // loop because its attempt could not be recorded.
    let keys = idempotency_keys(&sink).await;
    let mut per_key = std::collections::HashMap::<&str, usize>::new();
    for k in &keys {
        *per_key.entry(k).or_default() += 1;
    }
    let most = per_key.values().copied().max().unwrap_or(0);
    eprintln!(
        "disk-full: ready again {recovery:?} after space was freed; {} POSTs for {} deliveries, at most {most} per delivery",
        keys.len(),
        per_key.len()
    );
    assert!(most <= 1, "a delivery was sent {most} times");
    let (status, body) = app.post_events(&event(2000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    accepted.push(incident_of(&body));
    assert!(app.metrics().await.contains("vigil_store_writable 1"));
    let listed: Vec<String> = app
        .incidents()
        .await
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    for id in &accepted {
        assert!(listed.contains(id), "accepted incident {id} was lost");
    }
}

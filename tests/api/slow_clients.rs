//! Slow, idle, numerous and unauthenticated clients against a real `vigil serve` process
//! (issue 10 items 2 and 3), on loopback, bounded in count and time. Raw TCP, so the tests can
//! send half a request and then nothing.
//!
//! Every wait is bounded; none asserts speed. Figures (the real sender's latencies during the
//! slowloris, the process's memory around the unauthenticated flood) are printed for
//! BENCHMARKS.md: `cargo test --test api slow_clients -- --nocapture`.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::*;

struct Vigil {
    proc: Proc,
    addr: SocketAddr,
    base: String,
    _dir: tempfile::TempDir,
}

/// A real `vigil serve` on a free port, with the shipped policy and `env` on top.
async fn start(env: &[(&str, &str)]) -> Vigil {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("routing");
    copy_routing(&config);
    let port = free_port();
    let data = dir.path().join("data");
    let mut cmd = serve_command(
        crate::VIGIL,
        &config,
        &["--data".as_ref(), data.as_os_str()],
        port,
    );
    cmd.env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let proc = Proc(cmd.spawn().expect("vigil binary starts"));
    let base = format!("http://127.0.0.1:{port}");
    // No pooled connection is left open to count against the connection cap.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    wait_ready(&http, &base).await;
    Vigil {
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        base,
        _dir: dir,
    }
}

/// Reads an answer's head: its status and its headers (lower-cased), or `None` when the
/// connection ends (or fails) first.
async fn read_head(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let status = head.split_whitespace().nth(1)?.parse().ok()?;
            return Some((status, head));
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}

/// Reads a whole answer of a kept-alive connection (its head, then `content-length` bytes).
async fn read_answer(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let status = head.split_whitespace().nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return Some(status);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether the server closes the connection within `within` (whatever it sends first).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

const GET_HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: vigil\r\n\r\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_off_after_the_header_timeout_while_real_senders_are_answered() {
    const SLOW: usize = 300;
    let header_timeout = Duration::from_secs(1);
    let vigil = start(&[("VIGIL_HEADER_TIMEOUT", "1s")]).await;
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        // Before the connect: vigil's header clock starts at its accept, after this.
        let opened = Instant::now();
        let mut s = TcpStream::connect(vigil.addr).await.unwrap();
        s.write_all(b"POST /v1/events HTTP/1.1\r\nhost: vigil\r\ncontent-type: appl")
            .await
            .unwrap();
        slow.push((opened, s));
    }
    let cut_off: Vec<_> = slow
        .into_iter()
        .map(|(opened, mut s)| {
            tokio::spawn(async move {
                let closed = closed_within(&mut s, Duration::from_secs(20)).await;
                (closed, opened.elapsed())
            })
        })
        .collect();
    // A real sender meanwhile: one request after the other until the slowloris is over.
    let http = reqwest::Client::new();
    let event = fixture("bot-exchange-error-timeout.json");
    let mut latencies = Vec::new();
    while latencies.len() < 400 && cut_off.iter().any(|h| !h.is_finished()) {
        let started = Instant::now();
        let resp = http
            .post(format!("{}/v1/events", vigil.base))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(event.clone())
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("the real sender is answered during the slowloris");
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut closed = 0;
    for h in cut_off {
        let (was_closed, after) = h.await.unwrap();
        if was_closed {
            closed += 1;
            assert!(
                after >= header_timeout,
                "a slow connection was closed before the header timeout ({after:?})"
            );
        }
    }
    assert_eq!(
        closed, SLOW,
        "every slow-header connection is cut off after the header timeout"
    );
    assert!(!latencies.is_empty());
    latencies.sort();
    eprintln!(
        "slowloris: {SLOW} slow-header connections; real sender {} requests, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    drop(vigil.proc);
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_and_closes_when_idle() {
    let vigil = start(&[("VIGIL_HEADER_TIMEOUT", "1s"), ("VIGIL_IDLE_TIMEOUT", "3s")]).await;
    let mut s = TcpStream::connect(vigil.addr).await.unwrap();
    s.write_all(GET_HEALTHZ).await.unwrap();
    assert_eq!(read_answer(&mut s).await, Some(200));
    // Idle for longer than the header timeout, shorter than the idle timeout: still served.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(GET_HEALTHZ).await.unwrap();
    assert_eq!(read_answer(&mut s).await, Some(200));
    assert!(
        closed_within(&mut s, Duration::from_secs(20)).await,
        "an idle kept-alive connection is closed after the idle timeout"
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_gets_408() {
    let vigil = start(&[("VIGIL_BODY_TIMEOUT", "1s")]).await;
    let mut s = TcpStream::connect(vigil.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: vigil\r\nauthorization: Bearer {INGEST_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"kind\": "
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), read_head(&mut s))
        .await
        .expect("an answer, not a hang");
    assert_eq!(answer.map(|a| a.0), Some(408));
}

#[tokio::test]
async fn connections_over_the_cap_get_503_not_a_hang() {
    const CAP: usize = 20;
    let vigil = start(&[("VIGIL_MAX_CONNECTIONS", "20")]).await;
    // Fill the cap with kept-alive connections (the readiness probe's may take a moment to go).
    let mut held = Vec::new();
    for _ in 0..200 {
        if held.len() == CAP {
            break;
        }
        let mut s = TcpStream::connect(vigil.addr).await.unwrap();
        s.write_all(GET_HEALTHZ).await.unwrap();
        match read_answer(&mut s).await {
            Some(200) => held.push(s),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert_eq!(held.len(), CAP);
    for _ in 0..10 {
        let mut s = TcpStream::connect(vigil.addr).await.unwrap();
        let _ = s.write_all(GET_HEALTHZ).await;
        let answer = tokio::time::timeout(Duration::from_secs(20), read_head(&mut s))
            .await
            .expect("an answer, not a hang");
        let (status, head) = answer.expect("an answer before the close");
        assert_eq!(status, 503, "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains("retry-after:"), "{head}");
        assert!(closed_within(&mut s, Duration::from_secs(20)).await);
    }
    // The held connections still work, and once they go, new ones are served again.
    for s in &mut held {
        s.write_all(GET_HEALTHZ).await.unwrap();
        assert_eq!(read_answer(s).await, Some(200));
    }
    drop(held);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = http
            .get(format!("{}/healthz", vigil.base))
            .send()
            .await
            .map(|r| r.status());
        if matches!(status, Ok(StatusCode::OK)) {
            break;
        }
        assert!(Instant::now() < deadline, "served again: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const DECLARED: usize = 262_000;
const MB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_bodies_get_401_unread_and_memory_comes_back() {
    // Half the clients send their whole body (all of it in the server's hands at once, if the
    // server reads it), half send none.
    const SENDERS: usize = 500;
    const SILENT: usize = 300;
    let vigil = start(&[]).await;
    let pid = vigil.proc.id();
    let http = reqwest::Client::new();
    let event = fixture("bot-exchange-error-timeout.json");
    // Warm up: the first requests allocate what every request reuses.
    for _ in 0..20 {
        let resp = http
            .post(format!("{}/v1/events", vigil.base))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(event.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let (before, _) = memory(pid);
    let body = Arc::new(vec![b' '; DECLARED]);
    let all_sent = Arc::new(tokio::sync::Barrier::new(SENDERS));
    let head = |path: &str, token: Option<&str>| {
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        format!(
            "POST {path} HTTP/1.1\r\nhost: vigil\r\n{auth}content-type: application/json\r\n\
             content-length: {DECLARED}\r\n\r\n"
        )
    };
    let mut clients = Vec::new();
    for i in 0..SENDERS + SILENT {
        let mut s = TcpStream::connect(vigil.addr).await.unwrap();
        let (path, token) = match i % 3 {
            0 => ("/v1/events", None),
            1 => ("/v1/events", Some("not-a-token")),
            _ => ("/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A/ack", None),
        };
        let head = head(path, token);
        let body = body.clone();
        let all_sent = all_sent.clone();
        clients.push(tokio::spawn(async move {
            let _ = s.write_all(head.as_bytes()).await;
            if i < SENDERS {
                // All but the last byte, then wait for every sender: a server that buffers
                // bodies holds all of them at once. Writes fail once vigil has refused and
                // closed: that is fine, its answer is already on the way.
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    s.write_all(&body[..DECLARED - 1]),
                )
                .await;
                let _ = tokio::time::timeout(Duration::from_secs(20), all_sent.wait()).await;
                let _ = s.write_all(&body[DECLARED - 1..]).await;
            }
            let answer = tokio::time::timeout(Duration::from_secs(20), read_head(&mut s)).await;
            (answer.ok().flatten().map(|a| a.0), s)
        }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    let mut open = Vec::new();
    for c in clients {
        let (status, s) = c.await.unwrap();
        *statuses.entry(status).or_insert(0) += 1;
        open.push(s);
    }
    let (during, peak) = memory(pid);
    drop(open);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, _) = memory(pid);
    eprintln!(
        "unauthenticated flood: {} connections declaring {DECLARED} B ({SENDERS} sending it): \
         RSS before {} MB, peak {} MB, with the connections open {} MB, after {} MB",
        SENDERS + SILENT,
        before / MB,
        peak / MB,
        during / MB,
        after / MB
    );
    assert_eq!(
        statuses,
        [(Some(401), SENDERS + SILENT)].into_iter().collect(),
        "every unauthenticated request gets 401 (None: no answer)"
    );
    // An authenticated request still works.
    let resp = http
        .post(format!("{}/v1/events", vigil.base))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/json")
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(
        peak.saturating_sub(before) < 100 * MB,
        "the server buffered unauthenticated bodies: RSS {} MB -> peak {} MB",
        before / MB,
        peak / MB
    );
    assert!(
        after.saturating_sub(before) < 50 * MB,
        "memory did not come back: {} MB -> {} MB",
        before / MB,
        after / MB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bodies_in_flight_are_capped_with_503_and_retry_after() {
    // More SNS requests than vigil reads at once, each declaring a body it never sends.
    const CLIENTS: usize = 80;
    let vigil = start(&[("VIGIL_BODY_TIMEOUT", "3s")]).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(vigil.addr).await.unwrap();
        clients.push(tokio::spawn(async move {
            let head = format!(
                "POST /v1/ingest/sns HTTP/1.1\r\nhost: vigil\r\ncontent-type: text/plain\r\n\
                 x-amz-sns-message-type: Notification\r\ncontent-length: {DECLARED}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            tokio::time::timeout(Duration::from_secs(20), read_head(&mut s))
                .await
                .ok()
                .flatten()
        }));
    }
    let (mut timed_out, mut refused) = (0, 0);
    for c in clients {
        match c.await.unwrap() {
            Some((408, _)) => timed_out += 1,
            Some((503, head)) => {
                assert!(head.contains("retry-after: 1"), "{head}");
                refused += 1;
            }
            other => panic!("expected 408 (body timeout) or 503 (no slot), got {other:?}"),
        }
    }
    eprintln!("signed bodies: {timed_out} read until the body timeout, {refused} refused");
    assert!(
        refused >= 1 && timed_out >= 1,
        "{timed_out} x 408, {refused} x 503"
    );
}

#[tokio::test]
async fn on_sigterm_a_request_in_flight_is_answered_and_idle_connections_close() {
    let mut vigil = start(&[]).await;
    let mut idle = TcpStream::connect(vigil.addr).await.unwrap();
    idle.write_all(GET_HEALTHZ).await.unwrap();
    assert_eq!(read_answer(&mut idle).await, Some(200));
    let event = fixture("bot-exchange-error-timeout.json");
    let (first, rest) = event.split_at(event.len() / 2);
    let mut in_flight = TcpStream::connect(vigil.addr).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: vigil\r\nauthorization: Bearer {INGEST_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        event.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(first).await.unwrap();
    // Let vigil read the head and start the handler, which then waits for the rest of the body.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Command::new("kill")
        .args(["-TERM", &vigil.proc.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        closed_within(&mut idle, Duration::from_secs(10)).await,
        "a connection between requests is closed at shutdown"
    );
    in_flight.write_all(rest).await.unwrap();
    let (status, head) = tokio::time::timeout(Duration::from_secs(10), read_head(&mut in_flight))
        .await
        .expect("an answer, not a hang")
        .expect("the request in flight is answered");
    assert_eq!(status, 202, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(status) = vigil.proc.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "vigil did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
}

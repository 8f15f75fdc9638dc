//! Issue 12: a primary and its warm standby, real `vigil serve` processes on loopback, each with
//! its own store, both receiving every alert; the providers are a wiremock sink. Steps are a few
//! seconds apart and `--takeover-after 3s`, so each test takes seconds; every wait is bounded.
//!
//! Pages are told apart by (summary, step): the two processes give an incident different ids.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

pub(crate) const PEER_TOKEN: &str = "peer-secret-for-tests";
pub(crate) const TAKEOVER_AFTER: Duration = Duration::from_secs(3);
/// The follower's poll (`pipeline::peer::PEER_POLL`).
pub(crate) const POLL: Duration = Duration::from_secs(2);
pub(crate) const UNREACHABLE: &str = "vigil primary unreachable since";

/// The webhook policy with its critical chain at `steps` (the three `after:`s), and the rule
/// that pages `kind="peer_unreachable"` as critical (as the shipped rules do).
pub(crate) fn policy(dir: &std::path::Path, sink: &str, steps: [&str; 3]) -> std::path::PathBuf {
    let config = dir.join("routing");
    std::fs::create_dir_all(&config).unwrap();
    webhook_policy(sink)(&config);
    let yaml = std::fs::read_to_string(config.join("policy.yaml"))
        .unwrap()
        .replace("after: 0m", &format!("after: {}", steps[0]))
        .replace("after: 5m", &format!("after: {}", steps[1]))
        .replace("after: 10m", &format!("after: {}", steps[2]))
        .replace(
            "  - name: catch-all",
            "  - name: peer\n    matchers: ['kind=\"peer_unreachable\"']\n    severity: critical\n  - name: catch-all",
        );
    std::fs::write(config.join("policy.yaml"), yaml).unwrap();
    config
}

pub(crate) async fn sink() -> MockServer {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    sink
}

/// One side: `vigil serve` with its own data directory and the peer flags.
fn side(
    config: &std::path::Path,
    data: &std::path::Path,
    port: u16,
    peer_flags: &[String],
) -> Proc {
    let mut cmd = serve_command(
        crate::VIGIL,
        config,
        &["--data".as_ref(), data.as_os_str()],
        port,
    );
    cmd.args(peer_flags)
        .args(["--takeover-after", "3s"])
        .env("VIGIL_PEER_TOKENS", PEER_TOKEN);
    cmd.spawn().map(Proc).expect("vigil binary starts")
}

pub(crate) fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

pub(crate) struct Pair {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    primary_data: std::path::PathBuf,
    pub(crate) primary: Proc,
    standby: Proc,
    pub(crate) p: String,
    pub(crate) s: String,
    p_port: u16,
    /// Where the primary reaches its standby.
    s_peer_url: String,
    pub(crate) http: reqwest::Client,
}

impl Pair {
    /// A primary (following its standby with `--peer`) and its standby, both ready, each having
    /// seen the other.
    pub(crate) async fn start(sink: &MockServer, steps: [&str; 3]) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let config = policy(dir.path(), &sink.uri(), steps);
        let (p_port, s_port) = (free_port(), free_port());
        let (to_p, to_s) = (base(p_port), base(s_port));
        let primary_data = dir.path().join("primary");
        let primary = side(
            &config,
            &primary_data,
            p_port,
            &["--peer".into(), to_s.clone()],
        );
        let standby = side(
            &config,
            &dir.path().join("standby"),
            s_port,
            &["--standby-of".into(), to_p.clone()],
        );
        let http = reqwest::Client::new();
        let (p, s) = (base(p_port), base(s_port));
        wait_ready(&http, &p).await;
        wait_ready(&http, &s).await;
        let pair = Pair {
            _dir: dir,
            config,
            primary_data,
            primary,
            standby,
            p,
            s,
            p_port,
            s_peer_url: to_s,
            http,
        };
        saw_each_other(&pair.http, &pair.p, &pair.s).await;
        pair
    }

    pub(crate) async fn until<F, Fut>(&self, what: &str, within: Duration, check: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        until(what, within, check).await
    }

    /// Posts the same bot event (one `occurred_at`) to each of `to`; the incident id on each.
    pub(crate) async fn alert(&self, name: &str, to: &[&str]) -> Vec<String> {
        post_halt(&self.http, name, to).await
    }

    async fn incident(&self, b: &str, id: &str) -> Value {
        let r = self
            .http
            .get(format!("{b}/v1/incidents/{id}"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await
            .unwrap();
        answer(r).await.1
    }

    /// The open incident with `summary` on `b`, if any.
    pub(crate) async fn find(&self, b: &str, summary: &str) -> Option<Value> {
        let found = open_entry(&self.http, b, summary).await?;
        Some(self.incident(b, found["id"].as_str()?).await)
    }

    async fn ack(&self, b: &str, id: &str) {
        let r = self
            .http
            .post(format!("{b}/v1/incidents/{id}/ack"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&json!({"by": "ana"}))
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        assert!(status.is_success(), "ack on {b}: {status} {body}");
    }
}

/// Waits (bounded) until `check` holds.
pub(crate) async fn until<F, Fut>(what: &str, within: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the primary at `p` pages (not held, its standby seen) and the standby at `s`
/// has read the primary.
async fn saw_each_other(http: &reqwest::Client, p: &str, s: &str) {
    // A setup wait, generous for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pv = peer_view(http, p).await;
        let sv = peer_view(http, s).await;
        if pv["held"] == false
            && pv["peer_last_seen"].is_string()
            && sv["role"] == "standby"
            && sv["peer_last_seen"].is_string()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the two sides did not see each other: primary {pv}, standby {sv}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Posts the same bot event (one `occurred_at`) to each of `to`; the incident id on each.
pub(crate) async fn post_halt(http: &reqwest::Client, name: &str, to: &[&str]) -> Vec<String> {
    let mut e = fixture_json("bot-trading-halted.json");
    e["dedup_key"] = json!(format!("halt-{name}"));
    e["summary"] = json!(name);
    e["occurred_at"] = json!(chrono::Utc::now().to_rfc3339());
    let mut ids = Vec::new();
    for b in to {
        let r = http
            .post(format!("{b}/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .json(&e)
            .send()
            .await
            .unwrap();
        let (status, body) = answer(r).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{b}: {body}");
        ids.push(incident_of(&body));
    }
    ids
}

/// The list entry of the open incident with `summary` on `b`, if any.
pub(crate) async fn open_entry(http: &reqwest::Client, b: &str, summary: &str) -> Option<Value> {
    let r = http
        .get(format!("{b}/v1/incidents?status=open&limit=100"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .ok()?;
    let (_, body) = answer(r).await;
    let list = body
        .as_array()
        .cloned()
        .or_else(|| body["incidents"].as_array().cloned())?;
    list.into_iter().find(|i| i["summary"] == summary)
}

/// Waits until the standby at `s` has read a feed in which the primary's webhook page of
/// `summary` is no longer in the primary's outbox: from then on a death of the primary is
/// outside the duplicate window (README: a page delivered within the last poll before the
/// primary went dark, still in its outbox at the standby's last read, is sent again).
pub(crate) async fn past_the_duplicate_window(http: &reqwest::Client, s: &str, summary: &str) {
    until(
        "the standby saw the primary's page delivered",
        POLL * 4,
        || async {
            let Some(entry) = open_entry(http, s, summary).await else {
                return false;
            };
            let r = http
                .get(format!(
                    "{s}/v1/incidents/{}",
                    entry["id"].as_str().unwrap_or("")
                ))
                .bearer_auth(OPERATOR_TOKEN)
                .send()
                .await;
            let Ok(r) = r else { return false };
            let inc: Value = r.json().await.unwrap_or_default();
            inc["step"].as_u64() >= Some(1)
                && inc["peer_undelivered"]
                    .as_array()
                    .is_none_or(|pages| pages.iter().all(|p| p["channel"] != "hook"))
        },
    )
    .await;
}

/// Whether `b` shows the open incident `summary` past its first step (it mirrored step 0).
async fn past_first_step(http: &reqwest::Client, b: &str, summary: &str) -> bool {
    open_entry(http, b, summary)
        .await
        .is_some_and(|i| i["step"].as_u64() >= Some(1))
}

pub(crate) async fn peer_view(http: &reqwest::Client, b: &str) -> Value {
    match http
        .get(format!("{b}/v1/peer"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Pages (trigger and escalate) by (summary, [loop, step]), counted.
pub(crate) async fn pages(sink: &MockServer) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for b in received(sink).await {
        if b["kind"] == "trigger" || b["kind"] == "escalate" {
            let summary = b["summary"].as_str().unwrap_or_default().to_string();
            let summary = if summary.starts_with(UNREACHABLE) {
                UNREACHABLE.to_string()
            } else {
                summary
            };
            *out.entry((summary, b["step"].to_string())).or_insert(0) += 1;
        }
    }
    out
}

pub(crate) fn step(l: u32, s: u32) -> String {
    json!([l, s]).to_string()
}

pub(crate) async fn paged(sink: &MockServer, summary: &str, st: &str) -> usize {
    pages(sink)
        .await
        .get(&(summary.to_string(), st.to_string()))
        .copied()
        .unwrap_or(0)
}

/// Waits until (summary, step) has been paged, up to `within`; how long it took.
pub(crate) async fn wait_page(
    sink: &MockServer,
    summary: &str,
    st: &str,
    within: Duration,
) -> Duration {
    let start = Instant::now();
    loop {
        if paged(sink, summary, st).await > 0 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{summary} step {st} was not paged within {within:?}; pages: {:?}",
            pages(sink).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn assert_each_once(pages: &BTreeMap<(String, String), usize>) {
    for ((summary, st), n) in pages {
        assert_eq!(*n, 1, "{summary} step {st} paged {n} times: {pages:?}");
    }
}

/// The step (position) the other side shows for this incident: mirrored once `step` moved.
async fn mirrored_step(pair: &Pair, b: &str, summary: &str) -> Option<(u64, u64)> {
    let inc = pair.find(b, summary).await?;
    Some((inc["loop_"].as_u64()?, inc["step"].as_u64()?))
}

#[tokio::test]
async fn steady_state_every_step_is_paged_once_by_the_primary_and_acks_on_either_side_hold_both() {
    let sink = sink().await;
    let pair = Pair::start(&sink, ["0s", "5s", "9s"]).await;
    let both = [pair.p.as_str(), pair.s.as_str()];
    let _ = pair.alert("chain", &both).await;
    let on_standby = pair.alert("acked-on-standby", &both).await;
    let on_primary = pair.alert("acked-on-primary", &both).await;
    wait_page(
        &sink,
        "acked-on-primary",
        &step(0, 0),
        Duration::from_secs(5),
    )
    .await;
    pair.ack(&pair.s, &on_standby[1]).await;
    pair.ack(&pair.p, &on_primary[0]).await;
    // Each side learns the other's ack within a poll (the steps are 5 s apart).
    pair.until("the acks are mirrored", POLL * 2, || async {
        pair.incident(&pair.p, &on_standby[0]).await["status"] == "acknowledged"
            && pair.incident(&pair.s, &on_primary[1]).await["status"] == "acknowledged"
    })
    .await;
    wait_page(&sink, "chain", &step(0, 2), Duration::from_secs(15)).await;
    tokio::time::sleep(POLL).await;
    // Nothing was paged by the standby: its gate stayed closed.
    let view = peer_view(&pair.http, &pair.s).await;
    assert_eq!(view["takeovers"], 0, "the standby never took over: {view}");
    let pages = pages(&sink).await;
    assert_each_once(&pages);
    for st in [step(0, 0), step(0, 1), step(0, 2)] {
        assert!(
            pages.contains_key(&("chain".into(), st.clone())),
            "chain {st}: {pages:?}"
        );
    }
    for acked in ["acked-on-standby", "acked-on-primary"] {
        assert_eq!(
            pages.keys().filter(|(s, _)| s == acked).count(),
            1,
            "{acked}: only its first page: {pages:?}"
        );
    }
    let timeline = pair.incident(&pair.p, &on_standby[0]).await;
    assert!(
        timeline["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "acknowledged" && e["origin"] == "peer" && e["by"] == "ana"),
        "the primary's timeline says the ack came from the peer: {timeline}"
    );
    let ready: Value = pair
        .http
        .get(format!("{}/readyz", pair.s))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["role"], "standby", "{ready}");
    assert_eq!(ready["paging"], false, "{ready}");
}

#[tokio::test]
async fn the_primary_killed_mid_escalation_the_standby_pages_the_next_steps_once_and_its_own_incident()
 {
    let sink = sink().await;
    let mut pair = Pair::start(&sink, ["0s", "7s", "1h"]).await;
    let both = [pair.p.as_str(), pair.s.as_str()];
    pair.alert("before-kill", &both).await;
    wait_page(&sink, "before-kill", &step(0, 0), Duration::from_secs(5)).await;
    // The standby has seen the first step fired before the kill: outside the duplicate window.
    pair.until("the standby mirrored step 0", POLL * 3, || async {
        mirrored_step(&pair, &pair.s, "before-kill").await == Some((0, 1))
    })
    .await;
    past_the_duplicate_window(&pair.http, &pair.s, "before-kill").await;
    let killed = Instant::now();
    pair.primary.kill().unwrap();
    pair.primary.wait().unwrap();
    let only_standby = [pair.s.as_str()];
    pair.alert("after-kill", &only_standby).await;
    // takeover-after + a poll + the feed request and a margin for a loaded machine.
    let bound = TAKEOVER_AFTER + POLL + Duration::from_secs(3);
    wait_page(&sink, UNREACHABLE, &step(0, 0), bound).await;
    wait_page(&sink, "after-kill", &step(0, 0), bound).await;
    let took = killed.elapsed();
    // Step 1 was due 7 s after the open: no later than its delay + takeover-after + a poll.
    wait_page(
        &sink,
        "before-kill",
        &step(0, 1),
        Duration::from_secs(7) + bound,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pages = pages(&sink).await;
    assert_each_once(&pages);
    let view = peer_view(&pair.http, &pair.s).await;
    assert_eq!(view["role"], "active-standby", "{view}");
    assert_eq!(view["takeovers"], 1, "{view}");
    assert!(
        view["takeover_reason"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{view}"
    );
    let inc = pair.find(&pair.s, "before-kill").await.unwrap();
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "takeover"),
        "the takeover is on the timeline: {inc}"
    );
    let metrics = pair
        .http
        .get(format!("{}/metrics", pair.s))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vigil_peer_takeovers_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("vigil_peer_role 2"), "{metrics}");
    eprintln!("takeover: first page {took:?} after the SIGKILL");
}

/// A Redis server of the test's own, so the test can kill it under the primary.
pub(crate) struct Redis(pub(crate) Proc, pub(crate) u16);

pub(crate) fn redis() -> Redis {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts (scripts/test needs it too)");
    Redis(Proc(child), port)
}

#[tokio::test]
async fn the_primary_whose_store_is_down_answers_not_ready_and_the_standby_takes_over() {
    let sink = sink().await;
    let mut redis = redis();
    let dir = tempfile::tempdir().unwrap();
    let config = policy(dir.path(), &sink.uri(), ["0s", "6s", "1h"]);
    let (p_port, s_port) = (free_port(), free_port());
    let http = reqwest::Client::new();
    let redis_url = format!("redis://127.0.0.1:{}", redis.1);
    // The primary on its Redis (started once Redis answers), the standby on its own disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", redis.1)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut cmd = serve_command(
        crate::VIGIL,
        &config,
        &["--redis".as_ref(), redis_url.as_ref()],
        p_port,
    );
    cmd.args(["--peer", &base(s_port), "--takeover-after", "3s"])
        .env("VIGIL_PEER_TOKENS", PEER_TOKEN);
    let _primary = cmd.spawn().map(Proc).unwrap();
    let _standby = side(
        &config,
        &dir.path().join("standby"),
        s_port,
        &["--standby-of".into(), base(p_port)],
    );
    let (p, s) = (base(p_port), base(s_port));
    wait_ready(&http, &p).await;
    wait_ready(&http, &s).await;
    saw_each_other(&http, &p, &s).await;
    post_halt(&http, "store-down", &[&p, &s]).await;
    wait_page(&sink, "store-down", &step(0, 0), Duration::from_secs(5)).await;
    until(
        "the standby mirrored step 0",
        Duration::from_secs(6),
        || past_first_step(&http, &s, "store-down"),
    )
    .await;
    past_the_duplicate_window(&http, &s, "store-down").await;
    // The primary's store goes away: the process lives and answers, not ready.
    redis.0.kill().unwrap();
    redis.0.wait().unwrap();
    let broke = Instant::now();
    let bound = POLL + Duration::from_secs(4);
    wait_page(&sink, UNREACHABLE, &step(0, 0), bound).await;
    let view = peer_view(&http, &s).await;
    assert_eq!(view["role"], "active-standby", "{view}");
    assert!(
        view["takeover_reason"]
            .as_str()
            .unwrap()
            .contains("not ready"),
        "{view}"
    );
    assert!(
        broke.elapsed() < TAKEOVER_AFTER + POLL + Duration::from_secs(2),
        "not ready is taken over at once, not after takeover-after"
    );
    wait_page(
        &sink,
        "store-down",
        &step(0, 1),
        Duration::from_secs(6) + bound,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_each_once(&pages(&sink).await);
}

/// A TCP proxy the test can cut (every connection dropped, new ones closed at accept) and heal.
struct Proxy {
    port: u16,
}

async fn proxy(to: u16, cut: Arc<AtomicBool>) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let c = cut.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if c.load(Ordering::SeqCst) {
                drop(inbound);
                continue;
            }
            let c = c.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                else {
                    return;
                };
                let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                let watch = async {
                    while !c.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! { _ = copy => {}, _ = watch => {} }
            });
        }
    });
    Proxy { port }
}

#[tokio::test]
async fn a_partition_duplicates_only_steps_due_after_takeover_after_and_after_healing_one_side_pages()
 {
    let sink = sink().await;
    let cut = Arc::new(AtomicBool::new(false));
    // The ports the processes will listen on, known before they start: the proxies dial them.
    // Two proxies, one per direction, behind one switch, forwarding to the ports the processes
    // will listen on.
    let (p_port, s_port) = (free_port(), free_port());
    let to_p = proxy(p_port, cut.clone()).await;
    let to_s = proxy(s_port, cut.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = policy(dir.path(), &sink.uri(), ["0s", "5s", "20s"]);
    let _primary = side(
        &config,
        &dir.path().join("p"),
        p_port,
        &["--peer".into(), base(to_s.port)],
    );
    let _standby = side(
        &config,
        &dir.path().join("s"),
        s_port,
        &["--standby-of".into(), base(to_p.port)],
    );
    let http = reqwest::Client::new();
    let (p, s) = (base(p_port), base(s_port));
    wait_ready(&http, &p).await;
    wait_ready(&http, &s).await;
    saw_each_other(&http, &p, &s).await;
    post_halt(&http, "split", &[&p, &s]).await;
    let opened = Instant::now();
    wait_page(&sink, "split", &step(0, 0), Duration::from_secs(5)).await;
    // The standby has seen step 0 fired before the cut (step 1 is due 5 s after the open).
    until(
        "the standby mirrored step 0 before the cut",
        Duration::from_secs(3),
        || past_first_step(&http, &s, "split"),
    )
    .await;
    past_the_duplicate_window(&http, &s, "split").await;
    cut.store(true, Ordering::SeqCst);
    let cut_at = Instant::now();
    // Both alive: the primary pages step 1 (due during the partition); the standby takes over
    // after takeover-after and may page it again: the stated bound.
    wait_page(
        &sink,
        UNREACHABLE,
        &step(0, 0),
        TAKEOVER_AFTER + POLL + Duration::from_secs(4),
    )
    .await;
    let before_takeover = pages(&sink).await;
    assert_eq!(
        before_takeover.get(&("split".into(), step(0, 0))),
        Some(&1),
        "a step due before the partition is never paged twice"
    );
    let split_takeover = peer_view(&http, &s).await;
    assert_eq!(split_takeover["role"], "active-standby");
    assert!(
        cut_at.elapsed() >= TAKEOVER_AFTER,
        "no takeover before takeover-after"
    );
    assert_eq!(
        peer_view(&http, &p).await["held"],
        false,
        "the primary cannot see its standby: it keeps paging"
    );
    // Heal: the primary sees its standby active and holds; from then on one side pages.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cut.store(false, Ordering::SeqCst);
    until(
        "the primary holds after the partition healed",
        POLL * 3,
        || async { peer_view(&http, &p).await["held"] == true },
    )
    .await;
    let healed = opened.elapsed();
    assert!(
        healed < Duration::from_secs(19),
        "healed ({healed:?}) before step 2 is due, so it tests one pager"
    );
    wait_page(&sink, "split", &step(0, 2), Duration::from_secs(25)).await;
    tokio::time::sleep(POLL).await;
    let pages = pages(&sink).await;
    assert_eq!(
        pages.get(&("split".into(), step(0, 0))),
        Some(&1),
        "{pages:?}"
    );
    assert!(
        pages
            .get(&("split".into(), step(0, 1)))
            .copied()
            .unwrap_or(0)
            <= 2,
        "due during the partition: at most twice: {pages:?}"
    );
    assert_eq!(
        pages.get(&("split".into(), step(0, 2))),
        Some(&1),
        "due after healing: once: {pages:?}"
    );
}

#[tokio::test]
async fn the_primary_restarted_after_a_takeover_holds_until_the_hand_back_and_no_step_is_paged_twice()
 {
    let sink = sink().await;
    let mut pair = Pair::start(&sink, ["0s", "6s", "18s"]).await;
    let both = [pair.p.as_str(), pair.s.as_str()];
    pair.alert("across-hand-back", &both).await;
    wait_page(
        &sink,
        "across-hand-back",
        &step(0, 0),
        Duration::from_secs(5),
    )
    .await;
    pair.until("the standby mirrored step 0", POLL * 3, || async {
        mirrored_step(&pair, &pair.s, "across-hand-back").await == Some((0, 1))
    })
    .await;
    past_the_duplicate_window(&pair.http, &pair.s, "across-hand-back").await;
    pair.primary.kill().unwrap();
    pair.primary.wait().unwrap();
    pair.until(
        "the standby took over",
        TAKEOVER_AFTER + POLL * 3,
        || async { peer_view(&pair.http, &pair.s).await["role"] == "active-standby" },
    )
    .await;
    // No primary to hand back to: refused.
    let r = pair
        .http
        .post(format!("{}/v1/peer/hand-back", pair.s))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // The primary comes back on its own data: it holds (the standby is active) and mirrors.
    pair.primary = side(
        &pair.config,
        &pair.primary_data,
        pair.p_port,
        &["--peer".into(), pair.s_peer_url.clone()],
    );
    wait_ready(&pair.http, &pair.p).await;
    pair.until("the restarted primary holds", POLL * 3, || async {
        let v = peer_view(&pair.http, &pair.p).await;
        v["held"] == true && v["peer_role"] == "active-standby"
    })
    .await;
    wait_page(
        &sink,
        "across-hand-back",
        &step(0, 1),
        Duration::from_secs(10),
    )
    .await;
    pair.until(
        "the primary mirrored the standby's step 1",
        POLL * 3,
        || async { mirrored_step(&pair, &pair.p, "across-hand-back").await == Some((0, 2)) },
    )
    .await;
    // One command.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["hand-back", "--url", &pair.s])
        .env("VIGIL_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vigil hand-back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(peer_view(&pair.http, &pair.s).await["role"], "standby");
    pair.until("the primary pages again", POLL * 2, || async {
        peer_view(&pair.http, &pair.p).await["held"] == false
    })
    .await;
    wait_page(
        &sink,
        "across-hand-back",
        &step(0, 2),
        Duration::from_secs(20),
    )
    .await;
    tokio::time::sleep(POLL).await;
    assert_each_once(&pages(&sink).await);
    let inc = pair.find(&pair.s, "across-hand-back").await.unwrap();
    let types: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        types.contains(&"takeover") && types.contains(&"hand_back"),
        "{types:?}"
    );
    let _ = &pair.standby;
}

/// Answers 503 to the pages of `summary` while `failing` is set (the provider refusing the
/// primary's sends), 200 to every other request.
struct RefuseWhile {
    summary: &'static str,
    failing: Arc<AtomicBool>,
}

impl wiremock::Respond for RefuseWhile {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        if self.failing.load(Ordering::SeqCst) && body["summary"] == self.summary {
            ResponseTemplate::new(503)
        } else {
            ResponseTemplate::new(200)
        }
    }
}

#[tokio::test]
async fn a_page_the_primary_fired_but_had_not_delivered_when_it_died_is_delivered_by_the_standby() {
    let failing = Arc::new(AtomicBool::new(true));
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/page"))
        .respond_with(RefuseWhile {
            summary: "stuck",
            failing: failing.clone(),
        })
        .mount(&sink)
        .await;
    let mut pair = Pair::start(&sink, ["0s", "1h", "2h"]).await;
    let both = [pair.p.as_str(), pair.s.as_str()];
    pair.alert("stuck", &both).await;
    // The primary fired step 0 (the standby follows its position) but the provider refuses it:
    // the page waits in the primary's outbox for its next attempt.
    pair.until("the standby mirrored step 0", POLL * 3, || async {
        mirrored_step(&pair, &pair.s, "stuck").await == Some((0, 1))
    })
    .await;
    pair.until(
        "the provider refused the primary's page",
        Duration::from_secs(5),
        || async { paged(&sink, "stuck", &step(0, 0)).await > 0 },
    )
    .await;
    // The standby has read a feed that lists the page still in the primary's outbox.
    pair.until("the standby saw the page undelivered", POLL * 3, || async {
        pair.find(&pair.s, "stuck").await.is_some_and(|inc| {
            inc["peer_undelivered"]
                .as_array()
                .is_some_and(|pages| pages.iter().any(|p| p["channel"] == "hook"))
        })
    })
    .await;
    pair.primary.kill().unwrap();
    pair.primary.wait().unwrap();
    failing.store(false, Ordering::SeqCst);
    let before = paged(&sink, "stuck", &step(0, 0)).await;
    let bound = TAKEOVER_AFTER + POLL + Duration::from_secs(3);
    wait_page(&sink, UNREACHABLE, &step(0, 0), bound).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while paged(&sink, "stuck", &step(0, 0)).await == before {
        assert!(
            Instant::now() < deadline,
            "the page the primary never delivered was not sent by the standby: {:?}",
            pages(&sink).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        paged(&sink, "stuck", &step(0, 0)).await,
        before + 1,
        "sent once by the standby"
    );
    let inc = pair.find(&pair.s, "stuck").await.unwrap();
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "peer_resent" && e["by"] == "primary"),
        "the timeline says the standby sent what the primary had not: {inc}"
    );
}

/// The status notices (`kind` acknowledged / resolved) the sink received for `summary`.
async fn notices(sink: &MockServer, summary: &str, kind: &str) -> usize {
    received(sink)
        .await
        .iter()
        .filter(|b| b["kind"] == kind && b["summary"] == summary)
        .count()
}

#[tokio::test]
async fn an_ack_and_a_resolve_made_on_the_passive_standby_are_told_once_by_the_primary() {
    let sink = sink().await;
    let pair = Pair::start(&sink, ["0s", "1h", "2h"]).await;
    let both = [pair.p.as_str(), pair.s.as_str()];
    let ids = pair.alert("taken-on-standby", &both).await;
    wait_page(
        &sink,
        "taken-on-standby",
        &step(0, 0),
        Duration::from_secs(5),
    )
    .await;
    // Someone acknowledges through the standby (its console, a link that reached it).
    pair.ack(&pair.s, &ids[1]).await;
    pair.until("the primary told the people it paged", POLL * 3, || async {
        notices(&sink, "taken-on-standby", "acknowledged").await > 0
    })
    .await;
    let r = pair
        .http
        .post(format!("{}/v1/incidents/{}/resolve", pair.s, ids[1]))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({"by": "ana"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    pair.until("the primary told the resolve", POLL * 3, || async {
        notices(&sink, "taken-on-standby", "resolved").await > 0
    })
    .await;
    tokio::time::sleep(POLL * 2).await;
    assert_eq!(notices(&sink, "taken-on-standby", "acknowledged").await, 1);
    assert_eq!(notices(&sink, "taken-on-standby", "resolved").await, 1);
    assert_eq!(
        pair.incident(&pair.p, &ids[0]).await["status"],
        "resolved",
        "the primary mirrored the resolve"
    );
}

#[tokio::test]
async fn a_standby_that_cannot_reach_its_providers_still_takes_over_and_says_why() {
    let sink = sink().await;
    // The standby's provider refuses it (revoked credentials in the DR region): every page it
    // sends fails for good.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&refusing)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = policy(dir.path(), &sink.uri(), ["0s", "1h", "2h"]);
    let standby_config = policy(&dir.path().join("dr"), &refusing.uri(), ["0s", "1h", "2h"]);
    let (p_port, s_port) = (free_port(), free_port());
    let mut primary = side(
        &config,
        &dir.path().join("p"),
        p_port,
        &["--peer".into(), base(s_port)],
    );
    let _standby = side(
        &standby_config,
        &dir.path().join("s"),
        s_port,
        &["--standby-of".into(), base(p_port)],
    );
    let http = reqwest::Client::new();
    let (p, s) = (base(p_port), base(s_port));
    wait_ready(&http, &p).await;
    wait_ready(&http, &s).await;
    saw_each_other(&http, &p, &s).await;
    primary.kill().unwrap();
    primary.wait().unwrap();
    // It takes over all the same: a pager pages what it can.
    until(
        "the standby took over",
        TAKEOVER_AFTER + POLL * 3,
        || async { peer_view(&http, &s).await["role"] == "active-standby" },
    )
    .await;
    until(
        "the standby tried its provider",
        Duration::from_secs(10),
        || async { !received(&refusing).await.is_empty() },
    )
    .await;
    // /readyz says why: the critical "primary unreachable" incident reached no one.
    until(
        "/readyz names the incident that reached no one",
        Duration::from_secs(10),
        || async {
            let r = http.get(format!("{s}/readyz")).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or_default();
            status == StatusCode::SERVICE_UNAVAILABLE
                && body.to_string().contains("reached no one")
                && body.to_string().contains(UNREACHABLE)
        },
    )
    .await;
    let ready: Value = http
        .get(format!("{s}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["role"], "active-standby", "{ready}");
    // And so does the timeline: each failed delivery, then the step that reached no one.
    let list: Value = http
        .get(format!("{s}/v1/incidents?status=open&limit=100"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = list
        .as_array()
        .cloned()
        .or_else(|| list["incidents"].as_array().cloned())
        .unwrap();
    let own = entries
        .iter()
        .find(|i| i["summary"].as_str().unwrap_or("").starts_with(UNREACHABLE))
        .expect("the standby's own incident is open");
    let inc: Value = http
        .get(format!("{s}/v1/incidents/{}", own["id"].as_str().unwrap()))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let timeline = inc["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|e| e["type"] == "delivery"
            && e["outcome"] == "failed"
            && e["detail"].as_str().unwrap_or("").contains("403")),
        "the refusal is on the timeline: {inc}"
    );
    assert!(
        timeline.iter().any(|e| e["type"] == "unreached"),
        "the step that reached no one is on the timeline: {inc}"
    );
    assert!(
        received(&sink)
            .await
            .iter()
            .all(|b| !b["summary"].as_str().unwrap_or("").starts_with(UNREACHABLE)),
        "the primary's provider never heard from the standby"
    );
}

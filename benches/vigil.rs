//! vigil's benchmark suite, in one process (plus short-lived child processes for the scale
//! figures, so their RSS and start-up time are vigil's alone):
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo bench --bench vigil -- [--quick] [--redis URL] \
//!     [--only ingest,dedup,latency,scale] [--reps N]
//! ```
//!
//! It starts a webhook sink standing in for the provider (counts notifications, records when each
//! incident's first page arrived), vigil in-process through `App::build` (the embedded store in a
//! temp dir, always fsynced, or Redis with `--redis`), and a minimal axum handler that only parses
//! the JSON and answers 202 (the HTTP floor). Its own load generator drives them on 127.0.0.1:
//! - ingest: new alarms per second on `/v1/events`, one event per request at 16 and 64
//!   connections and 100-event batches; every first page must reach the sink;
//! - dedup: the same alarms again (no new incident, no page);
//! - latency: open loop at 50, 200 and 1,000 events/s, from the POST being sent to the sink receiving the page;
//! - scale: RSS at 10k/50k/100k open incidents with pending timers, scheduler lag of timers
//!   coming due one by one while 100k are pending, the drain of 100k timers due at the same
//!   instant, start to ready with 100k open incidents.
//!
//! Each figure is the median (min–max) over `--reps` repetitions (3) and, where it applies, a
//! fraction of the floor measured in the same run. Every measurement is bounded in time.
//!
//! `cargo test --all-targets` runs bench targets without `--bench`: then this does nothing.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use vigil::app::{App, AppError, AppHandle};
use vigil::clock::{Clock, SystemClock};
use vigil::settings::{RedisSettings, Secret, Settings};

/// The allocator `vigil serve` runs with (src/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-ingest-token";
const BATCH: u64 = 100;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "vigil-bench",
    about = "vigil's benchmark suite (see BENCHMARKS.md)"
)]
struct Opts {
    /// Passed by `cargo bench`; without it (`cargo test --all-targets`) nothing runs.
    #[arg(long)]
    bench: bool,
    /// Shorter windows (about 2 minutes in all).
    #[arg(long)]
    quick: bool,
    /// Run vigil on this Redis (a scratch one: keys under `{bench-…}` are deleted afterwards)
    /// instead of the embedded store.
    #[arg(long)]
    redis: Option<String>,
    /// Only these measurements: ingest, dedup, latency, scale (dedup implies ingest).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Repetitions of every measurement.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Internal: run as a scale child (`populate` or `ready`).
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true)]
    data: Option<PathBuf>,
    #[arg(long, hide = true)]
    prefix: Option<String>,
    #[arg(long, hide = true, value_delimiter = ',')]
    counts: Vec<u64>,
    #[arg(long, hide = true, default_value_t = 30)]
    lag_limit_s: u64,
    /// For profiling (`perf record`): run only this ingest shape (0: single event at 16
    /// connections, 1: at 64, 2: 100-event batches), without the floor.
    #[arg(long)]
    shape: Option<usize>,
    /// What cargo may pass on (test-name filters): ignored.
    #[arg(hide = true)]
    rest: Vec<String>,
}

impl Opts {
    fn wants(&self, what: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|o| o == what)
            || (what == "ingest" && self.only.iter().any(|o| o == "dedup"))
    }
}

fn main() {
    let raw: Vec<String> = std::env::args().collect();
    if !raw.iter().any(|a| a == "--bench") {
        eprintln!("benches/vigil.rs: not invoked by `cargo bench`; skipping.");
        return;
    }
    let opts = Opts::parse();
    if let Some(child) = opts.child.clone() {
        run_child(&child, &opts);
        return;
    }
    run_main(opts);
}

// ---------------------------------------------------------------------------------------------
// Statistics and reporting

#[derive(Clone, Debug, Default)]
struct Series(Vec<f64>);

impl Series {
    fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }
    fn median(&self) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }
    fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn fmt_num(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_series(s: &Series) -> String {
    format!(
        "{} ({}–{})",
        fmt_num(s.median()),
        fmt_num(s.min()),
        fmt_num(s.max())
    )
}

#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    /// At least this fraction of the floor's median.
    FloorFraction(f64),
}

struct Row {
    name: String,
    unit: &'static str,
    value: Series,
    floor: Option<(Series, bool)>,
    target: Option<Target>,
    note: String,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn add(&mut self, row: Row) {
        println!("  {}", render_row(&row));
        self.rows.push(row);
    }
    fn note(&mut self, n: impl Into<String>) {
        let n = n.into();
        println!("  NOTE: {n}");
        self.notes.push(n);
    }
}

/// `higher` = bigger is better (throughput): the fraction is vigil / floor; for latencies it is
/// floor / vigil. Either way 100 % means "as good as the bare HTTP handler".
fn floor_fraction(value: &Series, floor: &Series, higher: bool) -> f64 {
    if higher {
        value.median() / floor.median()
    } else {
        floor.median() / value.median()
    }
}

fn verdict(row: &Row) -> Option<(String, bool)> {
    let m = row.value.median();
    let t = row.target?;
    Some(match t {
        Target::AtLeast(x) => (format!("≥ {} {}", fmt_num(x), row.unit), m >= x),
        Target::AtMost(x) => (format!("≤ {} {}", fmt_num(x), row.unit), m <= x),
        Target::FloorFraction(f) => {
            let (floor, higher) = row.floor.as_ref()?;
            let frac = floor_fraction(&row.value, floor, *higher);
            (format!("≥ {:.0} % of floor", f * 100.0), frac >= f)
        }
    })
}

fn render_row(row: &Row) -> String {
    let mut s = format!("{:<48} {} {}", row.name, fmt_series(&row.value), row.unit);
    if let Some((floor, higher)) = &row.floor {
        s += &format!(
            " | floor {} {} → {:.0} % of floor",
            fmt_series(floor),
            row.unit,
            floor_fraction(&row.value, floor, *higher) * 100.0
        );
    }
    if let Some((t, ok)) = verdict(row) {
        s += &format!(" | target {t}: {}", if ok { "MET" } else { "MISSED" });
    }
    if !row.note.is_empty() {
        s += &format!(" | {}", row.note);
    }
    s
}

fn markdown(report: &Report, header: &str) -> String {
    let mut out = format!(
        "{header}\n\n| measurement | vigil median (min–max) | floor median (min–max) | % of floor | target | result | notes |\n|---|---|---|---|---|---|---|\n"
    );
    for row in &report.rows {
        let (floor, frac) = match &row.floor {
            Some((f, higher)) => (
                format!("{} {}", fmt_series(f), row.unit),
                format!("{:.0} %", floor_fraction(&row.value, f, *higher) * 100.0),
            ),
            None => ("–".into(), "–".into()),
        };
        let (target, result) = match verdict(row) {
            Some((t, ok)) => (t, if ok { "met" } else { "**missed**" }.to_string()),
            None => ("–".into(), "–".into()),
        };
        out += &format!(
            "| {} | {} {} | {} | {} | {} | {} | {} |\n",
            row.name,
            fmt_series(&row.value),
            row.unit,
            floor,
            frac,
            target,
            result,
            row.note
        );
    }
    for n in &report.notes {
        out += &format!("\n- {n}");
    }
    out + "\n"
}

// ---------------------------------------------------------------------------------------------
// The sink (the provider), the floor, and vigil

#[derive(Default)]
struct SinkState {
    total: AtomicU64,
    /// summary → when the incident's first `trigger` page arrived.
    first: Mutex<HashMap<String, Instant>>,
}

impl SinkState {
    fn reset(&self) {
        self.total.store(0, Ordering::SeqCst);
        self.first.lock().unwrap().clear();
    }
    fn pages(&self) -> usize {
        self.first.lock().unwrap().len()
    }
}

#[derive(serde::Deserialize)]
struct Note {
    summary: String,
    kind: String,
}

async fn sink_page(State(s): State<Arc<SinkState>>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    s.total.fetch_add(1, Ordering::Relaxed);
    if let Ok(n) = serde_json::from_slice::<Note>(&body)
        && n.kind == "trigger"
    {
        s.first.lock().unwrap().entry(n.summary).or_insert(at);
    }
    StatusCode::OK
}

/// Starts the sink on its own thread and single-threaded runtime, like a separate process.
fn start_sink() -> (SocketAddr, Arc<SinkState>) {
    let state = Arc::new(SinkState::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let st = state.clone();
    std::thread::Builder::new()
        .name("bench-sink".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new().route("/page", post(sink_page)).with_state(st);
                axum::serve(listener, app).await.unwrap();
            });
        })
        .unwrap();
    (rx.recv().unwrap(), state)
}

/// The HTTP floor: parse the JSON, answer 202.
async fn floor_events(body: Bytes) -> (StatusCode, axum::Json<Value>) {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": a.len()})),
        ),
        Ok(_) => (StatusCode::ACCEPTED, axum::Json(json!({"accepted": 1}))),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "malformed"})),
        ),
    }
}

async fn start_floor(rt: &tokio::runtime::Handle) -> SocketAddr {
    rt.spawn(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = Router::new()
                .route("/v1/events", post(floor_events))
                .route("/readyz", get(|| async { "ok" }));
            axum::serve(listener, app).await.unwrap();
        });
        addr
    })
    .await
    .unwrap()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A policy whose catch-all (medium) rule pages the sink through a webhook at once (`first_after`
/// 0m) and again at `second_after`, so every open incident holds a pending timer. Critical keeps
/// two more channels for the desk's two-channel invariant; the bench never sends critical events.
fn write_policy(dir: &Path, sink: &str, steps: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let steps: String = steps
        .iter()
        .map(|after| {
            format!(
                "      - {{ after: {after}, targets: [{{ schedule: primary }}], via: [hook] }}\n"
            )
        })
        .collect();
    let yaml = format!(
        r#"
timezone: Asia/Singapore
severities:
  critical: {{ respond_within: 5m, policy: critical }}
  high: {{ respond_within: 15m, policy: bench }}
  medium: {{ respond_within: 1h, policy: bench }}
  low: {{ respond_within: 4h, policy: bench }}
people:
  ana: {{ name: Ana Lim, phone: "+6591110001", email: ana@example.com }}
schedules:
  primary:
    rotation: {{ members: [ana], every: 1w, start: "2026-11-02T09:00:00" }}
channels:
  hook: {{ type: webhook, url: "{sink}/page" }}
  sms: {{ type: sms }}
  email: {{ type: email }}
policies:
  critical:
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [hook, sms, email] }}
  bench:
    steps:
{steps}
rules:
  - name: catch-all
    matchers: []
    severity: medium
# Each new incident is what is measured: no storm grouping.
storm: {{ max_new_per_minute: 4000000000 }}
"#
    );
    std::fs::write(dir.join("policy.yaml"), yaml).unwrap();
}

fn settings(config_dir: PathBuf, data_dir: PathBuf, redis: Option<(&str, &str)>) -> Settings {
    let mut s = Settings::new(config_dir, data_dir);
    s.templates_dir = repo().join("templates");
    s.ingest_tokens = vec![Secret::new(TOKEN)];
    s.operator_tokens = vec![Secret::new("bench-operator-token").into()];
    s.watch_config = false;
    s.shutdown_timeout = Duration::from_secs(5);
    if let Some((url, prefix)) = redis {
        let mut r = RedisSettings::new(url);
        r.prefix = prefix.to_string();
        s.redis = Some(r);
    }
    s
}

struct Vigil {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
    _dir: tempfile::TempDir,
    redis: Option<(String, String)>,
}

/// Builds vigil on the server runtime (a fresh temp dir, or a fresh Redis prefix) and runs it.
async fn start_vigil(
    rt: &tokio::runtime::Handle,
    sink: SocketAddr,
    redis: Option<&str>,
    clock: Arc<dyn Clock>,
) -> Vigil {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("routing");
    write_policy(&config_dir, &format!("http://{sink}"), &["0m", "1h"]);
    let redis = redis.map(|url| (url.to_string(), format!("bench-{}", ulid::Ulid::new())));
    let s = settings(
        config_dir,
        dir.path().join("data"),
        redis.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
    );
    let (handle, stop, done) = rt
        .spawn(async move {
            let app = App::build(s, clock).await.expect("vigil builds");
            let handle = app.handle();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let done = tokio::spawn(app.run_until_stopped(async move {
                let _ = rx.await;
            }));
            (handle, tx, done)
        })
        .await
        .unwrap();
    let addr = handle.addr;
    wait_ready(addr, Duration::from_secs(10)).await;
    Vigil {
        addr,
        stop: Some(stop),
        done: Some(done),
        _dir: dir,
        redis,
    }
}

impl Vigil {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), d).await;
        }
        if let Some((url, prefix)) = &self.redis {
            redis_cleanup(url, prefix).await;
        }
    }
}

/// Deletes every key of a bench prefix.
async fn redis_cleanup(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{{{prefix}}}*");
    let mut cursor: u64 = 0;
    loop {
        let r: redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut c)
            .await;
        let Ok((next, keys)) = r else { return };
        if !keys.is_empty() {
            let _: redis::RedisResult<u64> =
                redis::cmd("UNLINK").arg(&keys).query_async(&mut c).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator: raw HTTP/1.1 keep-alive connections, one per simulated client

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn request(
    conn: &mut Conn,
    method: hyper::Method,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), String> {
    conn.ready().await.map_err(|e| e.to_string())?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", concat!("Bearer ", "bench-ingest-token"))
        .header("content-type", "application/json")
        .body(Full::new(body))
        .unwrap();
    let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

async fn post_events(conn: &mut Conn, body: Bytes) -> Result<(u16, Bytes), String> {
    request(conn, hyper::Method::POST, "/v1/events", body).await
}

async fn wait_ready(addr: SocketAddr, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = connect(addr).await
            && let Ok((200, _)) = request(&mut c, hyper::Method::GET, "/readyz", Bytes::new()).await
        {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            panic!("{addr} not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn event(tag: &str, i: u64) -> String {
    format!(
        r#"{{"kind":"bench","summary":"{tag}-{i}","dedup_key":"{tag}-{i}","labels":{{"exchange":"bench"}}}}"#
    )
}

/// Request `i` of a run: one event, or events `i*100 .. i*100+99`.
fn body_for(tag: &str, i: u64, batch: bool) -> Bytes {
    if batch {
        let mut s = String::with_capacity(100 * 110);
        s.push('[');
        for j in 0..BATCH {
            if j > 0 {
                s.push(',');
            }
            s += &event(tag, i * BATCH + j);
        }
        s.push(']');
        Bytes::from(s)
    } else {
        Bytes::from(event(tag, i))
    }
}

fn count(hay: &[u8], needle: &[u8]) -> u64 {
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

#[derive(Default, Debug, Clone, Copy)]
struct LoadResult {
    requests: u64,
    errors: u64,
    events: u64,
    opened: u64,
    updated: u64,
    elapsed: Duration,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// Closed loop: `conns` clients, each sending its next request as soon as the last is answered,
/// for `dur`. `body(i)` is request `i` (a global sequence). `cycle` wraps `i` (replays).
async fn closed_loop(
    addr: SocketAddr,
    conns: usize,
    dur: Duration,
    per_request: u64,
    body: Arc<dyn Fn(u64) -> Bytes + Send + Sync>,
    cycle: Option<u64>,
) -> LoadResult {
    let seq = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(connect(addr).await.expect("connect"));
    }
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for mut conn in clients {
        let seq = seq.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            while Instant::now() < deadline {
                let mut i = seq.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = cycle {
                    i %= c;
                }
                match post_events(&mut conn, body(i)).await {
                    Ok((202, b)) => {
                        r.requests += 1;
                        r.events += per_request;
                        r.opened += count(&b, br#""outcome":"opened""#);
                        r.updated += count(&b, br#""outcome":"updated""#);
                    }
                    Ok(_) => r.errors += 1,
                    Err(_) => {
                        r.errors += 1;
                        match connect(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            (r, Instant::now())
        }));
    }
    let mut total = LoadResult::default();
    let mut end = start;
    for t in tasks {
        let (r, e) = t.await.unwrap();
        total.requests += r.requests;
        total.errors += r.errors;
        total.events += r.events;
        total.opened += r.opened;
        total.updated += r.updated;
        end = end.max(e);
    }
    total.elapsed = end - start;
    total
}

/// Waits until the sink holds `n` first pages, at most `limit`; returns how long it took, or
/// `None` (with what arrived) when it ran out.
async fn wait_pages(sink: &SinkState, n: usize, limit: Duration) -> Result<Duration, usize> {
    let start = Instant::now();
    loop {
        let got = sink.pages();
        if got >= n {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(got);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The main run

struct Ctx {
    opts: Opts,
    server: tokio::runtime::Runtime,
    sink_addr: SocketAddr,
    sink: Arc<SinkState>,
    floor: SocketAddr,
}

fn run_main(opts: Opts) {
    let started = Instant::now();
    // vigil and the floor get the server runtime (as many workers as cores, like `vigil serve`);
    // the load generator has its own, and the sink its own thread: three "processes" on one box.
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("vigil-server")
        .enable_all()
        .build()
        .unwrap();
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("bench-load")
        .enable_all()
        .build()
        .unwrap();
    let (sink_addr, sink) = start_sink();
    let floor = load.block_on(start_floor(server.handle()));
    let store = match &opts.redis {
        Some(url) => format!("Redis at {url}"),
        None => "embedded redb (fsync on every group commit)".into(),
    };
    println!(
        "vigil bench: store = {store}; {} repetitions; {}; {cores} cores",
        opts.reps,
        if opts.quick { "quick" } else { "full" }
    );
    let ctx = Ctx {
        opts: opts.clone(),
        server,
        sink_addr,
        sink,
        floor,
    };
    let mut report = Report::default();
    report.note(format!(
        "load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    ));
    load.block_on(async {
        if opts.wants("ingest") {
            throughput(&ctx, &mut report).await;
        }
        if opts.wants("latency") {
            latency(&ctx, &mut report).await;
        }
    });
    if opts.wants("scale") {
        scale(&ctx, &mut report);
    }
    report.note(format!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    ));
    let header = format!(
        "### Store: {store} — `{}` ({} reps, {:.0} s)",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        opts.reps,
        started.elapsed().as_secs_f64()
    );
    println!("\n{}", markdown(&report, &header));
    drop(ctx);
    load.shutdown_timeout(Duration::from_secs(1));
}

fn clock_system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Ingest and dedup at 16 and 64 connections and in batches, each against the floor.
async fn throughput(ctx: &Ctx, report: &mut Report) {
    let dur = if ctx.opts.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(4)
    };
    let drain_limit = Duration::from_secs(if ctx.opts.quick { 20 } else { 60 });
    let configs: [(&str, usize, bool); 3] = [
        ("single event, 16 connections", 16, false),
        ("single event, 64 connections", 64, false),
        ("100-event batches, 16 connections", 16, true),
    ];
    println!(
        "\n== Ingest and dedup ({} s windows, drain up to {} s)",
        dur.as_secs(),
        drain_limit.as_secs()
    );
    let dedup = ctx.opts.wants("dedup");
    for (ci, (label, conns, batch)) in configs.iter().enumerate() {
        if ctx.opts.shape.is_some_and(|s| s != ci) {
            continue;
        }
        let (mut ingest, mut repeat, mut floor, mut drain, mut paged) = (
            Series::default(),
            Series::default(),
            Series::default(),
            Series::default(),
            Series::default(),
        );
        let mut problems = Vec::new();
        let per = if *batch { BATCH } else { 1 };
        for rep in 0..ctx.opts.reps {
            ctx.sink.reset();
            let v = start_vigil(
                ctx.server.handle(),
                ctx.sink_addr,
                ctx.opts.redis.as_deref(),
                clock_system(),
            )
            .await;
            let tag = format!("t{ci}r{rep}");
            let b = *batch;
            let t = tag.clone();
            let body: Arc<dyn Fn(u64) -> Bytes + Send + Sync> =
                Arc::new(move |i| body_for(&t, i, b));
            let r = closed_loop(v.addr, *conns, dur, per, body.clone(), None).await;
            if r.errors > 0 || r.opened != r.events {
                problems.push(format!(
                    "rep {rep}: {} errors, {} of {} events opened an incident",
                    r.errors, r.opened, r.events
                ));
            }
            ingest.push(r.rate());
            // Every first page must reach the sink.
            match wait_pages(&ctx.sink, r.opened as usize, drain_limit).await {
                Ok(d) => {
                    drain.push(d.as_secs_f64());
                    paged.push(r.opened as f64 / (r.elapsed + d).as_secs_f64());
                }
                Err(got) => {
                    problems.push(format!(
                        "rep {rep}: only {got} of {} first pages reached the sink within {} s",
                        r.opened,
                        drain_limit.as_secs()
                    ));
                    drain.push(f64::INFINITY);
                    paged.push(got as f64 / (r.elapsed + drain_limit).as_secs_f64());
                }
            }
            println!(
                "  [{label} rep {rep}] ingest {:.0} ev/s ({} requests, {} errors); sink had all pages {:.2} s after the load",
                r.rate(),
                r.requests,
                r.errors,
                drain.0.last().unwrap()
            );
            if dedup {
                let pages_before = ctx.sink.total.load(Ordering::SeqCst);
                let n_reqs = r.requests.max(1);
                let d = closed_loop(v.addr, *conns, dur, per, body, Some(n_reqs)).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let pages_after = ctx.sink.total.load(Ordering::SeqCst);
                if d.errors > 0 || d.opened > 0 || d.updated != d.events {
                    problems.push(format!(
                        "dedup rep {rep}: {} errors, {} opened, {} updated of {} events",
                        d.errors, d.opened, d.updated, d.events
                    ));
                }
                if pages_after != pages_before {
                    problems.push(format!(
                        "dedup rep {rep}: {} notifications reached the sink",
                        pages_after - pages_before
                    ));
                }
                repeat.push(d.rate());
                println!(
                    "  [{label} rep {rep}] dedup {:.0} ev/s ({} requests, {} errors, {} new pages)",
                    d.rate(),
                    d.requests,
                    d.errors,
                    pages_after - pages_before
                );
            }
            v.stop().await;
            if ctx.opts.shape.is_some() {
                continue;
            }
            let t = tag.clone();
            let fbody: Arc<dyn Fn(u64) -> Bytes + Send + Sync> =
                Arc::new(move |i| body_for(&format!("{t}f"), i, b));
            let f = closed_loop(ctx.floor, *conns, dur, per, fbody, None).await;
            floor.push(f.rate());
            println!("  [{label} rep {rep}] floor {:.0} ev/s", f.rate());
        }
        let target = match (conns, batch) {
            (16, false) => Some(Target::AtLeast(30_000.0)),
            (_, true) => Some(Target::AtLeast(150_000.0)),
            _ => None,
        };
        let note = if problems.is_empty() {
            "every event opened an incident; every first page reached the sink".to_string()
        } else {
            problems.join("; ")
        };
        report.add(Row {
            name: format!("ingest, new alarms/s — {label}"),
            unit: "ev/s",
            value: ingest,
            floor: Some((floor.clone(), true)),
            target,
            note,
        });
        report.add(Row {
            name: format!("ingest → all first pages at the sink, pages/s — {label}"),
            unit: "pages/s",
            value: paged,
            floor: None,
            target: None,
            note: format!(
                "sink had every page {} s after the load stopped",
                fmt_series(&drain)
            ),
        });
        if dedup {
            report.add(Row {
                name: format!("dedup (same alarms again), alarms/s — {label}"),
                unit: "ev/s",
                value: repeat,
                floor: Some((floor, true)),
                target: Some(Target::FloorFraction(0.5)),
                note: "no new incident, no new page".into(),
            });
        }
    }
}

/// Open loop at a fixed rate: request `i` is due at `start + i/rate` whatever happened to the
/// others (no coordinated omission); latency is measured from that due time.
/// Returns, per request, (due instant, answer instant, status).
/// One request of an open loop: when it was due, when the generator actually sent it, and
/// when a 2xx came back.
struct Sent {
    due: Instant,
    sent: Instant,
    answered: Option<Instant>,
}

/// The generator's lateness (sent − due) percentile, in ms.
fn lateness(sent: &[Sent], q: f64) -> f64 {
    let mut l: Vec<f64> = sent.iter().map(|s| ms(s.sent - s.due)).collect();
    l.sort_by(f64::total_cmp);
    percentile(&l, q)
}

async fn open_loop(
    addr: SocketAddr,
    rate: u64,
    dur: Duration,
    body: Arc<dyn Fn(u64) -> Bytes + Send + Sync>,
) -> Vec<Sent> {
    let n = rate * dur.as_secs();
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..8 {
        let c = connect(addr).await.unwrap();
        pool.lock().unwrap().push(c);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::with_capacity(n as usize);
    let mut i = 0u64;
    while i < n {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep_until(due.into()).await;
            continue;
        }
        let pool = pool.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let conn = pool.lock().unwrap().pop();
            let mut conn = match conn {
                Some(c) => c,
                None => match connect(addr).await {
                    Ok(c) => c,
                    Err(_) => {
                        return Sent {
                            due,
                            sent,
                            answered: None,
                        };
                    }
                },
            };
            let r = post_events(&mut conn, body(i)).await;
            let at = Instant::now();
            let answered = match r {
                Ok((202, _)) => {
                    pool.lock().unwrap().push(conn);
                    Some(at)
                }
                Ok(_) => {
                    pool.lock().unwrap().push(conn);
                    None
                }
                Err(_) => None,
            };
            Sent {
                due,
                sent,
                answered,
            }
        }));
        i += 1;
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn latency(ctx: &Ctx, report: &mut Report) {
    let (dur, floor_dur) = if ctx.opts.quick {
        (Duration::from_secs(3), Duration::from_secs(1))
    } else {
        (Duration::from_secs(20), Duration::from_secs(4))
    };
    println!(
        "\n== Latency: POST sent → the sink has the first page ({} s per rate; floor {} s: POST → 202)",
        dur.as_secs(),
        floor_dur.as_secs()
    );
    for rate in [50u64, 200, 1000] {
        let mut p = [Series::default(), Series::default(), Series::default()];
        let mut ack = [Series::default(), Series::default(), Series::default()];
        let mut fl = [Series::default(), Series::default(), Series::default()];
        let mut late = [Series::default(), Series::default()];
        let mut problems = Vec::new();
        for rep in 0..ctx.opts.reps {
            ctx.sink.reset();
            let v = start_vigil(
                ctx.server.handle(),
                ctx.sink_addr,
                ctx.opts.redis.as_deref(),
                clock_system(),
            )
            .await;
            let tag = format!("l{rate}r{rep}");
            let t = tag.clone();
            let body: Arc<dyn Fn(u64) -> Bytes + Send + Sync> =
                Arc::new(move |i| body_for(&t, i, false));
            let sent = open_loop(v.addr, rate, dur, body).await;
            let ok = sent.iter().filter(|s| s.answered.is_some()).count();
            if let Err(got) = wait_pages(&ctx.sink, ok, Duration::from_secs(10)).await {
                problems.push(format!(
                    "rep {rep}: {got} of {ok} pages reached the sink within 10 s"
                ));
            }
            if ok < sent.len() {
                problems.push(format!(
                    "rep {rep}: {} of {} requests failed",
                    sent.len() - ok,
                    sent.len()
                ));
            }
            let first = ctx.sink.first.lock().unwrap().clone();
            let mut lat = Vec::new();
            let mut acks = Vec::new();
            // From the instant the generator sent the request: tokio's timer wakes the generator
            // up to a millisecond after a request's due instant, which is the generator's delay,
            // not vigil's. How late the generator ran is reported beside the figures, so a
            // generator that fell behind (coordinated omission) would show.
            for (i, s) in sent.iter().enumerate() {
                if let Some(a) = s.answered {
                    acks.push(ms(a - s.sent));
                }
                match first.get(&format!("{tag}-{i}")) {
                    Some(at) => lat.push(ms(at.saturating_duration_since(s.sent))),
                    // A missing page counts as the worst latency there is.
                    None => lat.push(f64::INFINITY),
                }
            }
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
            acks.sort_by(|a, b| a.partial_cmp(b).unwrap());
            for (k, q) in [50.0, 95.0, 99.0].into_iter().enumerate() {
                p[k].push(percentile(&lat, q));
                ack[k].push(percentile(&acks, q));
            }
            v.stop().await;
            let t = tag.clone();
            let fbody: Arc<dyn Fn(u64) -> Bytes + Send + Sync> =
                Arc::new(move |i| body_for(&format!("{t}f"), i, false));
            let fsent = open_loop(ctx.floor, rate, floor_dur, fbody).await;
            let mut f: Vec<f64> = fsent
                .iter()
                .filter_map(|s| s.answered.map(|a| ms(a - s.sent)))
                .collect();
            let (late50, late99) = (lateness(&sent, 50.0), lateness(&sent, 99.0));
            late[0].push(late50);
            late[1].push(late99);
            f.sort_by(|a, b| a.partial_cmp(b).unwrap());
            for (k, q) in [50.0, 95.0, 99.0].into_iter().enumerate() {
                fl[k].push(percentile(&f, q));
            }
            println!(
                "  [{rate}/s rep {rep}] page p50 {:.2} p95 {:.2} p99 {:.2} ms; 202 p50 {:.2} p99 {:.2} ms; floor p50 {:.2} p99 {:.2} ms; generator late p50 {:.2} p99 {:.2} ms",
                percentile(&lat, 50.0),
                percentile(&lat, 95.0),
                percentile(&lat, 99.0),
                percentile(&acks, 50.0),
                percentile(&acks, 99.0),
                percentile(&f, 50.0),
                percentile(&f, 99.0),
                late50,
                late99
            );
        }
        for (k, q) in ["p50", "p95", "p99"].into_iter().enumerate() {
            let target = match (rate, q) {
                (200, "p50") => Some(Target::AtMost(1.0)),
                (200, "p99") => Some(Target::AtMost(5.0)),
                (1000, "p99") => Some(Target::AtMost(20.0)),
                _ => None,
            };
            report.add(Row {
                name: format!("latency POST → page at sink, {q} @ {rate} ev/s"),
                unit: "ms",
                value: p[k].clone(),
                floor: Some((fl[k].clone(), false)),
                target,
                note: {
                    let mut n = format!("vigil's own 202 {q}: {} ms", fmt_series(&ack[k]));
                    if k == 0 {
                        n += &format!(
                            "; generator sent p50 {} / p99 {} ms after the due instant",
                            fmt_series(&late[0]),
                            fmt_series(&late[1])
                        );
                    }
                    for p in &problems {
                        n += &format!("; {p}");
                    }
                    n
                },
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scale: child processes

fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn emit(v: Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "BENCH {v}");
    let _ = out.flush();
}

/// A scale child: `populate` opens `--counts` incidents (in steps) through the incident service
/// and reports RSS at each; `ready` starts vigil on a populated store, reports when `/readyz`
/// answers and the RSS, then makes every timer due at once and reports the scheduler's lag.
fn run_child(kind: &str, opts: &Opts) {
    let started = Instant::now();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let data = opts.data.clone().expect("--data");
        // The sink for the lag test's pages (a thread of its own).
        let (sink_addr, sink) = start_sink();
        let config_dir = data.join("routing");
        // One step, an hour after opening: every open incident holds exactly one timer.
        write_policy(&config_dir, &format!("http://{sink_addr}"), &["1h"]);
        let redis = opts
            .redis
            .as_deref()
            .map(|u| (u, opts.prefix.as_deref().expect("--prefix")));
        let s = settings(config_dir, data.join("data"), redis);
        let clock = Arc::new(BenchClock::frozen(chrono::Utc::now()));
        let app = App::build(s, clock.clone()).await.expect("vigil builds");
        let handle = app.handle();
        let addr = handle.addr;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        wait_ready(addr, Duration::from_secs(120)).await;
        emit(json!({"event": "ready", "internal_ms": ms(started.elapsed())}));
        match kind {
            "populate" => populate(&handle, &clock, &opts.counts).await,
            "ready" => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (rss, hwm) = rss_kb();
                let stats = handle.store.stats().await.unwrap();
                emit(json!({"event": "rss", "n": stats.open_incidents, "timers": stats.timers, "rss_kb": rss, "hwm_kb": hwm}));
                steady_lag(&handle, &clock, Duration::from_secs(opts.lag_limit_s)).await;
                lag(&handle, &clock, &sink, Duration::from_secs(opts.lag_limit_s)).await;
            }
            other => panic!("unknown child {other}"),
        }
        let _ = tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), done).await;
    });
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// The scale children's clock: frozen where it is set (like `ManualClock`), or, after
/// `run_from`, moving with the wall clock from the instant it is given, so that timers come due
/// in real time and their lag is wall time.
struct BenchClock {
    state: Mutex<(chrono::DateTime<chrono::Utc>, Option<Instant>)>,
}

impl BenchClock {
    fn frozen(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            state: Mutex::new((at, None)),
        }
    }
    fn set(&self, at: chrono::DateTime<chrono::Utc>) {
        *self.state.lock().unwrap() = (at, None);
    }
    fn run_from(&self, at: chrono::DateTime<chrono::Utc>) {
        *self.state.lock().unwrap() = (at, Some(Instant::now()));
    }
    fn advance(&self, by: Duration) {
        let now = self.now();
        let mut st = self.state.lock().unwrap();
        let moving = st.1.map(|_| Instant::now());
        *st = (now + chrono::Duration::from_std(by).unwrap(), moving);
    }
}

impl Clock for BenchClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let (at, since) = *self.state.lock().unwrap();
        match since {
            None => at,
            Some(i) => at + chrono::Duration::from_std(i.elapsed()).unwrap(),
        }
    }
}

/// Timers coming due one by one (`STEADY_RATE` a second for `limit`) while the 100k populated
/// ones stay pending: each is opened on the frozen clock an hour before its due instant, then
/// the clock runs with the wall clock and the lag of each is its `Escalated` timeline entry's
/// time minus its due time.
const STEADY_RATE: u64 = 200;

async fn steady_lag(handle: &AppHandle, clock: &Arc<BenchClock>, limit: Duration) {
    let store = handle.store.clone();
    let n = STEADY_RATE * limit.as_secs();
    let gap = chrono::Duration::microseconds(1_000_000 / STEADY_RATE as i64);
    let hour = chrono::Duration::hours(1);
    // The window starts well after the children's start and ends long before the populated
    // timers (an hour after populating) come due.
    let start = clock.now() + chrono::Duration::minutes(10);
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        let due = start + gap * i as i32;
        clock.set(due - hour);
        let body = event("steady", i);
        let alerts = vigil::ingest::parse_events(body.as_bytes(), clock.now()).unwrap();
        match handle.service.ingest(&alerts[0]).await {
            Ok(vigil::pipeline::service::IngestOutcome::Opened(id)) => ids.push((id, due)),
            other => panic!("steady-lag incident {i} did not open: {other:?}"),
        }
    }
    let pending = store.stats().await.unwrap().timers;
    // One second of lead, then every timer comes due in real time.
    clock.run_from(start - chrono::Duration::seconds(1));
    handle.wake.scheduler.notify_one();
    tokio::time::sleep(limit + Duration::from_secs(3)).await;
    // A timer that never fired counts as infinitely late.
    let mut lags = Vec::with_capacity(ids.len());
    let mut missing = 0u64;
    for (id, due) in &ids {
        let fired = store
            .timeline(*id)
            .await
            .unwrap()
            .into_iter()
            .find_map(|e| {
                matches!(e.event, vigil::incident::TimelineEvent::Escalated { .. }).then_some(e.at)
            });
        lags.push(match fired {
            Some(at) => (at - *due).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3,
            None => {
                missing += 1;
                f64::INFINITY
            }
        });
    }
    lags.sort_by(f64::total_cmp);
    let finite = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
    emit(json!({
        "event": "steady_lag", "timers": n, "rate": STEADY_RATE, "pending_before": pending,
        "missing": missing, "p50_ms": finite(percentile(&lags, 50.0)),
        "p99_ms": finite(percentile(&lags, 99.0)), "max_ms": finite(*lags.last().unwrap_or(&0.0)),
    }));
}

async fn populate(handle: &AppHandle, clock: &Arc<BenchClock>, counts: &[u64]) {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    for &target in counts {
        let t0 = Instant::now();
        let from = next.load(Ordering::SeqCst);
        let mut tasks = Vec::new();
        // Enough concurrent ingests for the store's group commit to fill its batches.
        for _ in 0..256 {
            let (next, errors, service, clock) = (
                next.clone(),
                errors.clone(),
                handle.service.clone(),
                clock.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= target {
                        next.fetch_min(target, Ordering::SeqCst);
                        break;
                    }
                    let body = event("scale", i);
                    let alerts = vigil::ingest::parse_events(body.as_bytes(), clock.now())
                        .expect("bench event parses");
                    match service.ingest(&alerts[0]).await {
                        Ok(vigil::pipeline::service::IngestOutcome::Opened(_)) => {}
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let took = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (rss, hwm) = rss_kb();
        let stats = handle.store.stats().await.unwrap();
        emit(json!({
            "event": "rss", "n": stats.open_incidents, "timers": stats.timers,
            "rss_kb": rss, "hwm_kb": hwm, "errors": errors.load(Ordering::SeqCst),
            "ingest_per_s": (target - from) as f64 / took.as_secs_f64(),
        }));
    }
}

async fn lag(handle: &AppHandle, clock: &Arc<BenchClock>, sink: &SinkState, limit: Duration) {
    let store = handle.store.clone();
    let total = store.stats().await.unwrap().timers;
    // Every timer is within the hour after its incident opened: two hours on, all are due.
    clock.advance(Duration::from_secs(2 * 3600));
    let jumped = Instant::now();
    handle.wake.scheduler.notify_one();
    let mut curve: Vec<(f64, u64)> = Vec::new();
    loop {
        let left = store.stats().await.unwrap().timers;
        let fired = total - left.min(total);
        curve.push((ms(jumped.elapsed()), fired));
        if left == 0 || jumped.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = ms(jumped.elapsed());
    let fired = curve.last().map(|c| c.1).unwrap_or(0);
    let at = |q: f64| -> Option<f64> {
        let need = (q * total as f64).ceil() as u64;
        curve.iter().find(|(_, f)| *f >= need).map(|(t, _)| *t)
    };
    let rate = fired as f64 / (elapsed / 1000.0);
    emit(json!({
        "event": "lag", "total": total, "fired": fired, "elapsed_ms": elapsed,
        "p50_ms": at(0.5), "p99_ms": at(0.99),
        // When the run stopped short: when 99 % would have fired at the rate seen so far.
        "p99_extrapolated_ms": (0.99 * total as f64) / rate * 1000.0,
        "fired_per_s": rate,
        "pages_at_sink": sink.total.load(Ordering::SeqCst),
    }));
}

struct ChildOut {
    lines: Vec<(Duration, Value)>,
}

/// Runs this executable as a scale child; returns its `BENCH` lines, each with when it arrived
/// (since the spawn).
fn run_child_process(args: &[String]) -> ChildOut {
    let exe = std::env::current_exe().unwrap();
    let spawned = Instant::now();
    let mut child = std::process::Command::new(exe)
        .arg("--bench")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the scale child");
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if let Some(j) = line.strip_prefix("BENCH ") {
            let v: Value = serde_json::from_str(j).unwrap();
            println!("    child: {v}");
            lines.push((spawned.elapsed(), v));
        }
    }
    let status = child.wait().unwrap();
    if !status.success() {
        println!("    child exited with {status}");
    }
    ChildOut { lines }
}

fn scale(ctx: &Ctx, report: &mut Report) {
    let counts = [10_000u64, 50_000, 100_000];
    let lag_limit = if ctx.opts.quick { 10 } else { 20 };
    println!(
        "\n== Scale ({} open incidents, lag test stops after {lag_limit} s)",
        counts.map(|c| c.to_string()).join("/")
    );
    let mut rss: Vec<Series> = vec![Series::default(); counts.len()];
    let mut ingest_rate = Series::default();
    let (mut ready, mut rss_restart, mut lag50, mut lag99) = (
        Series::default(),
        Series::default(),
        Series::default(),
        Series::default(),
    );
    let (mut steady50, mut steady99) = (Series::default(), Series::default());
    let mut steady_notes = Vec::new();
    let mut lag_notes = Vec::new();
    let mut problems = Vec::new();
    let reps = if ctx.opts.quick { 1 } else { ctx.opts.reps };
    for rep in 0..reps {
        let dir = tempfile::tempdir().unwrap();
        let prefix = format!("bench-scale-{}", ulid::Ulid::new());
        let mut common = vec![
            "--data".to_string(),
            dir.path().display().to_string(),
            "--prefix".into(),
            prefix.clone(),
        ];
        if let Some(url) = &ctx.opts.redis {
            common.extend(["--redis".to_string(), url.clone()]);
        }
        let mut args = vec!["--child".to_string(), "populate".into()];
        args.extend(common.clone());
        args.extend([
            "--counts".to_string(),
            counts.map(|c| c.to_string()).join(","),
        ]);
        let out = run_child_process(&args);
        let mut k = 0;
        for (_, v) in &out.lines {
            if v["event"] == "rss" && k < counts.len() {
                if v["n"].as_u64() != Some(counts[k]) || v["timers"].as_u64() != Some(counts[k]) {
                    problems.push(format!(
                        "rep {rep}: expected {} open incidents and timers, store has {} and {}",
                        counts[k], v["n"], v["timers"]
                    ));
                }
                rss[k].push(v["rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0);
                if let Some(r) = v["ingest_per_s"].as_f64() {
                    ingest_rate.push(r);
                }
                k += 1;
            }
        }
        let mut args = vec!["--child".to_string(), "ready".into()];
        args.extend(common);
        args.extend(["--lag-limit-s".to_string(), lag_limit.to_string()]);
        let out = run_child_process(&args);
        for (at, v) in &out.lines {
            match v["event"].as_str() {
                Some("ready") => ready.push(at.as_secs_f64()),
                Some("rss") => rss_restart.push(v["rss_kb"].as_f64().unwrap_or(f64::NAN) / 1024.0),
                Some("steady_lag") => {
                    // Null means more than 1 % never fired: infinitely late.
                    steady50.push(v["p50_ms"].as_f64().unwrap_or(f64::INFINITY));
                    steady99.push(v["p99_ms"].as_f64().unwrap_or(f64::INFINITY));
                    steady_notes.push(format!(
                        "rep {rep}: {} timers due one by one at {}/s with {} pending, max {} ms, {} never fired",
                        v["timers"], v["rate"], v["pending_before"],
                        v["max_ms"].as_f64().map(fmt_num).unwrap_or("∞".into()), v["missing"]
                    ));
                    if v["pending_before"].as_u64().unwrap_or(0) < counts[counts.len() - 1] {
                        problems.push(format!(
                            "rep {rep}: fewer than 100k timers pending in the steady lag test"
                        ));
                    }
                }
                Some("lag") => {
                    let total = v["total"].as_u64().unwrap_or(0);
                    let fired = v["fired"].as_u64().unwrap_or(0);
                    let p99 = v["p99_ms"].as_f64();
                    lag50.push(v["p50_ms"].as_f64().unwrap_or(
                        v["p99_extrapolated_ms"].as_f64().unwrap_or(f64::NAN) / 0.99 * 0.5,
                    ));
                    let rate = v["fired_per_s"].as_f64().unwrap_or(0.0);
                    match p99 {
                        Some(p) => {
                            lag99.push(p);
                            lag_notes.push(format!(
                                "rep {rep}: all {total} fired in {:.1} s ({rate:.0}/s)",
                                v["elapsed_ms"].as_f64().unwrap_or(f64::NAN) / 1e3
                            ));
                        }
                        None => {
                            let e = v["p99_extrapolated_ms"].as_f64().unwrap_or(f64::NAN);
                            lag99.push(e);
                            lag_notes.push(format!(
                                "rep {rep}: {fired} of {total} fired in {lag_limit} s ({rate:.0}/s); p99 extrapolated"
                            ));
                        }
                    }
                    if total != counts[counts.len() - 1] {
                        problems.push(format!("rep {rep}: {total} timers before the lag test"));
                    }
                }
                _ => {}
            }
        }
        if let Some(url) = &ctx.opts.redis {
            ctx.server.block_on(redis_cleanup(url, &prefix));
        }
    }
    let note = |extra: &str| {
        let mut n = vec![extra.to_string()];
        n.extend(problems.iter().cloned());
        n.retain(|s| !s.is_empty());
        n.join("; ")
    };
    for (k, c) in counts.iter().enumerate() {
        report.add(Row {
            name: format!("RSS with {}k open incidents + timers", c / 1000),
            unit: "MB",
            value: rss[k].clone(),
            floor: None,
            target: (*c == 100_000).then_some(Target::AtMost(150.0)),
            note: note(if k == 0 {
                "vigil alone in a child process, after ingesting them (VmRSS)"
            } else {
                ""
            }),
        });
    }
    report.add(Row {
        name: "RSS after a restart on 100k open incidents".into(),
        unit: "MB",
        value: rss_restart,
        floor: None,
        target: None,
        note: String::new(),
    });
    report.add(Row {
        name: format!(
            "scheduler lag p50, timers due one by one ({STEADY_RATE}/s) with 100k pending"
        ),
        unit: "ms",
        value: steady50,
        floor: None,
        target: None,
        note: "due → Escalated entry, wall clock".into(),
    });
    report.add(Row {
        name: format!(
            "scheduler lag p99, timers due one by one ({STEADY_RATE}/s) with 100k pending"
        ),
        unit: "ms",
        value: steady99,
        floor: None,
        target: Some(Target::AtMost(50.0)),
        note: steady_notes.join("; "),
    });
    report.add(Row {
        name: "burst: lag p50, all 100k timers due at the same instant".into(),
        unit: "ms",
        value: lag50,
        floor: None,
        target: None,
        note: String::new(),
    });
    report.add(Row {
        name: "burst: lag p99, all 100k timers due at the same instant".into(),
        unit: "ms",
        value: lag99,
        floor: None,
        target: None,
        note: lag_notes.join("; "),
    });
    report.add(Row {
        name: "start → /readyz 200 with 100k open incidents".into(),
        unit: "s",
        value: ready,
        floor: None,
        target: Some(Target::AtMost(2.0)),
        note: "process spawn to the first 200".into(),
    });
    report.add(Row {
        name: "populating: in-process ingest (256 concurrent, no HTTP)".into(),
        unit: "ev/s",
        value: ingest_rate,
        floor: None,
        target: None,
        note: "each step of each rep".into(),
    });
}

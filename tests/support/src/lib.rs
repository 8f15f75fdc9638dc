//! What vigil's test binaries share: `spawn_app()` and one helper per endpoint, fixtures and SNS
//! signing, the store observer, and (`process`) real `vigil serve` processes. `TEST_LOG=1` turns
//! on the apps' logs.

mod process;

pub use process::{Proc, free_port, serve_command, terminate, wait_ready};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::{Value, json};
use vigil::app::{App, AppHandle};
use vigil::clock::ManualClock;
use vigil::domain::{Fingerprint, IncidentId};
use vigil::incident::{Delivery, Incident, IncidentStatus, TimelineEntry};
use vigil::ingest::{CertFetcher, IngestError, SnsEnvelope};
use vigil::settings::{Secret, Settings};
use vigil::store::{
    CommitOutcome, DeliveryFinish, EmbeddedStore, FingerprintState, Prune, Pruned, RedisStore,
    Store, StoreError, StoreStats, Transition,
};
use wiremock::MockServer;

pub const INGEST_TOKEN: &str = "test-ingest-token";
pub const OPERATOR_TOKEN: &str = "test-operator-token";
pub const EVENTBRIDGE_KEY: &str = "test-eventbridge-key";

/// The repository's root (this crate is `tests/support`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixtures_dir() -> PathBuf {
    repo().join("../shared/fixtures")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

pub fn shipped_routing() -> PathBuf {
    repo().join("routing")
}

pub fn shipped_templates() -> PathBuf {
    repo().join("templates")
}

/// Copies the shipped `routing/` into a fresh directory tests may edit.
pub fn copy_routing(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(shipped_routing()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// The morning the fixtures were recorded, a Friday in Singapore.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 2, 15, 45).unwrap()
}

/// Serves the fixtures' test certificate for every SigningCertURL.
pub struct FixtureCerts;

#[async_trait::async_trait]
impl CertFetcher for FixtureCerts {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, IngestError> {
        Ok(fixture("test-signing-cert.pem"))
    }
}

/// Re-signs an SNS envelope (SignatureVersion 1, SHA1) with the fixtures' test key, after a test
/// changed signed fields.
pub fn sign_sns(envelope: &mut Value) {
    let bytes = serde_json::to_vec(envelope).unwrap();
    let env = SnsEnvelope::parse(&bytes).unwrap();
    let pem = String::from_utf8(fixture("test-signing-key.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let key = rsa::PrivateKey::from_pkcs8_der(&der).unwrap();
    let signer = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key);
    let sig = signer.sign(env.string_to_sign().as_bytes()).to_bytes();
    envelope["SignatureVersion"] = json!("1");
    envelope["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub handle: AppHandle,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub config_dir: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Writes a policy into the directory it is given.
pub type PolicyWriter = Box<dyn FnOnce(&Path)>;

#[derive(Default)]
pub struct Options {
    /// Write the policy here instead of copying the shipped one.
    pub policy: Option<PolicyWriter>,
    /// Read the templates from here instead of the shipped `templates/`.
    pub templates: Option<PathBuf>,
    pub extra_trusted_prefixes: Vec<String>,
    /// Fetch SNS certificates over HTTP as in production (the app's own fetcher and client)
    /// instead of answering every SigningCertURL with the fixtures' certificate.
    pub http_cert_fetcher: bool,
    pub watch_config: bool,
    /// Enables signed acknowledge links with this secret.
    pub ack_secret: Option<String>,
    /// Provider endpoints, secrets and integration secrets.
    pub channels: Option<vigil::notify::ChannelSettings>,
    pub slack_signing_secret: Option<String>,
    pub pagerduty_webhook_secret: Option<String>,
    /// Run on the Redis store (the server `scripts/test` starts, a fresh key prefix) instead of
    /// the embedded one.
    pub redis: bool,
    /// Retry bounds instead of the fast ones below (3 attempts, 10–50 ms apart).
    pub retry: Option<vigil::notify::retry::RetryPolicy>,
    /// Run on this store instead of a fresh embedded (or Redis) one.
    pub store: Option<Arc<dyn Store>>,
    /// Keep the embedded store's file here instead of in the test's temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Wraps the store the app is given (to observe what the app reads).
    pub wrap_store: Option<StoreWrapper>,
    /// Serve the public endpoints on a listener of their own (`--public-listen`), on a random
    /// port: [`TestApp::public_url`].
    pub public_listen: bool,
    /// `person:token` operator tokens, besides the unnamed [`OPERATOR_TOKEN`].
    pub person_tokens: Vec<(String, String)>,
    /// The console's session key (`VIGIL_CONSOLE_KEY`); random per app when `None`.
    pub console_key: Option<String>,
}

/// Wraps the store given to the app.
pub type StoreWrapper = Box<dyn FnOnce(Arc<dyn Store>) -> Arc<dyn Store>>;

/// `spawn_app_with(opts)`, its store seen through an [`ObservedStore`] the test holds.
pub async fn spawn_observed(mut opts: Options) -> (TestApp, Arc<ObservedStore>) {
    let observed: Arc<std::sync::OnceLock<Arc<ObservedStore>>> = Default::default();
    {
        let observed = observed.clone();
        opts.wrap_store = Some(Box::new(move |inner| {
            let o = Arc::new(ObservedStore::new(inner));
            let _ = observed.set(o.clone());
            o as Arc<dyn Store>
        }));
    }
    let app = spawn_app_with(opts).await;
    let store = observed.get().expect("the app wrapped its store").clone();
    (app, store)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

/// The Redis store on the server `scripts/test` starts, under a fresh key prefix.
pub async fn test_redis_store() -> RedisStore {
    let url = std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("VIGIL_TEST_REDIS_URL is not set: run scripts/test, which starts redis-server")
    });
    let prefix = format!("api-{}", ulid::Ulid::new());
    RedisStore::connect(&url, &prefix).await.unwrap()
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        vigil::telemetry::init(false, std::io::stdout);
    }
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("routing");
    match opts.policy {
        Some(write) => {
            std::fs::create_dir_all(&config_dir).unwrap();
            write(&config_dir)
        }
        None => copy_routing(&config_dir),
    }
    let mut settings = Settings::new(config_dir.clone(), dir.path().join("data"));
    settings.templates_dir = opts.templates.unwrap_or_else(shipped_templates);
    settings.ingest_tokens = vec![Secret::new(INGEST_TOKEN)];
    settings.operator_tokens = vec![Secret::new(OPERATOR_TOKEN).into()];
    settings
        .operator_tokens
        .extend(
            opts.person_tokens
                .iter()
                .map(|(p, t)| vigil::settings::OperatorToken {
                    person: Some(p.clone()),
                    secret: Secret::new(t),
                }),
        );
    settings.console_key = opts.console_key.map(Secret::new);
    settings.eventbridge_api_key = Some(Secret::new(EVENTBRIDGE_KEY));
    settings.sns_extra_trusted_prefixes = opts.extra_trusted_prefixes;
    settings.watch_config = opts.watch_config;
    settings.ack_link_secret = opts.ack_secret.map(Secret::new);
    settings.public_url = Some("http://vigil.test".into());
    if opts.public_listen {
        settings.public_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    if let Some(c) = opts.channels {
        settings.channels = c;
    }
    settings.slack_signing_secret = opts.slack_signing_secret.map(Secret::new);
    settings.pagerduty_webhook_secrets = opts
        .pagerduty_webhook_secret
        .into_iter()
        .map(Secret::new)
        .collect();
    settings.retry.base = Duration::from_millis(10);
    settings.retry.max_delay = Duration::from_millis(50);
    settings.retry.max_attempts = 3;
    if let Some(retry) = opts.retry {
        settings.retry = retry;
    }
    let clock = Arc::new(ManualClock::new(t0()));
    let store: Arc<dyn Store> = if let Some(store) = opts.store {
        store
    } else if opts.redis {
        Arc::new(test_redis_store().await)
    } else {
        let data = opts.data_dir.unwrap_or_else(|| dir.path().join("data"));
        Arc::new(EmbeddedStore::open(&data).unwrap())
    };
    let store = match opts.wrap_store {
        Some(wrap) => wrap(store),
        None => store,
    };
    let fetcher: Option<Arc<dyn CertFetcher>> =
        (!opts.http_cert_fetcher).then(|| Arc::new(FixtureCerts) as Arc<dyn CertFetcher>);
    let app = App::build_with_store(settings, clock.clone(), store, fetcher)
        .await
        .expect("app builds");
    let handle = app.handle();
    let addr = handle.addr;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    // The listener is bound already; an answer means the server (and the watchers set up before
    // it) is running.
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    TestApp {
        addr,
        handle,
        clock,
        http,
        config_dir,
        _dir: dir,
        stop: Some(tx),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `path` on the public listener (`Options::public_listen`), else on the only one.
    pub fn public_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.handle.public_addr.unwrap_or(self.addr),
            path
        )
    }

    pub async fn post_sns(&self, body: &[u8]) -> (StatusCode, Value) {
        let env: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut req = self
            .http
            .post(self.url("/v1/ingest/sns"))
            .header("content-type", "text/plain; charset=UTF-8")
            .body(body.to_vec());
        if let Some(t) = env.get("Type").and_then(Value::as_str) {
            req = req.header("x-amz-sns-message-type", t);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn post_events(&self, body: &[u8]) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url("/v1/events"))
            .bearer_auth(INGEST_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_vec());
        answer(req.send().await.unwrap()).await
    }

    pub async fn post_eventbridge(&self, body: &[u8]) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url("/v1/ingest/eventbridge"))
            .header("x-api-key", EVENTBRIDGE_KEY)
            .header("content-type", "application/json")
            .body(body.to_vec());
        answer(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let req = self.http.get(self.url(path)).bearer_auth(OPERATOR_TOKEN);
        answer(req.send().await.unwrap()).await
    }

    pub async fn post_op(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&body);
        answer(req.send().await.unwrap()).await
    }

    /// A request with `token` (none when `None`) and an optional JSON body.
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    pub async fn delete_op(&self, path: &str) -> StatusCode {
        self.send_as(reqwest::Method::DELETE, path, Some(OPERATOR_TOKEN), None)
            .await
            .0
    }

    /// `POST /v1/overrides`.
    pub async fn post_override(&self, body: Value) -> (StatusCode, Value) {
        self.post_op("/v1/overrides", body).await
    }

    /// `GET /v1/oncall`, optionally `?at=`; the schedules by name.
    pub async fn oncall(&self, at: Option<DateTime<Utc>>) -> serde_json::Map<String, Value> {
        let path = match at {
            Some(at) => format!("/v1/oncall?at={}", urlencode(&at.to_rfc3339())),
            None => "/v1/oncall".to_string(),
        };
        let (status, body) = self.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["schedules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["schedule"].as_str().unwrap().to_string(), e.clone()))
            .collect()
    }

    /// `POST /v1/silences`.
    pub async fn post_silence(&self, body: Value) -> (StatusCode, Value) {
        self.post_op("/v1/silences", body).await
    }

    /// `POST /v1/heartbeats/{name}` with the ingest token and no body.
    pub async fn beat(&self, name: &str) -> (StatusCode, Value) {
        let req = self
            .http
            .post(self.url(&format!("/v1/heartbeats/{name}")))
            .bearer_auth(INGEST_TOKEN);
        answer(req.send().await.unwrap()).await
    }

    pub async fn incident(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/incidents/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn incidents(&self) -> Vec<Value> {
        let (status, body) = self.get("/v1/incidents?limit=1000").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["incidents"].as_array().unwrap().clone()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Moves the clock, fires what is due and sends what that produced.
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.handle.run_due_escalations().await;
        self.handle.run_deliveries().await;
    }
}

/// Percent-encodes a query value (RFC 3339 times carry `+` and `:`).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn answer(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The first incident id in an ingest answer.
pub fn incident_of(body: &Value) -> String {
    body["results"][0]["incidents"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no incident in {body}"))
        .to_string()
}

/// An HTTP fake that answers every POST with 200, like a healthy webhook receiver.
pub async fn ok_sink() -> MockServer {
    use wiremock::matchers::method;
    use wiremock::{Mock, ResponseTemplate};
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    sink
}

/// The JSON bodies a fake received at path `at`, in the order it received them.
pub async fn received_at(server: &MockServer, at: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == at)
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// The requests a wiremock sink received, as JSON bodies.
pub async fn received(sink: &MockServer) -> Vec<Value> {
    sink.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

/// A policy for escalation tests: the shipped matrix's shape, with each step paging through a
/// webhook to `sink` (plus `sms` and `email`, so the desk's two-channel invariant for critical holds).
pub fn webhook_policy(sink: &str) -> impl FnOnce(&Path) + 'static {
    let sink = sink.to_string();
    move |dir: &Path| {
        let yaml = format!(
            r#"
timezone: Asia/Singapore
sources:
  sns:
    allowed_topics: ["arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts"]
severities:
  critical: {{ respond_within: 5m, policy: critical }}
  high: {{ respond_within: 15m, policy: simple }}
  medium: {{ respond_within: 1h, policy: simple }}
  low: {{ respond_within: 4h, policy: simple }}
people:
  ana: {{ name: Ana Lim, phone: "+6591110001", email: ana@example.com }}
  cto: {{ name: Chen Tao, phone: "+6591110002", email: cto@example.com }}
  ceo: {{ name: Carol Ek, phone: "+6591110003", email: ceo@example.com }}
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
      - {{ after: 5m, targets: [{{ person: cto }}], via: [hook, sms, email] }}
      - {{ after: 10m, targets: [{{ person: ceo }}], via: [hook, sms, email] }}
  simple:
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [hook] }}
rules:
  - name: halted
    matchers: ['kind="trading_halted"']
    severity: critical
  - name: route53
    matchers: ['kind="route53_health_check"']
    severity: critical
  - name: catch-all
    matchers: []
    severity: medium
"#
        );
        std::fs::write(dir.join("policy.yaml"), yaml).unwrap();
    }
}

/// A real store seen through a test's eyes: it counts what the incident flow reads (calls of
/// the history listing `incidents`, and incidents handed out by the open index), and can be
/// made to refuse recording delivery attempts, as a full disk or a Redis outage right after a
/// send would.
pub struct ObservedStore {
    pub inner: Arc<dyn Store>,
    pub listings: AtomicUsize,
    pub open_read: AtomicUsize,
    pub refuse_finish: AtomicBool,
    /// Refuse every commit (a store that is down for writes).
    pub refuse_commit: AtomicBool,
    /// Reported as the store's `problem()` (why it refuses writes) instead of the real one.
    pub injected_problem: std::sync::Mutex<Option<String>>,
    /// Hides every due escalation step from the scheduler (`due` answers none), as a scheduler
    /// that cannot keep up: its lag grows.
    pub hide_due: AtomicBool,
}

impl ObservedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            listings: AtomicUsize::new(0),
            open_read: AtomicUsize::new(0),
            refuse_finish: AtomicBool::new(false),
            refuse_commit: AtomicBool::new(false),
            injected_problem: std::sync::Mutex::new(None),
            hide_due: AtomicBool::new(false),
        }
    }

    pub fn reset(&self) {
        self.listings.store(0, Ordering::SeqCst);
        self.open_read.store(0, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Store for ObservedStore {
    async fn commit(&self, tx: Transition) -> Result<CommitOutcome, StoreError> {
        if self.refuse_commit.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "test: the store refuses writes".into(),
            ));
        }
        self.inner.commit(tx).await
    }
    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.inner.incident(id).await
    }
    async fn fingerprint(&self, fp: &Fingerprint) -> Result<FingerprintState, StoreError> {
        self.inner.fingerprint(fp).await
    }
    async fn incidents(
        &self,
        status: Option<IncidentStatus>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.listings.fetch_add(1, Ordering::SeqCst);
        self.inner.incidents(status, limit).await
    }
    async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let out = self.inner.open_incidents().await?;
        self.open_read.fetch_add(out.len(), Ordering::SeqCst);
        Ok(out)
    }
    async fn prune(&self, prune: Prune) -> Result<Pruned, StoreError> {
        self.inner.prune(prune).await
    }
    async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        self.inner.timeline(id).await
    }
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DateTime<Utc>, IncidentId)>, StoreError> {
        if self.hide_due.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        self.inner.due(now, limit).await
    }
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_due().await
    }
    async fn deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner.deliveries_due(now, limit).await
    }
    async fn still_pending(&self, delivery: &Delivery) -> Result<bool, StoreError> {
        self.inner.still_pending(delivery).await
    }
    async fn outbox(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        self.inner.outbox(limit).await
    }
    async fn resolved_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.inner.resolved_since(since, limit).await
    }
    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_delivery().await
    }
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        finish: DeliveryFinish,
    ) -> Result<(), StoreError> {
        if self.refuse_finish.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected: the store refuses writes".into(),
            ));
        }
        self.inner.finish_delivery(delivery, finish).await
    }
    async fn references(&self, id: IncidentId) -> Result<BTreeMap<String, String>, StoreError> {
        self.inner.references(id).await
    }
    async fn put_record(&self, kind: &str, id: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put_record(kind, id, value).await
    }
    async fn get_record(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_record(kind, id).await
    }
    async fn delete_record(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_record(kind, id).await
    }
    async fn records(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.records(kind).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }
    fn problem(&self) -> Option<String> {
        let injected = self
            .injected_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        injected.or_else(|| self.inner.problem())
    }
}

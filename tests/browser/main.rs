//! The operators' console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver, `thirtyfour`), against a real app on a random port with a wiremock Slack fake
//! (../shared/reference/browser-testing.md).
//!
//! One binary, one chromedriver (in its own process group, killed with its Chromium children
//! when the test ends, even by a panic), one browser session, the steps in order: sign in; an
//! incident opened through the API appears without a reload; acknowledge it and see the timeline
//! and the Slack fake's update; silence alerts like it and see the next matching alert not page;
//! add an override and see `/v1/oncall` change; sign out and be refused. Screenshots of the main
//! pages go to `target/console-screenshots/`. It ends with the line `N passed, N failed`.
//!
//! Without chromedriver it says it skipped, unless `CI` is set: then that is a failure.

use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use thirtyfour::prelude::*;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use vigil_testkit::*;

const MEI_TOKEN: &str = "mei-browser-token";
const SLACK_TOKEN: &str = "xoxb-browser-test";
/// How long a step waits for the page to show what it expects.
const WAIT: Duration = Duration::from_secs(20);

/// chromedriver and, in its process group, every Chromium it started.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &group])
            .status();
        let _ = self.0.wait();
    }
}

fn policy(dir: &std::path::Path) {
    std::fs::write(
        dir.join("policy.yaml"),
        r##"
timezone: Asia/Singapore
severities:
  critical: { respond_within: 5m, policy: urgent }
  high: { respond_within: 15m, policy: desk }
  medium: { respond_within: 1h, policy: desk }
  low: { respond_within: 4h, policy: desk }
people:
  mei: { name: Mei Tan, email: mei@example.com, slack: U07QK3M2ZLP }
  raj: { name: Raj Kumar, email: raj@example.com, slack: U07QK3N8T4R }
schedules:
  primary:
    rotation: { members: [mei, raj], every: 1w, start: "2026-11-02T09:00:00" }
channels:
  slack: { type: slack, channel: "#desk-alerts", token_env: SLACK_TOKEN }
  email: { type: email }
policies:
  urgent:
    steps:
      - { after: 0m, targets: [{ schedule: primary }], via: [slack, email] }
  desk:
    steps:
      - { after: 0m, targets: [{ schedule: primary }], via: [slack] }
      - { after: 10m, targets: [{ person: raj }], via: [slack] }
rules:
  - name: everything
    matchers: []
    severity: high
"##,
    )
    .unwrap();
}

async fn slack_fake() -> MockServer {
    let slack = MockServer::start().await;
    for at in ["/chat.postMessage", "/chat.update"] {
        Mock::given(method("POST"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({ "ok": true, "channel": "C07DESK0001", "ts": "1763604942.114259" }),
            ))
            .mount(&slack)
            .await;
    }
    slack
}

fn event(dedup: &str, summary: &str, service: &str) -> Vec<u8> {
    json!({
        "kind": "exchange_error",
        "summary": summary,
        "status": "firing",
        "dedup_key": dedup,
        "labels": { "service": service, "region": "ap-southeast-1", "exchange": "binance" },
        "details": {},
        "occurred_at": "2026-11-20T02:15:00Z"
    })
    .to_string()
    .into_bytes()
}

struct Run {
    d: WebDriver,
    app: TestApp,
    slack: MockServer,
    shots: PathBuf,
}

impl Run {
    fn url(&self, p: &str) -> String {
        self.app.url(p)
    }

    /// Waits until the element at `css` holds `needle` in its text.
    async fn wait_text(&self, css: &str, needle: &str) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(e) = self.d.find(By::Css(css)).await
                && let Ok(t) = e.text().await
                && t.contains(needle)
            {
                return Ok(());
            }
            if start.elapsed() > WAIT {
                let page = self.d.source().await.unwrap_or_default();
                bail!("{css} never showed {needle:?}; page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.d
            .find(By::Css(css))
            .await
            .with_context(|| format!("find {css}"))?
            .click()
            .await
            .with_context(|| format!("click {css}"))?;
        Ok(())
    }

    async fn shot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.d.screenshot_as_png().await?;
        ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png)?;
        Ok(())
    }

    async fn open_incident_id(&self, summary: &str) -> anyhow::Result<String> {
        let (_, body) = self.app.get("/v1/incidents?status=open").await;
        body["incidents"]
            .as_array()
            .and_then(|l| l.iter().find(|i| i["summary"] == summary))
            .and_then(|i| i["id"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no open incident {summary:?}: {body}"))
    }
}

async fn sign_in(r: &Run) -> anyhow::Result<()> {
    r.d.goto(r.url("/")).await?;
    // Not signed in: the console sends the browser to the sign-in form.
    r.wait_text("main h1", "vigil").await?;
    r.shot("sign-in").await?;
    r.d.find(By::Id("token"))
        .await?
        .send_keys(MEI_TOKEN)
        .await?;
    r.click("#sign-in").await?;
    r.wait_text("main h1", "Open incidents").await?;
    r.wait_text("header .who", "mei").await
}

async fn incident_appears_live(r: &Run) -> anyhow::Result<()> {
    r.wait_text("#incidents", "No incidents here.").await?;
    let (status, body) = r
        .app
        .post_events(&event(
            "db-timeouts",
            "Binance order API timing out",
            "trading-bot",
        ))
        .await;
    ensure!(status.is_success(), "{status}: {body}");
    // No reload: console.js polls the rows.
    r.wait_text("#incidents", "Binance order API timing out")
        .await?;
    r.wait_text("#incidents", "unacknowledged").await?;
    // Shown in capitals (CSS), as text as well as colour.
    r.wait_text("#incidents .sev", "HIGH").await?;
    r.shot("incidents").await
}

async fn acknowledge(r: &Run) -> anyhow::Result<()> {
    let id = r.open_incident_id("Binance order API timing out").await?;
    r.app.handle.run_deliveries().await;
    ensure!(
        !received_at(&r.slack, "/chat.postMessage").await.is_empty(),
        "the page went to Slack"
    );
    r.click(&format!("#incidents a[href='/incidents/{id}']"))
        .await?;
    r.wait_text("#state", "triggered").await?;
    r.click("#ack").await?;
    r.wait_text("#state", "acknowledged").await?;
    r.wait_text("#state", "acked by Mei Tan via web").await?;
    r.wait_text("#timeline", "Acknowledged by mei via web")
        .await?;
    r.wait_text("#timeline", "Step 1 (pass 1) fired: paged mei via slack")
        .await?;
    r.app.handle.run_deliveries().await;
    let updates = received_at(&r.slack, "/chat.update").await;
    ensure!(
        updates.len() == 1,
        "Slack's message edited once: {updates:?}"
    );
    ensure!(
        updates[0]
            .to_string()
            .to_lowercase()
            .contains("acknowledged"),
        "the edit says acknowledged: {}",
        updates[0]
    );
    r.shot("incident").await
}

async fn silence_like_this(r: &Run) -> anyhow::Result<()> {
    r.click("#silence").await?;
    r.wait_text("main h1", "Silence alerts like this").await?;
    let prefilled =
        r.d.find(By::Id("matchers"))
            .await?
            .value()
            .await?
            .unwrap_or_default();
    ensure!(
        prefilled.contains("service=\"trading-bot\""),
        "prefilled with the labels: {prefilled}"
    );
    // Keep only the service: the next alert from it, whatever its exchange, is silenced.
    let matchers = r.d.find(By::Id("matchers")).await?;
    matchers.clear().await?;
    matchers.send_keys("service=\"trading-bot\"").await?;
    r.click("#create-silence").await?;
    // The comment is required: the browser keeps the form until it is given.
    r.wait_text("main h1", "Silence alerts like this").await?;
    r.d.find(By::Id("comment"))
        .await?
        .send_keys("exchange maintenance")
        .await?;
    r.click("#create-silence").await?;
    r.wait_text("#silences", "exchange maintenance").await?;
    r.wait_text("#silences", "service=\"trading-bot\"").await?;
    r.shot("silences").await?;

    let before = received_at(&r.slack, "/chat.postMessage").await.len();
    let (status, body) = r
        .app
        .post_events(&event("okx-errors", "OKX rejecting orders", "trading-bot"))
        .await;
    ensure!(status.is_success(), "{status}: {body}");
    let id = r.open_incident_id("OKX rejecting orders").await?;
    r.app.handle.run_due_escalations().await;
    r.app.handle.run_deliveries().await;
    let inc = r.app.incident(&id).await;
    let types: Vec<&str> = inc["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    ensure!(types.contains(&"held"), "held by the silence: {types:?}");
    ensure!(!types.contains(&"escalated"), "nobody paged: {types:?}");
    let after = received_at(&r.slack, "/chat.postMessage").await.len();
    ensure!(after == before, "no new Slack page ({before} -> {after})");
    r.d.goto(r.url(&format!("/incidents/{id}"))).await?;
    r.wait_text("#timeline", "Held back by").await?;
    r.d.goto(r.url("/")).await?;
    r.wait_text("#incidents", "held by").await
}

async fn override_changes_oncall(r: &Run) -> anyhow::Result<()> {
    let who = |v: &serde_json::Map<String, Value>| v["primary"]["person"].clone();
    ensure!(
        who(&r.app.oncall(None).await) == "mei",
        "mei's week at first"
    );
    r.click("header a[href='/oncall']").await?;
    r.wait_text("#schedules", "Mei Tan").await?;
    // Mei's week runs to Monday 09:00 in the policy's zone (Singapore), then Raj's.
    r.wait_text("#schedules", "Raj Kumar from Mon 23 Nov 09:00 +08")
        .await?;
    r.click("#o-person option[value='raj']").await?;
    let f = r.d.find(By::Id("o-for")).await?;
    f.clear().await?;
    f.send_keys("4h").await?;
    r.click("#add-override").await?;
    r.wait_text("#overrides", "Raj Kumar on primary").await?;
    r.wait_text("#overrides", "(by mei)").await?;
    ensure!(
        who(&r.app.oncall(None).await) == "raj",
        "/v1/oncall follows the override"
    );
    r.shot("oncall").await?;
    r.click("header a[href='/health']").await?;
    r.wait_text("#readiness", "Ready").await?;
    r.shot("health").await
}

async fn narrow_screen(r: &Run) -> anyhow::Result<()> {
    r.d.set_window_rect(0, 0, 360, 740).await?;
    r.d.goto(r.url("/")).await?;
    r.wait_text("#incidents", "OKX rejecting orders").await?;
    // Readable at 360 px: the page does not scroll sideways.
    let wide: bool =
        r.d.execute(
            "return document.documentElement.scrollWidth > window.innerWidth + 1;",
            vec![],
        )
        .await?
        .convert()?;
    ensure!(!wide, "the home page scrolls sideways at 360 px");
    r.shot("incidents-360px").await?;
    r.d.set_window_rect(0, 0, 1024, 768).await?;
    Ok(())
}

async fn sign_out(r: &Run) -> anyhow::Result<()> {
    let old =
        r.d.get_all_cookies()
            .await?
            .into_iter()
            .find(|c| c.name == "vigil_session")
            .context("a session cookie while signed in")?;
    r.click("#sign-out").await?;
    r.wait_text("main h1", "vigil").await?;
    r.d.goto(r.url("/oncall")).await?;
    r.wait_text("main p", "Sign in with your operator token")
        .await?;
    let cookies = r.d.get_all_cookies().await?;
    ensure!(
        cookies.iter().all(|c| c.name != "vigil_session"),
        "no session cookie left: {cookies:?}"
    );
    // A copy of the old cookie is refused too: the session ended, not just the cookie.
    let copy = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .get(r.url("/"))
        .header("cookie", format!("vigil_session={}", old.value))
        .send()
        .await?;
    ensure!(
        copy.status() == reqwest::StatusCode::SEE_OTHER,
        "the old cookie still opens the console: {}",
        copy.status()
    );
    Ok(())
}

/// The steps, in order (each needs the ones before it).
const STEPS: [&str; 7] = [
    "sign_in",
    "incident_appears_live",
    "acknowledge",
    "silence_like_this",
    "override_changes_oncall",
    "narrow_screen",
    "sign_out",
];

fn main() {
    // Like libtest: a filter argument (`cargo test -- channels::`) that names neither this binary
    // nor one of its steps skips the browser, so targeted runs stay fast.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if let Some(f) = filter
        && !"browser".contains(f.as_str())
        && !STEPS.iter().any(|s| s.contains(f.as_str()))
    {
        println!("browser tests filtered out by {f:?}");
        println!("0 passed, 0 failed");
        return;
    }
    if std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("CI").is_some() {
            println!("0 passed, 1 failed");
            panic!("chromedriver is missing in CI (apt-get install chromium chromium-driver)");
        }
        println!("browser tests skipped: chromedriver is not installed");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let driver = Driver(
        std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < WAIT, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let profile = tmp.path().join("profile");
    let (passed, failed) = rt.block_on(async move {
        let slack = slack_fake().await;
        let channels = vigil::notify::ChannelSettings {
            endpoints: [("slack".to_string(), slack.uri())].into(),
            secrets: vigil::notify::SecretSource::from_map(HashMap::from([(
                "SLACK_TOKEN".to_string(),
                SLACK_TOKEN.to_string(),
            )])),
            ..Default::default()
        };
        let app = spawn_app_with(Options {
            policy: Some(Box::new(policy)),
            channels: Some(channels),
            person_tokens: vec![("mei".into(), MEI_TOKEN.into())],
            ..Options::default()
        })
        .await;
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium").unwrap();
        for a in [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1024,768",
        ] {
            caps.add_arg(a).unwrap();
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.display()))
            .unwrap();
        let d = WebDriver::new(format!("http://127.0.0.1:{port}"), caps)
            .await
            .expect("a browser session");
        let run = Run {
            d,
            app,
            slack,
            shots,
        };
        let mut passed = 0;
        let mut failed = 0;
        macro_rules! step {
            ($f:ident) => {
                if failed > 0 {
                    println!(
                        "browser {} ... skipped (an earlier step failed)",
                        stringify!($f)
                    );
                    failed += 1;
                } else {
                    match $f(&run).await {
                        Ok(()) => {
                            println!("browser {} ... ok", stringify!($f));
                            passed += 1;
                        }
                        Err(e) => {
                            println!("browser {} ... FAILED: {e:#}", stringify!($f));
                            failed += 1;
                        }
                    }
                }
            };
        }
        step!(sign_in);
        step!(incident_appears_live);
        step!(acknowledge);
        step!(silence_like_this);
        step!(override_changes_oncall);
        step!(narrow_screen);
        step!(sign_out);
        let _ = run.d.quit().await;
        (passed, failed)
    });
    drop(driver);
    drop(tmp);
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

//! A provider outage on the injected clock: PagerDuty and the webhook answer 500 for 100 s, then
//! 429 with `Retry-After: 20` for 60 s, then recover, while 200 incidents open one a second
//! (half critical, paged through PagerDuty and email; half medium, through the webhook). Retries
//! run on shortened bounds (6 attempts, 2 s base, 60 s cap), so early pages give up during the
//! outage and later ones get through. Every delivery must end sent or failed, every critical
//! PagerDuty page that failed must have failed over to SMS (moto) and email (aiosmtpd) and those
//! must have been sent, and nothing may stay pending: counted from the incidents' timelines and
//! the outbox.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vigil::domain::EmailAddress;
use vigil::notify::retry::RetryPolicy;
use vigil::notify::{ChannelSettings, SecretSource, SmtpSettings};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::campaign::{heavy, report, runtime};
use crate::helpers::*;

const INCIDENTS: u64 = 200;
/// Seconds (injected clock) of 500s, then of 429s.
const FAILING_UNTIL: u64 = 100;
const THROTTLED_UNTIL: u64 = 160;
const RETRY_AFTER_SECS: u64 = 20;
const PD_KEY: &str = "R0UT1NGKEY-outage-0123456789abcdef";

/// The failing provider: what it answers depends on the phase the test sets as it moves the
/// clock. Counts its answers by status.
#[derive(Clone, Default)]
struct Provider {
    phase: Arc<AtomicU8>,
    answered: Arc<Mutex<BTreeMap<u16, usize>>>,
}

impl Respond for Provider {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (code, resp) = match self.phase.load(Ordering::SeqCst) {
            0 => (500, ResponseTemplate::new(500)),
            1 => (
                429,
                ResponseTemplate::new(429)
                    .insert_header("retry-after", RETRY_AFTER_SECS.to_string()),
            ),
            _ if req.url.path() == "/v2/enqueue" => {
                let key = serde_json::from_slice::<Value>(&req.body)
                    .ok()
                    .and_then(|b| b["dedup_key"].as_str().map(str::to_string));
                (
                    202,
                    ResponseTemplate::new(202).set_body_json(
                        json!({ "status": "success", "message": "Event processed", "dedup_key": key }),
                    ),
                )
            }
            _ => (200, ResponseTemplate::new(200)),
        };
        *self.answered.lock().unwrap().entry(code).or_default() += 1;
        resp
    }
}

fn write_policy(dir: &Path, provider: &str) {
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
  ana: {{ name: Ana Lim, phone: "+6591110101", email: ana@example.com }}
schedules:
  primary:
    rotation: {{ members: [ana], every: 1w, start: "2026-11-02T09:00:00" }}
channels:
  pagerduty: {{ type: pagerduty, routing_key_env: PD_KEY }}
  hook: {{ type: webhook, url: "{provider}/page" }}
  sms: {{ type: sms }}
  email: {{ type: email }}
policies:
  critical:
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [pagerduty, email] }}
  simple:
    steps:
      - {{ after: 0m, targets: [{{ schedule: primary }}], via: [hook] }}
rules:
  - name: halted
    matchers: ['kind="trading_halted"']
    severity: critical
  - name: catch-all
    matchers: []
    severity: medium
"#
    );
    std::fs::write(dir.join("policy.yaml"), yaml).unwrap();
}

/// An emulator's address from `scripts/test`; fails (never skips) when missing.
fn emulator(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: the outage test pages by SMS and email through the local emulators; run scripts/test, which starts them")
    })
}

async fn channels(provider: &str) -> ChannelSettings {
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-southeast-1"))
        .credentials_provider(aws_sdk_sns::config::Credentials::new(
            "testing", "testing", None, None, "static",
        ))
        .load()
        .await;
    let mut secrets = HashMap::new();
    secrets.insert("PD_KEY".to_string(), PD_KEY.to_string());
    ChannelSettings {
        aws: Some(aws),
        endpoints: [
            ("sms".to_string(), emulator("VIGIL_TEST_MOTO_URL")),
            ("pagerduty".to_string(), provider.to_string()),
        ]
        .into(),
        smtp: Some(SmtpSettings {
            url: format!("smtp://{}", emulator("VIGIL_TEST_SMTP_ADDR")),
            from: EmailAddress::parse("vigil@example.com").unwrap(),
            username_env: None,
            password_env: None,
        }),
        secrets: SecretSource::from_map(secrets),
        http_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// How the deliveries of the run ended, from the timelines.
#[derive(Debug, Default)]
struct Tally {
    /// Final outcome `sent`, by channel.
    made: BTreeMap<String, usize>,
    /// Critical PagerDuty pages that failed for good and failed over (all follow-ups sent).
    failed_over: usize,
    /// Failed for good, no failover (a webhook: recorded on the timeline and in the log).
    failed: BTreeMap<String, usize>,
    /// A delivery the policy called for with no final outcome, a failover follow-up missing,
    /// or a row still pending.
    dropped: usize,
    attempts: usize,
    /// Retries after a 429, and how many of them waited less than its Retry-After.
    throttled_retries: usize,
    too_soon: usize,
    problems: Vec<String>,
}

fn tally(incidents: &[Value], outbox: u64) -> Tally {
    let mut t = Tally {
        dropped: outbox as usize,
        ..Default::default()
    };
    for inc in incidents {
        let id = inc["id"].as_str().unwrap();
        let timeline = inc["timeline"].as_array().unwrap();
        // delivery id -> (channel, target, last outcome)
        let mut last: BTreeMap<String, (String, Option<String>, String)> = BTreeMap::new();
        for e in timeline.iter().filter(|e| e["type"] == "delivery") {
            t.attempts += 1;
            let detail = e["detail"].as_str().unwrap_or("");
            if e["outcome"] == "retrying" && detail.contains("HTTP 429") {
                t.throttled_retries += 1;
                let wait = detail
                    .rsplit_once("next attempt in ")
                    .and_then(|(_, w)| humantime::parse_duration(w).ok());
                if wait.is_none_or(|w| w < Duration::from_secs(RETRY_AFTER_SECS)) {
                    t.too_soon += 1;
                    t.problems
                        .push(format!("{id}: retried sooner than Retry-After: {detail}"));
                }
            }
            last.insert(
                e["delivery"].as_str().unwrap().to_string(),
                (
                    e["channel"].as_str().unwrap().to_string(),
                    e["target"].as_str().map(str::to_string),
                    e["outcome"].as_str().unwrap().to_string(),
                ),
            );
        }
        let has = |channel: &str, target: Option<&str>| {
            last.values()
                .any(|(c, tg, _)| c == channel && tg.as_deref() == target)
        };
        // What the policy called for: each fired step's channels, and each failover's.
        for e in timeline.iter().filter(|e| e["type"] == "escalated") {
            for via in e["via"].as_array().unwrap() {
                let via = via.as_str().unwrap();
                let target = (via == "email" || via == "sms").then_some("ana");
                if !has(via, target) {
                    t.dropped += 1;
                    t.problems.push(format!("{id}: no delivery on {via}"));
                }
            }
        }
        let failovers: Vec<&Value> = timeline
            .iter()
            .filter(|e| e["type"] == "failover")
            .collect();
        for f in &failovers {
            for to in f["to"].as_array().unwrap() {
                for person in f["people"].as_array().unwrap() {
                    if !has(to.as_str().unwrap(), person.as_str()) {
                        t.dropped += 1;
                        t.problems.push(format!(
                            "{id}: failover to {to} for {person} never attempted"
                        ));
                    }
                }
            }
        }
        for (delivery, (channel, _target, outcome)) in &last {
            match outcome.as_str() {
                "sent" => *t.made.entry(channel.clone()).or_default() += 1,
                "failed" if channel == "pagerduty" => {
                    let followed_up = failovers.iter().any(|f| f["from"] == "pagerduty")
                        && last
                            .values()
                            .filter(|(c, tg, _)| (c == "sms" || c == "email") && tg.is_some())
                            .all(|(_, _, o)| o == "sent");
                    if followed_up {
                        t.failed_over += 1;
                    } else {
                        t.dropped += 1;
                        t.problems.push(format!(
                            "{id}: PagerDuty page {delivery} failed without a delivered failover"
                        ));
                    }
                }
                "failed" => *t.failed.entry(channel.clone()).or_default() += 1,
                other => {
                    t.dropped += 1;
                    t.problems
                        .push(format!("{id}: {channel} delivery {delivery} ended {other}"));
                }
            }
        }
    }
    t
}

#[test]
fn provider_outage_every_delivery_is_made_or_failed_over_none_dropped() {
    let _heavy = heavy();
    runtime().block_on(outage());
}

async fn outage() {
    let started = Instant::now();
    let provider = Provider::default();
    let fake = MockServer::start().await;
    Mock::given(wiremock::matchers::method("POST"))
        .respond_with(provider.clone())
        .mount(&fake)
        .await;
    let uri = fake.uri();
    let app = spawn_app_with(Options {
        policy: Some(Box::new(move |dir: &Path| write_policy(dir, &uri))),
        channels: Some(channels(&fake.uri()).await),
        retry: Some(RetryPolicy {
            base: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: 6,
        }),
        ..Default::default()
    })
    .await;

    let mut ids = Vec::new();
    let mut second = 0u64;
    loop {
        provider.phase.store(
            match second {
                s if s < FAILING_UNTIL => 0,
                s if s < THROTTLED_UNTIL => 1,
                _ => 2,
            },
            Ordering::SeqCst,
        );
        if second < INCIDENTS {
            let kind = if second.is_multiple_of(2) {
                "trading_halted"
            } else {
                "exchange_error"
            };
            let event = json!({
                "kind": kind,
                "summary": format!("outage {second}"),
                "dedup_key": format!("outage-{second}"),
            });
            let (status, body) = app.post_events(&serde_json::to_vec(&event).unwrap()).await;
            assert_eq!(status.as_u16(), 202, "{body}");
            ids.push(incident_of(&body));
        }
        app.advance(Duration::from_secs(1)).await;
        second += 1;
        if second >= INCIDENTS.max(THROTTLED_UNTIL + 1) {
            let (_, ready) = app.get("/readyz").await;
            if ready["outbox"] == 0 {
                break;
            }
        }
        assert!(
            second < 3600,
            "deliveries still pending an hour after the outage"
        );
    }
    let (_, ready) = app.get("/readyz").await;
    let outbox = ready["outbox"].as_u64().unwrap();
    let mut incidents = Vec::new();
    for id in &ids {
        incidents.push(app.incident(id).await);
    }
    let t = tally(&incidents, outbox);
    let answered = provider.answered.lock().unwrap().clone();
    let made: usize = t.made.values().sum();
    let failed: usize = t.failed.values().sum();
    report(&format!(
        "provider outage: made={made} failed_over={} dropped={} \
         ({} incidents, {} attempts; made by channel {:?}; webhook pages given up and recorded \
         as failed {failed}; {} retries after a 429, none sooner than its Retry-After; provider \
         answered {:?}; {second} s on the injected clock, {:.1} s real)",
        t.failed_over,
        t.dropped,
        ids.len(),
        t.attempts,
        t.made,
        t.throttled_retries,
        answered,
        started.elapsed().as_secs_f64()
    ));
    assert_eq!(t.dropped, 0, "{:#?}", t.problems);
    assert_eq!(outbox, 0, "nothing left pending");
    assert!(
        t.throttled_retries > 0 && t.too_soon == 0,
        "{:#?}",
        t.problems
    );
    assert!(
        t.failed_over > 0,
        "some PagerDuty pages gave up during the outage"
    );
    assert!(
        t.made.get("pagerduty").is_some_and(|&n| n > 0),
        "some PagerDuty pages got through after it"
    );
    assert!(
        answered.contains_key(&500) && answered.contains_key(&429),
        "the provider answered 500 and 429: {answered:?}"
    );
    assert_eq!(
        t.made.get("pagerduty").copied().unwrap_or(0) + t.failed_over,
        (INCIDENTS / 2) as usize,
        "every critical incident's PagerDuty page was made or failed over"
    );
    assert_eq!(
        t.made.get("hook").copied().unwrap_or(0) + t.failed.get("hook").copied().unwrap_or(0),
        (INCIDENTS / 2) as usize,
        "every medium incident's webhook page was made or failed"
    );
}

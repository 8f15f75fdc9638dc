//! Provider rate limits vigil keeps itself, on the injected clock, against HTTP fakes that answer
//! like Slack and PagerDuty: a storm of alerts to one Slack channel is posted one a second, in the
//! order the incidents opened, every one on its first attempt; PagerDuty events are spread so no
//! minute carries more than its limit. And what responders read: the severity once in Slack, the
//! region once in PagerDuty's summary.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil::clock::Clock;
use vigil::notify::{ChannelSettings, SecretSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const PD_ROUTING_KEY: &str = "R0UT1NGKEY-pacing-0123456789abcdef";
const SLACK_TOKEN: &str = "xoxb-pacing-test-token";

fn write_policy(dir: &Path) {
    std::fs::write(
        dir.join("policy.yaml"),
        r##"
timezone: Asia/Singapore
sources:
  sns:
    allowed_topics:
      - "arn:aws:sns:ap-southeast-1:123456789012:oncall-alerts"
      - "arn:aws:sns:us-east-1:123456789012:oncall-alerts-use1"
severities:
  critical: { respond_within: 5m, policy: critical }
  high: { respond_within: 15m, policy: critical }
  medium: { respond_within: 1h, policy: critical }
  low: { respond_within: 4h, policy: critical }
people:
  mei: { name: Mei Tan, phone: "+6591110001", email: mei@example.com, slack: U07QK3M2ZLP }
schedules:
  primary:
    rotation: { members: [mei], every: 1w, start: "2026-11-02T09:00:00" }
channels:
  pagerduty: { type: pagerduty, routing_key_env: PD_KEY }
  slack: { type: slack, channel: "#storm", token_env: SLACK_TOKEN }
policies:
  critical:
    steps:
      - { after: 0m, targets: [{ schedule: primary }], via: [pagerduty, slack] }
rules:
  - name: everything
    matchers: []
    severity: critical
# The pacing is what is checked here: one incident (and one post) per alert, no storm grouping.
storm: { max_new_per_minute: 1000000 }
"##,
    )
    .unwrap();
}

struct Fakes {
    pd: MockServer,
    slack: MockServer,
}

async fn fakes() -> Fakes {
    let pd = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(
            ResponseTemplate::new(202)
                .set_body_json(json!({ "status": "success", "message": "Event processed" })),
        )
        .mount(&pd)
        .await;
    let slack = MockServer::start().await;
    for p in ["/chat.postMessage", "/chat.update"] {
        Mock::given(method("POST"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({ "ok": true, "channel": "C07STORM01", "ts": "1763604942.114259" }),
            ))
            .mount(&slack)
            .await;
    }
    Fakes { pd, slack }
}

async fn app_with(f: &Fakes) -> TestApp {
    app_on(f, false).await
}

async fn app_on(f: &Fakes, redis: bool) -> TestApp {
    let secrets = HashMap::from([
        ("PD_KEY".to_string(), PD_ROUTING_KEY.to_string()),
        ("SLACK_TOKEN".to_string(), SLACK_TOKEN.to_string()),
    ]);
    spawn_app_with(Options {
        policy: Some(Box::new(write_policy)),
        channels: Some(ChannelSettings {
            endpoints: [
                ("pagerduty".to_string(), f.pd.uri()),
                ("slack".to_string(), f.slack.uri()),
            ]
            .into(),
            secrets: SecretSource::from_map(secrets),
            ..ChannelSettings::default()
        }),
        redis,
        ..Default::default()
    })
    .await
}

/// The first block's text of a Slack post: the line with the severity and the summary.
fn headline(post: &Value) -> String {
    post["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every delivery attempt on `channel` in an incident's timeline: (attempt, outcome, at).
fn attempts(incident: &Value, channel: &str) -> Vec<(u64, String, DateTime<Utc>)> {
    incident["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "delivery" && e["channel"] == channel)
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["outcome"].as_str().unwrap().to_string(),
                e["at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_storm_of_200_alerts_to_one_slack_channel_is_posted_in_order_one_a_second_each_on_its_first_attempt()
 {
    storm(false).await;
}

#[tokio::test]
async fn a_storm_to_one_slack_channel_is_paced_the_same_on_redis() {
    storm(true).await;
}

async fn storm(redis: bool) {
    const STORM: usize = 200;
    let f = fakes().await;
    let app = app_on(&f, redis).await;
    // 200 alarms in one second, each its own incident, opened in this order.
    let mut ids = Vec::new();
    for i in 0..STORM {
        let event = json!({
            "kind": "exchange_error",
            "summary": format!("storm alarm {i:03}"),
            "status": "firing",
            "dedup_key": format!("storm-{i:03}"),
            "labels": { "service": "trading-bot" },
            "occurred_at": app.clock.now().to_rfc3339(),
        });
        let (status, body) = app.post_events(event.to_string().as_bytes()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        ids.push(incident_of(&body));
        app.clock.advance(Duration::from_millis(5));
    }
    // The worker wakes when the next turn comes (here: when the test says), first right after
    // the storm. Slack allows a post a second per channel: the storm takes about 200 s of clock.
    // Bounded.
    app.handle.run_deliveries().await;
    for _ in 0..(STORM + 60) {
        app.advance(Duration::from_secs(1)).await;
        if crate::helpers::received_at(&f.slack, "/chat.postMessage")
            .await
            .len()
            >= STORM
            && crate::helpers::received_at(&f.pd, "/v2/enqueue")
                .await
                .len()
                >= STORM
        {
            break;
        }
    }

    let posts = crate::helpers::received_at(&f.slack, "/chat.postMessage").await;
    assert_eq!(posts.len(), STORM, "every alert posted, none twice");
    let order: Vec<String> = posts
        .iter()
        .map(|p| {
            let h = headline(p);
            let at = h.find("storm alarm ").unwrap_or_else(|| panic!("{h}"));
            h[at..at + 15].to_string()
        })
        .collect();
    let want: Vec<String> = (0..STORM).map(|i| format!("storm alarm {i:03}")).collect();
    assert_eq!(order, want, "posted in the order the incidents opened");
    assert_eq!(
        crate::helpers::received_at(&f.pd, "/v2/enqueue")
            .await
            .len(),
        STORM
    );

    let mut slack_sent = Vec::new();
    let mut pd_sent = Vec::new();
    for id in &ids {
        let inc = app.incident(id).await;
        // One attempt each, sent: being held for the pace is not an attempt and not on the
        // timeline.
        let slack = attempts(&inc, "slack");
        assert_eq!(slack.len(), 1, "{slack:?}");
        assert_eq!((slack[0].0, slack[0].1.as_str()), (1, "sent"), "{slack:?}");
        slack_sent.push(slack[0].2);
        let pd = attempts(&inc, "pagerduty");
        assert_eq!(pd.len(), 1, "{pd:?}");
        assert_eq!((pd[0].0, pd[0].1.as_str()), (1, "sent"), "{pd:?}");
        pd_sent.push(pd[0].2);
    }
    // Slack: a second apart on the clock (the pacer counts a send up to a tenth of an interval
    // early as on time).
    for pair in slack_sent.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::milliseconds(900),
            "{pair:?}"
        );
    }
    // PagerDuty: about 120 events a minute per routing key; vigil keeps under it.
    pd_sent.sort();
    for (i, at) in pd_sent.iter().enumerate().skip(120) {
        assert!(
            *at - pd_sent[i - 120] >= chrono::Duration::seconds(60),
            "121 events within a minute: {} .. {at}",
            pd_sent[i - 120]
        );
    }
    let metrics = app.metrics().await;
    assert!(
        !metrics.contains(r#"outcome="transient""#),
        "no attempt failed: {metrics}"
    );
    // Each delivery was put back at most once (its turn was planned when first seen), the first
    // post of the storm not at all.
    let paced = |ty: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    r#"vigil_delivery_paced_total{{channel_type="{ty}"}} "#
                ))
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(paced("slack"), (STORM - 1) as f64, "{metrics}");
    let pd = paced("pagerduty");
    assert!(pd > 0.0 && pd <= (STORM - 10) as f64, "{pd}");
}

#[tokio::test]
async fn slack_says_the_severity_once_and_pagerduty_the_region_once() {
    let f = fakes().await;
    let app = app_with(&f).await;
    for (fixture_name, region) in [
        ("cloudwatch-alarm-sns-notification.json", "ap-southeast-1"),
        (
            "route53-healthcheck-alarm-sns-notification.json",
            "us-east-1",
        ),
    ] {
        let (status, body) = app.post_sns(&fixture(fixture_name)).await;
        assert_eq!(status, StatusCode::OK, "{fixture_name}: {body}");
        // Two posts to one Slack channel: the second waits its second.
        app.advance(Duration::from_secs(1)).await;
        let pd = crate::helpers::received_at(&f.pd, "/v2/enqueue").await;
        let summary = pd.last().unwrap()["payload"]["summary"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            summary.matches(&format!("({region})")).count(),
            1,
            "{fixture_name}: {summary}"
        );
        let posts = crate::helpers::received_at(&f.slack, "/chat.postMessage").await;
        let headline = headline(posts.last().unwrap());
        assert_eq!(
            headline.matches("CRITICAL").count(),
            1,
            "{fixture_name}: {headline}"
        );
        assert!(
            headline.starts_with(":red_circle: *CRITICAL* ALARM"),
            "{headline}"
        );
    }
}

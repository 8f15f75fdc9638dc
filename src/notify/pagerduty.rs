//! The `pagerduty` channel: one Events API v2 event per notification (`POST {base}/v2/enqueue`).
//!
//! In: a [`Notification`]. Out: a [`Receipt`] whose reference is the `dedup_key` (the vigil
//! incident id, so PagerDuty collapses resends into one alert and echoes the id back in its
//! webhooks as `data.incident_key`), or a classified [`NotifyError`]. Trigger and escalate send
//! `trigger`, acknowledged sends `acknowledge`, resolved sends `resolve`.
//!
//! The routing key travels in the request body; it is the credential, so it never appears in an
//! error, even when PagerDuty's own answer quotes it back.
//!
//! Pacing: the Events API takes about 120 events a minute per routing key (a 60 s sliding window;
//! reference/pagerduty.md). The notifier asks the worker to keep [`PACE_BURST`] events at once,
//! then one per [`PACE_INTERVAL`] (at most 110 in any minute), so a burst of alerts is delayed,
//! never refused with 429s that would use up its retries.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::pace::Pace;
use super::{
    ChannelBuilder, ChannelSettings, Notification, Notifier, NotifyError, Receipt, built, request,
};
use crate::config::{ChannelType, Failover, Form, Key, Reach};
use crate::domain::Severity;
use crate::incident::NotifyKind;

inventory::submit!(
    ChannelType::new("pagerduty", Reach::Destination)
        .keys(&[Key::required("routing_key_env", Form::EnvName)])
        .limits(1024, SUMMARY_MAX_CHARS)
        // A critical page that fails for good here goes to SMS and email directly; an ack made
        // in PagerDuty is not sent back to it.
        .failover(Failover::Source)
        .not_echoing("pagerduty")
);

inventory::submit!(
    ChannelBuilder::new("pagerduty", |spec, settings, http| {
        let key_env = spec
            .env_name("routing_key_env")
            .ok_or("pagerduty needs `routing_key_env`")?;
        built(PagerDutyNotifier::new(key_env, settings, http.clone()))
    })
    .endpoint(DEFAULT_URL)
);

/// The Events API's base URL, unless `ChannelSettings::endpoints["pagerduty"]` says otherwise.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com";

/// PagerDuty's limit on `payload.summary`, in characters.
const SUMMARY_MAX_CHARS: usize = 1024;

/// The wait before retrying a 429 that carries no `Retry-After`: PagerDuty's own advice
/// (reference/pagerduty.md §1.3, "retry 429s, e.g. 3 times 30 s apart"). The worker still owns
/// the retry; this is only the provider's hint, like a header would be.
const RATE_LIMITED_HINT: Duration = Duration::from_secs(30);

/// Events sent at once per routing key before pacing starts.
pub const PACE_BURST: u32 = 10;
/// Then one event per interval per routing key: 100 a minute, so a full burst plus a minute of
/// paced events (110) stays under PagerDuty's 120.
pub const PACE_INTERVAL: Duration = Duration::from_millis(600);

/// The longest piece of PagerDuty's error answer kept in a reason.
const PROVIDER_TEXT_MAX_CHARS: usize = 300;

pub struct PagerDutyNotifier {
    /// `{base URL}/v2/enqueue`.
    endpoint: String,
    /// The integration's routing key: the credential. Never formatted into an error or a log.
    routing_key: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl PagerDutyNotifier {
    /// Reads the routing key from `routing_key_env` through `settings.secrets`; the error names
    /// the variable, never a value.
    pub fn new(
        routing_key_env: &str,
        settings: &ChannelSettings,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let routing_key = settings
            .secrets
            .get(routing_key_env)
            .map_err(|e| format!("{e} (PagerDuty routing key)"))?;
        Ok(Self {
            endpoint: format!(
                "{}/v2/enqueue",
                settings
                    .endpoint("pagerduty")
                    .unwrap_or(DEFAULT_URL)
                    .trim_end_matches('/')
            ),
            routing_key,
            http,
            timeout: settings.http_timeout,
        })
    }

    /// The Events API v2 body for `msg`.
    fn event(&self, msg: &Notification) -> Value {
        let action = match msg.kind {
            // A test must reach a person to test anything: a trigger of its own dedup_key (the
            // test's id), which PagerDuty shows as a new incident marked TEST.
            NotifyKind::Trigger | NotifyKind::Escalate | NotifyKind::Test => "trigger",
            NotifyKind::Acknowledged => "acknowledge",
            NotifyKind::Resolved => "resolve",
        };
        let mut body = json!({
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": msg.incident.to_string(),
            "client": "vigil",
        });
        if action == "trigger" {
            body["payload"] = payload(msg);
            if let Some(link) = &msg.link {
                body["links"] = json!([{ "href": link, "text": "vigil incident" }]);
            }
        }
        body
    }

    /// Removes the routing key from text PagerDuty sent back.
    fn scrub(&self, text: &str) -> String {
        let cut: String = text.chars().take(PROVIDER_TEXT_MAX_CHARS).collect();
        cut.replace(&self.routing_key, "***")
    }
}

/// `payload` of a trigger: title, source, severity and the details a responder needs first.
fn payload(msg: &Notification) -> Value {
    let title = msg.subject.as_deref().unwrap_or(&msg.text);
    let summary: String = title.chars().take(SUMMARY_MAX_CHARS).collect();
    let severity = match msg.severity {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    };
    // Labels stay in their own object rather than flattened, so a label named `count` or `step`
    // cannot hide vigil's own fields.
    let mut details = Map::new();
    details.insert("labels".into(), json!(msg.labels));
    details.insert("count".into(), json!(msg.count));
    if let Some((loop_, step)) = msg.step {
        // Counted from 1, as people read them; vigil counts from 0 internally.
        details.insert("step".into(), json!(step + 1));
        details.insert("loop".into(), json!(loop_ + 1));
    }
    json!({
        "summary": summary,
        "source": "vigil",
        "severity": severity,
        "custom_details": details,
    })
}

#[async_trait::async_trait]
impl Notifier for PagerDutyNotifier {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    /// Every event counts against its routing key, whichever vigil channel sends it. The key is
    /// the credential, so the pacing key is a hash of it.
    fn pace(&self, _kind: NotifyKind) -> Option<Pace> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.routing_key.hash(&mut h);
        Some(Pace {
            key: format!("pagerduty:{:016x}", h.finish()),
            interval: PACE_INTERVAL,
            burst: PACE_BURST,
        })
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let dedup_key = msg.incident.to_string();
        let req = self.http.post(&self.endpoint).json(&self.event(msg));
        let answer = request::send(req, self.timeout, "PagerDuty", msg.now).await?;
        if answer.status == reqwest::StatusCode::BAD_REQUEST {
            // PagerDuty explains what is wrong with the event; keep that for the timeline.
            let text = answer.response.text().await.unwrap_or_default();
            return Err(NotifyError::Permanent {
                reason: format!(
                    "PagerDuty refused the event (HTTP 400): {}",
                    self.scrub(&explain_400(&text))
                ),
            });
        }
        let hint =
            (answer.status == reqwest::StatusCode::TOO_MANY_REQUESTS).then_some(RATE_LIMITED_HINT);
        answer.classify("PagerDuty", hint)?;
        Ok(Receipt {
            reference: Some(dedup_key),
        })
    }
}

/// `message: errors; ...` from a 400 answer, or the raw text if it is not the documented shape.
fn explain_400(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return text.trim().to_string();
    };
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("invalid event");
    let errors: Vec<&str> = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::notify::SecretSource;
    use crate::notify::testkit::notification;

    const KEY: &str = "R0UT1NGKEYEXAMPLE0000000000000AA";

    fn notifier(base: &str) -> PagerDutyNotifier {
        let settings = ChannelSettings {
            endpoints: [("pagerduty".to_string(), base.to_string())].into(),
            secrets: SecretSource::from_map(HashMap::from([(
                "PD_KEY".to_string(),
                KEY.to_string(),
            )])),
            ..ChannelSettings::default()
        };
        PagerDutyNotifier::new("PD_KEY", &settings, reqwest::Client::new()).unwrap()
    }

    #[test]
    fn every_event_is_paced_per_routing_key_without_the_key_in_clear() {
        let n = notifier("http://127.0.0.1:9");
        let pace = n.pace(NotifyKind::Resolved).unwrap();
        assert_eq!(pace, n.pace(NotifyKind::Trigger).unwrap());
        assert_eq!((pace.interval, pace.burst), (PACE_INTERVAL, PACE_BURST));
        assert!(!pace.key.contains(KEY), "{}", pace.key);
        // At most 120 in any minute: the burst plus a minute at the paced rate.
        let per_minute = Duration::from_secs(60).as_millis() / PACE_INTERVAL.as_millis();
        assert!(PACE_BURST as u128 + per_minute <= 120);
    }

    fn accepted() -> ResponseTemplate {
        ResponseTemplate::new(202).set_body_json(json!({
            "status": "success", "message": "Event processed",
            "dedup_key": "01JD4Z8X3K7M2Q9R5T6V8W0Y1A"
        }))
    }

    async fn received_bodies(server: &MockServer) -> Vec<Value> {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    #[test]
    fn a_missing_routing_key_names_the_variable() {
        let err = PagerDutyNotifier::new(
            "PD_MISSING",
            &ChannelSettings {
                secrets: SecretSource::from_map(HashMap::new()),
                ..ChannelSettings::default()
            },
            reqwest::Client::new(),
        )
        .err()
        .unwrap();
        assert!(err.contains("PD_MISSING"), "{err}");
    }

    #[tokio::test]
    async fn a_trigger_sends_the_exact_event() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .respond_with(accepted())
            .expect(1)
            .mount(&server)
            .await;
        let mut msg = notification(NotifyKind::Trigger);
        msg.subject = Some("ALARM eks-prod-apse1-node-cpu-high".into());
        msg.link = Some("https://vigil.example.com/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A".into());
        msg.step = Some((0, 1));
        let receipt = notifier(&server.uri()).send(&msg).await.unwrap();
        assert_eq!(
            receipt.reference.as_deref(),
            Some("01JD4Z8X3K7M2Q9R5T6V8W0Y1A")
        );
        let bodies = received_bodies(&server).await;
        assert_eq!(
            bodies[0],
            json!({
                "routing_key": KEY,
                "event_action": "trigger",
                "dedup_key": "01JD4Z8X3K7M2Q9R5T6V8W0Y1A",
                "client": "vigil",
                "payload": {
                    "summary": "ALARM eks-prod-apse1-node-cpu-high",
                    "source": "vigil",
                    "severity": "critical",
                    "custom_details": {
                        "labels": {"alarm_name": "eks-prod-apse1-node-cpu-high", "region": "ap-southeast-1"},
                        "count": 3,
                        "step": 2,
                        "loop": 1,
                    },
                },
                "links": [{"href": "https://vigil.example.com/v1/incidents/01JD4Z8X3K7M2Q9R5T6V8W0Y1A", "text": "vigil incident"}],
            })
        );
    }

    #[tokio::test]
    async fn each_kind_maps_to_its_event_action_and_status_updates_carry_no_payload() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v2/enqueue"))
            .respond_with(accepted())
            .expect(4)
            .mount(&server)
            .await;
        let n = notifier(&server.uri());
        for kind in [
            NotifyKind::Trigger,
            NotifyKind::Escalate,
            NotifyKind::Acknowledged,
            NotifyKind::Resolved,
        ] {
            n.send(&notification(kind)).await.unwrap();
        }
        let bodies = received_bodies(&server).await;
        let actions: Vec<&str> = bodies
            .iter()
            .map(|b| b["event_action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["trigger", "trigger", "acknowledge", "resolve"]);
        for b in &bodies {
            assert_eq!(b["dedup_key"], "01JD4Z8X3K7M2Q9R5T6V8W0Y1A");
            assert_eq!(b["routing_key"], KEY);
        }
        assert_eq!(
            bodies[2],
            json!({"routing_key": KEY, "event_action": "acknowledge",
                   "dedup_key": "01JD4Z8X3K7M2Q9R5T6V8W0Y1A", "client": "vigil"})
        );
        assert!(bodies[3].get("payload").is_none());
    }

    #[tokio::test]
    async fn severities_map_and_the_summary_falls_back_to_the_text_cut_to_1024_chars() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(accepted())
            .mount(&server)
            .await;
        let n = notifier(&server.uri());
        for sev in Severity::ALL {
            let mut msg = notification(NotifyKind::Trigger);
            msg.severity = sev;
            msg.subject = None;
            msg.text = "é".repeat(1500);
            n.send(&msg).await.unwrap();
        }
        let bodies = received_bodies(&server).await;
        let sevs: Vec<&str> = bodies
            .iter()
            .map(|b| b["payload"]["severity"].as_str().unwrap())
            .collect();
        assert_eq!(sevs, ["critical", "error", "warning", "info"]);
        let summary = bodies[0]["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), 1024);
        assert!(bodies[0].get("links").is_none());
    }

    #[tokio::test]
    async fn the_shared_status_table() {
        crate::notify::testkit::assert_status_table(
            notifier,
            ResponseTemplate::new,
            &[
                (200, None, Ok(())),
                (202, None, Ok(())),
                (429, Some("7"), Err(Some(Some(Duration::from_secs(7))))),
                (429, None, Err(Some(Some(RATE_LIMITED_HINT)))),
                (500, None, Err(Some(None))),
                (502, None, Err(Some(None))),
                (503, Some("2"), Err(Some(Some(Duration::from_secs(2))))),
                (400, None, Err(None)),
                (401, None, Err(None)),
                (403, None, Err(None)),
                (404, None, Err(None)),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn a_400_keeps_pagerdutys_explanation() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(400).set_body_json(json!({
                "status": "invalid event", "message": "Event object is invalid",
                "errors": ["'payload.summary' is missing or blank"]
            })))
            .mount(&server)
            .await;
        let err = notifier(&server.uri())
            .send(&notification(NotifyKind::Trigger))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, NotifyError::Permanent { .. }));
        assert!(
            text.contains("Event object is invalid: 'payload.summary' is missing or blank"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_failure_puts_the_routing_key_in_error_text() {
        let mut errors = Vec::new();
        // Every status path, with PagerDuty quoting the key back at us in the body.
        for status in [400, 401, 403, 404, 408, 429, 500, 502, 503] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                    "status": "invalid event", "message": format!("bad key {KEY}"),
                    "errors": [format!("routing_key {KEY} unknown")]
                })))
                .mount(&server)
                .await;
            errors.push(
                notifier(&server.uri())
                    .send(&notification(NotifyKind::Trigger))
                    .await
                    .unwrap_err(),
            );
        }
        // A network failure: a port nothing listens on.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        errors.push(
            notifier(&format!("http://{closed}"))
                .send(&notification(NotifyKind::Resolved))
                .await
                .unwrap_err(),
        );
        assert_eq!(errors.len(), 10);
        for e in errors {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(KEY), "{text}");
        }
    }
}

//! The `slack` channel: Block Kit messages through the Web API (`chat.postMessage`,
//! `chat.update`) with a bot token.
//!
//! In: a [`Notification`]. Out: a [`Receipt`] whose reference is `"<channel_id>:<ts>"` of the
//! message, so later notifications about the same incident (`Notification::reference`) edit that
//! message instead of posting another:
//! - trigger / escalate without a reference: a new alert message with Acknowledge, Ack 15m,
//!   Ack 1h and Resolve buttons (each button's `value` is the incident id; clicks come back
//!   through `ingest::slack`);
//! - any kind with a reference: `chat.update` of that message, redrawn for the incident's new
//!   state (escalated to whom, acknowledged by whom and when with only Resolve left, resolved
//!   with no buttons);
//! - acknowledged / resolved without a reference: a short status message.
//!
//! Errors: HTTP 429 and 5xx, and the `ok:false` codes Slack documents as retryable, are
//! transient; every other `ok:false` is permanent and names Slack's error code. The bot token is
//! only ever in the `Authorization` header, never in an error.
//!
//! Pacing: Slack allows about one `chat.postMessage` per second per channel. The notifier says so
//! ([`Notifier::pace`]) and the worker keeps that pace (`notify::pace`): a post that would come too
//! soon waits its turn in the outbox, in order, without counting as an attempt.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::pace::Pace;
use super::{
    ChannelBuilder, ChannelSettings, Notification, Notifier, NotifyError, Receipt, Recipient,
    built, request,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{ChannelType, Form, Key, Reach};
use crate::domain::Severity;
use crate::incident::NotifyKind;

inventory::submit!(
    ChannelType::new("slack", Reach::Destination)
        .keys(&[
            Key::required("channel", Form::SlackChannel),
            Key::required("token_env", Form::EnvName),
        ])
        .limits(SECTION_TEXT_MAX, 150)
);

inventory::submit!(
    ChannelBuilder::new("slack", |spec, settings, http| {
        let channel = spec
            .slack_channel("channel")
            .ok_or("slack needs `channel`")?;
        let token_env = spec
            .env_name("token_env")
            .ok_or("slack needs `token_env`")?;
        built(SlackNotifier::new(
            channel,
            token_env,
            settings,
            http.clone(),
        ))
    })
    .endpoint(DEFAULT_API_URL)
);

/// The Web API's base URL, unless `ChannelSettings::endpoints["slack"]` says otherwise.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Slack's pace for `chat.postMessage` to one channel (reference/slack.md §4, "special tier").
/// This is the provider's limit, not a backoff: the worker keeps it by delaying sends.
pub const POST_INTERVAL: Duration = Duration::from_secs(1);

/// `ok:false` codes worth retrying (reference/slack.md §4); every other code is permanent.
const RETRYABLE_CODES: [&str; 6] = [
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Block Kit limits (reference/slack.md §6), in characters.
const SECTION_TEXT_MAX: usize = 3000;
const FIELD_TEXT_MAX: usize = 2000;
const CONTEXT_TEXT_MAX: usize = 2000;
/// The notification `text` fallback; Slack truncates far later, this keeps pushes readable.
const FALLBACK_TEXT_MAX: usize = 1000;

/// The labels shown as fields, in order, when present: (label, title). `alarm_name` stands in
/// for `kind` when both exist, so a CloudWatch alarm shows its name and a bot event its kind.
const KEY_FIELDS: [(&str, &str); 6] = [
    ("alarm_name", "Alarm"),
    ("kind", "Kind"),
    ("region", "Region"),
    ("exchange", "Exchange"),
    ("error", "Error"),
    ("account", "Account"),
];

pub struct SlackNotifier {
    /// The configured channel (`#name` or id), where new messages go.
    channel: String,
    /// The bot token (`xoxb-…`). Only ever sent as a bearer header.
    token: String,
    /// Web API base URL without a trailing slash.
    api_url: String,
    http: reqwest::Client,
    timeout: Duration,
    /// For the "at HH:MM UTC" of status lines and for Retry-After dates.
    clock: Arc<dyn Clock>,
}

impl SlackNotifier {
    /// Reads the bot token from `token_env` through `settings.secrets`; the error names the
    /// variable, never a value.
    pub fn new(
        channel: &str,
        token_env: &str,
        settings: &ChannelSettings,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        let token = settings
            .secrets
            .get(token_env)
            .map_err(|e| format!("{e} (Slack bot token)"))?;
        Ok(Self {
            channel: channel.to_string(),
            token,
            api_url: settings
                .endpoint("slack")
                .unwrap_or(DEFAULT_API_URL)
                .trim_end_matches('/')
                .to_string(),
            http,
            timeout: settings.http_timeout,
            clock: Arc::new(SystemClock),
        })
    }

    /// Replaces the wall clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// One Web API call; classifies every failure.
    async fn call(&self, method: &str, body: &Value) -> Result<Posted, NotifyError> {
        let what = format!("Slack {method}");
        let req = self
            .http
            .post(format!("{}/{method}", self.api_url))
            .bearer_auth(&self.token)
            .json(body);
        let sent = request::send(req, self.timeout, &what, self.clock.now()).await?;
        // 429 (with its Retry-After) and 5xx are transient, other non-2xx permanent.
        sent.classify(&what, None)?;
        let (status, retry_after) = (sent.status, sent.retry_after);
        let answer: Answer = sent
            .response
            .json()
            .await
            .map_err(|_| NotifyError::Transient {
                retry_after: None,
                reason: format!("{what} answered HTTP {} with an unreadable body", status),
            })?;
        if answer.ok {
            return Ok(Posted {
                channel: answer.channel,
                ts: answer.ts,
            });
        }
        let code = error_code(answer.error.as_deref(), &self.token);
        if RETRYABLE_CODES.contains(&code.as_str()) {
            Err(NotifyError::Transient {
                retry_after,
                reason: format!("{what} failed: {code}"),
            })
        } else {
            Err(NotifyError::Permanent {
                reason: format!("{what} failed: {code}"),
            })
        }
    }
}

#[async_trait::async_trait]
impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }

    /// New alert messages (trigger, and an escalation, which posts when the channel has no
    /// earlier message) are paced per Slack channel, shared by every vigil channel that names it.
    /// Status updates mostly edit the earlier message (`chat.update`, a per-workspace tier, not
    /// this limit), so they are not held behind a burst of new alerts.
    fn pace(&self, kind: NotifyKind) -> Option<Pace> {
        matches!(kind, NotifyKind::Trigger | NotifyKind::Escalate).then(|| Pace {
            key: format!("slack:{}", self.channel),
            interval: POST_INTERVAL,
            burst: 1,
        })
    }

    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError> {
        let now = self.clock.now();
        let existing = msg.reference.as_deref().and_then(parse_reference);
        if msg.reference.is_some() && existing.is_none() {
            // Only vigil writes references, so this is a bug elsewhere; a new message is better
            // than none.
            tracing::warn!("Stored Slack reference is unreadable; posting a new message.");
        }
        let (method, body, fallback_channel) = match existing {
            // Edits are not paced: chat.update is Tier 3 (50+ a minute per workspace), not the
            // per-channel posting limit, and a 429 from it is still classified below. Note that
            // Slack does not notify people newly mentioned in an edit.
            Some((channel, ts)) => {
                let mut body = alert_message(msg, now);
                body["channel"] = json!(channel);
                body["ts"] = json!(ts);
                ("chat.update", body, channel.to_string())
            }
            None => {
                let mut body = match msg.kind {
                    NotifyKind::Trigger | NotifyKind::Escalate | NotifyKind::Test => {
                        alert_message(msg, now)
                    }
                    NotifyKind::Acknowledged | NotifyKind::Resolved => status_message(msg, now),
                };
                body["channel"] = json!(self.channel);
                body["unfurl_links"] = json!(false);
                ("chat.postMessage", body, self.channel.clone())
            }
        };
        let posted = self.call(method, &body).await?;
        Ok(Receipt {
            reference: posted
                .ts
                .map(|ts| format!("{}:{ts}", posted.channel.unwrap_or(fallback_channel))),
        })
    }
}

/// The fields of a Web API answer vigil reads.
#[derive(Deserialize)]
struct Answer {
    ok: bool,
    error: Option<String>,
    channel: Option<String>,
    ts: Option<String>,
}

/// Where a posted or updated message is.
struct Posted {
    channel: Option<String>,
    ts: Option<String>,
}

/// `"C07ALERTS01:1763604942.114259"` → (channel id, ts).
fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let (channel, ts) = reference.split_once(':')?;
    (!channel.is_empty() && !ts.is_empty()).then_some((channel, ts))
}

/// Slack's `error` code, reduced to the characters codes are made of (so it is safe on the
/// timeline) and with the token removed should Slack ever echo it.
fn error_code(error: Option<&str>, token: &str) -> String {
    let raw = error.unwrap_or("unknown_error").replace(token, "");
    let code: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if code.is_empty() {
        "unknown_error".into()
    } else {
        code
    }
}

/// The full alert message in the incident's current state: what happened, the key labels, a
/// link, then who is paged (trigger), who it escalated to (escalate), who acknowledged it (with
/// only Resolve left) or who resolved it (no buttons).
fn alert_message(msg: &Notification, now: DateTime<Utc>) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "block_id": "alert_summary",
        // The words, severity included, are the template's (`templates/slack/`); only the
        // colour is added here.
        "text": mrkdwn(&format!(
            "{} {}",
            severity_emoji(msg.severity),
            escape_cut(&msg.text, SECTION_TEXT_MAX - 40),
        )),
    })];
    let fields = key_fields(msg);
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "block_id": "alert_fields", "fields": fields}));
    }
    if let Some(link) = &msg.link {
        blocks.push(context("alert_link", &link_to(link)));
    }
    let state = match msg.kind {
        NotifyKind::Trigger if msg.people.is_empty() => None,
        NotifyKind::Trigger => Some(format!("Paging {}", people(&msg.people))),
        NotifyKind::Escalate => Some(escalated_line(msg)),
        NotifyKind::Acknowledged => Some(done_line("Acknowledged", msg, now)),
        NotifyKind::Resolved => Some(done_line("Resolved", msg, now)),
        NotifyKind::Test => Some("Test message: no incident, nothing to acknowledge".into()),
    };
    if let Some(line) = state {
        blocks.push(context("alert_state", &line));
    }
    let id = msg.incident.to_string();
    match msg.kind {
        NotifyKind::Trigger | NotifyKind::Escalate => blocks.push(actions(vec![
            button("ack", "Acknowledge", &id, Some("primary")),
            button("ack_15m", "Ack 15m", &id, None),
            button("ack_1h", "Ack 1h", &id, None),
            resolve_button(&id),
        ])),
        NotifyKind::Acknowledged => blocks.push(actions(vec![resolve_button(&id)])),
        NotifyKind::Resolved | NotifyKind::Test => {}
    }
    let mut prefix = match msg.kind {
        NotifyKind::Acknowledged => "ACKNOWLEDGED".to_string(),
        NotifyKind::Resolved => "RESOLVED".to_string(),
        NotifyKind::Test => "TEST".to_string(),
        _ => msg.severity.as_str().to_uppercase(),
    };
    if msg.drill {
        prefix.insert_str(0, "DRILL ");
    }
    json!({"text": fallback(&prefix, msg), "blocks": blocks})
}

/// A short standalone status line, for an acknowledge or resolve when vigil has no earlier
/// message to edit.
fn status_message(msg: &Notification, now: DateTime<Utc>) -> Value {
    let (emoji, verb) = match msg.kind {
        NotifyKind::Resolved => (":white_check_mark:", "Resolved"),
        _ => (":eyes:", "Acknowledged"),
    };
    let mut blocks = vec![json!({
        "type": "section",
        "block_id": "alert_status",
        "text": mrkdwn(&format!(
            "{emoji} {}: {}",
            done_line(verb, msg, now),
            escape_cut(&msg.summary, SECTION_TEXT_MAX - 200),
        )),
    })];
    if let Some(link) = &msg.link {
        blocks.push(context("alert_link", &link_to(link)));
    }
    json!({"text": fallback(&verb.to_uppercase(), msg), "blocks": blocks})
}

/// The push-notification text Slack shows where blocks are not rendered.
fn fallback(prefix: &str, msg: &Notification) -> String {
    format!("{prefix}: {}", escape_cut(&msg.summary, FALLBACK_TEXT_MAX))
}

/// "Acknowledged by Mei Tan at 02:17 UTC". The time is when this message is built, which is
/// when the worker sends the update right after the transition (a retry shows a later time).
fn done_line(verb: &str, msg: &Notification, now: DateTime<Utc>) -> String {
    let at = now.format("%H:%M");
    match &msg.by {
        Some(by) => format!("{verb} by {} at {at} UTC", escape_cut(by, 200)),
        None => format!("{verb} at {at} UTC"),
    }
}

/// "Escalated to <@U…>, Ravi Iyer (step 2)".
fn escalated_line(msg: &Notification) -> String {
    let mut line = "Escalated".to_string();
    if !msg.people.is_empty() {
        line.push_str(" to ");
        line.push_str(&people(&msg.people));
    }
    if let Some((loop_, step)) = msg.step {
        // vigil counts steps and loops from 0; people count from 1.
        if loop_ == 0 {
            line.push_str(&format!(" (step {})", step + 1));
        } else {
            line.push_str(&format!(" (step {}, round {})", step + 1, loop_ + 1));
        }
    }
    line
}

/// Mentions for people with a Slack id (so they are notified), escaped names for the rest.
fn people(people: &[Recipient]) -> String {
    people
        .iter()
        .map(|p| match p.slack.as_deref().filter(|id| is_member_id(id)) {
            Some(id) => format!("<@{id}>"),
            None => escape_cut(&p.name, 100),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Slack member ids are upper-case letters and digits (`U07QK3M2ZLP`, `W…`); anything else is
/// not put inside `<@…>` where it could form another control sequence.
fn is_member_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Up to ten `*Title*\nvalue` fields from the labels that matter to a responder.
fn key_fields(msg: &Notification) -> Vec<Value> {
    let mut fields = Vec::new();
    for (label, title) in KEY_FIELDS {
        if label == "kind" && msg.labels.contains_key("alarm_name") {
            continue;
        }
        if let Some(value) = msg.labels.get(label) {
            fields.push(mrkdwn(&format!(
                "*{title}*\n{}",
                escape_cut(value, FIELD_TEXT_MAX - 20)
            )));
        }
    }
    if msg.count > 1 {
        fields.push(mrkdwn(&format!("*Occurrences*\n{}", msg.count)));
    }
    fields.truncate(10);
    fields
}

fn link_to(url: &str) -> String {
    // Inside `<url|label>`, `|` and `>` would end the URL early; `&<>` are escaped as everywhere.
    let url = escape_cut(&url.replace('|', "%7C"), CONTEXT_TEXT_MAX - 40);
    format!("<{url}|Open in vigil>")
}

fn severity_emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":red_circle:",
        Severity::High => ":large_orange_circle:",
        Severity::Medium => ":large_yellow_circle:",
        Severity::Low => ":white_circle:",
    }
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

fn context(block_id: &str, text: &str) -> Value {
    json!({"type": "context", "block_id": block_id, "elements": [mrkdwn(text)]})
}

fn actions(elements: Vec<Value>) -> Value {
    json!({"type": "actions", "block_id": "alert_actions", "elements": elements})
}

fn button(action_id: &str, label: &str, incident: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": incident,
    });
    if let Some(style) = style {
        b["style"] = json!(style);
    }
    b
}

fn resolve_button(incident: &str) -> Value {
    let mut b = button("resolve", "Resolve", incident, Some("danger"));
    b["confirm"] = json!({
        "title": {"type": "plain_text", "text": "Resolve incident?"},
        "text": {"type": "mrkdwn", "text": "This closes the incident and stops its escalation for everyone."},
        "confirm": {"type": "plain_text", "text": "Resolve"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    });
    b
}

/// `&`, `<`, `>` escaped for mrkdwn (text from alarm payloads must not form links or mentions),
/// cut to `max` characters with a visible `…` and never inside an escape.
fn escape_cut(s: &str, max: usize) -> String {
    let escape = |c: char| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    };
    let width = |c: char| escape(c).map_or(1, str::len);
    if s.chars().map(width).sum::<usize>() <= max {
        return s
            .chars()
            .fold(String::with_capacity(s.len()), |mut out, c| {
                match escape(c) {
                    Some(e) => out.push_str(e),
                    None => out.push(c),
                }
                out
            });
    }
    // One character is kept for the marker.
    let mut out = String::new();
    let mut count = 0;
    for c in s.chars() {
        if count + width(c) > max.saturating_sub(1) {
            break;
        }
        match escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
        count += width(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::clock::ManualClock;
    use crate::notify::SecretSource;
    use crate::notify::testkit::{INCIDENT, notification};

    const TOKEN: &str = "xoxb-1234567890-TESTBOTTOKEN-abcdef";

    fn notifier(base: &str) -> SlackNotifier {
        let settings = ChannelSettings {
            endpoints: [("slack".to_string(), base.to_string())].into(),
            secrets: SecretSource::from_map(HashMap::from([(
                "SLACK_TOKEN".to_string(),
                TOKEN.to_string(),
            )])),
            ..ChannelSettings::default()
        };
        let at = DateTime::parse_from_rfc3339("2026-11-20T02:17:03Z")
            .unwrap()
            .with_timezone(&Utc);
        SlackNotifier::new(
            "C07ALERTS01",
            "SLACK_TOKEN",
            &settings,
            reqwest::Client::new(),
        )
        .unwrap()
        .with_clock(Arc::new(ManualClock::new(at)))
    }

    fn posted() -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({
            "ok": true, "channel": "C07ALERTS01", "ts": "1763604942.114259",
            "message": {"text": "x"}
        }))
    }

    fn slack_error(code: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": code}))
    }

    async fn bodies(server: &MockServer) -> Vec<(String, Value)> {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.url.path().to_string(),
                    serde_json::from_slice(&r.body).unwrap(),
                )
            })
            .collect()
    }

    /// Every `elements` of every actions block.
    fn buttons(body: &Value) -> Vec<Value> {
        body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .flat_map(|b| b["elements"].as_array().unwrap().clone())
            .collect()
    }

    fn all_text(body: &Value) -> String {
        body["blocks"].to_string()
    }

    #[test]
    fn a_missing_token_names_the_variable() {
        let err = SlackNotifier::new(
            "C1",
            "SLACK_MISSING",
            &ChannelSettings {
                secrets: SecretSource::from_map(HashMap::new()),
                ..ChannelSettings::default()
            },
            reqwest::Client::new(),
        )
        .err()
        .unwrap();
        assert!(err.contains("SLACK_MISSING"), "{err}");
    }

    #[tokio::test]
    async fn a_trigger_posts_an_alert_with_four_buttons_and_escaped_text() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/chat.postMessage"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(posted())
            .expect(1)
            .mount(&server)
            .await;
        let mut msg = notification(NotifyKind::Trigger);
        msg.text = "*CRITICAL* CPU <@U999> & <!channel> > 85%".into();
        msg.labels.insert("account".into(), "1234<5678>".into());
        msg.labels.insert("kind".into(), "cloudwatch_alarm".into());
        msg.link = Some(format!(
            "https://vigil.example.com/v1/incidents/{INCIDENT}?a=1&b=2"
        ));
        let receipt = notifier(&server.uri()).send(&msg).await.unwrap();
        assert_eq!(
            receipt.reference.as_deref(),
            Some("C07ALERTS01:1763604942.114259")
        );

        let (_, body) = bodies(&server).await.remove(0);
        assert_eq!(body["channel"], "C07ALERTS01");
        assert_eq!(body["text"], "CRITICAL: ALARM eks-prod-apse1-node-cpu-high");
        let summary = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(
            summary,
            ":red_circle: *CRITICAL* CPU &lt;@U999&gt; &amp; &lt;!channel&gt; &gt; 85%"
        );
        let fields: Vec<&str> = body["blocks"][1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "*Alarm*\neks-prod-apse1-node-cpu-high",
                "*Region*\nap-southeast-1",
                "*Account*\n1234&lt;5678&gt;",
                "*Occurrences*\n3",
            ]
        );
        let text = all_text(&body);
        assert!(
            text.contains(&format!(
                "<https://vigil.example.com/v1/incidents/{INCIDENT}?a=1&amp;b=2|Open in vigil>"
            )),
            "{text}"
        );
        assert!(text.contains("Paging <@U07QK3M2ZLP>, Ravi Iyer"), "{text}");

        let buttons = buttons(&body);
        let ids: Vec<&str> = buttons
            .iter()
            .map(|b| b["action_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["ack", "ack_15m", "ack_1h", "resolve"]);
        let labels: Vec<&str> = buttons
            .iter()
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["Acknowledge", "Ack 15m", "Ack 1h", "Resolve"]);
        for b in &buttons {
            assert_eq!(b["value"], INCIDENT);
        }
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[3]["style"], "danger");
        assert!(buttons[3]["confirm"].is_object());
        assert!(buttons[1].get("style").is_none());
    }

    #[tokio::test]
    async fn an_acknowledgement_updates_the_earlier_message_leaving_only_resolve() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/chat.update"))
            .respond_with(posted())
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/chat.postMessage"))
            .respond_with(posted())
            .expect(0)
            .mount(&server)
            .await;
        let mut msg = notification(NotifyKind::Acknowledged);
        msg.reference = Some("C07ALERTS01:1763604942.114259".into());
        msg.by = Some("Mei <Tan>".into());
        let receipt = notifier(&server.uri()).send(&msg).await.unwrap();
        assert_eq!(
            receipt.reference.as_deref(),
            Some("C07ALERTS01:1763604942.114259")
        );
        let (_, body) = bodies(&server).await.remove(0);
        assert_eq!(body["channel"], "C07ALERTS01");
        assert_eq!(body["ts"], "1763604942.114259");
        assert!(
            all_text(&body).contains("Acknowledged by Mei &lt;Tan&gt; at 02:17 UTC"),
            "{body}"
        );
        let ids: Vec<Value> = buttons(&body)
            .iter()
            .map(|b| b["action_id"].clone())
            .collect();
        assert_eq!(ids, [json!("resolve")]);
    }

    #[tokio::test]
    async fn a_resolve_updates_the_message_without_buttons() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/chat.update"))
            .respond_with(posted())
            .expect(1)
            .mount(&server)
            .await;
        let mut msg = notification(NotifyKind::Resolved);
        msg.reference = Some("C07ALERTS01:1763604942.114259".into());
        msg.by = Some("Mei Tan".into());
        notifier(&server.uri()).send(&msg).await.unwrap();
        let (_, body) = bodies(&server).await.remove(0);
        assert!(all_text(&body).contains("Resolved by Mei Tan at 02:17 UTC"));
        assert!(buttons(&body).is_empty());
        assert_eq!(body["text"], "RESOLVED: ALARM eks-prod-apse1-node-cpu-high");
    }

    #[tokio::test]
    async fn an_escalation_updates_the_message_with_who_and_which_step() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/chat.update"))
            .respond_with(posted())
            .expect(1)
            .mount(&server)
            .await;
        let mut msg = notification(NotifyKind::Escalate);
        msg.reference = Some("C07ALERTS01:1763604942.114259".into());
        msg.step = Some((0, 1));
        notifier(&server.uri()).send(&msg).await.unwrap();
        let (_, body) = bodies(&server).await.remove(0);
        assert!(
            all_text(&body).contains("Escalated to <@U07QK3M2ZLP>, Ravi Iyer (step 2)"),
            "{body}"
        );
        assert_eq!(buttons(&body).len(), 4);
    }

    #[tokio::test]
    async fn status_updates_without_a_reference_post_a_short_message() {
        for (kind, want) in [
            (
                NotifyKind::Acknowledged,
                "Acknowledged by Mei Tan at 02:17 UTC",
            ),
            (NotifyKind::Resolved, "Resolved by Mei Tan at 02:17 UTC"),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .and(path("/chat.postMessage"))
                .respond_with(posted())
                .expect(1)
                .mount(&server)
                .await;
            let mut msg = notification(kind);
            msg.by = Some("Mei Tan".into());
            notifier(&server.uri()).send(&msg).await.unwrap();
            let (_, body) = bodies(&server).await.remove(0);
            assert!(all_text(&body).contains(want), "{body}");
            assert!(buttons(&body).is_empty());
            assert_eq!(body["channel"], "C07ALERTS01");
        }
    }

    #[tokio::test]
    async fn new_alert_messages_are_paced_per_slack_channel_and_never_refused_for_it() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(posted())
            .expect(2)
            .mount(&server)
            .await;
        let n = notifier(&server.uri());
        let want = Some(Pace {
            key: "slack:C07ALERTS01".into(),
            interval: POST_INTERVAL,
            burst: 1,
        });
        assert_eq!(n.pace(NotifyKind::Trigger), want);
        assert_eq!(n.pace(NotifyKind::Escalate), want);
        assert_eq!(n.pace(NotifyKind::Acknowledged), None);
        assert_eq!(n.pace(NotifyKind::Resolved), None);
        // The notifier itself sends whenever asked: keeping the pace is the worker's job.
        n.send(&notification(NotifyKind::Trigger)).await.unwrap();
        n.send(&notification(NotifyKind::Trigger)).await.unwrap();
    }

    #[tokio::test]
    async fn the_shared_status_table() {
        crate::notify::testkit::assert_status_table(
            notifier,
            |_| posted(),
            &[
                (200, None, Ok(())),
                (429, Some("3"), Err(Some(Some(Duration::from_secs(3))))),
                (500, None, Err(Some(None))),
                (502, None, Err(Some(None))),
                (503, None, Err(Some(None))),
                (400, None, Err(None)),
                (401, None, Err(None)),
                (403, None, Err(None)),
                (404, None, Err(None)),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn ok_false_codes_are_retryable_or_permanent_per_the_reference() {
        for code in RETRYABLE_CODES {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(slack_error(code).insert_header("Retry-After", "5"))
                .mount(&server)
                .await;
            match notifier(&server.uri())
                .send(&notification(NotifyKind::Trigger))
                .await
            {
                Err(NotifyError::Transient {
                    retry_after,
                    reason,
                }) => {
                    assert_eq!(retry_after, Some(Duration::from_secs(5)), "{code}");
                    assert!(reason.contains(code), "{reason}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        for code in [
            "channel_not_found",
            "not_in_channel",
            "invalid_auth",
            "token_revoked",
            "invalid_blocks",
            "msg_too_long",
            "missing_scope",
        ] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(slack_error(code))
                .mount(&server)
                .await;
            match notifier(&server.uri())
                .send(&notification(NotifyKind::Trigger))
                .await
            {
                Err(NotifyError::Permanent { reason }) => {
                    assert_eq!(reason, format!("Slack chat.postMessage failed: {code}"))
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        // chat.update's own codes are permanent too.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(slack_error("message_not_found"))
            .mount(&server)
            .await;
        let mut msg = notification(NotifyKind::Acknowledged);
        msg.reference = Some("C07ALERTS01:1763604942.114259".into());
        assert!(matches!(
            notifier(&server.uri()).send(&msg).await,
            Err(NotifyError::Permanent { reason }) if reason == "Slack chat.update failed: message_not_found"
        ));
    }

    #[tokio::test]
    async fn no_failure_puts_the_bot_token_in_error_text() {
        let mut errors = Vec::new();
        for status in [400, 401, 403, 404, 408, 429, 500, 502, 503] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(
                    ResponseTemplate::new(status)
                        .set_body_json(json!({"ok": false, "error": format!("bad {TOKEN}")})),
                )
                .mount(&server)
                .await;
            errors.push(
                notifier(&server.uri())
                    .send(&notification(NotifyKind::Trigger))
                    .await
                    .unwrap_err(),
            );
        }
        // `ok:false` answers, including one that quotes the token, and an unreadable 200.
        for body in [
            json!({"ok": false, "error": "invalid_auth"}).to_string(),
            json!({"ok": false, "error": "ratelimited"}).to_string(),
            json!({"ok": false, "error": TOKEN}).to_string(),
            json!({"ok": false, "error": format!("token_revoked {TOKEN}")}).to_string(),
            format!("<html>{TOKEN}</html>"),
        ] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200).set_body_string(body))
                .mount(&server)
                .await;
            errors.push(
                notifier(&server.uri())
                    .send(&notification(NotifyKind::Trigger))
                    .await
                    .unwrap_err(),
            );
        }
        // Network failures.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let n = notifier(&format!("http://{closed}"));
        errors.push(
            n.send(&notification(NotifyKind::Trigger))
                .await
                .unwrap_err(),
        );
        errors.push(
            n.send(&notification(NotifyKind::Trigger))
                .await
                .unwrap_err(),
        );
        assert_eq!(errors.len(), 16);
        let alnum: String = TOKEN
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        for e in errors {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(TOKEN), "{text}");
            assert!(!text.contains("TESTBOTTOKEN"), "{text}");
            assert!(!text.contains(&alnum), "{text}");
        }
    }

    #[test]
    fn escaping_cuts_with_a_marker_and_never_inside_an_entity() {
        assert_eq!(escape_cut("a<b>&c", 100), "a&lt;b&gt;&amp;c");
        assert_eq!(escape_cut("abcdef", 6), "abcdef");
        assert_eq!(escape_cut("abcdefg", 6), "abcde…");
        assert_eq!(escape_cut("abc&def", 6), "abc…");
        assert_eq!(escape_cut("", 6), "");
    }

    #[test]
    fn references_and_member_ids_are_checked() {
        assert_eq!(parse_reference("C1:123.4"), Some(("C1", "123.4")));
        assert_eq!(parse_reference("C1"), None);
        assert_eq!(parse_reference(":1"), None);
        assert!(is_member_id("U07QK3M2ZLP"));
        assert!(!is_member_id("U07|x>"));
        assert!(!is_member_id(""));
    }
}

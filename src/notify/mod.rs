//! Stage 5: delivery. One `Notifier` per configured channel, one file per channel type; the
//! `worker` owns what is shared (reading the outbox, retry with backoff, Retry-After, giving up,
//! the timeline entry per attempt). A channel only builds one request, sends it once and says
//! whether a failure is worth retrying; the HTTP channels send through one helper (`request`:
//! the timeout, Retry-After, the status classified by `retry`).
//!
//! ## Adding a channel type
//! A channel type is a plug-in: nothing outside its own files names it. To add one (say
//! `teams`), touch only:
//! 1. **`src/notify/teams.rs`** (and `pub mod teams;` below): the `Notifier`, and its descriptor
//!    in two `inventory::submit!`s (`webhook.rs` is a short example):
//!    - a [`crate::config::ChannelType`] (the data part, which `config` reads without seeing
//!      this layer): the type name, its routing keys (required or optional, each of a
//!      [`crate::config::Form`]: environment variable name, URL, Slack channel, email list),
//!      whom it reaches ([`crate::config::Reach`]), its message limits, its failover role and
//!      whose acks it must not echo, written
//!      `ChannelType::new("teams", Reach::Destination).keys(&[..]).limits(..)`;
//!    - a [`ChannelBuilder`] (`ChannelBuilder::new("teams", |spec, settings, http| ..)`): how to
//!      build its notifier from a compiled [`crate::config::ChannelSpec`] and the
//!      [`ChannelSettings`], and its provider's default base URL, if any (overridden by
//!      `ChannelSettings::endpoints["teams"]`, which `--endpoint teams=URL` fills);
//! 2. **`templates/teams/`**: its own `<kind>.txt` (and `.subject`), or none to use
//!    `templates/default/`;
//! 3. **its tests**, in its file (the shared status table, `testkit`) and end to end in
//!    `tests/api/`.
//!
//! `config::compile` checks channels against the type's keys, `render` cuts to its limits,
//! `escalate` and `oncall` ask it whom it reaches, the worker asks it about failover and echoes,
//! and [`Notifiers::build`] builds through its builder. A type registered twice, or a builder
//! without its data part (or the reverse), is refused at start-up ([`check_registry`]).
//! `tests/api/plugin_channel.rs` registers a test-only type from the tests alone.

pub mod email;
pub mod log;
pub mod pace;
pub mod pagerduty;
pub mod phone;
pub mod render;
mod request;
pub mod retry;
pub mod slack;
pub mod sms;
pub mod test_message;
pub mod webhook;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{ChannelSpec, ChannelTypes, Policy, channel_types};
use crate::domain::{EmailAddress, IncidentId, Labels, Severity};
use crate::incident::{IncidentStatus, NotifyKind};

/// A person as a notification addresses them. Contact details are resolved from the current
/// policy when the message is sent.
#[derive(Debug, Clone, Serialize)]
pub struct Recipient {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub phone: Option<crate::domain::PhoneNumber>,
    #[serde(skip)]
    pub email: Option<crate::domain::EmailAddress>,
    pub slack: Option<String>,
}

/// Everything a channel needs to say one thing about one incident.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The outbox row's id: stable across retries, so receivers can deduplicate.
    pub delivery_id: String,
    pub incident: IncidentId,
    pub kind: NotifyKind,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub summary: String,
    pub description: Option<String>,
    pub labels: Labels,
    pub channel: String,
    /// The person this message is for (personal channels).
    pub recipient: Option<Recipient>,
    /// Everyone the step targeted (destination channels).
    pub people: Vec<Recipient>,
    /// (loop, step) for pages.
    pub step: Option<(u32, u32)>,
    pub count: u64,
    pub opened_at: DateTime<Utc>,
    /// Who acknowledged or resolved it, for status updates.
    pub by: Option<String>,
    /// A link to the incident in vigil's API.
    pub link: Option<String>,
    pub attempt: u32,
    /// When the worker decided this attempt (the injected clock): what a provider's Retry-After
    /// date is measured from.
    #[serde(skip)]
    pub now: DateTime<Utc>,
    /// The message body rendered for this channel from `templates/<type>/<kind>.txt`, already
    /// truncated to the channel's limit with a visible marker.
    pub text: String,
    /// A one-line title rendered from `templates/<type>/<kind>.subject` (email subject,
    /// PagerDuty summary), when the channel has one.
    pub subject: Option<String>,
    /// Email HTML rendered from `templates/email/<kind>.html`.
    #[serde(skip)]
    pub html: Option<String>,
    /// A signed, expiring link that acknowledges the incident (GET shows a confirmation page,
    /// only POST acts). Never logged.
    #[serde(skip)]
    pub ack_url: Option<String>,
    /// This channel's earlier provider reference for the incident (Slack `channel:ts`), so
    /// status updates edit the same message instead of posting a new one.
    pub reference: Option<String>,
    /// The incident opened inside a drill window: `text` and `subject` already say DRILL
    /// (`render`); channels that build their own words (the phone call, Slack's fallback) say
    /// it too.
    pub drill: bool,
}

/// What a provider said when it accepted a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's reference (Slack ts, SNS MessageId, PagerDuty dedup_key, HTTP status).
    pub reference: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Retrying cannot help (bad request, bad credentials, unknown recipient).
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// Worth another try, not before `retry_after` if the provider said so.
    #[error("transient failure: {reason}")]
    Transient {
        retry_after: Option<Duration>,
        reason: String,
    },
}

#[async_trait::async_trait] // stored as Arc<dyn Notifier>; native async-fn traits are not dyn-compatible
pub trait Notifier: Send + Sync {
    /// The channel type, for metrics and logs (`webhook`, `log`, ...).
    fn kind(&self) -> &'static str;
    /// Sends once. Never retries; never puts a secret or a phone number in the error.
    async fn send(&self, msg: &Notification) -> Result<Receipt, NotifyError>;
    /// The provider's rate limit for a message of `kind`, which the worker keeps by delaying
    /// the send (`pace`): a paced hold is never a failed attempt. `None`: not paced.
    fn pace(&self, _kind: NotifyKind) -> Option<pace::Pace> {
        None
    }
}

/// The notifiers for one policy, by channel name. Rebuilt on every reload.
#[derive(Default, Clone)]
pub struct Notifiers {
    by_name: BTreeMap<String, Arc<dyn Notifier>>,
    /// Channels that could not be built, with the reason (logged at load, recorded per delivery).
    unavailable: BTreeMap<String, String>,
}

/// Looks secrets up by the environment-variable name `routing/` gives. The process environment
/// by default; tests pass a map so each test has its own secrets without touching the process env.
#[derive(Clone, Default)]
pub struct SecretSource {
    overrides: Option<Arc<std::collections::HashMap<String, String>>>,
}

impl SecretSource {
    pub fn from_map(map: std::collections::HashMap<String, String>) -> Self {
        Self {
            overrides: Some(Arc::new(map)),
        }
    }

    /// The secret in variable `name`, or an error that names the variable (never a value).
    pub fn get(&self, name: &str) -> Result<String, String> {
        let found = match &self.overrides {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        found
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("environment variable {name} is not set"))
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSource(***)")
    }
}

/// Process-level settings channels need: timeouts, provider endpoints (overridable so tests
/// point them at fakes and emulators), and where secrets come from. Every field has a default
/// that is safe: a channel whose settings are missing is built as unavailable (with the reason on
/// each delivery's timeline), never as one that sends somewhere unexpected.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// Upper bound for one provider request (HTTP call, AWS operation, SMTP transaction).
    pub http_timeout: Duration,
    /// Provider base URLs by channel type (`pagerduty` → `https://events.pagerduty.com`),
    /// overriding the default its [`ChannelBuilder`] names, so tests point channels at fakes and
    /// emulators. `sms` and `phone` have no default: without an entry the AWS SDK resolves the
    /// endpoint (`AWS_ENDPOINT_URL_SNS`, ...). Filled from `--endpoint TYPE=URL` and the older
    /// `VIGIL_PAGERDUTY_URL` / `VIGIL_SLACK_API_URL`.
    pub endpoints: BTreeMap<String, String>,
    pub secrets: SecretSource,
    /// AWS SDK configuration for the `sms` (SNS) and `phone` (End User Messaging voice)
    /// channels: region, credentials chain, and endpoint overrides from the environment
    /// (`AWS_ENDPOINT_URL_SNS`, ...). Loading it is async, so the app loads it once at start with
    /// [`ChannelSettings::load_aws`]; `None` leaves both channels unavailable.
    pub aws: Option<aws_config::SdkConfig>,
    /// `AWS.SNS.SMS.SenderID`: 3-11 letters, digits or hyphens, at least one letter. Shown as
    /// the sender where the destination country supports it; `None` = the account default.
    pub sms_sender_id: Option<String>,
    /// The number, pool id or ARN voice calls come from (`OriginationIdentity`); `None` = let
    /// AWS pick from the account's numbers.
    pub voice_origination_identity: Option<String>,
    /// The SMTP relay for `email` channels; `None` leaves them unavailable.
    pub smtp: Option<SmtpSettings>,
}

/// How to reach the SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `smtp+starttls://host[:587]` (STARTTLS required, production), `smtps://host[:465]`
    /// (implicit TLS), or `smtp://host:port` (no TLS, no auth: only for a local test server).
    /// Carries no credentials: those come from `username_env`/`password_env`.
    pub url: String,
    /// The envelope and header sender.
    pub from: EmailAddress,
    /// Environment variable holding the SMTP user name (AUTH is used only when both are set).
    pub username_env: Option<String>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            http_timeout: Duration::from_secs(10),
            endpoints: BTreeMap::new(),
            secrets: SecretSource::default(),
            aws: None,
            sms_sender_id: None,
            voice_origination_identity: None,
            smtp: None,
        }
    }
}

impl ChannelSettings {
    /// The base URL for channel type `kind`: its entry in `endpoints`, else its builder's
    /// default; `None` when it has neither (the AWS channels: the SDK resolves it).
    pub fn endpoint(&self, kind: &str) -> Option<&str> {
        self.endpoints
            .get(kind)
            .map(String::as_str)
            .or_else(|| builders().get(kind).and_then(|b| b.endpoint))
    }

    /// Loads the AWS SDK configuration the standard way and keeps it for `sms` and `phone`:
    /// region from `region` or `AWS_REGION`/the profile, credentials from the default chain
    /// (`AWS_ACCESS_KEY_ID`..., `AWS_PROFILE`, web identity, ECS/EC2 roles; resolved lazily at
    /// the first send, so a start without credentials still works and each send fails with the
    /// reason), endpoint overrides from `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_SNS`/
    /// `AWS_ENDPOINT_URL_PINPOINT_SMS_VOICE_V2`.
    ///
    /// Call it only where AWS is meant to be used (a region in `region`, `AWS_REGION` or the
    /// profile): without one, the SDK's region chain asks the EC2 metadata service
    /// (169.254.169.254), which off EC2 costs about a second and is traffic a test must not make.
    /// Tests build an `SdkConfig` with an explicit region and static credentials instead.
    pub async fn load_aws(&mut self, region: Option<String>) {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        self.aws = Some(loader.load().await);
    }
}

impl Notifiers {
    /// Builds a notifier for every channel of `policy`, each through its type's
    /// [`ChannelBuilder`]. Building touches no running state; a channel that cannot be built (a
    /// missing secret, a type this build has no client for) is listed in `unavailable` and each
    /// delivery to it fails with that reason on the timeline.
    pub fn build(policy: &Policy, settings: &ChannelSettings, http: &reqwest::Client) -> Self {
        let mut out = Self::default();
        for (name, spec) in &policy.channels {
            let built = match builders().get(spec.kind()) {
                Some(b) => (b.build)(spec, settings, http),
                None => Err(format!(
                    "this build has no notifier for type {}",
                    spec.kind()
                )),
            };
            match built {
                Ok(n) => {
                    out.by_name.insert(name.clone(), n);
                }
                Err(reason) => {
                    tracing::warn!(channel = %name, reason = %reason, "Channel unavailable; deliveries to it will fail.");
                    out.unavailable.insert(name.clone(), reason);
                }
            }
        }
        out
    }

    /// A notifier set from explicit parts (tests and benchmarks).
    pub fn from_parts(parts: impl IntoIterator<Item = (String, Arc<dyn Notifier>)>) -> Self {
        Self {
            by_name: parts.into_iter().collect(),
            unavailable: BTreeMap::new(),
        }
    }

    /// The channels that could not be built, with the reason (names settings, never secrets).
    pub fn unavailable(&self) -> &BTreeMap<String, String> {
        &self.unavailable
    }

    pub fn get(&self, channel: &str) -> Result<&Arc<dyn Notifier>, String> {
        self.by_name.get(channel).ok_or_else(|| {
            self.unavailable
                .get(channel)
                .cloned()
                .unwrap_or_else(|| format!("channel {channel} is not in routing/"))
        })
    }
}

/// The half of a channel type's descriptor that builds its notifier, submitted with
/// `inventory::submit!` from the channel's file beside its data part
/// ([`crate::config::ChannelType`], which `config` reads).
pub struct ChannelBuilder {
    /// The type name: the same as its `ChannelType`'s.
    pub name: &'static str,
    /// The provider's default base URL, used when `ChannelSettings::endpoints` has no entry for
    /// the type; `None` when it has none.
    pub endpoint: Option<&'static str>,
    /// Builds the notifier of one channel from its compiled spec (keys checked against the
    /// type) and the process settings; the error says why it is unavailable, never a secret.
    pub build: fn(&ChannelSpec, &ChannelSettings, &reqwest::Client) -> BuiltNotifier,
}

/// What a [`ChannelBuilder`] makes: a notifier, or why the channel is unavailable.
pub type BuiltNotifier = Result<Arc<dyn Notifier>, String>;

impl ChannelBuilder {
    /// The builder of type `name`, whose provider has no default base URL.
    pub const fn new(
        name: &'static str,
        build: fn(&ChannelSpec, &ChannelSettings, &reqwest::Client) -> BuiltNotifier,
    ) -> Self {
        Self {
            name,
            endpoint: None,
            build,
        }
    }

    /// With this default base URL for its provider.
    pub const fn endpoint(mut self, default: &'static str) -> Self {
        self.endpoint = Some(default);
        self
    }
}

/// A notifier a channel's constructor made, as a builder returns it.
pub fn built<N: Notifier + 'static>(made: Result<N, String>) -> BuiltNotifier {
    made.map(|n| Arc::new(n) as Arc<dyn Notifier>)
}

inventory::collect!(ChannelBuilder);

/// The registered builders, by type name, and what is wrong with the registrations.
#[derive(Default)]
pub struct ChannelBuilders {
    by_name: BTreeMap<&'static str, &'static ChannelBuilder>,
    problems: Vec<String>,
}

impl ChannelBuilders {
    /// Builds the registry and checks it against the data parts in `types`: a builder
    /// registered twice (neither is used), a builder whose type has no data part, and a data
    /// part without a builder are each a problem.
    pub fn from_builders(
        builders: impl IntoIterator<Item = &'static ChannelBuilder>,
        types: &ChannelTypes,
    ) -> Self {
        let mut by_name = BTreeMap::new();
        let mut problems = Vec::new();
        let mut twice = Vec::new();
        for b in builders {
            if by_name.insert(b.name, b).is_some() && !twice.contains(&b.name) {
                twice.push(b.name);
            }
        }
        for &name in &twice {
            by_name.remove(name);
            problems.push(format!(
                "channel type {name:?} has two builders (two `inventory::submit!` of a \
                 `notify::ChannelBuilder` with that name); neither is used"
            ));
        }
        for name in by_name.keys() {
            if types.get(name).is_none() && !types.registered_twice(name) {
                problems.push(format!(
                    "channel type {name:?} has a builder but no `config::ChannelType` (its routing \
                     keys, reach and limits): submit one beside the builder"
                ));
            }
        }
        for t in types.iter() {
            if !by_name.contains_key(t.name) && !twice.contains(&t.name) {
                problems.push(format!(
                    "channel type {:?} has a `config::ChannelType` but no builder: submit a \
                     `notify::ChannelBuilder` beside it",
                    t.name
                ));
            }
        }
        Self { by_name, problems }
    }

    /// The builder of type `name`.
    pub fn get(&self, name: &str) -> Option<&'static ChannelBuilder> {
        self.by_name.get(name).copied()
    }

    /// Problems with the registrations; empty when every type has one data part and one builder.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// The process's builders: every `ChannelBuilder` submitted by the binary's crates, read once.
pub fn builders() -> &'static ChannelBuilders {
    static BUILDERS: std::sync::LazyLock<ChannelBuilders> = std::sync::LazyLock::new(|| {
        ChannelBuilders::from_builders(inventory::iter::<ChannelBuilder>, channel_types())
    });
    &BUILDERS
}

/// Every problem with the channel registry (a type registered twice, a builder without its data
/// part or the reverse), or `Ok`. The app refuses to start on any: a silently shadowed channel
/// type would page through code nobody chose.
pub fn check_registry() -> Result<(), Vec<String>> {
    let problems: Vec<String> = channel_types()
        .problems()
        .iter()
        .chain(builders().problems())
        .cloned()
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A complete notification for the channel tests: a critical CloudWatch alarm, incident
/// `01JD4Z8X3K7M2Q9R5T6V8W0Y1A`, two people targeted (one with a Slack id, one without).
#[cfg(test)]
pub(crate) mod testkit {
    use super::*;

    /// What a channel must make of one HTTP answer: `Ok(())` success; `Err(Some(ra))` transient
    /// with that Retry-After; `Err(None)` permanent.
    pub(crate) type Want = Result<(), Option<Option<Duration>>>;

    /// The status table every HTTP channel shares (STYLE §9): each row is (status, Retry-After
    /// header, what the channel must make of it). `ok` is how the provider answers a success
    /// (its body matters to some channels). One request per row, against a fresh fake.
    pub(crate) async fn assert_status_table<N: Notifier>(
        make: impl Fn(&str) -> N,
        ok: impl Fn(u16) -> wiremock::ResponseTemplate,
        table: &[(u16, Option<&str>, Want)],
    ) {
        for (status, retry_after, want) in table {
            let server = wiremock::MockServer::start().await;
            let mut resp = if (200..300).contains(status) {
                ok(*status)
            } else {
                wiremock::ResponseTemplate::new(*status)
            };
            if let Some(ra) = retry_after {
                resp = resp.insert_header("Retry-After", *ra);
            }
            wiremock::Mock::given(wiremock::matchers::method("POST"))
                .respond_with(resp)
                .expect(1)
                .mount(&server)
                .await;
            let got = make(&server.uri())
                .send(&notification(NotifyKind::Trigger))
                .await;
            match (got, want) {
                (Ok(_), Ok(())) => {}
                (Err(NotifyError::Transient { retry_after, .. }), Err(Some(ra))) => {
                    assert_eq!(retry_after, *ra, "HTTP {status}")
                }
                (Err(NotifyError::Permanent { .. }), Err(None)) => {}
                (got, want) => panic!("HTTP {status}: got {got:?}, want {want:?}"),
            }
        }
    }

    pub(crate) const INCIDENT: &str = "01JD4Z8X3K7M2Q9R5T6V8W0Y1A";

    pub(crate) fn notification(kind: NotifyKind) -> Notification {
        let person = |id: &str, name: &str, slack: Option<&str>| Recipient {
            id: id.into(),
            name: name.into(),
            phone: None,
            email: None,
            slack: slack.map(str::to_string),
        };
        Notification {
            delivery_id: "01JD4Z8Y00000000000000DLV1".into(),
            incident: IncidentId::parse(INCIDENT).expect("INCIDENT is a valid ULID"),
            kind,
            status: match kind {
                NotifyKind::Acknowledged => IncidentStatus::Acknowledged,
                NotifyKind::Resolved => IncidentStatus::Resolved,
                _ => IncidentStatus::Triggered,
            },
            severity: Severity::Critical,
            summary: "ALARM eks-prod-apse1-node-cpu-high".into(),
            description: None,
            labels: [
                ("alarm_name", "eks-prod-apse1-node-cpu-high"),
                ("region", "ap-southeast-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            channel: "ops-chat".into(),
            recipient: None,
            people: vec![
                person("mei", "Mei Tan", Some("U07QK3M2ZLP")),
                person("ravi", "Ravi Iyer", None),
            ],
            step: None,
            count: 3,
            opened_at: DateTime::parse_from_rfc3339("2026-11-20T02:15:41Z")
                .expect("a valid RFC 3339 literal")
                .with_timezone(&Utc),
            by: None,
            link: None,
            attempt: 1,
            now: DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time"),
            text: "Node CPU above 85% for 15 minutes.".into(),
            subject: None,
            html: None,
            ack_url: None,
            reference: None,
            drill: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::tests_support::shipped_routing_dir;
    use crate::config::{ChannelType, Reach, load_dir};

    fn builder(name: &'static str) -> ChannelBuilder {
        ChannelBuilder::new(name, |_, _, _| Ok(Arc::new(log::LogNotifier)))
    }

    #[test]
    fn a_builder_without_its_data_part_and_a_builder_registered_twice_are_reported() {
        static A: ChannelType = ChannelType::new("a", Reach::Nobody);
        static B: ChannelType = ChannelType::new("b", Reach::Nobody);
        static A_BUILDER: std::sync::LazyLock<ChannelBuilder> =
            std::sync::LazyLock::new(|| builder("a"));
        static A_AGAIN: std::sync::LazyLock<ChannelBuilder> =
            std::sync::LazyLock::new(|| builder("a"));
        static ORPHAN: std::sync::LazyLock<ChannelBuilder> =
            std::sync::LazyLock::new(|| builder("orphan"));
        let types = ChannelTypes::from_types([&A, &B]);
        let built = ChannelBuilders::from_builders([&*A_BUILDER, &*A_AGAIN, &*ORPHAN], &types);
        let problems = built.problems().join("\n");
        assert!(
            built.get("a").is_none(),
            "a type with two builders uses neither"
        );
        assert!(problems.contains("\"a\" has two builders"), "{problems}");
        assert!(
            problems.contains("\"orphan\" has a builder but no `config::ChannelType`"),
            "{problems}"
        );
        assert!(
            problems.contains("\"b\" has a `config::ChannelType` but no builder"),
            "{problems}"
        );
        assert_eq!(built.problems().len(), 3, "{problems}");
    }

    #[test]
    fn every_shipped_channel_type_has_one_data_part_and_one_builder() {
        assert_eq!(check_registry(), Ok(()));
    }

    #[test]
    fn an_endpoint_in_the_settings_overrides_the_builders_default() {
        let mut settings = ChannelSettings::default();
        assert_eq!(
            settings.endpoint("pagerduty"),
            Some("https://events.pagerduty.com")
        );
        assert_eq!(settings.endpoint("slack"), Some("https://slack.com/api"));
        assert_eq!(settings.endpoint("sms"), None);
        settings
            .endpoints
            .insert("pagerduty".into(), "http://127.0.0.1:9".into());
        assert_eq!(settings.endpoint("pagerduty"), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn slack_and_pagerduty_channels_are_built_when_their_secrets_are_set() {
        let policy = load_dir(&shipped_routing_dir()).expect("the shipped policy loads");
        let settings = |vars: &[(&str, &str)]| ChannelSettings {
            secrets: SecretSource::from_map(
                vars.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            ),
            ..ChannelSettings::default()
        };
        let http = reqwest::Client::new();

        let all = Notifiers::build(
            &policy,
            &settings(&[
                (
                    "VIGIL_PAGERDUTY_ROUTING_KEY",
                    "R0UT1NGKEYEXAMPLE0000000000000AA",
                ),
                ("VIGIL_SLACK_BOT_TOKEN", "xoxb-test"),
            ]),
            &http,
        );
        assert_eq!(all.get("pagerduty").map(|n| n.kind()), Ok("pagerduty"));
        assert_eq!(
            all.get("slack-trading-alerts").map(|n| n.kind()),
            Ok("slack")
        );

        let none = Notifiers::build(&policy, &settings(&[]), &http);
        let reason = none
            .get("pagerduty")
            .err()
            .expect("unavailable without its key");
        assert!(reason.contains("VIGIL_PAGERDUTY_ROUTING_KEY"), "{reason}");
        let reason = none
            .get("slack-trading-ops")
            .err()
            .expect("unavailable without its token");
        assert!(reason.contains("VIGIL_SLACK_BOT_TOKEN"), "{reason}");
    }
}

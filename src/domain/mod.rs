//! Domain types shared by every stage. Values are validated when they are built (at the edge), so
//! later stages can trust them: a `Fingerprint` is bounded, a `Severity` is one of four, a
//! `PhoneNumber` is E.164. A `Secret` never prints. Imports nothing of vigil.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Flat string labels: `source`, `alarm_name`, `namespace`, `metric`, `region`, `account`,
/// `health_check_id`, `exchange`, `kind`, `error`, ... Sorted, so fingerprints built from them
/// are stable.
pub type Labels = BTreeMap<String, String>;

/// Whether `name` is a label name: `[a-zA-Z_][a-zA-Z0-9_]*`, the Prometheus/Alertmanager grammar.
/// The one rule for the label names ingest accepts (trading-bot labels, CloudWatch dimensions)
/// and the ones the routing policy writes (matchers, rule labels, `group_by`, `equal`).
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A row of the escalation matrix, most urgent first (`Critical < Low` in `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Critical, Self::High, Self::Medium, Self::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "critical" => Ok(Self::Critical),
            "high" => Ok(Self::High),
            "medium" => Ok(Self::Medium),
            "low" => Ok(Self::Low),
            other => Err(DomainError::Severity(other.to_string())),
        }
    }
}

/// Where an alert came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A CloudWatch (or Route 53 health-check) alarm, or any other message, delivered by an SNS
    /// HTTP subscription.
    Sns,
    /// A "CloudWatch Alarm State Change" event from an EventBridge API destination.
    Eventbridge,
    /// An event posted by the trading bot on `/v1/events`.
    Bot,
    /// A missed heartbeat.
    Heartbeat,
    /// A CloudWatch alarm state found by reconciliation (`DescribeAlarms`), not delivered.
    Reconcile,
    /// A Prometheus Alertmanager webhook notification on `/v1/ingest/alertmanager`.
    Alertmanager,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sns => "sns",
            Self::Eventbridge => "eventbridge",
            Self::Bot => "bot",
            Self::Heartbeat => "heartbeat",
            Self::Reconcile => "reconcile",
            Self::Alertmanager => "alertmanager",
        }
    }
}

/// Why a notification is sent: the event a message tells of. Templates are chosen by it
/// (`templates/<type>/<kind>.*`), so it lives here, below both `config` (which loads them) and
/// `incident` (whose outbox rows carry it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    Trigger,
    Escalate,
    Acknowledged,
    Resolved,
    /// A test message (`POST /v1/test-notifications`): about no incident, sent once, directly,
    /// never through the outbox; channels mark it as a test and offer no buttons.
    Test,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trigger => "trigger",
            Self::Escalate => "escalate",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
            Self::Test => "test",
        }
    }

    /// Pages (as opposed to status updates) are dropped once the incident no longer needs them.
    pub fn is_page(self) -> bool {
        matches!(self, Self::Trigger | Self::Escalate)
    }
}

/// The state an alert reports. `InsufficientData` is CloudWatch's third state: neither OK nor
/// ALARM. It opens (or updates) an incident like a firing alert but never resolves one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
    InsufficientData,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
            Self::InsufficientData => "insufficient_data",
        }
    }
}

/// Longest fingerprint accepted (an alarm ARN is at most ~330 bytes).
pub const FINGERPRINT_MAX: usize = 512;

/// The deduplication key of an alert: alarms with equal fingerprints fold into one incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if s.is_empty() || s.len() > FINGERPRINT_MAX || s.chars().any(char::is_control) {
            return Err(DomainError::Fingerprint);
        }
        Ok(Self(s))
    }

    /// A fingerprint derived from an alert's kind and labels, for events with no dedup key.
    /// Stable across processes and versions (sha256 of the sorted labels).
    pub fn from_labels(kind: &str, labels: &Labels) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        for (k, v) in labels {
            h.update([0u8]);
            h.update(k.as_bytes());
            h.update([1u8]);
            h.update(v.as_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("{kind}/{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> Self {
        f.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Fingerprint {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How many characters an incident's short code has.
pub const SHORT_CODE_LEN: usize = 4;

/// An incident's id: a ULID, sortable by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId(ulid::Ulid);

impl IncidentId {
    pub fn new(now: DateTime<Utc>) -> Self {
        let ms = now.timestamp_millis().max(0) as u64;
        Self(ulid::Ulid::from_parts(ms, rand::random::<u128>()))
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        ulid::Ulid::from_string(s)
            .map(Self)
            .map_err(|_| DomainError::IncidentId)
    }

    /// The incident's short code, what an SMS names it by and a reply quotes back (`ACK 7QK3`):
    /// the last [`SHORT_CODE_LEN`] characters of the ULID, 20 random bits in Crockford base32
    /// (no I, L, O or U, so nothing reads as something else). Stable for the incident's life.
    /// Not unique by construction: two open incidents share one about once in a million pairs,
    /// and whoever replies is told the code is ambiguous (see [`IncidentId::has_code`]).
    pub fn short_code(&self) -> String {
        let s = self.0.to_string();
        s[s.len() - SHORT_CODE_LEN..].to_string()
    }

    /// Whether `code`, as a person typed it, names this incident: case and a leading `#` do not
    /// matter, `O` reads as `0` and `I`/`L` as `1` (Crockford), and any ending of the id at least
    /// [`SHORT_CODE_LEN`] long counts (an SMS template may show more of it).
    pub fn has_code(&self, code: &str) -> bool {
        let code: String = code
            .trim()
            .trim_start_matches('#')
            .chars()
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            })
            .collect();
        code.len() >= SHORT_CODE_LEN && self.0.to_string().ends_with(&code)
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(ulid::Ulid::from_bytes(b))
    }
}

impl TryFrom<String> for IncidentId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<IncidentId> for String {
    fn from(i: IncidentId) -> Self {
        i.0.to_string()
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for IncidentId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A phone number in E.164 form: `+` then 8 to 15 digits, the first not zero.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let digits = s.strip_prefix('+').ok_or(DomainError::Phone)?;
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(DomainError::Phone)
        }
    }

    /// The number with all but the last two digits hidden, for logs and errors.
    pub fn redacted(&self) -> String {
        let keep = &self.0[self.0.len() - 2..];
        format!("+…{keep}")
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(p: PhoneNumber) -> Self {
        p.0
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An email address: one `@`, a non-empty local part, a domain with a dot, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let (local, domain) = s.split_once('@').ok_or(DomainError::Email)?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && s.len() <= 254;
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(DomainError::Email)
        }
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(e: EmailAddress) -> Self {
        e.0
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One normalized observation from any source. Built only by `ingest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub source: Source,
    pub fingerprint: Fingerprint,
    pub status: AlertStatus,
    /// One line for a pager screen.
    pub summary: String,
    pub description: Option<String>,
    pub labels: Labels,
    /// The source's raw detail, kept for templates and the timeline.
    pub details: serde_json::Value,
    /// When the source says the state changed (CloudWatch `StateChangeTime`, the bot's
    /// `occurred_at`). Used to order out-of-order deliveries.
    pub occurred_at: DateTime<Utc>,
    /// The transport's delivery id (SNS `MessageId`, EventBridge `id`), when it has one:
    /// a repeated delivery id is a no-op.
    pub delivery_id: Option<String>,
    /// A severity the sender asked for (the bot's optional `severity`); rules may honour it.
    pub severity_override: Option<Severity>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("unknown severity {0:?} (expected critical, high, medium or low)")]
    Severity(String),
    #[error("fingerprint must be 1 to {FINGERPRINT_MAX} bytes without control characters")]
    Fingerprint,
    #[error("not an incident id (expected a 26-character ULID)")]
    IncidentId,
    #[error("phone number must be E.164: '+' and 8 to 15 digits")]
    Phone,
    #[error("not a valid email address")]
    Email,
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison.
    pub fn matches(&self, candidate: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Times kept at millisecond precision (records two processes compare: the standby's shared
/// role, the stamps of mirrored silences and overrides), written as RFC 3339 with milliseconds.
/// `#[serde(with = "crate::domain::millis")]`.
pub mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }

    /// `at` cut to the millisecond, as it reads back.
    pub fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_must_be_e164() {
        assert!(PhoneNumber::parse("+6591234567").is_ok());
        assert!(PhoneNumber::parse("6591234567").is_err());
        assert!(PhoneNumber::parse("+0591234567").is_err());
        assert!(PhoneNumber::parse("+65 9123 4567").is_err());
        assert_eq!(
            PhoneNumber::parse("+6591234567").unwrap().redacted(),
            "+…67"
        );
    }

    #[test]
    fn emails_are_checked_at_the_edge() {
        assert!(EmailAddress::parse("ops@example.com").is_ok());
        for bad in [
            "ops",
            "@example.com",
            "ops@example",
            "o ps@example.com",
            "a@b@c.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_fingerprints_are_stable_and_order_independent() {
        let mut a = Labels::new();
        a.insert("exchange".into(), "binance".into());
        a.insert("error".into(), "http_5xx".into());
        let b: Labels = a
            .iter()
            .rev()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            Fingerprint::from_labels("exchange_error", &a),
            Fingerprint::from_labels("exchange_error", &b)
        );
        a.insert("error".into(), "timeout".into());
        assert_ne!(
            Fingerprint::from_labels("exchange_error", &a),
            Fingerprint::from_labels("exchange_error", &b)
        );
    }

    #[test]
    fn label_names_follow_the_matcher_grammar() {
        for ok in [
            "a",
            "_",
            "exchange",
            "health_check_id",
            "A1_b",
            "alarm_name",
        ] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", "a b", "alarm-name"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn short_codes_are_the_ids_end_and_read_leniently() {
        let id = IncidentId::parse("01JD4Z8X3K7M2Q9R5T6V8W0Y1A").unwrap();
        assert_eq!(id.short_code(), "0Y1A");
        for ok in [
            "0Y1A",
            "0y1a",
            "#0Y1A",
            "oY1a",
            " 0YlA ",
            "W0Y1A",
            "01JD4Z8X3K7M2Q9R5T6V8W0Y1A",
        ] {
            assert!(id.has_code(ok), "{ok}");
        }
        for bad in [
            "",
            "Y1A",
            "1A",
            "0Y1B",
            "X0Y1A",
            "0Y1A0Y1A0Y1A0Y1A0Y1A0Y1A0Y1A",
        ] {
            assert!(!id.has_code(bad), "{bad}");
        }
    }

    #[test]
    fn severities_order_most_urgent_first() {
        assert!(Severity::Critical < Severity::Low);
        assert_eq!("high".parse::<Severity>().unwrap(), Severity::High);
        assert!("urgent".parse::<Severity>().is_err());
    }
}

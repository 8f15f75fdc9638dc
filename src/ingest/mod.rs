//! Stage 1, ingest: raw request bodies in, verified and normalized [`Alert`]s out.
//!
//! Comes in: the bytes of an SNS HTTP delivery (`sns`; a Notification's `Message` becomes an
//! alert in `sns_notification`: a CloudWatch alarm parsed by `cloudwatch`, an RDS event by
//! `rds`, an ElastiCache event by `elasticache`, any other message a generic `sns_notification`
//! alert; an inbound two-way SMS is a reply to a page, read by `sms_reply`), an EventBridge event
//! (`eventbridge`: a "CloudWatch Alarm State Change", an AWS Health event by `aws_health`, an RDS
//! event by `rds`), a Prometheus Alertmanager webhook notification (`alertmanager`), or a
//! trading-bot event or batch (`bot`). Goes out: [`Alert`]s, or an
//! [`IngestError`] that says which field was wrong and which HTTP status the caller should answer
//! with. Two-way channels come in here too: a Slack button click (`slack`) and a PagerDuty V3
//! webhook (`pagerduty`), each checked against its HMAC signature before it is parsed.
//!
//! Everything here is pure parsing and verification; the only I/O is fetching an SNS signing
//! certificate through the injectable [`CertFetcher`] (and the one warning `sns_notification` logs
//! when an alarm-shaped message does not parse). Nothing here panics on any input, and
//! `serde_json::Value` does not leave this module except as [`Alert::details`].
//!
//! [`Alert`]: crate::domain::Alert
//! [`Alert::details`]: crate::domain::Alert

pub mod alertmanager;
pub mod aws_health;
pub mod bot;
pub mod cloudwatch;
pub mod describe_alarms;
pub mod elasticache;
pub mod eventbridge;
pub mod pagerduty;
pub mod rds;
pub mod slack;
pub mod sms_reply;
pub mod sns;
pub mod sns_notification;

pub use bot::parse_events;
pub use cloudwatch::parse_alarm;
pub use eventbridge::parse_event;
pub use sns::{
    CertCache, CertFetcher, ConfirmError, HttpCertFetcher, SnsEnvelope, SnsMessage,
    confirm_subscription, subscribe_url_is_safe, topic_region, verify,
};
pub use sns_notification::parse_notification;

use serde_json::{Map, Value};

/// Why an ingest payload was refused. Callers branch on the variant (see
/// [`IngestError::status_code`]); the message is safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// Not JSON, or JSON of the wrong shape: the message names the field and the reason, e.g.
    /// `events[2].status: expected "firing" or "resolved"`.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The SNS signature did not verify, or could not be checked with a certificate we trust
    /// (unsupported SignatureVersion, untrusted SigningCertURL, certificate refused or unparseable).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The signing certificate could not be fetched right now (network error, timeout, 5xx).
    /// Transient: answer 503 so SNS retries the delivery.
    #[error("signing certificate unavailable: {0}")]
    CertUnavailable(String),
    /// The payload is over a size or count limit (e.g. more than 1000 events in one batch).
    #[error("payload too large: {0}")]
    TooLarge(String),
}

impl IngestError {
    /// The HTTP status the handler should answer with: 400, 401, 503 or 413.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Malformed(_) => 400,
            Self::Unauthenticated(_) => 401,
            Self::CertUnavailable(_) => 503,
            Self::TooLarge(_) => 413,
        }
    }
}

/// A short name for a JSON value's type, for error messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses bytes as JSON, naming `what` in the error.
fn parse_json(body: &[u8], what: &str) -> Result<Value, IngestError> {
    serde_json::from_slice(body)
        .map_err(|e| IngestError::Malformed(format!("{what} is not valid JSON: {e}")))
}

/// Lowercase or uppercase hex to bytes; `None` on odd length or a non-hex digit.
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// Typed, path-aware access to the fields of one JSON object, so every error names the field
/// (`events[1].summary: missing`). `null` counts as absent for optional fields.
#[derive(Clone, Copy)]
struct Fields<'a> {
    /// Where this object sits in the payload (`events[1]`, `Trigger`), or "" at the top level.
    path: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(path: &'a str, map: &'a Map<String, Value>) -> Self {
        Self { path, map }
    }

    /// `path.key`, or just `key` at the top level.
    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn malformed(&self, key: &str, why: impl std::fmt::Display) -> IngestError {
        IngestError::Malformed(format!("{}: {why}", self.name(key)))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, IngestError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.malformed(
                key,
                format_args!("expected a string, got {}", type_name(other)),
            )),
        }
    }

    fn req_str(&self, key: &str) -> Result<&'a str, IngestError> {
        self.opt_str(key)?
            .ok_or_else(|| self.malformed(key, "missing"))
    }

    fn opt_object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, IngestError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(other) => Err(self.malformed(
                key,
                format_args!("expected an object, got {}", type_name(other)),
            )),
        }
    }

    fn req_object(&self, key: &str) -> Result<&'a Map<String, Value>, IngestError> {
        self.opt_object(key)?
            .ok_or_else(|| self.malformed(key, "missing"))
    }

    /// A string that is informational only: a value of the wrong type is ignored rather than
    /// refused, so a page is never lost over a cosmetic field.
    fn lenient_str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status() {
        assert_eq!(IngestError::Malformed("x".into()).status_code(), 400);
        assert_eq!(IngestError::Unauthenticated("x".into()).status_code(), 401);
        assert_eq!(IngestError::CertUnavailable("x".into()).status_code(), 503);
        assert_eq!(IngestError::TooLarge("x".into()).status_code(), 413);
    }
}

/// Fixture access and a panic-free mutation generator shared by the tests of every ingest file.
#[cfg(test)]
pub(crate) mod testkit {
    /// The shared fixtures directory (`/work/shared/fixtures` next to the crate).
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures")
            .join(name);
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("test fixture {} unreadable: {e}", path.display()))
    }

    /// A deterministic xorshift generator: fuzz-ish tests without extra crates.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }

        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    /// Truncations at many lengths plus `count` random mutations (byte flips, deletions,
    /// duplications, insertions of JSON punctuation) of `input`.
    pub(crate) fn mutations(input: &[u8], count: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let step = (input.len() / 60).max(1);
        for len in (0..input.len()).step_by(step) {
            out.push(input[..len].to_vec());
        }
        let mut rng = Rng::new(seed);
        const PUNCT: &[u8] = b"{}[]\":,0-1.eE\\ntrue\x00\xff";
        for _ in 0..count {
            let mut v = input.to_vec();
            for _ in 0..1 + rng.below(4) {
                if v.is_empty() {
                    break;
                }
                let i = rng.below(v.len());
                match rng.below(5) {
                    0 => v[i] ^= 1 << rng.below(8),
                    1 => {
                        v.remove(i);
                    }
                    2 => {
                        let end = (i + 1 + rng.below(40)).min(v.len());
                        let chunk = v[i..end].to_vec();
                        v.splice(i..i, chunk);
                    }
                    3 => v.insert(i, PUNCT[rng.below(PUNCT.len())]),
                    _ => {
                        let end = (i + rng.below(80)).min(v.len());
                        v.drain(i..end);
                    }
                }
            }
            out.push(v);
        }
        out
    }
}

//! PagerDuty V3 webhooks: incident updates made in PagerDuty (an ack in its app, a resolve).
//!
//! Comes in: the raw body of a `POST /v1/pagerduty/webhook` and its `X-PagerDuty-Signature`
//! header. Goes out: `Ok(())` from [`verify_signature`] when any configured subscription secret
//! signed those exact bytes, then a [`PagerDutyEvent`] from [`parse_webhook`] naming the event
//! type, the vigil incident (PagerDuty echoes the `dedup_key` vigil sent as `data.incident_key`)
//! and who acted. Deciding what an event type means is the caller's business: PagerDuty disables
//! a subscription after repeated 4xx answers, so unknown types must parse, not fail.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{Fields, IngestError, decode_hex, parse_json};
use crate::domain::Secret;

/// The parts of a V3 webhook vigil acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagerDutyEvent {
    /// `event.event_type`, e.g. `incident.acknowledged`.
    pub event_type: String,
    /// `event.data.incident_key`: the `dedup_key` vigil sent, i.e. the vigil incident id. Absent
    /// for incidents PagerDuty did not get from vigil and for non-incident events.
    pub incident_key: Option<String>,
    /// `event.agent.summary`: who acted (a user's name), absent for automation.
    pub agent: Option<String>,
}

/// Checks `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]` against HMAC-SHA256 of the exact body
/// under each secret. Any `v1` entry matching any secret passes (several are sent while a secret
/// rotates); entries with another version are ignored. Comparisons are constant-time.
pub fn verify_signature(
    secrets: &[Secret],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), IngestError> {
    let unauth = |why: &str| IngestError::Unauthenticated(why.to_string());
    let header = header.ok_or_else(|| unauth("missing X-PagerDuty-Signature"))?;
    let given: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix("v1="))
        .filter_map(decode_hex)
        .collect();
    if given.is_empty() {
        return Err(unauth("X-PagerDuty-Signature has no v1 signature"));
    }
    let mut matched = subtle::Choice::from(0u8);
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
            continue;
        };
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        // Every pair is compared (no early exit), so timing says nothing about which matched.
        for sig in &given {
            matched |= expected.as_slice().ct_eq(sig);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(unauth("signature mismatch"))
    }
}

/// Reads the event type, the vigil incident id and the acting user out of a V3 webhook body.
pub fn parse_webhook(body: &[u8]) -> Result<PagerDutyEvent, IngestError> {
    let value = parse_json(body, "PagerDuty webhook")?;
    let Value::Object(map) = &value else {
        return Err(IngestError::Malformed(
            "PagerDuty webhook: expected a JSON object".into(),
        ));
    };
    let top = Fields::new("", map);
    let event = Fields::new("event", top.req_object("event")?);
    let event_type = event.req_str("event_type")?.to_string();
    let incident_key = match event.opt_object("data")? {
        Some(data) => Fields::new("event.data", data)
            .opt_str("incident_key")?
            .map(str::to_string),
        None => None,
    };
    // `agent` is informational: a shape we do not expect must not cost us the ack itself.
    let agent = event
        .get("agent")
        .and_then(|a| a.get("summary"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(PagerDutyEvent {
        event_type,
        incident_key,
        agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testkit::{fixture, mutations};

    const SECRET: &str = "pdwhsec-shared-T2h9wX4kQ7vN1bR6yF3mC8zL5pJ0aG4sE7dU2iO9";
    const FIXTURE_SIG: &str = "v1=bd81a8ed674d239c94f1039fad0fb56d0aac61a8d59a82a9040c05e102aba99b";
    const FIXTURE: &str = "pagerduty-webhook-incident-acknowledged.json";

    fn secrets() -> Vec<Secret> {
        vec![Secret::new(SECRET)]
    }

    #[test]
    fn the_reference_test_vector_verifies() {
        let body = br#"{"event":{"id":"01TEST","event_type":"incident.triggered"}}"#;
        verify_signature(
            &secrets(),
            Some("v1=17d7c410c6553803968de5d6051388f1ac898541162c876e9ef789b790319513"),
            body,
        )
        .unwrap();
    }

    #[test]
    fn the_fixture_verifies_with_the_readme_signature() {
        let body = fixture(FIXTURE);
        verify_signature(&secrets(), Some(FIXTURE_SIG), &body).unwrap();
    }

    #[test]
    fn any_v1_entry_and_any_secret_may_match() {
        let body = fixture(FIXTURE);
        let other = "v1=0000000000000000000000000000000000000000000000000000000000000000";
        let header = format!("{other}, v2=abcd,{FIXTURE_SIG}");
        verify_signature(&secrets(), Some(&header), &body).unwrap();
        let rotated = vec![Secret::new("old-secret"), Secret::new(SECRET)];
        verify_signature(&rotated, Some(&header), &body).unwrap();
        assert!(verify_signature(&rotated, Some(other), &body).is_err());
    }

    #[test]
    fn a_one_byte_change_fails() {
        let mut body = fixture(FIXTURE);
        let i = body.len() / 2;
        body[i] ^= 0x01;
        assert!(matches!(
            verify_signature(&secrets(), Some(FIXTURE_SIG), &body),
            Err(IngestError::Unauthenticated(_))
        ));
        let mut reindented = fixture(FIXTURE);
        reindented.insert(1, b' ');
        assert!(verify_signature(&secrets(), Some(FIXTURE_SIG), &reindented).is_err());
    }

    #[test]
    fn missing_or_unusable_headers_and_no_secrets_fail() {
        let body = fixture(FIXTURE);
        for header in [
            None,
            Some(""),
            Some("v2=bd81"),
            Some("v1=xyz"),
            Some("bd81a8"),
        ] {
            assert!(
                matches!(
                    verify_signature(&secrets(), header, &body),
                    Err(IngestError::Unauthenticated(_))
                ),
                "{header:?}"
            );
        }
        assert!(verify_signature(&[], Some(FIXTURE_SIG), &body).is_err());
    }

    #[test]
    fn the_fixture_parses_to_an_acknowledgement_by_mei_tan() {
        let got = parse_webhook(&fixture(FIXTURE)).unwrap();
        assert_eq!(
            got,
            PagerDutyEvent {
                event_type: "incident.acknowledged".into(),
                incident_key: Some("01JD4Z8X3K7M2Q9R5T6V8W0Y1A".into()),
                agent: Some("Mei Tan".into()),
            }
        );
    }

    #[test]
    fn unknown_types_and_null_agents_parse() {
        let body = br#"{"event":{"id":"01TEST","event_type":"service.updated","agent":null,"data":{"id":"PSVC"}}}"#;
        assert_eq!(
            parse_webhook(body).unwrap(),
            PagerDutyEvent {
                event_type: "service.updated".into(),
                incident_key: None,
                agent: None,
            }
        );
    }

    #[test]
    fn malformed_webhooks_name_the_field() {
        for (body, want) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[]", "expected a JSON object"),
            (b"{}", "event: missing"),
            (br#"{"event":{}}"#, "event.event_type: missing"),
            (
                br#"{"event":{"event_type":"incident.resolved","data":{"incident_key":5}}}"#,
                "event.data.incident_key: expected a string",
            ),
        ] {
            match parse_webhook(body) {
                Err(IngestError::Malformed(m)) => assert!(m.contains(want), "{m} !~ {want}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn mutated_webhooks_never_panic() {
        for m in mutations(&fixture(FIXTURE), 500, 5) {
            let _ = parse_webhook(&m);
            let _ = verify_signature(&secrets(), Some(FIXTURE_SIG), &m);
        }
    }
}

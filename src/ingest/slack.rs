//! Slack interactivity (button clicks on vigil's alert messages).
//!
//! Comes in: the raw body of a `POST /v1/slack/interactions` with its `X-Slack-Request-Timestamp`
//! and `X-Slack-Signature` headers. Goes out: `Ok(())` from [`verify_request`] when Slack signed
//! those exact bytes within the replay window, then an [`Interaction`] from
//! [`parse_interaction`]: an acknowledge or resolve of one incident by one Slack user, or
//! `Ignored` for everything vigil does not act on (which the handler answers with an empty 200).
//!
//! Order matters: verify over the raw bytes first, only then form-decode and JSON-parse (see
//! `reference/slack.md` §1–2).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Fields, IngestError, decode_hex, parse_json};
use crate::domain::Secret;

/// How far the request timestamp may be from our clock, either way (Slack's SDKs use the
/// absolute difference, so timestamps from the future are refused too).
pub const MAX_SKEW_SECS: i64 = 300;

/// What a verified interaction asks vigil to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// A click on one of vigil's buttons.
    Action {
        action: SlackAction,
        /// The button's `value`: the vigil incident id, unvalidated (the caller looks it up).
        incident: String,
        /// Who clicked (`U…`), for the timeline and the "Acknowledged by" line.
        user_id: String,
        /// Their Slack name, when the payload carries it.
        user_name: Option<String>,
        /// Where the clicked message is, so it can be updated with `chat.update`.
        channel_id: Option<String>,
        message_ts: Option<String>,
        /// Slack's follow-up URL for this click. It is a credential: never log it.
        response_url: Option<String>,
    },
    /// A payload type vigil does not handle (`view_submission`, `shortcut`, ...) or a button it
    /// does not know; `kind` says which, for the log line.
    Ignored { kind: String },
}

/// The buttons vigil puts on its messages (`action_id`s in `notify::slack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackAction {
    /// `ack` (no time limit), `ack_15m`, `ack_1h`: acknowledge, optionally only for a while.
    Ack { for_: Option<Duration> },
    /// `resolve`.
    Resolve,
}

impl SlackAction {
    /// The action for a button's `action_id`, `None` for ids vigil does not use.
    pub fn from_action_id(id: &str) -> Option<Self> {
        match id {
            "ack" => Some(Self::Ack { for_: None }),
            "ack_15m" => Some(Self::Ack {
                for_: Some(Duration::from_secs(15 * 60)),
            }),
            "ack_1h" => Some(Self::Ack {
                for_: Some(Duration::from_secs(60 * 60)),
            }),
            "resolve" => Some(Self::Resolve),
            _ => None,
        }
    }
}

/// Checks Slack's v0 request signature: `v0=hex(HMAC-SHA256(secret, "v0:{ts}:{body}"))`, with
/// `|now_unix - ts| <= 300` s. Both headers are required; the comparison is constant-time.
pub fn verify_request(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), IngestError> {
    let unauth = |why: &str| IngestError::Unauthenticated(why.to_string());
    let timestamp = timestamp
        .map(str::trim)
        .ok_or_else(|| unauth("missing X-Slack-Request-Timestamp"))?;
    let signature = signature
        .map(str::trim)
        .ok_or_else(|| unauth("missing X-Slack-Signature"))?;
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| unauth("X-Slack-Request-Timestamp is not a unix time"))?;
    if now_unix.abs_diff(ts) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(unauth("stale request"));
    }
    let given = signature
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or_else(|| unauth("X-Slack-Signature is not a v0 signature"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| unauth("signing secret unusable"))?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| unauth("signature mismatch"))
}

/// Decodes the `payload` form field of a (verified) interaction body and says what it asks for.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, IngestError> {
    let payload = form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| IngestError::Malformed("payload: missing form field".into()))?;
    let value = parse_json(payload.as_bytes(), "payload")?;
    let Value::Object(map) = &value else {
        return Err(IngestError::Malformed(
            "payload: expected a JSON object".into(),
        ));
    };
    let f = Fields::new("payload", map);
    let kind = f.req_str("type")?;
    if kind != "block_actions" {
        return Ok(Interaction::Ignored {
            kind: bounded(kind),
        });
    }

    let actions = match f.get("actions") {
        Some(Value::Array(a)) => a,
        Some(_) => return Err(f.malformed("actions", "expected an array")),
        None => return Err(f.malformed("actions", "missing")),
    };
    let Some(first) = actions.first() else {
        return Err(f.malformed("actions", "empty"));
    };
    let Value::Object(first) = first else {
        return Err(f.malformed("actions[0]", "expected an object"));
    };
    let a = Fields::new("payload.actions[0]", first);
    let action_id = a.req_str("action_id")?;
    let Some(action) = SlackAction::from_action_id(action_id) else {
        return Ok(Interaction::Ignored {
            kind: bounded(&format!("block_actions:{action_id}")),
        });
    };
    let incident = a.req_str("value")?.to_string();

    let user = Fields::new("payload.user", f.req_object("user")?);
    let user_id = user.req_str("id")?.to_string();
    let user_name = user
        .lenient_str("name")
        .or_else(|| user.lenient_str("username"))
        .map(str::to_string);

    let container = f.opt_object("container")?;
    let container = container.map(|c| Fields::new("payload.container", c));
    let channel_id = container
        .and_then(|c| c.lenient_str("channel_id"))
        .or_else(|| {
            f.opt_object("channel")
                .ok()
                .flatten()
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
        })
        .map(str::to_string);
    let message_ts = container
        .and_then(|c| c.lenient_str("message_ts"))
        .map(str::to_string);
    let response_url = f.lenient_str("response_url").map(str::to_string);

    Ok(Interaction::Action {
        action,
        incident,
        user_id,
        user_name,
        channel_id,
        message_ts,
        response_url,
    })
}

/// A sender-chosen string cut short enough for a log field.
fn bounded(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testkit::{fixture, mutations};

    const SECRET: &str = "8f2b6c1e9d4a7f3b0e5c2d8a6b1f4e9c";
    const VECTOR_TS: &str = "1763605018";
    const VECTOR_BODY: &str = "payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22ack%22%2C%22value%22%3A%22alrt-1%22%7D%5D%7D";
    const VECTOR_SIG: &str = "v0=90e0358dc792d226e18eada935c39b781a52822e8c814d0ddef1396b84b2d73a";

    fn secret() -> Secret {
        Secret::new(SECRET)
    }

    fn sign(ts: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:").as_bytes());
        mac.update(body);
        let bytes = mac.finalize().into_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("v0={hex}")
    }

    fn form(json: &[u8]) -> Vec<u8> {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &String::from_utf8_lossy(json))
            .finish()
            .into_bytes()
    }

    fn is_unauth(r: Result<(), IngestError>) -> bool {
        matches!(r, Err(IngestError::Unauthenticated(_)))
    }

    #[test]
    fn the_reference_test_vector_verifies() {
        let now = VECTOR_TS.parse::<i64>().unwrap() + 10;
        verify_request(
            &secret(),
            Some(VECTOR_TS),
            Some(VECTOR_SIG),
            VECTOR_BODY.as_bytes(),
            now,
        )
        .unwrap();
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let ts: i64 = VECTOR_TS.parse().unwrap();
        let body = VECTOR_BODY.as_bytes();
        for now in [ts + 301, ts - 301] {
            let err = verify_request(&secret(), Some(VECTOR_TS), Some(VECTOR_SIG), body, now)
                .unwrap_err();
            assert_eq!(err, IngestError::Unauthenticated("stale request".into()));
        }
        // The edge of the window is still accepted.
        for now in [ts + 300, ts - 300] {
            verify_request(&secret(), Some(VECTOR_TS), Some(VECTOR_SIG), body, now).unwrap();
        }
    }

    #[test]
    fn an_altered_body_or_signature_or_wrong_secret_is_refused() {
        let ts: i64 = VECTOR_TS.parse().unwrap();
        let mut body = VECTOR_BODY.as_bytes().to_vec();
        body[20] ^= 1;
        assert!(is_unauth(verify_request(
            &secret(),
            Some(VECTOR_TS),
            Some(VECTOR_SIG),
            &body,
            ts
        )));
        let mut sig = VECTOR_SIG.to_string();
        sig.replace_range(5..6, "f");
        assert!(is_unauth(verify_request(
            &secret(),
            Some(VECTOR_TS),
            Some(&sig),
            VECTOR_BODY.as_bytes(),
            ts
        )));
        assert!(is_unauth(verify_request(
            &Secret::new("another-secret"),
            Some(VECTOR_TS),
            Some(VECTOR_SIG),
            VECTOR_BODY.as_bytes(),
            ts
        )));
        // The timestamp is signed too.
        assert!(is_unauth(verify_request(
            &secret(),
            Some("1763605019"),
            Some(VECTOR_SIG),
            VECTOR_BODY.as_bytes(),
            ts
        )));
    }

    #[test]
    fn missing_or_garbled_headers_are_refused() {
        let ts: i64 = VECTOR_TS.parse().unwrap();
        let body = VECTOR_BODY.as_bytes();
        for (t, s) in [
            (None, Some(VECTOR_SIG)),
            (Some(VECTOR_TS), None),
            (None, None),
            (Some("yesterday"), Some(VECTOR_SIG)),
            (Some(VECTOR_TS), Some("v1=90e0")),
            (Some(VECTOR_TS), Some("v0=zz")),
            (Some(VECTOR_TS), Some("v0=")),
        ] {
            assert!(
                is_unauth(verify_request(&secret(), t, s, body, ts)),
                "{t:?} {s:?}"
            );
        }
    }

    #[test]
    fn the_signed_fixture_parses_to_an_ack() {
        let body = form(&fixture("slack-block-actions-ack.json"));
        let now = 1_763_605_018;
        let sig = sign(now, &body);
        verify_request(
            &secret(),
            Some(&now.to_string()),
            Some(&sig),
            &body,
            now + 2,
        )
        .unwrap();
        let got = parse_interaction(&body).unwrap();
        assert_eq!(
            got,
            Interaction::Action {
                action: SlackAction::Ack { for_: None },
                incident: "01JD4Z8X3K7M2Q9R5T6V8W0Y1A".into(),
                user_id: "U07QK3M2ZLP".into(),
                user_name: Some("mei.tan".into()),
                channel_id: Some("C07ALERTS01".into()),
                message_ts: Some("1763604942.114259".into()),
                response_url: Some(
                    "https://hooks.slack.com/actions/T04EXAMPL01/8102345678901/q7Zx2ExampleResponseUrlToken"
                        .into()
                ),
            }
        );
    }

    #[test]
    fn each_button_maps_to_its_action() {
        let raw = String::from_utf8(fixture("slack-block-actions-ack.json")).unwrap();
        for (id, want) in [
            (
                "ack_15m",
                SlackAction::Ack {
                    for_: Some(Duration::from_secs(900)),
                },
            ),
            (
                "ack_1h",
                SlackAction::Ack {
                    for_: Some(Duration::from_secs(3600)),
                },
            ),
            ("resolve", SlackAction::Resolve),
        ] {
            let json = raw.replace(
                "\"action_id\": \"ack\"",
                &format!("\"action_id\": \"{id}\""),
            );
            match parse_interaction(&form(json.as_bytes())).unwrap() {
                Interaction::Action { action, .. } => assert_eq!(action, want, "{id}"),
                other => panic!("{id}: {other:?}"),
            }
        }
        let json = raw.replace("\"action_id\": \"ack\"", "\"action_id\": \"open_runbook\"");
        assert!(matches!(
            parse_interaction(&form(json.as_bytes())).unwrap(),
            Interaction::Ignored { kind } if kind == "block_actions:open_runbook"
        ));
    }

    #[test]
    fn a_view_submission_is_ignored() {
        let json = br#"{"type":"view_submission","team":{"id":"T1"},"user":{"id":"U1"},
            "view":{"id":"V1","type":"modal","callback_id":"x","state":{"values":{}}}}"#;
        assert_eq!(
            parse_interaction(&form(json)).unwrap(),
            Interaction::Ignored {
                kind: "view_submission".into()
            }
        );
    }

    #[test]
    fn malformed_interactions_are_refused_with_the_field_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"nothing=here", "payload: missing form field"),
            (b"payload=%7Bnot%20json", "payload is not valid JSON"),
            (b"payload=%5B%5D", "payload: expected a JSON object"),
            (b"payload=%7B%7D", "payload.type: missing"),
            (
                b"payload=%7B%22type%22%3A%22block_actions%22%7D",
                "payload.actions: missing",
            ),
            (
                b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%5B%7B%22action_id%22%3A%22ack%22%7D%5D%7D",
                "payload.actions[0].value: missing",
            ),
        ];
        for (body, want) in cases {
            match parse_interaction(body) {
                Err(IngestError::Malformed(m)) => assert!(m.contains(want), "{m} !~ {want}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        // The reference vector's body has no `user`.
        assert!(matches!(
            parse_interaction(VECTOR_BODY.as_bytes()),
            Err(IngestError::Malformed(m)) if m.contains("payload.user: missing")
        ));
    }

    #[test]
    fn mutated_payloads_never_panic() {
        let body = form(&fixture("slack-block-actions-ack.json"));
        for m in mutations(&body, 400, 7) {
            let _ = parse_interaction(&m);
        }
        for m in mutations(&fixture("slack-block-actions-ack.json"), 400, 11) {
            let _ = parse_interaction(&form(&m));
        }
    }
}

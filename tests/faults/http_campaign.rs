//! The HTTP campaign: 100,000 generated hostile requests against one app, 32 in flight, from a
//! fixed seed. Random methods and paths (every route and unknown ones), random headers, content
//! types, tokens and signatures, and bodies that are empty, random, truncated or edited fixtures,
//! oversized, of the wrong JSON types, or carry forged SNS, Slack, PagerDuty or ack-link
//! signatures. Every answer must be below 500 with the connection intact (a handler panic shows
//! as a dropped connection, and the panic hook counts it), and the store must look exactly as it
//! did before: no valid token ever travels with a valid body (checked with the parsers and
//! verifiers themselves before sending).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt as _;
use hmac::{KeyInit as _, Mac as _};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use vigil::ack::AckSigner;
use vigil::ingest::{CertCache, SnsEnvelope};
use vigil::settings::Secret;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::campaign::{heavy, report};
use crate::helpers::*;

const REQUESTS: usize = 100_000;
const IN_FLIGHT: usize = 32;
const SEED: u64 = 0x5eed_f417_c0de;
const SLACK_SECRET: &str = "8f2b6c1e9d4a7f3b0e5c2d8a6b1f4e9c";
const PD_SECRET: &str = "pdwhsec-shared-T2h9wX4kQ7vN1bR6yF3mC8zL5pJ0aG4sE7dU2iO9";
const ACK_SECRET: &str = "campaign-ack-secret";
/// The app's own body limit is 256 KiB.
const OVERSIZED: usize = 256 * 1024 + 1;

/// Panics on the campaign runtime's threads (where the app's handlers run).
static PANICS: AtomicUsize = AtomicUsize::new(0);
const THREAD_NAME: &str = "http-campaign";

fn count_panics_on_campaign_threads() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(THREAD_NAME))
        {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
}

fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One generated request.
struct Req {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Everything the generator draws from, built once.
struct Material {
    /// Every fixture, as sent.
    fixtures: Vec<Bytes>,
    sns: Vec<Bytes>,
    bot: Vec<Bytes>,
    eventbridge: Bytes,
    pagerduty: Bytes,
    slack_payload: Value,
    oversized: Vec<Bytes>,
    /// Incidents that exist (the state that must not change).
    seeded: Vec<String>,
    t0: i64,
}

/// What the oracle needs to tell a valid request from an invalid one.
struct Oracle {
    certs: CertCache,
    ack: AckSigner,
    seeded: BTreeSet<String>,
    now: chrono::DateTime<Utc>,
}

const ALL_FIXTURES: [&str; 11] = [
    "bot-batch-mixed.json",
    "bot-exchange-error-rate-limited.json",
    "bot-exchange-error-timeout.json",
    "bot-trading-halted.json",
    "cloudwatch-alarm-sns-notification.json",
    "cloudwatch-ok-sns-notification.json",
    "eventbridge-cloudwatch-alarm-state-change.json",
    "pagerduty-webhook-incident-acknowledged.json",
    "route53-healthcheck-alarm-sns-notification.json",
    "slack-block-actions-ack.json",
    "sns-subscription-confirmation.json",
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| rng.random()).collect()
}

/// A byte-level edit of `input`: flips, deletions, insertions, duplications, truncation.
fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    const PUNCT: &[u8] = b"{}[]\":,0-1.eE\\ntrue\x00\xff%&=+";
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..5) {
        if v.is_empty() {
            break;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..6) {
            0 => v[i] ^= 1 << rng.random_range(0..8),
            1 => {
                let end = (i + rng.random_range(1..80)).min(v.len());
                v.drain(i..end);
            }
            2 => v.insert(i, *pick(rng, PUNCT)),
            3 => {
                let end = (i + rng.random_range(1..60)).min(v.len());
                let chunk = v[i..end].to_vec();
                v.splice(i..i, chunk);
            }
            4 => v.truncate(i),
            _ => v[i] = rng.random(),
        }
    }
    v
}

/// A JSON value of an unexpected type or shape.
fn wrong_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 8 } else { 10 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!(""),
        5 => json!("x".repeat(rng.random_range(1..3000))),
        6 => json!(*pick(
            rng,
            &[
                "ALARM",
                "resolved",
                "firing",
                "critical",
                "Notification",
                "block_actions",
                "ack",
                "resolve",
                "incident.acknowledged",
                "9999-12-31T23:59:59Z",
                "01JD4Z8X3K7M2Q9R5T6V8W0Y1A",
                "\u{0}",
                "1e400",
                "100000000years",
            ]
        )),
        7 => json!(String::from_utf8_lossy(&random_bytes(rng, 40))),
        8 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| wrong_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..4))
                .map(|i| (format!("k{i}"), wrong_value(rng, depth + 1)))
                .collect(),
        ),
    }
}

/// Replaces one node, removes one, or adds an unknown key, somewhere in `v`.
fn mutate_json(rng: &mut StdRng, v: &mut Value) {
    let mut node = v;
    loop {
        let descend = rng.random_range(0..3) > 0;
        let next = match node {
            Value::Object(m) if !m.is_empty() && descend => {
                let k = m.keys().nth(rng.random_range(0..m.len())).unwrap().clone();
                Some(k)
            }
            Value::Array(a) if !a.is_empty() && descend => {
                Some(rng.random_range(0..a.len()).to_string())
            }
            _ => None,
        };
        match next {
            Some(k) => {
                node = match node {
                    Value::Object(m) => m.get_mut(&k).unwrap(),
                    Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                    _ => unreachable!(),
                };
            }
            None => break,
        }
    }
    match (rng.random_range(0..3), &mut *node) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(rng.random_range(0..m.len())).unwrap().clone();
            m.remove(&k);
        }
        (1, Value::Object(m)) => {
            m.insert("sevrity".into(), wrong_value(rng, 0));
        }
        _ => *node = wrong_value(rng, 0),
    }
}

fn json_body(rng: &mut StdRng, m: &Material, base: &[u8]) -> Bytes {
    match rng.random_range(0..4) {
        0 => Bytes::from(mutate(rng, base)),
        1 | 2 => {
            let mut v: Value = serde_json::from_slice(base).unwrap();
            for _ in 0..rng.random_range(1..3) {
                mutate_json(rng, &mut v);
            }
            Bytes::from(serde_json::to_vec(&v).unwrap())
        }
        _ => generic_body(rng, m),
    }
}

/// Bodies that fit any endpoint badly.
fn generic_body(rng: &mut StdRng, m: &Material) -> Bytes {
    match rng.random_range(0..100) {
        0..=9 => Bytes::new(),
        10..=29 => Bytes::from(random_bytes(rng, 2048)),
        30..=49 => {
            let f = pick(rng, &m.fixtures);
            let cut = rng.random_range(0..f.len());
            f.slice(..cut)
        }
        50..=69 => {
            let f = pick(rng, &m.fixtures).clone();
            Bytes::from(mutate(rng, &f))
        }
        70..=84 => Bytes::from(serde_json::to_vec(&wrong_value(rng, 0)).unwrap()),
        85..=88 => pick(rng, &m.oversized).clone(),
        89..=91 => {
            // Deep nesting, inside the size limit.
            let n = rng.random_range(100..50_000);
            let open = pick(rng, &["[", "{\"a\":"]);
            let close = if *open == "[" { "]" } else { "}" };
            Bytes::from(format!("{}{}", open.repeat(n), close.repeat(n)))
        }
        92..=94 => {
            // A batch over the event limit.
            let e = fixture_json("bot-exchange-error-timeout.json");
            Bytes::from(serde_json::to_vec(&vec![e; 1001]).unwrap())
        }
        95..=97 => Bytes::from_static(b"1e99999999999999999999"),
        _ => pick(rng, &m.fixtures).clone(),
    }
}

/// Valid and invalid bearer tokens, in the `Authorization` header.
fn auth_header(rng: &mut StdRng) -> Option<HeaderValue> {
    let v = match rng.random_range(0..12) {
        0 => return None,
        1 | 2 => format!("Bearer {INGEST_TOKEN}"),
        3 | 4 => format!("Bearer {OPERATOR_TOKEN}"),
        5 => "Bearer".to_string(),
        6 => "Bearer wrong-token".to_string(),
        7 => format!("Basic {OPERATOR_TOKEN}"),
        8 => format!("bearer  {OPERATOR_TOKEN}x"),
        9 => format!("Bearer {}", &OPERATOR_TOKEN[..OPERATOR_TOKEN.len() - 1]),
        10 => {
            return HeaderValue::from_bytes(b"Bearer \xff\xfe\x80token").ok();
        }
        _ => format!("Bearer {}", "A".repeat(rng.random_range(1..5000))),
    };
    HeaderValue::from_str(&v).ok()
}

fn content_type(rng: &mut StdRng, right: &'static str) -> Option<HeaderValue> {
    let v: &[u8] = match rng.random_range(0..10) {
        0..=4 => right.as_bytes(),
        5 => return None,
        6 => b"text/plain",
        7 => b"application/x-www-form-urlencoded",
        8 => b"APPLICATION/JSON; charset=utf-8",
        _ => b"application/json\xff; x=\x80",
    };
    HeaderValue::from_bytes(v).ok()
}

fn random_id(rng: &mut StdRng, m: &Material) -> String {
    match rng.random_range(0..8) {
        0..=2 => pick(rng, &m.seeded).clone(),
        3 => ulid::Ulid::from_parts(rng.random::<u64>() >> 16, rng.random()).to_string(),
        4 => "not-an-id".into(),
        5 => "%FF%00%2F..%2F".into(),
        6 => "Z".repeat(rng.random_range(1..300)),
        _ => "01JD4Z8X3K7M2Q9R5T6V8W0Y1A".into(),
    }
}

/// Bodies for ack/resolve: edge values of `by`, `until` and `for`.
fn act_body(rng: &mut StdRng, m: &Material) -> Bytes {
    let v = match rng.random_range(0..14) {
        0 => return Bytes::new(),
        1 => json!({}),
        2 => json!({ "by": "" }),
        3 => json!({ "by": 7 }),
        4 => json!({ "by": "x".repeat(201) }),
        5 => json!({ "by": "a\u{0}b" }),
        6 => json!({ "for": "100000000years" }),
        7 => json!({ "for": "18446744073709551615s" }),
        8 => json!({ "for": "0s" }),
        9 => json!({ "until": "9999-12-31T23:59:59Z" }),
        10 => json!({ "until": "2000-01-01T00:00:00Z" }),
        11 => json!({ "for": "15m", "until": "2030-01-01T00:00:00Z" }),
        12 => json!({ "for": -1, "nope": true }),
        _ => return generic_body(rng, m),
    };
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

fn ack_token(rng: &mut StdRng, m: &Material, oracle: &Oracle) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let id = vigil::domain::IncidentId::parse(pick(rng, &m.seeded).as_str()).unwrap();
    let t0 = chrono::DateTime::from_timestamp(m.t0, 0).unwrap();
    match rng.random_range(0..8) {
        // Signed with another secret.
        0 => AckSigner::new(Secret::new("wrong"), Duration::from_secs(3600)).issue(id, "ana", t0),
        // Expired: issued two days ago with a one-day lifetime.
        1 => oracle.ack.issue(id, "ana", t0 - chrono::Duration::days(2)),
        // A valid one, edited.
        2 => {
            let t = oracle.ack.issue(id, "ana", t0);
            String::from_utf8_lossy(&mutate(rng, t.as_bytes())).into_owned()
        }
        3 => {
            let t = oracle.ack.issue(id, "ana", t0);
            t[..rng.random_range(0..t.len())].to_string()
        }
        // A payload that is not what `issue` makes, with a correct signature over it.
        4 => {
            let payload = pick(
                rng,
                &[
                    "x",
                    "..",
                    "not-an-id.99999999999999999999.ana",
                    "01JD4Z8X3K7M2Q9R5T6V8W0Y1A.-99999999999999.ana",
                    "01JD4Z8X3K7M2Q9R5T6V8W0Y1A.9223372036854775807",
                ],
            );
            let mut mac =
                hmac::Hmac::<sha2::Sha256>::new_from_slice(ACK_SECRET.as_bytes()).unwrap();
            mac.update(payload.as_bytes());
            let sig = mac.finalize().into_bytes();
            format!("{}.{}", b64.encode(payload), b64.encode(&sig[..16]))
        }
        5 => String::from_utf8_lossy(&random_bytes(rng, 100)).into_owned(),
        6 => format!(
            "{}.{}",
            b64.encode(random_bytes(rng, 60)),
            b64.encode(random_bytes(rng, 16))
        ),
        _ => "a".repeat(rng.random_range(1..4000)),
    }
}

/// Percent-encodes everything outside the unreserved set, so any string is a path segment.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn slack_body(rng: &mut StdRng, m: &Material) -> Bytes {
    let mut p = m.slack_payload.clone();
    if rng.random_bool(0.5) {
        p["actions"][0]["value"] = json!(random_id(rng, m));
    }
    match rng.random_range(0..5) {
        0 => {
            mutate_json(rng, &mut p);
        }
        1 => {
            p["actions"][0]["action_id"] =
                json!(*pick(rng, &["ack", "ack_15m", "ack_1h", "resolve", "nope"]))
        }
        2 => return Bytes::from(mutate(rng, &form(&p.to_string()))),
        3 => return generic_body(rng, m),
        _ => {}
    }
    Bytes::from(form(&p.to_string()))
}

fn form(payload: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", payload)
        .finish()
        .into_bytes()
}

fn pagerduty_body(rng: &mut StdRng, m: &Material) -> Bytes {
    let mut v: Value = serde_json::from_slice(&m.pagerduty).unwrap();
    if rng.random_bool(0.5) {
        v["event"]["data"]["incident_key"] = json!(random_id(rng, m));
    }
    if rng.random_bool(0.3) {
        v["event"]["event_type"] = json!(*pick(
            rng,
            &[
                "incident.resolved",
                "incident.acknowledged",
                "incident.triggered",
                "pagey.ping"
            ]
        ));
    }
    match rng.random_range(0..4) {
        0 => mutate_json(rng, &mut v),
        1 => return json_body(rng, m, &m.pagerduty),
        _ => {}
    }
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// Makes one request; `oracle` keeps every valid credential away from every valid body.
fn generate(rng: &mut StdRng, m: &Material, oracle: &Oracle) -> Req {
    let mut headers = HeaderMap::new();
    let set = |h: &mut HeaderMap, name: &'static str, v: Option<HeaderValue>| {
        if let Some(v) = v {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    let (mut method, path, body) = match rng.random_range(0..100) {
        // SNS: edited, retyped, forged, or foreign-cert envelopes.
        0..=14 => {
            let base = pick(rng, &m.sns).clone();
            let body = match rng.random_range(0..6) {
                0 => {
                    let mut v: Value = serde_json::from_slice(&base).unwrap();
                    let key = *pick(
                        rng,
                        &[
                            "Message",
                            "Subject",
                            "TopicArn",
                            "MessageId",
                            "Timestamp",
                            "Type",
                        ],
                    );
                    v[key] = json!(format!("{}!", v[key].as_str().unwrap_or("")));
                    Bytes::from(serde_json::to_vec(&v).unwrap())
                }
                1 => {
                    let mut v: Value = serde_json::from_slice(&base).unwrap();
                    v["SigningCertURL"] = json!(*pick(
                        rng,
                        &[
                            "https://evil.example.com/x.pem",
                            "http://sns.ap-southeast-1.amazonaws.com/x.pem",
                            "https://sns.ap-southeast-1.amazonaws.com.evil.example/x.pem",
                            "file:///etc/passwd",
                            "https://sns.ap-southeast-1.amazonaws.com:99999/x.pem",
                            "",
                        ]
                    ));
                    Bytes::from(serde_json::to_vec(&v).unwrap())
                }
                2 => {
                    let mut v: Value = serde_json::from_slice(&base).unwrap();
                    v["SignatureVersion"] = json!(*pick(rng, &["2", "3", "", "1 "]));
                    Bytes::from(serde_json::to_vec(&v).unwrap())
                }
                _ => json_body(rng, m, &base),
            };
            if rng.random_bool(0.5) {
                let declared = *pick(rng, &["Notification", "SubscriptionConfirmation", "Bogus"]);
                set(
                    &mut headers,
                    "x-amz-sns-message-type",
                    HeaderValue::from_str(declared).ok(),
                );
            }
            set(
                &mut headers,
                "content-type",
                content_type(rng, "text/plain; charset=UTF-8"),
            );
            (Method::POST, "/v1/ingest/sns".to_string(), body)
        }
        15..=24 => {
            let key = match rng.random_range(0..4) {
                0 => None,
                1 => Some("nope"),
                _ => Some(EVENTBRIDGE_KEY),
            };
            set(
                &mut headers,
                "x-api-key",
                key.and_then(|k| HeaderValue::from_str(k).ok()),
            );
            set(
                &mut headers,
                "content-type",
                content_type(rng, "application/json"),
            );
            let body = json_body(rng, m, &m.eventbridge);
            (Method::POST, "/v1/ingest/eventbridge".to_string(), body)
        }
        25..=44 => {
            set(&mut headers, "authorization", auth_header(rng));
            set(
                &mut headers,
                "content-type",
                content_type(rng, "application/json"),
            );
            let base = pick(rng, m.bot.as_slice()).clone();
            let body = json_body(rng, m, &base);
            (Method::POST, "/v1/events".to_string(), body)
        }
        45..=49 => {
            set(&mut headers, "authorization", auth_header(rng));
            let q = pick(
                rng,
                &[
                    "",
                    "?limit=-1",
                    "?limit=0",
                    "?limit=99999999999999999999999",
                    "?status=bogus",
                    "?status=open&limit=5",
                    "?status=resolved",
                    "?foo=bar",
                    "?%ZZ",
                    "?limit=1&limit=2",
                    "?status=",
                    "?status=all&limit=1000",
                ],
            );
            (Method::GET, format!("/v1/incidents{q}"), Bytes::new())
        }
        50..=54 => {
            set(&mut headers, "authorization", auth_header(rng));
            (
                Method::GET,
                format!("/v1/incidents/{}", seg(&random_id(rng, m))),
                Bytes::new(),
            )
        }
        55..=64 => {
            set(&mut headers, "authorization", auth_header(rng));
            set(
                &mut headers,
                "content-type",
                content_type(rng, "application/json"),
            );
            let action = pick(rng, &["ack", "resolve"]);
            let path = format!("/v1/incidents/{}/{action}", seg(&random_id(rng, m)));
            (Method::POST, path, act_body(rng, m))
        }
        65..=74 => {
            let body = slack_body(rng, m);
            let now = m.t0;
            let (ts, secret) = match rng.random_range(0..6) {
                0 => (now - 301, SLACK_SECRET),
                1 => (now + 301, SLACK_SECRET),
                2 => (now, "wrong-secret"),
                3 | 4 => (now, SLACK_SECRET),
                _ => (rng.random::<i64>(), SLACK_SECRET),
            };
            let ts_s = ts.to_string();
            let sig = format!(
                "v0={}",
                hmac_hex(secret, &[b"v0:", ts_s.as_bytes(), b":", &body])
            );
            match rng.random_range(0..6) {
                0 => {}
                1 => set(
                    &mut headers,
                    "x-slack-signature",
                    HeaderValue::from_str(&sig).ok(),
                ),
                2 => {
                    set(
                        &mut headers,
                        "x-slack-request-timestamp",
                        HeaderValue::from_str(&ts_s).ok(),
                    );
                    let bad = *pick(rng, &["v0=", "v0=zz", "v1=00", "garbage"]);
                    set(
                        &mut headers,
                        "x-slack-signature",
                        HeaderValue::from_str(bad).ok(),
                    );
                }
                _ => {
                    set(
                        &mut headers,
                        "x-slack-request-timestamp",
                        HeaderValue::from_str(&ts_s).ok(),
                    );
                    set(
                        &mut headers,
                        "x-slack-signature",
                        HeaderValue::from_str(&sig).ok(),
                    );
                }
            }
            set(
                &mut headers,
                "content-type",
                content_type(rng, "application/x-www-form-urlencoded"),
            );
            (Method::POST, "/v1/slack/interactions".to_string(), body)
        }
        75..=82 => {
            let body = pagerduty_body(rng, m);
            let sig = match rng.random_range(0..6) {
                0 => None,
                1 => Some(format!("v1={}", hmac_hex("wrong-secret", &[&body[..]]))),
                2 => {
                    Some(pick(rng, &["v1=", "v1=zz", "v0=00", ",,,", "v1=00ff,v1=11"]).to_string())
                }
                _ => Some(format!("v1={}", hmac_hex(PD_SECRET, &[&body[..]]))),
            };
            set(
                &mut headers,
                "x-pagerduty-signature",
                sig.and_then(|s| HeaderValue::from_str(&s).ok()),
            );
            set(
                &mut headers,
                "content-type",
                content_type(rng, "application/json"),
            );
            (Method::POST, "/v1/pagerduty/webhook".to_string(), body)
        }
        83..=88 => {
            let token = ack_token(rng, m, oracle);
            let method = if rng.random_bool(0.5) {
                Method::GET
            } else {
                Method::POST
            };
            (
                method,
                format!("/v1/ack/{}", seg(&token)),
                generic_body(rng, m),
            )
        }
        89..=91 => {
            set(&mut headers, "authorization", auth_header(rng));
            (
                Method::POST,
                "/v1/admin/reload".to_string(),
                generic_body(rng, m),
            )
        }
        92..=94 => {
            let path = pick(rng, &["/healthz", "/readyz", "/metrics"]).to_string();
            (Method::GET, path, Bytes::new())
        }
        _ => {
            set(&mut headers, "authorization", auth_header(rng));
            let path = match rng.random_range(0..6) {
                0 => "/v1/nothing".to_string(),
                1 => "/v1/incidents/../admin/reload".to_string(),
                2 => format!("/{}", "a/".repeat(rng.random_range(1..2000))),
                3 => format!(
                    "/v1/{}",
                    seg(&String::from_utf8_lossy(&random_bytes(rng, 64)))
                ),
                4 => "/v1/ack/".to_string(),
                _ => "/v1/incidents/%00/ack".to_string(),
            };
            (Method::POST, path, generic_body(rng, m))
        }
    };
    // One request in ten uses a method the route does not take (or an odd one).
    if rng.random_range(0..10) == 0 {
        method = pick(
            rng,
            &[
                Method::GET,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
                Method::HEAD,
                Method::OPTIONS,
                Method::from_bytes(b"FROB").unwrap(),
            ],
        )
        .clone();
    }
    if rng.random_range(0..20) == 0 {
        // Hostile extra headers.
        set(
            &mut headers,
            "content-length-ish",
            HeaderValue::from_bytes(b"\xff\x00").ok(),
        );
        set(
            &mut headers,
            "x-amz-sns-message-type",
            HeaderValue::from_bytes(b"\xc3\x28").ok(),
        );
        set(
            &mut headers,
            "x-slack-request-timestamp",
            HeaderValue::from_str("99999999999999999999999").ok(),
        );
    }
    let mut req = Req {
        method,
        path,
        headers,
        body,
    };
    defuse(&mut req, oracle);
    req
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn is_json(h: &HeaderMap) -> bool {
    header_str(h, "content-type")
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
}

fn has_valid_bearer(h: &HeaderMap) -> bool {
    header_str(h, "authorization")
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(s, t)| {
            s.eq_ignore_ascii_case("bearer") && [INGEST_TOKEN, OPERATOR_TOKEN].contains(&t.trim())
        })
}

fn has_operator_bearer(h: &HeaderMap) -> bool {
    header_str(h, "authorization")
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(s, t)| s.eq_ignore_ascii_case("bearer") && t.trim() == OPERATOR_TOKEN)
}

/// Would this request change state if the app did what its parsers and verifiers say? Then its
/// credential is replaced by a wrong one: the campaign sends only requests that must be refused
/// or are read-only.
fn defuse(req: &mut Req, o: &Oracle) {
    let wrong = HeaderValue::from_static("Bearer wrong-token");
    let post = req.method == Method::POST;
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let h = &mut req.headers;
    match path.as_str() {
        "/v1/events"
            if post
                && has_valid_bearer(h)
                && is_json(h)
                && vigil::ingest::parse_events(&req.body, o.now).is_ok() =>
        {
            h.insert("authorization", wrong);
        }
        "/v1/ingest/eventbridge"
            if post
                && header_str(h, "x-api-key") == Some(EVENTBRIDGE_KEY)
                && matches!(vigil::ingest::parse_event(&req.body), Ok(Some(_))) =>
        {
            h.insert("x-api-key", HeaderValue::from_static("defused"));
        }
        "/v1/ingest/sns" if post => {
            if let Ok(env) = SnsEnvelope::parse(&req.body) {
                let verified = futures::executor::block_on(vigil::ingest::verify(&env, &o.certs));
                if verified.is_ok() {
                    let mut v: Value = serde_json::from_slice(&req.body).unwrap();
                    v["Signature"] = json!("Zm9yZ2Vk");
                    req.body = Bytes::from(serde_json::to_vec(&v).unwrap());
                }
            }
        }
        "/v1/slack/interactions" if post => {
            let secret = Secret::new(SLACK_SECRET);
            let ok = vigil::ingest::slack::verify_request(
                &secret,
                header_str(h, "x-slack-request-timestamp"),
                header_str(h, "x-slack-signature"),
                &req.body,
                o.now.timestamp(),
            )
            .is_ok();
            if ok
                && let Ok(vigil::ingest::slack::Interaction::Action { incident, .. }) =
                    vigil::ingest::slack::parse_interaction(&req.body)
                && o.seeded.contains(&incident)
            {
                h.insert("x-slack-signature", HeaderValue::from_static("v0=00"));
            }
        }
        "/v1/pagerduty/webhook" if post => {
            let ok = vigil::ingest::pagerduty::verify_signature(
                &[Secret::new(PD_SECRET)],
                header_str(h, "x-pagerduty-signature"),
                &req.body,
            )
            .is_ok();
            if ok
                && let Ok(e) = vigil::ingest::pagerduty::parse_webhook(&req.body)
                && e.incident_key
                    .as_ref()
                    .is_some_and(|k| o.seeded.contains(k))
            {
                h.insert("x-pagerduty-signature", HeaderValue::from_static("v1=00"));
            }
        }
        p if post && p.starts_with("/v1/ack/") => {
            let token = percent_decode(&p["/v1/ack/".len()..]);
            if o.ack.verify(&token, o.now).is_ok() {
                req.path = format!("/v1/ack/{}x", &req.path["/v1/ack/".len()..]);
            }
        }
        p if post && p.starts_with("/v1/incidents/") && has_operator_bearer(h) => {
            let id = p
                .trim_start_matches("/v1/incidents/")
                .split('/')
                .next()
                .unwrap_or("");
            if o.seeded.contains(&percent_decode(id)) {
                h.insert("authorization", wrong);
            }
        }
        _ => {}
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one request; the status and body, or the whole error chain.
async fn send(http: &reqwest::Client, req: &Req, url: &str) -> Result<(u16, String), String> {
    let result = http
        .request(req.method.clone(), url)
        .headers(req.headers.clone())
        .body(req.body.clone())
        .send()
        .await;
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            Ok((status, resp.text().await.unwrap_or_default()))
        }
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            Err(text)
        }
    }
}

/// What must not change: every incident with its timeline, and the store's counts.
async fn snapshot(app: &TestApp) -> Value {
    let list = app.incidents().await;
    let mut full = Vec::new();
    for inc in &list {
        full.push(app.incident(inc["id"].as_str().unwrap()).await);
    }
    let (_, ready) = app.get("/readyz").await;
    json!({
        "incidents": full,
        "open": ready["open_incidents"],
        "outbox": ready["outbox"],
        "timers": ready["timers"],
        "policy": ready["policy_digest"],
    })
}

#[test]
fn a_hundred_thousand_hostile_requests_get_no_5xx_no_panic_and_change_nothing() {
    let _heavy = heavy();
    count_panics_on_campaign_threads();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(THREAD_NAME)
        .build()
        .unwrap();
    rt.block_on(campaign());
}

async fn campaign() {
    let sink = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&sink)
        .await;
    let app = spawn_app_with(Options {
        policy: Some(Box::new(webhook_policy(&sink.uri()))),
        ack_secret: Some(ACK_SECRET.into()),
        slack_signing_secret: Some(SLACK_SECRET.into()),
        pagerduty_webhook_secret: Some(PD_SECRET.into()),
        ..Default::default()
    })
    .await;

    // Something to protect: a triggered, an acknowledged and a resolved incident.
    let mut seeded = Vec::new();
    for f in [
        "bot-exchange-error-timeout.json",
        "bot-trading-halted.json",
        "bot-exchange-error-rate-limited.json",
    ] {
        let (status, body) = app.post_events(&fixture(f)).await;
        assert_eq!(status.as_u16(), 202, "{body}");
        seeded.push(incident_of(&body));
    }
    let (status, body) = app
        .post_sns(&fixture("cloudwatch-alarm-sns-notification.json"))
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    seeded.push(incident_of(&body));
    let (status, _) = app
        .post_op(
            &format!("/v1/incidents/{}/ack", seeded[1]),
            json!({ "by": "ana" }),
        )
        .await;
    assert_eq!(status.as_u16(), 200);
    let (status, _) = app
        .post_op(&format!("/v1/incidents/{}/resolve", seeded[2]), json!({}))
        .await;
    assert_eq!(status.as_u16(), 200);
    // Let every delivery finish, so the store is still while the campaign runs (the injected
    // clock does not move, so no timer fires).
    for _ in 0..3 {
        app.handle.run_deliveries().await;
    }
    let before = snapshot(&app).await;
    assert_eq!(before["outbox"], 0, "quiet before the campaign: {before}");
    let sink_before = sink.received_requests().await.unwrap_or_default().len();

    let t0 = vigil::clock::Clock::now(&*app.clock);
    let material = Arc::new(Material {
        fixtures: ALL_FIXTURES
            .iter()
            .map(|f| Bytes::from(fixture(f)))
            .collect(),
        sns: [
            "cloudwatch-alarm-sns-notification.json",
            "cloudwatch-ok-sns-notification.json",
            "route53-healthcheck-alarm-sns-notification.json",
            "sns-subscription-confirmation.json",
        ]
        .iter()
        .map(|f| Bytes::from(fixture(f)))
        .collect(),
        bot: [
            "bot-exchange-error-timeout.json",
            "bot-exchange-error-rate-limited.json",
            "bot-trading-halted.json",
            "bot-batch-mixed.json",
        ]
        .iter()
        .map(|f| Bytes::from(fixture(f)))
        .collect(),
        eventbridge: Bytes::from(fixture("eventbridge-cloudwatch-alarm-state-change.json")),
        pagerduty: Bytes::from(fixture("pagerduty-webhook-incident-acknowledged.json")),
        slack_payload: fixture_json("slack-block-actions-ack.json"),
        oversized: vec![
            Bytes::from(vec![b' '; OVERSIZED]),
            Bytes::from(format!(
                "{{\"kind\":\"x\",\"summary\":\"{}\"}}",
                "y".repeat(OVERSIZED)
            )),
            Bytes::from(vec![b'['; OVERSIZED * 2]),
        ],
        seeded: seeded.clone(),
        t0: t0.timestamp(),
    });
    let oracle = Arc::new(Oracle {
        certs: CertCache::new(Arc::new(FixtureCerts), Vec::new()),
        ack: AckSigner::new(Secret::new(ACK_SECRET), Duration::from_secs(24 * 3600)),
        seeded: seeded.iter().cloned().collect(),
        now: t0,
    });

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://{}", app.addr);
    let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(SEED)));
    let started = Instant::now();
    #[derive(Default)]
    struct Counts {
        c2xx: usize,
        c3xx: usize,
        c4xx: usize,
        c5xx: usize,
        failed: usize,
        retried: usize,
        examples: Vec<String>,
    }
    let counts = Arc::new(Mutex::new(Counts::default()));
    futures::stream::iter(0..REQUESTS)
        .map(|_| {
            let req = {
                let mut rng = rng.lock().unwrap();
                generate(&mut rng, &material, &oracle)
            };
            let (http, fresh) = (http.clone(), fresh.clone());
            let url = format!("{base}{}", req.path);
            let counts = counts.clone();
            async move {
                let what = format!(
                    "{} {} ({} bytes)",
                    req.method,
                    req.path.chars().take(120).collect::<String>(),
                    req.body.len()
                );
                let mut outcome = send(&http, &req, &url).await;
                // A keep-alive race (the server closed a pooled connection after an earlier
                // answer that left a body unread) is not this request's fault: it is tried again
                // on fresh connections. A panicking handler drops those too, and the panic hook
                // counts it.
                let mut retried = false;
                for _ in 0..3 {
                    if outcome.is_ok() {
                        break;
                    }
                    retried = true;
                    outcome = send(&fresh, &req, &url).await;
                }
                let mut c = counts.lock().unwrap();
                c.retried += usize::from(retried);
                match outcome {
                    Ok((s, _)) if s < 300 => c.c2xx += 1,
                    Ok((s, _)) if s < 400 => c.c3xx += 1,
                    Ok((s, _)) if s < 500 => c.c4xx += 1,
                    Ok((s, text)) => {
                        c.c5xx += 1;
                        if c.examples.len() < 10 {
                            c.examples.push(format!(
                                "{s} for {what}: {}",
                                text.chars().take(300).collect::<String>()
                            ));
                        }
                    }
                    Err(e) => {
                        c.failed += 1;
                        if c.examples.len() < 10 {
                            c.examples
                                .push(format!("connection failed for {what}: {e}"));
                        }
                    }
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|_| async {})
        .await;
    let took = started.elapsed();

    for _ in 0..2 {
        app.handle.run_deliveries().await;
    }
    let after = snapshot(&app).await;
    let sink_after = sink.received_requests().await.unwrap_or_default().len();
    let changed = usize::from(after != before) + usize::from(sink_after != sink_before);
    let c = counts.lock().unwrap();
    let panics = PANICS.load(Ordering::SeqCst);
    report(&format!(
        "http campaign: {REQUESTS} requests, 4xx={}, 2xx={}, 5xx={}, panics={panics}, state changes={changed}, connection failures={} (3xx={}; {} retried on a fresh connection after a keep-alive race; {:.1} s, {:.0} req/s)",
        c.c4xx,
        c.c2xx,
        c.c5xx,
        c.failed,
        c.c3xx,
        c.retried,
        took.as_secs_f64(),
        REQUESTS as f64 / took.as_secs_f64()
    ));
    assert!(
        c.c5xx == 0 && c.failed == 0 && panics == 0,
        "5xx, dropped connections or panics:\n{}",
        c.examples.join("\n")
    );
    assert_eq!(after, before, "the campaign changed the store");
    assert_eq!(sink_after, sink_before, "the campaign caused deliveries");
}

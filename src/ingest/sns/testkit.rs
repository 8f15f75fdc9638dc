//! What the SNS tests share: the fixtures, certificate fetchers that serve or refuse them, and
//! signing with the test key.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde_json::Value;

use super::*;
use crate::ingest::IngestError;
use crate::ingest::testkit::fixture;

pub(super) const SNS_FIXTURES: [&str; 4] = [
    "cloudwatch-alarm-sns-notification.json",
    "cloudwatch-ok-sns-notification.json",
    "route53-healthcheck-alarm-sns-notification.json",
    "sns-subscription-confirmation.json",
];

/// Serves `test-signing-cert.pem` for every URL and counts the calls.
#[derive(Default)]
pub(super) struct FixtureFetcher {
    pub(super) calls: AtomicUsize,
}

#[async_trait::async_trait]
impl CertFetcher for FixtureFetcher {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, IngestError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(fixture("test-signing-cert.pem"))
    }
}

/// Always answers with the given error.
pub(super) struct FailingFetcher(pub(super) IngestError);

#[async_trait::async_trait]
impl CertFetcher for FailingFetcher {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, IngestError> {
        Err(self.0.clone())
    }
}

pub(super) fn cache() -> (Arc<FixtureFetcher>, CertCache) {
    let fetcher = Arc::new(FixtureFetcher::default());
    let cache = CertCache::new(fetcher.clone(), vec![]);
    (fetcher, cache)
}

pub(super) fn json(name: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_slice(&fixture(name)) {
        Ok(Value::Object(m)) => m,
        other => panic!("fixture {name} is not a JSON object: {other:?}"),
    }
}

pub(super) fn envelope(map: &serde_json::Map<String, Value>) -> SnsEnvelope {
    let bytes = serde_json::to_vec(map).expect("a JSON map serializes");
    SnsEnvelope::parse(&bytes).expect("test envelope parses")
}

pub(super) fn sign_v2(env: &mut SnsEnvelope) {
    let pem = String::from_utf8(fixture("test-signing-key.pem")).expect("key is UTF-8");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = BASE64.decode(b64).expect("key PEM body is base64");
    let key = rsa::PrivateKey::from_pkcs8_der(&der).expect("test key is PKCS#8 RSA");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    env.signature_version = "2".into();
    env.signature = BASE64.encode(signer.sign(env.string_to_sign().as_bytes()).to_bytes());
}

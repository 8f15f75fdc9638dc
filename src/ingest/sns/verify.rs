//! Signature verification: SignatureVersion 1 (SHA1withRSA) and 2 (SHA256withRSA) over
//! [`SnsEnvelope::string_to_sign`], with the key of a certificate [`CertCache`] trusts.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::PublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;

use super::{CertCache, SnsEnvelope};
use crate::ingest::IngestError;

/// The two signature algorithms SNS uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignatureAlgorithm {
    /// SignatureVersion 1: RSA PKCS#1 v1.5 with SHA-1 (the topic default).
    Sha1WithRsa,
    /// SignatureVersion 2: RSA PKCS#1 v1.5 with SHA-256.
    Sha256WithRsa,
}

/// Verifies an envelope's signature: the SignatureVersion must be 1 or 2, the SigningCertURL must
/// be trusted (checked before anything is fetched), and the RSA signature must match
/// [`SnsEnvelope::string_to_sign`] under the certificate's key.
///
/// Errors: [`IngestError::Unauthenticated`] for anything forged, unsupported or untrusted;
/// [`IngestError::CertUnavailable`] when the certificate cannot be fetched right now.
pub async fn verify(env: &SnsEnvelope, certs: &CertCache) -> Result<(), IngestError> {
    let algorithm = match env.signature_version.as_str() {
        "1" => SignatureAlgorithm::Sha1WithRsa,
        "2" => SignatureAlgorithm::Sha256WithRsa,
        other => {
            return Err(IngestError::Unauthenticated(format!(
                "unsupported SignatureVersion {other:?} (expected \"1\" or \"2\")"
            )));
        }
    };
    let url = certs.trusted_cert_url_for(&env.signing_cert_url, env.message.topic_arn())?;
    let signature = BASE64
        .decode(env.signature.trim().as_bytes())
        .map_err(|e| IngestError::Unauthenticated(format!("Signature is not valid base64: {e}")))?;
    let key = certs.public_key(&url).await?;
    verify_with_key(&key, algorithm, env.string_to_sign().as_bytes(), &signature)
}

fn verify_with_key(
    key: &PublicKey,
    algorithm: SignatureAlgorithm,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), IngestError> {
    let mismatch =
        || IngestError::Unauthenticated("signature does not match the message".to_string());
    let signature = Signature::try_from(signature).map_err(|_| mismatch())?;
    let result = match algorithm {
        SignatureAlgorithm::Sha1WithRsa => {
            VerifyingKey::<sha1::Sha1>::new(key.clone()).verify(signed, &signature)
        }
        SignatureAlgorithm::Sha256WithRsa => {
            VerifyingKey::<sha2::Sha256>::new(key.clone()).verify(signed, &signature)
        }
    };
    result.map_err(|_| mismatch())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use serde_json::Value;

    use super::*;
    use crate::ingest::sns::testkit::*;
    use crate::ingest::testkit::{fixture, mutations};

    #[tokio::test]
    async fn every_sns_fixture_verifies_against_the_test_certificate() {
        let (fetcher, certs) = cache();
        for name in SNS_FIXTURES {
            let env = SnsEnvelope::parse(&fixture(name)).expect(name);
            assert_eq!(verify(&env, &certs).await, Ok(()), "{name}");
        }
        // Two distinct URLs (ap-southeast-1 and us-east-1), each fetched once.
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
        assert_eq!(certs.len(), 2);
    }

    #[tokio::test]
    async fn changing_any_signed_field_breaks_the_signature() {
        let (_, certs) = cache();
        let original = json("cloudwatch-alarm-sns-notification.json");
        for (key, value) in [
            ("Message", "{\"AlarmName\":\"something-else\"}"),
            (
                "Subject",
                "OK: \"eks-prod-apse1-node-cpu-high\" in Asia Pacific (Singapore)",
            ),
            ("Timestamp", "2026-11-20T02:15:41.453Z"),
            (
                "TopicArn",
                "arn:aws:sns:ap-southeast-1:123456789012:other-topic",
            ),
            ("MessageId", "00000000-31f6-5b8a-9d0c-4e7f1a2b3c5d"),
        ] {
            let mut map = original.clone();
            map.insert(key.into(), Value::String(value.into()));
            let result = verify(&envelope(&map), &certs).await;
            assert!(
                matches!(result, Err(IngestError::Unauthenticated(_))),
                "{key}: {result:?}"
            );
        }
        // Removing the subject changes the string to sign too.
        let mut map = original.clone();
        map.remove("Subject");
        let result = verify(&envelope(&map), &certs).await;
        assert!(
            matches!(result, Err(IngestError::Unauthenticated(_))),
            "{result:?}"
        );

        let mut map = json("sns-subscription-confirmation.json");
        map.insert("Token".into(), Value::String("00".into()));
        let result = verify(&envelope(&map), &certs).await;
        assert!(
            matches!(result, Err(IngestError::Unauthenticated(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn unsigned_fields_and_lambda_spellings_do_not_matter() {
        let (_, certs) = cache();
        let mut map = json("cloudwatch-alarm-sns-notification.json");
        let cert = map
            .remove("SigningCertURL")
            .expect("fixture has SigningCertURL");
        let unsub = map
            .remove("UnsubscribeURL")
            .expect("fixture has UnsubscribeURL");
        map.insert("SigningCertUrl".into(), cert);
        map.insert("UnsubscribeUrl".into(), unsub);
        map.insert(
            "MessageAttributes".into(),
            serde_json::json!({"a": {"Type": "String", "Value": "b"}}),
        );
        let env = envelope(&map);
        assert!(env.signing_cert_url.ends_with(".pem"));
        assert!(env.unsubscribe_url.is_some());
        assert_eq!(verify(&env, &certs).await, Ok(()));
    }

    #[tokio::test]
    async fn unsupported_signature_versions_are_refused() {
        let (fetcher, certs) = cache();
        for version in ["3", "0", "", "1 "] {
            let mut env = SnsEnvelope::parse(&fixture("cloudwatch-alarm-sns-notification.json"))
                .expect("parses");
            env.signature_version = version.into();
            let result = verify(&env, &certs).await;
            assert!(
                matches!(result, Err(IngestError::Unauthenticated(ref m)) if m.contains("SignatureVersion")),
                "{version:?}: {result:?}"
            );
        }
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_v2_sha256_signature_verifies_and_v1_is_not_accepted_in_its_place() {
        let (_, certs) = cache();
        for name in SNS_FIXTURES {
            let mut env = SnsEnvelope::parse(&fixture(name)).expect("parses");
            sign_v2(&mut env);
            assert_eq!(verify(&env, &certs).await, Ok(()), "{name}");
            // The same SHA-256 signature claimed as version 1 must fail.
            env.signature_version = "1".into();
            assert!(matches!(
                verify(&env, &certs).await,
                Err(IngestError::Unauthenticated(_))
            ));
        }
        // A v1 signature claimed as version 2 fails as well.
        let mut env =
            SnsEnvelope::parse(&fixture("cloudwatch-ok-sns-notification.json")).expect("parses");
        env.signature_version = "2".into();
        assert!(matches!(
            verify(&env, &certs).await,
            Err(IngestError::Unauthenticated(_))
        ));
    }

    #[tokio::test]
    async fn mutated_envelopes_that_parse_never_verify_unless_unchanged() {
        let (_, certs) = cache();
        let original = fixture("route53-healthcheck-alarm-sns-notification.json");
        let reference = SnsEnvelope::parse(&original).expect("parses");
        for input in mutations(&original, 200, 0xC0FFEE) {
            let Ok(env) = SnsEnvelope::parse(&input) else {
                continue;
            };
            let result = verify(&env, &certs).await;
            let same_signed = env.string_to_sign() == reference.string_to_sign()
                && env.signature.trim() == reference.signature
                && env.signature_version == reference.signature_version;
            if !same_signed {
                assert!(result.is_err(), "a changed envelope verified: {env:?}");
            }
        }
    }
}

//! Signed acknowledge links for email and SMS. A token names an incident, the person it was sent
//! to and an expiry, and carries an HMAC-SHA256 over them with a secret from the environment
//! (`VIGIL_ACK_LINK_SECRET`). A GET of the link shows a confirmation page and changes nothing
//! (mail scanners follow links); only the POST from that page acknowledges.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{KeyInit, Mac};

use crate::domain::IncidentId;
use crate::domain::Secret;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckClaim {
    pub incident: IncidentId,
    pub person: String,
    pub expires: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckTokenError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    Forged,
    #[error("the link has expired")]
    Expired,
}

/// Issues and checks tokens with one secret.
#[derive(Clone)]
pub struct AckSigner {
    secret: Secret,
    /// How long a link stays valid.
    pub ttl: std::time::Duration,
}

impl AckSigner {
    pub fn new(secret: Secret, ttl: std::time::Duration) -> Self {
        Self { secret, ttl }
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }

    pub fn issue(&self, incident: IncidentId, person: &str, now: DateTime<Utc>) -> String {
        let expires =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let payload = format!("{incident}.{}.{person}", expires.timestamp());
        let sig = self.mac(payload.as_bytes());
        format!("{}.{}", B64.encode(payload), B64.encode(&sig[..16]))
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AckClaim, AckTokenError> {
        let (payload_b64, sig_b64) = token.split_once('.').ok_or(AckTokenError::Malformed)?;
        let payload = B64
            .decode(payload_b64)
            .map_err(|_| AckTokenError::Malformed)?;
        let sig = B64.decode(sig_b64).map_err(|_| AckTokenError::Malformed)?;
        let expected = self.mac(&payload);
        let same: bool = subtle::ConstantTimeEq::ct_eq(&expected[..16], sig.as_slice()).into();
        if sig.len() != 16 || !same {
            return Err(AckTokenError::Forged);
        }
        let text = String::from_utf8(payload).map_err(|_| AckTokenError::Malformed)?;
        let mut parts = text.splitn(3, '.');
        let (Some(id), Some(exp), Some(person)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(AckTokenError::Malformed);
        };
        let incident = IncidentId::parse(id).map_err(|_| AckTokenError::Malformed)?;
        let expires = exp
            .parse::<i64>()
            .ok()
            .and_then(|s| Utc.timestamp_opt(s, 0).single())
            .ok_or(AckTokenError::Malformed)?;
        if now > expires {
            return Err(AckTokenError::Expired);
        }
        Ok(AckClaim {
            incident,
            person: person.to_string(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> AckSigner {
        AckSigner::new(Secret::new("s3cret"), std::time::Duration::from_secs(3600))
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let id = IncidentId::new(now);
        let token = signer().issue(id, "mei", now);
        let claim = signer().verify(&token, now).unwrap();
        assert_eq!((claim.incident, claim.person.as_str()), (id, "mei"));
        assert_eq!(
            signer().verify(&token, now + chrono::Duration::minutes(61)),
            Err(AckTokenError::Expired)
        );
    }

    #[test]
    fn altered_or_foreign_tokens_are_refused() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
        let token = signer().issue(IncidentId::new(now), "mei", now);
        let other = AckSigner::new(Secret::new("other"), std::time::Duration::from_secs(3600));
        assert_eq!(other.verify(&token, now), Err(AckTokenError::Forged));
        // Change the person inside the payload: the signature no longer matches.
        let (p, s) = token.split_once('.').unwrap();
        let text = String::from_utf8(B64.decode(p).unwrap())
            .unwrap()
            .replace("mei", "eve");
        let forged = format!("{}.{s}", B64.encode(text));
        assert_eq!(signer().verify(&forged, now), Err(AckTokenError::Forged));
        assert_eq!(
            signer().verify("garbage", now),
            Err(AckTokenError::Malformed)
        );
        assert_eq!(signer().verify("a.b", now), Err(AckTokenError::Malformed));
    }
}

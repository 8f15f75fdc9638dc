//! Console sessions: a signed cookie naming the person who signed in, and the CSRF token every
//! form of that session carries.
//!
//! - **Cookie** `vigil_session` = `base64url(person "\n" expiry "\n" nonce) "." base64url(mac)`,
//!   the MAC an HMAC-SHA256 under the console key (`VIGIL_CONSOLE_KEY`, shared by replicas so each
//!   accepts the others' sessions). HttpOnly, `SameSite=Strict`, `Path=/`, `Max-Age` the session's
//!   lifetime, and `Secure` when the page was asked for over HTTPS ([`Keys::secure`]). Nothing is
//!   stored server-side but sign-outs: sign-out clears the cookie and records the session as
//!   ended in the store (`pipeline::operator::SIGNED_OUT`, so a copy of the cookie is refused on every replica);
//!   a session also ends at its expiry, when the key changes, or when its person no longer has
//!   an operator token.
//! - **CSRF** token of a session = `base64url(HMAC(key, "csrf\n" nonce))`: forms carry it in a
//!   `csrf` field, and a POST whose field does not match its cookie's session is refused (403).
//!   The sign-in form has no session yet: it carries a signed random value that must equal the
//!   short-lived `vigil_signin` cookie set with the form (a signed double submit), so another
//!   site cannot sign a browser in under its own token.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The session cookie's name.
pub const COOKIE: &str = "vigil_session";
/// The sign-in form's double-submit cookie.
pub const SIGNIN_COOKIE: &str = "vigil_signin";
/// How long a sign-in form may be left open before it is submitted.
pub const SIGNIN_TTL: Duration = Duration::from_secs(3600);

/// The console's signing key and session settings.
pub struct Keys {
    key: Vec<u8>,
    /// How long a session lasts after sign-in.
    pub ttl: Duration,
    /// `VIGIL_PUBLIC_URL` is `https://…`: every cookie is `Secure`.
    pub https: bool,
}

/// A signed-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub person: String,
    pub expires: DateTime<Utc>,
    pub(super) nonce: String,
}

impl Keys {
    pub fn new(key: Vec<u8>, ttl: Duration, https: bool) -> Self {
        Self { key, ttl, https }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        // An HMAC key may have any length: `new_from_slice` cannot fail here.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(b"\n");
            }
            mac.update(p);
        }
        mac
    }

    fn sign(&self, parts: &[&[u8]]) -> String {
        B64.encode(self.mac(parts).finalize().into_bytes())
    }

    fn verify(&self, parts: &[&[u8]], sig: &str) -> bool {
        B64.decode(sig)
            .is_ok_and(|given| self.mac(parts).verify_slice(&given).is_ok())
    }

    /// A new session for `person`, and its cookie value.
    pub fn issue(&self, person: &str, now: DateTime<Utc>) -> (Session, String) {
        let ttl =
            chrono::Duration::from_std(self.ttl).unwrap_or_else(|_| chrono::Duration::hours(12));
        // Whole seconds, as the cookie carries it.
        let expires = DateTime::from_timestamp((now + ttl).timestamp(), 0).unwrap_or(now);
        let nonce = B64.encode(rand::random::<[u8; 16]>());
        let payload = format!("{person}\n{}\n{nonce}", expires.timestamp());
        let sig = self.sign(&[b"session", payload.as_bytes()]);
        let value = format!("{}.{sig}", B64.encode(payload.as_bytes()));
        (
            Session {
                person: person.to_owned(),
                expires,
                nonce,
            },
            value,
        )
    }

    /// The session a cookie value carries, if it is signed by this key and has not expired.
    pub fn open(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let (payload, sig) = value.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        if !self.verify(&[b"session", &payload], sig) {
            return None;
        }
        let payload = String::from_utf8(payload).ok()?;
        let mut it = payload.split('\n');
        let (person, expiry, nonce) = (it.next()?, it.next()?, it.next()?);
        let expires = DateTime::from_timestamp(expiry.parse().ok()?, 0)?;
        (now < expires).then(|| Session {
            person: person.to_owned(),
            expires,
            nonce: nonce.to_owned(),
        })
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, session: &Session) -> String {
        self.sign(&[b"csrf", session.nonce.as_bytes()])
    }

    /// Whether `given` is the CSRF token of `session` (constant time).
    pub fn csrf_matches(&self, session: &Session, given: &str) -> bool {
        self.verify(&[b"csrf", session.nonce.as_bytes()], given)
    }

    /// A sign-in form's token: `random.expiry.mac`; the same value goes into [`SIGNIN_COOKIE`].
    pub fn signin_token(&self, now: DateTime<Utc>) -> String {
        let nonce = B64.encode(rand::random::<[u8; 16]>());
        let until = (now + chrono::Duration::seconds(SIGNIN_TTL.as_secs() as i64)).timestamp();
        let until = until.to_string();
        let sig = self.sign(&[b"signin", nonce.as_bytes(), until.as_bytes()]);
        format!("{nonce}.{until}.{sig}")
    }

    /// Whether a sign-in form's `csrf` field is signed, unexpired and equal to its cookie.
    pub fn signin_matches(&self, field: &str, cookie: Option<&str>, now: DateTime<Utc>) -> bool {
        use subtle::ConstantTimeEq as _;
        let Some(cookie) = cookie else { return false };
        let same: bool = field.as_bytes().ct_eq(cookie.as_bytes()).into();
        let mut it = field.split('.');
        let (Some(nonce), Some(until), Some(sig), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return false;
        };
        same && self.verify(&[b"signin", nonce.as_bytes(), until.as_bytes()], sig)
            && until.parse::<i64>().is_ok_and(|u| now.timestamp() < u)
    }

    /// Whether cookies for this request get `Secure`: the public URL is HTTPS, or the load
    /// balancer in front says the browser used HTTPS (`X-Forwarded-Proto: https`). A client
    /// sending that header itself only makes its own cookie stricter.
    pub fn secure(&self, headers: &axum::http::HeaderMap) -> bool {
        self.https
            || headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, with `Max-Age`.
    pub fn cookie(&self, name: &str, value: &str, max_age: Duration, secure: bool) -> String {
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            max_age.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[u8]) -> Keys {
        Keys::new(k.to_vec(), Duration::from_secs(3600), false)
    }

    #[test]
    fn a_session_opens_under_its_key_until_it_expires() {
        let now = Utc::now();
        let (session, value) = keys(b"k1").issue("mei", now);
        assert_eq!(keys(b"k1").open(&value, now), Some(session.clone()));
        assert_eq!(keys(b"k2").open(&value, now), None, "another key");
        let later = now + chrono::Duration::seconds(3601);
        assert_eq!(keys(b"k1").open(&value, later), None, "expired");
        let (payload, sig) = value.split_once('.').unwrap();
        let forged = B64.encode(
            String::from_utf8(B64.decode(payload).unwrap())
                .unwrap()
                .replace("mei", "raj"),
        );
        assert_eq!(keys(b"k1").open(&format!("{forged}.{sig}"), now), None);
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let k = keys(b"k");
        let now = Utc::now();
        let (a, _) = k.issue("mei", now);
        let (b, _) = k.issue("mei", now);
        assert!(k.csrf_matches(&a, &k.csrf(&a)));
        assert!(!k.csrf_matches(&a, &k.csrf(&b)));
        assert!(!k.csrf_matches(&a, ""));
    }

    #[test]
    fn a_signin_token_must_equal_its_cookie_and_be_fresh() {
        let k = keys(b"k");
        let now = Utc::now();
        let t = k.signin_token(now);
        assert!(k.signin_matches(&t, Some(&t), now));
        assert!(!k.signin_matches(&t, None, now));
        assert!(!k.signin_matches(&t, Some(&k.signin_token(now)), now));
        assert!(!k.signin_matches(&t, Some(&t), now + chrono::Duration::hours(2)));
    }
}

//! Bearer tokens. Ingest tokens may only post events; operator tokens may also read and act on
//! incidents. Comparison is constant-time; a missing or wrong token is 401, the right kind of
//! token for the wrong endpoint 403.
//!
//! Handlers take the extractors below before their body, so a request is authenticated from its
//! headers and refused before a byte of its body is read (axum runs the parts extractors first,
//! in argument order, and the body extractor last): an unauthenticated client cannot make vigil
//! buffer 256 KiB. Signed sources (SNS, Slack, PagerDuty) can only be checked over the body; they
//! take a [`SignedSlot`] first, which bounds how many of their bodies are read at once.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::error::ApiError;
use crate::settings::{OperatorToken, Secret};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Ingest,
    /// An operator token, and the person it belongs to (`person:token`), if any.
    Operator(Option<String>),
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn any_matches(tokens: &[Secret], candidate: &str) -> bool {
    // Check every token, so timing does not reveal which one matched.
    tokens
        .iter()
        .fold(false, |hit, t| t.matches(candidate) | hit)
}

/// The operator token `candidate` is, if any. Every token is compared, so timing does not
/// reveal which one matched.
pub fn operator_token<'a>(
    tokens: &'a [OperatorToken],
    candidate: &str,
) -> Option<&'a OperatorToken> {
    tokens.iter().fold(None, |hit, t| {
        let this = t.secret.matches(candidate);
        hit.or(this.then_some(t))
    })
}

pub fn role(
    headers: &HeaderMap,
    ingest: &[Secret],
    operator: &[OperatorToken],
) -> Result<Role, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer …)"))?;
    if let Some(t) = operator_token(operator, token) {
        Ok(Role::Operator(t.person.clone()))
    } else if any_matches(ingest, token) {
        Ok(Role::Ingest)
    } else {
        Err(ApiError::unauthorized("invalid token"))
    }
}

/// Bodies of signed sources read and verified at once (README, "HTTP API").
pub const SIGNED_IN_FLIGHT: usize = 64;
/// How long a signed request waits for a slot before it is answered 503 with `Retry-After`.
pub const SIGNED_WAIT: Duration = Duration::from_secs(2);

/// An ingest or operator token (`Authorization: Bearer …`).
pub struct Token;

impl FromRequestParts<AppState> for Token {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        role(
            &parts.headers,
            &s.settings.ingest_tokens,
            &s.settings.operator_tokens,
        )
        .map(|_| Token)
    }
}

/// An operator token, with the person it belongs to (`None` for an unnamed token).
pub struct Operator {
    pub person: Option<String>,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        match role(
            &parts.headers,
            &s.settings.ingest_tokens,
            &s.settings.operator_tokens,
        )? {
            Role::Operator(person) => Ok(Operator { person }),
            Role::Ingest => Err(ApiError::forbidden("ingest tokens may only post events")),
        }
    }
}

/// A peer token (`VIGIL_PEER_TOKENS`): the primary and its standby reading each other's feed.
pub struct PeerToken;

impl FromRequestParts<AppState> for PeerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(|| {
            ApiError::unauthorized("missing bearer token (Authorization: Bearer …)")
        })?;
        if any_matches(&s.settings.peer_tokens, token) {
            Ok(PeerToken)
        } else {
            Err(ApiError::unauthorized("invalid peer token"))
        }
    }
}

/// The `x-api-key` EventBridge API destinations send.
pub struct ApiKey;

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let given = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing x-api-key header"))?;
        match &s.settings.eventbridge_api_key {
            Some(key) if key.matches(given) => Ok(ApiKey),
            _ => Err(ApiError::unauthorized("invalid API key")),
        }
    }
}

/// Room for one signed body; handlers drop it once the signature is checked.
pub struct SignedSlot {
    _permit: OwnedSemaphorePermit,
}

/// The slots of [`SignedSlot`], shared by every signed endpoint.
pub fn signed_slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(SIGNED_IN_FLIGHT))
}

impl FromRequestParts<AppState> for SignedSlot {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        match tokio::time::timeout(SIGNED_WAIT, s.signed.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(SignedSlot { _permit: permit }),
            // Logged with the answer (`ApiError`).
            _ => Err(ApiError::unavailable(format!(
                "{SIGNED_IN_FLIGHT} signed requests are being verified; retry shortly"
            ))
            .retry_after(HeaderValue::from_static("1"))),
        }
    }
}

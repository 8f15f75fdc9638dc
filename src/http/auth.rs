//! Bearer tokens. Ingest tokens may only post events; operator tokens may also read and act on
//! incidents. Comparison is constant-time; a missing or wrong token is 401, the right kind of
//! token for the wrong endpoint 403.

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::settings::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Operator,
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

pub fn role(headers: &HeaderMap, ingest: &[Secret], operator: &[Secret]) -> Result<Role, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token (Authorization: Bearer …)"))?;
    if any_matches(operator, token) {
        Ok(Role::Operator)
    } else if any_matches(ingest, token) {
        Ok(Role::Ingest)
    } else {
        Err(ApiError::unauthorized("invalid token"))
    }
}

pub fn require_operator(
    headers: &HeaderMap,
    ingest: &[Secret],
    operator: &[Secret],
) -> Result<(), ApiError> {
    match role(headers, ingest, operator)? {
        Role::Operator => Ok(()),
        Role::Ingest => Err(ApiError::forbidden("ingest tokens may only post events")),
    }
}

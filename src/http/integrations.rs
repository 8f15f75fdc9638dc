//! Two-way integrations: Slack button clicks (`/v1/slack/interactions`) and PagerDuty V3
//! webhooks (`/v1/pagerduty/webhook`). Both verify their signature before anything else
//! (forged or stale → 401, nothing changes; an unsigned request or a disabled integration is
//! refused from its headers, before its body is read; bodies being verified are bounded by
//! `auth::SignedSlot`), then acknowledge or resolve the vigil incident with
//! the origin recorded, so the ack is never echoed back to where it came from.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::auth::SignedSlot;
use super::error::ApiError;
use crate::domain::IncidentId;
use crate::incident::transition::AckResult;
use crate::incident::{Actor, Origin};
use crate::ingest::pagerduty::{parse_webhook, verify_signature};
use crate::ingest::slack::{Interaction, SlackAction, parse_interaction, verify_request};
use crate::pipeline::ServiceError;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An ephemeral answer to the person who clicked.
fn tell(text: impl Into<String>) -> Response {
    (
        StatusCode::OK,
        Json(
            json!({ "response_type": "ephemeral", "replace_original": false, "text": text.into() }),
        ),
    )
        .into_response()
}

/// The empty 200 Slack expects when there is nothing to say (`reference/slack.md`: a body, even
/// `{}`, may be taken as a response message).
fn nothing() -> Response {
    StatusCode::OK.into_response()
}

/// What can be checked of a Slack request before its body: interactions are enabled and the
/// request carries the signature headers. The signature itself is over the body.
pub struct SlackHeaders;

impl FromRequestParts<AppState> for SlackHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        if s.settings.slack_signing_secret.is_none() {
            return Err(ApiError::unauthorized(
                "Slack interactions are not enabled (no signing secret)",
            ));
        }
        for name in ["x-slack-request-timestamp", "x-slack-signature"] {
            if header(&parts.headers, name).is_none() {
                return Err(ApiError::unauthorized(format!("missing {name}")));
            }
        }
        Ok(SlackHeaders)
    }
}

/// The same for PagerDuty: a webhook secret is configured and the request is signed.
pub struct PagerDutyHeaders;

impl FromRequestParts<AppState> for PagerDutyHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        if s.settings.pagerduty_webhook_secrets.is_empty() {
            return Err(ApiError::unauthorized(
                "PagerDuty webhooks are not enabled (no webhook secret)",
            ));
        }
        if header(&parts.headers, "x-pagerduty-signature").is_none() {
            return Err(ApiError::unauthorized("missing X-PagerDuty-Signature"));
        }
        Ok(PagerDutyHeaders)
    }
}

/// `POST /v1/slack/interactions`: Slack's signing secret checked (5-minute window), then the
/// Acknowledge / Ack 15m / Ack 1h / Resolve buttons act as the Slack user's person in `routing/`.
/// Answers at once (well inside Slack's 3 s): the channel message itself is updated by the
/// acknowledged/resolved delivery that follows.
pub async fn slack(
    State(s): State<AppState>,
    _signed: SlackHeaders,
    slot: SignedSlot,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let Some(secret) = &s.settings.slack_signing_secret else {
        return Err(ApiError::unauthorized(
            "Slack interactions are not enabled (no signing secret)",
        ));
    };
    verify_request(
        secret,
        header(&headers, "x-slack-request-timestamp"),
        header(&headers, "x-slack-signature"),
        &body,
        s.clock.now().timestamp(),
    )?;
    drop(slot);
    let (action, incident, user_id, user_name) = match parse_interaction(&body)? {
        Interaction::Ignored { kind } => {
            tracing::debug!(kind, "Slack interaction ignored.");
            return Ok(nothing());
        }
        Interaction::Action {
            action,
            incident,
            user_id,
            user_name,
            ..
        } => (action, incident, user_id, user_name),
    };
    let Ok(id) = IncidentId::parse(&incident) else {
        return Ok(tell("That button does not name a vigil incident."));
    };
    let policy = s.policy.current();
    let who = policy
        .people
        .values()
        .find(|p| p.slack.as_deref() == Some(user_id.as_str()))
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("@{}", user_name.unwrap_or(user_id)));
    let actor = Actor {
        who,
        origin: Origin::Slack,
    };
    match action {
        SlackAction::Ack { for_ } => {
            // "Ack 15m" / "Ack 1h": the incident re-triggers when the time runs out.
            let until = for_
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| s.clock.now() + d);
            match s.service.acknowledge(id, actor, until).await {
                Ok((AckResult::Acknowledged, _)) => Ok(nothing()),
                Ok((AckResult::AlreadyAcknowledged, _)) => Ok(tell("Already acknowledged.")),
                Ok((AckResult::AlreadyResolved, _)) => Ok(tell("Already resolved.")),
                Err(ServiceError::NotFound) => Ok(tell("No such incident.")),
                Err(e) => Err(e.into()),
            }
        }
        SlackAction::Resolve => match s.service.resolve(id, actor).await {
            Ok(_) => Ok(nothing()),
            Err(ServiceError::AlreadyResolved) => Ok(tell("Already resolved.")),
            Err(ServiceError::NotFound) => Ok(tell("No such incident.")),
            Err(e) => Err(e.into()),
        },
    }
}

/// `POST /v1/pagerduty/webhook`: V3 webhooks, `X-PagerDuty-Signature` checked against every
/// configured secret. `incident.acknowledged` / `incident.resolved` act on the vigil incident
/// whose id PagerDuty holds as the incident key; anything else is answered 200 and ignored (so
/// PagerDuty does not retry or disable the subscription).
pub async fn pagerduty(
    State(s): State<AppState>,
    _signed: PagerDutyHeaders,
    slot: SignedSlot,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = body?;
    verify_signature(
        &s.settings.pagerduty_webhook_secrets,
        header(&headers, "x-pagerduty-signature"),
        &body,
    )?;
    drop(slot);
    let event = parse_webhook(&body)?;
    let ignored = |why: &str| {
        Ok((
            StatusCode::OK,
            Json(json!({ "ignored": true, "detail": why })),
        ))
    };
    let Some(id) = event
        .incident_key
        .as_deref()
        .and_then(|k| IncidentId::parse(k).ok())
    else {
        return ignored("no vigil incident key");
    };
    let actor = Actor {
        who: event.agent.clone().unwrap_or_else(|| "PagerDuty".into()),
        origin: Origin::Pagerduty,
    };
    let result = match event.event_type.as_str() {
        "incident.acknowledged" => s.service.acknowledge(id, actor, None).await.map(|_| ()),
        "incident.resolved" => match s.service.resolve(id, actor).await {
            Err(ServiceError::AlreadyResolved) => Ok(()),
            other => other.map(|_| ()),
        },
        other => {
            tracing::debug!(event_type = other, "PagerDuty webhook ignored.");
            return ignored("event type not acted on");
        }
    };
    match result {
        Ok(()) => Ok((
            StatusCode::OK,
            Json(json!({ "incident": id, "event": event.event_type })),
        )),
        Err(ServiceError::NotFound) => ignored("unknown incident"),
        Err(e) => Err(e.into()),
    }
}

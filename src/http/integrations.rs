//! Two-way integrations: Slack button clicks (`/v1/slack/interactions`) and PagerDuty V3
//! webhooks (`/v1/pagerduty/webhook`). Both verify their signature before anything else
//! (forged or stale → 401, nothing changes), then acknowledge or resolve the vigil incident with
//! the origin recorded, so the ack is never echoed back to where it came from.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::domain::IncidentId;
use crate::incident::transition::AckResult;
use crate::incident::{Actor, Origin, ServiceError};
use crate::ingest::pagerduty::{parse_webhook, verify_signature};
use crate::ingest::slack::{Interaction, SlackAction, parse_interaction, verify_request};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An ephemeral answer to the person who clicked.
fn tell(text: impl Into<String>) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::OK,
        Json(
            json!({ "response_type": "ephemeral", "replace_original": false, "text": text.into() }),
        ),
    )
}

/// `POST /v1/slack/interactions`: Slack's signing secret checked (5-minute window), then the
/// Acknowledge / Ack 15m / Ack 1h / Resolve buttons act as the Slack user's person in `routing/`.
/// Answers at once (well inside Slack's 3 s): the channel message itself is updated by the
/// acknowledged/resolved delivery that follows.
pub async fn slack(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
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
    let (action, incident, user_id, user_name) = match parse_interaction(&body)? {
        Interaction::Ignored { kind } => {
            tracing::debug!(kind, "Slack interaction ignored.");
            return Ok((StatusCode::OK, Json(json!({}))));
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
                Ok((AckResult::Acknowledged, _)) => Ok((StatusCode::OK, Json(json!({})))),
                Ok((AckResult::AlreadyAcknowledged, _)) => Ok(tell("Already acknowledged.")),
                Ok((AckResult::AlreadyResolved, _)) => Ok(tell("Already resolved.")),
                Err(ServiceError::NotFound) => Ok(tell("No such incident.")),
                Err(e) => Err(e.into()),
            }
        }
        SlackAction::Resolve => match s.service.resolve(id, actor).await {
            Ok(_) => Ok((StatusCode::OK, Json(json!({})))),
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = body?;
    verify_signature(
        &s.settings.pagerduty_webhook_secrets,
        header(&headers, "x-pagerduty-signature"),
        &body,
    )?;
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

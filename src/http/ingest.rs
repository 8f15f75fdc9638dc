//! Ingest endpoints. Each one authenticates (from the headers, before reading the body, where the
//! sender's credential is a header: `auth`), parses with `crate::ingest`, and hands the alerts to
//! the incident service, answering 2xx only once every alert is durably stored. Bad input gets a
//! 4xx and changes nothing; the store being down gets a 503 so the sender retries.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;

use super::AppState;
use super::auth::{ApiKey, SignedSlot, Token};
use super::error::ApiError;
use crate::domain::Alert;
use crate::ingest::{self, IngestError, SnsEnvelope, SnsMessage};
use crate::pipeline::service::Arrival;
use crate::pipeline::sns::SnsError;

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
        let code = match e {
            IngestError::Malformed(_) => "malformed",
            IngestError::Unauthenticated(_) => "unauthenticated",
            IngestError::CertUnavailable(_) => "unavailable",
            IngestError::TooLarge(_) => "too_large",
        };
        ApiError::new(status, code, e.to_string())
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/json (got {:?})", ct),
        ))
    }
}

/// Ingests alerts in order (`IncidentService::ingest_batch`) and reports each outcome.
async fn accept(s: &AppState, alerts: &[Alert]) -> Result<Vec<serde_json::Value>, ApiError> {
    let started = Instant::now();
    let outcomes = s.service.ingest_batch(alerts).await?;
    let results: Vec<serde_json::Value> = alerts
        .iter()
        .zip(outcomes)
        .map(|(alert, outcome)| {
            json!({
                "fingerprint": alert.fingerprint,
                "outcome": outcome.label(),
                "incidents": outcome.incidents(),
            })
        })
        .collect();
    s.metrics
        .ingest_latency
        .record(started.elapsed().as_secs_f64());
    Ok(results)
}

/// `POST /v1/ingest/sns`: SNS HTTP(S) subscription deliveries (any Content-Type; SNS sends
/// text/plain).
pub async fn sns(
    State(s): State<AppState>,
    slot: SignedSlot,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let body = body?;
    let env = SnsEnvelope::parse(&body)?;
    if let Some(declared) = headers
        .get("x-amz-sns-message-type")
        .and_then(|v| v.to_str().ok())
        && declared != env.message.type_name()
    {
        return Err(ApiError::bad_request(format!(
            "x-amz-sns-message-type {declared:?} disagrees with the signed Type {:?}",
            env.message.type_name()
        )));
    }
    let verified = s.sns.verify(&env).await?;
    // Verified: no longer an anonymous body.
    drop(slot);
    let topic = env.message.topic_arn();
    match &env.message {
        SnsMessage::SubscriptionConfirmation { subscribe_url, .. } => {
            if !s.sns.allowed(&env) {
                return Err(ApiError::forbidden(format!(
                    "topic {topic} is not in sources.sns.allowed_topics; subscription not confirmed"
                )));
            }
            ingest::confirm_subscription(
                &s.http,
                subscribe_url,
                topic,
                &s.settings.sns_extra_trusted_prefixes,
            )
            .await
            .map_err(|e| match e {
                ingest::ConfirmError::UnsafeUrl => ApiError::bad_request(e.to_string()),
                _ => ApiError::unavailable(e.to_string()),
            })?;
            tracing::info!(topic, "SNS subscription confirmed.");
            Ok((
                StatusCode::OK,
                Json(json!({ "confirmed": true, "topic": topic })),
            ))
        }
        SnsMessage::UnsubscribeConfirmation { .. } => {
            // Its SubscribeURL would re-subscribe: never followed automatically.
            tracing::warn!(topic, "SNS subscription was removed; not re-subscribing.");
            Ok((
                StatusCode::OK,
                Json(json!({ "unsubscribed": true, "topic": topic })),
            ))
        }
        SnsMessage::Notification {
            message,
            message_id,
            timestamp,
            ..
        } if let Some(sms) = ingest::sms_reply::parse_inbound(message) => {
            // A reply to an SMS page (two-way SMS): acted on, never ingested as an alert.
            if !s.sns.allowed(&env) {
                return Err(ApiError::forbidden(format!(
                    "topic {topic} is not in sources.sns.allowed_topics"
                )));
            }
            let sms = sms?;
            let policy = s.policy.current();
            if ingest::sns::replay_sent_at(timestamp, s.clock.now(), policy.sns_max_age)?.is_some()
            {
                tracing::warn!(
                    topic,
                    message_id,
                    "SMS reply older than sources.sns.max_age: a replay, ignored."
                );
                return Ok((StatusCode::OK, Json(json!({ "sms_reply": "replay" }))));
            }
            let answer = super::sms_reply::take(&s, sms, message_id).await?;
            Ok((StatusCode::OK, Json(answer)))
        }
        SnsMessage::Notification { .. } => {
            let started = Instant::now();
            let taken = s
                .sns
                .take(&verified, &Arrival::Delivered)
                .await
                .map_err(|e| match e {
                    SnsError::Ingest(e) => ApiError::from(e),
                    SnsError::TopicNotAllowed(_) => ApiError::forbidden(e.to_string()),
                    SnsError::Service(e) => ApiError::from(e),
                })?
                .ok_or_else(|| ApiError::bad_request("not an SNS Notification"))?;
            s.metrics
                .ingest_latency
                .record(started.elapsed().as_secs_f64());
            let result = json!({
                "fingerprint": taken.alert.fingerprint,
                "outcome": taken.outcome.label(),
                "incidents": taken.outcome.incidents(),
            });
            Ok((StatusCode::OK, Json(json!({ "results": [result] }))))
        }
    }
}

/// `POST /v1/ingest/eventbridge`: "CloudWatch Alarm State Change", AWS Health and RDS events from an API
/// destination, authenticated by the `x-api-key` header.
pub async fn eventbridge(
    State(s): State<AppState>,
    _key: ApiKey,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_json(&headers)?;
    let body = body?;
    match ingest::parse_event(&body)? {
        None => Ok((
            StatusCode::OK,
            Json(
                json!({ "ignored": true, "detail": "not an alarm state change, an AWS Health event or an RDS event" }),
            ),
        )),
        Some(alert) => {
            let results = accept(&s, std::slice::from_ref(&alert)).await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "results": results }))))
        }
    }
}

/// `POST /v1/events`: the trading bot's events, one object or an array (bearer token).
pub async fn events(
    State(s): State<AppState>,
    _token: Token,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_json(&headers)?;
    let body = body?;
    let alerts = ingest::parse_events(&body, s.clock.now())?;
    accepted(&s, &alerts).await
}

/// 202 with how many alerts were taken and each one's outcome, once all are stored (`accept`).
async fn accepted(
    s: &AppState,
    alerts: &[Alert],
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let results = accept(s, alerts).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": alerts.len(), "results": results })),
    ))
}

/// `POST /v1/ingest/alertmanager`: a Prometheus Alertmanager webhook notification (payload
/// version 4, bearer ingest token), each alert ingested in order as one batch. Alertmanager
/// retries on a 5xx, so the answer is 2xx only once every alert is stored.
pub async fn alertmanager(
    State(s): State<AppState>,
    _token: Token,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    require_json(&headers)?;
    let body = body?;
    let n = ingest::alertmanager::parse_webhook(&body, s.clock.now())?;
    if n.truncated_alerts > 0 {
        tracing::warn!(
            receiver = n.receiver.as_deref().unwrap_or(""),
            group_key = n.group_key.as_deref().unwrap_or(""),
            truncated_alerts = n.truncated_alerts,
            "Alertmanager left alerts out of this notification (max_alerts); they arrive with a later one."
        );
    }
    let (status, Json(mut answer)) = accepted(&s, &n.alerts).await?;
    answer["truncated_alerts"] = json!(n.truncated_alerts);
    Ok((status, Json(answer)))
}

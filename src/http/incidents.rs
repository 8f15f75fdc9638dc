//! The operator API on incidents: list, show (with timeline), acknowledge, resolve.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::require_operator;
use super::error::ApiError;
use crate::domain::IncidentId;
use crate::incident::transition::AckResult;
use crate::incident::{Actor, IncidentStatus, Origin};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(
        &headers,
        &s.settings.ingest_tokens,
        &s.settings.operator_tokens,
    )?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = s.service.store();
    let incidents = match q.status.as_deref() {
        None | Some("all") => store.incidents(None, limit).await?,
        Some("open") => {
            let mut v = store
                .incidents(Some(IncidentStatus::Triggered), limit)
                .await?;
            v.extend(
                store
                    .incidents(Some(IncidentStatus::Acknowledged), limit)
                    .await?,
            );
            v.sort_by_key(|i| std::cmp::Reverse(i.id));
            v.truncate(limit);
            v
        }
        Some("triggered") => {
            store
                .incidents(Some(IncidentStatus::Triggered), limit)
                .await?
        }
        Some("acknowledged") => {
            store
                .incidents(Some(IncidentStatus::Acknowledged), limit)
                .await?
        }
        Some("resolved") => {
            store
                .incidents(Some(IncidentStatus::Resolved), limit)
                .await?
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status {other:?}: expected open, triggered, acknowledged, resolved or all"
            )));
        }
    };
    Ok(Json(json!({ "incidents": incidents })))
}

fn parse_id(raw: &str) -> Result<IncidentId, ApiError> {
    IncidentId::parse(raw).map_err(|e| ApiError::bad_request(format!("{raw:?}: {e}")))
}

pub async fn show(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(
        &headers,
        &s.settings.ingest_tokens,
        &s.settings.operator_tokens,
    )?;
    let id = parse_id(&raw)?;
    let store = s.service.store();
    let inc = store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no incident with that id"))?;
    let timeline = store.timeline(id).await?;
    let mut body = serde_json::to_value(&inc).unwrap_or_default();
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "timeline".into(),
            serde_json::to_value(timeline).unwrap_or_default(),
        );
    }
    Ok(Json(body))
}

/// Optional body of ack and resolve.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    /// Who is acting (free text; defaults to "api").
    by: Option<String>,
}

fn actor(body: Result<Bytes, BytesRejection>) -> Result<Actor, ApiError> {
    let body = body?;
    let parsed: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?
    };
    let who = parsed.by.unwrap_or_else(|| "api".into());
    if who.is_empty() || who.len() > 200 || who.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "by: 1 to 200 characters, no control characters",
        ));
    }
    Ok(Actor {
        who,
        origin: Origin::Api,
    })
}

pub async fn ack(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(
        &headers,
        &s.settings.ingest_tokens,
        &s.settings.operator_tokens,
    )?;
    let id = parse_id(&raw)?;
    let actor = actor(body)?;
    let (result, inc) = s.service.acknowledge(id, actor).await?;
    match result {
        AckResult::AlreadyResolved => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_resolved",
            "the incident is already resolved",
        )),
        AckResult::Acknowledged | AckResult::AlreadyAcknowledged => Ok(Json(json!({
            "incident": inc,
            "changed": result == AckResult::Acknowledged,
        }))),
    }
}

pub async fn resolve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(
        &headers,
        &s.settings.ingest_tokens,
        &s.settings.operator_tokens,
    )?;
    let id = parse_id(&raw)?;
    let actor = actor(body)?;
    let inc = s.service.resolve(id, actor).await?;
    Ok(Json(json!({ "incident": inc, "changed": true })))
}

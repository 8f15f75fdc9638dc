//! The operator API on incidents: list, show (with timeline), acknowledge, resolve.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use crate::domain::IncidentId;
use crate::incident::transition::AckResult;
use crate::incident::{Actor, Incident, IncidentStatus, Origin, TimelineEntry};
use crate::pipeline::operator::Listing;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    State(s): State<AppState>,
    _op: Operator,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let incidents = query_incidents(&s, q.status.as_deref(), limit).await?;
    Ok(Json(json!({ "incidents": incidents })))
}

/// Up to `limit` incidents, newest first, by status: `open` (triggered and acknowledged),
/// `triggered`, `acknowledged`, `resolved`, or `all` / `None`. The API's list and the console's.
pub(super) async fn query_incidents(
    s: &AppState,
    status: Option<&str>,
    limit: usize,
) -> Result<Vec<Incident>, ApiError> {
    let which = match status {
        None | Some("all") => Listing::All,
        Some("open") => Listing::Open,
        Some("triggered") => Listing::Only(IncidentStatus::Triggered),
        Some("acknowledged") => Listing::Only(IncidentStatus::Acknowledged),
        Some("resolved") => Listing::Only(IncidentStatus::Resolved),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status {other:?}: expected open, triggered, acknowledged, resolved or all"
            )));
        }
    };
    Ok(s.service.list(which, limit).await?)
}

pub(super) fn parse_id(raw: &str) -> Result<IncidentId, ApiError> {
    IncidentId::parse(raw).map_err(|e| ApiError::bad_request(format!("{raw:?}: {e}")))
}

pub async fn show(
    State(s): State<AppState>,
    _op: Operator,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (inc, timeline) = load(&s, parse_id(&raw)?).await?;
    let mut body = serde_json::to_value(&inc).unwrap_or_default();
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "timeline".into(),
            serde_json::to_value(timeline).unwrap_or_default(),
        );
    }
    Ok(Json(body))
}

/// One incident and its timeline (404 when there is no such incident).
pub(super) async fn load(
    s: &AppState,
    id: IncidentId,
) -> Result<(Incident, Vec<TimelineEntry>), ApiError> {
    s.service
        .incident_with_timeline(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no incident with that id"))
}

/// Optional body of ack and resolve.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    /// Who is acting (free text; defaults to "api").
    by: Option<String>,
    /// Ack only: acknowledge until this instant (RFC 3339), then re-trigger.
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Ack only: acknowledge for this long (`15m`, `1h`), then re-trigger.
    #[serde(default, rename = "for", with = "humantime_serde")]
    for_: Option<std::time::Duration>,
}

fn parse_act(body: Result<Bytes, BytesRejection>) -> Result<ActBody, ApiError> {
    let body = body?;
    let parsed: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?
    };
    if let Some(who) = &parsed.by
        && (who.is_empty() || who.len() > 200 || who.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "by: 1 to 200 characters, no control characters",
        ));
    }
    Ok(parsed)
}

/// Who acts: the person a named token belongs to (the body's `by` cannot speak for someone
/// else), else the body's `by`, else "api".
fn actor(op: &Operator, parsed: &ActBody) -> Actor {
    Actor {
        who: op
            .person
            .clone()
            .or_else(|| parsed.by.clone())
            .unwrap_or_else(|| "api".into()),
        origin: Origin::Api,
    }
}

pub async fn ack(
    State(s): State<AppState>,
    op: Operator,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&raw)?;
    let parsed = parse_act(body)?;
    let (changed, inc) =
        acknowledge(&s, id, actor(&op, &parsed), parsed.until, parsed.for_).await?;
    Ok(Json(json!({ "incident": inc, "changed": changed })))
}

/// Acknowledges `id`, until an instant or for a while (one of them, in the future) or for good.
/// Whether it changed anything (a second ack does not); 409 for a resolved incident.
pub(super) async fn acknowledge(
    s: &AppState,
    id: IncidentId,
    actor: Actor,
    until: Option<chrono::DateTime<chrono::Utc>>,
    for_: Option<std::time::Duration>,
) -> Result<(bool, Incident), ApiError> {
    let now = s.clock.now();
    let until = match (until, for_) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give either until or for, not both"));
        }
        (Some(t), None) => Some(t),
        // Checked: `now + d` would panic past the calendar's end (`"for": "100000000years"`).
        (None, Some(d)) => Some(
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| ApiError::bad_request("for: too long"))?,
        ),
        (None, None) => None,
    };
    if until.is_some_and(|t| t <= now) {
        return Err(ApiError::bad_request("until: must be in the future"));
    }
    let (result, inc) = s.service.acknowledge(id, actor, until).await?;
    match result {
        AckResult::AlreadyResolved => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_resolved",
            "the incident is already resolved",
        )),
        AckResult::Acknowledged | AckResult::AlreadyAcknowledged => {
            Ok((result == AckResult::Acknowledged, inc))
        }
    }
}

pub async fn resolve(
    State(s): State<AppState>,
    op: Operator,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&raw)?;
    let parsed = parse_act(body)?;
    if parsed.until.is_some() || parsed.for_.is_some() {
        return Err(ApiError::bad_request("until/for apply to ack only"));
    }
    let inc = s.service.resolve(id, actor(&op, &parsed)).await?;
    Ok(Json(json!({ "incident": inc, "changed": true })))
}

/// At most this many incidents' alerts in one export (newest first; the answer says
/// `x-vigil-truncated: true` when more were left out).
pub const EXPORT_MAX: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// How far back: a duration (`7d`) or an RFC 3339 instant; default 7 days.
    since: Option<String>,
}

/// `GET /v1/alerts/export?since=7d`: the alerts behind the incidents opened since then, as JSON
/// lines (one `Alert` each, newest first), for `vigil diff --events`.
pub async fn export_alerts(
    State(s): State<AppState>,
    _op: Operator,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = s.clock.now();
    let raw = q.since.as_deref().unwrap_or("7d");
    let since = match humantime::parse_duration(raw) {
        Ok(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| ApiError::bad_request("since: too long"))?,
        Err(_) => chrono::DateTime::parse_from_rfc3339(raw)
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "since: {raw:?} is neither a duration (7d) nor an RFC 3339 time"
                ))
            })?
            .with_timezone(&chrono::Utc),
    };
    let (alerts, truncated) = s.service.alerts_since(since, EXPORT_MAX).await?;
    let mut body = String::new();
    for a in &alerts {
        if let Ok(line) = serde_json::to_string(a) {
            body.push_str(&line);
            body.push('\n');
        }
    }
    let mut resp = (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response();
    if truncated {
        resp.headers_mut().insert(
            "x-vigil-truncated",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(resp)
}

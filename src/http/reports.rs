//! Is the desk's promise kept, and do the channels work right now? The response report
//! (`GET /v1/reports/response`, `pipeline::report`) and test notifications
//! (`POST /v1/test-notifications`, `notify::test_message`). Operator only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use super::operations::{Fields, parse_time};
use crate::domain::IncidentId;
use crate::notify::test_message::{self, PlanError, TestOutcome};

/// The window a report covers when `since` is not given.
const DEFAULT_SINCE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// The longest look back a duration may ask for.
const MAX_LOOKBACK: std::time::Duration = std::time::Duration::from_secs(5 * 366 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    since: Option<String>,
    until: Option<String>,
}

/// An instant as a report's bound: RFC 3339, or a duration (`30d`, `12h`) meaning that long
/// before `now`.
fn bound(name: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(d) = humantime::parse_duration(raw) {
        if d > MAX_LOOKBACK {
            return Err(ApiError::bad_request(format!(
                "{name}: {raw:?} looks back more than 5 years"
            )));
        }
        let d = chrono::Duration::from_std(d)
            .map_err(|_| ApiError::bad_request(format!("{name}: {raw:?} is too long")))?;
        return Ok(now - d);
    }
    parse_time(name, raw).map_err(|_| {
        ApiError::bad_request(format!(
            "{name}: {raw:?} is neither an RFC 3339 time (2026-11-20T10:00:00Z) nor a duration (30d, 12h)"
        ))
    })
}

/// `GET /v1/reports/response[?since=30d][&until=RFC3339]`: the response report over the
/// incidents opened in `[since, until)` (default: the last 30 days), at most
/// `pipeline::report::REPORT_MAX_INCIDENTS` read (`truncated` says when more were cut).
pub async fn response(
    State(s): State<AppState>,
    _op: Operator,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let now = s.clock.now();
    let since = match &q.since {
        Some(raw) => bound("since", raw, now)?,
        None => now - chrono::Duration::from_std(DEFAULT_SINCE).unwrap_or_default(),
    };
    let until = match &q.until {
        Some(raw) => bound("until", raw, now)?,
        None => now,
    };
    if since >= until {
        return Err(ApiError::bad_request(format!(
            "since ({}) must be before until ({})",
            since.to_rfc3339(),
            until.to_rfc3339()
        )));
    }
    let report = s
        .service
        .response_report(since, until, s.settings.public_url.as_deref())
        .await?;
    let body = serde_json::to_value(&report).unwrap_or_default();
    Ok((StatusCode::OK, Json(body)))
}

const TEST_FIELDS: [&str; 2] = ["channels", "people"];

/// `POST /v1/test-notifications`: `{channels?: [name], people?: [id]}` (an empty body means
/// every channel, to whoever is on call now). Sends a TEST message through each, directly and
/// once, and answers one row per channel and person: `sent` with the provider's reference, or
/// the exact failure. Opens no incident. 400 for a name not in `routing/`, 422 beyond
/// `notify::test_message::MAX_TEST_SENDS` sends.
pub async fn test_notifications(
    State(s): State<AppState>,
    _op: Operator,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body?;
    let (channels, people): (Vec<String>, Vec<String>) = if body.iter().all(u8::is_ascii_whitespace)
    {
        (Vec::new(), Vec::new())
    } else {
        let mut f = Fields::parse(Ok(body))?;
        let channels = f.optional("channels")?.unwrap_or_default();
        let people = f.optional("people")?.unwrap_or_default();
        f.finish(&TEST_FIELDS)?;
        (channels, people)
    };
    let now = s.clock.now();
    let policy = s.policy.current();
    let on_call: Vec<String> = if people.is_empty() {
        let extra: Vec<_> = s
            .service
            .overrides(now)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        let mut who = Vec::new();
        for e in policy.schedule_report(now, &extra) {
            if let Some(p) = e.person
                && !who.contains(&p)
            {
                who.push(p);
            }
        }
        who
    } else {
        Vec::new()
    };
    let plan = test_message::plan(&policy, &channels, &people, &on_call).map_err(|e| match e {
        PlanError::TooMany(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "over_limit",
            e.to_string(),
        ),
        _ => ApiError::bad_request(e.to_string()),
    })?;
    let test_id = IncidentId::new(now);
    let notifiers = s.notifiers.load_full();
    let results = test_message::send_all(
        &plan,
        &policy,
        &notifiers,
        &s.policy.templates(),
        s.settings.channels.http_timeout,
        now,
        test_id,
    )
    .await;
    let failed = results
        .iter()
        .filter(|r| r.outcome == TestOutcome::Failed)
        .count();
    for r in results.iter().filter(|r| r.outcome == TestOutcome::Failed) {
        tracing::warn!(test = %test_id, channel = %r.channel, error.message = r.error.as_deref().unwrap_or(""), "Test notification failed.");
    }
    tracing::info!(test = %test_id, sends = results.len(), failed, "Test notifications sent.");
    Ok((
        StatusCode::OK,
        Json(json!({
            "test": test_id.to_string(),
            "ok": failed == 0,
            "failed": failed,
            "results": results,
        })),
    ))
}

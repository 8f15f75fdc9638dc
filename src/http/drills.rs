//! The operator API on drill windows (`/v1/drills`): made, listed and deleted like silences, with
//! the same body and the same checks (`Silence::parse_api`: a window with matchers, an author
//! and a comment), kept as store records (`pipeline::extras::DRILLS`) that every replica sees and
//! the warm standby's peer feed mirrors. An incident that opens inside a window is a drill.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use super::operations::{checked_window, deleted_or_why, silence_json, window_spec};
use crate::pipeline::extras::MAX_API_DRILLS;

type JsonResult = Result<(StatusCode, Json<Value>), ApiError>;

/// `POST /v1/drills`: `{id?, matchers, start?, end, author?, comment}`; `start` defaults to now
/// and `author` to "api". At most [`MAX_API_DRILLS`] API windows that have not ended (422).
pub async fn create_drill(
    State(s): State<AppState>,
    op: Operator,
    body: Result<Bytes, BytesRejection>,
) -> JsonResult {
    let now = s.clock.now();
    let spec = window_spec(body, now, op.person)?;
    let routing = s.policy.current();
    let drill = checked_window(spec, now, "drill window", |id| {
        routing.drills.iter().any(|r| r.id == id)
    })?;
    let others = s
        .service
        .api_drills(now)
        .await?
        .into_iter()
        .filter(|d| d.id != drill.id)
        .count();
    if others >= MAX_API_DRILLS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "over_limit",
            format!(
                "there are already {others} API drill windows that have not ended (at most {MAX_API_DRILLS}); delete some with DELETE /v1/drills/{{id}} or let them end"
            ),
        ));
    }
    s.service.create_drill(&drill).await?;
    tracing::info!(drill.id = %drill.id, author = %drill.author, start = %drill.start, end = %drill.end, "Drill window created.");
    Ok((StatusCode::CREATED, Json(silence_json(&drill, "api", now))))
}

/// `GET /v1/drills`: the policy's drill windows, then the API's that have not ended.
pub async fn list_drills(State(s): State<AppState>, _op: Operator) -> JsonResult {
    let now = s.clock.now();
    let policy = s.policy.current();
    let mut list: Vec<Value> = policy
        .drills
        .iter()
        .map(|d| silence_json(d, "routing", now))
        .collect();
    list.extend(
        s.service
            .api_drills(now)
            .await?
            .iter()
            .map(|d| silence_json(d, "api", now)),
    );
    Ok((StatusCode::OK, Json(json!({ "drills": list }))))
}

/// `DELETE /v1/drills/{id}`: API drill windows only; those in `routing/` are changed there.
pub async fn delete_drill(
    State(s): State<AppState>,
    _op: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = s.service.delete_drill(&id).await?;
    if deleted {
        tracing::info!(drill.id = %id, "Drill window deleted.");
    }
    let in_routing = s.policy.current().drills.iter().any(|d| d.id == id);
    deleted_or_why(deleted, in_routing, "drill window")?;
    Ok(StatusCode::NO_CONTENT)
}

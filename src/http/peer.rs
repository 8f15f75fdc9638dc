//! The warm standby's endpoints: the peer feed (`GET /v1/peer/feed`, peer token), what this side
//! knows of its peer (`GET /v1/peer`, operator) and the manual hand-back
//! (`POST /v1/peer/hand-back`, operator, on the active standby).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use super::AppState;
use super::auth::{Operator, PeerToken};
use super::error::ApiError;
use crate::pipeline::peer::{Feed, HandBackError};

pub async fn feed(State(s): State<AppState>, _peer: PeerToken) -> Json<Feed> {
    let (_, mut problems, _) = super::admin::readiness(&s).await;
    let gate = s.service.gate();
    // A store that cannot be read is an answer too: not ready (the standby takes over now,
    // not after takeover-after).
    let (incidents, truncated) = match s.service.peer_feed().await {
        Ok(feed) => feed,
        Err(e) => {
            problems.push(format!("peer feed: {e}"));
            (Vec::new(), false)
        }
    };
    // API silences and overrides, with their stamps (incident::extras).
    let records = s
        .service
        .sync_records(s.clock.now())
        .await
        .unwrap_or_else(|e| {
            problems.push(format!("peer feed records: {e}"));
            Vec::new()
        });
    // A standby shows its shared role: active while any replica is, and during the drain.
    let (role, handing_back) = match &s.peer {
        Some(peer) => {
            let shown = peer.shown().await;
            if let Some(e) = shown.role_record_error {
                problems.push(format!("shared role: {e}"));
            }
            (shown.shared_role, shown.handing_back)
        }
        None => (gate.role(), false),
    };
    Json(Feed {
        role: role.as_str().to_string(),
        handing_back,
        held: gate.held(),
        ready: problems.is_empty(),
        problems,
        at: s.clock.now(),
        incidents,
        truncated,
        records,
    })
}

pub async fn show(State(s): State<AppState>, _op: Operator) -> Json<serde_json::Value> {
    let gate = s.service.gate();
    let mut body = json!({
        "role": gate.role().as_str(),
        "held": gate.held(),
        "paging": gate.is_open(),
    });
    if let Some(peer) = &s.peer {
        let view = json!(peer.view());
        if let (Some(obj), Some(v)) = (body.as_object_mut(), view.as_object()) {
            obj.extend(v.clone());
        }
        extend_with_shared_role(&mut body, peer).await;
    }
    Json(body)
}

/// Adds the standby's shared role (`shared_role`, `handing_back`, `drain_until`, `role_record`)
/// to a `/v1/peer` or `/readyz` body; `role` there stays this process's own.
pub(super) async fn extend_with_shared_role(
    body: &mut serde_json::Value,
    peer: &crate::pipeline::peer::Peer,
) {
    if !peer.is_standby() {
        return;
    }
    let shown = json!(peer.shown().await);
    if let (Some(obj), Some(v)) = (body.as_object_mut(), shown.as_object()) {
        obj.extend(v.clone());
    }
}

pub async fn hand_back(
    State(s): State<AppState>,
    _op: Operator,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(peer) = s
        .peer
        .as_ref()
        .filter(|_| s.settings.peer.as_ref().is_some_and(|p| p.standby))
    else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_standby",
            "only a standby (--standby-of) hands back",
        ));
    };
    match peer.hand_back("operator").await {
        Ok(()) => {
            let mut body = json!({
                "handed_back": true,
                "role": peer.gate().role().as_str(),
            });
            extend_with_shared_role(&mut body, peer).await;
            Ok(Json(body))
        }
        Err(HandBackError::Service(e)) => Err(ApiError::unavailable(format!(
            "handed back, but the timelines could not all be written: {e}"
        ))),
        Err(e @ HandBackError::Record(_)) => {
            tracing::warn!(reason = %e, "Hand-back refused.");
            Err(ApiError::unavailable(e.to_string()))
        }
        Err(e) => {
            let code = match e {
                HandBackError::NotActive(_) => "not_active",
                HandBackError::Unreachable(_) => "primary_unreachable",
                _ => "primary_not_ready",
            };
            tracing::warn!(reason = %e, "Hand-back refused.");
            Err(ApiError::new(StatusCode::CONFLICT, code, e.to_string()))
        }
    }
}

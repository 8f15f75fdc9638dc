//! Health (`/healthz`: the process answers), readiness (`/readyz`: store reachable, policy loaded,
//! scheduler not lagging), Prometheus metrics, and `POST /v1/admin/reload`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use super::auth::require_operator;
use super::error::ApiError;
use crate::config::{ReloadOutcome, format_errors};

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let stats = match s.service.store().stats().await {
        Ok(st) => {
            s.metrics.open_incidents.set(st.open_incidents as f64);
            s.metrics.outbox_pending.set(st.outbox as f64);
            Some(st)
        }
        Err(e) => {
            problems.push(format!("store: {e}"));
            None
        }
    };
    let lag = s.scheduler.lag();
    if lag > s.settings.max_scheduler_lag {
        problems.push(format!(
            "scheduler lag {} exceeds {}",
            humantime::format_duration(lag),
            humantime::format_duration(s.settings.max_scheduler_lag)
        ));
    }
    let policy = s.policy.current();
    let body = json!({
        "status": if problems.is_empty() { "ready" } else { "not_ready" },
        "problems": problems,
        "policy_digest": policy.digest,
        "scheduler_lag_ms": lag.as_millis() as u64,
        "open_incidents": stats.map(|s| s.open_incidents),
        "outbox": stats.map(|s| s.outbox),
        "timers": stats.map(|s| s.timers),
    });
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    // The store's counts are read for each scrape (three table lengths), so a scrape says how
    // many incidents are open now, whether or not anyone asked /readyz. A store that cannot be
    // read leaves the last values; /readyz says why.
    if let Ok(st) = s.service.store().stats().await {
        s.metrics.open_incidents.set(st.open_incidents as f64);
        s.metrics.outbox_pending.set(st.outbox as f64);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

pub async fn reload(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_operator(
        &headers,
        &s.settings.ingest_tokens,
        &s.settings.operator_tokens,
    )?;
    match s.policy.reload("api").await {
        Ok(ReloadOutcome::Reloaded { digest }) => {
            Ok(Json(json!({ "reloaded": true, "digest": digest })))
        }
        Ok(ReloadOutcome::Unchanged { digest }) => {
            Ok(Json(json!({ "reloaded": false, "digest": digest })))
        }
        Err(errors) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            format!(
                "policy refused; the running policy stays:\n{}",
                format_errors(&errors)
            ),
        )
        .with(json!({ "problems": errors.iter().map(|e| e.to_string()).collect::<Vec<_>>() }))),
    }
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

//! Health (`/healthz`: the process answers), readiness (`/readyz`: store reachable, policy loaded,
//! scheduler not lagging), Prometheus metrics, and `POST /v1/admin/reload`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use crate::config::{ReloadOutcome, format_errors};

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// What makes this process not ready, with the store's counts and the scheduler's lag: for
/// `/readyz` and the peer feed's `ready`.
pub(super) async fn readiness(
    s: &AppState,
) -> (
    Option<crate::store::StoreStats>,
    Vec<String>,
    std::time::Duration,
) {
    let (stats, mut problems) = store_health(s).await;
    let lag = s.scheduler.lag();
    if lag > s.settings.max_scheduler_lag {
        problems.push(format!(
            "scheduler lag {} exceeds {}",
            humantime::format_duration(lag),
            humantime::format_duration(s.settings.max_scheduler_lag)
        ));
    }
    // A region that cannot be reconciled or a queue that cannot be drained: alarms SNS loses
    // meanwhile would not be recovered.
    problems.extend(s.recovery.problems());
    problems.extend(s.watchdog.problem());
    (stats, problems, lag)
}

pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    let (stats, problems, lag) = readiness(&s).await;
    let policy = s.policy.current();
    let mut body = json!({
        "status": if problems.is_empty() { "ready" } else { "not_ready" },
        "problems": problems,
        "policy_digest": policy.digest,
        "scheduler_lag_ms": lag.as_millis() as u64,
        "open_incidents": stats.map(|s| s.open_incidents),
        "outbox": stats.map(|s| s.outbox),
        "timers": stats.map(|s| s.timers),
    });
    let gate = s.service.gate();
    body["role"] = json!(gate.role().as_str());
    body["held"] = json!(gate.held());
    body["paging"] = json!(gate.is_open());
    if let Some(peer) = &s.peer {
        body["peer"] = json!(peer.view());
        super::peer::extend_with_shared_role(&mut body, peer).await;
    }
    if policy.reconcile.is_some() {
        body["reconciliation"] = json!(s.recovery.snapshot(crate::pipeline::Kind::Region));
    }
    if !policy.sns_dead_letter_queues.is_empty() {
        body["dead_letter_queues"] = json!(s.recovery.snapshot(crate::pipeline::Kind::Queue));
    }
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// Reads the store's counts and health, and keeps the gauges that show them current (so a
/// scrape of `/metrics` tells the same as `/readyz`).
async fn store_health(s: &AppState) -> (Option<crate::store::StoreStats>, Vec<String>) {
    let mut problems = Vec::new();
    let health = s.service.store_health().await;
    let stats = match health.stats {
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
    // A store may answer reads while it refuses writes (the embedded store after a full disk).
    let store_problem = health.problem;
    let writable = stats.is_some() && store_problem.is_none();
    s.metrics
        .gauge("vigil_store_writable", &[])
        .set(if writable { 1.0 } else { 0.0 });
    problems.extend(store_problem);
    // Incidents whose current step reached no one: a metric by severity, and a problem for
    // each critical one (a pager that cannot reach anyone about a critical alarm is not ready).
    if let Ok(unreached) = s.service.unreached().await {
        for sev in crate::domain::Severity::ALL {
            let n = unreached.iter().filter(|i| i.severity == sev).count();
            s.metrics
                .gauge("vigil_unreached_incidents", &[("severity", sev.as_str())])
                .set(n as f64);
        }
        for inc in unreached
            .iter()
            .filter(|i| i.severity == crate::domain::Severity::Critical)
        {
            problems.push(format!(
                "critical incident {} ({}) reached no one",
                inc.id, inc.summary
            ));
        }
    }
    (stats, problems)
}

/// `/metrics`. Readiness is computed as for `/readyz`, so a scrape tells the same:
/// `vigil_ready` is 1 when `/readyz` would answer 200, else 0 (the PrometheusRule's "not ready"
/// alert; deploy/k8s/components/monitoring).
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let (_, problems, _) = readiness(&s).await;
    s.metrics
        .gauge("vigil_ready", &[])
        .set(if problems.is_empty() { 1.0 } else { 0.0 });
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
    _op: Operator,
) -> Result<Json<serde_json::Value>, ApiError> {
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

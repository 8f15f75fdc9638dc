//! The HTTP API (DESIGN §8): ingest endpoints for SNS (with replies to SMS pages), EventBridge,
//! Alertmanager, the trading bot and heartbeat beats; the operator API on incidents, on-call
//! overrides and silences; health, readiness, metrics and reload; the operators' console
//! (`console`, HTML at `/`). Handlers parse and check at the edge and hand domain values to the
//! incident service.

mod ack_link;
mod admin;
pub(crate) mod auth;
mod console;
mod drills;
pub mod error;
mod incidents;
mod ingest;
mod integrations;
mod operations;
mod peer;
mod reports;
pub mod server;
pub mod sms_reply;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::clock::Clock;
use crate::config::PolicyHandle;
use crate::ingest::sns::CertCache;
use crate::metrics::Metrics;
use crate::pipeline::IncidentService;
use crate::pipeline::scheduler::SchedulerHealth;
use crate::settings::Settings;

/// Request bodies are capped at SNS's own message limit.
pub const BODY_LIMIT: usize = 256 * 1024;

pub struct Shared {
    pub service: Arc<IncidentService>,
    pub policy: Arc<PolicyHandle>,
    pub settings: Settings,
    pub certs: Arc<CertCache>,
    /// For SNS SubscribeURL confirmations.
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    pub scheduler: Arc<SchedulerHealth>,
    /// The watchdog heartbeat's last success and failure, for `/readyz`.
    pub watchdog: Arc<crate::pipeline::watchdog::WatchdogHealth>,
    pub clock: Arc<dyn Clock>,
    /// Checks signed acknowledge links; `None` when no secret is configured.
    pub ack: Option<crate::ack::AckSigner>,
    /// Bounds the signed bodies (SNS, Slack, PagerDuty) read at once: `auth::SignedSlot`.
    pub signed: Arc<tokio::sync::Semaphore>,
    /// The SNS Notification path, shared with the dead-letter drain.
    pub sns: Arc<crate::pipeline::sns::SnsIntake>,
    /// Reconciliation and dead-letter drain health, for `/readyz`.
    pub recovery: Arc<crate::pipeline::RecoveryHealth>,
    /// The warm standby's follower, when this process has a peer.
    pub peer: Option<Arc<crate::pipeline::peer::Peer>>,
    /// The notifiers of the current policy (rebuilt on reload): the console shows which
    /// channels are unavailable, test notifications send through them.
    pub notifiers: Arc<arc_swap::ArcSwap<crate::notify::Notifiers>>,
    /// Replies to SMS pages (`sms_reply`): the notifiers to answer through, the texts taken.
    pub sms_replies: Arc<sms_reply::SmsReplies>,
}

pub type AppState = Arc<Shared>;

/// Every endpoint on one listener: the default, and the README's one-command run.
pub fn router(state: AppState) -> Router {
    let private = private_routes(&state);
    finish(public_routes().merge(private), state)
}

/// The endpoints outsiders must reach (`--public-listen`): what AWS, Slack, PagerDuty and
/// Prometheus Alertmanager (in another cluster or region too) post to, the signed acknowledge links people open from their phones, and `/healthz` for the
/// internet-facing load balancer's health check. Everything else answers 404 here.
pub fn public_router(state: AppState) -> Router {
    finish(
        public_routes().route("/healthz", get(admin::healthz)),
        state,
    )
}

/// The endpoints that stay inside (`--listen` when `--public-listen` is set): the trading bot's
/// events and heartbeats, Prometheus Alertmanager's webhook (it runs in the cluster), the operator API, the console, the peer API, reload, the probes and
/// `/metrics`.
pub fn private_router(state: AppState) -> Router {
    let private = private_routes(&state);
    finish(private, state)
}

/// See [`public_router`].
fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/ingest/sns", post(ingest::sns))
        .route("/v1/ingest/eventbridge", post(ingest::eventbridge))
        .route("/v1/ingest/alertmanager", post(ingest::alertmanager))
        .route("/v1/slack/interactions", post(integrations::slack))
        .route("/v1/pagerduty/webhook", post(integrations::pagerduty))
        .route(
            "/v1/ack/{token}",
            get(ack_link::show).post(ack_link::confirm),
        )
}

/// See [`private_router`].
fn private_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(ingest::events))
        .route("/v1/incidents", get(incidents::list))
        .route("/v1/incidents/{id}", get(incidents::show))
        .route("/v1/incidents/{id}/ack", post(incidents::ack))
        .route("/v1/incidents/{id}/resolve", post(incidents::resolve))
        .route("/v1/alerts/export", get(incidents::export_alerts))
        .route(
            "/v1/overrides",
            get(operations::list_overrides).post(operations::create_override),
        )
        .route("/v1/overrides/{id}", delete(operations::delete_override))
        .route("/v1/oncall", get(operations::oncall))
        .route(
            "/v1/silences",
            get(operations::list_silences).post(operations::create_silence),
        )
        .route("/v1/silences/{id}", delete(operations::delete_silence))
        .route("/v1/heartbeats/{name}", post(operations::beat))
        .route(
            "/v1/drills",
            get(drills::list_drills).post(drills::create_drill),
        )
        .route("/v1/drills/{id}", delete(drills::delete_drill))
        .route("/v1/reports/response", get(reports::response))
        .route("/v1/test-notifications", post(reports::test_notifications))
        .route("/v1/peer/feed", get(peer::feed))
        .route("/v1/peer", get(peer::show))
        .route("/v1/peer/hand-back", post(peer::hand_back))
        .route("/v1/admin/reload", post(admin::reload))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .merge(console::routes(state))
}

/// What every listener shares: the 404 and 405 answers, the body limit and timeout, and the
/// request span.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let body_timeout = state.settings.http.body_timeout;
    routes
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_request(
            move |req: axum::extract::Request| async move {
                req.map(|b| server::DeadlineBody::wrap(b, body_timeout))
            },
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<_>| {
                    let path = req
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "unmatched".into());
                    tracing::info_span!("http", method = %req.method(), path = %path)
                },
            ),
        )
        .with_state(state)
}

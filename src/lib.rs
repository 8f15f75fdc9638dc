//! vigil turns alarms into people who know.
//!
//! Layout, in data-flow order:
//! - `ingest`   — verify and parse SNS / CloudWatch / Route 53, EventBridge and trading-bot payloads into `domain::Alert`s
//! - `classify` — first matching rule of the policy → severity, escalation policy, incident key (pure)
//! - `incident` — open, fold (dedup) or resolve an incident; acknowledge; one version-guarded store transition each
//! - `escalate` — step timing from the incident's policy snapshot, who is on call (`oncall`), the due-time scheduler
//! - `notify`   — the outbox worker and one notifier per channel type, with shared retry/backoff
//! - `pipeline` — the ways in that are not a request: the shared SNS path, reconciliation from CloudWatch, SNS dead-letter queues
//! - `store`    — the durable state (`Store` trait; embedded redb by default)
//! - `http`     — the API: ingest, incidents, health, readiness, metrics, reload
//!
//! Around them: `config` (the `routing/` policy: model, compile with all errors, hot reload),
//! `settings` (process settings and secrets), `clock` (injected time), `metrics`, `telemetry`,
//! `simulate` (the `vigil simulate` report), `pipeline` (loops that call AWS on vigil's own
//! initiative: the watchdog's heartbeat) and `app` (wiring and graceful shutdown).

pub mod ack;
pub mod app;
pub mod classify;
pub mod clock;
pub mod config;
pub mod domain;
pub mod escalate;
pub mod http;
pub mod incident;
pub mod ingest;
pub mod metrics;
pub mod notify;
pub mod oncall;
pub mod pipeline;
pub mod settings;
pub mod simulate;
pub mod store;
pub mod telemetry;

//! vigil turns alarms into people who know.
//!
//! Layout, top to bottom (a module imports only those below it):
//! - `app`      — wiring and graceful shutdown; `main` the CLI
//! - `http`     — the API, thin handlers: ingest, incidents, operations, SMS replies, peer,
//!   health, metrics; the operators' console (HTML pages at `/` over the same calls)
//! - `pipeline` — the read → decide → commit loop (`IncidentService`), the scheduler, heartbeats,
//!   the operator records (`extras`), the response report (`report`), retention, the paging
//!   gate, and the ways in that are not a request (the shared SNS path, reconciliation, dead
//!   letters, the watchdog, the peer)
//! - `notify`   — the outbox worker and one file per channel type (its notifier and its
//!   descriptor, registered without a central list), with shared retry/backoff and HTTP send
//! - `store`    — the durable state (`Store` trait; embedded redb by default, Redis for replicas)
//! - the pure stages: `classify` (first matching rule → severity, policy, incident key),
//!   `incident` (the records and the decisions on them: open, fold, acknowledge, resolve),
//!   `escalate` (fire what is due: who is on call (`oncall`), one delivery per channel and person)
//! - `config` (the `routing/` policy: model, compile with all errors, hot reload, the templates,
//!   the channel-type registry's data part; step timing is `EscalationPolicy::due_at`) beside
//!   `ingest` (verify and parse SNS / CloudWatch / Route 53, EventBridge, AWS Health, RDS,
//!   ElastiCache, Alertmanager and trading-bot payloads into alerts, and inbound SMS replies)
//! - `domain`   — alerts, labels, fingerprints, severities
//!
//! Around them: `settings` (process settings and secrets), `clock` (injected time), `metrics`,
//! `telemetry`, `simulate` (the `vigil simulate` report).

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

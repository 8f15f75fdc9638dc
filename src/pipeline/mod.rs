//! The pipeline: where an alert, an acknowledgement, a due step or an operator's record meets
//! the store. Every change is read → decide (a pure stage: `classify`, `incident::transition`,
//! `escalate`) → commit (one version-guarded `store::Transition`).
//!
//! - `service`: [`IncidentService`] and its one read → decide → commit loop (`settle`), run by
//!   ingest (one alert or a batch), acknowledge, resolve, escalate, mirror (the peer) and
//!   reconcile;
//! - `operator`: what the operator API and the probes read and record (incidents, silences,
//!   overrides, beats, the store's health): the HTTP layer never holds the store;
//! - `scheduler`: the loop that fires what is due; `heartbeat`: the dead-man switches it checks;
//! - `report`: the response report and metrics (is the matrix's promise kept?), drills apart;
//! - `extras`: the operator records the flow consults (API silences, overrides, drills, heartbeats'
//!   beats, the unreached list); `prune`: retention; `gate`: whether this process may page.
//!
//! And the ways in that are not an HTTP request: what vigil pulls from AWS so that an alarm that
//! fired while vigil was not there to receive it is still paged.
//!
//! - `sns`: the one path of an SNS Notification — signature, topic allow-list, MessageId dedup,
//!   parse, ingest — shared by the HTTP endpoint and the dead-letter drain;
//! - `reconcile`: reads every alarm's state from CloudWatch (`DescribeAlarms`) at start-up, after
//!   a store outage and every interval, and acts on the transitions vigil never received;
//! - `dead_letter`: drains the SQS dead-letter queues of vigil's SNS subscriptions (what SNS gave
//!   up delivering) through `sns`;
//! - `watchdog`: publishes the heartbeat metric that an alarm outside vigil watches
//!   (`deploy/aws/watchdog.yaml`), while vigil is ready;
//! - `peer`: the warm standby's follower loop, takeover and hand-back (both sides follow);
//! - `aws`: the SDK clients they use, built from the standard AWS configuration.
//!
//! Owns the loops and their health ([`RecoveryHealth`], shown on `/readyz`). Imports `store`, the
//! pure stages, `config`, `ingest` and `domain`; must not import `http` or `app` (which call into
//! it) nor `notify` (its sibling, which reads the outbox the pipeline writes).

pub mod aws;
pub mod dead_letter;
pub mod extras;
pub mod gate;
pub mod heartbeat;
pub mod operator;
pub mod peer;
pub mod prune;
pub mod reconcile;
pub mod report;
pub mod scheduler;
pub mod service;
pub mod sns;
pub mod watchdog;

pub use service::{IncidentService, IngestOutcome, ServiceError};

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The wait after `failures` failed attempts in a row (at least 1): `first`, doubling per further
/// failure, never more than `cap`. The loops here (reconciliation, dead letters, the watchdog)
/// back off between their own attempts with it, on top of the SDK's retries within one call.
pub fn backoff(
    first: std::time::Duration,
    cap: std::time::Duration,
    failures: u32,
) -> std::time::Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    first.saturating_mul(factor).min(cap)
}

/// How one reconciliation region or one dead-letter queue is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceHealth {
    /// When the last pass (region) or receive (queue) succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// The last failure, while it is the latest outcome.
    pub last_error: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    /// Failures in a row.
    pub failures: u32,
    /// Region: alarms read by the last pass. Queue: messages taken since start.
    pub count: u64,
    /// Queue: messages left in the queue for a human (forged, unverifiable, from a topic not
    /// allowed) since start.
    #[serde(skip_serializing_if = "is_zero")]
    pub refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The state of every reconciliation region and dead-letter queue, for `/readyz`.
#[derive(Debug, Default)]
pub struct RecoveryHealth {
    regions: Mutex<BTreeMap<String, SourceHealth>>,
    queues: Mutex<BTreeMap<String, SourceHealth>>,
}

/// Which map of [`RecoveryHealth`].
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Region,
    Queue,
}

impl RecoveryHealth {
    fn map(&self, kind: Kind) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceHealth>> {
        match kind {
            Kind::Region => &self.regions,
            Kind::Queue => &self.queues,
        }
        .lock()
        .unwrap_or_else(|e| e.into_inner())
    }

    pub fn update(&self, kind: Kind, name: &str, f: impl FnOnce(&mut SourceHealth)) {
        f(self.map(kind).entry(name.to_string()).or_default());
    }

    pub fn succeeded(&self, kind: Kind, name: &str, at: DateTime<Utc>) {
        self.update(kind, name, |h| {
            h.last_success = Some(at);
            h.last_error = None;
            h.failing_since = None;
            h.failures = 0;
        });
    }

    pub fn failed(&self, kind: Kind, name: &str, at: DateTime<Utc>, error: String) {
        self.update(kind, name, |h| {
            h.last_error = Some(error);
            h.failing_since.get_or_insert(at);
            h.failures += 1;
        });
    }

    /// Forgets regions or queues no longer configured.
    pub fn retain(&self, kind: Kind, keep: &[String]) {
        self.map(kind).retain(|name, _| keep.contains(name));
    }

    pub fn snapshot(&self, kind: Kind) -> BTreeMap<String, SourceHealth> {
        self.map(kind).clone()
    }

    /// One line per failing region or queue, for `/readyz` problems.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (region, h) in self.snapshot(Kind::Region) {
            if let (Some(err), Some(since)) = (&h.last_error, h.failing_since) {
                out.push(format!(
                    "reconciliation from CloudWatch in {region} failing since {} ({} attempts; last success {}): {err}",
                    since.to_rfc3339(),
                    h.failures,
                    h.last_success
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "never".into()),
                ));
            }
        }
        for (queue, h) in self.snapshot(Kind::Queue) {
            if let (Some(err), Some(since)) = (&h.last_error, h.failing_since) {
                out.push(format!(
                    "dead-letter queue {queue} cannot be drained since {} ({} attempts): {err}",
                    since.to_rfc3339(),
                    h.failures,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap() {
        let waits: Vec<u64> = (1..=7)
            .map(|f| super::backoff(Duration::from_secs(2), Duration::from_secs(30), f).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            super::backoff(Duration::from_secs(2), Duration::from_secs(30), u32::MAX),
            Duration::from_secs(30)
        );
    }
}

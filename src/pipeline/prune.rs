//! Retention: the periodic pass that keeps the store from growing with history. Each pass
//! deletes, by the injected clock,
//! - resolved incidents whose resolve is older than `Retention::incidents`, with their
//!   timelines, outbox rows, provider references and flap-detection record;
//! - transport delivery ids (SNS `MessageId`s) older than `Retention::message_ids`;
//! - API silences and overrides that have ended, and (`extras::STAMP_RETENTION`, 7 days after
//!   their change) the tombstones and stamps the warm standby's feed compares.
//!
//! A pass is bounded (`Retention::per_pass` of each), so it never holds the store's writer for
//! long; a pass that reached its bound is followed by another after `CATCH_UP` instead of the
//! full interval, so a large backlog (a flood's worth of incidents) drains in minutes.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::IncidentService;
use super::extras;
use crate::metrics::Metrics;
use crate::store::{Prune, StoreError};

/// How long a pass that had more to do waits before the next.
pub const CATCH_UP: Duration = Duration::from_secs(1);

/// What is kept, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Resolved incidents are deleted this long after their resolve (default 30 days).
    pub incidents: Duration,
    /// Transport delivery ids are forgotten this long after they were first seen (default 7
    /// days): a redelivery after that is applied again.
    pub message_ids: Duration,
    /// How often a pass runs (default 10 minutes; the first runs at start).
    pub every: Duration,
    /// At most this many incidents, delivery ids and ended records go in one pass (default
    /// 1,000 of each).
    pub per_pass: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            incidents: Duration::from_secs(30 * 24 * 3600),
            message_ids: Duration::from_secs(7 * 24 * 3600),
            every: Duration::from_secs(600),
            per_pass: 1000,
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub incidents: usize,
    pub delivery_ids: usize,
    /// Ended API silences and overrides, and their stamps a week after their last change.
    pub records: usize,
    /// The pass stopped at a bound: there may be more to delete.
    pub more: bool,
}

/// `now - d`, saturating at the start of the calendar.
fn before(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Only the end of a stored silence or override matters here; the rest of the record is the
/// API's business and may change shape.
#[derive(serde::Deserialize)]
struct Ends {
    end: DateTime<Utc>,
}

/// One bounded pass.
pub async fn pass(
    service: &IncidentService,
    retention: &Retention,
) -> Result<PruneReport, StoreError> {
    let now = service.now();
    let store = service.store().as_ref();
    let limit = retention.per_pass.max(1);
    let pruned = store
        .prune(Prune {
            resolved_before: before(now, retention.incidents),
            seen_before: before(now, retention.message_ids),
            limit,
        })
        .await?;
    let mut report = PruneReport {
        incidents: pruned.incidents.len(),
        delivery_ids: pruned.delivery_ids,
        records: 0,
        more: pruned.full(limit),
    };
    // The flap-detection record of a deleted incident would point at nothing.
    for (id, fp) in &pruned.incidents {
        let Some(bytes) = store.get_record(extras::RESOLVED, fp.as_str()).await? else {
            continue;
        };
        let points_here = serde_json::from_slice::<extras::LastResolved>(&bytes)
            .map_or(true, |last| last.incident == *id);
        if points_here {
            store.delete_record(extras::RESOLVED, fp.as_str()).await?;
        }
    }
    let mut ended = 0;
    'kinds: for kind in [extras::SILENCES, extras::OVERRIDES, extras::DRILLS] {
        for (id, bytes) in store.records(kind).await? {
            if ended >= limit {
                report.more = true;
                break 'kinds;
            }
            // A record that no longer parses is left for the API's own handling (it is skipped
            // with a warning where it is read).
            if serde_json::from_slice::<Ends>(&bytes).is_ok_and(|e| e.end <= now)
                && store.delete_record(kind, &id).await?
            {
                ended += 1;
            }
        }
    }
    // Tombstones of deleted silences and overrides, and the stamps of those pruned above, once
    // their change is a week old (the peer feed's, `extras::STAMP_RETENTION`).
    let (stamps, more) = extras::prune_stamps(
        store,
        before(now, extras::STAMP_RETENTION),
        limit.saturating_sub(ended).max(1),
    )
    .await?;
    report.more |= more;
    report.records = ended + stamps;
    if ended > 0 {
        service.forget_extras();
    }
    Ok(report)
}

/// Runs a pass at start and then every `retention.every` (sooner while a backlog remains) until
/// `stop` is cancelled. A failed pass is logged and retried at the next interval.
pub async fn run(
    service: Arc<IncidentService>,
    retention: Retention,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    loop {
        let wait = match pass(&service, &retention).await {
            Ok(report) => {
                for (what, n) in [
                    ("incidents", report.incidents),
                    ("delivery_ids", report.delivery_ids),
                    ("records", report.records),
                ] {
                    if n > 0 {
                        metrics
                            .counter("vigil_pruned_total", &[("what", what)])
                            .increment(n as u64);
                    }
                }
                if report != PruneReport::default() {
                    tracing::info!(
                        incidents = report.incidents,
                        delivery_ids = report.delivery_ids,
                        records = report.records,
                        more = report.more,
                        "Pruned what outlived its retention."
                    );
                }
                if report.more {
                    CATCH_UP
                } else {
                    retention.every
                }
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "Prune pass failed; trying again later.");
                retention.every
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

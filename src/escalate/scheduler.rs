//! The escalation scheduler: wakes at the earliest due time (or when a commit adds a nearer one,
//! or at least once a second), fires what is due through `IncidentService::run_due`, and publishes
//! its lag — now minus the oldest unfired due time — as a metric and for `/readyz`. Each pass
//! also runs the heartbeat checker.

// Declared here rather than in `escalate/mod.rs` so this branch leaves that file alone; move the
// declaration there (`pub mod heartbeat;`) when the two meet.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::PolicyHandle;
use crate::incident::IncidentService;
use crate::metrics::Metrics;

const IDLE_POLL: Duration = Duration::from_secs(1);

/// The scheduler's health, shared with `/readyz`.
#[derive(Debug, Default)]
pub struct SchedulerHealth {
    /// Lag in milliseconds at the last pass.
    lag_ms: AtomicI64,
}

impl SchedulerHealth {
    pub fn lag(&self) -> Duration {
        Duration::from_millis(self.lag_ms.load(Ordering::Relaxed).max(0) as u64)
    }
}

pub struct Scheduler {
    pub service: Arc<IncidentService>,
    /// The same handle the service reads, for the heartbeats of the current policy.
    pub policy: Arc<PolicyHandle>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    pub health: Arc<SchedulerHealth>,
}

impl Scheduler {
    /// One pass: fire what is due, open incidents for missed heartbeats, then measure the lag of
    /// whatever is still overdue. Returns how many escalation steps fired.
    pub async fn pass(&self) -> Result<usize, crate::incident::ServiceError> {
        let fired = self.service.run_due().await?;
        let now = self.clock.now();
        super::heartbeat::check(&self.service, &self.policy.current(), now).await?;
        let lag = match self.service.store().next_due().await? {
            Some(at) if at <= now => (now - at).num_milliseconds(),
            _ => 0,
        };
        self.health.lag_ms.store(lag, Ordering::Relaxed);
        self.metrics.scheduler_lag_seconds.set(lag as f64 / 1000.0);
        Ok(fired)
    }

    pub async fn run_shared(self: std::sync::Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::error!(error.message = %e, "Scheduler pass failed; retrying.");
            }
            let wait = match self.service.store().next_due().await {
                Ok(Some(at)) => (at - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            }
        }
    }
}

//! The escalation scheduler: wakes at the earliest due time (or when a commit adds a nearer one,
//! or at least once a second), fires what is due through `IncidentService::run_due`, and publishes
//! its lag — now minus the oldest unfired due time — as a metric and for `/readyz`. Each pass
//! also runs the heartbeat checker.

// Declared here rather than in `escalate/mod.rs` so this branch leaves that file alone; move the
// declaration there (`pub mod heartbeat;`) when the two meet.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::PolicyHandle;
use crate::metrics::Metrics;
use crate::pipeline::IncidentService;

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

/// How a commit wakes the scheduler: only when it adds a due time earlier than the instant the
/// scheduler will look again by itself. Under a storm of new incidents whose first timers are
/// minutes away, the scheduler then sleeps instead of making a pass per commit.
#[derive(Debug)]
pub struct SchedulerWake {
    notify: Notify,
    /// The clock instant (ms) at which the sleeping scheduler looks again by itself;
    /// `i64::MAX` while it is awake, so that a due time committed between its read of the
    /// store and its sleep still wakes it.
    looks_at_ms: AtomicI64,
}

impl Default for SchedulerWake {
    fn default() -> Self {
        Self {
            notify: Notify::new(),
            looks_at_ms: AtomicI64::new(i64::MAX),
        }
    }
}

impl SchedulerWake {
    /// A commit added a step due at `at`.
    pub fn due_added(&self, at: DateTime<Utc>) {
        if at.timestamp_millis() < self.looks_at_ms.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// Wakes the scheduler whatever it planned.
    pub fn notify_one(&self) {
        self.notify.notify_one();
    }

    fn awake(&self) {
        self.looks_at_ms.store(i64::MAX, Ordering::SeqCst);
    }

    fn sleeps_until(&self, at: DateTime<Utc>) {
        self.looks_at_ms
            .store(at.timestamp_millis(), Ordering::SeqCst);
    }
}

pub struct Scheduler {
    pub service: Arc<IncidentService>,
    /// The same handle the service reads, for the heartbeats of the current policy.
    pub policy: Arc<PolicyHandle>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<SchedulerWake>,
    pub health: Arc<SchedulerHealth>,
}

impl Scheduler {
    /// One pass: fire what is due, open incidents for missed heartbeats, then measure the lag of
    /// whatever is still overdue. Returns how many escalation steps fired.
    pub async fn pass(&self) -> Result<usize, crate::pipeline::ServiceError> {
        let gate = self.service.gate().clone();
        let closed = |health: &SchedulerHealth| {
            // A closed gate (a standby) fires nothing and checks no heartbeat; its lag is not a
            // readiness problem.
            health.lag_ms.store(0, Ordering::Relaxed);
            self.metrics.scheduler_lag_seconds.set(0.0);
            Ok(0)
        };
        let fired = {
            // A hand-back waits for the steps in flight to commit before the peer may open.
            let _deciding = gate.deciding().await;
            if !gate.is_open() {
                return closed(&self.health);
            }
            self.service.run_due().await?
        };
        // A missed heartbeat is ingested like any alert, which takes its own turn at deciding.
        if !gate.is_open() {
            return closed(&self.health);
        }
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
            self.wake.awake();
            if let Err(e) = self.pass().await {
                tracing::error!(error.message = %e, "Scheduler pass failed; retrying.");
            }
            let wait = match self.service.store().next_due().await {
                Ok(Some(at)) => (at - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_POLL),
                _ => IDLE_POLL,
            }
            .max(Duration::from_millis(5));
            self.wake
                .sleeps_until(crate::clock::after(self.clock.now(), wait));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt as _;

    fn woken(w: &SchedulerWake) -> bool {
        w.notify.notified().now_or_never().is_some()
    }

    #[test]
    fn a_commit_wakes_the_sleeping_scheduler_only_for_a_sooner_step() {
        let w = SchedulerWake::default();
        let t = Utc::now();
        w.sleeps_until(t + chrono::Duration::seconds(1));
        w.due_added(t + chrono::Duration::hours(1));
        assert!(!woken(&w), "a step after its own wake-up leaves it asleep");
        w.due_added(t + chrono::Duration::milliseconds(200));
        assert!(woken(&w), "a sooner step wakes it");
        // Awake (between its read of the store and its sleep), every new step wakes it.
        w.awake();
        w.due_added(t + chrono::Duration::hours(1));
        assert!(woken(&w));
    }
}

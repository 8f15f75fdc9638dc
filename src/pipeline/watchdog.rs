//! The watchdog's heartbeat: every `interval`, while vigil is ready, one CloudWatch
//! `PutMetricData` of Value 1, Unit Count, with the namespace, metric and dimensions of
//! `sources.cloudwatch.watchdog`, in its region. The alarm of `deploy/aws/watchdog.yaml` texts the
//! on-call phones when no vigil anywhere has published for 3 minutes; every replica in both
//! regions publishes the same metric (see [`crate::config::watchdog`] for why).
//!
//! Ready means what `/readyz` means by it for this vigil's own parts: the store answers and is
//! writable (`Store::problem` is `None`), and the scheduler's lag is within
//! `max_scheduler_lag`. A vigil that cannot page must not tell the alarm it is fine, so a round
//! that finds it not ready publishes nothing, counts `vigil_watchdog_skipped_total{reason}` and
//! logs why.
//!
//! Errors never stop anything: a failed call is logged, counted
//! (`vigil_watchdog_errors_total`), shown on `/readyz` through [`WatchdogHealth`], and retried
//! sooner than the interval (5 s, doubling, at most the interval) so a passing error costs no
//! period of the alarm. The SDK's own retries are off (the loop owns them) and one call is bounded
//! by the channels' `http_timeout`.
//!
//! The configuration is read from the current policy at every round, so a reload takes effect
//! at the next one. The loop's first round comes one interval after start, once the scheduler
//! has made its passes. AWS comes from the process's `SdkConfig` with the region overridden; when
//! none was loaded, one is loaded at the first round with the watchdog's region (never from the
//! EC2 metadata service, which the SDK would ask for a region it is not given).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_cloudwatch::config::retry::RetryConfig;
use aws_sdk_cloudwatch::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::PolicyHandle;
use crate::config::watchdog::{DEFAULT_INTERVAL, WatchdogSpec};
use crate::metrics::Metrics;
use crate::pipeline::scheduler::SchedulerHealth;
use crate::store::Store;

/// The first retry after a failed call; each further failure doubles it, up to the interval.
pub const RETRY_FIRST: Duration = Duration::from_secs(5);

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchdogRound {
    /// No watchdog is configured: nothing to publish.
    Disabled,
    /// The heartbeat was published.
    Published,
    /// vigil is not ready (why): nothing published.
    Skipped(String),
    /// PutMetricData failed (why).
    Failed(String),
}

/// The last success and the last failure, for `/readyz`.
#[derive(Debug, Default)]
pub struct WatchdogHealth {
    state: Mutex<HealthState>,
}

#[derive(Debug, Default)]
struct HealthState {
    last_success: Option<DateTime<Utc>>,
    /// When, and why, the last failed call failed.
    last_error: Option<(DateTime<Utc>, String)>,
}

impl WatchdogHealth {
    /// `watchdog: PutMetricData failing: …` while the last call failed; `None` otherwise.
    pub fn problem(&self) -> Option<String> {
        let s = self.lock();
        let (at, why) = s.last_error.as_ref()?;
        let last = match s.last_success {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            None => "never".to_string(),
        };
        Some(format!(
            "watchdog: PutMetricData failing: {why} (at {}; last success: {last})",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    }

    /// When the heartbeat was last published.
    pub fn last_success(&self) -> Option<DateTime<Utc>> {
        self.lock().last_success
    }

    fn succeeded(&self, at: DateTime<Utc>) {
        let mut s = self.lock();
        s.last_success = Some(at);
        s.last_error = None;
    }

    fn failed(&self, at: DateTime<Utc>, why: String) {
        self.lock().last_error = Some((at, why));
    }

    fn clear(&self) {
        self.lock().last_error = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The publisher. One per app; [`Watchdog::run`] is its loop, [`Watchdog::round`] one round.
pub struct Watchdog {
    policy: Arc<PolicyHandle>,
    store: Arc<dyn Store>,
    scheduler: Arc<SchedulerHealth>,
    max_scheduler_lag: Duration,
    clients: Arc<super::aws::AwsClients>,
    http_timeout: Duration,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    health: Arc<WatchdogHealth>,
    /// The client of the last round's region.
    client: Mutex<Option<(String, aws_sdk_cloudwatch::Client)>>,
}

/// What [`Watchdog::new`] needs.
pub struct WatchdogParts {
    pub policy: Arc<PolicyHandle>,
    pub store: Arc<dyn Store>,
    pub scheduler: Arc<SchedulerHealth>,
    /// Beyond this lag the scheduler counts as not ready (`settings.max_scheduler_lag`).
    pub max_scheduler_lag: Duration,
    /// The process's AWS configuration (`settings.channels.aws`, or loaded on first use).
    pub clients: Arc<super::aws::AwsClients>,
    /// Bound of one call (`settings.channels.http_timeout`).
    pub http_timeout: Duration,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl Watchdog {
    pub fn new(parts: WatchdogParts) -> Self {
        Self {
            policy: parts.policy,
            store: parts.store,
            scheduler: parts.scheduler,
            max_scheduler_lag: parts.max_scheduler_lag,
            clients: parts.clients,
            http_timeout: parts.http_timeout,
            clock: parts.clock,
            metrics: parts.metrics,
            health: Arc::default(),
            client: Mutex::new(None),
        }
    }

    /// Shared with `/readyz`.
    pub fn health(&self) -> Arc<WatchdogHealth> {
        self.health.clone()
    }

    /// Every interval (of the current policy; [`DEFAULT_INTERVAL`] while none is configured),
    /// one round, until `stop`; after a failure, sooner ([`retry_wait`]).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut failures = 0u32;
        let mut wait = self.interval();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let round = tokio::select! {
                _ = stop.cancelled() => break,
                round = self.round() => round,
            };
            failures = match round {
                WatchdogRound::Failed(_) => failures.saturating_add(1),
                _ => 0,
            };
            wait = retry_wait(self.interval(), failures);
        }
    }

    fn interval(&self) -> Duration {
        self.policy
            .current()
            .watchdog
            .as_ref()
            .map_or(DEFAULT_INTERVAL, |w| w.interval)
    }

    /// One round: publish the heartbeat if a watchdog is configured and vigil is ready.
    pub async fn round(&self) -> WatchdogRound {
        let Some(spec) = self.policy.current().watchdog.clone() else {
            self.health.clear();
            return WatchdogRound::Disabled;
        };
        if let Some((reason, why)) = self.not_ready().await {
            self.metrics
                .counter("vigil_watchdog_skipped_total", &[("reason", reason)])
                .increment(1);
            tracing::warn!(reason = %why, "Not ready: no watchdog heartbeat this round.");
            return WatchdogRound::Skipped(why);
        }
        let client = self.client(&spec.region).await;
        let sent = client
            .put_metric_data()
            .namespace(&spec.namespace)
            .metric_data(datum(&spec))
            .send()
            .await;
        let now = self.clock.now();
        match sent {
            Ok(_) => {
                self.health.succeeded(now);
                self.metrics
                    .counter("vigil_watchdog_published_total", &[])
                    .increment(1);
                self.metrics
                    .gauge("vigil_watchdog_last_published_timestamp_seconds", &[])
                    .set(now.timestamp() as f64);
                tracing::debug!(region = %spec.region, namespace = %spec.namespace, metric = %spec.metric, "Watchdog heartbeat published.");
                WatchdogRound::Published
            }
            Err(e) => {
                let why = super::aws::sdk_error("CloudWatch", &e);
                self.health.failed(now, why.clone());
                self.metrics
                    .counter("vigil_watchdog_errors_total", &[])
                    .increment(1);
                tracing::warn!(region = %spec.region, error.message = %why, "Watchdog heartbeat failed; retrying.");
                WatchdogRound::Failed(why)
            }
        }
    }

    /// Why vigil is not ready, by reason (`store`, `scheduler`), in `/readyz`'s words.
    async fn not_ready(&self) -> Option<(&'static str, String)> {
        if let Err(e) = self.store.stats().await {
            return Some(("store", format!("store: {e}")));
        }
        if let Some(problem) = self.store.problem() {
            return Some(("store", problem));
        }
        let lag = self.scheduler.lag();
        if lag > self.max_scheduler_lag {
            return Some((
                "scheduler",
                format!(
                    "scheduler lag {} exceeds {}",
                    humantime::format_duration(lag),
                    humantime::format_duration(self.max_scheduler_lag)
                ),
            ));
        }
        None
    }

    /// A CloudWatch client for `region`, reused while the region stays the same.
    async fn client(&self, region: &str) -> aws_sdk_cloudwatch::Client {
        if let Some((r, c)) = &*self.client.lock().unwrap_or_else(|e| e.into_inner())
            && r == region
        {
            return c.clone();
        }
        let base = self.clients.base(region).await;
        let conf = aws_sdk_cloudwatch::config::Builder::from(base)
            .region(aws_sdk_cloudwatch::config::Region::new(region.to_string()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(self.http_timeout)
                    .build(),
            )
            .build();
        let client = aws_sdk_cloudwatch::Client::from_conf(conf);
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((region.to_string(), client.clone()));
        client
    }
}

/// The heartbeat: Value 1, Unit Count, no timestamp (CloudWatch stamps it on receipt, so a
/// skewed clock cannot put it outside the alarm's periods).
fn datum(spec: &WatchdogSpec) -> MetricDatum {
    let dimensions = spec
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    MetricDatum::builder()
        .metric_name(&spec.metric)
        .set_dimensions(Some(dimensions))
        .value(1.0)
        .unit(StandardUnit::Count)
        .build()
}

/// The wait before the next round: the interval, or after `failures` failed calls in a row
/// [`RETRY_FIRST`] doubling per further failure, never more than the interval.
pub fn retry_wait(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    super::backoff(RETRY_FIRST, interval, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_retry_sooner_than_the_interval_and_back_off_up_to_it() {
        let minute = Duration::from_secs(60);
        let waits: Vec<u64> = (0..8).map(|f| retry_wait(minute, f).as_secs()).collect();
        assert_eq!(waits, [60, 5, 10, 20, 40, 60, 60, 60]);
        let ten = Duration::from_secs(10);
        assert_eq!(retry_wait(ten, 1), Duration::from_secs(5));
        assert_eq!(retry_wait(ten, 2), ten);
        assert_eq!(retry_wait(minute, u32::MAX), minute);
    }

    #[test]
    fn readiness_shows_a_failure_until_the_next_success() {
        let h = WatchdogHealth::default();
        assert_eq!(h.problem(), None);
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 12, 1, 20, 0, 0).unwrap();
        h.failed(
            t,
            "CloudWatch answered HTTP 500 InternalServiceError".into(),
        );
        assert_eq!(
            h.problem().as_deref(),
            Some(
                "watchdog: PutMetricData failing: CloudWatch answered HTTP 500 InternalServiceError (at 2026-12-01T20:00:00Z; last success: never)"
            )
        );
        h.succeeded(t + chrono::Duration::minutes(1));
        assert_eq!(h.problem(), None);
        assert_eq!(h.last_success(), Some(t + chrono::Duration::minutes(1)));
        h.failed(t + chrono::Duration::minutes(2), "timed out".into());
        assert!(
            h.problem()
                .unwrap()
                .ends_with("last success: 2026-12-01T20:01:00Z)")
        );
    }
}

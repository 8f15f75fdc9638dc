//! Reconciliation from CloudWatch: every alarm's current state, read with `DescribeAlarms`
//! (metric and composite alarms, every page) in each region of `sources.cloudwatch.reconcile`,
//! compared with the last state change vigil recorded for it
//! ([`IncidentService::reconcile`]). A transition vigil never received — its SNS delivery was
//! lost while vigil was down, answering 503, or unreachable — is acted on as if it had arrived:
//! ALARM opens the incident and pages, OK resolves it. Transitions vigil has seen cost a read.
//!
//! When: a pass at start-up, then every `interval` per region, and at once when a standby takes
//! over (`IncidentService::wake_reconciliation`); a failed pass (throttling, an AWS
//! error, the store refusing writes) is retried with backoff (2 s doubling, at most
//! [`MAX_BACKOFF`] or the interval), so a pass also runs soon after the store comes back from an
//! outage. Failures show on `/readyz` and in metrics and never stop the service.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{AlarmType as SdkAlarmType, CompositeAlarm, MetricAlarm};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::aws::AwsClients;
use super::{Kind, RecoveryHealth};
use crate::config::PolicyHandle;
use crate::ingest::describe_alarms::{
    DescribedAlarm, DescribedKind, DescribedMetric, described_alarm,
};
use crate::metrics::Metrics;
use crate::pipeline::IncidentService;
use crate::pipeline::service::IngestOutcome;

/// The longest wait before a failed pass is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// DescribeAlarms' largest page.
const PAGE_SIZE: i32 = 100;

/// Reads every alarm of a region. The production one is [`SdkAlarms`]; a trait so that the
/// pass can be driven from an in-memory list too.
#[async_trait::async_trait]
pub trait AlarmReader: Send + Sync {
    async fn describe(&self, region: &str) -> Result<Vec<DescribedAlarm>, String>;
}

/// `DescribeAlarms` through aws-sdk-cloudwatch, every page, metric and composite alarms.
pub struct SdkAlarms {
    pub clients: Arc<AwsClients>,
}

#[async_trait::async_trait]
impl AlarmReader for SdkAlarms {
    async fn describe(&self, region: &str) -> Result<Vec<DescribedAlarm>, String> {
        let client = self.clients.cloudwatch(region).await;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // A bound on pages, so a service that keeps answering with a token cannot keep a pass
        // going for ever: 1,000 pages are 100,000 alarms (the CloudWatch quota is 10,000 per
        // region unless raised).
        for _ in 0..1_000 {
            let page = client
                .describe_alarms()
                .alarm_types(SdkAlarmType::MetricAlarm)
                .alarm_types(SdkAlarmType::CompositeAlarm)
                .max_records(PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| super::aws::sdk_error("CloudWatch DescribeAlarms", &e))?;
            out.extend(page.metric_alarms().iter().map(from_metric));
            out.extend(page.composite_alarms().iter().map(from_composite));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
        Err("DescribeAlarms kept returning a NextToken after 1,000 pages".into())
    }
}

/// A CloudWatch time, to the millisecond: CloudWatch keeps milliseconds (SNS's
/// `StateChangeTime` has three digits), so the same change compares equal on both paths.
fn time(
    t: Option<&aws_sdk_cloudwatch::primitives::DateTime>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t?;
    let ms = t.to_millis().ok()?;
    chrono::DateTime::from_timestamp_millis(ms)
}

fn dims(d: &[aws_sdk_cloudwatch::types::Dimension]) -> Vec<(String, String)> {
    d.iter()
        .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
        .collect()
}

fn from_metric(a: &MetricAlarm) -> DescribedAlarm {
    DescribedAlarm {
        kind: DescribedKind::Metric,
        name: a.alarm_name().map(String::from),
        arn: a.alarm_arn().map(String::from),
        description: a.alarm_description().map(String::from),
        state: a.state_value().map(|s| s.as_str().to_string()),
        state_reason: a.state_reason().map(String::from),
        state_updated: time(a.state_updated_timestamp()),
        state_transitioned: time(a.state_transitioned_timestamp()),
        namespace: a.namespace().map(String::from),
        metric_name: a.metric_name().map(String::from),
        dimensions: dims(a.dimensions()),
        metrics: a
            .metrics()
            .iter()
            .map(|m| {
                let stat = m.metric_stat().and_then(|s| s.metric());
                DescribedMetric {
                    id: m.id().map(String::from),
                    expression: m.expression().map(String::from),
                    return_data: m.return_data().unwrap_or(true),
                    namespace: stat.and_then(|s| s.namespace()).map(String::from),
                    metric_name: stat.and_then(|s| s.metric_name()).map(String::from),
                    dimensions: stat.map(|s| dims(s.dimensions())).unwrap_or_default(),
                }
            })
            .collect(),
        alarm_rule: None,
    }
}

fn from_composite(a: &CompositeAlarm) -> DescribedAlarm {
    DescribedAlarm {
        kind: DescribedKind::Composite,
        name: a.alarm_name().map(String::from),
        arn: a.alarm_arn().map(String::from),
        description: a.alarm_description().map(String::from),
        state: a.state_value().map(|s| s.as_str().to_string()),
        state_reason: a.state_reason().map(String::from),
        state_updated: time(a.state_updated_timestamp()),
        state_transitioned: time(a.state_transitioned_timestamp()),
        alarm_rule: a.alarm_rule().map(String::from),
        ..Default::default()
    }
}

/// What one pass over one region found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionReport {
    /// Alarms read.
    pub alarms: usize,
    /// Transitions vigil had not seen, by outcome label (`opened`, `resolved`, `updated`, ...).
    pub acted: Vec<(String, &'static str)>,
    /// Alarms whose description lacked what an alert needs (logged).
    pub unusable: usize,
}

impl RegionReport {
    pub fn opened(&self) -> usize {
        self.acted.iter().filter(|(_, o)| *o == "opened").count()
    }
    pub fn resolved(&self) -> usize {
        self.acted.iter().filter(|(_, o)| *o == "resolved").count()
    }
}

pub struct Reconciler {
    service: Arc<IncidentService>,
    policy: Arc<PolicyHandle>,
    reader: Arc<dyn AlarmReader>,
    health: Arc<RecoveryHealth>,
    metrics: Arc<Metrics>,
    /// One pass at a time per process (the loop's and one asked for through the handle), so
    /// two passes never race to act on the same unseen transition.
    passing: tokio::sync::Mutex<()>,
}

impl Reconciler {
    pub fn new(
        service: Arc<IncidentService>,
        policy: Arc<PolicyHandle>,
        reader: Arc<dyn AlarmReader>,
        health: Arc<RecoveryHealth>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            service,
            policy,
            reader,
            health,
            metrics,
            passing: Default::default(),
        }
    }

    /// One pass over `region`: read every alarm, act on the unseen transitions. Fails on the
    /// first error reading AWS or writing the store (the next pass starts over; acting is
    /// idempotent).
    pub async fn pass_region(&self, region: &str) -> Result<RegionReport, String> {
        let _one = self.passing.lock().await;
        let started = self.service.now();
        let result = self.pass_region_inner(region).await;
        match &result {
            Ok(report) => {
                self.health.succeeded(Kind::Region, region, started);
                self.health
                    .update(Kind::Region, region, |h| h.count = report.alarms as u64);
                self.metrics
                    .gauge(
                        "vigil_reconcile_last_success_timestamp_seconds",
                        &[("region", region)],
                    )
                    .set(started.timestamp() as f64);
                self.metrics
                    .gauge("vigil_reconcile_alarms", &[("region", region)])
                    .set(report.alarms as f64);
                if !report.acted.is_empty() {
                    tracing::warn!(
                        region,
                        opened = report.opened(),
                        resolved = report.resolved(),
                        acted = report.acted.len(),
                        "Reconciliation found alarm transitions vigil never received."
                    );
                } else {
                    tracing::debug!(
                        region,
                        alarms = report.alarms,
                        "Reconciliation pass: nothing missed."
                    );
                }
            }
            Err(e) => {
                self.health.failed(Kind::Region, region, started, e.clone());
                self.metrics
                    .counter("vigil_reconcile_errors_total", &[("region", region)])
                    .increment(1);
                tracing::warn!(region, error.message = %e, "Reconciliation pass failed; retrying with backoff.");
            }
        }
        result
    }

    async fn pass_region_inner(&self, region: &str) -> Result<RegionReport, String> {
        let alarms = self.reader.describe(region).await?;
        let mut report = RegionReport {
            alarms: alarms.len(),
            ..Default::default()
        };
        for described in &alarms {
            let alert = match described_alarm(described, region) {
                Ok(a) => a,
                Err(e) => {
                    report.unusable += 1;
                    tracing::warn!(region, error.message = %e, "An alarm from DescribeAlarms cannot be reconciled.");
                    continue;
                }
            };
            match self.service.reconcile(&alert, region).await {
                Ok(None) => {}
                Ok(Some(outcome)) => {
                    if !matches!(outcome, IngestOutcome::Duplicate | IngestOutcome::Nothing) {
                        tracing::warn!(region, alarm = %alert.fingerprint, state = alert.labels.get("alarm_state").map(String::as_str).unwrap_or("?"), changed_at = %alert.occurred_at, outcome = outcome.label(), incidents = ?outcome.incidents(), "Alarm transition found by reconciliation, not delivered.");
                    }
                    report
                        .acted
                        .push((alert.fingerprint.to_string(), outcome.label()));
                }
                Err(e) => return Err(format!("the store refused a reconciled alarm: {e}")),
            }
        }
        Ok(report)
    }

    /// A pass over every configured region now (in order); the reports by region.
    pub async fn pass(&self) -> Vec<(String, Result<RegionReport, String>)> {
        let regions = self
            .policy
            .current()
            .reconcile
            .as_ref()
            .map(|r| r.regions.clone())
            .unwrap_or_default();
        let mut out = Vec::new();
        for region in regions {
            let r = self.pass_region(&region).await;
            out.push((region, r));
        }
        out
    }

    /// Runs passes until `stop`: at start, every interval per region, sooner after a failure
    /// (backoff) and after the store refused an alert (`IncidentService::refusals`), re-reading
    /// the regions and interval from the current policy every second.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        struct Due {
            at: Instant,
            /// Failed passes in a row.
            failures: u32,
        }
        let mut due: HashMap<String, Due> = HashMap::new();
        let mut refusals = self.service.refusals();
        let wanted = self.service.reconciliation_wanted();
        let mut asked = false;
        loop {
            let Some(cfg) = self.policy.current().reconcile.clone() else {
                due.clear();
                self.health.retain(Kind::Region, &[]);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            };
            due.retain(|r, _| cfg.regions.contains(r));
            self.health.retain(Kind::Region, &cfg.regions);
            let now = Instant::now();
            // The store refused an alert since the last look (an outage, answered with 503):
            // whatever SNS gave up on meanwhile is only recoverable from CloudWatch.
            let refused = self.service.refusals();
            if refused != refusals {
                refusals = refused;
                for d in due.values_mut() {
                    d.at = d.at.min(now + FIRST_BACKOFF);
                }
            }
            // Asked for a pass now (a takeover).
            if std::mem::take(&mut asked) {
                for d in due.values_mut() {
                    d.at = now;
                }
            }
            for region in &cfg.regions {
                let d = due.entry(region.clone()).or_insert(Due {
                    at: now,
                    failures: 0,
                });
                if d.at > now {
                    continue;
                }
                let ok = self.pass_region(region).await.is_ok();
                let after = Instant::now();
                if ok {
                    d.at = after + cfg.interval;
                    d.failures = 0;
                } else {
                    d.failures = d.failures.saturating_add(1);
                    d.at = after
                        + super::backoff(FIRST_BACKOFF, MAX_BACKOFF.min(cfg.interval), d.failures);
                }
                if stop.is_cancelled() {
                    return;
                }
            }
            let next = due
                .values()
                .map(|d| d.at)
                .min()
                .unwrap_or(now + Duration::from_secs(1))
                .min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                _ = wanted.notified() => asked = true,
            }
        }
    }
}

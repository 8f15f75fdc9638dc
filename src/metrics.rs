//! Prometheus metrics, one registry per `App` (not the process-global recorder), so several apps
//! in one test process keep their own numbers. Label values are bounded: channel names and kinds,
//! severities, outcomes — never an incident id.
//!
//! Latencies are histograms (`_bucket{le=…}`, `_sum`, `_count`) with the [`LATENCY_BUCKETS`],
//! not summaries: buckets add up across replicas, quantiles computed per process do not.

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

static META: Metadata<'static> = Metadata::new("vigil", Level::INFO, Some("vigil"));

/// Bucket bounds, in seconds, of every histogram (all of vigil's histograms are latencies): from
/// a millisecond, where an ingest on the embedded store sits, to 30 s, the longest a send may
/// take before it counts as failed.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket bounds, in seconds, of the response histograms (`vigil_time_to_ack_seconds`,
/// `vigil_time_to_resolve_seconds`): people answer in minutes and hours, not milliseconds. The
/// matrix's promises (5m, 15m, 1h, 4h) are bounds, so "acked within the promise" is one bucket.
pub const RESPONSE_BUCKETS: [f64; 13] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
    259200.0,
];

/// Names starting with this use [`RESPONSE_BUCKETS`].
const RESPONSE_PREFIX: &str = "vigil_time_to_";

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// 1 when the last policy reload succeeded, 0 when it was refused.
    pub config_last_reload_success: Gauge,
    /// Seconds since the oldest unfired due time (0 when nothing is overdue).
    pub scheduler_lag_seconds: Gauge,
    pub open_incidents: Gauge,
    pub outbox_pending: Gauge,
    pub escalation_steps: Counter,
    pub ingest_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("LATENCY_BUCKETS is not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Prefix(RESPONSE_PREFIX.into()),
                &RESPONSE_BUCKETS,
            )
            .expect("RESPONSE_BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let gauge = |n: &'static str| recorder.register_gauge(&Key::from_static_name(n), &META);
        Self {
            config_last_reload_success: gauge("vigil_config_last_reload_success"),
            scheduler_lag_seconds: gauge("vigil_scheduler_lag_seconds"),
            open_incidents: gauge("vigil_open_incidents"),
            outbox_pending: gauge("vigil_outbox_pending"),
            escalation_steps: recorder.register_counter(
                &Key::from_static_name("vigil_escalation_steps_total"),
                &META,
            ),
            ingest_latency: recorder
                .register_histogram(&Key::from_static_name("vigil_ingest_seconds"), &META),
            recorder,
            handle,
        }
    }

    /// A labelled counter, e.g. `counter("vigil_alerts_total", &[("source", "sns"), ("outcome", "opened")])`.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &META)
    }

    /// A labelled histogram, e.g. `histogram("vigil_time_to_ack_seconds", &[("severity", "high")])`.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &META)
    }

    /// A labelled gauge, e.g. `gauge("vigil_store_writable", &[])`.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.to_string()))
            .collect();
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &META)
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}

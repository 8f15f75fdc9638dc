//! `sources.cloudwatch.watchdog`: the heartbeat metric vigil publishes so that an alarm outside
//! vigil (`deploy/aws/watchdog.yaml`) pages the on-call phones when no vigil anywhere is running.
//!
//! In: the [`WatchdogConfig`] as written. Out: a [`WatchdogSpec`] with every default filled in,
//! or each problem as (key path below `sources.cloudwatch.watchdog`, message). The limits are
//! CloudWatch's own for `PutMetricData` (a bad value would fail every call at run time, where
//! nobody reads it, instead of at load time).
//!
//! Why one region and the same dimensions everywhere: every vigil (all replicas, both regions)
//! publishes the SAME metric to ONE region (default us-east-1, independent of both vigil regions,
//! where the Route 53 alarms live too). The alarm is `Sum < 1` over 3 periods with missing data
//! breaching, so it fires only when no vigil anywhere is publishing; per-region or per-replica
//! dimensions would need one alarm each and page for a single replica's restart.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use super::locate::{PathSeg, Problem};
use super::routing::WatchdogConfig;

/// Default region of the metric and its alarm.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default metric namespace.
pub const DEFAULT_NAMESPACE: &str = "Vigil";
/// Default metric name.
pub const DEFAULT_METRIC: &str = "Heartbeat";
/// Default dimensions: `Service=vigil`, the same for every replica and region.
pub const DEFAULT_DIMENSIONS: [(&str, &str); 1] = [("Service", "vigil")];
/// Default publishing interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest interval: below it the calls cost without telling the alarm more.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The longest interval: the shipped alarm's period (60 s). A longer one leaves periods without
/// a datapoint, which the alarm treats as breaching.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// CloudWatch's bound on the dimensions of one metric.
pub const MAX_DIMENSIONS: usize = 30;

/// The compiled watchdog: what to publish, where, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchdogSpec {
    /// Region the metric is published to.
    pub region: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: BTreeMap<String, String>,
    pub interval: Duration,
}

impl Default for WatchdogSpec {
    fn default() -> Self {
        Self {
            region: DEFAULT_REGION.into(),
            namespace: DEFAULT_NAMESPACE.into(),
            metric: DEFAULT_METRIC.into(),
            dimensions: DEFAULT_DIMENSIONS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// Fills in the defaults and checks every value against CloudWatch's limits; all problems.
pub fn compile(cfg: &WatchdogConfig) -> (WatchdogSpec, Vec<Problem>) {
    static REGION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d+$").expect("static regex is valid"));
    let mut spec = WatchdogSpec::default();
    let mut problems: Vec<Problem> = Vec::new();
    let mut problem = |path: Vec<PathSeg>, message: String| problems.push((path, message));
    if let Some(region) = &cfg.region {
        if !REGION.is_match(region) {
            problem(
                vec!["region".into()],
                format!("{region:?} is not an AWS region (e.g. us-east-1)"),
            );
        }
        spec.region = region.clone();
    }
    if let Some(ns) = &cfg.namespace {
        if let Err(why) = check_namespace(ns) {
            problem(vec!["namespace".into()], format!("namespace {ns:?} {why}"));
        }
        spec.namespace = ns.clone();
    }
    if let Some(metric) = &cfg.metric {
        if !(1..=255).contains(&metric.len()) || metric.trim().is_empty() {
            problem(
                vec!["metric".into()],
                format!("metric {metric:?} must be 1-255 characters, not only spaces"),
            );
        }
        spec.metric = metric.clone();
    }
    if let Some(dims) = &cfg.dimensions {
        if dims.len() > MAX_DIMENSIONS {
            problem(
                vec!["dimensions".into()],
                format!(
                    "{} dimensions; CloudWatch takes at most {MAX_DIMENSIONS}",
                    dims.len()
                ),
            );
        }
        for (name, value) in dims {
            let at = || vec![PathSeg::from("dimensions"), PathSeg::from(name.as_str())];
            if !(1..=255).contains(&name.len())
                || !name.is_ascii()
                || name.starts_with(':')
                || name.trim().is_empty()
            {
                problem(
                    at(),
                    format!(
                        "dimension name {name:?} must be 1-255 ASCII characters, not only spaces, not starting with ':'"
                    ),
                );
            }
            if !(1..=1024).contains(&value.len()) || value.trim().is_empty() {
                problem(
                    at(),
                    format!(
                        "dimension {name:?} has value {value:?}; it must be 1-1024 characters, not only spaces"
                    ),
                );
            }
        }
        spec.dimensions = dims.clone();
    }
    if let Some(interval) = cfg.interval {
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            problem(
                vec!["interval".into()],
                format!(
                    "interval {} must be from {} to {} (the shipped alarm's period: a longer interval leaves periods without a heartbeat, which it counts as vigil down)",
                    humantime::format_duration(interval),
                    humantime::format_duration(MIN_INTERVAL),
                    humantime::format_duration(MAX_INTERVAL),
                ),
            );
        }
        spec.interval = interval.clamp(MIN_INTERVAL, MAX_INTERVAL);
    }
    (spec, problems)
}

/// CloudWatch's namespace rules: 1-255 characters among letters, digits, `. - _ / # :` and
/// space, at least one not a space, not starting with `:`; and not `AWS/`, which is AWS's own.
fn check_namespace(ns: &str) -> Result<(), &'static str> {
    if !(1..=255).contains(&ns.len()) {
        return Err("must be 1-255 characters");
    }
    if ns.starts_with(':') {
        return Err("must not start with ':'");
    }
    if ns.starts_with("AWS/") {
        return Err("must not start with 'AWS/' (namespaces of AWS services)");
    }
    if ns.trim().is_empty() {
        return Err("must not be only spaces");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if !ns.chars().all(allowed) {
        return Err("may only hold letters, digits, '.', '-', '_', '/', '#', ':' and spaces");
    }
    Ok(())
}

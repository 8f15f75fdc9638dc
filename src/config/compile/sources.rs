//! The builders of where alerts come from: `sources` (SNS topics, `max_age` and dead-letter
//! queues; CloudWatch reconciliation and the watchdog), `heartbeats` (alerts vigil raises itself
//! when a beat is late) and `storm` (how many new incidents a source may open per minute).

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use super::ctx::{Ctx, key_path, report};
use super::merge::Merged;
use crate::config::heartbeat::{Heartbeat, RESERVED_LABELS, is_heartbeat_name};
use crate::config::matcher::not_a_label_name;
use crate::config::policy::{Reconcile, StormPolicy};
use crate::config::watchdog::{self, WatchdogSpec};
use crate::domain::is_label_name;

/// Default `sources.sns.max_age`: SNS retries an HTTP(S) delivery for at most 3,600 s.
pub const DEFAULT_SNS_MAX_AGE: Duration = Duration::from_secs(60 * 60);

/// Default `sources.cloudwatch.reconcile.interval`.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest reconciliation interval: a pass reads every alarm of every region, and
/// DescribeAlarms is limited to 9 requests per second per account and region.
pub const MIN_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

/// What `sources` compiles to.
pub(super) struct Sources {
    pub(super) sns_allowed_topics: Vec<String>,
    pub(super) sns_max_age: Duration,
    pub(super) sns_dead_letter_queues: Vec<String>,
    pub(super) reconcile: Option<Reconcile>,
}

/// An AWS region code: `ap-southeast-1`, `us-gov-west-1`, `cn-north-1`.
pub fn is_region_code(s: &str) -> bool {
    static REGION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$").expect("static regex is valid")
    });
    REGION.is_match(s)
}

/// `sources`: SNS topic ARNs, `max_age` and dead-letter queue URLs; CloudWatch reconciliation
/// regions and interval.
pub(super) fn build_sources(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Sources {
    static ARN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$",
        )
        .expect("static regex is valid")
    });
    let mut out = Sources {
        sns_allowed_topics: Vec::new(),
        sns_max_age: DEFAULT_SNS_MAX_AGE,
        sns_dead_letter_queues: Vec::new(),
        reconcile: None,
    };
    let Some((fi, src)) = m.sources else {
        return out;
    };
    if let Some(sns) = &src.sns {
        if sns.max_age.is_some_and(|a| a.is_zero()) {
            ctx.err(
                fi,
                key_path!["sources", "sns", "max_age"],
                "max_age must be more than 0",
            );
        }
        for (i, arn) in sns.allowed_topics.iter().enumerate() {
            if !ARN.is_match(arn) {
                ctx.err(
                    fi,
                    key_path!["sources", "sns", "allowed_topics", i],
                    format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<12-digit account>:<topic>)"),
                );
            }
        }
        for (i, queue) in sns.dead_letter_queues.iter().enumerate() {
            if let Err(why) = check_queue_url(queue) {
                ctx.err(
                    fi,
                    key_path!["sources", "sns", "dead_letter_queues", i],
                    why,
                );
            } else if out.sns_dead_letter_queues.contains(queue) {
                ctx.err(
                    fi,
                    key_path!["sources", "sns", "dead_letter_queues", i],
                    format!("{queue:?} is listed twice"),
                );
            } else {
                out.sns_dead_letter_queues.push(queue.clone());
            }
        }
        out.sns_allowed_topics = sns.allowed_topics.clone();
        out.sns_max_age = sns.max_age.unwrap_or(DEFAULT_SNS_MAX_AGE);
    }
    if let Some(rec) = src.cloudwatch.as_ref().and_then(|c| c.reconcile.as_ref()) {
        let mut regions = Vec::new();
        if rec.regions.is_empty() {
            ctx.err(
                fi,
                key_path!["sources", "cloudwatch", "reconcile", "regions"],
                "name at least one region (e.g. ap-southeast-1), or leave reconcile out",
            );
        }
        for (i, region) in rec.regions.iter().enumerate() {
            if !is_region_code(region) {
                ctx.err(
                    fi,
                    key_path!["sources", "cloudwatch", "reconcile", "regions", i],
                    format!("{region:?} is not an AWS region code (e.g. ap-southeast-1)"),
                );
            } else if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
        let interval = rec.interval.unwrap_or(DEFAULT_RECONCILE_INTERVAL);
        if interval < MIN_RECONCILE_INTERVAL {
            ctx.err(
                fi,
                key_path!["sources", "cloudwatch", "reconcile", "interval"],
                format!(
                    "must be at least {} (DescribeAlarms allows 9 requests per second per region)",
                    humantime::format_duration(MIN_RECONCILE_INTERVAL)
                ),
            );
        }
        out.reconcile = Some(Reconcile {
            regions,
            interval: interval.max(MIN_RECONCILE_INTERVAL),
        });
    }
    out
}

/// An SQS queue URL: `https://sqs.<region>.amazonaws.com/<account>/<queue>` in production;
/// any http(s) URL whose path is `/<12-digit account>/<queue name>` (an emulator) is accepted.
fn check_queue_url(raw: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{raw:?} is not an SQS queue URL ({why}; expected https://sqs.<region>.amazonaws.com/<account>/<queue>)"
        ))
    };
    let Ok(url) = url::Url::parse(raw) else {
        return bad("not a URL");
    };
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return bad("not an http(s) URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad("it has a query or fragment");
    }
    let parts: Vec<&str> = url.path().trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [account, name]
            if account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && (1..=80).contains(&name.len())
                && name
                    .trim_end_matches(".fifo")
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(())
        }
        _ => bad("its path is not /<12-digit account>/<queue name>"),
    }
}

/// `sources.cloudwatch.watchdog`, with its defaults; each problem located under that key.
pub(super) fn build_watchdog(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> Option<WatchdogSpec> {
    let (fi, src) = m.sources?;
    let cfg = src.cloudwatch.as_ref()?.watchdog.as_ref()?;
    let (spec, problems) = watchdog::compile(cfg);
    report(
        ctx,
        fi,
        key_path!["sources", "cloudwatch", "watchdog"],
        problems,
    );
    Some(spec)
}

/// `storm`: every bound at least 1, per-source keys name sources that open incidents from
/// alerts (heartbeats are never grouped: each is its own, operator-made incident).
pub(super) fn build_storm(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> StormPolicy {
    let mut storm = StormPolicy::default();
    let Some((fi, cfg)) = m.storm else {
        return storm;
    };
    const AT_LEAST_ONE: &str =
        "must be at least 1 (new incidents per minute before a source's storm incident opens)";
    if let Some(n) = cfg.max_new_per_minute {
        if n == 0 {
            ctx.err(fi, key_path!["storm", "max_new_per_minute"], AT_LEAST_ONE);
        }
        storm.max_new_per_minute = n.max(1);
    }
    for (name, &n) in &cfg.sources {
        let source = match name.as_str() {
            "sns" => crate::domain::Source::Sns,
            "eventbridge" => crate::domain::Source::Eventbridge,
            "bot" => crate::domain::Source::Bot,
            "reconcile" => crate::domain::Source::Reconcile,
            "alertmanager" => crate::domain::Source::Alertmanager,
            other => {
                ctx.err(
                    fi,
                    key_path!["storm", "sources", name.as_str()],
                    format!(
                        "unknown source {other:?} (expected sns, eventbridge, bot, reconcile or alertmanager)"
                    ),
                );
                continue;
            }
        };
        if n == 0 {
            ctx.err(
                fi,
                key_path!["storm", "sources", name.as_str()],
                AT_LEAST_ONE,
            );
        }
        storm.per_source.insert(source, n.max(1));
    }
    storm
}

/// `heartbeats`: names, intervals, summaries (a default one when left out) and labels, none of
/// them one vigil sets itself.
pub(super) fn build_heartbeats(ctx: &mut Ctx<'_>, m: &Merged<'_>) -> BTreeMap<String, Heartbeat> {
    let mut out = BTreeMap::new();
    for (&name, &(fi, h)) in &m.heartbeats {
        let at = |k: &str| key_path!["heartbeats", name, k];
        if !is_heartbeat_name(name) {
            ctx.err(
                fi,
                key_path!["heartbeats", name],
                format!("{name:?} is not a heartbeat name (1 to 64 of a-z, 0-9, - and _)"),
            );
        }
        if h.interval.is_zero() {
            ctx.err(fi, at("interval"), "interval must be more than 0");
        }
        if h.summary.as_ref().is_some_and(|s| s.trim().is_empty()) {
            ctx.err(
                fi,
                at("summary"),
                "summary must not be empty; leave it out for the default",
            );
        }
        for key in h.labels.keys() {
            if !is_label_name(key) {
                ctx.err(
                    fi,
                    key_path!["heartbeats", name, "labels", key.as_str()],
                    not_a_label_name(key),
                );
            } else if RESERVED_LABELS.contains(&key.as_str()) {
                ctx.err(
                    fi,
                    key_path!["heartbeats", name, "labels", key.as_str()],
                    format!("{key:?} is set by vigil on heartbeat alerts and cannot be changed"),
                );
            }
        }
        let summary = h.summary.clone().unwrap_or_else(|| {
            format!(
                "No heartbeat from {name} for {}",
                humantime::format_duration(h.interval + h.grace)
            )
        });
        out.insert(
            name.to_string(),
            Heartbeat {
                name: name.to_string(),
                interval: h.interval,
                grace: h.grace,
                severity: h.severity,
                summary,
                labels: h.labels.clone(),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::config::tests_support::*;
    use crate::config::{DEFAULT_STORM_BOUND, Reconcile, StormPolicy, WatchdogSpec};
    use crate::domain::Severity;

    #[test]
    fn storm_bounds_default_to_100_and_are_checked() {
        let (_dir, p) = load_with(&[]);
        let p = p.unwrap();
        assert_eq!(p.storm, StormPolicy::default());
        assert_eq!(
            p.storm.bound(crate::domain::Source::Sns),
            Some(DEFAULT_STORM_BOUND)
        );
        assert_eq!(p.storm.bound(crate::domain::Source::Heartbeat), None);

        let (_dir, p) = load_with(&[(
            "storm.yaml",
            "storm:\n  max_new_per_minute: 50\n  sources: { bot: 500 }\n",
        )]);
        let p = p.unwrap();
        assert_eq!(p.storm.bound(crate::domain::Source::Sns), Some(50));
        assert_eq!(p.storm.bound(crate::domain::Source::Bot), Some(500));

        assert_single_errors_in(
            "storm.yaml",
            &[
                (
                    "storm:\n  max_new_per_minute: 0\n",
                    "storm.max_new_per_minute",
                    "at least 1",
                ),
                (
                    "storm:\n  sources: { cloudwatch: 10 }\n",
                    "storm.sources.cloudwatch",
                    "unknown source \"cloudwatch\"",
                ),
                (
                    "storm:\n  sources: { sns: 0 }\n",
                    "storm.sources.sns",
                    "at least 1",
                ),
                (
                    "storm:\n  max_new_per_mintue: 10\n",
                    "storm.max_new_per_mintue",
                    "unknown field",
                ),
            ],
            Some(2),
        );
    }

    #[test]
    fn reconciliation_and_dead_letter_queues_are_read_and_checked() {
        let (_dir, p) = load_with(&[]);
        let p = p.unwrap();
        assert_eq!(p.reconcile, None, "no reconciliation unless configured");
        assert!(p.sns_dead_letter_queues.is_empty());

        let (_dir, p) = load_with(&[(
            "sources.yaml",
            "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues:\n      - https://sqs.ap-southeast-1.amazonaws.com/123456789012/vigil-dlq\n      - http://127.0.0.1:5000/123456789012/vigil-dlq.fifo\n  cloudwatch:\n    reconcile:\n      regions: [ap-southeast-1, us-east-1, ap-southeast-1]\n",
        )]);
        let p = p.unwrap();
        assert_eq!(
            p.reconcile,
            Some(Reconcile {
                regions: vec!["ap-southeast-1".into(), "us-east-1".into()],
                interval: std::time::Duration::from_secs(60),
            })
        );
        assert_eq!(p.sns_dead_letter_queues.len(), 2);

        assert_single_errors_in(
            "sources.yaml",
            &[
                (
                    "sources:\n  cloudwatch:\n    reconcile: { regions: [] }\n",
                    "sources.cloudwatch.reconcile.regions",
                    "at least one region",
                ),
                (
                    "sources:\n  cloudwatch:\n    reconcile: { regions: [Singapore] }\n",
                    "sources.cloudwatch.reconcile.regions[0]",
                    "not an AWS region code",
                ),
                (
                    "sources:\n  cloudwatch:\n    reconcile: { regions: [us-east-1], interval: 1s }\n",
                    "sources.cloudwatch.reconcile.interval",
                    "at least 10s",
                ),
                (
                    "sources:\n  cloudwatch:\n    reconcile: { regoins: [us-east-1] }\n",
                    "sources.cloudwatch.reconcile.regoins",
                    "unknown field",
                ),
                (
                    "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues: [arn:aws:sqs:ap-southeast-1:123456789012:q]\n",
                    "sources.sns.dead_letter_queues[0]",
                    "not an SQS queue URL",
                ),
                (
                    "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues: [\"https://sqs.ap-southeast-1.amazonaws.com/q\"]\n",
                    "sources.sns.dead_letter_queues[0]",
                    "/<12-digit account>/<queue name>",
                ),
                (
                    "sources:\n  sns:\n    allowed_topics: []\n    dead_letter_queues: [\"https://sqs.ap-southeast-1.amazonaws.com/123456789012/q\", \"https://sqs.ap-southeast-1.amazonaws.com/123456789012/q\"]\n",
                    "sources.sns.dead_letter_queues[1]",
                    "listed twice",
                ),
            ],
            None,
        );
        // `reconcile` is a storm source like the others.
        let (_dir, p) = load_with(&[("storm.yaml", "storm:\n  sources: { reconcile: 20 }\n")]);
        assert_eq!(
            p.unwrap().storm.bound(crate::domain::Source::Reconcile),
            Some(20)
        );
    }

    #[test]
    fn the_watchdog_takes_defaults_and_cloudwatch_limits() {
        let (_dir, p) = load_with(&[]);
        assert_eq!(p.unwrap().watchdog, None, "no watchdog unless configured");

        let (_dir, p) = load_with(&[(
            "sources.yaml",
            "sources:\n  cloudwatch:\n    watchdog: {}\n",
        )]);
        let w = p.unwrap().watchdog.expect("configured");
        assert_eq!(w, WatchdogSpec::default());
        assert_eq!(w.region, "us-east-1");
        assert_eq!(
            (w.namespace.as_str(), w.metric.as_str()),
            ("Vigil", "Heartbeat")
        );
        assert_eq!(
            w.dimensions,
            BTreeMap::from([("Service".to_string(), "vigil".to_string())])
        );
        assert_eq!(w.interval, Duration::from_secs(60));

        let (_dir, p) = load_with(&[(
            "sources.yaml",
            "sources:\n  cloudwatch:\n    watchdog:\n      region: eu-west-1\n      namespace: Desk/Vigil\n      metric: Alive\n      dimensions: { Service: vigil, Desk: fx }\n      interval: 30s\n",
        )]);
        let w = p.unwrap().watchdog.unwrap();
        assert_eq!(w.region, "eu-west-1");
        assert_eq!(w.namespace, "Desk/Vigil");
        assert_eq!(w.metric, "Alive");
        assert_eq!(w.dimensions.len(), 2);
        assert_eq!(w.interval, Duration::from_secs(30));

        let long = "x".repeat(256);
        let many: String = (0..31).map(|i| format!("D{i}: v, ")).collect();
        for (field, value, key, fragment) in [
            (
                "namespace",
                "\"AWS/EC2\"",
                "namespace",
                "must not start with 'AWS/'",
            ),
            (
                "namespace",
                "\":Vigil\"",
                "namespace",
                "must not start with ':'",
            ),
            ("namespace", "\"\"", "namespace", "1-255"),
            ("namespace", long.as_str(), "namespace", "1-255"),
            ("namespace", "\"Vigil!\"", "namespace", "may only hold"),
            ("metric", "\"\"", "metric", "1-255"),
            ("interval", "5s", "interval", "from 10s to 1m"),
            ("interval", "5m", "interval", "from 10s to 1m"),
            ("region", "mars", "region", "not an AWS region"),
            (
                "dimensions",
                "{ Service: \"\" }",
                "dimensions.Service",
                "1-1024",
            ),
            (
                "dimensions",
                "{ \":x\": vigil }",
                "dimensions.:x",
                "not starting with ':'",
            ),
            (
                "dimensions",
                &format!("{{ {many} }}"),
                "dimensions",
                "at most 30",
            ),
            ("intervall", "1m", "intervall", "unknown field"),
        ] {
            let text = format!("sources:\n  cloudwatch:\n    watchdog:\n      {field}: {value}\n");
            let (_dir, e) = single_error("sources.yaml", &text);
            assert_eq!(
                e.key,
                format!("sources.cloudwatch.watchdog.{key}"),
                "{text}: {e}"
            );
            assert!(e.message.contains(fragment), "{text}: {e}");
            assert_eq!(e.line, Some(4), "{text}: {e}");
            assert!(e.file.ends_with("sources.yaml"), "{e}");
        }
    }

    /// A heartbeat has an interval longer than 0 and only known keys.
    #[test]
    fn broken_heartbeats_are_located() {
        assert_single_located_errors(&[
            case(
                "heartbeat with a zero interval",
                "extra.yaml",
                extra("interval: 1m", "interval: 0s"),
                "trading-bot:",
                "heartbeats.trading-bot.interval",
                "interval must be more than 0",
            ),
            case(
                "heartbeat with an unknown key",
                "extra.yaml",
                extra("grace: 30s", "grace: 30s, sevrity: low"),
                "trading-bot:",
                "heartbeats.trading-bot.sevrity",
                "unknown field `sevrity`",
            ),
        ]);
    }

    #[test]
    fn heartbeats_compile_with_a_default_summary() {
        let p = extra_ok_policy();
        let hb = &p.heartbeats["trading-bot"];
        assert_eq!(hb.severity, Severity::Critical);
        assert_eq!(hb.summary, "No heartbeat from trading-bot for 1m 30s");
        // Without the section: no heartbeats.
        assert!(base_policy().heartbeats.is_empty());
    }
}

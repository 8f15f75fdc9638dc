//! **classify**: the stage after ingest. Pure.
//!
//! In: the compiled [`Policy`] and one [`Alert`]. Out: a [`Classification`] — which rule matched,
//! the severity and escalation policy, the labels the incident carries, and its fingerprint (the
//! incident key). Rules are evaluated top to bottom and the first match wins; the policy's final
//! catch-all guarantees a match.

use std::time::Duration;

use crate::config::{CompiledRule, Policy};
use crate::domain::{Alert, Fingerprint, Labels, Severity};

/// What the policy says about one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// Name of the rule that matched.
    pub rule: String,
    /// The alert's severity override if it had one, else the rule's.
    pub severity: Severity,
    /// Escalation policy name (exists in the policy).
    pub policy: String,
    /// The alert's labels plus the rule's extra labels (the rule's win on a clash).
    pub labels: Labels,
    /// Incident key: the alert's own, or the rule name + `group_by` label values.
    pub fingerprint: Fingerprint,
    /// Whether `severity` came from the alert rather than the rule (shown on the timeline).
    pub severity_overridden: bool,
    /// The rule's `group_window`: how long alerts of this group (same fingerprint) are collected
    /// together. `None` when the rule has no `group_by` or no window.
    pub group_window: Option<Duration>,
}

/// Classifies `alert` with the first matching rule of `policy`.
///
/// Policy choice: the rule's explicit `policy`, else the severity's. When the sender overrode the
/// severity, the overriding severity's policy is used even if the rule names one: the rule's policy
/// was chosen for the rule's severity, and a sender asking for `critical` must get the critical
/// escalation (the policy load checks only those policies against the desk's two-channel rule).
pub fn classify(policy: &Policy, alert: &Alert) -> Classification {
    let rule = policy
        .rules
        .iter()
        .find(|r| r.matches(&alert.labels))
        .or_else(|| policy.rules.last())
        .expect("invariant: a compiled policy has at least one rule, the final catch-all");

    let mut labels = alert.labels.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));

    let (severity, severity_overridden) = match alert.severity_override {
        Some(s) => (s, true),
        None => (rule.severity, false),
    };
    let severity_policy = || {
        policy
            .severities
            .get(&severity)
            .map(|s| s.policy.clone())
            .expect("invariant: a compiled policy has all four severities")
    };
    let escalation = match (&rule.policy, severity_overridden) {
        (Some(p), false) => p.clone(),
        _ => severity_policy(),
    };

    Classification {
        rule: rule.name.clone(),
        severity,
        policy: escalation,
        fingerprint: fingerprint(rule, alert, &labels),
        labels,
        severity_overridden,
        group_window: rule.group_window,
    }
}

fn fingerprint(rule: &CompiledRule, alert: &Alert, labels: &Labels) -> Fingerprint {
    if rule.group_by.is_empty() {
        return alert.fingerprint.clone();
    }
    // A missing label groups as "" (as it matches), so the key is stable whether or not a source
    // sends the label.
    let selected: Labels = rule
        .group_by
        .iter()
        .map(|k| (k.clone(), labels.get(k).cloned().unwrap_or_default()))
        .collect();
    Fingerprint::from_labels(&rule.name, &selected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_dir;
    use crate::domain::{AlertStatus, Source};
    use chrono::{TimeZone, Utc};

    /// The shipped policy, wherever this file is compiled from.
    fn shipped() -> Policy {
        let dir = crate::config::tests_support::shipped_routing_dir();
        load_dir(&dir).unwrap_or_else(|e| panic!("{}", crate::config::format_errors(&e)))
    }

    fn alert(source: Source, pairs: &[(&str, &str)]) -> Alert {
        Alert {
            source,
            fingerprint: Fingerprint::parse("test/fp").unwrap(),
            status: AlertStatus::Firing,
            summary: "test".into(),
            description: None,
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            details: serde_json::Value::Null,
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap(),
            delivery_id: None,
            severity_override: None,
        }
    }

    #[test]
    fn shipped_policy_classifies_the_desks_alerts() {
        let p = shipped();
        // (source, labels as ingest sets them, expected severity, expected policy)
        type Case<'a> = (Source, &'a [(&'a str, &'a str)], Severity, &'a str);
        let cases: &[Case] = &[
            (
                Source::Sns,
                &[
                    ("source", "cloudwatch"),
                    ("kind", "route53_health_check"),
                    ("alarm_state", "ALARM"),
                    ("health_check_id", "abc"),
                ],
                Severity::Critical,
                "critical",
            ),
            (
                Source::Bot,
                &[("source", "bot"), ("kind", "trading_halted")],
                Severity::Critical,
                "critical",
            ),
            (
                Source::Bot,
                &[
                    ("source", "bot"),
                    ("kind", "exchange_error"),
                    ("exchange", "binance"),
                    ("error", "timeout"),
                ],
                Severity::High,
                "high",
            ),
            (
                Source::Bot,
                &[
                    ("source", "bot"),
                    ("kind", "exchange_error"),
                    ("exchange", "okx"),
                    ("error", "http_5xx"),
                ],
                Severity::High,
                "high",
            ),
            (
                Source::Bot,
                &[
                    ("source", "bot"),
                    ("kind", "exchange_error"),
                    ("exchange", "okx"),
                    ("error", "rate_limited"),
                ],
                Severity::Medium,
                "medium",
            ),
            (
                Source::Sns,
                &[
                    ("source", "cloudwatch"),
                    ("kind", "cloudwatch_alarm"),
                    ("alarm_state", "ALARM"),
                    ("alarm_name", "eks-node-cpu"),
                ],
                Severity::High,
                "high",
            ),
            (
                Source::Eventbridge,
                &[
                    ("source", "cloudwatch"),
                    ("kind", "cloudwatch_alarm"),
                    ("alarm_state", "INSUFFICIENT_DATA"),
                ],
                Severity::Low,
                "low",
            ),
            (
                Source::Bot,
                &[("source", "bot"), ("kind", "trading_resumed")],
                Severity::Low,
                "low",
            ),
            (
                Source::Bot,
                &[("source", "bot"), ("kind", "something_new")],
                Severity::Medium,
                "medium",
            ),
            // An exchange error the desk has no rule for falls through to the catch-all.
            (
                Source::Bot,
                &[
                    ("source", "bot"),
                    ("kind", "exchange_error"),
                    ("error", "insufficient_balance"),
                ],
                Severity::Medium,
                "medium",
            ),
        ];
        for (source, labels, severity, policy) in cases {
            let c = classify(&p, &alert(*source, labels));
            assert_eq!(c.severity, *severity, "{labels:?} matched {}", c.rule);
            assert_eq!(c.policy, *policy, "{labels:?}");
            assert!(!c.severity_overridden);
            assert_eq!(c.fingerprint.as_str(), "test/fp");
        }
    }

    #[test]
    fn a_severity_override_wins_over_the_rule() {
        let p = shipped();
        let mut a = alert(
            Source::Bot,
            &[
                ("source", "bot"),
                ("kind", "exchange_error"),
                ("error", "rate_limited"),
            ],
        );
        a.severity_override = Some(Severity::Critical);
        let c = classify(&p, &a);
        assert_eq!(c.severity, Severity::Critical);
        assert!(c.severity_overridden);
        assert_eq!(c.policy, "critical");
        assert_eq!(c.rule, "exchange-rate-limited");
    }

    #[test]
    fn a_regional_health_check_inhibits_that_regions_other_alarms_in_the_shipped_policy() {
        let p = shipped();
        let down = classify(
            &p,
            &alert(
                Source::Sns,
                &[
                    ("source", "cloudwatch"),
                    ("kind", "route53_health_check"),
                    ("alarm_name", "route53-hc-ap-southeast-1-api"),
                    ("region", "us-east-1"),
                ],
            ),
        );
        assert_eq!(down.rule, "route53-health-check-ap-southeast-1");
        assert_eq!(down.severity, Severity::Critical);
        assert_eq!(down.labels["region"], "ap-southeast-1");
        assert_eq!(down.labels["alarm_region"], "us-east-1");
        let alarm = |name: &str, region: &str| {
            classify(
                &p,
                &alert(
                    Source::Sns,
                    &[
                        ("source", "cloudwatch"),
                        ("kind", "cloudwatch_alarm"),
                        ("alarm_name", name),
                        ("region", region),
                    ],
                ),
            )
            .labels
        };
        assert!(p.inhibits(&down.labels, &alarm("eks-node-cpu", "ap-southeast-1")));
        assert!(p.inhibits(&down.labels, &alarm("rds-free-storage", "ap-southeast-1")));
        assert!(!p.inhibits(&down.labels, &alarm("rds-free-storage", "eu-west-1")));
        // A health check not tied to a region (the fixture's) stays critical but inhibits
        // nothing: its `region` is only where Route 53 keeps its alarms.
        let global = classify(
            &p,
            &alert(
                Source::Sns,
                &[
                    ("source", "cloudwatch"),
                    ("kind", "route53_health_check"),
                    ("alarm_name", "route53-hc-api-example-com-unhealthy"),
                    ("region", "us-east-1"),
                ],
            ),
        );
        assert_eq!(global.rule, "route53-health-check");
        assert!(!p.inhibits(&global.labels, &alarm("eks-node-cpu", "us-east-1")));
        // A missed heartbeat is named by its own rule.
        let hb = &p.heartbeats["trading-bot"];
        let mut missed = alert(Source::Heartbeat, &[]);
        missed.labels = hb.alert_labels();
        missed.severity_override = Some(hb.severity);
        let c = classify(&p, &missed);
        assert_eq!(
            (c.rule.as_str(), c.severity),
            ("heartbeat-missed", Severity::Critical)
        );
    }

    fn write_policy(rules: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("policy.yaml"),
            r#"
people:
  mei: { name: Mei Tan, phone: "+6591234567", email: mei@example.com }
channels:
  sms: { type: sms }
  email: { type: email }
policies:
  loud: { steps: [{ after: 0m, targets: [{ person: mei }], via: [sms, email] }] }
  quiet: { steps: [{ after: 0m, targets: [{ person: mei }], via: [email] }] }
severities:
  critical: { respond_within: 5m, policy: loud }
  high: { respond_within: 15m, policy: quiet }
  medium: { respond_within: 1h, policy: quiet }
  low: { respond_within: 4h, policy: quiet }
"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        dir
    }

    #[test]
    fn rules_add_labels_pick_policies_and_group_fingerprints() {
        let dir = write_policy(
            r#"
rules:
  - name: disk
    matchers: ['alarm_name=~"disk-.*"']
    severity: high
    policy: loud
    labels: { team: platform, alarm_name: overridden }
    group_by: [team, region]
    group_window: 2m
  - name: catch-all
    matchers: []
    severity: low
"#,
        );
        let p =
            load_dir(dir.path()).unwrap_or_else(|e| panic!("{}", crate::config::format_errors(&e)));
        let a = alert(Source::Sns, &[("alarm_name", "disk-a"), ("team", "db")]);
        let c = classify(&p, &a);
        assert_eq!(c.rule, "disk");
        assert_eq!(c.policy, "loud");
        assert_eq!(c.labels["team"], "platform");
        assert_eq!(c.labels["alarm_name"], "overridden");
        let want: Labels = [
            ("team".to_string(), "platform".to_string()),
            ("region".to_string(), String::new()),
        ]
        .into();
        assert_eq!(c.fingerprint, Fingerprint::from_labels("disk", &want));
        assert_eq!(c.group_window, Some(Duration::from_secs(120)));
        // Another alarm of the same group folds into the same incident.
        let b = alert(Source::Sns, &[("alarm_name", "disk-b")]);
        assert_eq!(classify(&p, &b).fingerprint, c.fingerprint);

        let other = classify(&p, &alert(Source::Sns, &[("alarm_name", "cpu")]));
        assert_eq!(
            (other.rule.as_str(), other.severity, other.policy.as_str()),
            ("catch-all", Severity::Low, "quiet")
        );
        assert_eq!(other.fingerprint.as_str(), "test/fp");
        assert_eq!(other.group_window, None);
    }
}

//! Heartbeats (dead-man switches) as the policy defines them. Pure.
//!
//! In: the instant of a heartbeat's last beat. Out: the instant after which its silence opens an
//! incident, and the labels and severity that incident carries. The check against the deadlines
//! runs in every scheduler pass (`escalate::heartbeat`), not here.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{Labels, Severity};

/// A compiled heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// Name, as in `POST /v1/heartbeats/<name>`: lower case letters, digits, `-` and `_`.
    pub name: String,
    /// Expected gap between beats; more than 0.
    pub interval: Duration,
    /// Slack on top of `interval` before the silence counts (network jitter, a slow loop).
    pub grace: Duration,
    /// Severity of the incident a missed heartbeat opens.
    pub severity: Severity,
    /// One line for the pager.
    pub summary: String,
    /// Labels from the policy (never `source`, `kind` or `heartbeat`; see [`Self::alert_labels`]).
    pub labels: Labels,
}

impl Heartbeat {
    /// The instant the heartbeat is overdue: `last_beat + interval + grace`. At that instant
    /// (not before) an incident opens unless another beat arrived.
    pub fn deadline(&self, last_beat: DateTime<Utc>) -> DateTime<Utc> {
        let wait = TimeDelta::from_std(self.interval + self.grace).unwrap_or(TimeDelta::MAX);
        last_beat
            .checked_add_signed(wait)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The labels of the alert a missed heartbeat raises: the policy's labels plus
    /// `source=heartbeat`, `kind=heartbeat_missed` and `heartbeat=<name>`, so rules, silences and
    /// inhibition can match it like any other alert.
    pub fn alert_labels(&self) -> Labels {
        let mut labels = self.labels.clone();
        labels.insert("source".into(), "heartbeat".into());
        labels.insert("kind".into(), "heartbeat_missed".into());
        labels.insert("heartbeat".into(), self.name.clone());
        labels
    }
}

/// Whether `s` is a heartbeat name: 1 to 64 of `[a-z0-9_-]`, starting with a letter or digit.
pub fn is_heartbeat_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Label names a heartbeat's `labels` may not set, because [`Heartbeat::alert_labels`] does.
pub const RESERVED_LABELS: [&str; 3] = ["source", "kind", "heartbeat"];

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> Heartbeat {
        Heartbeat {
            name: "trading-bot".into(),
            interval: Duration::from_secs(60),
            grace: Duration::from_secs(30),
            severity: Severity::Critical,
            summary: "no heartbeat".into(),
            labels: [("team".to_string(), "trading".to_string())].into(),
        }
    }

    #[test]
    fn the_deadline_is_interval_plus_grace_after_the_last_beat() {
        let last: DateTime<Utc> = "2026-11-28T23:59:30Z".parse().unwrap();
        // Across midnight and the month boundary alike.
        assert_eq!(
            bot().deadline(last),
            "2026-11-29T00:01:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            bot().deadline(DateTime::<Utc>::MAX_UTC),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn missed_heartbeats_carry_identifying_labels() {
        let l = bot().alert_labels();
        assert_eq!(l["source"], "heartbeat");
        assert_eq!(l["kind"], "heartbeat_missed");
        assert_eq!(l["heartbeat"], "trading-bot");
        assert_eq!(l["team"], "trading");
        assert!(is_heartbeat_name("trading-bot"));
        assert!(!is_heartbeat_name("Trading Bot"));
        assert!(!is_heartbeat_name("-bot"));
    }
}

//! The console's plain words: a timeline entry as a sentence, an origin as "via …", a span of
//! time as "3m" / "2h 5m".

use chrono::{DateTime, Utc};

use crate::incident::{DeliveryOutcome, Origin, TimelineEvent};

/// How an action reached vigil, as the timeline says it ("via web").
pub fn via(origin: Origin) -> &'static str {
    match origin {
        Origin::Api => "via API",
        Origin::Source => "by the alert source",
        Origin::Slack => "via Slack",
        Origin::Pagerduty => "via PagerDuty",
        Origin::EmailLink => "via an acknowledge link",
        Origin::Web => "via web",
        Origin::Peer => "on the peer",
        Origin::Sms => "via SMS",
    }
}

/// A duration in the largest two units: `45s`, `3m`, `2h 5m`, `4d 1h`.
pub fn span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A time as `2026-11-20 10:40 UTC`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nobody".into()
    } else {
        items.join(", ")
    }
}

/// One timeline entry in plain words.
pub fn describe(e: &TimelineEvent) -> String {
    use TimelineEvent as E;
    match e {
        E::Opened {
            rule,
            severity,
            policy,
            summary,
        } => format!(
            "Opened as {} by rule {rule}, escalating by policy {policy}: {summary}",
            severity.as_str()
        ),
        E::Drill {
            window,
            comment,
            author,
        } => format!("A drill (window {window}, by {author}: {comment}): every message says DRILL"),
        E::Alert {
            status, summary, ..
        } => format!("Alert ({}) folded in: {summary}", status.as_str()),
        E::StaleAlert { status, newer, .. } => format!(
            "An older alert ({}) was ignored: a newer state from {} applies",
            status.as_str(),
            utc(*newer)
        ),
        E::FutureTimestamp { claimed, used } => format!(
            "The sender dated the alert {} (in the future); vigil used {}",
            utc(*claimed),
            utc(*used)
        ),
        E::ReplayedAlert {
            status, sent_at, ..
        } => format!(
            "A replayed alert ({}) sent at {} was recorded and ignored",
            status.as_str(),
            utc(*sent_at)
        ),
        E::Reconciled {
            region,
            state,
            note,
            ..
        } => format!("Reconciliation found the alarm {state} in {region}: {note}"),
        E::DeadLetter { queue, note, .. } => format!("From dead-letter queue {queue}: {note}"),
        E::Escalated {
            loop_,
            step,
            targets,
            via,
            ..
        } => format!(
            "Step {} (pass {}) fired: paged {} via {}",
            step + 1,
            loop_ + 1,
            list(targets),
            list(via)
        ),
        E::Unreached {
            loop_,
            step,
            last_resort,
        } => format!(
            "Step {} (pass {}) reached no one; told {}",
            step + 1,
            loop_ + 1,
            list(last_resort)
        ),
        E::NoTarget { step, target } => {
            format!("Step {} found nobody for {target}", step + 1)
        }
        E::Exhausted => "The escalation chain ran out of steps".into(),
        E::Deferred { until, reason } => {
            format!("The first page waits until {} ({reason})", utc(*until))
        }
        E::Held { by, until } => format!("Held back by {by} until {}", utc(*until)),
        E::AckExpired => "The acknowledgement ran out: escalation starts again".into(),
        E::Reopened { resolved_at } => {
            format!("Reopened (it had resolved at {})", utc(*resolved_at))
        }
        E::Acknowledged { by, origin, until } => match until {
            Some(t) => format!("Acknowledged by {by} {} until {}", via(*origin), utc(*t)),
            None => format!("Acknowledged by {by} {}", via(*origin)),
        },
        E::Resolved { by, origin } => format!("Resolved by {by} {}", via(*origin)),
        E::Failover {
            from, to, people, ..
        } => format!(
            "{from} failed for good: paged {} directly via {}",
            list(people),
            list(to)
        ),
        E::PeerFired { loop_, step, by } => format!(
            "The peer ({by}) fired up to step {} (pass {})",
            step + 1,
            loop_ + 1
        ),
        E::PeerResent { pages, by } => {
            format!("The peer ({by}) went silent: {pages} undelivered pages sent from here")
        }
        E::Takeover { reason } => format!("The standby took over paging: {reason}"),
        E::HandBack { by } => format!("Paging handed back to the primary by {by}"),
        E::Delivery {
            channel,
            kind,
            target,
            attempt,
            outcome,
            detail,
            reference,
            ..
        } => {
            let to = target
                .as_deref()
                .map(|t| format!(" to {t}"))
                .unwrap_or_default();
            let outcome = match outcome {
                DeliveryOutcome::Sent => "sent",
                DeliveryOutcome::Retrying => "failed, retrying",
                DeliveryOutcome::Failed => "failed for good",
                DeliveryOutcome::Skipped => "skipped",
            };
            let mut s = format!("{kind} on {channel}{to}, attempt {attempt}: {outcome}");
            if !detail.is_empty() {
                s.push_str(&format!(" ({detail})"));
            }
            if let Some(r) = reference {
                s.push_str(&format!(", reference {r}"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_two_units() {
        let d = chrono::Duration::seconds;
        assert_eq!(span(d(42)), "42s");
        assert_eq!(span(d(180)), "3m");
        assert_eq!(span(d(7500)), "2h 5m");
        assert_eq!(span(d(7200)), "2h");
        assert_eq!(span(d(90_000)), "1d 1h");
        assert_eq!(span(d(-5)), "0s");
    }

    #[test]
    fn a_web_acknowledgement_says_who_and_via_web() {
        let e = TimelineEvent::Acknowledged {
            by: "mei".into(),
            origin: Origin::Web,
            until: None,
        };
        assert_eq!(describe(&e), "Acknowledged by mei via web");
    }
}

//! Is the desk's promise kept? The escalation matrix promises an acknowledgement within each
//! severity's `respond_within`; this measures every incident against it.
//!
//! - As it happens: when an acknowledgement or a resolve commits ([`answered_in`], called by
//!   `IncidentService::commit`), `vigil_time_to_ack_seconds{severity}` and
//!   `vigil_time_to_resolve_seconds{severity}` observe the time since the incident opened, and
//!   `vigil_promises_broken_total{severity}` counts an acknowledgement that came after the
//!   promise, or a resolve without one that came after it. Drills and what the peer mirrored
//!   (it counted on its side) are left out.
//! - Afterwards: [`ResponseReport`] (`GET /v1/reports/response`, `vigil report`, the console)
//!   over the incidents opened in a window, read newest first, at most
//!   [`REPORT_MAX_INCIDENTS`] (`truncated` says when the cap cut the window). Per severity: how
//!   many, acknowledged in time (count and share), p50/p90 time to acknowledge (nearest rank),
//!   how many escalated beyond their first step, who answered how often; the incidents that
//!   broke the promise (acknowledged late, resolved late without an acknowledgement, or still
//!   unacknowledged past it) with links; and the drills apart, by window, with the times the
//!   drill checklist records (first alarm → first page → acknowledged → resolved).
//!
//! Times count from `opened_at`, when vigil opened the incident (the start of its escalation).
//! An acknowledgement that ran out and was made again is observed again by the metrics; the
//! report reads the incident's current acknowledgement.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::service::{IncidentService, ServiceError};
use crate::config::Policy;
use crate::domain::Severity;
use crate::incident::{
    DeliveryOutcome, Incident, IncidentStatus, Origin, TimelineEntry, TimelineEvent,
};
use crate::metrics::Metrics;
use crate::store::Transition;

/// Most incidents one report reads (each with its timeline), newest first.
pub const REPORT_MAX_INCIDENTS: usize = 5_000;

/// An acknowledgement or resolve a transition commits, as the response metrics see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    pub severity: Severity,
    /// `true`: an acknowledgement; `false`: a resolve.
    pub ack: bool,
    /// Since the incident opened.
    pub seconds: f64,
    /// It breaks the promise: an acknowledgement after `respond_within`, or a resolve after it
    /// of an incident never acknowledged.
    pub broken: bool,
}

impl Answered {
    /// Observes it in the response histograms (and the broken-promise counter).
    pub fn observe(&self, metrics: &Metrics) {
        let severity = [("severity", self.severity.as_str())];
        let name = if self.ack {
            "vigil_time_to_ack_seconds"
        } else {
            "vigil_time_to_resolve_seconds"
        };
        metrics.histogram(name, &severity).record(self.seconds);
        if self.broken {
            metrics
                .counter("vigil_promises_broken_total", &severity)
                .increment(1);
        }
    }
}

/// The acknowledgements and resolves `tx` commits, of incidents that are not drills, made here
/// (not mirrored from the peer).
pub fn answered_in(tx: &Transition, policy: &Policy) -> Vec<Answered> {
    let Some(inc) = tx.incident.as_ref().filter(|i| i.drill.is_none()) else {
        return Vec::new();
    };
    let promise = promise_of(policy, inc.severity);
    let mut out = Vec::new();
    for e in &tx.timeline {
        let (ack, at) = match &e.event {
            TimelineEvent::Acknowledged { origin, .. } if *origin != Origin::Peer => {
                (true, inc.acknowledged.as_ref().map_or(e.at, |(_, at)| *at))
            }
            TimelineEvent::Resolved { origin, .. } if *origin != Origin::Peer => {
                (false, inc.resolved.as_ref().map_or(e.at, |(_, at)| *at))
            }
            _ => continue,
        };
        let seconds = secs(at - inc.opened_at);
        let late = promise.is_some_and(|p| seconds > p);
        out.push(Answered {
            severity: inc.severity,
            ack,
            seconds,
            broken: late && (ack || inc.acknowledged.is_none()),
        });
    }
    out
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds().max(0) as f64 / 1000.0
}

fn promise_of(policy: &Policy, severity: Severity) -> Option<f64> {
    policy
        .severities
        .get(&severity)
        .map(|s| s.respond_within.as_secs_f64())
}

/// The response report over a window. Serialized as the JSON of `GET /v1/reports/response`;
/// `vigil report` reads it back and prints [`ResponseReport::to_text`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseReport {
    /// Incidents opened at or after this...
    pub since: DateTime<Utc>,
    /// ...and before this.
    pub until: DateTime<Utc>,
    /// When the report was made.
    pub at: DateTime<Utc>,
    /// Incidents in the window that were read, drills included (of the newest
    /// [`REPORT_MAX_INCIDENTS`] in the store).
    pub read: usize,
    /// The cap was reached before the start of the window: older incidents are missing.
    pub truncated: bool,
    /// One row per severity, critical first (all four, with zeros when none opened).
    pub severities: Vec<SeverityRow>,
    /// The incidents that broke the promise, oldest first.
    pub broken: Vec<BrokenPromise>,
    /// Drill incidents, by window: kept out of everything above.
    pub drills: Vec<DrillWindowReport>,
}

/// How one severity did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityRow {
    pub severity: Severity,
    /// Its `respond_within` now, in seconds.
    pub respond_within_seconds: f64,
    /// Incidents opened in the window.
    pub incidents: u64,
    /// Of them, acknowledged at all.
    pub acknowledged: u64,
    /// Acknowledged within the promise.
    pub acked_in_time: u64,
    /// `acked_in_time` of `incidents`, in percent; `None` without incidents.
    pub acked_in_time_pct: Option<f64>,
    /// Time to acknowledge (nearest rank over the acknowledged), seconds.
    pub p50_ack_seconds: Option<f64>,
    pub p90_ack_seconds: Option<f64>,
    /// Incidents whose escalation went beyond its first step.
    pub escalated_beyond_first_step: u64,
    /// Who acknowledged, how often.
    pub answered_by: BTreeMap<String, u64>,
    /// Incidents that broke the promise.
    pub broken: u64,
}

/// How an incident broke the promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    /// Acknowledged after `respond_within`.
    AckedLate,
    /// Resolved after `respond_within`, never acknowledged.
    ResolvedLateWithoutAck,
    /// Open, unacknowledged, past `respond_within`.
    Unacknowledged,
}

/// One incident that broke the promise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokenPromise {
    pub incident: String,
    pub severity: Severity,
    pub summary: String,
    pub opened_at: DateTime<Utc>,
    pub breach: Breach,
    pub respond_within_seconds: f64,
    /// Time to acknowledge, when it was.
    pub ack_seconds: Option<f64>,
    /// Time to resolve, when it was.
    pub resolve_seconds: Option<f64>,
    /// `VIGIL_PUBLIC_URL`/v1/incidents/{id}, when a public URL is set.
    pub link: Option<String>,
}

/// The drill incidents of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillWindowReport {
    pub window: String,
    pub comment: Option<String>,
    pub incidents: Vec<DrillTimes>,
}

/// What the drill checklist records for one drill incident: first alarm → first page →
/// acknowledged → resolved, the instants and the seconds from the first alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillTimes {
    pub incident: String,
    pub severity: Severity,
    pub summary: String,
    /// The sender's time of the alert that opened it (else when vigil opened it).
    pub first_alarm: DateTime<Utc>,
    /// The first page a provider accepted.
    pub first_page: Option<DateTime<Utc>>,
    pub acknowledged: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved: Option<DateTime<Utc>>,
    pub first_page_seconds: Option<f64>,
    pub ack_seconds: Option<f64>,
    pub resolve_seconds: Option<f64>,
    /// Acknowledged within the severity's promise (counted from when vigil opened it).
    pub acked_in_time: bool,
    pub link: Option<String>,
}

/// Nearest-rank percentile `p` (0 < p ≤ 100) of `sorted`.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Builds the report from incidents (any order) with their timelines. Pure: `now` decides what
/// is still unacknowledged past its promise; `public_url` makes the links.
pub fn build(
    rows: &[(Incident, Vec<TimelineEntry>)],
    policy: &Policy,
    window: (DateTime<Utc>, DateTime<Utc>),
    now: DateTime<Utc>,
    public_url: Option<&str>,
    truncated: bool,
) -> ResponseReport {
    let link = |inc: &Incident| {
        public_url.map(|u| format!("{}/v1/incidents/{}", u.trim_end_matches('/'), inc.id))
    };
    let mut sev: BTreeMap<Severity, (SeverityRow, Vec<f64>)> = BTreeMap::new();
    for s in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ] {
        let row = SeverityRow {
            severity: s,
            respond_within_seconds: promise_of(policy, s).unwrap_or(0.0),
            incidents: 0,
            acknowledged: 0,
            acked_in_time: 0,
            acked_in_time_pct: None,
            p50_ack_seconds: None,
            p90_ack_seconds: None,
            escalated_beyond_first_step: 0,
            answered_by: BTreeMap::new(),
            broken: 0,
        };
        sev.insert(s, (row, Vec::new()));
    }
    let mut broken = Vec::new();
    let mut drills: BTreeMap<String, DrillWindowReport> = BTreeMap::new();
    let mut sorted: Vec<&(Incident, Vec<TimelineEntry>)> = rows.iter().collect();
    sorted.sort_by_key(|(i, _)| (i.opened_at, i.id));
    for (inc, timeline) in sorted {
        let promise = promise_of(policy, inc.severity).unwrap_or(0.0);
        let since_open = |at: DateTime<Utc>| secs(at - inc.opened_at);
        let ack = inc
            .acknowledged
            .as_ref()
            .map(|(a, at)| (a.who.clone(), *at));
        let ack_s = ack.as_ref().map(|(_, at)| since_open(*at));
        let resolve_s = inc.resolved.as_ref().map(|(_, at)| since_open(*at));
        let in_time = ack_s.is_some_and(|s| s <= promise);
        if let Some(window) = &inc.drill {
            let first_alarm = inc.opened_by.unwrap_or(inc.opened_at);
            let from_alarm = |at: DateTime<Utc>| secs(at - first_alarm);
            let first_page = first_page(timeline);
            let entry = drills
                .entry(window.clone())
                .or_insert_with(|| DrillWindowReport {
                    window: window.clone(),
                    comment: drill_comment(timeline),
                    incidents: Vec::new(),
                });
            entry.incidents.push(DrillTimes {
                incident: inc.id.to_string(),
                severity: inc.severity,
                summary: inc.summary.clone(),
                first_alarm,
                first_page,
                acknowledged: ack.as_ref().map(|(_, at)| *at),
                acknowledged_by: ack.as_ref().map(|(who, _)| who.clone()),
                resolved: inc.resolved.as_ref().map(|(_, at)| *at),
                first_page_seconds: first_page.map(from_alarm),
                ack_seconds: ack.as_ref().map(|(_, at)| from_alarm(*at)),
                resolve_seconds: inc.resolved.as_ref().map(|(_, at)| from_alarm(*at)),
                acked_in_time: in_time,
                link: link(inc),
            });
            continue;
        }
        let (row, ack_times) = sev
            .get_mut(&inc.severity)
            .expect("every severity has a row");
        row.incidents += 1;
        if let Some((who, _)) = &ack {
            row.acknowledged += 1;
            *row.answered_by.entry(who.clone()).or_default() += 1;
        }
        if in_time {
            row.acked_in_time += 1;
        }
        if let Some(s) = ack_s {
            ack_times.push(s);
        }
        if timeline.iter().any(|e| {
            matches!(e.event, TimelineEvent::Escalated { loop_, step, .. } if loop_ > 0 || step > 0)
        }) {
            row.escalated_beyond_first_step += 1;
        }
        let breach = match (ack_s, resolve_s) {
            (Some(a), _) if a > promise => Some(Breach::AckedLate),
            (Some(_), _) => None,
            (None, Some(r)) if r > promise => Some(Breach::ResolvedLateWithoutAck),
            (None, Some(_)) => None,
            (None, None)
                if inc.status == IncidentStatus::Triggered && since_open(now) > promise =>
            {
                Some(Breach::Unacknowledged)
            }
            (None, None) => None,
        };
        if let Some(breach) = breach {
            row.broken += 1;
            broken.push(BrokenPromise {
                incident: inc.id.to_string(),
                severity: inc.severity,
                summary: inc.summary.clone(),
                opened_at: inc.opened_at,
                breach,
                respond_within_seconds: promise,
                ack_seconds: ack_s,
                resolve_seconds: resolve_s,
                link: link(inc),
            });
        }
    }
    let severities = sev
        .into_values()
        .map(|(mut row, mut times)| {
            times.sort_by(f64::total_cmp);
            row.p50_ack_seconds = percentile(&times, 50.0);
            row.p90_ack_seconds = percentile(&times, 90.0);
            row.acked_in_time_pct = (row.incidents > 0)
                .then(|| 100.0 * row.acked_in_time as f64 / row.incidents as f64);
            row
        })
        .collect();
    ResponseReport {
        since: window.0,
        until: window.1,
        at: now,
        read: rows.len(),
        truncated,
        severities,
        broken,
        drills: drills.into_values().collect(),
    }
}

/// The first page a provider accepted: a sent trigger or escalate delivery.
fn first_page(timeline: &[TimelineEntry]) -> Option<DateTime<Utc>> {
    timeline.iter().find_map(|e| match &e.event {
        TimelineEvent::Delivery { kind, outcome, .. }
            if *outcome == DeliveryOutcome::Sent && (kind == "trigger" || kind == "escalate") =>
        {
            Some(e.at)
        }
        _ => None,
    })
}

fn drill_comment(timeline: &[TimelineEntry]) -> Option<String> {
    timeline.iter().find_map(|e| match &e.event {
        TimelineEvent::Drill { comment, .. } => Some(comment.clone()),
        _ => None,
    })
}

/// `90s`, `4m 30s`, `2h 5m`: a duration as people read it in a report.
fn human(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    let s = s.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

impl ResponseReport {
    /// The report as `vigil report` prints it.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Response against the matrix, incidents opened {} to {}{}",
            self.since.to_rfc3339(),
            self.until.to_rfc3339(),
            if self.truncated {
                format!(" (TRUNCATED: only the newest {} were read)", self.read)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "\n{:<9} {:>8} {:>9} {:>16} {:>9} {:>9} {:>10} {:>7}",
            "severity",
            "promise",
            "incidents",
            "acked in time",
            "p50 ack",
            "p90 ack",
            "escalated",
            "broken"
        );
        for r in &self.severities {
            let pct = r
                .acked_in_time_pct
                .map(|p| format!("{} ({p:.0}%)", r.acked_in_time))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{:<9} {:>8} {:>9} {:>16} {:>9} {:>9} {:>10} {:>7}",
                r.severity.as_str(),
                human(Some(r.respond_within_seconds)),
                r.incidents,
                pct,
                human(r.p50_ack_seconds),
                human(r.p90_ack_seconds),
                r.escalated_beyond_first_step,
                r.broken,
            );
        }
        let mut answered: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &self.severities {
            for (who, n) in &r.answered_by {
                *answered.entry(who).or_default() += n;
            }
        }
        if !answered.is_empty() {
            let _ = writeln!(out, "\nWho answered:");
            let mut by: Vec<_> = answered.into_iter().collect();
            by.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            for (who, n) in by {
                let _ = writeln!(out, "  {who}: {n}");
            }
        }
        if self.broken.is_empty() {
            let _ = writeln!(out, "\nNo promise broken.");
        } else {
            let _ = writeln!(out, "\nPromises broken ({}):", self.broken.len());
            for b in &self.broken {
                let what = match b.breach {
                    Breach::AckedLate => format!("acked after {}", human(b.ack_seconds)),
                    Breach::ResolvedLateWithoutAck => {
                        format!("resolved after {} without an ack", human(b.resolve_seconds))
                    }
                    Breach::Unacknowledged => "still unacknowledged".into(),
                };
                let _ = writeln!(
                    out,
                    "  {} {} {} (promise {}): {}  {}",
                    b.opened_at.format("%Y-%m-%d %H:%M"),
                    b.severity.as_str(),
                    what,
                    human(Some(b.respond_within_seconds)),
                    b.summary,
                    b.link.as_deref().unwrap_or(&b.incident),
                );
            }
        }
        for d in &self.drills {
            let _ = writeln!(
                out,
                "\nDrill {}{}:",
                d.window,
                d.comment
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            );
            for t in &d.incidents {
                let _ = writeln!(
                    out,
                    "  {} {}: first alarm {} -> first page +{} -> ack +{}{} -> resolved +{}  {}",
                    t.severity.as_str(),
                    t.summary,
                    t.first_alarm.to_rfc3339(),
                    human(t.first_page_seconds),
                    human(t.ack_seconds),
                    t.acknowledged_by
                        .as_deref()
                        .map(|w| format!(" by {w}"))
                        .unwrap_or_default(),
                    human(t.resolve_seconds),
                    t.link.as_deref().unwrap_or(&t.incident),
                );
            }
        }
        out
    }
}

impl IncidentService {
    /// The response report over the incidents opened in `[since, until)`, read newest first,
    /// at most [`REPORT_MAX_INCIDENTS`] with their timelines.
    pub async fn response_report(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        public_url: Option<&str>,
    ) -> Result<ResponseReport, ServiceError> {
        let now = self.now();
        let all = self.store().incidents(None, REPORT_MAX_INCIDENTS).await?;
        // Newest first: the cap cut the window when the oldest read is still inside it.
        let truncated =
            all.len() == REPORT_MAX_INCIDENTS && all.last().is_some_and(|i| i.opened_at >= since);
        let mut rows = Vec::new();
        for inc in all {
            if inc.opened_at < since || inc.opened_at >= until {
                continue;
            }
            let timeline = self.store().timeline(inc.id).await?;
            rows.push((inc, timeline));
        }
        let policy = self.policy().current();
        Ok(build(
            &rows,
            &policy,
            (since, until),
            now,
            public_url,
            truncated,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0];
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 90.0), Some(90.0));
        assert_eq!(percentile(&[60.0, 600.0], 50.0), Some(60.0));
        assert_eq!(percentile(&[60.0, 600.0], 90.0), Some(600.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(Some(90.0)), "1m 30s");
        assert_eq!(human(Some(300.0)), "5m");
        assert_eq!(human(Some(14400.0)), "4h");
        assert_eq!(human(Some(3900.0)), "1h 5m");
        assert_eq!(human(None), "-");
    }
}

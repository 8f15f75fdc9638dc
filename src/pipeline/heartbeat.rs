//! The heartbeat checker (dead-man switches, DESIGN §3): a heartbeat that has not beaten by its
//! deadline (`last beat + interval + grace`) opens an incident, which the next beat resolves
//! (`POST /v1/heartbeats/{name}`). Run once per scheduler pass.
//!
//! In: the policy's heartbeats, their last beats (store records, see `pipeline::extras`), `now`.
//! Out: a firing `Alert` per overdue heartbeat, ingested like any other, so rules, silences and
//! escalation apply to it.
//!
//! One incident per outage: once the alert for a silence has been raised (the fingerprint's last
//! state change is at or after the deadline), it is not raised again until a new beat moves the
//! deadline, even if an operator resolves the incident while the sender is still silent.

use chrono::{DateTime, Utc};

use super::{IncidentService, IngestOutcome, ServiceError, extras};
use crate::classify::classify;
use crate::config::{Heartbeat, Policy};
use crate::domain::{Alert, AlertStatus, Fingerprint, Source};

/// An instant as RFC 3339 in UTC with `Z`, as chrono's serde writes it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The fingerprint of heartbeat `name`'s alerts: `heartbeat/<name>`.
pub fn fingerprint(name: &str) -> Fingerprint {
    // Compiled heartbeat names are 1 to 64 of [a-z0-9_-], so this is always a valid fingerprint.
    Fingerprint::parse(format!("heartbeat/{name}"))
        .expect("a compiled heartbeat name makes a valid fingerprint")
}

/// The alert of heartbeat `hb` with `status`, at `at`. `last` is its last beat (for the firing
/// alert's summary and details).
pub fn alert(hb: &Heartbeat, status: AlertStatus, last: DateTime<Utc>, at: DateTime<Utc>) -> Alert {
    let summary = if hb.summary.trim().is_empty() {
        format!(
            "Heartbeat {} missed: no beat since {}",
            hb.name,
            rfc3339(last)
        )
    } else {
        hb.summary.clone()
    };
    Alert {
        source: Source::Heartbeat,
        fingerprint: fingerprint(&hb.name),
        status,
        summary,
        description: None,
        labels: hb.alert_labels(),
        details: serde_json::json!({
            "last_beat": rfc3339(last),
            "interval": humantime::format_duration(hb.interval).to_string(),
            "grace": humantime::format_duration(hb.grace).to_string(),
        }),
        occurred_at: at,
        delivery_id: None,
        severity_override: Some(hb.severity),
    }
}

/// Opens an incident for every heartbeat of `policy` that is overdue at `now` and has none yet.
/// A heartbeat that never beat gets `now` as its first beat, so a fresh deployment (or a
/// heartbeat just added to `routing/`) does not page at once. Returns how many incidents opened.
pub async fn check(
    service: &IncidentService,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<usize, ServiceError> {
    let store = service.store().as_ref();
    let mut opened = 0;
    for hb in policy.heartbeats.values() {
        let Some(last) = extras::last_beat(store, &hb.name).await? else {
            extras::record_beat(store, &hb.name, now).await?;
            tracing::info!(heartbeat = %hb.name, "Heartbeat has no beat yet; counting from now.");
            continue;
        };
        let deadline = hb.deadline(last);
        if now < deadline {
            continue;
        }
        let missed = alert(hb, AlertStatus::Firing, last, deadline);
        // The incident's key after classification (a rule may group it under another).
        let fp = classify(policy, &missed).fingerprint;
        let state = store.fingerprint(&fp).await?;
        if state.open.is_some() || state.last_change.is_some_and(|c| c >= deadline) {
            continue;
        }
        tracing::warn!(heartbeat = %hb.name, last_beat = %last, deadline = %deadline, "Heartbeat missed.");
        if let IngestOutcome::Opened(id) = service.ingest(&missed).await? {
            tracing::info!(heartbeat = %hb.name, incident.id = %id, "Heartbeat incident opened.");
            opened += 1;
        }
    }
    Ok(opened)
}

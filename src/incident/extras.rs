//! Operator-made records the incident flow consults, kept in the store (so every replica sees
//! them): on-call overrides and silences made through the API, and heartbeats' last beats.
//! Records that no longer parse (a schema change, a person removed) are skipped with a warning,
//! never fatal.

use chrono::{DateTime, TimeZone, Utc};

use crate::config::{Override, Silence};
use crate::store::{Store, StoreError};

/// Record kinds.
pub const OVERRIDES: &str = "override";
pub const SILENCES: &str = "silence";
pub const HEARTBEATS: &str = "heartbeat";
/// fingerprint → the incident that last resolved for it, and when (flap detection).
pub const RESOLVED: &str = "resolved";

/// The incident that last resolved for a fingerprint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LastResolved {
    pub incident: crate::domain::IncidentId,
    pub at: DateTime<Utc>,
}

async fn load<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    kind: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut out = Vec::new();
    for (id, bytes) in store.records(kind).await? {
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => out.push((id, v)),
            Err(e) => tracing::warn!(kind, id = %id, error.message = %e, "Stored record skipped."),
        }
    }
    Ok(out)
}

/// API overrides that have not ended by `now`, oldest start first (later ones win ties).
pub async fn overrides(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Override)>, StoreError> {
    let mut all: Vec<(String, Override)> = load(store, OVERRIDES).await?;
    all.retain(|(_, o)| o.end > now);
    all.sort_by_key(|(id, o)| (o.start, id.clone()));
    Ok(all)
}

/// API silences that have not ended by `now`.
pub async fn silences(store: &dyn Store, now: DateTime<Utc>) -> Result<Vec<Silence>, StoreError> {
    let mut all: Vec<Silence> = load::<Silence>(store, SILENCES)
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    all.retain(|s| s.end > now);
    Ok(all)
}

/// The last beat of heartbeat `name`, if one was recorded.
pub async fn last_beat(store: &dyn Store, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(store
        .records(HEARTBEATS)
        .await?
        .into_iter()
        .find(|(id, _)| id == name)
        .and_then(|(_, v)| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single()))
}

/// Records a beat of heartbeat `name` at `at`.
pub async fn record_beat(
    store: &dyn Store,
    name: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    store
        .put_record(
            HEARTBEATS,
            name,
            at.timestamp_millis().to_string().into_bytes(),
        )
        .await
}

/// incident id → an incident whose current escalation step reached no one
/// (`Incident::unreached`), listed so that readiness and the metric need not read every open
/// incident. A listing that no longer holds (acknowledged, resolved, a later step fired) is
/// dropped by the next [`unreached`] read.
pub const UNREACHED: &str = "unreached";

/// Lists `inc` as unreached (after the transition that marked it committed).
pub async fn list_unreached(
    store: &dyn Store,
    inc: &crate::incident::Incident,
) -> Result<(), StoreError> {
    store
        .put_record(UNREACHED, &inc.id.to_string(), inc.severity.as_str().into())
        .await
}

/// The incidents whose current step reached no one and that nobody has taken yet.
pub async fn unreached(store: &dyn Store) -> Result<Vec<crate::incident::Incident>, StoreError> {
    let mut out = Vec::new();
    for (id, _) in store.records(UNREACHED).await? {
        let inc = match id.parse::<crate::domain::IncidentId>() {
            Ok(iid) => store.incident(iid).await?,
            Err(_) => None,
        };
        match inc {
            Some(inc)
                if inc.status == crate::incident::IncidentStatus::Triggered
                    && inc.unreached.is_some() =>
            {
                out.push(inc)
            }
            _ => {
                store.delete_record(UNREACHED, &id).await?;
            }
        }
    }
    Ok(out)
}

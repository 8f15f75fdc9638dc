//! Operator-made records the incident flow consults, kept in the store (so every replica sees
//! them): on-call overrides and silences made through the API, and heartbeats' last beats.
//! Records that no longer parse (a schema change, a person removed) are skipped with a warning,
//! never fatal.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// API silences, compiled once. The store keeps each silence as the text it was written in (a
/// `SilenceSpec` as JSON); this keeps the compiled silence by id with the sha256 of that text,
/// and compiles a record only when it is new or its text changed (a record that does not parse
/// is remembered too, so it is warned about once rather than on every read).
#[derive(Default)]
pub struct SilenceCache {
    compiled: std::sync::Mutex<Compiled>,
    compilations: AtomicUsize,
}

type Digest = [u8; 32];
/// id → (sha256 of the stored text, the compiled silence or `None` when it does not parse).
type Compiled = HashMap<String, (Digest, Option<Arc<Silence>>)>;

fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

impl SilenceCache {
    /// API silences that have not ended by `now`, reading the store and compiling only what
    /// changed since the last read.
    pub async fn read(
        &self,
        store: &dyn Store,
        now: DateTime<Utc>,
    ) -> Result<Vec<Arc<Silence>>, StoreError> {
        let records = store.records(SILENCES).await?;
        let digests: Vec<Digest> = records.iter().map(|(_, b)| digest(b)).collect();
        let stale: Vec<usize> = {
            let compiled = self.lock();
            (0..records.len())
                .filter(|&i| {
                    compiled
                        .get(&records[i].0)
                        .is_none_or(|(d, _)| *d != digests[i])
                })
                .collect()
        };
        // Compiled without the lock held (regexes take a moment).
        let fresh: Vec<(usize, Option<Arc<Silence>>)> = stale
            .into_iter()
            .map(|i| {
                let (id, bytes) = &records[i];
                self.compilations.fetch_add(1, Ordering::Relaxed);
                let parsed = serde_json::from_slice::<Silence>(bytes)
                    .map_err(|e| {
                        tracing::warn!(kind = SILENCES, id = %id, error.message = %e, "Stored record skipped.");
                    })
                    .ok()
                    .map(Arc::new);
                (i, parsed)
            })
            .collect();
        let mut compiled = self.lock();
        for (i, parsed) in fresh {
            compiled.insert(records[i].0.clone(), (digests[i], parsed));
        }
        let ids: std::collections::HashSet<&str> =
            records.iter().map(|(id, _)| id.as_str()).collect();
        compiled.retain(|id, _| ids.contains(id.as_str()));
        Ok(records
            .iter()
            .filter_map(|(id, _)| compiled.get(id).and_then(|(_, s)| s.clone()))
            .filter(|s| s.end > now)
            .collect())
    }

    /// How many stored records have been compiled so far.
    pub fn compilations(&self) -> usize {
        self.compilations.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Compiled> {
        // Single inserts and a retain: a panic elsewhere cannot leave the map inconsistent.
        self.compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SilenceSpec;
    use crate::store::EmbeddedStore;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn record(id: &str, matcher: &str, end: &str) -> Vec<u8> {
        serde_json::to_vec(&SilenceSpec {
            id: Some(id.into()),
            matchers: vec![matcher.into()],
            start: at("2026-11-28T01:00:00Z"),
            end: at(end),
            author: "mei".into(),
            comment: "maintenance".into(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn reading_silences_again_does_not_recompile_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let now = at("2026-11-28T02:00:00Z");
        let end = "2026-11-28T03:00:00Z";
        store
            .put_record(SILENCES, "a", record("a", r#"alarm_name=~"rds-.*""#, end))
            .await
            .unwrap();
        store
            .put_record(SILENCES, "b", record("b", r#"region="x""#, end))
            .await
            .unwrap();
        let cache = SilenceCache::default();
        let first = cache.read(&store, now).await.unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(cache.compilations(), 2);
        // The hot path reads again (every second, on every new incident): nothing is compiled,
        // and the very same compiled silences come back.
        for _ in 0..5 {
            let again = cache.read(&store, now).await.unwrap();
            assert_eq!(cache.compilations(), 2);
            assert!(first.iter().zip(&again).all(|(x, y)| Arc::ptr_eq(x, y)));
        }
        // A changed record is compiled again, and only that one; a deleted one is forgotten.
        store
            .put_record(SILENCES, "a", record("a", r#"alarm_name=~"eks-.*""#, end))
            .await
            .unwrap();
        store.delete_record(SILENCES, "b").await.unwrap();
        let changed = cache.read(&store, now).await.unwrap();
        assert_eq!(cache.compilations(), 3);
        assert_eq!(changed.len(), 1);
        assert_eq!(
            changed[0].matchers[0].to_string(),
            r#"alarm_name=~"eks-.*""#
        );
        // A record that no longer parses is skipped, and not re-parsed on every read.
        store
            .put_record(SILENCES, "c", b"{\"matchers\": []}".to_vec())
            .await
            .unwrap();
        assert_eq!(cache.read(&store, now).await.unwrap().len(), 1);
        assert_eq!(cache.read(&store, now).await.unwrap().len(), 1);
        assert_eq!(cache.compilations(), 4);
        // Ended silences are not returned.
        assert!(cache.read(&store, at(end)).await.unwrap().is_empty());
    }
}

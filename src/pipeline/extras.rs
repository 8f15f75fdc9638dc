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
/// Drill windows made through the API (`POST /v1/drills`): stored as silences are.
pub const DRILLS: &str = "drill";
/// Most API drill windows that have not ended; `POST /v1/drills` beyond it answers 422.
pub const MAX_API_DRILLS: usize = 100;
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

/// API drill windows that have not ended by `now`, oldest start first, with their ids.
pub async fn drills(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<(String, Silence)>, StoreError> {
    let mut all: Vec<(String, Silence)> = load(store, DRILLS).await?;
    all.retain(|(_, d)| d.end > now);
    all.sort_by(|(a, x), (b, y)| (x.start, a).cmp(&(y.start, b)));
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

// The unreached list is kept by the store (`store::unreached`): the notify worker writes it too.
pub use crate::store::unreached::{UNREACHED, list_unreached, unreached};

// ---- operator records mirrored between a primary and its standby ---------------------------

/// Record kind of the stamps: id `<kind>/<id>` of an API silence or override, JSON
/// `{"at": RFC 3339 ms, "deleted": bool}`: when the record was last written or deleted, by the
/// writer's clock. The warm standby's peer feed carries them, so that the newer change wins on
/// both sides ([`apply_remote_records`]).
pub const STAMPS: &str = "stamp";
/// The operator record kinds the peer feed mirrors.
pub const MIRRORED: [&str; 3] = [SILENCES, OVERRIDES, DRILLS];
/// Most overrides that have not ended one feed carries (newest change first).
pub const FEED_OVERRIDES: usize = 1_000;
/// Most tombstones (deletes) one feed carries (newest first).
pub const FEED_TOMBSTONES: usize = 1_000;
/// Most entries a side applies from one feed: what a peer within its bounds sends
/// (`MAX_API_SILENCES` silences that have not ended + [`FEED_OVERRIDES`] + [`FEED_TOMBSTONES`]).
pub const FEED_RECORDS: usize =
    crate::config::MAX_API_SILENCES + FEED_OVERRIDES + MAX_API_DRILLS + FEED_TOMBSTONES;
/// Tombstones, and stamps of records that no longer exist (ended and pruned), are dropped this
/// long after their change (the retention pass): a peer cut off for longer may bring a deleted
/// record back.
pub const STAMP_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Serialises this process's writes of mirrored records (the API's and the peer round's), so a
/// change made here while a round applies the peer's is not overwritten by an older one.
static OPERATOR_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    #[serde(with = "crate::domain::millis")]
    at: DateTime<Utc>,
    deleted: bool,
}

use crate::domain::millis::truncate as to_millis;

fn stamp_id(kind: &str, id: &str) -> String {
    format!("{kind}/{id}")
}

async fn write_stamp(
    store: &dyn Store,
    kind: &str,
    id: &str,
    stamp: Stamp,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(&stamp).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put_record(STAMPS, &stamp_id(kind, id), bytes).await
}

/// Every stamp, by `<kind>/<id>`; unreadable ones are skipped (they count as missing).
async fn stamps(store: &dyn Store) -> Result<HashMap<String, Stamp>, StoreError> {
    Ok(load::<Stamp>(store, STAMPS).await?.into_iter().collect())
}

/// Writes an API silence or override (`kind`) and its stamp at `at`.
pub async fn put_operator_record(
    store: &dyn Store,
    kind: &str,
    id: &str,
    bytes: Vec<u8>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let _one = OPERATOR_WRITES.lock().await;
    store.put_record(kind, id, bytes).await?;
    let stamp = Stamp {
        at: to_millis(at),
        deleted: false,
    };
    write_stamp(store, kind, id, stamp).await
}

/// Deletes an API silence or override and leaves a tombstone at `at`; `false` (and no
/// tombstone) when there was none.
pub async fn delete_operator_record(
    store: &dyn Store,
    kind: &str,
    id: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let _one = OPERATOR_WRITES.lock().await;
    if !store.delete_record(kind, id).await? {
        return Ok(false);
    }
    let stamp = Stamp {
        at: to_millis(at),
        deleted: true,
    };
    write_stamp(store, kind, id, stamp).await?;
    Ok(true)
}

/// One API silence or override as the peer feed carries it: the stored record (`None`: deleted)
/// and when it last changed (`None`: written before stamps existed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordSync {
    pub kind: String,
    pub id: String,
    pub at: Option<DateTime<Utc>>,
    pub value: Option<serde_json::Value>,
}

/// What this side tells its peer about its API silences and overrides: those that have not
/// ended by `now` (an ended one ends on the peer too, and is pruned on each side), each with its
/// stamp, newest change first and at most `MAX_API_SILENCES` silences and [`FEED_OVERRIDES`]
/// overrides; then the tombstones of deleted ones, newest first, at most [`FEED_TOMBSTONES`].
pub async fn sync_records(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<RecordSync>, StoreError> {
    let stamps = stamps(store).await?;
    let mut out = Vec::new();
    let mut live = std::collections::HashSet::new();
    for (kind, cap) in [
        (SILENCES, crate::config::MAX_API_SILENCES),
        (OVERRIDES, FEED_OVERRIDES),
        (DRILLS, MAX_API_DRILLS),
    ] {
        let mut these = Vec::new();
        for (id, bytes) in store.records(kind).await? {
            live.insert(stamp_id(kind, &id));
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let ended = value
                .get("end")
                .and_then(|e| serde_json::from_value::<DateTime<Utc>>(e.clone()).ok())
                .is_none_or(|end| end <= now);
            if ended {
                continue;
            }
            // A stamp that says deleted next to a record that exists: the record was written
            // again and its stamp was not (a crash in between); its time is unknown.
            let at = stamps
                .get(&stamp_id(kind, &id))
                .filter(|s| !s.deleted)
                .map(|s| s.at);
            these.push(RecordSync {
                kind: kind.to_string(),
                id,
                at,
                value: Some(value),
            });
        }
        these.sort_by_key(|r| std::cmp::Reverse(r.at));
        if these.len() > cap {
            tracing::warn!(
                kind,
                records = these.len(),
                cap,
                "The peer feed carries only the newest records of this kind."
            );
            these.truncate(cap);
        }
        out.extend(these);
    }
    let mut tombstones: Vec<RecordSync> = stamps
        .into_iter()
        .filter(|(key, s)| s.deleted && !live.contains(key))
        .filter_map(|(key, s)| {
            let (kind, id) = key.split_once('/')?;
            MIRRORED.contains(&kind).then(|| RecordSync {
                kind: kind.to_string(),
                id: id.to_string(),
                at: Some(s.at),
                value: None,
            })
        })
        .collect();
    tombstones.sort_by_key(|r| std::cmp::Reverse(r.at));
    tombstones.truncate(FEED_TOMBSTONES);
    out.extend(tombstones);
    Ok(out)
}

/// Why a remote entry is not applied, whatever its time: not a mirrored kind, an id the API
/// would not make, or a record that does not read as its kind.
fn refused(remote: &RecordSync) -> Option<String> {
    if !MIRRORED.contains(&remote.kind.as_str()) {
        return Some(format!("kind {:?} is not mirrored", remote.kind));
    }
    if remote.id.is_empty() || remote.id.len() > 128 || remote.id.chars().any(char::is_control) {
        return Some("an id is 1 to 128 characters without control characters".into());
    }
    let value = remote.value.as_ref()?;
    let read = if remote.kind == SILENCES || remote.kind == DRILLS {
        serde_json::from_value::<Silence>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(|s| {
                (s.id == remote.id)
                    .then_some(())
                    .ok_or_else(|| format!("the silence's id is {:?}", s.id))
            })
    } else {
        serde_json::from_value::<Override>(value.clone())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    read.err()
}

/// Applies the peer's API silences and overrides ([`sync_records`]): each entry only when it is
/// newer than this side's stamp of the same record (no stamp counts as oldest); an entry without
/// a stamp (written before stamps existed) only when this side has neither the record nor a
/// tombstone for it. Applying writes the record (or deletes it) and the stamp with the peer's
/// time, so the next feed does not bounce it back. A record the peer does not list is never
/// deleted (it may have been made here since the peer's feed was read). At most
/// [`FEED_RECORDS`] entries are considered. Returns how many records were written or deleted;
/// each is logged (kind, id).
pub async fn apply_remote_records(
    store: &dyn Store,
    remote: &[RecordSync],
) -> Result<usize, StoreError> {
    if remote.is_empty() {
        return Ok(0);
    }
    let _one = OPERATOR_WRITES.lock().await;
    let stamps = stamps(store).await?;
    let mut changed = 0;
    for r in remote.iter().take(FEED_RECORDS) {
        if let Some(why) = refused(r) {
            tracing::warn!(kind = %r.kind, id = %r.id, reason = %why, "A record from the peer was not mirrored.");
            continue;
        }
        let local = stamps.get(&stamp_id(&r.kind, &r.id)).copied();
        let newer = match (r.at, local) {
            (Some(at), Some(l)) => to_millis(at) > l.at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => store.get_record(&r.kind, &r.id).await?.is_none(),
        };
        if !newer {
            continue;
        }
        let touched = match &r.value {
            Some(value) => {
                let bytes =
                    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                store.put_record(&r.kind, &r.id, bytes).await?;
                true
            }
            None => store.delete_record(&r.kind, &r.id).await?,
        };
        if let Some(at) = r.at {
            let stamp = Stamp {
                at: to_millis(at),
                deleted: r.value.is_none(),
            };
            write_stamp(store, &r.kind, &r.id, stamp).await?;
        }
        if touched {
            changed += 1;
            tracing::info!(kind = %r.kind, id = %r.id, deleted = r.value.is_none(), "Mirrored an operator record from the peer.");
        }
    }
    Ok(changed)
}

/// Drops tombstones, and stamps of records that no longer exist, whose change is older than
/// `before`: at most `limit`. Returns how many went and whether the limit was reached.
pub async fn prune_stamps(
    store: &dyn Store,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<(usize, bool), StoreError> {
    let _one = OPERATOR_WRITES.lock().await;
    let mut live = std::collections::HashSet::new();
    for kind in MIRRORED {
        for (id, _) in store.records(kind).await? {
            live.insert(stamp_id(kind, &id));
        }
    }
    let mut gone = 0;
    for (key, bytes) in store.records(STAMPS).await? {
        if live.contains(&key) {
            continue;
        }
        // An unreadable stamp counts as missing everywhere: it goes too.
        let old = serde_json::from_slice::<Stamp>(&bytes).map_or(true, |s| s.at < before);
        if !old {
            continue;
        }
        if gone >= limit {
            return Ok((gone, true));
        }
        if store.delete_record(STAMPS, &key).await? {
            gone += 1;
        }
    }
    Ok((gone, false))
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

#[cfg(test)]
mod mirror_tests {
    use super::*;
    use crate::store::EmbeddedStore;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-11-28T02:00:00Z";

    fn silence(id: &str, comment: &str) -> Vec<u8> {
        serde_json::to_vec(&crate::config::SilenceSpec {
            id: Some(id.into()),
            matchers: vec![r#"region="x""#.into()],
            start: at("2026-11-28T01:00:00Z"),
            end: at("2026-11-28T05:00:00Z"),
            author: "mei".into(),
            comment: comment.into(),
        })
        .unwrap()
    }

    fn comment(store_bytes: Option<Vec<u8>>) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&store_bytes?).ok()?;
        v["comment"].as_str().map(str::to_string)
    }

    /// A store, and its directory (kept until the test ends).
    struct Side(EmbeddedStore, #[allow(dead_code)] tempfile::TempDir);

    fn side() -> Side {
        let dir = tempfile::tempdir().unwrap();
        Side(EmbeddedStore::open(dir.path()).unwrap(), dir)
    }

    async fn feed(side: &Side) -> Vec<RecordSync> {
        sync_records(&side.0, at(NOW)).await.unwrap()
    }

    #[tokio::test]
    async fn the_newer_change_wins_whichever_side_made_it() {
        let (a, b) = (side(), side());
        put_operator_record(
            &a.0,
            SILENCES,
            "m",
            silence("m", "first"),
            at("2026-11-28T01:10:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(
            apply_remote_records(&b.0, &feed(&a).await).await.unwrap(),
            1
        );
        assert_eq!(
            comment(b.0.get_record(SILENCES, "m").await.unwrap()).as_deref(),
            Some("first")
        );
        // Replaced on b later: a takes b's, and b does not take a's older one back.
        put_operator_record(
            &b.0,
            SILENCES,
            "m",
            silence("m", "second"),
            at("2026-11-28T01:20:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(
            apply_remote_records(&b.0, &feed(&a).await).await.unwrap(),
            0
        );
        assert_eq!(
            apply_remote_records(&a.0, &feed(&b).await).await.unwrap(),
            1
        );
        assert_eq!(
            comment(a.0.get_record(SILENCES, "m").await.unwrap()).as_deref(),
            Some("second")
        );
        assert_eq!(feed(&a).await, feed(&b).await, "both sides say the same");
    }

    #[tokio::test]
    async fn a_tombstone_newer_than_the_put_deletes_and_an_older_put_does_not_resurrect() {
        let (a, b) = (side(), side());
        put_operator_record(
            &a.0,
            OVERRIDES,
            "01J0",
            serde_json::to_vec(&Override {
                schedule: "primary".into(),
                person: "cto".into(),
                start: at("2026-11-28T01:00:00Z"),
                end: at("2026-11-28T05:00:00Z"),
                author: Some("mei".into()),
            })
            .unwrap(),
            at("2026-11-28T01:10:00Z"),
        )
        .await
        .unwrap();
        let made = feed(&a).await;
        apply_remote_records(&b.0, &made).await.unwrap();
        assert!(b.0.get_record(OVERRIDES, "01J0").await.unwrap().is_some());
        assert!(
            delete_operator_record(&b.0, OVERRIDES, "01J0", at("2026-11-28T01:30:00Z"))
                .await
                .unwrap()
        );
        assert!(
            !delete_operator_record(&b.0, OVERRIDES, "01J0", at("2026-11-28T01:31:00Z"))
                .await
                .unwrap()
        );
        // b's tombstone is newer than a's put: a deletes.
        assert_eq!(
            apply_remote_records(&a.0, &feed(&b).await).await.unwrap(),
            1
        );
        assert!(a.0.get_record(OVERRIDES, "01J0").await.unwrap().is_none());
        // a feed read before the delete (the older put) arrives late: nothing comes back.
        assert_eq!(apply_remote_records(&b.0, &made).await.unwrap(), 0);
        assert!(b.0.get_record(OVERRIDES, "01J0").await.unwrap().is_none());
        // Either side's tombstone travels, not the record.
        assert!(feed(&a).await.iter().all(|r| r.value.is_none()));
    }

    #[tokio::test]
    async fn an_entry_without_a_stamp_only_fills_a_gap() {
        let (a, b) = (side(), side());
        // Written before stamps existed, on a only.
        a.0.put_record(SILENCES, "old", silence("old", "from a"))
            .await
            .unwrap();
        let from_a = feed(&a).await;
        assert_eq!(from_a[0].at, None);
        assert_eq!(apply_remote_records(&b.0, &from_a).await.unwrap(), 1);
        assert_eq!(
            comment(b.0.get_record(SILENCES, "old").await.unwrap()).as_deref(),
            Some("from a")
        );
        // b has its own (stamped) version: a stampless one does not replace it...
        put_operator_record(
            &b.0,
            SILENCES,
            "old",
            silence("old", "from b"),
            at("2026-11-28T01:40:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(apply_remote_records(&b.0, &from_a).await.unwrap(), 0);
        // ...nor revive one b deleted.
        delete_operator_record(&b.0, SILENCES, "old", at("2026-11-28T01:45:00Z"))
            .await
            .unwrap();
        assert_eq!(apply_remote_records(&b.0, &from_a).await.unwrap(), 0);
        assert!(b.0.get_record(SILENCES, "old").await.unwrap().is_none());
        // A stamped change beats a stampless record: a learns the delete.
        assert_eq!(
            apply_remote_records(&a.0, &feed(&b).await).await.unwrap(),
            1
        );
        assert!(a.0.get_record(SILENCES, "old").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn applying_a_sides_own_feed_back_changes_nothing_and_absent_records_stay() {
        let (a, b) = (side(), side());
        put_operator_record(
            &a.0,
            SILENCES,
            "m",
            silence("m", "a"),
            at("2026-11-28T01:10:00Z"),
        )
        .await
        .unwrap();
        delete_operator_record(&a.0, SILENCES, "m", at("2026-11-28T01:11:00Z"))
            .await
            .unwrap();
        put_operator_record(
            &a.0,
            SILENCES,
            "n",
            silence("n", "a"),
            at("2026-11-28T01:12:00Z"),
        )
        .await
        .unwrap();
        let own = feed(&a).await;
        assert_eq!(own.len(), 2, "{own:?}");
        assert_eq!(apply_remote_records(&a.0, &own).await.unwrap(), 0);
        assert_eq!(feed(&a).await, own);
        // b made its own since; a's feed, which does not list it, leaves it alone.
        put_operator_record(
            &b.0,
            SILENCES,
            "mine",
            silence("mine", "b"),
            at("2026-11-28T01:13:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(apply_remote_records(&b.0, &own).await.unwrap(), 1);
        assert!(b.0.get_record(SILENCES, "mine").await.unwrap().is_some());
        // Round trip: b's feed back to a changes nothing but adds b's own.
        assert_eq!(
            apply_remote_records(&a.0, &feed(&b).await).await.unwrap(),
            1
        );
        assert_eq!(
            apply_remote_records(&b.0, &feed(&a).await).await.unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn what_the_peer_sends_is_checked_and_stamps_of_gone_records_are_pruned() {
        let b = side();
        let bad = [
            RecordSync {
                kind: HEARTBEATS.into(),
                id: "bot".into(),
                at: Some(at(NOW)),
                value: Some(serde_json::json!("1")),
            },
            RecordSync {
                kind: SILENCES.into(),
                id: "x".into(),
                at: Some(at(NOW)),
                value: Some(serde_json::json!({"matchers": []})),
            },
            RecordSync {
                kind: SILENCES.into(),
                id: "other".into(),
                at: Some(at(NOW)),
                value: Some(serde_json::from_slice(&silence("x", "c")).unwrap()),
            },
        ];
        assert_eq!(apply_remote_records(&b.0, &bad).await.unwrap(), 0);
        assert!(b.0.records(STAMPS).await.unwrap().is_empty());
        // A tombstone (and the stamp of an ended, pruned record) goes after STAMP_RETENTION;
        // the stamp of a record that still exists stays.
        put_operator_record(
            &b.0,
            SILENCES,
            "live",
            silence("live", "b"),
            at("2026-11-01T00:00:00Z"),
        )
        .await
        .unwrap();
        put_operator_record(
            &b.0,
            SILENCES,
            "gone",
            silence("gone", "b"),
            at("2026-11-01T00:00:00Z"),
        )
        .await
        .unwrap();
        delete_operator_record(&b.0, SILENCES, "gone", at("2026-11-20T00:00:00Z"))
            .await
            .unwrap();
        put_operator_record(
            &b.0,
            SILENCES,
            "ended",
            silence("ended", "b"),
            at("2026-11-01T00:00:00Z"),
        )
        .await
        .unwrap();
        b.0.delete_record(SILENCES, "ended").await.unwrap();
        let (n, more) = prune_stamps(&b.0, at("2026-11-21T00:00:00Z"), 1)
            .await
            .unwrap();
        assert_eq!((n, more), (1, true));
        let (n, more) = prune_stamps(&b.0, at("2026-11-21T00:00:00Z"), 10)
            .await
            .unwrap();
        assert_eq!((n, more), (1, false));
        let left: Vec<String> =
            b.0.records(STAMPS)
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
        assert_eq!(left, vec!["silence/live".to_string()]);
    }
}

//! The embedded store: one redb file under `--data DIR`.
//!
//! Writes go through one writer thread that groups whatever transitions are waiting into a single
//! redb write transaction and one fsync (group commit): under load, many requests share the cost
//! of one durable commit, and each caller still hears back only after its data is on disk. Reads
//! open their own read transactions and never wait for the writer. A dashmap of open fingerprints
//! lets dedup skip the table lookup; it is updated only after a commit succeeds, and the guard in
//! the transaction (not the cache) is what decides.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

use super::{
    CommitOutcome, DeliveryFinish, FingerprintState, Guard, Prune, Pruned, Store, StoreError,
    StoreStats, Transition,
};
use crate::domain::{Fingerprint, IncidentId};
use crate::incident::{Delivery, Incident, IncidentStatus, TimelineEntry};

/// incident id → incident (JSON).
const INCIDENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("incidents");
/// fingerprint → id of its open incident.
const OPEN: TableDefinition<&str, u128> = TableDefinition::new("open");
/// fingerprint → the source's latest state-change time (ms).
const LAST_CHANGE: TableDefinition<&str, i64> = TableDefinition::new("last_change");
/// (incident id, sequence) → timeline entry (JSON).
const TIMELINE: TableDefinition<(u128, u64), &[u8]> = TableDefinition::new("timeline");
/// (due ms, incident id) → (): the due-index.
const DUE: TableDefinition<(i64, u128), ()> = TableDefinition::new("due");
/// (not_before ms, delivery id) → delivery (JSON): the outbox.
const OUTBOX: TableDefinition<(i64, u128), &[u8]> = TableDefinition::new("outbox");
/// transport delivery id → when first seen (ms).
const SEEN: TableDefinition<&str, i64> = TableDefinition::new("seen");
/// (incident id, channel name) → provider reference (Slack `channel:ts`).
const REFS: TableDefinition<(u128, &str), &str> = TableDefinition::new("refs");
/// (kind, id) → operator-managed record (silences, overrides, heartbeats).
const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
/// (resolve time ms, incident id) → (): resolved incidents in the order they age out (`prune`).
/// A row whose incident reopened (or resolved again later) is stale and is dropped by `prune`.
const RESOLVED_AT: TableDefinition<(i64, u128), ()> = TableDefinition::new("resolved_at");
/// (seen ms, transport delivery id) → (): `SEEN` in the order it ages out (`prune`).
const SEEN_AT: TableDefinition<(i64, &str), ()> = TableDefinition::new("seen_at");
/// Where `prune`'s indexing of older rows stands: `incidents` → the last incident key indexed
/// (16 bytes, big-endian), `seen` → the last delivery id indexed; `BACKFILLED` once complete.
const PRUNE_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("prune_state");
/// schema version; see `SCHEMA_VERSION`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The test write made while writes are refused (see `probe`).
const PROBE: TableDefinition<&str, &[u8]> = TableDefinition::new("probe");
/// How much a test write writes: more than a batch of new incidents needs, so that pages freed
/// inside the file do not pass for free disk space.
const PROBE_BYTES: usize = 1024 * 1024;

/// Bump when the stored layout changes incompatibly; a store with another version is refused.
const SCHEMA_VERSION: u64 = 1;
/// redb's page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// How many queued operations one commit takes at most.
const MAX_BATCH: usize = 512;

enum Op {
    Record(
        Box<(String, String, Option<Vec<u8>>)>,
        oneshot::Sender<Result<CommitOutcome, StoreError>>,
    ),
    Commit(
        Box<Prepared>,
        oneshot::Sender<Result<CommitOutcome, StoreError>>,
    ),
    Finish(
        Box<PreparedFinish>,
        oneshot::Sender<Result<CommitOutcome, StoreError>>,
    ),
}

impl Op {
    fn into_reply(self) -> oneshot::Sender<Result<CommitOutcome, StoreError>> {
        match self {
            Op::Commit(_, reply) | Op::Finish(_, reply) | Op::Record(_, reply) => reply,
        }
    }
}

/// A transition with its records already encoded. The caller's task encodes them (on any
/// runtime thread) so that the one writer thread, which every commit waits for, only touches
/// the tables.
struct Prepared {
    tx: Transition,
    incident: Option<Vec<u8>>,
    timeline: Vec<Vec<u8>>,
    deliveries: Vec<OutboxRow>,
}

impl Prepared {
    fn new(tx: Transition) -> Self {
        Self {
            incident: tx.incident.as_ref().map(encode_incident),
            timeline: tx.timeline.iter().map(encode).collect(),
            deliveries: tx.deliveries.iter().map(outbox_row).collect(),
            tx,
        }
    }
}

/// An outbox row ready to insert: its key (not_before ms, delivery id) and the encoded delivery.
type OutboxRow = ((i64, u128), Vec<u8>);

fn outbox_key(d: &Delivery) -> (i64, u128) {
    (ms(d.not_before), d.id.into())
}

fn outbox_row(d: &Delivery) -> OutboxRow {
    (outbox_key(d), encode(d))
}

/// The end of a delivery attempt, likewise encoded before it reaches the writer.
struct PreparedFinish {
    delivery: Delivery,
    /// The row as it is kept for the next attempt, when the attempt is retried.
    retry: Option<OutboxRow>,
    entries: Vec<Vec<u8>>,
    follow_ups: Vec<OutboxRow>,
    remember: Option<String>,
}

impl PreparedFinish {
    fn new(delivery: &Delivery, finish: DeliveryFinish) -> Self {
        Self {
            retry: finish.retry_row(delivery).as_ref().map(outbox_row),
            entries: finish.entries.iter().map(encode).collect(),
            follow_ups: finish.follow_ups.iter().map(outbox_row).collect(),
            delivery: delivery.clone(),
            remember: finish.remember,
        }
    }
}

pub struct EmbeddedStore {
    db: Arc<SharedDb>,
    /// `None` only while dropping.
    ops: Option<mpsc::Sender<Op>>,
    open: Arc<DashMap<String, u128>>,
    #[cfg_attr(not(test), allow(dead_code))]
    seq: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedStore {
    /// Stops the writer (it finishes the batch in hand) and waits for it, so the file's lock is
    /// released when the store is gone and the same directory can be opened again.
    fn drop(&mut self) {
        self.ops.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn id128(id: IncidentId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

fn from128(v: u128) -> IncidentId {
    IncidentId::from_bytes(v.to_be_bytes())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing our own plain data types cannot fail (no maps with non-string keys).
    serde_json::to_vec(v).expect("store records serialize to JSON")
}

/// A stored incident starts with a head — this marker, its version and its due time (ms, or
/// `NO_DUE`), little-endian — followed by its JSON, so that the writer can check a version
/// guard and find the due row a transition replaces without decoding the JSON. Records written
/// before the head existed are plain JSON (they start with `{`) and are read as they are.
const HEAD_MARK: u8 = 0xfe;
const HEAD_LEN: usize = 17;
const NO_DUE: i64 = i64::MIN;

fn encode_incident(inc: &Incident) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048);
    out.push(HEAD_MARK);
    out.extend_from_slice(&inc.version.to_le_bytes());
    out.extend_from_slice(&inc.next_due.map(ms).unwrap_or(NO_DUE).to_le_bytes());
    serde_json::to_writer(&mut out, inc).expect("incidents serialize to JSON");
    out
}

fn decode_incident(bytes: &[u8]) -> Result<Incident, StoreError> {
    match bytes {
        [HEAD_MARK, ..] if bytes.len() >= HEAD_LEN => decode(&bytes[HEAD_LEN..]),
        _ => decode(bytes),
    }
}

/// A stored incident's version and due time (ms).
fn incident_head(bytes: &[u8]) -> Result<(u64, Option<i64>), StoreError> {
    match bytes {
        [HEAD_MARK, ..] if bytes.len() >= HEAD_LEN => {
            let word = |at: usize| -> [u8; 8] {
                bytes[at..at + 8]
                    .try_into()
                    .expect("eight bytes of the head")
            };
            let due = i64::from_le_bytes(word(9));
            Ok((u64::from_le_bytes(word(1)), (due != NO_DUE).then_some(due)))
        }
        _ => {
            let inc: Incident = decode(bytes)?;
            Ok((inc.version, inc.next_due.map(ms)))
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/vigil.redb` and starts the writer thread.
    ///
    /// An empty directory starts an empty store. A `vigil.redb` that is there but empty (0 bytes:
    /// a copy that never finished, a restore gone wrong) or unreadable is refused with a message
    /// that says so: starting empty over it would forget every open incident.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("vigil.redb");
        let db = open_database(&path)?;
        let shared = Arc::new(SharedDb {
            db: ArcSwapOption::from_pointee(db),
            problem: std::sync::Mutex::new(None),
        });
        let open = Arc::new(DashMap::new());
        load_open_index(&shared, &open)?;
        let (tx, rx) = mpsc::channel();
        let seq = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: shared.clone(),
            path,
            open: open.clone(),
            seq: seq.clone(),
            closing: None,
            last_attempt: None,
        };
        let writer = std::thread::Builder::new()
            .name("vigil-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(unavailable)?;
        Ok(Self {
            db: shared,
            ops: Some(tx),
            open,
            seq,
            writer: Some(writer),
        })
    }

    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<CommitOutcome, StoreError>>) -> Op,
    ) -> Result<CommitOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .as_ref()
            .ok_or_else(|| unavailable("store is closing"))?
            .send(make(tx))
            .map_err(|_| unavailable("store writer stopped"))?;
        rx.await.map_err(|_| unavailable("store writer stopped"))?
    }

    fn read_incident(&self, id: u128) -> Result<Option<Incident>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(INCIDENTS).map_err(unavailable)?;
        match t.get(id).map_err(unavailable)? {
            Some(v) => Ok(Some(decode_incident(v.value())?)),
            None => Ok(None),
        }
    }

    #[cfg(test)]
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// Opens `path` (creating it when it does not exist) and makes sure every table is there.
fn open_database(path: &Path) -> Result<Database, StoreError> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => {
            return Err(StoreError::Corrupt(format!(
                "{} is empty (0 bytes), so it is not a vigil store: refusing to start over it with \
                 an empty one. Restore it from a backup, or remove it to start with no incidents.",
                path.display()
            )));
        }
        _ => {}
    }
    // redb's default page cache is 1 GiB; a pager needs far less (the open incidents and the
    // due-index), and RSS matters more than re-reading cold timelines.
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
                StoreError::Corrupt(format!(
                    "{} is not a readable vigil store ({what}): restore it from a backup, or move \
                     it away to start with no incidents",
                    path.display()
                ))
            }
            other => unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
    init_schema(&db)?;
    Ok(db)
}

/// Makes the in-memory open-fingerprint index match the file's `OPEN` table.
fn load_open_index(db: &SharedDb, open: &DashMap<String, u128>) -> Result<(), StoreError> {
    let rx = db.begin_read().map_err(unavailable)?;
    let t = rx.open_table(OPEN).map_err(unavailable)?;
    let mut stored = std::collections::HashMap::new();
    for row in t.iter().map_err(unavailable)? {
        let (k, v) = row.map_err(unavailable)?;
        stored.insert(k.value().to_string(), v.value());
    }
    open.retain(|fp, id| stored.get(fp) == Some(id));
    for (fp, id) in stored {
        open.insert(fp, id);
    }
    Ok(())
}

/// The open database, shared by the readers and the writer thread.
///
/// After a write fails with an I/O error (a full disk, above all), redb refuses every later
/// write until the database is closed and opened again. The writer then takes the database out
/// of here (`db` is `None` while it re-opens), records why writes are refused in `problem`
/// (readiness shows it), and opens the file again every `REOPEN_EVERY` until that works: the
/// store recovers by itself once space is freed. What was committed before stays; what was
/// refused was answered with an error (503), so its sender retries.
pub(crate) struct SharedDb {
    db: ArcSwapOption<Database>,
    problem: std::sync::Mutex<Option<String>>,
}

impl SharedDb {
    fn get(&self) -> Result<Arc<Database>, String> {
        self.db.load_full().ok_or_else(|| {
            self.problem()
                .unwrap_or_else(|| "the store is being re-opened".to_string())
        })
    }

    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, String> {
        self.get()?.begin_read().map_err(|e| e.to_string())
    }

    #[cfg(test)]
    pub(crate) fn begin_write(&self) -> Result<redb::WriteTransaction, String> {
        self.get()?.begin_write().map_err(|e| e.to_string())
    }

    fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }
}

fn init_schema(db: &Database) -> Result<(), StoreError> {
    let w = db.begin_write().map_err(unavailable)?;
    {
        // Opening a table in a write transaction creates it.
        w.open_table(INCIDENTS).map_err(unavailable)?;
        w.open_table(OPEN).map_err(unavailable)?;
        w.open_table(LAST_CHANGE).map_err(unavailable)?;
        w.open_table(TIMELINE).map_err(unavailable)?;
        w.open_table(DUE).map_err(unavailable)?;
        w.open_table(OUTBOX).map_err(unavailable)?;
        w.open_table(SEEN).map_err(unavailable)?;
        w.open_table(REFS).map_err(unavailable)?;
        w.open_table(RECORDS).map_err(unavailable)?;
        // Read by `resolved_since` before anything was ever resolved.
        w.open_table(RESOLVED_AT).map_err(unavailable)?;
        let mut meta = w.open_table(META).map_err(unavailable)?;
        let found = meta.get("schema").map_err(unavailable)?.map(|v| v.value());
        match found {
            None => {
                meta.insert("schema", SCHEMA_VERSION).map_err(unavailable)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "store schema version {other}, this vigil reads {SCHEMA_VERSION}"
                )));
            }
        }
    }
    w.commit().map_err(unavailable)
}

/// Owns the write side. One per database.
struct Writer {
    db: Arc<SharedDb>,
    path: std::path::PathBuf,
    open: Arc<DashMap<String, u128>>,
    seq: Arc<AtomicU64>,
    /// The database taken out after an I/O error, until the last reader lets go of it.
    closing: Option<Arc<Database>>,
    /// When the writer last tried to re-open the database.
    last_attempt: Option<std::time::Instant>,
}

/// A cache change to apply once the commit is durable.
enum CacheChange {
    Open(String, u128),
    Close(String, u128),
}

/// How often the writer tries to re-open the database while writes are refused.
const REOPEN_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        loop {
            let first = if self.db.problem().is_some() {
                self.recover();
                match rx.recv_timeout(REOPEN_EVERY) {
                    Ok(op) => op,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                }
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            if self.db.db.load().is_none() {
                let problem = self.db.problem().unwrap_or_default();
                refuse(batch, &problem);
                continue;
            }
            // A batch refused for its own content (an unreadable record) says nothing about
            // the database. A batch that succeeds while writes are reported refused does not
            // clear the report: a small write may fit where an incident does not, and only a
            // test write of `PROBE_BYTES` (in `recover`) says the store takes writes again.
            if let Err(StoreError::Unavailable(problem)) = self.apply_batch(batch) {
                self.failed(problem);
            }
        }
    }

    /// A batch could not be written (a full disk, an I/O error). Writes are reported refused
    /// (readiness shows it) until one succeeds again; when even a small test write fails, redb
    /// may refuse every later write until it is re-opened, so the database is taken out to be
    /// re-opened.
    fn failed(&mut self, problem: String) {
        tracing::error!(error.message = %problem, "The store cannot write; readiness fails until a test write succeeds.");
        self.last_attempt = Some(std::time::Instant::now());
        if let Ok(db) = self.db.get()
            && let Err(check) = probe(&db)
        {
            tracing::error!(check = %check, "A test write failed too; the store will be re-opened.");
            drop(db);
            self.closing = self.db.db.swap(None);
        }
    }

    /// While writes are refused, at most every `REOPEN_EVERY`: with the database in place, a
    /// test write tells whether it takes writes again; when it was taken out, it is re-opened
    /// (once every reader has let go of the old one) and tested the same way.
    fn recover(&mut self) {
        if self
            .last_attempt
            .is_some_and(|t| t.elapsed() < REOPEN_EVERY)
        {
            return;
        }
        self.last_attempt = Some(std::time::Instant::now());
        if let Ok(db) = self.db.get() {
            match probe(&db) {
                Ok(()) => {
                    self.db.set_problem(None);
                    tracing::info!("The store takes writes again.");
                }
                Err(check) => {
                    tracing::warn!(check = %check, "The store still cannot write; it will be re-opened.");
                    drop(db);
                    self.closing = self.db.db.swap(None);
                }
            }
            return;
        }
        if let Some(old) = self.closing.take() {
            match Arc::try_unwrap(old) {
                // Dropping the database closes the file and releases its lock.
                Ok(db) => drop(db),
                Err(still_read) => {
                    self.closing = Some(still_read);
                    return;
                }
            }
        }
        match open_database(&self.path).and_then(|db| {
            probe(&db).map_err(unavailable)?;
            Ok(db)
        }) {
            Ok(db) => {
                self.db.db.store(Some(Arc::new(db)));
                if let Err(e) = load_open_index(&self.db, &self.open) {
                    tracing::warn!(error.message = %e, "Could not re-read the open index after re-opening the store.");
                }
                self.db.set_problem(None);
                tracing::info!(path = %self.path.display(), "The store was re-opened and takes writes again.");
            }
            Err(e) => {
                tracing::debug!(error.message = %e, "The store cannot be re-opened yet; trying again.");
            }
        }
    }

    fn next_seq(&self, now_ms: i64) -> u64 {
        // Monotonic in this process and roughly time-ordered across restarts.
        let floor = (now_ms.max(0) as u64) << 12;
        let mut cur = self.seq.load(Ordering::Relaxed);
        loop {
            let next = floor.max(cur + 1);
            match self
                .seq
                .compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Applies a batch in one write transaction and answers every caller. The error, when the
    /// whole batch was refused, is returned for the caller to judge the database's health.
    fn apply_batch(&self, batch: Vec<Op>) -> Result<(), StoreError> {
        let mut results = Vec::with_capacity(batch.len());
        let mut cache = Vec::new();
        let outcome = (|| -> Result<(), StoreError> {
            let db = self.db.get().map_err(unavailable)?;
            let w = db.begin_write().map_err(unavailable)?;
            {
                let mut tables = Tables {
                    incidents: w.open_table(INCIDENTS).map_err(unavailable)?,
                    open: w.open_table(OPEN).map_err(unavailable)?,
                    last_change: w.open_table(LAST_CHANGE).map_err(unavailable)?,
                    timeline: w.open_table(TIMELINE).map_err(unavailable)?,
                    due: w.open_table(DUE).map_err(unavailable)?,
                    outbox: w.open_table(OUTBOX).map_err(unavailable)?,
                    seen: w.open_table(SEEN).map_err(unavailable)?,
                    refs: w.open_table(REFS).map_err(unavailable)?,
                    records: w.open_table(RECORDS).map_err(unavailable)?,
                    resolved_at: w.open_table(RESOLVED_AT).map_err(unavailable)?,
                    seen_at: w.open_table(SEEN_AT).map_err(unavailable)?,
                };
                for op in &batch {
                    let r = match op {
                        Op::Commit(tx, _) => self.apply(&mut tables, tx, &mut cache)?,
                        Op::Finish(f, _) => {
                            self.finish(&mut tables, f)?;
                            CommitOutcome::Committed
                        }
                        Op::Record(r, _) => {
                            let (kind, id, value) = &**r;
                            let existed = match value {
                                Some(v) => tables
                                    .records
                                    .insert((kind.as_str(), id.as_str()), v.as_slice())
                                    .map_err(unavailable)?
                                    .is_some(),
                                None => tables
                                    .records
                                    .remove((kind.as_str(), id.as_str()))
                                    .map_err(unavailable)?
                                    .is_some(),
                            };
                            // Conflict here means "there was nothing to delete".
                            if existed || value.is_some() {
                                CommitOutcome::Committed
                            } else {
                                CommitOutcome::Conflict
                            }
                        }
                    };
                    results.push(r);
                }
            }
            w.commit().map_err(unavailable)
        })();
        match outcome {
            Ok(()) => {
                for c in cache {
                    match c {
                        CacheChange::Open(fp, id) => {
                            self.open.insert(fp, id);
                        }
                        CacheChange::Close(fp, id) => {
                            self.open.remove_if(&fp, |_, v| *v == id);
                        }
                    }
                }
                for (op, r) in batch.into_iter().zip(results) {
                    let _ = op.into_reply().send(Ok(r));
                }
            }
            Err(e) => {
                tracing::error!(error.message = %e, "Store commit failed; the batch is refused.");
                let problem = match &e {
                    StoreError::Unavailable(m) | StoreError::Corrupt(m) => m.clone(),
                };
                // Readiness says so before any caller hears of the refusal.
                if matches!(e, StoreError::Unavailable(_)) {
                    self.db
                        .set_problem(Some(format!("store cannot write: {problem}")));
                }
                refuse(batch, &problem);
                return Err(e);
            }
        }
        Ok(())
    }

    fn apply(
        &self,
        t: &mut Tables<'_>,
        prepared: &Prepared,
        cache: &mut Vec<CacheChange>,
    ) -> Result<CommitOutcome, StoreError> {
        let tx = &prepared.tx;
        if let Some(did) = &tx.delivery_id
            && t.seen.get(did.as_str()).map_err(unavailable)?.is_some()
        {
            return Ok(CommitOutcome::Duplicate);
        }
        // The guard, read inside the transaction: this is what makes a step fire at most once.
        let holds = match &tx.guard {
            None => true,
            Some(Guard::NoOpenIncident(fp)) => {
                t.open.get(fp.as_str()).map_err(unavailable)?.is_none()
            }
            Some(Guard::Version(id, version)) => {
                stored_head(t, *id)?.is_some_and(|(stored, _)| stored == *version)
            }
        };
        if !holds {
            return Ok(CommitOutcome::Conflict);
        }
        // The due row of the stored version, which this transition replaces.
        let previous_due = match &tx.incident {
            Some(inc) => stored_head(t, inc.id)?.and_then(|(_, due)| due),
            None => None,
        };
        let now_ms = Utc::now().timestamp_millis();
        if let (Some(inc), Some(bytes)) = (&tx.incident, &prepared.incident) {
            let key = id128(inc.id);
            // Rows that stay as they are are not rewritten: every write copies a path of its
            // B-tree, and a repeat alert changes neither its due time nor its open mapping.
            let due = inc.next_due.map(ms);
            if due != previous_due {
                if let Some(old) = previous_due {
                    t.due.remove((old, key)).map_err(unavailable)?;
                }
                if let Some(new) = due {
                    t.due.insert((new, key), ()).map_err(unavailable)?;
                }
            }
            let fp = inc.fingerprint.as_str();
            if inc.status.is_open() {
                let mapped = t.open.get(fp).map_err(unavailable)?.map(|v| v.value());
                if mapped != Some(key) {
                    t.open.insert(fp, key).map_err(unavailable)?;
                }
                cache.push(CacheChange::Open(fp.to_string(), key));
            } else {
                let mapped = t.open.get(fp).map_err(unavailable)?.map(|v| v.value());
                if mapped == Some(key) {
                    t.open.remove(fp).map_err(unavailable)?;
                }
                cache.push(CacheChange::Close(fp.to_string(), key));
            }
            if let (IncidentStatus::Resolved, Some((_, at))) = (inc.status, &inc.resolved) {
                t.resolved_at
                    .insert((ms(*at), key), ())
                    .map_err(unavailable)?;
            }
            t.incidents
                .insert(key, bytes.as_slice())
                .map_err(unavailable)?;
        }
        if let Some(id) = tx.incident.as_ref().map(|i| i.id).or(tx.timeline_for) {
            for e in &prepared.timeline {
                let seq = self.next_seq(now_ms);
                t.timeline
                    .insert((id128(id), seq), e.as_slice())
                    .map_err(unavailable)?;
            }
        }
        for (key, bytes) in &prepared.deliveries {
            t.outbox
                .insert(*key, bytes.as_slice())
                .map_err(unavailable)?;
        }
        if let Some(did) = &tx.delivery_id {
            let seen_ms = tx.decided_at.map(ms).unwrap_or(now_ms);
            t.seen.insert(did.as_str(), seen_ms).map_err(unavailable)?;
            t.seen_at
                .insert((seen_ms, did.as_str()), ())
                .map_err(unavailable)?;
        }
        if let Some((fp, at)) = &tx.last_change {
            let old = t
                .last_change
                .get(fp.as_str())
                .map_err(unavailable)?
                .map(|v| v.value());
            if old.is_none_or(|o| o < ms(*at)) {
                t.last_change
                    .insert(fp.as_str(), ms(*at))
                    .map_err(unavailable)?;
            }
        }
        for r in &tx.records {
            t.records
                .insert((r.kind.as_str(), r.id.as_str()), r.value.as_slice())
                .map_err(unavailable)?;
        }
        Ok(CommitOutcome::Committed)
    }

    fn finish(&self, t: &mut Tables<'_>, p: &PreparedFinish) -> Result<(), StoreError> {
        let d = &p.delivery;
        let existed = t
            .outbox
            .remove(outbox_key(d))
            .map_err(unavailable)?
            .is_some();
        if existed && let Some((key, next)) = &p.retry {
            t.outbox
                .insert(*key, next.as_slice())
                .map_err(unavailable)?;
        }
        let now_ms = Utc::now().timestamp_millis();
        for entry in &p.entries {
            let seq = self.next_seq(now_ms);
            t.timeline
                .insert((id128(d.incident), seq), entry.as_slice())
                .map_err(unavailable)?;
        }
        // Follow-ups only once: a finish replayed for a row already gone adds nothing.
        if existed {
            for (key, bytes) in &p.follow_ups {
                t.outbox
                    .insert(*key, bytes.as_slice())
                    .map_err(unavailable)?;
            }
        }
        if let Some(reference) = &p.remember {
            let key = (id128(d.incident), d.channel.as_str());
            if t.refs.get(key).map_err(unavailable)?.is_none() {
                t.refs
                    .insert(key, reference.as_str())
                    .map_err(unavailable)?;
            }
        }
        Ok(())
    }
}

/// Whether the database takes writes: a real write of `PROBE_BYTES` (an empty transaction
/// needs no new page, so it would succeed on a full disk, and a small one may fit in pages
/// freed inside the file while a batch of incidents does not).
fn probe(db: &Database) -> Result<(), String> {
    let write = |value: Option<&[u8]>| -> Result<(), String> {
        let w = db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut t = w.open_table(PROBE).map_err(|e| e.to_string())?;
            match value {
                Some(v) => t.insert("probe", v).map(drop),
                None => t.remove("probe").map(drop),
            }
            .map_err(|e| e.to_string())?;
        }
        w.commit().map_err(|e| e.to_string())
    };
    // Written and removed again, so the test leaves its space free.
    write(Some(&vec![0x5a; PROBE_BYTES]))?;
    write(None)
}

/// Answers every operation of a batch that was not applied.
fn refuse(batch: Vec<Op>, problem: &str) {
    for op in batch {
        let _ = op
            .into_reply()
            .send(Err(StoreError::Unavailable(problem.to_string())));
    }
}

/// The stored version and due time of incident `id`, without decoding its JSON.
fn stored_head(t: &Tables<'_>, id: IncidentId) -> Result<Option<(u64, Option<i64>)>, StoreError> {
    t.incidents
        .get(id128(id))
        .map_err(unavailable)?
        .map(|v| incident_head(v.value()))
        .transpose()
}

struct Tables<'w> {
    incidents: redb::Table<'w, u128, &'static [u8]>,
    open: redb::Table<'w, &'static str, u128>,
    last_change: redb::Table<'w, &'static str, i64>,
    timeline: redb::Table<'w, (u128, u64), &'static [u8]>,
    due: redb::Table<'w, (i64, u128), ()>,
    outbox: redb::Table<'w, (i64, u128), &'static [u8]>,
    seen: redb::Table<'w, &'static str, i64>,
    refs: redb::Table<'w, (u128, &'static str), &'static str>,
    records: redb::Table<'w, (&'static str, &'static str), &'static [u8]>,
    resolved_at: redb::Table<'w, (i64, u128), ()>,
    seen_at: redb::Table<'w, (i64, &'static str), ()>,
}

/// `PRUNE_STATE` value once an index covers every older row.
const BACKFILLED: &[u8] = b"done";
/// Older rows indexed per `prune` call (reads, plus an index row for each that qualifies).
const BACKFILL_STEP: usize = 10_000;

/// Indexes in `RESOLVED_AT` and `SEEN_AT` the next `BACKFILL_STEP` incidents and delivery ids
/// written before those indexes existed (rows written since are indexed by the writer, and
/// indexing one twice changes nothing). Returns whether more remain.
fn backfill(w: &redb::WriteTransaction) -> Result<bool, StoreError> {
    let mut state = w.open_table(PRUNE_STATE).map_err(unavailable)?;
    let mut more = false;
    let cursor = state
        .get("incidents")
        .map_err(unavailable)?
        .map(|v| v.value().to_vec());
    if cursor.as_deref() != Some(BACKFILLED) {
        let start = match cursor.and_then(|c| <[u8; 16]>::try_from(c.as_slice()).ok()) {
            Some(after) => u128::from_be_bytes(after).checked_add(1),
            None => Some(0),
        };
        let mut last = None;
        let mut n = 0;
        if let Some(start) = start {
            let incidents = w.open_table(INCIDENTS).map_err(unavailable)?;
            let mut resolved_at = w.open_table(RESOLVED_AT).map_err(unavailable)?;
            for row in incidents
                .range(start..)
                .map_err(unavailable)?
                .take(BACKFILL_STEP)
            {
                let (k, v) = row.map_err(unavailable)?;
                let key = k.value();
                n += 1;
                last = Some(key);
                // An unreadable row is left alone here (reading it reports it elsewhere).
                if let Ok(inc) = decode_incident(v.value())
                    && let (IncidentStatus::Resolved, Some((_, at))) = (inc.status, &inc.resolved)
                {
                    resolved_at
                        .insert((ms(*at), key), ())
                        .map_err(unavailable)?;
                }
            }
        }
        let next = match last {
            Some(key) if n == BACKFILL_STEP => key.to_be_bytes().to_vec(),
            _ => BACKFILLED.to_vec(),
        };
        more |= next != BACKFILLED;
        state
            .insert("incidents", next.as_slice())
            .map_err(unavailable)?;
    }
    let cursor = state
        .get("seen")
        .map_err(unavailable)?
        .map(|v| v.value().to_vec());
    if cursor.as_deref() != Some(BACKFILLED) {
        let after = cursor.map(|c| String::from_utf8_lossy(&c).into_owned());
        let seen = w.open_table(SEEN).map_err(unavailable)?;
        let mut seen_at = w.open_table(SEEN_AT).map_err(unavailable)?;
        let lower = match &after {
            Some(a) => std::ops::Bound::Excluded(a.as_str()),
            None => std::ops::Bound::Unbounded,
        };
        let mut last = None;
        let mut n = 0;
        for row in seen
            .range::<&str>((lower, std::ops::Bound::Unbounded))
            .map_err(unavailable)?
            .take(BACKFILL_STEP)
        {
            let (k, v) = row.map_err(unavailable)?;
            n += 1;
            seen_at
                .insert((v.value(), k.value()), ())
                .map_err(unavailable)?;
            last = Some(k.value().to_string());
        }
        let next = match last {
            Some(id) if n == BACKFILL_STEP => id.into_bytes(),
            _ => BACKFILLED.to_vec(),
        };
        more |= next != BACKFILLED;
        state.insert("seen", next.as_slice()).map_err(unavailable)?;
    }
    Ok(more)
}

/// One bounded prune pass in its own write transaction. redb runs one write transaction at a
/// time, so the writer waits for this one; `prune.limit` bounds how long.
fn prune_tx(db: &Database, p: Prune) -> Result<Pruned, StoreError> {
    let mut out = Pruned::default();
    let w = db.begin_write().map_err(unavailable)?;
    out.backlog = backfill(&w)?;
    {
        let mut resolved_at = w.open_table(RESOLVED_AT).map_err(unavailable)?;
        let mut incidents = w.open_table(INCIDENTS).map_err(unavailable)?;
        let mut open = w.open_table(OPEN).map_err(unavailable)?;
        let mut last_change = w.open_table(LAST_CHANGE).map_err(unavailable)?;
        let mut timeline = w.open_table(TIMELINE).map_err(unavailable)?;
        let mut due = w.open_table(DUE).map_err(unavailable)?;
        let mut outbox = w.open_table(OUTBOX).map_err(unavailable)?;
        let mut refs = w.open_table(REFS).map_err(unavailable)?;
        let cutoff = ms(p.resolved_before);
        let rows = resolved_at
            .range(..(cutoff, 0))
            .map_err(unavailable)?
            .take(p.limit)
            .map(|row| row.map(|(k, _)| k.value()).map_err(unavailable))
            .collect::<Result<Vec<_>, _>>()?;
        let mut gone = std::collections::HashSet::new();
        for (at, key) in rows {
            resolved_at.remove((at, key)).map_err(unavailable)?;
            let inc = match incidents.get(key).map_err(unavailable)? {
                Some(v) => decode_incident(v.value())?,
                None => continue,
            };
            // A stale row: the incident reopened, or resolved again later (a newer row).
            let resolved_ms = inc.resolved.as_ref().map(|(_, t)| ms(*t));
            if inc.status != IncidentStatus::Resolved || resolved_ms != Some(at) {
                continue;
            }
            incidents.remove(key).map_err(unavailable)?;
            if let Some(d) = inc.next_due {
                due.remove((ms(d), key)).map_err(unavailable)?;
            }
            timeline
                .retain_in((key, 0)..=(key, u64::MAX), |_, _| false)
                .map_err(unavailable)?;
            refs.retain_in((key, "")..(key + 1, ""), |_, _| false)
                .map_err(unavailable)?;
            let fp = inc.fingerprint.as_str();
            let mapped = open.get(fp).map_err(unavailable)?.map(|v| v.value());
            if mapped == Some(key) {
                open.remove(fp).map_err(unavailable)?;
            }
            let changed = last_change.get(fp).map_err(unavailable)?.map(|v| v.value());
            if open.get(fp).map_err(unavailable)?.is_none() && changed.is_some_and(|c| c < cutoff) {
                last_change.remove(fp).map_err(unavailable)?;
            }
            gone.insert(key);
            out.incidents.push((inc.id, inc.fingerprint));
        }
        // Outbox rows are keyed by time, not incident: one look over the (short) outbox.
        if !gone.is_empty() {
            let mut orphaned = Vec::new();
            for row in outbox.iter().map_err(unavailable)? {
                let (k, v) = row.map_err(unavailable)?;
                let d: Delivery = decode(v.value())?;
                if gone.contains(&id128(d.incident)) {
                    orphaned.push(k.value());
                }
            }
            for k in orphaned {
                outbox.remove(k).map_err(unavailable)?;
            }
        }
        let mut seen_at = w.open_table(SEEN_AT).map_err(unavailable)?;
        let mut seen = w.open_table(SEEN).map_err(unavailable)?;
        let seen_cutoff = ms(p.seen_before);
        let ids = seen_at
            .range(..(seen_cutoff, ""))
            .map_err(unavailable)?
            .take(p.limit)
            .map(|row| {
                row.map(|(k, _)| {
                    let (at, id) = k.value();
                    (at, id.to_string())
                })
                .map_err(unavailable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (at, id) in ids {
            seen_at.remove((at, id.as_str())).map_err(unavailable)?;
            let recorded = seen
                .get(id.as_str())
                .map_err(unavailable)?
                .map(|v| v.value());
            if recorded == Some(at) {
                seen.remove(id.as_str()).map_err(unavailable)?;
            }
            out.delivery_ids += 1;
        }
    }
    w.commit().map_err(unavailable)?;
    Ok(out)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn commit(&self, tx: Transition) -> Result<CommitOutcome, StoreError> {
        let prepared = Box::new(Prepared::new(tx));
        self.submit(|reply| Op::Commit(prepared, reply)).await
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        self.read_incident(id128(id))
    }

    async fn fingerprint(&self, fp: &Fingerprint) -> Result<FingerprintState, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let last_change = rx
            .open_table(LAST_CHANGE)
            .map_err(unavailable)?
            .get(fp.as_str())
            .map_err(unavailable)?
            .map(|v| from_ms(v.value()));
        let cached = self.open.get(fp.as_str()).map(|v| *v);
        let open = match cached {
            Some(id) => {
                let t = rx.open_table(INCIDENTS).map_err(unavailable)?;
                match t.get(id).map_err(unavailable)? {
                    Some(v) => Some(decode_incident(v.value())?).filter(|i| i.status.is_open()),
                    None => None,
                }
            }
            None => None,
        };
        Ok(FingerprintState { open, last_change })
    }

    async fn incidents(
        &self,
        status: Option<IncidentStatus>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(INCIDENTS).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(unavailable)?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = row.map_err(unavailable)?;
            let inc = decode_incident(v.value())?;
            if status.is_none_or(|s| s == inc.status) {
                out.push(inc);
            }
        }
        Ok(out)
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let open = rx.open_table(OPEN).map_err(unavailable)?;
        let incidents = rx.open_table(INCIDENTS).map_err(unavailable)?;
        let mut out = Vec::with_capacity(open.len().map_err(unavailable)? as usize);
        for row in open.iter().map_err(unavailable)? {
            let (_, id) = row.map_err(unavailable)?;
            if let Some(v) = incidents.get(id.value()).map_err(unavailable)? {
                let inc = decode_incident(v.value())?;
                if inc.status.is_open() {
                    out.push(inc);
                }
            }
        }
        Ok(out)
    }

    async fn resolved_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let index = rx.open_table(RESOLVED_AT).map_err(unavailable)?;
        let incidents = rx.open_table(INCIDENTS).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in index
            .range((ms(since), 0u128)..)
            .map_err(unavailable)?
            .rev()
            .take(limit)
        {
            let (key, _) = row.map_err(unavailable)?;
            let (_, id) = key.value();
            if let Some(v) = incidents.get(id).map_err(unavailable)? {
                let inc = decode_incident(v.value())?;
                if inc.status == IncidentStatus::Resolved {
                    out.push(inc);
                }
            }
        }
        Ok(out)
    }

    async fn prune(&self, prune: Prune) -> Result<Pruned, StoreError> {
        // While writes are refused (a full disk), pruning waits like any other write.
        if let Some(problem) = self.db.problem() {
            return Err(StoreError::Unavailable(problem));
        }
        let db = self.db.get().map_err(unavailable)?;
        tokio::task::spawn_blocking(move || prune_tx(&db, prune))
            .await
            .map_err(unavailable)?
    }

    async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(TIMELINE).map_err(unavailable)?;
        let k = id128(id);
        let mut out = Vec::new();
        for row in t.range((k, 0)..=(k, u64::MAX)).map_err(unavailable)? {
            let (_, v) = row.map_err(unavailable)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DateTime<Utc>, IncidentId)>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(DUE).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in t.range(..=(ms(now), u128::MAX)).map_err(unavailable)? {
            let (k, _) = row.map_err(unavailable)?;
            let (at, id) = k.value();
            out.push((from_ms(at), from128(id)));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(DUE).map_err(unavailable)?;
        Ok(t.first()
            .map_err(unavailable)?
            .map(|(k, _)| from_ms(k.value().0)))
    }

    async fn deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(OUTBOX).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in t.range(..=(ms(now), u128::MAX)).map_err(unavailable)? {
            let (_, v) = row.map_err(unavailable)?;
            out.push(decode(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(OUTBOX).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(unavailable)?.take(limit) {
            let (_, v) = row.map_err(unavailable)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn still_pending(&self, delivery: &Delivery) -> Result<bool, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(OUTBOX).map_err(unavailable)?;
        let found = t.get(outbox_key(delivery)).map_err(unavailable)?;
        Ok(match found {
            Some(v) => decode::<Delivery>(v.value())?.attempt == delivery.attempt,
            None => false,
        })
    }

    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(OUTBOX).map_err(unavailable)?;
        Ok(t.first()
            .map_err(unavailable)?
            .map(|(k, _)| from_ms(k.value().0)))
    }

    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        finish: DeliveryFinish,
    ) -> Result<(), StoreError> {
        let job = Box::new(PreparedFinish::new(delivery, finish));
        self.submit(|reply| Op::Finish(job, reply))
            .await
            .map(|_| ())
    }

    async fn references(
        &self,
        id: IncidentId,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(REFS).map_err(unavailable)?;
        let k = id128(id);
        let mut out = std::collections::BTreeMap::new();
        for row in t.range((k, "")..(k + 1, "")).map_err(unavailable)? {
            let (key, v) = row.map_err(unavailable)?;
            out.insert(key.value().1.to_string(), v.value().to_string());
        }
        Ok(out)
    }

    async fn put_record(&self, kind: &str, id: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let job = Box::new((kind.to_string(), id.to_string(), Some(value)));
        self.submit(|reply| Op::Record(job, reply))
            .await
            .map(|_| ())
    }

    async fn get_record(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(RECORDS).map_err(unavailable)?;
        Ok(t.get((kind, id))
            .map_err(unavailable)?
            .map(|v| v.value().to_vec()))
    }

    async fn delete_record(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let job = Box::new((kind.to_string(), id.to_string(), None));
        let out = self.submit(|reply| Op::Record(job, reply)).await?;
        Ok(out == CommitOutcome::Committed)
    }

    async fn records(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        let t = rx.open_table(RECORDS).map_err(unavailable)?;
        let mut out = Vec::new();
        for row in t.range((kind, "")..).map_err(unavailable)? {
            let (k, v) = row.map_err(unavailable)?;
            let (k_kind, id) = k.value();
            if k_kind != kind {
                break;
            }
            out.push((id.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn problem(&self) -> Option<String> {
        self.db.problem()
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let rx = self.db.begin_read().map_err(unavailable)?;
        Ok(StoreStats {
            open_incidents: rx
                .open_table(OPEN)
                .map_err(unavailable)?
                .len()
                .map_err(unavailable)?,
            outbox: rx
                .open_table(OUTBOX)
                .map_err(unavailable)?
                .len()
                .map_err(unavailable)?,
            timers: rx
                .open_table(DUE)
                .map_err(unavailable)?
                .len()
                .map_err(unavailable)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Incidents written before the stored head existed are plain JSON: they are still read,
    /// guarded and moved on the due-index, and rewritten with the head.
    #[tokio::test]
    async fn incidents_stored_as_plain_json_are_still_read_and_guarded() {
        use super::super::contract::sample_incident;
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let mut inc = sample_incident(Fingerprint::parse("legacy").unwrap(), Utc::now());
        let due = inc.next_due.expect("the sample incident has a due step");
        {
            let w = store.db.begin_write().unwrap();
            {
                let key = id128(inc.id);
                let mut t = w.open_table(INCIDENTS).unwrap();
                t.insert(key, encode(&inc).as_slice()).unwrap();
                let mut d = w.open_table(DUE).unwrap();
                d.insert((ms(due), key), ()).unwrap();
            }
            w.commit().unwrap();
        }
        assert_eq!(store.incident(inc.id).await.unwrap().as_ref(), Some(&inc));
        let stale = Guard::Version(inc.id, inc.version + 1);
        let next = |guard| Transition {
            guard: Some(guard),
            incident: Some(Incident {
                version: inc.version + 1,
                next_due: None,
                ..inc.clone()
            }),
            ..Default::default()
        };
        assert_eq!(
            store.commit(next(stale)).await.unwrap(),
            CommitOutcome::Conflict
        );
        let current = Guard::Version(inc.id, inc.version);
        assert_eq!(
            store.commit(next(current)).await.unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(
            store.next_due().await.unwrap(),
            None,
            "the old due row went"
        );
        inc.version += 1;
        inc.next_due = None;
        assert_eq!(store.incident(inc.id).await.unwrap(), Some(inc));
    }

    #[test]
    fn an_empty_store_file_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vigil.redb"), b"").unwrap();
        let err = EmbeddedStore::open(dir.path())
            .err()
            .expect("a 0-byte store file must not start an empty store");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt(_)), "{text}");
        assert!(
            text.contains("0 bytes") && text.contains("vigil.redb"),
            "{text}"
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("vigil.redb"))
                .unwrap()
                .len(),
            0,
            "the file is left as it was"
        );
    }

    #[test]
    fn a_corrupt_store_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(dir.path().join("vigil.redb"), &garbage).unwrap();
        let opened = std::panic::catch_unwind(|| EmbeddedStore::open(dir.path()).map(|_| ()));
        let result = opened.expect("opening a corrupt file must not panic");
        let err = result.expect_err("a corrupt file is refused");
        assert!(err.to_string().contains("vigil.redb"), "{err}");
    }

    #[test]
    fn an_empty_data_directory_starts_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        EmbeddedStore::open(&dir.path().join("fresh")).expect("a new directory is fine");
    }

    /// Rows written before the prune indexes existed are indexed by `prune`, a step per call,
    /// and then pruned like any other.
    #[tokio::test]
    async fn incidents_and_delivery_ids_from_before_the_prune_indexes_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let resolved_at = Utc::now() - chrono::Duration::days(60);
        let inc = super::super::contract::resolved_sample(
            Fingerprint::parse("legacy").unwrap(),
            resolved_at,
        );
        {
            let w = store.db.begin_write().unwrap();
            {
                let mut t = w.open_table(INCIDENTS).unwrap();
                t.insert(id128(inc.id), encode_incident(&inc).as_slice())
                    .unwrap();
                let mut s = w.open_table(SEEN).unwrap();
                s.insert("sns-legacy", ms(resolved_at)).unwrap();
            }
            w.commit().unwrap();
        }
        let prune = Prune {
            resolved_before: Utc::now() - chrono::Duration::days(30),
            seen_before: Utc::now() - chrono::Duration::days(7),
            limit: 100,
        };
        let pruned = store.prune(prune).await.unwrap();
        assert_eq!(pruned.incidents, vec![(inc.id, inc.fingerprint.clone())]);
        assert_eq!(pruned.delivery_ids, 1);
        assert!(!pruned.backlog);
        assert!(store.incident(inc.id).await.unwrap().is_none());
        let again = Transition {
            delivery_id: Some("sns-legacy".into()),
            ..Default::default()
        };
        assert_eq!(
            store.commit(again).await.unwrap(),
            CommitOutcome::Committed,
            "the old id is forgotten"
        );
        assert_eq!(store.prune(prune).await.unwrap(), Pruned::default());
    }

    #[tokio::test]
    async fn state_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            let id = super::super::contract::open_one(&store).await;
            assert!(store.seq() > 0, "timeline entries were written");
            id
        };
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let inc = store.incident(id).await.unwrap().expect("incident kept");
        let fp = store.fingerprint(&inc.fingerprint).await.unwrap();
        assert_eq!(
            fp.open.map(|i| i.id),
            Some(id),
            "open index rebuilt from disk"
        );
        assert_eq!(store.next_due().await.unwrap(), inc.next_due);
    }
}

//! Durable state: incidents, their timelines, the due-index of escalation timers, and the outbox
//! of deliveries. `Store` is the contract; `embedded` (redb, the default) and `redis` (for several
//! replicas) implement it, and both pass the same `contract` suite (tests only: each property of
//! the contract is its own test against a fresh store of each backend).
//!
//! Every change is a `Transition`: an optimistic, version-guarded write of one incident together
//! with its timeline entries, outbox rows and due time, applied atomically or not at all. Callers
//! read, decide with a pure function, and commit; on `Conflict` they read again and retry. The store
//! maintains its own indexes from the incident it is given (the open-fingerprint index from
//! `status`, the due-index from `next_due`), so callers cannot get them out of step.

#[cfg(test)]
pub(crate) mod contract;
pub mod embedded;
pub mod redis;
pub mod unreached;

use chrono::{DateTime, Utc};

use crate::domain::{Fingerprint, IncidentId};
use crate::incident::{Delivery, Incident, IncidentStatus, TimelineEntry};

pub use self::redis::{RedisOptions, RedisStore};
pub use embedded::EmbeddedStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// What must hold for a transition to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Guard {
    /// The fingerprint has no open incident (creating one, or recording a state change for it).
    NoOpenIncident(Fingerprint),
    /// The incident is still at this version.
    Version(IncidentId, u64),
}

/// One atomic change.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    pub guard: Option<Guard>,
    /// The incident's new state. Its `version` must be the guarded version + 1 (or 1 when new).
    pub incident: Option<Incident>,
    /// Appended to `incident`'s timeline (or to `timeline_for`'s when `incident` is `None`).
    pub timeline: Vec<TimelineEntry>,
    pub timeline_for: Option<IncidentId>,
    /// New outbox rows.
    pub deliveries: Vec<Delivery>,
    /// The transport's delivery id (SNS MessageId, EventBridge id): when it was already recorded,
    /// nothing applies and the outcome is `Duplicate`.
    pub delivery_id: Option<String>,
    /// The source's latest state-change time for a fingerprint, kept even without an incident so
    /// an ALARM that arrives after its own OK is recognised as stale.
    pub last_change: Option<(Fingerprint, DateTime<Utc>)>,
    /// When the caller decided the transition (its injected clock): the delivery id is recorded
    /// as seen at this time, which is what `prune` ages it by. `None`: the store's wall clock.
    pub decided_at: Option<DateTime<Utc>>,
    /// Records written (`put_record`) in the same atomic change, only when it commits: a record
    /// that follows from the transition (the last resolve of a fingerprint, which flap
    /// detection reads) can then never be missing after a committed transition nor present
    /// after a refused one.
    pub records: Vec<RecordWrite>,
}

/// One record a transition writes, replacing any under the same `kind`/`id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordWrite {
    pub kind: String,
    pub id: String,
    pub value: Vec<u8>,
}

impl Transition {
    /// The opening of an incident, guarded by its fingerprint having no open incident.
    pub fn open(
        incident: Incident,
        timeline: Vec<TimelineEntry>,
        deliveries: Vec<Delivery>,
    ) -> Self {
        Self {
            guard: Some(Guard::NoOpenIncident(incident.fingerprint.clone())),
            incident: Some(incident),
            timeline,
            deliveries,
            ..Default::default()
        }
    }

    /// A change of one existing incident, guarded by the version it was read at: the shape of
    /// every acknowledge, resolve, escalation step and mirrored update.
    pub fn update(
        guard: Guard,
        incident: Incident,
        timeline: Vec<TimelineEntry>,
        deliveries: Vec<Delivery>,
    ) -> Self {
        Self {
            guard: Some(guard),
            incident: Some(incident),
            timeline,
            deliveries,
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The guard did not hold: read again and decide again.
    Conflict,
    /// The delivery id was already recorded: the whole transition was a repeat.
    Duplicate,
}

/// What the store knows about a fingerprint.
#[derive(Debug, Clone, Default)]
pub struct FingerprintState {
    pub open: Option<Incident>,
    pub last_change: Option<DateTime<Utc>>,
}

/// How a delivery attempt ended, as the outbox records it.
#[derive(Debug, Clone)]
pub enum DeliveryUpdate {
    /// Sent, skipped or failed for good: remove the row.
    Done,
    /// Try again at `not_before` with `attempt` attempts made.
    Retry {
        attempt: u32,
        not_before: DateTime<Utc>,
    },
}

/// Everything that follows one delivery attempt.
#[derive(Debug, Clone)]
pub struct DeliveryFinish {
    pub update: DeliveryUpdate,
    pub entries: Vec<TimelineEntry>,
    /// New deliveries this outcome causes (a failed PagerDuty trigger failing over to SMS).
    pub follow_ups: Vec<Delivery>,
    /// The provider's reference to keep for later updates of the same message; the first one
    /// kept for a channel stays.
    pub remember: Option<String>,
}

impl DeliveryFinish {
    /// The outbox row as it is kept for the next attempt, when this attempt is retried.
    pub fn retry_row(&self, delivery: &Delivery) -> Option<Delivery> {
        match self.update {
            DeliveryUpdate::Retry {
                attempt,
                not_before,
            } => {
                let mut next = delivery.clone();
                next.attempt = attempt;
                next.not_before = not_before;
                Some(next)
            }
            DeliveryUpdate::Done => None,
        }
    }

    pub fn simple(update: DeliveryUpdate, entry: TimelineEntry) -> Self {
        Self {
            update,
            entries: vec![entry],
            follow_ups: vec![],
            remember: None,
        }
    }
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies a transition atomically, durably (fsynced) before it returns `Committed`.
    async fn commit(&self, tx: Transition) -> Result<CommitOutcome, StoreError>;

    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError>;

    async fn fingerprint(&self, fp: &Fingerprint) -> Result<FingerprintState, StoreError>;

    /// Newest first, at most `limit`.
    async fn incidents(
        &self,
        status: Option<IncidentStatus>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Every open (triggered or acknowledged) incident, in no particular order, read through the
    /// open-fingerprint index: the cost follows the number of open incidents, never the history
    /// of resolved ones (inhibition and `trading_resumed` ask on every alert).
    async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError>;

    /// Resolved incidents whose resolve is at or after `since`, the latest resolve first, at
    /// most `limit`, through the resolve-time index `prune` uses: the cost follows what was
    /// resolved since, not the history (the peer feed asks every 2 s). Incidents written by a
    /// version before that index, and not yet indexed by `prune`'s backfill, are not listed.
    async fn resolved_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Deletes what has outlived its retention (see `Prune`), oldest first, bounded by
    /// `prune.limit`. Through time-ordered indexes: the cost follows what is deleted, not what
    /// is kept.
    async fn prune(&self, prune: Prune) -> Result<Pruned, StoreError>;

    /// Oldest first.
    async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError>;

    /// Incidents with a step due at or before `now`, earliest first.
    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DateTime<Utc>, IncidentId)>, StoreError>;

    /// The earliest due time, if any.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Outbox rows whose `not_before` is at or before `now`, earliest first.
    async fn deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Whether `delivery` is still in the outbox at the attempt it was read at. The worker asks
    /// right before sending, holding its in-flight slot for the row: a row another task finished
    /// meanwhile is then not sent twice.
    async fn still_pending(&self, delivery: &Delivery) -> Result<bool, StoreError>;

    /// Every outbox row, leased or not, at most `limit`, read-only (nothing is handed out): what
    /// the peer feed reports as fired but not yet delivered.
    async fn outbox(&self, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// The earliest `not_before` in the outbox. A backend that leases rows to replicas (Redis)
    /// counts only rows not yet handed out: a handed-out row is the holder's until it is
    /// finished or its lease runs out, and must not keep every other replica's worker awake.
    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Records the end of one attempt, atomically: updates or removes the outbox row, appends
    /// the timeline entries, adds follow-up deliveries (failover) and remembers the provider's
    /// reference for the channel.
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        finish: DeliveryFinish,
    ) -> Result<(), StoreError>;

    /// The provider references remembered for an incident, by channel name (Slack `channel:ts`).
    async fn references(
        &self,
        id: IncidentId,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError>;

    /// Stores a small operator-managed record (an API silence, an on-call override, a
    /// heartbeat's last beat) under `kind`/`id`, replacing any, durably.
    async fn put_record(&self, kind: &str, id: &str, value: Vec<u8>) -> Result<(), StoreError>;

    /// One record, if present.
    async fn get_record(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes a record; `false` when there was none.
    async fn delete_record(&self, kind: &str, id: &str) -> Result<bool, StoreError>;

    /// Every record of `kind`, by id.
    async fn records(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Counts for readiness and metrics: (open incidents, outbox rows, due timers).
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Why the store refuses writes right now, when it does though it may still answer reads
    /// (the embedded store after a write failed with an I/O error, until it has re-opened its
    /// file). Readiness lists it.
    fn problem(&self) -> Option<String> {
        None
    }
}

/// What one `prune` call may delete. Times come from the caller's (injected) clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prune {
    /// Resolved incidents whose resolve is before this go, with their timeline, outbox rows,
    /// provider references and due row, and their fingerprint's last change when no incident of
    /// that fingerprint is open and the change is older than this too.
    pub resolved_before: DateTime<Utc>,
    /// Transport delivery ids (SNS `MessageId`s) seen before this are forgotten: the same id is
    /// then applied again.
    pub seen_before: DateTime<Utc>,
    /// At most this many incidents, and this many delivery ids, go in one call (the oldest
    /// first), so that one call never holds the store's writer for long.
    pub limit: usize,
}

/// What one `prune` call deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// The incidents deleted, with their fingerprints (the caller drops records keyed by them).
    pub incidents: Vec<(IncidentId, Fingerprint)>,
    /// How many delivery ids were forgotten.
    pub delivery_ids: usize,
    /// The store is still indexing, a step per call, what was written before its prune indexes
    /// existed (older versions): call again soon.
    pub backlog: bool,
}

impl Pruned {
    /// Whether the call stopped at `limit` or has a backlog: more may be due, so the caller may
    /// call again soon.
    pub fn full(&self, limit: usize) -> bool {
        self.incidents.len() >= limit || self.delivery_ids >= limit || self.backlog
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub open_incidents: u64,
    pub outbox: u64,
    pub timers: u64,
}

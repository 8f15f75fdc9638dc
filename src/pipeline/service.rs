//! The read → decide → commit loop around the pure decisions in `transition` and `escalate`.
//! Every method reads the current state, decides with `now` from the injected clock, and commits
//! one version-guarded `Transition`; on a conflict (another task or replica changed the incident
//! first) it reads again and decides again.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::extras;
use crate::classify::classify;
use crate::clock::Clock;
use crate::config::{Override, Policy, PolicyHandle};
use crate::domain::{Alert, IncidentId};
use crate::escalate;
use crate::escalate::FireContext;
use crate::incident::transition::{self, AckResult, AlertEffect};
use crate::incident::{
    Actor, Delivery, Incident, IncidentStatus, NotifyKind, Origin, TimelineEntry, TimelineEvent,
};
use crate::metrics::Metrics;
use crate::store::{CommitOutcome, Guard, RecordWrite, Store, StoreError, Transition};

/// How often a transition is re-decided after losing a race before giving up.
const MAX_CONFLICTS: usize = 16;

/// What one decision over freshly read state comes to (see [`IncidentService::settle`]).
// Made and consumed once per decision, on the ingest hot path: boxing the transition would add
// an allocation per alert to save a move.
#[allow(clippy::large_enum_variant)]
enum Decision<T> {
    /// Nothing (more) to write: `T` is the answer as it stands.
    Answer(T),
    /// Commit this transition; `T` is the answer once it applies.
    Commit(Transition, T),
}

/// How [`IncidentService::settle`] ended; each carries the decision's answer.
enum Settled<T> {
    /// Decided without a write of the loop's own.
    Answered(T),
    /// The transition committed.
    Committed(T),
    /// The transport's delivery id was recorded before: nothing applied.
    Duplicate(T),
}

impl<T> Settled<T> {
    /// The answer, however it was reached (for operations that carry no delivery id).
    fn into_answer(self) -> T {
        match self {
            Self::Answered(t) | Self::Committed(t) | Self::Duplicate(t) => t,
        }
    }
}
/// How often an inhibited incident looks again whether its inhibitor is still open.
const INHIBIT_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// The event kind that resolves open `trading_halted` incidents (DESIGN §3: the runbook's
/// "Resume Trading").
pub const TRADING_RESUMED: &str = "trading_resumed";
pub const TRADING_HALTED: &str = "trading_halted";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("incident not found")]
    NotFound,
    #[error("incident is already resolved")]
    AlreadyResolved,
    #[error("too much contention on one incident; try again")]
    Contention,
    #[error("policy {0:?} does not exist in the loaded routing/")]
    MissingPolicy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What ingesting one alert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Opened(IncidentId),
    Updated(IncidentId),
    /// A flapping alarm reopened its recently resolved incident.
    Reopened(IncidentId),
    Resolved(Vec<IncidentId>),
    /// The transport delivered this message before.
    Duplicate,
    /// Older than the newest state already applied.
    Stale(Option<IncidentId>),
    /// Sent longer ago than the transport retries: recorded on the open incident (if any),
    /// nothing changed, nobody paged.
    Replay(Option<IncidentId>),
    /// A resolve for something not open.
    Nothing,
    /// A new alert from a source over its storm bound, grouped into the source's storm
    /// incident (opened by this alert when there was none).
    Storm(IncidentId),
}

impl IngestOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Opened(_) => "opened",
            Self::Reopened(_) => "reopened",
            Self::Updated(_) => "updated",
            Self::Resolved(_) => "resolved",
            Self::Duplicate => "duplicate",
            Self::Stale(_) => "stale",
            Self::Replay(_) => "replay",
            Self::Nothing => "nothing_open",
            Self::Storm(_) => "storm",
        }
    }

    pub fn incidents(&self) -> Vec<IncidentId> {
        match self {
            Self::Opened(id)
            | Self::Updated(id)
            | Self::Reopened(id)
            | Self::Stale(Some(id))
            | Self::Replay(Some(id)) => {
                vec![*id]
            }
            Self::Storm(id) => vec![*id],
            Self::Resolved(ids) => ids.clone(),
            _ => vec![],
        }
    }
}

/// How an alert reached vigil. Anything but `Delivered` is written on the timeline of the
/// incident it touches, so an operator can tell a page made late from one made on time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Its sender delivered it (an HTTP request).
    Delivered,
    /// Reconciliation read the alarm's state from CloudWatch in `region`: its notification was
    /// never received.
    Reconciled { region: String },
    /// Taken from SNS's dead-letter queue `queue`: SNS had given up delivering it.
    DeadLetter { queue: String },
}

impl Arrival {
    /// `reconciliation`, `dead_letter` (metric label), or `None` for a delivered alert.
    pub fn path(&self) -> Option<&'static str> {
        match self {
            Self::Delivered => None,
            Self::Reconciled { .. } => Some("reconciliation"),
            Self::DeadLetter { .. } => Some("dead_letter"),
        }
    }

    fn note(&self, alert: &Alert) -> Option<TimelineEvent> {
        match self {
            Self::Delivered => None,
            Self::Reconciled { region } => Some(TimelineEvent::Reconciled {
                region: region.clone(),
                state: alert
                    .labels
                    .get("alarm_state")
                    .cloned()
                    .unwrap_or_else(|| alert.status.as_str().to_string()),
                changed_at: alert.occurred_at,
                note: format!(
                    "found by reconciliation (DescribeAlarms in {region}), not delivered: its notification never reached vigil"
                ),
            }),
            Self::DeadLetter { queue } => Some(TimelineEvent::DeadLetter {
                queue: queue.clone(),
                message_id: alert.delivery_id.clone(),
                note: "delivered late, from SNS's dead-letter queue: SNS had given up delivering it to vigil".into(),
            }),
        }
    }
}

/// Wakes the long-lived loops when a commit gives them work.
#[derive(Clone, Default)]
pub struct Wakers {
    pub scheduler: Arc<crate::pipeline::scheduler::SchedulerWake>,
    pub deliveries: Arc<Notify>,
    /// Asks reconciliation for a pass now (a standby taking over: what SNS could not deliver to
    /// the dead primary is only in CloudWatch).
    pub reconcile: Arc<Notify>,
}

/// API overrides and silences as last read from the store. They change rarely and are consulted
/// for every new incident and every due step, so a process reads them at most once per
/// `EXTRAS_TTL` of the injected clock (a clock that moves back reads again); a write through
/// this process's API clears the copy at once, and other replicas see it within the TTL.
#[derive(Default)]
struct ExtrasCache {
    read_at: Option<DateTime<Utc>>,
    overrides: Arc<Vec<Override>>,
    silences: Arc<Vec<Arc<crate::config::Silence>>>,
    /// API drill windows that have not ended.
    drills: Arc<Vec<crate::config::Silence>>,
}

const EXTRAS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The window of the storm bound (`routing/` `storm.max_new_per_minute`).
const STORM_WINDOW_SECS: i64 = 60;

/// Grouped alerts waiting to be added to one storm incident's count, and who is adding them.
#[derive(Default)]
struct StormTally {
    pending: std::sync::atomic::AtomicU64,
    writer: tokio::sync::Mutex<()>,
}

/// New-incident attempts per source over the last `STORM_WINDOW_SECS`, in one-second buckets.
/// In memory, per process: each replica counts the alerts it receives, so with several replicas
/// the bound holds per replica. Every attempt counts, grouped ones too, so a storm lasts while
/// the flood does and ends once a minute passes with no more than the bound of attempts.
#[derive(Default)]
struct StormCounter {
    sources:
        std::collections::HashMap<crate::domain::Source, std::collections::VecDeque<(i64, u32)>>,
}

impl StormCounter {
    /// Counts one attempt from `source` at `now`; whether it is within the bound (opens its own
    /// incident) or beyond it (is grouped).
    fn admit(&mut self, source: crate::domain::Source, now: DateTime<Utc>, bound: u32) -> bool {
        let sec = now.timestamp();
        let buckets = self.sources.entry(source).or_default();
        while buckets
            .front()
            .is_some_and(|(at, _)| *at <= sec - STORM_WINDOW_SECS || *at > sec)
        {
            buckets.pop_front();
        }
        let seen: u64 = buckets.iter().map(|(_, n)| u64::from(*n)).sum();
        match buckets.back_mut() {
            Some((at, n)) if *at == sec => *n = n.saturating_add(1),
            _ => buckets.push_back((sec, 1)),
        }
        seen < u64::from(bound)
    }
}

pub struct IncidentService {
    extras: std::sync::Mutex<ExtrasCache>,
    /// API silences compiled once, recompiled only when their record changes.
    silences: extras::SilenceCache,
    storm: std::sync::Mutex<StormCounter>,
    /// Grouped alerts not yet added to their storm incident's count (`count_storm`).
    storm_tallies: std::sync::Mutex<std::collections::HashMap<IncidentId, Arc<StormTally>>>,
    store: Arc<dyn Store>,
    policy: Arc<PolicyHandle>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    wake: Wakers,
    /// Alerts the store refused (the sender was answered 503): reconciliation looks again soon
    /// after this moves, since a sender that gave up meanwhile will not send again.
    refusals: std::sync::atomic::AtomicU64,
    /// Whether this process may page (a standby's is closed): `super::gate`.
    gate: Arc<super::gate::PagingGate>,
}

impl IncidentService {
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<PolicyHandle>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        wake: Wakers,
    ) -> Self {
        Self {
            extras: std::sync::Mutex::new(ExtrasCache::default()),
            silences: extras::SilenceCache::default(),
            storm: std::sync::Mutex::new(StormCounter::default()),
            storm_tallies: Default::default(),
            store,
            policy,
            clock,
            metrics,
            wake,
            refusals: Default::default(),
            gate: Arc::new(super::gate::PagingGate::default()),
        }
    }

    /// The paging gate this service obeys (default: a primary's, always open).
    pub fn with_gate(mut self, gate: Arc<super::gate::PagingGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Wakes the scheduler (the gate opened: what is due fires now).
    pub fn wake_scheduler(&self) {
        self.wake.scheduler.notify_one();
    }

    /// Asks for a reconciliation pass over every region now.
    pub fn wake_reconciliation(&self) {
        self.wake.reconcile.notify_one();
    }

    /// What `wake_reconciliation` notifies.
    pub fn reconciliation_wanted(&self) -> Arc<Notify> {
        self.wake.reconcile.clone()
    }

    pub fn gate(&self) -> &Arc<super::gate::PagingGate> {
        &self.gate
    }

    /// How many alerts the store has refused since start.
    pub fn refusals(&self) -> u64 {
        self.refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store, for the pipeline's own loops (the scheduler, heartbeats, retention, the
    /// peer): the HTTP layer goes through the service's methods (`super::operator`).
    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(super) fn policy(&self) -> &Arc<PolicyHandle> {
        &self.policy
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The read → decide → commit loop every change runs through. `decide` reads what it needs
    /// from the store and decides, with the pure stages, at `now` (the injected clock, read
    /// afresh each round); its transition is committed, guarded by what it read. When the guard
    /// no longer holds (another task or replica changed the state between the read and the
    /// commit), the state is read and decided again, at most `MAX_CONFLICTS` times.
    async fn settle<T, F, Fut>(&self, mut decide: F) -> Result<Settled<T>, ServiceError>
    where
        F: FnMut(DateTime<Utc>) -> Fut,
        Fut: std::future::Future<Output = Result<Decision<T>, ServiceError>>,
    {
        for _ in 0..MAX_CONFLICTS {
            match decide(self.clock.now()).await? {
                Decision::Answer(t) => return Ok(Settled::Answered(t)),
                Decision::Commit(tx, t) => match self.commit(tx).await? {
                    CommitOutcome::Committed => return Ok(Settled::Committed(t)),
                    CommitOutcome::Duplicate => return Ok(Settled::Duplicate(t)),
                    CommitOutcome::Conflict => continue,
                },
            }
        }
        Err(ServiceError::Contention)
    }

    async fn commit(&self, mut tx: Transition) -> Result<CommitOutcome, ServiceError> {
        // A closed gate sends nothing: status notices (acks, resolves) are not written. Pages
        // are only decided while the gate is open, and a page decided just before it closed
        // still goes (a miss is worse than the duplicate bound).
        if !self.gate.is_open() {
            tx.deliveries.retain(|d| d.kind.is_page());
        }
        let wakes_deliveries = !tx.deliveries.is_empty();
        // A step that found nobody to page is listed for readiness once it is committed.
        let unreached = tx
            .timeline
            .iter()
            .any(|e| matches!(e.event, TimelineEvent::Unreached { .. }))
            .then(|| tx.incident.clone())
            .flatten();
        let due = tx.incident.as_ref().and_then(|i| i.next_due);
        let policy = self.policy.current();
        let answered = super::report::answered_in(&tx, &policy);
        // A resolve records, in the same atomic change, when its fingerprint last resolved:
        // flap detection reads it, and it can never be missing after a committed resolve.
        if policy.flap_cooldown.is_some()
            && let Some(inc) = tx
                .incident
                .as_ref()
                .filter(|i| i.status == IncidentStatus::Resolved)
            && let Some((_, at)) = inc.resolved.as_ref()
            && let Ok(value) = serde_json::to_vec(&extras::LastResolved {
                incident: inc.id,
                at: *at,
            })
        {
            tx.records.push(RecordWrite {
                kind: extras::RESOLVED.to_string(),
                id: inc.fingerprint.as_str().to_string(),
                value,
            });
        }
        let out = self.store.commit(tx).await?;
        if out == CommitOutcome::Committed
            && let Some(inc) = unreached
        {
            tracing::error!(incident.id = %inc.id, severity = %inc.severity, "An escalation step found nobody to page.");
            extras::list_unreached(self.store.as_ref(), &inc).await?;
        }
        if out == CommitOutcome::Committed {
            for a in &answered {
                a.observe(&self.metrics);
            }
            if wakes_deliveries {
                self.wake.deliveries.notify_one();
            }
            if let Some(at) = due {
                self.wake.scheduler.due_added(at);
            }
        }
        Ok(out)
    }

    /// Forgets the cached API overrides and silences (after this process's API changed them).
    pub fn forget_extras(&self) {
        self.extras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_at = None;
    }

    /// API silences that have not ended by `now`, read from the store (each compiled only once).
    pub async fn api_silences(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Arc<crate::config::Silence>>, ServiceError> {
        Ok(self.silences.read(self.store.as_ref(), now).await?)
    }

    async fn api_extras(
        &self,
        now: DateTime<Utc>,
    ) -> Result<(Arc<Vec<Override>>, Arc<Vec<Arc<crate::config::Silence>>>), ServiceError> {
        {
            let cache = self.extras.lock().unwrap_or_else(|e| e.into_inner());
            let ttl = chrono::Duration::from_std(EXTRAS_TTL).unwrap_or_default();
            if cache.read_at.is_some_and(|t| t <= now && now - t < ttl) {
                return Ok((cache.overrides.clone(), cache.silences.clone()));
            }
        }
        let overrides: Vec<Override> = extras::overrides(self.store.as_ref(), now)
            .await?
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        let silences = self.api_silences(now).await?;
        let drills = extras::drills(self.store.as_ref(), now).await?;
        let mut cache = self.extras.lock().unwrap_or_else(|e| e.into_inner());
        cache.read_at = Some(now);
        cache.overrides = Arc::new(overrides);
        cache.silences = Arc::new(silences);
        cache.drills = Arc::new(drills.into_iter().map(|(_, d)| d).collect());
        Ok((cache.overrides.clone(), cache.silences.clone()))
    }

    /// The drill window, of `routing/`'s and then the API's, that an incident with `labels`
    /// opening at `now` falls in.
    async fn drill_window(
        &self,
        policy: &Policy,
        labels: &crate::domain::Labels,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::config::Silence>, ServiceError> {
        // Through the cache `fire_context` reads right after: no extra store read per opening.
        self.api_extras(now).await?;
        let api = self
            .extras
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drills
            .clone();
        Ok(policy.drill_for(labels, now, api.iter()).cloned())
    }

    /// What escalation needs from the store besides the incident: API on-call overrides, and a
    /// silence or an open incident that holds back pages for these labels (`me` is the incident
    /// itself, which never inhibits itself).
    async fn fire_context(
        &self,
        policy: &Policy,
        labels: &crate::domain::Labels,
        me: Option<IncidentId>,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Override>, Option<(String, DateTime<Utc>)>), ServiceError> {
        let (all_overrides, all_silences) = self.api_extras(now).await?;
        let overrides = all_overrides
            .iter()
            .filter(|o| o.end > now)
            .cloned()
            .collect();
        let api_silences = all_silences.iter().map(AsRef::as_ref);
        if let Some(s) = policy.silenced_by(labels, now, api_silences) {
            return Ok((overrides, Some((format!("silence {}", s.id), s.end))));
        }
        // Inhibition needs the open incidents: only look when a rule could apply.
        if policy
            .inhibit_rules
            .iter()
            .any(|r| r.target_matchers.iter().all(|m| m.matches(labels)))
        {
            for src in self.open_incidents().await? {
                if Some(src.id) != me && policy.inhibits(&src.labels, labels) {
                    let recheck = crate::clock::after(now, INHIBIT_RECHECK);
                    return Ok((overrides, Some((format!("incident {}", src.id), recheck))));
                }
            }
        }
        Ok((overrides, None))
    }

    /// Classifies `alert` and opens, updates or resolves its incident. Durable when it returns.
    ///
    /// A sender's time too far in the future (`transition::MAX_CLOCK_AHEAD`) is replaced by the
    /// receive time, and the claimed time is kept on the timeline.
    pub async fn ingest(&self, alert: &Alert) -> Result<IngestOutcome, ServiceError> {
        self.ingest_via(alert, &Arrival::Delivered).await
    }

    /// Ingests a batch in order and answers each alert's outcome, in the same order.
    ///
    /// Alerts of a batch that touch different incidents are ingested concurrently, so their
    /// store writes share group commits; a batch in which two alerts land on one incident (the
    /// same classified fingerprint), or that carries a `trading_resumed` (which resolves other
    /// incidents), keeps its order.
    pub async fn ingest_batch(&self, alerts: &[Alert]) -> Result<Vec<IngestOutcome>, ServiceError> {
        // Only a batch needs the up-front classification (each alert is classified again as it
        // is ingested); a single event, the hot path, goes straight in.
        let independent = alerts.len() > 1 && {
            let policy = self.policy.current();
            let mut keys = std::collections::HashSet::with_capacity(alerts.len());
            alerts.iter().all(|a| {
                a.labels.get("kind").map(String::as_str) != Some(TRADING_RESUMED)
                    && keys.insert(classify(&policy, a).fingerprint)
            })
        };
        if independent {
            return futures::future::join_all(alerts.iter().map(|a| self.ingest(a)))
                .await
                .into_iter()
                .collect();
        }
        let mut out = Vec::with_capacity(alerts.len());
        for alert in alerts {
            out.push(self.ingest(alert).await?);
        }
        Ok(out)
    }

    /// As [`ingest`](Self::ingest), for an alert that arrived by `arrival`: the timeline of the
    /// incident it opens, updates or resolves says how, and `vigil_recovered_total` counts it.
    pub async fn ingest_via(
        &self,
        alert: &Alert,
        arrival: &Arrival,
    ) -> Result<IngestOutcome, ServiceError> {
        // Deciding whether to fire the first step and committing it are one step for a
        // hand-back: it waits for this ingest to commit before the primary may open.
        let _deciding = self.gate.deciding().await;
        let now = self.clock.now();
        let bounded;
        let (alert, claimed) = match transition::implausible_future(alert.occurred_at, now) {
            Some(claimed) => {
                tracing::warn!(fingerprint = %alert.fingerprint, claimed = %claimed, used = %now, "The sender's timestamp is in the future; using the receive time.");
                let mut a = alert.clone();
                a.occurred_at = now;
                bounded = a;
                (&bounded, Some(claimed))
            }
            None => (alert, None),
        };
        let outcome = if alert.labels.get("kind").map(String::as_str) == Some(TRADING_RESUMED) {
            self.ingest_resumed(alert).await
        } else {
            self.ingest_alert(alert, claimed, arrival.note(alert)).await
        };
        if let Err(ServiceError::Store(_)) = &outcome {
            self.refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let outcome = outcome?;
        self.metrics
            .counter(
                "vigil_alerts_total",
                &[
                    ("source", alert.source.as_str()),
                    ("outcome", outcome.label()),
                ],
            )
            .increment(1);
        if let Some(path) = arrival.path() {
            self.metrics
                .counter(
                    "vigil_recovered_total",
                    &[("path", path), ("outcome", outcome.label())],
                )
                .increment(1);
        }
        Ok(outcome)
    }

    /// Reconciliation's entry: `alert` is an alarm's current state as CloudWatch reports it.
    /// It is acted on only when it is a transition vigil has not seen — newer than the last
    /// state change recorded for its fingerprint — and when acting changes something: an
    /// alarm in ALARM (or INSUFFICIENT_DATA) opens or updates its incident, one in OK resolves
    /// its open incident. `None` = seen already, or nothing to do; nothing is written then, so a
    /// pass over unchanged alarms costs reads only, and an incident a person resolved while its
    /// alarm stayed in ALARM is not reopened by later passes.
    pub async fn reconcile(
        &self,
        alert: &Alert,
        region: &str,
    ) -> Result<Option<IngestOutcome>, ServiceError> {
        let fp = classify(&self.policy.current(), alert).fingerprint;
        let state = self.store.fingerprint(&fp).await?;
        let believable = crate::clock::after(self.clock.now(), transition::MAX_CLOCK_AHEAD);
        let newest = state
            .open
            .as_ref()
            .map(|i| i.last_change)
            .into_iter()
            .chain(state.last_change)
            .filter(|t| *t <= believable)
            .max();
        if newest.is_some_and(|seen| alert.occurred_at <= seen) {
            return Ok(None);
        }
        if alert.status == crate::domain::AlertStatus::Resolved && state.open.is_none() {
            return Ok(None);
        }
        let arrival = Arrival::Reconciled {
            region: region.to_string(),
        };
        self.ingest_via(alert, &arrival).await.map(Some)
    }

    /// Records `alert`, sent at `sent_at`, as a replay: a `replayed_alert` timeline entry on the
    /// open incident of its fingerprint (if there is one) and its delivery id (so a later copy is
    /// a duplicate). Opens, resolves and pages nothing.
    pub async fn ingest_replay(
        &self,
        alert: &Alert,
        sent_at: DateTime<Utc>,
    ) -> Result<IngestOutcome, ServiceError> {
        let fp = classify(&self.policy.current(), alert).fingerprint;
        let now = self.clock.now();
        let open = self.store.fingerprint(&fp).await?.open.map(|i| i.id);
        let tx = Transition {
            timeline: open
                .map(|_| TimelineEntry {
                    at: now,
                    event: TimelineEvent::ReplayedAlert {
                        status: alert.status,
                        occurred_at: alert.occurred_at,
                        sent_at,
                    },
                })
                .into_iter()
                .collect(),
            timeline_for: open,
            delivery_id: alert.delivery_id.clone(),
            ..Default::default()
        };
        let outcome = match self.commit(tx).await? {
            CommitOutcome::Duplicate => IngestOutcome::Duplicate,
            _ => IngestOutcome::Replay(open),
        };
        self.metrics
            .counter(
                "vigil_alerts_total",
                &[
                    ("source", alert.source.as_str()),
                    ("outcome", outcome.label()),
                ],
            )
            .increment(1);
        Ok(outcome)
    }

    async fn ingest_alert(
        &self,
        alert: &Alert,
        claimed: Option<DateTime<Utc>>,
        note: Option<TimelineEvent>,
    ) -> Result<IngestOutcome, ServiceError> {
        let policy = self.policy.current();
        let cls = classify(&policy, alert);
        let fp = &cls.fingerprint;
        // Counted once per alert, not once per retry after a conflict.
        let admitted = std::sync::OnceLock::new();
        let (policy, cls, note, admitted) = (&policy, &cls, &note, &admitted);
        let settled = self
            .settle(|now| async move {
                let state = self.store.fingerprint(fp).await?;
                let last_change = Some((fp.clone(), alert.occurred_at));
                let (mut tx, outcome, steps_fired) = match transition::effect(
                    state.open.as_ref(),
                    state.last_change,
                    alert,
                    now,
                ) {
                    AlertEffect::Open => {
                        if let Some((tx, id)) = self
                            .flap_reopening(policy, alert, fp, now, note.clone())
                            .await?
                        {
                            return Ok(Decision::Commit(tx, (IngestOutcome::Reopened(id), 0)));
                        }
                        if !*admitted.get_or_init(|| self.storm_admits(policy, alert, now)) {
                            let storm = self.ingest_storm(policy, alert, cls).await?;
                            return Ok(Decision::Answer((storm, 0)));
                        }
                        let (inc, timeline, deliveries) =
                            self.open_incident(policy, alert, cls, now).await?;
                        let steps_fired = steps_in(&timeline);
                        let id = inc.id;
                        (
                            Transition {
                                delivery_id: alert.delivery_id.clone(),
                                last_change,
                                decided_at: Some(now),
                                ..Transition::open(inc, timeline, deliveries)
                            },
                            IngestOutcome::Opened(id),
                            steps_fired,
                        )
                    }
                    AlertEffect::Fold => {
                        let mut inc = state
                            .open
                            .expect("Fold is decided only for an open incident");
                        let guard = Guard::Version(inc.id, inc.version);
                        let (timeline, deliveries) = transition::fold(&mut inc, alert, now);
                        let id = inc.id;
                        let outcome = if inc.status == IncidentStatus::Resolved {
                            IngestOutcome::Resolved(vec![id])
                        } else {
                            IngestOutcome::Updated(id)
                        };
                        (
                            Transition {
                                delivery_id: alert.delivery_id.clone(),
                                last_change,
                                decided_at: Some(now),
                                ..Transition::update(guard, inc, timeline, deliveries)
                            },
                            outcome,
                            0,
                        )
                    }
                    AlertEffect::Stale { newer } => {
                        let id = state.open.as_ref().map(|i| i.id);
                        tracing::info!(fingerprint = %fp, occurred_at = %alert.occurred_at, newer = %newer, "Out-of-order alert ignored.");
                        let timeline = vec![TimelineEntry {
                            at: now,
                            event: TimelineEvent::StaleAlert {
                                status: alert.status,
                                occurred_at: alert.occurred_at,
                                newer,
                            },
                        }];
                        (
                            Transition {
                                timeline: if id.is_some() { timeline } else { vec![] },
                                timeline_for: id,
                                delivery_id: alert.delivery_id.clone(),
                                decided_at: Some(now),
                                ..Default::default()
                            },
                            IngestOutcome::Stale(id),
                            0,
                        )
                    }
                    AlertEffect::Nothing => (
                        Transition {
                            guard: Some(Guard::NoOpenIncident(fp.clone())),
                            delivery_id: alert.delivery_id.clone(),
                            last_change,
                            decided_at: Some(now),
                            ..Default::default()
                        },
                        IngestOutcome::Nothing,
                        0,
                    ),
                };
                if tx.incident.is_some() || tx.timeline_for.is_some() {
                    // Said first on the timeline: a claimed time that was not believed, then
                    // how the alert came (each put in front of what is already there).
                    let said = note.clone().into_iter().chain(claimed.map(|claimed| {
                        TimelineEvent::FutureTimestamp {
                            claimed,
                            used: alert.occurred_at,
                        }
                    }));
                    for event in said {
                        tx.timeline.insert(0, TimelineEntry { at: now, event });
                    }
                }
                Ok(Decision::Commit(tx, (outcome, steps_fired)))
            })
            .await?;
        match settled {
            Settled::Answered((outcome, _)) => Ok(outcome),
            Settled::Duplicate(_) => Ok(IngestOutcome::Duplicate),
            Settled::Committed((outcome, steps_fired)) => {
                self.metrics.escalation_steps.increment(steps_fired);
                match &outcome {
                    IngestOutcome::Opened(id) => {
                        tracing::info!(incident.id = %id, fingerprint = %fp, severity = %cls.severity, rule = %cls.rule, "Incident opened.");
                    }
                    IngestOutcome::Reopened(id) => {
                        tracing::info!(incident.id = %id, fingerprint = %fp, "Flapping alarm reopened its incident.");
                    }
                    _ => {}
                }
                Ok(outcome)
            }
        }
    }

    /// A new incident for `alert` as `cls` classified it, with its first step fired if due now:
    /// the incident (version 1), its timeline and its deliveries.
    async fn open_incident(
        &self,
        policy: &Policy,
        alert: &Alert,
        cls: &crate::classify::Classification,
        now: DateTime<Utc>,
    ) -> Result<(Incident, Vec<TimelineEntry>, Vec<crate::incident::Delivery>), ServiceError> {
        let esc = policy
            .policies
            .get(&cls.policy)
            .cloned()
            .ok_or_else(|| ServiceError::MissingPolicy(cls.policy.clone()))?;
        let collected = crate::clock::after(now, cls.group_window.unwrap_or_default());
        let start = policy.notify_at(cls.severity, collected);
        let (mut inc, mut timeline) = transition::open(alert, cls, esc, now, start);
        if let Some(w) = self.drill_window(policy, &inc.labels, now).await? {
            inc.drill = Some(w.id.clone());
            timeline.push(TimelineEntry {
                at: now,
                event: TimelineEvent::Drill {
                    window: w.id,
                    comment: w.comment,
                    author: w.author,
                },
            });
        }
        if start > now {
            let reason = if start > collected {
                "outside business hours"
            } else {
                "group window: collecting alerts"
            };
            timeline.push(TimelineEntry {
                at: now,
                event: TimelineEvent::Deferred {
                    until: start,
                    reason: reason.into(),
                },
            });
        }
        let (overrides, hold) = self.fire_context(policy, &inc.labels, None, now).await?;
        let ctx = FireContext {
            overrides: &overrides,
            hold,
        };
        // A closed gate (a standby) opens the incident but fires nothing: its first step stays
        // due, and the scheduler fires it if this side takes over.
        let (fired, deliveries) = if self.gate.is_open() {
            escalate::fire_due(&mut inc, policy, now, &ctx)
        } else {
            (Vec::new(), Vec::new())
        };
        inc.version = 1;
        timeline.extend(fired);
        Ok((inc, timeline, deliveries))
    }

    /// Whether a new incident from `alert.source` is within the policy's storm bound now.
    fn storm_admits(&self, policy: &Policy, alert: &Alert, now: DateTime<Utc>) -> bool {
        let Some(bound) = policy.storm.bound(alert.source) else {
            return true;
        };
        self.storm
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(alert.source, now, bound)
    }

    /// Groups a new alert from a source over its storm bound into the source's storm incident
    /// for the alert's severity (`storm/<source>/<severity>`), opening that incident (which pages
    /// once, by the alert's own policy) when none is open. The alert's fingerprint and summary go
    /// on the storm incident's timeline and its count grows; the alert's own state change is
    /// still recorded, so its later OK or a stale redelivery is recognised.
    async fn ingest_storm(
        &self,
        policy: &Policy,
        alert: &Alert,
        cls: &crate::classify::Classification,
    ) -> Result<IngestOutcome, ServiceError> {
        let source = alert.source.as_str();
        let storm_fp =
            crate::domain::Fingerprint::parse(format!("storm/{source}/{}", cls.severity.as_str()))
                .expect("a storm fingerprint is short and printable");
        self.metrics
            .counter("vigil_storm_alerts_total", &[("source", source)])
            .increment(1);
        let storm_fp = &storm_fp;
        let settled = self
            .settle(|now| async move {
                let folded = TimelineEntry {
                    at: now,
                    event: TimelineEvent::Alert {
                        status: alert.status,
                        summary: format!("{}: {}", alert.fingerprint, alert.summary),
                        occurred_at: alert.occurred_at,
                    },
                };
                let state = self.store.fingerprint(storm_fp).await?;
                let (tx, opened) = match state.open {
                    // Appended without rewriting the incident: a flood folding into one incident
                    // must not contend on its version. The count follows (`count_storm`).
                    Some(inc) => (
                        Transition {
                            timeline: vec![folded],
                            timeline_for: Some(inc.id),
                            ..Default::default()
                        },
                        inc.id,
                    ),
                    None => {
                        let bound = policy.storm.bound(alert.source).unwrap_or_default();
                        let mut labels = cls.labels.clone();
                        labels.insert("storm".into(), source.into());
                        let storm_alert = Alert {
                            source: alert.source,
                            fingerprint: storm_fp.clone(),
                            status: crate::domain::AlertStatus::Firing,
                            summary: format!(
                                "Alert storm: more than {bound} new {source} alerts within a minute; further {} ones are grouped here",
                                cls.severity.as_str()
                            ),
                            description: None,
                            labels: labels.clone(),
                            details: serde_json::json!({
                                "storm": { "source": source, "max_new_per_minute": bound },
                            }),
                            occurred_at: now,
                            delivery_id: None,
                            severity_override: None,
                        };
                        let storm_cls = crate::classify::Classification {
                            rule: "storm".into(),
                            severity: cls.severity,
                            policy: cls.policy.clone(),
                            labels,
                            fingerprint: storm_fp.clone(),
                            severity_overridden: false,
                            group_window: None,
                        };
                        let (mut inc, mut timeline, deliveries) = self
                            .open_incident(policy, &storm_alert, &storm_cls, now)
                            .await?;
                        inc.members.clear();
                        timeline.push(folded);
                        let id = inc.id;
                        (
                            Transition::open(inc, timeline, deliveries),
                            id,
                        )
                    }
                };
                let is_new = tx.incident.is_some();
                let tx = Transition {
                    delivery_id: alert.delivery_id.clone(),
                    last_change: Some((cls.fingerprint.clone(), alert.occurred_at)),
                    decided_at: Some(now),
                    ..tx
                };
                // On a conflict another task opened the storm incident first: fold into it.
                Ok(Decision::Commit(tx, (opened, is_new)))
            })
            .await?;
        match settled {
            Settled::Duplicate(_) => Ok(IngestOutcome::Duplicate),
            Settled::Answered((id, _)) | Settled::Committed((id, true)) => {
                tracing::warn!(incident.id = %id, source, severity = %cls.severity, "Alert storm: new alerts from this source are grouped into one incident.");
                Ok(IngestOutcome::Storm(id))
            }
            Settled::Committed((id, false)) => {
                self.count_storm(id).await;
                Ok(IngestOutcome::Storm(id))
            }
        }
    }

    /// Adds one grouped alert to storm incident `id`'s count. Counts wait in memory and one task
    /// per storm incident at a time writes them (version-guarded, all that are waiting at once),
    /// so a flood costs a few incident rewrites instead of one contended rewrite per alert.
    /// Best effort: the alerts themselves are already on the timeline.
    async fn count_storm(&self, id: IncidentId) {
        let tally = {
            let mut tallies = self.storm_tallies.lock().unwrap_or_else(|e| e.into_inner());
            tallies.entry(id).or_default().clone()
        };
        tally
            .pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Whoever holds the writer drains what is pending, including what arrives meanwhile;
        // after letting go it looks once more, so no count is left behind.
        while tally.pending.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            let Ok(_writer) = tally.writer.try_lock() else {
                return;
            };
            loop {
                let n = tally.pending.swap(0, std::sync::atomic::Ordering::SeqCst);
                if n == 0 {
                    break;
                }
                match self.add_to_count(id, n).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // Resolved (or gone): nothing more is counted on it.
                        self.storm_tallies
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                        return;
                    }
                    Err(e) => {
                        tally
                            .pending
                            .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                        tracing::warn!(incident.id = %id, error.message = %e, "Could not update the storm incident's count; the next grouped alert tries again.");
                        return;
                    }
                }
            }
        }
    }

    /// `count += n` on open incident `id`; `false` when it is no longer open.
    async fn add_to_count(&self, id: IncidentId, n: u64) -> Result<bool, ServiceError> {
        let settled = self
            .settle(|now| async move {
                let Some(mut inc) = self.store.incident(id).await? else {
                    return Ok(Decision::Answer(false));
                };
                if !inc.status.is_open() {
                    return Ok(Decision::Answer(false));
                }
                let guard = Guard::Version(inc.id, inc.version);
                inc.version += 1;
                inc.count = inc.count.saturating_add(n);
                inc.last_seen = now;
                Ok(Decision::Commit(
                    Transition::update(guard, inc, vec![], vec![]),
                    true,
                ))
            })
            .await?;
        Ok(settled.into_answer())
    }

    /// A firing alert for a fingerprint whose incident resolved within the flap cool-down
    /// reopens that incident instead of opening (and paging) a new one: the reopening, if so.
    /// Lost to a race, the caller decides afresh (and opens a new incident if it must).
    async fn flap_reopening(
        &self,
        policy: &Policy,
        alert: &Alert,
        fp: &crate::domain::Fingerprint,
        now: DateTime<Utc>,
        note: Option<TimelineEvent>,
    ) -> Result<Option<(Transition, IncidentId)>, ServiceError> {
        if policy.flap_cooldown.is_none() {
            return Ok(None);
        }
        let Some(bytes) = self.store.get_record(extras::RESOLVED, fp.as_str()).await? else {
            return Ok(None);
        };
        let Ok(last) = serde_json::from_slice::<extras::LastResolved>(&bytes) else {
            return Ok(None);
        };
        if !policy.reopens_after_flap(last.at, now) {
            return Ok(None);
        }
        let Some(mut inc) = self.store.incident(last.incident).await? else {
            return Ok(None);
        };
        if inc.status != IncidentStatus::Resolved {
            return Ok(None);
        }
        let guard = Guard::Version(inc.id, inc.version);
        let mut timeline = transition::reopen(&mut inc, alert, now);
        if let Some(note) = note {
            timeline.insert(
                0,
                TimelineEntry {
                    at: now,
                    event: note,
                },
            );
        }
        let id = inc.id;
        let tx = Transition {
            delivery_id: alert.delivery_id.clone(),
            last_change: Some((fp.clone(), alert.occurred_at)),
            decided_at: Some(now),
            ..Transition::update(guard, inc, timeline, vec![])
        };
        Ok(Some((tx, id)))
    }

    /// `trading_resumed` resolves every open `trading_halted` incident and tells everyone it paged.
    async fn ingest_resumed(&self, alert: &Alert) -> Result<IngestOutcome, ServiceError> {
        let open = self.open_incidents().await?;
        let mut resolved = Vec::new();
        for inc in open
            .into_iter()
            .filter(|i| i.labels.get("kind").map(String::as_str) == Some(TRADING_HALTED))
        {
            let actor = Actor {
                who: format!("{} ({})", alert.source.as_str(), TRADING_RESUMED),
                origin: Origin::Source,
            };
            if self.resolve(inc.id, actor).await.is_ok() {
                resolved.push(inc.id);
            }
        }
        Ok(if resolved.is_empty() {
            IngestOutcome::Nothing
        } else {
            IngestOutcome::Resolved(resolved)
        })
    }

    /// Through the store's open index: the cost follows what is open, never the history.
    async fn open_incidents(&self) -> Result<Vec<Incident>, ServiceError> {
        Ok(self.store.open_incidents().await?)
    }

    /// Acknowledges: stops escalation. With `until`, only until then (a timed ack); otherwise the
    /// policy's `ack_timeout`, if any, bounds it. A repeated ack changes nothing and answers the
    /// same.
    pub async fn acknowledge(
        &self,
        id: IncidentId,
        actor: Actor,
        until: Option<DateTime<Utc>>,
    ) -> Result<(AckResult, Incident), ServiceError> {
        let actor = &actor;
        let settled = self
            .settle(|now| async move {
                let mut inc = self.read_incident(id).await?;
                let guard = Guard::Version(inc.id, inc.version);
                let (result, timeline, deliveries) =
                    transition::acknowledge(&mut inc, actor.clone(), now, until);
                if result != AckResult::Acknowledged {
                    return Ok(Decision::Answer((result, inc)));
                }
                let tx = Transition::update(guard, inc.clone(), timeline, deliveries);
                Ok(Decision::Commit(tx, (result, inc)))
            })
            .await?;
        if let Settled::Committed(_) = &settled {
            tracing::info!(incident.id = %id, by = %actor.who, origin = ?actor.origin, "Incident acknowledged.");
        }
        Ok(settled.into_answer())
    }

    pub async fn resolve(&self, id: IncidentId, actor: Actor) -> Result<Incident, ServiceError> {
        let actor = &actor;
        let inc = self
            .settle(|now| async move {
                let mut inc = self.read_incident(id).await?;
                let guard = Guard::Version(inc.id, inc.version);
                let (timeline, deliveries) = transition::resolve(&mut inc, actor.clone(), now)
                    .ok_or(ServiceError::AlreadyResolved)?;
                let tx = Transition::update(guard, inc.clone(), timeline, deliveries);
                Ok(Decision::Commit(tx, inc))
            })
            .await?
            .into_answer();
        tracing::info!(incident.id = %id, by = %actor.who, origin = ?actor.origin, "Incident resolved.");
        Ok(inc)
    }

    /// The incident as stored, or `NotFound`.
    async fn read_incident(&self, id: IncidentId) -> Result<Incident, ServiceError> {
        self.store.incident(id).await?.ok_or(ServiceError::NotFound)
    }

    /// Fires every escalation step due now. Returns how many incidents advanced. One unit of
    /// work: the scheduler loop only decides when to call it.
    pub async fn run_due(&self) -> Result<usize, ServiceError> {
        if !self.gate.is_open() {
            return Ok(0);
        }
        let now = self.clock.now();
        let due = self.store.due(now, 1024).await?;
        // Different incidents fire concurrently, so their commits are grouped; each is still
        // one version-guarded transition.
        use futures::StreamExt;
        let results: Vec<Result<bool, ServiceError>> = futures::stream::iter(due)
            .map(|(_, id)| self.fire(id))
            .buffer_unordered(64)
            .collect()
            .await;
        let mut fired = 0;
        for r in results {
            if r? {
                fired += 1;
            }
        }
        Ok(fired)
    }

    async fn fire(&self, id: IncidentId) -> Result<bool, ServiceError> {
        let settled = self
            .settle(|now| async move {
                let policy = self.policy.current();
                let Some(mut inc) = self.store.incident(id).await? else {
                    return Ok(Decision::Answer(None));
                };
                let guard = Guard::Version(inc.id, inc.version);
                let before = (inc.loop_, inc.step);
                let version = inc.version;
                let (overrides, hold) = self
                    .fire_context(&policy, &inc.labels, Some(inc.id), now)
                    .await?;
                let ctx = FireContext {
                    overrides: &overrides,
                    hold,
                };
                let (timeline, deliveries) = escalate::fire_due(&mut inc, &policy, now, &ctx);
                if inc.version == version {
                    return Ok(Decision::Answer(None));
                }
                let fired = (steps_in(&timeline), before, (inc.loop_, inc.step));
                let tx = Transition::update(guard, inc, timeline, deliveries);
                Ok(Decision::Commit(tx, Some(fired)))
            })
            .await?;
        // Someone else fired it (or acked) first: `settle` read and decided again.
        let Settled::Committed(Some((steps_fired, from, to))) = settled else {
            return Ok(false);
        };
        self.metrics.escalation_steps.increment(steps_fired);
        tracing::info!(incident.id = %id, from = ?from, to = ?to, "Escalation step fired.");
        Ok(true)
    }
}

/// How long a resolved incident stays in the peer feed.
pub const PEER_FEED_RESOLVED: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// At most this many incidents in one peer feed (newest first; `truncated` says so).
pub const PEER_FEED_CAP: usize = 5_000;
/// At most this many outbox rows are read for the feed's undelivered pages.
pub const PEER_FEED_OUTBOX_CAP: usize = 10_000;
/// How many recently resolved incidents a mirror looks through before it opens a copy.
const MIRROR_RESOLVED_LOOKBACK: usize = 256;

/// What mirroring one remote incident did here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored {
    Unchanged,
    /// Escalation position, acknowledgement or resolution taken over from the peer.
    Updated,
    /// The alert reached only the peer: a local copy was opened.
    Copied,
}

impl IncidentService {
    /// Every open incident and those resolved within `PEER_FEED_RESOLVED`, newest first, at
    /// most `PEER_FEED_CAP`; whether the cap cut it.
    pub async fn peer_feed(
        &self,
    ) -> Result<(Vec<crate::incident::IncidentSync>, bool), ServiceError> {
        let now = self.clock.now();
        let mut all = self.open_incidents().await?;
        let since = now - chrono::Duration::from_std(PEER_FEED_RESOLVED).unwrap_or_default();
        // Through the resolve-time index: the cost follows what resolved in the window.
        let room = PEER_FEED_CAP.saturating_sub(all.len()).max(1);
        all.extend(self.store.resolved_since(since, room).await?);
        all.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
        let truncated = all.len() > PEER_FEED_CAP;
        all.truncate(PEER_FEED_CAP);
        // The pages still in the outbox, by incident: what the peer sends if this side dies.
        let mut pending: HashMap<IncidentId, Vec<crate::incident::PendingPage>> = HashMap::new();
        for d in self.store.outbox(PEER_FEED_OUTBOX_CAP).await? {
            if d.kind.is_page() {
                pending
                    .entry(d.incident)
                    .or_default()
                    .push(crate::incident::PendingPage::of(&d));
            }
        }
        let feed = all
            .iter()
            .map(|inc| {
                let mut sync = crate::incident::IncidentSync::of(inc);
                if inc.status == IncidentStatus::Triggered
                    && let Some(mut pages) = pending.remove(&inc.id)
                {
                    pages.sort();
                    sync.undelivered = pages;
                }
                sync
            })
            .collect();
        Ok((feed, truncated))
    }

    /// Sends through this side the pages the peer had fired but not delivered when it went
    /// silent (`Incident::peer_undelivered`, from its last feed): one new outbox row each, the
    /// list cleared in the same version-guarded commit, so that replicas sharing a store send
    /// them once. An incident acknowledged or resolved since needs them no more. Returns how
    /// many pages were queued.
    pub async fn resend_peer_undelivered(&self, from: &str) -> Result<usize, ServiceError> {
        let mut queued = 0;
        for open in self.open_incidents().await? {
            if open.peer_undelivered.is_empty() {
                continue;
            }
            let id = open.id;
            let settled = self
                .settle(|now| async move {
                    let Some(mut inc) = self.store.incident(id).await? else {
                        return Ok(Decision::Answer(0));
                    };
                    if inc.peer_undelivered.is_empty() {
                        return Ok(Decision::Answer(0));
                    }
                    let pages = std::mem::take(&mut inc.peer_undelivered);
                    let deliveries: Vec<Delivery> = if inc.status == IncidentStatus::Triggered {
                        pages
                            .iter()
                            .map(|p| {
                                Delivery::new(
                                    inc.id,
                                    p.kind,
                                    &p.channel,
                                    p.target.clone(),
                                    p.people.clone(),
                                    p.step,
                                    now,
                                )
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let guard = Guard::Version(inc.id, inc.version);
                    inc.version += 1;
                    let n = deliveries.len();
                    let timeline = if n > 0 {
                        vec![TimelineEntry {
                            at: now,
                            event: TimelineEvent::PeerResent {
                                pages: n,
                                by: from.to_string(),
                            },
                        }]
                    } else {
                        Vec::new()
                    };
                    Ok(Decision::Commit(
                        Transition::update(guard, inc, timeline, deliveries),
                        n,
                    ))
                })
                .await;
            match settled {
                Ok(Settled::Committed(n)) => {
                    if n > 0 {
                        tracing::warn!(incident.id = %id, pages = n, from, "Sending the pages the silent peer had fired but not delivered.");
                    }
                    queued += n;
                }
                Ok(_) => {}
                // Lost every race for this one: the other incidents are still queued.
                Err(ServiceError::Contention) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(queued)
    }

    /// Follows the peer's view of one incident (`from`: "primary" or "standby"): its escalation
    /// position, acknowledgement and resolution, never moving backwards, never paging. A remote
    /// open incident with no local match is opened here as a copy. Matched by the local open
    /// incident of the fingerprint, else by (fingerprint, `opened_by`). An acknowledgement or
    /// resolve made on a peer that does not page (`peer_pages` false: a passive standby, a held
    /// primary) is told here, to everyone this side paged, when this side pages: the peer sent
    /// no notice.
    pub async fn mirror(
        &self,
        remote: &crate::incident::IncidentSync,
        from: &str,
        peer_pages: bool,
    ) -> Result<Mirrored, ServiceError> {
        // A copy may fire its first step: one decision for a hand-back, like an ingest.
        let _deciding = self.gate.deciding().await;
        let settled = self
            .settle(|now| async move {
                let state = self.store.fingerprint(&remote.fingerprint).await?;
                let Some(mut inc) = state.open else {
                    if !remote.status.is_open() {
                        return Ok(Decision::Answer((Mirrored::Unchanged, None)));
                    }
                    let resolved_here = self
                        .store
                        .incidents(Some(IncidentStatus::Resolved), MIRROR_RESOLVED_LOOKBACK)
                        .await?
                        .iter()
                        .any(|i| {
                            i.fingerprint == remote.fingerprint
                                && i.opened_by.is_some()
                                && i.opened_by == remote.opened_by
                        });
                    if resolved_here {
                        return Ok(Decision::Answer((Mirrored::Unchanged, None)));
                    }
                    let tx = self.open_copy(remote, from, now).await?;
                    let id = tx.incident.as_ref().map(|i| i.id);
                    return Ok(Decision::Commit(tx, (Mirrored::Copied, id)));
                };
                let guard = Guard::Version(inc.id, inc.version);
                let timeline = apply_remote(&mut inc, remote, from, now);
                let undelivered = if inc.status == IncidentStatus::Triggered {
                    remote.undelivered.clone()
                } else {
                    Vec::new()
                };
                let pending_moved = inc.peer_undelivered != undelivered;
                inc.peer_undelivered = undelivered;
                if timeline.is_empty() && !pending_moved {
                    return Ok(Decision::Answer((Mirrored::Unchanged, None)));
                }
                inc.version += 1;
                // Status notices only (a closed gate drops them at commit); mirroring never
                // pages.
                let notices = if peer_pages {
                    Vec::new()
                } else {
                    timeline
                        .iter()
                        .filter_map(|e| match e.event {
                            TimelineEvent::Acknowledged { .. } => Some(NotifyKind::Acknowledged),
                            TimelineEvent::Resolved { .. } => Some(NotifyKind::Resolved),
                            _ => None,
                        })
                        .flat_map(|kind| transition::tell_notified(&inc, kind, now))
                        .collect()
                };
                let id = Some(inc.id);
                let tx = Transition::update(guard, inc, timeline, notices);
                Ok(Decision::Commit(tx, (Mirrored::Updated, id)))
            })
            .await?;
        let Settled::Committed((mirrored, id)) = settled else {
            return Ok(Mirrored::Unchanged);
        };
        let id = id.map(|id| id.to_string()).unwrap_or_default();
        if mirrored == Mirrored::Copied {
            tracing::warn!(incident.id = %id, fingerprint = %remote.fingerprint, from, "An incident only the peer received was opened here as a copy.");
        } else {
            tracing::info!(incident.id = %id, fingerprint = %remote.fingerprint, from, "Incident state mirrored from the peer.");
        }
        Ok(mirrored)
    }

    /// The opening of a local copy of an incident that only the peer received, at the peer's
    /// position; its first step fires here only if this side pages and the peer has not fired
    /// it.
    async fn open_copy(
        &self,
        remote: &crate::incident::IncidentSync,
        from: &str,
        now: DateTime<Utc>,
    ) -> Result<Transition, ServiceError> {
        let policy = self.policy.current();
        let alert = Alert {
            source: remote.source,
            fingerprint: remote.fingerprint.clone(),
            status: crate::domain::AlertStatus::Firing,
            summary: remote.summary.clone(),
            description: None,
            labels: remote.labels.clone(),
            details: serde_json::json!({ "mirrored_from": from }),
            occurred_at: remote.opened_by.unwrap_or(now),
            delivery_id: None,
            severity_override: Some(remote.severity),
        };
        let mut cls = classify(&policy, &alert);
        cls.fingerprint = remote.fingerprint.clone();
        let esc = policy
            .policies
            .get(&cls.policy)
            .cloned()
            .ok_or_else(|| ServiceError::MissingPolicy(cls.policy.clone()))?;
        let (mut inc, mut timeline) = transition::open(&alert, &cls, esc, now, now);
        if remote.status == IncidentStatus::Triggered
            && (remote.loop_, remote.step) == (0, 0)
            && remote.next_due.is_some()
        {
            inc.next_due = remote.next_due;
        }
        timeline.extend(apply_remote(&mut inc, remote, from, now));
        let mut deliveries = Vec::new();
        if self.gate.is_open() {
            let (overrides, hold) = self.fire_context(&policy, &inc.labels, None, now).await?;
            let ctx = FireContext {
                overrides: &overrides,
                hold,
            };
            let (fired, d) = escalate::fire_due(&mut inc, &policy, now, &ctx);
            timeline.extend(fired);
            deliveries = d;
        }
        inc.version = 1;
        Ok(Transition {
            decided_at: Some(now),
            ..Transition::open(inc, timeline, deliveries)
        })
    }

    /// Appends `event` to the timeline of every open incident (a takeover, a hand-back).
    pub async fn note_open(&self, event: TimelineEvent) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let open = self.open_incidents().await?;
        for inc in &open {
            let tx = Transition {
                timeline_for: Some(inc.id),
                timeline: vec![TimelineEntry {
                    at: now,
                    event: event.clone(),
                }],
                ..Default::default()
            };
            self.store.commit(tx).await?;
        }
        Ok(open.len())
    }
}

/// The decision of `mirror` on a local open incident: what the peer did that this side has not.
/// Never backwards: a position behind this side's, an acknowledgement that has already run out
/// or a resolve of another incident of the fingerprint changes nothing.
fn apply_remote(
    inc: &mut Incident,
    remote: &crate::incident::IncidentSync,
    from: &str,
    now: DateTime<Utc>,
) -> Vec<TimelineEntry> {
    let mut out = Vec::new();
    if !inc.status.is_open() {
        return out;
    }
    let same =
        inc.opened_by.is_none() || remote.opened_by.is_none() || inc.opened_by == remote.opened_by;
    let entry = |event| TimelineEntry { at: now, event };
    if remote.status == IncidentStatus::Resolved {
        if let (true, Some(r)) = (same, &remote.resolved) {
            let actor = Actor {
                who: r.by.clone(),
                origin: Origin::Peer,
            };
            inc.status = IncidentStatus::Resolved;
            inc.next_due = None;
            inc.resolved = Some((actor, r.at));
            out.push(entry(TimelineEvent::Resolved {
                by: r.by.clone(),
                origin: Origin::Peer,
            }));
        }
        return out;
    }
    // The peer's acknowledgement ran out and it escalates again: so does this side.
    if inc.status == IncidentStatus::Acknowledged
        && remote.status == IncidentStatus::Triggered
        && inc.ack_until.is_some_and(|t| t <= now)
    {
        inc.status = IncidentStatus::Triggered;
        inc.acknowledged = None;
        inc.ack_until = None;
        inc.loop_ = remote.loop_;
        inc.step = remote.step;
        inc.next_due = remote.next_due;
        if let Some(due) = remote.next_due
            && let Some(local) = inc.escalation.due_at(now, remote.loop_, remote.step)
        {
            inc.anchor = Some(now + (due - local));
        }
        out.push(entry(TimelineEvent::AckExpired));
        return out;
    }
    if (remote.loop_, remote.step) > (inc.loop_, inc.step) {
        let local_due = inc
            .escalation
            .due_at(inc.anchor(), remote.loop_, remote.step);
        inc.loop_ = remote.loop_;
        inc.step = remote.step;
        inc.held_by = None;
        inc.unreached = None;
        if inc.status == IncidentStatus::Triggered {
            match (remote.status, remote.next_due, local_due) {
                (IncidentStatus::Triggered, Some(due), Some(local)) => {
                    inc.anchor = Some(inc.anchor() + (due - local));
                    inc.next_due = Some(due);
                }
                (IncidentStatus::Triggered, due, _) => inc.next_due = due,
                _ => inc.next_due = local_due,
            }
        }
        out.push(entry(TimelineEvent::PeerFired {
            loop_: remote.loop_,
            step: remote.step,
            by: from.to_string(),
        }));
    }
    if inc.status == IncidentStatus::Triggered
        && remote.status == IncidentStatus::Acknowledged
        && let Some(a) = &remote.acknowledged
        && remote.ack_until.is_none_or(|t| t > now)
    {
        inc.status = IncidentStatus::Acknowledged;
        inc.ack_until = remote.ack_until;
        inc.next_due = remote.ack_until;
        inc.held_by = None;
        inc.acknowledged = Some((
            Actor {
                who: a.by.clone(),
                origin: Origin::Peer,
            },
            a.at,
        ));
        out.push(entry(TimelineEvent::Acknowledged {
            by: a.by.clone(),
            origin: Origin::Peer,
            until: remote.ack_until,
        }));
    }
    out
}

/// How many escalation steps fired in `timeline` (`vigil_escalation_steps_total` counts steps,
/// the first one, fired as the incident opens, included; a hold or an expired ack is no step).
fn steps_in(timeline: &[TimelineEntry]) -> u64 {
    timeline
        .iter()
        .filter(|e| matches!(e.event, TimelineEvent::Escalated { .. }))
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Source;

    fn synced(inc: &Incident) -> crate::incident::IncidentSync {
        crate::incident::IncidentSync::of(inc)
    }

    #[test]
    fn mirroring_moves_forward_only_and_an_ack_mirrored_back_changes_nothing() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let fp = crate::domain::Fingerprint::parse("fp").unwrap();
        let mut here = crate::store::contract::sample_incident(fp, t0);
        here.opened_by = Some(t0);
        let mut there = here.clone();
        // The peer fired step 0: this side follows, once.
        there.step = 1;
        there.next_due = Some(t0 + chrono::Duration::minutes(7));
        let out = apply_remote(&mut here, &synced(&there), "primary", t0);
        assert!(matches!(
            out[0].event,
            TimelineEvent::PeerFired { step: 1, .. }
        ));
        assert_eq!((here.step, here.next_due), (1, there.next_due));
        assert!(apply_remote(&mut here, &synced(&there), "primary", t0).is_empty());
        // A peer behind this side moves nothing back.
        let mut behind = there.clone();
        behind.step = 0;
        assert!(apply_remote(&mut here, &synced(&behind), "primary", t0).is_empty());
        assert_eq!(here.step, 1);
        // An ack made there is taken here (origin peer); mirrored back, it changes nothing there.
        transition::acknowledge(
            &mut there,
            Actor {
                who: "ana".into(),
                origin: Origin::Api,
            },
            t0,
            None,
        );
        let out = apply_remote(&mut here, &synced(&there), "primary", t0);
        assert!(matches!(
            &out[0].event,
            TimelineEvent::Acknowledged { by, origin: Origin::Peer, .. } if by == "ana"
        ));
        assert_eq!(here.status, IncidentStatus::Acknowledged);
        assert!(apply_remote(&mut there, &synced(&here), "standby", t0).is_empty());
        assert!(apply_remote(&mut here, &synced(&there), "primary", t0).is_empty());
        // An ack that has already run out is not taken (it would re-ack an expired incident).
        let mut fresh = crate::store::contract::sample_incident(
            crate::domain::Fingerprint::parse("fp").unwrap(),
            t0,
        );
        let mut expired = there.clone();
        expired.ack_until = Some(t0);
        let out = apply_remote(&mut fresh, &synced(&expired), "primary", t0);
        assert!(
            !out.iter()
                .any(|e| matches!(e.event, TimelineEvent::Acknowledged { .. }))
        );
        assert_eq!(fresh.status, IncidentStatus::Triggered);
        // A resolve of another incident of the fingerprint (another opened_by) is not taken.
        let mut resolved = there.clone();
        resolved.opened_by = Some(t0 - chrono::Duration::hours(1));
        transition::resolve(
            &mut resolved,
            Actor {
                who: "cw".into(),
                origin: Origin::Source,
            },
            t0,
        );
        assert!(apply_remote(&mut here, &synced(&resolved), "primary", t0).is_empty());
        assert!(here.status.is_open());
    }

    /// Replicas of the service on one store, with the shipped policy and a manual clock at `t0`.
    struct Shared {
        _dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        policy: Arc<PolicyHandle>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    }

    impl Shared {
        fn new(t0: DateTime<Utc>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                Arc::new(crate::store::EmbeddedStore::open(&dir.path().join("db")).unwrap());
            let metrics = Arc::new(Metrics::new());
            let policy = Arc::new(
                PolicyHandle::load(
                    std::path::Path::new("routing"),
                    std::path::Path::new("templates"),
                    metrics.clone(),
                )
                .unwrap(),
            );
            Self {
                _dir: dir,
                store,
                policy,
                clock: Arc::new(crate::clock::ManualClock::new(t0)),
                metrics,
            }
        }

        fn replica(&self) -> IncidentService {
            IncidentService::new(
                self.store.clone(),
                self.policy.clone(),
                self.clock.clone(),
                self.metrics.clone(),
                Wakers::default(),
            )
        }
    }

    #[tokio::test]
    async fn pages_the_silent_peer_left_undelivered_are_queued_once_by_replicas_sharing_a_store() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let shared = Shared::new(t0);
        let store = shared.store.clone();
        let (a, b) = (shared.replica(), shared.replica());
        let page = crate::incident::PendingPage {
            kind: crate::incident::NotifyKind::Escalate,
            channel: "sms".into(),
            target: Some("cto".into()),
            people: vec![],
            step: Some((0, 1)),
        };
        let mut stuck = crate::store::contract::sample_incident(
            crate::domain::Fingerprint::parse("stuck").unwrap(),
            t0,
        );
        stuck.peer_undelivered = vec![page.clone()];
        let mut acked = crate::store::contract::sample_incident(
            crate::domain::Fingerprint::parse("acked").unwrap(),
            t0,
        );
        acked.status = IncidentStatus::Acknowledged;
        acked.peer_undelivered = vec![page.clone()];
        for inc in [&stuck, &acked] {
            let tx = Transition {
                guard: Some(Guard::NoOpenIncident(inc.fingerprint.clone())),
                incident: Some(inc.clone()),
                ..Default::default()
            };
            assert_eq!(store.commit(tx).await.unwrap(), CommitOutcome::Committed);
        }
        let (x, y) = tokio::join!(
            a.resend_peer_undelivered("primary"),
            b.resend_peer_undelivered("primary")
        );
        assert_eq!(
            x.unwrap() + y.unwrap(),
            1,
            "one page, queued once; the acknowledged incident needs it no more"
        );
        let rows = store.outbox(100).await.unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].incident, crate::incident::PendingPage::of(&rows[0])),
            (stuck.id, page)
        );
        for id in [stuck.id, acked.id] {
            let inc = store.incident(id).await.unwrap().unwrap();
            assert!(
                inc.peer_undelivered.is_empty(),
                "cleared in the same commit"
            );
        }
        assert!(store.timeline(stuck.id).await.unwrap().iter().any(
            |e| matches!(&e.event, TimelineEvent::PeerResent { pages: 1, by } if by == "primary")
        ));
        assert_eq!(a.resend_peer_undelivered("primary").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_replica_sees_another_replicas_override_once_the_cache_ttl_has_passed_on_the_injected_clock()
     {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let shared = Shared::new(t0);
        let (store, policy) = (shared.store.clone(), shared.policy.clone());
        let service = shared.replica();
        assert!(service.api_extras(t0).await.unwrap().0.is_empty());
        // Another replica writes an override straight to the shared store.
        let person = policy.current().people.keys().next().unwrap().clone();
        let schedule = policy.current().schedules.keys().next().unwrap().clone();
        let o = Override {
            schedule,
            person,
            start: t0,
            end: t0 + chrono::Duration::hours(1),
            author: None,
        };
        store
            .put_record(extras::OVERRIDES, "o1", serde_json::to_vec(&o).unwrap())
            .await
            .unwrap();
        let half = t0 + chrono::Duration::milliseconds(500);
        assert!(
            service.api_extras(half).await.unwrap().0.is_empty(),
            "within the TTL the copy stands"
        );
        let later = t0 + chrono::Duration::from_std(EXTRAS_TTL).unwrap();
        assert_eq!(
            service.api_extras(later).await.unwrap().0.len(),
            1,
            "the TTL runs on the injected clock, not the wall clock"
        );
    }

    #[test]
    fn the_storm_window_counts_every_attempt_of_the_last_minute_per_source() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
        let mut c = StormCounter::default();
        let admitted: Vec<bool> = (0..4).map(|_| c.admit(Source::Bot, at(0), 3)).collect();
        assert_eq!(
            admitted,
            [true, true, true, false],
            "the bound, then grouped"
        );
        assert!(
            c.admit(Source::Sns, at(0), 3),
            "each source has its own count"
        );
        assert!(
            !c.admit(Source::Bot, at(30), 3),
            "grouped attempts keep the storm going"
        );
        assert!(
            c.admit(Source::Bot, at(60), 3),
            "the first second's 4 left the window"
        );
        assert!(
            c.admit(Source::Bot, at(61), 3),
            "30 and 60 in the window: a third fits"
        );
        assert!(
            !c.admit(Source::Bot, at(62), 3),
            "30, 60 and 61: the bound is reached"
        );
        assert!(
            c.admit(Source::Bot, at(200), 3),
            "a quiet minute: new alerts open again"
        );
    }
}

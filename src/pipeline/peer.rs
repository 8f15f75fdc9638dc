//! The warm standby (README, "Warm standby"): each side follows its peer's feed
//! (`GET /v1/peer/feed`) every `PEER_POLL` and mirrors what the peer did (steps fired, acks,
//! resolves) through `IncidentService::mirror`. The standby takes over (opens its paging gate)
//! when the primary has not answered for `takeover_after`, or answers that it is not ready; it
//! then pages "vigil primary unreachable" through its own channels. A primary that sees its
//! standby active holds its gate closed until an operator hands back (`hand_back`).
//!
//! No consensus: roles are configured, takeover is by liveness. What can be paged twice is
//! stated in README ("The duplicate bound").
//!
//! The standby may run as several replicas on one shared store (the DR overlay): its role is
//! then one record in that store (`peer`/`role`, `SharedRole`) that every replica reads at the
//! start of each round, so a takeover by one is followed by all and one hand-back closes all.
//! Each replica's feed keeps answering `active-standby` for `HAND_BACK_DRAIN` after a hand-back,
//! the longest a replica can take to read the record, so the primary opens after all closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::IncidentService;
use crate::clock::Clock;
use crate::domain::Secret;
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source};
use crate::incident::{Actor, IncidentSync, Origin, TimelineEvent};
use crate::metrics::Metrics;
use crate::pipeline::extras::{self, RecordSync};
use crate::pipeline::gate::{PagingGate, Role};

/// The other side of a primary/standby pair (README, "Warm standby").
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// The peer's base URL.
    pub url: String,
    /// This process is the standby of `url` (else the primary, following its standby).
    pub standby: bool,
    /// A standby takes over when the primary has not answered for this long
    /// (`VIGIL_TAKEOVER_AFTER`); a held primary pages again when its standby has not.
    pub takeover_after: Duration,
}

/// How often a side reads its peer's feed.
pub const PEER_POLL: Duration = Duration::from_secs(2);
/// How long one feed request may take.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);
/// On a shared store, how long after a hand-back every replica's feed still answers
/// `active-standby`: a round reads the role record first, then fetches the peer's feed (at most
/// `PEER_TIMEOUT`), then sleeps `PEER_POLL`; one more second for the decisions in flight. With the
/// embedded store there is no other replica and no drain.
pub const HAND_BACK_DRAIN: Duration =
    Duration::from_secs(PEER_POLL.as_secs() + PEER_TIMEOUT.as_secs() + 1);

/// Record kind and id of the standby's shared role (`Store::put_record`).
pub const ROLE_KIND: &str = "peer";
pub const ROLE_ID: &str = "role";

/// The standby's role as its replicas share it (record `peer`/`role`; none = `standby`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRole {
    /// `standby` or `active-standby`.
    pub role: Role,
    /// When it was written (RFC 3339, milliseconds).
    #[serde(with = "crate::domain::millis")]
    pub at: DateTime<Utc>,
    /// Why: the takeover's reason, or the hand-back.
    pub reason: String,
    /// Who wrote it: the replica (and the operator, for a hand-back).
    pub by: String,
}

impl SharedRole {
    fn new(role: Role, at: DateTime<Utc>, reason: String, by: String) -> Self {
        // Milliseconds, as stored: a replica compares the `at` it wrote or followed with the
        // record's.
        let at = crate::domain::millis::truncate(at);
        Self {
            role,
            at,
            reason,
            by,
        }
    }

    fn active(&self) -> bool {
        self.role == Role::ActiveStandby
    }
}

/// What a standby replica does with the shared role at the start of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// The record and this replica agree.
    Keep,
    /// Another replica took over: page too (no second incident, no second timeline note).
    Follow,
    /// Handed back (through another replica, after this one became active): close the gate.
    Close,
    /// This replica is active but the record does not say so (its write failed, or the record
    /// was lost): write it again.
    Publish,
}

/// The decision of a standby replica, from the record, its own role and the `at` of the record
/// it wrote or followed when it became active.
pub fn role_change(
    record: Option<&SharedRole>,
    local: Role,
    active_since: Option<DateTime<Utc>>,
) -> RoleChange {
    let shared_active = record.is_some_and(SharedRole::active);
    match local {
        Role::Standby if shared_active => RoleChange::Follow,
        Role::ActiveStandby if !shared_active => match (record, active_since) {
            (Some(r), Some(since)) if r.at < since => RoleChange::Publish,
            (Some(_), _) => RoleChange::Close,
            (None, _) => RoleChange::Publish,
        },
        _ => RoleChange::Keep,
    }
}

/// The role a standby replica shows its primary (feed `role`): active while this replica or
/// the record is, and during the drain after a hand-back (`handing_back`).
pub fn shown_role(
    local: Role,
    record: Option<&SharedRole>,
    now: DateTime<Utc>,
    drain: Duration,
) -> (Role, bool) {
    if local == Role::Primary {
        return (local, false);
    }
    match record {
        Some(r) if r.active() => (Role::ActiveStandby, false),
        Some(r) if now < r.at + drain => (Role::ActiveStandby, true),
        _ => (local, false),
    }
}

/// The standby's shown role with its record (feed, `/v1/peer`, `/readyz`).
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub shared_role: Role,
    pub handing_back: bool,
    /// Until when the feed answers `active-standby` after the last hand-back.
    pub drain_until: Option<DateTime<Utc>>,
    pub role_record: Option<SharedRole>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_record_error: Option<String>,
}

/// `GET /v1/peer/feed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feed {
    pub role: String,
    pub held: bool,
    pub ready: bool,
    pub problems: Vec<String>,
    pub at: DateTime<Utc>,
    pub incidents: Vec<IncidentSync>,
    pub truncated: bool,
    /// API silences and overrides, with their stamps (`incident::extras::sync_records`).
    #[serde(default)]
    pub records: Vec<RecordSync>,
    /// A standby handed back and still drains (`role` still `active-standby`).
    #[serde(default)]
    pub handing_back: bool,
}

/// What this side knows of its peer (`GET /v1/peer`, `/readyz`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerView {
    pub peer_url: String,
    pub peer_last_seen: Option<DateTime<Utc>>,
    /// Seconds since the last successful feed (since start when there was none).
    pub lag_seconds: f64,
    pub peer_role: Option<String>,
    pub peer_ready: Option<bool>,
    pub peer_problems: Vec<String>,
    pub last_error: Option<String>,
    pub takeovers: u64,
    pub took_over_at: Option<DateTime<Utc>>,
    pub takeover_reason: Option<String>,
    pub takeover_after_seconds: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HandBackError {
    #[error("this process is not an active standby (role {0}): there is nothing to hand back")]
    NotActive(&'static str),
    #[error("the primary cannot be reached right now: {0}")]
    Unreachable(String),
    #[error("the primary is not ready: {0}")]
    NotReady(String),
    #[error("the shared role could not be written, nothing changed: {0}")]
    Record(String),
    #[error(transparent)]
    Service(#[from] crate::pipeline::ServiceError),
}

pub struct Peer {
    settings: PeerSettings,
    token: Option<Secret>,
    service: Arc<IncidentService>,
    gate: Arc<PagingGate>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    started: DateTime<Utc>,
    view: Mutex<PeerView>,
    /// One round (or hand-back) at a time.
    round: tokio::sync::Mutex<()>,
    /// This side began to page for a silent or unready peer and has yet to send the pages the
    /// peer had not delivered.
    resend_due: AtomicBool,
    /// The store is shared by other replicas (Redis): a hand-back drains (`HAND_BACK_DRAIN`).
    drain: Duration,
    /// Names this replica in the role record (`by`).
    replica: String,
}

impl Peer {
    pub fn new(
        settings: PeerSettings,
        tokens: &[Secret],
        service: Arc<IncidentService>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        shared_store: bool,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let gate = service.gate().clone();
        if !settings.standby {
            gate.set_held(true);
        }
        let started = clock.now();
        let view = PeerView {
            peer_url: settings.url.clone(),
            takeover_after_seconds: settings.takeover_after.as_secs(),
            ..Default::default()
        };
        metrics
            .gauge("vigil_peer_role", &[])
            .set(gate.role().gauge());
        Ok(Self {
            token: tokens.first().cloned(),
            settings,
            service,
            gate,
            clock,
            metrics,
            http,
            started,
            view: Mutex::new(view),
            round: tokio::sync::Mutex::new(()),
            resend_due: AtomicBool::new(false),
            drain: if shared_store {
                HAND_BACK_DRAIN
            } else {
                Duration::ZERO
            },
            replica: match std::env::var("HOSTNAME") {
                Ok(h) if !h.is_empty() => format!("{h} (pid {})", std::process::id()),
                _ => format!("pid {}", std::process::id()),
            },
        })
    }

    /// The shared role record; `None` = `standby`.
    async fn read_role(&self) -> Result<Option<SharedRole>, String> {
        let bytes = self
            .service
            .store()
            .get_record(ROLE_KIND, ROLE_ID)
            .await
            .map_err(|e| e.to_string())?;
        match bytes {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| format!("role record unreadable: {e}")),
        }
    }

    async fn write_role(&self, record: &SharedRole) -> Result<(), String> {
        let bytes = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        self.service
            .store()
            .put_record(ROLE_KIND, ROLE_ID, bytes)
            .await
            .map_err(|e| e.to_string())
    }

    /// Whether this side runs as the standby (`--standby-of`).
    pub fn is_standby(&self) -> bool {
        self.settings.standby
    }

    /// What this side shows as its role (feed `role`): a primary its own; a standby the shared
    /// role, active during the drain after a hand-back. A record that cannot be read shows this
    /// replica's own role, with the error.
    pub async fn shown(&self) -> Shown {
        let local = self.gate.role();
        if !self.settings.standby {
            return Shown {
                shared_role: local,
                handing_back: false,
                drain_until: None,
                role_record: None,
                role_record_error: None,
            };
        }
        let (record, error) = match self.read_role().await {
            Ok(r) => (r, None),
            Err(e) => (None, Some(e)),
        };
        let (role, handing_back) = shown_role(local, record.as_ref(), self.clock.now(), self.drain);
        // An active gate closing for a hand-back here shows as handing back too.
        let handing_back = handing_back || (local == Role::ActiveStandby && !self.gate.is_open());
        Shown {
            shared_role: role,
            handing_back,
            drain_until: record
                .as_ref()
                .filter(|r| !r.active())
                .map(|r| r.at + self.drain),
            role_record: record,
            role_record_error: error,
        }
    }

    pub fn gate(&self) -> &Arc<PagingGate> {
        &self.gate
    }

    /// "primary" or "standby": who the peer is, for timelines and logs.
    fn peer_name(&self) -> &'static str {
        if self.settings.standby {
            "primary"
        } else {
            "standby"
        }
    }

    pub fn view(&self) -> PeerView {
        let mut v = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let since = v.peer_last_seen.unwrap_or(self.started);
        v.lag_seconds = (self.clock.now() - since).num_milliseconds().max(0) as f64 / 1000.0;
        v
    }

    fn update(&self, f: impl FnOnce(&mut PeerView)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Reads the peer's feed once.
    pub async fn fetch(&self) -> Result<Feed, String> {
        let url = format!("{}/v1/peer/feed", self.settings.url.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("feed request failed: {}", e.without_url()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("feed answered {status}"));
        }
        resp.json::<Feed>()
            .await
            .map_err(|e| format!("feed unreadable: {}", e.without_url()))
    }

    /// One round: read the feed, mirror it, decide the role. Returns whether the peer answered.
    pub async fn round(&self) -> bool {
        let _round = self.round.lock().await;
        // First: a slow or failing feed must not delay following the other replicas.
        if self.settings.standby {
            self.follow_shared_role().await;
        }
        let fetched = self.fetch().await;
        let now = self.clock.now();
        let answered = fetched.is_ok();
        match fetched {
            Ok(feed) => {
                self.update(|v| {
                    v.peer_last_seen = Some(now);
                    v.peer_role = Some(feed.role.clone());
                    v.peer_ready = Some(feed.ready);
                    v.peer_problems = feed.problems.clone();
                    v.last_error = None;
                });
                self.metrics
                    .gauge("vigil_peer_last_seen_timestamp_seconds", &[])
                    .set(now.timestamp_millis() as f64 / 1000.0);
                let from = self.peer_name();
                // A passive standby or a held primary sent no notice of what was done there.
                let peer_pages = feed.role == Role::ActiveStandby.as_str()
                    || (feed.role == Role::Primary.as_str() && !feed.held);
                for remote in &feed.incidents {
                    if let Err(e) = self.service.mirror(remote, from, peer_pages).await {
                        tracing::warn!(fingerprint = %remote.fingerprint, error.message = %e, "Could not mirror an incident from the peer; the next round tries again.");
                    }
                }
                // After the incidents, before deciding: a takeover finds the peer's silences.
                match extras::apply_remote_records(self.service.store().as_ref(), &feed.records)
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(records = n, peer = %self.settings.url, "Mirrored silences and overrides from the peer.");
                        self.service.forget_extras();
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "Could not mirror silences and overrides from the peer; the next round tries again.");
                        // Some may have been written before the error.
                        self.service.forget_extras();
                    }
                }
                self.decide_on_answer(&feed).await;
            }
            Err(e) => {
                self.update(|v| v.last_error = Some(e.clone()));
                self.decide_on_silence(&e, now).await;
            }
        }
        self.resend_undelivered().await;
        let view = self.view();
        self.metrics
            .gauge("vigil_peer_lag_seconds", &[])
            .set(view.lag_seconds);
        self.metrics
            .gauge("vigil_peer_role", &[])
            .set(self.gate.role().gauge());
        answered
    }

    async fn decide_on_answer(&self, feed: &Feed) {
        if self.settings.standby {
            if self.gate.role() == Role::Standby && !feed.ready {
                let reason = format!("primary not ready: {}", feed.problems.join("; "));
                self.take_over(reason).await;
            }
            return;
        }
        // The primary: hold while the standby is active. (It starts held, so that a primary
        // restarted after a takeover pages nothing before it knows.)
        let hold = feed.role == Role::ActiveStandby.as_str();
        let was = self.gate.set_held(hold);
        if hold && !was {
            self.resend_due.store(false, Ordering::SeqCst);
            tracing::error!(peer = %self.settings.url, "The standby is active: this primary holds its pages until an operator hands back (vigil hand-back).");
        } else if !hold && was {
            tracing::warn!(peer = %self.settings.url, peer_role = %feed.role, "The standby is passive: this primary pages.");
            self.service.wake_scheduler();
        }
    }

    async fn decide_on_silence(&self, error: &str, now: DateTime<Utc>) {
        let last = self.view().peer_last_seen;
        let since = last.unwrap_or(self.started);
        let silent = (now - since).to_std().unwrap_or_default();
        if silent < self.settings.takeover_after {
            tracing::warn!(peer = %self.settings.url, error.message = %error, "The peer did not answer.");
            return;
        }
        if self.settings.standby {
            if self.gate.role() == Role::Standby {
                let reason = format!(
                    "primary unreachable since {} ({error})",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
                self.take_over(reason).await;
            }
        } else if self.gate.set_held(false) {
            // The standby that held this primary is gone too: page again, a pager must page.
            tracing::error!(peer = %self.settings.url, error.message = %error, "The standby is unreachable: this primary pages again.");
            self.service.wake_scheduler();
            self.resend_due.store(true, Ordering::SeqCst);
        }
    }

    /// This side began to page because the peer went silent or not ready: send what the peer
    /// had fired but not delivered (its outbox as its last feed showed it), so that a page
    /// stuck in a dead peer's retries is not lost. Once per takeover; a round tries again
    /// while it fails.
    async fn resend_undelivered(&self) {
        if !self.resend_due.load(Ordering::SeqCst) || !self.gate.is_open() {
            return;
        }
        match self.service.resend_peer_undelivered(self.peer_name()).await {
            Ok(n) => {
                self.resend_due.store(false, Ordering::SeqCst);
                if n > 0 {
                    tracing::warn!(peer = %self.settings.url, pages = n, "Sent the pages the peer had fired but not delivered.");
                    self.metrics
                        .counter("vigil_peer_resent_pages_total", &[])
                        .increment(n as u64);
                }
            }
            Err(e) => {
                tracing::error!(error.message = %e, "Could not queue the pages the peer had not delivered; the next round tries again.");
            }
        }
    }

    /// Reads the shared role and follows it (`role_change`).
    async fn follow_shared_role(&self) {
        let record = match self.read_role().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error.message = %e, "Could not read the standby's shared role; this replica keeps its own until the next round.");
                return;
            }
        };
        let since = self.view().took_over_at;
        match (
            role_change(record.as_ref(), self.gate.role(), since),
            record,
        ) {
            (RoleChange::Follow, Some(r)) => self.follow(r).await,
            (RoleChange::Close, Some(r)) => {
                self.gate.hand_back().await;
                self.resend_due.store(false, Ordering::SeqCst);
                self.update(|v| {
                    v.took_over_at = None;
                    v.takeover_reason = None;
                });
                self.metrics
                    .gauge("vigil_peer_role", &[])
                    .set(Role::Standby.gauge());
                tracing::warn!(peer = %self.settings.url, by = %r.by, at = %r.at, "Handed back through another replica: this replica stopped paging and follows the primary.");
            }
            (RoleChange::Publish, _) => {
                let view = self.view();
                let record = SharedRole::new(
                    Role::ActiveStandby,
                    view.took_over_at.unwrap_or_else(|| self.clock.now()),
                    view.takeover_reason.unwrap_or_default(),
                    self.replica.clone(),
                );
                match self.write_role(&record).await {
                    Ok(()) => {
                        self.update(|v| v.took_over_at = Some(record.at));
                        tracing::warn!(
                            "Wrote this active replica's role to the shared store again."
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "Could not write the shared role; the next round tries again.")
                    }
                }
            }
            _ => {}
        }
    }

    /// Another replica took over (the record says active): page too. Its incident and its
    /// timeline notes stand; this replica only opens its gate and sends what is due.
    async fn follow(&self, record: SharedRole) {
        self.gate.set_role(Role::ActiveStandby);
        self.update(|v| {
            v.took_over_at = Some(record.at);
            v.takeover_reason = Some(record.reason.clone());
        });
        self.metrics
            .gauge("vigil_peer_role", &[])
            .set(Role::ActiveStandby.gauge());
        tracing::error!(peer = %self.settings.url, by = %record.by, reason = %record.reason, "Another replica of this standby took over: this replica pages too.");
        self.service.wake_scheduler();
        self.resend_due.store(true, Ordering::SeqCst);
        self.resend_undelivered().await;
    }

    async fn take_over(&self, reason: String) {
        // Another replica may have taken over since this round read the record: follow it.
        match self.read_role().await {
            Ok(Some(r)) if r.active() => return self.follow(r).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, "Could not read the standby's shared role; taking over anyway (a pager pages).")
            }
        }
        let record = SharedRole::new(
            Role::ActiveStandby,
            self.clock.now(),
            reason.clone(),
            self.replica.clone(),
        );
        if let Err(e) = self.write_role(&record).await {
            // Pages anyway; the next round writes it again (RoleChange::Publish).
            tracing::warn!(error.message = %e, "Could not write the shared role; the other replicas take over by themselves.");
        }
        let now = record.at;
        self.gate.set_role(Role::ActiveStandby);
        self.update(|v| {
            v.takeovers += 1;
            v.took_over_at = Some(now);
            v.takeover_reason = Some(reason.clone());
        });
        self.metrics
            .counter("vigil_peer_takeovers_total", &[])
            .increment(1);
        self.metrics
            .gauge("vigil_peer_role", &[])
            .set(Role::ActiveStandby.gauge());
        tracing::error!(peer = %self.settings.url, reason = %reason, "Taking over: this standby pages now.");
        if let Err(e) = self
            .service
            .note_open(TimelineEvent::Takeover {
                reason: reason.clone(),
            })
            .await
        {
            tracing::warn!(error.message = %e, "Could not note the takeover on the open incidents.");
        }
        self.service.wake_scheduler();
        self.resend_due.store(true, Ordering::SeqCst);
        self.resend_undelivered().await;
        // Alarms whose SNS delivery went only to the dead primary: read them from CloudWatch.
        self.service.wake_reconciliation();
        let since = self.view().peer_last_seen.unwrap_or(self.started);
        if let Err(e) = self
            .service
            .ingest(&self.unreachable_alert(since, &reason))
            .await
        {
            tracing::error!(error.message = %e, "Could not open the 'vigil primary unreachable' incident.");
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::parse(format!("vigil/peer/{}", self.settings.url))
            .unwrap_or_else(|_| Fingerprint::from_labels("peer_unreachable", &Labels::new()))
    }

    fn unreachable_alert(&self, since: DateTime<Utc>, reason: &str) -> Alert {
        let labels: Labels = [
            ("kind".to_string(), "peer_unreachable".to_string()),
            ("source".to_string(), Source::Heartbeat.as_str().to_string()),
            ("peer".to_string(), self.settings.url.clone()),
        ]
        .into();
        Alert {
            source: Source::Heartbeat,
            fingerprint: self.fingerprint(),
            status: AlertStatus::Firing,
            summary: format!(
                "vigil primary unreachable since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            description: Some(format!(
                "The standby took over paging: {reason}. Hand back with `vigil hand-back` once the primary is healthy."
            )),
            labels,
            details: serde_json::json!({ "peer": self.settings.url, "reason": reason }),
            occurred_at: self.clock.now(),
            delivery_id: None,
            severity_override: None,
        }
    }

    /// Hands paging back to the primary: only an active standby (this replica, or another one
    /// of the shared store that this one has yet to follow), only while the primary answers
    /// ready. The shared role is written first; this side's gate closes (and its decisions in
    /// flight commit) before its feed shows `standby`, and with a shared store every feed shows
    /// `active-standby` for `HAND_BACK_DRAIN` more, so the primary opens only after every
    /// replica has stopped.
    pub async fn hand_back(&self, by: &str) -> Result<(), HandBackError> {
        let _round = self.round.lock().await;
        let role = self.gate.role();
        let shared_active = self
            .read_role()
            .await
            .map_err(HandBackError::Record)?
            .is_some_and(|r| r.active());
        if role != Role::ActiveStandby && !shared_active {
            return Err(HandBackError::NotActive(role.as_str()));
        }
        let feed = self.fetch().await.map_err(HandBackError::Unreachable)?;
        if !feed.ready {
            return Err(HandBackError::NotReady(feed.problems.join("; ")));
        }
        let now = self.clock.now();
        // The record first: the other replicas close on their next round, and every feed
        // keeps answering active for the drain, so the primary opens after they all closed.
        let record = SharedRole::new(
            Role::Standby,
            now,
            "handed back".to_string(),
            format!("{by} via {}", self.replica),
        );
        self.write_role(&record)
            .await
            .map_err(HandBackError::Record)?;
        self.update(|v| {
            v.peer_last_seen = Some(now);
            v.peer_role = Some(feed.role.clone());
            v.peer_ready = Some(true);
            v.took_over_at = None;
            v.takeover_reason = None;
        });
        self.gate.hand_back().await;
        self.resend_due.store(false, Ordering::SeqCst);
        self.metrics
            .gauge("vigil_peer_role", &[])
            .set(Role::Standby.gauge());
        tracing::warn!(peer = %self.settings.url, by, drain_seconds = self.drain.as_secs(), "Handed back: the primary pages again once the drain has passed; every replica of this standby follows it.");
        if let Some(inc) = self
            .service
            .store()
            .fingerprint(&self.fingerprint())
            .await
            .map_err(crate::pipeline::ServiceError::from)?
            .open
        {
            let actor = Actor {
                who: format!("{by} (hand-back)"),
                origin: Origin::Api,
            };
            let _ = self.service.resolve(inc.id, actor).await;
        }
        self.service
            .note_open(TimelineEvent::HandBack { by: by.to_string() })
            .await?;
        Ok(())
    }

    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.round() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(PEER_POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn record(role: Role, s: i64) -> SharedRole {
        SharedRole::new(role, at(s), "why".into(), "replica".into())
    }

    #[test]
    fn a_replica_follows_a_takeover_and_closes_on_a_later_hand_back() {
        let active = record(Role::ActiveStandby, 10);
        let back = record(Role::Standby, 20);
        // No record is `standby`.
        assert_eq!(role_change(None, Role::Standby, None), RoleChange::Keep);
        assert_eq!(
            role_change(Some(&active), Role::Standby, None),
            RoleChange::Follow,
            "another replica took over"
        );
        assert_eq!(
            role_change(Some(&active), Role::ActiveStandby, Some(at(10))),
            RoleChange::Keep
        );
        assert_eq!(
            role_change(Some(&back), Role::ActiveStandby, Some(at(10))),
            RoleChange::Close,
            "handed back through another replica after this one became active"
        );
        assert_eq!(
            role_change(Some(&back), Role::Standby, None),
            RoleChange::Keep
        );
        // Active by itself, but the record is older (its write failed) or gone: write it again.
        assert_eq!(
            role_change(Some(&back), Role::ActiveStandby, Some(at(30))),
            RoleChange::Publish
        );
        assert_eq!(
            role_change(None, Role::ActiveStandby, Some(at(30))),
            RoleChange::Publish
        );
        // A primary never reads it.
        assert_eq!(
            role_change(Some(&active), Role::Primary, None),
            RoleChange::Keep
        );
    }

    #[test]
    fn the_feed_says_active_until_the_drain_after_a_hand_back_has_passed() {
        let drain = HAND_BACK_DRAIN;
        let back = record(Role::Standby, 20);
        let active = record(Role::ActiveStandby, 10);
        assert_eq!(
            shown_role(Role::Standby, None, at(0), drain),
            (Role::Standby, false)
        );
        assert_eq!(
            shown_role(Role::Standby, Some(&active), at(11), drain),
            (Role::ActiveStandby, false),
            "a replica yet to follow shows the shared role"
        );
        assert_eq!(
            shown_role(Role::Standby, Some(&back), at(21), drain),
            (Role::ActiveStandby, true),
            "closed here, but another replica may still page"
        );
        let end = back.at + drain;
        assert_eq!(
            shown_role(
                Role::Standby,
                Some(&back),
                end - chrono::Duration::milliseconds(1),
                drain
            ),
            (Role::ActiveStandby, true)
        );
        assert_eq!(
            shown_role(Role::Standby, Some(&back), end, drain),
            (Role::Standby, false)
        );
        assert_eq!(
            shown_role(Role::ActiveStandby, Some(&back), end, drain),
            (Role::ActiveStandby, false),
            "a replica that has not closed yet still shows active"
        );
        // The embedded store: one process, no drain.
        assert_eq!(
            shown_role(Role::Standby, Some(&back), at(20), Duration::ZERO),
            (Role::Standby, false)
        );
        assert_eq!(
            shown_role(Role::Primary, Some(&active), at(11), drain),
            (Role::Primary, false)
        );
    }

    #[test]
    fn the_role_record_is_the_documented_json() {
        let r = SharedRole::new(
            Role::ActiveStandby,
            DateTime::from_timestamp_millis(1_800_000_000_123).unwrap()
                + chrono::Duration::microseconds(456),
            "primary unreachable since T".into(),
            "pod-a (pid 7)".into(),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "role": "active-standby",
                "at": "2027-01-15T08:00:00.123Z",
                "reason": "primary unreachable since T",
                "by": "pod-a (pid 7)",
            })
        );
        let back: SharedRole = serde_json::from_value(v).unwrap();
        assert_eq!(
            back, r,
            "stored at millisecond precision: what was written compares equal"
        );
    }
}

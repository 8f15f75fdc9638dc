//! The warm standby (README, "Warm standby"): each side follows its peer's feed
//! (`GET /v1/peer/feed`) every `PEER_POLL` and mirrors what the peer did (steps fired, acks,
//! resolves) through `IncidentService::mirror`. The standby takes over (opens its paging gate)
//! when the primary has not answered for `takeover_after`, or answers that it is not ready; it
//! then pages "vigil primary unreachable" through its own channels. A primary that sees its
//! standby active holds its gate closed until an operator hands back (`hand_back`).
//!
//! No consensus: roles are configured, takeover is by liveness. What can be paged twice is
//! stated in README ("The duplicate bound").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{Alert, AlertStatus, Fingerprint, Labels, Source};
use crate::incident::extras::{self, RecordSync};
use crate::incident::gate::{PagingGate, Role};
use crate::incident::{Actor, IncidentService, IncidentSync, Origin, TimelineEvent};
use crate::metrics::Metrics;
use crate::settings::{PeerSettings, Secret};

/// How often a side reads its peer's feed.
pub const PEER_POLL: Duration = Duration::from_secs(2);
/// How long one feed request may take.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error(transparent)]
    Service(#[from] crate::incident::ServiceError),
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
}

impl Peer {
    pub fn new(
        settings: PeerSettings,
        tokens: &[Secret],
        service: Arc<IncidentService>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
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
        })
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

    async fn take_over(&self, reason: String) {
        let now = self.clock.now();
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

    /// Hands paging back to the primary: only an active standby, only while the primary answers
    /// ready. This side's gate closes (and its scheduler pass in flight finishes) before its
    /// feed shows `standby`, so the primary opens only after this side has stopped.
    pub async fn hand_back(&self, by: &str) -> Result<(), HandBackError> {
        let _round = self.round.lock().await;
        let role = self.gate.role();
        if role != Role::ActiveStandby {
            return Err(HandBackError::NotActive(role.as_str()));
        }
        let feed = self.fetch().await.map_err(HandBackError::Unreachable)?;
        if !feed.ready {
            return Err(HandBackError::NotReady(feed.problems.join("; ")));
        }
        let now = self.clock.now();
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
        tracing::warn!(peer = %self.settings.url, by, "Handed back: the primary pages again; this standby follows it.");
        if let Some(inc) = self
            .service
            .store()
            .fingerprint(&self.fingerprint())
            .await
            .map_err(crate::incident::ServiceError::from)?
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

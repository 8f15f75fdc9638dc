//! The delivery worker: takes due rows from the outbox, sends each through its channel's
//! notifier, and records the attempt (sent, retrying, failed, skipped) on the incident's timeline
//! in the same store write that updates or removes the row. A row leaves the outbox only after its
//! attempt is recorded, so a crash means a resend, never a lost page (at-least-once; PagerDuty's
//! dedup_key and the webhook's Idempotency-Key let receivers collapse resends).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pace::Pacer;
use super::render::RenderContext;
use super::retry::RetryPolicy;
use super::{Notification, Notifiers, NotifyError, Receipt, Recipient};
use crate::ack::AckSigner;
use crate::clock::Clock;
use crate::config::{Failover, Person, Policy, PolicyHandle, Reach};
use crate::domain::Severity;
use crate::incident::{
    Delivery, DeliveryOutcome, Incident, IncidentStatus, NotifyKind, Origin, TimelineEntry,
    TimelineEvent,
};
use crate::metrics::Metrics;
use crate::store::{
    CommitOutcome, DeliveryFinish, DeliveryUpdate, Guard, Store, StoreError, Transition,
};

/// How many sends may be in flight at once.
const CONCURRENCY: usize = 64;
/// How long one send may take before it counts as a transient failure.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest sleep between outbox scans when nothing wakes the worker.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct DeliveryWorker {
    store: Arc<dyn Store>,
    policy: Arc<PolicyHandle>,
    notifiers: Arc<ArcSwap<Notifiers>>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    public_url: Option<String>,
    ack: Option<AckSigner>,
    wake: Arc<Notify>,
    inflight: Mutex<HashSet<ulid::Ulid>>,
    /// Deliveries held back after the store refused to record their attempt (or to read what
    /// the attempt needs): not tried again before `retry_at`.
    held: Mutex<HashMap<ulid::Ulid, Held>>,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Provider rate limits (Slack per channel, PagerDuty per routing key), on `clock`. One per
    /// worker, so a policy reload (new notifiers) keeps each channel's budget.
    pacer: Pacer,
}

/// A delivery whose attempt the store could not record (a full disk, Redis gone). When the
/// send was made (`finish` is `Some`), it is **not sent again**: only its record is retried,
/// with the same bounded exponential backoff as a failed send, until the store takes it. So
/// while this process lives, a provider receives one send per recorded attempt; only a restart
/// (or, on Redis, another replica taking the row over after this one died) can send it once more.
struct Held {
    finish: Option<DeliveryFinish>,
    tries: u32,
    retry_at: chrono::DateTime<chrono::Utc>,
}

impl DeliveryWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        policy: Arc<PolicyHandle>,
        notifiers: Arc<ArcSwap<Notifiers>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        retry: RetryPolicy,
        public_url: Option<String>,
        ack: Option<AckSigner>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            policy,
            notifiers,
            clock,
            metrics,
            retry,
            public_url,
            ack,
            wake,
            inflight: Mutex::new(HashSet::new()),
            held: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
            tasks: TaskTracker::new(),
            pacer: Pacer::default(),
        }
    }

    /// Runs until `stop` is cancelled, then waits for in-flight sends to finish.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let started = match self.dispatch_due().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error.message = %e, "Outbox scan failed; retrying.");
                    0
                }
            };
            let now = self.clock.now();
            let until = |at: chrono::DateTime<chrono::Utc>| {
                (at - now).to_std().unwrap_or(Duration::ZERO).min(IDLE_POLL)
            };
            let mut wait = match self.store.next_delivery().await {
                Ok(Some(at)) => until(at),
                _ => IDLE_POLL,
            };
            // Nothing started and nothing in flight: whatever is due is held back, so look
            // again when the first hold ends rather than every few milliseconds.
            let earliest_hold = lock(&self.held).values().map(|h| h.retry_at).min();
            if started == 0
                && lock(&self.inflight).is_empty()
                && let Some(at) = earliest_hold
            {
                wait = wait.max(until(at));
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Starts a send for every due row not already in flight. Returns how many started.
    pub async fn dispatch_due(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let due = self.store.deliveries_due(now, 512).await?;
        let mut started = 0;
        for d in due {
            if lock(&self.held)
                .get(&d.id)
                .is_some_and(|h| h.retry_at > now)
            {
                continue;
            }
            let fresh = lock(&self.inflight).insert(d.id);
            if !fresh {
                continue;
            }
            started += 1;
            let me = self.clone();
            let permit = self.permits.clone().acquire_owned().await;
            // In outbox order, so paced channels keep it; once a send may start.
            let hold = self.pace(&d, self.clock.now());
            self.tasks.spawn(async move {
                let _permit = permit;
                let id = d.id;
                if let Err(e) = me.deliver(d, hold).await {
                    me.hold_back(id, &e);
                }
                lock(&me.inflight).remove(&id);
            });
        }
        Ok(started)
    }

    /// Sends every due delivery and waits for all of them (tests and `run_once` callers).
    pub async fn drain(self: &Arc<Self>) -> Result<(), StoreError> {
        self.dispatch_due().await?;
        loop {
            let busy = !self
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if !busy {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tracing::instrument(skip_all, fields(incident.id = %d.incident, channel = %d.channel, attempt = d.attempt + 1))]
    async fn deliver(
        &self,
        d: Delivery,
        hold: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError> {
        // Another task may have finished this row between our read and taking the in-flight
        // slot; sending it again would page twice.
        if !self.store.still_pending(&d).await? {
            lock(&self.held).remove(&d.id);
            return Ok(());
        }
        // Sent already, but the store refused the record: record it, never send it again.
        let owed = lock(&self.held).get(&d.id).and_then(|h| h.finish.clone());
        if let Some(finish) = owed {
            self.store.finish_delivery(&d, finish).await?;
            lock(&self.held).remove(&d.id);
            tracing::info!("The attempt held back by a store error is recorded now.");
            return Ok(());
        }
        if let Some(until) = hold {
            return self.put_back_paced(&d, until).await;
        }
        let now = self.clock.now();
        let attempt = d.attempt + 1;
        let policy = self.policy.current();
        let mut remember = None;
        let mut follow_ups = Vec::new();
        let mut entries = Vec::new();
        let (outcome, detail, reference, update) = match self.store.incident(d.incident).await? {
            None => (
                DeliveryOutcome::Failed,
                "incident not found".to_string(),
                None,
                DeliveryUpdate::Done,
            ),
            Some(inc) if d.kind.is_page() && inc.status != IncidentStatus::Triggered => (
                DeliveryOutcome::Skipped,
                format!("incident is {} now", inc.status.as_str()),
                None,
                DeliveryUpdate::Done,
            ),
            Some(inc) if is_echo(&d, &inc, &policy) => (
                DeliveryOutcome::Skipped,
                format!(
                    "not echoed back to {}, where it came from",
                    kind_of(&d, &policy)
                ),
                None,
                DeliveryUpdate::Done,
            ),
            Some(inc) => {
                let result = self.send(&d, &inc, &policy, attempt).await?;
                let kind_label = kind_of(&d, &policy);
                let label = match &result {
                    Ok(_) => "sent",
                    Err(NotifyError::Permanent { .. }) => "failed",
                    Err(NotifyError::Transient { .. }) => "transient",
                };
                self.metrics
                    .counter(
                        "vigil_delivery_attempts_total",
                        &[("channel_type", kind_label), ("outcome", label)],
                    )
                    .increment(1);
                let failed = |reason: String| {
                    tracing::error!(reason = %reason, "Delivery failed for good.");
                    (DeliveryOutcome::Failed, reason, None, DeliveryUpdate::Done)
                };
                let out = match result {
                    Ok(receipt) => {
                        if d.target.is_none() {
                            remember.clone_from(&receipt.reference);
                        }
                        (
                            DeliveryOutcome::Sent,
                            "sent".to_string(),
                            receipt.reference,
                            DeliveryUpdate::Done,
                        )
                    }
                    Err(NotifyError::Permanent { reason }) => failed(reason),
                    Err(NotifyError::Transient {
                        retry_after,
                        reason,
                    }) => {
                        if self.retry.exhausted(attempt) {
                            failed(format!("{reason}; gave up after {attempt} attempts"))
                        } else {
                            let wait = self.retry.delay(attempt, retry_after);
                            tracing::warn!(reason = %reason, wait = ?wait, "Delivery will be retried.");
                            let not_before = crate::clock::after(now, wait);
                            (
                                DeliveryOutcome::Retrying,
                                format!(
                                    "{reason}; next attempt in {}",
                                    humantime::format_duration(wait)
                                ),
                                None,
                                DeliveryUpdate::Retry {
                                    attempt,
                                    not_before,
                                },
                            )
                        }
                    }
                };
                if out.0 == DeliveryOutcome::Failed
                    && let Some((entry, more)) = failover(&d, &inc, &policy, now)
                {
                    tracing::error!(to = ?more.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>(), "Critical page failed on PagerDuty; paging directly.");
                    entries.push(entry);
                    follow_ups = more;
                }
                out
            }
        };
        entries.insert(
            0,
            TimelineEntry {
                at: now,
                event: TimelineEvent::Delivery {
                    delivery: d.id.to_string(),
                    channel: d.channel.clone(),
                    kind: d.kind.as_str().to_string(),
                    target: d.target.clone(),
                    attempt,
                    outcome,
                    detail,
                    reference,
                },
            },
        );
        if !follow_ups.is_empty() {
            self.wake.notify_one();
        }
        // A page that failed for good, with no failover still to try, may have been its
        // step's last hope.
        let last_hope = match d.step {
            Some(pos)
                if outcome == DeliveryOutcome::Failed
                    && d.kind.is_page()
                    && follow_ups.is_empty() =>
            {
                Some(pos)
            }
            _ => None,
        };
        let finish = DeliveryFinish {
            update,
            entries,
            follow_ups,
            remember,
        };
        match self.store.finish_delivery(&d, finish.clone()).await {
            Ok(()) => {
                lock(&self.held).remove(&d.id);
                if let Some(pos) = last_hope
                    && let Err(e) = self.check_reached(&d, pos, &policy).await
                {
                    tracing::error!(error.message = %e, "Could not tell whether the step reached anyone.");
                }
                Ok(())
            }
            Err(e) => {
                lock(&self.held)
                    .entry(d.id)
                    .or_insert(Held {
                        finish: None,
                        tries: 0,
                        retry_at: now,
                    })
                    .finish = Some(finish);
                Err(e)
            }
        }
    }

    /// After the last delivery of step `pos` failed for good: when the step reached no one at
    /// all, marks the incident and tells the policy's `last_resort` channels (one version-guarded
    /// transition, so two failures racing tell them once).
    async fn check_reached(
        &self,
        d: &Delivery,
        pos: (u32, u32),
        policy: &Policy,
    ) -> Result<(), StoreError> {
        for _ in 0..8 {
            let Some(mut inc) = self.store.incident(d.incident).await? else {
                return Ok(());
            };
            if inc.status != IncidentStatus::Triggered || inc.unreached == Some(pos) {
                return Ok(());
            }
            let timeline = self.store.timeline(inc.id).await?;
            let crate::escalate::Reach::Nobody(people) = crate::escalate::reach(&timeline, pos)
            else {
                return Ok(());
            };
            let guard = Guard::Version(inc.id, inc.version);
            let now = self.clock.now();
            let (entry, deliveries) =
                crate::escalate::last_resort(&mut inc, policy, pos, &people, now);
            inc.version += 1;
            let tx = Transition {
                guard: Some(guard),
                incident: Some(inc.clone()),
                timeline: vec![entry],
                deliveries,
                ..Default::default()
            };
            match self.store.commit(tx).await? {
                CommitOutcome::Committed => {
                    tracing::error!(incident.id = %inc.id, severity = %inc.severity, step = ?pos, last_resort = ?policy.last_resort, "An escalation step reached no one.");
                    crate::store::unreached::list_unreached(self.store.as_ref(), &inc).await?;
                    self.wake.notify_one();
                    return Ok(());
                }
                CommitOutcome::Duplicate => return Ok(()),
                CommitOutcome::Conflict => continue,
            }
        }
        Ok(())
    }

    /// Holds a delivery back after a store error, for the retry policy's delay after as many
    /// tries as it has had.
    fn hold_back(&self, id: ulid::Ulid, e: &StoreError) {
        let now = self.clock.now();
        let mut held = lock(&self.held);
        let h = held.entry(id).or_insert(Held {
            finish: None,
            tries: 0,
            retry_at: now,
        });
        h.tries += 1;
        let wait = self.retry.delay(h.tries, None);
        h.retry_at = crate::clock::after(now, wait);
        self.metrics
            .counter("vigil_delivery_record_failures_total", &[])
            .increment(1);
        tracing::error!(
            error.message = %e,
            sent = h.finish.is_some(),
            tries = h.tries,
            wait = ?wait,
            "The store could not record a delivery attempt; holding it back (a sent one is not sent again)."
        );
    }

    /// When a delivery on a paced channel may go: `None` now, `Some(t)` not before `t`.
    fn pace(
        &self,
        d: &Delivery,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let notifiers = self.notifiers.load();
        let pace = notifiers.get(&d.channel).ok()?.pace(d.kind)?;
        self.pacer.admit(&pace, d.id, now)
    }

    /// Puts a delivery held by its provider's pace back in the outbox for `until`: the same
    /// attempt count (pacing never uses up retries) and no timeline entry (nothing was tried).
    async fn put_back_paced(
        &self,
        d: &Delivery,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let kind = kind_of(d, &self.policy.current());
        self.metrics
            .counter("vigil_delivery_paced_total", &[("channel_type", kind)])
            .increment(1);
        tracing::debug!(until = %until, "Delivery held for the provider's rate limit.");
        self.store
            .finish_delivery(
                d,
                DeliveryFinish {
                    update: DeliveryUpdate::Retry {
                        attempt: d.attempt,
                        not_before: until,
                    },
                    entries: vec![],
                    follow_ups: vec![],
                    remember: None,
                },
            )
            .await
    }

    /// Renders and sends once; the notifier's own verdict, or `Permanent` when the channel
    /// cannot be used at all.
    async fn send(
        &self,
        d: &Delivery,
        inc: &Incident,
        policy: &Policy,
        attempt: u32,
    ) -> Result<Result<Receipt, NotifyError>, StoreError> {
        let notifiers = self.notifiers.load_full();
        let notifier = match notifiers.get(&d.channel) {
            Ok(n) => n.clone(),
            Err(reason) => return Ok(Err(NotifyError::Permanent { reason })),
        };
        let reference = if d.target.is_none() {
            self.store.references(inc.id).await?.remove(&d.channel)
        } else {
            None
        };
        let msg = self.message(d, inc, policy, attempt, notifier.kind(), reference);
        Ok(
            match tokio::time::timeout(SEND_TIMEOUT, notifier.send(&msg)).await {
                Ok(r) => r,
                Err(_) => Err(NotifyError::Transient {
                    retry_after: None,
                    reason: format!("no answer within {SEND_TIMEOUT:?}"),
                }),
            },
        )
    }

    fn message(
        &self,
        d: &Delivery,
        inc: &Incident,
        policy: &Policy,
        attempt: u32,
        channel_type: &str,
        reference: Option<String>,
    ) -> Notification {
        let recipient = |id: &String| recipient_named(policy, id);
        let by = match d.kind {
            NotifyKind::Acknowledged => inc.acknowledged.as_ref().map(|(a, _)| a.who.clone()),
            NotifyKind::Resolved => inc.resolved.as_ref().map(|(a, _)| a.who.clone()),
            _ => None,
        };
        let link = self
            .public_url
            .as_ref()
            .map(|u| format!("{}/v1/incidents/{}", u.trim_end_matches('/'), inc.id));
        // Only a page to a person carries a link that acknowledges on their behalf.
        let ack_url = match (&self.ack, &self.public_url, &d.target) {
            (Some(signer), Some(base), Some(person)) if d.kind.is_page() => Some(format!(
                "{}/v1/ack/{}",
                base.trim_end_matches('/'),
                signer.issue(inc.id, person, self.clock.now())
            )),
            _ => None,
        };
        let recipient_v = d.target.as_ref().map(recipient);
        let people: Vec<Recipient> = d.people.iter().map(recipient).collect();
        let ctx = RenderContext {
            kind: d.kind.as_str().to_string(),
            incident: inc.id.to_string(),
            severity: inc.severity.to_string(),
            status: inc.status.as_str().to_string(),
            summary: inc.summary.clone(),
            description: inc.description.clone(),
            labels: inc.labels.clone(),
            count: inc.count,
            opened_at: inc.opened_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            step: d.step.map(|(_, s)| s + 1),
            people: people.iter().map(|p| p.name.clone()).collect(),
            recipient: recipient_v.as_ref().map(|r| r.name.clone()),
            by: by.clone(),
            link: link.clone(),
            ack_url: ack_url.clone(),
            channel: d.channel.clone(),
            drill: inc.drill.is_some(),
        };
        let rendered = self.policy.templates().render(channel_type, d.kind, &ctx);
        Notification {
            delivery_id: d.id.to_string(),
            incident: inc.id,
            kind: d.kind,
            status: inc.status,
            severity: inc.severity,
            summary: inc.summary.clone(),
            description: inc.description.clone(),
            labels: inc.labels.clone(),
            channel: d.channel.clone(),
            recipient: recipient_v,
            people,
            step: d.step,
            count: inc.count,
            opened_at: inc.opened_at,
            by,
            link,
            attempt,
            now: self.clock.now(),
            text: rendered.text,
            subject: rendered.subject,
            html: rendered.html,
            ack_url,
            reference,
            drill: inc.drill.is_some(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An acknowledgement or resolution is not sent back to where it came from: to a channel whose
/// type names the ack's origin as its `echo` (an ack made in PagerDuty is not sent to
/// PagerDuty), nor, for one made by SMS reply, to the phone of the person who replied (they have
/// vigil's answer already, `http::sms_reply`; the others it paged are still told).
fn is_echo(d: &Delivery, inc: &Incident, policy: &Policy) -> bool {
    let actor = match d.kind {
        NotifyKind::Acknowledged => inc.acknowledged.as_ref().map(|(a, _)| a),
        NotifyKind::Resolved => inc.resolved.as_ref().map(|(a, _)| a),
        _ => None,
    };
    let Some(actor) = actor else {
        return false;
    };
    let Some(ty) = policy
        .channels
        .get(&d.channel)
        .map(|spec| spec.channel_type())
    else {
        return false;
    };
    let replier = actor.origin == Origin::Sms
        && ty.reach == Reach::PhonePerPerson
        && d.target
            .as_ref()
            .and_then(|p| policy.people.get(p))
            .is_some_and(|p| p.name == actor.who);
    replier || ty.echo == Some(actor.origin.as_str())
}

/// The type of the delivery's channel, for metrics and the timeline; `unknown` when the policy
/// no longer has the channel.
fn kind_of(d: &Delivery, policy: &Policy) -> &'static str {
    policy
        .channels
        .get(&d.channel)
        .map(|c| c.kind())
        .unwrap_or("unknown")
}

/// A critical page that failed for good on a failover source (PagerDuty) goes to the same
/// people by every personal failover target of the policy (SMS, then email to each person), and
/// the timeline says so.
fn failover(
    d: &Delivery,
    inc: &Incident,
    policy: &Policy,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(TimelineEntry, Vec<Delivery>)> {
    let is_source = policy
        .channels
        .get(&d.channel)
        .is_some_and(|spec| spec.channel_type().failover == Failover::Source);
    if !(d.kind.is_page() && inc.severity == Severity::Critical && is_source) {
        return None;
    }
    let mut direct: Vec<(u8, &String)> = policy
        .channels
        .iter()
        .filter_map(|(name, spec)| match spec.channel_type().failover {
            Failover::Target { rank } if spec.is_personal() => Some((rank, name)),
            _ => None,
        })
        .collect();
    // Lower ranks first (SMS: the faster); by name within a rank, as the channels are listed.
    direct.sort_by_key(|&(rank, _)| rank);
    let direct: Vec<&String> = direct.into_iter().map(|(_, name)| name).collect();
    if direct.is_empty() || d.people.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for channel in &direct {
        for person in &d.people {
            out.push(Delivery::new(
                inc.id,
                d.kind,
                channel,
                Some(person.clone()),
                vec![],
                d.step,
                now,
            ));
        }
    }
    let entry = TimelineEntry {
        at: now,
        event: TimelineEvent::Failover {
            from: d.channel.clone(),
            to: direct.iter().map(|s| s.to_string()).collect(),
            people: d.people.clone(),
            deliveries: out.iter().map(|d| d.id.to_string()).collect(),
        },
    };
    Some((entry, out))
}

/// Person `id` as `policy` knows them now; one the policy no longer has is addressed by id
/// alone (no contact details: a personal channel then fails with the reason).
pub(super) fn recipient_named(policy: &Policy, id: &str) -> Recipient {
    match policy.people.get(id) {
        Some(p) => recipient_of(p),
        None => Recipient {
            id: id.to_string(),
            name: id.to_string(),
            phone: None,
            email: None,
            slack: None,
        },
    }
}

pub(super) fn recipient_of(p: &Person) -> Recipient {
    Recipient {
        id: p.id.clone(),
        name: p.name.clone(),
        phone: p.phone.clone(),
        email: p.email.clone(),
        slack: p.slack.clone(),
    }
}

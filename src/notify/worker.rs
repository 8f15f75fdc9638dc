//! The delivery worker: takes due rows from the outbox, sends each through its channel's
//! notifier, and records the attempt (sent, retrying, failed, skipped) on the incident's timeline
//! in the same store write that updates or removes the row. A row leaves the outbox only after its
//! attempt is recorded, so a crash means a resend, never a lost page (at-least-once; PagerDuty's
//! dedup_key and the webhook's Idempotency-Key let receivers collapse resends).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::retry::RetryPolicy;
use super::{Notification, Notifiers, NotifyError, Recipient};
use crate::clock::Clock;
use crate::config::{Person, Policy, PolicyHandle};
use crate::incident::{
    Delivery, DeliveryOutcome, Incident, IncidentStatus, TimelineEntry, TimelineEvent,
};
use crate::metrics::Metrics;
use crate::store::{DeliveryUpdate, Store, StoreError};

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
    wake: Arc<Notify>,
    inflight: Mutex<HashSet<ulid::Ulid>>,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
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
            wake,
            inflight: Mutex::new(HashSet::new()),
            permits: Arc::new(Semaphore::new(CONCURRENCY)),
            tasks: TaskTracker::new(),
        }
    }

    /// Runs until `stop` is cancelled, then waits for in-flight sends to finish.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            if let Err(e) = self.dispatch_due().await {
                tracing::error!(error.message = %e, "Outbox scan failed; retrying.");
            }
            let wait = match self.store.next_delivery().await {
                Ok(Some(at)) => (at - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_POLL),
                _ => IDLE_POLL,
            };
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
            let fresh = self
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(d.id);
            if !fresh {
                continue;
            }
            started += 1;
            let me = self.clone();
            let permit = self.permits.clone().acquire_owned().await;
            self.tasks.spawn(async move {
                let _permit = permit;
                let id = d.id;
                if let Err(e) = me.deliver(d).await {
                    tracing::error!(error.message = %e, "Recording a delivery attempt failed; it will be retried.");
                }
                me.inflight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
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
    async fn deliver(&self, d: Delivery) -> Result<(), StoreError> {
        let now = self.clock.now();
        let attempt = d.attempt + 1;
        let incident = self.store.incident(d.incident).await?;
        let (outcome, detail, reference, update) = match incident {
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
            Some(inc) => {
                let notifiers = self.notifiers.load_full();
                let policy = self.policy.current();
                match notifiers.get(&d.channel) {
                    Err(reason) => (DeliveryOutcome::Failed, reason, None, DeliveryUpdate::Done),
                    Ok(notifier) => {
                        let msg = self.message(&d, &inc, &policy, attempt);
                        let kind = notifier.kind();
                        let result =
                            match tokio::time::timeout(SEND_TIMEOUT, notifier.send(&msg)).await {
                                Ok(r) => r,
                                Err(_) => Err(NotifyError::Transient {
                                    retry_after: None,
                                    reason: format!("no answer within {SEND_TIMEOUT:?}"),
                                }),
                            };
                        let label = match &result {
                            Ok(_) => "sent",
                            Err(NotifyError::Permanent { .. }) => "failed",
                            Err(NotifyError::Transient { .. }) => "transient",
                        };
                        self.metrics
                            .counter(
                                "vigil_delivery_attempts_total",
                                &[("channel_type", kind), ("outcome", label)],
                            )
                            .increment(1);
                        match result {
                            Ok(receipt) => (
                                DeliveryOutcome::Sent,
                                "sent".to_string(),
                                receipt.reference,
                                DeliveryUpdate::Done,
                            ),
                            Err(NotifyError::Permanent { reason }) => {
                                tracing::error!(reason = %reason, "Delivery failed for good.");
                                (DeliveryOutcome::Failed, reason, None, DeliveryUpdate::Done)
                            }
                            Err(NotifyError::Transient {
                                retry_after,
                                reason,
                            }) => {
                                if self.retry.exhausted(attempt) {
                                    tracing::error!(reason = %reason, "Delivery gave up after its last attempt.");
                                    (
                                        DeliveryOutcome::Failed,
                                        format!("{reason}; gave up after {attempt} attempts"),
                                        None,
                                        DeliveryUpdate::Done,
                                    )
                                } else {
                                    let wait = self.retry.delay(attempt, retry_after);
                                    tracing::warn!(reason = %reason, wait = ?wait, "Delivery will be retried.");
                                    let not_before = now
                                        + chrono::Duration::from_std(wait)
                                            .unwrap_or(chrono::Duration::zero());
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
                        }
                    }
                }
            }
        };
        let entry = TimelineEntry {
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
        };
        self.store.finish_delivery(&d, update, entry).await
    }

    fn message(&self, d: &Delivery, inc: &Incident, policy: &Policy, attempt: u32) -> Notification {
        let recipient = |id: &String| -> Recipient {
            match policy.people.get(id) {
                Some(p) => recipient_of(p),
                None => Recipient {
                    id: id.clone(),
                    name: id.clone(),
                    phone: None,
                    email: None,
                    slack: None,
                },
            }
        };
        let by = match d.kind {
            crate::incident::NotifyKind::Acknowledged => {
                inc.acknowledged.as_ref().map(|(a, _)| a.who.clone())
            }
            crate::incident::NotifyKind::Resolved => {
                inc.resolved.as_ref().map(|(a, _)| a.who.clone())
            }
            _ => None,
        };
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
            recipient: d.target.as_ref().map(recipient),
            people: d.people.iter().map(recipient).collect(),
            step: d.step,
            count: inc.count,
            opened_at: inc.opened_at,
            by,
            link: self
                .public_url
                .as_ref()
                .map(|u| format!("{}/v1/incidents/{}", u.trim_end_matches('/'), inc.id)),
            attempt,
            text: inc.summary.clone(),
            subject: None,
            html: None,
            ack_url: None,
            reference: None,
        }
    }
}

fn recipient_of(p: &Person) -> Recipient {
    Recipient {
        id: p.id.clone(),
        name: p.name.clone(),
        phone: p.phone.clone(),
        email: p.email.clone(),
        slack: p.slack.clone(),
    }
}

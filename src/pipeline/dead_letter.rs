//! Draining SNS's dead-letter queues (`sources.sns.dead_letter_queues`): the SQS queues of the
//! subscriptions' redrive policies, where SNS puts what it gave up delivering to vigil. Each
//! message body is the SNS envelope SNS signed for the delivery; it goes through the same path as
//! an HTTP delivery ([`SnsIntake`]: signature, topic allow-list, MessageId dedup) and is deleted
//! from the queue only once it is durable.
//!
//! What is not taken is never deleted silently:
//! - forged or unverifiable (bad signature, untrusted certificate, not an SNS envelope — e.g. a
//!   subscription with raw message delivery), or from a topic not allowed: logged, counted, shown
//!   on `/readyz`, and hidden for [`HOLD_FOR_HUMAN`] (the longest visibility SQS allows) so it
//!   stays in the queue for a human without being re-read every 30 s;
//! - refused for a reason that can pass (the store refusing writes, a certificate that cannot be
//!   fetched right now): left as it is, so SQS shows it again after its visibility timeout.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio_util::sync::CancellationToken;

use super::aws::AwsClients;
use super::sns::{SnsError, SnsIntake};
use super::{Kind, RecoveryHealth};
use crate::config::PolicyHandle;
use crate::ingest::{IngestError, SnsEnvelope};
use crate::metrics::Metrics;
use crate::pipeline::service::Arrival;

/// SQS's longest visibility timeout: a refused message reappears twice a day.
pub const HOLD_FOR_HUMAN: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's longest long poll.
const LONG_POLL_SECONDS: i32 = 20;
/// SQS's largest receive.
const BATCH: i32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Ingested (or a duplicate of what was) and deleted from the queue.
    Taken,
    /// Left in the queue for a human, hidden for [`HOLD_FOR_HUMAN`].
    Refused,
    /// Left in the queue to be tried again (the store or a certificate fetch failed).
    Retry,
}

impl Fate {
    fn as_str(self) -> &'static str {
        match self {
            Self::Taken => "taken",
            Self::Refused => "refused",
            Self::Retry => "retry",
        }
    }
}

pub struct DeadLetters {
    pub intake: Arc<SnsIntake>,
    pub policy: Arc<PolicyHandle>,
    pub clients: Arc<AwsClients>,
    pub health: Arc<RecoveryHealth>,
    pub metrics: Arc<Metrics>,
}

impl DeadLetters {
    /// One receive from `queue` (waiting up to `wait` for messages), each message handled.
    /// The fates of the messages received.
    pub async fn receive(&self, queue: &str, wait: Duration) -> Result<Vec<Fate>, String> {
        let client = self.clients.sqs(queue).await;
        let received = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(BATCH)
            .wait_time_seconds((wait.as_secs() as i32).min(LONG_POLL_SECONDS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        let now = self.intake.clock.now();
        let page = match received {
            Ok(p) => p,
            Err(e) => {
                let why = super::aws::sdk_error("SQS ReceiveMessage", &e);
                self.health.failed(Kind::Queue, queue, now, why.clone());
                self.metrics
                    .counter("vigil_dead_letter_errors_total", &[("queue", queue)])
                    .increment(1);
                return Err(why);
            }
        };
        self.health.succeeded(Kind::Queue, queue, now);
        self.metrics
            .gauge(
                "vigil_dead_letter_last_drain_timestamp_seconds",
                &[("queue", queue)],
            )
            .set(now.timestamp() as f64);
        let mut fates = Vec::new();
        for message in page.messages() {
            let fate = self.handle(&client, queue, message).await;
            self.metrics
                .counter(
                    "vigil_dead_letter_messages_total",
                    &[("queue", queue), ("fate", fate.as_str())],
                )
                .increment(1);
            self.health.update(Kind::Queue, queue, |h| match fate {
                Fate::Taken => h.count += 1,
                Fate::Refused => h.refused += 1,
                Fate::Retry => {}
            });
            fates.push(fate);
        }
        Ok(fates)
    }

    async fn handle(&self, client: &aws_sdk_sqs::Client, queue: &str, m: &Message) -> Fate {
        let sqs_id = m.message_id().unwrap_or("?");
        let Some(handle) = m.receipt_handle() else {
            return Fate::Retry;
        };
        let fate = self.take(queue, sqs_id, m.body().unwrap_or("")).await;
        match fate {
            Fate::Taken => {
                if let Err(e) = client
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .send()
                    .await
                {
                    // It comes back after its visibility timeout and is then a duplicate.
                    tracing::warn!(queue, sqs.message_id = sqs_id, error.message = %super::aws::sdk_error("SQS DeleteMessage", &e), "Could not delete a dead letter vigil has taken; it will be seen again as a duplicate.");
                }
            }
            Fate::Refused => {
                if let Err(e) = client
                    .change_message_visibility()
                    .queue_url(queue)
                    .receipt_handle(handle)
                    .visibility_timeout(HOLD_FOR_HUMAN.as_secs() as i32)
                    .send()
                    .await
                {
                    tracing::warn!(queue, sqs.message_id = sqs_id, error.message = %super::aws::sdk_error("SQS ChangeMessageVisibility", &e), "Could not hide a refused dead letter; it will be read again.");
                }
            }
            Fate::Retry => {}
        }
        fate
    }

    /// Verifies and ingests one dead letter's body.
    async fn take(&self, queue: &str, sqs_id: &str, body: &str) -> Fate {
        let env = match SnsEnvelope::parse(body.as_bytes()) {
            Ok(env) => env,
            Err(e) => {
                tracing::error!(queue, sqs.message_id = sqs_id, error.message = %e, "A dead letter is not a signed SNS envelope (a subscription with raw message delivery?); left in the queue for a human.");
                return Fate::Refused;
            }
        };
        let verified = match self.intake.verify(&env).await {
            Ok(v) => v,
            Err(e @ IngestError::CertUnavailable(_)) => {
                tracing::warn!(queue, sqs.message_id = sqs_id, error.message = %e, "Cannot verify a dead letter now; it will be tried again.");
                return Fate::Retry;
            }
            Err(e) => {
                tracing::error!(queue, sqs.message_id = sqs_id, sns.message_id = env.message.message_id(), topic = env.message.topic_arn(), error.message = %e, "A dead letter failed SNS signature verification; left in the queue for a human.");
                return Fate::Refused;
            }
        };
        let arrival = Arrival::DeadLetter {
            queue: queue.to_string(),
        };
        match self.intake.take(&verified, &arrival).await {
            Ok(Some(taken)) => {
                tracing::warn!(queue, sns.message_id = env.message.message_id(), topic = env.message.topic_arn(), outcome = taken.outcome.label(), incidents = ?taken.outcome.incidents(), "Took an SNS notification from the dead-letter queue: SNS had failed to deliver it.");
                Fate::Taken
            }
            Ok(None) => {
                tracing::info!(
                    queue,
                    sns.message_id = env.message.message_id(),
                    r#type = env.message.type_name(),
                    "A dead letter that carries no alert (not a Notification); deleted."
                );
                Fate::Taken
            }
            Err(SnsError::Service(e)) => {
                tracing::warn!(queue, sns.message_id = env.message.message_id(), error.message = %e, "The store refused a dead letter; it will be tried again.");
                Fate::Retry
            }
            Err(SnsError::Ingest(IngestError::CertUnavailable(_))) => Fate::Retry,
            Err(e) => {
                tracing::error!(queue, sns.message_id = env.message.message_id(), topic = env.message.topic_arn(), error.message = %e, "A dead letter was refused; left in the queue for a human.");
                Fate::Refused
            }
        }
    }

    /// Receives from `queue` until it answers empty (each receive waiting `wait`), at most
    /// `rounds` times; every fate in order.
    pub async fn drain(
        &self,
        queue: &str,
        wait: Duration,
        rounds: usize,
    ) -> Result<Vec<Fate>, String> {
        let mut all = Vec::new();
        for _ in 0..rounds {
            let fates = self.receive(queue, wait).await?;
            if fates.is_empty() {
                break;
            }
            all.extend(fates);
        }
        Ok(all)
    }

    /// Drains every configured queue until `stop`, one task per queue, long polling; the queue
    /// list is re-read from the policy every few seconds so a reload takes effect.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut running: std::collections::HashMap<String, CancellationToken> = Default::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let queues = self.policy.current().sns_dead_letter_queues.clone();
            self.health.retain(Kind::Queue, &queues);
            running.retain(|q, token| {
                let keep = queues.contains(q);
                if !keep {
                    token.cancel();
                }
                keep
            });
            for queue in queues {
                if running.contains_key(&queue) {
                    continue;
                }
                let token = stop.child_token();
                running.insert(queue.clone(), token.clone());
                let me = self.clone();
                tasks.spawn(async move { me.drain_forever(queue, token).await });
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn drain_forever(&self, queue: String, stop: CancellationToken) {
        tracing::info!(queue, "Draining SNS dead letters.");
        let mut failures = 0u32;
        loop {
            let wait = Duration::from_secs(LONG_POLL_SECONDS as u64);
            let round = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.receive(&queue, wait) => r,
            };
            let pause = match round {
                Ok(fates) => {
                    failures = 0;
                    if fates.contains(&Fate::Retry) {
                        Duration::from_secs(5)
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let pause = super::backoff(Duration::from_secs(2), MAX_BACKOFF, failures);
                    tracing::warn!(queue, error.message = %e, retry_in = ?pause, "Cannot receive from a dead-letter queue.");
                    pause
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

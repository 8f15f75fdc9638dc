//! The one path of an SNS Notification, whether SNS posted it (`POST /v1/ingest/sns`) or it was
//! taken from a dead-letter queue: the signature is verified ([`SnsIntake::verify`], the only way
//! to get a [`Verified`] envelope), the topic must be in `sources.sns.allowed_topics`, the
//! `Message` is parsed, and the alert is ingested with its `MessageId` as the dedup key.
//!
//! One difference by arrival: a delivered Notification signed longer ago than
//! `sources.sns.max_age` is a replay (recorded, nobody paged), while one from a dead-letter queue
//! is late by nature — SNS retried it for up to an hour before giving up — and is ingested; the
//! queue is vigil's own (IAM decides who may write to it), and the ordering rule (an older state
//! never overrides a newer one) still holds.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::PolicyHandle;
use crate::ingest::{self, CertCache, IngestError, SnsEnvelope, SnsMessage};
use crate::pipeline::IncidentService;
use crate::pipeline::service::{Arrival, IngestOutcome, ServiceError};

/// What the SNS path needs.
pub struct SnsIntake {
    pub service: Arc<IncidentService>,
    pub policy: Arc<PolicyHandle>,
    pub certs: Arc<CertCache>,
    pub clock: Arc<dyn Clock>,
}

/// An envelope whose signature checked out.
pub struct Verified<'a>(&'a SnsEnvelope);

impl Verified<'_> {
    pub fn envelope(&self) -> &SnsEnvelope {
        self.0
    }
}

/// Why a Notification was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    /// Not SNS's, unparseable, unverifiable or malformed (400/401/503 as the variant says).
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Signed, but from a topic not in `sources.sns.allowed_topics`.
    #[error("topic {0} is not in sources.sns.allowed_topics")]
    TopicNotAllowed(String),
    /// The store could not take it: the sender should retry.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// What taking a Notification did.
#[derive(Debug)]
pub struct Taken {
    pub alert: crate::domain::Alert,
    pub outcome: IngestOutcome,
}

impl SnsIntake {
    /// Checks the envelope's signature against SNS's certificate.
    pub async fn verify<'a>(&self, env: &'a SnsEnvelope) -> Result<Verified<'a>, IngestError> {
        ingest::verify(env, &self.certs).await?;
        Ok(Verified(env))
    }

    /// Whether the envelope's topic may send to vigil.
    pub fn allowed(&self, env: &SnsEnvelope) -> bool {
        let topic = env.message.topic_arn();
        self.policy
            .current()
            .sns_allowed_topics
            .iter()
            .any(|t| t == topic)
    }

    /// Takes a verified Notification: durable when it returns `Ok`. `Ok(None)` for the other
    /// message types (subscription confirmations carry no alert) and for an inbound SMS reply
    /// (the SNS endpoint acts on those before calling this; only a dead letter gets here).
    pub async fn take(
        &self,
        verified: &Verified<'_>,
        arrival: &Arrival,
    ) -> Result<Option<Taken>, SnsError> {
        let env = verified.envelope();
        let SnsMessage::Notification {
            subject,
            message,
            message_id,
            timestamp,
            ..
        } = &env.message
        else {
            return Ok(None);
        };
        let topic = env.message.topic_arn();
        if !self.allowed(env) {
            return Err(SnsError::TopicNotAllowed(topic.to_string()));
        }
        // A reply to an SMS page is acted on where it is delivered (`http::sms_reply`). One that
        // reaches this path came from a dead-letter queue, up to an hour late: an `ACK` without a
        // code could then take a newer incident than the one it answered, so it is dropped.
        if ingest::sms_reply::parse_inbound(message).is_some() {
            tracing::warn!(
                topic,
                message_id,
                "An SMS reply that SNS failed to deliver is not acted on late: dropped."
            );
            return Ok(None);
        }
        let now = self.clock.now();
        // Every message of an allowed topic is taken: a CloudWatch alarm as such, anything else
        // as a generic notification (a 400 would make SNS drop it for good).
        let alert = ingest::parse_notification(
            topic,
            subject.as_deref(),
            message,
            message_id,
            timestamp,
            now,
        );
        if *arrival == Arrival::Delivered {
            let policy = self.policy.current();
            if let Some(sent_at) = ingest::sns::replay_sent_at(timestamp, now, policy.sns_max_age)?
            {
                let outcome = self.service.ingest_replay(&alert, sent_at).await?;
                tracing::warn!(topic, message_id, sent_at = %sent_at, max_age = ?policy.sns_max_age, outcome = outcome.label(), "SNS notification older than sources.sns.max_age: recorded as a replay; nobody is paged.");
                return Ok(Some(Taken { alert, outcome }));
            }
        }
        let outcome = self.service.ingest_via(&alert, arrival).await?;
        Ok(Some(Taken { alert, outcome }))
    }
}

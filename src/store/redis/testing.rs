//! Test support for the Redis store's tests and the store contract: the Redis server and the
//! Redis Cluster `scripts/test` starts (`VIGIL_TEST_REDIS_URL`, `VIGIL_TEST_REDIS_CLUSTER_URL`;
//! without them these tests fail rather than pass silently), fresh key prefixes, and replicas.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::store::{from_ms, ms};
use super::{RedisOptions, RedisStore, SEEN_TTL};
use crate::domain::Fingerprint;
use crate::incident::{Delivery, DeliveryOutcome, Incident, TimelineEntry, TimelineEvent};
use crate::store::{DeliveryFinish, DeliveryUpdate, Guard, Store, Transition};

/// The server `scripts/test` starts. Without it these tests fail rather than pass silently.
pub(crate) fn redis_url() -> String {
    std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("VIGIL_TEST_REDIS_URL is not set: run scripts/test, which starts redis-server")
    })
}

/// A key prefix no other test uses.
pub(crate) fn fresh_prefix() -> String {
    format!("test-{}", ulid::Ulid::new())
}

/// The cluster `scripts/test` starts (three masters). Without it these tests fail.
pub(crate) fn cluster_url() -> String {
    std::env::var("VIGIL_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        panic!(
            "VIGIL_TEST_REDIS_CLUSTER_URL is not set: run scripts/test, which starts a Redis Cluster"
        )
    })
}

pub(crate) async fn replica(prefix: &str, name: &str, lease: Duration) -> RedisStore {
    replica_at(&redis_url(), prefix, name, lease).await
}

pub(crate) async fn replica_at(url: &str, prefix: &str, name: &str, lease: Duration) -> RedisStore {
    RedisStore::connect_with(
        url,
        prefix,
        RedisOptions {
            consumer: format!("{name}-{}", ulid::Ulid::new()),
            lease,
            timeout: Duration::from_secs(2),
            seen_ttl: SEEN_TTL,
        },
    )
    .await
    .unwrap()
}

/// Two replicas, `a` and `b`, of one store (a fresh prefix) on `url`, with this lease.
pub(crate) async fn two_replicas(url: &str, lease: Duration) -> (RedisStore, RedisStore) {
    let prefix = fresh_prefix();
    (
        replica_at(url, &prefix, "a", lease).await,
        replica_at(url, &prefix, "b", lease).await,
    )
}

pub(crate) fn fp(tag: &str) -> Fingerprint {
    Fingerprint::parse(format!("redis/{tag}/{}", ulid::Ulid::new())).unwrap()
}

/// Now, to the millisecond the store keeps.
pub(crate) fn now() -> DateTime<Utc> {
    from_ms(ms(Utc::now()))
}

pub(crate) fn opened(inc: &Incident, deliveries: Vec<Delivery>) -> Transition {
    Transition {
        guard: Some(Guard::NoOpenIncident(inc.fingerprint.clone())),
        incident: Some(inc.clone()),
        deliveries,
        ..Default::default()
    }
}

pub(crate) fn attempt_entry(d: &Delivery, outcome: DeliveryOutcome) -> TimelineEntry {
    TimelineEntry {
        at: d.not_before,
        event: TimelineEvent::Delivery {
            delivery: d.id.to_string(),
            channel: d.channel.clone(),
            kind: d.kind.as_str().into(),
            target: None,
            attempt: d.attempt + 1,
            outcome,
            detail: String::new(),
            reference: None,
        },
    }
}

/// Records `d`'s attempt as sent: the row leaves the outbox.
pub(crate) async fn finish_sent(store: &RedisStore, d: &Delivery) {
    store
        .finish_delivery(
            d,
            DeliveryFinish::simple(
                DeliveryUpdate::Done,
                attempt_entry(d, DeliveryOutcome::Sent),
            ),
        )
        .await
        .unwrap();
}

//! The key layout of the Redis store: every key name it reads or writes, built by `Keys`, and the
//! layout version. The scripts (`lua/`) and the `Store` impl take their key names from here.
//!
//! # Layout
//!
//! Every key is `{<prefix>}:<name>` (default prefix `vigil`). The braces are a Redis Cluster hash
//! tag: all of vigil's keys hash to one slot, so every script may touch every key it needs
//! (vigil's data is small; it gains nothing from sharding, and it needs multi-key atomicity).
//! Scripts name all fixed keys in `KEYS`; the per-incident keys they touch are built from the
//! same tag, so they stay in the declared slot.
//!
//! | key | type | content |
//! |---|---|---|
//! | `meta` | hash | `schema` → layout version (`SCHEMA_VERSION`) |
//! | `inc:<id>` | hash | `data` (incident JSON), `version`, `status` |
//! | `open` | hash | fingerprint → id of its open incident |
//! | `lastchange` | hash | fingerprint → the source's latest state-change time (ms) |
//! | `idx:all`, `idx:<status>` | zset | incident ids, score 0: lexical order = ULID = creation order |
//! | `tl:<id>` | list | timeline entries (JSON), oldest first |
//! | `due` | zset | incident id, score = `next_due` (ms): the due-index (one row per incident) |
//! | `seen:<delivery id>` | string | a transport delivery id already applied (value: seen ms); expires after `RedisOptions::seen_ttl` |
//! | `seen:at` | zset | `seen:<delivery id>` key names, score = seen ms: what `prune` forgets first |
//! | `resolvedat` | zset | resolved incident ids, score = resolve time (ms): what `prune` deletes first |
//! | `refs:<id>` | hash | channel name → provider reference (first one kept) |
//! | `outbox` | hash | delivery id → delivery JSON: every outbox row (`stats().outbox` = its length) |
//! | `outbox:tok` | hash | delivery id → `<attempt>:<not_before ms>`: which attempt the row is at |
//! | `outbox:delayed` | zset | delivery id, score = `not_before` (ms): rows not yet handed out |
//! | `outbox:stream` | stream | entries `d` = delivery id, `nb` = not_before ms; consumer group `workers` |
//! | `outbox:sid` | hash | delivery id → its current stream entry id |
//! | `outbox:cursor` | string | where the next `XAUTOCLAIM` scan of the group's pending list starts |
//! | `rec:<kind>` | hash | record id → the operator-managed record (`put_record`) |
//! | `prune:backfill` | string | how far `prune` has indexed, in `resolvedat`, incidents resolved before it existed (the last id looked at, or `done`) |
//! | `none` | — | never written: named in `KEYS` where a script takes a key it does not use this time |

use crate::domain::IncidentId;
use crate::incident::IncidentStatus;

/// Bump when the key layout changes incompatibly; a store with another version is refused.
pub(super) const SCHEMA_VERSION: u64 = 1;
/// The consumer group every replica reads the outbox stream in.
pub(super) const GROUP: &str = "workers";

/// Key names, all under one hash tag.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    tag: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }

    pub(super) fn k(&self, name: &str) -> String {
        format!("{}:{name}", self.tag)
    }

    pub(super) fn incident(&self, id: IncidentId) -> String {
        self.k(&format!("inc:{id}"))
    }

    pub(super) fn timeline(&self, id: IncidentId) -> String {
        self.k(&format!("tl:{id}"))
    }

    pub(super) fn refs(&self, id: IncidentId) -> String {
        self.k(&format!("refs:{id}"))
    }

    pub(super) fn seen(&self, delivery_id: &str) -> String {
        self.k(&format!("seen:{delivery_id}"))
    }

    pub(super) fn record(&self, kind: &str) -> String {
        self.k(&format!("rec:{kind}"))
    }

    pub(super) fn status(&self, status: IncidentStatus) -> String {
        self.k(&format!("idx:{}", status.as_str()))
    }

    /// Named in `KEYS` where a script takes a key it does not use this time.
    pub(super) fn none(&self) -> String {
        self.k("none")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use ::redis::Client;

    use super::super::SEEN_TTL;
    use super::super::testing::{attempt_entry, fp, fresh_prefix, now, opened, redis_url, replica};
    use crate::incident::{Delivery, DeliveryOutcome, NotifyKind};
    use crate::store::Store;
    use crate::store::contract::sample_incident;

    #[tokio::test]
    async fn keys_carry_the_prefix_and_one_hash_tag() {
        let prefix = fresh_prefix();
        let store = replica(&prefix, "a", Duration::from_secs(60)).await;
        let inc = sample_incident(fp("keys"), now());
        let d = Delivery::new(
            inc.id,
            NotifyKind::Trigger,
            "log",
            None,
            vec![],
            None,
            now(),
        );
        let mut tx = opened(&inc, vec![d]);
        tx.delivery_id = Some("sns-1".into());
        tx.timeline = vec![attempt_entry(&tx.deliveries[0], DeliveryOutcome::Sent)];
        store.commit(tx).await.unwrap();
        store.deliveries_due(now(), 10).await.unwrap();
        let client = Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("*{prefix}*"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(keys.len() >= 8, "{keys:?}");
        assert!(
            keys.iter()
                .all(|k| k.starts_with(&format!("{{{prefix}}}:"))),
            "{keys:?}"
        );
        let ttl: i64 = ::redis::cmd("TTL")
            .arg(format!("{{{prefix}}}:seen:sns-1"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(
            ttl > 0 && ttl <= SEEN_TTL.as_secs() as i64,
            "seen ids expire"
        );
    }
}

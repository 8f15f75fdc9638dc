//! `impl Store for RedisStore`: each call as one command, pipeline or script (`scripts`) on the
//! keys of `keys`, sent through `Connection::run`; and how values are written in Redis (JSON
//! records, millisecond scores, the outbox row's attempt token).

use std::collections::BTreeMap;

use ::redis::{FromRedisValue, ScriptInvocation};
use chrono::{DateTime, TimeZone, Utc};

use super::RedisStore;
use super::keys::GROUP;
use crate::domain::{Fingerprint, IncidentId};
use crate::incident::{Delivery, Incident, IncidentStatus, TimelineEntry};
use crate::store::{
    CommitOutcome, DeliveryFinish, FingerprintState, Guard, Prune, Pruned, Store, StoreError,
    StoreStats, Transition,
};

/// Resolved incidents indexed per `prune` call by `lua/backfill_resolved_index.lua`.
const BACKFILL_STEP: usize = 1000;

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// Sorted-set scores come back as decimal strings; ours are whole milliseconds.
pub(super) fn score_ms(s: &str) -> Result<i64, StoreError> {
    s.parse::<f64>()
        .map(|f| f as i64)
        .map_err(|e| StoreError::Corrupt(format!("score {s:?}: {e}")))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn encode<T: serde::Serialize>(v: &T) -> String {
    // Serializing our own plain data types cannot fail (no maps with non-string keys).
    serde_json::to_string(v).expect("store records serialize to JSON")
}

/// Which attempt an outbox row is at; a finish applies only to the attempt it was given.
pub(super) fn token(d: &Delivery) -> String {
    format!("{}:{}", d.attempt, ms(d.not_before))
}

/// The largest count passed to Redis. Counts go through Lua numbers (doubles), which print
/// large values in exponent form that Redis refuses; callers asking for "all" pass `usize::MAX`.
const MAX_COUNT: usize = 1_000_000_000;

/// `limit` as a count for Redis.
pub(super) fn count(limit: usize) -> i64 {
    limit.min(MAX_COUNT) as i64
}

/// Appends the count, then each entry's JSON: how the scripts take timeline entries.
fn push_entries(inv: &mut ScriptInvocation<'_>, entries: &[TimelineEntry]) {
    inv.arg(entries.len());
    for e in entries {
        inv.arg(encode(e));
    }
}

/// Appends the count, then each row as (id, token, not_before ms, JSON): how the scripts take
/// new outbox rows.
fn push_rows(inv: &mut ScriptInvocation<'_>, rows: &[Delivery]) {
    inv.arg(rows.len());
    for d in rows {
        inv.arg(d.id.to_string())
            .arg(token(d))
            .arg(ms(d.not_before))
            .arg(encode(d));
    }
}

/// The incidents among `rows` (their JSON) that `keep` keeps, in order.
fn incidents_of(
    rows: &[String],
    keep: impl Fn(&Incident) -> bool,
) -> Result<Vec<Incident>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let inc: Incident = decode(row)?;
        if keep(&inc) {
            out.push(inc);
        }
    }
    Ok(out)
}

impl RedisStore {
    /// Runs one prepared script through `Connection::run`.
    pub(super) async fn invoke<T: FromRedisValue + Send>(
        &self,
        inv: ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.redis
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn commit(&self, tx: Transition) -> Result<CommitOutcome, StoreError> {
        let k = &self.keys;
        let none = k.none();
        let seen_key = tx
            .delivery_id
            .as_deref()
            .map_or(none.clone(), |d| k.seen(d));
        let guarded = match &tx.guard {
            Some(Guard::Version(id, _)) => k.incident(*id),
            _ => none.clone(),
        };
        let written = tx
            .incident
            .as_ref()
            .map_or(none.clone(), |i| k.incident(i.id));
        let timeline_id = tx.incident.as_ref().map(|i| i.id).or(tx.timeline_for);
        let timeline_key = timeline_id.map_or(none.clone(), |id| k.timeline(id));
        let mut inv = self.scripts.commit.prepare_invoke();
        inv.key(seen_key)
            .key(k.k("open"))
            .key(k.k("lastchange"))
            .key(k.k("due"))
            .key(k.k("outbox:delayed"))
            .key(k.k("outbox"))
            .key(k.k("outbox:tok"))
            .key(k.k("idx:all"))
            .key(k.status(IncidentStatus::Triggered))
            .key(k.status(IncidentStatus::Acknowledged))
            .key(k.status(IncidentStatus::Resolved))
            .key(guarded)
            .key(written)
            .key(timeline_key)
            .key(k.k("resolvedat"))
            .key(k.k("seen:at"));
        // KEYS[17..]: one record hash per record written.
        for r in &tx.records {
            inv.key(k.record(&r.kind));
        }
        inv.arg(if tx.delivery_id.is_some() { "1" } else { "0" })
            .arg(self.options.seen_ttl.as_secs().max(1))
            .arg(ms(tx.decided_at.unwrap_or_else(Utc::now)));
        match &tx.guard {
            None => inv.arg("none").arg(""),
            Some(Guard::NoOpenIncident(fp)) => inv.arg("open").arg(fp.as_str()),
            Some(Guard::Version(_, v)) => inv.arg("version").arg(v.to_string()),
        };
        match &tx.incident {
            Some(inc) => inv
                .arg("1")
                .arg(inc.id.to_string())
                .arg(encode(inc))
                .arg(inc.version.to_string())
                .arg(inc.status.as_str())
                .arg(inc.fingerprint.as_str())
                .arg(inc.next_due.map(|d| ms(d).to_string()).unwrap_or_default()),
            None => inv.arg("0").arg("").arg("").arg("").arg("").arg("").arg(""),
        };
        match &tx.last_change {
            Some((fp, at)) => inv.arg(fp.as_str()).arg(ms(*at)),
            None => inv.arg("").arg(0),
        };
        match tx.incident.as_ref().and_then(|i| i.resolved.as_ref()) {
            Some((_, at)) => inv.arg(ms(*at)),
            None => inv.arg(""),
        };
        // Entries with nowhere to go are dropped, as in the embedded store.
        let entries: &[TimelineEntry] = if timeline_id.is_some() {
            &tx.timeline
        } else {
            &[]
        };
        push_entries(&mut inv, entries);
        push_rows(&mut inv, &tx.deliveries);
        inv.arg(tx.records.len());
        for r in &tx.records {
            inv.arg(r.id.as_str()).arg(r.value.as_slice());
        }
        let outcome: String = self.invoke(inv).await?;
        match outcome.as_str() {
            "committed" => Ok(CommitOutcome::Committed),
            "conflict" => Ok(CommitOutcome::Conflict),
            "duplicate" => Ok(CommitOutcome::Duplicate),
            other => Err(StoreError::Corrupt(format!(
                "commit script answered {other:?}"
            ))),
        }
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<Incident>, StoreError> {
        let key = self.keys.incident(id);
        let data: Option<String> = self
            .redis
            .run(|mut c| async move {
                ::redis::cmd("HGET")
                    .arg(&key)
                    .arg("data")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        data.as_deref().map(decode).transpose()
    }

    async fn fingerprint(&self, fp: &Fingerprint) -> Result<FingerprintState, StoreError> {
        let mut inv = self.scripts.fingerprint.prepare_invoke();
        inv.key(self.keys.k("open"))
            .key(self.keys.k("lastchange"))
            .arg(fp.as_str())
            .arg(self.keys.k("inc:"));
        let (data, lc): (String, String) = self.invoke(inv).await?;
        let open = if data.is_empty() {
            None
        } else {
            Some(decode::<Incident>(&data)?).filter(|i| i.status.is_open())
        };
        let last_change = if lc.is_empty() {
            None
        } else {
            Some(from_ms(lc.parse().map_err(|e| {
                StoreError::Corrupt(format!("last change {lc:?}: {e}"))
            })?))
        };
        Ok(FingerprintState { open, last_change })
    }

    async fn incidents(
        &self,
        status: Option<IncidentStatus>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match status {
            Some(s) => self.keys.status(s),
            None => self.keys.k("idx:all"),
        };
        let mut inv = self.scripts.incidents.prepare_invoke();
        let last = if limit > MAX_COUNT {
            -1
        } else {
            limit as i64 - 1
        };
        inv.key(index).arg(last).arg(self.keys.k("inc:"));
        let rows: Vec<String> = self.invoke(inv).await?;
        incidents_of(&rows, |inc| status.is_none_or(|s| s == inc.status))
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let mut inv = self.scripts.open_incidents.prepare_invoke();
        inv.key(self.keys.k("open")).arg(self.keys.k("inc:"));
        let rows: Vec<String> = self.invoke(inv).await?;
        incidents_of(&rows, |inc| inc.status.is_open())
    }

    async fn resolved_since(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.resolved_since.prepare_invoke();
        inv.key(self.keys.k("resolvedat"))
            .arg(ms(since))
            .arg(count(limit))
            .arg(self.keys.k("inc:"));
        let rows: Vec<String> = self.invoke(inv).await?;
        incidents_of(&rows, |inc| inc.status == IncidentStatus::Resolved)
    }

    async fn prune(&self, prune: Prune) -> Result<Pruned, StoreError> {
        let k = &self.keys;
        // Older `seen:` keys expire by their TTL; older resolved incidents need indexing.
        let mut inv = self.scripts.backfill.prepare_invoke();
        inv.key(k.status(IncidentStatus::Resolved))
            .key(k.k("resolvedat"))
            .key(k.k("prune:backfill"))
            .arg(BACKFILL_STEP)
            .arg(k.k("inc:"));
        let (more, older): (i64, Vec<String>) = self.invoke(inv).await?;
        let mut index = ::redis::pipe();
        let mut indexed = 0;
        for pair in older.chunks(2) {
            if let [id, data] = pair
                && let Ok(inc) = decode::<Incident>(data)
                && let (IncidentStatus::Resolved, Some((_, at))) = (inc.status, &inc.resolved)
            {
                index
                    .cmd("ZADD")
                    .arg(k.k("resolvedat"))
                    .arg("NX")
                    .arg(ms(*at))
                    .arg(id)
                    .ignore();
                indexed += 1;
            }
        }
        if indexed > 0 {
            self.redis
                .run(|mut c| async move { index.query_async::<()>(&mut c).await })
                .await?;
        }
        let mut inv = self.scripts.prune.prepare_invoke();
        inv.key(k.k("resolvedat"))
            .key(k.k("open"))
            .key(k.k("lastchange"))
            .key(k.k("due"))
            .key(k.k("idx:all"))
            .key(k.status(IncidentStatus::Resolved))
            .key(k.k("outbox"))
            .key(k.k("outbox:tok"))
            .key(k.k("outbox:delayed"))
            .key(k.k("outbox:sid"))
            .key(k.k("seen:at"))
            .arg(ms(prune.resolved_before))
            .arg(ms(prune.seen_before))
            .arg(count(prune.limit))
            .arg(k.k("inc:"))
            .arg(k.k("tl:"))
            .arg(k.k("refs:"));
        let (gone, delivery_ids): (Vec<String>, u64) = self.invoke(inv).await?;
        let mut incidents = Vec::with_capacity(gone.len() / 2);
        for pair in gone.chunks(2) {
            let [id, fp] = pair else {
                return Err(StoreError::Corrupt(
                    "prune script answered an odd list".into(),
                ));
            };
            let id = IncidentId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let fp =
                Fingerprint::parse(fp.as_str()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            incidents.push((id, fp));
        }
        Ok(Pruned {
            incidents,
            delivery_ids: delivery_ids as usize,
            backlog: more == 1,
        })
    }

    async fn timeline(&self, id: IncidentId) -> Result<Vec<TimelineEntry>, StoreError> {
        let key = self.keys.timeline(id);
        let rows: Vec<String> = self
            .redis
            .run(|mut c| async move {
                ::redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        rows.iter().map(|r| decode(r)).collect()
    }

    async fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(DateTime<Utc>, IncidentId)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.k("due");
        let rows: Vec<(String, String)> = self
            .redis
            .run(|mut c| async move {
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(ms(now))
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(count(limit))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        rows.into_iter()
            .map(|(id, score)| {
                let id = IncidentId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((from_ms(score_ms(&score)?), id))
            })
            .collect()
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let key = self.keys.k("due");
        let first: Vec<(String, String)> = self
            .redis
            .run(|mut c| async move {
                ::redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        first
            .first()
            .map(|(_, score)| score_ms(score).map(from_ms))
            .transpose()
    }

    async fn deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let mut inv = self.scripts.deliveries_due.prepare_invoke();
        inv.key(k.k("outbox:delayed"))
            .key(k.k("outbox"))
            .key(k.k("outbox:sid"))
            .key(k.k("outbox:stream"))
            .key(k.k("outbox:cursor"))
            .arg(ms(now))
            .arg(count(limit))
            .arg(GROUP)
            .arg(&self.options.consumer)
            .arg(self.options.lease.as_millis() as u64);
        let rows: Vec<String> = self.invoke(inv).await?;
        let mut out = rows
            .iter()
            .map(|r| decode::<Delivery>(r))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|d| (d.not_before, d.id));
        Ok(out)
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let key = self.keys.k("outbox");
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let key = key.clone();
            let (next, page): (u64, Vec<(String, String)>) = self
                .redis
                .run(|mut c| async move {
                    ::redis::cmd("HSCAN")
                        .arg(&key)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            for (_, row) in page {
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push(decode::<Delivery>(&row)?);
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn still_pending(&self, delivery: &Delivery) -> Result<bool, StoreError> {
        let key = self.keys.k("outbox:tok");
        let id = delivery.id.to_string();
        let tok: Option<String> = self
            .redis
            .run(|mut c| async move {
                ::redis::cmd("HGET")
                    .arg(&key)
                    .arg(&id)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(tok.as_deref() == Some(token(delivery).as_str()))
    }

    async fn put_record(&self, kind: &str, id: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let key = self.keys.record(kind);
        let id = id.to_string();
        self.redis
            .run(|mut c| async move {
                ::redis::cmd("HSET")
                    .arg(&key)
                    .arg(&id)
                    .arg(value)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    async fn get_record(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.keys.record(kind);
        let id = id.to_string();
        self.redis
            .run(|mut c| async move {
                ::redis::cmd("HGET")
                    .arg(&key)
                    .arg(&id)
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    async fn delete_record(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let key = self.keys.record(kind);
        let id = id.to_string();
        let n: u64 = self
            .redis
            .run(|mut c| async move {
                ::redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&id)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(n > 0)
    }

    async fn records(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let key = self.keys.record(kind);
        let all: BTreeMap<String, Vec<u8>> = self
            .redis
            .run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
            .await?;
        Ok(all.into_iter().collect())
    }

    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut inv = self.scripts.next_delivery.prepare_invoke();
        inv.key(self.keys.k("outbox:delayed"))
            .key(self.keys.k("outbox:stream"))
            .arg(GROUP);
        let at: Option<i64> = self.invoke(inv).await?;
        Ok(at.map(from_ms))
    }

    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        finish: DeliveryFinish,
    ) -> Result<(), StoreError> {
        let k = &self.keys;
        let mut inv = self.scripts.finish.prepare_invoke();
        inv.key(k.k("outbox"))
            .key(k.k("outbox:tok"))
            .key(k.k("outbox:sid"))
            .key(k.k("outbox:delayed"))
            .key(k.k("outbox:stream"))
            .key(k.timeline(delivery.incident))
            .key(k.refs(delivery.incident));
        inv.arg(delivery.id.to_string())
            .arg(token(delivery))
            .arg(GROUP);
        match finish.retry_row(delivery) {
            None => inv.arg("done").arg("").arg(0).arg(""),
            Some(next) => inv
                .arg("retry")
                .arg(token(&next))
                .arg(ms(next.not_before))
                .arg(encode(&next)),
        };
        inv.arg(delivery.channel.as_str());
        match &finish.remember {
            Some(r) => inv.arg("1").arg(r.as_str()),
            None => inv.arg("0").arg(""),
        };
        push_entries(&mut inv, &finish.entries);
        push_rows(&mut inv, &finish.follow_ups);
        let _current: i64 = self.invoke(inv).await?;
        Ok(())
    }

    async fn references(&self, id: IncidentId) -> Result<BTreeMap<String, String>, StoreError> {
        let key = self.keys.refs(id);
        self.redis
            .run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let k = &self.keys;
        let mut pipe = ::redis::pipe();
        pipe.cmd("HLEN")
            .arg(k.k("open"))
            .cmd("HLEN")
            .arg(k.k("outbox"))
            .cmd("ZCARD")
            .arg(k.k("due"));
        let (open_incidents, outbox, timers): (u64, u64, u64) = self
            .redis
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        Ok(StoreStats {
            open_incidents,
            outbox,
            timers,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use ::redis::Client;

    use super::super::testing::{
        attempt_entry, cluster_url, finish_sent, fp, fresh_prefix, now, opened, redis_url, replica,
        two_replicas,
    };
    use super::*;
    use crate::incident::{DeliveryOutcome, NotifyKind};
    use crate::store::DeliveryUpdate;
    use crate::store::contract::{resolved_sample, sample_incident, trigger_row};

    #[tokio::test]
    async fn two_replicas_racing_one_step_commit_it_once() {
        race(&redis_url()).await;
    }

    #[tokio::test]
    async fn two_replicas_racing_one_step_commit_it_once_on_a_cluster() {
        race(&cluster_url()).await;
    }

    async fn race(url: &str) {
        let (a, b) = two_replicas(url, Duration::from_secs(60)).await;
        for round in 0..10 {
            let inc = sample_incident(fp("race"), now());
            assert_eq!(
                a.commit(opened(&inc, vec![])).await.unwrap(),
                CommitOutcome::Committed
            );
            let step = |n: u32| {
                let mut next = inc.clone();
                next.version = 2;
                next.step = n;
                Transition {
                    guard: Some(Guard::Version(inc.id, 1)),
                    incident: Some(next),
                    deliveries: vec![Delivery::new(
                        inc.id,
                        NotifyKind::Escalate,
                        "log",
                        None,
                        vec![],
                        Some((0, n)),
                        inc.opened_at,
                    )],
                    ..Default::default()
                }
            };
            // Each replica fires the step several times concurrently, as two scheduler passes
            // and a retry after a timeout would.
            let from_a = futures::future::join_all((1..=4).map(|n| a.commit(step(n))));
            let from_b = futures::future::join_all((5..=8).map(|n| b.commit(step(n))));
            let (ra, rb) = futures::join!(from_a, from_b);
            let outcomes: Vec<CommitOutcome> =
                ra.into_iter().chain(rb).map(|r| r.unwrap()).collect();
            let won = outcomes
                .iter()
                .filter(|o| **o == CommitOutcome::Committed)
                .count();
            assert_eq!(won, 1, "round {round}: {outcomes:?}");
            let stored = b.incident(inc.id).await.unwrap().unwrap();
            assert_eq!(stored.version, 2);
            let rows = b.deliveries_due(inc.opened_at, 100).await.unwrap();
            assert_eq!(
                rows.iter().map(|d| d.step).collect::<Vec<_>>(),
                vec![Some((0, stored.step))],
                "only the winner's delivery is in the outbox"
            );
            for d in rows {
                finish_sent(&b, &d).await;
            }
        }
    }

    #[tokio::test]
    async fn an_unfinished_delivery_moves_to_another_replica_after_the_lease() {
        lease_moves(&redis_url()).await;
    }

    /// `XREADGROUP`, `XAUTOCLAIM`, `XACK`/`XDEL` inside the scripts, on the node owning the slot.
    #[tokio::test]
    async fn an_unfinished_delivery_moves_to_another_replica_after_the_lease_on_a_cluster() {
        lease_moves(&cluster_url()).await;
    }

    async fn lease_moves(url: &str) {
        let lease = Duration::from_millis(400);
        let (a, b) = two_replicas(url, lease).await;
        let inc = sample_incident(fp("lease"), now());
        let d = trigger_row(&inc, None, now());
        a.commit(opened(&inc, vec![d.clone()])).await.unwrap();
        let t = now();
        assert_eq!(a.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);
        assert_eq!(
            a.deliveries_due(t, 10).await.unwrap(),
            vec![d.clone()],
            "still due to the replica that holds it"
        );
        assert!(
            b.deliveries_due(t, 10).await.unwrap().is_empty(),
            "another replica's lease"
        );
        // Real time must pass: the lease is Redis's idle time. A polls halfway, which renews it.
        tokio::time::sleep(lease / 2 + Duration::from_millis(100)).await;
        assert_eq!(a.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);
        tokio::time::sleep(lease / 2 + Duration::from_millis(100)).await;
        assert!(
            b.deliveries_due(t, 10).await.unwrap().is_empty(),
            "A renewed its lease by polling"
        );
        // A stops polling (it died): after the lease, B takes the delivery over.
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        assert_eq!(b.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);
        assert!(
            a.deliveries_due(t, 10).await.unwrap().is_empty(),
            "A no longer holds it"
        );
        finish_sent(&b, &d).await;
        // A comes back and records its own (stale) attempt: the row stays finished.
        a.finish_delivery(
            &d,
            DeliveryFinish::simple(
                DeliveryUpdate::Retry {
                    attempt: 1,
                    not_before: t,
                },
                attempt_entry(&d, DeliveryOutcome::Retrying),
            ),
        )
        .await
        .unwrap();
        assert_eq!(a.stats().await.unwrap().outbox, 0);
        assert!(a.deliveries_due(t, 10).await.unwrap().is_empty());
        assert!(b.deliveries_due(t, 10).await.unwrap().is_empty());
        assert_eq!(b.timeline(inc.id).await.unwrap().len(), 2, "both attempts");
    }

    #[tokio::test]
    async fn a_retry_is_handed_out_at_its_time_and_not_before() {
        let (a, b) = two_replicas(&redis_url(), Duration::from_secs(60)).await;
        let t = now();
        let inc = sample_incident(fp("retry"), t);
        let d = trigger_row(&inc, None, t);
        a.commit(opened(&inc, vec![d.clone()])).await.unwrap();
        assert_eq!(a.next_delivery().await.unwrap(), Some(d.not_before));
        let got = a.deliveries_due(t, 10).await.unwrap();
        assert_eq!(got, vec![d.clone()]);
        assert_eq!(
            a.next_delivery().await.unwrap(),
            None,
            "handed out: no other worker needs to wake for it"
        );
        let retry_at = t + chrono::Duration::seconds(30);
        a.finish_delivery(
            &d,
            DeliveryFinish::simple(
                DeliveryUpdate::Retry {
                    attempt: 1,
                    not_before: retry_at,
                },
                attempt_entry(&d, DeliveryOutcome::Retrying),
            ),
        )
        .await
        .unwrap();
        assert_eq!(b.next_delivery().await.unwrap(), Some(retry_at));
        for early in [t, retry_at - chrono::Duration::milliseconds(1)] {
            assert!(a.deliveries_due(early, 10).await.unwrap().is_empty());
            assert!(b.deliveries_due(early, 10).await.unwrap().is_empty());
        }
        let row = b.deliveries_due(retry_at, 10).await.unwrap();
        assert_eq!(row.len(), 1);
        assert_eq!(
            (row[0].id, row[0].attempt, row[0].not_before),
            (d.id, 1, retry_at)
        );
        assert!(
            a.deliveries_due(retry_at, 10).await.unwrap().is_empty(),
            "B holds it"
        );
        finish_sent(&b, &row[0]).await;
        assert_eq!(b.stats().await.unwrap().outbox, 0);
        assert_eq!(b.next_delivery().await.unwrap(), None);
    }

    #[tokio::test]
    async fn resolved_incidents_written_before_the_prune_index_are_indexed_and_pruned() {
        let store = replica(&fresh_prefix(), "a", Duration::from_secs(60)).await;
        let inc = resolved_sample(fp("legacy"), now() - chrono::Duration::days(60));
        store.commit(opened(&inc, vec![])).await.unwrap();
        // As an older version left it: no `resolvedat` entry, no backfill yet.
        let client = Client::open(redis_url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = ::redis::cmd("DEL")
            .arg(store.keys.k("resolvedat"))
            .query_async(&mut c)
            .await
            .unwrap();
        let prune = Prune {
            resolved_before: now() - chrono::Duration::days(30),
            seen_before: now() - chrono::Duration::days(7),
            limit: 100,
        };
        let pruned = store.prune(prune).await.unwrap();
        assert_eq!(pruned.incidents, vec![(inc.id, inc.fingerprint.clone())]);
        assert!(!pruned.backlog, "one incident: indexed in one step");
        assert!(store.incident(inc.id).await.unwrap().is_none());
        assert!(!store.prune(prune).await.unwrap().full(100));
    }
}

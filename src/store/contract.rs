//! The store contract: behaviour every `Store` implementation must show, speaking only through
//! the trait. Each property is an `async fn` over a `&dyn Store`; `contract!` makes it one
//! `#[tokio::test]` per backend (`embedded::<property>`, `redis::<property>`,
//! `redis_cluster::<property>`), each against a fresh store (its own temporary directory, its
//! own Redis key prefix), so no property depends on what another left behind. The Redis ones
//! need the server and the cluster `scripts/test` starts, and fail without them, as every Redis
//! test does.
//!
//! Also the sample builders the store's and the service's unit tests share (`sample_incident`,
//! `resolved_sample`, `open_one`).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{
    CommitOutcome, DeliveryFinish, DeliveryUpdate, Guard, Prune, RecordWrite, Store, Transition,
};
use crate::config::{EscalationPolicy, Step, Target};
use crate::domain::{AlertStatus, Fingerprint, IncidentId, Source};
use crate::incident::{
    Actor, Delivery, DeliveryOutcome, Incident, IncidentStatus, NotifyKind, Origin, TimelineEntry,
    TimelineEvent,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

fn fresh_fp(tag: &str) -> Fingerprint {
    Fingerprint::parse(format!("contract/{tag}/{}", ulid::Ulid::new())).unwrap()
}

/// A triggered incident with one pending step due at `t0 + 5m`.
pub fn sample_incident(fp: Fingerprint, now: DateTime<Utc>) -> Incident {
    Incident {
        id: IncidentId::new(now),
        fingerprint: fp,
        version: 1,
        status: IncidentStatus::Triggered,
        severity: crate::domain::Severity::High,
        rule: "contract".into(),
        policy: "p".into(),
        escalation: EscalationPolicy {
            steps: vec![Step {
                after: Duration::from_secs(300),
                targets: vec![Target::Person("ana".into())],
                via: vec!["log".into()],
            }],
            repeat: 0,
            repeat_delay: None,
            ack_timeout: None,
        },
        source: Source::Bot,
        summary: "contract incident".into(),
        description: None,
        labels: Default::default(),
        details: serde_json::Value::Null,
        alert_status: AlertStatus::Firing,
        count: 1,
        first_seen: now,
        last_seen: now,
        last_change: now,
        opened_at: now,
        loop_: 0,
        step: 0,
        next_due: Some(now + chrono::Duration::minutes(5)),
        acknowledged: None,
        resolved: None,
        notified: Default::default(),
        anchor: None,
        ack_until: None,
        members: Default::default(),
        held_by: None,
        unreached: None,
        opened_by: None,
        peer_undelivered: Vec::new(),
        drill: None,
    }
}

/// A first-step trigger of `inc` on the `log` channel, due at `at`.
pub fn trigger_row(inc: &Incident, target: Option<&str>, at: DateTime<Utc>) -> Delivery {
    Delivery::new(
        inc.id,
        NotifyKind::Trigger,
        "log",
        target.map(str::to_string),
        vec![],
        Some((0, 0)),
        at,
    )
}

fn entry(now: DateTime<Utc>, n: u32) -> TimelineEntry {
    TimelineEntry {
        at: now,
        event: TimelineEvent::Escalated {
            loop_: 0,
            step: n,
            targets: vec![],
            via: vec![],
            deliveries: vec![],
        },
    }
}

fn create(inc: &Incident) -> Transition {
    Transition {
        guard: Some(Guard::NoOpenIncident(inc.fingerprint.clone())),
        incident: Some(inc.clone()),
        timeline: vec![entry(inc.opened_at, 0)],
        last_change: Some((inc.fingerprint.clone(), inc.last_change)),
        ..Default::default()
    }
}

/// Opens one incident and returns its id (used by reopen tests).
pub async fn open_one(store: &dyn Store) -> IncidentId {
    let inc = sample_incident(fresh_fp("reopen"), t0());
    assert_eq!(
        store.commit(create(&inc)).await.unwrap(),
        CommitOutcome::Committed
    );
    inc.id
}

/// One `#[tokio::test]` per property and backend, each against a fresh store.
macro_rules! contract {
    ($($property:ident),+ $(,)?) => {
        contract!(@backend embedded; $($property),+);
        contract!(@backend redis; $($property),+);
        contract!(@backend redis_cluster; $($property),+);
    };
    (@backend $backend:ident; $($property:ident),+) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $property() {
                    let fresh = super::fresh::$backend().await;
                    super::$property(fresh.store.as_ref()).await;
                }
            )+
        }
    };
}

contract!(
    create_and_read_back,
    one_open_incident_per_fingerprint,
    version_guard_lets_exactly_one_writer_win,
    repeated_delivery_id_is_a_no_op,
    due_index_follows_next_due,
    resolve_frees_the_fingerprint,
    outbox_rows_retry_and_finish,
    still_pending_holds_only_the_attempt_handed_out,
    last_change_is_kept_without_an_incident,
    unfinished_rows_stay_due_and_a_stale_finish_changes_nothing,
    incidents_are_listed_newest_first,
    timeline_for_appends_without_an_incident,
    records_are_kept_by_kind_and_id,
    records_ride_a_transition_only_when_it_commits,
    open_incidents_come_from_the_open_index,
    prune_deletes_resolved_incidents_past_their_retention,
    prune_forgets_delivery_ids_past_their_retention,
    prune_is_bounded_per_call,
    resolved_since_reads_the_resolve_index,
);

/// A fresh store of each backend: nothing another test wrote is in it.
mod fresh {
    use crate::store::redis::testing::{cluster_url, fresh_prefix, redis_url};
    use crate::store::{EmbeddedStore, RedisStore, Store};

    pub(super) struct Fresh {
        pub(super) store: Box<dyn Store>,
        /// The embedded store's directory, removed after the store is dropped.
        _dir: Option<tempfile::TempDir>,
    }

    pub(super) async fn embedded() -> Fresh {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        Fresh {
            store: Box::new(store),
            _dir: Some(dir),
        }
    }

    pub(super) async fn redis() -> Fresh {
        let store = RedisStore::connect(&redis_url(), &fresh_prefix())
            .await
            .unwrap();
        Fresh {
            store: Box::new(store),
            _dir: None,
        }
    }

    pub(super) async fn redis_cluster() -> Fresh {
        let store = RedisStore::connect(&cluster_url(), &fresh_prefix())
            .await
            .unwrap();
        assert!(store.is_cluster());
        Fresh {
            store: Box::new(store),
            _dir: None,
        }
    }
}

async fn resolved_since_reads_the_resolve_index(store: &dyn Store) {
    let at = |mins: i64| t0() + chrono::Duration::minutes(mins);
    // A store that has never written anything answers too (the peer feed asks from the start).
    assert!(store.resolved_since(at(0), 10).await.unwrap().is_empty());
    assert!(store.outbox(10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for (tag, mins) in [("since-a", 0), ("since-b", 10), ("since-c", 20)] {
        let inc = resolved_incident(tag, at(mins));
        ids.push(inc.id);
        assert_eq!(
            store.commit(create(&inc)).await.unwrap(),
            CommitOutcome::Committed
        );
    }
    let listed = |v: Vec<Incident>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(
        listed(store.resolved_since(at(5), 10).await.unwrap()),
        vec![ids[2], ids[1]],
        "resolved at or after `since`, the latest first"
    );
    assert_eq!(
        listed(store.resolved_since(at(10), 1).await.unwrap()),
        vec![ids[2]]
    );
    assert!(store.resolved_since(at(21), 10).await.unwrap().is_empty());
}

/// `days` after `t0` (before it when negative): the calendar of the prune properties.
fn day(days: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::days(days)
}

/// An incident created already resolved at `at` (the history prune works through).
fn resolved_incident(tag: &str, at: DateTime<Utc>) -> Incident {
    resolved_sample(fresh_fp(tag), at)
}

/// [`sample_incident`] of `fp`, opened and resolved at `at`.
pub fn resolved_sample(fp: Fingerprint, at: DateTime<Utc>) -> Incident {
    let mut inc = sample_incident(fp, at);
    inc.status = IncidentStatus::Resolved;
    inc.next_due = None;
    inc.resolved = Some((
        Actor {
            who: "contract".into(),
            origin: Origin::Api,
        },
        at,
    ));
    inc
}

async fn open_incidents_come_from_the_open_index(store: &dyn Store) {
    let open = sample_incident(fresh_fp("open-index"), t0());
    store.commit(create(&open)).await.unwrap();
    let mut acked = sample_incident(fresh_fp("open-index-acked"), t0());
    acked.status = IncidentStatus::Acknowledged;
    store.commit(create(&acked)).await.unwrap();
    let resolved = resolved_incident("open-index-resolved", t0());
    store.commit(create(&resolved)).await.unwrap();
    // Opened, then resolved by a later transition: it leaves the index.
    let closing = sample_incident(fresh_fp("open-index-closing"), t0());
    store.commit(create(&closing)).await.unwrap();
    let mut closed = resolved_incident("unused", t0());
    closed.id = closing.id;
    closed.fingerprint = closing.fingerprint.clone();
    closed.version = 2;
    store
        .commit(Transition {
            guard: Some(Guard::Version(closing.id, 1)),
            incident: Some(closed),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = store.open_incidents().await.unwrap();
    let ids: Vec<IncidentId> = listed.iter().map(|i| i.id).collect();
    assert!(ids.contains(&open.id) && ids.contains(&acked.id), "{ids:?}");
    assert!(!ids.contains(&resolved.id) && !ids.contains(&closing.id));
    assert!(listed.iter().all(|i| i.status.is_open()));
    assert_eq!(
        listed.len() as u64,
        store.stats().await.unwrap().open_incidents,
        "exactly the open index"
    );
}

async fn prune_deletes_resolved_incidents_past_their_retention(store: &dyn Store) {
    let cutoff = day(30);
    // Resolved before the cutoff, with a timeline, an outbox row and a provider reference.
    let old = resolved_incident("prune-old", day(0));
    let row = Delivery::new(
        old.id,
        NotifyKind::Resolved,
        "log",
        None,
        vec![],
        None,
        day(0),
    );
    let mut tx = create(&old);
    tx.deliveries = vec![row.clone()];
    store.commit(tx).await.unwrap();
    let retry = DeliveryFinish {
        update: DeliveryUpdate::Retry {
            attempt: 1,
            not_before: day(1),
        },
        entries: vec![entry(day(0), 1)],
        follow_ups: vec![],
        remember: Some("C1:1.0".into()),
    };
    let kept_row = retry.retry_row(&row).unwrap();
    store.finish_delivery(&row, retry).await.unwrap();
    assert_eq!(store.references(old.id).await.unwrap().len(), 1);
    // Resolved after the cutoff; open since long before it; resolved before it but reopened.
    let newer = resolved_incident("prune-newer", day(31));
    store.commit(create(&newer)).await.unwrap();
    let open = sample_incident(fresh_fp("prune-open"), day(0));
    store.commit(create(&open)).await.unwrap();
    let reopened = resolved_incident("prune-reopened", day(0));
    store.commit(create(&reopened)).await.unwrap();
    let mut again = reopened.clone();
    again.version = 2;
    again.status = IncidentStatus::Triggered;
    again.resolved = None;
    store
        .commit(Transition {
            guard: Some(Guard::Version(reopened.id, 1)),
            incident: Some(again),
            ..Default::default()
        })
        .await
        .unwrap();

    let pruned = store
        .prune(Prune {
            resolved_before: cutoff,
            seen_before: day(0),
            limit: 1000,
        })
        .await
        .unwrap();
    assert_eq!(
        pruned.incidents,
        vec![(old.id, old.fingerprint.clone())],
        "only the incident resolved before the cutoff"
    );
    assert!(store.incident(old.id).await.unwrap().is_none());
    assert!(
        store.timeline(old.id).await.unwrap().is_empty(),
        "its timeline went"
    );
    assert!(
        store.references(old.id).await.unwrap().is_empty(),
        "its refs went"
    );
    assert!(
        !store.still_pending(&kept_row).await.unwrap(),
        "its outbox row went"
    );
    assert_eq!(
        store
            .fingerprint(&old.fingerprint)
            .await
            .unwrap()
            .last_change,
        None,
        "its fingerprint's old last change went"
    );
    for kept in [&newer, &open, &reopened] {
        assert!(store.incident(kept.id).await.unwrap().is_some());
        assert!(!store.timeline(kept.id).await.unwrap().is_empty());
    }
    assert_eq!(
        store
            .fingerprint(&open.fingerprint)
            .await
            .unwrap()
            .open
            .map(|i| i.id),
        Some(open.id)
    );
}

/// Message-id expiry: a transport delivery id seen before `seen_before` is forgotten by `prune`,
/// and the same id then applies again; one seen after it is still a `Duplicate`.
async fn prune_forgets_delivery_ids_past_their_retention(store: &dyn Store) {
    let old_id = format!("sns-old-{}", ulid::Ulid::new());
    let new_id = format!("sns-new-{}", ulid::Ulid::new());
    let seen = |did: &str, at: DateTime<Utc>| Transition {
        timeline_for: None,
        delivery_id: Some(did.to_string()),
        decided_at: Some(at),
        ..Default::default()
    };
    assert_eq!(
        store.commit(seen(&old_id, day(0))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store.commit(seen(&new_id, day(8))).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store.commit(seen(&old_id, day(8))).await.unwrap(),
        CommitOutcome::Duplicate,
        "until it is pruned, a MessageId deduplicates"
    );
    let pruned = store
        .prune(Prune {
            resolved_before: day(0),
            seen_before: day(7),
            limit: 1000,
        })
        .await
        .unwrap();
    assert!(pruned.incidents.is_empty());
    assert_eq!(pruned.delivery_ids, 1);
    assert_eq!(
        store.commit(seen(&old_id, day(9))).await.unwrap(),
        CommitOutcome::Committed,
        "a forgotten MessageId is accepted again"
    );
    assert_eq!(
        store.commit(seen(&new_id, day(9))).await.unwrap(),
        CommitOutcome::Duplicate,
        "a newer MessageId still deduplicates"
    );
}

async fn prune_is_bounded_per_call(store: &dyn Store) {
    let old: Vec<Incident> = (0..3)
        .map(|n| resolved_incident("prune-bound", day(n - 100)))
        .collect();
    for inc in &old {
        store.commit(create(inc)).await.unwrap();
    }
    let p = Prune {
        resolved_before: day(-50),
        seen_before: day(0),
        limit: 2,
    };
    let first = store.prune(p).await.unwrap();
    assert_eq!(
        first
            .incidents
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![old[0].id, old[1].id],
        "the oldest first, at most the limit"
    );
    assert!(first.full(2));
    let second = store.prune(p).await.unwrap();
    assert_eq!(second.incidents.len(), 1);
    assert!(!second.full(2));
    assert!(store.prune(p).await.unwrap().incidents.is_empty());
}

async fn records_are_kept_by_kind_and_id(store: &dyn Store) {
    let kind = format!("contract-{}", ulid::Ulid::new());
    store.put_record(&kind, "a", b"1".to_vec()).await.unwrap();
    store.put_record(&kind, "b", b"2".to_vec()).await.unwrap();
    store.put_record(&kind, "a", b"3".to_vec()).await.unwrap();
    store
        .put_record(&format!("{kind}x"), "c", b"4".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.records(&kind).await.unwrap(),
        vec![
            ("a".to_string(), b"3".to_vec()),
            ("b".to_string(), b"2".to_vec())
        ]
    );
    assert_eq!(
        store.get_record(&kind, "a").await.unwrap(),
        Some(b"3".to_vec())
    );
    assert_eq!(store.get_record(&kind, "zz").await.unwrap(), None);
    assert!(store.delete_record(&kind, "a").await.unwrap());
    assert!(
        !store.delete_record(&kind, "a").await.unwrap(),
        "nothing left to delete"
    );
    assert_eq!(store.records(&kind).await.unwrap().len(), 1);
}

/// A record carried by a transition is written with it, atomically: present after a commit,
/// absent after a conflict or a duplicate.
async fn records_ride_a_transition_only_when_it_commits(store: &dyn Store) {
    let kind = format!("contract-{}", ulid::Ulid::new());
    let record = |id: &str, value: &[u8]| RecordWrite {
        kind: kind.clone(),
        id: id.into(),
        value: value.to_vec(),
    };
    let inc = sample_incident(fresh_fp("record"), t0());
    let mut tx = create(&inc);
    tx.delivery_id = Some(format!("contract-{}", ulid::Ulid::new()));
    tx.records = vec![record("a", b"1"), record("b", b"2")];
    assert_eq!(
        store.commit(tx.clone()).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store.records(&kind).await.unwrap(),
        vec![
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec())
        ]
    );

    // The same delivery id again: a duplicate writes nothing, its records included.
    tx.records = vec![record("a", b"dup")];
    assert_eq!(store.commit(tx).await.unwrap(), CommitOutcome::Duplicate);
    // A stale version: a conflict writes nothing either.
    let mut stale = inc.clone();
    stale.version = 6;
    let conflict = Transition {
        guard: Some(Guard::Version(inc.id, 5)),
        incident: Some(stale),
        records: vec![record("a", b"stale"), record("c", b"3")],
        ..Default::default()
    };
    assert_eq!(
        store.commit(conflict).await.unwrap(),
        CommitOutcome::Conflict
    );
    assert_eq!(
        store.get_record(&kind, "a").await.unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(store.get_record(&kind, "c").await.unwrap(), None);

    // A committed change replaces the record, as `put_record` does.
    let mut next = inc.clone();
    next.version = 2;
    let replace = Transition {
        guard: Some(Guard::Version(inc.id, 1)),
        incident: Some(next),
        records: vec![record("a", b"4")],
        ..Default::default()
    };
    assert_eq!(
        store.commit(replace).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store.get_record(&kind, "a").await.unwrap(),
        Some(b"4".to_vec())
    );
}

async fn create_and_read_back(store: &dyn Store) {
    let inc = sample_incident(fresh_fp("create"), t0());
    assert_eq!(
        store.commit(create(&inc)).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(store.incident(inc.id).await.unwrap().as_ref(), Some(&inc));
    let st = store.fingerprint(&inc.fingerprint).await.unwrap();
    assert_eq!(st.open.map(|i| i.id), Some(inc.id));
    assert_eq!(st.last_change, Some(inc.last_change));
    assert_eq!(store.timeline(inc.id).await.unwrap(), vec![entry(t0(), 0)]);
    let listed = store
        .incidents(Some(IncidentStatus::Triggered), 1000)
        .await
        .unwrap();
    assert!(listed.iter().any(|i| i.id == inc.id));
    assert!(
        store
            .incidents(Some(IncidentStatus::Resolved), 1000)
            .await
            .unwrap()
            .iter()
            .all(|i| i.id != inc.id)
    );
    assert!(
        store
            .incident(IncidentId::new(t0()))
            .await
            .unwrap()
            .is_none()
    );
}

async fn one_open_incident_per_fingerprint(store: &dyn Store) {
    let fp = fresh_fp("dedup");
    let a = sample_incident(fp.clone(), t0());
    let b = sample_incident(fp.clone(), t0());
    let (ra, rb) = futures::join!(store.commit(create(&a)), store.commit(create(&b)));
    let outcomes = [ra.unwrap(), rb.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == CommitOutcome::Committed)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == CommitOutcome::Conflict)
            .count(),
        1,
        "{outcomes:?}"
    );
}

async fn version_guard_lets_exactly_one_writer_win(store: &dyn Store) {
    let inc = sample_incident(fresh_fp("race"), t0());
    store.commit(create(&inc)).await.unwrap();
    let step = |n: u32| {
        let mut next = inc.clone();
        next.version = 2;
        next.step = n;
        Transition {
            guard: Some(Guard::Version(inc.id, 1)),
            incident: Some(next),
            timeline: vec![entry(t0(), n)],
            deliveries: vec![Delivery::new(
                inc.id,
                NotifyKind::Escalate,
                "log",
                None,
                vec![],
                Some((0, n)),
                t0(),
            )],
            ..Default::default()
        }
    };
    let results = futures::future::join_all((1..=8).map(|n| store.commit(step(n)))).await;
    let won = results
        .iter()
        .filter(|r| matches!(r, Ok(CommitOutcome::Committed)))
        .count();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Ok(CommitOutcome::Conflict)))
        .count();
    assert_eq!((won, lost), (1, 7), "exactly one racing transition commits");
    let stored = store.incident(inc.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    // Only the winner's timeline entry and delivery were written.
    assert_eq!(store.timeline(inc.id).await.unwrap().len(), 2);
    let rows = store.deliveries_due(t0(), 10_000).await.unwrap();
    assert_eq!(rows.iter().filter(|d| d.incident == inc.id).count(), 1);
}

async fn repeated_delivery_id_is_a_no_op(store: &dyn Store) {
    let did = format!("sns-{}", ulid::Ulid::new());
    let a = sample_incident(fresh_fp("dup"), t0());
    let mut tx = create(&a);
    tx.delivery_id = Some(did.clone());
    assert_eq!(store.commit(tx).await.unwrap(), CommitOutcome::Committed);
    let b = sample_incident(fresh_fp("dup2"), t0());
    let mut tx = create(&b);
    tx.delivery_id = Some(did);
    assert_eq!(store.commit(tx).await.unwrap(), CommitOutcome::Duplicate);
    assert!(
        store.incident(b.id).await.unwrap().is_none(),
        "nothing of a duplicate applies"
    );
}

async fn due_index_follows_next_due(store: &dyn Store) {
    let mut inc = sample_incident(fresh_fp("due"), t0());
    store.commit(create(&inc)).await.unwrap();
    let due_at = inc.next_due.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(due_at));
    assert!(
        store
            .due(due_at - chrono::Duration::seconds(1), 100)
            .await
            .unwrap()
            .iter()
            .all(|(_, id)| *id != inc.id)
    );
    assert!(
        store
            .due(due_at, 100)
            .await
            .unwrap()
            .contains(&(due_at, inc.id))
    );
    let later = due_at + chrono::Duration::minutes(10);
    let mut next = inc.clone();
    next.version = 2;
    next.next_due = Some(later);
    store
        .commit(Transition {
            guard: Some(Guard::Version(inc.id, 1)),
            incident: Some(next.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let due = store.due(later, 10_000).await.unwrap();
    assert!(!due.contains(&(due_at, inc.id)), "the old due row is gone");
    assert!(due.contains(&(later, inc.id)));
    inc = next;
    let mut done = inc.clone();
    done.version = 3;
    done.status = IncidentStatus::Acknowledged;
    done.next_due = None;
    store
        .commit(Transition {
            guard: Some(Guard::Version(inc.id, 2)),
            incident: Some(done),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .due(later, 10_000)
            .await
            .unwrap()
            .iter()
            .all(|(_, id)| *id != inc.id),
        "acknowledged: no timer"
    );
}

async fn resolve_frees_the_fingerprint(store: &dyn Store) {
    let fp = fresh_fp("resolve");
    let inc = sample_incident(fp.clone(), t0());
    store.commit(create(&inc)).await.unwrap();
    let before = store.stats().await.unwrap();
    let mut resolved = inc.clone();
    resolved.version = 2;
    resolved.status = IncidentStatus::Resolved;
    resolved.next_due = None;
    store
        .commit(Transition {
            guard: Some(Guard::Version(inc.id, 1)),
            incident: Some(resolved),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = store.stats().await.unwrap();
    assert_eq!(after.open_incidents + 1, before.open_incidents);
    assert!(store.fingerprint(&fp).await.unwrap().open.is_none());
    let again = sample_incident(fp.clone(), t0());
    assert_eq!(
        store.commit(create(&again)).await.unwrap(),
        CommitOutcome::Committed,
        "a new incident may open"
    );
}

async fn outbox_rows_retry_and_finish(store: &dyn Store) {
    let inc = sample_incident(fresh_fp("outbox"), t0());
    let d = trigger_row(&inc, Some("ana"), t0());
    let mut tx = create(&inc);
    tx.deliveries = vec![d.clone()];
    store.commit(tx).await.unwrap();
    assert!(store.next_delivery().await.unwrap().unwrap() <= t0());
    let due = store.deliveries_due(t0(), 10_000).await.unwrap();
    let row = due.into_iter().find(|x| x.id == d.id).expect("row is due");
    let retry_at = t0() + chrono::Duration::seconds(30);
    let attempt = |outcome| TimelineEntry {
        at: t0(),
        event: TimelineEvent::Delivery {
            delivery: d.id.to_string(),
            channel: "log".into(),
            kind: "trigger".into(),
            target: Some("ana".into()),
            attempt: 1,
            outcome,
            detail: String::new(),
            reference: None,
        },
    };
    store
        .finish_delivery(
            &row,
            DeliveryFinish::simple(
                DeliveryUpdate::Retry {
                    attempt: 1,
                    not_before: retry_at,
                },
                attempt(DeliveryOutcome::Retrying),
            ),
        )
        .await
        .unwrap();
    assert!(
        store
            .deliveries_due(t0(), 10_000)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != d.id),
        "not due before its retry time"
    );
    let row = store
        .deliveries_due(retry_at, 10_000)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.id == d.id)
        .expect("due again");
    assert_eq!((row.attempt, row.not_before), (1, retry_at));
    // Handed out for its retry, the row is still listed in the outbox (read-only: listing
    // leases nothing, so it stays due).
    let listed = |rows: Vec<Delivery>| {
        rows.into_iter()
            .filter(|x| x.incident == inc.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(store.outbox(10_000).await.unwrap()),
        vec![row.clone()]
    );
    assert_eq!(
        store.outbox(0).await.unwrap(),
        vec![],
        "bounded by its limit"
    );
    let follow_up = Delivery::new(
        inc.id,
        NotifyKind::Trigger,
        "sms",
        Some("ana".into()),
        vec![],
        Some((0, 0)),
        retry_at,
    );
    let finish = DeliveryFinish {
        update: DeliveryUpdate::Done,
        entries: vec![attempt(DeliveryOutcome::Sent)],
        follow_ups: vec![follow_up.clone()],
        remember: Some("C1:1763604942.114259".into()),
    };
    store.finish_delivery(&row, finish.clone()).await.unwrap();
    // Replaying the same finish (a retried write) adds no second follow-up and keeps the first reference.
    let mut again = finish;
    again.remember = Some("C1:other".into());
    again.entries.clear();
    store.finish_delivery(&row, again).await.unwrap();
    let follow_ups: Vec<_> = store
        .deliveries_due(retry_at, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| x.incident == inc.id)
        .collect();
    assert_eq!(follow_ups, vec![follow_up]);
    assert_eq!(
        store
            .references(inc.id)
            .await
            .unwrap()
            .get("log")
            .map(String::as_str),
        Some("C1:1763604942.114259")
    );
    for f in follow_ups {
        store
            .finish_delivery(
                &f,
                DeliveryFinish::simple(DeliveryUpdate::Done, attempt(DeliveryOutcome::Sent)),
            )
            .await
            .unwrap();
    }
    assert!(
        store
            .deliveries_due(retry_at, 10_000)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != d.id)
    );
    assert_eq!(
        listed(store.outbox(10_000).await.unwrap()),
        vec![],
        "finished rows leave it"
    );
    let timeline = store.timeline(inc.id).await.unwrap();
    assert_eq!(timeline.len(), 4, "opened + two attempts + the follow-up's");
    assert_eq!(
        timeline[2],
        attempt(DeliveryOutcome::Sent),
        "timeline keeps order"
    );
}

/// What stops a double page: `still_pending` holds for a row at exactly the attempt it was handed
/// out at; not once that attempt is finished (retried or done), not at another attempt, and not
/// for a row the outbox never had.
async fn still_pending_holds_only_the_attempt_handed_out(store: &dyn Store) {
    let inc = sample_incident(fresh_fp("pending"), t0());
    let d = trigger_row(&inc, Some("ana"), t0());
    let mut tx = create(&inc);
    tx.deliveries = vec![d.clone()];
    store.commit(tx).await.unwrap();
    let handed = store.deliveries_due(t0(), 10).await.unwrap();
    assert_eq!(handed, vec![d.clone()]);
    let row = handed[0].clone();
    assert!(
        store.still_pending(&row).await.unwrap(),
        "handed out at attempt 0: pending at 0"
    );
    let mut other = row.clone();
    other.attempt = 1;
    assert!(
        !store.still_pending(&other).await.unwrap(),
        "not pending at another attempt"
    );
    let never = trigger_row(&inc, None, t0());
    assert!(
        !store.still_pending(&never).await.unwrap(),
        "not a row the outbox never had"
    );
    let retry_at = t0() + chrono::Duration::seconds(30);
    let retry = DeliveryFinish::simple(
        DeliveryUpdate::Retry {
            attempt: 1,
            not_before: retry_at,
        },
        entry(t0(), 1),
    );
    let next = retry.retry_row(&row).unwrap();
    store.finish_delivery(&row, retry).await.unwrap();
    assert!(
        !store.still_pending(&row).await.unwrap(),
        "attempt 0 is finished: no longer pending"
    );
    let handed = store.deliveries_due(retry_at, 10).await.unwrap();
    assert_eq!(handed, vec![next.clone()]);
    assert!(
        store.still_pending(&handed[0]).await.unwrap(),
        "handed out again at attempt 1: pending at 1"
    );
    store
        .finish_delivery(
            &handed[0],
            DeliveryFinish::simple(DeliveryUpdate::Done, entry(retry_at, 2)),
        )
        .await
        .unwrap();
    for gone in [&row, &next] {
        assert!(
            !store.still_pending(gone).await.unwrap(),
            "done: pending at no attempt"
        );
    }
}

async fn last_change_is_kept_without_an_incident(store: &dyn Store) {
    let fp = fresh_fp("ok-first");
    let at = t0() + chrono::Duration::minutes(3);
    let tx = Transition {
        guard: Some(Guard::NoOpenIncident(fp.clone())),
        last_change: Some((fp.clone(), at)),
        ..Default::default()
    };
    assert_eq!(store.commit(tx).await.unwrap(), CommitOutcome::Committed);
    // An older change never moves it back.
    let tx = Transition {
        last_change: Some((fp.clone(), t0())),
        ..Default::default()
    };
    store.commit(tx).await.unwrap();
    let st = store.fingerprint(&fp).await.unwrap();
    assert!(st.open.is_none());
    assert_eq!(st.last_change, Some(at));
}

/// A row handed out and not finished (the attempt's write failed) is handed out again; once its
/// attempt is recorded, replaying that record neither duplicates nor revives the row. Leaves the
/// outbox empty.
async fn unfinished_rows_stay_due_and_a_stale_finish_changes_nothing(store: &dyn Store) {
    let inc = sample_incident(fresh_fp("stale-finish"), t0());
    let d = trigger_row(&inc, None, t0());
    let mut tx = create(&inc);
    tx.deliveries = vec![d.clone()];
    store.commit(tx).await.unwrap();
    for _ in 0..2 {
        let due = store.deliveries_due(t0(), 10_000).await.unwrap();
        assert_eq!(due.iter().filter(|x| x.id == d.id).count(), 1);
    }
    let retry_at = t0() + chrono::Duration::hours(1);
    let finish = DeliveryFinish::simple(
        DeliveryUpdate::Retry {
            attempt: 1,
            not_before: retry_at,
        },
        entry(t0(), 7),
    );
    store.finish_delivery(&d, finish.clone()).await.unwrap();
    store.finish_delivery(&d, finish).await.unwrap();
    assert_eq!(
        store.stats().await.unwrap().outbox,
        1,
        "one row, rescheduled"
    );
    assert_eq!(store.next_delivery().await.unwrap(), Some(retry_at));
    assert!(
        store
            .deliveries_due(retry_at - chrono::Duration::milliseconds(1), 10_000)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != d.id)
    );
    let due = store.deliveries_due(retry_at, 10_000).await.unwrap();
    let rows: Vec<_> = due.iter().filter(|x| x.id == d.id).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].attempt, rows[0].not_before), (1, retry_at));
    let row = rows[0].clone();
    store
        .finish_delivery(
            &row,
            DeliveryFinish::simple(DeliveryUpdate::Done, entry(t0(), 8)),
        )
        .await
        .unwrap();
    // The first attempt's record arrives once more, late: the row stays finished.
    store
        .finish_delivery(
            &d,
            DeliveryFinish::simple(
                DeliveryUpdate::Retry {
                    attempt: 1,
                    not_before: retry_at,
                },
                entry(t0(), 9),
            ),
        )
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().outbox, 0);
    assert_eq!(store.next_delivery().await.unwrap(), None);
    assert!(
        store
            .deliveries_due(retry_at, 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    // Every record is on the timeline, replays included: it is the audit trail.
    assert_eq!(store.timeline(inc.id).await.unwrap().len(), 5);
}

async fn incidents_are_listed_newest_first(store: &dyn Store) {
    let older = sample_incident(fresh_fp("list-old"), t0());
    let newer = sample_incident(fresh_fp("list-new"), t0() + chrono::Duration::seconds(1));
    store.commit(create(&older)).await.unwrap();
    store.commit(create(&newer)).await.unwrap();
    let ids: Vec<IncidentId> = store
        .incidents(Some(IncidentStatus::Triggered), usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let pos = |id| ids.iter().position(|x| *x == id).unwrap();
    assert!(pos(newer.id) < pos(older.id), "newest first");
    let first = store.incidents(None, 1).await.unwrap();
    assert_eq!(
        first.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![newer.id]
    );
    let mut acked = older.clone();
    acked.version = 2;
    acked.status = IncidentStatus::Acknowledged;
    acked.next_due = None;
    store
        .commit(Transition {
            guard: Some(Guard::Version(older.id, 1)),
            incident: Some(acked),
            ..Default::default()
        })
        .await
        .unwrap();
    let triggered = store
        .incidents(Some(IncidentStatus::Triggered), usize::MAX)
        .await
        .unwrap();
    assert!(triggered.iter().all(|i| i.id != older.id), "moved out");
    let acknowledged = store
        .incidents(Some(IncidentStatus::Acknowledged), usize::MAX)
        .await
        .unwrap();
    assert!(acknowledged.iter().any(|i| i.id == older.id), "moved in");
    assert!(store.incidents(None, 0).await.unwrap().is_empty());
}

async fn timeline_for_appends_without_an_incident(store: &dyn Store) {
    let inc = sample_incident(fresh_fp("timeline-for"), t0());
    store.commit(create(&inc)).await.unwrap();
    store
        .commit(Transition {
            timeline: vec![entry(t0(), 1), entry(t0(), 2)],
            timeline_for: Some(inc.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        store.timeline(inc.id).await.unwrap(),
        vec![entry(t0(), 0), entry(t0(), 1), entry(t0(), 2)]
    );
    assert_eq!(
        store.incident(inc.id).await.unwrap().map(|i| i.version),
        Some(1),
        "the incident itself is untouched"
    );
}

//! Provider rate limits vigil keeps itself (Slack: about one post a second per channel;
//! PagerDuty: about 120 events a minute per routing key), so that a burst of alerts is spread out
//! instead of refused.
//!
//! Pacing delays a send; it is never a failed attempt. The worker asks [`Pacer::admit`] for every
//! due delivery, in the outbox's order (`not_before`, then the delivery id, which follows creation
//! order), before it starts the send. The answer is either "send now" or "hold until T": the worker
//! then puts the row back in the outbox at T with its attempt count unchanged and no timeline entry.
//!
//! Per pacing key there is one lane: a FIFO of the held deliveries in the order they were first
//! seen, and a token bucket (GCRA: one send per `interval`, bursts of up to `burst`) over the sends
//! it let through. Only the front of the queue may go, and only when the bucket allows; every
//! other held delivery is given its projected turn (`position × interval` after the front's), so
//! posts to one channel go out in the order their deliveries were created, one per interval, even
//! after the clock jumps or the worker stalls (then the lane is re-planned from now, never sent in
//! a burst; a held delivery that finds the lane running late is put back once more, which is a
//! write, never an attempt). A front that never comes back (taken by another replica, or removed) is dropped after
//! it was missed [`MISSES_BEFORE_DROP`] times, so it cannot block its lane.
//!
//! Time is the injected clock's (`now` is passed in), never `Instant::now`. State is in memory
//! and per process: after a restart the rows are still in the outbox in their order and are
//! re-planned; several replicas on one Redis each pace their own sends. The map holds one lane per
//! pacing key (configured Slack channels and PagerDuty routing keys) and one queue entry per held
//! delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A provider limit a notifier asks the worker to keep: at most `burst` sends at once on `key`,
/// then one per `interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    /// What the provider counts per (a Slack channel, a PagerDuty routing key). Never a secret
    /// in clear: keys are only compared, never logged, but a routing key is hashed anyway.
    pub key: String,
    pub interval: Duration,
    pub burst: u32,
}

/// How many admissions of later deliveries may find the front of a lane overdue before it is
/// dropped from the queue (it will be planned again, at the back, if it ever comes back).
pub const MISSES_BEFORE_DROP: u32 = 3;

#[derive(Debug, Default)]
pub struct Pacer {
    // A std Mutex: held for one admission (no await inside), never across an await.
    lanes: Mutex<HashMap<String, Lane>>,
}

#[derive(Debug)]
struct Lane {
    /// GCRA's theoretical arrival time of the next send.
    tat: DateTime<Utc>,
    /// Held deliveries, first seen first, with the time each was told to come back.
    queue: VecDeque<(ulid::Ulid, DateTime<Utc>)>,
    /// Admissions that found the front overdue since the front last changed.
    misses: u32,
}

impl Pacer {
    /// `None`: send delivery `id` now (it is counted against the lane). `Some(t)`: hold it and
    /// ask again at `t` (always later than `now`).
    pub fn admit(&self, pace: &Pace, id: ulid::Ulid, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let step = chrono::Duration::from_std(pace.interval)
            .unwrap_or(chrono::Duration::MAX)
            .max(chrono::Duration::milliseconds(1));
        // A send up to a tenth of an interval early is on time: worker latency must not make
        // every held delivery come back and be re-planned.
        let tolerance = step / 10;
        let tau = step * (pace.burst.max(1) as i32 - 1);
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(pace.key.clone()).or_insert_with(|| Lane {
            tat: now,
            queue: VecDeque::new(),
            misses: 0,
        });
        let mut pos = lane.queue.iter().position(|(held, _)| *held == id);
        if pos != Some(0)
            && let Some((_, expected)) = lane.queue.front()
            && now > *expected + step
        {
            lane.misses += 1;
            if lane.misses >= MISSES_BEFORE_DROP {
                lane.queue.pop_front();
                lane.misses = 0;
                pos = pos.map(|p| p - 1);
            }
        }
        let pos = pos.unwrap_or_else(|| {
            lane.queue.push_back((id, now));
            lane.queue.len() - 1
        });
        let conforms_at = lane.tat - tau;
        if pos == 0 && conforms_at <= now + tolerance {
            lane.queue.pop_front();
            lane.misses = 0;
            lane.tat = lane.tat.max(now) + step;
            return None;
        }
        let slot = conforms_at.max(now) + step * pos as i32;
        // Never "hold until now": the row would be due again at once.
        let slot = slot.max(now + tolerance.max(chrono::Duration::milliseconds(1)));
        lane.queue[pos].1 = slot;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::milliseconds(1_764_000_000_000 + ms)
    }

    fn slack() -> Pace {
        Pace {
            key: "slack:C1".into(),
            interval: Duration::from_secs(1),
            burst: 1,
        }
    }

    fn ids(n: usize) -> Vec<ulid::Ulid> {
        (0..n as u64)
            .map(|i| ulid::Ulid::from_parts(i, 0))
            .collect()
    }

    /// Drives a lane the way the worker does: it wakes when the earliest hold ends, `latency(n)`
    /// late on its n-th wake, and admits every delivery whose time has come in outbox order (hold
    /// time, then id). Returns the order they were sent in, with the time, and the holds.
    fn run(
        pace: &Pace,
        ids: &[ulid::Ulid],
        latency: impl Fn(usize) -> i64,
    ) -> (Vec<(ulid::Ulid, i64)>, usize) {
        let pacer = Pacer::default();
        let mut due: Vec<(i64, ulid::Ulid)> = ids.iter().map(|id| (0, *id)).collect();
        let mut sent = Vec::new();
        let mut holds = 0;
        let mut now = 0;
        for wake in 1.. {
            due.sort();
            let mut later = Vec::new();
            for (at, id) in due.drain(..) {
                if at > now {
                    later.push((at, id));
                    continue;
                }
                match pacer.admit(pace, id, t(now)) {
                    None => sent.push((id, now)),
                    Some(until) => {
                        assert!(until > t(now));
                        holds += 1;
                        later.push(((until - t(0)).num_milliseconds(), id));
                    }
                }
            }
            due = later;
            let Some(next) = due.iter().map(|(at, _)| *at).min() else {
                break;
            };
            now = next + latency(wake);
            assert!(wake < 100_000, "the lane never drained");
        }
        (sent, holds)
    }

    #[test]
    fn a_burst_goes_out_in_order_one_per_interval_each_held_once() {
        let ids = ids(200);
        let (sent, holds) = run(&slack(), &ids, |_| 0);
        let order: Vec<_> = sent.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, ids);
        for (i, (_, at)) in sent.iter().enumerate() {
            assert_eq!(*at, i as i64 * 1000);
        }
        assert_eq!(holds, 199);
    }

    #[test]
    fn after_a_clock_jump_the_lane_is_replanned_not_sent_at_once() {
        let pacer = Pacer::default();
        let pace = slack();
        let [a, b, c] = ids(3).try_into().unwrap();
        assert_eq!(pacer.admit(&pace, a, t(0)), None);
        assert_eq!(pacer.admit(&pace, b, t(0)), Some(t(1000)));
        assert_eq!(pacer.admit(&pace, c, t(0)), Some(t(2000)));
        // The clock jumps a minute: b goes, c gets the next second, not the same instant.
        assert_eq!(pacer.admit(&pace, b, t(60_000)), None);
        assert_eq!(pacer.admit(&pace, c, t(60_000)), Some(t(61_000)));
        assert_eq!(pacer.admit(&pace, c, t(61_000)), None);
    }

    #[test]
    fn keys_are_separate_and_a_bucket_allows_its_burst() {
        let pacer = Pacer::default();
        let pd = Pace {
            key: "pagerduty:1".into(),
            interval: Duration::from_millis(600),
            burst: 10,
        };
        let ids = ids(12);
        for id in &ids[..10] {
            assert_eq!(pacer.admit(&pd, *id, t(0)), None);
        }
        assert_eq!(pacer.admit(&pd, ids[10], t(0)), Some(t(600)));
        assert_eq!(pacer.admit(&pd, ids[11], t(0)), Some(t(1200)));
        // Another key has its own budget.
        let other = Pace {
            key: "pagerduty:2".into(),
            ..pd.clone()
        };
        assert_eq!(pacer.admit(&other, ids[11], t(0)), None);
    }

    #[test]
    fn a_front_that_never_comes_back_stops_blocking_its_lane() {
        let pacer = Pacer::default();
        let pace = slack();
        let ids = ids(3);
        assert_eq!(pacer.admit(&pace, ids[0], t(0)), None);
        assert_eq!(pacer.admit(&pace, ids[1], t(0)), Some(t(1000)));
        assert_eq!(pacer.admit(&pace, ids[2], t(0)), Some(t(2000)));
        // ids[1] is gone (another replica sent it); ids[2] keeps coming back.
        let mut now = 2000;
        let mut holds = 0;
        while pacer.admit(&pace, ids[2], t(now)).is_some() {
            holds += 1;
            now += 1000;
            assert!(holds < 10, "still blocked at {now}");
        }
    }

    #[test]
    fn a_late_worker_is_within_tolerance_and_does_not_replan() {
        // The worker wakes up to 90 ms after each hold ends: still in order, each held once.
        let ids = ids(50);
        let (sent, holds) = run(&slack(), &ids, |n| (n as i64 * 37) % 91);
        let order: Vec<_> = sent.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, ids);
        for pair in sent.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= 900, "{pair:?}");
        }
        assert_eq!(holds, 49);
    }
}

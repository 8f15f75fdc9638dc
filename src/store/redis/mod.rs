//! The Redis store (`--redis URL`): the same `Store` contract as `embedded`, for several vigil
//! replicas sharing one Redis. Replicas coordinate only through Redis: every write is one Lua
//! script, so the version guard, the indexes, the timeline and the outbox change together or not
//! at all, and two replicas racing the same step cannot both commit it.
//!
//! # Where things are
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | `RedisStore`: connecting (`connect_with`), the layout check and the consumer group at start |
//! | `connection.rs` | `RedisOptions`, the URL forms (one server, `redis+cluster://`), `Connection::run`: every call bounded by the timeout, reconnects after repeated timeouts |
//! | `keys.rs` | the key layout: every key name (`Keys`) with the table of what each holds, the layout version |
//! | `scripts.rs`, `lua/*.lua` | the Lua scripts, one file each with its `KEYS`/`ARGV` at its top |
//! | `store.rs` | `impl Store for RedisStore`, and how values are encoded in Redis |
//! | `testing.rs` | (tests only) the test Redis and cluster `scripts/test` starts, fresh prefixes, replicas |
//!
//! # The outbox
//!
//! Every new row — from `commit`, a retry, or a follow-up — goes first to `outbox:delayed`. The
//! `Transition` carries no clock, and the store must not consult its own (tests and replicas run on
//! an injected one), so only `deliveries_due(now)` decides that a row is due: it promotes rows
//! with `not_before ≤ now` into the stream (`ZRANGEBYSCORE` → `XADD` → `ZREM`, one script), and in
//! the same script hands this replica its share with the consumer group:
//! 1. its own pending entries again (`XREADGROUP … 0`): a row stays due to the replica holding it
//!    until it is finished, as in the embedded store, and re-reading resets the entry's idle time,
//!    so a live replica's polling (at least once a second) renews its lease;
//! 2. entries idle longer than the lease (`XAUTOCLAIM`): a dead replica's rows move to a live one;
//! 3. new entries (`XREADGROUP … >`).
//!
//! The stream entry id is not kept in process: `outbox:sid` maps a delivery id to its entry, so
//! any replica (or this one after a restart) can finish any delivery. `finish_delivery` acts on the
//! row only if `outbox:tok` still holds the attempt the caller was given; a replayed or stale
//! finish (a second replica that reclaimed the row and sent it too) only appends its timeline
//! entries and the first-wins reference, exactly as the embedded store does.
//!
//! # Guarantees
//!
//! - A version-guarded transition commits at most once across all replicas (the check and the
//!   write are one script). A transport delivery id is applied at most once until it is
//!   pruned (`prune`, by the caller's clock) or its key expires (`RedisOptions::seen_ttl`).
//! - A delivery is sent at least once while Redis keeps its data; it is sent more than once only
//!   when a replica stops polling for longer than the lease while its send is in flight, or dies
//!   between sending and recording the attempt.
//! - Durability is Redis's: with AOF `appendfsync everysec` a crash of Redis loses about the
//!   last second of commits (DESIGN.md §7). `Committed` means applied on the primary.
//! - When Redis is unreachable every call fails with `StoreError::Unavailable` within

mod connection;
mod keys;
mod scripts;
mod store;
#[cfg(test)]
pub(crate) mod testing;

use std::time::Duration;

use ::redis::RedisError;

pub use self::connection::{CLUSTER_SCHEME, RedisOptions, SEEN_TTL, default_consumer};
use self::connection::{Connection, unavailable};
use self::keys::{GROUP, Keys, SCHEMA_VERSION};
use self::scripts::Scripts;
use crate::store::StoreError;

/// Consumers with nothing pending and idle this long are removed from the group at connect (each
/// replica start adds one).
const STALE_CONSUMER: Duration = Duration::from_secs(24 * 3600);

pub struct RedisStore {
    redis: Connection,
    keys: Keys,
    options: RedisOptions,
    scripts: Scripts,
}

impl RedisStore {
    /// Connects with default options (lease 60 s, calls bounded by 2 s, a fresh consumer name).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, prefix, RedisOptions::default()).await
    }

    /// Connects, checks the layout version and makes sure the consumer group exists. Fails with
    /// `Unavailable` when Redis cannot be reached within `options.timeout`.
    ///
    /// `url` is `redis://[user:password@]host:port[/db]` for one server, or
    /// `redis+cluster://[user:password@]host:port[,host:port…]` for a Redis Cluster: the nodes are
    /// seeds (one reachable node is enough; the client discovers the rest), and the credentials
    /// apply to every node.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        options: RedisOptions,
    ) -> Result<Self, StoreError> {
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(unavailable(format!(
                "redis prefix {prefix:?} must be non-empty and contain no braces"
            )));
        }
        let store = Self {
            redis: Connection::open(url, options.timeout)?,
            keys: Keys::new(prefix),
            options,
            scripts: Scripts::new(),
        };
        store.init().await?;
        Ok(store)
    }

    /// This replica's consumer name.
    pub fn consumer(&self) -> &str {
        &self.options.consumer
    }

    /// Whether the store talks to a Redis Cluster (`redis+cluster://`).
    pub fn is_cluster(&self) -> bool {
        self.redis.is_cluster()
    }

    async fn init(&self) -> Result<(), StoreError> {
        let meta = self.keys.k("meta");
        let stream = self.keys.k("outbox:stream");
        self.redis
            .run(|mut c| async move {
                let _: bool = ::redis::cmd("HSETNX")
                    .arg(&meta)
                    .arg("schema")
                    .arg(SCHEMA_VERSION)
                    .query_async(&mut c)
                    .await?;
                let found: Option<u64> = ::redis::cmd("HGET")
                    .arg(&meta)
                    .arg("schema")
                    .query_async(&mut c)
                    .await?;
                let created: Result<(), RedisError> = ::redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut c)
                    .await;
                if let Err(e) = created
                    && e.code() != Some("BUSYGROUP")
                {
                    return Err(e);
                }
                Ok(found)
            })
            .await
            .and_then(|found| match found {
                Some(SCHEMA_VERSION) => Ok(()),
                other => Err(StoreError::Corrupt(format!(
                    "redis store schema version {other:?}, this vigil reads {SCHEMA_VERSION}"
                ))),
            })?;
        let stream = self.keys.k("outbox:stream");
        let mut inv = self.scripts.prune_consumers.prepare_invoke();
        inv.key(&stream)
            .arg(GROUP)
            .arg(STALE_CONSUMER.as_millis() as u64);
        let pruned: i64 = self.invoke(inv).await?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                "Removed idle outbox consumers left by earlier replicas."
            );
        }
        Ok(())
    }
}

//! The Redis store (`--redis URL`): the same `Store` contract as `embedded`, for several vigil
//! replicas sharing one Redis. Replicas coordinate only through Redis: every write is one Lua
//! script, so the version guard, the indexes, the timeline and the outbox change together or not
//! at all, and two replicas racing the same step cannot both commit it.
//!
//! # Key layout
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
//!   `RedisOptions::timeout`; the connection manager reconnects by itself once Redis is back.
//!
//! # Redis Cluster
//!
//! A URL `redis+cluster://[user:password@]host:port[,host:port…]` names seed nodes of a Redis
//! Cluster instead of one server (see `connect_with`). The cluster client follows `MOVED`/`ASK`
//! redirections, refreshes its slot map and reconnects by itself. Nothing else changes: every
//! key (including those the scripts build from `ARGV`) carries the one hash tag, so each script,
//! stream command and pipeline runs on the single node that owns vigil's slot, as on a single
//! server. Cluster mode buys failover (with replicas), not capacity: vigil's data stays in one
//! slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Script, Value};
use arc_swap::ArcSwap;
use chrono::{DateTime, TimeZone, Utc};

use super::{
    CommitOutcome, DeliveryFinish, FingerprintState, Guard, Prune, Pruned, Store, StoreError,
    StoreStats, Transition,
};
use crate::domain::{Fingerprint, IncidentId};
use crate::incident::{Delivery, Incident, IncidentStatus, TimelineEntry};

/// Bump when the key layout changes incompatibly; a store with another version is refused.
const SCHEMA_VERSION: u64 = 1;
/// The consumer group every replica reads the outbox stream in.
const GROUP: &str = "workers";
/// How long a transport delivery id is remembered by default (SNS and EventBridge redeliver
/// within minutes to hours; a week is far beyond any retry window).
pub const SEEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Consecutive timeouts after which the connection is replaced: a timeout alone does not make
/// the connection manager reconnect, and a half-open TCP connection would otherwise time out
/// forever.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;
/// Consumers with nothing pending and idle this long are removed from the group at connect (each
/// replica start adds one).
const STALE_CONSUMER: Duration = Duration::from_secs(24 * 3600);

/// How a `RedisStore` connects and leases.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// This replica's name in the consumer group; unique per process.
    pub consumer: String,
    /// How long a delivery handed to a replica stays its own without that replica polling again;
    /// after that any replica may take it over.
    pub lease: Duration,
    /// The bound on every store call (connect and response), so an unreachable Redis is reported
    /// as `Unavailable` instead of hanging the scheduler or the worker.
    pub timeout: Duration,
    /// How long Redis itself keeps a `seen:<delivery id>` key (its TTL): the message-id
    /// retention. `prune` forgets ids by the caller's clock as well.
    pub seen_ttl: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            consumer: default_consumer(),
            lease: Duration::from_secs(60),
            timeout: Duration::from_secs(2),
            seen_ttl: SEEN_TTL,
        }
    }
}

/// `hostname-pid-random`: readable in `XINFO CONSUMERS`, and unique even when two replicas share
/// a host name and a pid (containers).
pub fn default_consumer() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vigil".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The URL scheme that selects Redis Cluster: `redis+cluster://[user:password@]host:port[,…]`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// How the store reaches Redis: one server, or a cluster. Opens the connections `run` uses.
enum Connector {
    Node {
        client: Client,
        config: ConnectionManagerConfig,
    },
    Cluster {
        client: ClusterClient,
        config: ClusterConfig,
    },
}

impl Connector {
    /// A connection that connects in the background (the first calls wait for it, bounded by
    /// `run`), so a store can be built while Redis is down.
    fn open(&self) -> Result<Conn, RedisError> {
        match self {
            Self::Node { client, config } => {
                ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                    .map(Conn::Node)
            }
            Self::Cluster { client, config } => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(config.clone()),
            )),
        }
    }
}

/// One connection type for every command and script: a single server's connection manager, or
/// a cluster connection (which routes each command to the node owning its key's slot). Both are
/// cheap handles to a shared connection task, cloned out for each call.
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The seed node URLs of a `redis+cluster://` URL (whose scheme is already stripped): each
/// `host:port` becomes `redis://[user:password@]host:port`. Errors never quote the credentials.
fn cluster_seeds(rest: &str) -> Result<Vec<String>, String> {
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (Some(auth), hosts),
        None => (None, rest),
    };
    let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
    if hosts.contains(['/', '?', '#']) {
        return Err(
            "a redis+cluster URL names host:port pairs only (no database, no options)".into(),
        );
    }
    hosts
        .split(',')
        .map(|node| {
            let node = node.trim();
            let valid = node
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !valid {
                return Err(format!("redis cluster node {node:?} is not host:port"));
            }
            Ok(match auth {
                Some(auth) => format!("redis://{auth}@{node}"),
                None => format!("redis://{node}"),
            })
        })
        .collect()
}

pub struct RedisStore {
    connector: Connector,
    /// Replaced after repeated timeouts (see `TIMEOUTS_BEFORE_RECONNECT`). The connection is
    /// cloned out for each call, so none is held across an `.await` of another call.
    conn: ArcSwap<Conn>,
    timeouts: AtomicU32,
    keys: Keys,
    options: RedisOptions,
    scripts: Arc<Scripts>,
}

/// Key names, all under one hash tag.
#[derive(Debug, Clone)]
struct Keys {
    tag: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }

    fn k(&self, name: &str) -> String {
        format!("{}:{name}", self.tag)
    }

    fn incident(&self, id: IncidentId) -> String {
        self.k(&format!("inc:{id}"))
    }

    fn timeline(&self, id: IncidentId) -> String {
        self.k(&format!("tl:{id}"))
    }

    fn refs(&self, id: IncidentId) -> String {
        self.k(&format!("refs:{id}"))
    }

    fn seen(&self, delivery_id: &str) -> String {
        self.k(&format!("seen:{delivery_id}"))
    }

    fn status(&self, status: IncidentStatus) -> String {
        self.k(&format!("idx:{}", status.as_str()))
    }

    /// Named in `KEYS` where a script takes a key it does not use this time.
    fn none(&self) -> String {
        self.k("none")
    }
}

struct Scripts {
    commit: Script,
    finish: Script,
    deliveries_due: Script,
    next_delivery: Script,
    incidents: Script,
    fingerprint: Script,
    prune_consumers: Script,
    open_incidents: Script,
    resolved_since: Script,
    prune: Script,
    backfill: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            commit: Script::new(COMMIT_LUA),
            finish: Script::new(FINISH_LUA),
            deliveries_due: Script::new(DELIVERIES_DUE_LUA),
            next_delivery: Script::new(NEXT_DELIVERY_LUA),
            incidents: Script::new(INCIDENTS_LUA),
            fingerprint: Script::new(FINGERPRINT_LUA),
            prune_consumers: Script::new(PRUNE_CONSUMERS_LUA),
            open_incidents: Script::new(OPEN_INCIDENTS_LUA),
            resolved_since: Script::new(RESOLVED_SINCE_LUA),
            prune: Script::new(PRUNE_LUA),
            backfill: Script::new(BACKFILL_LUA),
        }
    }
}

/// One transition, all or nothing. Returns `duplicate`, `conflict` or `committed`.
///
/// KEYS: 1 seen, 2 open, 3 lastchange, 4 due, 5 outbox:delayed, 6 outbox, 7 outbox:tok,
/// 8 idx:all, 9 idx:triggered, 10 idx:acknowledged, 11 idx:resolved, 12 guarded incident,
/// 13 written incident, 14 timeline, 15 resolvedat, 16 seen:at.
/// ARGV: 1 has delivery id, 2 seen ttl (s), 3 seen at (ms), 4 guard kind (none|open|version),
/// 5 guard fingerprint or version, 6 has incident, 7 id, 8 JSON, 9 version, 10 status,
/// 11 fingerprint, 12 next_due ms or '', 13 last_change fingerprint or '', 14 last_change ms,
/// 15 resolved at ms or '', 16 n timeline entries, the entries, then n deliveries, each (id,
/// token, not_before ms, JSON).
const COMMIT_LUA: &str = r#"
local function idx(status)
  if status == 'triggered' then return KEYS[9] end
  if status == 'acknowledged' then return KEYS[10] end
  return KEYS[11]
end
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 'duplicate' end
if ARGV[4] == 'open' then
  if redis.call('HEXISTS', KEYS[2], ARGV[5]) == 1 then return 'conflict' end
elseif ARGV[4] == 'version' then
  if redis.call('HGET', KEYS[12], 'version') ~= ARGV[5] then return 'conflict' end
end
if ARGV[6] == '1' then
  local id, status, fp = ARGV[7], ARGV[10], ARGV[11]
  local prev = redis.call('HGET', KEYS[13], 'status')
  redis.call('ZREM', KEYS[4], id)
  if ARGV[12] ~= '' then redis.call('ZADD', KEYS[4], ARGV[12], id) end
  if status ~= 'resolved' then
    redis.call('HSET', KEYS[2], fp, id)
  elseif redis.call('HGET', KEYS[2], fp) == id then
    redis.call('HDEL', KEYS[2], fp)
  end
  if prev then redis.call('ZREM', idx(prev), id) end
  redis.call('ZADD', idx(status), 0, id)
  redis.call('ZADD', KEYS[8], 0, id)
  if status == 'resolved' and ARGV[15] ~= '' then
    redis.call('ZADD', KEYS[15], ARGV[15], id)
  else
    redis.call('ZREM', KEYS[15], id)
  end
  redis.call('HSET', KEYS[13], 'data', ARGV[8], 'version', ARGV[9], 'status', status)
end
local i = 16
local n = tonumber(ARGV[i])
for j = 1, n do redis.call('RPUSH', KEYS[14], ARGV[i + j]) end
i = i + n + 1
n = tonumber(ARGV[i])
for j = 0, n - 1 do
  local o = i + 1 + j * 4
  redis.call('HSET', KEYS[6], ARGV[o], ARGV[o + 3])
  redis.call('HSET', KEYS[7], ARGV[o], ARGV[o + 1])
  redis.call('ZADD', KEYS[5], ARGV[o + 2], ARGV[o])
end
if ARGV[1] == '1' then
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
  redis.call('ZADD', KEYS[16], ARGV[3], KEYS[1])
end
if ARGV[13] ~= '' then
  local old = redis.call('HGET', KEYS[3], ARGV[13])
  if (not old) or tonumber(old) < tonumber(ARGV[14]) then
    redis.call('HSET', KEYS[3], ARGV[13], ARGV[14])
  end
end
return 'committed'
"#;

/// The end of one attempt. Returns 1 when the row was still at the caller's attempt (and was
/// acknowledged, removed or rescheduled), 0 for a replayed or stale finish.
///
/// KEYS: 1 outbox, 2 outbox:tok, 3 outbox:sid, 4 outbox:delayed, 5 outbox:stream, 6 timeline,
/// 7 refs.
/// ARGV: 1 delivery id, 2 its token, 3 group, 4 done|retry, 5 retry token, 6 retry not_before ms,
/// 7 retry JSON, 8 channel, 9 has reference, 10 reference, 11 n entries, the entries, then
/// n follow-ups, each (id, token, not_before ms, JSON).
const FINISH_LUA: &str = r#"
local id = ARGV[1]
local current = redis.call('HGET', KEYS[2], id) == ARGV[2]
if current then
  local sid = redis.call('HGET', KEYS[3], id)
  if sid then
    redis.call('XACK', KEYS[5], ARGV[3], sid)
    redis.call('XDEL', KEYS[5], sid)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[4], id)
  if ARGV[4] == 'retry' then
    redis.call('HSET', KEYS[1], id, ARGV[7])
    redis.call('HSET', KEYS[2], id, ARGV[5])
    redis.call('ZADD', KEYS[4], ARGV[6], id)
  else
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
  end
end
local i = 11
local n = tonumber(ARGV[i])
for j = 1, n do redis.call('RPUSH', KEYS[6], ARGV[i + j]) end
i = i + n + 1
n = tonumber(ARGV[i])
if current then
  for j = 0, n - 1 do
    local o = i + 1 + j * 4
    redis.call('HSET', KEYS[1], ARGV[o], ARGV[o + 3])
    redis.call('HSET', KEYS[2], ARGV[o], ARGV[o + 1])
    redis.call('ZADD', KEYS[4], ARGV[o + 2], ARGV[o])
  end
end
if ARGV[9] == '1' then redis.call('HSETNX', KEYS[7], ARGV[8], ARGV[10]) end
if current then return 1 end
return 0
"#;

/// Promotes due rows into the stream and hands this consumer its share. Returns delivery JSONs.
///
/// KEYS: 1 outbox:delayed, 2 outbox, 3 outbox:sid, 4 outbox:stream, 5 outbox:cursor.
/// ARGV: 1 now ms, 2 limit, 3 group, 4 consumer, 5 lease ms.
const DELIVERIES_DUE_LUA: &str = r#"
local limit, group, consumer = tonumber(ARGV[2]), ARGV[3], ARGV[4]
redis.pcall('XGROUP', 'CREATE', KEYS[4], group, '0', 'MKSTREAM')
local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
for j = 1, #ready, 2 do
  local id = ready[j]
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    local sid = redis.call('XADD', KEYS[4], '*', 'd', id, 'nb', ready[j + 1])
    redis.call('HSET', KEYS[3], id, sid)
  end
end
local out = {}
-- An entry whose row is gone or has moved on (finished, or rescheduled under a newer entry) is
-- dropped from the stream instead of being handed out.
local function take(entries)
  for _, e in ipairs(entries) do
    local sid, fields, id = e[1], e[2], nil
    if type(fields) == 'table' then
      for k = 1, #fields, 2 do
        if fields[k] == 'd' then id = fields[k + 1] end
      end
    end
    local row = false
    if id and redis.call('HGET', KEYS[3], id) == sid then
      row = redis.call('HGET', KEYS[2], id)
    end
    if row then
      table.insert(out, row)
    else
      redis.call('XACK', KEYS[4], group, sid)
      redis.call('XDEL', KEYS[4], sid)
    end
  end
end
local function entries_of(reply)
  if type(reply) == 'table' and reply[1] then return reply[1][2] end
  return {}
end
take(entries_of(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit, 'STREAMS', KEYS[4], '0')))
if #out < limit then
  local cursor = redis.call('GET', KEYS[5]) or '0-0'
  local claimed = redis.call('XAUTOCLAIM', KEYS[4], group, consumer, ARGV[5], cursor, 'COUNT', limit - #out)
  redis.call('SET', KEYS[5], claimed[1])
  take(claimed[2])
end
if #out < limit then
  take(entries_of(redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out, 'STREAMS', KEYS[4], '>')))
end
return out
"#;

/// The earliest `not_before` among rows waiting to be handed out: the delayed set's first score,
/// or the first stream entry no consumer has read yet. Rows already handed to a replica are its
/// business (and reach another one through the lease), so they do not make every worker poll.
///
/// KEYS: 1 outbox:delayed, 2 outbox:stream. ARGV: 1 group.
const NEXT_DELIVERY_LUA: &str = r#"
local best = false
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 2 then best = tonumber(first[2]) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  local last = '0-0'
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do
    local name, delivered = nil, nil
    for k = 1, #g, 2 do
      if g[k] == 'name' then name = g[k + 1] end
      if g[k] == 'last-delivered-id' then delivered = g[k + 1] end
    end
    if name == ARGV[1] then last = delivered end
  end
  local fresh = redis.call('XRANGE', KEYS[2], '(' .. last, '+', 'COUNT', 1)
  if #fresh == 1 then
    local fields = fresh[1][2]
    for k = 1, #fields, 2 do
      if fields[k] == 'nb' then
        local nb = tonumber(fields[k + 1])
        if (not best) or nb < best then best = nb end
      end
    end
  end
end
return best
"#;

/// Newest first, from one index, read in one snapshot. KEYS: 1 index. ARGV: 1 last rank, 2 the
/// incident key prefix (`{tag}:inc:`).
const INCIDENTS_LUA: &str = r#"
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, ARGV[1])) do
  local data = redis.call('HGET', ARGV[2] .. id, 'data')
  if data then table.insert(out, data) end
end
return out
"#;

/// The open incident (JSON or '') and the last change (ms or '') of a fingerprint.
/// KEYS: 1 open, 2 lastchange. ARGV: 1 fingerprint, 2 the incident key prefix.
const FINGERPRINT_LUA: &str = r#"
local data = ''
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then data = redis.call('HGET', ARGV[2] .. id, 'data') or '' end
local lc = redis.call('HGET', KEYS[2], ARGV[1]) or ''
return {data, lc}
"#;

/// Every open incident's JSON, through the open-fingerprint index. KEYS: 1 open. ARGV: 1 the
/// incident key prefix.
const OPEN_INCIDENTS_LUA: &str = r#"
local out = {}
for _, id in ipairs(redis.call('HVALS', KEYS[1])) do
  local data = redis.call('HGET', ARGV[1] .. id, 'data')
  if data then table.insert(out, data) end
end
return out
"#;

/// Resolved incidents by resolve time, the latest first: their JSON.
/// KEYS: 1 resolvedat. ARGV: 1 since ms, 2 limit, 3 `{tag}:inc:`.
const RESOLVED_SINCE_LUA: &str = r#"
local out = {}
for _, id in ipairs(redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))) do
  local data = redis.call('HGET', ARGV[3] .. id, 'data')
  if data then table.insert(out, data) end
end
return out
"#;

/// One bounded prune pass. Returns {{id, fingerprint, …}, number of delivery ids forgotten}.
///
/// KEYS: 1 resolvedat, 2 open, 3 lastchange, 4 due, 5 idx:all, 6 idx:resolved, 7 outbox,
/// 8 outbox:tok, 9 outbox:delayed, 10 outbox:sid, 11 seen:at.
/// ARGV: 1 resolved-before ms, 2 seen-before ms, 3 limit, 4 `{tag}:inc:`, 5 `{tag}:tl:`,
/// 6 `{tag}:refs:`.
const PRUNE_LUA: &str = r#"
local limit = tonumber(ARGV[3])
local gone, out, n = {}, {}, 0
local rows = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit)
for _, id in ipairs(rows) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[4] .. id
  if redis.call('HGET', key, 'status') == 'resolved' then
    local fp = cjson.decode(redis.call('HGET', key, 'data')).fingerprint
    redis.call('DEL', key, ARGV[5] .. id, ARGV[6] .. id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
    redis.call('ZREM', KEYS[6], id)
    if redis.call('HGET', KEYS[2], fp) == id then redis.call('HDEL', KEYS[2], fp) end
    if redis.call('HEXISTS', KEYS[2], fp) == 0 then
      local lc = redis.call('HGET', KEYS[3], fp)
      if lc and tonumber(lc) < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[3], fp) end
    end
    gone[id] = true
    table.insert(out, id)
    table.insert(out, fp)
  end
end
if #out > 0 then
  local all = redis.call('HGETALL', KEYS[7])
  for j = 1, #all, 2 do
    local d = cjson.decode(all[j + 1])
    if gone[d.incident] then
      local did = all[j]
      redis.call('HDEL', KEYS[7], did)
      redis.call('HDEL', KEYS[8], did)
      redis.call('ZREM', KEYS[9], did)
      redis.call('HDEL', KEYS[10], did)
    end
  end
end
local seen = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
for _, key in ipairs(seen) do
  redis.call('ZREM', KEYS[11], key)
  redis.call('DEL', key)
  n = n + 1
end
return {out, n}
"#;

/// The next step of indexing in `resolvedat` the resolved incidents written before it existed:
/// the JSON of those of the next ARGV[1] ids of `idx:resolved` (after the cursor) not indexed
/// yet; the caller reads their resolve times and adds them. Returns {more (0|1), {id, JSON, …}}.
///
/// KEYS: 1 idx:resolved, 2 resolvedat, 3 prune:backfill (the last id looked at, or `done`).
/// ARGV: 1 step, 2 `{tag}:inc:`.
const BACKFILL_LUA: &str = r#"
local cursor = redis.call('GET', KEYS[3])
if cursor == 'done' then return {0, {}} end
local lower = '-'
if cursor then lower = '(' .. cursor end
local step = tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYLEX', KEYS[1], lower, '+', 'LIMIT', 0, step)
local out = {}
for _, id in ipairs(ids) do
  if not redis.call('ZSCORE', KEYS[2], id) then
    local data = redis.call('HGET', ARGV[2] .. id, 'data')
    if data then
      table.insert(out, id)
      table.insert(out, data)
    end
  end
end
if #ids < step then
  redis.call('SET', KEYS[3], 'done')
  return {0, out}
end
redis.call('SET', KEYS[3], ids[#ids])
return {1, out}
"#;

/// Resolved incidents indexed per `prune` call by `BACKFILL_LUA`.
const BACKFILL_STEP: usize = 1000;

/// Removes consumers that hold nothing and have been idle longer than ARGV[2] ms.
/// KEYS: 1 outbox:stream. ARGV: 1 group, 2 idle ms.
const PRUNE_CONSUMERS_LUA: &str = r#"
local removed = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle = nil, 0, 0
  for k = 1, #c, 2 do
    if c[k] == 'name' then name = c[k + 1] end
    if c[k] == 'pending' then pending = c[k + 1] end
    if c[k] == 'idle' then idle = c[k + 1] end
  end
  if name and pending == 0 and idle > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    removed = removed + 1
  end
end
return removed
"#;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

/// Sorted-set scores come back as decimal strings; ours are whole milliseconds.
fn score_ms(s: &str) -> Result<i64, StoreError> {
    s.parse::<f64>()
        .map(|f| f as i64)
        .map_err(|e| StoreError::Corrupt(format!("score {s:?}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> String {
    // Serializing our own plain data types cannot fail (no maps with non-string keys).
    serde_json::to_string(v).expect("store records serialize to JSON")
}

/// Which attempt an outbox row is at; a finish applies only to the attempt it was given.
fn token(d: &Delivery) -> String {
    format!("{}:{}", d.attempt, ms(d.not_before))
}

/// The largest count passed to Redis. Counts go through Lua numbers (doubles), which print
/// large values in exponent form that Redis refuses; callers asking for "all" pass `usize::MAX`.
const MAX_COUNT: usize = 1_000_000_000;

/// `limit` as a count for Redis.
fn count(limit: usize) -> i64 {
    limit.min(MAX_COUNT) as i64
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
        // The URL may carry a password: it never goes into an error message.
        let connector = match url.strip_prefix(CLUSTER_SCHEME) {
            Some(rest) => {
                let seeds = cluster_seeds(rest).map_err(unavailable)?;
                let client = ClusterClient::builder(seeds)
                    .connection_timeout(options.timeout)
                    .response_timeout(options.timeout)
                    // Redirections and reconnects share the one bound, as on a single server.
                    .overall_response_timeout(Some(options.timeout))
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(200)
                    .build()
                    .map_err(|e| {
                        unavailable(format!("invalid redis cluster URL ({:?})", e.kind()))
                    })?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(options.timeout)
                    .set_response_timeout(options.timeout);
                Connector::Cluster { client, config }
            }
            None => {
                let client = Client::open(url)
                    .map_err(|e| unavailable(format!("invalid redis URL ({:?})", e.kind())))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(options.timeout))
                    .set_response_timeout(Some(options.timeout))
                    // Reconnect attempts inside one call stay short; the next call tries again.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Connector::Node { client, config }
            }
        };
        let conn = connector.open().map_err(unavailable)?;
        let store = Self {
            connector,
            conn: ArcSwap::from_pointee(conn),
            timeouts: AtomicU32::new(0),
            keys: Keys::new(prefix),
            options,
            scripts: Arc::new(Scripts::new()),
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
        matches!(self.connector, Connector::Cluster { .. })
    }

    async fn init(&self) -> Result<(), StoreError> {
        let meta = self.keys.k("meta");
        let stream = self.keys.k("outbox:stream");
        self.run(|mut c| async move {
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
        let pruned: i64 = self
            .run(|mut c| {
                let scripts = self.scripts.clone();
                let stream = stream.clone();
                async move {
                    scripts
                        .prune_consumers
                        .key(&stream)
                        .arg(GROUP)
                        .arg(STALE_CONSUMER.as_millis() as u64)
                        .invoke_async(&mut c)
                        .await
                }
            })
            .await?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                "Removed idle outbox consumers left by earlier replicas."
            );
        }
        Ok(())
    }

    /// Runs one call on a clone of the connection, bounded by the timeout; every failure is
    /// `Unavailable`.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let conn = (**self.conn.load()).clone();
        // A little above the per-request timeout, which covers the request; this also bounds
        // waiting for a (re)connection.
        let bound = self.options.timeout + Duration::from_millis(500);
        let timed_out = match tokio::time::timeout(bound, f(conn)).await {
            Ok(Ok(v)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                return Ok(v);
            }
            Ok(Err(e)) => {
                if !e.is_timeout() {
                    return Err(unavailable(format!("redis: {e}")));
                }
                unavailable(format!("redis: {e}"))
            }
            Err(_) => unavailable(format!("redis did not answer within {bound:?}")),
        };
        if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_BEFORE_RECONNECT {
            self.timeouts.store(0, Ordering::Relaxed);
            if let Ok(fresh) = self.connector.open() {
                tracing::warn!("Redis keeps timing out; opening a new connection.");
                self.conn.store(Arc::new(fresh));
            }
        }
        Err(timed_out)
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
        inv.arg(entries.len());
        for e in entries {
            inv.arg(encode(e));
        }
        inv.arg(tx.deliveries.len());
        for d in &tx.deliveries {
            inv.arg(d.id.to_string())
                .arg(token(d))
                .arg(ms(d.not_before))
                .arg(encode(d));
        }
        let outcome: String = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
        let (data, lc): (String, String) = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
        let rows: Vec<String> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let inc: Incident = decode(&row)?;
            if status.is_none_or(|s| s == inc.status) {
                out.push(inc);
            }
        }
        Ok(out)
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        let mut inv = self.scripts.open_incidents.prepare_invoke();
        inv.key(self.keys.k("open")).arg(self.keys.k("inc:"));
        let rows: Vec<String> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let inc: Incident = decode(&row)?;
            if inc.status.is_open() {
                out.push(inc);
            }
        }
        Ok(out)
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
        let rows: Vec<String> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let inc: Incident = decode(&row)?;
            if inc.status == IncidentStatus::Resolved {
                out.push(inc);
            }
        }
        Ok(out)
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
        let (more, older): (i64, Vec<String>) = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
            self.run(|mut c| async move { index.query_async::<()>(&mut c).await })
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
        let (gone, delivery_ids): (Vec<String>, u64) = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
        let rows: Vec<String> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
        let key = self.keys.k(&format!("rec:{kind}"));
        let id = id.to_string();
        self.run(|mut c| async move {
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
        let key = self.keys.k(&format!("rec:{kind}"));
        let id = id.to_string();
        self.run(|mut c| async move {
            ::redis::cmd("HGET")
                .arg(&key)
                .arg(&id)
                .query_async(&mut c)
                .await
        })
        .await
    }

    async fn delete_record(&self, kind: &str, id: &str) -> Result<bool, StoreError> {
        let key = self.keys.k(&format!("rec:{kind}"));
        let id = id.to_string();
        let n: u64 = self
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
        let key = self.keys.k(&format!("rec:{kind}"));
        let all: BTreeMap<String, Vec<u8>> = self
            .run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
            .await?;
        Ok(all.into_iter().collect())
    }

    async fn next_delivery(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut inv = self.scripts.next_delivery.prepare_invoke();
        inv.key(self.keys.k("outbox:delayed"))
            .key(self.keys.k("outbox:stream"))
            .arg(GROUP);
        let at: Option<i64> = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
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
        inv.arg(finish.entries.len());
        for e in &finish.entries {
            inv.arg(encode(e));
        }
        inv.arg(finish.follow_ups.len());
        for f in &finish.follow_ups {
            inv.arg(f.id.to_string())
                .arg(token(f))
                .arg(ms(f.not_before))
                .arg(encode(f));
        }
        let _current: i64 = self
            .run(|mut c| async move { inv.invoke_async(&mut c).await })
            .await?;
        Ok(())
    }

    async fn references(&self, id: IncidentId) -> Result<BTreeMap<String, String>, StoreError> {
        let key = self.keys.refs(id);
        self.run(|mut c| async move { ::redis::cmd("HGETALL").arg(&key).query_async(&mut c).await })
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

    use super::*;
    use crate::incident::{DeliveryOutcome, NotifyKind, TimelineEvent};
    use crate::store::DeliveryUpdate;
    use crate::store::contract::sample_incident;

    /// The server `scripts/test` starts. Without it these tests fail rather than pass silently.
    fn redis_url() -> String {
        std::env::var("VIGIL_TEST_REDIS_URL").unwrap_or_else(|_| {
            panic!("VIGIL_TEST_REDIS_URL is not set: run scripts/test, which starts redis-server")
        })
    }

    /// A key prefix no other test uses.
    fn fresh_prefix() -> String {
        format!("test-{}", ulid::Ulid::new())
    }

    /// The cluster `scripts/test` starts (three masters). Without it these tests fail.
    fn cluster_url() -> String {
        std::env::var("VIGIL_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
            panic!(
                "VIGIL_TEST_REDIS_CLUSTER_URL is not set: run scripts/test, which starts a Redis Cluster"
            )
        })
    }

    async fn replica(prefix: &str, name: &str, lease: Duration) -> RedisStore {
        replica_at(&redis_url(), prefix, name, lease).await
    }

    async fn replica_at(url: &str, prefix: &str, name: &str, lease: Duration) -> RedisStore {
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

    fn fp(tag: &str) -> Fingerprint {
        Fingerprint::parse(format!("redis/{tag}/{}", ulid::Ulid::new())).unwrap()
    }

    /// Now, to the millisecond the store keeps.
    fn now() -> DateTime<Utc> {
        from_ms(ms(Utc::now()))
    }

    fn opened(inc: &Incident, deliveries: Vec<Delivery>) -> Transition {
        Transition {
            guard: Some(Guard::NoOpenIncident(inc.fingerprint.clone())),
            incident: Some(inc.clone()),
            deliveries,
            ..Default::default()
        }
    }

    fn attempt_entry(d: &Delivery, outcome: DeliveryOutcome) -> TimelineEntry {
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

    #[tokio::test]
    async fn redis_store_passes_the_contract() {
        let store = RedisStore::connect(&redis_url(), &fresh_prefix())
            .await
            .unwrap();
        super::super::contract::run_all(&store).await;
    }

    #[tokio::test]
    async fn redis_store_passes_the_contract_on_a_cluster() {
        let store = RedisStore::connect(&cluster_url(), &fresh_prefix())
            .await
            .unwrap();
        assert!(store.is_cluster());
        super::super::contract::run_all(&store).await;
    }

    #[tokio::test]
    async fn two_replicas_racing_one_step_commit_it_once() {
        race(&redis_url()).await;
    }

    #[tokio::test]
    async fn two_replicas_racing_one_step_commit_it_once_on_a_cluster() {
        race(&cluster_url()).await;
    }

    async fn race(url: &str) {
        let prefix = fresh_prefix();
        let a = replica_at(url, &prefix, "a", Duration::from_secs(60)).await;
        let b = replica_at(url, &prefix, "b", Duration::from_secs(60)).await;
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
                b.finish_delivery(
                    &d,
                    DeliveryFinish::simple(
                        DeliveryUpdate::Done,
                        attempt_entry(&d, DeliveryOutcome::Sent),
                    ),
                )
                .await
                .unwrap();
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
        let prefix = fresh_prefix();
        let a = replica_at(url, &prefix, "a", lease).await;
        let b = replica_at(url, &prefix, "b", lease).await;
        let inc = sample_incident(fp("lease"), now());
        let d = Delivery::new(
            inc.id,
            NotifyKind::Trigger,
            "log",
            None,
            vec![],
            Some((0, 0)),
            now(),
        );
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
        b.finish_delivery(
            &d,
            DeliveryFinish::simple(
                DeliveryUpdate::Done,
                attempt_entry(&d, DeliveryOutcome::Sent),
            ),
        )
        .await
        .unwrap();
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
        let prefix = fresh_prefix();
        let a = replica(&prefix, "a", Duration::from_secs(60)).await;
        let b = replica(&prefix, "b", Duration::from_secs(60)).await;
        let t = now();
        let inc = sample_incident(fp("retry"), t);
        let d = Delivery::new(
            inc.id,
            NotifyKind::Trigger,
            "log",
            None,
            vec![],
            Some((0, 0)),
            t,
        );
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
        b.finish_delivery(
            &row[0],
            DeliveryFinish::simple(
                DeliveryUpdate::Done,
                attempt_entry(&row[0], DeliveryOutcome::Sent),
            ),
        )
        .await
        .unwrap();
        assert_eq!(b.stats().await.unwrap().outbox, 0);
        assert_eq!(b.next_delivery().await.unwrap(), None);
    }

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

    #[tokio::test]
    async fn resolved_incidents_written_before_the_prune_index_are_indexed_and_pruned() {
        let store = replica(&fresh_prefix(), "a", Duration::from_secs(60)).await;
        let inc = crate::store::contract::resolved_sample(
            fp("legacy"),
            now() - chrono::Duration::days(60),
        );
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

    #[tokio::test]
    async fn unreachable_redis_is_unavailable_quickly() {
        let store = RedisStore::connect_with(
            // A port nothing listens on (reserved, and connections are refused at once).
            "redis://127.0.0.1:1/",
            "vigil",
            RedisOptions {
                timeout: Duration::from_millis(300),
                ..RedisOptions::default()
            },
        );
        let started = std::time::Instant::now();
        let err = store.await.err().expect("no server there");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// A `redis-server` of this test's own, so it can be killed and restarted.
    struct OwnServer {
        port: u16,
        child: std::process::Child,
    }

    impl OwnServer {
        fn start(port: u16) -> Self {
            Self::start_with(port, &[])
        }

        fn start_with(port: u16, extra: &[&str]) -> Self {
            let bin = std::env::var("VIGIL_TEST_REDIS_SERVER")
                .unwrap_or_else(|_| "redis-server".to_string());
            let child = std::process::Command::new(bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(extra)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed: run scripts/test");
            Self { port, child }
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }

        /// Waits (bounded) until the server accepts connections: a real process starting.
        async fn ready(&self) {
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("redis-server did not start on port {}", self.port);
        }
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn a_lost_redis_is_unavailable_quickly_and_the_store_recovers_when_it_returns() {
        // Fail like the other Redis tests when the harness did not run.
        redis_url();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = OwnServer::start(port);
        server.ready().await;
        let store = RedisStore::connect_with(
            &server.url(),
            "vigil",
            RedisOptions {
                timeout: Duration::from_millis(500),
                ..RedisOptions::default()
            },
        )
        .await
        .unwrap();
        let inc = sample_incident(fp("outage"), now());
        store.commit(opened(&inc, vec![])).await.unwrap();
        drop(server);
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let err = store.incident(inc.id).await.expect_err("Redis is gone");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
        // Redis returns (empty: no persistence in this test); the same store works again
        // without being rebuilt. The first call may still see the failed connection.
        let server = OwnServer::start(port);
        server.ready().await;
        let mut recovered = false;
        for _ in 0..20 {
            if store.stats().await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "the store reconnects by itself");
        let inc = sample_incident(fp("after"), now());
        assert_eq!(
            store.commit(opened(&inc, vec![])).await.unwrap(),
            CommitOutcome::Committed
        );
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn cluster_urls_name_seed_nodes_and_errors_never_quote_credentials() {
        assert_eq!(
            cluster_seeds("127.0.0.1:7000,127.0.0.1:7001/").unwrap(),
            vec!["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            cluster_seeds("vigil:s3cr%40t@a:1, [::1]:2").unwrap(),
            vec![
                "redis://vigil:s3cr%40t@a:1",
                "redis://vigil:s3cr%40t@[::1]:2"
            ]
        );
        for bad in ["", "a", "a:x", ":1", "a:1/2", "a:1?x=1", "a:1,,b:2"] {
            assert!(cluster_seeds(bad).is_err(), "{bad:?}");
        }
        let err = cluster_seeds("u:hunter2@a:1,b").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn a_bad_cluster_url_is_refused_without_its_password() {
        let err = RedisStore::connect(&format!("{CLUSTER_SCHEME}u:hunter2@a:1,b"), "vigil")
            .await
            .err()
            .expect("not host:port");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_unavailable_quickly() {
        let started = std::time::Instant::now();
        let err = RedisStore::connect_with(
            &format!("{CLUSTER_SCHEME}127.0.0.1:1,127.0.0.1:2"),
            "vigil",
            RedisOptions {
                timeout: Duration::from_millis(300),
                ..RedisOptions::default()
            },
        )
        .await
        .err()
        .expect("no cluster there");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// A master of the test cluster, as `CLUSTER NODES` describes it.
    #[derive(Debug, Clone)]
    struct Master {
        id: String,
        addr: String,
        slots: Vec<(u16, u16)>,
    }

    impl Master {
        fn owns(&self, slot: u16) -> bool {
            self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
        }
    }

    /// A direct connection to one node: no redirections, so it shows where keys really are.
    async fn node(addr: &str) -> ::redis::aio::MultiplexedConnection {
        Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    fn seed_addrs() -> Vec<String> {
        cluster_url()
            .strip_prefix(CLUSTER_SCHEME)
            .expect("a redis+cluster:// URL")
            .trim_end_matches('/')
            .split(',')
            .map(str::to_string)
            .collect()
    }

    async fn masters() -> Vec<Master> {
        let mut c = node(&seed_addrs()[0]).await;
        let text: String = ::redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut c)
            .await
            .unwrap();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                if !f.get(2)?.split(',').any(|flag| flag == "master") {
                    return None;
                }
                let addr = f[1].split(['@', ',']).next()?.to_string();
                let slots = f[8..]
                    .iter()
                    .filter(|r| !r.starts_with('['))
                    .map(|r| match r.split_once('-') {
                        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                        None => (r.parse().unwrap(), r.parse().unwrap()),
                    })
                    .collect();
                Some(Master {
                    id: f[0].to_string(),
                    addr,
                    slots,
                })
            })
            .collect()
    }

    async fn slot_of(prefix: &str) -> u16 {
        let mut c = node(&seed_addrs()[0]).await;
        ::redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(Keys::new(prefix).k("meta"))
            .query_async(&mut c)
            .await
            .unwrap()
    }

    async fn keys_on(addr: &str, prefix: &str) -> Vec<String> {
        let mut c = node(addr).await;
        ::redis::cmd("KEYS")
            .arg(format!("*{prefix}*"))
            .query_async(&mut c)
            .await
            .unwrap()
    }

    /// One incident with one delivery through a store: commit, hand out, finish.
    async fn one_round(store: &RedisStore, tag: &str) -> IncidentId {
        let t = now();
        let inc = sample_incident(fp(tag), t);
        let d = Delivery::new(
            inc.id,
            NotifyKind::Trigger,
            "log",
            None,
            vec![],
            Some((0, 0)),
            t,
        );
        assert_eq!(
            store.commit(opened(&inc, vec![d.clone()])).await.unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(store.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);
        store
            .finish_delivery(
                &d,
                DeliveryFinish::simple(
                    DeliveryUpdate::Done,
                    attempt_entry(&d, DeliveryOutcome::Sent),
                ),
            )
            .await
            .unwrap();
        assert_eq!(store.timeline(inc.id).await.unwrap().len(), 1);
        assert_eq!(store.stats().await.unwrap().outbox, 0);
        inc.id
    }

    /// Prefixes whose slots belong to each of the three masters, reached from one seed node: the
    /// client discovers the others and sends every script to the owner of the prefix's slot.
    #[tokio::test]
    async fn a_cluster_serves_prefixes_on_every_master_from_one_seed() {
        let masters = masters().await;
        assert_eq!(masters.len(), 3, "{masters:?}");
        let seed = format!("{CLUSTER_SCHEME}{}", seed_addrs()[0]);
        for m in &masters {
            let mut prefix = fresh_prefix();
            while !m.owns(slot_of(&prefix).await) {
                prefix = fresh_prefix();
            }
            let store = replica_at(&seed, &prefix, "a", Duration::from_secs(60)).await;
            let id = one_round(&store, "every-master").await;
            assert!(store.incident(id).await.unwrap().is_some());
            let here = keys_on(&m.addr, &prefix).await;
            assert!(here.len() >= 4, "{}: {here:?}", m.addr);
            assert!(
                here.iter()
                    .all(|k| k.starts_with(&format!("{{{prefix}}}:"))),
                "{here:?}"
            );
            for other in masters.iter().filter(|o| o.id != m.id) {
                assert!(keys_on(&other.addr, &prefix).await.is_empty());
            }
        }
    }

    /// Moves one slot from its master to another, keys included (as `redis-cli --cluster
    /// reshard` does): `IMPORTING`/`MIGRATING`, `MIGRATE` every key, then `SETSLOT NODE`.
    async fn move_slot(slot: u16, from: &Master, to: &Master, all: &[Master]) {
        let mut src = node(&from.addr).await;
        let mut dst = node(&to.addr).await;
        let setslot = |state: &str, id: &str| {
            let mut c = ::redis::cmd("CLUSTER");
            c.arg("SETSLOT").arg(slot).arg(state).arg(id);
            c
        };
        let _: () = setslot("IMPORTING", &from.id)
            .query_async(&mut dst)
            .await
            .unwrap();
        let _: () = setslot("MIGRATING", &to.id)
            .query_async(&mut src)
            .await
            .unwrap();
        let (host, port) = to.addr.rsplit_once(':').unwrap();
        loop {
            let keys: Vec<String> = ::redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut src)
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = ::redis::cmd("MIGRATE")
                .arg(host)
                .arg(port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut src)
                .await
                .unwrap();
        }
        for m in std::iter::once(to)
            .chain(std::iter::once(from))
            .chain(all.iter().filter(|m| m.id != from.id && m.id != to.id))
        {
            let mut c = node(&m.addr).await;
            let _: () = setslot("NODE", &to.id).query_async(&mut c).await.unwrap();
        }
    }

    /// The slot holding a store's keys moves to another master while two replicas run with the
    /// old slot map: they follow `MOVED`, and the stream with its consumer group (pending
    /// entries included) moved with it, so the lease still hands a dead replica's delivery over.
    #[tokio::test]
    async fn stores_follow_their_slot_to_another_master() {
        let lease = Duration::from_millis(400);
        let prefix = fresh_prefix();
        let url = cluster_url();
        let a = replica_at(&url, &prefix, "a", lease).await;
        let b = replica_at(&url, &prefix, "b", lease).await;
        let t = now();
        let inc = sample_incident(fp("moved"), t);
        let d = Delivery::new(
            inc.id,
            NotifyKind::Trigger,
            "log",
            None,
            vec![],
            Some((0, 0)),
            t,
        );
        a.commit(opened(&inc, vec![d.clone()])).await.unwrap();
        assert_eq!(a.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);

        let all = masters().await;
        let slot = slot_of(&prefix).await;
        let from = all.iter().find(|m| m.owns(slot)).unwrap().clone();
        let to = all.iter().find(|m| m.id != from.id).unwrap().clone();
        move_slot(slot, &from, &to, &all).await;
        assert!(keys_on(&from.addr, &prefix).await.is_empty());
        assert!(keys_on(&to.addr, &prefix).await.len() >= 4);

        assert_eq!(a.incident(inc.id).await.unwrap().unwrap(), inc);
        assert!(
            b.deliveries_due(t, 10).await.unwrap().is_empty(),
            "A's lease moved with the stream"
        );
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
        assert_eq!(b.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);
        b.finish_delivery(
            &d,
            DeliveryFinish::simple(
                DeliveryUpdate::Done,
                attempt_entry(&d, DeliveryOutcome::Sent),
            ),
        )
        .await
        .unwrap();
        assert_eq!(a.stats().await.unwrap().outbox, 0);
        one_round(&a, "after-move").await;
        one_round(&b, "after-move").await;
    }

    /// A one-node cluster of this test's own (it owns every slot), so it can be killed and
    /// restarted: calls fail fast while it is gone and work again, on the same store, once it is
    /// back.
    #[tokio::test]
    async fn a_lost_cluster_node_is_unavailable_quickly_and_the_store_recovers() {
        cluster_url();
        let dir = tempfile::tempdir().unwrap();
        let (port, bus) = (free_port(), free_port());
        let conf = dir.path().join("nodes.conf");
        let conf = conf.to_str().unwrap();
        let bus = bus.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            conf,
            "--cluster-port",
            &bus,
            "--dir",
            dir.path().to_str().unwrap(),
        ];
        let server = OwnServer::start_with(port, &args);
        server.ready().await;
        let addr = format!("127.0.0.1:{port}");
        let _: () = ::redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async(&mut node(&addr).await)
            .await
            .unwrap();
        let cluster_ok = || async {
            for _ in 0..100 {
                let info: String = ::redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node(&addr).await)
                    .await
                    .unwrap();
                if info.contains("cluster_state:ok") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the one-node cluster did not become ok");
        };
        cluster_ok().await;
        let store = RedisStore::connect_with(
            &format!("{CLUSTER_SCHEME}{addr}"),
            "vigil",
            RedisOptions {
                timeout: Duration::from_millis(500),
                ..RedisOptions::default()
            },
        )
        .await
        .unwrap();
        let inc = sample_incident(fp("cluster-outage"), now());
        store.commit(opened(&inc, vec![])).await.unwrap();
        drop(server);
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let err = store.incident(inc.id).await.expect_err("the node is gone");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
        // The node returns with its cluster config (its slots), empty of data.
        let server = OwnServer::start_with(port, &args);
        server.ready().await;
        cluster_ok().await;
        let mut recovered = false;
        for _ in 0..40 {
            if store.stats().await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "the store reconnects by itself");
        // Back empty (no persistence here), and writable through the same store.
        let inc = sample_incident(fp("cluster-after"), now());
        assert_eq!(
            store.commit(opened(&inc, vec![])).await.unwrap(),
            CommitOutcome::Committed
        );
        drop(server);
    }
}

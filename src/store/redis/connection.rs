//! How the Redis store reaches Redis: one server or a Redis Cluster, every call bounded by
//! `RedisOptions::timeout`, reconnecting by itself. Owns `RedisOptions`, the URL forms
//! (`redis://…`, `redis+cluster://…`), the connection types and `Connection::run`, the one way
//! every command and script is sent. Knows nothing of keys or of what the store keeps.
//!
//! # Redis Cluster
//!
//! A URL `redis+cluster://[user:password@]host:port[,host:port…]` names seed nodes of a Redis
//! Cluster instead of one server. The cluster client follows `MOVED`/`ASK` redirections,
//! refreshes its slot map and reconnects by itself. Nothing else changes: every key (including
//! those the scripts build from `ARGV`) carries the one hash tag (see `keys`), so each script,
//! stream command and pipeline runs on the single node that owns vigil's slot, as on a single
//! server. Cluster mode buys failover (with replicas), not capacity: vigil's data stays in one
//! slot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::{ClusterClient, ClusterConfig};
use ::redis::cluster_async::ClusterConnection;
use ::redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};
use arc_swap::ArcSwap;

use crate::store::StoreError;

/// How long a transport delivery id is remembered by default (SNS and EventBridge redeliver
/// within minutes to hours; a week is far beyond any retry window).
pub const SEEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Consecutive timeouts after which the connection is replaced: a timeout alone does not make
/// the connection manager reconnect, and a half-open TCP connection would otherwise time out
/// forever.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

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
pub(super) enum Conn {
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

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The store's way to Redis: the connection every call clones, replaced after repeated timeouts.
pub(super) struct Connection {
    connector: Connector,
    /// Replaced after repeated timeouts (see `TIMEOUTS_BEFORE_RECONNECT`). The connection is
    /// cloned out for each call, so none is held across an `.await` of another call.
    conn: ArcSwap<Conn>,
    timeouts: AtomicU32,
    timeout: Duration,
}

impl Connection {
    /// A connection to `url` (see `RedisStore::connect_with`) that connects in the background.
    /// The URL may carry a password: it never goes into an error message.
    pub(super) fn open(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let connector = match url.strip_prefix(CLUSTER_SCHEME) {
            Some(rest) => {
                let seeds = cluster_seeds(rest).map_err(unavailable)?;
                let client = ClusterClient::builder(seeds)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // Redirections and reconnects share the one bound, as on a single server.
                    .overall_response_timeout(Some(timeout))
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(200)
                    .build()
                    .map_err(|e| {
                        unavailable(format!("invalid redis cluster URL ({:?})", e.kind()))
                    })?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Connector::Cluster { client, config }
            }
            None => {
                let client = Client::open(url)
                    .map_err(|e| unavailable(format!("invalid redis URL ({:?})", e.kind())))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Reconnect attempts inside one call stay short; the next call tries again.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Connector::Node { client, config }
            }
        };
        let conn = connector.open().map_err(unavailable)?;
        Ok(Self {
            connector,
            conn: ArcSwap::from_pointee(conn),
            timeouts: AtomicU32::new(0),
            timeout,
        })
    }

    /// Whether this is a Redis Cluster (`redis+cluster://`).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.connector, Connector::Cluster { .. })
    }

    /// Runs one call on a clone of the connection, bounded by the timeout; every failure is
    /// `Unavailable`.
    pub(super) async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let conn = (**self.conn.load()).clone();
        // A little above the per-request timeout, which covers the request; this also bounds
        // waiting for a (re)connection.
        let bound = self.timeout + Duration::from_millis(500);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::RedisStore;
    use super::super::keys::Keys;
    use super::super::testing::{
        cluster_url, finish_sent, fp, fresh_prefix, now, opened, redis_url, replica_at,
    };
    use super::*;
    use crate::domain::IncidentId;
    use crate::store::contract::{sample_incident, trigger_row};
    use crate::store::{CommitOutcome, Store};

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

    /// A store on `url` whose calls are bounded by 500 ms, as the outage tests want.
    async fn connected_briefly(url: &str) -> RedisStore {
        RedisStore::connect_with(
            url,
            "vigil",
            RedisOptions {
                timeout: Duration::from_millis(500),
                ..RedisOptions::default()
            },
        )
        .await
        .unwrap()
    }

    /// Three calls in a row fail as `Unavailable`, each well within 2 s: the store's own bound.
    async fn unavailable_quickly(store: &RedisStore, id: IncidentId, gone: &str) {
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let err = store.incident(id).await.expect_err(gone);
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
    }

    /// The same store answers again within `tries` polls 100 ms apart, without being rebuilt.
    async fn recovers(store: &RedisStore, tries: usize) {
        let mut recovered = false;
        for _ in 0..tries {
            if store.stats().await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(recovered, "the store reconnects by itself");
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
        let store = connected_briefly(&server.url()).await;
        let inc = sample_incident(fp("outage"), now());
        store.commit(opened(&inc, vec![])).await.unwrap();
        drop(server);
        unavailable_quickly(&store, inc.id, "Redis is gone").await;
        // Redis returns (empty: no persistence in this test); the same store works again
        // without being rebuilt. The first call may still see the failed connection.
        let server = OwnServer::start(port);
        server.ready().await;
        recovers(&store, 20).await;
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
        let d = trigger_row(&inc, None, t);
        assert_eq!(
            store.commit(opened(&inc, vec![d.clone()])).await.unwrap(),
            CommitOutcome::Committed
        );
        assert_eq!(store.deliveries_due(t, 10).await.unwrap(), vec![d.clone()]);
        finish_sent(store, &d).await;
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
        let d = trigger_row(&inc, None, t);
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
        finish_sent(&b, &d).await;
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
        let store = connected_briefly(&format!("{CLUSTER_SCHEME}{addr}")).await;
        let inc = sample_incident(fp("cluster-outage"), now());
        store.commit(opened(&inc, vec![])).await.unwrap();
        drop(server);
        unavailable_quickly(&store, inc.id, "the node is gone").await;
        // The node returns with its cluster config (its slots), empty of data.
        let server = OwnServer::start_with(port, &args);
        server.ready().await;
        cluster_ok().await;
        recovers(&store, 40).await;
        // Back empty (no persistence here), and writable through the same store.
        let inc = sample_incident(fp("cluster-after"), now());
        assert_eq!(
            store.commit(opened(&inc, vec![])).await.unwrap(),
            CommitOutcome::Committed
        );
        drop(server);
    }
}

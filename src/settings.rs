//! Process settings: where to listen, where the store and the policy live, and the secrets
//! (tokens, keys) — which come only from the environment or from files, never from `routing/`.
//! Changing them needs a restart; the policy in `routing/` reloads live.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::notify::retry::RetryPolicy;

pub use crate::domain::Secret;
pub use crate::pipeline::peer::PeerSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    /// The policy directory (`routing/`).
    pub config_dir: PathBuf,
    /// The message templates (`templates/`).
    pub templates_dir: PathBuf,
    /// Signs acknowledge links (`VIGIL_ACK_LINK_SECRET`); without it, messages carry no link.
    pub ack_link_secret: Option<Secret>,
    /// How long an acknowledge link stays valid.
    pub ack_link_ttl: Duration,
    pub listen: SocketAddr,
    /// Where the endpoints outsiders must reach are served instead (`http::public_router`);
    /// `None` serves everything on `listen`.
    pub public_listen: Option<SocketAddr>,
    /// The embedded store's directory (unused when `redis` is set).
    pub data_dir: PathBuf,
    /// The Redis store, for several replicas sharing state; `None` keeps state in `data_dir`.
    pub redis: Option<RedisSettings>,
    /// vigil's own external URL, for links in notifications.
    pub public_url: Option<String>,
    /// Tokens that may only post events (`/v1/events`, heartbeats).
    pub ingest_tokens: Vec<Secret>,
    /// Tokens that may read and act on incidents (and post events), each tied to a person or not
    /// (`VIGIL_OPERATOR_TOKENS`, [`parse_operator_tokens`]).
    pub operator_tokens: Vec<OperatorToken>,
    /// Signs console session cookies and CSRF tokens (`VIGIL_CONSOLE_KEY`); replicas share it so
    /// each accepts the others' sessions. `None`: a random key per process (sessions end at a
    /// restart and are not accepted by another replica).
    pub console_key: Option<Secret>,
    /// How long a console session lasts after sign-in (`VIGIL_CONSOLE_SESSION_TTL`).
    pub console_session_ttl: Duration,
    /// The API key EventBridge API destinations send in `x-api-key`.
    pub eventbridge_api_key: Option<Secret>,
    /// Verifies Slack interaction requests (`VIGIL_SLACK_SIGNING_SECRET`).
    pub slack_signing_secret: Option<Secret>,
    /// Verify PagerDuty V3 webhooks (`VIGIL_PAGERDUTY_WEBHOOK_SECRETS`; several during rotation).
    pub pagerduty_webhook_secrets: Vec<Secret>,
    /// Test only: extra URL prefixes trusted for SNS signing certificates and SubscribeURLs.
    pub sns_extra_trusted_prefixes: Vec<String>,
    pub retry: RetryPolicy,
    /// `/readyz` fails when the scheduler lags more than this.
    pub max_scheduler_lag: Duration,
    /// How long shutdown may take to drain in-flight work.
    pub shutdown_timeout: Duration,
    /// Watch `config_dir` and reload on change.
    pub watch_config: bool,
    /// Provider endpoints, timeouts and the source of channel secrets.
    pub channels: crate::notify::ChannelSettings,
    /// How long the HTTP server waits for slow and idle clients, and how many it serves at once.
    pub http: HttpLimits,
    /// How long resolved incidents and delivery ids are kept, and how the prune pass runs.
    pub retention: crate::pipeline::prune::Retention,
    /// The warm standby's peer: a standby's primary (`--standby-of`), or a primary's standby
    /// (`--peer`). `None`: a lone primary.
    pub peer: Option<PeerSettings>,
    /// Peer secrets (`VIGIL_PEER_TOKENS`): a side calls its peer with the first and accepts any.
    pub peer_tokens: Vec<Secret>,
}

/// The HTTP server's bounds on slow, idle and numerous clients (README, "Settings").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must arrive within this, counted from its
    /// first byte (or from the accept, for a connection's first request); otherwise the
    /// connection is closed (`VIGIL_HEADER_TIMEOUT`).
    pub header_timeout: Duration,
    /// A request's body must arrive within this, counted from the end of its head; otherwise 408
    /// (`VIGIL_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed (`VIGIL_IDLE_TIMEOUT`).
    pub idle_timeout: Duration,
    /// Connections served at once; one more is answered 503 and closed
    /// (`VIGIL_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_connections: 1024,
        }
    }
}

impl Settings {
    /// Defaults for everything but the directories (tests and embedding).
    pub fn new(config_dir: PathBuf, data_dir: PathBuf) -> Self {
        Self {
            templates_dir: config_dir
                .parent()
                .map(|p| p.join("templates"))
                .unwrap_or_else(|| PathBuf::from("templates")),
            ack_link_secret: None,
            ack_link_ttl: Duration::from_secs(24 * 3600),
            config_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_listen: None,
            data_dir,
            redis: None,
            public_url: None,
            ingest_tokens: Vec::new(),
            operator_tokens: Vec::new(),
            console_key: None,
            console_session_ttl: Duration::from_secs(12 * 3600),
            eventbridge_api_key: None,
            slack_signing_secret: None,
            pagerduty_webhook_secrets: Vec::new(),
            sns_extra_trusted_prefixes: Vec::new(),
            retry: RetryPolicy::default(),
            max_scheduler_lag: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
            watch_config: true,
            channels: crate::notify::ChannelSettings::default(),
            http: HttpLimits::default(),
            retention: crate::pipeline::prune::Retention::default(),
            peer: None,
            peer_tokens: Vec::new(),
        }
    }
}

/// Where the Redis store lives.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` for one server, or
    /// `redis+cluster://[user:password@]host:port[,host:port…]` for a Redis Cluster (seed nodes);
    /// `rediss://` for TLS is not built in. A secret, since it may carry a password.
    pub url: Secret,
    /// Starts every key (as the hash tag `{prefix}`), so several vigil deployments can share one
    /// Redis.
    pub prefix: String,
    /// How long a delivery handed to a replica stays its own without that replica polling;
    /// afterwards another replica takes it over (a dead replica's pages still go out).
    pub lease: Duration,
}

impl RedisSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Secret::new(url),
            prefix: "vigil".into(),
            lease: Duration::from_secs(60),
        }
    }
}

/// Splits a comma-separated token list; empty items are dropped.
pub fn parse_tokens(list: &str) -> Vec<Secret> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .collect()
}

/// An operator token, and the person (an id in `routing/`'s `people`) it belongs to, if any.
/// A person's token attributes what it does to that person (the API's acks and resolves, the
/// console's sign-in); an unnamed token acts as an anonymous operator and cannot sign in to the
/// console.
#[derive(Debug, Clone)]
pub struct OperatorToken {
    pub person: Option<String>,
    pub secret: Secret,
}

impl From<Secret> for OperatorToken {
    fn from(secret: Secret) -> Self {
        Self {
            person: None,
            secret,
        }
    }
}

/// Splits a comma-separated operator token list: `person:token` ties a token to a person, a
/// plain `token` is unnamed. A token can therefore not contain `:` itself unless it is named
/// (`mei:a:b` is `mei`'s token `a:b`).
pub fn parse_operator_tokens(list: &str) -> Vec<OperatorToken> {
    parse_tokens(list)
        .into_iter()
        .map(|t| match t.expose().split_once(':') {
            Some((person, token)) if !person.trim().is_empty() && !token.trim().is_empty() => {
                OperatorToken {
                    person: Some(person.trim().to_owned()),
                    secret: Secret::new(token.trim()),
                }
            }
            _ => t.into(),
        })
        .collect()
}

/// Reads secrets from the variable `name`, or from the file named by `name_FILE`.
pub fn tokens_from_env(name: &str) -> std::io::Result<Vec<Secret>> {
    if let Ok(v) = std::env::var(name) {
        return Ok(parse_tokens(&v));
    }
    if let Ok(path) = std::env::var(format!("{name}_FILE")) {
        let text = std::fs::read_to_string(&path)?;
        return Ok(text.lines().flat_map(parse_tokens).collect());
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_compare_exactly() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert!(s.matches("hunter2"));
        assert!(!s.matches("hunter"));
        assert!(!s.matches("hunter22"));
        assert_eq!(parse_tokens(" a, ,b ").len(), 2);
    }

    #[test]
    fn operator_tokens_name_their_person_before_a_colon() {
        let t = parse_operator_tokens("mei:tok-1, plain ,raj: a:b ,:x");
        let people: Vec<_> = t.iter().map(|t| t.person.as_deref()).collect();
        assert_eq!(people, [Some("mei"), None, Some("raj"), None]);
        assert!(t[0].secret.matches("tok-1"));
        assert!(t[1].secret.matches("plain"));
        assert!(t[2].secret.matches("a:b"));
        assert!(t[3].secret.matches(":x"));
    }
}

//! The `vigil` binary: CLI parsing, tracing, and running the library until a signal arrives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use vigil::app::App;
use vigil::clock::SystemClock;
use vigil::config::reload::load_all;
use vigil::config::{format_errors, load_dir};
use vigil::settings::{RedisSettings, Secret, Settings, parse_operator_tokens, tokens_from_env};

/// mimalloc instead of glibc's malloc: profiles of the ingest path spent about an eighth of all
/// CPU in glibc's malloc and free (BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Alerting and escalation: alarms in, the right people paged until someone takes it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(Box<ServeArgs>),
    /// Validate a policy directory: exit 0, or exit 1 listing every problem.
    Check {
        /// The policy directory.
        #[arg(long, env = "VIGIL_CONFIG", default_value = "routing")]
        config: PathBuf,
        /// The message templates, checked with the policy.
        #[arg(long, env = "VIGIL_TEMPLATES", default_value = "templates")]
        templates: PathBuf,
    },
    /// Show what the policy would do with a payload: labels, rule, severity, incident key and
    /// the escalation timeline.
    /// What changes between two policies for the same events: severity, rule, who is paged,
    /// through which channels, at which minute; per event, then a summary. Exit 0 when nothing
    /// changes, 1 when something does (a gate for a pull request to routing/), 2 on an error.
    Diff {
        /// The policy as it is (a `routing/` directory).
        #[arg(long)]
        from: PathBuf,
        /// The policy as proposed.
        #[arg(long)]
        to: PathBuf,
        /// Payload files or directories of them (what `vigil simulate` accepts), or `.jsonl`
        /// files from `vigil export-alerts`; repeatable. Without it, one probe alert per rule
        /// whose matchers are all equalities.
        #[arg(long)]
        events: Vec<PathBuf>,
        /// The instant to replay at (RFC 3339); default now. Schedules and business hours are
        /// read at this time.
        #[arg(long)]
        at: Option<String>,
    },
    /// Writes the alerts a running vigil took in the last `--since` (one per incident opened,
    /// as JSON lines on stdout) for `vigil diff --events`. Reads `GET /v1/alerts/export` with
    /// the operator token in VIGIL_OPERATOR_TOKEN.
    ExportAlerts {
        /// vigil's base URL (its private listener).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// How far back (`7d`, `24h`).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
    },
    Simulate {
        /// The policy directory.
        #[arg(long, env = "VIGIL_CONFIG", default_value = "routing")]
        config: PathBuf,
        /// The instant to simulate at (RFC 3339, e.g. 2026-11-28T03:00:00+08:00); default now.
        #[arg(long)]
        at: Option<String>,
        /// Payloads to treat as already open incidents (shows inhibition); repeatable.
        #[arg(long = "open")]
        open: Vec<PathBuf>,
        /// An SNS envelope (alarm, RDS or ElastiCache event, SMS reply, any message), an
        /// EventBridge event (alarm, AWS Health, RDS), an Alertmanager webhook notification, or a
        /// trading-bot event (or batch) as JSON.
        event: PathBuf,
    },
    /// Hand paging back from the active standby to its primary (refused unless the primary
    /// answers ready). The operator token comes from VIGIL_OPERATOR_TOKEN (or the first of
    /// VIGIL_OPERATOR_TOKENS).
    HandBack {
        /// The active standby's base URL.
        #[arg(long, env = "VIGIL_STANDBY_URL")]
        url: String,
    },
    /// Is the promise kept? Per severity: incidents, acknowledged in time, p50/p90 time to
    /// acknowledge, escalations beyond step 1, who answered; the incidents that broke the
    /// promise; drills apart. Through the API (GET /v1/reports/response) with
    /// VIGIL_OPERATOR_TOKEN.
    Report {
        /// vigil's base URL (the private listener).
        #[arg(long, env = "VIGIL_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Incidents opened since: a duration back from now (30d, 12h) or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// ...and before: a duration back from now or an RFC 3339 time; default now.
        #[arg(long)]
        until: Option<String>,
        /// Print the report's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Send a TEST message through every channel (or those named) to the people named (or
    /// whoever is on call) and report each: sent with the provider's reference, or the exact
    /// failure. Exit 1 when any failed. Through the API (POST /v1/test-notifications) with
    /// VIGIL_OPERATOR_TOKEN.
    NotifyTest {
        /// vigil's base URL (the private listener).
        #[arg(long, env = "VIGIL_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// A channel of routing/ (repeatable); default every channel.
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// A person of routing/ (repeatable); default whoever is on call now.
        #[arg(long = "person")]
        people: Vec<String>,
    },
}

#[derive(clap::Args)]
#[command(
    after_help = "Secrets, read only from the environment (or from the file named by <NAME>_FILE):\n  \
VIGIL_INGEST_TOKENS, VIGIL_OPERATOR_TOKENS (person:token ties a token to a person of routing/),\n  \
VIGIL_EVENTBRIDGE_API_KEY, VIGIL_SLACK_SIGNING_SECRET,\n  \
VIGIL_PAGERDUTY_WEBHOOK_SECRETS, VIGIL_ACK_LINK_SECRET, VIGIL_SMTP_USERNAME, VIGIL_SMTP_PASSWORD,\n  \
VIGIL_PEER_TOKENS, VIGIL_CONSOLE_KEY,\n  \
and the variables routing/ channels name (routing_key_env, token_env)."
)]
struct ServeArgs {
    /// The policy directory (routing/).
    #[arg(long, env = "VIGIL_CONFIG", default_value = "routing")]
    config: PathBuf,
    /// The message templates.
    #[arg(long, env = "VIGIL_TEMPLATES", default_value = "templates")]
    templates: PathBuf,
    /// How long a signed acknowledge link stays valid (its secret is VIGIL_ACK_LINK_SECRET).
    #[arg(long, env = "VIGIL_ACK_LINK_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    ack_link_ttl: Duration,
    /// How long a console session lasts after sign-in (its key is VIGIL_CONSOLE_KEY).
    #[arg(long, env = "VIGIL_CONSOLE_SESSION_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    console_session_ttl: Duration,
    /// Address to listen on: every endpoint, or with --public-listen all but the public ones
    /// (the operator API, the console, the bot's events, the peer API, /metrics and the probes).
    #[arg(long, env = "VIGIL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve the endpoints outsiders must reach on this address instead: /v1/ingest/sns,
    /// /v1/ingest/eventbridge, /v1/ingest/alertmanager, /v1/slack/interactions,
    /// /v1/pagerduty/webhook, /v1/ack/{token},
    /// and /healthz for the load balancer. Each endpoint then answers only on its own listener
    /// (404 on the other).
    #[arg(long, env = "VIGIL_PUBLIC_LISTEN")]
    public_listen: Option<SocketAddr>,
    /// Directory of the embedded store.
    #[arg(long, env = "VIGIL_DATA", default_value = "data")]
    data: PathBuf,
    /// Keep state in Redis instead, so several replicas can share it; --data is then unused.
    /// One server: redis://[user:password@]host:port[/db]. Redis Cluster:
    /// redis+cluster://[user:password@]host:port[,host:port…] (seed nodes; one reachable node is
    /// enough, the others are discovered; all keys live in the one slot of --redis-prefix).
    #[arg(long, env = "VIGIL_REDIS_URL", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix (and Redis Cluster hash tag) of every key vigil writes to Redis.
    #[arg(long, env = "VIGIL_REDIS_PREFIX", default_value = "vigil")]
    redis_prefix: String,
    /// How long a delivery handed to one replica stays its own without that replica polling;
    /// after that another replica sends it.
    #[arg(long, env = "VIGIL_REDIS_LEASE", default_value = "60s", value_parser = humantime::parse_duration)]
    redis_lease: Duration,
    /// vigil's external base URL, for links in notifications.
    #[arg(long, env = "VIGIL_PUBLIC_URL")]
    public_url: Option<String>,
    /// Log format.
    #[arg(long, env = "VIGIL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Test only: extra trusted URL prefixes for SNS signing certificates and SubscribeURLs
    /// (comma-separated). Never set this in production.
    #[arg(long, env = "VIGIL_SNS_EXTRA_TRUSTED_PREFIXES", value_delimiter = ',')]
    sns_extra_trusted_prefixes: Vec<String>,
    /// A provider's base URL for a channel type, as TYPE=URL (repeatable, or comma-separated in
    /// the variable): `--endpoint pagerduty=http://localhost:8080`. Without one, each type uses
    /// its provider's default.
    #[arg(long = "endpoint", env = "VIGIL_ENDPOINTS", value_delimiter = ',', value_parser = parse_endpoint)]
    endpoints: Vec<(String, String)>,
    /// PagerDuty Events API base URL (default https://events.pagerduty.com); the same as
    /// `--endpoint pagerduty=URL`.
    #[arg(long, env = "VIGIL_PAGERDUTY_URL")]
    pagerduty_url: Option<String>,
    /// Slack Web API base URL (default https://slack.com/api); the same as
    /// `--endpoint slack=URL`.
    #[arg(long, env = "VIGIL_SLACK_API_URL")]
    slack_api_url: Option<String>,
    /// SMTP relay for email channels: smtp+starttls://host:587, smtps://host:465, or
    /// smtp://host:port (no TLS: a local test server only). Credentials come from
    /// VIGIL_SMTP_USERNAME / VIGIL_SMTP_PASSWORD.
    #[arg(long, env = "VIGIL_SMTP_URL")]
    smtp_url: Option<String>,
    /// The sender of email notifications.
    #[arg(
        long,
        env = "VIGIL_SMTP_FROM",
        default_value = "vigil@localhost.localdomain"
    )]
    smtp_from: String,
    /// SNS SMS sender id (3-11 characters), where the destination country supports one.
    #[arg(long, env = "VIGIL_SMS_SENDER_ID")]
    sms_sender_id: Option<String>,
    /// Number, pool or ARN that voice calls come from.
    #[arg(long, env = "VIGIL_VOICE_ORIGINATION_IDENTITY")]
    voice_origination_identity: Option<String>,
    /// AWS region for SMS and voice (AWS_REGION); without one, sms and phone channels are
    /// unavailable. Credentials and endpoints follow the standard AWS environment.
    #[arg(long, env = "AWS_REGION")]
    aws_region: Option<String>,
    /// Attempts per delivery before it fails for good.
    #[arg(long, env = "VIGIL_DELIVERY_MAX_ATTEMPTS", default_value_t = 10)]
    delivery_max_attempts: u32,
    /// First retry backoff (doubles per attempt).
    #[arg(long, env = "VIGIL_DELIVERY_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    delivery_backoff: Duration,
    /// Longest wait between two attempts.
    #[arg(long, env = "VIGIL_DELIVERY_BACKOFF_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    delivery_backoff_max: Duration,
    /// /readyz fails when the scheduler lags more than this.
    #[arg(long, env = "VIGIL_MAX_SCHEDULER_LAG", default_value = "60s", value_parser = humantime::parse_duration)]
    max_scheduler_lag: Duration,
    /// How long shutdown may take to drain.
    #[arg(long, env = "VIGIL_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
    /// A request's line and headers must arrive within this, or the connection is closed.
    #[arg(long, env = "VIGIL_HEADER_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// A request's body must arrive within this after its headers, or it gets 408.
    #[arg(long, env = "VIGIL_BODY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// A kept-alive connection without a request for this long is closed.
    #[arg(long, env = "VIGIL_IDLE_TIMEOUT", default_value = "75s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    #[arg(long, env = "VIGIL_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Resolved incidents (with their timelines) are deleted this long after their resolve.
    #[arg(long, env = "VIGIL_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// SNS MessageIds and EventBridge ids are forgotten this long after they were first seen.
    #[arg(long, env = "VIGIL_MESSAGE_ID_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    message_id_retention: Duration,
    /// Run as the warm standby of the primary at this URL: ingest and open incidents, follow the
    /// primary, page only after a takeover.
    #[arg(long, env = "VIGIL_STANDBY_OF", conflicts_with = "peer")]
    standby_of: Option<String>,
    /// On the primary: its standby's URL, followed too (the primary holds while the standby is
    /// active, and learns what it did).
    #[arg(long, env = "VIGIL_PEER_URL")]
    peer: Option<String>,
    /// The standby takes over when the primary has not answered for this long.
    #[arg(long, env = "VIGIL_TAKEOVER_AFTER", default_value = "60s", value_parser = humantime::parse_duration)]
    takeover_after: Duration,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Check { config, templates } => match load_all(&config, &templates) {
            Ok((policy, _)) => {
                println!(
                    "{}: policy OK ({} rules, {} policies, {} channels, digest {})",
                    config.display(),
                    policy.rules.len(),
                    policy.policies.len(),
                    policy.channels.len(),
                    &policy.digest[..12.min(policy.digest.len())]
                );
                Ok(std::process::ExitCode::SUCCESS)
            }
            Err(errors) => {
                eprintln!("{}", format_errors(&errors));
                eprintln!(
                    "{}: {} problem(s); policy refused",
                    config.display(),
                    errors.len()
                );
                Ok(std::process::ExitCode::FAILURE)
            }
        },
        Command::Simulate {
            config,
            at,
            open,
            event,
        } => {
            let policy = match load_dir(&config) {
                Ok(p) => p,
                Err(errors) => {
                    eprintln!("{}", format_errors(&errors));
                    return Ok(std::process::ExitCode::FAILURE);
                }
            };
            let at = match at {
                Some(s) => chrono::DateTime::parse_from_rfc3339(&s)
                    .with_context(|| format!("--at {s:?} is not RFC 3339"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let body =
                std::fs::read(&event).with_context(|| format!("reading {}", event.display()))?;
            // An SMS reply to a page is not an alert: say what vigil would do with it.
            if let Some(text) = vigil::simulate::sms_reply(&policy, &body) {
                print!("{text}");
                return Ok(std::process::ExitCode::SUCCESS);
            }
            let alerts = vigil::simulate::alerts_from_payload(&body, at)
                .with_context(|| format!("{} is not a payload vigil accepts", event.display()))?;
            let mut already_open = Vec::new();
            for path in &open {
                let body =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                already_open.extend(
                    vigil::simulate::alerts_from_payload(&body, at).with_context(|| {
                        format!("{} is not a payload vigil accepts", path.display())
                    })?,
                );
            }
            for (i, alert) in alerts.iter().enumerate() {
                if alerts.len() > 1 {
                    println!("── event {} of {} ──", i + 1, alerts.len());
                }
                print!(
                    "{}",
                    vigil::simulate::report(&policy, alert, at, &already_open)
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Diff {
            from,
            to,
            events,
            at,
        } => policy_diff(&from, &to, &events, at.as_deref()),
        Command::ExportAlerts { url, since } => export_alerts(&url, since).await,
        Command::Serve(args) => serve(*args).await,
        Command::HandBack { url } => hand_back(&url).await,
        Command::Report {
            url,
            since,
            until,
            json,
        } => report(&url, &since, until.as_deref(), json).await,
        Command::NotifyTest {
            url,
            channels,
            people,
        } => notify_test(&url, channels, people).await,
    }
}

/// `vigil diff`: 0 when nothing changes, 1 when something does, 2 when a policy or an event
/// cannot be read.
fn policy_diff(
    from: &Path,
    to: &Path,
    events: &[PathBuf],
    at: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let load = |dir: &Path| {
        load_dir(dir).map_err(|errors| {
            eprintln!(
                "{}: the policy does not load:\n{}",
                dir.display(),
                format_errors(&errors)
            );
        })
    };
    let (Ok(a), Ok(b)) = (load(from), load(to)) else {
        return Ok(std::process::ExitCode::from(2));
    };
    let at = match at {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .with_context(|| format!("--at {s:?} is not RFC 3339"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let events = if events.is_empty() {
        vigil::simulate::diff::rule_probes(&[&a, &b], at)
    } else {
        match vigil::simulate::diff::load_events(events, at) {
            Ok((events, skipped)) => {
                for note in skipped {
                    eprintln!("{note}");
                }
                events
            }
            Err(e) => {
                eprintln!("{e}");
                return Ok(std::process::ExitCode::from(2));
            }
        }
    };
    let diff = vigil::simulate::diff::diff(&a, &b, &events, at);
    print!("{diff}");
    Ok(std::process::ExitCode::from(u8::from(!diff.is_empty())))
}

/// The operator token for the CLI's API calls: VIGIL_OPERATOR_TOKEN (or `_FILE`), else the
/// first of VIGIL_OPERATOR_TOKENS.
fn operator_token() -> anyhow::Result<String> {
    Ok(tokens_from_env("VIGIL_OPERATOR_TOKEN")
        .context("VIGIL_OPERATOR_TOKEN_FILE")?
        .into_iter()
        .next()
        .or(tokens_from_env("VIGIL_OPERATOR_TOKENS")
            .context("VIGIL_OPERATOR_TOKENS_FILE")?
            .iter()
            .flat_map(|t| parse_operator_tokens(t.expose()))
            .map(|t| t.secret)
            .next())
        .context("set VIGIL_OPERATOR_TOKEN to an operator token")?
        .expose()
        .to_string())
}

/// What the CLI's API commands get back: the status, the headers and the body.
struct Answer {
    status: reqwest::StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// One call of vigil's operator API at `url` + `path` with the operator token, within `timeout`:
/// a GET, or a POST of `json`.
async fn api(
    url: &str,
    path: &str,
    json: Option<serde_json::Value>,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let token = operator_token()?;
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let target = format!("{}{path}", url.trim_end_matches('/'));
    let req = match json {
        Some(body) => client.post(&target).json(&body),
        None => client.get(&target),
    };
    let resp = req
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("cannot reach vigil at {url}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn report(
    url: &str,
    since: &str,
    until: Option<&str>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    // Durations and RFC 3339 times need only `+` and `:` escaped in a query.
    let esc = |v: &str| v.replace('+', "%2B").replace(':', "%3A");
    let mut query = format!("since={}", esc(since));
    if let Some(u) = until {
        query.push_str(&format!("&until={}", esc(u)));
    }
    let Answer { status, body, .. } = api(
        url,
        &format!("/v1/reports/response?{query}"),
        None,
        Duration::from_secs(60),
    )
    .await?;
    if !status.is_success() {
        eprintln!("vigil: report refused ({status}): {body}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    if json {
        println!("{body}");
    } else {
        let report: vigil::pipeline::report::ResponseReport =
            serde_json::from_str(&body).context("the report vigil answered does not read")?;
        print!("{}", report.to_text());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn notify_test(
    url: &str,
    channels: Vec<String>,
    people: Vec<String>,
) -> anyhow::Result<std::process::ExitCode> {
    let Answer { status, body, .. } = api(
        url,
        "/v1/test-notifications",
        Some(serde_json::json!({ "channels": channels, "people": people })),
        Duration::from_secs(120),
    )
    .await?;
    if !status.is_success() {
        eprintln!("vigil: test refused ({status}): {body}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    let answer: serde_json::Value =
        serde_json::from_str(&body).context("vigil's answer is not JSON")?;
    let rows: Vec<vigil::notify::test_message::TestSend> =
        serde_json::from_value(answer["results"].clone())
            .context("vigil's answer has no results")?;
    println!(
        "Test {} ({} sends):",
        answer["test"].as_str().unwrap_or("?"),
        rows.len()
    );
    let mut failed = 0;
    for r in &rows {
        let to = r.person.as_deref().unwrap_or("(channel)");
        match r.outcome {
            vigil::notify::test_message::TestOutcome::Sent => println!(
                "  sent     {} [{}] -> {to}: {}",
                r.channel,
                r.channel_type,
                r.reference.as_deref().unwrap_or("-")
            ),
            vigil::notify::test_message::TestOutcome::Skipped => println!(
                "  skipped  {} [{}]: {}",
                r.channel,
                r.channel_type,
                r.error.as_deref().unwrap_or("")
            ),
            vigil::notify::test_message::TestOutcome::Failed => {
                failed += 1;
                println!(
                    "  FAILED   {} [{}] -> {to}: {}",
                    r.channel,
                    r.channel_type,
                    r.error.as_deref().unwrap_or("")
                )
            }
        }
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("vigil: {failed} test notification(s) failed");
        std::process::ExitCode::FAILURE
    })
}

/// `vigil export-alerts`: streams `GET /v1/alerts/export` to stdout.
async fn export_alerts(url: &str, since: Duration) -> anyhow::Result<std::process::ExitCode> {
    let since = humantime::format_duration(since)
        .to_string()
        .replace(' ', "");
    // `since` is humantime's own text without spaces (`7days`): nothing to escape.
    let Answer {
        status,
        headers,
        body,
    } = api(
        url,
        &format!("/v1/alerts/export?since={since}"),
        None,
        Duration::from_secs(120),
    )
    .await?;
    let truncated = headers.get("x-vigil-truncated").is_some();
    if !status.is_success() {
        eprintln!("{url} answered {status}: {body}");
        return Ok(std::process::ExitCode::FAILURE);
    }
    print!("{body}");
    if truncated {
        eprintln!(
            "only the newest alerts were exported (the endpoint's bound); ask for a shorter --since"
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn hand_back(url: &str) -> anyhow::Result<std::process::ExitCode> {
    let Answer { status, body, .. } = api(
        url,
        "/v1/peer/hand-back",
        Some(serde_json::json!({})),
        Duration::from_secs(30),
    )
    .await?;
    if status.is_success() {
        println!("handed back: {body}");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        eprintln!("vigil: hand-back refused ({status}): {body}");
        Ok(std::process::ExitCode::FAILURE)
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    vigil::telemetry::init(args.log_format == "json", std::io::stdout);
    let mut settings = Settings::new(args.config, args.data);
    settings.templates_dir = args.templates;
    settings.ack_link_ttl = args.ack_link_ttl;
    settings.ack_link_secret = tokens_from_env("VIGIL_ACK_LINK_SECRET")
        .context("VIGIL_ACK_LINK_SECRET_FILE")?
        .into_iter()
        .next();
    settings.listen = args.listen;
    settings.public_listen = args.public_listen;
    settings.redis = args.redis.map(|url| RedisSettings {
        url: Secret::new(url),
        prefix: args.redis_prefix,
        lease: args.redis_lease,
    });
    settings.public_url = args.public_url;
    settings.ingest_tokens =
        tokens_from_env("VIGIL_INGEST_TOKENS").context("VIGIL_INGEST_TOKENS_FILE")?;
    settings.operator_tokens = tokens_from_env("VIGIL_OPERATOR_TOKENS")
        .context("VIGIL_OPERATOR_TOKENS_FILE")?
        .iter()
        .flat_map(|t| parse_operator_tokens(t.expose()))
        .collect();
    settings.console_key = tokens_from_env("VIGIL_CONSOLE_KEY")
        .context("VIGIL_CONSOLE_KEY_FILE")?
        .into_iter()
        .next();
    settings.console_session_ttl = args.console_session_ttl;
    settings.eventbridge_api_key = tokens_from_env("VIGIL_EVENTBRIDGE_API_KEY")
        .context("VIGIL_EVENTBRIDGE_API_KEY_FILE")?
        .into_iter()
        .next()
        .map(|s: Secret| s);
    settings.slack_signing_secret = tokens_from_env("VIGIL_SLACK_SIGNING_SECRET")
        .context("VIGIL_SLACK_SIGNING_SECRET_FILE")?
        .into_iter()
        .next();
    settings.pagerduty_webhook_secrets = tokens_from_env("VIGIL_PAGERDUTY_WEBHOOK_SECRETS")
        .context("VIGIL_PAGERDUTY_WEBHOOK_SECRETS_FILE")?;
    settings.channels.endpoints = args.endpoints.into_iter().collect();
    let named = [
        ("pagerduty", args.pagerduty_url),
        ("slack", args.slack_api_url),
    ];
    for (kind, url) in named {
        if let Some(url) = url {
            settings.channels.endpoints.insert(kind.to_string(), url);
        }
    }
    for kind in settings.channels.endpoints.keys() {
        if vigil::config::channel_types().get(kind).is_none() {
            anyhow::bail!(
                "--endpoint {kind}=...: no channel type {kind:?} (known: {})",
                vigil::config::channel_types().names().join(", ")
            );
        }
    }
    if let Some(url) = args.smtp_url {
        let from = vigil::domain::EmailAddress::parse(&args.smtp_from)
            .map_err(|e| anyhow::anyhow!("VIGIL_SMTP_FROM {:?}: {e}", args.smtp_from))?;
        let named = |var: &str| std::env::var_os(var).map(|_| var.to_string());
        settings.channels.smtp = Some(vigil::notify::SmtpSettings {
            url,
            from,
            username_env: named("VIGIL_SMTP_USERNAME"),
            password_env: named("VIGIL_SMTP_PASSWORD"),
        });
    }
    settings.channels.sms_sender_id = args.sms_sender_id;
    settings.channels.voice_origination_identity = args.voice_origination_identity;
    // Only with a region: without one the SDK would probe the EC2 metadata endpoint.
    if let Some(region) = args.aws_region {
        settings.channels.load_aws(Some(region)).await;
    }
    settings.sns_extra_trusted_prefixes = args.sns_extra_trusted_prefixes;
    if !settings.sns_extra_trusted_prefixes.is_empty() {
        tracing::warn!(prefixes = ?settings.sns_extra_trusted_prefixes, "Extra SNS certificate prefixes are trusted: for tests only.");
    }
    settings.retry.max_attempts = args.delivery_max_attempts.max(1);
    settings.retry.base = args.delivery_backoff;
    settings.retry.max_delay = args.delivery_backoff_max;
    settings.max_scheduler_lag = args.max_scheduler_lag;
    settings.shutdown_timeout = args.shutdown_timeout;
    settings.http = vigil::settings::HttpLimits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections as usize,
    };
    settings.retention.incidents = args.retention;
    settings.retention.message_ids = args.message_id_retention;
    settings.peer_tokens =
        tokens_from_env("VIGIL_PEER_TOKENS").context("VIGIL_PEER_TOKENS_FILE")?;
    settings.peer = match (args.standby_of, args.peer) {
        (Some(url), _) => Some((url, true)),
        (None, Some(url)) => Some((url, false)),
        (None, None) => None,
    }
    .map(|(url, standby)| vigil::settings::PeerSettings {
        url,
        standby,
        takeover_after: args.takeover_after,
    });
    if settings.peer.is_some() && settings.peer_tokens.is_empty() {
        anyhow::bail!("--standby-of / --peer need VIGIL_PEER_TOKENS (the secret both sides share)");
    }
    let app = App::build(settings, Arc::new(SystemClock)).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
/// `TYPE=URL` of `--endpoint`.
fn parse_endpoint(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((kind, url)) if !kind.is_empty() && !url.is_empty() => {
            Ok((kind.trim().to_string(), url.trim().to_string()))
        }
        _ => Err(format!(
            "{s:?} is not TYPE=URL (pagerduty=http://localhost:8080)"
        )),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

//! Wiring: `App::build(settings, clock)` opens the store, loads the policy, builds the notifiers
//! and binds the listener; `run_until_stopped` runs the HTTP server, the escalation scheduler, the
//! delivery worker and the policy watchers until the shutdown future resolves, then drains them in
//! order: stop accepting HTTP → stop firing new steps → finish in-flight deliveries → close the
//! store — within `shutdown_timeout`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{ConfigError, PolicyHandle, format_errors};
use crate::http::{self, Shared};
use crate::ingest::{CertCache, CertFetcher, HttpCertFetcher};
use crate::metrics::Metrics;
use crate::notify::Notifiers;
use crate::notify::worker::DeliveryWorker;
use crate::pipeline::IncidentService;
use crate::pipeline::scheduler::{Scheduler, SchedulerHealth};
use crate::pipeline::service::Wakers;
use crate::settings::Settings;
use crate::store::{EmbeddedStore, RedisOptions, RedisStore, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the policy in {dir} is invalid:\n{text}")]
    Policy {
        dir: String,
        text: String,
        errors: Vec<ConfigError>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// `VIGIL_OPERATOR_TOKENS` ties a token to a person `routing/` does not name: refused at
    /// start, so a typo cannot attribute acknowledgements to nobody.
    #[error(
        "VIGIL_OPERATOR_TOKENS names {0:?}, who is not in routing/'s people (person:token pairs need a person id)"
    )]
    UnknownPerson(String),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("server stopped: {0}")]
    Serve(std::io::Error),
    #[error("the channel types are registered wrongly:\n{}", .0.join("\n"))]
    Channels(Vec<String>),
}

pub struct App {
    listener: TcpListener,
    /// The public endpoints' own listener (`--public-listen`), if any.
    public_listener: Option<TcpListener>,
    shared: Arc<Shared>,
    handle: AppHandle,
}

/// What tests (and `main`) hold on to while the app runs: drive timers and deliveries by hand.
#[derive(Clone)]
pub struct AppHandle {
    pub service: Arc<IncidentService>,
    /// The store itself, for tests and benchmarks that inspect it; the app's own layers reach
    /// it only through the service.
    pub store: Arc<dyn Store>,
    pub policy: Arc<PolicyHandle>,
    pub worker: Arc<DeliveryWorker>,
    pub wake: Wakers,
    pub metrics: Arc<Metrics>,
    pub addr: std::net::SocketAddr,
    /// Where the public endpoints are served when they have a listener of their own.
    pub public_addr: Option<std::net::SocketAddr>,
    scheduler: Arc<Scheduler>,
    retention: crate::pipeline::prune::Retention,
    reconciler: Arc<crate::pipeline::reconcile::Reconciler>,
    dead_letters: Arc<crate::pipeline::dead_letter::DeadLetters>,
    watchdog: Arc<crate::pipeline::watchdog::Watchdog>,
    peer: Option<Arc<crate::pipeline::peer::Peer>>,
}

impl AppHandle {
    /// Runs one peer round now (read the peer's feed, mirror, decide the role); `None` without
    /// a peer, else whether the peer answered.
    pub async fn peer_round_now(&self) -> Option<bool> {
        Some(self.peer.as_ref()?.round().await)
    }

    /// Fires every escalation step due now (by the app's clock).
    pub async fn run_due_escalations(&self) -> usize {
        self.scheduler.pass().await.unwrap_or(0)
    }

    /// Sends every delivery due now and waits for the attempts to be recorded.
    pub async fn run_deliveries(&self) {
        let _ = self.worker.drain().await;
    }

    /// Runs one reconciliation pass over every configured region now; the report by region.
    pub async fn reconcile_now(
        &self,
    ) -> Vec<(
        String,
        Result<crate::pipeline::reconcile::RegionReport, String>,
    )> {
        self.reconciler.pass().await
    }

    /// Receives from every configured dead-letter queue until it answers empty (at most 10
    /// receives each, each waiting up to `wait`); what became of each message, by queue.
    pub async fn drain_dead_letters_now(
        &self,
        wait: std::time::Duration,
    ) -> Vec<(
        String,
        Result<Vec<crate::pipeline::dead_letter::Fate>, String>,
    )> {
        let queues = self.policy.current().sns_dead_letter_queues.clone();
        let mut out = Vec::new();
        for q in queues {
            let r = self.dead_letters.drain(&q, wait, 10).await;
            out.push((q, r));
        }
        out
    }

    /// Runs one retention pass now (by the app's clock).
    pub async fn run_prune(
        &self,
    ) -> Result<crate::pipeline::prune::PruneReport, crate::store::StoreError> {
        crate::pipeline::prune::pass(&self.service, &self.retention).await
    }

    /// Runs one watchdog round now: publishes the heartbeat if configured and ready.
    pub async fn publish_watchdog_now(&self) -> crate::pipeline::watchdog::WatchdogRound {
        self.watchdog.round().await
    }
}

impl App {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<App, AppError> {
        let store: Arc<dyn Store> = match &settings.redis {
            Some(r) => {
                let options = RedisOptions {
                    lease: r.lease,
                    seen_ttl: settings.retention.message_ids,
                    ..RedisOptions::default()
                };
                let store = RedisStore::connect_with(r.url.expose(), &r.prefix, options).await?;
                tracing::info!(
                    prefix = %r.prefix,
                    consumer = %store.consumer(),
                    cluster = store.is_cluster(),
                    "Using the Redis store."
                );
                Arc::new(store)
            }
            None => Arc::new(EmbeddedStore::open(&settings.data_dir)?),
        };
        Self::build_with_store(settings, clock, store, None).await
    }

    /// As `build`, with an explicit store and (optionally) certificate fetcher.
    pub async fn build_with_store(
        settings: Settings,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        cert_fetcher: Option<Arc<dyn CertFetcher>>,
    ) -> Result<App, AppError> {
        crate::notify::check_registry().map_err(AppError::Channels)?;
        let metrics = Arc::new(Metrics::new());
        let policy = PolicyHandle::load(
            &settings.config_dir,
            &settings.templates_dir,
            metrics.clone(),
        )
        .map_err(|errors| AppError::Policy {
            dir: settings.config_dir.display().to_string(),
            text: format_errors(&errors),
            errors,
        })?;
        if let Some(who) = settings
            .operator_tokens
            .iter()
            .filter_map(|t| t.person.as_deref())
            .find(|p| !policy.current().people.contains_key(*p))
        {
            return Err(AppError::UnknownPerson(who.to_owned()));
        }
        let policy = Arc::new(policy);
        let http_client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        // SNS certificate and SubscribeURL fetches: a redirect is a failure, so a trusted URL
        // cannot send vigil to a certificate (or a confirmation) somewhere else.
        let sns_client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let channel_settings = settings.channels.clone();
        let notifiers = Arc::new(ArcSwap::from_pointee(Notifiers::build(
            &policy.current(),
            &channel_settings,
            &http_client,
        )));
        {
            let notifiers = notifiers.clone();
            let http_client = http_client.clone();
            policy.on_swap(move |p| {
                notifiers.store(Arc::new(Notifiers::build(
                    p,
                    &channel_settings,
                    &http_client,
                )));
            });
        }
        let wake = Wakers::default();
        let gate = Arc::new(crate::pipeline::gate::PagingGate::new(
            match &settings.peer {
                Some(p) if p.standby => crate::pipeline::gate::Role::Standby,
                _ => crate::pipeline::gate::Role::Primary,
            },
        ));
        let service = Arc::new(
            IncidentService::new(
                store.clone(),
                policy.clone(),
                clock.clone(),
                metrics.clone(),
                wake.clone(),
            )
            .with_gate(gate),
        );
        let peer = match &settings.peer {
            Some(p) => Some(Arc::new(crate::pipeline::peer::Peer::new(
                p.clone(),
                &settings.peer_tokens,
                service.clone(),
                clock.clone(),
                metrics.clone(),
                // Replicas of a standby share a Redis store, and its role with it.
                settings.redis.is_some(),
            )?)),
            None => None,
        };
        let sms_replies = Arc::new(http::sms_reply::SmsReplies::default());
        let worker = Arc::new(DeliveryWorker::new(
            store.clone(),
            policy.clone(),
            notifiers.clone(),
            clock.clone(),
            metrics.clone(),
            settings.retry.clone(),
            settings.public_url.clone(),
            settings
                .ack_link_secret
                .clone()
                .map(|s| crate::ack::AckSigner::new(s, settings.ack_link_ttl)),
            wake.deliveries.clone(),
        ));
        let health = Arc::new(SchedulerHealth::default());
        let scheduler = Arc::new(Scheduler {
            service: service.clone(),
            policy: policy.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            wake: wake.scheduler.clone(),
            health: health.clone(),
        });
        let aws = Arc::new(crate::pipeline::aws::AwsClients::new(
            settings.channels.aws.clone(),
        ));
        let watchdog = Arc::new(crate::pipeline::watchdog::Watchdog::new(
            crate::pipeline::watchdog::WatchdogParts {
                policy: policy.clone(),
                store: store.clone(),
                scheduler: health.clone(),
                max_scheduler_lag: settings.max_scheduler_lag,
                clients: aws.clone(),
                http_timeout: settings.channels.http_timeout,
                clock: clock.clone(),
                metrics: metrics.clone(),
            },
        ));
        let fetcher = match cert_fetcher {
            Some(f) => f,
            None => Arc::new(HttpCertFetcher::with_client(sns_client.clone())),
        };
        let certs = Arc::new(CertCache::new(
            fetcher,
            settings.sns_extra_trusted_prefixes.clone(),
        ));
        let recovery = Arc::new(crate::pipeline::RecoveryHealth::default());
        let sns = Arc::new(crate::pipeline::sns::SnsIntake {
            service: service.clone(),
            policy: policy.clone(),
            certs: certs.clone(),
            clock: clock.clone(),
        });
        let reconciler = Arc::new(crate::pipeline::reconcile::Reconciler::new(
            service.clone(),
            policy.clone(),
            Arc::new(crate::pipeline::reconcile::SdkAlarms {
                clients: aws.clone(),
            }),
            recovery.clone(),
            metrics.clone(),
        ));
        let dead_letters = Arc::new(crate::pipeline::dead_letter::DeadLetters {
            intake: sns.clone(),
            policy: policy.clone(),
            clients: aws,
            health: recovery.clone(),
            metrics: metrics.clone(),
        });
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| AppError::Bind {
                    addr: settings.listen.to_string(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(AppError::Serve)?;
        let public_listener = match settings.public_listen {
            None => None,
            Some(public) => {
                Some(
                    TcpListener::bind(public)
                        .await
                        .map_err(|source| AppError::Bind {
                            addr: public.to_string(),
                            source,
                        })?,
                )
            }
        };
        let public_addr = public_listener
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(AppError::Serve)?;
        if settings.ingest_tokens.is_empty() && settings.operator_tokens.is_empty() {
            tracing::warn!(
                "No ingest or operator tokens are set (VIGIL_INGEST_TOKENS, VIGIL_OPERATOR_TOKENS): /v1/events and the incident API refuse every request."
            );
        }
        let ack = settings
            .ack_link_secret
            .clone()
            .map(|s| crate::ack::AckSigner::new(s, settings.ack_link_ttl));
        if ack.is_some() && settings.public_url.is_none() {
            tracing::warn!(
                "VIGIL_ACK_LINK_SECRET is set but VIGIL_PUBLIC_URL is not: messages cannot carry acknowledge links."
            );
        }
        let shared = Arc::new(Shared {
            ack: ack.clone(),
            service: service.clone(),
            policy: policy.clone(),
            settings,
            certs,
            http: sns_client,
            metrics: metrics.clone(),
            scheduler: health,
            watchdog: watchdog.health(),
            clock,
            signed: http::auth::signed_slots(),
            sns,
            recovery,
            peer: peer.clone(),
            notifiers: notifiers.clone(),
            sms_replies,
        });
        let handle = AppHandle {
            service,
            store,
            policy,
            worker,
            wake,
            metrics,
            addr,
            public_addr,
            scheduler,
            retention: shared.settings.retention.clone(),
            reconciler,
            dead_letters,
            watchdog,
            peer,
        };
        Ok(App {
            listener,
            public_listener,
            shared,
            handle,
        })
    }

    pub fn port(&self) -> u16 {
        self.handle.addr.port()
    }

    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            listener,
            public_listener,
            shared,
            handle,
        } = self;
        let timeout = shared.settings.shutdown_timeout;
        let stop_http = CancellationToken::new();
        let stop_loops = CancellationToken::new();
        if shared.settings.watch_config
            && let Err(e) = handle.policy.watch(stop_loops.clone())
        {
            tracing::warn!(error.message = %e, "Cannot watch the policy directory; reload with SIGHUP or the API.");
        }
        #[cfg(unix)]
        {
            let policy = handle.policy.clone();
            let stop = stop_loops.clone();
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            got = hup.recv() => {
                                if got.is_none() { break; }
                                let _ = policy.reload("SIGHUP").await;
                            }
                        }
                    }
                });
            }
        }
        let scheduler = {
            let s = handle.scheduler.clone();
            let stop = stop_loops.clone();
            tokio::spawn(async move {
                Scheduler::run_shared(s, stop).await;
            })
        };
        let worker = {
            let w = handle.worker.clone();
            let stop = stop_loops.clone();
            tokio::spawn(async move { w.run(stop).await })
        };
        let pruner = tokio::spawn(crate::pipeline::prune::run(
            handle.service.clone(),
            shared.settings.retention.clone(),
            handle.metrics.clone(),
            stop_loops.clone(),
        ));
        let reconciler = tokio::spawn(handle.reconciler.clone().run(stop_loops.clone()));
        let dead_letters = tokio::spawn(handle.dead_letters.clone().run(stop_loops.clone()));
        let watchdog = tokio::spawn(handle.watchdog.clone().run(stop_loops.clone()));
        let peer = handle
            .peer
            .clone()
            .map(|p| tokio::spawn(p.run(stop_loops.clone())));
        // With a public listener, each endpoint is served on its own listener only; each
        // listener has its own connection cap (`VIGIL_MAX_CONNECTIONS`).
        let (router, public) = match public_listener {
            None => (http::router(shared.clone()), None),
            Some(l) => (
                http::private_router(shared.clone()),
                Some((l, http::public_router(shared.clone()))),
            ),
        };
        let limits = shared.settings.http.clone();
        let server = tokio::spawn(http::server::serve(
            listener,
            router,
            limits.clone(),
            stop_http.clone(),
        ));
        let public_server = public.map(|(l, router)| {
            tokio::spawn(http::server::serve(l, router, limits, stop_http.clone()))
        });
        tracing::info!(addr = %handle.addr, public = ?handle.public_addr, policy = %handle.policy.current().digest, "vigil is listening.");
        shutdown.await;
        tracing::info!("Shutting down.");
        stop_http.cancel();
        let drain = async {
            let mut served = server.await;
            if let Some(public) = public_server {
                let public = public.await;
                if matches!(served, Ok(Ok(()))) {
                    served = public;
                }
            }
            stop_loops.cancel();
            let _ = scheduler.await;
            let _ = worker.await;
            let _ = pruner.await;
            let _ = reconciler.await;
            let _ = dead_letters.await;
            let _ = watchdog.await;
            if let Some(p) = peer {
                let _ = p.await;
            }
            served
        };
        match tokio::time::timeout(timeout, drain).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(AppError::Serve(e)),
            Ok(Err(join)) => Err(AppError::Serve(std::io::Error::other(join.to_string()))),
            Err(_) => {
                tracing::warn!(
                    ?timeout,
                    "Shutdown drain timed out; undelivered rows stay in the outbox for the next start."
                );
                Ok(())
            }
        }
    }
}

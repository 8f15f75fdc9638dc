//! Hot reload of `routing/`. A file change, SIGHUP and `POST /v1/admin/reload` all call
//! `PolicyHandle::reload`: parse → compile → build notifiers → swap, with every error collected
//! first. A policy that fails validation changes nothing: the old one keeps serving, every problem
//! is logged with the same text `vigil check` prints, and `vigil_config_last_reload_success` drops
//! to 0.
//!
//! Open incidents are not reshaped by a reload: each keeps the snapshot of its escalation steps
//! (and its policy's `ack_timeout`) taken when it opened, as PagerDuty and Grafana OnCall do.
//! Everything else is read from the live policy when it is used, so a reload does change, for
//! open incidents too: who is on call (schedules, layers, routing overrides), people's contact
//! details, channels' settings and templates, silences and inhibition rules (checked each time a
//! step falls due), the business-hours calendar (for incidents opened after the reload) and the
//! flap cool-down. A step whose channel was removed records that on the timeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::error::{ConfigError, format_errors};
use super::load::load_dir;
use super::policy::Policy;
use super::templates::Templates;
use crate::metrics::Metrics;

/// Loads the policy and the templates together: both must be valid for either to be used.
pub fn load_all(dir: &Path, templates: &Path) -> Result<(Policy, Templates), Vec<ConfigError>> {
    let policy = load_dir(dir);
    let templates = Templates::load(templates);
    match (policy, templates) {
        (Ok(p), Ok(t)) => Ok((p, t)),
        (p, t) => Err(p.err().into_iter().chain(t.err()).flatten().collect()),
    }
}

type SwapHook = Box<dyn Fn(&Arc<Policy>) + Send + Sync>;

/// The live policy and how to reload it.
pub struct PolicyHandle {
    dir: PathBuf,
    templates_dir: PathBuf,
    current: ArcSwap<Policy>,
    templates: ArcSwap<Templates>,
    /// One reload at a time, so two triggers cannot race their swaps.
    reloading: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    /// Called with each newly swapped-in policy (rebuilds notifiers).
    on_swap: std::sync::Mutex<Vec<SwapHook>>,
    /// The last reload's result, for the console's health page; `None` before the first.
    last: std::sync::Mutex<Option<LastReload>>,
}

/// What the last reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReload {
    /// When it ran (wall time, for people to read).
    pub at: chrono::DateTime<chrono::Utc>,
    /// What asked for it (`api`, `file change`, `SIGHUP`).
    pub trigger: String,
    /// Why the policy was refused; empty when it was taken (or unchanged).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Reloaded { digest: String },
    Unchanged { digest: String },
}

impl PolicyHandle {
    /// Loads `dir` for the first time. Errors are returned, not logged.
    pub fn load(
        dir: &Path,
        templates_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Vec<ConfigError>> {
        let (policy, templates) = load_all(dir, templates_dir)?;
        metrics.config_last_reload_success.set(1.0);
        Ok(Self {
            dir: dir.to_path_buf(),
            templates_dir: templates_dir.to_path_buf(),
            current: ArcSwap::from_pointee(policy),
            templates: ArcSwap::from_pointee(templates),
            reloading: tokio::sync::Mutex::new(()),
            metrics,
            on_swap: std::sync::Mutex::new(Vec::new()),
            last: std::sync::Mutex::new(None),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    pub fn templates(&self) -> Arc<Templates> {
        self.templates.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the last reload did, if there was one since the start.
    pub fn last_reload(&self) -> Option<LastReload> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn record(&self, trigger: &str, problems: Vec<String>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(LastReload {
            at: chrono::Utc::now(),
            trigger: trigger.to_owned(),
            problems,
        });
    }

    pub fn on_swap(&self, f: impl Fn(&Arc<Policy>) + Send + Sync + 'static) {
        self.on_swap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Reloads from disk. `trigger` says why (for the log).
    pub async fn reload(&self, trigger: &str) -> Result<ReloadOutcome, Vec<ConfigError>> {
        let _one = self.reloading.lock().await;
        let dir = self.dir.clone();
        let templates_dir = self.templates_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || load_all(&dir, &templates_dir))
            .await
            .unwrap_or_else(|e| {
                Err(vec![ConfigError {
                    file: self.dir.clone(),
                    line: None,
                    key: String::new(),
                    message: format!("reload task failed: {e}"),
                }])
            });
        match loaded {
            Err(errors) => {
                self.metrics.config_last_reload_success.set(0.0);
                self.metrics
                    .counter("vigil_config_reloads_total", &[("outcome", "refused")])
                    .increment(1);
                tracing::error!(
                    trigger,
                    problems = errors.len(),
                    "Policy reload refused; the running policy stays.\n{}",
                    format_errors(&errors)
                );
                self.record(trigger, errors.iter().map(|e| e.to_string()).collect());
                Err(errors)
            }
            Ok((policy, templates)) => {
                self.metrics.config_last_reload_success.set(1.0);
                // Templates are cheap to swap and have no digest: always take the new ones.
                self.templates.store(Arc::new(templates));
                let digest = policy.digest.clone();
                self.record(trigger, Vec::new());
                if digest == self.current.load().digest {
                    return Ok(ReloadOutcome::Unchanged { digest });
                }
                let policy = Arc::new(policy);
                for f in self
                    .on_swap
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    f(&policy);
                }
                self.current.store(policy);
                self.metrics
                    .counter("vigil_config_reloads_total", &[("outcome", "reloaded")])
                    .increment(1);
                tracing::info!(trigger, digest = %digest, "Policy reloaded.");
                Ok(ReloadOutcome::Reloaded { digest })
            }
        }
    }

    /// Reloads whenever a file in the policy directory changes (debounced), until `stop`.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) -> Result<(), notify::Error> {
        use notify::Watcher;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !matches!(ev.kind, notify::EventKind::Access(_))
                {
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
        let me = self.clone();
        tokio::spawn(async move {
            let _watcher = watcher; // dropped (and the watch ended) when this task ends
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    got = rx.recv() => if got.is_none() { break },
                }
                // Editors write in several steps: wait for the burst to settle.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while rx.try_recv().is_ok() {}
                let _ = me.reload("file change").await;
            }
        });
        Ok(())
    }
}

//! One [`Application`], built the same way by `serve`, the demo and the tests.
//!
//! `build` opens the store, builds the REST client and binds the listener (port 0 picks a free
//! port); `run_until_stopped` runs the intake, the worker and the sweep until the shutdown
//! future resolves, then stops on purpose: intake first (no new event is taken), then the worker
//! between rounds (a round in flight gets until the deadline, after which it is abandoned: its
//! intents are durable and the next start finishes them), then a last flush.
//!
//! Beside them runs the store's recovery: after a failed write (a full disk) the store refuses
//! events until [`Store::recover`] re-opens it, tried every [`STORE_RECOVERY_EVERY`]; the
//! worker then picks up the queue as after a restart.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bitrix::{Client, ClientSettings};
use crate::configuration::Settings;
use crate::intake::{self, IntakeCounters, IntakeState};
use crate::ops::metrics::MetricsState;
use crate::rules::live::{self, Reloader};
use crate::rules::{RuleSet, RulesHandle, RulesStatus};
use crate::store::{Store, StoreError, now_ms};
use crate::worker::counters::Metrics;
use crate::worker::{Activity, Worker, ensure_history_floor, sweep_once};

/// The stop is driven by deadlines on one clock that starts with the signal, so that a slow
/// phase cannot push the next past the spec's promise (SIGTERM to exit within 10 s).
pub mod deadline {
    use std::time::Duration;

    /// Requests in flight get this long to finish once intake is closed; slower ones are dropped.
    pub const HTTP_GRACE: Duration = Duration::from_secs(3);
    /// Rounds in flight, and their REST calls, are abandoned at this point: their intents are
    /// durable, and the next start looks up what such a call may have made before it makes it.
    pub const WORK: Duration = Duration::from_secs(8);
    /// The last flush of the store must be over by then; past it the stop is reported as failed
    /// (every acknowledged event was flushed before its 200 anyway).
    pub const FLUSH: Duration = Duration::from_secs(9);
    /// `serve` exits at this point whatever is still running: a store call that never returns
    /// (sled retrying a failed disk), a destructor, a blocking task (see [`super::Watchdog`]).
    pub const EXIT: Duration = Duration::from_millis(9_500);
}

/// Ends the process at a deadline, whatever holds it up. Armed by `serve` when the stop begins;
/// the code it exits with is the one [`Watchdog::set_outcome`] gave (the stop's own result), or
/// 1 when the stop had not finished.
#[derive(Clone)]
pub struct Watchdog {
    outcome: Arc<std::sync::atomic::AtomicU8>,
}

/// [`Watchdog`]'s outcome before the stop has one.
const NO_OUTCOME: u8 = u8::MAX;

impl Watchdog {
    pub fn new() -> Watchdog {
        Watchdog {
            outcome: Arc::new(std::sync::atomic::AtomicU8::new(NO_OUTCOME)),
        }
    }

    /// The exit code the stop came to; the watchdog uses it if the process is still held up.
    pub fn set_outcome(&self, code: u8) {
        self.outcome
            .store(code.min(NO_OUTCOME - 1), Ordering::SeqCst);
    }

    /// Exits the process at `at` (see [`Watchdog::arm_with`]).
    pub fn arm(&self, at: std::time::Instant) {
        self.arm_with(at, |code| std::process::exit(i32::from(code)));
    }

    /// Calls `expire` with the exit code at `at`, on a thread of its own: a runtime whose threads
    /// are all blocked cannot stop it.
    pub fn arm_with(&self, at: std::time::Instant, expire: impl FnOnce(u8) + Send + 'static) {
        let outcome = self.outcome.clone();
        let spawned = std::thread::Builder::new()
            .name("b24-robot-stop".into())
            .spawn(move || {
                std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                let code = match outcome.load(Ordering::SeqCst) {
                    NO_OUTCOME => 1,
                    code => code,
                };
                if code == 0 {
                    tracing::warn!("stopped, but the process was still held up at the deadline: exiting now");
                } else {
                    tracing::error!(
                        "the stop did not finish within its deadline: exiting now (every acknowledged event is on disk; the next start finishes the work)"
                    );
                }
                expire(code);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the shutdown watchdog");
        }
    }
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog::new()
    }
}
/// How often a store that cannot write checks whether the disk has room again.
pub const STORE_RECOVERY_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "portal.webhook_url is not set: give the incoming webhook's URL (https://<portal>/rest/<user>/<code>/)"
    )]
    NoWebhook,
    #[error("portal client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: String, error: std::io::Error },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error(
        "the store did not flush within the shutdown deadline (every acknowledged event was flushed before its answer)"
    )]
    FlushDeadline,
}

/// The REST client the settings describe.
pub fn client(settings: &Settings) -> Result<Client, StartupError> {
    let webhook = settings
        .portal
        .webhook_url
        .clone()
        .ok_or(StartupError::NoWebhook)?;
    let webhook_url = url::Url::parse(webhook.expose())
        .map_err(|e| StartupError::Client(format!("portal.webhook_url: {e}")))?;
    Client::new(ClientSettings {
        webhook_url,
        requests_per_second: settings.portal.requests_per_second,
        burst: settings.portal.burst,
        timeout: settings.portal.timeout,
        max_attempts: settings.portal.max_attempts,
        backoff_base: settings.portal.retry_base,
        backoff_max: settings.portal.retry_max,
        max_response: settings.portal.max_response,
        resolve: Vec::new(),
    })
    .map_err(|e| StartupError::Client(e.to_string()))
}

pub struct Application {
    /// Bound at build (port 0 picks a free one), so tests know the port before it serves.
    listener: TcpListener,
    port: u16,
    settings: Settings,
    /// Rounds, the sweep, backfill: everything that reads and writes the portal.
    worker: Arc<Worker>,
    /// What the event handler needs (the store, the scheduler to wake, counters).
    intake: IntakeState,
    /// The rules in force, shared by the worker, the health checks and the metrics; swapped by
    /// the reload.
    rules: RulesHandle,
    /// What the rules folder holds next to the rules in force (`/readyz`, `/metrics`).
    rules_status: RulesStatus,
    /// Counters of the worker and the reload, read by `/metrics`.
    metrics: Arc<Metrics>,
    /// Re-read `rules.dir` on SIGHUP and on changes ([`Application::with_rule_reload`]).
    reload_rules: bool,
}

impl Application {
    pub async fn build(settings: Settings, rules: RuleSet) -> Result<Application, StartupError> {
        Application::build_with_activity(settings, rules, None).await
    }

    /// As [`Application::build`], with a channel that receives what the worker does.
    pub async fn build_with_activity(
        settings: Settings,
        rules: RuleSet,
        activity: Option<mpsc::UnboundedSender<Activity>>,
    ) -> Result<Application, StartupError> {
        let client = client(&settings)?;

        std::fs::create_dir_all(&settings.storage.dir).map_err(|e| {
            StoreError::Sled(sled::Error::Io(std::io::Error::new(
                e.kind(),
                format!("storage.dir {}: {e}", settings.storage.dir.display()),
            )))
        })?;
        let store = Store::open_with_cache(&settings.storage.dir, settings.storage.cache)?;
        let rules = RulesHandle::new(rules);
        let worker = Arc::new(Worker::new(
            &settings,
            store.clone(),
            client,
            rules.clone(),
            activity,
        ));
        let scheduler = worker.scheduler.clone();
        let metrics = worker.metrics.clone();

        // The starting point of the stage history, before any event can be taken, so that a move
        // made right after the first start is acted on. An unreachable portal does not stop the
        // start: the sweep sets the floor later and the queued events wait for it.
        let first_start = store.history_floor()?.is_none();
        if first_start {
            let wait = settings.portal.timeout.min(Duration::from_secs(10));
            match tokio::time::timeout(wait, ensure_history_floor(&worker)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "stage history starting point not read yet; will retry")
                }
                Err(_) => tracing::warn!(
                    "stage history starting point not read yet (portal slow); will retry"
                ),
            }
        }

        let listener = TcpListener::bind(settings.server.listen)
            .await
            .map_err(|error| StartupError::Listen {
                addr: settings.server.listen.to_string(),
                error,
            })?;
        let port = listener.local_addr().map_err(StartupError::Serve)?.port();
        let intake = IntakeState {
            store,
            scheduler,
            application_token: settings.portal.application_token.clone(),
            dedupe_window: settings.sync.dedupe_window,
            counters: Arc::new(IntakeCounters::default()),
            closing: Arc::new(AtomicBool::new(false)),
            refusals: Arc::default(),
        };
        Ok(Application {
            listener,
            port,
            settings,
            worker,
            intake,
            rules,
            rules_status: RulesStatus::default(),
            metrics,
            reload_rules: false,
        })
    }

    /// Re-reads `rules.dir` on SIGHUP and whenever a file in it changes (see [`crate::rules::live`]).
    /// For an application whose rules came from that folder (`serve`), not from elsewhere.
    #[must_use]
    pub fn with_rule_reload(mut self) -> Application {
        self.reload_rules = true;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Store {
        self.intake.store.clone()
    }

    pub fn counters(&self) -> Arc<IntakeCounters> {
        self.intake.counters.clone()
    }

    /// Runs until `shutdown` resolves, then stops in order (see the module documentation).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Application {
            listener,
            settings,
            worker,
            intake,
            rules,
            rules_status,
            metrics,
            reload_rules,
            ..
        } = self;
        if application_token_missing(&settings) {
            tracing::warn!("portal.application_token is empty: every event will be refused (401)");
        }
        let restored = worker.restore_queue()?;
        if restored > 0 {
            tracing::info!(deals = restored, "resuming queued work from the store");
        }

        let stop_worker = CancellationToken::new();
        let worker_task = tokio::spawn(worker.clone().run(stop_worker.clone()));
        let stop_background = CancellationToken::new();
        let sweeper = tokio::spawn(run_sweeper(
            worker.clone(),
            settings.sync.poll_interval,
            stop_background.clone(),
        ));
        let recovery = tokio::spawn(run_store_recovery(
            worker.clone(),
            STORE_RECOVERY_EVERY,
            stop_background.clone(),
        ));
        let pruner = tokio::spawn(run_pruner(
            intake.store.clone(),
            settings.sync.dedupe_window,
            settings.storage.decisions_retention,
            stop_background.clone(),
        ));

        let reloader = reload_rules.then(|| {
            tokio::spawn(live::run(
                Reloader {
                    dir: settings.rules.dir.clone(),
                    rules: rules.clone(),
                    status: rules_status.clone(),
                },
                stop_background.clone(),
            ))
        });

        let closing = intake.closing.clone();
        let stop_http = CancellationToken::new();
        let admin = crate::ops::admin::router(crate::ops::admin::AdminState {
            store: intake.store.clone(),
            scheduler: intake.scheduler.clone(),
            token: settings.server.admin_token.clone(),
            backfill: Some(crate::worker::backfill::Service::new(
                worker.clone(),
                stop_background.clone(),
            )),
            store_timeout: settings.server.request_timeout,
        });
        let connections = Arc::new(crate::http::ConnectionStats::default());
        let app = intake::router(
            intake.clone(),
            settings.server.max_body,
            settings.server.request_timeout,
        )
        .merge(crate::ops::health::router(
            crate::ops::health::HealthState {
                store: intake.store.clone(),
                rules: rules.clone(),
                rules_status: rules_status.clone(),
                closing: intake.closing.clone(),
                portal: worker.client.clone(),
            },
        ))
        .merge(admin)
        .merge(crate::ops::metrics::router(MetricsState {
            metrics,
            intake: intake.counters.clone(),
            store: intake.store.clone(),
            client: worker.client.clone(),
            rules,
            rules_status,
            connections: connections.clone(),
            oldest: Arc::default(),
        }));
        // Served by hand rather than by `axum::serve`: a header-read timeout and connection
        // limits (slow-loris clients), see `crate::http`.
        let http = tokio::spawn(crate::http::serve_with_stats(
            listener,
            app,
            crate::http::Limits {
                max_connections: settings.server.max_connections,
                max_connections_per_client: settings.server.max_connections_per_client,
                ..crate::http::Limits::for_request_timeout(settings.server.request_timeout)
            },
            connections,
            stop_http.clone(),
            deadline::HTTP_GRACE,
        ));
        tracing::info!(listen = %settings.server.listen, "b24-robot is serving");

        shutdown.await;
        tracing::info!("shutting down: intake closed, finishing the work in progress");
        let stopping = tokio::time::Instant::now();
        let deadline = stopping + deadline::WORK;
        closing.store(true, Ordering::SeqCst);
        stop_http.cancel();
        stop_background.cancel();
        stop_worker.cancel();

        if tokio::time::timeout_at(deadline, worker_task)
            .await
            .is_err()
        {
            tracing::warn!(
                "a round was still in flight at the deadline: abandoned (its intents are kept)"
            );
        }
        let _ = tokio::time::timeout_at(deadline, sweeper).await;
        pruner.abort();
        recovery.abort();
        if let Some(reloader) = reloader {
            let _ = tokio::time::timeout_at(deadline, reloader).await;
        }
        if tokio::time::timeout_at(deadline, http).await.is_err() {
            tracing::warn!("open connections did not close in time");
        }
        match tokio::time::timeout_at(stopping + deadline::FLUSH, intake.store.flush_async()).await
        {
            Ok(flushed) => flushed?,
            Err(_) => return Err(StartupError::FlushDeadline),
        }
        tracing::info!(took_ms = stopping.elapsed().as_millis() as u64, "stopped");
        Ok(())
    }
}

fn application_token_missing(settings: &Settings) -> bool {
    settings.portal.application_token.is_empty()
}

/// The sweep at start-up and every `poll_interval`; a failed pass is retried at the next tick.
async fn run_sweeper(worker: Arc<Worker>, every: Duration, stop: CancellationToken) {
    let mut retry = Duration::from_millis(500);
    loop {
        let wait = match sweep_once(&worker).await {
            Ok(_) => {
                retry = Duration::from_millis(500);
                every
            }
            Err(error) => {
                tracing::warn!(%error, "sweep failed; will retry");
                retry = (retry * 2).min(every);
                retry
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Every `every`, while the store cannot write: tries to re-open it ([`Store::recover`], on a
/// blocking thread), and once it can write again puts the queue back into the scheduler, as a
/// restart would (rounds that failed meanwhile are retried anyway; this is for the rest).
async fn run_store_recovery(worker: Arc<Worker>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        if worker.store.write_failure().is_none() {
            continue;
        }
        let worker = worker.clone();
        let recovered = tokio::task::spawn_blocking(move || {
            if !worker.store.recover()? {
                return Ok(None);
            }
            worker.restore_queue().map(Some)
        })
        .await;
        match recovered {
            Ok(Ok(Some(deals))) => {
                tracing::info!(deals, "queued work resumed after the store recovered")
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "re-opening the store failed; will retry"),
            Err(error) => tracing::error!(%error, "the store's recovery stopped; will retry"),
        }
    }
}

/// Forgets old delivery keys now and then, so the dedupe tree stays bounded; and, less often,
/// the stage entries and decisions older than `storage.decisions_retention`.
async fn run_pruner(store: Store, window: Duration, retention: Duration, stop: CancellationToken) {
    let every = (window / 24).clamp(Duration::from_secs(10), Duration::from_secs(600));
    let mut last_entries_prune: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let entries_due =
            last_entries_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        if entries_due {
            last_entries_prune = Some(std::time::Instant::now());
        }
        let store = store.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            store.prune_dedupe(now_ms(), window)?;
            if entries_due {
                let cutoff = now_ms().saturating_sub(retention.as_millis() as u64);
                let removed = store.prune_entries(cutoff)?;
                if removed > 0 {
                    tracing::info!(
                        removed,
                        "stage entries past storage.decisions_retention forgotten"
                    );
                }
            }
            Ok::<(), StoreError>(())
        })
        .await;
        if let Ok(Err(error)) = pruned {
            tracing::warn!(%error, "pruning the store failed");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::Watchdog;

    #[test]
    fn the_watchdog_fires_at_its_deadline_with_the_stop_outcome_or_1() {
        let (fired, expired) = mpsc::channel();
        let unfinished = Watchdog::new();
        let started = Instant::now();
        let sender = fired.clone();
        unfinished.arm_with(started + Duration::from_millis(50), move |code| {
            let _ = sender.send(("unfinished", code, started.elapsed()));
        });
        let finished = Watchdog::new();
        finished.set_outcome(0);
        finished.arm_with(started + Duration::from_millis(80), move |code| {
            let _ = fired.send(("finished", code, started.elapsed()));
        });

        // Real time: the watchdog is a plain thread that sleeps until an `Instant`.
        let first = expired.recv_timeout(Duration::from_secs(5)).expect("fired");
        let second = expired.recv_timeout(Duration::from_secs(5)).expect("fired");
        assert_eq!((first.0, first.1), ("unfinished", 1));
        assert!(first.2 >= Duration::from_millis(50), "{:?}", first.2);
        assert_eq!((second.0, second.1), ("finished", 0));
        assert!(second.2 >= Duration::from_millis(80), "{:?}", second.2);
    }
}

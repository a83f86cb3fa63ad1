//! One [`Application`], built the same way by `serve`, the demo and the tests.
//!
//! `build` opens the store, builds the REST client and binds the listener (port 0 picks a free
//! port); `run_until_stopped` (`run.rs`) runs the intake, the worker and the sweep until the
//! shutdown future resolves, then stops on purpose: intake first (no new event is taken), then
//! the worker between rounds (a round in flight gets until the deadline, after which it is
//! abandoned: its intents are durable and the next start finishes them), then a last flush.
//! The deadlines, the signal and the watchdog that keeps them are in `stop.rs`.
//!
//! Beside them run the background loops (`background.rs`), among them the store's recovery:
//! after a failed write (a full disk) the store refuses events until [`Store::recover`]
//! re-opens it, tried every [`STORE_RECOVERY_EVERY`]; the worker then picks up the queue as
//! after a restart.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::bitrix::{Client, ClientSettings};
use crate::configuration::Settings;
use crate::intake::{IntakeCounters, IntakeState};
use crate::rules::{RuleSet, RulesHandle, RulesStatus};
use crate::store::{Store, StoreError};
use crate::worker::counters::Metrics;
use crate::worker::{Activity, Worker};

mod background;
mod run;
mod stop;

pub use background::STORE_RECOVERY_EVERY;
pub use stop::{Watchdog, deadline, shutdown_signal};

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

    /// The clock of the time-driven rules (timers, SLAs, digests): a test or the demo shares
    /// one with the simulated portal and moves it on. Before the application runs.
    #[must_use]
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Application {
        match Arc::get_mut(&mut self.worker) {
            Some(worker) => worker.clock = clock,
            None => tracing::warn!("the clock can only be set before the application runs"),
        }
        self
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
}

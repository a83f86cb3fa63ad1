//! [`Application::run_until_stopped`]: the routes of the one listener, the worker and the
//! background loops, served until the shutdown future resolves; then the stop in order, each
//! phase bounded by its [`deadline`] on one clock that starts with the signal.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use tokio_util::sync::CancellationToken;

use super::background::Background;
use super::stop::deadline;
use super::{Application, StartupError};
use crate::configuration::Settings;
use crate::http::ConnectionStats;
use crate::intake::{self, IntakeState};
use crate::ops::metrics::MetricsState;
use crate::rules::live::Reloader;
use crate::rules::{RulesHandle, RulesStatus};
use crate::worker::Worker;
use crate::worker::counters::Metrics;

impl Application {
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
        // The first start's moment, on the service's clock (the portal's time, which its stage
        // history is written in), before any event is taken: the stage history's starting point
        // is the newest entry made before it, read by the sweep once the portal answers (at once
        // when it does, later when not: the intake does not wait for it, and the rounds do).
        // See `ensure_history_floor`.
        if intake.store.history_floor()?.is_none() {
            let at = intake
                .store
                .init_first_start_ms(worker.clock.now_ms().max(0) as u64 / 1000 * 1000)?;
            intake.store.flush()?;
            tracing::debug!(first_start_ms = at, "first start recorded");
        }
        let restored = worker.restore_queue()?;
        if restored > 0 {
            tracing::info!(deals = restored, "resuming queued work from the store");
        }

        let stop_worker = CancellationToken::new();
        let worker_task = tokio::spawn(worker.clone().run(stop_worker.clone()));
        let stop_background = CancellationToken::new();
        let background = Background::spawn(
            &worker,
            intake.store.clone(),
            &settings,
            reload_rules.then(|| Reloader {
                dir: settings.rules.dir.clone(),
                rules: rules.clone(),
                status: rules_status.clone(),
            }),
            &stop_background,
        );

        let closing = intake.closing.clone();
        let stop_http = CancellationToken::new();
        let connections = Arc::new(ConnectionStats::default());
        let app = routes(
            &settings,
            &intake,
            &worker,
            Shared {
                rules,
                rules_status,
                metrics,
                connections: connections.clone(),
            },
            &stop_background,
        );
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
        background.finish(deadline).await;
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

/// What the health checks and `/metrics` read beside the intake's state.
struct Shared {
    rules: RulesHandle,
    rules_status: RulesStatus,
    metrics: Arc<Metrics>,
    connections: Arc<ConnectionStats>,
}

/// The one listener's routes: the intake, the health checks, the admin API (whose backfills
/// stop with the background loops, on `stop_background`) and `/metrics`.
fn routes(
    settings: &Settings,
    intake: &IntakeState,
    worker: &Arc<Worker>,
    shared: Shared,
    stop_background: &CancellationToken,
) -> Router {
    let Shared {
        rules,
        rules_status,
        metrics,
        connections,
    } = shared;
    let admin_state = crate::ops::admin::AdminState {
        store: intake.store.clone(),
        scheduler: intake.scheduler.clone(),
        token: settings.server.admin_token.clone(),
        backfill: Some(crate::worker::backfill::Service::new(
            worker.clone(),
            stop_background.clone(),
        )),
        store_timeout: settings.server.request_timeout,
    };
    let ui = crate::ops::ui::router(crate::ops::ui::UiState::new(
        admin_state.clone(),
        rules_status.clone(),
        settings.ui.clone(),
    ));
    let admin = crate::ops::admin::router(admin_state).merge(ui);
    intake::router(
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
        connections,
        oldest: Arc::default(),
    }))
}

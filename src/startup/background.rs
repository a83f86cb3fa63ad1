//! The loops that run beside the intake and the worker: the control loop of the time-driven
//! rules (`crate::worker::control`), the sweep of the stage history, the
//! store's recovery after a failed write, the pruning of old keys and entries, and (for
//! `serve`) the rules' reload. They start together and stop together, on one token.
//!
//! The recovery: after a failed write (a full disk) the store refuses events until
//! [`Store::recover`] re-opens it, tried every [`STORE_RECOVERY_EVERY`]; the worker then picks
//! up the queue as after a restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::configuration::Settings;
use crate::rules::live::{self, Reloader};
use crate::store::{Store, StoreError, now_ms};
use crate::worker::control::Control;
use crate::worker::{Worker, sweep_once};

/// How often a store that cannot write checks whether the disk has room again.
pub const STORE_RECOVERY_EVERY: Duration = Duration::from_millis(500);

/// The background loops of one run, stopped by the token they were spawned with.
pub(super) struct Background {
    sweeper: JoinHandle<()>,
    recovery: JoinHandle<()>,
    pruner: JoinHandle<()>,
    reloader: Option<JoinHandle<()>>,
    /// Timers, the control sweep and the digests (`crate::worker::control`).
    control: JoinHandle<()>,
}

impl Background {
    /// Spawns the loops; `reload` is the rules' reload, for an application that has one.
    pub(super) fn spawn(
        worker: &Arc<Worker>,
        store: Store,
        settings: &Settings,
        reload: Option<Reloader>,
        stop: &CancellationToken,
    ) -> Background {
        Background {
            sweeper: tokio::spawn(run_sweeper(
                worker.clone(),
                settings.sync.poll_interval,
                stop.clone(),
            )),
            recovery: tokio::spawn(run_store_recovery(
                worker.clone(),
                STORE_RECOVERY_EVERY,
                stop.clone(),
            )),
            pruner: tokio::spawn(run_pruner(
                store,
                settings.sync.dedupe_window,
                settings.storage.decisions_retention,
                stop.clone(),
            )),
            reloader: reload.map(|reloader| tokio::spawn(live::run(reloader, stop.clone()))),
            control: tokio::spawn(
                Control::new(worker.clone(), settings.control.poll_interval).run(stop.clone()),
            ),
        }
    }

    /// Once the token is cancelled: the sweep and the reload get until `deadline` to end; the
    /// pruner and the recovery, which hold nothing that needs finishing, are aborted.
    pub(super) async fn finish(self, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, self.sweeper).await;
        let _ = tokio::time::timeout_at(deadline, self.control).await;
        self.pruner.abort();
        self.recovery.abort();
        if let Some(reloader) = self.reloader {
            let _ = tokio::time::timeout_at(deadline, reloader).await;
        }
    }
}

/// The sweep at start-up and every `poll_interval`; a failed pass is retried at the next tick.
/// While the portal is unreachable the sweep waits for it to answer (the client's probe finds
/// out) rather than failing again and again.
async fn run_sweeper(worker: Arc<Worker>, every: Duration, stop: CancellationToken) {
    let mut retry = Duration::from_millis(500);
    loop {
        tokio::select! {
            _ = worker.client.until_reachable() => {}
            _ = stop.cancelled() => return,
        }
        let wait = match sweep_once(&worker).await {
            Ok(_) => {
                retry = Duration::from_millis(500);
                every
            }
            // The portal went away: the loop waits for it to answer again.
            Err(_) if worker.client.down_since().is_some() => continue,
            Err(error) => {
                tracing::warn!(%error, "sweep failed; will retry");
                retry = (retry * 2).min(every);
                retry
            }
        };
        if stopped_during(wait, &stop).await {
            return;
        }
    }
}

/// Every `every`, while the store cannot write: tries to re-open it ([`Store::recover`], on a
/// blocking thread), and once it can write again puts the queue back into the scheduler, as a
/// restart would (rounds that failed meanwhile are retried anyway; this is for the rest).
async fn run_store_recovery(worker: Arc<Worker>, every: Duration, stop: CancellationToken) {
    loop {
        if stopped_during(every, &stop).await {
            return;
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
        if stopped_during(every, &stop).await {
            return;
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

/// Waits `wait`, or less if `stop` is cancelled meanwhile: then true.
async fn stopped_during(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.cancelled() => true,
    }
}

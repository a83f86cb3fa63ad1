//! The control loop: what must happen when nothing happens (`control.md`), beside the rounds.
//!
//! Three duties share one loop, on the rules' [`Clock`]:
//! - **Timers.** A pending timer that falls due puts its deal in the queue; the deal's round
//!   re-reads it with its newest history entry in the round's shared `batch` and fires or
//!   skips the timer there (`crate::worker`'s `timers`), through the same intents as every
//!   effect. The loop reads the due timers from the front of the store's ordered due tree and
//!   sleeps until the next one (at most a second, and it wakes at once when the clock jumps).
//! - **The control sweep** every `control.poll_interval` ([`sweep`]): the tasks and open deals
//!   `[[overdue]]` and `[[no_task]]` watch, read in shared `batch`es; their notices are recorded
//!   as effects of the deal they concern and the deal is queued, so the worker sends them.
//! - **Digests** at their slots ([`digests`]): one notification per recipient and slot.
//!
//! Reads and writes go through the worker's one client and bucket, after the event-driven
//! work (the sweep waits while rounds are running).

pub mod digests;
pub mod sweep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::store::{StoreError, now_ms};
use crate::worker::Worker;

/// Most due timers handed to the worker per turn of the loop.
const DUE_PER_TURN: usize = 1_000;

/// How long a deal handed to the worker for a due timer is left to it before the loop hands
/// it again (its round may have failed, or the portal be down).
const HAND_AGAIN_AFTER_MS: u64 = 60_000;

/// The control loop of one service.
pub struct Control {
    worker: Arc<Worker>,
    clock: Clock,
    poll_interval: Duration,
    /// Due timers (deal, due moment) handed to the worker, and when (real ms): a timer re-armed
    /// for its next repetition has another due moment and is handed again.
    handed: HashMap<(u64, u64), u64>,
    next_sweep_ms: i64,
    /// Digest slots already handled this run (sent, skipped or found done).
    digests: digests::Slots,
    /// The version of the rules the pending timers were last timed by.
    timed_by: Option<String>,
}

impl Control {
    pub fn new(worker: Arc<Worker>, poll_interval: Duration) -> Control {
        let clock = worker.clock.clone();
        Control {
            worker,
            clock,
            poll_interval,
            handed: HashMap::new(),
            next_sweep_ms: 0,
            digests: digests::Slots::default(),
            timed_by: None,
        }
    }

    /// Runs until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            if stop.is_cancelled() {
                return;
            }
            // While the store cannot write (a full disk) nothing can be queued: the store's
            // recovery comes first, and the due timers wait for it (they stay due).
            let writable = self.worker.store.write_failure().is_none();
            if writable && let Err(error) = self.hand_due_timers().await {
                tracing::warn!(%error, "timers: cannot read the store; will retry");
            }
            let now = self.clock.now_ms();
            let rules = self.worker.rules.current();
            if self.timed_by.as_deref() != Some(rules.version()) {
                let (worker, set) = (self.worker.clone(), rules.clone());
                let retimed = tokio::task::spawn_blocking(move || retime(&worker, &set))
                    .await
                    .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())));
                match retimed {
                    Ok(()) => self.timed_by = Some(rules.version().to_string()),
                    Err(error) => {
                        tracing::warn!(%error, "timers: cannot re-time them for the rules in force; will retry")
                    }
                }
            }
            if now >= self.next_sweep_ms && self.worker.client.down_since().is_none() {
                if rules.controls().sweeps() {
                    match sweep::sweep(&self.worker, &rules).await {
                        Ok(report) => {
                            self.worker.metrics.control_sweep(true);
                            tracing::debug!(?report, "control sweep done");
                        }
                        Err(error) => {
                            self.worker.metrics.control_sweep(false);
                            tracing::warn!(%error, "control sweep failed; will retry at the next one");
                        }
                    }
                }
                self.next_sweep_ms = self.clock.now_ms() + self.poll_interval.as_millis() as i64;
            }
            if !rules.controls().digests().is_empty() && self.worker.client.down_since().is_none() {
                digests::due(&self.worker, &rules, &mut self.digests).await;
            }
            let next_timer = off_the_runtime(&self.worker.store, |store| store.next_timer_due())
                .await
                .ok()
                .flatten()
                .map_or(i64::MAX, |due| due as i64);
            // A timer already due is with the worker (handed above): look again in a second,
            // never spin on it.
            let now = self.clock.now_ms();
            let next_timer = if next_timer <= now {
                now + 1_000
            } else {
                next_timer
            };
            let wake_at = next_timer.min(self.next_sweep_ms.max(now + 1));
            tokio::select! {
                _ = self.clock.sleep_until(wake_at, Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Queues the deals of the timers due now (each once until its round had a minute).
    async fn hand_due_timers(&mut self) -> Result<(), StoreError> {
        let now_clock = self.clock.now_ms().max(0) as u64;
        let due = off_the_runtime(&self.worker.store, move |store| {
            store.due_timers(now_clock, DUE_PER_TURN)
        })
        .await?;
        if due.is_empty() {
            self.handed.clear();
            return Ok(());
        }
        let real = now_ms();
        let mut queued = Vec::new();
        let mut still = HashMap::new();
        for (deal, due_ms) in due {
            let handed = self.handed.get(&(deal, due_ms)).copied();
            let fresh = handed.is_some_and(|at| real.saturating_sub(at) < HAND_AGAIN_AFTER_MS);
            if fresh || queued.contains(&deal) {
                still.insert((deal, due_ms), handed.unwrap_or(real));
                continue;
            }
            still.insert((deal, due_ms), real);
            queued.push(deal);
        }
        self.handed = still;
        let deals = queued.clone();
        off_the_runtime(&self.worker.store, move |store| {
            deals.iter().try_for_each(|&deal| store.enqueue(deal, real))
        })
        .await?;
        if !queued.is_empty() {
            self.worker.store.flush_async().await?;
            tracing::debug!(deals = queued.len(), "timers due: deals queued");
            for deal in queued {
                self.worker.scheduler.wake(deal);
            }
        }
        Ok(())
    }
}

/// After a reload (and at start): every pending timer timed again by the rules in force. A
/// changed `within` or `repeat` moves its due moment; a removed rule disarms it; a timer past
/// its rule's last repetition is done.
fn retime(worker: &Worker, rules: &crate::rules::RuleSet) -> Result<(), StoreError> {
    // The same rules as when they were last timed (a restart): nothing to walk.
    if worker.store.timers_timed_by()?.as_deref() == Some(rules.version()) {
        return Ok(());
    }
    let mut changed = Vec::new();
    let now = now_ms();
    for mut timer in worker.store.pending_timers()? {
        match rules.controls().sla_named(&timer.rule) {
            None => timer.skip("the rule was removed from the rule set".into(), now),
            Some(sla) => {
                match sla.due(&worker.calendar, timer.entry.created_time, timer.repetition) {
                    Some(due) if due.timestamp_millis().max(0) as u64 == timer.due_ms => continue,
                    Some(due) => timer.due_ms = due.timestamp_millis().max(0) as u64,
                    None => timer.state = crate::store::TimerState::Fired,
                }
            }
        }
        timer.updated_at_ms = now;
        changed.push(timer);
    }
    if !changed.is_empty() {
        tracing::info!(
            timers = changed.len(),
            "timers re-timed for the rules in force"
        );
        worker.store.put_timers(&changed)?;
    }
    worker.store.set_timers_timed_by(rules.version())?;
    worker.store.flush()?;
    Ok(())
}

/// A store call on a blocking thread: a store stuck on a failing disk holds that thread, never
/// the runtime's (the intake, `/healthz` and `/readyz` go on answering).
async fn off_the_runtime<T: Send + 'static>(
    store: &crate::store::Store,
    call: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))
}

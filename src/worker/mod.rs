//! The worker: takes queued deals, reads them and their new stage-history entries, asks the
//! rules what to do and applies the effects exactly once.
//!
//! Work happens in rounds. A round takes up to `worker.deals_per_batch` due deals (a deal is in
//! at most one round at a time), reads all of them in one `batch` (history first, then the deal,
//! so that the deal is never older than its history), records the new entries, the decisions and
//! the intents of the effects in one transaction per deal, flushes, sends every write of the
//! round in one more `batch`, and records the results. Several rounds run at once
//! (`worker.concurrency`); all of them share the client's one leaky bucket.
//!
//! Exactly once: an effect's intent (the final REST call and its marker) is durable before the
//! call is made. An intent found pending at the start of a later round may have been applied
//! (a crash, a timeout, a 5xx): the round first looks for it (a task by `UF_CRM_TASK` + `TITLE`
//! with its `XML_ID` compared here; a copy by `ORIGINATOR_ID`/`ORIGIN_ID`) and creates it only
//! when it is not there.
//!
//! The files, one role each: `round` orchestrates a round; `job` is a deal's job in it; `read`
//! the read batch; `decide` the one decide path (classify → evaluate → plan → record) and
//! `plan` its plan step; `apply` the writes and their results; `effects` maps an effect to its
//! REST call and back; `portal` the stage-history parser and the caches of catalogs and
//! people; `scheduler` which deals come next; `sweep` the control pass over the history;
//! `backfill` the mode that applies the rules to deals already sitting in their stages; `timers` the
//! time-driven half of a round (timers armed, fired, disarmed; `close_on_leave`) and `control`
//! the loop beside the rounds that watches the clock (timers due, the control sweep, digests).

mod apply;
pub mod backfill;
pub mod control;
pub mod counters;
mod decide;
pub mod effects;
mod job;
mod plan;
mod portal;
mod read;
pub mod report_copy;
mod round;
mod scheduler;
mod sweep;
mod timers;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bitrix::Client;
use crate::calendar::Calendar;
use crate::configuration::WorkerSettings;
use crate::rules::{Language, RulesHandle};
use crate::store::{Store, now_ms};

pub use effects::{ORIGINATOR, PlannedCall, plan};
pub use portal::{CatalogCache, People};
pub use scheduler::Scheduler;
pub use sweep::{ensure_history_floor, sweep_once};

/// What the worker did, for whoever listens (the demo prints it; tests may wait on it).
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// A new stage entry was recorded; `acted` tells whether the rules ran for it.
    StageEntry {
        deal_id: u64,
        entry_id: u64,
        stage_id: String,
        acted: bool,
        note: String,
    },
    /// An effect was applied (`id` from Bitrix24) or failed for good.
    Effect {
        deal_id: u64,
        entry_id: u64,
        rule: String,
        method: String,
        params: serde_json::Value,
        result: Result<String, String>,
    },
    /// A deal's job finished (all its effects applied or failed for good).
    DealDone { deal_id: u64 },
}

/// Everything a round needs. One per service, shared (`Arc`) by its concurrent rounds, the
/// sweep and a backfill: whatever they must agree on lives here once.
pub struct Worker {
    /// The truth: queue, deal states, entries, effects. Every decision is recorded here before
    /// its effect is sent.
    pub store: Store,
    /// The portal's one client: its leaky bucket is shared by every round, the sweep and a
    /// backfill, so that together they stay under the portal's limit.
    pub client: Client,
    /// The rules in force, read once per deal's decision: a reload takes effect from the next
    /// deal decided, never halfway through one (a backfill keeps the rules it started with).
    pub rules: RulesHandle,
    /// Working days and hours for the deadlines the rules compute.
    pub calendar: Calendar,
    /// `[worker]`: round sizes and concurrency, retries, the bounds on paging and chains.
    pub settings: WorkerSettings,
    /// The portal's address when the service started, for the links to deals the rules' texts
    /// and the link comments carry; taken once, while the client's own follows a rename.
    pub portal_origin: String,
    /// `portal.language`: the language of the texts the service writes itself (gate messages,
    /// notifications, the tunnel link comments).
    pub language: Language,
    /// Which deals are due, and which a round (or a backfill) holds: no deal is in two at once.
    pub scheduler: Scheduler,
    /// The field catalog and the stage names, cached: a round reads `crm.deal.fields` and
    /// `crm.status.list` only when it is stale.
    pub catalog: CatalogCache,
    /// Supervisors and departments, cached: people of one department share one walk.
    pub people: People,
    /// Where to tell what was done (the demo prints it; tests wait on it); `None` when nobody
    /// listens.
    pub activity: Option<mpsc::UnboundedSender<Activity>>,
    /// What "now" is for the time-driven rules (timers, SLA deadlines): the system clock, or
    /// the one a test or the demo moves on.
    pub clock: crate::clock::Clock,
    /// `control.quiet_outside_hours`: notifications of the time-driven rules wait for working
    /// time.
    pub quiet_outside_hours: bool,
    /// Stage entries and effects, counted for `/metrics`.
    pub metrics: Arc<crate::worker::counters::Metrics>,
    /// The client's outage count when the queue was last put back in order after one.
    outages_seen: tokio::sync::Mutex<u64>,
    /// Set once the stage history's starting point is recorded (rounds wait for it), and told.
    floor_recorded: std::sync::atomic::AtomicBool,
    floor_told: tokio::sync::Notify,
}

impl Worker {
    /// The worker of a service configured by `settings`: fresh caches and scheduler, counters of
    /// its own; `activity` is where it tells what it does, when someone listens.
    pub fn new(
        settings: &crate::configuration::Settings,
        store: Store,
        client: Client,
        rules: RulesHandle,
        activity: Option<mpsc::UnboundedSender<Activity>>,
    ) -> Worker {
        Worker {
            store,
            portal_origin: client.portal_origin(),
            language: settings.portal.language,
            client,
            rules,
            calendar: settings.calendar.clone(),
            settings: settings.worker.clone(),
            scheduler: Scheduler::new(),
            catalog: CatalogCache::default(),
            people: People::default(),
            activity,
            clock: crate::clock::Clock::system(),
            quiet_outside_hours: settings.control.quiet_outside_hours,
            metrics: Arc::new(crate::worker::counters::Metrics::default()),
            outages_seen: tokio::sync::Mutex::new(0),
            floor_recorded: std::sync::atomic::AtomicBool::new(false),
            floor_told: tokio::sync::Notify::new(),
        }
    }

    /// Puts every queued (not parked) deal of the store into the scheduler, oldest first: after
    /// a restart (or an outage), the work recorded before it goes on. A deal whose queue record cannot be read is scheduled
    /// too: its round parks it with the error, where `jobs list` shows it.
    pub fn restore_queue(&self) -> Result<usize, crate::store::StoreError> {
        let (queued, damaged) = self.store.queue_listing()?;
        let listed: Vec<(u64, u64, u64)> = queued
            .iter()
            .filter(|q| !q.parked)
            .map(|q| (q.deal_id, q.first_at_ms, q.not_before_ms))
            .collect();
        self.scheduler.restore(&listed);
        let mut n = listed.len();
        for deal in damaged.iter().filter_map(|d| d.deal_id) {
            self.scheduler.wake(deal);
            n += 1;
        }
        Ok(n)
    }

    /// Runs rounds until `stop` is cancelled; the round in progress is finished first.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut rounds = tokio::task::JoinSet::new();
        for _ in 0..self.settings.concurrency {
            let worker = self.clone();
            let stop = stop.clone();
            rounds.spawn(async move {
                loop {
                    worker.until_the_portal_can_take_a_request(&stop).await;
                    let deals = worker
                        .scheduler
                        .take(worker.settings.deals_per_batch, &stop)
                        .await;
                    if deals.is_empty() {
                        break;
                    }
                    worker.round(deals).await;
                }
            });
        }
        while rounds.join_next().await.is_some() {}
    }

    /// Under the portal's limit a round's requests wait for their turn anyway; waiting
    /// *before* taking deals while a full request is already queued lets the deals that arrive
    /// meanwhile join the round, so one read carries more of them and fewer calls are spent in
    /// all. Without pressure (less than a full batch waiting) this returns at once.
    ///
    /// While the portal is unreachable no deal is taken at all: the queue waits, untouched (not
    /// read, not cycled), until a probe is answered ([`Client::until_reachable`]).
    ///
    /// After an outage the queue is put back in order once (see [`Worker::after_an_outage`]).
    async fn until_the_portal_can_take_a_request(&self, stop: &CancellationToken) {
        tokio::select! {
            _ = async {
                self.until_the_floor_is_known().await;
                self.client.until_reachable().await;
                self.after_an_outage().await;
                self.client.until_outbox_has_room().await;
            } => {}
            _ = stop.cancelled() => {}
        }
    }

    /// The stage history's starting point is recorded (by the sweep, at the first start once
    /// the portal answers): until then no round can tell new entries from old ones, and none
    /// runs. A store that cannot say is asked again a second later.
    async fn until_the_floor_is_known(&self) {
        use std::sync::atomic::Ordering;
        while !self.floor_recorded.load(Ordering::SeqCst) {
            let told = self.floor_told.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            if let Ok(Some(_)) = self.store.history_floor() {
                self.floor_recorded.store(true, Ordering::SeqCst);
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), told).await;
        }
    }

    /// Tells the rounds that the stage history's starting point is recorded.
    pub(crate) fn floor_known(&self) {
        self.floor_recorded
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.floor_told.notify_waiters();
    }

    /// Once per outage, when the portal answers again: the deals that failed on their way into
    /// it were scheduled for a retry behind the events taken meanwhile; the queue is read once
    /// and put back oldest first, so the backlog drains in the order its events came.
    async fn after_an_outage(&self) {
        let outages = self.client.reachability().outages;
        // Every round waits here while one of them re-orders: none takes a deal before.
        let mut seen = self.outages_seen.lock().await;
        if *seen == outages {
            return;
        }
        *seen = outages;
        let store = self.store.clone();
        let listing = tokio::task::spawn_blocking(move || store.queue_listing()).await;
        match listing {
            Ok(Ok((queued, _))) => {
                let listed: Vec<(u64, u64, u64)> = queued
                    .iter()
                    .filter(|q| !q.parked)
                    .map(|q| (q.deal_id, q.first_at_ms, q.not_before_ms.min(now_ms())))
                    .collect();
                self.scheduler.restore(&listed);
                tracing::info!(
                    deals = listed.len(),
                    "the portal answers again: the backlog drains oldest first"
                );
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "the queue could not be re-ordered after the outage")
            }
            Err(error) => {
                tracing::warn!(%error, "the queue could not be re-ordered after the outage")
            }
        }
    }

    pub(crate) fn emit(&self, activity: Activity) {
        if let Some(tx) = &self.activity {
            let _ = tx.send(activity);
        }
    }
}

//! `b24-robot backfill [--rule NAME] [--pipeline N] [--dry-run] [--restart]`: the rules applied
//! to the deals sitting in their stages now. Bitrix24's own robots never act on a deal that was
//! already in a stage when a rule was added; the worker does not either (it acts on stage
//! entries past the history floor). A backfill does, once.
//!
//! How: the deals are listed page by page (`crm.deal.list` ordered by ID, `>ID` of the last one,
//! `start: -1`); the deals of a page that some selected rule concerns are read in one `batch`
//! (their newest stage-history entry, then the deal, and lookups for their pending effects) and
//! decided and written as a round does, through the one [`Client`](crate::bitrix::Client) and
//! its bucket: the read batch, the evaluate, plan and record steps and the write batch are the
//! worker's own (`deals`); only which entry is decided differs.
//!
//! Exactly once: a backfill keys its effects by the deal's current entry (its newest history
//! entry, which must be the stage it is in now), with the worker's keys and markers. A rule
//! already decided for that entry (by a round or an earlier backfill) is not decided again;
//! an entry newer than what the service has seen is left to the worker. While a deal is being
//! backfilled the worker's scheduler holds it as if a round had it. Each entry is recorded in
//! the decision log (`note: "backfill"`), so `explain` shows it.
//!
//! Gate rules (`[[require]]`, `[[loss_reason]]`) are about a move being made: a deal that has sat
//! in its stage for weeks did not just enter it, and moving it back now would surprise everyone.
//! They are left out, unless `--rule` names one; then it runs with no previous stage, so its
//! revert acts as warn (the comment and the notification, never the move).
//!
//! Resumable: the progress (the last deal id done, the options, the counts) is kept in the
//! store's meta after every page. Running the same command again continues; other options (or
//! `--restart`) start over; a finished run starts over (and finds everything done).

mod deals;
mod status;

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::portal::{list_items, number};
use super::{Worker, ensure_history_floor};
use crate::bitrix::{BatchCall, CallError, Response, Retry, calls};
use crate::rules::{RuleKind, RuleSet, StageEntry, StageSemantic, concerns};
use crate::store::{BackfillProgress, RECORD_VERSION, StoreError, now_ms};
use crate::worker::counters::{PagedList, PagingStop};

pub use status::{RunState, Status, StatusReport};

/// The page size of a list (Bitrix24's, fixed).
const PAGE: usize = 50;

/// What to backfill.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackfillOptions {
    pub rule: Option<String>,
    pub pipeline: Option<u64>,
    pub dry_run: bool,
    pub restart: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{method}: {error}")]
    Portal { method: String, error: CallError },
    #[error("{0}")]
    Malformed(String),
    #[error("no rule named \"{0}\" in the rules in force")]
    UnknownRule(String),
    #[error("the stage history's starting point cannot be read: {0}")]
    Floor(String),
    /// The deal list pages on without advancing: stopped, the progress kept.
    #[error("{0}")]
    Paging(String),
}

/// The backfill of a running service: at most one at a time, in the background
/// (`POST /admin/backfill`), stopped with the service.
#[derive(Clone)]
pub struct Service {
    pub worker: Arc<Worker>,
    pub status: Status,
    pub stop: CancellationToken,
    current: Arc<Mutex<Option<CancellationToken>>>,
}

impl Service {
    pub fn new(worker: Arc<Worker>, stop: CancellationToken) -> Service {
        Service {
            worker,
            status: Status::default(),
            stop,
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts a backfill unless one runs; `false` when one does.
    pub fn start(&self, options: BackfillOptions) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if self.status.state() == RunState::Running {
            return false;
        }
        let cancel = self.stop.child_token();
        *current = Some(cancel.clone());
        self.status.begin(&options);
        let worker = self.worker.clone();
        let status = self.status.clone();
        tokio::spawn(async move {
            let _ = run(&worker, &options, &status, &cancel).await;
        });
        true
    }

    /// Interrupts the running backfill (its progress is kept: the same command continues it).
    pub fn cancel(&self) {
        if let Some(c) = &*self.current.lock().unwrap_or_else(|e| e.into_inner()) {
            c.cancel();
        }
    }
}

/// Runs a backfill to its end, or until `stop`; the outcome is in `status` too.
pub async fn run(
    worker: &Worker,
    options: &BackfillOptions,
    status: &Status,
    stop: &CancellationToken,
) -> Result<BackfillProgress, BackfillError> {
    if status.state() != RunState::Running {
        status.begin(options);
    }
    let result = run_inner(worker, options, status, stop).await;
    match &result {
        Ok(p) if p.finished => status.end(RunState::Done, None),
        Ok(_) => status.end(RunState::Cancelled, None),
        Err(e) => {
            tracing::error!(error = %e, "backfill failed; run the same command again to continue");
            status.end(RunState::Failed, Some(e.to_string()));
        }
    }
    result
}

/// The rules a backfill applies: the one `--rule` names, else every rule but the gates; bound
/// to `--pipeline` (or to every pipeline).
pub fn select_rules(all: &RuleSet, options: &BackfillOptions) -> Result<RuleSet, BackfillError> {
    let chosen = match &options.rule {
        // An `[[sla]]`: its timers armed for the deals sitting in its stage, due from their
        // entry (`control.md`); no stage rule runs.
        Some(name) if all.controls().sla_named(name).is_some() => all.only_sla(name),
        Some(name) => {
            if !all.rules().iter().any(|r| r.name() == name) {
                return Err(BackfillError::UnknownRule(name.clone()));
            }
            all.only(|r| r.name() == name).without_slas()
        }
        // SLAs are not backfilled unless named: their timers would fire at once for every deal
        // long in its stage.
        None => all
            .only(|r| !matches!(r.kind(), RuleKind::Require | RuleKind::LossReason))
            .without_slas(),
    };
    Ok(match options.pipeline {
        Some(p) => chosen.only(|r| r.pipelines().is_none_or(|ps| ps.contains(&p))),
        None => chosen,
    })
}

struct Run<'a> {
    worker: &'a Worker,
    rules: RuleSet,
    options: &'a BackfillOptions,
    status: &'a Status,
    floor: u64,
    progress: BackfillProgress,
}

async fn run_inner(
    worker: &Worker,
    options: &BackfillOptions,
    status: &Status,
    stop: &CancellationToken,
) -> Result<BackfillProgress, BackfillError> {
    let rules = select_rules(&worker.rules.current(), options)?;
    let floor = ensure_history_floor(worker)
        .await
        .map_err(|e| BackfillError::Floor(e.to_string()))?;
    let stored = if options.dry_run {
        None
    } else {
        worker.store.backfill_progress()?
    };
    let resume = stored.filter(|p| {
        !options.restart && !p.finished && p.rule == options.rule && p.pipeline == options.pipeline
    });
    let resumed = resume.is_some();
    let mut progress = resume.unwrap_or_else(|| BackfillProgress {
        v: RECORD_VERSION,
        rule: options.rule.clone(),
        pipeline: options.pipeline,
        started_at_ms: now_ms(),
        ..BackfillProgress::default()
    });
    if !resumed {
        progress.total = count_deals(worker, options.pipeline).await?;
    }
    tracing::info!(
        rule = ?options.rule, pipeline = ?options.pipeline, dry_run = options.dry_run,
        resumed, from_deal = progress.last_deal_id, total = progress.total, rules = rules.len(),
        "backfill started"
    );
    status.update(&progress);
    let mut run = Run {
        worker,
        rules,
        options,
        status,
        floor,
        progress,
    };
    if !run.pages(stop).await? || !run.deferred(stop).await? {
        return Ok(run.progress);
    }
    if !run.progress.deferred.is_empty() {
        tracing::warn!(deals = ?run.progress.deferred, "backfill: deals still busy in the worker were left out");
    }
    run.progress.finished = true;
    run.progress.done = run.progress.done.max(run.progress.total);
    run.save().await?;
    tracing::info!(
        entries = run.progress.entries,
        effects = run.progress.effects,
        already = run.progress.already,
        "backfill done"
    );
    Ok(run.progress)
}

/// One page of the deal list: what it brought past the last deal done.
struct Listed {
    /// A full page: more may follow.
    full: bool,
    /// The highest deal id listed (the last deal done, if none is past it).
    last: u64,
    /// Deals listed past the last one done.
    looked: u64,
    /// Those of them that some selected rule concerns: to read.
    candidates: Vec<u64>,
}

impl Run<'_> {
    /// Backfills the deal list page by page; `false` when stopped before its end.
    async fn pages(&mut self, stop: &CancellationToken) -> Result<bool, BackfillError> {
        loop {
            // While the portal is unreachable the backfill waits where it is.
            tokio::select! {
                _ = self.worker.client.until_reachable() => {}
                _ = stop.cancelled() => return Ok(false),
            }
            let page = self.list_page().await?;
            let busy = tokio::select! {
                busy = self.deals(&page.candidates) => busy?,
                _ = stop.cancelled() => return Ok(false),
            };
            self.progress.deferred.extend(busy);
            self.progress.done += page.looked;
            self.progress.last_deal_id = page.last;
            self.save().await?;
            if !page.full {
                return Ok(true);
            }
        }
    }

    /// The next page of deals past the last one done.
    async fn list_page(&self) -> Result<Listed, BackfillError> {
        let done_up_to = self.progress.last_deal_id;
        let answer = send(
            self.worker,
            calls::deal_page(done_up_to, self.options.pipeline),
        )
        .await?;
        let items = list_items(&answer.result, "items").ok_or_else(|| {
            BackfillError::Malformed("crm.deal.list: no list in the answer".into())
        })?;
        let mut last = done_up_to;
        let mut candidates = Vec::new();
        let mut looked = 0u64;
        for item in items {
            let id = number(item, "ID").map_err(|e| {
                BackfillError::Malformed(format!("crm.deal.list: a deal without ID: {e}"))
            })?;
            // Asked past the last deal done: a deal at or before it (a portal that ignores the
            // filter), or one listed twice, is not looked at again.
            if id <= done_up_to || candidates.contains(&id) {
                continue;
            }
            last = last.max(id);
            looked += 1;
            if self.concerned(item) {
                candidates.push(id);
            }
        }
        let full = items.len() >= PAGE;
        if full && last == done_up_to {
            // Paged by `>ID` of the last deal: a full page with no deal past it would come back
            // the same forever.
            self.worker
                .metrics
                .paging_stopped(PagedList::DealList, PagingStop::NoProgress);
            return Err(BackfillError::Paging(format!(
                "crm.deal.list: a full page brought no deal past ID {last} (the portal ignores the >ID filter); the backfill stopped, its progress is kept"
            )));
        }
        Ok(Listed {
            full,
            last,
            looked,
            candidates,
        })
    }

    /// Deals that were busy in the worker when their page came: their turn now, a few times
    /// over; `false` when stopped.
    async fn deferred(&mut self, stop: &CancellationToken) -> Result<bool, BackfillError> {
        for _ in 0..100 {
            if self.progress.deferred.is_empty() || stop.is_cancelled() {
                break;
            }
            let deferred = std::mem::take(&mut self.progress.deferred);
            let busy = tokio::select! {
                busy = self.deals(&deferred) => busy?,
                _ = stop.cancelled() => { self.progress.deferred = deferred; return Ok(false); }
            };
            self.progress.deferred = busy;
            self.save().await?;
            if !self.progress.deferred.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        Ok(!stop.is_cancelled())
    }

    /// Whether a selected rule concerns the deal's current stage (else it is not read at all).
    fn concerned(&self, item: &Value) -> bool {
        let Some(stage) = item.get("STAGE_ID").and_then(Value::as_str) else {
            return false;
        };
        let category = number(item, "CATEGORY_ID").unwrap_or(0);
        let entry = StageEntry {
            id: 0,
            type_id: 2,
            stage_id: stage.to_string(),
            category_id: category,
            semantic: item
                .get("STAGE_SEMANTIC_ID")
                .and_then(Value::as_str)
                .map(StageSemantic::from_code)
                .unwrap_or(StageSemantic::Process),
            created_time: chrono::Utc::now().fixed_offset(),
        };
        self.rules.rules().iter().any(|r| concerns(r, &entry))
            || self
                .rules
                .controls()
                .sla()
                .iter()
                .any(|sla| sla.watches(&entry))
    }

    async fn save(&mut self) -> Result<(), BackfillError> {
        self.progress.updated_at_ms = now_ms();
        if !self.options.dry_run {
            self.worker.store.set_backfill_progress(&self.progress)?;
            self.worker.store.flush_async().await?;
        }
        self.status.update(&self.progress);
        Ok(())
    }
}

/// A call of the backfill's own (the deal list), its failure named by its method.
async fn send(worker: &Worker, call: BatchCall) -> Result<Response, BackfillError> {
    let method = call.method.clone();
    worker
        .client
        .send(call, Retry::Safe)
        .await
        .map_err(|error| BackfillError::Portal { method, error })
}

/// How many deals the backfill will look at (`total` of the list).
async fn count_deals(worker: &Worker, pipeline: Option<u64>) -> Result<u64, BackfillError> {
    let answer = send(worker, calls::deal_count(pipeline)).await?;
    Ok(answer
        .total
        .unwrap_or_else(|| list_items(&answer.result, "items").map_or(0, |i| i.len() as u64)))
}

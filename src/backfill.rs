//! `b24-robot backfill [--rule NAME] [--pipeline N] [--dry-run] [--restart]`: the rules applied
//! to the deals sitting in their stages now. Bitrix24's own robots never act on a deal that was
//! already in a stage when a rule was added; the worker does not either (it acts on stage
//! entries past the history floor). A backfill does, once.
//!
//! How: the deals are listed page by page (`crm.deal.list` ordered by ID, `>ID` of the last one,
//! `start: -1`); the deals of a page that some selected rule concerns are read in one `batch`
//! (their newest stage-history entry, then the deal, and lookups for their pending effects) and
//! decided and written as a round does, through the one [`Client`](crate::bitrix::Client) and
//! its bucket.
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

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bitrix::{CallError, ErrorKind, Response, Retry};
use crate::ops::metrics::{PagedList, PagingStop};
use crate::rules::{
    Deal, FieldCatalog, Input, RuleKind, RuleSet, StageEntry, StageSemantic, concerns, evaluate,
};
use crate::store::{
    BackfillProgress, DealState, EffectKind, EffectState, EntryAction, EntryRecord, QueuedDeal,
    RECORD_VERSION, StoreError, now_ms,
};
use crate::worker::{
    Activity, Ending, HISTORY_SELECT, Job, Worker, ensure_history_floor, list_items,
    malformed_deal, number, parse_entry,
};

/// The page size of a list (Bitrix24's, fixed).
const PAGE: usize = 50;
/// Dry-run writes kept for the admin API.
const MAX_WRITES: usize = 10_000;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Idle,
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug)]
struct StatusInner {
    state: RunState,
    options: BackfillOptions,
    progress: BackfillProgress,
    last_error: Option<String>,
    /// When this run started, and how many deals were done then (for the ETA).
    started: Option<(Instant, u64)>,
    writes: Vec<Value>,
    writes_total: usize,
}

/// A backfill's progress as it runs, shared with whoever shows it (the admin API, the CLI).
#[derive(Clone)]
pub struct Status(Arc<Mutex<StatusInner>>);

impl Default for Status {
    fn default() -> Self {
        Status(Arc::new(Mutex::new(StatusInner {
            state: RunState::Idle,
            options: BackfillOptions::default(),
            progress: BackfillProgress::default(),
            last_error: None,
            started: None,
            writes: Vec::new(),
            writes_total: 0,
        })))
    }
}

impl Status {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> RunState {
        self.lock().state
    }

    fn begin(&self, options: &BackfillOptions) {
        let mut s = self.lock();
        s.state = RunState::Running;
        s.options = options.clone();
        s.progress = BackfillProgress::default();
        s.last_error = None;
        s.started = None;
        s.writes.clear();
        s.writes_total = 0;
    }

    fn update(&self, progress: &BackfillProgress) {
        let mut s = self.lock();
        if s.started.is_none() {
            s.started = Some((Instant::now(), progress.done));
        }
        s.progress = progress.clone();
    }

    fn write(&self, line: Value) {
        let mut s = self.lock();
        s.writes_total += 1;
        if s.writes.len() < MAX_WRITES {
            s.writes.push(line);
        }
    }

    fn end(&self, state: RunState, error: Option<String>) {
        let mut s = self.lock();
        s.state = state;
        if error.is_some() {
            s.last_error = error;
        }
    }

    /// The progress as JSON (`GET /admin/backfill`), with the dry-run writes from `from` on.
    pub fn json(&self, from: usize) -> Value {
        let s = self.lock();
        let p = &s.progress;
        let eta = match (s.state, s.started) {
            (RunState::Running, Some((at, done_then))) if p.done > done_then => {
                let rate = (p.done - done_then) as f64 / at.elapsed().as_secs_f64().max(0.001);
                Some((p.total.saturating_sub(p.done) as f64 / rate).round())
            }
            _ => None,
        };
        json!({
            "state": s.state,
            "rule": s.options.rule,
            "pipeline": s.options.pipeline,
            "dry_run": s.options.dry_run,
            "done": p.done,
            "total": p.total,
            "last_deal_id": p.last_deal_id,
            "entries": p.entries,
            "effects": p.effects,
            "already": p.already,
            "retrying": p.failed,
            "deferred": p.deferred.len(),
            "eta_seconds": eta,
            "last_error": s.last_error,
            "writes_total": s.writes_total,
            "writes": s.writes.iter().skip(from).collect::<Vec<_>>(),
        })
    }
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
        Some(name) => {
            if !all.rules().iter().any(|r| r.name() == name) {
                return Err(BackfillError::UnknownRule(name.clone()));
            }
            all.only(|r| r.name() == name)
        }
        None => all.only(|r| !matches!(r.kind(), RuleKind::Require | RuleKind::LossReason)),
    };
    Ok(match options.pipeline {
        Some(p) => chosen.only(|r| r.pipeline().is_none_or(|rp| rp == p)),
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

    loop {
        if stop.is_cancelled() {
            return Ok(run.progress);
        }
        let mut filter = serde_json::Map::new();
        filter.insert(">ID".into(), json!(run.progress.last_deal_id));
        if let Some(p) = options.pipeline {
            filter.insert("CATEGORY_ID".into(), json!(p));
        }
        let answer = worker
            .client
            .call(
                "crm.deal.list",
                json!({ "filter": filter, "order": { "ID": "ASC" },
                        "select": ["ID", "STAGE_ID", "CATEGORY_ID", "STAGE_SEMANTIC_ID"], "start": -1 }),
                Retry::Safe,
            )
            .await
            .map_err(|error| BackfillError::Portal {
                method: "crm.deal.list".into(),
                error,
            })?;
        let items = list_items(&answer.result, "items").ok_or_else(|| {
            BackfillError::Malformed("crm.deal.list: no list in the answer".into())
        })?;
        let mut last = run.progress.last_deal_id;
        let mut candidates = Vec::new();
        let mut looked = 0u64;
        for item in items {
            let id = number(item, "ID").map_err(|e| {
                BackfillError::Malformed(format!("crm.deal.list: a deal without ID: {e}"))
            })?;
            // Asked past the last deal done: a deal at or before it (a portal that ignores the
            // filter), or one listed twice, is not looked at again.
            if id <= run.progress.last_deal_id || candidates.contains(&id) {
                continue;
            }
            last = last.max(id);
            looked += 1;
            if run.concerned(item) {
                candidates.push(id);
            }
        }
        if items.len() >= PAGE && last == run.progress.last_deal_id {
            // Paged by `>ID` of the last deal: a full page with no deal past it would come back
            // the same forever.
            worker
                .metrics
                .paging_stopped(PagedList::DealList, PagingStop::NoProgress);
            return Err(BackfillError::Paging(format!(
                "crm.deal.list: a full page brought no deal past ID {last} (the portal ignores the >ID filter); the backfill stopped, its progress is kept"
            )));
        }
        let busy = tokio::select! {
            busy = run.deals(&candidates) => busy?,
            _ = stop.cancelled() => return Ok(run.progress),
        };
        run.progress.deferred.extend(busy);
        run.progress.done += looked;
        run.progress.last_deal_id = last;
        run.save().await?;
        if items.len() < PAGE {
            break;
        }
    }

    // Deals that were busy in the worker when their page came: their turn now.
    for _ in 0..100 {
        if run.progress.deferred.is_empty() || stop.is_cancelled() {
            break;
        }
        let deferred = std::mem::take(&mut run.progress.deferred);
        let busy = tokio::select! {
            busy = run.deals(&deferred) => busy?,
            _ = stop.cancelled() => { run.progress.deferred = deferred; return Ok(run.progress); }
        };
        run.progress.deferred = busy;
        run.save().await?;
        if !run.progress.deferred.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    if stop.is_cancelled() {
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

/// How many deals the backfill will look at (`total` of the list).
async fn count_deals(worker: &Worker, pipeline: Option<u64>) -> Result<u64, BackfillError> {
    let filter = match pipeline {
        Some(p) => json!({ "CATEGORY_ID": p }),
        None => json!({}),
    };
    let answer = worker
        .client
        .call(
            "crm.deal.list",
            json!({ "filter": filter, "order": { "ID": "ASC" }, "select": ["ID"] }),
            Retry::Safe,
        )
        .await
        .map_err(|error| BackfillError::Portal {
            method: "crm.deal.list".into(),
            error,
        })?;
    Ok(answer
        .total
        .unwrap_or_else(|| list_items(&answer.result, "items").map_or(0, |i| i.len() as u64)))
}

/// Gives the claimed deals back to the worker, however the backfill of a page ends.
struct Claims<'a> {
    worker: &'a Worker,
    deals: Vec<u64>,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        for &deal in &self.deals {
            self.worker.scheduler.release(deal);
        }
    }
}

/// How one deal's current entry turned out.
enum Verdict {
    Applied {
        effects: u64,
    },
    Already,
    Skipped,
    /// Not now (people not resolvable): at the end of the run.
    Later,
    /// The deal's answer cannot be used (see the worker's check of `crm.deal.get`).
    Malformed(String),
}

impl Run<'_> {
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

    /// Backfills some deals in one read batch and one write batch; returns those that were
    /// busy (in a round of the worker, or waiting for one) and those to try again later.
    async fn deals(&mut self, deals: &[u64]) -> Result<Vec<u64>, BackfillError> {
        let worker = self.worker;
        let mut claims = Claims {
            worker,
            deals: Vec::new(),
        };
        let mut busy = Vec::new();
        for &deal in deals {
            if worker.scheduler.try_claim(deal) {
                claims.deals.push(deal);
            } else {
                busy.push(deal);
            }
        }
        if claims.deals.is_empty() {
            return Ok(busy);
        }
        let mut jobs = Vec::with_capacity(claims.deals.len());
        // Deals with a record that cannot be read: left to the worker, which parks them with
        // the error; the others go on.
        let mut damaged = Vec::new();
        for &deal in &claims.deals {
            let mut job = match worker.load_job(deal, placeholder(deal)) {
                Ok(job) => job,
                Err(error) if error.is_unreadable() => {
                    damaged.push((deal, error));
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if self.options.dry_run {
                job.pending.clear();
            }
            jobs.push(job);
        }

        let reads = worker
            .read_deals(&jobs, |job| {
                json!({ "entityTypeId": 2, "filter": { "OWNER_ID": job.deal_id },
                        "order": { "ID": "DESC" }, "select": HISTORY_SELECT, "start": -1 })
            })
            .await;
        let catalog = reads.catalog;

        let mut later = Vec::new();
        for (job, read) in jobs.iter_mut().zip(reads.deals) {
            if !self.options.dry_run {
                match worker.resolve_pending(job, read.lookups) {
                    Ok(()) => {}
                    Err(error) if error.is_unreadable() => {
                        job.writes.clear();
                        damaged.push((job.deal_id, error));
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
            let answer = |result: Option<Result<Response, CallError>>, method: &str| match result {
                Some(Ok(answer)) => Ok(Some(answer)),
                Some(Err(e)) if e.kind() == ErrorKind::NotFound => Ok(None),
                Some(Err(error)) => Err(BackfillError::Portal {
                    method: method.to_string(),
                    error,
                }),
                None => Err(BackfillError::Malformed(format!("{method}: no answer"))),
            };
            let history = answer(read.history, "crm.stagehistory.list")?;
            let deal = answer(read.deal, "crm.deal.get")?;
            let (Some(history), Some(deal)) = (history, deal) else {
                continue; // deleted meanwhile
            };
            let verdict = match self.decide(job, &history, deal, &catalog).await {
                Ok(verdict) => verdict,
                Err(BackfillError::Store(error)) if error.is_unreadable() => {
                    job.writes.clear();
                    damaged.push((job.deal_id, error));
                    continue;
                }
                Err(error) => return Err(error),
            };
            match verdict {
                Verdict::Applied { effects } => {
                    self.progress.entries += 1;
                    self.progress.effects += effects;
                }
                Verdict::Already => self.progress.already += 1,
                Verdict::Skipped => {}
                Verdict::Later => later.push(job.deal_id),
                Verdict::Malformed(why) => {
                    tracing::warn!(deal_id = job.deal_id, %why,
                        "backfill: the portal's answer for the deal is malformed: left out (nothing recorded; run the backfill again with --restart once it answers properly)");
                    self.progress.failed += 1;
                }
            }
        }
        for (deal, error) in &damaged {
            tracing::warn!(deal_id = deal, %error,
                "backfill: a record of the deal in the store cannot be read: left to the worker, which parks its job with the error");
        }
        self.progress.failed += damaged.len() as u64;
        if self.options.dry_run {
            return Ok(busy.into_iter().chain(later).collect());
        }
        worker.store.flush_async().await?;
        worker.write(&mut jobs).await?;

        // An effect that could not be applied yet is the worker's to retry: its deal is queued.
        let mut retry = Vec::new();
        for job in &jobs {
            if matches!(
                job.ending,
                Some(Ending::Retry(_))
                    | Some(Ending::Park(_))
                    | Some(Ending::Postpone(..))
                    | Some(Ending::Unreadable(_))
            ) {
                worker.store.enqueue(job.deal_id, now_ms())?;
                retry.push(job.deal_id);
            }
        }
        self.progress.failed += retry.len() as u64;
        for (deal, _) in damaged {
            worker.store.enqueue(deal, now_ms())?;
            retry.push(deal);
        }
        worker.store.flush_async().await?;
        drop(claims);
        for deal in retry {
            worker.scheduler.wake(deal);
        }
        Ok(busy.into_iter().chain(later).collect())
    }

    /// Applies the selected rules to the deal's current entry, unless they ran for it already.
    async fn decide(
        &mut self,
        job: &mut Job,
        history: &Response,
        deal: Response,
        catalog: &FieldCatalog,
    ) -> Result<Verdict, BackfillError> {
        let worker = self.worker;
        let deal_id = job.deal_id;
        let Value::Object(map) = deal.result else {
            return Ok(Verdict::Malformed(format!(
                "crm.deal.get {deal_id}: the answer is not a deal"
            )));
        };
        if let Some(why) = malformed_deal(deal_id, &map) {
            return Ok(Verdict::Malformed(format!("crm.deal.get {deal_id}: {why}")));
        }
        let deal = Deal::new(map);
        let items = list_items(&history.result, "items").ok_or_else(|| {
            BackfillError::Malformed("crm.stagehistory.list: no items in the answer".into())
        })?;
        let mut newest: Option<StageEntry> = None;
        for item in items {
            let (owner, entry) = parse_entry(item)
                .map_err(|e| BackfillError::Malformed(format!("crm.stagehistory.list: {e}")))?;
            if owner == deal_id && newest.as_ref().is_none_or(|n| entry.id > n.id) {
                newest = Some(entry);
            }
        }
        let Some(entry) = newest else {
            tracing::debug!(deal_id, "backfill: the deal has no stage history");
            return Ok(Verdict::Skipped);
        };
        if deal.stage_id() != Some(entry.stage_id.as_str()) {
            // It moved between the two reads: the worker acts on that move.
            return Ok(Verdict::Skipped);
        }
        let seen = if job.known {
            job.state.last_entry_id.max(self.floor)
        } else {
            self.floor
        };
        if entry.id > seen {
            // A move the service has not processed yet: the worker acts on it (all rules, gates
            // included), not the backfill.
            return Ok(Verdict::Skipped);
        }
        let existing = worker
            .store
            .entries(deal_id)?
            .into_iter()
            .find(|e| e.entry.id == entry.id);
        if existing
            .as_ref()
            .is_some_and(|e| e.action != EntryAction::Acted)
        {
            // The service's own move (a revert), or superseded: no rules for it.
            return Ok(Verdict::Already);
        }
        let mut done: HashSet<String> = existing
            .iter()
            .flat_map(|e| e.decisions.iter().map(|d| d.rule.clone()))
            .collect();
        done.extend(
            worker
                .store
                .effects(deal_id)?
                .into_iter()
                .filter(|e| e.entry_id == entry.id)
                .map(|e| e.rule),
        );
        let input = Input {
            deal: &deal,
            entry: &entry,
            // Not a move: a gate's revert acts as warn.
            previous_stage: None,
            catalog,
            calendar: &worker.calendar,
            portal_origin: &worker.portal_origin,
            max_tunnel_depth: worker.settings.max_tunnel_depth,
        };
        let evaluation = evaluate(&self.rules, &input);
        worker.note_stopped_chains(deal_id, entry.id, &evaluation);
        let mut decisions = evaluation.decisions;
        decisions.retain(|d| !done.contains(&d.rule));
        if decisions.is_empty() {
            return Ok(if existing.is_some() || !done.is_empty() {
                Verdict::Already
            } else {
                Verdict::Skipped
            });
        }
        for d in &mut decisions {
            d.notes
                .push("backfill: the deal was already in this stage".into());
        }
        let mut intents = match worker.plan(job, &entry, &mut decisions).await {
            Ok(intents) => intents,
            Err(ending) => {
                tracing::warn!(
                    deal_id,
                    ?ending,
                    "backfill: people not resolved; trying later"
                );
                return Ok(Verdict::Later);
            }
        };
        intents.retain(|e| e.kind != EffectKind::MoveBack);
        let count = intents.len() as u64;
        if self.options.dry_run {
            for e in intents.iter().filter(|e| e.state == EffectState::Pending) {
                self.status.write(json!({
                    "deal_id": deal_id, "entry_id": entry.id, "rule": e.rule,
                    "method": e.method, "params": e.params,
                }));
            }
            return Ok(Verdict::Applied { effects: count });
        }

        let rules_version = self.rules.version().to_string();
        let record = match existing {
            Some(mut record) => {
                record.decisions.extend(decisions);
                record.note = Some("backfill".into());
                record
            }
            None => EntryRecord {
                v: RECORD_VERSION,
                deal_id,
                entry: entry.clone(),
                recorded_at_ms: now_ms(),
                action: EntryAction::Acted,
                ruleset_version: rules_version,
                decisions,
                event_ids: Vec::new(),
                note: Some("backfill".into()),
            },
        };
        if !job.known {
            // As a round records a deal it meets without a new entry.
            job.state = DealState {
                last_entry_id: self.floor,
                stage_id: Some(entry.stage_id.clone()),
                category_id: Some(entry.category_id),
                ..DealState::default()
            };
            job.known = true;
        }
        worker
            .store
            .commit_deal(deal_id, &job.state, &[record], &intents)?;
        tracing::info!(deal_id, entry_id = entry.id, stage = %entry.stage_id, effects = count, "backfill: rules applied to the current stage entry");
        worker.emit(Activity::StageEntry {
            deal_id,
            entry_id: entry.id,
            stage_id: entry.stage_id.clone(),
            acted: true,
            note: "backfill".into(),
        });
        for effect in intents {
            match &effect.state {
                EffectState::Pending => job.writes.push(effect),
                EffectState::Failed { error } => {
                    worker.emit_effect(&effect, Err(error.clone()));
                }
                EffectState::Done { .. } => {}
            }
        }
        Ok(Verdict::Applied { effects: count })
    }
}

/// The queue record a round would have; a backfill has no event behind it.
fn placeholder(deal_id: u64) -> QueuedDeal {
    QueuedDeal {
        v: RECORD_VERSION,
        deal_id,
        generation: 0,
        events: 0,
        event_ids: Vec::new(),
        first_at_ms: now_ms(),
        attempts: 0,
        not_before_ms: 0,
        last_error: None,
        parked: false,
    }
}

/// One line of progress for people: a bar, the counts and the ETA.
pub fn progress_line(status: &Value) -> String {
    let done = status["done"].as_u64().unwrap_or(0);
    let total = status["total"].as_u64().unwrap_or(0).max(done);
    let width = 30usize;
    let filled = if total == 0 {
        width
    } else {
        (done as usize * width) / total as usize
    };
    let eta = match status["eta_seconds"].as_f64() {
        Some(s) => {
            let s = s as u64;
            format!("ETA {}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
        }
        None => "ETA --:--:--".into(),
    };
    format!(
        "[{}{}] {done}/{total} deals  {} entries, {} effects, {} already done  {eta}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        status["entries"],
        status["effects"],
        status["already"],
    )
}

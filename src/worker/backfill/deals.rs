//! One page of a backfill: its deals claimed from the worker's scheduler, read in one batch,
//! each deal's current entry decided through the worker's decide path (evaluate → plan →
//! record: [`crate::worker`]'s `decide`), and written in one more batch, as a round does.

use std::collections::HashSet;

use serde_json::json;

use super::{BackfillError, Run};
use crate::bitrix::{CallError, ErrorKind, Response, calls};
use crate::rules::{Deal, FieldCatalog, StageEntry};
use crate::store::{
    EffectKind, EffectState, EntryAction, EntryRecord, QueuedDeal, RECORD_VERSION, StoreError,
    now_ms,
};
use crate::worker::decide::entry_record;
use crate::worker::job::{Ending, Job};
use crate::worker::portal::HISTORY_SELECT;
use crate::worker::read::{deal_of, entries_of, history_page};
use crate::worker::{Activity, Worker};

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

impl Run<'_> {
    /// Backfills some deals in one read batch and one write batch; returns those that were
    /// busy (in a round of the worker, or waiting for one) and those to try again later.
    pub(super) async fn deals(&mut self, deals: &[u64]) -> Result<Vec<u64>, BackfillError> {
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
        // Deals with a record that cannot be read: left to the worker, which parks them with
        // the error; the others go on.
        let mut damaged = Vec::new();
        let mut jobs = self.load_jobs(&claims.deals, &mut damaged)?;

        // The deal's newest entry only: the stage it sits in.
        let reads = worker
            .read_deals(&jobs, |job| {
                calls::stage_history(calls::History {
                    owners: &[job.deal_id],
                    after: None,
                    newest_first: true,
                    select: &HISTORY_SELECT,
                    start: Some(calls::Start::Uncounted),
                    created_before: None,
                })
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
        let retry = self.queue_for_the_worker(&jobs, damaged)?;
        worker.store.flush_async().await?;
        drop(claims);
        for deal in retry {
            worker.scheduler.wake(deal);
        }
        Ok(busy.into_iter().chain(later).collect())
    }

    /// The claimed deals' jobs, as a round loads them; those with a record that cannot be read
    /// go to `damaged`. A dry run resolves no pending effect: it writes nothing.
    fn load_jobs(
        &self,
        deals: &[u64],
        damaged: &mut Vec<(u64, StoreError)>,
    ) -> Result<Vec<Job>, BackfillError> {
        let mut jobs = Vec::with_capacity(deals.len());
        for &deal in deals {
            let mut job = match self.worker.load_job(deal, placeholder(deal)) {
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
        Ok(jobs)
    }

    /// An effect that could not be applied yet is the worker's to retry, and a damaged deal
    /// the worker's to park: their deals are queued (to be woken once released).
    fn queue_for_the_worker(
        &mut self,
        jobs: &[Job],
        damaged: Vec<(u64, StoreError)>,
    ) -> Result<Vec<u64>, BackfillError> {
        let worker = self.worker;
        let mut retry = Vec::new();
        for job in jobs {
            if matches!(
                job.ending,
                Some(Ending::Retry(_))
                    | Some(Ending::Park(_))
                    | Some(Ending::Postpone(..))
                    | Some(Ending::Hold(_))
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
        Ok(retry)
    }

    /// Applies the selected rules to the deal's current entry, unless they ran for it already:
    /// the backfill's own classification of the entry, then the worker's evaluate, plan and
    /// record.
    async fn decide(
        &mut self,
        job: &mut Job,
        history: &Response,
        deal: Response,
        catalog: &FieldCatalog,
    ) -> Result<Verdict, BackfillError> {
        let worker = self.worker;
        let deal_id = job.deal_id;
        let Current {
            deal,
            entry,
            existing,
            done,
        } = match self.classify(job, history, deal)? {
            Ok(current) => current,
            Err(verdict) => return Ok(verdict),
        };
        // Not a move: no previous stage, so a gate's revert acts as warn.
        let mut decisions =
            worker.evaluate_entry(deal_id, &self.rules, &deal, &entry, None, catalog);
        decisions.retain(|d| !done.contains(&d.rule));
        // The SLAs selected (`--rule NAME`) watching the stage the deal sits in are armed, due
        // from its entry; a timer armed before for the entry stays as it is.
        let armed = worker.store.timers_of(deal_id)?;
        let timers: Vec<_> = worker
            .arm(deal_id, &entry, &self.rules)
            .into_iter()
            .filter(|t| {
                !armed
                    .iter()
                    .any(|a| a.entry_id == t.entry_id && a.rule == t.rule)
            })
            .collect();
        if decisions.is_empty() && timers.is_empty() {
            return Ok(
                if existing.is_some() || !done.is_empty() || !armed.is_empty() {
                    Verdict::Already
                } else {
                    Verdict::Skipped
                },
            );
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
            for t in &timers {
                self.status.write(json!({
                    "deal_id": deal_id, "entry_id": entry.id, "rule": t.rule,
                    "timer_due": chrono::DateTime::from_timestamp_millis(t.due_ms as i64).map(|d| d.to_rfc3339()),
                }));
            }
            return Ok(Verdict::Applied { effects: count });
        }

        let record = match existing {
            Some(mut record) => {
                record.decisions.extend(decisions);
                record.note = Some("backfill".into());
                record
            }
            // A backfill's job has no event behind it: no event ids.
            None => entry_record(
                job,
                &entry,
                EntryAction::Acted,
                decisions,
                &self.rules,
                Some("backfill"),
            ),
        };
        if !job.known {
            // As a round records a deal it meets without a new entry.
            job.first_met(self.floor, Some(&entry));
        }
        // Told before it is recorded, as a round tells its entries.
        worker.emit(Activity::StageEntry {
            deal_id,
            entry_id: entry.id,
            stage_id: entry.stage_id.clone(),
            acted: true,
            note: "backfill".into(),
        });
        worker.record(job, (&[record], intents), &timers)?;
        tracing::info!(deal_id, entry_id = entry.id, stage = %entry.stage_id, effects = count, "backfill: rules applied to the current stage entry");
        Ok(Verdict::Applied { effects: count })
    }
}

/// A deal's current entry, to be decided by the backfill.
struct Current {
    deal: Deal,
    /// The deal's newest history entry: the stage it is in now.
    entry: StageEntry,
    /// The decision log's record of the entry, if the service met it.
    existing: Option<EntryRecord>,
    /// The rules already decided for it (by a round or an earlier backfill): not again.
    done: HashSet<String>,
}

impl Run<'_> {
    /// The classify step of a backfill: the deal's current entry if the backfill is to decide
    /// it, else the verdict (no history, moved meanwhile, a move the worker has yet to act on,
    /// the service's own move, a malformed answer).
    fn classify(
        &self,
        job: &Job,
        history: &Response,
        deal: Response,
    ) -> Result<Result<Current, Verdict>, BackfillError> {
        let worker = self.worker;
        let deal_id = job.deal_id;
        let deal = match deal_of(deal_id, deal, "crm.deal.get") {
            Ok(deal) => deal,
            Err(why) => return Ok(Err(Verdict::Malformed(why))),
        };
        let items = history_page(&history.result).map_err(BackfillError::Malformed)?;
        // The newest entry (the first listed of the newest id).
        let newest = entries_of(deal_id, items)
            .map_err(BackfillError::Malformed)?
            .into_iter()
            .reduce(|newest, e| if e.id > newest.id { e } else { newest });
        let Some(entry) = newest else {
            tracing::debug!(deal_id, "backfill: the deal has no stage history");
            return Ok(Err(Verdict::Skipped));
        };
        if deal.stage_id() != Some(entry.stage_id.as_str()) {
            // It moved between the two reads: the worker acts on that move.
            return Ok(Err(Verdict::Skipped));
        }
        if entry.id > job.seen(self.floor) {
            // A move the service has not processed yet: the worker acts on it (all rules, gates
            // included), not the backfill.
            return Ok(Err(Verdict::Skipped));
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
            return Ok(Err(Verdict::Already));
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
        Ok(Ok(Current {
            deal,
            entry,
            existing,
            done,
        }))
    }
}

/// A deal's answer from the read batch: `None` when the deal was deleted meanwhile.
fn answer(
    result: Option<Result<Response, CallError>>,
    method: &str,
) -> Result<Option<Response>, BackfillError> {
    match result {
        Some(Ok(answer)) => Ok(Some(answer)),
        Some(Err(e)) if e.kind() == ErrorKind::NotFound => Ok(None),
        Some(Err(error)) => Err(BackfillError::Portal {
            method: method.to_string(),
            error,
        }),
        None => Err(BackfillError::Malformed(format!("{method}: no answer"))),
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

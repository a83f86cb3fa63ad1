//! The time-driven half of a round (`control.md`): a stage entry recorded arms the timers of
//! the `[[sla]]`s watching it, and disarms those of the entries the deal left (closing their
//! tasks where `close_on_leave` says so); a timer that has come due fires here, in the round
//! of its deal, so that the deal and its newest history entry it checks are read in the
//! round's shared `batch`, and its effects go through the same intents, lookups and results
//! as the stage-entry rules'. The timer loop (`crate::worker::control`) only queues the deal when one
//! of its timers comes due.

use chrono::{DateTime, FixedOffset};

use super::Worker;
use super::job::Job;
use crate::bitrix::calls;
use crate::rules::{Deal, Decision, FieldCatalog, Input, Outcome, RuleSet, StageEntry};
use crate::store::{
    EffectKind, EffectRecord, EffectState, EntryRecord, RECORD_VERSION, StoreError, TimerRecord,
    TimerState, now_ms,
};

/// The index of an SLA's effect `i` at its firing `repetition`: each firing has its own block
/// of numbers, so that every firing is a distinct effect (keyed rule, entry, repetition).
pub(crate) fn sla_index(repetition: u32, i: u32) -> u32 {
    repetition.saturating_mul(100).saturating_add(i)
}

/// The index of the close (`close_on_leave`) of the task made by effect `index` of a rule:
/// after every other effect number of the entry.
pub(crate) const CLOSE_TASKS: u32 = 1_000_000;

/// What a round changes about a deal's timers and the effects they bring.
#[derive(Default)]
pub(crate) struct TimerWork {
    pub(crate) timers: Vec<TimerRecord>,
    pub(crate) intents: Vec<EffectRecord>,
    /// Entry records with a firing's decision added (the decision log).
    pub(crate) records: Vec<EntryRecord>,
}

fn ms(at: DateTime<FixedOffset>) -> u64 {
    at.timestamp_millis().max(0) as u64
}

impl Worker {
    /// The timers to arm for `entry`, just recorded and acted on (and not moved back by a
    /// gate): one per `[[sla]]` watching it, due `within` after the entry.
    pub(crate) fn arm(
        &self,
        deal_id: u64,
        entry: &StageEntry,
        rules: &RuleSet,
    ) -> Vec<TimerRecord> {
        let now = now_ms();
        rules
            .controls()
            .sla()
            .iter()
            .filter(|sla| sla.watches(entry))
            .filter_map(|sla| {
                let due = sla.due(&self.calendar, entry.created_time, 0)?;
                tracing::debug!(deal_id, entry_id = entry.id, rule = sla.name(), due = %due, "timer armed");
                Some(TimerRecord {
                    v: RECORD_VERSION,
                    deal_id,
                    entry_id: entry.id,
                    rule: sla.name().to_string(),
                    repetition: 0,
                    due_ms: ms(due),
                    entry: entry.clone(),
                    state: TimerState::Pending,
                    armed_at_ms: now,
                    updated_at_ms: now,
                    history: Vec::new(),
                })
            })
            .collect()
    }

    /// The deal has a new entry `current`: the pending timers of its other entries will never
    /// fire (it left them), and the open tasks those entries made with `close_on_leave` are
    /// to be completed or deferred.
    pub(crate) fn left_entries(
        &self,
        job: &Job,
        current: &StageEntry,
        rules: &RuleSet,
        work: &mut TimerWork,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        for mut timer in self.store.timers_of(job.deal_id)? {
            if timer.state != TimerState::Pending || timer.entry_id == current.id {
                continue;
            }
            let why = format!("left the stage: now in {}", current.stage_id);
            tracing::info!(deal_id = job.deal_id, entry_id = timer.entry_id, rule = %timer.rule, "timer disarmed: {why}");
            timer.skip(why, now);
            work.timers.push(timer);
        }
        let left = job.state.last_entry_id;
        if left == 0 || left >= current.id {
            return Ok(());
        }
        let known = self.store.effects(job.deal_id)?;
        for task in known
            .iter()
            .filter(|e| e.entry_id == left && e.kind == EffectKind::Task && e.index < CLOSE_TASKS)
        {
            let EffectState::Done { id } = &task.state else {
                continue;
            };
            let Some(how) = rules.close_on_leave(&task.rule) else {
                continue;
            };
            let index = CLOSE_TASKS.saturating_add(task.index);
            if known
                .iter()
                .any(|e| e.entry_id == left && e.rule == task.rule && e.index == index)
            {
                continue;
            }
            let call = calls::task_close(how.method(), id);
            work.intents.push(EffectRecord {
                v: RECORD_VERSION,
                deal_id: job.deal_id,
                entry_id: left,
                rule: task.rule.clone(),
                index,
                kind: EffectKind::CloseTask,
                method: call.method,
                params: call.params,
                marker: id.clone(),
                state: EffectState::Pending,
                // Looked up before it is sent: a task the user already closed is left alone.
                attempts: 1,
                updated_at_ms: now,
                subject: None,
            });
        }
        Ok(())
    }

    /// Fires or skips the deal's timers that have come due, on the deal as this round read it.
    /// A timer whose deal is no longer in its entry is skipped ("left the stage"); one that
    /// falls outside working time while `control.quiet_outside_hours` holds waits for the next
    /// working period; otherwise its SLA decides, and its effects become intents.
    pub(crate) async fn fire_due(
        &self,
        job: &mut Job,
        deal: &Deal,
        (catalog, rules): (&FieldCatalog, &RuleSet),
        work: &mut TimerWork,
    ) -> Result<(), StoreError> {
        let now = self.clock.now().fixed_offset();
        let now_ms_clock = ms(now);
        let changed: Vec<(u64, String)> = work
            .timers
            .iter()
            .map(|t| (t.entry_id, t.rule.clone()))
            .collect();
        let due: Vec<TimerRecord> = self
            .store
            .timers_of(job.deal_id)?
            .into_iter()
            .filter(|t| t.state == TimerState::Pending && t.due_ms <= now_ms_clock)
            .filter(|t| !changed.contains(&(t.entry_id, t.rule.clone())))
            .collect();
        for mut timer in due {
            let stamp = now_ms();
            // A genuine move out of the entry disarms its timers when it is recorded; a move a
            // gate sent back (and its echo) does not, so the deal in the timer's stage now is
            // still in its entry.
            let still_in = deal.stage_id() == Some(timer.entry.stage_id.as_str());
            let Some(sla) = rules.controls().sla_named(&timer.rule) else {
                timer.skip("the rule is no longer in the rule set".into(), stamp);
                work.timers.push(timer);
                continue;
            };
            if !still_in {
                let decision = sla.left(deal.stage_id().map(str::to_string));
                tracing::info!(deal_id = job.deal_id, entry_id = timer.entry_id, rule = %timer.rule, now_in = ?deal.stage_id(), "sla timer skipped: the deal left the stage entry");
                self.metrics.control_effect(&timer.rule, "sla", "skipped");
                timer.note(decision.outcome.to_string(), stamp);
                timer.state = TimerState::Skipped {
                    why: "left the stage".into(),
                };
                self.add_decision(job.deal_id, &timer, decision, work)?;
                work.timers.push(timer);
                continue;
            }
            if self.quiet_outside_hours && !self.calendar.is_working_time(now) {
                let at = self.calendar.next_working_moment(now);
                tracing::info!(deal_id = job.deal_id, entry_id = timer.entry_id, rule = %timer.rule, until = %at, "sla timer waits for working time");
                timer.due_ms = ms(at).max(now_ms_clock + 1);
                timer.updated_at_ms = stamp;
                work.timers.push(timer);
                continue;
            }
            let input = Input {
                deal,
                entry: &timer.entry,
                previous_stage: None,
                catalog,
                calendar: &self.calendar,
                portal_origin: &self.portal_origin,
                max_tunnel_depth: self.settings.max_tunnel_depth,
                language: self.language,
            };
            let mut decisions = vec![sla.fire(&input, timer.repetition, now)];
            let planned = self
                .plan_at(
                    job,
                    &timer.entry,
                    &mut decisions,
                    sla_index(timer.repetition, 0),
                )
                .await;
            let planned = match planned {
                Ok(planned) => planned,
                Err(ending) => {
                    // People could not be resolved now: the timer stays due, the deal is tried again.
                    job.end(ending);
                    return Ok(());
                }
            };
            let decision = decisions.pop().unwrap_or_else(|| sla.left(None));
            let result = match &decision.outcome {
                Outcome::Fired(_) => "fired",
                Outcome::Skipped(_) => "skipped",
                Outcome::Failed(_) => "failed",
            };
            tracing::info!(deal_id = job.deal_id, entry_id = timer.entry_id, rule = %timer.rule, repetition = timer.repetition, effects = planned.len(), "sla timer {result}");
            self.metrics.control_effect(&timer.rule, "sla", result);
            timer.note(decision.outcome.to_string(), stamp);
            work.intents.extend(planned);
            let next = timer.repetition + 1;
            match sla.due(&self.calendar, timer.entry.created_time, next) {
                Some(at) => {
                    timer.repetition = next;
                    timer.due_ms = ms(at);
                }
                None => timer.state = TimerState::Fired,
            }
            timer.updated_at_ms = stamp;
            self.add_decision(job.deal_id, &timer, decision, work)?;
            work.timers.push(timer);
        }
        Ok(())
    }

    /// Adds a timer's decision to the record of its entry (the decision log `explain` prints).
    fn add_decision(
        &self,
        deal_id: u64,
        timer: &TimerRecord,
        decision: Decision,
        work: &mut TimerWork,
    ) -> Result<(), StoreError> {
        if let Some(record) = work
            .records
            .iter_mut()
            .find(|r| r.entry.id == timer.entry_id)
        {
            record.decisions.push(decision);
            return Ok(());
        }
        if let Some(mut record) = self.store.entry_record(deal_id, timer.entry_id)? {
            record.decisions.push(decision);
            work.records.push(record);
        }
        Ok(())
    }
}

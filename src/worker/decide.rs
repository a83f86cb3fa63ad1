//! The one decide path of a deal's stage entries, in four steps: **classify** the entries
//! (which are new, which one the rules act on, which are superseded or the service's own
//! move), **evaluate** the rules for the entry acted on, **plan** the fired effects
//! ([`super::plan`]), and **record** the entries, decisions and intents in one transaction.
//! A round goes through all four for the new entries of its deals; a backfill classifies the
//! deal's current entry its own way and shares the other three.

use serde_json::Value;

use super::job::{Ending, Job, failure};
use super::read::{RoundRead, deal_of};
use super::timers::TimerWork;
use super::{Activity, Worker};
use crate::bitrix::{CallError, ErrorKind, Response};
use crate::rules::{
    Deal, Decision, Evaluation, FieldCatalog, Input, Outcome, RuleSet, StageEntry, StageSemantic,
    evaluate,
};
use crate::store::{
    DealState, Echo, EffectKind, EffectRecord, EffectState, EntryAction, EntryRecord,
    RECORD_VERSION, StoreError, TimerRecord, now_ms,
};

/// The entries of a deal's history the service has not seen yet, classified.
#[derive(Debug)]
struct NewEntries<'a> {
    /// Oldest first, each with what is done about it.
    entries: Vec<(&'a StageEntry, EntryAction)>,
    /// The newest of them: the one the deal is in, if its stage is the deal's.
    newest: &'a StageEntry,
    /// The stage the deal came from into `newest` (within one pipeline), for the gates.
    previous_stage: Option<String>,
}

/// Classifies the entries of `entries` (oldest first) past what the deal's job has seen:
/// the newest is acted on if the deal is in its stage now, an earlier one is superseded, and
/// the first entry into the stage the service moved the deal back to is its own move (its
/// echo, taken off the deal's state here). `None` when no entry is new.
fn classify<'a>(
    job: &mut Job,
    entries: &'a [StageEntry],
    floor: u64,
    deal: &Deal,
) -> Option<NewEntries<'a>> {
    let seen = job.seen(floor);
    let new: Vec<&StageEntry> = entries.iter().filter(|e| e.id > seen).collect();
    let newest = new.last().copied()?;
    let current_stage = deal.stage_id().map(str::to_string);
    // The service's own move (a revert): the first new entry into that stage past the id it
    // knew then.
    let mut echo_entry = None;
    if let Some(echo) = job.state.echo.clone()
        && let Some(e) = new
            .iter()
            .find(|e| e.id > echo.after_entry_id && e.stage_id == echo.to_stage)
    {
        echo_entry = Some(e.id);
        job.state.echo = None;
    }
    let previous_stage = {
        let before = entries.iter().rev().find(|e| e.id < newest.id);
        match before {
            Some(b) if b.category_id == newest.category_id => Some(b.stage_id.clone()),
            Some(_) => None,
            None if job.state.category_id == Some(newest.category_id) => job.state.stage_id.clone(),
            None => None,
        }
    };
    let entries = new
        .into_iter()
        .map(|entry| {
            let action = if echo_entry == Some(entry.id) {
                EntryAction::Echo
            } else if entry.id == newest.id
                && current_stage.as_deref() == Some(entry.stage_id.as_str())
            {
                EntryAction::Acted
            } else {
                EntryAction::Superseded {
                    now_in: current_stage.clone(),
                }
            };
            (entry, action)
        })
        .collect();
    Some(NewEntries {
        entries,
        newest,
        previous_stage,
    })
}

impl Worker {
    /// A round's decision for one deal, from its read answers: the deal checked, its history
    /// read, the pending effects of earlier rounds resolved, then classify → evaluate → plan →
    /// record for its new entries. How the job ends is set on it; only the store's failure is
    /// an error.
    pub(super) async fn decide(
        &self,
        job: &mut Job,
        floor: u64,
        read: RoundRead,
        catalog: &FieldCatalog,
        rules: &RuleSet,
    ) -> Result<(), StoreError> {
        let Some((deal, entries)) =
            self.usable_answers(job, (read.deal, read.deal_via), read.entries)?
        else {
            return Ok(());
        };
        self.resolve_pending(job, read.lookups)?;

        let Some(new) = classify(job, &entries, floor, &deal) else {
            // An update without a new stage entry runs no rules; a timer of the deal that has
            // come due fires on the deal as read now.
            if !job.known {
                job.first_met(floor, entries.last());
                self.store.put_deal_state(job.deal_id, &job.state)?;
            }
            let mut work = TimerWork::default();
            self.fire_due(job, &deal, (catalog, rules), &mut work)
                .await?;
            if job.ending.is_some() {
                return Ok(());
            }
            if !work.timers.is_empty() {
                let TimerWork {
                    timers,
                    intents,
                    records,
                } = work;
                self.record(job, (&records, intents), &timers)?;
            }
            job.end(Ending::Done);
            return Ok(());
        };

        let mut records = Vec::with_capacity(new.entries.len());
        let mut intents = Vec::new();
        let mut work = TimerWork::default();
        // Whether the deal really left its stage: not when its newest entry is the service's
        // own move back, nor when a gate moves it back from there (it never entered).
        let mut left = true;
        for (entry, action) in new.entries {
            let mut decisions = Vec::new();
            if action == EntryAction::Acted {
                // The entry is the stage the deal is in now, so the deal's own semantic holds for
                // it too: it stands in when the history item did not carry one.
                let entry = &with_deal_semantic(entry, &deal);
                decisions = self.evaluate_entry(
                    job.deal_id,
                    rules,
                    &deal,
                    entry,
                    new.previous_stage.as_deref(),
                    catalog,
                );
                match self.plan(job, entry, &mut decisions).await {
                    Ok(planned) => {
                        // An entry moved back by a gate was never really entered: no timer.
                        if planned.iter().any(|e| e.kind == EffectKind::MoveBack) {
                            left = false;
                        } else {
                            work.timers.extend(self.arm(job.deal_id, entry, rules));
                        }
                        intents.extend(planned);
                    }
                    Err(ending) => {
                        // People could not be resolved now: record nothing, try the deal again.
                        job.end(ending);
                        return Ok(());
                    }
                }
            }
            if entry.id == new.newest.id && action == EntryAction::Echo {
                left = false;
            }
            self.tell_entry(job, entry, &action, decisions.len());
            records.push(entry_record(job, entry, action, decisions, rules, None));
        }
        if left {
            self.left_entries(job, new.newest, rules, &mut work)?;
        }
        advance(&mut job.state, new.newest, &intents);
        self.fire_due(job, &deal, (catalog, rules), &mut work)
            .await?;
        if job.ending.is_some() {
            return Ok(());
        }
        let TimerWork {
            timers,
            intents: timer_intents,
            records: timer_records,
        } = work;
        intents.extend(timer_intents);
        for extra in timer_records {
            match records.iter_mut().find(|r| r.entry.id == extra.entry.id) {
                Some(record) => *record = extra,
                None => records.push(extra),
            }
        }
        self.record(job, (&records, intents), &timers)?;
        job.end(Ending::Done);
        Ok(())
    }

    /// The deal and its history (oldest first, each entry once) from the round's reads; `None`
    /// when they cannot be used this round (the job's ending says why) or the deal is gone.
    fn usable_answers(
        &self,
        job: &mut Job,
        (deal, via): (Option<Result<Response, CallError>>, &str),
        entries: Result<Vec<StageEntry>, Ending>,
    ) -> Result<Option<(Deal, Vec<StageEntry>)>, StoreError> {
        let deal_id = job.deal_id;
        let deal = match deal {
            // Nothing is recorded from a malformed answer (no entry used up as superseded):
            // the job is tried again, and parked with the reason if the portal goes on.
            Some(Ok(answer)) => match deal_of(deal_id, answer, via) {
                Ok(deal) => deal,
                Err(why) => {
                    job.end(Ending::Retry(why));
                    return Ok(None);
                }
            },
            Some(Err(error)) if error.kind() == ErrorKind::NotFound => {
                self.deal_deleted(job)?;
                return Ok(None);
            }
            Some(Err(error)) => {
                job.end(failure(&error));
                return Ok(None);
            }
            None => {
                job.end(Ending::Retry(format!("{via}: no answer")));
                return Ok(None);
            }
        };
        match entries {
            Ok(entries) => Ok(Some((deal, entries))),
            Err(ending) => {
                job.end(ending);
                Ok(None)
            }
        }
    }

    /// A stage entry of a round told: logged, counted, and sent to the listeners.
    fn tell_entry(&self, job: &Job, entry: &StageEntry, action: &EntryAction, concerned: usize) {
        let note = match action {
            EntryAction::Acted => format!("{concerned} rule(s) concerned"),
            EntryAction::Superseded { now_in } => {
                format!(
                    "superseded: the deal is now in {}",
                    now_in.as_deref().unwrap_or("?")
                )
            }
            EntryAction::Echo => "the service's own move: no rules".into(),
        };
        let acted = *action == EntryAction::Acted;
        tracing::info!(
            deal_id = job.deal_id, entry_id = entry.id, stage = %entry.stage_id,
            event_id = job.event_id(), acted, "{note}"
        );
        self.metrics.stage_entry(action);
        self.emit(Activity::StageEntry {
            deal_id: job.deal_id,
            entry_id: entry.id,
            stage_id: entry.stage_id.clone(),
            acted,
            note,
        });
    }

    /// The rules' decisions for one stage entry of the deal (no I/O: [`evaluate`]); tunnels
    /// stopped by the chain depth are reported here.
    pub(crate) fn evaluate_entry(
        &self,
        deal_id: u64,
        rules: &RuleSet,
        deal: &Deal,
        entry: &StageEntry,
        previous_stage: Option<&str>,
        catalog: &FieldCatalog,
    ) -> Vec<Decision> {
        let input = Input {
            deal,
            entry,
            previous_stage,
            catalog,
            calendar: &self.calendar,
            portal_origin: &self.portal_origin,
            max_tunnel_depth: self.settings.max_tunnel_depth,
            language: self.language,
        };
        let evaluation = evaluate(rules, &input);
        self.note_stopped_chains(deal_id, entry.id, &evaluation);
        evaluation.decisions
    }

    /// Tunnels that made no copy because the deal is already the copy at
    /// `rules.max_tunnel_depth` of a chain: their decisions failed (the decision log says why);
    /// each is logged once and counted (`b24robot_tunnel_depth_exceeded_total`).
    fn note_stopped_chains(&self, deal_id: u64, entry_id: u64, evaluation: &Evaluation) {
        for rule in &evaluation.chains_stopped {
            let why = evaluation
                .decisions
                .iter()
                .find(|d| d.rule == *rule)
                .and_then(|d| match &d.outcome {
                    Outcome::Failed(why) => Some(why.as_str()),
                    _ => None,
                })
                .unwrap_or("tunnel chain too deep");
            tracing::warn!(deal_id, entry_id, rule = %rule, "{why}");
            self.metrics.tunnel_depth_exceeded();
        }
    }

    /// Records the deal's state, its entries and their decisions, and the intents of their
    /// effects in one transaction; then the intents still to apply join the job's writes, and
    /// those that failed already (a person not found) are reported.
    pub(crate) fn record(
        &self,
        job: &mut Job,
        (records, intents): (&[EntryRecord], Vec<EffectRecord>),
        timers: &[TimerRecord],
    ) -> Result<(), StoreError> {
        self.store
            .commit_deal(job.deal_id, &job.state, (records, &intents), timers)?;
        let mut look_first = false;
        for effect in intents {
            match &effect.state {
                // A stage's task is closed only once its status is read (a task the user closed
                // is left alone): the close waits for the deal's next round, which looks it up
                // first, as after an unknown outcome.
                EffectState::Pending if effect.kind == EffectKind::CloseTask => look_first = true,
                EffectState::Pending => job.writes.push(effect),
                EffectState::Failed { error } => self.emit_effect(&effect, Err(error.clone())),
                EffectState::Done { .. } => {}
            }
        }
        if look_first {
            // The deal's job runs again (its queue record changed), right after this round.
            self.store.enqueue(job.deal_id, now_ms())?;
        }
        Ok(())
    }

    fn deal_deleted(&self, job: &mut Job) -> Result<(), StoreError> {
        tracing::info!(
            deal_id = job.deal_id,
            event_id = job.event_id(),
            "deal deleted: job completed"
        );
        job.state.deleted = true;
        for mut effect in std::mem::take(&mut job.pending) {
            effect.state = EffectState::Failed {
                error: "deal deleted".into(),
            };
            effect.updated_at_ms = now_ms();
            self.store.put_effect(&effect)?;
        }
        self.store.put_deal_state(job.deal_id, &job.state)?;
        job.end(Ending::Done);
        Ok(())
    }
}

/// The decision log's record of one stage entry of the job's deal: what was done about it
/// and the rules' decisions, under the rules' version and the events behind the job.
pub(crate) fn entry_record(
    job: &Job,
    entry: &StageEntry,
    action: EntryAction,
    decisions: Vec<Decision>,
    rules: &RuleSet,
    note: Option<&str>,
) -> EntryRecord {
    EntryRecord {
        v: RECORD_VERSION,
        deal_id: job.deal_id,
        entry: entry.clone(),
        recorded_at_ms: now_ms(),
        action,
        ruleset_version: rules.version().to_string(),
        decisions,
        event_ids: job.queued.event_ids.clone(),
        note: note.map(str::to_string),
    }
}

/// The deal's state once its new entries are recorded: seen up to the newest, in its stage,
/// and, when a move back is planned, expecting that move's echo.
fn advance(state: &mut DealState, newest: &StageEntry, intents: &[EffectRecord]) {
    for effect in intents {
        if effect.kind == EffectKind::MoveBack {
            let to_stage = effect
                .params
                .pointer("/fields/STAGE_ID")
                .and_then(Value::as_str)
                .unwrap_or("");
            state.echo = Some(Echo {
                to_stage: to_stage.to_string(),
                after_entry_id: newest.id,
            });
        }
    }
    state.last_entry_id = newest.id;
    state.stage_id = Some(newest.stage_id.clone());
    state.category_id = Some(newest.category_id);
    state.deleted = false;
}

/// The entry with the deal's `STAGE_SEMANTIC_ID` when the history item had none ("P" is what a
/// missing value reads as) and the deal says the stage is a success or a failure.
fn with_deal_semantic(entry: &StageEntry, deal: &Deal) -> StageEntry {
    let from_deal = deal
        .get("STAGE_SEMANTIC_ID")
        .and_then(Value::as_str)
        .map(StageSemantic::from_code);
    match from_deal {
        Some(semantic)
            if entry.semantic == StageSemantic::Process && semantic != StageSemantic::Process =>
        {
            StageEntry {
                semantic,
                ..entry.clone()
            }
        }
        _ => entry.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::worker::job::tests::job;

    fn entry(id: u64, stage: &str, semantic: StageSemantic) -> StageEntry {
        StageEntry {
            id,
            type_id: 3,
            stage_id: stage.into(),
            category_id: 0,
            semantic,
            created_time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00")
                .expect("time"),
        }
    }

    fn deal(stage: &str, semantic: &str) -> Deal {
        let value = json!({ "ID": "5", "STAGE_ID": stage, "STAGE_SEMANTIC_ID": semantic });
        Deal::new(value.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn a_history_item_without_semantic_takes_the_deals() {
        let won = |semantic| entry(7, "WON", semantic);
        assert_eq!(
            with_deal_semantic(&won(StageSemantic::Process), &deal("WON", "S")).semantic,
            StageSemantic::Success
        );
        assert_eq!(
            with_deal_semantic(&won(StageSemantic::Failure), &deal("WON", "S")).semantic,
            StageSemantic::Failure
        );
        assert_eq!(
            with_deal_semantic(&won(StageSemantic::Process), &deal("WON", "P")).semantic,
            StageSemantic::Process
        );
    }

    #[test]
    fn only_the_newest_entry_in_the_deals_stage_is_acted_on_and_the_echo_is_known() {
        let p = StageSemantic::Process;
        let entries = [
            entry(10, "NEW", p),
            entry(11, "PREPARATION", p),
            entry(12, "NEW", p),
            entry(13, "EXECUTING", p),
        ];
        let mut j = job(5, Vec::new());
        j.state.last_entry_id = 10;
        j.state.echo = Some(Echo {
            to_stage: "NEW".into(),
            after_entry_id: 11,
        });
        let new = classify(&mut j, &entries, 0, &deal("EXECUTING", "P")).expect("new entries");
        let actions: Vec<(u64, &EntryAction)> =
            new.entries.iter().map(|(e, a)| (e.id, a)).collect();
        let superseded = EntryAction::Superseded {
            now_in: Some("EXECUTING".into()),
        };
        assert_eq!(
            actions,
            vec![
                (11, &superseded),
                (12, &EntryAction::Echo),
                (13, &EntryAction::Acted)
            ]
        );
        assert_eq!(new.newest.id, 13);
        assert_eq!(new.previous_stage.as_deref(), Some("NEW"));
        assert_eq!(j.state.echo, None, "the echo is used up");

        let mut j = job(5, Vec::new());
        j.state.last_entry_id = 13;
        assert!(classify(&mut j, &entries, 0, &deal("EXECUTING", "P")).is_none());
    }
}

//! One round: read many deals in one batch, decide, record, write in one batch, record again.
//! See the module documentation of [`crate::worker`] for the model.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use rand::Rng;
use serde_json::{Value, json};

use super::effects::{self, PlannedCall};
use super::portal::{HISTORY_SELECT, PersonError, list_items, parse_entry};
use super::{Activity, Worker};
use crate::bitrix::{BatchCall, CallError, ErrorKind, Response, Retry};
use crate::ops::metrics::{EffectResult, PagedList, PagingStop};
use crate::rules::{
    Deal, Decision, Effect, FieldCatalog, Input, Outcome, Person, StageEntry, StageSemantic,
    evaluate,
};
use crate::store::{
    DealState, Echo, EffectKind, EffectRecord, EffectState, EntryAction, EntryRecord, QueuedDeal,
    RECORD_VERSION, StoreError, now_ms,
};

/// What one read `batch` brought back (see [`Worker::read_deals`]).
pub(crate) struct DealReads {
    pub(crate) catalog: Arc<FieldCatalog>,
    /// One per job, in the jobs' order.
    pub(crate) deals: Vec<DealRead>,
}

/// One deal's answers: `None` where the batch gave no answer for the call.
pub(crate) struct DealRead {
    pub(crate) history: Option<Result<Response, CallError>>,
    pub(crate) deal: Option<Result<Response, CallError>>,
    /// (index in the job's pending effects, the lookup's answer)
    pub(crate) lookups: Vec<(usize, Option<Result<Response, CallError>>)>,
}

/// Effect indexes from here on are the comments linking a tunnel copy with its source, made
/// after the copy (they need its id); a rule's own effects are numbered from 0.
const LINK_COMMENTS: u32 = 1000;

/// How a deal's job ends this round.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ending {
    /// Everything done (or failed for good): complete the queue record.
    Done,
    /// Something failed that may work later: count an attempt, back off.
    Retry(String),
    /// The portal refused in a way retrying cannot fix (auth, permission, validation, a blocked
    /// portal): park the job at once, with the error, for an operator to re-run once the cause
    /// is fixed (`b24-robot jobs retry`).
    Park(String),
    /// Not an attempt's fault (a method parked by the portal, no history floor yet): try again
    /// at the given moment without counting.
    Postpone(u64, String),
    /// A record of the deal in the store cannot be read: park the job with the error; the
    /// round's other deals go on (`b24-robot store check` lists the damaged records).
    Unreadable(String),
}

pub(crate) struct Job {
    pub(crate) deal_id: u64,
    queued: QueuedDeal,
    pub(crate) state: DealState,
    pub(crate) known: bool,
    /// Effects recorded by an earlier round and still pending.
    pub(crate) pending: Vec<EffectRecord>,
    /// The highest id of a comment this deal already got from the service: a lookup for a
    /// pending comment only accepts a newer one with the same text.
    known_comments: u64,
    pub(crate) ending: Option<Ending>,
    /// Writes to send this round.
    pub(crate) writes: Vec<EffectRecord>,
}

impl Job {
    pub(crate) fn end(&mut self, ending: Ending) {
        // The first failure is the one to report; a later Done never hides it. A damaged
        // record hides everything: nothing else about the deal can be trusted.
        if self.ending.is_none()
            || matches!(self.ending, Some(Ending::Done))
            || matches!(ending, Ending::Unreadable(_))
        {
            self.ending = Some(ending);
        }
    }

    /// The newest event behind this job; `None` when only the sweep queued it (then the field is
    /// left out of the log line rather than logged as a made-up id).
    fn event_id(&self) -> Option<u64> {
        self.queued.event_ids.last().copied()
    }
}

impl Worker {
    pub(super) async fn round(&self, deals: Vec<u64>) {
        if let Err(error) = self.round_inner(&deals).await {
            // The store failed: nothing of this round can be trusted as recorded. Every deal
            // stays queued and is tried again later.
            tracing::error!(%error, deals = deals.len(), "round failed on the store");
            let due = now_ms() + 5_000;
            for &deal in &deals {
                self.scheduler.release(deal);
                self.scheduler.schedule_at(deal, due);
            }
        }
    }

    /// A deal's job as the store has it: its state and its pending effects.
    pub(crate) fn load_job(&self, deal_id: u64, queued: QueuedDeal) -> Result<Job, StoreError> {
        let state = self.store.deal_state(deal_id)?;
        let (pending, settled): (Vec<EffectRecord>, Vec<EffectRecord>) = self
            .store
            .effects(deal_id)?
            .into_iter()
            .partition(|e| e.state == EffectState::Pending);
        let known_comments = settled
            .iter()
            .filter(|e| e.kind == EffectKind::Comment)
            .filter_map(|e| match &e.state {
                EffectState::Done { id } => id.parse().ok(),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Ok(Job {
            deal_id,
            known_comments,
            queued,
            known: state.is_some(),
            state: state.unwrap_or_default(),
            pending,
            ending: None,
            writes: Vec::new(),
        })
    }

    async fn round_inner(&self, deals: &[u64]) -> Result<(), StoreError> {
        let mut jobs = Vec::with_capacity(deals.len());
        for &deal_id in deals {
            let job = match self.store.queued(deal_id) {
                Ok(Some(queued)) if !queued.parked => self.load_job(deal_id, queued).map(Some),
                Ok(_) => Ok(None),
                Err(error) => Err(error),
            };
            match job {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => self.scheduler.release(deal_id),
                Err(error) if error.is_unreadable() => {
                    self.park_unreadable(deal_id, None, &error.to_string())?;
                    self.scheduler.release(deal_id);
                }
                Err(error) => return Err(error),
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }

        let Some(floor) = self.store.history_floor()? else {
            // The starting point of the stage history is not known yet (the portal was not
            // reachable at start); the sweep sets it.
            for job in &mut jobs {
                job.end(Ending::Postpone(
                    now_ms() + 1_000,
                    "waiting for the stage history's starting point".into(),
                ));
            }
            return self.finish(jobs).await;
        };

        self.read_and_decide(&mut jobs, floor).await?;
        self.store.flush_async().await?;
        self.write(&mut jobs).await?;
        self.finish(jobs).await
    }

    /// Reads every deal of the round in one batch, records new entries, decisions and intents.
    async fn read_and_decide(&self, jobs: &mut [Job], floor: u64) -> Result<(), StoreError> {
        let reads = self
            .read_deals(jobs, |job| {
                let mut filter = serde_json::Map::new();
                filter.insert("OWNER_ID".into(), json!(job.deal_id));
                if job.known {
                    filter.insert(">ID".into(), json!(job.state.last_entry_id.max(floor)));
                }
                json!({ "entityTypeId": 2, "filter": filter, "order": { "ID": "ASC" }, "select": HISTORY_SELECT })
            })
            .await;
        for (job, read) in jobs.iter_mut().zip(reads.deals) {
            let decided = self
                .decide(
                    job,
                    floor,
                    read.history,
                    read.deal,
                    read.lookups,
                    &reads.catalog,
                )
                .await;
            match decided {
                Ok(()) => {}
                Err(error) if error.is_unreadable() => {
                    job.writes.clear();
                    job.end(Ending::Unreadable(error.to_string()));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// One read `batch` for many deals: the field catalog when the cached one is stale, then for
    /// each deal its stage history (with `history_params`), the deal itself, and the lookups of
    /// its pending effects. History comes before the deal: the deal read second is never older
    /// than its history.
    pub(crate) async fn read_deals(
        &self,
        jobs: &[Job],
        history_params: impl Fn(&Job) -> Value,
    ) -> DealReads {
        let mut calls = Vec::new();
        let catalog_at = self.catalog.fresh().is_none().then(|| {
            calls.push(BatchCall {
                method: "crm.deal.fields".into(),
                params: json!({}),
            });
            0
        });
        // (history, deal, [(pending index, lookup call index)]) per job
        let mut slots = Vec::with_capacity(jobs.len());
        for job in jobs {
            let history = calls.len();
            calls.push(BatchCall {
                method: "crm.stagehistory.list".into(),
                params: history_params(job),
            });
            let deal = calls.len();
            calls.push(BatchCall {
                method: "crm.deal.get".into(),
                params: json!({ "id": job.deal_id }),
            });
            let mut lookups = Vec::new();
            for (i, effect) in job.pending.iter().enumerate() {
                if let Some((method, params)) = effects::lookup_call(effect) {
                    lookups.push((i, calls.len()));
                    calls.push(BatchCall { method, params });
                }
            }
            slots.push((history, deal, lookups));
        }
        let mut results: Vec<Option<Result<Response, CallError>>> = self
            .client
            .batch(calls, Retry::Safe)
            .await
            .into_iter()
            .map(Some)
            .collect();

        let catalog = match catalog_at.and_then(|i| results[i].take()) {
            Some(Ok(answer)) => self.catalog.store(&answer.result),
            Some(Err(error)) => {
                tracing::warn!(%error, "crm.deal.fields failed; labels fall back to field codes");
                self.catalog
                    .any()
                    .unwrap_or_else(|| Arc::new(FieldCatalog::empty()))
            }
            None => self
                .catalog
                .any()
                .unwrap_or_else(|| Arc::new(FieldCatalog::empty())),
        };
        let deals = slots
            .into_iter()
            .map(|(history, deal, lookups)| DealRead {
                history: results[history].take(),
                deal: results[deal].take(),
                lookups: lookups
                    .into_iter()
                    .map(|(i, at)| (i, results[at].take()))
                    .collect(),
            })
            .collect();
        DealReads { catalog, deals }
    }

    async fn decide(
        &self,
        job: &mut Job,
        floor: u64,
        history: Option<Result<Response, CallError>>,
        deal: Option<Result<Response, CallError>>,
        lookups: Vec<(usize, Option<Result<Response, CallError>>)>,
        catalog: &FieldCatalog,
    ) -> Result<(), StoreError> {
        let deal_id = job.deal_id;
        let deal = match deal {
            Some(Ok(answer)) => match answer.result {
                Value::Object(map) => match malformed_deal(deal_id, &map) {
                    // Nothing is recorded from it (no entry used up as superseded): the job is
                    // tried again, and parked with the reason if the portal goes on.
                    Some(why) => {
                        job.end(Ending::Retry(format!("crm.deal.get {deal_id}: {why}")));
                        return Ok(());
                    }
                    None => Deal::new(map),
                },
                _ => {
                    job.end(Ending::Retry(format!(
                        "crm.deal.get {deal_id}: the answer is not a deal"
                    )));
                    return Ok(());
                }
            },
            Some(Err(error)) if error.kind() == ErrorKind::NotFound => {
                return self.deal_deleted(job);
            }
            Some(Err(error)) => {
                job.end(failure(&error));
                return Ok(());
            }
            None => {
                job.end(Ending::Retry("crm.deal.get: no answer".into()));
                return Ok(());
            }
        };
        let entries = match history {
            Some(Ok(answer)) => match self.history_items(deal_id, answer).await {
                Ok(items) => items,
                Err(ending) => {
                    job.end(ending);
                    return Ok(());
                }
            },
            Some(Err(error)) => {
                job.end(failure(&error));
                return Ok(());
            }
            None => {
                job.end(Ending::Retry("crm.stagehistory.list: no answer".into()));
                return Ok(());
            }
        };
        // Oldest first, each entry once (history_items).

        self.resolve_pending(job, lookups)?;

        let seen = if job.known {
            job.state.last_entry_id.max(floor)
        } else {
            floor
        };
        let new: Vec<&StageEntry> = entries.iter().filter(|e| e.id > seen).collect();
        let Some(newest) = new.last().copied() else {
            // An update without a new stage entry runs no rules.
            if !job.known {
                job.state.last_entry_id = floor;
                if let Some(last) = entries.last() {
                    job.state.stage_id = Some(last.stage_id.clone());
                    job.state.category_id = Some(last.category_id);
                }
                self.store.put_deal_state(deal_id, &job.state)?;
            }
            job.end(Ending::Done);
            return Ok(());
        };

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
                None if job.state.category_id == Some(newest.category_id) => {
                    job.state.stage_id.clone()
                }
                None => None,
            }
        };

        let rules = self.rules.current();
        let mut records = Vec::with_capacity(new.len());
        let mut intents = Vec::new();
        for entry in &new {
            let is_newest = entry.id == newest.id;
            let action = if echo_entry == Some(entry.id) {
                EntryAction::Echo
            } else if is_newest && current_stage.as_deref() == Some(entry.stage_id.as_str()) {
                EntryAction::Acted
            } else {
                EntryAction::Superseded {
                    now_in: current_stage.clone(),
                }
            };
            let mut decisions = Vec::new();
            if action == EntryAction::Acted {
                // The entry is the stage the deal is in now, so the deal's own semantic holds for
                // it too: it stands in when the history item did not carry one.
                let entry = &with_deal_semantic(entry, &deal);
                let input = Input {
                    deal: &deal,
                    entry,
                    previous_stage: previous_stage.as_deref(),
                    catalog,
                    calendar: &self.calendar,
                    portal_origin: &self.portal_origin,
                    max_tunnel_depth: self.settings.max_tunnel_depth,
                };
                let evaluation = evaluate(&rules, &input);
                self.note_stopped_chains(deal_id, entry.id, &evaluation);
                decisions = evaluation.decisions;
                match self.plan(job, entry, &mut decisions).await {
                    Ok(planned) => intents.extend(planned),
                    Err(ending) => {
                        // People could not be resolved now: record nothing, try the deal again.
                        job.end(ending);
                        return Ok(());
                    }
                }
            }
            let note = match &action {
                EntryAction::Acted => format!("{} rule(s) concerned", decisions.len()),
                EntryAction::Superseded { now_in } => {
                    format!(
                        "superseded: the deal is now in {}",
                        now_in.as_deref().unwrap_or("?")
                    )
                }
                EntryAction::Echo => "the service's own move: no rules".into(),
            };
            tracing::info!(
                deal_id, entry_id = entry.id, stage = %entry.stage_id, event_id = job.event_id(),
                acted = action == EntryAction::Acted, "{note}"
            );
            self.metrics.stage_entry(&action);
            self.emit(Activity::StageEntry {
                deal_id,
                entry_id: entry.id,
                stage_id: entry.stage_id.clone(),
                acted: action == EntryAction::Acted,
                note,
            });
            records.push(EntryRecord {
                v: RECORD_VERSION,
                deal_id,
                entry: (*entry).clone(),
                recorded_at_ms: now_ms(),
                action,
                ruleset_version: rules.version().to_string(),
                decisions,
                event_ids: job.queued.event_ids.clone(),
                note: None,
            });
        }
        for effect in &intents {
            if effect.kind == EffectKind::MoveBack {
                let to_stage = effect
                    .params
                    .pointer("/fields/STAGE_ID")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                job.state.echo = Some(Echo {
                    to_stage: to_stage.to_string(),
                    after_entry_id: newest.id,
                });
            }
        }
        job.state.last_entry_id = newest.id;
        job.state.stage_id = Some(newest.stage_id.clone());
        job.state.category_id = Some(newest.category_id);
        job.state.deleted = false;
        self.store
            .commit_deal(deal_id, &job.state, &records, &intents)?;
        for effect in intents {
            match &effect.state {
                EffectState::Pending => job.writes.push(effect),
                EffectState::Failed { error } => self.emit_effect(&effect, Err(error.clone())),
                EffectState::Done { .. } => {}
            }
        }
        job.end(Ending::Done);
        Ok(())
    }

    /// Effects of earlier rounds, with the answers of their lookups: found (applied before),
    /// or queued in `job.writes` to be sent again.
    pub(crate) fn resolve_pending(
        &self,
        job: &mut Job,
        lookups: Vec<(usize, Option<Result<Response, CallError>>)>,
    ) -> Result<(), StoreError> {
        let deal_id = job.deal_id;
        let pending = std::mem::take(&mut job.pending);
        let mut lookups: HashMap<usize, Option<Result<Response, CallError>>> =
            lookups.into_iter().collect();
        for (i, mut effect) in pending.into_iter().enumerate() {
            match lookups.remove(&i) {
                Some(Some(Ok(answer))) => {
                    if let Some(id) =
                        effects::found_in_lookup(&effect, &answer.result, job.known_comments)
                    {
                        tracing::info!(deal_id, entry_id = effect.entry_id, rule = %effect.rule, event_id = job.event_id(), id = %id, "effect found applied by an earlier attempt");
                        effect.state = EffectState::Done { id: id.clone() };
                        effect.updated_at_ms = now_ms();
                        self.store.put_effect(&effect)?;
                        if effect.kind == EffectKind::CopyDeal {
                            // The crash may have come before the link comments were recorded.
                            let known = self.store.effects(deal_id)?;
                            for link in self.link_comments(&effect, &id) {
                                let exists = known.iter().any(|e| {
                                    e.entry_id == link.entry_id
                                        && e.rule == link.rule
                                        && e.index == link.index
                                });
                                if !exists {
                                    self.store.put_effect(&link)?;
                                    job.writes.push(link);
                                }
                            }
                        }
                        self.emit_effect(&effect, Ok(id));
                        continue;
                    }
                }
                Some(Some(Err(error)))
                    if effect.kind == EffectKind::Comment && !error.is_retryable() =>
                {
                    // A portal that cannot list comments (method or scope missing): send it again
                    // rather than never (the only kind where a repeat is the lesser harm).
                    tracing::debug!(deal_id, %error, "comment lookup unavailable; sending again");
                }
                Some(Some(Err(error))) => {
                    job.end(failure(&error));
                    continue;
                }
                Some(None) => {
                    job.end(Ending::Retry("lookup: no answer".into()));
                    continue;
                }
                None => {}
            }
            effect.attempts += 1;
            effect.updated_at_ms = now_ms();
            self.store.put_effect(&effect)?;
            job.writes.push(effect);
        }
        Ok(())
    }

    /// Turns the fired decisions into effect records with their people resolved.
    pub(crate) async fn plan(
        &self,
        job: &Job,
        entry: &StageEntry,
        decisions: &mut [Decision],
    ) -> Result<Vec<EffectRecord>, Ending> {
        // Supervisors need the portal: resolve them all first, together.
        let mut wanted: Vec<u64> = Vec::new();
        for decision in decisions.iter() {
            if let Outcome::Fired(list) = &decision.outcome {
                for person in list.iter().flat_map(people_of) {
                    if let Person::SupervisorOf(user) = person {
                        wanted.push(*user);
                    }
                }
            }
        }
        let mut supervisors: HashMap<u64, Result<u64, String>> = HashMap::new();
        if !wanted.is_empty() {
            for (user, result) in self.people.supervisors(&self.client, &wanted).await {
                match result {
                    Ok(head) => supervisors.insert(user, Ok(head)),
                    Err(PersonError::NotFound(why)) => supervisors.insert(user, Err(why)),
                    Err(PersonError::Transient(why)) => return Err(Ending::Retry(why)),
                };
            }
        }
        let mut resolve = |person: &Person| -> Result<Value, String> {
            match person {
                Person::User(id) => Ok(json!(id)),
                Person::SupervisorOf(user) => supervisors
                    .get(user)
                    .cloned()
                    .unwrap_or_else(|| Err("no supervisor".into()))
                    .map(|id| json!(id)),
                Person::Unresolved(why) => Err(format!("responsible not resolved: {why}")),
            }
        };
        let mut records = Vec::new();
        for decision in decisions.iter_mut() {
            let Outcome::Fired(list) = &decision.outcome else {
                continue;
            };
            for (index, effect) in list.iter().enumerate() {
                let index = index as u32;
                let marker = effects::marker(job.deal_id, entry.id, &decision.rule, index);
                let planned = effects::plan(effect, job.deal_id, marker.clone(), &mut resolve);
                let (call, state) = match planned {
                    Ok(call) => (call, EffectState::Pending),
                    Err(error) => {
                        tracing::warn!(deal_id = job.deal_id, entry_id = entry.id, rule = %decision.rule, event_id = job.event_id(), %error, "effect failed for good");
                        decision
                            .notes
                            .push(format!("effect {index} failed: {error}"));
                        (
                            PlannedCall {
                                kind: kind_of(effect),
                                method: String::new(),
                                params: Value::Null,
                                marker,
                            },
                            EffectState::Failed { error },
                        )
                    }
                };
                records.push(EffectRecord {
                    v: RECORD_VERSION,
                    deal_id: job.deal_id,
                    entry_id: entry.id,
                    rule: decision.rule.clone(),
                    index,
                    kind: call.kind,
                    method: call.method,
                    params: call.params,
                    marker: call.marker,
                    state,
                    // Recorded as possibly sent: after a crash, look before creating again.
                    attempts: 1,
                    updated_at_ms: now_ms(),
                });
            }
        }
        Ok(records)
    }

    /// Every entry of the deal's history answer, each once (a portal may list an item twice),
    /// oldest first, following `next` for the rare long history: at most
    /// `worker.max_history_pages` pages, each of which must bring an entry past those before it
    /// and a `next` past its own start. A portal that pages on without either parks the deal's
    /// job with what it did; the round's other deals go on.
    async fn history_items(
        &self,
        deal_id: u64,
        first: Response,
    ) -> Result<Vec<StageEntry>, Ending> {
        let max_pages = self.settings.max_history_pages;
        let mut entries: BTreeMap<u64, StageEntry> = BTreeMap::new();
        let mut listed = 0usize;
        let mut page = first;
        let mut pages = 1usize;
        let mut start = 0u64;
        let mut params = None;
        loop {
            let items = list_items(&page.result, "items").ok_or_else(|| {
                Ending::Retry("crm.stagehistory.list: no items in the answer".into())
            })?;
            let highest = entries.last_key_value().map(|(id, _)| *id);
            let mut advanced = false;
            for item in items {
                match parse_entry(item) {
                    Ok((owner, entry)) if owner == deal_id => {
                        listed += 1;
                        advanced |= highest.is_none_or(|h| entry.id > h);
                        entries.entry(entry.id).or_insert(entry);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Ending::Retry(format!("crm.stagehistory.list: {e}"))),
                }
            }
            let Some(next) = page.next.filter(|_| !items.is_empty()) else {
                break;
            };
            let stalled = if pages > 1 && !advanced {
                Some(format!(
                    "page {pages} brought no entry past {}",
                    highest.map_or_else(|| "the first page's".to_string(), |h| h.to_string())
                ))
            } else if next <= start {
                Some(format!(
                    "its next ({next}) does not advance past the page's start ({start})"
                ))
            } else {
                None
            };
            if let Some(what) = stalled {
                self.metrics
                    .paging_stopped(PagedList::DealHistory, PagingStop::NoProgress);
                return Err(Ending::Park(format!(
                    "crm.stagehistory.list for deal {deal_id}: the portal answers one more page (next) but {what}; the job is parked (b24-robot jobs retry once the portal pages properly)"
                )));
            }
            if pages >= max_pages {
                self.metrics
                    .paging_stopped(PagedList::DealHistory, PagingStop::PageLimit);
                return Err(Ending::Park(format!(
                    "crm.stagehistory.list for deal {deal_id}: the portal answers more than {max_pages} pages (worker.max_history_pages) of history in one round; the job is parked (raise the bound, then b24-robot jobs retry)"
                )));
            }
            let base = params.get_or_insert_with(|| {
                json!({ "entityTypeId": 2, "filter": { "OWNER_ID": deal_id, ">ID": entries.first_key_value().map(|(id, _)| id.saturating_sub(1)).unwrap_or(0) },
                        "order": { "ID": "ASC" }, "select": HISTORY_SELECT })
            });
            base["start"] = json!(next);
            page = self
                .client
                .call("crm.stagehistory.list", base.clone(), Retry::Safe)
                .await
                .map_err(|e| failure(&e))?;
            pages += 1;
            start = next;
        }
        if listed > entries.len() {
            tracing::warn!(
                deal_id,
                listed,
                entries = entries.len(),
                "crm.stagehistory.list listed an entry more than once: each is used once"
            );
        }
        Ok(entries.into_values().collect())
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

    /// Sends every write of the round in one batch and records each result.
    pub(crate) async fn write(&self, jobs: &mut [Job]) -> Result<(), StoreError> {
        // A second pass only for follow-ups of this round's writes (the comments linking a
        // tunnel copy with its source need the copy's id).
        for _ in 0..2 {
            if !self.write_once(jobs).await? {
                break;
            }
        }
        Ok(())
    }

    /// Sends the jobs' writes; returns whether follow-up writes were recorded for another pass.
    async fn write_once(&self, jobs: &mut [Job]) -> Result<bool, StoreError> {
        let owners = writes_to_send(jobs);
        let calls: Vec<BatchCall> = owners
            .iter()
            .map(|&(j, w)| BatchCall {
                method: jobs[j].writes[w].method.clone(),
                params: jobs[j].writes[w].params.clone(),
            })
            .collect();
        if calls.is_empty() {
            return Ok(false);
        }
        let results = self.client.batch(calls, Retry::Unsafe).await;
        let mut follow_ups: Vec<Vec<EffectRecord>> = vec![Vec::new(); jobs.len()];
        for ((j, w), result) in owners.into_iter().zip(results) {
            let job = &mut jobs[j];
            let mut effect = job.writes[w].clone();
            effect.updated_at_ms = now_ms();
            match result {
                Ok(answer) => match effects::created_id(effect.kind, &answer.result, job.deal_id) {
                    Some(id) => {
                        tracing::info!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                            event_id = job.event_id(), method = %effect.method, id = %id, "effect applied");
                        effect.state = EffectState::Done { id: id.clone() };
                        if effect.kind == EffectKind::CopyDeal {
                            follow_ups[j].extend(self.link_comments(&effect, &id));
                        }
                        self.emit_effect(&effect, Ok(id));
                    }
                    None => {
                        let error = format!(
                            "{}: the portal answered {} without an id",
                            effect.method,
                            crate::text::cut(
                                &answer.result.to_string(),
                                crate::text::ERROR_TEXT_MAX
                            )
                        );
                        effect.state = EffectState::Failed {
                            error: error.clone(),
                        };
                        self.emit_effect(&effect, Err(error));
                    }
                },
                Err(error) if error.is_retryable() || error.outcome_unknown() => {
                    tracing::warn!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                        event_id = job.event_id(), %error, "effect not applied yet; will retry");
                    self.metrics
                        .effect(&effect.rule, effect.kind, EffectResult::Retried);
                    job.end(failure(&error));
                }
                Err(error) => {
                    tracing::warn!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                        event_id = job.event_id(), %error, "effect failed for good");
                    effect.state = EffectState::Failed {
                        error: error.to_string(),
                    };
                    if effect.kind == EffectKind::MoveBack {
                        job.state.echo = None;
                        self.store.put_deal_state(job.deal_id, &job.state)?;
                    }
                    self.emit_effect(&effect, Err(error.to_string()));
                }
            }
            self.store.put_effect(&effect)?;
        }
        let mut more = false;
        for (job, next) in jobs.iter_mut().zip(follow_ups) {
            for effect in &next {
                self.store.put_effect(effect)?;
            }
            more |= !next.is_empty();
            job.writes = next;
        }
        self.store.flush_async().await?;
        Ok(more)
    }

    /// The two timeline comments that link a tunnel copy and its source deal, as intents.
    fn link_comments(&self, copy: &EffectRecord, copy_id: &str) -> Vec<EffectRecord> {
        let origin = &self.portal_origin;
        let source = copy.deal_id;
        let pipeline = copy
            .params
            .pointer("/fields/CATEGORY_ID")
            .map(Value::to_string)
            .unwrap_or_default();
        let texts = [
            (
                source.to_string(),
                format!(
                    "Copied into pipeline {pipeline} as deal #{copy_id}: {origin}/crm/deal/details/{copy_id}/ (rule \"{}\")",
                    copy.rule
                ),
            ),
            (
                copy_id.to_string(),
                format!(
                    "Copy of deal #{source}: {origin}/crm/deal/details/{source}/ (rule \"{}\")",
                    copy.rule
                ),
            ),
        ];
        texts
            .into_iter()
            .enumerate()
            .map(|(i, (on, text))| {
                let index = LINK_COMMENTS + copy.index * 2 + i as u32;
                EffectRecord {
                    v: RECORD_VERSION,
                    deal_id: copy.deal_id,
                    entry_id: copy.entry_id,
                    rule: copy.rule.clone(),
                    index,
                    kind: EffectKind::Comment,
                    method: "crm.timeline.comment.add".into(),
                    params: json!({ "fields": { "ENTITY_ID": on.parse::<u64>().map(Value::from).unwrap_or(Value::String(on)), "ENTITY_TYPE": "deal", "COMMENT": text } }),
                    marker: effects::marker(copy.deal_id, copy.entry_id, &copy.rule, index),
                    state: EffectState::Pending,
                    attempts: 1,
                    updated_at_ms: now_ms(),
                }
            })
            .collect()
    }

    /// Completes, retries or postpones every job of the round, then frees its deals. A job
    /// whose queue record cannot be read is parked (its record replaced by a parked one):
    /// the others are finished all the same.
    async fn finish(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        let mut wake = Vec::new();
        let mut later = Vec::new();
        for job in &jobs {
            match self.finish_job(job, &mut wake, &mut later) {
                Ok(()) => {}
                Err(error) if error.is_unreadable() => {
                    self.park_unreadable(job.deal_id, job.event_id(), &error.to_string())?;
                }
                Err(error) => return Err(error),
            }
        }
        self.store.flush_async().await?;
        for job in &jobs {
            self.scheduler.release(job.deal_id);
        }
        for deal in wake {
            self.scheduler.wake(deal);
        }
        for (deal, due) in later {
            self.scheduler.schedule_at(deal, due);
        }
        Ok(())
    }

    fn finish_job(
        &self,
        job: &Job,
        wake: &mut Vec<u64>,
        later: &mut Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        match job.ending.clone().unwrap_or(Ending::Done) {
            Ending::Done => {
                if self
                    .store
                    .complete(job.deal_id, job.queued.generation)?
                    .is_some()
                {
                    wake.push(job.deal_id);
                } else {
                    self.emit(Activity::DealDone {
                        deal_id: job.deal_id,
                    });
                }
            }
            Ending::Retry(error) => {
                let attempts = job.queued.attempts + 1;
                let due = now_ms() + self.backoff_ms(attempts);
                let updated =
                    self.store
                        .fail(job.deal_id, &error, due, self.settings.max_attempts)?;
                if updated.as_ref().is_some_and(|q| q.parked) {
                    tracing::error!(deal_id = job.deal_id, event_id = job.event_id(), attempts, %error,
                        "job parked after too many attempts (b24-robot jobs retry)");
                } else {
                    tracing::warn!(deal_id = job.deal_id, event_id = job.event_id(), attempts, %error, "job failed; will retry");
                    later.push((job.deal_id, due));
                }
            }
            Ending::Park(error) => {
                // One attempt is all it takes: `fail` parks at `max_attempts`.
                let attempts = job.queued.attempts + 1;
                self.store.fail(job.deal_id, &error, now_ms(), attempts)?;
                tracing::error!(deal_id = job.deal_id, event_id = job.event_id(), %error,
                    "job parked: the portal answered in a way retrying cannot fix (fix the cause, then b24-robot jobs retry)");
            }
            Ending::Postpone(due, why) => {
                self.store.postpone(job.deal_id, due, &why)?;
                later.push((job.deal_id, due));
            }
            Ending::Unreadable(error) => {
                self.park_unreadable(job.deal_id, job.event_id(), &error)?;
            }
        }
        Ok(())
    }

    /// Parks a deal's job because a record of it cannot be read; the caller frees the deal.
    /// Only a failure to write the store itself is an error here.
    pub(crate) fn park_unreadable(
        &self,
        deal_id: u64,
        event_id: Option<u64>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.store.park(deal_id, error)?;
        tracing::error!(deal_id, event_id, %error,
            "job parked: a record of the deal in the store cannot be read (b24-robot store check lists the damaged records; then b24-robot jobs retry)");
        Ok(())
    }

    fn backoff_ms(&self, attempts: u32) -> u64 {
        let base = self.settings.retry_base.as_millis() as u64;
        let cap = self.settings.retry_max.as_millis() as u64;
        let exp = base
            .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
            .min(cap);
        // Half fixed, half jitter: spread retries of many deals without ever retrying at once.
        exp / 2 + rand::rng().random_range(0..=exp / 2)
    }

    pub(crate) fn emit_effect(&self, effect: &EffectRecord, result: Result<String, String>) {
        let counted = if result.is_ok() {
            EffectResult::Applied
        } else {
            EffectResult::Failed
        };
        self.metrics.effect(&effect.rule, effect.kind, counted);
        self.emit(Activity::Effect {
            deal_id: effect.deal_id,
            entry_id: effect.entry_id,
            rule: effect.rule.clone(),
            method: effect.method.clone(),
            params: effect.params.clone(),
            result,
        });
    }
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

/// Why a `crm.deal.get` answer cannot be used: an `ID` that is not this deal's number, or no
/// stage. Deciding on it would record the new entries as superseded ("the deal is now in
/// nothing") and never run their rules.
pub(crate) fn malformed_deal(
    deal_id: u64,
    deal: &serde_json::Map<String, Value>,
) -> Option<String> {
    let id = match deal.get("ID") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match (id, deal.get("ID")) {
        (Some(id), _) if id == deal_id => {}
        (Some(id), _) => return Some(format!("the answer is deal {id}, not this one")),
        (None, Some(other)) => return Some(format!("malformed answer: ID is {other}")),
        (None, None) => return Some("malformed answer: no ID".into()),
    }
    match deal.get("STAGE_ID") {
        Some(Value::String(stage)) if !stage.trim().is_empty() => None,
        Some(other) => Some(format!("malformed answer: STAGE_ID is {other}")),
        None => Some("malformed answer: no STAGE_ID".into()),
    }
}

/// The round's writes to send, as (job, write) indexes: one per intent key (deal, entry, rule,
/// effect: the store's effect key). The second line of defence against an effect made twice,
/// whatever listed it twice; it is logged, for it should never happen.
fn writes_to_send(jobs: &[Job]) -> Vec<(usize, usize)> {
    let mut intents = HashSet::new();
    let mut owners = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        for (w, effect) in job.writes.iter().enumerate() {
            if intents.insert((effect.deal_id, effect.entry_id, &effect.rule, effect.index)) {
                owners.push((j, w));
            } else {
                tracing::error!(deal_id = job.deal_id, entry_id = effect.entry_id, rule = %effect.rule,
                    index = effect.index, "the same write was listed twice in one round: sent once");
            }
        }
    }
    owners
}

fn failure(error: &CallError) -> Ending {
    match error {
        CallError::MethodParked { until, .. } => {
            let until_ms = until
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            Ending::Postpone(until_ms.max(now_ms() + 1_000), error.to_string())
        }
        _ if !error.is_retryable() && !error.outcome_unknown() => Ending::Park(error.to_string()),
        _ => Ending::Retry(error.to_string()),
    }
}

fn people_of(effect: &Effect) -> Vec<&Person> {
    match effect {
        Effect::CreateTask(t) => std::iter::once(&t.responsible)
            .chain(t.auditors.iter())
            .collect(),
        Effect::Notify { user, .. } => vec![user],
        Effect::CopyDeal(c) => vec![&c.responsible],
        Effect::AddComment { .. } | Effect::MoveBack { .. } => Vec::new(),
    }
}

fn kind_of(effect: &Effect) -> EffectKind {
    match effect {
        Effect::CreateTask(_) => EffectKind::Task,
        Effect::AddComment { .. } => EffectKind::Comment,
        Effect::Notify { .. } => EffectKind::Notify,
        Effect::MoveBack { .. } => EffectKind::MoveBack,
        Effect::CopyDeal(_) => EffectKind::CopyDeal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(semantic: StageSemantic) -> StageEntry {
        StageEntry {
            id: 7,
            type_id: 3,
            stage_id: "WON".into(),
            category_id: 0,
            semantic,
            created_time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00")
                .expect("time"),
        }
    }

    fn deal(semantic: &str) -> Deal {
        let value = json!({ "ID": "5", "STAGE_ID": "WON", "STAGE_SEMANTIC_ID": semantic });
        Deal::new(value.as_object().cloned().unwrap_or_default())
    }

    fn api(status: u16, code: &str) -> CallError {
        CallError::Api {
            method: "crm.deal.get".into(),
            error: crate::bitrix::ApiError {
                http_status: status,
                code: code.into(),
                description: String::new(),
                reset_at: None,
            },
        }
    }

    #[test]
    fn what_retrying_cannot_fix_parks_at_once_and_the_rest_is_retried() {
        assert!(matches!(
            failure(&api(403, "ACCESS_DENIED")),
            Ending::Park(_)
        ));
        assert!(matches!(
            failure(&api(401, "NO_AUTH_FOUND")),
            Ending::Park(_)
        ));
        assert!(matches!(
            failure(&api(500, "INTERNAL_SERVER_ERROR")),
            Ending::Retry(_)
        ));
        assert!(matches!(
            failure(&api(503, "QUERY_LIMIT_EXCEEDED")),
            Ending::Retry(_)
        ));
    }

    fn job(deal_id: u64, writes: Vec<EffectRecord>) -> Job {
        Job {
            deal_id,
            queued: crate::store::QueuedDeal {
                v: RECORD_VERSION,
                deal_id,
                generation: 1,
                events: 1,
                event_ids: Vec::new(),
                first_at_ms: 0,
                attempts: 0,
                not_before_ms: 0,
                last_error: None,
                parked: false,
            },
            state: DealState::default(),
            known: true,
            pending: Vec::new(),
            known_comments: 0,
            ending: None,
            writes,
        }
    }

    fn write(deal_id: u64, entry_id: u64, rule: &str, index: u32) -> EffectRecord {
        EffectRecord {
            v: RECORD_VERSION,
            deal_id,
            entry_id,
            rule: rule.into(),
            index,
            kind: EffectKind::Task,
            method: "tasks.task.add".into(),
            params: json!({}),
            marker: effects::marker(deal_id, entry_id, rule, index),
            state: EffectState::Pending,
            attempts: 1,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_write_listed_twice_in_a_round_is_sent_once() {
        let jobs = [
            job(5, vec![write(5, 7, "offer", 0), write(5, 7, "offer", 0)]),
            job(6, vec![write(6, 7, "offer", 0), write(6, 7, "offer", 1)]),
        ];
        assert_eq!(writes_to_send(&jobs), vec![(0, 0), (1, 0), (1, 1)]);
    }

    #[test]
    fn a_deal_answer_without_its_id_or_a_stage_cannot_be_used() {
        let deal = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            malformed_deal(5, &deal(json!({"ID": "5", "STAGE_ID": "NEW"}))),
            None
        );
        assert_eq!(
            malformed_deal(5, &deal(json!({"ID": 5, "STAGE_ID": "C1:NEW"}))),
            None
        );
        for bad in [
            json!({"ID": "abc", "STAGE_ID": "NEW"}),
            json!({"ID": "6", "STAGE_ID": "NEW"}),
            json!({"STAGE_ID": "NEW"}),
            json!({"ID": "5", "STAGE_ID": null}),
            json!({"ID": "5", "STAGE_ID": ""}),
            json!({"ID": "5"}),
        ] {
            assert!(malformed_deal(5, &deal(bad.clone())).is_some(), "{bad}");
        }
    }

    #[test]
    fn a_history_item_without_semantic_takes_the_deals() {
        assert_eq!(
            with_deal_semantic(&entry(StageSemantic::Process), &deal("S")).semantic,
            StageSemantic::Success
        );
        assert_eq!(
            with_deal_semantic(&entry(StageSemantic::Failure), &deal("S")).semantic,
            StageSemantic::Failure
        );
        assert_eq!(
            with_deal_semantic(&entry(StageSemantic::Process), &deal("P")).semantic,
            StageSemantic::Process
        );
    }
}

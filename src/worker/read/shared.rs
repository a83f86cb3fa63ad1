//! A round's reads, shared across its deals: one `crm.stagehistory.list` call reads the new
//! entries of up to 50 deals (`OWNER_ID` as a list), one `crm.deal.list` call reads up to 50
//! deals (`@ID`, every field the rules read named in `select`), all in the round's one read
//! `batch` with the field catalog when stale and the lookups of pending effects.
//!
//! Why these calls (see `../shared/reference/bitrix24-api.md` §6.2, §6.7 and its "Lists
//! across deals"; `crm-deal-list.md`, `crm-stage-history-list.md` in `bitrix24/b24restdocs`):
//! - the stage-history filter takes "exact values, arrays of values" and the `>ID` modifier, so
//!   the deals of a round share a call; entries come oldest first by `ID`, 50 a page, pages at
//!   `start = 50 n`. The pages a round likely needs are asked for at once, and the rest (the
//!   first page's `total` says how many) in one more `batch`;
//! - `crm.deal.list`'s masks `*` and `UF_*` leave out multiple fields, and `CONTACT_IDS` is not
//!   supported there; named fields are returned, multiple ones as arrays. So the select names
//!   each field the rules read (and those the service reads itself), and a rule set that reads a
//!   field the list cannot return (`CONTACT_IDS`) is read with `crm.deal.get`, one call a deal.
//!
//! The deal is never older than its history: its read comes after every history page of the
//! deal, in the same `batch` (sub-calls run in order) or, when more pages were needed, read
//! again after them. A deal missing from the list answer is asked for with `crm.deal.get`,
//! which tells a deleted deal from one the list left out.
//!
//! Anything odd in a shared answer (an item that does not parse, more pages than
//! `worker.max_history_pages`, a `next` without a `total`) sends the group's deals down the
//! one-deal path ([`Worker::history_items`]), where the odd deal alone is retried or parked and
//! the others go on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::history_page;
use crate::bitrix::{BatchCall, CallError, Response, Retry, calls};
use crate::rules::{FieldCatalog, RuleSet, StageEntry};
use crate::worker::Worker;
use crate::worker::effects;
use crate::worker::job::{Ending, Job, failure};
use crate::worker::portal::{HISTORY_SELECT, parse_entry};

/// Deals per shared call: a history list of at most 50 owners, a deal list of at most 50
/// (one page).
const DEALS_PER_CALL: usize = 50;
/// Items per page of a list method.
const PAGE: u64 = 50;
/// The most history pages asked for before the first answer says how many there are.
const MAX_GUESSED_PAGES: u64 = 4;

/// The deal fields the service reads itself, whatever the rules: the stage and pipeline, the
/// responsible, the title (task texts), the stage-entry time (deadlines), a copy's origin.
const DEAL_SELECT: [&str; 9] = [
    "ID",
    "TITLE",
    "STAGE_ID",
    "CATEGORY_ID",
    "STAGE_SEMANTIC_ID",
    "ASSIGNED_BY_ID",
    "MOVED_TIME",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
];
/// Deal fields `crm.deal.list` does not return (`crm-deal-list.md`): a rule set that reads one
/// is read with `crm.deal.get`.
const NOT_LISTED: [&str; 1] = ["CONTACT_IDS"];

/// What a round's reads brought back.
pub(crate) struct RoundReads {
    pub(crate) catalog: Arc<FieldCatalog>,
    /// The rules the deals were read for (the select named their fields): the round decides
    /// with these, even if a reload came meanwhile.
    pub(crate) rules: Arc<RuleSet>,
    /// One per job, in the jobs' order.
    pub(crate) deals: Vec<RoundRead>,
}

/// One deal's answers.
pub(crate) struct RoundRead {
    /// Its entries past what the job has seen (older ones may come too; each once, oldest
    /// first), or how the job ends when they could not be read.
    pub(crate) entries: Result<Vec<StageEntry>, Ending>,
    /// The deal, read after its history; `None` where no answer came.
    pub(crate) deal: Option<Result<Response, CallError>>,
    /// The method that read it (`crm.deal.list` or `crm.deal.get`), for what is said of it.
    pub(crate) deal_via: &'static str,
    /// (index in the job's pending effects, the lookup's answer)
    pub(crate) lookups: Vec<(usize, Option<Result<Response, CallError>>)>,
}

/// The deals of one shared history call, and where its pages are in the batch.
struct Group {
    /// Indexes into the round's jobs.
    jobs: Vec<usize>,
    owners: Vec<u64>,
    after: Option<u64>,
    /// Call indexes of the pages asked for, in page order from the first.
    pages: Vec<usize>,
}

/// What a group's pages said.
enum Pages {
    /// Every page there is was read: the items.
    Complete(Vec<Value>),
    /// The first pages only: the items so far and how many pages there are in all.
    More(Vec<Value>, u64),
    /// The call failed: each deal's job ends by it.
    Failed(CallError),
    /// The answer cannot be used as shared (why): the deals go the one-deal way.
    Odd(String),
}

/// How the round's deals are read.
enum DealCalls {
    /// `crm.deal.list` calls of up to 50 deals: (call index, job indexes).
    Listed(Vec<(usize, Vec<usize>)>),
    /// `crm.deal.get` per job: (call index, job index).
    EachGot(Vec<(usize, usize)>),
}

/// The later pages of a group whose history is longer than guessed, and its deals read again
/// after them.
struct Tail {
    group: Group,
    items: Vec<Value>,
    pages: Vec<usize>,
    deals: DealCalls,
}

impl Worker {
    /// The round's reads (see the module documentation): one `batch` in the usual case, one
    /// more when a history is longer than guessed or a deal is missing from the list.
    pub(crate) async fn read_round(&self, jobs: &[Job], floor: u64) -> RoundReads {
        let rules = self.rules.current();
        let select = deal_select(&rules);
        let all: Vec<usize> = (0..jobs.len()).collect();

        let mut batch = Vec::new();
        let catalog_at = self.catalog_calls(&mut batch);
        let mut groups = history_groups(jobs, floor);
        for group in &mut groups {
            for page in 0..guessed_pages(group, jobs) {
                group.pages.push(batch.len());
                batch.push(shared_history(group, page));
            }
        }
        let deal_calls = push_deal_calls(&mut batch, jobs, &all, select.as_deref());
        let lookup_calls = push_lookups(&mut batch, jobs);
        let mut results = self.send_reads(batch).await;

        let catalog = self.catalog_from(catalog_at, &mut results);
        let mut deals = take_deals(&deal_calls, &mut results, jobs);
        let mut reads: Vec<RoundRead> = lookup_calls
            .into_iter()
            .map(|slots| RoundRead {
                entries: Err(Ending::Retry("crm.stagehistory.list: no answer".into())),
                deal: None,
                deal_via: if select.is_some() {
                    "crm.deal.list"
                } else {
                    "crm.deal.get"
                },
                lookups: slots
                    .into_iter()
                    .map(|(i, at)| (i, results[at].take()))
                    .collect(),
            })
            .collect();

        // Groups read whole are handed out; longer ones get their other pages (and their deals
        // again, after them) in a second batch; odd ones go deal by deal.
        let mut one_by_one = Vec::new();
        let mut tails = Vec::new();
        let mut batch = Vec::new();
        for group in groups {
            match group_pages(&group, &mut results) {
                Pages::Complete(items) => {
                    if let Err(why) = hand_out(&group, &items, jobs, &mut reads) {
                        tracing::warn!(%why, "a shared stage-history answer cannot be used: read deal by deal");
                        one_by_one.extend(group.jobs);
                    }
                }
                Pages::More(items, pages) if pages <= self.settings.max_history_pages as u64 => {
                    let at: Vec<usize> = (group.pages.len() as u64..pages)
                        .map(|page| {
                            batch.push(shared_history(&group, page));
                            batch.len() - 1
                        })
                        .collect();
                    let again = push_deal_calls(&mut batch, jobs, &group.jobs, select.as_deref());
                    tails.push(Tail {
                        group,
                        items,
                        pages: at,
                        deals: again,
                    });
                }
                Pages::More(_, pages) => {
                    tracing::debug!(
                        pages,
                        "a round's stage history is longer than worker.max_history_pages: read deal by deal"
                    );
                    one_by_one.extend(group.jobs);
                }
                Pages::Failed(error) => {
                    for &j in &group.jobs {
                        reads[j].entries = Err(failure(&error));
                    }
                }
                Pages::Odd(why) => {
                    tracing::warn!(%why, "a shared stage-history answer cannot be used: read deal by deal");
                    one_by_one.extend(group.jobs);
                }
            }
        }
        if !batch.is_empty() {
            let mut results = self.send_reads(batch).await;
            for tail in tails {
                let again = take_deals(&tail.deals, &mut results, jobs);
                for (&j, deal) in tail.group.jobs.iter().zip(pick(again, &tail.group.jobs)) {
                    deals[j] = deal;
                }
                if let Some(odd) = self.finish_tail(
                    tail.group,
                    tail.items,
                    &tail.pages,
                    &mut results,
                    jobs,
                    &mut reads,
                ) {
                    one_by_one.extend(odd);
                }
            }
        }
        for (read, deal) in reads.iter_mut().zip(deals) {
            read.deal = deal;
        }
        if !one_by_one.is_empty() {
            self.read_one_by_one(jobs, &one_by_one, floor, select.as_deref(), &mut reads)
                .await;
        }
        self.read_missing_deals(jobs, &mut reads).await;
        RoundReads {
            catalog,
            rules,
            deals: reads,
        }
    }

    /// The later pages of a long history added to its first ones and handed out; the group's
    /// jobs back when a page cannot be used (they go deal by deal).
    fn finish_tail(
        &self,
        group: Group,
        mut items: Vec<Value>,
        pages: &[usize],
        results: &mut [Option<Result<Response, CallError>>],
        jobs: &[Job],
        reads: &mut [RoundRead],
    ) -> Option<Vec<usize>> {
        for &at in pages {
            match results[at].take() {
                Some(Ok(answer)) => match history_page(&answer.result) {
                    Ok(page) => items.extend(page.iter().cloned()),
                    Err(why) => {
                        tracing::warn!(%why, "a later page of a shared stage history cannot be used: read deal by deal");
                        return Some(group.jobs);
                    }
                },
                Some(Err(error)) => {
                    for &j in &group.jobs {
                        reads[j].entries = Err(failure(&error));
                    }
                    return None;
                }
                None => {
                    for &j in &group.jobs {
                        reads[j].entries =
                            Err(Ending::Retry("crm.stagehistory.list: no answer".into()));
                    }
                    return None;
                }
            }
        }
        match hand_out(&group, &items, jobs, reads) {
            Ok(()) => None,
            Err(why) => {
                tracing::warn!(%why, "a shared stage-history answer cannot be used: read deal by deal");
                Some(group.jobs)
            }
        }
    }

    /// The one-deal way, for deals whose shared answer was odd: each deal's own history (its
    /// first page in one batch, further pages as [`Worker::history_items`] reads them), then
    /// the deals again, after their histories.
    async fn read_one_by_one(
        &self,
        jobs: &[Job],
        which: &[usize],
        floor: u64,
        select: Option<&[String]>,
        reads: &mut [RoundRead],
    ) {
        let batch: Vec<BatchCall> = which
            .iter()
            .map(|&j| {
                let job = &jobs[j];
                calls::stage_history(calls::History {
                    owners: &[job.deal_id],
                    after: job.known.then(|| job.seen(floor)),
                    newest_first: false,
                    select: &HISTORY_SELECT,
                    start: None,
                    created_before: None,
                })
            })
            .collect();
        let answers = self.client.batch(batch, Retry::Safe).await;
        for (&j, answer) in which.iter().zip(answers) {
            reads[j].entries = match answer {
                Ok(first) => self.history_items(jobs[j].deal_id, first).await,
                Err(error) => Err(failure(&error)),
            };
        }
        let mut batch = Vec::new();
        let calls = push_deal_calls(&mut batch, jobs, which, select);
        let mut results = self.send_reads(batch).await;
        let got = take_deals(&calls, &mut results, jobs);
        for (&j, deal) in which.iter().zip(pick(got, which)) {
            reads[j].deal = deal;
        }
    }

    /// `crm.deal.get` for the deals a list answer left out (deleted, or not visible to the
    /// webhook's user): its answer says which.
    async fn read_missing_deals(&self, jobs: &[Job], reads: &mut [RoundRead]) {
        let missing: Vec<usize> = (0..jobs.len())
            .filter(|&j| reads[j].deal.is_none() && reads[j].entries.is_ok())
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut batch = Vec::new();
        let calls = push_deal_calls(&mut batch, jobs, &missing, None);
        let mut results = self.send_reads(batch).await;
        let got = take_deals(&calls, &mut results, jobs);
        for (&j, deal) in missing.iter().zip(pick(got, &missing)) {
            reads[j].deal = deal;
            reads[j].deal_via = "crm.deal.get";
        }
    }

    async fn send_reads(&self, batch: Vec<BatchCall>) -> Vec<Option<Result<Response, CallError>>> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.client
            .batch(batch, Retry::Safe)
            .await
            .into_iter()
            .map(Some)
            .collect()
    }
}

/// The select of a round's deal list: the service's own fields and every field the rules
/// read; `None` when one of them is a field the list does not return.
pub(crate) fn deal_select(rules: &RuleSet) -> Option<Vec<String>> {
    let mut fields: BTreeSet<String> = DEAL_SELECT.iter().map(|f| f.to_string()).collect();
    fields.extend(rules.referenced_fields());
    if fields.iter().any(|f| NOT_LISTED.contains(&f.as_str())) {
        return None;
    }
    // ID first, then the rest in order: one spelling of the call for one rule set.
    let mut select = vec!["ID".to_string()];
    select.extend(fields.into_iter().filter(|f| f != "ID"));
    Some(select)
}

/// The round's deals in groups of one history call: the deals met before (entries past the
/// lowest of what they have seen) apart from new ones (their whole history: the stage before
/// the first new entry is in it), at most 50 a group.
fn history_groups(jobs: &[Job], floor: u64) -> Vec<Group> {
    let mut groups = Vec::new();
    for known in [true, false] {
        let mut members: Vec<usize> = (0..jobs.len())
            .filter(|&j| jobs[j].known == known)
            .collect();
        // Deals with close `seen` share a group: its `>ID` then skips the most.
        members.sort_by_key(|&j| jobs[j].seen(floor));
        for chunk in members.chunks(DEALS_PER_CALL) {
            let after = known.then(|| {
                chunk
                    .iter()
                    .map(|&j| jobs[j].seen(floor))
                    .min()
                    .unwrap_or(0)
            });
            groups.push(Group {
                jobs: chunk.to_vec(),
                owners: chunk.iter().map(|&j| jobs[j].deal_id).collect(),
                after,
                pages: Vec::new(),
            });
        }
    }
    groups
}

/// How many pages of a group's history to ask for before knowing: two entries a deal met
/// before (its new one, and another's older one past the group's `>ID`), four a new deal.
fn guessed_pages(group: &Group, jobs: &[Job]) -> u64 {
    let entries: u64 = group
        .jobs
        .iter()
        .map(|&j| if jobs[j].known { 2 } else { 4 })
        .sum();
    entries.div_ceil(PAGE).clamp(1, MAX_GUESSED_PAGES)
}

/// Page `page` (from 0) of a group's history, oldest first.
fn shared_history(group: &Group, page: u64) -> BatchCall {
    calls::stage_history(calls::History {
        owners: &group.owners,
        after: group.after,
        newest_first: false,
        select: &HISTORY_SELECT,
        start: (page > 0).then_some(calls::Start::At(page * PAGE)),
        created_before: None,
    })
}

/// The deal reads of these jobs: lists of up to 50 with `select`, or one `crm.deal.get` each.
fn push_deal_calls(
    batch: &mut Vec<BatchCall>,
    jobs: &[Job],
    which: &[usize],
    select: Option<&[String]>,
) -> DealCalls {
    match select {
        Some(select) => DealCalls::Listed(
            which
                .chunks(DEALS_PER_CALL)
                .map(|chunk| {
                    let ids: Vec<u64> = chunk.iter().map(|&j| jobs[j].deal_id).collect();
                    batch.push(calls::deals_by_id(&ids, select));
                    (batch.len() - 1, chunk.to_vec())
                })
                .collect(),
        ),
        None => DealCalls::EachGot(
            which
                .iter()
                .map(|&j| {
                    batch.push(calls::deal_get(jobs[j].deal_id));
                    (batch.len() - 1, j)
                })
                .collect(),
        ),
    }
}

/// The lookups of each job's pending effects: (pending index, call index) per job.
fn push_lookups(batch: &mut Vec<BatchCall>, jobs: &[Job]) -> Vec<Vec<(usize, usize)>> {
    jobs.iter()
        .map(|job| {
            job.pending
                .iter()
                .enumerate()
                .filter_map(|(i, effect)| {
                    let call = effects::lookup_call(effect)?;
                    batch.push(call);
                    Some((i, batch.len() - 1))
                })
                .collect()
        })
        .collect()
}

/// Each job's deal answer from the deal calls (indexed like the jobs; `None` for a job not
/// read or left out of a list answer). A deal from a list answer reads as `crm.deal.get`'s.
fn take_deals(
    calls: &DealCalls,
    results: &mut [Option<Result<Response, CallError>>],
    jobs: &[Job],
) -> Vec<Option<Result<Response, CallError>>> {
    let mut deals: Vec<Option<Result<Response, CallError>>> =
        (0..jobs.len()).map(|_| None).collect();
    match calls {
        DealCalls::EachGot(each) => {
            for &(at, j) in each {
                deals[j] = results[at].take();
            }
        }
        DealCalls::Listed(lists) => {
            for (at, members) in lists {
                match results[*at].take() {
                    Some(Ok(answer)) => {
                        let mut by_id = listed_deals(&answer.result);
                        for &j in members {
                            deals[j] = by_id.remove(&jobs[j].deal_id).map(Ok);
                        }
                    }
                    Some(Err(error)) => {
                        for &j in members {
                            deals[j] = Some(Err(error.clone()));
                        }
                    }
                    None => {}
                }
            }
        }
    }
    deals
}

/// The deals of a `crm.deal.list` answer by id, each as the answer `crm.deal.get` gives for
/// it. Items without a readable `ID` are left out (the deal they were is then asked for
/// alone, which says what is wrong with it).
fn listed_deals(result: &Value) -> HashMap<u64, Response> {
    let Some(items) = result.as_array() else {
        return HashMap::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let id = match item.get("ID")? {
                Value::String(s) => s.trim().parse().ok()?,
                Value::Number(n) => n.as_u64()?,
                _ => return None,
            };
            Some((
                id,
                Response {
                    result: item.clone(),
                    total: None,
                    next: None,
                    time: None,
                },
            ))
        })
        .collect()
}

/// The answers of `which` (job indexes), in that order.
fn pick(
    mut all: Vec<Option<Result<Response, CallError>>>,
    which: &[usize],
) -> Vec<Option<Result<Response, CallError>>> {
    which.iter().map(|&j| all[j].take()).collect()
}

/// What a group's first pages said.
fn group_pages(group: &Group, results: &mut [Option<Result<Response, CallError>>]) -> Pages {
    let mut items = Vec::new();
    let mut total = None;
    let mut next = None;
    for (n, &at) in group.pages.iter().enumerate() {
        match results[at].take() {
            Some(Ok(answer)) => {
                match history_page(&answer.result) {
                    Ok(page) => items.extend(page.iter().cloned()),
                    Err(why) => return Pages::Odd(why),
                }
                if n == 0 {
                    total = answer.total;
                    next = answer.next;
                }
            }
            Some(Err(error)) => return Pages::Failed(error),
            None => {
                return Pages::Failed(CallError::Malformed {
                    method: "crm.stagehistory.list".into(),
                    message: "no answer".into(),
                });
            }
        }
    }
    let read = group.pages.len() as u64;
    match (total, next) {
        (Some(total), Some(next)) if next >= total => Pages::Odd(format!(
            "the first page's next ({next}) is past the total ({total})"
        )),
        (Some(total), _) if total.div_ceil(PAGE) > read => Pages::More(items, total.div_ceil(PAGE)),
        (Some(_), _) | (None, None) => Pages::Complete(items),
        (None, Some(_)) => Pages::Odd("a page with a next but no total".into()),
    }
}

/// A group's items handed out to its deals: each deal's own entries, each once, oldest first.
/// An item that does not parse spoils the group's answer (why): its deals are then read one by
/// one, where the odd one alone is retried.
fn hand_out(
    group: &Group,
    items: &[Value],
    jobs: &[Job],
    reads: &mut [RoundRead],
) -> Result<(), String> {
    let mut by_owner: HashMap<u64, BTreeMap<u64, StageEntry>> = group
        .owners
        .iter()
        .map(|&owner| (owner, BTreeMap::new()))
        .collect();
    let mut listed = 0usize;
    for item in items {
        let (owner, entry) =
            parse_entry(item).map_err(|e| format!("crm.stagehistory.list: {e}"))?;
        // A portal may list other deals' entries too: they are not this group's.
        let Some(entries) = by_owner.get_mut(&owner) else {
            continue;
        };
        listed += 1;
        entries.entry(entry.id).or_insert(entry);
    }
    let kept: usize = by_owner.values().map(BTreeMap::len).sum();
    if listed > kept {
        tracing::warn!(
            listed,
            entries = kept,
            "crm.stagehistory.list listed an entry more than once: each is used once"
        );
    }
    for &j in &group.jobs {
        let entries = by_owner.remove(&jobs[j].deal_id).unwrap_or_default();
        reads[j].entries = Ok(entries.into_values().collect());
    }
    Ok(())
}

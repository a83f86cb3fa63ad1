//! The read side of a round: one `batch` for all its deals (the field catalog and the stage
//! names when stale, then
//! per deal its stage history, the deal, and the lookups of its pending effects), the rare
//! further pages of a long history, and the checks that turn the answers into a [`Deal`] and
//! its [`StageEntry`]s (or say why they cannot be used).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::Worker;
use super::effects;
use super::job::{Ending, Job, failure};
use super::portal::{HISTORY_SELECT, list_items, parse_entry};
use crate::bitrix::{BatchCall, CallError, Response, Retry, calls};
use crate::rules::{Deal, FieldCatalog, StageEntry};
use crate::worker::counters::{PagedList, PagingStop};

mod shared;

pub(crate) use shared::RoundRead;

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

impl Worker {
    /// One read `batch` for many deals: the field catalog and the stage names when the cached
    /// catalog is stale, then for
    /// each deal its stage history (the call `history` makes for the job), the deal itself, and
    /// the lookups of its pending effects. History comes before the deal: the deal read second
    /// is never older than its history.
    pub(crate) async fn read_deals(
        &self,
        jobs: &[Job],
        history: impl Fn(&Job) -> BatchCall,
    ) -> DealReads {
        let mut batch = Vec::new();
        let catalog_at = self.catalog_calls(&mut batch);
        // (history, deal, [(pending index, lookup call index)]) per job
        let mut slots = Vec::with_capacity(jobs.len());
        for job in jobs {
            let history_at = batch.len();
            batch.push(history(job));
            let deal_at = batch.len();
            batch.push(calls::deal_get(job.deal_id));
            let mut lookups = Vec::new();
            for (i, effect) in job.pending.iter().enumerate() {
                if let Some(call) = effects::lookup_call(effect) {
                    lookups.push((i, batch.len()));
                    batch.push(call);
                }
            }
            slots.push((history_at, deal_at, lookups));
        }
        let mut results: Vec<Option<Result<Response, CallError>>> = self
            .client
            .batch(batch, Retry::Safe)
            .await
            .into_iter()
            .map(Some)
            .collect();

        let catalog = self.catalog_from(catalog_at, &mut results);
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

    /// The field catalog and the stage names, when the cached catalog is stale: pushed first
    /// onto the batch; where they are, if they are.
    pub(super) fn catalog_calls(&self, batch: &mut Vec<BatchCall>) -> Option<usize> {
        self.catalog.fresh().is_none().then(|| {
            batch.push(calls::deal_fields());
            batch.push(calls::all_stages());
            batch.len() - 2
        })
    }

    /// The catalog from the batch's answers when it was read (cached), else the cached one.
    pub(super) fn catalog_from(
        &self,
        catalog_at: Option<usize>,
        results: &mut [Option<Result<Response, CallError>>],
    ) -> Arc<FieldCatalog> {
        let stages = catalog_at.and_then(|i| match results[i + 1].take() {
            Some(Ok(answer)) => Some(answer.result),
            Some(Err(error)) => {
                tracing::warn!(%error, "crm.status.list failed; stages are named by their ids");
                None
            }
            None => None,
        });
        match catalog_at.and_then(|i| results[i].take()) {
            Some(Ok(answer)) => self.catalog.store(&answer.result, stages.as_ref()),
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
        }
    }

    /// Every entry of the deal's history answer, each once (a portal may list an item twice),
    /// oldest first, following `next` for the rare long history: at most
    /// `worker.max_history_pages` pages, each of which must bring an entry past those before it
    /// and a `next` past its own start. A portal that pages on without either parks the deal's
    /// job with what it did; the round's other deals go on.
    pub(super) async fn history_items(
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
        // The pages after the first ask past the entry before the first one listed; fixed once.
        let mut after = None;
        loop {
            let items = history_page(&page.result).map_err(Ending::Retry)?;
            let highest = entries.last_key_value().map(|(id, _)| *id);
            let mut advanced = false;
            for entry in entries_of(deal_id, items).map_err(Ending::Retry)? {
                listed += 1;
                advanced |= highest.is_none_or(|h| entry.id > h);
                entries.entry(entry.id).or_insert(entry);
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
            let after = *after.get_or_insert_with(|| {
                entries
                    .first_key_value()
                    .map(|(id, _)| id.saturating_sub(1))
                    .unwrap_or(0)
            });
            let call = calls::stage_history(calls::History {
                owners: &[deal_id],
                after: Some(after),
                newest_first: false,
                select: &HISTORY_SELECT,
                start: Some(calls::Start::At(next)),
                created_before: None,
            });
            page = self
                .client
                .send(call, Retry::Safe)
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
}

/// The items of a `crm.stagehistory.list` answer, or why it has none.
pub(crate) fn history_page(result: &Value) -> Result<&Vec<Value>, String> {
    list_items(result, "items")
        .ok_or_else(|| "crm.stagehistory.list: no items in the answer".to_string())
}

/// The deal's entries among a page's items, in the page's order (a portal may list other
/// deals' entries too). One item that does not parse spoils the page: its error is returned.
pub(crate) fn entries_of(deal_id: u64, items: &[Value]) -> Result<Vec<StageEntry>, String> {
    let mut entries = Vec::new();
    for item in items {
        let (owner, entry) =
            parse_entry(item).map_err(|e| format!("crm.stagehistory.list: {e}"))?;
        if owner == deal_id {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// The deal in a `crm.deal.get` answer (or a deal of a `crm.deal.list` answer: `method`
/// says which), or why it cannot be used (the message names the call).
pub(crate) fn deal_of(deal_id: u64, answer: Response, method: &str) -> Result<Deal, String> {
    match answer.result {
        Value::Object(map) => match malformed_deal(deal_id, &map) {
            Some(why) => Err(format!("{method} {deal_id}: {why}")),
            None => Ok(Deal::new(map)),
        },
        _ => Err(format!("{method} {deal_id}: the answer is not a deal")),
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn a_page_keeps_the_deals_own_entries_and_refuses_a_broken_item() {
        let item = |id: u64, owner: u64| {
            json!({"ID": id, "OWNER_ID": owner, "STAGE_ID": "NEW",
                   "CREATED_TIME": "2024-04-25T14:59:11+00:00"})
        };
        let page = json!({"items": [item(3, 5), item(4, 6), item(5, 5)]});
        let items = history_page(&page).expect("items");
        let ids: Vec<u64> = entries_of(5, items)
            .expect("parsed")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec![3, 5]);
        assert!(history_page(&json!({})).is_err());
        assert!(entries_of(5, &[json!({"ID": 1})]).is_err());
    }
}

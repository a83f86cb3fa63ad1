//! The sweep: reads the portal's stage history past the last entry seen and queues the deals
//! that moved. Bitrix24 never re-sends a lost event, and never sends one to an outgoing webhook
//! for a pipeline change; the sweep is what makes those entries acted on anyway (later, not
//! never). With no outgoing webhook at all, it alone runs the rules.

use std::collections::HashSet;

use super::Worker;
use super::portal::{list_items, number};

use crate::bitrix::{CallError, Response, Retry, calls};
use crate::store::{StoreError, now_ms};
use crate::worker::counters::{PagedList, PagingStop};

/// Entries in one page of a list method.
const PAGE: u64 = 50;
/// Pages read in one pass of the loop (one `batch`, under its 50 calls).
const MAX_PAGES_PER_PASS: usize = 49;

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Portal(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("crm.stagehistory.list: {0}")]
    Malformed(String),
}

/// At the very first start (an empty store) the end of the stage history is the starting point:
/// older entries are never acted on. Returns the floor (set now or before).
///
/// The end is taken as of the first start ([`Store::first_start_ms`], to the second), not as of
/// whenever the portal is first reached: the floor is the newest entry made before that second
/// (`<CREATED_TIME`, a modifier the filter takes, `crm-stage-history-list.md`), so a deal moved
/// while the portal could not be reached at that start, or before its first answer, is still
/// acted on. `CREATED_TIME` counts whole seconds: an entry of the very second of the first
/// start counts as after it (acted on: better than a move made just after the start missed).
/// A portal that ignores the filter is caught here too: an entry made in or after that second
/// never raises the floor; if the newest page holds only such entries, the floor is just below
/// them.
///
/// [`Store::first_start_ms`]: crate::store::Store::first_start_ms
pub async fn ensure_history_floor(worker: &Worker) -> Result<u64, SweepError> {
    if let Some(floor) = worker.store.history_floor()? {
        return Ok(floor);
    }
    let first_start_ms = match worker.store.first_start_ms()? {
        Some(at) => at,
        None => worker
            .store
            .init_first_start_ms(worker.clock.now_ms().max(0) as u64 / 1000 * 1000)?,
    };
    let first_start = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(
        i64::try_from(first_start_ms).unwrap_or(i64::MAX),
    )
    .unwrap_or_default();
    let before = first_start.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let newest_first = |start| {
        calls::stage_history(calls::History {
            newest_first: true,
            select: &["ID", "CREATED_TIME"],
            start,
            created_before: Some(&before),
            ..calls::History::default()
        })
    };
    let answer = worker.client.send(newest_first(None), Retry::Safe).await?;
    let items = list_items(&answer.result, "items")
        .ok_or_else(|| SweepError::Malformed("no items in the answer".into()))?;
    let mut newest = newest_before(items, first_start);
    // A portal that ignored the order and answered oldest first: the newest entry is on the last
    // page, which `total` locates.
    if let (Some(_), Some(total)) = (answer.next, answer.total) {
        let ascending = items.first().and_then(|i| number(i, "ID").ok())
            < items.last().and_then(|i| number(i, "ID").ok());
        if ascending && total > 0 {
            let last_page = (total - 1) / PAGE * PAGE;
            let answer = worker
                .client
                .send(newest_first(Some(calls::Start::At(last_page))), Retry::Safe)
                .await?;
            let last = list_items(&answer.result, "items").map_or(&[][..], Vec::as_slice);
            newest = newest.max(newest_before(last, first_start));
        }
    }
    let floor = worker.store.init_history_floor(newest)?;
    worker.store.flush_async().await?;
    worker.floor_known();
    tracing::info!(
        floor,
        first_start = %first_start.to_rfc3339(),
        "stage history starting point recorded: entries made before the first start are not acted on"
    );
    Ok(floor)
}

/// The newest id among `items` made before `first_start`'s second (an entry without a readable
/// time counts as before: it cannot be shown to be after); when every item is after it, just
/// below the oldest of them; 0 for no items.
fn newest_before(items: &[serde_json::Value], first_start: chrono::DateTime<chrono::Utc>) -> u64 {
    let made_after = |item: &serde_json::Value| {
        item.get("CREATED_TIME")
            .and_then(serde_json::Value::as_str)
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .is_some_and(|at| at.timestamp() >= first_start.timestamp())
    };
    let ids = |after: bool| {
        items
            .iter()
            .filter(move |i| made_after(i) == after)
            .filter_map(|i| number(i, "ID").ok())
    };
    ids(false)
        .max()
        .or_else(|| ids(true).min().map(|oldest| oldest.saturating_sub(1)))
        .unwrap_or(0)
}

/// One pass: queues every deal with a stage entry past the cursor; returns how many deals.
///
/// The first page tells how many entries wait (`total`); the other pages are read together, up
/// to 50 pages (2,500 entries) in one `batch` request, so a sweep after a busy hour or a downtime
/// does not spend the portal's requests one page at a time.
///
/// Bounded: at most `worker.max_sweep_pages` pages a sweep, and a pass whose pages bring no
/// entry past the cursor while the portal says more follow (a `next` that never ends) stops the
/// sweep, logged and counted. Either way the cursor stays at the last entry read, and the next
/// sweep goes on from there.
pub async fn sweep_once(worker: &Worker) -> Result<usize, SweepError> {
    ensure_history_floor(worker).await?;
    let mut cursor = worker.store.sweep_cursor()?.unwrap_or(0);
    let mut queued = HashSet::new();
    let max_pages = worker.settings.max_sweep_pages;
    let mut pages_read = 0usize;
    loop {
        let page = |start: u64| {
            calls::stage_history(calls::History {
                after: Some(cursor),
                select: &["ID", "OWNER_ID"],
                start: Some(calls::Start::At(start)),
                ..calls::History::default()
            })
        };
        let first = worker.client.send(page(0), Retry::Safe).await?;
        pages_read += 1;
        // In ascending order, a first page with nothing past the cursor has no page after it
        // that would: the rest are not read.
        let first_brings_new = items(&first)?
            .iter()
            .any(|i| number(i, "ID").is_ok_and(|id| id > cursor));
        let mut pages = vec![first];
        if let (Some(next), Some(total), true) = (pages[0].next, pages[0].total, first_brings_new) {
            let starts: Vec<u64> = (next..total)
                .step_by(PAGE as usize)
                .take(MAX_PAGES_PER_PASS.min(max_pages.saturating_sub(pages_read)))
                .collect();
            pages_read += starts.len();
            let pages_after = starts.iter().map(|s| page(*s)).collect();
            for answer in worker.client.batch(pages_after, Retry::Safe).await {
                // Pages are taken in order up to the first that failed: the cursor never jumps a gap.
                match answer {
                    Ok(page) => pages.push(page),
                    Err(error) => {
                        tracing::warn!(%error, "sweep: a page of the stage history failed; the next pass goes on from here");
                        break;
                    }
                }
            }
        }
        let mut last = cursor;
        let mut full_page = false;
        for page in &pages {
            let items = items(page)?;
            full_page = items.len() as u64 >= PAGE;
            for item in items {
                let (Ok(id), Ok(owner)) = (number(item, "ID"), number(item, "OWNER_ID")) else {
                    return Err(SweepError::Malformed(format!(
                        "entry without ID/OWNER_ID: {item}"
                    )));
                };
                if id <= cursor {
                    // Asked past the cursor: a portal that ignores the filter repeats old entries.
                    continue;
                }
                last = last.max(id);
                if queued.contains(&owner) {
                    continue;
                }
                let known = match worker.store.deal_state(owner) {
                    Ok(state) => state.map(|s| s.last_entry_id).unwrap_or(0),
                    // Queued all the same: the round parks the deal with the error.
                    Err(error) if error.is_unreadable() => 0,
                    Err(error) => return Err(error.into()),
                };
                if id > known {
                    worker.store.enqueue(owner, now_ms())?;
                    queued.insert(owner);
                }
            }
        }
        // Queued first, durably; then the cursor moves. A crash in between queues again, which
        // costs a read and nothing else.
        worker.store.flush_async().await?;
        let progressed = last > cursor;
        if progressed {
            cursor = last;
            worker.store.set_sweep_cursor(cursor)?;
            worker.store.flush_async().await?;
        }
        let more =
            pages.last().is_some_and(|p| p.next.is_some()) || (pages.len() == 1 && full_page);
        if !more {
            break;
        }
        if !progressed {
            worker
                .metrics
                .paging_stopped(PagedList::Sweep, PagingStop::NoProgress);
            tracing::warn!(
                cursor,
                pages = pages.len(),
                "sweep: the portal answers more pages of stage history but none brings an entry past the cursor; this sweep stops, the next goes on from the cursor"
            );
            break;
        }
        if pages_read >= max_pages {
            worker
                .metrics
                .paging_stopped(PagedList::Sweep, PagingStop::PageLimit);
            tracing::info!(
                cursor,
                pages = pages_read,
                "sweep: worker.max_sweep_pages pages read; the next sweep goes on from the cursor"
            );
            break;
        }
    }
    for &deal in &queued {
        worker.scheduler.wake(deal);
    }
    if !queued.is_empty() {
        tracing::info!(
            deals = queued.len(),
            cursor,
            "sweep queued deals whose moves no event reported"
        );
    }
    Ok(queued.len())
}

/// The items of a stage-history page.
fn items(page: &Response) -> Result<&Vec<serde_json::Value>, SweepError> {
    list_items(&page.result, "items")
        .ok_or_else(|| SweepError::Malformed("no items in the answer".into()))
}

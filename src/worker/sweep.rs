//! The sweep: reads the portal's stage history past the last entry seen and queues the deals
//! that moved. Bitrix24 never re-sends a lost event, and never sends one to an outgoing webhook
//! for a pipeline change; the sweep is what makes those entries acted on anyway (later, not
//! never). With no outgoing webhook at all, it alone runs the rules.

use serde_json::json;

use super::Worker;
use super::portal::{list_items, number};
use crate::bitrix::{CallError, Retry};
use crate::store::{StoreError, now_ms};

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
pub async fn ensure_history_floor(worker: &Worker) -> Result<u64, SweepError> {
    if let Some(floor) = worker.store.history_floor()? {
        return Ok(floor);
    }
    let answer = worker
        .client
        .call(
            "crm.stagehistory.list",
            json!({ "entityTypeId": 2, "order": { "ID": "DESC" }, "select": ["ID"] }),
            Retry::Safe,
        )
        .await?;
    let items = list_items(&answer.result, "items")
        .ok_or_else(|| SweepError::Malformed("no items in the answer".into()))?;
    let newest = items
        .iter()
        .filter_map(|i| number(i, "ID").ok())
        .max()
        .unwrap_or(0);
    let floor = worker.store.init_history_floor(newest)?;
    worker.store.flush_async().await?;
    tracing::info!(
        floor,
        "stage history starting point recorded: older entries are not acted on"
    );
    Ok(floor)
}

/// One pass: queues every deal with a stage entry past the cursor; returns how many deals.
pub async fn sweep_once(worker: &Worker) -> Result<usize, SweepError> {
    ensure_history_floor(worker).await?;
    let mut cursor = worker.store.sweep_cursor()?.unwrap_or(0);
    let mut queued = Vec::new();
    loop {
        let answer = worker
            .client
            .call(
                "crm.stagehistory.list",
                json!({ "entityTypeId": 2, "filter": { ">ID": cursor }, "order": { "ID": "ASC" }, "select": ["ID", "OWNER_ID"] }),
                Retry::Safe,
            )
            .await?;
        let items = list_items(&answer.result, "items")
            .ok_or_else(|| SweepError::Malformed("no items in the answer".into()))?;
        let mut last = cursor;
        for item in items {
            let (Ok(id), Ok(owner)) = (number(item, "ID"), number(item, "OWNER_ID")) else {
                return Err(SweepError::Malformed(format!(
                    "entry without ID/OWNER_ID: {item}"
                )));
            };
            last = last.max(id);
            let known = worker
                .store
                .deal_state(owner)?
                .map(|s| s.last_entry_id)
                .unwrap_or(0);
            if id > known && !queued.contains(&owner) {
                worker.store.enqueue(owner, now_ms())?;
                queued.push(owner);
            }
        }
        // Queued first, durably; then the cursor moves. A crash in between queues again, which
        // costs a read and nothing else.
        worker.store.flush_async().await?;
        if last > cursor {
            cursor = last;
            worker.store.set_sweep_cursor(cursor)?;
            worker.store.flush_async().await?;
        }
        if items.is_empty() || (answer.next.is_none() && items.len() < 50) {
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

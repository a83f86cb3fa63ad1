//! Intake's writes: an event delivery (deduplicated) or a sweep's sighting queues the deal, in
//! one transaction with its dedupe key; an unreadable queue record is replaced, and says so.

use std::cell::RefCell;
use std::time::Duration;

use sled::transaction::Transactional;

use super::codec::{abort, be_u64, encode, unwrap_tx};
use super::health::Slot;
use super::{MAX_EVENT_IDS, QueuedDeal, RECORD_VERSION, Store, StoreError};

/// What became of an event delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// New: queued for its deal under this event id.
    New { event_id: u64 },
    /// The same delivery was recorded within the dedupe window: not recorded as an event.
    /// `requeued`: the deal was queued (or its pending work bumped) for one more read.
    Duplicate { requeued: bool },
}

impl Store {
    /// The deal's queue record for new work, and where it stood for the counters: an unreadable
    /// one is replaced by a fresh record (that the deal has work is all it said that matters;
    /// its counts are lost), the error kept in `replaced` for the caller to report.
    fn queued_for_new_work(
        &self,
        key: &[u8],
        bytes: Option<&[u8]>,
        replaced: &RefCell<Option<StoreError>>,
    ) -> (Option<QueuedDeal>, Slot) {
        let Some(bytes) = bytes else {
            return (None, Slot::ABSENT);
        };
        match self.read::<QueuedDeal>("queue", key, bytes) {
            Ok(q) => {
                let slot = Slot::of(Some(&q));
                (Some(q), slot)
            }
            Err(error) => {
                *replaced.borrow_mut() = Some(error);
                (None, Slot::UNREADABLE)
            }
        }
    }

    /// Records one event delivery for `deal_id` unless the same delivery (`dedupe_key`) was
    /// recorded within `window`. Not durable until [`Store::flush`].
    pub fn record_event(
        &self,
        dedupe_key: &str,
        deal_id: u64,
        now_ms: u64,
        window: Duration,
    ) -> Result<Recorded, StoreError> {
        let t = self.trees()?;
        let event_id = self.written(t.db.generate_id().map_err(StoreError::from))?;
        let window_ms = window.as_millis() as u64;
        let replaced = RefCell::new(None);
        let result = (&t.dedupe, &t.queue).transaction(|(dedupe, queue)| {
            replaced.replace(None);
            let key = deal_id.to_be_bytes();
            if let Some(seen) = dedupe.get(dedupe_key.as_bytes())?
                && now_ms.saturating_sub(be_u64(&seen)) < window_ms
            {
                // Bitrix24 never re-sends an event, and `ts` counts whole seconds: a delivery
                // with a known key is as likely another change made within the same second (our
                // own revert's echo is one) as a real duplicate. Not recorded as an event; but the
                // deal is queued for one more read, or its pending work gets a new generation so
                // that a round already reading it runs again. Rules never apply twice (effects are
                // keyed by stage entry); the cost is at most one read.
                let current = queue.get(key)?;
                let (current, before) =
                    self.queued_for_new_work(&key, current.as_deref(), &replaced);
                let next = note_replaced(merge_event(current, deal_id, None, now_ms), &replaced);
                queue.insert(&key, encode(&next).map_err(abort)?)?;
                return Ok((Recorded::Duplicate { requeued: true }, before));
            }
            dedupe.insert(dedupe_key.as_bytes(), &now_ms.to_be_bytes())?;
            let current = queue.get(key)?;
            let (current, before) = self.queued_for_new_work(&key, current.as_deref(), &replaced);
            let next = note_replaced(
                merge_event(current, deal_id, Some(event_id), now_ms),
                &replaced,
            );
            queue.insert(&key, encode(&next).map_err(abort)?)?;
            Ok((Recorded::New { event_id }, before))
        });
        report_replaced(deal_id, replaced.into_inner());
        let (recorded, before) = self.written(unwrap_tx(result))?;
        // `merge_event` leaves the record waiting, never parked.
        self.shared.counts.changed(before, Slot::WAITING);
        Ok(recorded)
    }

    /// Queues `deal_id` without an event (the sweep saw it move). Not durable until flushed.
    pub fn enqueue(&self, deal_id: u64, now_ms: u64) -> Result<(), StoreError> {
        let key = deal_id.to_be_bytes();
        let replaced = RefCell::new(None);
        let mut before = Slot::ABSENT;
        // Held until the counters are updated: a re-open waits for it, and counts afresh.
        let t = self.trees()?;
        t.queue.update_and_fetch(key, |old| {
            replaced.replace(None);
            let (current, slot) = self.queued_for_new_work(&key, old, &replaced);
            before = slot;
            encode(&note_replaced(
                merge_event(current, deal_id, None, now_ms),
                &replaced,
            ))
            .ok()
        })?;
        self.shared.counts.changed(before, Slot::WAITING);
        report_replaced(deal_id, replaced.into_inner());
        Ok(())
    }

    /// Forgets delivery keys older than `window`; returns how many were removed.
    pub fn prune_dedupe(&self, now_ms: u64, window: Duration) -> Result<usize, StoreError> {
        let window_ms = window.as_millis() as u64;
        let mut removed = 0;
        let t = self.trees()?;
        for item in t.dedupe.iter() {
            let (key, value) = item?;
            if now_ms.saturating_sub(be_u64(&value)) >= window_ms {
                t.dedupe.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The fresh queue record that replaces an unreadable one says so.
pub(super) fn note_replaced(
    mut q: QueuedDeal,
    replaced: &RefCell<Option<StoreError>>,
) -> QueuedDeal {
    if let Some(error) = replaced.borrow().as_ref() {
        q.last_error = Some(format!(
            "the queue record could not be read and was replaced: {error}"
        ));
    }
    q
}

pub(super) fn report_replaced(deal_id: u64, replaced: Option<StoreError>) {
    if let Some(error) = replaced {
        tracing::warn!(deal_id, %error,
            "the deal's queue record could not be read: replaced by a new one (its event counts are lost, its work is not)");
    }
}

pub(super) fn merge_event(
    current: Option<QueuedDeal>,
    deal_id: u64,
    event_id: Option<u64>,
    now_ms: u64,
) -> QueuedDeal {
    let mut q = current.unwrap_or(QueuedDeal {
        v: RECORD_VERSION,
        deal_id,
        generation: 0,
        events: 0,
        event_ids: Vec::new(),
        first_at_ms: now_ms,
        attempts: 0,
        not_before_ms: 0,
        last_error: None,
        parked: false,
    });
    q.generation += 1;
    q.events += 1;
    if let Some(id) = event_id {
        q.event_ids.push(id);
        if q.event_ids.len() > MAX_EVENT_IDS {
            let excess = q.event_ids.len() - MAX_EVENT_IDS;
            q.event_ids.drain(..excess);
        }
    }
    // New work for a parked deal: try again (its last error stays visible until it succeeds).
    if q.parked {
        q.parked = false;
        q.attempts = 0;
        q.not_before_ms = 0;
    }
    q
}

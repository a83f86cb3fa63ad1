//! Intake's writes: an event delivery (deduplicated) or a sweep's sighting queues the deal, in
//! one transaction with its dedupe key; an unreadable queue record is replaced, and says so.
//!
//! The intake records deliveries with [`Store::record_events_then_flush`] on a thread of its
//! own: the deliveries waiting are recorded in one transaction, flushed right after on the same
//! thread, and each request waiting for its 200 is answered once, with both outcomes.

use std::cell::RefCell;
use std::time::Duration;

use sled::transaction::Transactional;
use tokio::sync::oneshot;

use super::codec::{abort, be_u64, encode, unwrap_tx};
use super::health::Slot;
use super::{MAX_EVENT_IDS, QueuedDeal, RECORD_VERSION, Store, StoreError, Trees};

/// Where a delivery's outcome goes (see [`Store::record_events_then_flush`]).
pub struct RecordAnswer(oneshot::Sender<Result<Recorded, Unrecorded>>);

/// A delivery's outcome to come: [`Store::recorded`] awaits it.
pub struct PendingRecord(oneshot::Receiver<Result<Recorded, Unrecorded>>);

/// The pair that carries one delivery's outcome from the recording thread to its request.
pub fn record_answer() -> (RecordAnswer, PendingRecord) {
    let (tx, rx) = oneshot::channel();
    (RecordAnswer(tx), PendingRecord(rx))
}

/// One delivery for [`Store::record_events_then_flush`], and where its outcome goes.
pub struct Delivery {
    pub dedupe_key: String,
    pub deal_id: u64,
    pub answer: RecordAnswer,
}

/// Answers every delivery with the error that kept them from being recorded.
fn answer_all(deliveries: Vec<Delivery>, error: &StoreError) {
    for d in deliveries {
        let _ = d.answer.0.send(Err(Unrecorded::Record(copy_error(error))));
    }
}

/// The same error again, for each delivery of a batch (sled's errors are `Clone`; ours are not).
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Sled(e) => StoreError::Sled(e.clone()),
        StoreError::Corrupt { tree, key, message } => StoreError::Corrupt {
            tree,
            key: key.clone(),
            message: message.clone(),
        },
        StoreError::Locked { path } => StoreError::Locked { path: path.clone() },
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
    }
}

/// Why a delivery was not made durable; a failed flush is reported to the store's write health
/// by whoever receives it (the flusher thread holds no part of the store).
enum Unrecorded {
    Record(StoreError),
    Flush(sled::Error),
}

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
        self.record_event_in(&t, dedupe_key, deal_id, now_ms, window)
    }

    /// Records deliveries as [`Store::record_event`] does, all in one transaction (its fixed cost
    /// shared, as the flush is), then flushes the database on this same thread (no hand-off to
    /// the flusher thread: one thread wake-up less a batch, and the deliveries that arrive
    /// during the flush make the next batch); each delivery's `answer` gets its outcome once
    /// the flush is over, or at once when they could not be recorded. A duplicate is flushed too: the first copy may still be on its way to
    /// disk, and its 200 must not go out before it is there. A delivery later in the batch sees
    /// the earlier ones (the same key twice is one event and a duplicate). Blocking (the
    /// recording): for a thread of its own, never the runtime's.
    pub fn record_events_then_flush(
        &self,
        deliveries: Vec<Delivery>,
        now_ms: u64,
        window: Duration,
    ) {
        let t = match self.trees() {
            Ok(t) => t,
            Err(error) => return answer_all(deliveries, &error),
        };
        let keys: Vec<(&str, u64)> = deliveries
            .iter()
            .map(|d| (d.dedupe_key.as_str(), d.deal_id))
            .collect();
        match self.record_events_in(&t, &keys, now_ms, window) {
            Ok(recorded) => {
                // Flushed here, on the recording thread, with the database held but not the
                // store's trees (a re-open does not wait for a flush stuck on a failing disk).
                let db = t.db.clone();
                drop(t);
                let flushed = db.flush().map(|_| ());
                for (recorded, delivery) in recorded.into_iter().zip(deliveries) {
                    let outcome = match &flushed {
                        Ok(()) => Ok(recorded),
                        Err(error) => Err(Unrecorded::Flush(error.clone())),
                    };
                    let _ = delivery.answer.0.send(outcome);
                }
            }
            Err(error) => answer_all(deliveries, &error),
        }
    }

    /// Awaits the outcome of [`Store::record_events_then_flush`]: recorded and durable, or why
    /// not (a failed flush marks the store as unable to write, as [`Store::flush_async`] does).
    pub async fn recorded(&self, pending: PendingRecord) -> Result<Recorded, StoreError> {
        match pending.0.await {
            Ok(Ok(recorded)) => Ok(recorded),
            Ok(Err(Unrecorded::Record(error))) => Err(error),
            Ok(Err(Unrecorded::Flush(error))) => self.written(Err(StoreError::Sled(error))),
            Err(_) => Err(StoreError::Unavailable(
                "recording the event stopped before it was answered".into(),
            )),
        }
    }

    fn record_event_in(
        &self,
        t: &Trees,
        dedupe_key: &str,
        deal_id: u64,
        now_ms: u64,
        window: Duration,
    ) -> Result<Recorded, StoreError> {
        let mut recorded = self.record_events_in(t, &[(dedupe_key, deal_id)], now_ms, window)?;
        recorded
            .pop()
            .ok_or_else(|| StoreError::Unavailable("nothing recorded".into()))
    }

    /// Records `(dedupe key, deal)` deliveries in one transaction, in order.
    fn record_events_in(
        &self,
        t: &Trees,
        deliveries: &[(&str, u64)],
        now_ms: u64,
        window: Duration,
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut event_ids = Vec::with_capacity(deliveries.len());
        for _ in deliveries {
            event_ids.push(self.written(t.db.generate_id().map_err(StoreError::from))?);
        }
        let window_ms = window.as_millis() as u64;
        let replaced: Vec<RefCell<Option<StoreError>>> =
            deliveries.iter().map(|_| RefCell::new(None)).collect();
        let result = (&t.dedupe, &t.queue).transaction(|(dedupe, queue)| {
            let mut outcomes = Vec::with_capacity(deliveries.len());
            for ((&(dedupe_key, deal_id), &event_id), replaced) in
                deliveries.iter().zip(&event_ids).zip(&replaced)
            {
                replaced.replace(None);
                let key = deal_id.to_be_bytes();
                if let Some(seen) = dedupe.get(dedupe_key.as_bytes())?
                    && now_ms.saturating_sub(be_u64(&seen)) < window_ms
                {
                    // Bitrix24 never re-sends an event, and `ts` counts whole seconds: a delivery
                    // with a known key is as likely another change made within the same second
                    // (our own revert's echo is one) as a real duplicate. Not recorded as an
                    // event; but the deal is queued for one more read, or its pending work gets a
                    // new generation so that a round already reading it runs again. Rules never
                    // apply twice (effects are keyed by stage entry); the cost is at most one read.
                    let current = queue.get(key)?;
                    let (current, before) =
                        self.queued_for_new_work(&key, current.as_deref(), replaced);
                    let next = note_replaced(merge_event(current, deal_id, None, now_ms), replaced);
                    queue.insert(&key, encode(&next).map_err(abort)?)?;
                    outcomes.push((Recorded::Duplicate { requeued: true }, before));
                    continue;
                }
                dedupe.insert(dedupe_key.as_bytes(), &now_ms.to_be_bytes())?;
                let current = queue.get(key)?;
                let (current, before) =
                    self.queued_for_new_work(&key, current.as_deref(), replaced);
                let next = note_replaced(
                    merge_event(current, deal_id, Some(event_id), now_ms),
                    replaced,
                );
                queue.insert(&key, encode(&next).map_err(abort)?)?;
                outcomes.push((Recorded::New { event_id }, before));
            }
            Ok(outcomes)
        });
        for (&(_, deal_id), replaced) in deliveries.iter().zip(replaced) {
            report_replaced(deal_id, replaced.into_inner());
        }
        let outcomes = self.written(unwrap_tx(result))?;
        Ok(outcomes
            .into_iter()
            .map(|(recorded, before)| {
                // `merge_event` leaves the record waiting, never parked.
                self.shared.counts.changed(before, Slot::WAITING);
                recorded
            })
            .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn delivery(key: &str, deal_id: u64) -> (Delivery, PendingRecord) {
        let (answer, pending) = record_answer();
        let delivery = Delivery {
            dedupe_key: key.into(),
            deal_id,
            answer,
        };
        (delivery, pending)
    }

    #[tokio::test]
    async fn a_batch_sees_its_own_earlier_deliveries_and_each_is_answered_for_itself() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let (first, a) = delivery("k1", 5);
        let (copy, b) = delivery("k1", 5);
        let (other, c) = delivery("k2", 5);
        let (elsewhere, d) = delivery("k3", 6);
        store.record_events_then_flush(vec![first, copy, other, elsewhere], 1_000, DAY);
        let mut answers = Vec::new();
        for pending in [a, b, c, d] {
            answers.push(store.recorded(pending).await.expect("recorded and flushed"));
        }
        assert!(matches!(answers[0], Recorded::New { .. }));
        assert_eq!(answers[1], Recorded::Duplicate { requeued: true });
        assert!(matches!(answers[2], Recorded::New { .. }));
        assert!(matches!(answers[3], Recorded::New { .. }));
        let five = store.queued(5).expect("readable").expect("queued");
        assert_eq!(
            (five.events, five.generation, five.event_ids.len()),
            (3, 3, 2)
        );
        assert_eq!(store.queue_len(), 2, "the counters follow the batch");
        // A delivery of the batch is a duplicate later too.
        assert!(matches!(
            store.record_event("k3", 6, 2_000, DAY),
            Ok(Recorded::Duplicate { .. })
        ));
    }
}

//! The queue as the worker and the operators see it: a deal's job, its completion, failure,
//! postponement, parking and retry, and the counters every change keeps.

use super::check::damage;
use super::codec::{decode, encode};
use super::health::Slot;
use super::intake::merge_event;
use super::{Damaged, QueuedDeal, Store, StoreError, now_ms};
use crate::text::{STORED_ERROR_MAX, cut};

impl Store {
    pub fn queued(&self, deal_id: u64) -> Result<Option<QueuedDeal>, StoreError> {
        self.get("queue", |t| &t.queue, &deal_id.to_be_bytes())
    }

    /// Every queued deal that can be read, parked ones included (see [`Store::queue_listing`]
    /// for the others).
    pub fn all_queued(&self) -> Result<Vec<QueuedDeal>, StoreError> {
        Ok(self.queue_listing()?.0)
    }

    /// Every queued deal, parked ones included, and the queue records that cannot be read.
    pub fn queue_listing(&self) -> Result<(Vec<QueuedDeal>, Vec<Damaged>), StoreError> {
        let mut queued = Vec::new();
        let mut damaged = Vec::new();
        for item in self.trees()?.queue.iter() {
            let (k, v) = item?;
            match self.read("queue", &k, &v) {
                Ok(q) => queued.push(q),
                Err(error) => damaged.push(damage("queue", &k, &error)),
            }
        }
        Ok((queued, damaged))
    }

    /// Parks the deal's job with `error`. A queue record that cannot be read is replaced by a
    /// parked one carrying the error: the damaged bytes say nothing the worker can use, and the
    /// job stays visible (`jobs list`) and re-runnable (`jobs retry`).
    pub fn park(&self, deal_id: u64, error: &str) -> Result<(), StoreError> {
        let key = deal_id.to_be_bytes();
        let mut before = Slot::ABSENT;
        // Held until the counters are updated: a re-open waits for it, and counts afresh.
        let t = self.trees()?;
        t.queue.update_and_fetch(key, |old| {
            let current = old.and_then(|b| decode::<QueuedDeal>("queue", &key, b).ok());
            before = match (old, &current) {
                (Some(_), None) => Slot::UNREADABLE,
                _ => Slot::of(current.as_ref()),
            };
            let mut q = current.unwrap_or_else(|| merge_event(None, deal_id, None, now_ms()));
            q.attempts += 1;
            q.parked = true;
            q.last_error = Some(stored_error(error));
            encode(&q).ok()
        })?;
        self.shared.counts.changed(
            before,
            Slot {
                present: true,
                parked: true,
            },
        );
        Ok(())
    }

    /// Queued deals, parked ones included: a counter kept by every change of the queue, so
    /// reading it never touches the disk.
    pub fn queue_len(&self) -> usize {
        self.shared.counts.get().0
    }

    /// Parked jobs (a counter, as [`Store::queue_len`]).
    pub fn parked_len(&self) -> usize {
        self.shared.counts.get().1
    }

    /// The deal's job is done: removes its queue record if no event came in since `generation`
    /// was read. Returns the record still queued (a newer event arrived) if any.
    pub fn complete(
        &self,
        deal_id: u64,
        generation: u64,
    ) -> Result<Option<QueuedDeal>, StoreError> {
        self.update_queued(deal_id, |q| {
            if q.generation == generation {
                None
            } else {
                Some(QueuedDeal {
                    attempts: 0,
                    not_before_ms: 0,
                    last_error: None,
                    ..q
                })
            }
        })
    }

    /// The deal's job failed: counts the attempt, schedules the retry at `not_before_ms`, or
    /// parks the job once `max_attempts` is reached. Returns the updated record.
    pub fn fail(
        &self,
        deal_id: u64,
        error: &str,
        not_before_ms: u64,
        max_attempts: u32,
    ) -> Result<Option<QueuedDeal>, StoreError> {
        self.update_queued(deal_id, |q| {
            let attempts = q.attempts + 1;
            Some(QueuedDeal {
                attempts,
                not_before_ms,
                last_error: Some(stored_error(error)),
                parked: attempts >= max_attempts,
                ..q
            })
        })
    }

    /// Puts a job back without counting an attempt (e.g. a method parked by the portal).
    pub fn postpone(&self, deal_id: u64, not_before_ms: u64, why: &str) -> Result<(), StoreError> {
        self.update_queued(deal_id, |q| {
            Some(QueuedDeal {
                not_before_ms,
                last_error: Some(stored_error(why)),
                ..q
            })
        })?;
        Ok(())
    }

    /// Un-parks a parked job (or every parked job when `deal_id` is `None`); returns the deals.
    pub fn retry_parked(&self, deal_id: Option<u64>) -> Result<Vec<u64>, StoreError> {
        let mut revived = Vec::new();
        for q in self.all_queued()? {
            if q.parked && deal_id.is_none_or(|d| d == q.deal_id) {
                self.update_queued(q.deal_id, |q| {
                    Some(QueuedDeal {
                        parked: false,
                        attempts: 0,
                        not_before_ms: 0,
                        ..q
                    })
                })?;
                revived.push(q.deal_id);
            }
        }
        Ok(revived)
    }

    fn update_queued(
        &self,
        deal_id: u64,
        change: impl Fn(QueuedDeal) -> Option<QueuedDeal>,
    ) -> Result<Option<QueuedDeal>, StoreError> {
        let key = deal_id.to_be_bytes();
        let mut failure = None;
        let mut step = (Slot::ABSENT, Slot::ABSENT);
        // Held until the counters are updated: a re-open waits for it, and counts afresh.
        let t = self.trees()?;
        let after = t.queue.update_and_fetch(key, |old| {
            step = (Slot::ABSENT, Slot::ABSENT);
            let bytes = old?;
            match self.read::<QueuedDeal>("queue", &key, bytes) {
                Ok(q) => {
                    let before = Slot::of(Some(&q));
                    let next = change(q);
                    let encoded = next.as_ref().and_then(|q| encode(q).ok());
                    let after = match encoded {
                        Some(_) => Slot::of(next.as_ref()),
                        None => Slot::ABSENT,
                    };
                    step = (before, after);
                    encoded
                }
                Err(e) => {
                    // Keep an unreadable record as it is: it is reported, never dropped.
                    failure = Some(e);
                    step = (Slot::UNREADABLE, Slot::UNREADABLE);
                    Some(bytes.to_vec())
                }
            }
        })?;
        self.shared.counts.changed(step.0, step.1);
        if let Some(e) = failure {
            return Err(e);
        }
        after.map(|b| self.read("queue", &key, &b)).transpose()
    }
}

/// A job's last error as recorded: cut to [`STORED_ERROR_MAX`] bytes, whoever composed it (the
/// REST client cuts the portal's texts already; this is the backstop for any other).
fn stored_error(error: &str) -> String {
    cut(error, STORED_ERROR_MAX).into_owned()
}

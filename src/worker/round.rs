//! One round, orchestrated: take the deals' jobs from the store, read them all in one batch
//! ([`super::read`]), decide each ([`super::decide`]), flush, write in one batch
//! ([`super::apply`]), and finish every job (complete, retry, park or postpone it). See the
//! module documentation of [`crate::worker`] for the model.

use super::Worker;
use super::job::{Ending, Job};
use crate::bitrix::{Jitter, backoff};
use crate::store::{StoreError, now_ms};

impl Worker {
    pub(super) async fn round(&self, deals: Vec<u64>) {
        self.metrics.round(deals.len());
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
            // The starting point of the stage history is not known yet: rounds wait for it
            // before they take deals, so only a round begun as it was being reset gets here.
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
        let reads = self.read_round(jobs, floor).await;
        for (job, read) in jobs.iter_mut().zip(reads.deals) {
            match self
                .decide(job, floor, read, &reads.catalog, &reads.rules)
                .await
            {
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

    /// Completes, retries or postpones every job of the round, then frees its deals. A job
    /// whose queue record cannot be read is parked (its record replaced by a parked one):
    /// the others are finished all the same.
    async fn finish(&self, jobs: Vec<Job>) -> Result<(), StoreError> {
        let mut wake = Vec::new();
        let mut later = Vec::new();
        let mut held = Vec::new();
        for job in &jobs {
            match self.finish_job(job, &mut wake, &mut later, &mut held) {
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
        self.scheduler.put_back_first(&held);
        Ok(())
    }

    fn finish_job(
        &self,
        job: &Job,
        wake: &mut Vec<u64>,
        later: &mut Vec<(u64, u64)>,
        held: &mut Vec<(u64, u64)>,
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
                    self.emit(super::Activity::DealDone {
                        deal_id: job.deal_id,
                    });
                }
            }
            Ending::Retry(error) if self.client.down_since().is_some() => {
                // It failed because the portal went away: not the job's fault.
                self.hold(job, &error, held)?;
            }
            Ending::Hold(why) => self.hold(job, &why, held)?,
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

    /// Keeps the job's place in the queue while the portal is unreachable: the same due moment,
    /// no attempt counted; the worker takes it again once the portal answers.
    fn hold(&self, job: &Job, why: &str, held: &mut Vec<(u64, u64)>) -> Result<(), StoreError> {
        self.store
            .postpone(job.deal_id, job.queued.not_before_ms, why)?;
        held.push((job.deal_id, job.queued.first_at_ms));
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

    /// How long a job waits after its `attempts`-th failed attempt: from `worker.retry_base`,
    /// doubling, at most `worker.retry_max`; half of it fixed, half jitter, so that the retries
    /// of many deals spread out without any coming back at once.
    fn backoff_ms(&self, attempts: u32) -> u64 {
        backoff(
            self.settings.retry_base,
            self.settings.retry_max,
            attempts.saturating_sub(1),
            Jitter::Half,
        )
        .as_millis() as u64
    }
}

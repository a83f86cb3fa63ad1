//! The intake's recording thread: the deliveries waiting are recorded on it together, in one
//! transaction, and flushed by it right after (see [`Store::record_events_then_flush`]).
//!
//! Why a thread of its own rather than a blocking task per delivery: a sled write takes
//! microseconds, and the hop to a fresh blocking thread and back cost more than the write (two
//! thread wake-ups, the pool's lock, a task to join) while deliveries contended for sled's
//! transaction lock. One long-lived thread takes every delivery waiting at once (up to
//! [`MAX_BATCH`]), records them in one transaction and flushes them; the deliveries that arrive
//! meanwhile make the next batch. Each request is woken once, when its delivery is durable.
//! Flushing here rather than handing the batch to the flusher thread (as it did before) spares
//! a thread wake-up a batch and makes the batches larger: with 32 senders on 2 cores, 0.61-0.63
//! of the baseline's rate in the same minute instead of 0.48 (BENCHMARKS.md). No store call runs on the
//! runtime's threads: a disk that
//! stops answering holds this thread, and the requests waiting on it time out (408), while the
//! runtime goes on serving `/healthz` and `/readyz`.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::time::Duration;

use crate::store::{Delivery, Recorded, Store, StoreError, now_ms, record_answer};

/// Deliveries recorded in one transaction at most: a batch holds sled's transaction lock (and
/// the worker's writes) for a few milliseconds at most.
pub(super) const MAX_BATCH: usize = 256;

/// One delivery to record.
struct Job {
    /// The store, with the delivery: the thread holds none between deliveries, so that the store
    /// is dropped (its files released) with the last of its users, never later by this thread.
    /// A recorder serves one router, hence one store: a batch is recorded in its first job's.
    store: Store,
    window: Duration,
    delivery: Delivery,
}

impl Job {
    /// Records `jobs` (at least one) in one transaction, and flushes them.
    fn record(jobs: Vec<Job>) {
        let Some(first) = jobs.first() else {
            return;
        };
        let (store, window) = (first.store.clone(), first.window);
        let deliveries = jobs.into_iter().map(|job| job.delivery).collect();
        store.record_events_then_flush(deliveries, now_ms(), window);
    }
}

/// The handle of the recording thread; clones share it. The thread ends once every clone is
/// dropped.
#[derive(Clone)]
pub(super) struct Recorder {
    /// `None` when the thread could not be started: deliveries then go to blocking tasks.
    jobs: Option<mpsc::Sender<Job>>,
}

impl Recorder {
    pub(super) fn start() -> Recorder {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("b24-robot-intake".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(MAX_BATCH - 1));
                    // A panic while recording drops the batch's answers (those requests are
                    // answered 503); the thread goes on with the next deliveries.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || Job::record(batch)));
                }
            });
        match spawned {
            Ok(_) => Recorder { jobs: Some(tx) },
            Err(error) => {
                tracing::warn!(%error, "the intake's recording thread could not be started: recording on blocking tasks");
                Recorder { jobs: None }
            }
        }
    }

    /// Records the delivery and makes it durable; the answer comes once it is on disk.
    pub(super) async fn record(
        &self,
        store: &Store,
        dedupe_key: String,
        deal_id: u64,
        window: Duration,
    ) -> Result<Recorded, StoreError> {
        let (answer, pending) = record_answer();
        let job = Job {
            store: store.clone(),
            window,
            delivery: Delivery {
                dedupe_key,
                deal_id,
                answer,
            },
        };
        let job = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = job {
            // No recording thread: a blocking task records this one.
            tokio::task::spawn_blocking(move || Job::record(vec![job]));
        }
        store.recorded(pending).await
    }
}

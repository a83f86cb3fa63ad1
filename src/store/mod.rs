//! The only code that touches sled.
//!
//! Trees and their keys (integers big-endian, so that keys sort as numbers):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `queue` | deal id | [`QueuedDeal`]: the deal's unprocessed events, coalesced |
//! | `dedupe` | delivery key | when it was recorded (ms): re-deliveries are answered, not recorded |
//! | `deals` | deal id | [`DealState`]: the last stage entry seen, a pending echo |
//! | `entries` | deal id, entry id | [`EntryRecord`]: a stage entry and the decisions about it |
//! | `effects` | deal id, entry id, rule, index | [`EffectRecord`]: a write owed to the portal |
//! | `meta` | name | the history floor, the sweep cursor |
//!
//! Writes that belong together (an event and its dedupe key; a deal's entries, state and effect
//! intents) go in one sled transaction, so a crash leaves either all or none of them. Durability
//! is [`Store::flush`]: callers flush before they acknowledge anything.
//!
//! A record that cannot be read ([`StoreError::Corrupt`]) concerns one deal: the worker parks
//! that deal's job with the error and goes on with the others. Every such read is counted
//! ([`Store::read_errors`], on `/readyz` and `/metrics`), and [`Store::check`] reads every record
//! of every tree to list the damaged ones (`b24-robot store check`).

mod flusher;
mod health;
mod records;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

pub use health::{PROBE_BYTES, Stall};
pub use records::*;

use crate::text::{STORED_ERROR_MAX, cut};
use health::Slot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("storage: record {tree}/{key} cannot be read: {message}")]
    Corrupt {
        tree: &'static str,
        key: String,
        message: String,
    },
    #[error(
        "storage: the store at {path} is in use by another process (is b24-robot already running?)"
    )]
    Locked { path: String },
    /// Not opened at this moment: it is being re-opened after a failed write.
    #[error("storage: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// A record that cannot be read: the deal it belongs to is in trouble, the store is not.
    pub fn is_unreadable(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// A record that cannot be read, as [`Store::check`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Damaged {
    pub tree: String,
    /// The key in hex.
    pub key: String,
    /// The deal the key names, where the tree is keyed by deal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deal_id: Option<u64>,
    pub error: String,
}

/// What [`Store::check`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct CheckReport {
    /// Records read, damaged ones included.
    pub records: u64,
    pub damaged: Vec<Damaged>,
}

/// A job's last error as recorded: cut to [`STORED_ERROR_MAX`] bytes, whoever composed it (the
/// REST client cuts the portal's texts already; this is the backstop for any other).
fn stored_error(error: &str) -> String {
    cut(error, STORED_ERROR_MAX).into_owned()
}

/// Milliseconds since the Unix epoch, the store's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

/// The store. Clones share everything, the open database included: after a failed write
/// [`Store::recover`] replaces it under every clone at once.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What every clone of a store shares.
struct Shared {
    dir: PathBuf,
    cache_bytes: u64,
    /// The open database; `None` only while [`Store::recover`] swaps it. Each call clones the
    /// `Arc` for its own duration, so the swap waits for calls in flight, never the other way.
    open: RwLock<Option<Arc<Trees>>>,
    /// Whether the last write or flush failed (the intake and `/readyz` read it).
    health: health::WriteHealth,
    /// The queue's size, kept by every change of the `queue` tree (`/readyz`, `/metrics`).
    counts: health::QueueCounts,
    /// The test hook of [`Store::stall`].
    stall: Arc<health::StallGate>,
    /// Records that could not be read since the store was opened (re-opens included). An
    /// atomic, so that `/readyz` and `/metrics` read it without touching sled.
    read_errors: AtomicU64,
}

/// One opened sled database and its trees.
struct Trees {
    db: sled::Db,
    /// Group commit for async callers; its thread holds this database until it is dropped.
    flusher: flusher::Flusher,
    queue: sled::Tree,
    dedupe: sled::Tree,
    deals: sled::Tree,
    entries: sled::Tree,
    effects: sled::Tree,
    meta: sled::Tree,
}

impl Trees {
    fn open(dir: &Path, cache_bytes: u64) -> Result<Trees, StoreError> {
        let config = sled::Config::new().path(dir).cache_capacity(cache_bytes);
        let db = config.open().map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked {
                    path: dir.display().to_string(),
                }
            }
            sled::Error::Io(io) if io.to_string().contains("lock") => StoreError::Locked {
                path: dir.display().to_string(),
            },
            other => StoreError::Sled(other),
        })?;
        let flusher = flusher::Flusher::start(db.clone()).map_err(sled::Error::Io)?;
        Ok(Trees {
            flusher,
            queue: db.open_tree("queue")?,
            dedupe: db.open_tree("dedupe")?,
            deals: db.open_tree("deals")?,
            entries: db.open_tree("entries")?,
            effects: db.open_tree("effects")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// (queued, parked), counted from the tree.
    fn count_queue(&self) -> Result<(usize, usize), StoreError> {
        let (mut queued, mut parked) = (0, 0);
        for item in self.queue.iter() {
            let (key, value) = item?;
            queued += 1;
            let slot = decode::<QueuedDeal>("queue", &key, &value)
                .map_or(Slot::UNREADABLE, |q| Slot::of(Some(&q)));
            parked += usize::from(slot.parked);
        }
        Ok((queued, parked))
    }
}

/// sled's page cache unless `storage.cache` says otherwise.
pub const DEFAULT_CACHE_BYTES: u64 = 256 * 1024 * 1024;

const META_HISTORY_FLOOR: &str = "history_floor";
const META_SWEEP_CURSOR: &str = "sweep_cursor";
const META_BACKFILL: &str = "backfill";
/// Written and flushed by [`Store::recover`] to check that the re-opened database can write.
const META_WRITE_CHECK: &str = "write_check";

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store in `dir`, with sled's page cache bounded to `cache_bytes`
    /// (what the store may keep in memory; sled's own default is 1 GiB).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let trees = Trees::open(dir, cache_bytes)?;
        let (queued, parked) = trees.count_queue()?;
        let store = Store {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                cache_bytes,
                open: RwLock::new(Some(Arc::new(trees))),
                health: health::WriteHealth::default(),
                counts: health::QueueCounts::default(),
                stall: Arc::default(),
                read_errors: AtomicU64::new(0),
            }),
        };
        store.shared.counts.set(queued, parked);
        Ok(store)
    }

    /// The open database, for one call.
    fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        self.shared.stall.wait();
        self.shared
            .open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Unavailable("being re-opened after a failed write".into()))
    }

    /// A write's or flush's result; a storage error marks the store as unable to write.
    fn written<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Sled(error)) = &result {
            self.shared.health.failed(health::describe(error));
        }
        result
    }

    /// Records that could not be read since the store was opened (every failed read counts).
    pub fn read_errors(&self) -> u64 {
        self.shared.read_errors.load(Ordering::Relaxed)
    }

    /// Decodes a record, counting it when it cannot be read.
    fn read<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        let record = decode(tree, key, bytes);
        if record.is_err() {
            self.shared.read_errors.fetch_add(1, Ordering::Relaxed);
        }
        record
    }

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

    /// Makes every write so far durable. Blocking: call it through `spawn_blocking` from async
    /// code (concurrent flushes coalesce; sled's `flush_async` stalls under concurrency).
    pub fn flush(&self) -> Result<(), StoreError> {
        let result = self
            .trees()?
            .db
            .flush()
            .map(|_| ())
            .map_err(StoreError::from);
        self.written(result)
    }

    /// [`Store::flush`] from async code, as a group commit: concurrent callers share one flush
    /// (see `flusher`).
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        // Asked while the database is held, awaited without it (a re-open does not wait for
        // flushes queued behind a failing disk: they are answered with its error).
        let answer = self.trees()?.flusher.request();
        self.written(answer.await.map_err(StoreError::Sled))
    }

    /// Why the store cannot write, since its last write or flush failed; `None` when it can.
    pub fn write_failure(&self) -> Option<String> {
        self.shared.health.failure()
    }

    /// Writes and flushes that failed since the store was opened.
    pub fn write_failures(&self) -> u64 {
        self.shared.health.failures()
    }

    /// Times the database was re-opened by [`Store::recover`].
    pub fn reopens(&self) -> u64 {
        self.shared.health.reopens()
    }

    /// After a failed write: once the disk takes [`PROBE_BYTES`] again, re-opens the database
    /// (sled refuses every write after an I/O error, until it is opened anew) and checks that
    /// a write goes through. Returns whether the store can write. Blocking; calls made while the
    /// database is swapped fail with [`StoreError::Unavailable`]. What was written but not
    /// flushed before the failure may be lost, as in a crash: nothing of it was acknowledged.
    pub fn recover(&self) -> Result<bool, StoreError> {
        if self.write_failure().is_none() {
            return Ok(true);
        }
        if let Err(error) = health::probe_room(&self.shared.dir) {
            tracing::debug!(%error, "the store's disk has no room yet");
            return Ok(false);
        }
        let old = self
            .shared
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(old) = old {
            // Calls in flight finish (with the failing disk's error) within moments.
            let start = std::time::Instant::now();
            while Arc::strong_count(&old) > 1 && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                tracing::warn!("a store call did not finish within 10 s: re-open postponed");
                *self
                    .shared
                    .open
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(old);
                return Ok(false);
            }
            drop(old);
        }
        // sled's threads let go of the file lock a moment after the last handle is dropped.
        let start = std::time::Instant::now();
        let trees = loop {
            match Trees::open(&self.shared.dir, self.shared.cache_bytes) {
                Err(StoreError::Locked { .. }) if start.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        let checked = trees
            .meta
            .insert(META_WRITE_CHECK, &now_ms().to_be_bytes())
            .and_then(|_| trees.db.flush())
            .map_err(StoreError::from);
        // Counted before anyone can write to it (nobody can while it is not installed).
        let (queued, parked) = trees.count_queue()?;
        self.shared.counts.set(queued, parked);
        *self
            .shared
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(trees));
        if let Err(error) = self.written(checked) {
            tracing::warn!(%error, "the store was re-opened but still cannot write");
            return Ok(false);
        }
        self.shared.health.recovered();
        tracing::info!("the store can write again: events are taken again");
        Ok(true)
    }

    /// Test hook: until the returned guard is dropped, every call into the store blocks, as on
    /// a disk that stopped answering. What reads counters (`/readyz`, `/healthz`, the queue
    /// gauges) must go on answering.
    #[doc(hidden)]
    pub fn stall(&self) -> Stall {
        Stall::new(self.shared.stall.clone())
    }

    /// A fresh id, unique across restarts.
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.trees()?.db.generate_id()?)
    }

    // ---- intake ------------------------------------------------------------------------------

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

    // ---- the queue ---------------------------------------------------------------------------

    pub fn queued(&self, deal_id: u64) -> Result<Option<QueuedDeal>, StoreError> {
        let key = deal_id.to_be_bytes();
        self.trees()?
            .queue
            .get(key)?
            .map(|b| self.read("queue", &key, &b))
            .transpose()
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

    // ---- deals, entries, effects -------------------------------------------------------------

    pub fn deal_state(&self, deal_id: u64) -> Result<Option<DealState>, StoreError> {
        let key = deal_id.to_be_bytes();
        self.trees()?
            .deals
            .get(key)?
            .map(|b| self.read("deals", &key, &b))
            .transpose()
    }

    /// Known deals (walks the tree: not for HTTP handlers).
    pub fn deal_count(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.trees()?.deals.iter() {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// The deal's recorded stage entries, oldest first.
    pub fn entries(&self, deal_id: u64) -> Result<Vec<EntryRecord>, StoreError> {
        self.trees()?
            .entries
            .scan_prefix(deal_id.to_be_bytes())
            .map(|item| {
                let (k, v) = item?;
                self.read("entries", &k, &v)
            })
            .collect()
    }

    /// The deal's effects, in entry and rule order.
    pub fn effects(&self, deal_id: u64) -> Result<Vec<EffectRecord>, StoreError> {
        self.trees()?
            .effects
            .scan_prefix(deal_id.to_be_bytes())
            .map(|item| {
                let (k, v) = item?;
                self.read("effects", &k, &v)
            })
            .collect()
    }

    /// Records what one round learnt about a deal, all or nothing: its new state, its new
    /// entries with their decisions, and the intents of the effects to make.
    pub fn commit_deal(
        &self,
        deal_id: u64,
        state: &DealState,
        entries: &[EntryRecord],
        effects: &[EffectRecord],
    ) -> Result<(), StoreError> {
        let state_bytes = encode(state)?;
        let entry_rows: Vec<(Vec<u8>, Vec<u8>)> = entries
            .iter()
            .map(|e| Ok((entry_key(deal_id, e.entry.id), encode(e)?)))
            .collect::<Result<_, StoreError>>()?;
        let effect_rows: Vec<(Vec<u8>, Vec<u8>)> = effects
            .iter()
            .map(|e| Ok((effect_key(e), encode(e)?)))
            .collect::<Result<_, StoreError>>()?;
        let t = self.trees()?;
        let result = (&t.deals, &t.entries, &t.effects).transaction(|(d, en, ef)| {
            d.insert(&deal_id.to_be_bytes(), state_bytes.as_slice())?;
            for (k, v) in &entry_rows {
                en.insert(k.as_slice(), v.as_slice())?;
            }
            for (k, v) in &effect_rows {
                ef.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        });
        unwrap_tx(result)
    }

    pub fn put_deal_state(&self, deal_id: u64, state: &DealState) -> Result<(), StoreError> {
        self.trees()?
            .deals
            .insert(deal_id.to_be_bytes(), encode(state)?)?;
        Ok(())
    }

    pub fn put_effect(&self, effect: &EffectRecord) -> Result<(), StoreError> {
        self.trees()?
            .effects
            .insert(effect_key(effect), encode(effect)?)?;
        Ok(())
    }

    /// Forgets stage entries recorded before `cutoff_ms`, with their decisions and their settled
    /// effects. An entry with an effect still pending is kept whatever its age (the effect is
    /// work owed). Deal states stay: they are what makes an old entry never act again.
    pub fn prune_entries(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        let t = self.trees()?;
        for item in t.entries.iter() {
            let (key, value) = item?;
            let record: EntryRecord = match self.read("entries", &key, &value) {
                Ok(r) => r,
                Err(_) => continue,
            };
            if record.recorded_at_ms >= cutoff_ms {
                continue;
            }
            // A storage error ends the pass (sled may yield the same error forever).
            let mut effects: Vec<(sled::IVec, EffectRecord)> = Vec::new();
            for item in t.effects.scan_prefix(&key) {
                let (k, v) = item?;
                if let Ok(e) = self.read("effects", &k, &v) {
                    effects.push((k, e));
                }
            }
            if effects.iter().any(|(_, e)| e.state == EffectState::Pending) {
                continue;
            }
            for (k, _) in effects {
                t.effects.remove(k)?;
            }
            t.entries.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }

    // ---- meta --------------------------------------------------------------------------------

    /// The last stage-history id that existed when the store was created: older entries are
    /// never acted on (a backfill is for those).
    pub fn history_floor(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .trees()?
            .meta
            .get(META_HISTORY_FLOOR)?
            .map(|v| be_u64(&v)))
    }

    /// Sets the history floor (and the sweep cursor) once; a floor already set is kept.
    pub fn init_history_floor(&self, id: u64) -> Result<u64, StoreError> {
        let t = self.trees()?;
        let previous = t.meta.compare_and_swap(
            META_HISTORY_FLOOR,
            None as Option<&[u8]>,
            Some(&id.to_be_bytes()),
        )?;
        match previous {
            Ok(()) => {
                t.meta.insert(META_SWEEP_CURSOR, &id.to_be_bytes())?;
                Ok(id)
            }
            Err(cas) => Ok(cas.current.map(|v| be_u64(&v)).unwrap_or(id)),
        }
    }

    pub fn sweep_cursor(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .trees()?
            .meta
            .get(META_SWEEP_CURSOR)?
            .map(|v| be_u64(&v)))
    }

    pub fn set_sweep_cursor(&self, id: u64) -> Result<(), StoreError> {
        self.trees()?
            .meta
            .insert(META_SWEEP_CURSOR, &id.to_be_bytes())?;
        Ok(())
    }

    /// The last backfill's progress.
    pub fn backfill_progress(&self) -> Result<Option<BackfillProgress>, StoreError> {
        self.trees()?
            .meta
            .get(META_BACKFILL)?
            .map(|b| self.read("meta", META_BACKFILL.as_bytes(), &b))
            .transpose()
    }

    pub fn set_backfill_progress(&self, progress: &BackfillProgress) -> Result<(), StoreError> {
        self.trees()?
            .meta
            .insert(META_BACKFILL, encode(progress)?)?;
        Ok(())
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.trees()?.db.size_on_disk()?)
    }

    // ---- checking --------------------------------------------------------------------------

    /// Reads every record of every tree and reports those that cannot be read: undecodable
    /// bytes, a record of a newer version, a key of the wrong shape, a record filed under
    /// another deal's key. Blocking (it reads the whole store): off the async threads.
    pub fn check(&self) -> CheckReport {
        let mut report = CheckReport::default();
        let t = match self.trees() {
            Ok(t) => t,
            Err(error) => {
                report.damaged.push(Damaged {
                    tree: "*".into(),
                    key: String::new(),
                    deal_id: None,
                    error: error.to_string(),
                });
                return report;
            }
        };
        let trees: [(&'static str, &sled::Tree, CheckFn); 6] = [
            ("queue", &t.queue, check_queued),
            ("dedupe", &t.dedupe, check_dedupe),
            ("deals", &t.deals, check_deal),
            ("entries", &t.entries, check_entry),
            ("effects", &t.effects, check_effect),
            ("meta", &t.meta, check_meta),
        ];
        for (name, tree, check) in trees {
            for item in tree.iter() {
                report.records += 1;
                match item {
                    Ok((k, v)) => {
                        if let Err(error) = check(name, &k, &v) {
                            report.damaged.push(damage(name, &k, &error));
                        }
                    }
                    Err(error) => {
                        // sled itself cannot go on in this tree: report it, check the next.
                        report.damaged.push(Damaged {
                            tree: name.into(),
                            key: String::new(),
                            deal_id: None,
                            error: format!("the tree cannot be read further: {error}"),
                        });
                        break;
                    }
                }
            }
        }
        report
    }

    /// Writes `value` as it is under `key` of `tree`, bypassing every encoding: how a test
    /// makes a damaged record. Never called by the service.
    #[doc(hidden)]
    pub fn put_raw_for_tests(
        &self,
        tree: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StoreError> {
        let t = self.trees()?;
        t.db.open_tree(tree)?.insert(key, value)?;
        // The counters follow the tree, raw writes included.
        let (queued, parked) = t.count_queue()?;
        self.shared.counts.set(queued, parked);
        Ok(())
    }
}

/// Checks one record of a tree (see [`Store::check`]).
type CheckFn = fn(&'static str, &[u8], &[u8]) -> Result<(), StoreError>;

fn bad_key(tree: &'static str, key: &[u8], message: &str) -> StoreError {
    StoreError::Corrupt {
        tree,
        key: hex(key),
        message: message.into(),
    }
}

fn check_queued(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let q: QueuedDeal = decode(tree, key, value)?;
    if key != q.deal_id.to_be_bytes() {
        return Err(bad_key(
            tree,
            key,
            &format!("filed under another key than its deal {}", q.deal_id),
        ));
    }
    Ok(())
}

fn check_dedupe(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    if value.len() != 8 {
        return Err(bad_key(
            tree,
            key,
            &format!("{} bytes where a time (8) was expected", value.len()),
        ));
    }
    Ok(())
}

fn check_deal(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let _: DealState = decode(tree, key, value)?;
    if key.len() != 8 {
        return Err(bad_key(tree, key, "a key that is not a deal id"));
    }
    Ok(())
}

fn check_entry(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let e: EntryRecord = decode(tree, key, value)?;
    if key != entry_key(e.deal_id, e.entry.id) {
        return Err(bad_key(
            tree,
            key,
            &format!(
                "filed under another key than deal {} entry {}",
                e.deal_id, e.entry.id
            ),
        ));
    }
    Ok(())
}

fn check_effect(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let e: EffectRecord = decode(tree, key, value)?;
    if key != effect_key(&e) {
        return Err(bad_key(
            tree,
            key,
            &format!(
                "filed under another key than deal {} entry {} rule {} effect {}",
                e.deal_id, e.entry_id, e.rule, e.index
            ),
        ));
    }
    Ok(())
}

fn check_meta(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    match key {
        k if k == META_BACKFILL.as_bytes() => {
            decode::<BackfillProgress>(tree, key, value).map(|_| ())
        }
        k if k == META_HISTORY_FLOOR.as_bytes() || k == META_SWEEP_CURSOR.as_bytes() => {
            if value.len() == 8 {
                Ok(())
            } else {
                Err(bad_key(
                    tree,
                    key,
                    &format!("{} bytes where an entry id (8) was expected", value.len()),
                ))
            }
        }
        // Another release's meta key: not ours to judge.
        _ => Ok(()),
    }
}

/// A damaged record for a report: the deal its key names where the tree is keyed by deal.
fn damage(tree: &str, key: &[u8], error: &StoreError) -> Damaged {
    let by_deal = matches!(tree, "queue" | "deals" | "entries" | "effects");
    Damaged {
        tree: tree.into(),
        key: hex(key),
        deal_id: key
            .get(..8)
            .filter(|_| by_deal)
            .and_then(|k| <[u8; 8]>::try_from(k).ok())
            .map(u64::from_be_bytes),
        error: error.to_string(),
    }
}

/// The fresh queue record that replaces an unreadable one says so.
fn note_replaced(mut q: QueuedDeal, replaced: &RefCell<Option<StoreError>>) -> QueuedDeal {
    if let Some(error) = replaced.borrow().as_ref() {
        q.last_error = Some(format!(
            "the queue record could not be read and was replaced: {error}"
        ));
    }
    q
}

fn report_replaced(deal_id: u64, replaced: Option<StoreError>) {
    if let Some(error) = replaced {
        tracing::warn!(deal_id, %error,
            "the deal's queue record could not be read: replaced by a new one (its event counts are lost, its work is not)");
    }
}

fn merge_event(
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

fn entry_key(deal_id: u64, entry_id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(16);
    key.extend_from_slice(&deal_id.to_be_bytes());
    key.extend_from_slice(&entry_id.to_be_bytes());
    key
}

fn effect_key(e: &EffectRecord) -> Vec<u8> {
    let mut key = entry_key(e.deal_id, e.entry_id);
    key.extend_from_slice(e.rule.as_bytes());
    key.push(0);
    key.extend_from_slice(&e.index.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree: "-",
        key: String::new(),
        message: format!("cannot encode: {e}"),
    })
}

fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    let version = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("v").and_then(serde_json::Value::as_u64));
    if let Some(v) = version
        && v > u64::from(RECORD_VERSION)
    {
        {
            return Err(StoreError::Corrupt {
                tree,
                key: hex(key),
                message: format!("written by a newer b24-robot (record version {v})"),
            });
        }
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        key: hex(key),
        message: e.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn unwrap_tx<T>(result: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, store)
    }

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn the_same_delivery_is_recorded_once() {
        let (_d, s) = store();
        assert!(matches!(
            s.record_event("k1", 5, 1000, DAY).expect("ok"),
            Recorded::New { .. }
        ));
        assert_eq!(
            s.record_event("k1", 5, 2000, DAY).expect("ok"),
            Recorded::Duplicate { requeued: true }
        );
        let q = s.queued(5).expect("ok").expect("queued");
        assert_eq!(q.event_ids.len(), 1, "not recorded as an event");
        assert_eq!(
            q.generation, 2,
            "but a round already reading the deal runs again"
        );
        // Processed since: the same key queues one more read, without recording an event.
        s.complete(5, q.generation).expect("ok");
        assert_eq!(
            s.record_event("k1", 5, 3000, DAY).expect("ok"),
            Recorded::Duplicate { requeued: true }
        );
        let q = s.queued(5).expect("ok").expect("queued again");
        assert!(q.event_ids.is_empty());
    }

    #[test]
    fn a_delivery_outside_the_window_is_recorded_again() {
        let (_d, s) = store();
        s.record_event("k1", 5, 0, Duration::from_secs(1))
            .expect("ok");
        assert!(matches!(
            s.record_event("k1", 5, 5000, Duration::from_secs(1))
                .expect("ok"),
            Recorded::New { .. }
        ));
    }

    #[test]
    fn events_for_one_deal_coalesce_and_a_late_event_survives_completion() {
        let (_d, s) = store();
        s.record_event("a", 7, 0, DAY).expect("ok");
        s.record_event("b", 7, 0, DAY).expect("ok");
        let q = s.queued(7).expect("ok").expect("queued");
        assert_eq!((q.events, q.generation), (2, 2));
        // A worker read generation 2; an event arrives while it works.
        s.record_event("c", 7, 0, DAY).expect("ok");
        assert!(
            s.complete(7, 2).expect("ok").is_some(),
            "the late event keeps the deal queued"
        );
        assert!(s.complete(7, 3).expect("ok").is_none());
        assert!(s.queued(7).expect("ok").is_none());
    }

    #[test]
    fn failures_park_the_job_after_max_attempts_and_it_can_be_retried() {
        let (_d, s) = store();
        s.enqueue(9, 0).expect("ok");
        for _ in 0..3 {
            s.fail(9, "boom", 0, 3).expect("ok");
        }
        let q = s.queued(9).expect("ok").expect("queued");
        assert!(q.parked);
        assert_eq!(q.last_error.as_deref(), Some("boom"));
        assert_eq!(s.retry_parked(None).expect("ok"), vec![9]);
        assert!(!s.queued(9).expect("ok").expect("queued").parked);
    }

    #[test]
    fn old_entries_are_pruned_but_not_those_with_pending_effects() {
        let (_d, s) = store();
        let entry = |id: u64, at: u64| EntryRecord {
            v: RECORD_VERSION,
            deal_id: 1,
            entry: crate::rules::StageEntry {
                id,
                type_id: 2,
                stage_id: "NEW".into(),
                category_id: 0,
                semantic: crate::rules::StageSemantic::Process,
                created_time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00")
                    .expect("time"),
            },
            recorded_at_ms: at,
            action: EntryAction::Acted,
            ruleset_version: "v".into(),
            decisions: Vec::new(),
            event_ids: Vec::new(),
            note: None,
        };
        let effect = |entry_id: u64, state: EffectState| EffectRecord {
            v: RECORD_VERSION,
            deal_id: 1,
            entry_id,
            rule: "r".into(),
            index: 0,
            kind: EffectKind::Task,
            method: "tasks.task.add".into(),
            params: serde_json::Value::Null,
            marker: "m".into(),
            state,
            attempts: 1,
            updated_at_ms: 0,
        };
        s.commit_deal(
            1,
            &DealState::default(),
            &[entry(10, 100), entry(11, 100), entry(12, 5_000)],
            &[
                effect(10, EffectState::Done { id: "7".into() }),
                effect(11, EffectState::Pending),
            ],
        )
        .expect("commit");
        assert_eq!(s.prune_entries(1_000).expect("prune"), 1);
        let left: Vec<u64> = s
            .entries(1)
            .expect("entries")
            .iter()
            .map(|e| e.entry.id)
            .collect();
        assert_eq!(left, vec![11, 12]);
        assert_eq!(s.effects(1).expect("effects").len(), 1);
    }

    #[test]
    fn the_queue_counters_agree_with_the_tree_after_every_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agree = |s: &Store, what: &str| {
            let counted = s.trees().expect("open").count_queue().expect("count");
            assert_eq!((s.queue_len(), s.parked_len()), counted, "after {what}");
        };
        {
            let s = Store::open(dir.path()).expect("open");
            s.record_event("a", 1, 0, DAY).expect("ok");
            s.record_event("a", 1, 0, DAY).expect("ok");
            s.record_event("b", 2, 0, DAY).expect("ok");
            s.enqueue(3, 0).expect("ok");
            s.enqueue(3, 0).expect("ok");
            agree(&s, "recording and queueing");
            s.fail(2, "boom", 0, 1).expect("ok");
            s.fail(2, "boom", 0, 1).expect("ok");
            agree(&s, "parking");
            s.postpone(3, 10, "later").expect("ok");
            s.record_event("c", 2, 0, DAY).expect("ok");
            agree(&s, "an event for a parked deal");
            s.fail(2, "boom", 0, 1).expect("ok");
            assert_eq!(s.retry_parked(None).expect("ok"), vec![2]);
            agree(&s, "a retry");
            let generation = s.queued(1).expect("ok").expect("queued").generation;
            s.complete(1, generation).expect("ok");
            s.complete(1, generation).expect("ok");
            s.complete(99, 1).expect("ok");
            agree(&s, "completions");
            assert_eq!((s.queue_len(), s.parked_len()), (2, 0));
            s.fail(3, "boom", 0, 1).expect("ok");
            s.flush().expect("flush");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!((s.queue_len(), s.parked_len()), (2, 1), "counted at open");
    }

    #[test]
    fn the_history_floor_is_set_once() {
        let (_d, s) = store();
        assert_eq!(s.history_floor().expect("ok"), None);
        assert_eq!(s.init_history_floor(42).expect("ok"), 42);
        assert_eq!(s.init_history_floor(99).expect("ok"), 42);
        assert_eq!(s.sweep_cursor().expect("ok"), Some(42));
    }

    #[test]
    fn a_damaged_record_is_counted_and_check_reports_its_tree_and_key() {
        let (_d, s) = store();
        s.enqueue(3, 0).expect("ok");
        s.put_deal_state(3, &DealState::default()).expect("ok");
        s.put_deal_state(4, &DealState::default()).expect("ok");
        assert_eq!(s.check().damaged, Vec::new(), "a healthy store");
        s.put_raw_for_tests("deals", &4u64.to_be_bytes(), &[0; 8])
            .expect("damaged");
        assert!(s.deal_state(4).expect_err("unreadable").is_unreadable());
        assert_eq!(s.read_errors(), 1);
        assert!(
            s.deal_state(3).expect("readable").is_some(),
            "the others read"
        );
        let report = s.check();
        assert_eq!(report.records, 3);
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        let damaged = &report.damaged[0];
        assert_eq!(
            (damaged.tree.as_str(), damaged.key.as_str(), damaged.deal_id),
            ("deals", "0000000000000004", Some(4))
        );
        assert!(damaged.error.contains("cannot be read"), "{damaged:?}");
        assert_eq!(s.read_errors(), 1, "checking is not a failed read");
    }

    #[test]
    fn a_record_filed_under_another_deal_is_damaged() {
        let (_d, s) = store();
        s.enqueue(3, 0).expect("ok");
        let bytes = s
            .trees()
            .expect("open")
            .queue
            .get(3u64.to_be_bytes())
            .expect("ok")
            .expect("queued");
        s.put_raw_for_tests("queue", &9u64.to_be_bytes(), &bytes)
            .expect("written");
        let report = s.check();
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].deal_id, Some(9));
    }

    #[test]
    fn new_work_for_an_unreadable_queue_record_replaces_it_and_says_so() {
        let (_d, s) = store();
        for (deal, via_event) in [(5u64, true), (6, false)] {
            s.put_raw_for_tests("queue", &deal.to_be_bytes(), b"\0garbage")
                .expect("damaged");
            if via_event {
                s.record_event("k", deal, 0, DAY).expect("recorded");
            } else {
                s.enqueue(deal, 0).expect("queued");
            }
            let q = s.queued(deal).expect("readable again").expect("queued");
            assert!(!q.parked);
            assert!(
                q.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("could not be read and was replaced")),
                "{q:?}"
            );
        }
        assert_eq!(s.read_errors(), 2);
    }

    #[test]
    fn parking_replaces_an_unreadable_queue_record_with_a_parked_job() {
        let (_d, s) = store();
        s.put_raw_for_tests("queue", &7u64.to_be_bytes(), &[0; 4])
            .expect("damaged");
        let error = s.queued(7).expect_err("unreadable").to_string();
        s.park(7, &error).expect("parked");
        let q = s.queued(7).expect("readable").expect("queued");
        assert!(q.parked);
        assert_eq!(q.last_error.as_deref(), Some(error.as_str()));
        assert_eq!(s.retry_parked(Some(7)).expect("ok"), vec![7]);
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            s.record_event("k", 3, 0, DAY).expect("ok");
            s.flush().expect("flush");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert!(s.queued(3).expect("ok").is_some());
    }
}

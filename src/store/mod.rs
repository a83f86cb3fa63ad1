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
//! | `timers` | deal id, entry id, rule | [`TimerRecord`]: a time-driven rule's timer, whatever its state |
//! | `control` | `deadline/`, `episode/`, `digest/` + name | what the control sweep and the digests remember |
//! | `report_copy` | `d` + deal id, `m` | [`reports::CopyMeta`] and what reports need of each deal |
//! | `timers_due` | due moment, deal id, entry id, rule | nothing: the pending timers in the order they fall due |
//!
//! Writes that belong together (an event and its dedupe key; a deal's entries, state and effect
//! intents) go in one sled transaction, so a crash leaves either all or none of them. Durability
//! is [`Store::flush`]: callers flush before they acknowledge anything.
//!
//! A record that cannot be read ([`StoreError::Corrupt`]) concerns one deal: the worker parks
//! that deal's job with the error and goes on with the others. Every such read is counted
//! ([`Store::read_errors`], on `/readyz` and `/metrics`), and [`Store::check`] reads every record
//! of every tree to list the damaged ones (`b24-robot store check`).

//!
//! `mod.rs` holds the [`Store`] itself: opening, the write health and its recovery, flushing.
//! Each group of records has its file of `impl Store`: `intake` (events and the dedupe keys),
//! `queue` (jobs), `deals` (deal states, stage entries, effects), `meta` (history floor, sweep
//! cursor, backfill), `check` (reading every record); `codec` the keys and record bytes they
//! all share, `records` the record types.

mod check;
mod codec;
mod deals;
mod flusher;
mod health;
mod intake;
mod meta;
mod queue;
mod records;
mod reports;
mod timers;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

pub use check::{CheckReport, Damaged};
pub use health::{PROBE_BYTES, Stall};
pub use intake::{Delivery, PendingRecord, RecordAnswer, Recorded, record_answer};
pub use records::*;
pub use reports::CopyMeta;

use codec::decode;
use health::Slot;
use meta::META_WRITE_CHECK;

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

/// Milliseconds since the Unix epoch, the store's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    /// Pending timers, kept by every change of `timers_due` (`/metrics`).
    timers_pending: AtomicU64,
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
    /// Timers by identity, and the pending ones by due moment (`timers.rs`).
    timers: sled::Tree,
    timers_due: sled::Tree,
    /// The report copy: what reports need of each deal (`reports.rs`).
    report_copy: sled::Tree,
    /// The control sweep's memory: deadlines of tracked tasks, no-next-step episodes, digests
    /// sent (string keys, `timers.rs`).
    control: sled::Tree,
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
            timers: db.open_tree("timers")?,
            timers_due: db.open_tree("timers_due")?,
            control: db.open_tree("control")?,
            report_copy: db.open_tree("report_copy")?,
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

/// sled's page cache unless `storage.cache` says otherwise, chosen with `bench memory`.
///
/// sled bounds its cache by the pages' size on disk; decoded in memory they take about three
/// times that, and every page keeps its bookkeeping in memory whether cached or not (a leaf holds
/// at most 16 keys: 1,000,000 deals are some 100,000 pages, ~30 MiB that no cache size removes).
/// With the state of 1,000,000 deals the service holds ~100-112 MiB at 16 MiB (~290 MiB at 256
/// MiB). The price is in random reads of deal states, about 2.5 times slower than at 256 MiB
/// (50,000-80,000/s on 2 cores) and the same from 4 to 32 MiB: still hundreds of times the ~100
/// deals a second the portal's limit lets the rounds read. Writes do not change.
pub const DEFAULT_CACHE_BYTES: u64 = 16 * 1024 * 1024;

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
        let timers_pending = Store::count_pending_timers(&trees.timers_due);
        let store = Store {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                cache_bytes,
                open: RwLock::new(Some(Arc::new(trees))),
                health: health::WriteHealth::default(),
                counts: health::QueueCounts::default(),
                stall: Arc::default(),
                read_errors: AtomicU64::new(0),
                timers_pending: AtomicU64::new(timers_pending),
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

    /// The record under `key` of the tree `tree` picks (`name` for errors), if any.
    fn get<T: DeserializeOwned>(
        &self,
        name: &'static str,
        tree: impl Fn(&Trees) -> &sled::Tree,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        let t = self.trees()?;
        tree(&t)
            .get(key)?
            .map(|b| self.read(name, key, &b))
            .transpose()
    }

    /// The records of the tree `tree` picks under a deal's key prefix, in key order.
    fn of_deal<T: DeserializeOwned>(
        &self,
        name: &'static str,
        tree: impl Fn(&Trees) -> &sled::Tree,
        deal_id: u64,
    ) -> Result<Vec<T>, StoreError> {
        let t = self.trees()?;
        tree(&t)
            .scan_prefix(deal_id.to_be_bytes())
            .map(|item| {
                let (k, v) = item?;
                self.read(name, &k, &v)
            })
            .collect()
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
        let timers_pending = Store::count_pending_timers(&trees.timers_due);
        self.shared.counts.set(queued, parked);
        self.shared
            .timers_pending
            .store(timers_pending, std::sync::atomic::Ordering::Relaxed);
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

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.trees()?.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests;

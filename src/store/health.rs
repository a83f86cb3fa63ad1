//! What the store knows about itself without reading a tree: whether it can write, how many
//! jobs are queued and parked, and the test hook that makes it stop answering.
//!
//! `/readyz`, `/metrics` and the intake's fast refusal read these, never sled: a sled that hit a
//! full disk can spin forever inside an iteration (its iterator yields the same error again and
//! again, so `Tree::len()` never returns), and an HTTP handler must not wait for that.
//!
//! A failed flush leaves sled unwritable for good: it keeps the first I/O error as a "global
//! error" that only a new `sled::Db` clears. So the store remembers the failure here, the intake
//! refuses new events at once (503) instead of taking them into memory, and
//! [`Store::recover`](super::Store::recover) re-opens the database once a probe write shows the
//! disk has room again.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Bytes written (and synced) to a scratch file to tell whether the disk has room again before
/// the database is re-opened: a few of sled's 512 KiB log segments.
pub const PROBE_BYTES: usize = 2 * 1024 * 1024;

/// Name of the scratch file of [`probe_room`], in the store's folder.
const PROBE_FILE: &str = "write-probe.tmp";

/// Whether the store can write, and why not.
#[derive(Debug, Default)]
pub(super) struct WriteHealth {
    /// Set on a failed write or flush, cleared by a successful re-open. Read on every delivery.
    broken: AtomicBool,
    /// The first error since the store last could write, as an operator should read it.
    reason: Mutex<Option<String>>,
    /// Writes and flushes that failed (`b24robot_store_write_failures_total`).
    failures: AtomicU64,
    /// Times the database was re-opened after a failure (`b24robot_store_reopens_total`).
    reopens: AtomicU64,
}

impl WriteHealth {
    pub(super) fn failed(&self, reason: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            tracing::error!(%reason, "the store cannot write: new events are refused (503) until it can");
            *slot = Some(reason);
        }
        self.broken.store(true, Ordering::SeqCst);
    }

    pub(super) fn recovered(&self) {
        self.reopens.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = None;
        self.broken.store(false, Ordering::SeqCst);
    }

    pub(super) fn failure(&self) -> Option<String> {
        if !self.broken.load(Ordering::SeqCst) {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(super) fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Relaxed)
    }
}

/// A sled error as an operator reads it: "No space left on device", not a `Debug` dump.
pub(super) fn describe(error: &sled::Error) -> String {
    match error {
        // sled hands out copies of its stored I/O error made from the original's `Debug` text,
        // copies of copies nesting: `Custom { kind: StorageFull, error: "Os { code: 28, kind:
        // StorageFull, message: \"No space left on device\" }" }`. The OS's message is inside.
        sled::Error::Io(io) => {
            let text = io.to_string();
            let message = text.split_once("message: ").map(|(_, rest)| {
                rest.trim_start_matches(['\\', '"'])
                    .split(['\\', '"'])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            });
            match message {
                Some(m) if !m.is_empty() => m,
                _ => text,
            }
        }
        other => other.to_string(),
    }
}

/// Whether the store's folder takes [`PROBE_BYTES`] again: written, synced, removed.
pub(super) fn probe_room(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let result = (|| {
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = PROBE_BYTES;
        while left > 0 {
            let n = left.min(chunk.len());
            file.write_all(&chunk[..n])?;
            left -= n;
        }
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Where a queue record stands, for the counters: absent, waiting, or parked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Slot {
    pub present: bool,
    pub parked: bool,
}

impl Slot {
    pub const ABSENT: Slot = Slot {
        present: false,
        parked: false,
    };

    pub fn of(queued: Option<&super::QueuedDeal>) -> Slot {
        queued.map_or(Slot::ABSENT, |q| Slot {
            present: true,
            parked: q.parked,
        })
    }

    /// Queued, not parked.
    pub const WAITING: Slot = Slot {
        present: true,
        parked: false,
    };

    /// A record that is there but cannot be read: counted as waiting (it is reported, not
    /// dropped).
    pub const UNREADABLE: Slot = Slot::WAITING;
}

/// The queue's size, kept up to date by every change of the `queue` tree (counted from the tree
/// when the database is opened), so that nothing needs to walk the tree to report it.
#[derive(Debug, Default)]
pub(super) struct QueueCounts {
    queued: AtomicI64,
    parked: AtomicI64,
}

impl QueueCounts {
    /// One record went from `before` to `after` (as committed).
    pub(super) fn changed(&self, before: Slot, after: Slot) {
        let step = |was: bool, is: bool| i64::from(is) - i64::from(was);
        self.queued
            .fetch_add(step(before.present, after.present), Ordering::Relaxed);
        self.parked.fetch_add(
            step(
                before.present && before.parked,
                after.present && after.parked,
            ),
            Ordering::Relaxed,
        );
    }

    pub(super) fn set(&self, queued: usize, parked: usize) {
        self.queued.store(queued as i64, Ordering::Relaxed);
        self.parked.store(parked as i64, Ordering::Relaxed);
    }

    /// (queued, parked); queued includes the parked ones.
    pub(super) fn get(&self) -> (usize, usize) {
        let n = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0) as usize;
        (n(&self.queued), n(&self.parked))
    }
}

/// The test hook behind [`Store::stall`](super::Store::stall): while a [`Stall`] lives, every
/// store call waits, as on a disk that stopped answering.
#[derive(Debug, Default)]
pub(super) struct StallGate {
    /// The fast path: one relaxed load per store call when no test stalls it.
    closed: AtomicBool,
    state: Mutex<bool>,
    opened: Condvar,
}

impl StallGate {
    pub(super) fn wait(&self) {
        if !self.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut closed = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while *closed {
            closed = self
                .opened
                .wait(closed)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn set(&self, closed: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = closed;
        self.closed.store(closed, Ordering::SeqCst);
        self.opened.notify_all();
    }
}

/// While it lives, every call into the store blocks (see [`Store::stall`](super::Store::stall)).
#[must_use = "the store answers again as soon as the stall is dropped"]
pub struct Stall {
    gate: Arc<StallGate>,
}

impl Stall {
    pub(super) fn new(gate: Arc<StallGate>) -> Stall {
        gate.set(true);
        Stall { gate }
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.gate.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_io_error_is_described_by_its_message() {
        let original = std::io::Error::from_raw_os_error(28);
        // What sled's `Clone` makes of it, once and twice.
        let copy = std::io::Error::new(original.kind(), format!("{original:?}"));
        let copy_of_copy = std::io::Error::new(copy.kind(), format!("{copy:?}"));
        for error in [copy, copy_of_copy] {
            assert_eq!(describe(&sled::Error::Io(error)), "No space left on device");
        }
        assert_eq!(
            describe(&sled::Error::Io(std::io::Error::other("disk on fire"))),
            "disk on fire"
        );
    }

    #[test]
    fn queue_counts_follow_each_change() {
        let counts = QueueCounts::default();
        let waiting = Slot {
            present: true,
            parked: false,
        };
        let parked = Slot {
            present: true,
            parked: true,
        };
        counts.changed(Slot::ABSENT, waiting);
        counts.changed(Slot::ABSENT, waiting);
        counts.changed(waiting, parked);
        assert_eq!(counts.get(), (2, 1));
        counts.changed(parked, Slot::ABSENT);
        counts.changed(waiting, waiting);
        assert_eq!(counts.get(), (1, 0));
    }
}

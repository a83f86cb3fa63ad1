//! The `meta` tree: the history floor (entries older than the store are never acted on), the
//! sweep cursor, the last backfill's progress.

use super::codec::{be_u64, encode};
use super::{BackfillProgress, Store, StoreError};

pub(super) const META_HISTORY_FLOOR: &str = "history_floor";
pub(super) const META_SWEEP_CURSOR: &str = "sweep_cursor";
pub(super) const META_FIRST_START: &str = "first_start_ms";
pub(super) const META_BACKFILL: &str = "backfill";
/// Written and flushed by [`Store::recover`] to check that the re-opened database can write.
pub(super) const META_WRITE_CHECK: &str = "write_check";

impl Store {
    /// The last stage-history id that existed when the store was created: older entries are
    /// never acted on (a backfill is for those).
    pub fn history_floor(&self) -> Result<Option<u64>, StoreError> {
        self.meta_id(META_HISTORY_FLOOR)
    }

    /// Sets the history floor (and the sweep cursor) once; a floor already set is kept.
    pub fn init_history_floor(&self, id: u64) -> Result<u64, StoreError> {
        match self.init_meta_once(META_HISTORY_FLOOR, id)? {
            None => {
                self.trees()?
                    .meta
                    .insert(META_SWEEP_CURSOR, &id.to_be_bytes())?;
                Ok(id)
            }
            Some(kept) => Ok(kept),
        }
    }

    /// Writes `value` under `name` unless a value is there: `None` when written, else the value
    /// kept.
    fn init_meta_once(&self, name: &str, value: u64) -> Result<Option<u64>, StoreError> {
        let previous = self.trees()?.meta.compare_and_swap(
            name,
            None as Option<&[u8]>,
            Some(&value.to_be_bytes()),
        )?;
        Ok(previous
            .err()
            .map(|cas| cas.current.map(|v| be_u64(&v)).unwrap_or(value)))
    }

    /// When the service first started on this store (ms since the epoch, whole seconds): the
    /// history floor is the newest entry made before it, whenever the portal is first reached.
    pub fn first_start_ms(&self) -> Result<Option<u64>, StoreError> {
        self.meta_id(META_FIRST_START)
    }

    /// Records the first start once; a moment already recorded is kept and returned.
    pub fn init_first_start_ms(&self, at_ms: u64) -> Result<u64, StoreError> {
        Ok(self
            .init_meta_once(META_FIRST_START, at_ms)?
            .unwrap_or(at_ms))
    }

    pub fn sweep_cursor(&self) -> Result<Option<u64>, StoreError> {
        self.meta_id(META_SWEEP_CURSOR)
    }

    /// An entry id kept in `meta` under `name`.
    fn meta_id(&self, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.trees()?.meta.get(name)?.map(|v| be_u64(&v)))
    }

    pub fn set_sweep_cursor(&self, id: u64) -> Result<(), StoreError> {
        self.trees()?
            .meta
            .insert(META_SWEEP_CURSOR, &id.to_be_bytes())?;
        Ok(())
    }

    /// The last backfill's progress.
    pub fn backfill_progress(&self) -> Result<Option<BackfillProgress>, StoreError> {
        self.get("meta", |t| &t.meta, META_BACKFILL.as_bytes())
    }

    pub fn set_backfill_progress(&self, progress: &BackfillProgress) -> Result<(), StoreError> {
        self.trees()?
            .meta
            .insert(META_BACKFILL, encode(progress)?)?;
        Ok(())
    }
}

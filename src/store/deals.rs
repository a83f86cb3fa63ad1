//! Deals, their stage entries with the decisions about them, and the effects owed to the
//! portal: written together by [`Store::commit_deal`], pruned together by age.

use sled::transaction::Transactional;

use super::codec::{effect_key, encode, entry_key, unwrap_tx};
use super::timers::{timer_rows, write_timers};
use super::{DealState, EffectRecord, EffectState, EntryRecord, Store, StoreError, TimerRecord};

impl Store {
    pub fn deal_state(&self, deal_id: u64) -> Result<Option<DealState>, StoreError> {
        self.get("deals", |t| &t.deals, &deal_id.to_be_bytes())
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
        self.of_deal("entries", |t| &t.entries, deal_id)
    }

    /// One recorded stage entry of the deal, with its decisions.
    pub fn entry_record(
        &self,
        deal_id: u64,
        entry_id: u64,
    ) -> Result<Option<EntryRecord>, StoreError> {
        let key = entry_key(deal_id, entry_id);
        match self.trees()?.entries.get(&key)? {
            Some(value) => self.read("entries", &key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// The deal's effects, in entry and rule order.
    pub fn effects(&self, deal_id: u64) -> Result<Vec<EffectRecord>, StoreError> {
        self.of_deal("effects", |t| &t.effects, deal_id)
    }

    /// Records what one round learnt about a deal, all or nothing: its new state, its new
    /// entries with their decisions, the intents of the effects to make, and its timers armed,
    /// fired or disarmed.
    pub fn commit_deal(
        &self,
        deal_id: u64,
        state: &DealState,
        (entries, effects): (&[EntryRecord], &[EffectRecord]),
        timers: &[TimerRecord],
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
        let timer_rows = timer_rows(timers)?;
        let t = self.trees()?;
        let result = (&t.deals, &t.entries, &t.effects, &t.timers, &t.timers_due).transaction(
            |(d, en, ef, tm, due)| {
                d.insert(&deal_id.to_be_bytes(), state_bytes.as_slice())?;
                for (k, v) in &entry_rows {
                    en.insert(k.as_slice(), v.as_slice())?;
                }
                for (k, v) in &effect_rows {
                    ef.insert(k.as_slice(), v.as_slice())?;
                }
                write_timers(tm, due, &timer_rows)
            },
        );
        let delta = unwrap_tx(result)?;
        self.note_pending_timers(delta);
        Ok(())
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
}

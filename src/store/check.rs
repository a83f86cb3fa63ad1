//! `b24-robot store check`: every record of every tree read, the damaged ones listed with
//! their tree, key and deal.

use serde::Serialize;

use super::codec::{decode, effect_key, entry_key, hex};
use super::meta::{META_BACKFILL, META_FIRST_START, META_HISTORY_FLOOR, META_SWEEP_CURSOR};
use super::{
    BackfillProgress, DealState, EffectRecord, EntryRecord, QueuedDeal, Store, StoreError,
    TimerRecord,
};

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

impl Store {
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
        let trees: [(&'static str, &sled::Tree, CheckFn); 7] = [
            ("queue", &t.queue, check_queued),
            ("dedupe", &t.dedupe, check_dedupe),
            ("deals", &t.deals, check_deal),
            ("entries", &t.entries, check_entry),
            ("effects", &t.effects, check_effect),
            ("meta", &t.meta, check_meta),
            ("timers", &t.timers, check_timer),
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

fn check_timer(tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let t: TimerRecord = decode(tree, key, value)?;
    if key != super::timers::timer_key(t.deal_id, t.entry_id, &t.rule) {
        return Err(bad_key(
            tree,
            key,
            &format!(
                "filed under another key than deal {} entry {} rule {}",
                t.deal_id, t.entry_id, t.rule
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
        k if k == META_HISTORY_FLOOR.as_bytes()
            || k == META_SWEEP_CURSOR.as_bytes()
            || k == META_FIRST_START.as_bytes() =>
        {
            if value.len() == 8 {
                Ok(())
            } else {
                Err(bad_key(
                    tree,
                    key,
                    &format!("{} bytes where a number (8) was expected", value.len()),
                ))
            }
        }
        // Another release's meta key: not ours to judge.
        _ => Ok(()),
    }
}

/// A damaged record for a report: the deal its key names where the tree is keyed by deal.
pub(super) fn damage(tree: &str, key: &[u8], error: &StoreError) -> Damaged {
    let by_deal = matches!(tree, "queue" | "deals" | "entries" | "effects" | "timers");
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

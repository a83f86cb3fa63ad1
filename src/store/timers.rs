//! Durable timers of the time-driven rules (`control.md`), and the records of the control
//! sweep: its effects, the tasks it tracks and the deals it found without a next step.
//!
//! A timer lives in two trees: `timers` holds its record under its identity (deal, entry,
//! rule), whatever its state, for `explain`; `timers_due` holds an empty value under (due
//! moment, identity) for each pending one, so that the timer loop reads the few that are due
//! from the front of an ordered tree and never scans them all. Both change in one transaction,
//! with the deal's entries and effect intents when a round arms or fires them.

use std::sync::atomic::Ordering;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::codec::{decode, encode, unwrap_tx};
use super::{Store, StoreError, TimerRecord, TimerState};

/// `deal`, `entry`, then the rule's name: the identity of a timer, also its key in `timers`.
pub(super) fn timer_key(deal_id: u64, entry_id: u64, rule: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + rule.len());
    key.extend_from_slice(&deal_id.to_be_bytes());
    key.extend_from_slice(&entry_id.to_be_bytes());
    key.extend_from_slice(rule.as_bytes());
    key
}

/// The due moment first, then the identity: the key in `timers_due`.
fn due_key(due_ms: u64, identity: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + identity.len());
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(identity);
    key
}

/// Writes `timers` inside a transaction over `timers` and `timers_due`: the old due key of each
/// goes, the new one comes when it is pending. Returns the change in the number pending.
pub(super) fn write_timers(
    tm: &TransactionalTree,
    due: &TransactionalTree,
    rows: &[(Vec<u8>, Vec<u8>, Option<u64>)],
) -> Result<i64, ConflictableTransactionError<StoreError>> {
    let mut delta = 0i64;
    for (key, bytes, due_ms) in rows {
        if let Some(old) = tm.get(key)? {
            let old: TimerRecord =
                decode("timers", key, &old).map_err(ConflictableTransactionError::Abort)?;
            if old.state == TimerState::Pending {
                due.remove(due_key(old.due_ms, key))?;
                delta -= 1;
            }
        }
        tm.insert(key.as_slice(), bytes.as_slice())?;
        if let Some(at) = due_ms {
            due.insert(due_key(*at, key), &[] as &[u8])?;
            delta += 1;
        }
    }
    Ok(delta)
}

/// The rows `write_timers` takes: key, bytes, due moment when pending.
pub(super) type TimerRows = Vec<(Vec<u8>, Vec<u8>, Option<u64>)>;

pub(super) fn timer_rows(timers: &[TimerRecord]) -> Result<TimerRows, StoreError> {
    timers
        .iter()
        .map(|t| {
            let key = timer_key(t.deal_id, t.entry_id, &t.rule);
            let due = (t.state == TimerState::Pending).then_some(t.due_ms);
            Ok((key, encode(t)?, due))
        })
        .collect()
}

impl Store {
    /// Records timers (armed, re-timed, fired or skipped), all or nothing.
    pub fn put_timers(&self, timers: &[TimerRecord]) -> Result<(), StoreError> {
        if timers.is_empty() {
            return Ok(());
        }
        let rows = timer_rows(timers)?;
        let t = self.trees()?;
        let result =
            (&t.timers, &t.timers_due).transaction(|(tm, due)| write_timers(tm, due, &rows));
        let delta = unwrap_tx(result)?;
        self.note_pending_timers(delta);
        Ok(())
    }

    pub(super) fn note_pending_timers(&self, delta: i64) {
        let pending = &self.shared.timers_pending;
        if delta >= 0 {
            pending.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            let _ = pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(delta.unsigned_abs()))
            });
        }
    }

    /// How many timers are pending (a counter the store keeps: `/metrics` reads it often).
    pub fn timers_pending(&self) -> u64 {
        self.shared.timers_pending.load(Ordering::Relaxed)
    }

    /// Every timer of a deal, whatever its state, oldest entry first.
    pub fn timers_of(&self, deal_id: u64) -> Result<Vec<TimerRecord>, StoreError> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for item in t.timers.scan_prefix(deal_id.to_be_bytes()) {
            let (key, value) = item?;
            out.push(self.read("timers", &key, &value)?);
        }
        Ok(out)
    }

    /// The identities (deal, entry, rule) and due moments of up to `limit` pending timers due
    /// at or before `now_ms`, soonest first: read from the front of `timers_due`, so the cost
    /// is the number due, not the number armed.
    pub fn due_timers(&self, now_ms: u64, limit: usize) -> Result<Vec<(u64, u64)>, StoreError> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for item in t.timers_due.range(..due_key(now_ms.saturating_add(1), &[])) {
            let (key, _) = item?;
            if key.len() < 24 {
                continue;
            }
            let due = super::codec::be_u64(&key[..8]);
            let deal = super::codec::be_u64(&key[8..16]);
            out.push((deal, due));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every pending timer (a scan of them all: for a reload of the rules, not for each tick).
    pub fn pending_timers(&self) -> Result<Vec<TimerRecord>, StoreError> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for item in t.timers.iter() {
            let (key, value) = item?;
            let timer: TimerRecord = self.read("timers", &key, &value)?;
            if timer.state == TimerState::Pending {
                out.push(timer);
            }
        }
        Ok(out)
    }

    /// Every timer that has fired at least once and is not skipped: the deals over an SLA
    /// (the digest checks that each is still in its entry).
    pub fn fired_timers(&self) -> Result<Vec<TimerRecord>, StoreError> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for item in t.timers.iter() {
            let (key, value) = item?;
            let timer: TimerRecord = self.read("timers", &key, &value)?;
            let fired = timer.state == TimerState::Fired
                || (timer.state == TimerState::Pending && timer.repetition > 0);
            if fired {
                out.push(timer);
            }
        }
        Ok(out)
    }

    /// The due moment of the soonest pending timer.
    pub fn next_timer_due(&self) -> Result<Option<u64>, StoreError> {
        let t = self.trees()?;
        Ok(t.timers_due
            .first()?
            .filter(|(key, _)| key.len() >= 8)
            .map(|(key, _)| super::codec::be_u64(&key[..8])))
    }

    /// The ids of the tasks the service created (done `tasks.task.add` effects), for the
    /// `[[overdue]]` rules with `tasks = "rules"`.
    pub fn created_tasks(&self) -> Result<Vec<u64>, StoreError> {
        let t = self.trees()?;
        let mut out = Vec::new();
        for item in t.effects.iter() {
            let (key, value) = item?;
            let Ok(effect) = self.read::<super::EffectRecord>("effects", &key, &value) else {
                continue;
            };
            if effect.kind == super::EffectKind::Task
                && let super::EffectState::Done { id } = &effect.state
                && let Ok(id) = id.parse()
            {
                out.push(id);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The deadline of a tracked task as the last control sweep read it (`rule/task`).
    pub fn tracked_deadline(&self, key: &str) -> Result<Option<String>, StoreError> {
        let full = format!("deadline/{key}");
        Ok(self
            .trees()?
            .control
            .get(full.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn track_deadline(&self, key: &str, deadline: &str) -> Result<(), StoreError> {
        let full = format!("deadline/{key}");
        self.trees()?
            .control
            .insert(full.as_bytes(), deadline.as_bytes())?;
        Ok(())
    }

    /// A `[[no_task]]`'s episode of a deal (`rule/deal`).
    pub fn episode(&self, key: &str) -> Result<Option<super::Episode>, StoreError> {
        let full = format!("episode/{key}");
        match self.trees()?.control.get(full.as_bytes())? {
            Some(value) => self.read("control", full.as_bytes(), &value).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_episode(
        &self,
        key: &str,
        episode: Option<&super::Episode>,
    ) -> Result<(), StoreError> {
        let full = format!("episode/{key}");
        let t = self.trees()?;
        match episode {
            Some(e) => t
                .control
                .insert(full.as_bytes(), super::codec::encode(e)?)?,
            None => t.control.remove(full.as_bytes())?,
        };
        Ok(())
    }

    /// The version of the rules the pending timers were last timed by (see the control loop's
    /// `retime`): a start with the same rules need not walk them all again.
    pub fn timers_timed_by(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .trees()?
            .control
            .get(b"timers/timed_by")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_timers_timed_by(&self, version: &str) -> Result<(), StoreError> {
        self.trees()?
            .control
            .insert(b"timers/timed_by", version.as_bytes())?;
        Ok(())
    }

    /// When the service's first control sweep ran (RFC 3339), once recorded.
    pub fn first_control_sweep(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .trees()?
            .control
            .get(b"sweep/first")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn set_first_control_sweep(&self, at: &str) -> Result<(), StoreError> {
        self.trees()?
            .control
            .insert(b"sweep/first", at.as_bytes())?;
        Ok(())
    }

    /// Whether a digest's notice of (digest, recipient, date, slot) was sent; `mark` records it.
    pub fn digest_sent(&self, key: &str) -> Result<bool, StoreError> {
        let full = format!("digest/{key}");
        Ok(self.trees()?.control.contains_key(full.as_bytes())?)
    }

    pub fn mark_digest(&self, key: &str, what: &str) -> Result<(), StoreError> {
        let full = format!("digest/{key}");
        self.trees()?
            .control
            .insert(full.as_bytes(), what.as_bytes())?;
        Ok(())
    }

    /// Counts the pending timers from `timers_due` (at open).
    pub(super) fn count_pending_timers(due: &sled::Tree) -> u64 {
        due.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::rules::{StageEntry, StageSemantic};
    use crate::store::RECORD_VERSION;

    fn timer(deal: u64, entry: u64, rule: &str, due_ms: u64) -> TimerRecord {
        TimerRecord {
            v: RECORD_VERSION,
            deal_id: deal,
            entry_id: entry,
            rule: rule.into(),
            repetition: 0,
            due_ms,
            entry: StageEntry {
                id: entry,
                type_id: 2,
                stage_id: "C1:OFFER".into(),
                category_id: 1,
                semantic: StageSemantic::Process,
                created_time: DateTime::parse_from_rfc3339("2026-12-01T10:00:00+03:00")
                    .expect("time"),
            },
            state: TimerState::Pending,
            armed_at_ms: 1,
            updated_at_ms: 1,
            history: Vec::new(),
        }
    }

    #[test]
    fn due_timers_come_soonest_first_and_only_those_due() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        store
            .put_timers(&[
                timer(7, 70, "offer-sla", 3_000),
                timer(5, 50, "offer-sla", 1_000),
                timer(9, 90, "offer-sla", 9_000),
            ])
            .expect("armed");
        assert_eq!(store.timers_pending(), 3);
        assert_eq!(
            store.due_timers(3_000, 10).expect("due"),
            vec![(5, 1_000), (7, 3_000)]
        );
        assert_eq!(store.next_timer_due().expect("next"), Some(1_000));

        // Re-timing moves its due key; firing takes it off the due tree but keeps the record.
        let mut later = timer(5, 50, "offer-sla", 20_000);
        store.put_timers(&[later.clone()]).expect("re-timed");
        assert_eq!(store.due_timers(3_000, 10).expect("due"), vec![(7, 3_000)]);
        later.state = TimerState::Fired;
        store.put_timers(&[later]).expect("fired");
        assert_eq!(store.timers_pending(), 2);
        assert_eq!(store.timers_of(5).expect("of 5").len(), 1);
        drop(store);
        let store = Store::open(dir.path()).expect("reopened");
        assert_eq!(store.timers_pending(), 2, "counted again at open");
    }
}

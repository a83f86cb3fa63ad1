//! Which deals to work on next, in memory. The store's queue is the truth (it survives
//! restarts); the scheduler is an index over it that wakes the worker and keeps a deal out of two
//! rounds at once.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::now_ms;

/// How long a deal woken while it was being processed waits after its round before it runs
/// again: the events of a burst gather meanwhile.
pub const RERUN_DELAY_MS: u64 = 250;

#[derive(Clone, Default)]
pub struct Scheduler {
    inner: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<u64>,
    /// In `held`, `ready` or `delayed`: a deal is in at most one of them, once.
    waiting: HashSet<u64>,
    /// (first event's moment, deal): given back by a round while the portal was unreachable;
    /// handed out before `ready`, oldest first.
    held: BTreeSet<(u64, u64)>,
    /// (due in ms since the epoch, deal)
    delayed: BTreeSet<(u64, u64)>,
    /// Each deal of `delayed` and its due time, so that an earlier wake finds its entry there
    /// without a walk through all of them (tens of thousands while the portal is down).
    due: HashMap<u64, u64>,
    /// Being processed by a round: not handed out again until released.
    in_flight: HashSet<u64>,
    /// Woken while in flight: due again as soon as the round releases them. Without this, an
    /// event recorded after the round completed the deal's queue record but before it released
    /// the deal would sit in the store with nobody to schedule it.
    rerun: HashSet<u64>,
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain collections behind, still consistent
        // enough to go on with: recover the guard rather than poison every later call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deal has new work now. A deal being processed is marked to run again once its round
    /// releases it.
    pub fn wake(&self, deal_id: u64) {
        self.schedule_at(deal_id, 0);
    }

    /// The deal has work from `due_ms` on (a retry backoff).
    pub fn schedule_at(&self, deal_id: u64, due_ms: u64) {
        {
            let mut s = self.lock();
            if s.in_flight.contains(&deal_id) {
                if due_ms <= now_ms() {
                    s.rerun.insert(deal_id);
                }
                return;
            }
            if s.waiting.contains(&deal_id) {
                // Already waiting; an earlier due time wins.
                if let Some(&due) = s.due.get(&deal_id)
                    && due_ms < due
                {
                    s.delayed.remove(&(due, deal_id));
                    s.due.remove(&deal_id);
                    push(&mut s, deal_id, due_ms);
                }
                return;
            }
            s.waiting.insert(deal_id);
            push(&mut s, deal_id, due_ms);
        }
        self.notify.notify_one();
    }

    /// Takes up to `max` deals that are due, waiting for one if none is. Returns an empty list
    /// when `stop` is cancelled.
    pub async fn take(&self, max: usize, stop: &CancellationToken) -> Vec<u64> {
        // A round's store work runs on the runtime's threads in one stretch: before the next,
        // let the requests waiting there (the intake's) have their turn.
        tokio::task::yield_now().await;
        loop {
            let next_due = {
                let mut s = self.lock();
                let now = now_ms();
                while let Some(&(due, deal)) = s.delayed.first() {
                    if due > now {
                        break;
                    }
                    s.delayed.remove(&(due, deal));
                    s.due.remove(&deal);
                    s.ready.push_back(deal);
                }
                let mut taken = Vec::new();
                while taken.len() < max {
                    let Some(deal) = s
                        .held
                        .pop_first()
                        .map(|(_, deal)| deal)
                        .or_else(|| s.ready.pop_front())
                    else {
                        break;
                    };
                    s.waiting.remove(&deal);
                    s.in_flight.insert(deal);
                    taken.push(deal);
                }
                if !taken.is_empty() {
                    if !s.ready.is_empty() || !s.held.is_empty() {
                        // Let another round pick up the rest.
                        self.notify.notify_one();
                    }
                    return taken;
                }
                s.delayed.first().map(|&(due, _)| due.saturating_sub(now))
            };
            let sleep = Duration::from_millis(next_due.unwrap_or(3_600_000).max(1));
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.cancelled() => return Vec::new(),
            }
        }
    }

    /// Takes the deal out of the worker's reach, as a round does, if no round has it and it is
    /// not waiting for one (a backfill works on it; [`Scheduler::release`] gives it back).
    pub fn try_claim(&self, deal_id: u64) -> bool {
        let mut s = self.lock();
        if s.in_flight.contains(&deal_id) || s.waiting.contains(&deal_id) {
            return false;
        }
        s.in_flight.insert(deal_id);
        true
    }

    /// The round is done with the deal; a deal woken meanwhile is due again shortly
    /// ([`RERUN_DELAY_MS`]): a burst of events for one deal then costs a few reads, not one per
    /// round it overlaps.
    pub fn release(&self, deal_id: u64) {
        let again = {
            let mut s = self.lock();
            s.in_flight.remove(&deal_id);
            s.rerun.remove(&deal_id)
        };
        if again {
            self.schedule_at(deal_id, now_ms() + RERUN_DELAY_MS);
        }
    }

    /// Deals a round could take now or is working on: what the control sweep gives way to.
    pub fn busy(&self) -> usize {
        let s = self.lock();
        let now = now_ms();
        let due = s.delayed.range(..(now.saturating_add(1), 0)).count();
        s.ready.len() + s.held.len() + due + s.in_flight.len()
    }

    /// Deals waiting (ready or delayed).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Puts the store's queue into the scheduler, oldest work first: every listed deal not in a
    /// round is due at its `not_before_ms`, and those due now are handed out by `first_at_ms`
    /// (when their oldest event was taken), before any other deal already woken. For a restart,
    /// and after an outage, when the queue's order in memory no longer says what is oldest.
    /// Deals woken meanwhile and not listed keep their place after them.
    pub fn restore(&self, listed: &[(u64, u64, u64)]) {
        {
            let mut s = self.lock();
            let now = now_ms();
            let ids: HashSet<u64> = listed.iter().map(|&(deal, ..)| deal).collect();
            s.ready.retain(|deal| !ids.contains(deal));
            s.delayed.retain(|(_, deal)| !ids.contains(deal));
            s.due.retain(|deal, _| !ids.contains(deal));
            s.held.retain(|(_, deal)| !ids.contains(deal));
            for &(deal_id, first_at_ms, not_before_ms) in listed {
                if s.in_flight.contains(&deal_id) {
                    continue;
                }
                s.waiting.insert(deal_id);
                if not_before_ms <= now {
                    s.held.insert((first_at_ms, deal_id));
                } else {
                    s.delayed.insert((not_before_ms, deal_id));
                    s.due.insert(deal_id, not_before_ms);
                }
            }
        }
        self.notify.notify_one();
    }

    /// Puts deals rounds gave back unfinished (the portal went away) at the head of the line,
    /// oldest first by `first_at_ms` (when their oldest event was taken), before every deal
    /// woken since: they were taken first, so they are the oldest work.
    pub fn put_back_first(&self, deals: &[(u64, u64)]) {
        {
            let mut s = self.lock();
            for &(deal_id, first_at_ms) in deals {
                if s.in_flight.contains(&deal_id) || !s.waiting.insert(deal_id) {
                    continue;
                }
                s.held.insert((first_at_ms, deal_id));
            }
        }
        self.notify.notify_one();
    }
}

fn push(s: &mut State, deal_id: u64, due_ms: u64) {
    if due_ms <= now_ms() {
        s.ready.push_back(deal_id);
    } else {
        s.delayed.insert((due_ms, deal_id));
        s.due.insert(deal_id, due_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deal_in_flight_is_not_handed_out_twice() {
        let s = Scheduler::new();
        let stop = CancellationToken::new();
        s.wake(1);
        s.wake(1);
        s.wake(2);
        assert_eq!(s.take(10, &stop).await, vec![1, 2]);
        s.wake(1);
        assert_eq!(s.waiting(), 0, "in flight: not handed out twice");
        s.release(1);
        assert_eq!(
            s.take(10, &stop).await,
            vec![1],
            "woken while in flight: due on release"
        );
        s.release(1);
        s.release(2);
        assert_eq!(s.waiting(), 0);
    }

    #[tokio::test]
    async fn a_restored_queue_is_handed_out_oldest_first_before_deals_woken_since() {
        let s = Scheduler::new();
        let stop = CancellationToken::new();
        s.wake(9);
        s.wake(3);
        let later = now_ms() + 60_000;
        // (deal, first event taken at, not before)
        s.restore(&[(3, 300, 0), (1, 100, 0), (2, 200, 0), (4, 50, later)]);
        assert_eq!(
            s.take(10, &stop).await,
            vec![1, 2, 3, 9],
            "by age, then the rest"
        );
        assert_eq!(s.waiting(), 1, "deal 4 waits for its moment");
        s.schedule_at(4, 0);
        assert_eq!(
            s.take(10, &stop).await,
            vec![4],
            "an earlier wake still finds it"
        );
    }

    #[tokio::test]
    async fn delayed_deals_come_due() {
        let s = Scheduler::new();
        let stop = CancellationToken::new();
        s.schedule_at(5, now_ms() + 30);
        let started = std::time::Instant::now();
        assert_eq!(s.take(10, &stop).await, vec![5]);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn an_earlier_wake_brings_a_delayed_deal_forward_once() {
        let s = Scheduler::new();
        let stop = CancellationToken::new();
        s.schedule_at(7, now_ms() + 60_000);
        s.schedule_at(8, now_ms() + 60_000);
        s.schedule_at(7, now_ms() + 120_000);
        assert_eq!(s.waiting(), 2, "a later due time changes nothing");
        s.wake(7);
        assert_eq!(s.take(10, &stop).await, vec![7], "woken: due now, once");
        let state = s.lock();
        assert_eq!(state.delayed.len(), 1, "only deal 8 is still delayed");
        assert_eq!(state.due.len(), 1);
        assert_eq!(
            state.due.get(&8).copied(),
            state.delayed.first().map(|e| e.0)
        );
    }

    #[tokio::test]
    async fn take_returns_empty_when_stopped() {
        let s = Scheduler::new();
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(s.take(10, &stop).await.is_empty());
    }
}

//! One leaky bucket per portal, modelled like Bitrix24's own request counter.
//!
//! Bitrix24 counts requests per portal (and source IP): the counter rises by one per request,
//! drains by `Y` per second, and a request that finds it above `X` is refused with 503
//! `QUERY_LIMIT_EXCEEDED`. We keep a copy of that counter on our side and let a request go only
//! while `level + 1` stays within a capacity a little under `X`, so that in the normal case the
//! portal never has to refuse us.
//!
//! The portal may be stricter than configured (another app on the same IP, a smaller plan). So
//! every 503 is a measurement: the first refusal of an *epoch* lowers the capacity towards what the
//! portal actually accepted recently (at least halving it) and halves the drain rate; refusals of
//! requests sent before that adaptation (same epoch, already in flight) only refill the bucket,
//! so one burst of refusals is not counted many times. Sustained acceptance then raises both back
//! additively, never above the configured values.
//!
//! A fresh client does not yet know how strict the portal is, so it also limits the requests
//! *in flight* with a window that starts small and grows by one per accepted answer (TCP's slow
//! start): a portal that is stricter than configured then refuses a handful of requests, not a
//! whole burst of them, before the bucket has adapted. A refusal halves the window too.
//!
//! [`BucketCore`] is pure (it takes `now`), so the arithmetic is tested without sleeping;
//! [`Bucket`] wraps it with a fair (FIFO) async queue.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The lowest drain rate the adaptation goes down to, requests per second.
const MIN_RATE: f64 = 0.2;
/// How many accepted requests in a row earn one step of recovery.
const RECOVERY_STREAK: u32 = 50;
/// Requests in flight allowed before the portal has answered any.
const INITIAL_WINDOW: f64 = 8.0;

/// Why a token cannot be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The bucket is full: ask again after this long.
    For(Duration),
    /// Too many requests are in flight: ask again when one is answered.
    Answer,
}

/// A capacity a little under `burst`: Bitrix24 refuses once its counter exceeds the burst, and
/// our copy of the counter lags the portal's by the network's jitter.
fn keep_under(burst: f64) -> f64 {
    (burst - (burst / 10.0).floor().max(1.0)).max(1.0)
}

/// Proof of a taken token; tells a later refusal which epoch the request belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    epoch: u64,
}

/// The counter model, without clocks or locks.
#[derive(Debug, Clone)]
pub(crate) struct BucketCore {
    /// Capacity derived from the configured burst: kept under it by a margin.
    configured_capacity: f64,
    configured_rate: f64,
    /// Capacity and rate in force; lowered by refusals, raised by acceptance.
    capacity: f64,
    rate: f64,
    /// Our estimate of the portal's counter: every request we sent, drained at `rate`.
    level: f64,
    /// Only the requests the portal accepted, drained the same way: what a refusal measures.
    accepted: f64,
    last: Instant,
    epoch: u64,
    streak: u32,
    /// Requests sent and not yet answered, and how many may be.
    in_flight: u32,
    window: f64,
}

impl BucketCore {
    /// A bucket for a portal with this burst (`X`) and drain rate (`Y`), empty at `now`.
    pub(crate) fn new(burst: u32, requests_per_second: f64, now: Instant) -> Self {
        let capacity = keep_under(f64::from(burst.max(1)));
        let rate = requests_per_second.max(0.001);
        Self {
            configured_capacity: capacity,
            configured_rate: rate,
            capacity,
            rate,
            level: 0.0,
            accepted: 0.0,
            last: now,
            epoch: 0,
            streak: 0,
            in_flight: 0,
            window: INITIAL_WINDOW.min(capacity),
        }
    }

    fn drain(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.level = (self.level - elapsed * self.rate).max(0.0);
        self.accepted = (self.accepted - elapsed * self.rate).max(0.0);
        self.last = self.last.max(now);
    }

    /// Takes a token at `now`, or says how long to wait before asking again.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> Result<Ticket, Wait> {
        self.drain(now);
        if f64::from(self.in_flight) + 1.0 > self.window.floor().max(1.0) {
            return Err(Wait::Answer);
        }
        if self.level + 1.0 <= self.capacity + 1e-9 {
            self.level += 1.0;
            self.in_flight += 1;
            Ok(Ticket { epoch: self.epoch })
        } else {
            let seconds = (self.level + 1.0 - self.capacity) / self.rate;
            Err(Wait::For(Duration::from_secs_f64(seconds.max(0.001))))
        }
    }

    /// Whether a token could be taken at `now`, without taking it: what the outbox waits for
    /// before it takes the calls queued for the next request.
    pub(crate) fn ready(&mut self, now: Instant) -> Result<(), Wait> {
        self.drain(now);
        if f64::from(self.in_flight) + 1.0 > self.window.floor().max(1.0) {
            return Err(Wait::Answer);
        }
        if self.level + 1.0 <= self.capacity + 1e-9 {
            Ok(())
        } else {
            let seconds = (self.level + 1.0 - self.capacity) / self.rate;
            Err(Wait::For(Duration::from_secs_f64(seconds.max(0.001))))
        }
    }

    /// The request got no answer (network failure, or the caller gave up on it).
    pub(crate) fn on_unanswered(&mut self, _ticket: Ticket) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The portal answered the request (anything but 503 `QUERY_LIMIT_EXCEEDED`).
    pub(crate) fn on_accepted(&mut self, _ticket: Ticket, now: Instant) {
        self.drain(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.window = (self.window + 1.0).min(self.configured_capacity);
        self.accepted += 1.0;
        self.streak += 1;
        if self.streak >= RECOVERY_STREAK {
            self.streak = 0;
            self.capacity = (self.capacity + 1.0).min(self.configured_capacity);
            self.rate = (self.rate + self.configured_rate * 0.05).min(self.configured_rate);
        }
    }

    /// The portal refused the request with 503 `QUERY_LIMIT_EXCEEDED`. Returns true when this
    /// refusal adapted the bucket (the first one of its epoch).
    pub(crate) fn on_rejected(&mut self, ticket: Ticket, now: Instant) -> bool {
        self.drain(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        self.streak = 0;
        let adapt = ticket.epoch == self.epoch;
        if adapt {
            let measured = keep_under(self.accepted.floor());
            self.capacity = (self.capacity / 2.0).floor().min(measured).max(1.0);
            self.window = (self.window / 2.0).floor().max(1.0);
            self.rate = (self.rate / 2.0).max(MIN_RATE.min(self.configured_rate));
            self.epoch += 1;
        }
        // The portal's counter is full: so is ours.
        self.level = self.level.max(self.capacity);
        adapt
    }

    /// The level at `now`.
    pub(crate) fn level(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.level - elapsed * self.rate).max(0.0)
    }

    pub(crate) fn capacity(&self) -> f64 {
        self.capacity
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }
}

/// The shared bucket: a fair queue in front of [`BucketCore`].
#[derive(Debug)]
pub(crate) struct Bucket {
    core: Mutex<BucketCore>,
    /// Waiters line up here (tokio's mutex is FIFO), so tokens go out in arrival order and a
    /// late caller cannot overtake one that has been waiting.
    queue: tokio::sync::Mutex<()>,
    /// Wakes the head of the queue when a request in flight is answered.
    answered: tokio::sync::Notify,
    /// Wakes everyone who only watches for answers (the outbox waiting for its turn), without
    /// taking the wake-up meant for the head of the queue.
    answered_any: tokio::sync::Notify,
}

impl Bucket {
    pub(crate) fn new(burst: u32, requests_per_second: f64) -> Self {
        Self {
            core: Mutex::new(BucketCore::new(burst, requests_per_second, Instant::now())),
            queue: tokio::sync::Mutex::new(()),
            answered: tokio::sync::Notify::new(),
            answered_any: tokio::sync::Notify::new(),
        }
    }

    /// Runs `f` on the core under its lock.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut BucketCore) -> T) -> T {
        let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut core)
    }

    /// Waits until a request in flight is answered, at most `limit`.
    pub(crate) async fn answered_or(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.answered_any.notified()).await;
    }

    fn tell_answered(&self) {
        self.answered.notify_one();
        self.answered_any.notify_waiters();
    }

    /// Waits for a token, in turn. Report the answer through the permit; dropping it unused
    /// counts as "no answer".
    pub(crate) async fn acquire(&self) -> Permit<'_> {
        let _turn = self.queue.lock().await;
        loop {
            match self.with(|core| core.try_acquire(Instant::now())) {
                Ok(ticket) => {
                    return Permit {
                        bucket: self,
                        ticket,
                        open: true,
                    };
                }
                Err(Wait::For(wait)) => tokio::time::sleep(wait).await,
                // The timeout only guards against a lost wake-up; answers normally wake us.
                Err(Wait::Answer) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.answered.notified())
                        .await;
                }
            }
        }
    }
}

/// A token taken from the bucket for one HTTP request.
pub(crate) struct Permit<'a> {
    bucket: &'a Bucket,
    ticket: Ticket,
    open: bool,
}

impl Permit<'_> {
    /// The portal answered, and not with 503 `QUERY_LIMIT_EXCEEDED`.
    pub(crate) fn accepted(mut self) {
        self.open = false;
        self.bucket
            .with(|core| core.on_accepted(self.ticket, Instant::now()));
        self.bucket.tell_answered();
    }

    /// The portal refused with 503 `QUERY_LIMIT_EXCEEDED`; true when the bucket adapted.
    pub(crate) fn rejected(mut self) -> bool {
        self.open = false;
        let adapted = self
            .bucket
            .with(|core| core.on_rejected(self.ticket, Instant::now()));
        self.bucket.tell_answered();
        adapted
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.open {
            self.bucket.with(|core| core.on_unanswered(self.ticket));
            self.bucket.tell_answered();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Takes a token and has it answered at once.
    fn take(bucket: &mut BucketCore, now: Instant) -> Result<(), Wait> {
        let ticket = bucket.try_acquire(now)?;
        bucket.on_accepted(ticket, now);
        Ok(())
    }

    #[test]
    fn capacity_is_kept_under_the_burst() {
        let now = Instant::now();
        assert_eq!(BucketCore::new(50, 2.0, now).capacity(), 45.0);
        assert_eq!(BucketCore::new(250, 5.0, now).capacity(), 225.0);
        assert_eq!(BucketCore::new(5, 1.0, now).capacity(), 4.0);
        assert_eq!(BucketCore::new(1, 1.0, now).capacity(), 1.0);
    }

    #[test]
    fn a_full_bucket_makes_the_next_request_wait_for_the_drain() {
        let t0 = Instant::now();
        let mut bucket = BucketCore::new(50, 2.0, t0);
        for _ in 0..45 {
            assert!(take(&mut bucket, t0).is_ok());
        }
        let Err(Wait::For(wait)) = bucket.try_acquire(t0) else {
            panic!("the bucket should be full");
        };
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert!(take(&mut bucket, t0 + secs(0.4)).is_err());
        assert!(take(&mut bucket, t0 + secs(0.5)).is_ok());
        // Two more per second after that, no more.
        assert!(take(&mut bucket, t0 + secs(1.0)).is_ok());
        assert!(take(&mut bucket, t0 + secs(1.0)).is_err());
        assert!((bucket.level(t0 + secs(10.0)) - 27.0).abs() < 1e-6);
        assert_eq!(bucket.level(t0 + secs(100.0)), 0.0);
    }

    #[test]
    fn requests_in_flight_are_limited_by_a_window_that_grows_with_answers() {
        let t0 = Instant::now();
        let mut bucket = BucketCore::new(50, 2.0, t0);
        let tickets: Vec<_> = (0..8)
            .map(|_| bucket.try_acquire(t0).expect("token"))
            .collect();
        assert_eq!(bucket.try_acquire(t0), Err(Wait::Answer));
        bucket.on_accepted(tickets[0], t0);
        // One answer frees a slot and widens the window by one: two more may go.
        assert!(bucket.try_acquire(t0).is_ok());
        assert!(bucket.try_acquire(t0).is_ok());
        assert_eq!(bucket.try_acquire(t0), Err(Wait::Answer));
        bucket.on_unanswered(tickets[1]);
        assert!(bucket.try_acquire(t0).is_ok());
    }

    #[test]
    fn a_refusal_fills_the_bucket_and_lowers_capacity_and_rate() {
        let t0 = Instant::now();
        let mut bucket = BucketCore::new(50, 2.0, t0);
        // The portal is really 1/s burst 5: five accepted, the sixth refused.
        let tickets: Vec<_> = (0..6)
            .map(|_| bucket.try_acquire(t0).expect("token"))
            .collect();
        for ticket in &tickets[..5] {
            bucket.on_accepted(*ticket, t0);
        }
        assert!(bucket.on_rejected(tickets[5], t0));
        assert_eq!(bucket.capacity(), 4.0, "five accepted, kept under");
        assert_eq!(bucket.rate(), 1.0);
        assert!((bucket.level(t0) - 6.0).abs() < 1e-6);
        let Err(Wait::For(wait)) = bucket.try_acquire(t0) else {
            panic!("full after a refusal");
        };
        assert!((wait.as_secs_f64() - 3.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn refusals_already_in_flight_count_once() {
        let t0 = Instant::now();
        let mut bucket = BucketCore::new(50, 2.0, t0);
        let tickets: Vec<_> = (0..8)
            .map(|_| bucket.try_acquire(t0).expect("token"))
            .collect();
        for ticket in &tickets[..5] {
            bucket.on_accepted(*ticket, t0);
        }
        assert!(bucket.on_rejected(tickets[5], t0));
        for ticket in &tickets[6..] {
            assert!(!bucket.on_rejected(*ticket, t0));
        }
        assert_eq!((bucket.capacity(), bucket.rate()), (4.0, 1.0));
        // A request sent after the adaptation that is refused again adapts again; nothing was
        // accepted lately, so the capacity drops to the floor.
        let late = bucket.try_acquire(t0 + secs(20.0)).expect("token");
        assert!(bucket.on_rejected(late, t0 + secs(20.0)));
        assert_eq!((bucket.capacity(), bucket.rate()), (1.0, 0.5));
    }

    #[test]
    fn capacity_and_rate_have_floors() {
        let t0 = Instant::now();
        let mut bucket = BucketCore::new(50, 2.0, t0);
        for step in 0..20 {
            let now = t0 + secs(f64::from(step) * 100.0);
            let ticket = bucket.try_acquire(now).expect("token");
            bucket.on_rejected(ticket, now);
        }
        assert_eq!((bucket.capacity(), bucket.rate()), (1.0, MIN_RATE));
    }

    #[test]
    fn acceptance_recovers_additively_up_to_the_configured_values() {
        let t0 = Instant::now();
        let mut bucket = BucketCore::new(50, 2.0, t0);
        let ticket = bucket.try_acquire(t0).expect("token");
        bucket.on_rejected(ticket, t0);
        assert_eq!((bucket.capacity(), bucket.rate()), (1.0, 1.0));
        let mut now = t0;
        for _ in 0..RECOVERY_STREAK {
            now += secs(10.0);
            take(&mut bucket, now).expect("token");
        }
        assert_eq!(bucket.capacity(), 2.0);
        assert!((bucket.rate() - 1.1).abs() < 1e-9);
        for _ in 0..50_000 {
            now += secs(10.0);
            take(&mut bucket, now).expect("token");
        }
        assert_eq!((bucket.capacity(), bucket.rate()), (45.0, 2.0));
    }

    #[tokio::test]
    async fn concurrent_waiters_are_served_in_turn_without_over_issuing() {
        // Capacity 4 at once, then one every 50 ms.
        let bucket = std::sync::Arc::new(Bucket::new(5, 20.0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let bucket = bucket.clone();
            tasks.push(tokio::spawn(async move {
                let permit = bucket.acquire().await;
                let at = Instant::now();
                permit.accepted();
                at
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(
                task.await
                    .expect("task")
                    .duration_since(start)
                    .as_secs_f64(),
            );
        }
        times.sort_by(f64::total_cmp);
        assert!(times[3] < 0.03, "{times:?}");
        for (index, time) in times.iter().enumerate().skip(4) {
            let earliest = (index - 3) as f64 * 0.05;
            assert!(
                *time >= earliest - 0.002 && *time < earliest + 0.04,
                "{times:?}"
            );
        }
    }
}

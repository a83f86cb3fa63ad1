//! The clock of the time-driven rules: what "now" is for timers, control sweeps and digests.
//!
//! In production it is the system clock. Tests, the demo and the sandbox share one [`Clock`]
//! between the service and the simulated portal and move it on purpose: [`Clock::advance`]
//! jumps (a test of a 3-workday SLA takes no 3 days), [`Clock::fast`] runs it `speed` times
//! faster than real time (the demo shows an SLA firing within seconds). Whoever waits for a
//! moment of this clock waits with [`Clock::sleep_until`], which wakes on a jump too.
//!
//! Clones share the same time. The store's own bookkeeping (queue timestamps, backoffs) stays
//! on [`crate::store::now_ms`]: only what the rules mean by time follows this clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::watch;

/// A clock; clones share it.
#[derive(Clone)]
pub struct Clock {
    shared: Arc<Shared>,
}

struct Shared {
    /// Real time at the last change of speed, and the clock's time (ms) at that moment.
    base: Mutex<(Instant, i64)>,
    /// How many clock milliseconds pass per real millisecond, times 1000 (1000: real time).
    speed_milli: AtomicI64,
    /// Jumps and speed changes, for sleepers to recompute their wait.
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("now", &self.now())
            .field("speed", &self.speed())
            .finish()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::starting_at_ms(crate::store::now_ms() as i64, 1.0)
    }

    /// A clock that shows `start` now and then runs at real speed (tests move it on with
    /// [`Clock::advance`]).
    pub fn starting_at(start: DateTime<Utc>) -> Clock {
        Clock::starting_at_ms(start.timestamp_millis(), 1.0)
    }

    /// The system time, running `speed` times faster from now on (the demo, the sandbox).
    pub fn fast(speed: f64) -> Clock {
        Clock::starting_at_ms(crate::store::now_ms() as i64, speed)
    }

    fn starting_at_ms(start_ms: i64, speed: f64) -> Clock {
        let (changed, _) = watch::channel(0);
        Clock {
            shared: Arc::new(Shared {
                base: Mutex::new((Instant::now(), start_ms)),
                speed_milli: AtomicI64::new(speed_milli(speed)),
                changed,
            }),
        }
    }

    /// Milliseconds since the Unix epoch, by this clock.
    pub fn now_ms(&self) -> i64 {
        let (at, base) = *self
            .shared
            .base
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let real = at.elapsed().as_millis() as i64;
        base + real * self.shared.speed_milli.load(Ordering::Relaxed) / 1000
    }

    /// Now, by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.now_ms())
            .single()
            .unwrap_or_else(Utc::now)
    }

    /// How many clock seconds pass in a real second.
    pub fn speed(&self) -> f64 {
        self.shared.speed_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Moves the clock on by `by` at once; sleepers wake and look again.
    pub fn advance(&self, by: Duration) {
        {
            let mut base = self
                .shared
                .base
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            base.1 += by.as_millis() as i64;
        }
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// Runs `speed` times faster than real time from now on.
    pub fn set_speed(&self, speed: f64) {
        {
            let mut base = self
                .shared
                .base
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = base.1
                + base.0.elapsed().as_millis() as i64
                    * self.shared.speed_milli.load(Ordering::Relaxed)
                    / 1000;
            *base = (Instant::now(), now);
            self.shared
                .speed_milli
                .store(speed_milli(speed), Ordering::Relaxed);
        }
        self.shared.changed.send_modify(|n| *n += 1);
    }

    /// The real time it takes this clock to get from now to `at_ms` (zero when it is past).
    pub fn real_wait(&self, at_ms: i64) -> Duration {
        let ahead = at_ms.saturating_sub(self.now_ms()).max(0) as u64;
        let speed = self.shared.speed_milli.load(Ordering::Relaxed).max(1) as u64;
        Duration::from_millis(ahead.saturating_mul(1000) / speed)
    }

    /// Waits until this clock shows `at_ms`, or at most `at_most` of real time, whichever
    /// comes first; a jump or a change of speed ends the wait early too (the caller looks
    /// again). Returns whether the moment has come.
    pub async fn sleep_until(&self, at_ms: i64, at_most: Duration) -> bool {
        let mut changes = self.shared.changed.subscribe();
        let wait = self.real_wait(at_ms).min(at_most);
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changes.changed() => {}
            }
        }
        self.now_ms() >= at_ms
    }
}

fn speed_milli(speed: f64) -> i64 {
    if speed.is_finite() && speed > 0.0 {
        (speed * 1000.0).round().max(1.0) as i64
    } else {
        1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advanced_clock_shows_the_jump_and_clones_share_it() {
        let start = Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 0).unwrap();
        let clock = Clock::starting_at(start);
        let other = clock.clone();
        clock.advance(Duration::from_secs(3 * 86_400));
        let moved = other.now() - start;
        assert!(moved >= chrono::Duration::days(3), "{moved}");
        assert!(moved < chrono::Duration::days(3) + chrono::Duration::seconds(5));
    }

    #[test]
    fn a_fast_clock_runs_ahead_of_real_time() {
        let clock = Clock::fast(3600.0);
        let real = crate::store::now_ms() as i64;
        // Why it sleeps: real time must pass for a clock that runs on real time.
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            clock.now_ms() - real >= 60_000,
            "20 ms at 3600× is over a minute"
        );
        assert_eq!(
            clock.real_wait(clock.now_ms() + 3_600_000),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_jumps_past_its_moment() {
        let clock = Clock::starting_at(Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 0).unwrap());
        let due = clock.now_ms() + 86_400_000;
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(due, Duration::from_secs(60)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(86_400));
        let came = tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke on the jump")
            .unwrap();
        assert!(came);
    }
}

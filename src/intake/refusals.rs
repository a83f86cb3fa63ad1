//! Refused deliveries are logged at most once a minute per kind, with how many were refused
//! since the previous line: anyone who can reach the endpoint can send wrong tokens or garbage,
//! and one line each would let them flood the log. `b24robot_events_received_total` still counts
//! every one.
//!
//! The clock is the caller's: [`Throttle::note`] takes the moment, so the window is tested with
//! made-up instants instead of a minute's sleep.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one line per kind of refusal in this long.
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

/// When to write a line about one kind of refusal.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    /// When the last line was written; `None` before the first refusal.
    last_line: Option<Instant>,
    /// Refusals since that line, the one being noted included.
    since: u64,
}

impl Throttle {
    /// Notes one refusal at `now`. Returns how many refusals the line to write now reports
    /// (this one and those left unlogged since the previous line), or `None`: no line now.
    pub fn note(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.since += 1;
        match state.last_line {
            Some(at) if now.saturating_duration_since(at) < LOG_WINDOW => None,
            _ => {
                state.last_line = Some(now);
                Some(std::mem::take(&mut state.since))
            }
        }
    }
}

/// The intake's throttled log lines, one per kind of refusal.
#[derive(Debug, Default)]
pub struct Refusals {
    /// 401: wrong or missing `auth[application_token]`.
    pub unauthorized: Throttle,
    /// 400: not a delivery the service understands.
    pub malformed: Throttle,
    /// 503: the store could not record the event.
    pub unrecorded: Throttle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_minute_reports_the_refusals_since_the_previous_one() {
        let throttle = Throttle::default();
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(
            throttle.note(at(0)),
            Some(1),
            "the first refusal is logged at once"
        );
        for s in 1..60 {
            assert_eq!(throttle.note(at(s)), None, "within the minute: no line");
        }
        // A minute after the last line: one line for the 59 unlogged and this one.
        assert_eq!(throttle.note(at(60)), Some(60));
        assert_eq!(throttle.note(at(61)), None);
        // After a quiet spell the next refusal is logged at once, with the one left over.
        assert_eq!(throttle.note(at(600)), Some(2));
    }

    #[test]
    fn kinds_are_throttled_apart() {
        let refusals = Refusals::default();
        let now = Instant::now();
        assert_eq!(refusals.unauthorized.note(now), Some(1));
        assert_eq!(refusals.malformed.note(now), Some(1));
        assert_eq!(refusals.unauthorized.note(now), None);
    }
}

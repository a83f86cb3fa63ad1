//! Stopping on purpose: the deadlines the stop keeps, the signal that starts it, and the
//! watchdog that ends the process at the last deadline whatever still holds it up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// The stop is driven by deadlines on one clock that starts with the signal, so that a slow
/// phase cannot push the next past the spec's promise (SIGTERM to exit within 10 s).
pub mod deadline {
    use std::time::Duration;

    /// Requests in flight get this long to finish once intake is closed; slower ones are dropped.
    pub const HTTP_GRACE: Duration = Duration::from_secs(3);
    /// Rounds in flight, and their REST calls, are abandoned at this point: their intents are
    /// durable, and the next start looks up what such a call may have made before it makes it.
    pub const WORK: Duration = Duration::from_secs(8);
    /// The last flush of the store must be over by then; past it the stop is reported as failed
    /// (every acknowledged event was flushed before its 200 anyway).
    pub const FLUSH: Duration = Duration::from_secs(9);
    /// `serve` exits at this point whatever is still running: a store call that never returns
    /// (sled retrying a failed disk), a destructor, a blocking task (see [`super::Watchdog`]).
    pub const EXIT: Duration = Duration::from_millis(9_500);
}

/// Ends the process at a deadline, whatever holds it up. Armed by `serve` when the stop begins;
/// the code it exits with is the one [`Watchdog::set_outcome`] gave (the stop's own result), or
/// 1 when the stop had not finished.
#[derive(Clone)]
pub struct Watchdog {
    outcome: Arc<AtomicU8>,
}

/// [`Watchdog`]'s outcome before the stop has one.
const NO_OUTCOME: u8 = u8::MAX;

impl Watchdog {
    pub fn new() -> Watchdog {
        Watchdog {
            outcome: Arc::new(AtomicU8::new(NO_OUTCOME)),
        }
    }

    /// The exit code the stop came to; the watchdog uses it if the process is still held up.
    pub fn set_outcome(&self, code: u8) {
        self.outcome
            .store(code.min(NO_OUTCOME - 1), Ordering::SeqCst);
    }

    /// Exits the process at `at` (see [`Watchdog::arm_with`]).
    pub fn arm(&self, at: std::time::Instant) {
        self.arm_with(at, |code| std::process::exit(i32::from(code)));
    }

    /// Calls `expire` with the exit code at `at`, on a thread of its own: a runtime whose threads
    /// are all blocked cannot stop it.
    pub fn arm_with(&self, at: std::time::Instant, expire: impl FnOnce(u8) + Send + 'static) {
        let outcome = self.outcome.clone();
        let spawned = std::thread::Builder::new()
            .name("b24-robot-stop".into())
            .spawn(move || {
                std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
                let code = match outcome.load(Ordering::SeqCst) {
                    NO_OUTCOME => 1,
                    code => code,
                };
                if code == 0 {
                    tracing::warn!("stopped, but the process was still held up at the deadline: exiting now");
                } else {
                    tracing::error!(
                        "the stop did not finish within its deadline: exiting now (every acknowledged event is on disk; the next start finishes the work)"
                    );
                }
                expire(code);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the shutdown watchdog");
        }
    }
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog::new()
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::Watchdog;

    #[test]
    fn the_watchdog_fires_at_its_deadline_with_the_stop_outcome_or_1() {
        let (fired, expired) = mpsc::channel();
        let unfinished = Watchdog::new();
        let started = Instant::now();
        let sender = fired.clone();
        unfinished.arm_with(started + Duration::from_millis(50), move |code| {
            let _ = sender.send(("unfinished", code, started.elapsed()));
        });
        let finished = Watchdog::new();
        finished.set_outcome(0);
        finished.arm_with(started + Duration::from_millis(80), move |code| {
            let _ = fired.send(("finished", code, started.elapsed()));
        });

        // Real time: the watchdog is a plain thread that sleeps until an `Instant`.
        let first = expired.recv_timeout(Duration::from_secs(5)).expect("fired");
        let second = expired.recv_timeout(Duration::from_secs(5)).expect("fired");
        assert_eq!((first.0, first.1), ("unfinished", 1));
        assert!(first.2 >= Duration::from_millis(50), "{:?}", first.2);
        assert_eq!((second.0, second.1), ("finished", 0));
        assert!(second.2 >= Duration::from_millis(80), "{:?}", second.2);
    }
}

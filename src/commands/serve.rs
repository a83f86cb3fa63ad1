//! `b24-robot serve`: the service itself, until SIGTERM or Ctrl-C.
//!
//! Broken config or rules at start: every problem printed, exit 1, nothing started (safe: the
//! sweep catches up on the next start). From the signal on, a watchdog ends the process at
//! [`deadline::EXIT`] whatever still holds it up.

use std::path::PathBuf;

use super::{CommandError, CommandResult, load_rules, load_settings};
use crate::startup::{Application, Watchdog, deadline, shutdown_signal};
use crate::telemetry;

/// `B24ROBOT_CLOCK_SPEED`: the time-driven rules' clock runs that many times faster than real
/// time, from the start on (a 3-day SLA fires after 72 minutes at 60). For trials and tests of a
/// whole service in a child process: never in production, and said loudly at start.
const CLOCK_SPEED: &str = "B24ROBOT_CLOCK_SPEED";

fn trial_clock() -> Result<crate::clock::Clock, CommandError> {
    let Ok(text) = std::env::var(CLOCK_SPEED) else {
        return Ok(crate::clock::Clock::system());
    };
    match text.trim().parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed >= 1.0 => {
            if speed > 1.0 {
                tracing::warn!(
                    speed,
                    "{CLOCK_SPEED} is set: timers, SLAs and digests run {speed} times faster than real time (for trials only)"
                );
            }
            Ok(crate::clock::Clock::fast(speed))
        }
        _ => Err(CommandError::Usage(format!(
            "{CLOCK_SPEED}={text}: must be a number of at least 1 (how many times faster than real time the time-driven rules' clock runs)"
        ))),
    }
}

pub async fn run(config: Option<PathBuf>, watchdog: Watchdog) -> CommandResult {
    let settings = load_settings(config)?;
    telemetry::init(settings.log.format, &settings.log.level);
    let rules = load_rules(&settings).map_err(|_| {
        CommandError::Failed(
            "the rules do not load; nothing started (fix them, then start again: the sweep catches up)"
                .into(),
        )
    })?;
    tracing::info!(
        rules = rules.len(),
        version = rules.version(),
        "rules loaded"
    );
    let app = Application::build(settings, rules)
        .await
        .map_err(|error| CommandError::Failed(error.to_string()))?
        .with_rule_reload()
        .with_clock(trial_clock()?);
    let signal = {
        let watchdog = watchdog.clone();
        async move {
            shutdown_signal().await;
            watchdog.arm(std::time::Instant::now() + deadline::EXIT);
        }
    };
    let stopped = app.run_until_stopped(signal).await;
    watchdog.set_outcome(u8::from(stopped.is_err()));
    stopped.map_err(|error| CommandError::Failed(error.to_string()))
}

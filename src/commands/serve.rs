//! `b24-robot serve`: the service itself, until SIGTERM or Ctrl-C.
//!
//! Broken config or rules at start: every problem printed, exit 1, nothing started (safe: the
//! sweep catches up on the next start). From the signal on, a watchdog ends the process at
//! [`deadline::EXIT`] whatever still holds it up.

use std::path::PathBuf;

use super::{CommandError, CommandResult, load_rules, load_settings};
use crate::startup::{Application, Watchdog, deadline, shutdown_signal};
use crate::telemetry;

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
        .with_rule_reload();
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

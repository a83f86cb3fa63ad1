//! Logging: a tracing subscriber writing human-readable or JSON lines to stderr, in colour only
//! when stderr is a terminal (never into a log file or a journal; `NO_COLOR` turns it off too).
//!
//! Every line about a deal carries `deal_id` (and `rule`, `event_id`, `entry_id` where they
//! apply) as structured fields. Secrets are never logged: the webhook URL appears nowhere, and the
//! `auth[...]` block of an event is never printed.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::configuration::LogFormat;

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    // A second init (tests, the demo inside a test) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

//! Logging: a tracing subscriber writing human-readable or JSON lines to stderr, in colour only
//! when stderr is a terminal (never into a log file or a journal; `NO_COLOR` turns it off too).
//!
//! Every line about a deal carries `deal_id` (and `rule`, `event_id`, `entry_id` where they
//! apply) as structured fields. Secrets are never logged: the webhook URL appears nowhere, and the
//! `auth[...]` block of an event is never printed.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::configuration::LogFormat;

/// A log filter (`info`, `b24_robot=debug,warn`) from text, or why not. Only printable ASCII
/// is taken: tracing-subscriber's parser panics on some other text (a vertical tab before a
/// non-ASCII letter), and a config value or `RUST_LOG` must never crash a command.
pub fn filter(text: &str) -> Result<EnvFilter, String> {
    let text = text.trim();
    if let Some(c) = text.chars().find(|c| !c.is_ascii_graphic() && *c != ' ') {
        return Err(format!(
            "{c:?} cannot be in a log filter (write e.g. \"info\" or \"b24_robot=debug,warn\")"
        ));
    }
    std::panic::catch_unwind(|| EnvFilter::try_new(text))
        .map_err(|_| "not a log filter".to_string())?
        .map_err(|e| e.to_string())
}

/// Installs the global subscriber. `RUST_LOG`, when set and valid, wins over `log.level`.
pub fn init(format: LogFormat, level: &str) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|text| match filter(&text) {
            Ok(filter) => Some(filter),
            Err(error) => {
                eprintln!("warning: RUST_LOG ignored: {error}");
                None
            }
        });
    let filter = from_env
        .or_else(|| filter(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_of_odd_text_is_refused_not_a_panic() {
        assert!(filter("info").is_ok());
        assert!(filter(" b24_robot=debug,warn ").is_ok());
        // What tracing-subscriber 0.3.23 panics on (found by the config fuzz test).
        let error = filter("\u{b}a\u{a1}=").expect_err("refused");
        assert!(error.contains("cannot be in a log filter"), "{error}");
        assert!(filter("a\u{a1}=").is_err());
    }
}

//! Settings: built-in defaults, then the TOML file, then `B24ROBOT__SECTION__KEY` variables.
//!
//! The raw layer (`Raw*`, `raw.rs`) mirrors the file one to one with `deny_unknown_fields`, so a
//! typo in a key fails at start instead of being silently ignored. [`Settings::load`] reads the
//! layers (`load.rs`), then turns the raw strings into types (URLs, durations, sizes, a time zone:
//! `validate.rs`, `values.rs`) and reports every bad value at once, each naming its key.
//! [`check`] does the same for `b24-robot check`, pointing at each problem's `file:line:col`.
//! Secrets are wrapped in [`Secret`], whose `Debug` never shows them.
//!
//! The environment is passed in as a value (tests never mutate the process environment).
//!
//! Here: [`Settings`], the errors, and the two entry points; the sections' types are in
//! `sections.rs`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::calendar::Calendar;

mod check;
mod load;
mod raw;
mod sections;
mod validate;
mod values;

pub use check::check;
pub use load::Sources;
pub use sections::{
    ControlSettings, LogFormat, LogSettings, PortalSettings, RulesSettings, Secret, ServerSettings,
    StorageSettings, SyncSettings, UiSettings, WorkerSettings,
};
pub use values::{CALENDAR_KEYS, calendar_from, parse_duration, parse_size};

/// Prefix of every environment variable that sets a key: `B24ROBOT__PORTAL__WEBHOOK_URL`.
pub const ENV_PREFIX: &str = "B24ROBOT";
/// The config file read when `--config` is not given; its absence is fine.
pub const DEFAULT_CONFIG_FILE: &str = "b24-robot.toml";

/// Why the settings could not be loaded. Each message names the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: not found")]
    FileNotFound(PathBuf),
    /// The path is there but cannot be read as a config file (a folder, no permission, bytes).
    #[error("config file {0}: {1}")]
    Unreadable(PathBuf, String),
    #[error("{0}")]
    Source(String),
    /// Variables of ours that are not UTF-8, one line each.
    #[error("{}", .0.join("\n"))]
    Environment(Vec<String>),
    #[error("{}", lines(.0))]
    Invalid(Vec<BadValue>),
}

/// A bad value and the key it is about (`section.key`): `check` finds the key's place in the
/// file by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadValue {
    pub key: String,
    /// What is wrong with the value, and how to write it.
    pub problem: String,
}

impl BadValue {
    fn new(key: &str, problem: impl Into<String>) -> BadValue {
        BadValue {
            key: key.to_string(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

fn lines(bad: &[BadValue]) -> String {
    bad.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Validated settings: what the rest of the program takes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub portal: PortalSettings,
    pub rules: RulesSettings,
    pub storage: StorageSettings,
    pub calendar: Calendar,
    pub sync: SyncSettings,
    pub worker: WorkerSettings,
    pub control: ControlSettings,
    pub ui: UiSettings,
    pub log: LogSettings,
}

impl Settings {
    /// Loads and validates the settings; every problem is reported at once.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let (raw, base_dir) = load::layers(sources)?;
        validate::validate(raw, &base_dir)
    }

    /// As [`Settings::load`], with the config file's text given.
    fn load_text(sources: &Sources, file: Option<(&Path, &str)>) -> Result<Settings, ConfigError> {
        let (raw, base_dir) = load::layers_of(sources, file)?;
        validate::validate(raw, &base_dir)
    }

    /// Settings for tests and the demo: defaults, no file, no environment.
    pub fn defaults() -> Settings {
        // The defaults are constants that validate; a failure here is a bug in this module.
        validate::validate(raw::RawSettings::default(), Path::new("."))
            .expect("built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;

//! The layers, read: built-in defaults, then the TOML file, then the `B24ROBOT__*` environment,
//! then the caller's overrides, deserialized into the raw layer ([`RawSettings`]) with the
//! directory that relative paths are relative to. Turning it into [`super::Settings`] is
//! `validate.rs`'s part.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::raw::RawSettings;
use super::{ConfigError, DEFAULT_CONFIG_FILE, ENV_PREFIX};

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 2] = ["calendar.workdays", "calendar.holidays"];

/// Where the settings come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config PATH`: must exist. `None`: `b24-robot.toml` in the working directory, if any.
    pub file: Option<PathBuf>,
    /// The process environment (or a test's); only `B24ROBOT__*` keys are read.
    pub env: HashMap<String, String>,
    /// Extra `(key, value)` overrides applied last, e.g. by the demo (`portal.webhook_url`).
    pub overrides: Vec<(String, String)>,
    /// `B24ROBOT__*` variables of the environment whose name or value is not UTF-8 (their names,
    /// lossily decoded): each is a config error, never a panic.
    pub unreadable_env: Vec<String>,
}

impl Sources {
    /// The sources of a real run: the given file and the process environment.
    pub fn from_process(file: Option<PathBuf>) -> Sources {
        let (env, unreadable_env) = read_env(std::env::vars_os());
        Sources {
            file,
            env,
            overrides: Vec::new(),
            unreadable_env,
        }
    }

    /// The problems of [`Sources::unreadable_env`], one line each.
    pub(super) fn env_problems(&self) -> Vec<String> {
        self.unreadable_env
            .iter()
            .map(|name| {
                format!(
                    "environment variable {name}: not valid UTF-8 (set it as UTF-8 text, or unset it)"
                )
            })
            .collect()
    }
}

/// Our variables of an environment: `B24ROBOT__*` ones as text, and the names of those that are
/// not UTF-8. Every other variable is ignored whatever its bytes: `std::env::vars()` would panic
/// on the first one that is not UTF-8, for a variable that is none of our business.
pub(super) fn read_env(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> (HashMap<String, String>, Vec<String>) {
    let prefix = format!("{ENV_PREFIX}__");
    let mut env = HashMap::new();
    let mut unreadable = Vec::new();
    for (name, value) in vars {
        if !name.as_encoded_bytes().starts_with(prefix.as_bytes()) {
            continue;
        }
        match (name.into_string(), value.into_string()) {
            (Ok(name), Ok(value)) => {
                env.insert(name, value);
            }
            (Ok(name), Err(_)) => unreadable.push(name),
            (Err(name), _) => unreadable.push(name.to_string_lossy().into_owned()),
        }
    }
    unreadable.sort();
    (env, unreadable)
}

/// The key a variable of ours sets, lowercased, its parts still joined by `__`
/// (`B24ROBOT__PORTAL__WEBHOOK_URL` → `portal__webhook_url`); `None` for any other variable.
pub(super) fn env_key(var: &str) -> Option<String> {
    var.strip_prefix(&format!("{ENV_PREFIX}__"))
        .map(str::to_ascii_lowercase)
}

/// The variable that sets `section.key`: `portal.webhook_url` → `B24ROBOT__PORTAL__WEBHOOK_URL`.
pub(super) fn env_var(key: &str) -> String {
    format!(
        "{ENV_PREFIX}__{}",
        key.to_ascii_uppercase().replace('.', "__")
    )
}

/// `b24-robot.toml` in the working directory, if there is one.
pub(super) fn default_file() -> Option<PathBuf> {
    let default = PathBuf::from(DEFAULT_CONFIG_FILE);
    default.is_file().then_some(default)
}

/// The config file the sources name (`--config`, else `b24-robot.toml` here if there is one)
/// and its text. Any readable file will do: `--config /dev/null` is an empty config (defaults
/// and the environment only); a missing path, a folder or an unreadable file is an error that
/// says which.
pub(super) fn file_text(sources: &Sources) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let Some(path) = sources.file.clone().or_else(default_file) else {
        return Ok(None);
    };
    let unreadable = |why: String| ConfigError::Unreadable(path.clone(), why);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::FileNotFound(path));
        }
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(meta) if meta.is_dir() => {
            return Err(unreadable(
                "is a folder; give the config file (e.g. b24-robot.toml) in it".into(),
            ));
        }
        Ok(_) => {}
    }
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some((path, text))),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(unreadable("is not UTF-8 text (a TOML file is)".into()))
        }
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// The raw layer the sources make, and the directory relative paths in it are relative to (the
/// config file's).
pub(super) fn layers(sources: &Sources) -> Result<(RawSettings, PathBuf), ConfigError> {
    let file = file_text(sources)?;
    layers_of(
        sources,
        file.as_ref()
            .map(|(path, text)| (path.as_path(), text.as_str())),
    )
}

/// As [`layers`], with the config file's text given (`check` gives it with the keys it has
/// already reported taken out, to find every other problem too).
pub(super) fn layers_of(
    sources: &Sources,
    file: Option<(&Path, &str)>,
) -> Result<(RawSettings, PathBuf), ConfigError> {
    let unreadable = sources.env_problems();
    if !unreadable.is_empty() {
        return Err(ConfigError::Environment(unreadable));
    }
    // Relative paths are relative to the config file's folder; a file that is not a regular one
    // (`/dev/null`) has no folder of settings: the working directory.
    let base_dir = match file {
        Some((path, _)) if path.is_file() => parent_dir(path),
        _ => PathBuf::from("."),
    };

    let mut builder = config::Config::builder();
    if let Some((_, text)) = file {
        builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
    }
    // Lists from the environment are comma-separated. They are split here rather than by
    // `config`'s list parsing, which only works with `try_parsing`, and that would also turn
    // an all-digit token such as "0123" into the number 123.
    let mut env: config::Map<String, String> = config::Map::new();
    let mut lists: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in &sources.env {
        let Some(key) = env_key(k) else {
            continue;
        };
        let key = key.replace("__", ".");
        if LIST_KEYS.contains(&key.as_str()) {
            let items = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from);
            lists.push((key, items.collect()));
        } else {
            env.insert(k.clone(), v.clone());
        }
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(env)),
    );
    for (key, items) in lists {
        builder = builder
            .set_override(key.as_str(), items)
            .map_err(|e| ConfigError::Source(e.to_string()))?;
    }
    for (key, value) in &sources.overrides {
        builder = builder
            .set_override(key.as_str(), value.as_str())
            .map_err(|e| ConfigError::Source(e.to_string()))?;
    }
    let raw: RawSettings = builder
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| ConfigError::Source(describe_config_error(&e, file.map(|(p, _)| p))))?;
    Ok((raw, base_dir))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn describe_config_error(error: &config::ConfigError, file: Option<&Path>) -> String {
    let text = error.to_string();
    // `config` names the key for type errors ("... for key `portal.burst`"); unknown fields come
    // out as "unknown field `x`, expected one of ...": add where to look.
    match file {
        Some(path) if !text.contains(&path.display().to_string()) => {
            format!(
                "{text} (in {} or the B24ROBOT__ environment)",
                path.display()
            )
        }
        _ => text,
    }
}

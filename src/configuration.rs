//! Settings: built-in defaults, then the TOML file, then `B24ROBOT__SECTION__KEY` variables.
//!
//! The raw layer (`Raw*`) mirrors the file one to one with `deny_unknown_fields`, so a typo in a
//! key fails at start instead of being silently ignored. [`Settings::load`] then turns the raw
//! strings into types (URLs, durations, sizes, a time zone) and reports every bad value at once,
//! each naming its key. Secrets are wrapped in [`Secret`], whose `Debug` never shows them.
//!
//! The environment is passed in as a value (tests never mutate the process environment).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::diagnostics::spanned::Source;
use crate::diagnostics::{Diagnostic, Severity};

/// Prefix of every environment variable that sets a key: `B24ROBOT__PORTAL__WEBHOOK_URL`.
pub const ENV_PREFIX: &str = "B24ROBOT";
/// The config file read when `--config` is not given; its absence is fine.
pub const DEFAULT_CONFIG_FILE: &str = "b24-robot.toml";
/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 2] = ["calendar.workdays", "calendar.holidays"];

/// Why the settings could not be loaded. Each message names the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: not found")]
    FileNotFound(PathBuf),
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

/// A value that must never be printed: the webhook URL holds the portal's secret code.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
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
    pub log: LogSettings,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_body: usize,
    pub admin_token: Secret,
    pub request_timeout: Duration,
    /// Connections served at once (past it the oldest idle one is closed for a new one).
    pub max_connections: usize,
    /// Connections from one client address at once (a reverse proxy is one client).
    pub max_connections_per_client: usize,
}

#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// The incoming webhook, always ending with `/`. Empty only where a command needs no portal.
    pub webhook_url: Option<Secret>,
    pub application_token: Secret,
    pub requests_per_second: f64,
    pub burst: u32,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Longest REST answer read, in bytes; a longer one fails its call.
    pub max_response: usize,
}

#[derive(Debug, Clone)]
pub struct RulesSettings {
    pub dir: PathBuf,
    /// The longest chain of tunnel copies (a copy of a copy of ...): a deal that is already the
    /// copy at this depth is not copied again, its decision fails.
    pub max_tunnel_depth: u32,
}

#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub dir: PathBuf,
    /// How long stage entries, their decisions and their settled effects are kept.
    pub decisions_retention: Duration,
    /// Bytes of sled's page cache: what the store may keep in memory.
    pub cache: u64,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub poll_interval: Duration,
    pub dedupe_window: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How many read/write rounds may be in flight at once (each covers many deals).
    pub concurrency: usize,
    /// How many deals share one round (2 sub-calls each in the read `batch`, so ≤ 25 fills it).
    pub deals_per_batch: usize,
    /// Attempts of one deal's job before it is parked with its last error.
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Pages of one deal's stage history read in one round; past it the deal's job is parked
    /// (a portal whose `next` never ends).
    pub max_history_pages: usize,
    /// Pages of the stage history one sweep reads; the next sweep goes on from there.
    pub max_sweep_pages: usize,
    /// `rules.max_tunnel_depth`, for the rounds that evaluate the rules.
    pub max_tunnel_depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

// ---------------------------------------------------------------------------------------------
// The raw layer: the file and the environment as written.

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    server: RawServer,
    portal: RawPortal,
    rules: RawRules,
    storage: RawStorage,
    calendar: RawCalendar,
    sync: RawSync,
    worker: RawWorker,
    log: RawLog,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    max_body: String,
    admin_token: String,
    request_timeout: String,
    max_connections: usize,
    max_connections_per_client: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            max_body: "64KiB".into(),
            admin_token: String::new(),
            request_timeout: "10s".into(),
            max_connections: 1024,
            max_connections_per_client: 256,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawPortal {
    webhook_url: String,
    application_token: String,
    requests_per_second: f64,
    burst: u32,
    timeout: String,
    max_attempts: u32,
    retry_base: String,
    retry_max: String,
    max_response: String,
}

impl Default for RawPortal {
    fn default() -> Self {
        RawPortal {
            webhook_url: String::new(),
            application_token: String::new(),
            requests_per_second: 2.0,
            burst: 50,
            timeout: "30s".into(),
            max_attempts: 5,
            retry_base: "500ms".into(),
            retry_max: "30s".into(),
            max_response: "32MiB".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawRules {
    dir: String,
    max_tunnel_depth: u32,
}

impl Default for RawRules {
    fn default() -> Self {
        RawRules {
            dir: "rules".into(),
            max_tunnel_depth: 3,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    dir: String,
    decisions_retention: String,
    cache: String,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            dir: "data".into(),
            decisions_retention: "180d".into(),
            cache: "256MiB".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawCalendar {
    timezone: String,
    workdays: Vec<String>,
    hours: String,
    holidays: Vec<String>,
}

impl Default for RawCalendar {
    fn default() -> Self {
        RawCalendar {
            timezone: "Europe/Moscow".into(),
            workdays: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            hours: "09:00-18:00".into(),
            holidays: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawSync {
    poll_interval: String,
    dedupe_window: String,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            poll_interval: "60s".into(),
            dedupe_window: "24h".into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawWorker {
    concurrency: usize,
    deals_per_batch: usize,
    max_attempts: u32,
    retry_base: String,
    retry_max: String,
    max_history_pages: usize,
    max_sweep_pages: usize,
}

impl Default for RawWorker {
    fn default() -> Self {
        RawWorker {
            concurrency: 4,
            deals_per_batch: 25,
            max_attempts: 10,
            retry_base: "2s".into(),
            retry_max: "10m".into(),
            // 1,000 entries: far more moves than a deal makes between two rounds, and more than
            // a deal's whole history, read once when the service first meets the deal.
            max_history_pages: 20,
            // 50,000 entries a sweep (21 requests): a long downtime is caught up in a few
            // sweeps, and a portal that pages forever costs at most this.
            max_sweep_pages: 1_000,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------

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
    fn env_problems(&self) -> Vec<String> {
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
fn read_env(
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

impl Settings {
    /// Loads and validates the settings; every problem is reported at once.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let unreadable = sources.env_problems();
        if !unreadable.is_empty() {
            return Err(ConfigError::Environment(unreadable));
        }
        let (file, base_dir) = match &sources.file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::FileNotFound(path.clone()));
                }
                (Some(path.clone()), parent_dir(path))
            }
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_FILE);
                let found = default.is_file().then_some(default);
                (found, PathBuf::from("."))
            }
        };

        let mut builder = config::Config::builder();
        if let Some(path) = &file {
            builder = builder.add_source(
                config::File::from(path.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // Lists from the environment are comma-separated. They are split here rather than by
        // `config`'s list parsing, which only works with `try_parsing`, and that would also turn
        // an all-digit token such as "0123" into the number 123.
        let mut env: config::Map<String, String> = config::Map::new();
        let mut lists: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in &sources.env {
            let Some(rest) = k.strip_prefix(&format!("{ENV_PREFIX}__")) else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
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
            .map_err(|e| ConfigError::Source(describe_config_error(&e, file.as_deref())))?;
        validate(raw, &base_dir)
    }

    /// Settings for tests and the demo: defaults, no file, no environment.
    pub fn defaults() -> Settings {
        // The defaults are constants that validate; a failure here is a bug in this file.
        validate(RawSettings::default(), Path::new(".")).expect("built-in defaults are valid")
    }
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

/// Collects every bad value, each with its key, while turning the raw strings into types.
#[derive(Default)]
struct Checker {
    errors: Vec<BadValue>,
}

impl Checker {
    /// The parsed value, or `fallback` with the error recorded under `key`.
    fn parse<T>(&mut self, key: &str, parsed: Result<T, String>, fallback: T) -> T {
        parsed.unwrap_or_else(|e| {
            self.errors.push(BadValue::new(key, e));
            fallback
        })
    }

    fn duration(&mut self, key: &str, text: &str) -> Duration {
        self.parse(key, parse_duration(text), Duration::ZERO)
    }

    fn require(&mut self, key: &str, ok: bool, why: &str) {
        if !ok {
            self.errors.push(BadValue::new(key, why));
        }
    }
}

fn validate(raw: RawSettings, base_dir: &Path) -> Result<Settings, ConfigError> {
    let mut c = Checker::default();
    let listen = c.parse(
        "server.listen",
        raw.server
            .listen
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| {
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:8080\"",
                    raw.server.listen
                )
            }),
        None,
    );
    let max_body = c.parse("server.max_body", parse_size(&raw.server.max_body), 0);
    let request_timeout = c.duration("server.request_timeout", &raw.server.request_timeout);
    c.require(
        "server.max_connections",
        raw.server.max_connections >= 1,
        "must be at least 1",
    );
    c.require(
        "server.max_connections_per_client",
        (1..=raw.server.max_connections.max(1)).contains(&raw.server.max_connections_per_client),
        "must be between 1 and server.max_connections",
    );

    let webhook_url = c.parse(
        "portal.webhook_url",
        parse_webhook_url(&raw.portal.webhook_url),
        None,
    );
    c.parse(
        "portal.requests_per_second",
        positive(
            raw.portal.requests_per_second,
            "a number of requests per second above 0",
        ),
        (),
    );
    c.require("portal.burst", raw.portal.burst >= 1, "must be at least 1");
    let portal_timeout = c.duration("portal.timeout", &raw.portal.timeout);
    c.require(
        "portal.max_attempts",
        raw.portal.max_attempts >= 1,
        "must be at least 1",
    );
    let portal_retry_base = c.duration("portal.retry_base", &raw.portal.retry_base);
    let portal_retry_max = c.duration("portal.retry_max", &raw.portal.retry_max);
    let max_response = c.parse(
        "portal.max_response",
        parse_size(&raw.portal.max_response).and_then(|size| {
            if size >= MIN_MAX_RESPONSE {
                Ok(size)
            } else {
                Err(format!(
                    "{:?} is too small: a batch answer for 25 deals needs room (at least 64KiB)",
                    raw.portal.max_response
                ))
            }
        }),
        0,
    );

    let decisions_retention = c.duration(
        "storage.decisions_retention",
        &raw.storage.decisions_retention,
    );
    let cache = c.parse("storage.cache", parse_size(&raw.storage.cache), 0) as u64;
    let poll_interval = c.duration("sync.poll_interval", &raw.sync.poll_interval);
    let dedupe_window = c.duration("sync.dedupe_window", &raw.sync.dedupe_window);

    c.require(
        "worker.concurrency",
        raw.worker.concurrency >= 1,
        "must be at least 1",
    );
    c.require(
        "worker.deals_per_batch",
        (1..=25).contains(&raw.worker.deals_per_batch),
        "must be between 1 and 25 (each deal takes 2 of a batch's 50 calls)",
    );
    c.require(
        "worker.max_attempts",
        raw.worker.max_attempts >= 1,
        "must be at least 1",
    );
    c.require(
        "worker.max_history_pages",
        (1..=10_000).contains(&raw.worker.max_history_pages),
        "must be between 1 and 10000",
    );
    c.require(
        "worker.max_sweep_pages",
        (1..=100_000).contains(&raw.worker.max_sweep_pages),
        "must be between 1 and 100000",
    );
    c.require(
        "rules.max_tunnel_depth",
        raw.rules.max_tunnel_depth >= 1,
        "must be at least 1 (1: a copy is never copied again)",
    );
    let worker_retry_base = c.duration("worker.retry_base", &raw.worker.retry_base);
    let worker_retry_max = c.duration("worker.retry_max", &raw.worker.retry_max);

    let format = c.parse(
        "log.format",
        match raw.log.format.as_str() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format (use \"pretty\" or \"json\")"
            )),
        },
        LogFormat::Pretty,
    );
    c.parse(
        "log.level",
        tracing_subscriber::EnvFilter::try_new(&raw.log.level)
            .map(|_| ())
            .map_err(|e| format!("{:?} is not a log filter ({e})", raw.log.level)),
        (),
    );

    let calendar = match parse_calendar(&raw.calendar) {
        Ok(calendar) => Some(calendar),
        Err(errs) => {
            c.errors.extend(errs);
            None
        }
    };

    match (c.errors.is_empty(), listen, calendar) {
        (true, Some(listen), Some(calendar)) => Ok(Settings {
            server: ServerSettings {
                listen,
                max_body,
                admin_token: Secret::new(raw.server.admin_token),
                request_timeout,
                max_connections: raw.server.max_connections,
                max_connections_per_client: raw.server.max_connections_per_client,
            },
            portal: PortalSettings {
                webhook_url,
                application_token: Secret::new(raw.portal.application_token),
                requests_per_second: raw.portal.requests_per_second,
                burst: raw.portal.burst,
                timeout: portal_timeout,
                max_attempts: raw.portal.max_attempts,
                retry_base: portal_retry_base,
                retry_max: portal_retry_max,
                max_response,
            },
            rules: RulesSettings {
                dir: base_dir.join(&raw.rules.dir),
                max_tunnel_depth: raw.rules.max_tunnel_depth,
            },
            storage: StorageSettings {
                dir: base_dir.join(&raw.storage.dir),
                decisions_retention,
                cache,
            },
            calendar,
            sync: SyncSettings {
                poll_interval,
                dedupe_window,
            },
            worker: WorkerSettings {
                concurrency: raw.worker.concurrency,
                deals_per_batch: raw.worker.deals_per_batch,
                max_attempts: raw.worker.max_attempts,
                retry_base: worker_retry_base,
                retry_max: worker_retry_max,
                max_history_pages: raw.worker.max_history_pages,
                max_sweep_pages: raw.worker.max_sweep_pages,
                max_tunnel_depth: raw.rules.max_tunnel_depth,
            },
            log: LogSettings {
                format,
                level: raw.log.level,
            },
        }),
        _ => Err(ConfigError::Invalid(c.errors)),
    }
}

/// The smallest `portal.max_response` accepted.
const MIN_MAX_RESPONSE: usize = 64 * 1024;

fn positive(value: f64, what: &str) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{value} is not {what}"))
    }
}

fn parse_webhook_url(text: &str) -> Result<Option<Secret>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // The message must not echo the URL: it holds the webhook's secret code.
    let url = url::Url::parse(text)
        .map_err(|e| format!("not a URL ({e}); expected https://<portal>/rest/<user>/<code>/"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http(s) URL such as https://<portal>/rest/<user>/<code>/".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment: use the webhook's base URL".into());
    }
    let mut text = url.to_string();
    if !text.ends_with('/') {
        text.push('/');
    }
    Ok(Some(Secret::new(text)))
}

/// Parses `"60s"`, `"5m"`, `"24h"`, `"500ms"`, `"2d"` (also with spaces and long unit names).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration (write e.g. \"500ms\", \"60s\", \"5m\", \"24h\")")
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "sec" | "second" | "seconds" => value,
        "m" | "min" | "minute" | "minutes" => value * 60.0,
        "h" | "hour" | "hours" => value * 3600.0,
        "d" | "day" | "days" => value * 86400.0,
        "" => return Err(format!("{text:?} has no unit (write e.g. \"{number}s\")")),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be above zero"));
    }
    // `try_`: a value past `Duration::MAX` (about 5.8e11 years) panicked in `from_secs_f64`
    // (found by the config property test).
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long"))
}

/// Parses `"64KiB"`, `"1MiB"`, `"65536"`, `"64KB"`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write e.g. \"64KiB\")"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    match value.checked_mul(factor) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("{text:?} must be above zero")),
    }
}

fn parse_calendar(raw: &RawCalendar) -> Result<Calendar, Vec<BadValue>> {
    let mut errors = Vec::new();
    let tz: Option<chrono_tz::Tz> = match raw.timezone.parse() {
        Ok(tz) => Some(tz),
        Err(_) => {
            errors.push(BadValue::new(
                "calendar.timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. \"Europe/Moscow\")",
                    raw.timezone
                ),
            ));
            None
        }
    };
    let mut workdays = Vec::new();
    for day in &raw.workdays {
        match parse_weekday(day) {
            Some(d) => workdays.push(d),
            None => errors.push(BadValue::new(
                "calendar.workdays",
                format!("{day:?} is not a weekday (use mon, tue, wed, thu, fri, sat, sun)"),
            )),
        }
    }
    let hours = raw.hours.split_once('-').and_then(|(a, b)| {
        let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
        let b = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
        Some((a, b))
    });
    if hours.is_none() {
        errors.push(BadValue::new(
            "calendar.hours",
            format!(
                "{:?} is not a range of hours such as \"09:00-18:00\"",
                raw.hours
            ),
        ));
    }
    let mut holidays = Vec::new();
    for day in &raw.holidays {
        match NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d") {
            Ok(d) => holidays.push(d),
            Err(_) => errors.push(BadValue::new(
                "calendar.holidays",
                format!("{day:?} is not a date YYYY-MM-DD"),
            )),
        }
    }
    match (tz, hours, errors.is_empty()) {
        (Some(tz), Some((start, end)), true) => Calendar::new(tz, workdays, start, end, holidays)
            .map_err(|e| vec![BadValue::new("calendar", e.to_string())]),
        _ => Err(errors),
    }
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    match text.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

/// Every key the settings know, as `section.key`.
fn known_keys() -> Vec<(String, Vec<String>)> {
    match serde_json::to_value(RawSettings::default()) {
        Ok(serde_json::Value::Object(sections)) => sections
            .into_iter()
            .map(|(section, keys)| {
                let keys = keys
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                (section, keys)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Loads the settings like [`Settings::load`], but reports every problem of the config file with
/// its `file:line:col` (the file is re-read with spans): syntax errors, unknown keys with a
/// suggestion, and bad values. Problems from the environment name their variable (and no file).
pub fn check(sources: &Sources) -> Result<Settings, Vec<Diagnostic>> {
    let path = sources.file.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG_FILE);
        default.is_file().then_some(default)
    });
    let text = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let mut problems = Vec::new();
    let mut spans: HashMap<String, Range<usize>> = HashMap::new();
    let source = match (&path, &text) {
        (Some(path), Some(text)) => Some(Source::new(&path.display().to_string(), text)),
        _ => None,
    };
    if let Some(source) = &source {
        let (table, errors) = source.parse();
        for (span, message) in errors {
            problems.push(source.error(span, message, String::new()));
        }
        let known = known_keys();
        let sections: Vec<&str> = known.iter().map(|(s, _)| s.as_str()).collect();
        for (section, value) in table.get_ref().iter() {
            let section_name = section.get_ref().as_ref();
            let Some((_, keys)) = known.iter().find(|(s, _)| s == section_name) else {
                let hint = crate::diagnostics::suggest(section_name, &sections)
                    .map(|s| format!("did you mean [{s}]?"))
                    .unwrap_or_else(|| format!("sections: {}", sections.join(", ")));
                problems.push(source.error(
                    section.span(),
                    format!("unknown section or key \"{section_name}\""),
                    hint,
                ));
                continue;
            };
            let Some(inner) = value.get_ref().as_table() else {
                problems.push(source.error(
                    value.span(),
                    format!("[{section_name}] must be a table of keys"),
                    String::new(),
                ));
                continue;
            };
            let key_names: Vec<&str> = keys.iter().map(String::as_str).collect();
            for (key, value) in inner.iter() {
                let key_name = key.get_ref().as_ref();
                let full = format!("{section_name}.{key_name}");
                if key_names.contains(&key_name) {
                    spans.insert(full, value.span());
                } else {
                    let hint = crate::diagnostics::suggest(key_name, &key_names)
                        .map(|k| format!("did you mean \"{k}\"?"))
                        .unwrap_or_else(|| {
                            format!("keys of [{section_name}]: {}", key_names.join(", "))
                        });
                    problems.push(source.error(
                        key.span(),
                        format!("unknown key \"{full}\""),
                        hint,
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
    }
    problems.extend(sources.env_problems().into_iter().map(nowhere));
    let known = known_keys();
    for var in sources.env.keys() {
        let Some(rest) = var.strip_prefix(&format!("{ENV_PREFIX}__")) else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        let (section, name) = key.split_once("__").unwrap_or((key.as_str(), ""));
        let keys = known.iter().find(|(s, _)| s == section).map(|(_, k)| k);
        if keys.is_none_or(|k| !k.iter().any(|k| k == name)) {
            let candidates: Vec<String> = known
                .iter()
                .flat_map(|(s, k)| k.iter().map(move |k| format!("{s}__{k}")))
                .collect();
            let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
            let hint = crate::diagnostics::suggest(&key, &refs)
                .map(|k| format!("did you mean {ENV_PREFIX}__{}?", k.to_ascii_uppercase()));
            problems.push(Diagnostic {
                help: hint,
                ..nowhere(format!("environment variable {var}: unknown key"))
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    match Settings::load(sources) {
        Ok(settings) => Ok(settings),
        Err(ConfigError::Invalid(bad)) => {
            for bad in bad {
                let in_file = source
                    .as_ref()
                    .zip(spans.get(&bad.key))
                    .map(|(source, span)| {
                        source.error(span.clone(), bad.to_string(), String::new())
                    });
                let env_name = format!(
                    "{ENV_PREFIX}__{}",
                    bad.key.to_ascii_uppercase().replace('.', "__")
                );
                problems.push(match in_file {
                    Some(problem) => problem,
                    None if sources.env.contains_key(&env_name) => Diagnostic {
                        help: Some(format!("from the environment, {env_name}")),
                        ..nowhere(bad.to_string())
                    },
                    None => nowhere(bad.to_string()),
                });
            }
            Err(problems)
        }
        Err(other) => Err(vec![nowhere(other.to_string())]),
    }
}

/// A problem that is in no file: a variable of the environment, or the settings as a whole.
fn nowhere(message: String) -> Diagnostic {
    Diagnostic {
        file: String::new(),
        line: 0,
        column: 0,
        rule: None,
        message,
        help: None,
        severity: Severity::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: Vec::new(),
            unreadable_env: Vec::new(),
        }
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let s = Settings::defaults();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.server.max_body, 64 * 1024);
        assert_eq!(s.portal.burst, 50);
        assert_eq!(s.portal.max_response, 32 * 1024 * 1024);
        assert_eq!(s.sync.poll_interval, Duration::from_secs(60));
        assert_eq!(s.sync.dedupe_window, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn environment_sets_keys_and_lists() {
        let s = Settings::load(&env(&[
            (
                "B24ROBOT__PORTAL__WEBHOOK_URL",
                "https://x.bitrix24.ru/rest/1/abc",
            ),
            ("B24ROBOT__PORTAL__APPLICATION_TOKEN", "12345"),
            ("B24ROBOT__PORTAL__REQUESTS_PER_SECOND", "1.5"),
            ("B24ROBOT__CALENDAR__WORKDAYS", "mon,tue"),
            ("B24ROBOT__CALENDAR__HOLIDAYS", "2027-01-01, 2027-01-02"),
            ("B24ROBOT__SERVER__ADMIN_TOKEN", "0123"),
            ("OTHER", "ignored"),
        ]))
        .expect("valid");
        assert_eq!(
            s.portal.webhook_url.as_ref().map(Secret::expose),
            Some("https://x.bitrix24.ru/rest/1/abc/")
        );
        assert_eq!(s.portal.application_token.expose(), "12345");
        assert_eq!(s.portal.requests_per_second, 1.5);
        assert_eq!(
            s.server.admin_token.expose(),
            "0123",
            "an all-digit secret stays text"
        );
        assert!(
            s.calendar
                .is_working_day(chrono::NaiveDate::from_ymd_opt(2027, 1, 4).expect("date"))
        );
        assert!(
            !s.calendar
                .is_working_day(chrono::NaiveDate::from_ymd_opt(2027, 1, 6).expect("date"))
        );
        assert!(
            !s.calendar
                .is_working_day(chrono::NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"))
        );
    }

    #[test]
    fn bad_values_are_all_reported_with_their_keys() {
        let err = Settings::load(&env(&[
            ("B24ROBOT__SYNC__POLL_INTERVAL", "soon"),
            ("B24ROBOT__CALENDAR__TIMEZONE", "Mars/Olympus"),
            ("B24ROBOT__PORTAL__WEBHOOK_URL", "not a url with secret"),
        ]))
        .expect_err("invalid");
        let text = err.to_string();
        assert!(text.contains("sync.poll_interval"), "{text}");
        assert!(text.contains("calendar.timezone"), "{text}");
        assert!(text.contains("portal.webhook_url"), "{text}");
        assert!(
            !text.contains("secret"),
            "the URL must not be echoed: {text}"
        );
    }

    #[test]
    fn an_environment_that_is_not_utf8_is_ignored_except_for_our_variables() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let vars = vec![
            (bytes(b"UNRELATED_VAR"), bytes(b"\xff")),
            (bytes(b"\xffNAME"), bytes(b"x")),
            (bytes(b"B24ROBOT__SYNC__POLL_INTERVAL"), bytes(b"5s")),
            (
                bytes(b"B24ROBOT__PORTAL__WEBHOOK_URL"),
                bytes(b"https://x/\xff"),
            ),
        ];
        let (env, unreadable) = read_env(vars.into_iter());
        assert_eq!(env.len(), 1);
        assert_eq!(env["B24ROBOT__SYNC__POLL_INTERVAL"], "5s");
        assert_eq!(unreadable, ["B24ROBOT__PORTAL__WEBHOOK_URL"]);

        let sources = Sources {
            env,
            unreadable_env: unreadable,
            ..Sources::default()
        };
        let error = Settings::load(&sources).expect_err("a value that is not UTF-8 is refused");
        assert_eq!(
            error.to_string(),
            "environment variable B24ROBOT__PORTAL__WEBHOOK_URL: not valid UTF-8 (set it as UTF-8 text, or unset it)"
        );
        let problems = check(&sources).expect_err("check reports it too");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .message
                .contains("B24ROBOT__PORTAL__WEBHOOK_URL")
        );
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Settings::load(&env(&[("B24ROBOT__PORTAL__WEBHOOK_ULR", "x")])).expect_err("bad");
        assert!(err.to_string().contains("webhook_ulr"), "{err}");
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let sources = Sources {
            file: Some("/nonexistent/b24.toml".into()),
            ..Sources::default()
        };
        assert!(matches!(
            Settings::load(&sources),
            Err(ConfigError::FileNotFound(_))
        ));
    }

    #[test]
    fn relative_dirs_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conf.toml");
        std::fs::write(&path, "[rules]\ndir = \"my-rules\"\n").expect("write");
        let s = Settings::load(&Sources {
            file: Some(path),
            ..Sources::default()
        })
        .expect("ok");
        assert_eq!(s.rules.dir, dir.path().join("my-rules"));
        assert_eq!(s.storage.dir, dir.path().join("data"));
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Settings::load(&env(&[
            (
                "B24ROBOT__PORTAL__WEBHOOK_URL",
                "https://x.bitrix24.ru/rest/1/topsecret/",
            ),
            ("B24ROBOT__PORTAL__APPLICATION_TOKEN", "tokensecret"),
        ]))
        .expect("valid");
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("topsecret") && !debug.contains("tokensecret"),
            "{debug}"
        );
    }

    #[test]
    fn the_example_config_documents_every_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b24-robot.toml");
        let example = include_str!("../b24-robot.example.toml");
        std::fs::write(&path, example).expect("write");
        let s = Settings::load(&Sources {
            file: Some(path),
            ..Sources::default()
        })
        .expect("the example loads");
        let d = Settings::defaults();
        assert_eq!(format!("{:?}", s.server), format!("{:?}", d.server));
        assert_eq!(format!("{:?}", s.sync), format!("{:?}", d.sync));
        assert_eq!(format!("{:?}", s.worker), format!("{:?}", d.worker));
        assert_eq!(s.portal.burst, d.portal.burst);
        assert_eq!(s.portal.max_response, d.portal.max_response);
        assert_eq!(s.rules.max_tunnel_depth, d.rules.max_tunnel_depth);
    }

    #[test]
    fn a_max_response_too_small_for_a_batch_answer_is_refused() {
        let error = Settings::load(&env(&[("B24ROBOT__PORTAL__MAX_RESPONSE", "1KiB")]))
            .expect_err("too small")
            .to_string();
        assert!(
            error.contains("portal.max_response: \"1KiB\" is too small"),
            "{error}"
        );
        let s = Settings::load(&env(&[("B24ROBOT__PORTAL__MAX_RESPONSE", "1MiB")])).expect("ok");
        assert_eq!(s.portal.max_response, 1024 * 1024);
    }

    #[test]
    fn the_tunnel_depth_defaults_to_3_and_must_be_at_least_1() {
        assert_eq!(Settings::defaults().rules.max_tunnel_depth, 3);
        assert_eq!(Settings::defaults().worker.max_tunnel_depth, 3);
        let s = Settings::load(&env(&[("B24ROBOT__RULES__MAX_TUNNEL_DEPTH", "5")])).expect("valid");
        assert_eq!(
            (s.rules.max_tunnel_depth, s.worker.max_tunnel_depth),
            (5, 5)
        );
        let problems =
            check(&env(&[("B24ROBOT__RULES__MAX_TUNNEL_DEPTH", "0")])).expect_err("0 is refused");
        assert!(
            problems
                .iter()
                .any(|p| p.to_string().contains("rules.max_tunnel_depth")),
            "{problems:?}"
        );
    }

    #[test]
    fn check_points_at_unknown_keys_and_bad_values_in_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conf.toml");
        std::fs::write(&path, "[portal]\nwebhok_url = \"x\"\n").expect("write");
        let problems = check(&Sources {
            file: Some(path.clone()),
            ..Sources::default()
        })
        .expect_err("bad");
        let text = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.ends_with(
                "conf.toml:2:1: unknown key \"portal.webhok_url\" (did you mean \"webhook_url\"?)"
            ),
            "{text}"
        );

        std::fs::write(&path, "[sync]\npoll_interval = \"soon\"\n").expect("write");
        let problems = check(&Sources {
            file: Some(path),
            ..Sources::default()
        })
        .expect_err("bad");
        let text = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            text.contains("conf.toml:2:17: sync.poll_interval: \"soon\" is not a duration"),
            "{text}"
        );
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert!(parse_size("lots").is_err());
    }
}

/// Fuzzing the config loader as property tests: a config file of known sections and keys with
/// values of any TOML type, overrides with any text, and the duration and size parsers, never
/// panic: every input is loaded or refused with problems.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// Cases per property: `PROPTEST_CASES` for a longer run, else what CI affords.
    fn fuzz_cases(ci: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ci)
    }
    use std::collections::BTreeMap;

    /// TOML values of every type, written as TOML source.
    fn toml_value() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
            Just("inf".to_string()),
            Just("nan".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            ".{0,16}".prop_map(|s| format!("{s:?}").replace("\\u{", "\\u").replace('}', "")),
            "[0-9]{1,30}(\\.[0-9]{1,3})? ?(ms|s|m|h|d|KiB|MiB|B|x)?".prop_map(|s| format!("{s:?}")),
            Just("\"99999999999999999999999d\"".to_string()),
            Just("\"1e400s\"".to_string()),
            Just("1979-05-27T07:32:00Z".to_string()),
            Just("\"25:00-99:99\"".to_string()),
        ];
        scalar.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                proptest::collection::vec(inner, 0..2).prop_map(|items| {
                    let pairs: Vec<String> = items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| format!("k{i} = {v}"))
                        .collect();
                    format!("{{ {} }}", pairs.join(", "))
                }),
            ]
        })
    }

    fn all_keys() -> Vec<(String, String)> {
        known_keys()
            .into_iter()
            .flat_map(|(section, keys)| keys.into_iter().map(move |k| (section.clone(), k)))
            .collect()
    }

    fn key() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            9 => proptest::sample::select(all_keys()),
            1 => ("[a-z]{1,8}", "[a-z_]{1,10}"),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases(1500)))]

        #[test]
        fn a_config_file_of_any_values_loads_or_is_refused(
            entries in proptest::collection::vec((key(), toml_value()), 0..8),
        ) {
            let mut by_section: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for ((section, key), value) in &entries {
                by_section.entry(section.clone()).or_default().push(format!("{key} = {value}"));
            }
            let text: String = by_section
                .iter()
                .map(|(section, lines)| format!("[{section}]\n{}\n", lines.join("\n")))
                .collect();
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("b24-robot.toml");
            std::fs::write(&path, &text).expect("config file");
            let sources = Sources { file: Some(path), ..Sources::default() };
            let _ = Settings::load(&sources);
            if let Err(problems) = check(&sources) {
                prop_assert!(!problems.is_empty());
            }
        }

        #[test]
        fn overrides_and_environment_of_any_text_load_or_are_refused(
            entries in proptest::collection::vec((key(), ".{0,24}"), 0..6),
        ) {
            let overrides = entries
                .iter()
                .map(|((s, k), v)| (format!("{s}.{k}"), v.clone()))
                .collect();
            let _ = Settings::load(&Sources { overrides, ..Sources::default() });
            let env = entries
                .iter()
                .map(|((s, k), v)| (format!("B24ROBOT__{}__{}", s.to_uppercase(), k.to_uppercase()), v.clone()))
                .collect();
            let _ = Settings::load(&Sources { env, ..Sources::default() });
        }

        #[test]
        fn durations_and_sizes_of_any_text_parse_or_are_refused(
            text in prop_oneof![".{0,20}", "[0-9]{1,40}(\\.[0-9]{0,40})? ?(ms|s|m|h|d|KiB|MiB|B)?"],
        ) {
            let _ = parse_duration(&text);
            let _ = parse_size(&text);
        }
    }

    /// Regression: a duration too long for `Duration` panicked in `Duration::from_secs_f64`.
    #[test]
    fn a_duration_too_long_is_refused_not_a_panic() {
        assert!(parse_duration("99999999999999999999999d").is_err());
        assert!(parse_duration(&format!("{}s", "9".repeat(400))).is_err());
    }
}

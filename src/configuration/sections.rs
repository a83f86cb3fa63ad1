//! The validated sections of [`super::Settings`], what the rest of the program takes, and
//! [`Secret`] for the values that must never be printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::rules::Language;

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
    /// The language of the texts the service writes into the portal itself (a gate's default
    /// message, the moved-back sentence, the notifications, the tunnel link comments).
    pub language: Language,
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

/// `[ui]`: the web dashboard under `/ui/` (on only with `server.admin_token`).
#[derive(Debug, Clone)]
pub struct UiSettings {
    /// The dashboard's language.
    pub language: crate::rules::Language,
    /// The session cookie carries `Secure` (set it when the service is reached over https).
    pub secure_cookie: bool,
    /// How long a login lasts.
    pub session: Duration,
}

/// `[control]`: the time-driven rules (`control.md`).
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// How often the control sweep reads the portal's tasks and open deals (`[[overdue]]`,
    /// `[[no_task]]`).
    pub poll_interval: Duration,
    /// Notifications of the time-driven rules that fall outside working time wait for the
    /// start of the next working period.
    pub quiet_outside_hours: bool,
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

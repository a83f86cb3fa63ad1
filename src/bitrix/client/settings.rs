//! [`ClientSettings`]: how to reach one portal and how hard to push it, with the defaults of
//! a standard portal; its `Debug` shows the webhook's origin only.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use url::Url;

use super::origin_of;

/// How to reach one portal and how hard to push it.
#[derive(Clone)]
pub struct ClientSettings {
    /// The incoming webhook, e.g. `https://x.bitrix24.ru/rest/1/abc/`. A secret: it never
    /// appears in errors, logs or `Debug`.
    pub webhook_url: Url,
    /// Drain rate of the portal's leaky bucket: 2 (5 on Enterprise).
    pub requests_per_second: f64,
    /// Size of the portal's bucket: 50 (250 on Enterprise).
    pub burst: u32,
    /// Per HTTP request.
    pub timeout: Duration,
    /// HTTP attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff step; doubles per retry, with full jitter.
    pub backoff_base: Duration,
    /// Longest backoff step.
    pub backoff_max: Duration,
    /// Longest answer read, in bytes: a longer one fails its call ([`CallError::TooLarge`]).
    pub max_response: usize,
    /// Host names resolved to fixed addresses instead of asking DNS. Empty in production; tests
    /// use it to serve several portal names from one local port (a rename keeps the port).
    pub resolve: Vec<(String, SocketAddr)>,
}

impl ClientSettings {
    /// The defaults of a non-Enterprise portal for this webhook.
    #[must_use]
    pub fn new(webhook_url: Url) -> Self {
        Self {
            webhook_url,
            requests_per_second: 2.0,
            burst: 50,
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_response: 32 * 1024 * 1024,
            resolve: Vec::new(),
        }
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("webhook_url", &origin_of(&self.webhook_url))
            .field("requests_per_second", &self.requests_per_second)
            .field("burst", &self.burst)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_response", &self.max_response)
            .field("resolve", &self.resolve)
            .finish()
    }
}

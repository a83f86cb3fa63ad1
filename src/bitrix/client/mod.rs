//! The client: one HTTP connection pool, one leaky bucket and one set of parked methods per
//! portal, shared by every task through a cheap `Clone`.
//!
//! Each call takes a token from the bucket, POSTs JSON to `<webhook><method>.json`, reads the
//! envelope whatever the HTTP status, and decides: done, retry after a jittered backoff, park
//! the method (429), follow a renamed portal (302) or give up with a typed [`CallError`].
//! A redirect is followed only when it is a portal rename (`rename`); an answer is read up to
//! `max_response` bytes and no further.
//! [`Retry`] says whether a failure of unknown outcome may be repeated: reads and idempotent
//! writes may, creates may not (the worker first looks for what the call may have made).
//!
//! This file builds the client and has its one entry point, [`Client::call`]; the rest is by
//! seam: `settings`, `wire` (one POST and its answer), `attempts` (retries with backoff, the
//! bucket), `park` (429 parking), `reach` (an unreachable portal and its probe), `redirect` (portal renames), `batch`, `outbox` (the calls of
//! every caller packed into full batches), `paging` (`list_all`)
//! and `stats` (counters for `/metrics`).

mod attempts;
mod batch;
mod outbox;
mod paging;
mod park;
mod reach;
mod redirect;
mod settings;
mod stats;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::bucket::Bucket;
use super::envelope::Response;
use super::error::{CallError, ClientError};
use park::MethodState;
use stats::Counters;

pub use batch::{BATCH_LIMIT, BatchCall};
#[cfg(test)]
pub(crate) use park::park_until;
pub use reach::{DOWN_AFTER, PROBE_MAX, PROBE_METHOD, Reachability};
pub use settings::ClientSettings;
pub use stats::ClientStats;

/// May a failure whose outcome is unknown be repeated?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: every transient failure is retried.
    Safe,
    /// Creates: only failures that prove the call did not run (503 `QUERY_LIMIT_EXCEEDED`, a
    /// connection that never opened) are retried; the rest return at once.
    Unsafe,
}

/// The Bitrix24 REST client of one portal. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The webhook URL in force; its origin changes when the portal is renamed (302).
    base: RwLock<Url>,
    /// The webhook URL as configured: what a redirect is judged against, and what `/readyz`
    /// compares the address in force with.
    configured: Url,
    /// The webhook path (`/rest/<user>/<secret>/`), to scrub from any message.
    secret_path: String,
    /// The path's last segment (the secret code), lower case: a redirect whose host contains it
    /// is not shown.
    secret_code: String,
    max_response: usize,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    bucket: Bucket,
    methods: Mutex<HashMap<String, MethodState>>,
    counters: Counters,
    /// Calls waiting for a `batch` request, and the dispatcher that packs them.
    outbox: outbox::Outbox,
    /// Whether the portal answers at all, and the probe while it does not.
    reach: reach::Reach,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("portal", &self.portal_origin())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client; fails only on unusable settings.
    pub fn new(settings: ClientSettings) -> Result<Client, ClientError> {
        let invalid = |message: &str| Err(ClientError::InvalidSettings(message.to_owned()));
        let mut base = settings.webhook_url.clone();
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return invalid("webhook_url must be an http(s) URL with a host");
        }
        if base.query().is_some() || base.fragment().is_some() {
            return invalid("webhook_url must not have a query or fragment");
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if !(settings.requests_per_second.is_finite() && settings.requests_per_second > 0.0) {
            return invalid("requests_per_second must be a positive number");
        }
        if settings.burst == 0 || settings.max_attempts == 0 || settings.timeout.is_zero() {
            return invalid("burst, max_attempts and timeout must be positive");
        }
        if settings.max_response == 0 {
            return invalid("max_response must be positive");
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("b24-robot/", env!("CARGO_PKG_VERSION")));
        for (host, address) in &settings.resolve {
            http = http.resolve(host, *address);
        }
        let http = http
            .build()
            .map_err(|error| ClientError::Http(error.without_url().to_string()))?;
        let secret_code = base
            .path_segments()
            .and_then(|mut segments| segments.rfind(|segment| !segment.is_empty()))
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                secret_path: base.path().to_owned(),
                secret_code,
                max_response: settings.max_response,
                configured: base.clone(),
                base: RwLock::new(base),
                max_attempts: settings.max_attempts,
                backoff_base: settings.backoff_base,
                backoff_max: settings.backoff_max.max(settings.backoff_base),
                bucket: Bucket::new(settings.burst, settings.requests_per_second),
                methods: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                outbox: outbox::Outbox::default(),
                reach: reach::Reach::default(),
            }),
        })
    }

    /// `https://x.bitrix24.ru` (scheme, host and port): for links to deals. Follows renames.
    #[must_use]
    pub fn portal_origin(&self) -> String {
        origin_of(
            &self
                .inner
                .base
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The portal's new origin when it was renamed (a 302 followed) since the client was built,
    /// until `portal.webhook_url` says so; `None` while the configured address is in force.
    #[must_use]
    pub fn renamed_to(&self) -> Option<String> {
        let now = self.portal_origin();
        (now != origin_of(&self.inner.configured)).then_some(now)
    }

    /// One REST call, with the bucket, retries, parking and renames.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        retry: Retry,
    ) -> Result<Response, CallError> {
        let result = self.call_counted(method, params, retry, None).await;
        self.count_call(method, &result);
        result
    }

    /// One call built by [`super::calls`]: [`Client::call`] with its method and parameters.
    pub async fn send(&self, call: BatchCall, retry: Retry) -> Result<Response, CallError> {
        self.call(&call.method, call.params, retry).await
    }
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

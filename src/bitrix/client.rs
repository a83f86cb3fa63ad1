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

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::bucket::Bucket;
use super::envelope::{CallTime, Parsed, Response, parse_batch, parse_http};
use super::error::{ApiError, CallError, ClientError, ErrorKind};
use super::query::php_query;
use super::rename;
use super::retry::{Jitter, backoff};
use crate::text::{ERROR_TEXT_MAX, cut};

/// Most sub-calls one `batch` may carry.
pub const BATCH_LIMIT: usize = 50;
/// The shortest park after a 429, as Bitrix24's own SDK does.
const MIN_PARK: Duration = Duration::from_secs(10);
/// A `Retry::Safe` call waits out a park shorter than this instead of failing.
const SHORT_PARK: Duration = Duration::from_secs(2);
/// The longest park: a reset further away than Bitrix24's ten-minute window is not believed.
const MAX_PARK: Duration = Duration::from_secs(15 * 60);
/// Portal renames followed within one call.
const MAX_REDIRECTS: u32 = 3;
/// Most `(method, outcome)` pairs counted apart in [`Client::call_counts`]; the methods are the
/// service's own, this only bounds the worst case. New pairs past it count as method `other`.
const MAX_COUNTED_CALLS: usize = 256;
/// Pages `list_all` reads at most (50 items each): it is for catalogs, not for deals.
const MAX_PAGES: usize = 2_000;

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

/// May a failure whose outcome is unknown be repeated?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: every transient failure is retried.
    Safe,
    /// Creates: only failures that prove the call did not run (503 `QUERY_LIMIT_EXCEEDED`, a
    /// connection that never opened) are retried; the rest return at once.
    Unsafe,
}

/// One sub-call of [`Client::batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCall {
    pub method: String,
    /// A JSON object; sent as a PHP query string.
    pub params: Value,
}

impl BatchCall {
    #[must_use]
    pub fn new(method: impl Into<String>, params: Value) -> Self {
        Self {
            method: method.into(),
            params,
        }
    }
}

/// Counters since the client was built, and the bucket now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    /// HTTP requests sent (a batch is one).
    pub http_requests: u64,
    /// 503 `QUERY_LIMIT_EXCEEDED` answers.
    pub rejected_503: u64,
    /// 429 `OPERATION_TIME_LIMIT` answers, top-level or per sub-call.
    pub rejected_429: u64,
    /// HTTP requests repeated after a failure.
    pub retries: u64,
    /// Portal renames (302) followed.
    pub redirects: u64,
    /// Redirects refused: not a portal rename.
    pub redirects_refused: u64,
    /// Answers longer than `max_response`, not read.
    pub answers_too_large: u64,
    /// Our estimate of the portal's request counter.
    pub bucket_level: f64,
    /// Capacity and drain rate in force (lowered by 503s).
    pub bucket_capacity: f64,
    pub bucket_rate: f64,
}

#[derive(Default)]
struct Counters {
    http_requests: AtomicU64,
    rejected_503: AtomicU64,
    rejected_429: AtomicU64,
    retries: AtomicU64,
    redirects: AtomicU64,
    redirects_refused: AtomicU64,
    answers_too_large: AtomicU64,
    /// Calls (batch commands included) by method and outcome, for the metrics.
    calls: Mutex<HashMap<(String, &'static str), u64>>,
}

/// What we know of one method's operating limit.
#[derive(Debug, Default, Clone, Copy)]
struct MethodState {
    /// The latest `operating_reset_at` seen for it, Unix seconds.
    reset_at: Option<f64>,
    /// Set by a 429: calls fail fast until then.
    parked_until: Option<SystemTime>,
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
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("portal", &self.portal_origin())
            .finish_non_exhaustive()
    }
}

/// What one HTTP exchange gave.
enum Exchange {
    Answer(Parsed),
    Moved(Url),
    Failed(CallError),
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

    /// Counters and the bucket now.
    #[must_use]
    pub fn stats(&self) -> ClientStats {
        let counters = &self.inner.counters;
        let (level, capacity, rate) = self
            .inner
            .bucket
            .with(|core| (core.level(Instant::now()), core.capacity(), core.rate()));
        ClientStats {
            http_requests: counters.http_requests.load(Ordering::Relaxed),
            rejected_503: counters.rejected_503.load(Ordering::Relaxed),
            rejected_429: counters.rejected_429.load(Ordering::Relaxed),
            retries: counters.retries.load(Ordering::Relaxed),
            redirects: counters.redirects.load(Ordering::Relaxed),
            redirects_refused: counters.redirects_refused.load(Ordering::Relaxed),
            answers_too_large: counters.answers_too_large.load(Ordering::Relaxed),
            bucket_level: level,
            bucket_capacity: capacity,
            bucket_rate: rate,
        }
    }

    /// Calls so far by method and outcome (`ok` or the [`ErrorKind`] of the failure), sorted; a
    /// batch counts as `batch` and each of its commands by its own method.
    #[must_use]
    pub fn call_counts(&self) -> Vec<(String, &'static str, u64)> {
        let calls = self
            .inner
            .counters
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut counts: Vec<_> = calls
            .iter()
            .map(|((method, outcome), n)| (method.clone(), *outcome, *n))
            .collect();
        counts.sort();
        counts
    }

    fn count_call(&self, method: &str, result: &Result<Response, CallError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(error) => error.kind().label(),
        };
        let mut calls = self
            .inner
            .counters
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let known = calls.contains_key(&(method.to_owned(), outcome));
        let method = if known || calls.len() < MAX_COUNTED_CALLS {
            method
        } else {
            "other"
        };
        *calls.entry((method.to_owned(), outcome)).or_insert(0) += 1;
    }

    /// When `method` is parked after a 429, until when.
    #[must_use]
    pub fn parked_until(&self, method: &str) -> Option<SystemTime> {
        let now = SystemTime::now();
        self.methods()
            .get(method)
            .and_then(|state| state.parked_until)
            .filter(|until| *until > now)
    }

    /// One REST call, with the bucket, retries, parking and renames.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        retry: Retry,
    ) -> Result<Response, CallError> {
        let result = self.call_counted(method, params, retry).await;
        self.count_call(method, &result);
        result
    }

    /// One call built by [`super::calls`]: [`Client::call`] with its method and parameters.
    pub async fn send(&self, call: BatchCall, retry: Retry) -> Result<Response, CallError> {
        self.call(&call.method, call.params, retry).await
    }

    async fn call_counted(
        &self,
        method: &str,
        params: Value,
        retry: Retry,
    ) -> Result<Response, CallError> {
        let mut attempts = 0;
        let mut redirects = 0;
        loop {
            self.wait_if_parked(method, retry).await?;
            let permit = self.inner.bucket.acquire().await;
            self.inner
                .counters
                .http_requests
                .fetch_add(1, Ordering::Relaxed);
            let error = match self.exchange(method, &params).await {
                Exchange::Moved(location) => {
                    permit.accepted();
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(CallError::Malformed {
                            method: method.to_owned(),
                            message: "too many portal renames (302) in a row".into(),
                        });
                    }
                    self.follow(method, &location)?;
                    continue;
                }
                Exchange::Answer(Parsed::Success(response)) => {
                    permit.accepted();
                    self.remember_time(method, response.time.as_ref());
                    return Ok(response);
                }
                Exchange::Answer(Parsed::Error(mut error)) => {
                    if error.is_query_limit() {
                        let adapted = permit.rejected();
                        self.inner
                            .counters
                            .rejected_503
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            method,
                            adapted,
                            "portal refused a request: 503 QUERY_LIMIT_EXCEEDED"
                        );
                    } else {
                        permit.accepted();
                    }
                    if error.is_operation_limit() {
                        error.reset_at = Some(self.park(method));
                    }
                    CallError::Api {
                        method: method.to_owned(),
                        error,
                    }
                }
                Exchange::Answer(Parsed::Malformed(message)) => {
                    permit.accepted();
                    CallError::Malformed {
                        method: method.to_owned(),
                        message,
                    }
                }
                Exchange::Failed(error) => {
                    // No answer: free the slot in flight before backing off.
                    drop(permit);
                    error
                }
            };
            attempts += 1;
            if attempts >= self.inner.max_attempts || !should_retry(&error, retry) {
                return Err(error);
            }
            self.inner.counters.retries.fetch_add(1, Ordering::Relaxed);
            let delay = self.backoff(attempts - 1);
            tracing::debug!(method, attempt = attempts, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
            // A 503 also waits for the bucket, which is full now: `acquire` does that.
            tokio::time::sleep(delay).await;
        }
    }

    /// Many calls in as few HTTP requests as possible: chunks of at most 50 sub-calls, one
    /// `batch` each (`halt=0`, commands keyed `c0`, `c1`, ... in order). One result per input,
    /// in input order. A chunk's own failure is returned for each of its sub-calls; a sub-call
    /// of a parked method is not sent and gets [`CallError::MethodParked`].
    pub async fn batch(
        &self,
        calls: Vec<BatchCall>,
        retry: Retry,
    ) -> Vec<Result<Response, CallError>> {
        let mut results: Vec<Option<Result<Response, CallError>>> =
            (0..calls.len()).map(|_| None).collect();
        let mut pending = Vec::new();
        for (index, call) in calls.into_iter().enumerate() {
            match self.parked_until(&call.method) {
                Some(until) => {
                    results[index] = Some(Err(CallError::MethodParked {
                        method: call.method,
                        until,
                    }))
                }
                None => pending.push((index, call)),
            }
        }
        let mut chunks = tokio::task::JoinSet::new();
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(BATCH_LIMIT));
            let chunk = std::mem::replace(&mut pending, rest);
            let client = self.clone();
            chunks.spawn(async move { client.batch_chunk(chunk, retry).await });
        }
        while let Some(done) = chunks.join_next().await {
            match done {
                Ok(outcomes) => {
                    for (index, outcome) in outcomes {
                        results[index] = Some(outcome);
                    }
                }
                // A chunk task only ends early if it panicked: its slots stay empty below.
                Err(error) => tracing::error!(error = %error, "batch chunk task failed"),
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(CallError::Malformed {
                        method: "batch".into(),
                        message: "the batch chunk was lost".into(),
                    })
                })
            })
            .collect()
    }

    /// Every item of a list method, following `next`; for small lists (catalogs). `items_key`
    /// names the array inside `result` (`Some("items")` for `crm.item.list`), `None` when
    /// `result` is the array.
    pub async fn list_all(
        &self,
        method: &str,
        params: Value,
        items_key: Option<&str>,
    ) -> Result<Vec<Value>, CallError> {
        let mut params = match params {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => {
                return Err(CallError::Api {
                    method: method.to_owned(),
                    error: ApiError::new(
                        0,
                        "INVALID_PARAMS",
                        "list parameters must be a JSON object",
                    ),
                });
            }
        };
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .call(method, Value::Object(params.clone()), Retry::Safe)
                .await?;
            let page = match items_key {
                Some(key) => response.result.get(key).cloned(),
                None => Some(response.result),
            };
            match page {
                Some(Value::Array(page)) => items.extend(page),
                Some(Value::Object(page)) => items.extend(page.into_iter().map(|(_, item)| item)),
                _ => {
                    return Err(CallError::Malformed {
                        method: method.to_owned(),
                        message: "a list page without an array of items".into(),
                    });
                }
            }
            let current = params.get("start").and_then(Value::as_u64);
            match response.next {
                Some(next) if Some(next) != current => {
                    params.insert("start".into(), Value::from(next));
                }
                _ => return Ok(items),
            }
        }
        Err(CallError::Malformed {
            method: method.to_owned(),
            message: format!("more than {MAX_PAGES} pages"),
        })
    }

    async fn batch_chunk(
        &self,
        chunk: Vec<(usize, BatchCall)>,
        retry: Retry,
    ) -> Vec<(usize, Result<Response, CallError>)> {
        let keys: Vec<String> = (0..chunk.len()).map(|n| format!("c{n}")).collect();
        let mut cmd = Map::new();
        for (key, (_, call)) in keys.iter().zip(&chunk) {
            let query = php_query(&call.params);
            let command = if query.is_empty() {
                call.method.clone()
            } else {
                format!("{}?{query}", call.method)
            };
            cmd.insert(key.clone(), Value::String(command));
        }
        let body = serde_json::json!({"halt": 0, "cmd": cmd});
        let answer = self.call("batch", body, retry).await;
        let parsed = match answer {
            Err(error) => {
                return chunk
                    .into_iter()
                    .map(|(index, call)| (index, Err(error.for_method(&call.method))))
                    .collect();
            }
            Ok(response) => parse_batch(200, &response.result, &keys),
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(message) => {
                return chunk
                    .into_iter()
                    .map(|(index, call)| {
                        (
                            index,
                            Err(CallError::Malformed {
                                method: call.method,
                                message: message.clone(),
                            }),
                        )
                    })
                    .collect();
            }
        };
        chunk
            .into_iter()
            .zip(parsed)
            .map(|((index, call), (outcome, time))| {
                self.remember_time(&call.method, time.as_ref());
                let result = match outcome {
                    Parsed::Success(response) => Ok(response),
                    Parsed::Error(mut error) => {
                        if error.is_operation_limit() {
                            error.reset_at = Some(self.park(&call.method));
                        }
                        Err(CallError::Api {
                            method: call.method.clone(),
                            error,
                        })
                    }
                    Parsed::Malformed(message) => Err(CallError::Malformed {
                        method: call.method.clone(),
                        message,
                    }),
                };
                self.count_call(&call.method, &result);
                (index, result)
            })
            .collect()
    }

    /// One POST, redirects not followed.
    async fn exchange(&self, method: &str, params: &Value) -> Exchange {
        let url = {
            let base = self
                .inner
                .base
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            base.join(&format!("{method}.json"))
        };
        let url = match url {
            Ok(url) => url,
            Err(_) => {
                return Exchange::Failed(CallError::Api {
                    method: method.to_owned(),
                    error: ApiError::new(
                        0,
                        "INVALID_METHOD_NAME",
                        "the method name does not fit in a URL",
                    ),
                });
            }
        };
        let started = Instant::now();
        let sent = self
            .inner
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(params)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Exchange::Failed(self.transport_error(method, &error, !error.is_connect()));
            }
        };
        let status = response.status().as_u16();
        if response.status().is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| Url::parse(value).ok())
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some());
            return match location {
                Some(location) => Exchange::Moved(location),
                None => Exchange::Failed(CallError::Malformed {
                    method: method.to_owned(),
                    message: format!("HTTP {status} without a usable Location"),
                }),
            };
        }
        let body = match self.read_body(method, response).await {
            Ok(body) => body,
            Err(error) => return Exchange::Failed(error),
        };
        tracing::debug!(
            method,
            status,
            duration_ms = started.elapsed().as_millis() as u64,
            "bitrix24 call"
        );
        Exchange::Answer(parse_http(status, &body))
    }

    /// The whole body, as long as it is at most `max_response` bytes: the announced length is
    /// checked first, then the bytes as they come, so a longer answer is never held in memory.
    async fn read_body(
        &self,
        method: &str,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, CallError> {
        let limit = self.inner.max_response;
        let announced = response.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(self.too_large(method));
        }
        let mut body = Vec::with_capacity(announced as usize);
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) if body.len() + chunk.len() > limit => {
                    return Err(self.too_large(method));
                }
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(body),
                Err(error) => return Err(self.transport_error(method, &error, true)),
            }
        }
    }

    fn too_large(&self, method: &str) -> CallError {
        self.inner
            .counters
            .answers_too_large
            .fetch_add(1, Ordering::Relaxed);
        let limit = self.inner.max_response;
        tracing::warn!(
            method,
            limit,
            "answer larger than portal.max_response: not read, the call failed"
        );
        CallError::TooLarge {
            method: method.to_owned(),
            limit,
        }
    }

    fn transport_error(&self, method: &str, error: &reqwest::Error, sent: bool) -> CallError {
        let mut message = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(error);
        while let Some(current) = source {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&current.to_string());
            source = current.source();
        }
        let message = self.scrub(&message.replace(
            &error.url().map(Url::to_string).unwrap_or_default(),
            "<webhook>",
        ));
        let message = if error.is_timeout() {
            format!("timed out: {message}")
        } else {
            message
        };
        CallError::Transport {
            method: method.to_owned(),
            message: cut(&message, ERROR_TEXT_MAX).into_owned(),
            sent,
        }
    }

    /// Removes the webhook path (with its secret) from a message, whatever put it there.
    fn scrub(&self, message: &str) -> String {
        let secret = self.inner.secret_path.trim_matches('/');
        if secret.is_empty() {
            message.to_owned()
        } else {
            message.replace(secret, "<webhook>")
        }
    }

    /// Follows a redirect if it is a portal rename: from then on every call goes to the new
    /// origin, with the same webhook path. Otherwise the call fails, nothing is sent there.
    fn follow(&self, method: &str, location: &Url) -> Result<(), CallError> {
        let mut base = self
            .inner
            .base
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let old = origin_of(&base);
        if let Err(refusal) = rename::judge(&self.inner.configured, &base, location) {
            drop(base);
            self.inner
                .counters
                .redirects_refused
                .fetch_add(1, Ordering::Relaxed);
            let target = self.shown_origin(location);
            tracing::warn!(method, from = %old, to = %target, reason = refusal.reason(),
                "redirect refused: not a portal rename (the call failed; check the portal and portal.webhook_url)");
            return Err(CallError::RedirectRefused {
                method: method.to_owned(),
                target,
                reason: refusal.reason(),
            });
        }
        let mut moved = base.clone();
        let switched = moved.set_scheme(location.scheme()).is_ok()
            && moved.set_host(location.host_str()).is_ok()
            && moved.set_port(location.port()).is_ok();
        if switched && origin_of(&moved) != old {
            tracing::warn!(from = %old, to = %origin_of(&moved),
                "portal renamed (302): using the new address (set portal.webhook_url to it; /readyz shows it until then)");
            *base = moved;
            self.inner
                .counters
                .redirects
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A redirect's origin for errors and logs; hidden when its host names the secret code (a
    /// hostile portal knows the code: it was sent the path).
    fn shown_origin(&self, location: &Url) -> String {
        let origin = origin_of(location);
        let code = &self.inner.secret_code;
        if !code.is_empty() && origin.to_ascii_lowercase().contains(code.as_str()) {
            "<a host naming the webhook's secret>".to_owned()
        } else {
            origin
        }
    }

    fn methods(&self) -> std::sync::MutexGuard<'_, HashMap<String, MethodState>> {
        self.inner
            .methods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remember_time(&self, method: &str, time: Option<&CallTime>) {
        if let Some(reset_at) = time.and_then(|time| time.operating_reset_at) {
            self.methods()
                .entry(method.to_owned())
                .or_default()
                .reset_at = Some(reset_at);
        }
    }

    /// Parks `method` after a 429 until its last known reset, at least [`MIN_PARK`].
    fn park(&self, method: &str) -> SystemTime {
        let now = SystemTime::now();
        let mut methods = self.methods();
        let state = methods.entry(method.to_owned()).or_default();
        let until = park_until(now, state.reset_at);
        state.parked_until = Some(state.parked_until.map_or(until, |old| old.max(until)));
        drop(methods);
        self.inner
            .counters
            .rejected_429
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            method,
            park_secs = until.duration_since(now).unwrap_or_default().as_secs(),
            "method parked: 429 OPERATION_TIME_LIMIT"
        );
        until
    }

    async fn wait_if_parked(&self, method: &str, retry: Retry) -> Result<(), CallError> {
        let Some(until) = self.parked_until(method) else {
            return Ok(());
        };
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        if retry == Retry::Safe && left < SHORT_PARK {
            tokio::time::sleep(left).await;
            return Ok(());
        }
        Err(CallError::MethodParked {
            method: method.to_owned(),
            until,
        })
    }

    /// Full jitter: uniform in `[0, min(max, base * 2^n)]`.
    fn backoff(&self, retry: u32) -> Duration {
        backoff(
            self.inner.backoff_base,
            self.inner.backoff_max,
            retry,
            Jitter::Full,
        )
    }
}

/// Until when a method is parked after a 429: its last known `operating_reset_at`, at least
/// [`MIN_PARK`] from `now`, at most [`MAX_PARK`].
///
/// `operating_reset_at` comes from the portal's answer. A huge value used to panic here
/// (`Duration::from_secs_f64` and `SystemTime + Duration` both panic on overflow; found by the
/// envelope property test): it is now capped, as Bitrix24's own window is ten minutes.
pub(crate) fn park_until(now: SystemTime, reset_at: Option<f64>) -> SystemTime {
    let earliest = now + MIN_PARK;
    let latest = now + MAX_PARK;
    let reset = reset_at
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds)
                .ok()
                .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
                .unwrap_or(latest)
        });
    reset.map_or(earliest, |reset| reset.clamp(earliest, latest))
}

/// Whether the client repeats the call itself.
fn should_retry(error: &CallError, retry: Retry) -> bool {
    match error {
        CallError::Api { error, .. } if error.is_query_limit() => true,
        CallError::Transport { sent: false, .. } => true,
        // The same answer again a moment later: the caller's retries, further apart, decide.
        CallError::TooLarge { .. } => false,
        _ => retry == Retry::Safe && error.kind() == ErrorKind::Transient,
    }
}

fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

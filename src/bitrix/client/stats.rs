//! What the client counts for `/metrics`: requests, refusals, retries, redirects, and calls by
//! method and outcome.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::Client;
use crate::bitrix::envelope::Response;
use crate::bitrix::error::CallError;

/// Most `(method, outcome)` pairs counted apart in [`Client::call_counts`]; the methods are the
/// service's own, this only bounds the worst case. New pairs past it count as method `other`.
const MAX_COUNTED_CALLS: usize = 256;

/// Counters since the client was built, and the bucket now.
#[derive(Debug, Clone, PartialEq)]
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
    /// `batch` requests the outbox sent, and the calls they carried (their ratio is how full
    /// the requests were).
    pub outbox_requests: u64,
    pub outbox_calls: u64,
    /// Whether the portal answers, since when not, outages and probes so far.
    pub reach: super::Reachability,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) http_requests: AtomicU64,
    pub(super) rejected_503: AtomicU64,
    pub(super) rejected_429: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) redirects: AtomicU64,
    pub(super) redirects_refused: AtomicU64,
    pub(super) answers_too_large: AtomicU64,
    /// Calls (batch commands included) by method and outcome, for the metrics.
    pub(super) calls: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Client {
    /// Adds one to a counter.
    pub(super) fn bump(&self, counter: impl FnOnce(&Counters) -> &AtomicU64) {
        counter(&self.inner.counters).fetch_add(1, Ordering::Relaxed);
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
            outbox_requests: self.inner.outbox.requests.load(Ordering::Relaxed),
            outbox_calls: self.inner.outbox.calls.load(Ordering::Relaxed),
            reach: self.reachability(),
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

    pub(super) fn count_call(&self, method: &str, result: &Result<Response, CallError>) {
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
}

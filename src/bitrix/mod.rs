//! The Bitrix24 REST client: envelopes and errors, `batch`, paging, the leaky bucket, retries.
//!
//! Everything the service says to the portal goes through one [`Client`] per portal:
//!
//! - `query` builds the PHP query strings of `batch` sub-calls;
//! - `envelope` reads answers, lenient where Bitrix24 is loose (`error` as number or `""`,
//!   optional `time`, `[]` for empty maps);
//! - `error` says what a failure means ([`ErrorKind`]) and whether its outcome is unknown;
//! - `bucket` paces requests like the portal's own counter and learns from 503s;
//! - `client` ties them together: retries with jittered backoff, 429 parking per method,
//!   302 re-posting to a renamed portal;
//! - `rename` says which redirects are portal renames (the others are refused);
//! - `retry` is the one backoff, the client's between attempts and the worker's between jobs;
//! - `calls` builds each CRM call the service makes, in one place.
//!
//! The webhook URL holds a secret: no error, log line or `Debug` output of this module shows more
//! of it than the scheme and host.

mod bucket;
pub mod calls;
mod client;
mod envelope;
mod error;
#[cfg(test)]
mod fuzz;
pub mod query;
mod rename;
mod retry;

#[cfg(test)]
mod tests;

pub use client::{
    BATCH_LIMIT, BatchCall, Client, ClientSettings, ClientStats, DOWN_AFTER, PROBE_MAX,
    PROBE_METHOD, Reachability, Retry,
};
pub use envelope::{CallTime, Response};
pub use error::{ApiError, CallError, ClientError, ErrorKind};
pub use query::php_query;
pub use retry::{Jitter, backoff};

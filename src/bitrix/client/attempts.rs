//! One call's attempts: a bucket token each, the answer read, and a retry after a jittered
//! backoff when the failure allows it ([`Retry`]); 302 renames are followed on the way.

use std::time::Duration;

use serde_json::Value;

use super::reach::Sign;
use super::wire::Exchange;
use super::{Client, Retry};
use crate::bitrix::bucket::Permit;
use crate::bitrix::envelope::{Parsed, Response};
use crate::bitrix::error::{CallError, ErrorKind};
use crate::bitrix::retry::{Jitter, backoff};

/// Portal renames followed within one call.
const MAX_REDIRECTS: u32 = 3;

impl Client {
    pub(super) async fn call_counted(
        &self,
        method: &str,
        params: Value,
        retry: Retry,
        mut first: Option<Permit<'_>>,
    ) -> Result<Response, CallError> {
        let mut attempts = 0;
        let mut redirects = 0;
        loop {
            self.refuse_if_down(method)?;
            self.wait_if_parked(method, retry).await?;
            // The first attempt may come with its token (the outbox took it); the others wait.
            let permit = match first.take() {
                Some(permit) => permit,
                None => self.inner.bucket.acquire().await,
            };
            self.bump(|c| &c.http_requests);
            let exchange = self.exchange(method, &params).await;
            self.note_reach(Sign::of(&exchange));
            let error = match exchange {
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
                        self.bump(|c| &c.rejected_503);
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
            self.bump(|c| &c.retries);
            let delay = self.backoff(attempts - 1);
            tracing::debug!(method, attempt = attempts, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
            // A 503 also waits for the bucket, which is full now: `acquire` does that.
            tokio::time::sleep(delay).await;
        }
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

//! [`Client::batch`]: many calls through the outbox, answered one result per call in input
//! order; and one `batch` request of at most 50 sub-calls, which the outbox sends.

use serde_json::{Map, Value};

use super::{Client, Retry};
use crate::bitrix::bucket::Permit;
use crate::bitrix::envelope::{Parsed, Response, parse_batch};
use crate::bitrix::error::CallError;
use crate::bitrix::query::php_query;

/// Most sub-calls one `batch` may carry.
pub const BATCH_LIMIT: usize = 50;

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

impl Client {
    /// Many calls in as few HTTP requests as possible: they join the outbox (see
    /// [`super::outbox`]), which packs the calls of every caller into `batch` requests of at
    /// most 50 sub-calls (`halt=0`, commands keyed `c0`, `c1`, ... in order). One result per
    /// input, in input order. A request's own failure is returned for each of its sub-calls; a
    /// sub-call of a parked method is not sent and gets [`CallError::MethodParked`].
    pub async fn batch(
        &self,
        calls: Vec<BatchCall>,
        retry: Retry,
    ) -> Vec<Result<Response, CallError>> {
        let mut results: Vec<Option<Result<Response, CallError>>> =
            (0..calls.len()).map(|_| None).collect();
        let mut pending = Vec::new();
        let mut slots = Vec::new();
        for (index, call) in calls.into_iter().enumerate() {
            match self.parked_until(&call.method) {
                Some(until) => {
                    results[index] = Some(Err(CallError::MethodParked {
                        method: call.method,
                        until,
                    }))
                }
                None => {
                    slots.push((index, call.method.clone()));
                    pending.push((call, retry));
                }
            }
        }
        let answers = self.enqueue(pending);
        for ((index, method), answer) in slots.into_iter().zip(answers) {
            // The dispatcher dropped the call unanswered only if its runtime went away.
            results[index] = Some(answer.await.unwrap_or_else(|_| {
                Err(CallError::Malformed {
                    method,
                    message: "the batch request was lost".into(),
                })
            }));
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

    /// One `batch` request of at most 50 calls; `permit` is the token the outbox took for it.
    pub(super) async fn batch_chunk(
        &self,
        chunk: Vec<(usize, BatchCall)>,
        retry: Retry,
        permit: Option<Permit<'_>>,
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
        let answer = self.call_counted("batch", body, retry, permit).await;
        self.count_call("batch", &answer);
        let parsed = match answer {
            Err(error) => return fail_each(chunk, &error),
            Ok(response) => parse_batch(200, &response.result, &keys),
        };
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(message) => {
                let error = CallError::Malformed {
                    method: "batch".into(),
                    message,
                };
                return fail_each(chunk, &error);
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
}

/// A chunk's own failure, for each of its sub-calls under its own method.
fn fail_each(
    chunk: Vec<(usize, BatchCall)>,
    error: &CallError,
) -> Vec<(usize, Result<Response, CallError>)> {
    chunk
        .into_iter()
        .map(|(index, call)| (index, Err(error.for_method(&call.method))))
        .collect()
}

//! One HTTP exchange: the POST of `<webhook><method>.json`, redirects not followed, the body
//! read up to `max_response`; transport errors told without the webhook's secret.

use std::sync::PoisonError;

use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::Client;
use crate::bitrix::envelope::{Parsed, parse_http};
use crate::bitrix::error::{ApiError, CallError};
use crate::text::{ERROR_TEXT_MAX, cut};

/// What one HTTP exchange gave.
pub(super) enum Exchange {
    Answer(Parsed),
    Moved(Url),
    Failed(CallError),
}

impl Client {
    /// One POST, redirects not followed.
    pub(super) async fn exchange(&self, method: &str, params: &Value) -> Exchange {
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
        self.bump(|c| &c.answers_too_large);
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
}

//! The errors of the REST client, and what each one tells the caller to do.
//!
//! Bitrix24 answers an error with `{"error": "<code>", "error_description": "<text>"}` and an
//! HTTP status; the code may be empty (the deprecated `crm.deal.*` methods say `"error": ""`,
//! `"error_description": "Not found"`) or even a number. [`CallError::kind`] turns all of that
//! into one [`ErrorKind`], so a caller decides by kind, never by string. No error here ever
//! carries the webhook URL: it holds the secret.

use std::time::{Duration, SystemTime};

/// A failure to build the client: the settings cannot work. Fix the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A setting is out of range or the webhook URL has the wrong shape.
    #[error("invalid client settings: {0}")]
    InvalidSettings(String),
    /// The HTTP client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// An error envelope the portal answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status of the answer that carried the envelope (for a `batch` sub-call, the
    /// status of the whole batch, normally 200).
    pub http_status: u16,
    /// The `error` field as sent: may be empty, or a number written as text (`"0"`, `"100"`).
    pub code: String,
    /// `error_description`, for logs and operators; not for end users.
    pub description: String,
    /// For `OPERATION_TIME_LIMIT`: until when the client keeps the method parked.
    pub reset_at: Option<SystemTime>,
}

impl ApiError {
    /// An envelope without a reset time.
    #[must_use]
    pub fn new(http_status: u16, code: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            http_status,
            code: code.into(),
            description: description.into(),
            reset_at: None,
        }
    }

    fn is(&self, code: &str) -> bool {
        self.code.eq_ignore_ascii_case(code)
    }

    /// 503 `QUERY_LIMIT_EXCEEDED`: the leaky bucket refused the request, it did not run.
    #[must_use]
    pub fn is_query_limit(&self) -> bool {
        self.is("QUERY_LIMIT_EXCEEDED")
    }

    /// 429 `OPERATION_TIME_LIMIT`: the method is blocked for a while.
    #[must_use]
    pub fn is_operation_limit(&self) -> bool {
        self.is("OPERATION_TIME_LIMIT") || (self.http_status == 429 && self.code.is_empty())
    }

    /// What the caller should make of this envelope.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        const AUTH: &[&str] = &[
            "NO_AUTH_FOUND",
            "expired_token",
            "INVALID_CREDENTIALS",
            "invalid_token",
            "invalid_grant",
            "WRONG_AUTH_TYPE",
            "authorization_error",
        ];
        const PERMISSION: &[&str] = &[
            "ACCESS_DENIED",
            "insufficient_scope",
            "user_access_error",
            "allowed_only_intranet_user",
        ];
        const NOT_FOUND: &[&str] = &["NOT_FOUND", "ERROR_NOT_FOUND", "OWNER_NOT_FOUND"];
        if self.is_query_limit() {
            return ErrorKind::RateLimited;
        }
        if self.is_operation_limit() {
            return ErrorKind::OperationLimit {
                reset_at: self
                    .reset_at
                    .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(10)),
            };
        }
        if self.is("OVERLOAD_LIMIT") || self.is("PORTAL_DELETED") {
            return ErrorKind::Blocked;
        }
        if AUTH.iter().any(|code| self.is(code)) {
            return ErrorKind::Auth;
        }
        if PERMISSION.iter().any(|code| self.is(code)) {
            return ErrorKind::Permission;
        }
        if NOT_FOUND.iter().any(|code| self.is(code)) {
            return ErrorKind::NotFound;
        }
        if self.code.is_empty() || self.code == "-" {
            // The deprecated crm.deal.* methods only say what happened in the description.
            let text = self.description.to_lowercase();
            if text.contains("not found") {
                return ErrorKind::NotFound;
            }
            if text.contains("access denied") || text.contains("permission") {
                return ErrorKind::Permission;
            }
        }
        match self.http_status {
            500..=599 => ErrorKind::Transient,
            401 => ErrorKind::Auth,
            403 => ErrorKind::Permission,
            _ => ErrorKind::Invalid,
        }
    }
}

/// What a failed call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 503 `QUERY_LIMIT_EXCEEDED` still after the client's retries: try again later.
    RateLimited,
    /// 429 `OPERATION_TIME_LIMIT`, or the method is parked: try again at `reset_at`.
    OperationLimit { reset_at: SystemTime },
    /// 5xx, network trouble or a malformed answer: try again later (see `outcome_unknown`).
    Transient,
    /// The entity does not exist (`NOT_FOUND`, `""` + "Not found", ...).
    NotFound,
    /// The webhook is wrong or expired: an operator must fix the configuration.
    Auth,
    /// The webhook's user or scopes may not do this: an operator must grant it.
    Permission,
    /// The request is wrong (validation, unknown method, batch errors): retrying will not help.
    Invalid,
    /// The portal's REST API is blocked (`OVERLOAD_LIMIT`) or the portal is gone.
    Blocked,
    /// The portal redirected to an address that is not a rename of it (another host, port or
    /// scheme): an operator must check the portal and `portal.webhook_url`.
    RedirectRefused,
}

impl ErrorKind {
    /// A short snake_case name, for metrics labels.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::OperationLimit { .. } => "operation_limit",
            ErrorKind::Transient => "transient",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Blocked => "blocked",
            ErrorKind::RedirectRefused => "redirect_refused",
        }
    }
}

/// A failed REST call. The message never contains the webhook URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The portal answered an error envelope.
    #[error("{method}: HTTP {} {:?}: {}", error.http_status, error.code, error.description)]
    Api { method: String, error: ApiError },
    /// Network error or timeout; `sent` is false only when the request provably never left
    /// (connection refused, DNS).
    #[error("{method}: transport error (sent: {sent}): {message}")]
    Transport {
        method: String,
        message: String,
        sent: bool,
    },
    /// The answer was not JSON, had no `result`, or had the wrong shape.
    #[error("{method}: malformed answer: {message}")]
    Malformed { method: String, message: String },
    /// The method is parked after a 429 and was not sent.
    #[error("{method}: parked after OPERATION_TIME_LIMIT until {until:?}")]
    MethodParked { method: String, until: SystemTime },
    /// The portal answered a redirect that is not a rename of it (see `rename`): not followed,
    /// so the call did not run anywhere. `target` is the redirect's origin only (its path may
    /// hold the webhook's secret), hidden when even the host names the secret.
    #[error(
        "{method}: the portal redirected to {target}, which was not followed: {reason} (if the portal was renamed, set portal.webhook_url to its new address)"
    )]
    RedirectRefused {
        method: String,
        target: String,
        reason: &'static str,
    },
    /// The answer was longer than `portal.max_response`: the rest of it was not read. The call
    /// may have run. It is not repeated at once (the answer would not be shorter a second
    /// later): the caller's own retries, further apart, decide.
    #[error("{method}: the answer is larger than portal.max_response ({limit} bytes), not read")]
    TooLarge { method: String, limit: usize },
    /// The portal has been unreachable since `since` (see the client's `reach`): the call was
    /// not sent.
    #[error("{method}: not sent: the portal is unreachable since {}", crate::text::utc(*since))]
    PortalDown { method: String, since: SystemTime },
}

impl CallError {
    /// The method the error is about.
    #[must_use]
    pub fn method(&self) -> &str {
        match self {
            Self::Api { method, .. }
            | Self::Transport { method, .. }
            | Self::Malformed { method, .. }
            | Self::MethodParked { method, .. }
            | Self::RedirectRefused { method, .. }
            | Self::TooLarge { method, .. }
            | Self::PortalDown { method, .. } => method,
        }
    }

    /// What the caller should make of it.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { error, .. } => error.kind(),
            Self::Transport { .. }
            | Self::Malformed { .. }
            | Self::TooLarge { .. }
            | Self::PortalDown { .. } => ErrorKind::Transient,
            Self::MethodParked { until, .. } => ErrorKind::OperationLimit { reset_at: *until },
            Self::RedirectRefused { .. } => ErrorKind::RedirectRefused,
        }
    }

    /// True when the same call may succeed later (reschedule it): rate and operation limits,
    /// transient failures, a parked method.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::RateLimited | ErrorKind::OperationLimit { .. } | ErrorKind::Transient
        )
    }

    /// True when the call may have run on the portal although it failed here: a request that
    /// was sent and got no answer, a 5xx other than 503 `QUERY_LIMIT_EXCEEDED` (and other than
    /// `OVERLOAD_LIMIT`/`PORTAL_DELETED`, which refuse before running), a malformed answer, an
    /// answer too large to read.
    /// Before repeating a create, look for what it may already have made.
    #[must_use]
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Transport { sent, .. } => *sent,
            Self::Malformed { .. } | Self::TooLarge { .. } => true,
            Self::Api { error, .. } => {
                (500..=599).contains(&error.http_status)
                    && !error.is_query_limit()
                    && !matches!(error.kind(), ErrorKind::Blocked)
            }
            Self::MethodParked { .. } | Self::RedirectRefused { .. } | Self::PortalDown { .. } => {
                false
            }
        }
    }

    /// The same error, reported for another method (a batch failure, per sub-call).
    #[must_use]
    pub(crate) fn for_method(&self, other: &str) -> Self {
        let mut copy = self.clone();
        match &mut copy {
            Self::Api { method, .. }
            | Self::Transport { method, .. }
            | Self::Malformed { method, .. }
            | Self::MethodParked { method, .. }
            | Self::RedirectRefused { method, .. }
            | Self::TooLarge { method, .. }
            | Self::PortalDown { method, .. } => *method = other.to_owned(),
        }
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `(status, code, description)` is classified as its kind.
    fn assert_kinds(table: &[(u16, &str, &str, ErrorKind)]) {
        for (status, code, description, want) in table {
            let got = ApiError::new(*status, *code, *description).kind();
            assert_eq!(got, *want, "{status} {code:?} {description:?}");
        }
    }

    #[test]
    fn every_code_of_the_reference_error_table_is_classified() {
        use ErrorKind::{Auth, Blocked, Invalid, Permission, RateLimited, Transient};
        assert!(matches!(
            ApiError::new(429, "OPERATION_TIME_LIMIT", "").kind(),
            ErrorKind::OperationLimit { .. }
        ));
        assert_kinds(&[
            (
                503,
                "QUERY_LIMIT_EXCEEDED",
                "Too many requests",
                RateLimited,
            ),
            (503, "OVERLOAD_LIMIT", "REST API is blocked", Blocked),
            (401, "NO_AUTH_FOUND", "Wrong authorization data", Auth),
            (401, "expired_token", "expired", Auth),
            (403, "INVALID_CREDENTIALS", "", Auth),
            (403, "insufficient_scope", "", Permission),
            (403, "ACCESS_DENIED", "commercial plans", Permission),
            (400, "ACCESS_DENIED", "", Permission),
            (403, "user_access_error", "", Permission),
            (403, "allowed_only_intranet_user", "", Permission),
            (400, "INVALID_REQUEST", "Https required", Invalid),
            (404, "ERROR_METHOD_NOT_FOUND", "", Invalid),
            (500, "INTERNAL_SERVER_ERROR", "", Transient),
            (500, "ERROR_UNEXPECTED_ANSWER", "", Transient),
            (500, "PORTAL_DELETED", "", Blocked),
            (405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "", Invalid),
            (400, "ERROR_BATCH_LENGTH_EXCEEDED", "", Invalid),
        ]);
    }

    #[test]
    fn method_level_codes_are_classified() {
        use ErrorKind::{Invalid, NotFound, Permission, Transient};
        assert_kinds(&[
            (400, "", "Not found", NotFound),
            (400, "", "ID is not defined or invalid", Invalid),
            (400, "", "Access denied", Permission),
            (400, "", "Parameter 'fields' must be array.", Invalid),
            (400, "NOT_FOUND", "Element not found", NotFound),
            (400, "ERROR_NOT_FOUND", "", NotFound),
            (400, "OWNER_NOT_FOUND", "", NotFound),
            (400, "CRM_FIELD_ERROR_VALUE_NOT_VALID", "", Invalid),
            (400, "100", "Expected iterable value", Invalid),
            (
                400,
                "-",
                "Insufficient permissions to change the stage",
                Permission,
            ),
            (400, "ERROR_CORE", "Task title is not specified", Invalid),
            (400, "WRONG_DATETIME_FORMAT", "", Invalid),
            (400, "INVALID_ARG_VALUE", "", Invalid),
            (
                400,
                "0",
                "SHIPMENT_DOCUMENT entity is not supported",
                Invalid,
            ),
            (400, "ERROR_EVENT_NOT_FOUND", "Event not found", Invalid),
            (502, "", "HTTP 502 with a non-JSON body", Transient),
        ]);
    }

    #[test]
    fn retryable_and_outcome_unknown_follow_the_kind() {
        let api = |status, code: &str| CallError::Api {
            method: "m".into(),
            error: ApiError::new(status, code, ""),
        };
        let transport = |message: &str, sent| CallError::Transport {
            method: "m".into(),
            message: message.into(),
            sent,
        };
        // (error, is_retryable, outcome_unknown)
        let table = [
            (api(503, "QUERY_LIMIT_EXCEEDED"), true, false),
            (api(500, "INTERNAL_SERVER_ERROR"), true, true),
            (api(503, "OVERLOAD_LIMIT"), false, false),
            (api(401, "NO_AUTH_FOUND"), false, false),
            (api(400, ""), false, false),
            (
                CallError::MethodParked {
                    method: "m".into(),
                    until: SystemTime::now(),
                },
                true,
                false,
            ),
            (transport("refused", false), true, false),
            (transport("timeout", true), true, true),
            (
                CallError::Malformed {
                    method: "m".into(),
                    message: "x".into(),
                },
                true,
                true,
            ),
            (
                CallError::TooLarge {
                    method: "m".into(),
                    limit: 1,
                },
                true,
                true,
            ),
        ];
        for (error, retryable, unknown) in table {
            assert_eq!(
                (error.is_retryable(), error.outcome_unknown()),
                (retryable, unknown),
                "{error}"
            );
        }
        let refused = CallError::RedirectRefused {
            method: "m".into(),
            target: "https://evil.example".into(),
            reason: "r",
        };
        assert!(!refused.is_retryable() && !refused.outcome_unknown());
        assert_eq!(refused.kind().label(), "redirect_refused");
    }
}

//! The admin API under `/admin/` (Bearer `server.admin_token`; no token configured: off, 404)
//! and the reports behind the admin commands.
//!
//! The commands (`explain`, `jobs`, `store check`) ask the running service through this API,
//! because the service holds the store's lock; when no service runs they open the store
//! themselves. Both paths build the same JSON with [`deal_report`], [`jobs_report`] and
//! [`store_check_report`], so they print the same.
//!
//! Every store call of a route runs on a blocking thread, bounded by
//! [`AdminState::store_timeout`] (503 past it): a store stuck on a failing disk holds one
//! blocking thread, never the runtime's.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;

mod backfill;
mod deals;
mod digests;
mod jobs;
mod reports;
mod store;

pub use deals::{DealReport, deal_report, format_deal_report};
pub use digests::{DigestReport, DigestText};
pub use jobs::{JobsReport, format_jobs_report, jobs_report};
pub use store::{format_store_check, store_check_report};

use crate::configuration::Secret;
use crate::store::{Store, StoreError};
use crate::worker::Scheduler;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub scheduler: Scheduler,
    pub token: Secret,
    /// The service's backfill (`/admin/backfill`).
    pub backfill: Option<crate::worker::backfill::Service>,
    /// How long a route waits for the store before answering 503.
    pub store_timeout: Duration,
}

/// The admin routes, to be merged into the service's router. With an empty token they are not
/// mounted at all.
pub fn router(state: AdminState) -> Router {
    if state.token.is_empty() {
        return Router::new();
    }
    let token = Arc::new(state.token.clone());
    Router::new()
        .route("/admin/deals/{id}", get(deals::deal))
        .route("/admin/jobs", get(jobs::jobs))
        .route("/admin/jobs/retry", post(jobs::retry_all))
        .route("/admin/jobs/{id}/retry", post(jobs::retry_one))
        .route("/admin/store/check", get(store::store_check))
        .route("/admin/digests/{name}", post(digests::run))
        .route("/admin/reports/{name}", get(reports::report))
        .route(
            "/admin/backfill",
            get(backfill::status)
                .post(backfill::start)
                .delete(backfill::cancel),
        )
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let token = token.clone();
                async move {
                    if authorized(&request, token.expose()) {
                        next.run(request).await
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            "admin token required\n",
                        )
                            .into_response()
                    }
                }
            },
        ))
}

/// `Authorization: Bearer <token>`, compared in constant time. Never from a query string.
pub(crate) fn authorized(request: &Request, token: &str) -> bool {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(p) if !token.is_empty() => p.as_bytes().ct_eq(token.as_bytes()).into(),
        _ => false,
    }
}

/// A job's state and its last error, as the reports print them: `("PARKED", ", last error: ...")`.
pub(super) fn job_state(q: &crate::store::QueuedDeal) -> (&'static str, String) {
    let state = if q.parked { "PARKED" } else { "queued" };
    let error = q
        .last_error
        .as_deref()
        .map(|e| format!(", last error: {e}"))
        .unwrap_or_default();
    (state, error)
}

/// Why a route got no answer from the store.
pub(crate) enum Unanswered {
    Store(StoreError),
    /// Not within `store_timeout` (the call goes on, on its blocking thread).
    TimedOut(Duration),
    /// The blocking task panicked or was cancelled.
    Stopped(String),
}

/// `call` on a blocking thread, for at most `state.store_timeout`.
pub(crate) async fn off_the_runtime<T: Send + 'static>(
    state: &AdminState,
    call: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Unanswered> {
    let store = state.store.clone();
    let task = tokio::task::spawn_blocking(move || call(&store));
    match tokio::time::timeout(state.store_timeout, task).await {
        Ok(Ok(result)) => result.map_err(Unanswered::Store),
        Ok(Err(error)) => Err(Unanswered::Stopped(error.to_string())),
        Err(_) => Err(Unanswered::TimedOut(state.store_timeout)),
    }
}

/// Reads the whole store: off the async threads.
pub(super) fn json_or_error<T: serde::Serialize>(report: Result<T, Unanswered>) -> Response {
    match report {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => store_error(&error),
    }
}

pub(crate) fn store_error(error: &Unanswered) -> Response {
    match error {
        Unanswered::Store(error) => {
            tracing::error!(%error, "admin API: store error");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
        }
        Unanswered::TimedOut(after) => {
            tracing::warn!(?after, "admin API: the store did not answer in time");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store did not answer within {after:?}\n"),
            )
                .into_response()
        }
        Unanswered::Stopped(error) => {
            tracing::error!(%error, "admin API: the store call stopped");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
        }
    }
}

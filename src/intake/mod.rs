//! The HTTP side: `POST /bitrix24/events` (the outgoing webhook's handler), `GET /healthz`,
//! `GET /readyz`.
//!
//! An event is answered 200 only once it is recorded and flushed; the portal is never called
//! while the sender waits (Bitrix24 slows down handlers that answer slowly and never re-sends).
//! The checks run in the order the spec fixes: too large (413), wrong or missing token (401),
//! malformed (400).

pub mod event;
pub mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::configuration::Secret;
use crate::store::{Recorded, Store, now_ms};
use crate::worker::{RulesHandle, Scheduler};
use event::{FormBody, check_content_type, parse_event, token_matches};

/// What the intake needs, shared by every request.
#[derive(Clone)]
pub struct IntakeState {
    pub store: Store,
    pub scheduler: Scheduler,
    pub rules: RulesHandle,
    pub application_token: Secret,
    pub dedupe_window: Duration,
    pub counters: Arc<IntakeCounters>,
    /// What the rules folder holds next to the rules in force (hot reload), for `/readyz`.
    pub rules_status: crate::reload::RulesStatus,
    /// Set at shutdown: new events are refused with 503 so the sender sees they were not taken.
    pub closing: Arc<AtomicBool>,
    /// The REST client: `/readyz` shows a portal rename it followed (`portal_renamed`).
    pub portal: crate::bitrix::Client,
}

/// Events received, by result (exposed as metrics later, and in tests).
#[derive(Debug, Default)]
pub struct IntakeCounters {
    pub recorded: AtomicU64,
    pub duplicate: AtomicU64,
    pub ignored: AtomicU64,
    pub unauthorized: AtomicU64,
    pub malformed: AtomicU64,
    pub failed: AtomicU64,
}

/// The service's routes. `request_timeout` bounds a whole request, body included, so a client
/// that sends its body slowly cannot hold a connection for long.
pub fn router(state: IntakeState, max_body: usize, request_timeout: Duration) -> Router {
    Router::new()
        .route(
            "/bitrix24/events",
            post(receive_event).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                match tokio::time::timeout(request_timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => reply(StatusCode::REQUEST_TIMEOUT, "request timed out"),
                }
            },
        ))
}

async fn readyz(State(state): State<IntakeState>) -> Response {
    let rules = state.rules.current();
    let disk = state.rules_status.view(rules.version());
    let body = serde_json::json!({
        "ready": true,
        "rules_version": rules.version(),
        "rules": rules.len(),
        "queue": state.store.queue_len(),
        "store_read_errors": state.store.read_errors(),
        "rules_on_disk": disk.rules_on_disk,
        "stale": disk.stale,
        "errors": disk.errors,
        "portal_renamed": state.portal.renamed_to(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn receive_event(
    State(state): State<IntakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counters = &state.counters;
    // The body limit layer has already answered 413 for a body over `server.max_body`.
    let form = FormBody::parse(&body);
    if !token_matches(form.application_token(), state.application_token.expose()) {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("event refused: wrong or missing auth[application_token]");
        return reply(
            StatusCode::UNAUTHORIZED,
            "wrong or missing auth[application_token]",
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let parsed = check_content_type(content_type).and_then(|()| parse_event(&form));
    let event = match parsed {
        Ok(event) => event,
        Err(reason) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%reason, "event refused as malformed");
            return reply(StatusCode::BAD_REQUEST, &reason.to_string());
        }
    };
    if !event.name().is_recorded() {
        counters.ignored.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            event = event.name().as_str(),
            deal_id = event.deal_id(),
            "event ignored"
        );
        return reply(StatusCode::OK, "ignored");
    }
    if state.closing.load(Ordering::SeqCst) {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match record(&state, &event).await {
        Ok(Recorded::New { event_id }) => {
            counters.recorded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                event_id,
                deal_id = event.deal_id(),
                event = event.name().as_str(),
                "event recorded"
            );
            state.scheduler.wake(event.deal_id());
            reply(StatusCode::OK, "recorded")
        }
        Ok(Recorded::Duplicate { requeued }) => {
            counters.duplicate.fetch_add(1, Ordering::Relaxed);
            if requeued {
                state.scheduler.wake(event.deal_id());
            }
            reply(StatusCode::OK, "duplicate")
        }
        Err(error) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(deal_id = event.deal_id(), %error, "event could not be recorded");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not record the event",
            )
        }
    }
}

/// Records the event and flushes. A duplicate is flushed too: the first copy may still be on its
/// way to disk, and its 200 must not go out before it is there.
async fn record(
    state: &IntakeState,
    event: &event::DealEvent,
) -> Result<Recorded, crate::store::StoreError> {
    // The sled writes are in memory and take microseconds: done here; the flush is the group
    // commit that many concurrent deliveries share.
    let recorded = state.store.record_event(
        event.dedupe_key(),
        event.deal_id(),
        now_ms(),
        state.dedupe_window,
    )?;
    state.store.flush_async().await?;
    Ok(recorded)
}

fn reply(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

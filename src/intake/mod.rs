//! `POST /bitrix24/events`: the outgoing webhook's handler.
//!
//! An event is answered 200 only once it is recorded and flushed; the portal is never called
//! while the sender waits (Bitrix24 slows down handlers that answer slowly and never re-sends).
//! The checks run in the order the spec fixes: too large (413, from the announced length before
//! a byte of the body is read, or while reading it), wrong or missing token (401), malformed
//! (400). While the store cannot write, events are refused at once (503) without touching it.
//! No store call runs on the runtime's threads: recording is handed to the intake's recording
//! thread (`recorder`), which records the deliveries waiting together and flushes them itself.

pub mod event;
mod recorder;
pub mod refusals;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::configuration::Secret;
use crate::store::{Recorded, Store};
use crate::worker::Scheduler;
use event::{FormBody, check_content_type, parse_event, token_matches};
use recorder::Recorder;
use refusals::Refusals;

/// What the intake needs, shared by every request.
#[derive(Clone)]
pub struct IntakeState {
    pub store: Store,
    pub scheduler: Scheduler,
    pub application_token: Secret,
    pub dedupe_window: Duration,
    pub counters: Arc<IntakeCounters>,
    /// Set at shutdown: new events are refused with 503 so the sender sees they were not taken.
    pub closing: Arc<AtomicBool>,
    /// When refusals were last logged (at most a line a minute per kind).
    pub refusals: Arc<Refusals>,
}

/// Events received, by result (exposed as metrics later, and in tests).
#[derive(Debug, Default)]
pub struct IntakeCounters {
    pub recorded: AtomicU64,
    pub duplicate: AtomicU64,
    pub ignored: AtomicU64,
    pub unauthorized: AtomicU64,
    pub malformed: AtomicU64,
    /// Not recorded: the store could not write (or did not answer); answered 503.
    pub failed: AtomicU64,
}

/// What the handler holds: the shared state and the recording thread of this router.
#[derive(Clone)]
struct Intake {
    state: IntakeState,
    recorder: Recorder,
}

/// The service's routes. `request_timeout` bounds a whole request, body included, so a client
/// that sends its body slowly cannot hold a connection for long. Starts the router's recording
/// thread, which ends when the router is dropped.
pub fn router(state: IntakeState, max_body: usize, request_timeout: Duration) -> Router {
    let intake = Intake {
        state,
        recorder: Recorder::start(),
    };
    Router::new()
        .route(
            "/bitrix24/events",
            post(receive_event)
                .layer(DefaultBodyLimit::max(max_body))
                .layer(axum::middleware::from_fn(
                    move |request: Request, next: Next| {
                        refuse_announced_oversize(max_body, request, next)
                    },
                )),
        )
        .with_state(intake)
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                match tokio::time::timeout(request_timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => reply(StatusCode::REQUEST_TIMEOUT, "request timed out"),
                }
            },
        ))
}

/// A body announced larger than `max_body` is refused from the head, before any of it is read:
/// the body limit alone waits for the body, so a client announcing a gigabyte and sending
/// nothing would hold the connection until the request timeout (408). A body that arrives
/// without a length (chunked) is still cut at `max_body` while it is read (413 too).
async fn refuse_announced_oversize(max_body: usize, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_body as u64) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body larger than server.max_body",
        );
    }
    next.run(request).await
}

async fn receive_event(
    State(Intake { state, recorder }): State<Intake>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counters = &state.counters;
    // The body limit layer has already answered 413 for a body over `server.max_body`.
    let form = FormBody::parse(&body);
    if !token_matches(form.application_token(), state.application_token.expose()) {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        if let Some(refused) = state.refusals.unauthorized.note(Instant::now()) {
            tracing::warn!(
                refused_since_last_line = refused,
                "event refused: wrong or missing auth[application_token] (logged at most once a minute)"
            );
        }
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
            if let Some(refused) = state.refusals.malformed.note(Instant::now()) {
                tracing::info!(
                    %reason,
                    refused_since_last_line = refused,
                    "event refused as malformed (logged at most once a minute)"
                );
            }
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
    if let Some(reason) = state.store.write_failure() {
        // Not taken into memory either: it could not be made durable, and the sender must see
        // that (503) rather than a 200 that a re-open of the store would lose.
        return unrecorded(
            &state,
            event.deal_id(),
            &format!("the store cannot write: {reason}"),
        );
    }
    let recorded = recorder
        .record(
            &state.store,
            event.dedupe_key().to_string(),
            event.deal_id(),
            state.dedupe_window,
        )
        .await;
    match recorded {
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
        Err(error) => unrecorded(&state, event.deal_id(), &error.to_string()),
    }
}

/// 503 for an event that could not be recorded: counted, and logged at most once a minute.
fn unrecorded(state: &IntakeState, deal_id: u64, error: &str) -> Response {
    state.counters.failed.fetch_add(1, Ordering::Relaxed);
    if let Some(refused) = state.refusals.unrecorded.note(Instant::now()) {
        tracing::error!(
            deal_id,
            %error,
            refused_since_last_line = refused,
            "event could not be recorded: answered 503 (logged at most once a minute)"
        );
    }
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "could not record the event",
    )
}

fn reply(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

//! `GET /healthz` and `GET /readyz`, answered from counters and flags, never from the store's
//! trees: a store stuck on a failing disk must not take the health checks (or the runtime's
//! threads) down with it.
//!
//! - `/healthz` is "alive": 200 `ok` while the process serves HTTP.
//! - `/readyz` is "can take events": 200, or 503 while the store cannot write (the reason in
//!   `store`), with what the service runs on as JSON. `b24-robot healthcheck` reads it.
//!
//! Every field reads something its owner keeps up to date (the store's counters, the REST
//! client's rename), in constant time.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::IntakeState;

pub(super) async fn healthz() -> &'static str {
    "ok"
}

pub(super) async fn readyz(State(state): State<IntakeState>) -> Response {
    let (ready, body) = readiness(&state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Whether the service can take events, and the `/readyz` document.
pub fn readiness(state: &IntakeState) -> (bool, Value) {
    let rules = state.rules.current();
    let disk = state.rules_status.view(rules.version());
    let write_failure = state.store.write_failure();
    let closing = state.closing.load(Ordering::SeqCst);
    let store = match (&write_failure, closing) {
        (Some(reason), _) => format!("cannot write: {reason}"),
        (None, true) => "shutting down".to_string(),
        (None, false) => "ok".to_string(),
    };
    let ready = write_failure.is_none() && !closing;
    let body = json!({
        "ready": ready,
        "store": store,
        "rules_version": rules.version(),
        "rules": rules.len(),
        "queue": state.store.queue_len(),
        "parked": state.store.parked_len(),
        "store_read_errors": state.store.read_errors(),
        "rules_on_disk": disk.rules_on_disk,
        "stale": disk.stale,
        "errors": disk.errors,
        "portal_renamed": state.portal.renamed_to(),
    });
    (ready, body)
}

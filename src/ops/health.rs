//! `GET /healthz` and `GET /readyz`, answered from counters and flags, never from the store's
//! trees: a store stuck on a failing disk must not take the health checks (or the runtime's
//! threads) down with it.
//!
//! - `/healthz` is "alive": 200 `ok` while the process serves HTTP.
//! - `/readyz` is "can take events": 200, or 503 while the store cannot write (the reason in
//!   `store`), with what the service runs on as JSON. `b24-robot healthcheck` reads it. An
//!   unreachable portal keeps it 200 (events are still taken) and says since when in `portal`,
//!   `portal_down_since` and `portal_down_seconds`.
//!
//! Every field reads something its owner keeps up to date (the store's counters, the REST
//! client's rename), in constant time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::bitrix::Client;
use crate::rules::RulesHandle;
use crate::rules::RulesStatus;
use crate::store::Store;

/// What the health checks read: each kept up to date by its owner.
#[derive(Clone)]
pub struct HealthState {
    /// Its write health and queue counters (never its trees).
    pub store: Store,
    /// The rules in force.
    pub rules: RulesHandle,
    /// What the rules folder holds next to the rules in force (hot reload).
    pub rules_status: RulesStatus,
    /// Set at shutdown, as the intake's: `/readyz` says "shutting down".
    pub closing: Arc<AtomicBool>,
    /// The REST client: `/readyz` shows a portal rename it followed (`portal_renamed`) and
    /// since when the portal is unreachable.
    pub portal: Client,
}

/// `GET /healthz` and `GET /readyz`.
pub fn router(state: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let (ready, body) = readiness(&state);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Whether the service can take events, and the `/readyz` document.
pub fn readiness(state: &HealthState) -> (bool, Value) {
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
    // An unreachable portal does not stop the intake: events are recorded and wait for it.
    let reach = state.portal.reachability();
    let portal = match reach.down_since {
        Some(since) => format!(
            "unreachable since {} ({} s): work waits, events are still taken",
            crate::text::utc(since),
            reach.down_for.as_secs()
        ),
        None => "ok".to_string(),
    };
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
        "portal": portal,
        "portal_down_since": reach.down_since.map(crate::text::utc),
        "portal_down_seconds": reach.down_for.as_secs(),
    });
    (ready, body)
}

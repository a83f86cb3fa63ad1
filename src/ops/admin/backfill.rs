//! `GET`, `POST`, `DELETE /admin/backfill`: the service's backfill: its progress, starting one,
//! interrupting it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AdminState;

/// `?from=N`: the dry-run writes already shown.
#[derive(serde::Deserialize)]
pub(super) struct From {
    #[serde(default)]
    from: usize,
}

/// The backfill's progress: state, done/total, counts, ETA, last error; the dry-run writes from
/// `?from=N` on.
pub(super) async fn status(
    State(state): State<AdminState>,
    axum::extract::Query(from): axum::extract::Query<From>,
) -> Response {
    match &state.backfill {
        Some(b) => axum::Json(b.status.report(from.from)).into_response(),
        None => (StatusCode::NOT_FOUND, "no backfill in this service\n").into_response(),
    }
}

/// Starts a backfill in the background with the options of the body (JSON); 409 if one runs.
pub(super) async fn start(
    State(state): State<AdminState>,
    axum::Json(options): axum::Json<crate::worker::backfill::BackfillOptions>,
) -> Response {
    let Some(b) = &state.backfill else {
        return (StatusCode::NOT_FOUND, "no backfill in this service\n").into_response();
    };
    if let Some(name) = &options.rule
        && !b
            .worker
            .rules
            .current()
            .rules()
            .iter()
            .any(|r| r.name() == name)
        && b.worker
            .rules
            .current()
            .controls()
            .sla_named(name)
            .is_none()
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("no rule named \"{name}\" in the rules in force\n"),
        )
            .into_response();
    }
    if b.start(options) {
        (StatusCode::ACCEPTED, axum::Json(b.status.report(0))).into_response()
    } else {
        (StatusCode::CONFLICT, "a backfill is already running\n").into_response()
    }
}

/// Interrupts the running backfill; the same options continue it later.
pub(super) async fn cancel(State(state): State<AdminState>) -> Response {
    match &state.backfill {
        Some(b) => {
            b.cancel();
            axum::Json(b.status.report(0)).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no backfill in this service\n").into_response(),
    }
}

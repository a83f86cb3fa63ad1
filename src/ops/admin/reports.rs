//! `GET /admin/reports/{name}?period=P&pipeline=N&refresh=true`: a report's JSON form
//! (`control.md`, "Reports") on the report copy brought up to date first; what
//! `b24-robot report` prints when the service runs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AdminState;
use crate::worker::report_copy::{ReportError, report_json};

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    period: Option<String>,
    pipeline: Option<u64>,
    #[serde(default)]
    refresh: bool,
}

pub(super) async fn report(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let Some(service) = &state.backfill else {
        return (StatusCode::NOT_FOUND, "no worker in this service\n").into_response();
    };
    let worker = &service.worker;
    let rules = worker.rules.current();
    let asked = (params.period.as_deref(), params.pipeline);
    match report_json(worker, &rules, &name, asked, params.refresh).await {
        Ok(json) => axum::Json(json).into_response(),
        Err(error @ ReportError::Unknown(_)) => {
            (StatusCode::NOT_FOUND, format!("{error}\n")).into_response()
        }
        Err(error @ ReportError::Period(_)) => {
            (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
        }
        Err(error) => (StatusCode::BAD_GATEWAY, format!("{error}\n")).into_response(),
    }
}

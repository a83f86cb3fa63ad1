//! `GET /admin/jobs`, `POST /admin/jobs/{id}/retry`, `POST /admin/jobs/retry`: the job queue,
//! parked jobs first with their last error, and re-running parked jobs.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AdminState, json_or_error, off_the_runtime, store_error};
use crate::store::{Store, StoreError};

pub(super) async fn jobs(State(state): State<AdminState>) -> Response {
    json_or_error(off_the_runtime(&state, jobs_report).await)
}

pub(super) async fn retry_all(State(state): State<AdminState>) -> Response {
    retry(&state, None).await
}

pub(super) async fn retry_one(State(state): State<AdminState>, Path(id): Path<u64>) -> Response {
    retry(&state, Some(id)).await
}

async fn retry(state: &AdminState, deal: Option<u64>) -> Response {
    let revived = off_the_runtime(state, move |store| {
        let revived = store.retry_parked(deal)?;
        store.flush()?;
        Ok(revived)
    })
    .await;
    match revived {
        Ok(deals) => {
            for &d in &deals {
                state.scheduler.wake(d);
            }
            axum::Json(json!({ "retried": deals })).into_response()
        }
        Err(error) => store_error(&error),
    }
}

/// Every queued job, parked ones first, and the queue records that cannot be read.
pub fn jobs_report(store: &Store) -> Result<Value, StoreError> {
    let (mut jobs, damaged) = store.queue_listing()?;
    jobs.sort_by_key(|q| (!q.parked, q.first_at_ms));
    let parked = jobs.iter().filter(|q| q.parked).count();
    Ok(json!({ "queued": jobs.len(), "parked": parked, "jobs": jobs, "damaged": damaged }))
}

/// The queue for people.
pub fn format_jobs_report(report: &Value) -> String {
    let mut out = format!(
        "{} job(s) queued, {} parked\n",
        report["queued"], report["parked"]
    );
    for q in report["jobs"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  deal {}: {} {} event(s), {} attempt(s){}\n",
            q["deal_id"],
            if q["parked"] == json!(true) {
                "PARKED"
            } else {
                "queued"
            },
            q["events"],
            q["attempts"],
            q["last_error"]
                .as_str()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
    }
    for d in report["damaged"].as_array().cloned().unwrap_or_default() {
        out.push_str(&format!(
            "  deal {}: DAMAGED queue record: {} (b24-robot store check)\n",
            d["deal_id"],
            d["error"].as_str().unwrap_or("?")
        ));
    }
    out
}

//! `GET /admin/jobs`, `POST /admin/jobs/{id}/retry`, `POST /admin/jobs/retry`: the job queue,
//! parked jobs first with their last error, and re-running parked jobs.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AdminState, json_or_error, off_the_runtime, store_error};
use crate::store::{Damaged, QueuedDeal, Store, StoreError};

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

/// The job queue: the admin API serves it as JSON, `jobs list` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobsReport {
    /// Jobs queued, parked ones included.
    pub queued: usize,
    pub parked: usize,
    /// Parked ones first, then the oldest first.
    pub jobs: Vec<QueuedDeal>,
    /// Queue records that cannot be read.
    pub damaged: Vec<Damaged>,
}

/// Every queued job, parked ones first, and the queue records that cannot be read.
pub fn jobs_report(store: &Store) -> Result<JobsReport, StoreError> {
    let (mut jobs, damaged) = store.queue_listing()?;
    jobs.sort_by_key(|q| (!q.parked, q.first_at_ms));
    let parked = jobs.iter().filter(|q| q.parked).count();
    Ok(JobsReport {
        queued: jobs.len(),
        parked,
        jobs,
        damaged,
    })
}

/// The queue for people.
pub fn format_jobs_report(report: &JobsReport) -> String {
    let mut out = format!(
        "{} job(s) queued, {} parked\n",
        report.queued, report.parked
    );
    for q in &report.jobs {
        let (state, error) = super::job_state(q);
        out.push_str(&format!(
            "  deal {}: {state} {} event(s), {} attempt(s){error}\n",
            q.deal_id, q.events, q.attempts
        ));
    }
    for d in &report.damaged {
        out.push_str(&format!(
            "  deal {}: DAMAGED queue record: {} (b24-robot store check)\n",
            d.deal_id.map_or("null".to_string(), |id| id.to_string()),
            d.error
        ));
    }
    out
}

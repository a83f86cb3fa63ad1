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
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

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
        .route("/admin/deals/{id}", get(deal))
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/retry", post(retry_all))
        .route("/admin/jobs/{id}/retry", post(retry_one))
        .route("/admin/store/check", get(store_check))
        .route(
            "/admin/backfill",
            get(backfill_status)
                .post(backfill_start)
                .delete(backfill_cancel),
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
fn authorized(request: &Request, token: &str) -> bool {
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

async fn deal(State(state): State<AdminState>, Path(id): Path<u64>) -> Response {
    json_or_error(off_the_runtime(&state, move |store| deal_report(store, id)).await)
}

async fn jobs(State(state): State<AdminState>) -> Response {
    json_or_error(off_the_runtime(&state, jobs_report).await)
}

/// Why a route got no answer from the store.
enum Unanswered {
    Store(StoreError),
    /// Not within `store_timeout` (the call goes on, on its blocking thread).
    TimedOut(Duration),
    /// The blocking task panicked or was cancelled.
    Stopped(String),
}

/// `call` on a blocking thread, for at most `state.store_timeout`.
async fn off_the_runtime<T: Send + 'static>(
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
async fn store_check(State(state): State<AdminState>) -> Response {
    match tokio::task::spawn_blocking(move || store_check_report(&state.store)).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store check failed: {error}\n"),
        )
            .into_response(),
    }
}

async fn retry_all(State(state): State<AdminState>) -> Response {
    retry(&state, None).await
}

async fn retry_one(State(state): State<AdminState>, Path(id): Path<u64>) -> Response {
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

#[derive(serde::Deserialize)]
struct From {
    #[serde(default)]
    from: usize,
}

/// The backfill's progress: state, done/total, counts, ETA, last error; the dry-run writes from
/// `?from=N` on.
async fn backfill_status(
    State(state): State<AdminState>,
    axum::extract::Query(from): axum::extract::Query<From>,
) -> Response {
    match &state.backfill {
        Some(b) => axum::Json(b.status.json(from.from)).into_response(),
        None => (StatusCode::NOT_FOUND, "no backfill in this service\n").into_response(),
    }
}

/// Starts a backfill in the background with the options of the body (JSON); 409 if one runs.
async fn backfill_start(
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
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("no rule named \"{name}\" in the rules in force\n"),
        )
            .into_response();
    }
    if b.start(options) {
        (StatusCode::ACCEPTED, axum::Json(b.status.json(0))).into_response()
    } else {
        (StatusCode::CONFLICT, "a backfill is already running\n").into_response()
    }
}

/// Interrupts the running backfill; the same options continue it later.
async fn backfill_cancel(State(state): State<AdminState>) -> Response {
    match &state.backfill {
        Some(b) => {
            b.cancel();
            axum::Json(b.status.json(0)).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no backfill in this service\n").into_response(),
    }
}

fn json_or_error(report: Result<Value, Unanswered>) -> Response {
    match report {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => store_error(&error),
    }
}

fn store_error(error: &Unanswered) -> Response {
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

/// A deal's stage entries with the decisions about them, its effects, and its queued job.
pub fn deal_report(store: &Store, deal_id: u64) -> Result<Value, StoreError> {
    let state = store.deal_state(deal_id)?;
    let entries = store.entries(deal_id)?;
    let effects = store.effects(deal_id)?;
    let queued = store.queued(deal_id)?;
    Ok(json!({
        "deal_id": deal_id,
        "known": state.is_some(),
        "state": state,
        "queued": queued,
        "entries": entries,
        "effects": effects,
    }))
}

/// Every queued job, parked ones first, and the queue records that cannot be read.
pub fn jobs_report(store: &Store) -> Result<Value, StoreError> {
    let (mut jobs, damaged) = store.queue_listing()?;
    jobs.sort_by_key(|q| (!q.parked, q.first_at_ms));
    let parked = jobs.iter().filter(|q| q.parked).count();
    Ok(json!({ "queued": jobs.len(), "parked": parked, "jobs": jobs, "damaged": damaged }))
}

/// Every record of the store read: how many, and the damaged ones (tree, key, error).
pub fn store_check_report(store: &Store) -> Value {
    let report = store.check();
    json!({ "records": report.records, "damaged": report.damaged })
}

/// The store check for people: one line for each damaged record.
pub fn format_store_check(report: &Value) -> String {
    let damaged = report["damaged"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "{} record(s) read, {} damaged\n",
        report["records"],
        damaged.len()
    );
    for d in &damaged {
        out.push_str(&format!(
            "  {} {}{}: {}\n",
            d["tree"].as_str().unwrap_or("?"),
            d["key"].as_str().unwrap_or("?"),
            d["deal_id"]
                .as_u64()
                .map(|id| format!(" (deal {id})"))
                .unwrap_or_default(),
            d["error"].as_str().unwrap_or("?")
        ));
    }
    out
}

/// A deal report for people: its stage entries, what each rule decided and why, and the effects
/// with their Bitrix24 ids.
pub fn format_deal_report(report: &Value) -> String {
    let mut out = String::new();
    let deal = report["deal_id"].as_u64().unwrap_or(0);
    if report["known"] != json!(true) && report["entries"].as_array().is_none_or(Vec::is_empty) {
        out.push_str(&format!(
            "deal {deal}: not known to b24-robot (no stage entry recorded)\n"
        ));
    } else {
        let stage = report["state"]["stage_id"].as_str().unwrap_or("?");
        out.push_str(&format!("deal {deal}: last recorded stage {stage}\n"));
    }
    if let Some(q) = report.get("queued").filter(|q| !q.is_null()) {
        let parked = q["parked"] == json!(true);
        out.push_str(&format!(
            "  job: {} ({} event(s), {} failed attempt(s){})\n",
            if parked { "PARKED" } else { "queued" },
            q["events"],
            q["attempts"],
            q["last_error"]
                .as_str()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        ));
    }
    let effects = report["effects"].as_array().cloned().unwrap_or_default();
    for entry in report["entries"].as_array().cloned().unwrap_or_default() {
        let e = &entry["entry"];
        let action = entry["action"].as_str().unwrap_or("?");
        let why = match action {
            "acted" => "rules evaluated".to_string(),
            "echo" => "the service's own move: no rules".to_string(),
            "superseded" => format!(
                "superseded: the deal was already in {}",
                entry["now_in"].as_str().unwrap_or("?")
            ),
            other => other.to_string(),
        };
        let why = match entry["note"].as_str() {
            Some(note) => format!("{why} [{note}]"),
            None => why,
        };
        out.push_str(&format!(
            "  entry {} {} at {}: {} (rules {})\n",
            e["id"],
            e["stage_id"].as_str().unwrap_or("?"),
            e["created_time"].as_str().unwrap_or("?"),
            why,
            entry["ruleset_version"].as_str().unwrap_or("?")
        ));
        for decision in entry["decisions"].as_array().cloned().unwrap_or_default() {
            let rule = decision["rule"].as_str().unwrap_or("?");
            let outcome = &decision["outcome"];
            let verdict = if let Some(fired) = outcome.get("Fired") {
                format!("fired ({} effect(s))", fired.as_array().map_or(0, Vec::len))
            } else if let Some(skipped) = outcome.get("Skipped") {
                format!("skipped: {}", describe_skip(skipped))
            } else if let Some(failed) = outcome.get("Failed") {
                format!("failed: {}", failed.as_str().unwrap_or("?"))
            } else {
                outcome.to_string()
            };
            out.push_str(&format!("    rule {rule}: {verdict}\n"));
            for note in decision["notes"].as_array().cloned().unwrap_or_default() {
                out.push_str(&format!("      note: {}\n", note.as_str().unwrap_or("")));
            }
            for effect in effects
                .iter()
                .filter(|f| f["entry_id"] == e["id"] && f["rule"] == decision["rule"])
            {
                let state = &effect["state"];
                let result = match state["state"].as_str() {
                    Some("done") => format!("done, id {}", state["id"].as_str().unwrap_or("?")),
                    Some("failed") => format!("FAILED: {}", state["error"].as_str().unwrap_or("?")),
                    Some("pending") => "pending (not confirmed yet)".to_string(),
                    other => other.unwrap_or("?").to_string(),
                };
                out.push_str(&format!(
                    "      {} -> {result}\n",
                    effect["method"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    out
}

fn describe_skip(skipped: &Value) -> String {
    match skipped {
        Value::String(s) if s == "ConditionFalse" => "condition false".into(),
        Value::Object(map) if map.contains_key("Reverted") => {
            format!(
                "reverted by rule {}",
                map["Reverted"]["by"].as_str().unwrap_or("?")
            )
        }
        Value::Object(map) if map.contains_key("OwnCopy") => format!(
            "the deal is this tunnel's own copy of deal {}",
            map["OwnCopy"]["origin"]
        ),
        other => other.to_string(),
    }
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

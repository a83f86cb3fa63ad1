//! `GET /admin/store/check`: every record of the store read, the damaged ones listed (what
//! `store check` prints).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AdminState;
use crate::store::{CheckReport, Store};

pub(super) async fn store_check(State(state): State<AdminState>) -> Response {
    match tokio::task::spawn_blocking(move || store_check_report(&state.store)).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the store check failed: {error}\n"),
        )
            .into_response(),
    }
}

/// Every record of the store read: how many, and the damaged ones (tree, key, error).
pub fn store_check_report(store: &Store) -> CheckReport {
    store.check()
}

/// The store check for people: one line for each damaged record.
pub fn format_store_check(report: &CheckReport) -> String {
    let mut out = format!(
        "{} record(s) read, {} damaged\n",
        report.records,
        report.damaged.len()
    );
    for d in &report.damaged {
        out.push_str(&format!(
            "  {} {}{}: {}\n",
            d.tree,
            d.key,
            d.deal_id
                .map(|id| format!(" (deal {id})"))
                .unwrap_or_default(),
            d.error
        ));
    }
    out
}

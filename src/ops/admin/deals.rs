//! `GET /admin/deals/{id}`: what `explain` prints: a deal's stage entries, the rules' decisions
//! and why, its effects with their Bitrix24 ids, its queued job.

use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{AdminState, json_or_error, off_the_runtime};
use crate::store::{Store, StoreError};

pub(super) async fn deal(State(state): State<AdminState>, Path(id): Path<u64>) -> Response {
    json_or_error(off_the_runtime(&state, move |store| deal_report(store, id)).await)
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

//! `GET /admin/deals/{id}`: what `explain` prints: a deal's stage entries, the rules' decisions
//! and why, its effects with their Bitrix24 ids, its queued job.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{AdminState, json_or_error, off_the_runtime};
use crate::store::{
    DealState, EffectRecord, EffectState, EntryAction, EntryRecord, QueuedDeal, Store, StoreError,
    TimerRecord, TimerState,
};

pub(super) async fn deal(State(state): State<AdminState>, Path(id): Path<u64>) -> Response {
    json_or_error(off_the_runtime(&state, move |store| deal_report(store, id)).await)
}

/// What the service knows of one deal: the admin API serves it as JSON, `explain` prints it
/// (from the API's JSON or straight from the store: the same type either way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DealReport {
    pub deal_id: u64,
    /// Whether the service has recorded a stage entry of the deal.
    pub known: bool,
    pub state: Option<DealState>,
    pub queued: Option<QueuedDeal>,
    pub entries: Vec<EntryRecord>,
    pub effects: Vec<EffectRecord>,
    /// The timers of the time-driven rules armed for its entries: pending with their due
    /// moment, fired, skipped and why.
    #[serde(default)]
    pub timers: Vec<TimerRecord>,
}

/// A deal's stage entries with the decisions about them, its effects, and its queued job.
pub fn deal_report(store: &Store, deal_id: u64) -> Result<DealReport, StoreError> {
    let state = store.deal_state(deal_id)?;
    Ok(DealReport {
        deal_id,
        known: state.is_some(),
        state,
        queued: store.queued(deal_id)?,
        entries: store.entries(deal_id)?,
        effects: store.effects(deal_id)?,
        timers: store.timers_of(deal_id)?,
    })
}

/// A value as its JSON text without quotes (a time as the API shows it).
fn json_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// A deal report for people: its stage entries, what each rule decided and why, and the effects
/// with their Bitrix24 ids.
pub fn format_deal_report(report: &DealReport) -> String {
    let mut out = String::new();
    let deal = report.deal_id;
    if !report.known && report.entries.is_empty() {
        out.push_str(&format!(
            "deal {deal}: not known to b24-robot (no stage entry recorded)\n"
        ));
    } else {
        let stage = report
            .state
            .as_ref()
            .and_then(|s| s.stage_id.as_deref())
            .unwrap_or("?");
        out.push_str(&format!("deal {deal}: last recorded stage {stage}\n"));
    }
    if let Some(q) = &report.queued {
        let (state, error) = super::job_state(q);
        out.push_str(&format!(
            "  job: {state} ({} event(s), {} failed attempt(s){error})\n",
            q.events, q.attempts
        ));
    }
    for entry in &report.entries {
        let e = &entry.entry;
        let why = match &entry.action {
            EntryAction::Acted => "rules evaluated".to_string(),
            EntryAction::Echo => "the service's own move: no rules".to_string(),
            EntryAction::Superseded { now_in } => format!(
                "superseded: the deal was already in {}",
                now_in.as_deref().unwrap_or("?")
            ),
        };
        let why = match &entry.note {
            Some(note) => format!("{why} [{note}]"),
            None => why,
        };
        out.push_str(&format!(
            "  entry {} {} at {}: {} (rules {})\n",
            e.id,
            e.stage_id,
            json_text(&e.created_time),
            why,
            entry.ruleset_version
        ));
        for decision in &entry.decisions {
            let verdict = &decision.outcome;
            out.push_str(&format!("    rule {}: {verdict}\n", decision.rule));
            for note in &decision.notes {
                out.push_str(&format!("      note: {note}\n"));
            }
            for effect in report
                .effects
                .iter()
                .filter(|f| f.entry_id == e.id && f.rule == decision.rule && f.subject.is_none())
            {
                out.push_str(&format!(
                    "      {} -> {}\n",
                    effect.method,
                    effect_result(effect)
                ));
            }
        }
        for timer in report.timers.iter().filter(|t| t.entry_id == e.id) {
            out.push_str(&format!(
                "    timer {}: {}\n",
                timer.rule,
                timer_state(timer)
            ));
            for event in &timer.history {
                out.push_str(&format!(
                    "      firing {}: {}\n",
                    event.repetition + 1,
                    event.outcome
                ));
            }
        }
        for effect in report
            .effects
            .iter()
            .filter(|f| f.entry_id == e.id && f.subject.is_some())
        {
            out.push_str(&control_notice(effect));
        }
    }
    let unbound: Vec<&EffectRecord> = report
        .effects
        .iter()
        .filter(|f| f.subject.is_some() && !report.entries.iter().any(|e| e.entry.id == f.entry_id))
        .collect();
    if !unbound.is_empty() {
        out.push_str("  control notices:\n");
        for effect in unbound {
            out.push_str(&control_notice(effect));
        }
    }
    out
}

/// A time-driven rule's notice: its rule, what it is about, the call and how it ended.
fn control_notice(effect: &EffectRecord) -> String {
    format!(
        "    {} ({}): {} -> {}\n",
        effect.rule,
        effect.subject.as_deref().unwrap_or(""),
        effect.method,
        effect_result(effect)
    )
}

fn effect_result(effect: &EffectRecord) -> String {
    match &effect.state {
        EffectState::Done { id } => format!("done, id {id}"),
        EffectState::Failed { error } => format!("FAILED: {error}"),
        EffectState::Pending => "pending (not confirmed yet)".to_string(),
    }
}

/// A timer in words: pending until when, fired, or skipped and why.
fn timer_state(timer: &TimerRecord) -> String {
    let due = chrono::DateTime::from_timestamp_millis(timer.due_ms as i64)
        .map_or_else(|| timer.due_ms.to_string(), |at| at.to_rfc3339());
    match &timer.state {
        TimerState::Pending => format!("pending, firing {} due {due}", timer.repetition + 1),
        TimerState::Fired => "fired".to_string(),
        TimerState::Skipped { why } => format!("skipped: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deal_report_keeps_its_json_keys_and_reads_back_as_it_was_served() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        store.enqueue(7, 1_000).expect("queued");
        let report = deal_report(&store, 7).expect("report");
        let json = serde_json::to_value(&report).expect("JSON");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "deal_id", "known", "state", "queued", "entries", "effects", "timers"
            ]
        );
        assert_eq!(json["queued"]["deal_id"], 7);
        let read: DealReport = serde_json::from_value(json).expect("reads back");
        assert_eq!(read, report);
        assert!(format_deal_report(&read).contains("job: queued (1 event(s)"));
    }
}

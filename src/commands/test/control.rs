//! A case's moment, for the time-driven rules: `now` (when the control rules look at the deal),
//! `now_in` (the stage the deal is in by then), `tasks` (its tasks as the control sweep reads
//! them) and `activities` (its open CRM activities). A case with `now` is a control case: the
//! `[[sla]]`, `[[overdue]]` and `[[no_task]]` rules are evaluated at `now` instead of the
//! stage-entry rules at the entry (those made their effects when the deal entered).

use std::ops::Range;

use chrono::{DateTime, FixedOffset};
use toml::de::{DeTable, DeValue};

use super::file::moment_key;
use crate::commands::control_at::TaskAt;
use crate::diagnostics::spanned::{Reader, entry, integer, tables, type_name};
use crate::rules::control::evaluate::TaskSeen;
use crate::rules::stage_pipeline;

/// The keys of a case that only a control case (one with `now`) may have.
pub(super) const MOMENT_KEYS: &[&str] = &["now", "now_in", "tasks", "activities"];

const TASK_KEYS: &[&str] = &[
    "id",
    "title",
    "responsible",
    "responsible_name",
    "deadline",
    "old_deadline",
    "status",
    "by_rules",
];

/// A control case's moment.
#[derive(Debug)]
pub(super) struct At {
    pub(super) now: DateTime<FixedOffset>,
    /// Where `now` is written, for "now is before the entry" reports.
    pub(super) span: Range<usize>,
    /// The stage the deal is in at `now`; `None`: still the entered one.
    pub(super) now_in: Option<String>,
    pub(super) tasks: Vec<TaskAt>,
    pub(super) activities: u32,
}

/// The moment keys of a case: `None` without `now` (a key that needs it is reported) or when
/// one is wrong (the problem recorded).
pub(super) fn at(r: &mut Reader<'_>, table: &DeTable<'_>, deal_id: u64) -> Option<At> {
    let Some((_, now_value)) = entry(table, "now") else {
        for key in &MOMENT_KEYS[1..] {
            if let Some((k, _)) = entry(table, key) {
                r.error(
                    k.span(),
                    format!("\"{key}\" needs \"now\": it tells the deal at a moment"),
                    "add now = \"2026-12-03T10:00:00+03:00\": the moment the control rules look at the deal",
                );
            }
        }
        return None;
    };
    let span = now_value.span();
    let now = moment_key(r, table, "now");
    let now_in = r.string(table, "now_in");
    if let (Some(stage), Some((_, v))) = (&now_in, entry(table, "now_in"))
        && stage_pipeline(stage).is_none()
    {
        r.error(
            v.span(),
            format!("\"now_in\" \"{stage}\" is not a stage id"),
            "write now_in = \"WON\" (pipeline 0) or \"C1:WON\": the stage the deal is in at \"now\"",
        );
    }
    let mut tasks = Vec::new();
    for (span, t) in tables(r, table, "tasks") {
        if let Some(task) = task(r, span, t, deal_id) {
            tasks.push(task);
        }
    }
    let activities = match entry(table, "activities") {
        Some((_, v)) => match integer(v.get_ref()).and_then(|n| u32::try_from(n).ok()) {
            Some(n) => n,
            None => {
                r.error(
                    v.span(),
                    format!(
                        "\"activities\" must be a count (0 or more), found {}",
                        shown(v.get_ref())
                    ),
                    "write activities = 1: the deal's open CRM activities (calls, meetings)",
                );
                0
            }
        },
        None => 0,
    };
    Some(At {
        now: now?,
        span,
        now_in,
        tasks,
        activities,
    })
}

/// What a wrong count or id is: its type, or the negative number itself.
fn shown(value: &DeValue<'_>) -> String {
    match integer(value) {
        Some(n) => n.to_string(),
        None => type_name(value).to_string(),
    }
}

/// A non-negative integer key, or `None` when absent or wrong (the problem recorded).
fn id_key(r: &mut Reader<'_>, t: &DeTable<'_>, key: &str, example: &str) -> Option<u64> {
    let (_, v) = entry(t, key)?;
    let id = integer(v.get_ref()).and_then(|n| u64::try_from(n).ok());
    if id.is_none() {
        r.error(
            v.span(),
            format!(
                "\"{key}\" must be a non-negative integer, found {}",
                shown(v.get_ref())
            ),
            &format!("write {key} = {example}"),
        );
    }
    id
}

/// `{ id = 5, title = "...", responsible = 3, deadline = "...", status = 2 }`.
fn task(r: &mut Reader<'_>, span: Range<usize>, t: &DeTable<'_>, deal_id: u64) -> Option<TaskAt> {
    let errors_before = r.errors.len();
    r.keys(t, TASK_KEYS, "in a task of \"tasks\"");
    let id = id_key(r, t, "id", "5");
    if entry(t, "id").is_none() {
        r.error(
            span,
            "a task without \"id\"",
            "add id = 5: the task's id, for {TASK_ID} and {TASK_URL}",
        );
    }
    let status = match id_key(r, t, "status", "2") {
        Some(s @ 1..=7) => s as u8,
        Some(other) => {
            if let Some((_, v)) = entry(t, "status") {
                r.error(
                    v.span(),
                    format!("\"status\" {other} is not a task status"),
                    "write status = 1 to 7 as REAL_STATUS: 1 new, 2 pending, 3 in progress (open), 4 awaiting control, 5 completed, 6 deferred, 7 declined",
                );
            }
            2
        }
        None => 2,
    };
    let seen = TaskSeen {
        id: id.unwrap_or(0),
        title: r.string(t, "title").unwrap_or_default(),
        responsible: id_key(r, t, "responsible", "3"),
        responsible_name: r.string(t, "responsible_name"),
        deadline: moment_key(r, t, "deadline"),
        status,
        deal_id: Some(deal_id),
    };
    let old_deadline = moment_key(r, t, "old_deadline");
    let by_rules = r.boolean(t, "by_rules").unwrap_or(true);
    (r.errors.len() == errors_before).then_some(TaskAt {
        seen,
        old_deadline,
        by_rules,
    })
}

//! One case run: the deal evaluated offline, its effects planned as the worker would, and
//! compared with what the case expects; a readable report of every difference.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use super::control::At;
use super::file::*;
use crate::calendar::Calendar;
use crate::commands::control_at::{no_task_at, overdue_at, slas_at};
use crate::commands::offline::plan_fired;
use crate::rules::{Decision, Input, Language, RuleSet, evaluate};
use crate::store::EffectKind;

/// One effect as the service would write it, in the words of an expectation.
#[derive(Debug, Clone)]
pub(super) struct Actual {
    rule: String,
    kind: &'static str,
    values: BTreeMap<&'static str, Value>,
    /// One line for people: what the demo prints.
    shown: String,
}

pub(super) fn kind_name(kind: EffectKind) -> &'static str {
    match kind {
        EffectKind::Task => "task",
        EffectKind::Comment => "comment",
        EffectKind::Notify => "notify",
        EffectKind::MoveBack => "move_back",
        EffectKind::CopyDeal => "copy",
        EffectKind::CloseTask => "close_task",
    }
}

/// The outcome of one case: `None` passed, `Some(report)` failed.
pub(super) fn run_case(
    file: &str,
    case: &Case,
    rules: &RuleSet,
    (calendar, max_tunnel_depth, language): (&Calendar, u32, Language),
) -> Option<String> {
    let input = Input {
        deal: &case.deal,
        entry: &case.entry,
        previous_stage: case.from.as_deref(),
        catalog: &case.catalog,
        calendar,
        portal_origin: &case.portal,
        max_tunnel_depth,
        language,
    };
    let (decisions, waiting) = match &case.at {
        Some(at) => control_decisions(rules, &input, at),
        None => (evaluate(rules, &input).decisions, Vec::new()),
    };
    let deal_id = case.deal.id().unwrap_or(0);
    let mut actual = Vec::new();
    let mut problems = Vec::new();
    let hint = |user: u64| format!(" (add supervisors = {{ {user} = ... }})");
    for planned in plan_fired(&decisions, deal_id, &case.supervisors, &hint) {
        match planned.call {
            Ok(call) => actual.push(Actual {
                rule: planned.rule.to_string(),
                kind: kind_name(call.kind),
                values: values_of(call.kind, &call.params),
                shown: crate::commands::demo::describe(&call.method, &call.params),
            }),
            Err(e) => problems.push(format!("rule \"{}\": {e}", planned.rule)),
        }
    }
    let mut report = String::new();
    let mut used = vec![false; actual.len()];
    for expect in &case.expect {
        let candidates: Vec<usize> = (0..actual.len())
            .filter(|&i| {
                actual[i].kind == expect.kind
                    && expect.rule.as_ref().is_none_or(|r| *r == actual[i].rule)
            })
            .collect();
        let hit = candidates
            .iter()
            .copied()
            .find(|&i| !used[i] && mismatches(expect, &actual[i]).is_empty());
        if let Some(i) = hit {
            used[i] = true;
            continue;
        }
        let what = describe_expect(&expect.kind, expect.rule.as_deref());
        let _ = writeln!(report, "  expected {what} ({file}:{})", expect.line);
        let best = candidates
            .iter()
            .copied()
            .min_by_key(|&i| (used[i], mismatches(expect, &actual[i]).len()));
        match best {
            Some(i) => {
                let _ = writeln!(
                    report,
                    "    closest actual [{}] {}",
                    actual[i].rule, actual[i].shown
                );
                for (key, expected, got) in mismatches(expect, &actual[i]) {
                    let _ = writeln!(report, "    {key}:");
                    let _ = writeln!(report, "      expected {expected}");
                    let _ = writeln!(report, "      actual   {got}");
                }
            }
            None => {
                let _ = writeln!(report, "    no such effect was made");
                if let Some(rule) = &expect.rule {
                    why_not(&mut report, (&decisions, &waiting), rule);
                }
            }
        }
    }
    for not in &case.expect_not {
        let hits: Vec<&Actual> = actual
            .iter()
            .filter(|a| {
                not.kind.as_ref().is_none_or(|k| k == a.kind)
                    && not.rule.as_ref().is_none_or(|r| *r == a.rule)
            })
            .collect();
        if !hits.is_empty() {
            let what = match (&not.kind, &not.rule) {
                (Some(k), r) => describe_expect(k, r.as_deref()),
                (None, Some(r)) => format!("an effect from rule \"{r}\""),
                (None, None) => "an effect".into(),
            };
            let _ = writeln!(report, "  expected no {what} ({file}:{})", not.line);
            for a in hits {
                let _ = writeln!(report, "    actual [{}] {}", a.rule, a.shown);
            }
        }
    }
    if case.exact {
        for (i, a) in actual.iter().enumerate().filter(|(i, _)| !used[*i]) {
            let _ = i;
            let _ = writeln!(
                report,
                "  unexpected [{}] {} (exact = true: every effect must be expected)",
                a.rule, a.shown
            );
        }
    }
    for p in problems {
        let _ = writeln!(report, "  effect cannot be made: {p}");
    }
    if report.is_empty() {
        return None;
    }
    let _ = writeln!(report, "  what the rules did:");
    for d in &decisions {
        let _ = writeln!(report, "    {}", decision_line(d));
    }
    for (_, line) in &waiting {
        let _ = writeln!(report, "    {line}");
    }
    if decisions.is_empty() && waiting.is_empty() {
        let _ = writeln!(
            report,
            "    no rule concerns {} (pipeline {}, {:?})",
            case.entry.stage_id, case.entry.category_id, case.entry.semantic
        );
    }
    Some(report)
}

/// An `[[sla]]` not due yet at the case's `now`: its name and a line for the report.
type Waiting = (String, String);

/// What the time-driven rules decide at the case's `now`, as the service's timer loop and
/// control sweep would: the SLAs watching the entry, the overdue rules over `tasks`, the no-task
/// rules; and the SLAs not due yet, for the report.
fn control_decisions(rules: &RuleSet, input: &Input<'_>, at: &At) -> (Vec<Decision>, Vec<Waiting>) {
    let mut decisions = Vec::new();
    let mut waiting = Vec::new();
    for sla in slas_at(rules, input, at.now) {
        match sla.decision {
            Some(d) => decisions.push(d),
            None => waiting.push((
                sla.rule.clone(),
                format!(
                    "rule \"{}\": not due yet at {} (first due {})",
                    sla.rule,
                    at.now.to_rfc3339(),
                    sla.first_due
                        .map_or_else(|| "never".into(), |d| d.to_rfc3339())
                ),
            )),
        }
    }
    decisions.extend(overdue_at(rules, input, &at.tasks, at.now));
    decisions.extend(no_task_at(rules, input, (&at.tasks, at.activities), at.now));
    (decisions, waiting)
}

fn decision_line(d: &Decision) -> String {
    let outcome = &d.outcome;
    let notes = if d.notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", d.notes.join("; "))
    };
    format!("rule \"{}\": {outcome}{notes}", d.rule)
}

fn why_not(report: &mut String, (decisions, waiting): (&[Decision], &[Waiting]), rule: &str) {
    match decisions.iter().find(|d| d.rule == rule) {
        Some(d) => {
            let _ = writeln!(report, "    {}", decision_line(d));
        }
        None if waiting.iter().any(|(r, _)| r == rule) => {
            for (_, line) in waiting.iter().filter(|(r, _)| r == rule) {
                let _ = writeln!(report, "    {line}");
            }
        }
        None => {
            let _ = writeln!(
                report,
                "    rule \"{rule}\" does not concern this stage entry (another pipeline or stage)"
            );
        }
    }
}

fn describe_expect(kind: &str, rule: Option<&str>) -> String {
    match rule {
        Some(r) => format!("{kind} from rule \"{r}\""),
        None => format!("{kind} from any rule"),
    }
}

/// The comparable values of a planned REST call, by expectation key.
fn values_of(kind: EffectKind, params: &Value) -> BTreeMap<&'static str, Value> {
    let f = &params["fields"];
    let mut values = BTreeMap::new();
    let mut put = |key: &'static str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            values.insert(key, v.clone());
        }
    };
    match kind {
        EffectKind::Task => {
            put("title", f.get("TITLE"));
            put("description", f.get("DESCRIPTION"));
            put("responsible", f.get("RESPONSIBLE_ID"));
            put("auditors", f.get("AUDITORS"));
            put("deadline", f.get("DEADLINE"));
        }
        EffectKind::MoveBack => put("to_stage", f.get("STAGE_ID")),
        EffectKind::Comment => put("text", f.get("COMMENT")),
        EffectKind::Notify => {
            put("user", params.get("USER_ID"));
            put("message", params.get("MESSAGE"));
        }
        EffectKind::CopyDeal => {
            put("to_pipeline", f.get("CATEGORY_ID"));
            put("to_stage", f.get("STAGE_ID"));
            put("responsible", f.get("ASSIGNED_BY_ID"));
            put("fields", Some(f));
        }
        EffectKind::CloseTask => put("task_id", params.get("taskId")),
    }
    values
}

/// A value as text for comparison: Bitrix24 mixes `"3"` and `3`; a test must not care.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn quoted(v: Option<&Value>) -> String {
    match v {
        None => "(nothing)".into(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => text(other),
    }
}

/// `(key, expected, actual)` for every check that does not hold.
fn mismatches(expect: &Expect, actual: &Actual) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (key, check) in &expect.checks {
        let base = key.trim_end_matches("_contains");
        let got = actual.values.get(base);
        match check {
            Check::Equals(want) => {
                if got.map(text) != Some(text(want)) {
                    out.push((key.clone(), quoted(Some(want)), quoted(got)));
                }
            }
            Check::Contains(part) => {
                if !got.map(text).is_some_and(|g| g.contains(part.as_str())) {
                    out.push((key.clone(), format!("to contain {part:?}"), quoted(got)));
                }
            }
            Check::Deadline(want) => {
                let got_time = got
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                if *want != got_time {
                    let show = |t: &Option<DateTime<FixedOffset>>| match t {
                        Some(t) => t.to_rfc3339(),
                        None => "none".into(),
                    };
                    out.push((key.clone(), show(want), show(&got_time)));
                }
            }
            Check::Fields(want) => {
                for (field, value) in want {
                    let g = got.and_then(|g| g.get(field));
                    if g.map(text) != Some(text(value)) {
                        out.push((format!("fields.{field}"), quoted(Some(value)), quoted(g)));
                    }
                }
            }
        }
    }
    out
}

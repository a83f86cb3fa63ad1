//! Pure evaluation: a deal, the stage entry being acted on and the rule set in; decisions and
//! effects out. No I/O here: the worker reads the portal before and applies effects after,
//! which is what makes dry runs, rule tests and the decision log cheap.
//!
//! Gate rules (`[[require]]`, `[[loss_reason]]`) run first. When one of them moves the deal
//! back, the deal never really entered the stage, so every other rule for the entry is skipped.
//!
//! Over 500 lines because each rule kind's evaluation is a short function beside the others it
//! orders with (gates first, then the rest); the shared inputs and outputs live in `deal.rs` and
//! `decision.rs`.

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike};
use serde_json::{Map, Value};

use crate::calendar::Calendar;
use crate::rules::RuleSet;
use crate::rules::condition::{is_missing, scalar_values};
use crate::rules::deal::{Deal, FieldCatalog, StageEntry, StageSemantic};
use crate::rules::decision::{
    CopySpec, Decision, Effect, Evaluation, Outcome, Person, SkipReason, TaskSpec,
};
use crate::rules::model::{
    Body, Deadline, DeadlineBase, LossReason, OnMissing, PersonRef, Require, Rule, RuleKind,
    StageMatch, TaskTemplate, Tunnel, stage_id, stage_pipeline,
};
use crate::rules::template::{
    Cap, MESSAGE_CAP, RenderContext, TEXT_CAP, TITLE_CAP, Template, cut, display_value, push_note,
};
use crate::rules::texts::Language;
use crate::rules::tunnel::CopyOrigin;

/// Each note of the decision log: notes quote deal values, which may be of any length.
const NOTE_CAP: Cap = Cap::Chars(500);
/// Most bytes of one copied value (its JSON) kept in the copy and the records: a longer text
/// is cut (ending with the mark), a longer list keeps its first items.
const COPIED_VALUE_MAX: usize = 64 * 1024;

/// Everything evaluation reads.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub deal: &'a Deal,
    /// The entry being acted on.
    pub entry: &'a StageEntry,
    /// The stage of the deal's previous history entry in the same pipeline (the revert
    /// target); `None` when the deal was created here or came from another pipeline.
    pub previous_stage: Option<&'a str>,
    pub catalog: &'a FieldCatalog,
    pub calendar: &'a Calendar,
    /// `https://x.bitrix24.ru`, for `{DEAL_URL}`.
    pub portal_origin: &'a str,
    /// `rules.max_tunnel_depth`: a deal that is already the copy of this depth in a chain of
    /// tunnel copies is not copied again.
    pub max_tunnel_depth: u32,
    /// `portal.language`: the language of the texts the service writes itself (a gate's default
    /// message, where the deal was moved back, the notification around it).
    pub language: Language,
}

/// Evaluates every rule concerning the entry (its pipeline and stage).
pub fn evaluate(rules: &RuleSet, input: &Input<'_>) -> Evaluation {
    let concerned: Vec<&Rule> = rules
        .rules()
        .iter()
        .filter(|r| concerns(r, input.entry))
        .collect();
    let is_gate = |r: &&Rule| matches!(r.kind, RuleKind::Require | RuleKind::LossReason);
    let mut decisions = Vec::new();
    let mut chains_stopped = Vec::new();
    let mut reverted_by: Option<String> = None;
    let mut reverting = Vec::new();
    for rule in concerned.iter().copied().filter(is_gate) {
        let (decision, reverts) = evaluate_gate(rule, input, reverted_by.as_deref());
        if reverts {
            reverted_by.get_or_insert_with(|| rule.name.clone());
            reverting.push(rule.name.clone());
        }
        decisions.push(decision);
    }
    if let Some(by) = &reverted_by {
        for decision in &mut decisions {
            if !reverting.contains(&decision.rule) && matches!(decision.outcome, Outcome::Fired(_))
            {
                decision.outcome = Outcome::Skipped(SkipReason::Reverted { by: by.clone() });
            }
        }
    }
    for rule in concerned.iter().copied().filter(|r| !is_gate(r)) {
        let decision = match &reverted_by {
            Some(by) => decision(
                rule,
                Outcome::Skipped(SkipReason::Reverted { by: by.clone() }),
                Vec::new(),
            ),
            None => evaluate_action(rule, input, &mut chains_stopped),
        };
        decisions.push(decision);
    }
    Evaluation {
        decisions,
        chains_stopped,
    }
}

fn decision(rule: &Rule, outcome: Outcome, notes: Vec<String>) -> Decision {
    Decision {
        rule: rule.name.clone(),
        kind: rule.kind,
        outcome,
        notes: notes.iter().map(|n| cut(n, NOTE_CAP).0).collect(),
    }
}

pub(crate) fn concerns(rule: &Rule, entry: &StageEntry) -> bool {
    if !rule.in_pipeline(entry.category_id) {
        return false;
    }
    match &rule.stage {
        StageMatch::Exact(code) => stage_id(entry.category_id, code) == entry.stage_id,
        StageMatch::Won => entry.semantic == StageSemantic::Success,
        StageMatch::Lost => entry.semantic == StageSemantic::Failure,
    }
}

/// `Some(decision)` when a `when` condition fails.
fn check_when(rule: &Rule, input: &Input<'_>) -> Option<Decision> {
    let failing = rule
        .when
        .iter()
        .find(|c| !c.holds(input.deal, input.catalog))?;
    let shown = display_value(input.deal, input.catalog, &failing.field, &mut Vec::new());
    let actual = if shown.is_empty() {
        "empty".to_string()
    } else {
        format!("\"{shown}\"")
    };
    Some(decision(
        rule,
        Outcome::Skipped(SkipReason::ConditionFalse),
        vec![format!(
            "condition not met: {failing} (the deal has {actual})"
        )],
    ))
}

fn evaluate_action(rule: &Rule, input: &Input<'_>, chains_stopped: &mut Vec<String>) -> Decision {
    // A copy's origin: what stops a tunnel from copying its own copies, and a chain of copies.
    let origin = match rule.body {
        Body::Tunnel(_) => CopyOrigin::of(input.deal),
        _ => None,
    };
    if let Some(origin) = origin.as_ref().filter(|o| o.rule == rule.name) {
        return decision(
            rule,
            Outcome::Skipped(SkipReason::OwnCopy {
                origin: origin.deal_id,
            }),
            vec![format!(
                "the deal is the copy this tunnel made of deal {}: a copy never fires the tunnel that made it",
                origin.deal_id
            )],
        );
    }
    if let Some(skipped) = check_when(rule, input) {
        return skipped;
    }
    let mut notes = Vec::new();
    let outcome = match &rule.body {
        Body::Task(task) | Body::Nps { task, .. } => match make_task(task, input, &mut notes) {
            Ok(spec) => Outcome::Fired(vec![Effect::CreateTask(spec)]),
            Err(why) => Outcome::Failed(why),
        },
        Body::Tunnel(tunnel) => match origin {
            Some(origin) if origin.depth >= input.max_tunnel_depth => {
                chains_stopped.push(rule.name.clone());
                Outcome::Failed(format!(
                    "tunnel chain deeper than {}: deal {} is already copy {} in a chain of tunnel copies (made by rule \"{}\" from deal {}), so it is not copied again",
                    input.max_tunnel_depth,
                    input.deal.id().unwrap_or(0),
                    origin.depth,
                    origin.rule,
                    origin.deal_id
                ))
            }
            origin => {
                let depth = origin.map_or(1, |o| o.depth.saturating_add(1));
                let copy = make_copy(tunnel, input, depth, &mut notes);
                Outcome::Fired(vec![Effect::CopyDeal(copy)])
            }
        },
        // Gates are evaluated by `evaluate_gate`.
        Body::Require(_) | Body::LossReason(_) => Outcome::Fired(Vec::new()),
    };
    decision(rule, outcome, notes)
}

/// A gate's decision, and whether it moves the deal back. `already`: a previous gate already
/// moved it back (this one then only comments and notifies).
fn evaluate_gate(rule: &Rule, input: &Input<'_>, already: Option<&str>) -> (Decision, bool) {
    if let Some(skipped) = check_when(rule, input) {
        return (skipped, false);
    }
    let mut notes = Vec::new();
    let ctx = RenderContext {
        deal: input.deal,
        catalog: input.catalog,
        portal_origin: input.portal_origin,
        extra: &[],
    };
    let (problem, on_missing, message, default_message) = match &rule.body {
        Body::Require(require) => (
            missing_required(require, input, &mut notes),
            require.on_missing,
            &require.message,
            input.language.require_message(),
        ),
        Body::LossReason(loss) => (
            loss_problem(loss, input, &mut notes),
            loss.on_missing,
            &loss.message,
            input.language.loss_reason_message(),
        ),
        _ => (None, OnMissing::Warn, &None, ""),
    };
    let Some(missing) = problem else {
        let outcome = match &rule.body {
            Body::LossReason(LossReason {
                review: Some(review),
                ..
            }) => match make_task(review, input, &mut notes) {
                Ok(spec) => Outcome::Fired(vec![Effect::CreateTask(spec)]),
                Err(why) => Outcome::Failed(why),
            },
            Body::LossReason(_) => {
                notes.push("loss reason given; no review task configured".into());
                Outcome::Fired(Vec::new())
            }
            _ => {
                notes.push("all required fields are filled".into());
                Outcome::Fired(Vec::new())
            }
        };
        return (decision(rule, outcome, notes), false);
    };
    let template = match message {
        Some(t) => t.clone(),
        // The default messages are valid templates, so the literal fallback is never used.
        None => {
            Template::parse(default_message).unwrap_or_else(|_| Template::text(default_message))
        }
    };
    let mut text = template.render(
        &ctx,
        Some(&missing.labels),
        ("the message", MESSAGE_CAP),
        &mut notes,
    );
    if let Some(extra) = &missing.detail {
        text = format!("{} {extra}", end_sentence(&text));
    }
    let mut effects = Vec::new();
    let mut reverts = false;
    match (on_missing, input.previous_stage) {
        (OnMissing::Revert, Some(previous))
            if stage_pipeline(previous) != Some(input.entry.category_id) =>
        {
            let there = match stage_pipeline(previous) {
                Some(p) => format!("in pipeline {p}"),
                None => "in no pipeline".to_string(),
            };
            notes.push(format!(
                "revert acts as warn: the previous stage {previous} is {there}, not in the deal's pipeline {} (a deal is never moved across pipelines)",
                input.entry.category_id
            ));
        }
        (OnMissing::Revert, Some(previous)) => {
            reverts = true;
            match already {
                Some(by) => notes.push(format!("the deal is already moved back by rule \"{by}\"")),
                None => effects.push(Effect::MoveBack { to_stage: previous.to_string() }),
            }
            // Named as the portal's people know it; offline (no catalog) by its id.
            let stage = input.catalog.stage_name(previous).unwrap_or(previous);
            text = format!("{} {}", end_sentence(&text), input.language.moved_back(stage));
        }
        (OnMissing::Revert, None) => notes.push(
            "revert acts as warn: the deal has no previous stage in this pipeline (created here or moved in from another pipeline)".into(),
        ),
        (OnMissing::Warn, _) => {}
    }
    let (text, _) = cut(&text, MESSAGE_CAP);
    let (title, _) = cut(
        &display_value(input.deal, input.catalog, "TITLE", &mut Vec::new()),
        TITLE_CAP,
    );
    let (notice, _) = cut(
        &input.language.gate_notice(&title, &ctx.deal_url(), &text),
        MESSAGE_CAP,
    );
    effects.push(Effect::AddComment { text });
    effects.push(Effect::Notify {
        user: resolve(&PersonRef::Assigned, input, &mut notes),
        message: notice,
    });
    (decision(rule, Outcome::Fired(effects), notes), reverts)
}

/// What a gate found missing: labels for `{MISSING}`, and an optional explanation.
struct Missing {
    labels: String,
    detail: Option<String>,
}

fn label(input: &Input<'_>, field: &str, notes: &mut Vec<String>) -> String {
    match input.catalog.label(field) {
        Some(label) => label.to_string(),
        None => {
            if input.catalog.is_empty() {
                push_note(
                    notes,
                    "no field catalog: fields are named by their codes".into(),
                );
            }
            field.to_string()
        }
    }
}

fn missing_required(
    require: &Require,
    input: &Input<'_>,
    notes: &mut Vec<String>,
) -> Option<Missing> {
    let missing: Vec<String> = require
        .fields
        .iter()
        .filter(|f| is_missing(input.deal, input.catalog, f))
        .map(|f| label(input, f, notes))
        .collect();
    if missing.is_empty() {
        return None;
    }
    notes.push(format!("missing: {}", missing.join(", ")));
    Some(Missing {
        labels: missing.join(", "),
        detail: None,
    })
}

fn loss_problem(loss: &LossReason, input: &Input<'_>, notes: &mut Vec<String>) -> Option<Missing> {
    let field_label = label(input, &loss.field, notes);
    if is_missing(input.deal, input.catalog, &loss.field) {
        notes.push(format!("loss reason {} is empty", loss.field));
        return Some(Missing {
            labels: field_label,
            detail: None,
        });
    }
    let allowed = loss.allowed.as_ref()?;
    let values = scalar_values(input.deal, &loss.field);
    let rejected: Vec<String> = values
        .iter()
        .filter(|raw| !raw.trim().is_empty())
        .filter_map(|raw| {
            let shown = input.catalog.option_label(&loss.field, raw).unwrap_or(raw);
            let ok = allowed.iter().any(|a| a == shown || a == raw.as_str());
            (!ok).then(|| shown.to_string())
        })
        .collect();
    if rejected.is_empty() {
        return None;
    }
    // The decision log is the operators', in English; the comment is in the portal's language.
    notes.push(format!(
        "loss reason {}",
        Language::En.reason_not_accepted(&rejected, allowed)
    ));
    let detail = input.language.reason_not_accepted(&rejected, allowed);
    Some(Missing {
        labels: field_label,
        detail: Some(detail),
    })
}

pub(in crate::rules) fn make_task(
    task: &TaskTemplate,
    input: &Input<'_>,
    notes: &mut Vec<String>,
) -> Result<TaskSpec, String> {
    if input.deal.id().is_none() {
        return Err("the deal has no ID: a task cannot be bound to it".into());
    }
    let ctx = RenderContext {
        deal: input.deal,
        catalog: input.catalog,
        portal_origin: input.portal_origin,
        extra: &[],
    };
    Ok(TaskSpec {
        title: task
            .title
            .render(&ctx, None, ("the title", TITLE_CAP), notes),
        description: task
            .description
            .as_ref()
            .map(|d| d.render(&ctx, None, ("the description", TEXT_CAP), notes)),
        responsible: resolve(&task.responsible, input, notes),
        auditors: task
            .auditors
            .iter()
            .map(|a| resolve(a, input, notes))
            .collect(),
        deadline: deadline(&task.deadline, input, notes),
    })
}

fn make_copy(tunnel: &Tunnel, input: &Input<'_>, depth: u32, notes: &mut Vec<String>) -> CopySpec {
    let ctx = RenderContext {
        deal: input.deal,
        catalog: input.catalog,
        portal_origin: input.portal_origin,
        extra: &[],
    };
    let mut fields = Map::new();
    for field in &tunnel.copy {
        match input.deal.get(field) {
            Some(value) if !value.is_null() => {
                let (value, was_cut) = capped(value, COPIED_VALUE_MAX);
                if was_cut {
                    push_note(
                        notes,
                        format!("field {field} longer than 64 KiB: copied cut"),
                    );
                }
                fields.insert(field.clone(), value);
            }
            _ => push_note(notes, format!("field {field} empty: not copied")),
        }
    }
    for (field, template) in &tunnel.set {
        let cap = if field == "TITLE" {
            TITLE_CAP
        } else {
            TEXT_CAP
        };
        let value = template.render(&ctx, None, (&format!("set {field}"), cap), notes);
        fields.insert(field.clone(), Value::String(value));
    }
    CopySpec {
        to_pipeline: tunnel.to_pipeline,
        to_stage: tunnel.to_stage.clone(),
        fields,
        responsible: resolve(&tunnel.responsible, input, notes),
        depth,
    }
}

/// A deal value within `max` bytes of JSON, and whether it had to be cut: a text is cut
/// (ending with the mark), a list keeps its first items, a table what fits of its entries.
fn capped(value: &Value, max: usize) -> (Value, bool) {
    match value {
        Value::String(text) => {
            // The JSON quotes and escapes are not counted: the text itself is what is cut.
            let (text, was_cut) = cut(text, Cap::Bytes(max));
            (Value::String(text), was_cut)
        }
        Value::Array(items) => {
            let mut kept = Vec::new();
            let mut size = 2;
            let mut was_cut = false;
            for item in items {
                let (item, cut_inside) = capped(item, max.saturating_sub(size));
                let len = item.to_string().len() + 1;
                if size + len > max {
                    was_cut = true;
                    break;
                }
                size += len;
                was_cut |= cut_inside;
                kept.push(item);
            }
            (Value::Array(kept), was_cut)
        }
        Value::Object(map) => {
            let mut kept = Map::new();
            let mut size = 2;
            let mut was_cut = false;
            for (key, item) in map {
                let (item, cut_inside) = capped(item, max.saturating_sub(size + key.len() + 4));
                let len = key.len() + 4 + item.to_string().len();
                if size + len > max {
                    was_cut = true;
                    break;
                }
                size += len;
                was_cut |= cut_inside;
                kept.insert(key.clone(), item);
            }
            (Value::Object(kept), was_cut)
        }
        other => (other.clone(), false),
    }
}

pub(in crate::rules) fn resolve(
    person: &PersonRef,
    input: &Input<'_>,
    notes: &mut Vec<String>,
) -> Person {
    let assigned = || input.deal.assigned_by();
    match person {
        PersonRef::User(id) => Person::User(*id),
        PersonRef::Assigned => assigned().map_or_else(
            || Person::Unresolved("the deal has no ASSIGNED_BY_ID".into()),
            Person::User,
        ),
        PersonRef::Supervisor => assigned().map_or_else(
            || Person::Unresolved("the deal has no ASSIGNED_BY_ID, so no supervisor".into()),
            Person::SupervisorOf,
        ),
        PersonRef::Field(field) => {
            let values = scalar_values(input.deal, field);
            let ids: Vec<u64> = values
                .iter()
                .filter_map(|v| v.trim().trim_start_matches("user_").parse().ok())
                .collect();
            if ids.len() > 1 {
                push_note(
                    notes,
                    format!("field {field} holds several users: the first is used"),
                );
            }
            match ids.first() {
                Some(id) => Person::User(*id),
                None if values.iter().all(|v| v.trim().is_empty()) => {
                    Person::Unresolved(format!("field {field} is empty"))
                }
                None => Person::Unresolved(format!(
                    "field {field} holds no user id ({})",
                    values.join(", ")
                )),
            }
        }
    }
}

/// The moment the deal entered the stage: its `MOVED_TIME`, else the entry's time.
fn entered_at(input: &Input<'_>, notes: &mut Vec<String>) -> DateTime<FixedOffset> {
    match input
        .deal
        .get("MOVED_TIME")
        .and_then(Value::as_str)
        .map(DateTime::parse_from_rfc3339)
    {
        Some(Ok(moved)) => moved,
        _ => {
            push_note(
                notes,
                "the deal has no MOVED_TIME: the stage entry's time is used".into(),
            );
            input.entry.created_time
        }
    }
}

fn deadline(
    d: &Deadline,
    input: &Input<'_>,
    notes: &mut Vec<String>,
) -> Option<DateTime<FixedOffset>> {
    let cal = input.calendar;
    let (base, field) = match &d.base {
        DeadlineBase::AfterEntry(p) => (Some(cal.add(entered_at(input, notes), *p)), None),
        DeadlineBase::AfterField(p, f) => (
            field_moment(f, input, notes).map(|m| cal.add(m, *p)),
            Some(f),
        ),
        DeadlineBase::BeforeField(p, f) => (
            field_moment(f, input, notes).map(|m| cal.subtract(m, *p)),
            Some(f),
        ),
        DeadlineBase::At(local) => (Some(cal.at_local(*local)), None),
        DeadlineBase::AtInstant(at) => (Some(cal.fixed(*at)), None),
    };
    match base {
        Some(at) => Some(d.time.map_or(at, |t| cal.with_time(at, t))),
        None => {
            let field = field.map_or("", String::as_str);
            match &d.fallback {
                Some(fallback) => {
                    notes.push(format!("deadline field {field} empty: fallback used"));
                    deadline(fallback, input, notes)
                }
                None => {
                    notes.push(format!(
                        "deadline field {field} empty, no fallback: task without deadline"
                    ));
                    None
                }
            }
        }
    }
}

/// A deal field as a deadline base. A `date` field arrives as midnight UTC printed in the
/// server's offset: its day is the UTC date and it means the end of working hours that day.
/// Without a catalog the type is unknown; a bare date or exactly 00:00 UTC is read as a date.
fn field_moment(
    field: &str,
    input: &Input<'_>,
    notes: &mut Vec<String>,
) -> Option<DateTime<FixedOffset>> {
    let raw = scalar_values(input.deal, field)
        .into_iter()
        .find(|v| !v.trim().is_empty())?;
    let raw = raw.trim();
    let as_date = |date: NaiveDate| Some(input.calendar.end_of_day(date));
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return as_date(date);
    }
    let Ok(moment) = DateTime::parse_from_rfc3339(raw) else {
        notes.push(format!(
            "field {field} holds \"{raw}\", not a date: treated as empty"
        ));
        return None;
    };
    let utc = moment.naive_utc();
    match input.catalog.field_type(field) {
        Some("date") => as_date(utc.date()),
        Some(_) => Some(moment),
        None => {
            if utc.time().num_seconds_from_midnight() == 0 {
                push_note(
                    notes,
                    format!("type of {field} unknown (no catalog): midnight UTC read as a date"),
                );
                as_date(utc.date())
            } else {
                Some(moment)
            }
        }
    }
}

/// The text as a sentence: a full stop added unless it already ends with one (an integrator's
/// message often does), so that appended sentences never read "..".
fn end_sentence(text: &str) -> String {
    let trimmed = text.trim_end();
    if trimmed.ends_with(['.', '!', '?']) {
        trimmed.to_string()
    } else {
        format!("{trimmed}.")
    }
}

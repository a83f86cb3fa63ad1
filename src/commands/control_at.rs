//! What the time-driven rules do for one deal at a given moment, offline: the `[[sla]]`s that
//! watch its stage entry, the `[[overdue]]`s over its tasks, the `[[no_task]]`s over its next
//! steps. `b24-robot test` and `b24-robot dry-run --now` both ask here, so that the two tools
//! agree with each other and with the service, whose timer loop and control sweep call the same
//! pure decisions (`Sla::fire`, `Overdue::report`, `NoTask::report`); what only the store knows
//! there (the deadline the last sweep read, which tasks the service made) is given instead.

use chrono::{DateTime, FixedOffset};

use crate::rules::control::TaskScope;
use crate::rules::control::evaluate::TaskSeen;
use crate::rules::{Decision, Input, RuleSet, StageSemantic, offline_semantic};

type Moment = DateTime<FixedOffset>;

/// One `[[sla]]` watching the entry, at `now`.
#[derive(Debug)]
pub struct SlaAt {
    pub rule: String,
    /// When its first firing is due.
    pub first_due: Option<Moment>,
    /// How many firings it has at most for the entry.
    pub firings: u32,
    /// The firing that has come by `now` (0: the first), the latest one: the service fires each
    /// when it comes, so at `now` the latest is the one to look at. `None`: not due yet.
    pub firing: Option<u32>,
    /// What it does at that firing: `Sla::fire`, or `Sla::left` when the deal (as read at
    /// `now`) is no longer in the entry's stage.
    pub decision: Option<Decision>,
}

/// Every `[[sla]]` watching `input.entry`, evaluated at `now` on `input.deal` as read then.
pub fn slas_at(rules: &RuleSet, input: &Input<'_>, now: Moment) -> Vec<SlaAt> {
    let entry = input.entry;
    let mut out = Vec::new();
    for sla in rules.controls().sla().iter().filter(|s| s.watches(entry)) {
        let come = (0..sla.firings())
            .take_while(|&r| {
                sla.due(input.calendar, entry.created_time, r)
                    .is_some_and(|at| at <= now)
            })
            .count() as u32;
        let firing = come.checked_sub(1);
        let still_in = input.deal.stage_id() == Some(entry.stage_id.as_str());
        let decision = firing.map(|r| {
            if still_in {
                sla.fire(input, r, now)
            } else {
                sla.left(input.deal.stage_id().map(str::to_string))
            }
        });
        out.push(SlaAt {
            rule: sla.name().to_string(),
            first_due: sla.due(input.calendar, entry.created_time, 0),
            firings: sla.firings(),
            firing,
            decision,
        });
    }
    out
}

/// A task of the deal as the control sweep would read it, with what the store would know.
#[derive(Debug, Clone)]
pub struct TaskAt {
    pub seen: TaskSeen,
    /// The deadline the previous sweep read, when it differs: the deadline was moved.
    pub old_deadline: Option<Moment>,
    /// Whether the service's rules made it (what `tasks = "rules"` watches).
    pub by_rules: bool,
}

/// The deal's pipeline, stage and semantic as read at `now`.
fn deal_now(input: &Input<'_>) -> (u64, String, StageSemantic) {
    let stage = input
        .deal
        .stage_id()
        .unwrap_or(&input.entry.stage_id)
        .to_string();
    let semantic = if stage == input.entry.stage_id {
        input.entry.semantic
    } else {
        offline_semantic(&stage).unwrap_or(StageSemantic::Process)
    };
    let pipeline = input.deal.category_id().unwrap_or(input.entry.category_id);
    (pipeline, stage, semantic)
}

/// Every `[[overdue]]`'s decisions over `tasks` (bound to `input.deal`) at `now`: a moved
/// deadline's notices, then the overdue report, per rule and task, as the sweep orders them.
pub fn overdue_at(
    rules: &RuleSet,
    input: &Input<'_>,
    tasks: &[TaskAt],
    now: Moment,
) -> Vec<Decision> {
    let (pipeline, _, semantic) = deal_now(input);
    let mut out = Vec::new();
    for rule in rules.controls().overdue() {
        if rule.pipeline().is_some_and(|p| p != pipeline) {
            continue;
        }
        for task in tasks {
            let in_scope = match rule.tasks() {
                TaskScope::Rules => task.by_rules,
                // The sweep reads the open deals only: a closed deal's tasks are not watched.
                TaskScope::All => task.by_rules || semantic == StageSemantic::Process,
            };
            if !in_scope {
                continue;
            }
            if task
                .old_deadline
                .is_some_and(|old| Some(old) != task.seen.deadline)
                && let Some(moved) = rule.moved(&task.seen, task.old_deadline, input)
            {
                out.push(moved);
            }
            if rule.is_overdue(input.calendar, &task.seen, now) {
                out.push(rule.report(&task.seen, input));
            }
        }
    }
    out
}

/// Every `[[no_task]]` watching the deal (as read at `now`) that is past its `after` since the
/// stage entry without an open task (nor, with `count_activities`, an open activity).
pub fn no_task_at(
    rules: &RuleSet,
    input: &Input<'_>,
    (tasks, activities): (&[TaskAt], u32),
    now: Moment,
) -> Vec<Decision> {
    let (pipeline, stage, semantic) = deal_now(input);
    let has_task = tasks.iter().any(|t| t.seen.is_open());
    let since = input.entry.created_time;
    rules
        .controls()
        .no_task()
        .iter()
        .filter(|rule| rule.watches(pipeline, &stage, semantic))
        .filter(|rule| !(has_task || (rule.count_activities() && activities > 0)))
        .filter(|rule| rule.due(input.calendar, since) <= now)
        .map(|rule| rule.report(input, since))
        .collect()
}

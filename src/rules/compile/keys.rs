//! The keys each table of a rule file takes, and the words of its word-valued keys: the one list
//! that both the checks of the compiler (unknown keys, "did you mean") and the JSON Schema
//! (`schema.rs`, its properties and enums) read, so the two cannot disagree.

use crate::rules::model::RuleKind;

/// The keys at the top of a rule file.
pub(crate) const TOP_LEVEL: &[&str] = &[
    "pipeline",
    "task",
    "require",
    "loss_reason",
    "nps",
    "tunnel",
    "sla",
    "overdue",
    "no_task",
    "digest",
    "plan",
];
const TASK_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "stage",
    "when",
    "title",
    "description",
    "responsible",
    "auditors",
    "deadline",
    "close_on_leave",
];
const REQUIRE_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "stage",
    "when",
    "fields",
    "on_missing",
    "message",
];
const LOSS_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "when",
    "field",
    "allowed",
    "on_missing",
    "message",
    "review",
];
/// The keys of `[loss_reason.review]`: a task's, without name, pipeline, stage and when.
pub(crate) const REVIEW_KEYS: &[&str] = &[
    "title",
    "description",
    "responsible",
    "auditors",
    "deadline",
    "close_on_leave",
];
const NPS_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "when",
    "title",
    "description",
    "responsible",
    "auditors",
    "deadline",
    "score_field",
    "close_on_leave",
];
const TUNNEL_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "stage",
    "when",
    "to_pipeline",
    "to_stage",
    "copy",
    "set",
    "responsible",
];
const SLA_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "stage",
    "within",
    "notify",
    "message",
    "when",
    "task",
    "repeat",
    "max_repeats",
];
/// The keys of `[sla.task]`: a task's, without name, pipeline, stage and when.
pub(crate) const SLA_TASK_KEYS: &[&str] = REVIEW_KEYS;
const OVERDUE_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "tasks",
    "notify",
    "message",
    "grace",
    "deadline_moved",
];
/// The keys of `[overdue.deadline_moved]`.
pub(crate) const DEADLINE_MOVED_KEYS: &[&str] = &["notify", "message"];
const NO_TASK_KEYS: &[&str] = &[
    "name",
    "pipeline",
    "stages",
    "after",
    "notify",
    "message",
    "count_activities",
];
const DIGEST_KEYS: &[&str] = &["name", "to", "at", "include", "send_empty", "title"];
const PLAN_KEYS: &[&str] = &[
    "name", "period", "pipeline", "measure", "currency", "targets", "target",
];
/// The values of a `[[plan]]`'s `measure`.
pub(crate) const MEASURE_WORDS: &[&str] = &["amount", "count"];
/// The values of `close_on_leave`.
pub(crate) const CLOSE_ON_LEAVE_WORDS: &[&str] = &["complete", "defer"];
/// The values of an `[[overdue]]`'s `tasks`.
pub(crate) const TASK_SCOPE_WORDS: &[&str] = &["rules", "all"];
/// The people an `[[overdue]]` names by a word.
pub(crate) const TASK_PERSON_WORDS: &[&str] = &["responsible", "supervisor", "assigned"];

/// The keys of a deadline table (and of its `fallback`).
pub(crate) const DEADLINE_KEYS: &[&str] = &["after", "before", "field", "at", "time", "fallback"];
/// The people named by a word rather than an id or a field.
pub(crate) const PERSON_WORDS: &[&str] = &["assigned", "supervisor"];
/// The values of `on_missing`.
pub(crate) const ON_MISSING_WORDS: &[&str] = &["revert", "warn"];

/// The keys a rule of `kind` takes.
pub(crate) fn rule_keys(kind: RuleKind) -> &'static [&'static str] {
    match kind {
        RuleKind::Task => TASK_KEYS,
        RuleKind::Require => REQUIRE_KEYS,
        RuleKind::LossReason => LOSS_KEYS,
        RuleKind::Nps => NPS_KEYS,
        RuleKind::Tunnel => TUNNEL_KEYS,
        RuleKind::Sla => SLA_KEYS,
        RuleKind::Overdue => OVERDUE_KEYS,
        RuleKind::NoTask => NO_TASK_KEYS,
        RuleKind::Digest => DIGEST_KEYS,
        RuleKind::Plan => PLAN_KEYS,
    }
}

pub(super) const MAX_NAME: usize = 64;

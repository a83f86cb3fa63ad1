//! Valid rules only. Every value here went through `compile`, so evaluation never meets a bad
//! duration, an unknown person or a stage of the wrong pipeline. Fields are private to the
//! `rules` module: nothing outside can build a rule that skipped validation.

use chrono::{DateTime, FixedOffset, NaiveDateTime, NaiveTime};

use crate::calendar::Period;
use crate::rules::condition::Condition;
use crate::rules::template::Template;

/// The kinds of rules: five that act on a stage entry (`rules.md`), four driven by time
/// (`control.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Task,
    Require,
    LossReason,
    Nps,
    Tunnel,
    Sla,
    Overdue,
    NoTask,
    Digest,
    /// `[[plan]]`: no effect of its own, read by the `plan` report.
    Plan,
}

/// The TOML table name, as people write it: `task`, `loss_reason`.
impl std::fmt::Display for RuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.table())
    }
}

impl RuleKind {
    /// The TOML table name: `task` for `[[task]]`.
    pub fn table(self) -> &'static str {
        match self {
            RuleKind::Task => "task",
            RuleKind::Require => "require",
            RuleKind::LossReason => "loss_reason",
            RuleKind::Nps => "nps",
            RuleKind::Tunnel => "tunnel",
            RuleKind::Sla => "sla",
            RuleKind::Overdue => "overdue",
            RuleKind::NoTask => "no_task",
            RuleKind::Digest => "digest",
            RuleKind::Plan => "plan",
        }
    }

    /// Whether rules of this kind are driven by time (`control.md`), not by a stage entry.
    pub fn is_control(self) -> bool {
        matches!(
            self,
            RuleKind::Sla | RuleKind::Overdue | RuleKind::NoTask | RuleKind::Digest
        )
    }
}

/// One loaded rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub(super) name: String,
    pub(super) kind: RuleKind,
    /// Where it was defined, for duplicate-name reports and logs.
    pub(super) file: String,
    pub(super) line: usize,
    /// `None`: every pipeline (only with won/lost stages); otherwise one or more pipelines,
    /// each listed once (`pipeline = 2` or `pipeline = [0, 2]`).
    pub(super) pipelines: Option<Vec<u64>>,
    pub(super) stage: StageMatch,
    pub(super) when: Vec<Condition>,
    pub(super) body: Body,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// The pipelines the rule is bound to; `None` means every pipeline.
    pub fn pipelines(&self) -> Option<&[u64]> {
        self.pipelines.as_deref()
    }

    /// The field an `[[nps]]` keeps its 0-10 answer in: what the `nps` report reads.
    pub fn score_field(&self) -> Option<&str> {
        match &self.body {
            Body::Nps { score_field, .. } => score_field.as_deref(),
            _ => None,
        }
    }

    /// The field a `[[loss_reason]]` reads the reason from: what the `losses` report groups by.
    pub fn loss_field(&self) -> Option<&str> {
        match &self.body {
            Body::LossReason(loss) => Some(&loss.field),
            _ => None,
        }
    }

    /// Whether the rule concerns deals of `pipeline`.
    pub(crate) fn in_pipeline(&self, pipeline: u64) -> bool {
        self.pipelines
            .as_ref()
            .is_none_or(|ps| ps.contains(&pipeline))
    }

    /// The exact stage ids the rule waits for, one per pipeline (`NEW`, `C2:NEW`); none for a
    /// won/lost rule.
    pub(super) fn stage_ids(&self) -> Vec<String> {
        match (&self.stage, &self.pipelines) {
            (StageMatch::Exact(code), Some(pipelines)) => {
                pipelines.iter().map(|&p| stage_id(p, code)).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The file the rule was defined in, and the line of its table header.
    pub fn location(&self) -> (&str, usize) {
        (&self.file, self.line)
    }
}

/// Which entries a rule concerns within its pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StageMatch {
    /// A stage code, the `STAGE_ID` without its `C<n>:` prefix (`PREPARATION`): in each
    /// pipeline `p` of the rule, the stage [`stage_id`]`(p, code)`. A rule with it always has
    /// pipelines (`compile` makes sure).
    Exact(String),
    /// Any success stage (`STAGE_SEMANTIC_ID = "S"`).
    Won,
    /// Any failure stage (`STAGE_SEMANTIC_ID = "F"`).
    Lost,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Body {
    Task(TaskTemplate),
    Require(Require),
    LossReason(LossReason),
    Nps {
        task: TaskTemplate,
        score_field: Option<String>,
    },
    Tunnel(Tunnel),
}

/// What `[[task]]`, `[[nps]]` and `[loss_reason.review]` have in common.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TaskTemplate {
    pub(super) title: Template,
    pub(super) description: Option<Template>,
    pub(super) responsible: PersonRef,
    pub(super) auditors: Vec<PersonRef>,
    pub(super) deadline: Deadline,
    /// `close_on_leave`: what becomes of the task when the deal leaves the entry that made it
    /// (`control.md`, "Task lifecycle"); `None`: it stays.
    pub(super) close_on_leave: Option<crate::rules::control::CloseOnLeave>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnMissing {
    Revert,
    Warn,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Require {
    pub(super) fields: Vec<String>,
    pub(super) on_missing: OnMissing,
    pub(super) message: Option<Template>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct LossReason {
    pub(super) field: String,
    /// Accepted values (option labels for a list field); `None`: any non-empty value.
    pub(super) allowed: Option<Vec<String>>,
    pub(super) on_missing: OnMissing,
    pub(super) message: Option<Template>,
    pub(super) review: Option<TaskTemplate>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tunnel {
    pub(super) to_pipeline: u64,
    pub(super) to_stage: String,
    /// Line and column of the `to_stage` value: where a tunnel cycle is reported.
    pub(super) to_stage_at: (usize, usize),
    pub(super) copy: Vec<String>,
    pub(super) set: Vec<(String, Template)>,
    pub(super) responsible: PersonRef,
}

/// Bitrix24's standard deal stage codes, those every pipeline starts with: `crm.status.list`
/// with `ENTITY_ID = DEAL_STAGE` answers NEW, PREPARATION, PREPAYMENT_INVOICE, EXECUTING,
/// FINAL_INVOICE, WON, LOSE and APOLOGY (bitrix24/b24restdocs
/// `api-reference/crm/status/crm-status-list.md`, the example response; reference §6.6). Stages a
/// portal adds get generated `UC_` codes (`C9:UC_NYL06U`, reference §6.6).
pub(crate) const STANDARD_STAGES: [&str; 8] = [
    "NEW",
    "PREPARATION",
    "PREPAYMENT_INVOICE",
    "EXECUTING",
    "FINAL_INVOICE",
    "WON",
    "LOSE",
    "APOLOGY",
];

/// The stage id of `code` in `pipeline`: `NEW` in 0, `C2:NEW` in 2.
pub(crate) fn stage_id(pipeline: u64, code: &str) -> String {
    if pipeline == 0 {
        code.to_string()
    } else {
        format!("C{pipeline}:{code}")
    }
}

/// The pipeline of a stage id: `C1:NEW` is in 1, `NEW` in the default pipeline 0; `None` for
/// a `C<n>:` prefix that is not one.
pub(crate) fn stage_pipeline(stage: &str) -> Option<u64> {
    match stage.split_once(':') {
        None => Some(0),
        Some((prefix, _)) => prefix.strip_prefix('C')?.parse().ok(),
    }
}

/// A person as a rule names them; resolved against the deal at evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PersonRef {
    Assigned,
    Supervisor,
    User(u64),
    Field(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Deadline {
    pub(super) base: DeadlineBase,
    /// Pins the time of day of the result.
    pub(super) time: Option<NaiveTime>,
    /// Used when the field of a field-relative deadline is empty.
    pub(super) fallback: Option<Box<Deadline>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum DeadlineBase {
    /// After the stage entry (`MOVED_TIME`).
    AfterEntry(Period),
    AfterField(Period, String),
    BeforeField(Period, String),
    /// A wall-clock moment in the calendar's zone.
    At(NaiveDateTime),
    /// A moment written with its UTC offset.
    AtInstant(DateTime<FixedOffset>),
}

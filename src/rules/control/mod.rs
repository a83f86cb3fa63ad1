//! The time-driven rules of `control.md`: `[[sla]]`, `[[overdue]]`, `[[no_task]]` and
//! `[[digest]]`. Like [`super::model`], valid rules only: they are built by `compile` and their
//! fields are private to `rules`; the service reads them through the accessors and the pure
//! evaluation of [`evaluate`] and [`digest`].
//!
//! A time-driven rule does not fire on a stage entry: the control loop (`crate::worker::control`) arms
//! timers for the entries an `[[sla]]` watches, sweeps the portal's tasks and deals for
//! `[[overdue]]` and `[[no_task]]`, and composes the `[[digest]]`s at their slots. What each one
//! then does is decided here, from what the loop read, without I/O.

pub mod digest;
pub mod evaluate;

use chrono::NaiveTime;

use crate::calendar::Period;
use crate::rules::condition::Condition;
use crate::rules::deal::{StageEntry, StageSemantic};
use crate::rules::model::{PersonRef, TaskTemplate};
use crate::rules::template::Template;

/// Every time-driven rule of a rule set, by kind, each in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlRules {
    pub(in crate::rules) sla: Vec<Sla>,
    pub(in crate::rules) overdue: Vec<Overdue>,
    pub(in crate::rules) no_task: Vec<NoTask>,
    pub(in crate::rules) digests: Vec<Digest>,
}

impl ControlRules {
    pub fn sla(&self) -> &[Sla] {
        &self.sla
    }

    pub fn overdue(&self) -> &[Overdue] {
        &self.overdue
    }

    pub fn no_task(&self) -> &[NoTask] {
        &self.no_task
    }

    pub fn digests(&self) -> &[Digest] {
        &self.digests
    }

    pub fn sla_named(&self, name: &str) -> Option<&Sla> {
        self.sla.iter().find(|r| r.name == name)
    }

    pub fn overdue_named(&self, name: &str) -> Option<&Overdue> {
        self.overdue.iter().find(|r| r.name == name)
    }

    pub fn no_task_named(&self, name: &str) -> Option<&NoTask> {
        self.no_task.iter().find(|r| r.name == name)
    }

    pub fn digest_named(&self, name: &str) -> Option<&Digest> {
        self.digests.iter().find(|r| r.name == name)
    }

    /// Whether there is anything for the control sweep to do.
    pub fn sweeps(&self) -> bool {
        !self.overdue.is_empty() || !self.no_task.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.sla.is_empty()
            && self.overdue.is_empty()
            && self.no_task.is_empty()
            && self.digests.is_empty()
    }

    /// The names and kinds of every rule, in file order within each kind.
    pub fn names(&self) -> Vec<(&str, crate::rules::RuleKind)> {
        use crate::rules::RuleKind;
        let mut out: Vec<(&str, RuleKind)> = Vec::new();
        out.extend(self.sla.iter().map(|r| (r.name.as_str(), RuleKind::Sla)));
        out.extend(
            self.overdue
                .iter()
                .map(|r| (r.name.as_str(), RuleKind::Overdue)),
        );
        out.extend(
            self.no_task
                .iter()
                .map(|r| (r.name.as_str(), RuleKind::NoTask)),
        );
        out.extend(
            self.digests
                .iter()
                .map(|r| (r.name.as_str(), RuleKind::Digest)),
        );
        out
    }
}

/// Where a rule was written: the file, and the line of its table header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::rules) struct Origin {
    pub(in crate::rules) file: String,
    pub(in crate::rules) line: usize,
}

/// Which stage entries an `[[sla]]` watches in its pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::rules) enum SlaStage {
    /// One stage, by its full id (`C1:OFFER`; `OFFER` in pipeline 0).
    Exact(String),
    /// `"any"`: every in-progress (P) stage of the pipeline.
    InProgress,
}

/// `[[sla]]`: a deal must not sit in a stage entry longer than `within`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    pub(in crate::rules) name: String,
    pub(in crate::rules) origin: Origin,
    pub(in crate::rules) pipeline: u64,
    pub(in crate::rules) stage: SlaStage,
    pub(in crate::rules) within: Period,
    /// Who gets `message` (`im.notify.system.add`); may be empty when `task` is set.
    pub(in crate::rules) notify: Vec<PersonRef>,
    /// `None`: the service's own text in `portal.language`.
    pub(in crate::rules) message: Option<Template>,
    /// Checked at fire time, on the deal as read then.
    pub(in crate::rules) when: Vec<Condition>,
    /// `[sla.task]`: its `after` deadlines count from the moment the SLA fires.
    pub(in crate::rules) task: Option<TaskTemplate>,
    /// Fire again every `repeat` while the deal stays, at most `max_repeats` more times.
    pub(in crate::rules) repeat: Option<Period>,
    pub(in crate::rules) max_repeats: u32,
}

impl Sla {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pipeline(&self) -> u64 {
        self.pipeline
    }

    pub fn within(&self) -> Period {
        self.within
    }

    pub fn repeat(&self) -> Option<Period> {
        self.repeat
    }

    /// How many times it fires at most for one stage entry: once, plus the repetitions.
    pub fn firings(&self) -> u32 {
        1 + self.repeat.map_or(0, |_| self.max_repeats)
    }

    /// The stage it watches, as written (`C1:OFFER`), or `"any"`.
    pub fn stage_text(&self) -> &str {
        match &self.stage {
            SlaStage::Exact(id) => id,
            SlaStage::InProgress => "any",
        }
    }

    /// Whether an entry into this stage arms its timer: the pipeline and stage match (`"any"`:
    /// an in-progress stage).
    pub fn watches(&self, entry: &StageEntry) -> bool {
        entry.category_id == self.pipeline
            && match &self.stage {
                SlaStage::Exact(id) => *id == entry.stage_id,
                SlaStage::InProgress => entry.semantic == StageSemantic::Process,
            }
    }

    /// Where it was written: the file and the line of its `[[sla]]`.
    pub fn location(&self) -> (&str, usize) {
        (&self.origin.file, self.origin.line)
    }
}

/// Which tasks an `[[overdue]]` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskScope {
    /// The tasks the service created (stage tasks, reviews, NPS and SLA tasks).
    Rules,
    /// Every open task bound to an in-progress deal of the pipeline.
    All,
}

/// A person named about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::rules) enum TaskPersonRef {
    /// The task's `RESPONSIBLE_ID`.
    Responsible,
    /// The supervisor of the task's responsible.
    Supervisor,
    /// The deal's `ASSIGNED_BY_ID`.
    Assigned,
    User(u64),
}

/// `[[overdue]]`: overdue tasks, and (optionally) moved deadlines.
#[derive(Debug, Clone, PartialEq)]
pub struct Overdue {
    pub(in crate::rules) name: String,
    pub(in crate::rules) origin: Origin,
    /// `None`: tasks bound to deals of every pipeline.
    pub(in crate::rules) pipeline: Option<u64>,
    pub(in crate::rules) tasks: TaskScope,
    pub(in crate::rules) notify: Vec<TaskPersonRef>,
    pub(in crate::rules) message: Option<Template>,
    /// How long past the deadline before a task counts as overdue.
    pub(in crate::rules) grace: Period,
    pub(in crate::rules) deadline_moved: Option<DeadlineMoved>,
}

/// `[overdue.deadline_moved]`.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::rules) struct DeadlineMoved {
    pub(in crate::rules) notify: Vec<TaskPersonRef>,
    pub(in crate::rules) message: Option<Template>,
}

impl Overdue {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pipeline(&self) -> Option<u64> {
        self.pipeline
    }

    pub fn tasks(&self) -> TaskScope {
        self.tasks
    }

    pub fn grace(&self) -> Period {
        self.grace
    }

    pub fn watches_moves(&self) -> bool {
        self.deadline_moved.is_some()
    }

    pub fn location(&self) -> (&str, usize) {
        (&self.origin.file, self.origin.line)
    }
}

/// `[[no_task]]`: every open deal has a next step.
#[derive(Debug, Clone, PartialEq)]
pub struct NoTask {
    pub(in crate::rules) name: String,
    pub(in crate::rules) origin: Origin,
    pub(in crate::rules) pipeline: u64,
    /// Full stage ids; `None`: every in-progress stage of the pipeline.
    pub(in crate::rules) stages: Option<Vec<String>>,
    /// How long a deal may go without a next step.
    pub(in crate::rules) after: Period,
    pub(in crate::rules) notify: Vec<PersonRef>,
    pub(in crate::rules) message: Option<Template>,
    /// Whether an open CRM activity counts as a next step too.
    pub(in crate::rules) count_activities: bool,
}

impl NoTask {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pipeline(&self) -> u64 {
        self.pipeline
    }

    pub fn after(&self) -> Period {
        self.after
    }

    pub fn count_activities(&self) -> bool {
        self.count_activities
    }

    /// The stages it watches by id; `None`: every in-progress stage of its pipeline.
    pub fn stages(&self) -> Option<&[String]> {
        self.stages.as_deref()
    }

    /// Whether a deal in `stage_id` (of semantic `semantic`) of `pipeline` is watched.
    pub fn watches(&self, pipeline: u64, stage_id: &str, semantic: StageSemantic) -> bool {
        pipeline == self.pipeline
            && semantic == StageSemantic::Process
            && self
                .stages
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == stage_id))
    }

    pub fn location(&self) -> (&str, usize) {
        (&self.origin.file, self.origin.line)
    }
}

/// Who gets a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestTo {
    /// Each head gets the items of their department's people.
    Supervisor,
    /// These users get every item.
    Users(Vec<u64>),
}

/// `[[digest]]`: the morning and evening review.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    pub(in crate::rules) name: String,
    pub(in crate::rules) origin: Origin,
    pub(in crate::rules) to: DigestTo,
    /// Slots, in the calendar's zone, on working days; sorted, each once.
    pub(in crate::rules) at: Vec<NaiveTime>,
    /// Names of `[[overdue]]`, `[[no_task]]` and `[[sla]]` rules.
    pub(in crate::rules) include: Vec<String>,
    pub(in crate::rules) send_empty: bool,
    /// `None`: the service's own title in `portal.language`.
    pub(in crate::rules) title: Option<Template>,
}

impl Digest {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn to(&self) -> &DigestTo {
        &self.to
    }

    pub fn slots(&self) -> &[NaiveTime] {
        &self.at
    }

    pub fn include(&self) -> &[String] {
        &self.include
    }

    pub fn send_empty(&self) -> bool {
        self.send_empty
    }

    pub fn location(&self) -> (&str, usize) {
        (&self.origin.file, self.origin.line)
    }
}

/// What `close_on_leave` does to a stage's task when the deal leaves the entry that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseOnLeave {
    /// `tasks.task.complete`.
    Complete,
    /// `tasks.task.defer`.
    Defer,
}

impl CloseOnLeave {
    /// The REST method that does it.
    pub fn method(self) -> &'static str {
        match self {
            CloseOnLeave::Complete => "tasks.task.complete",
            CloseOnLeave::Defer => "tasks.task.defer",
        }
    }
}

//! The time-driven rules of `control.md`: `[[sla]]`, `[[overdue]]` (and its
//! `[overdue.deadline_moved]`), `[[no_task]]` and `[[digest]]`, into [`ControlRules`].
//!
//! They share the header of the stage-entry rules (a name unique across every kind, unknown
//! keys) and their readers (people, templates, periods, `when`, a task table), but not their
//! stage: a time-driven rule watches deals that sit in a stage, so it takes one pipeline (not a
//! list) and only in-progress stages. A digest's `include` names rules of any file, so it is
//! resolved in `compile` once every file is read; `digest` reads it.

use toml::Spanned;
use toml::de::DeValue;

use super::FileCx;
use super::keys::{DEADLINE_MOVED_KEYS, SLA_TASK_KEYS, TASK_PERSON_WORDS, TASK_SCOPE_WORDS};
use super::rule::check_stage;
use super::sections::Section;
use super::values::{Pipelines, did_you_mean};
use crate::calendar::{Period, PeriodUnit};
use crate::diagnostics::spanned::{entry, integer, type_name};
use crate::rules::control::{
    DeadlineMoved, NoTask, Origin, Overdue, Sla, SlaStage, TaskPersonRef, TaskScope,
};
use crate::rules::model::{StageMatch, stage_id};
use crate::rules::template::{
    DIGEST_PLACEHOLDERS, SLA_OVERDUE, TASK_OLD_DEADLINE, TASK_PLACEHOLDERS, Template,
    is_control_placeholder,
};

/// The file's `pipeline` as the rules of the file see it: parsed, and whether it was written
/// but did not parse (reported once, at the top).
pub(super) type FilePipeline<'p> = (Option<&'p Pipelines>, bool);

/// The most repetitions an `[[sla]]` may ask for: past that it is noise, not a reminder.
const MAX_REPEATS: i64 = 100;
/// Repetitions when `repeat` is set without `max_repeats` (control.md).
const DEFAULT_REPEATS: u32 = 3;

/// Which templates a placeholder of the time-driven rules has a value in: each is filled from
/// what that rule read (the task, the SLA's lateness, the slot), so anywhere else it would
/// render as a missing deal field.
#[derive(Clone, Copy)]
pub(super) enum Placeholders {
    /// `[[no_task]]`: the deal's fields only.
    Deal,
    /// `[[sla]]` and `[sla.task]`: `{SLA_OVERDUE}` too.
    Sla,
    /// `[[overdue]]`: the task's.
    Overdue,
    /// `[overdue.deadline_moved]`: the task's and `{TASK_OLD_DEADLINE}`.
    DeadlineMoved,
    /// A digest's title: `{DATE}` and `{TIME}`, no deal at all.
    DigestTitle,
}

impl Placeholders {
    fn allows(self, name: &str) -> bool {
        match self {
            Placeholders::DigestTitle => DIGEST_PLACEHOLDERS.contains(&name),
            _ if !is_control_placeholder(name) => true,
            Placeholders::Deal => false,
            Placeholders::Sla => name == SLA_OVERDUE,
            Placeholders::Overdue => TASK_PLACEHOLDERS.contains(&name),
            Placeholders::DeadlineMoved => {
                TASK_PLACEHOLDERS.contains(&name) || name == TASK_OLD_DEADLINE
            }
        }
    }

    /// What a template of this kind takes, for the help.
    fn takes(self) -> &'static str {
        match self {
            Placeholders::Deal => "the deal's fields and {DEAL_URL}",
            Placeholders::Sla => "the deal's fields, {DEAL_URL} and {SLA_OVERDUE}",
            Placeholders::Overdue => {
                "the deal's fields, {DEAL_URL}, {TASK_ID}, {TASK_TITLE}, {TASK_DEADLINE}, {TASK_URL} and {TASK_RESPONSIBLE}"
            }
            Placeholders::DeadlineMoved => {
                "the deal's fields, {DEAL_URL}, {TASK_ID}, {TASK_TITLE}, {TASK_DEADLINE}, {TASK_OLD_DEADLINE}, {TASK_URL} and {TASK_RESPONSIBLE}"
            }
            Placeholders::DigestTitle => {
                "{DATE} and {TIME} only: a digest lists many deals, so no deal field has one value"
            }
        }
    }
}

/// Where a placeholder of the time-driven rules has a value.
fn home(name: &str) -> &'static str {
    if name == SLA_OVERDUE {
        "an [[sla]]'s message and task"
    } else if name == TASK_OLD_DEADLINE {
        "the message of [overdue.deadline_moved]"
    } else if TASK_PLACEHOLDERS.contains(&name) {
        "the messages of [[overdue]]"
    } else if DIGEST_PLACEHOLDERS.contains(&name) {
        "a [[digest]]'s title"
    } else {
        "the templates of rules about one deal"
    }
}

impl<'s> FileCx<'_, 's> {
    /// A template of a time-driven rule: a [`Self::template`] whose placeholders have a value
    /// in `place` (`context` names the template in the message, as in "[[sla]] message").
    pub(super) fn control_template(
        &mut self,
        v: &Spanned<DeValue<'s>>,
        key: &str,
        place: Placeholders,
        context: &str,
    ) -> Option<Template> {
        let template = self.template(v, key)?;
        self.placeholders_in(v, place, context).then_some(template)
    }

    /// Reports each placeholder of the template `v` that has no value in `place`; `true` when
    /// there is none (or `v` is no template: its reader reported that).
    pub(super) fn placeholders_in(
        &mut self,
        v: &Spanned<DeValue<'s>>,
        place: Placeholders,
        context: &str,
    ) -> bool {
        let Some(template) = v.get_ref().as_str().and_then(|t| Template::parse(t).ok()) else {
            return true;
        };
        let text = v.get_ref().as_str().unwrap_or_default();
        let mut ok = true;
        let mut seen: Vec<&str> = Vec::new();
        for name in template.placeholders() {
            if place.allows(name) || seen.contains(&name) {
                continue;
            }
            seen.push(name);
            ok = false;
            let offset = text.find(&format!("{{{name}}}")).unwrap_or(0);
            let at = self.string_offset(v, offset);
            self.error(
                at..at,
                format!("{{{name}}} has no value in {context}"),
                format!(
                    "{{{name}}} is for {}; here the template takes {}",
                    home(name),
                    place.takes()
                ),
            );
        }
        ok
    }

    /// The one pipeline of an `[[sla]]`, `[[overdue]]` or `[[no_task]]`: its own or the file's.
    /// `Some(None)`: none written; `None`: a problem, reported (a broken file pipeline was
    /// reported at the top).
    pub(super) fn one_pipeline(
        &mut self,
        at: &Section<'_, 's>,
        file: FilePipeline,
    ) -> Option<Option<u64>> {
        let section = at.name;
        match entry(at.table, "pipeline") {
            Some((_, v)) if v.get_ref().as_array().is_some() => {
                self.error(
                    v.span(),
                    format!("{section} takes one pipeline, not a list"),
                    "write one rule per pipeline, each with pipeline = N",
                );
                None
            }
            Some((_, v)) => self.pipeline_value(v).map(Some),
            None => match file {
                (_, true) => None,
                (Some(Pipelines::One(p)), _) => Some(Some(*p)),
                (Some(Pipelines::List(_)), _) => {
                    self.error(
                        at.span.clone(),
                        format!("the file's pipeline is a list, but {section} takes one"),
                        "set pipeline = N in this rule: it watches the deals of one pipeline",
                    );
                    None
                }
                (None, _) => Some(None),
            },
        }
    }

    /// [`Self::one_pipeline`], which this rule cannot do without.
    fn required_pipeline(&mut self, at: &Section<'_, 's>, file: FilePipeline) -> Option<u64> {
        let pipeline = self.one_pipeline(at, file)?;
        if pipeline.is_none() {
            self.error(
                at.span.clone(),
                format!("{} without \"pipeline\"", at.name),
                "add pipeline = 1 (the CATEGORY_ID), in the rule or at the top of the file",
            );
        }
        pipeline
    }

    /// A stage the rule watches deals sit in: a stage id of `pipeline` (`None`: the pipeline was
    /// wrong, reported already, and there is nothing to check the stage against), never
    /// "won"/"lost". Comes back as the full id, `C1:OFFER`.
    fn watched_stage(
        &mut self,
        v: &Spanned<DeValue<'s>>,
        key: &str,
        pipeline: Option<u64>,
        section: &str,
    ) -> Option<String> {
        let text = self.string(v, key, "\"C1:OFFER\"")?;
        if matches!(text, "won" | "lost") {
            let example = stage_id(pipeline.unwrap_or(1), "NEW");
            let any = if key == "stage" { ", or \"any\"" } else { "" };
            self.error(
                v.span(),
                format!("{section} watches deals in progress, and \"{text}\" is no such stage"),
                format!("write an in-progress stage id of the pipeline, as in \"{example}\"{any}"),
            );
            return None;
        }
        if text == "any" && key == "stages" {
            self.error(
                v.span(),
                "\"any\" is not a stage",
                "remove stages: without it every in-progress stage of the pipeline is watched",
            );
            return None;
        }
        let pipeline = pipeline?;
        match check_stage(text, Some(&Pipelines::One(pipeline)), false) {
            Ok(stage) => {
                self.unusual_stage(v.span(), key, text, &stage);
                let StageMatch::Exact(code) = stage else {
                    return None;
                };
                Some(stage_id(pipeline, &code))
            }
            Err((message, help)) => {
                self.error(v.span(), message, help);
                None
            }
        }
    }

    /// An array that must not be empty; `example` is how to write it.
    pub(super) fn items<'v>(
        &mut self,
        v: &'v Spanned<DeValue<'s>>,
        key: &str,
        example: &str,
    ) -> Option<&'v [Spanned<DeValue<'s>>]> {
        match v.get_ref().as_array() {
            None => {
                self.mistyped(v, key, "an array", format!("write {key} = {example}"));
                None
            }
            Some(items) if items.is_empty() => {
                self.error(
                    v.span(),
                    format!("\"{key}\" is empty"),
                    format!("write {key} = {example}, or remove the rule"),
                );
                None
            }
            Some(items) => Some(items),
        }
    }

    pub(super) fn sla(
        &mut self,
        at: &Section<'_, 's>,
        file: FilePipeline,
        (name, origin): (Option<String>, Origin),
    ) -> Option<Sla> {
        let table = at.table;
        let pipeline = self.required_pipeline(at, file);
        let stage_help = match pipeline {
            Some(0) => "add stage = \"NEW\" (a STAGE_ID), or \"any\"".to_string(),
            p => format!(
                "add stage = \"C{}:NEW\" (a STAGE_ID of the pipeline), or \"any\"",
                p.unwrap_or(1)
            ),
        };
        let stage = self.required(at, "stage", &stage_help).and_then(|v| {
            if v.get_ref().as_str() == Some("any") {
                return Some(SlaStage::InProgress);
            }
            self.watched_stage(v, "stage", pipeline, at.name)
                .map(SlaStage::Exact)
        });
        let within = self
            .required(
                at,
                "within",
                "add within = \"3 workdays\": how long a deal may stay in the stage",
            )
            .and_then(|v| self.period(v, "within"));
        let notify = self.optional(table, "notify", |cx, (_, v)| cx.people(v, "notify"));
        let message = self.optional(table, "message", |cx, (_, v)| {
            cx.control_template(v, "message", Placeholders::Sla, "an [[sla]] message")
        });
        let when = entry(table, "when").map_or_else(Vec::new, |(_, v)| self.when(v));
        let task = self.optional(table, "task", |cx, found| {
            let task = cx.nested_task(found, SLA_TASK_KEYS, "[sla.task]")?;
            let DeValue::Table(task_table) = found.1.get_ref() else {
                return None;
            };
            let mut ok = true;
            for key in ["title", "description"] {
                if let Some((_, v)) = entry(task_table, key) {
                    ok &= cx.placeholders_in(v, Placeholders::Sla, &format!("[sla.task] {key}"));
                }
            }
            ok.then_some(task)
        });
        if let (Some(None | Some([])), Some(None)) = (notify.as_ref().map(|n| n.as_deref()), &task)
        {
            self.error(
                at.span.clone(),
                "[[sla]] with neither \"notify\" nor [sla.task]: it would do nothing",
                "add notify = [\"assigned\", \"supervisor\"], or an [sla.task] section",
            );
        }
        let repeat = self.optional(table, "repeat", |cx, (_, v)| cx.period(v, "repeat"));
        let has_repeat = entry(table, "repeat").is_some();
        let max_repeats = self.optional(table, "max_repeats", |cx, (k, v)| {
            if !has_repeat {
                cx.error(
                    k.span(),
                    "\"max_repeats\" without \"repeat\"",
                    "add repeat = \"1 workday\", or remove max_repeats: without it the SLA fires once",
                );
                return None;
            }
            match integer(v.get_ref()) {
                Some(n) if (1..=MAX_REPEATS).contains(&n) => u32::try_from(n).ok(),
                Some(n) => {
                    cx.error(
                        v.span(),
                        format!("max_repeats = {n} is out of range"),
                        format!("write a number from 1 to {MAX_REPEATS}"),
                    );
                    None
                }
                None => {
                    cx.mistyped(v, "max_repeats", "an integer", "write max_repeats = 3");
                    None
                }
            }
        });
        Some(Sla {
            name: name?,
            origin,
            pipeline: pipeline?,
            stage: stage?,
            within: within?,
            notify: notify?.unwrap_or_default(),
            message: message?,
            when,
            task: task?,
            repeat: repeat?,
            max_repeats: max_repeats?.unwrap_or(DEFAULT_REPEATS),
        })
    }

    pub(super) fn overdue(
        &mut self,
        at: &Section<'_, 's>,
        file: FilePipeline,
        (name, origin): (Option<String>, Origin),
    ) -> Option<Overdue> {
        let table = at.table;
        let pipeline = self.one_pipeline(at, file);
        let tasks = self.optional(table, "tasks", |cx, (_, v)| {
            match cx.string(v, "tasks", "\"rules\"")? {
                "rules" => Some(TaskScope::Rules),
                "all" => Some(TaskScope::All),
                other => {
                    let help = did_you_mean(
                        other,
                        TASK_SCOPE_WORDS,
                        "use \"rules\" (the tasks the service created) or \"all\" (every open task of the pipeline's deals)",
                    );
                    cx.error(v.span(), format!("unknown tasks \"{other}\""), help);
                    None
                }
            }
        });
        let notify = self.task_notify(at);
        let message = self.optional(table, "message", |cx, (_, v)| {
            cx.control_template(
                v,
                "message",
                Placeholders::Overdue,
                "an [[overdue]] message",
            )
        });
        let grace = self.optional(table, "grace", |cx, (_, v)| cx.period(v, "grace"));
        let deadline_moved = self.optional(table, "deadline_moved", |cx, found| {
            let name = "[overdue.deadline_moved]";
            let at = cx.nested(found, DEADLINE_MOVED_KEYS, name, "notify and message")?;
            let moved = at.table;
            let notify = cx.task_notify(&at);
            let message = cx.optional(moved, "message", |cx, (_, v)| {
                let context = "the message of [overdue.deadline_moved]";
                cx.control_template(v, "message", Placeholders::DeadlineMoved, context)
            });
            Some(DeadlineMoved {
                notify: notify?,
                message: message?,
            })
        });
        Some(Overdue {
            name: name?,
            origin,
            pipeline: pipeline?,
            tasks: tasks?.unwrap_or(TaskScope::Rules),
            notify: notify?,
            message: message?,
            grace: grace?.unwrap_or(Period {
                amount: 0,
                unit: PeriodUnit::Minutes,
            }),
            deadline_moved: deadline_moved?,
        })
    }

    /// `notify` of an `[[overdue]]` or its `deadline_moved`: people named about a task.
    fn task_notify(&mut self, at: &Section<'_, 's>) -> Option<Vec<TaskPersonRef>> {
        let example = "[\"responsible\", \"supervisor\"]";
        let v = self.required(at, "notify", &format!("add notify = {example}"))?;
        let items = self.items(v, "notify", example)?;
        let people: Vec<Option<TaskPersonRef>> =
            items.iter().map(|i| self.task_person(i)).collect();
        people.into_iter().collect()
    }

    /// One person about a task: a word of [`TASK_PERSON_WORDS`] or a user id.
    fn task_person(&mut self, v: &Spanned<DeValue<'s>>) -> Option<TaskPersonRef> {
        let help = "use \"responsible\" (the task's), \"supervisor\" (theirs), \"assigned\" (the deal's) or a user id such as 17";
        if let Some(id) = self.user_id(v, "notify") {
            return id.map(TaskPersonRef::User);
        }
        match v.get_ref().as_str() {
            Some("responsible") => Some(TaskPersonRef::Responsible),
            Some("supervisor") => Some(TaskPersonRef::Supervisor),
            Some("assigned") => Some(TaskPersonRef::Assigned),
            Some(other) => {
                let help = did_you_mean(other, TASK_PERSON_WORDS, help);
                self.error(v.span(), format!("unknown person \"{other}\""), help);
                None
            }
            None => {
                let found = type_name(v.get_ref());
                let message = format!("\"notify\" must name a person, found {found}");
                self.error(v.span(), message, help);
                None
            }
        }
    }

    pub(super) fn no_task(
        &mut self,
        at: &Section<'_, 's>,
        file: FilePipeline,
        (name, origin): (Option<String>, Origin),
    ) -> Option<NoTask> {
        let table = at.table;
        let pipeline = self.required_pipeline(at, file);
        let stages = self.optional(table, "stages", |cx, (_, v)| {
            let example = format!("[\"{}\"]", stage_id(pipeline.unwrap_or(1), "NEW"));
            let items = cx.items(v, "stages", &example)?;
            let stages: Vec<Option<String>> = items
                .iter()
                .map(|i| cx.watched_stage(i, "stages", pipeline, at.name))
                .collect();
            stages.into_iter().collect::<Option<Vec<String>>>()
        });
        let after = self
            .required(
                at,
                "after",
                "add after = \"4 hours\": how long a deal may go without a next step",
            )
            .and_then(|v| self.period(v, "after"));
        let notify = self
            .required(at, "notify", "add notify = [\"assigned\"]")
            .and_then(|v| {
                self.items(v, "notify", "[\"assigned\"]")?;
                self.people(v, "notify")
            });
        let message = self.optional(table, "message", |cx, (_, v)| {
            cx.control_template(v, "message", Placeholders::Deal, "a [[no_task]] message")
        });
        let count_activities = self.boolean(table, "count_activities", true);
        Some(NoTask {
            name: name?,
            origin,
            pipeline: pipeline?,
            stages: stages?,
            after: after?,
            notify: notify?,
            message: message?,
            count_activities: count_activities?,
        })
    }
}

//! The body of each kind of rule: `[[task]]` (and the task of `[[nps]]` and of a loss
//! reason's review), `[[require]]`, `[[loss_reason]]` and `[[tunnel]]`.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::FileCx;
use super::keys::{CLOSE_ON_LEAVE_WORDS, REVIEW_KEYS};
use super::rule::check_stage;
use super::values::Pipelines;
use super::values::did_you_mean;
use crate::diagnostics::spanned::{Entry, entries_in_order, entry, unknown_keys};
use crate::rules::control::CloseOnLeave;
use crate::rules::model::{LossReason, Require, TaskTemplate, Tunnel};
use crate::rules::template::is_field_code;
use crate::rules::tunnel;

/// The table of a rule's body as its readers take it: where it starts (for "without key"
/// errors) and how messages name it.
pub(super) struct Section<'t, 's> {
    pub(super) span: Range<usize>,
    pub(super) table: &'t DeTable<'s>,
    pub(super) name: &'t str,
}

impl<'s> FileCx<'_, 's> {
    /// A key the section cannot do without.
    pub(super) fn required<'t>(
        &mut self,
        at: &Section<'t, 's>,
        key: &str,
        help: &str,
    ) -> Option<&'t Spanned<DeValue<'s>>> {
        let found = entry(at.table, key).map(|(_, v)| v);
        if found.is_none() {
            let section = at.name;
            self.error(
                at.span.clone(),
                format!("{section} without \"{key}\""),
                help,
            );
        }
        found
    }

    pub(super) fn task(&mut self, at: &Section<'_, 's>) -> Option<TaskTemplate> {
        let table = at.table;
        let title = self
            .required(
                at,
                "title",
                "add title = \"...\", a template such as \"Call {TITLE}\"",
            )
            .and_then(|v| self.template(v, "title"));
        let description = self.optional(table, "description", |cx, (_, v)| {
            cx.template(v, "description")
        });
        let responsible = self.responsible(table);
        let auditors = self.optional(table, "auditors", |cx, (_, v)| cx.people(v, "auditors"));
        let close_on_leave =
            self.optional(table, "close_on_leave", |cx, (_, v)| cx.close_on_leave(v));
        let deadline = self
            .required(
                at,
                "deadline",
                "a task needs a deadline: add deadline = { after = \"1 workday\" }",
            )
            .and_then(|v| self.deadline(v, "deadline"));
        Some(TaskTemplate {
            title: title?,
            description: description?,
            responsible: responsible?,
            auditors: auditors?.unwrap_or_default(),
            deadline: deadline?,
            close_on_leave: close_on_leave?,
        })
    }

    /// A table inside a rule (`[loss_reason.review]`, `[overdue.deadline_moved]`), its keys
    /// checked; `what` says what it holds, for the help when it is not a table.
    pub(super) fn nested<'t>(
        &mut self,
        (key, v): Entry<'t, 's>,
        keys: &[&str],
        name: &'t str,
        what: &str,
    ) -> Option<Section<'t, 's>> {
        let DeValue::Table(table) = v.get_ref() else {
            let help = format!("write a {name} section with {what}");
            self.mistyped(v, key.get_ref(), "a table", help);
            return None;
        };
        unknown_keys(self, table, keys, &format!("in {name}"));
        // A `[section]` header spans nothing: report at its key.
        let span = if v.span().is_empty() {
            key.span()
        } else {
            v.span()
        };
        Some(Section { span, table, name })
    }

    /// A task table inside a rule (`[loss_reason.review]`, `[sla.task]`), read as a task.
    pub(super) fn nested_task(
        &mut self,
        found: Entry<'_, 's>,
        keys: &[&str],
        name: &str,
    ) -> Option<TaskTemplate> {
        let at = self.nested(found, keys, name, "the task's keys")?;
        self.task(&at)
    }

    /// `close_on_leave`: what happens to the task when the deal leaves the stage entry.
    fn close_on_leave(&mut self, v: &Spanned<DeValue<'s>>) -> Option<CloseOnLeave> {
        match self.string(v, "close_on_leave", "\"complete\"")? {
            "complete" => Some(CloseOnLeave::Complete),
            "defer" => Some(CloseOnLeave::Defer),
            other => {
                let help = did_you_mean(
                    other,
                    CLOSE_ON_LEAVE_WORDS,
                    "use \"complete\" or \"defer\", or remove it to leave the task open",
                );
                self.error(
                    v.span(),
                    format!("unknown close_on_leave \"{other}\""),
                    help,
                );
                None
            }
        }
    }

    pub(super) fn require(&mut self, at: &Section<'_, 's>) -> Option<Require> {
        let table = at.table;
        let fields = self
            .required(
                at,
                "fields",
                "add fields = [\"UF_CRM_INN\", \"OPPORTUNITY\"]",
            )
            .and_then(|v| self.field_list(v, "fields"));
        if let (Some(fields), Some((_, v))) = (&fields, entry(table, "fields"))
            && fields.is_empty()
        {
            self.error(
                v.span(),
                "\"fields\" is empty",
                "list the fields the stage requires, or remove the rule",
            );
        }
        let reverts = self.on_missing_and_message(table);
        let (on_missing, message) = reverts?;
        Some(Require {
            fields: fields?,
            on_missing,
            message,
        })
    }

    pub(super) fn loss_reason(&mut self, at: &Section<'_, 's>) -> Option<LossReason> {
        let table = at.table;
        let field = self
            .required(
                at,
                "field",
                "add field = \"UF_CRM_LOSS_REASON\", the field that holds the reason",
            )
            .and_then(|v| self.field_code(v, "field"));
        let allowed = self.optional(table, "allowed", |cx, (_, v)| match v.get_ref().as_array() {
            Some(items) if items.iter().all(|i| i.get_ref().is_str()) => Some(
                items
                    .iter()
                    .filter_map(|i| i.get_ref().as_str().map(str::to_string))
                    .collect(),
            ),
            _ => {
                cx.error(v.span(), "\"allowed\" must be an array of strings", "write allowed = [\"Too expensive\", \"Stopped answering\"] (option labels for a list field)");
                None
            }
        });
        let reverts = self.on_missing_and_message(table);
        let review = self.optional(table, "review", |cx, entry| {
            cx.nested_task(entry, REVIEW_KEYS, "[loss_reason.review]")
        });
        let (on_missing, message) = reverts?;
        Some(LossReason {
            field: field?,
            allowed: allowed?,
            on_missing,
            message,
            review: review?,
        })
    }

    pub(super) fn tunnel(&mut self, at: &Section<'_, 's>) -> Option<Tunnel> {
        let table = at.table;
        let to_pipeline = self
            .required(
                at,
                "to_pipeline",
                "add to_pipeline = 2, the CATEGORY_ID of the target pipeline",
            )
            .and_then(|v| self.pipeline_value(v));
        let to_stage = self
            .required(
                at,
                "to_stage",
                "add to_stage = \"C2:NEW\", a stage of to_pipeline",
            )
            .and_then(|v| {
                let text = self.string(v, "to_stage", "\"C2:NEW\"")?;
                // Without a valid to_pipeline (reported already) there is nothing to check against.
                let to_pipeline = to_pipeline?;
                match check_stage(text, Some(&Pipelines::One(to_pipeline)), false) {
                    Ok(stage) => {
                        self.unusual_stage(v.span(), "to_stage", text, &stage);
                        Some((text.to_string(), self.source.position(v.span().start)))
                    }
                    Err((message, help)) => {
                        let message = message.replace("the rule's pipeline", "to_pipeline");
                        let help = help.replace("pipeline =", "to_pipeline =");
                        self.error(v.span(), message, help);
                        None
                    }
                }
            });
        let copy = match entry(table, "copy") {
            Some((_, v)) => {
                let fields = self.field_list(v, "copy");
                for item in v.get_ref().as_array().into_iter().flat_map(|a| a.iter()) {
                    if let Some(field) = item.get_ref().as_str() {
                        self.writable_by_copy(item.span(), "copy", field);
                    }
                }
                fields
            }
            None => Some(Vec::new()),
        };
        let set = match entry(table, "set") {
            None => Some(Vec::new()),
            Some((_, v)) => match v.get_ref() {
                DeValue::Table(set) => {
                    let mut pairs = Vec::new();
                    let mut ok = true;
                    for (key, value) in entries_in_order(set) {
                        let code = key.get_ref().as_ref();
                        self.writable_by_copy(key.span(), "set", code);
                        if !is_field_code(code) {
                            self.error(
                                key.span(),
                                format!("\"{code}\" is not a field code"),
                                format!(
                                    "write the field's code in upper case: \"{}\"",
                                    code.to_ascii_uppercase()
                                ),
                            );
                            ok = false;
                        }
                        match self.template(value, code) {
                            Some(t) => pairs.push((code.to_string(), t)),
                            None => ok = false,
                        }
                    }
                    ok.then_some(pairs)
                }
                _ => {
                    let help = "write set = { TITLE = \"Repeat sale: {TITLE}\" }";
                    self.mistyped(v, "set", "a table", help);
                    None
                }
            },
        };
        let responsible = self.responsible(table);
        let (to_stage, to_stage_at) = to_stage?;
        Some(Tunnel {
            to_pipeline: to_pipeline?,
            to_stage,
            to_stage_at,
            copy: copy?,
            set: set?,
            responsible: responsible?,
        })
    }

    /// A tunnel's `copy`/`set` naming a field the copy cannot take: its id, its stage and
    /// pipeline (`to_stage`, `to_pipeline`), the service's own marker, a read-only field.
    /// `ASSIGNED_BY_ID` is only a warning: `responsible` replaces it, which files written before
    /// this check may rely on.
    pub(super) fn writable_by_copy(&mut self, span: Range<usize>, key: &str, field: &str) {
        if let Some(help) = tunnel::unwritable(field) {
            self.error(
                span,
                format!("{key} names {field}, which a tunnel cannot write"),
                help,
            );
        } else if field == "ASSIGNED_BY_ID" {
            self.warning(
                span,
                format!("{key} names ASSIGNED_BY_ID, which \"responsible\" replaces"),
                "remove it: responsible = \"assigned\" (the default) gives the copy the deal's assigned user",
            );
        }
    }
}

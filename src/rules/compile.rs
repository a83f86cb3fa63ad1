//! Validation: the spanned TOML of every file becomes [`Rule`]s, or a list of every problem.
//!
//! Each check pushes a [`Diagnostic`] and carries on, so one run reports all problems of all
//! files. A rule with any error is dropped from the result; the set as a whole is rejected
//! when any error exists, which the caller turns into "keep the rules you had".

use std::collections::HashMap;
use std::ops::Range;

use chrono::{DateTime, NaiveDateTime, NaiveTime};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::calendar::Period;
use crate::diagnostics::spanned::{
    Report, Source, array_of_tables, entries_in_order, entry, integer, number, syntax_errors,
    type_name, unknown_keys,
};
use crate::diagnostics::{Diagnostic, Severity, suggest};
use crate::rules::condition::{Condition, OPERATORS, Op, Value};
use crate::rules::model::{
    Body, Deadline, DeadlineBase, LossReason, OnMissing, PersonRef, Require, Rule, RuleKind,
    StageMatch, TaskTemplate, Tunnel,
};
use crate::rules::template::{MAX_PLACEHOLDERS, MAX_TEMPLATE, Template, is_field_code};
use crate::rules::tunnel;

// The keys each table of a rule file takes, and the words of its word-valued keys: the one list
// that both the checks here (unknown keys, "did you mean") and the JSON Schema (`schema.rs`,
// its properties and enums) read, so the two cannot disagree.

/// The keys at the top of a rule file.
pub(super) const TOP_LEVEL: &[&str] = &[
    "pipeline",
    "task",
    "require",
    "loss_reason",
    "nps",
    "tunnel",
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
pub(super) const REVIEW_KEYS: &[&str] = &[
    "title",
    "description",
    "responsible",
    "auditors",
    "deadline",
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
/// The keys of a deadline table (and of its `fallback`).
pub(super) const DEADLINE_KEYS: &[&str] = &["after", "before", "field", "at", "time", "fallback"];
/// Units for duration suggestions: plural unless the amount is 1.
const UNITS: &[&str] = &["minutes", "hours", "days", "workdays"];
const UNIT: &[&str] = &["minute", "hour", "day", "workday"];
/// The people named by a word rather than an id or a field.
pub(super) const PERSON_WORDS: &[&str] = &["assigned", "supervisor"];
/// The values of `on_missing`.
pub(super) const ON_MISSING_WORDS: &[&str] = &["revert", "warn"];

/// The keys a rule of `kind` takes.
pub(super) fn rule_keys(kind: RuleKind) -> &'static [&'static str] {
    match kind {
        RuleKind::Task => TASK_KEYS,
        RuleKind::Require => REQUIRE_KEYS,
        RuleKind::LossReason => LOSS_KEYS,
        RuleKind::Nps => NPS_KEYS,
        RuleKind::Tunnel => TUNNEL_KEYS,
    }
}

const MAX_NAME: usize = 64;

/// Compiles every file; `Err` holds every error (warnings included after them).
pub(crate) fn compile(
    files: &[(String, String)],
) -> Result<(Vec<Rule>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut out = Output::default();
    let mut names: HashMap<String, (String, usize)> = HashMap::new();
    for (name, text) in files {
        let source = Source::new(name, text);
        let mut cx = FileCx {
            source: &source,
            out: &mut out,
            rule: None,
        };
        cx.file(&mut names);
    }
    // Tunnels of different files may feed each other: checked once every file is read.
    for found in tunnel::cycle_diagnostics(&out.rules, &tunnel::offline_semantic) {
        match found.severity {
            Severity::Error => out.errors.push(found),
            Severity::Warning => out.warnings.push(found),
        }
    }
    if out.errors.is_empty() {
        Ok((out.rules, out.warnings))
    } else {
        let mut all = out.errors;
        all.extend(out.warnings);
        Err(all)
    }
}

#[derive(Default)]
struct Output {
    rules: Vec<Rule>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

struct FileCx<'a, 's> {
    source: &'a Source<'s>,
    out: &'a mut Output,
    /// The rule being compiled, for the `rule "<name>"` part of its diagnostics.
    rule: Option<String>,
}

/// A message and how to fix it.
type Problem = (String, String);

impl Report for FileCx<'_, '_> {
    fn report(&mut self, span: Range<usize>, message: String, help: String) {
        self.error(span, message, help);
    }
}

impl<'s> FileCx<'_, 's> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.out.errors.push(Diagnostic {
            rule: self.rule.clone(),
            ..self.source.error(span, message.into(), help.into())
        });
    }

    fn file(&mut self, names: &mut HashMap<String, (String, usize)>) {
        let (doc, syntax) = self.source.parse();
        syntax_errors(self, syntax);
        let doc = doc.get_ref();
        unknown_keys(self, doc, TOP_LEVEL, "at the top level of a rule file");
        let file_entry = entry(doc, "pipeline");
        let file_pipeline = file_entry.and_then(|(_, v)| self.pipeline_value(v));
        // A top-level pipeline that does not parse is reported once, here; the rules relying on
        // it must not add "stage needs a pipeline" errors of their own.
        let file_pipeline_broken = file_entry.is_some() && file_pipeline.is_none();
        let kinds = [
            ("task", RuleKind::Task),
            ("require", RuleKind::Require),
            ("loss_reason", RuleKind::LossReason),
            ("nps", RuleKind::Nps),
            ("tunnel", RuleKind::Tunnel),
        ];
        let mut rules = Vec::new();
        for (key, kind) in kinds {
            let helps = (
                format!("write a [[{key}]] section per rule"),
                format!("write [[{key}]], with double brackets, for each rule"),
            );
            for (span, table) in array_of_tables(self, doc, key, helps) {
                rules.push((span, kind, table));
            }
        }
        // Source order, so duplicates are reported at the later definition.
        rules.sort_by_key(|(span, _, _)| span.start);
        for (span, kind, table) in rules {
            if let Some(rule) = self.rule(
                span,
                kind,
                table,
                (file_pipeline, file_pipeline_broken),
                names,
            ) {
                self.out.rules.push(rule);
            }
        }
    }

    fn rule(
        &mut self,
        span: Range<usize>,
        kind: RuleKind,
        table: &DeTable<'s>,
        (file_pipeline, file_pipeline_broken): (Option<u64>, bool),
        names: &mut HashMap<String, (String, usize)>,
    ) -> Option<Rule> {
        let errors_before = self.out.errors.len();
        let section = format!("[[{}]]", kind.table());
        self.rule = None;
        // The name first: every later diagnostic of this rule carries it.
        let name = match entry(table, "name") {
            None => {
                self.error(
                    span.clone(),
                    format!("{section} without a \"name\""),
                    "add name = \"...\": lower-case letters, digits, \"-\" and \"_\"",
                );
                None
            }
            Some((_, v)) => match v.get_ref().as_str() {
                None => {
                    self.error(
                        v.span(),
                        format!(
                            "\"name\" must be a string, found {}",
                            type_name(v.get_ref())
                        ),
                        "write name = \"my-rule\"",
                    );
                    None
                }
                Some(name) => {
                    self.rule = Some(name.to_string());
                    if let Err((message, help)) = check_name(name) {
                        self.error(v.span(), message, help);
                    } else {
                        let (line, _) = self.source.position(v.span().start);
                        if let Some((file, first)) = names.get(name) {
                            let (file, first) = (file.clone(), *first);
                            self.error(
                                v.span(),
                                // One parenthesised part per message: the fix. (Was "(first defined at ...) (...)".)
                                format!("duplicate rule name, first defined at {file}:{first}"),
                                "rule names are unique across all files: rename one of them",
                            );
                        } else {
                            names.insert(name.to_string(), (self.source.name.to_string(), line));
                        }
                    }
                    Some(name.to_string())
                }
            },
        };
        let allowed = rule_keys(kind);
        if matches!(kind, RuleKind::LossReason | RuleKind::Nps)
            && let Some((key, _)) = entry(table, "stage")
        {
            let fires = if kind == RuleKind::Nps {
                "a success"
            } else {
                "a failure"
            };
            self.error(
                key.span(),
                format!("{section} takes no \"stage\""),
                format!("remove it: the rule fires on entering {fires} stage of its pipeline"),
            );
        }
        // `stage` on nps/loss_reason was reported above with its own message.
        let mut allowed_here: Vec<&str> = allowed.to_vec();
        // Only where it is missing: the "allowed keys" help listed "stage" twice for [[task]].
        if !allowed_here.contains(&"stage") {
            allowed_here.push("stage");
        }
        unknown_keys(self, table, &allowed_here, &format!("in {section}"));

        let own_entry = entry(table, "pipeline");
        let own_pipeline = own_entry.and_then(|(_, v)| self.pipeline_value(v));
        // A pipeline that failed to parse was already reported; checking the stage against a
        // guess would only add a second, misleading error.
        let pipeline_broken = match own_entry {
            Some(_) => own_pipeline.is_none(),
            None => file_pipeline_broken,
        };
        let pipeline = own_pipeline.or(file_pipeline);
        let stage = match kind {
            RuleKind::LossReason => Some(StageMatch::Lost),
            RuleKind::Nps => Some(StageMatch::Won),
            RuleKind::Task | RuleKind::Require | RuleKind::Tunnel => match entry(table, "stage") {
                None if kind == RuleKind::Tunnel => Some(StageMatch::Won),
                None => {
                    let help = match pipeline {
                        Some(0) => "add stage = \"PREPARATION\" (a STAGE_ID), \"won\" or \"lost\"".to_string(),
                        Some(p) => format!("add stage = \"C{p}:PREPARATION\" (a STAGE_ID), \"won\" or \"lost\""),
                        None => "add stage = \"C1:PREPARATION\" (a STAGE_ID) with its pipeline, or \"won\" or \"lost\"".to_string(),
                    };
                    self.error(span.clone(), format!("{section} without a \"stage\""), help);
                    None
                }
                Some((_, v)) => match v.get_ref().as_str() {
                    None => {
                        self.error(
                            v.span(),
                            format!(
                                "\"stage\" must be a string, found {}",
                                type_name(v.get_ref())
                            ),
                            "write stage = \"C1:PREPARATION\", \"won\" or \"lost\"",
                        );
                        None
                    }
                    Some(_) if pipeline_broken => None,
                    Some(text) => match check_stage(text, pipeline, true) {
                        Ok(stage) => Some(stage),
                        Err((message, help)) => {
                            self.error(v.span(), message, help);
                            None
                        }
                    },
                },
            },
        };
        let when = match entry(table, "when") {
            Some((_, v)) => self.when(v),
            None => Vec::new(),
        };
        let body = match kind {
            RuleKind::Task => self.task(span.clone(), table, &section).map(Body::Task),
            RuleKind::Require => self
                .require(span.clone(), table, &section)
                .map(Body::Require),
            RuleKind::LossReason => self
                .loss_reason(span.clone(), table, &section)
                .map(Body::LossReason),
            RuleKind::Nps => {
                let score_field = entry(table, "score_field")
                    .and_then(|(_, v)| self.field_code(v, "score_field"));
                self.task(span.clone(), table, &section)
                    .map(|task| Body::Nps { task, score_field })
            }
            RuleKind::Tunnel => self.tunnel(span.clone(), table, &section).map(Body::Tunnel),
        };
        let (line, _) = self.source.position(span.start);
        let rule = Rule {
            name: name?,
            kind,
            file: self.source.name.to_string(),
            line,
            pipeline,
            stage: stage?,
            when,
            body: body?,
        };
        (self.out.errors.len() == errors_before).then_some(rule)
    }

    /// A pipeline id: a non-negative integer.
    fn pipeline_value(&mut self, v: &Spanned<DeValue<'_>>) -> Option<u64> {
        match integer(v.get_ref()) {
            Some(i) if i >= 0 => Some(i as u64),
            Some(_) => {
                self.error(
                    v.span(),
                    "a pipeline id is never negative",
                    "use the CATEGORY_ID: 0 for the default pipeline",
                );
                None
            }
            None => {
                let help = match v
                    .get_ref()
                    .as_str()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    Some(n) => format!("write pipeline = {n}, without quotes"),
                    None => "write the pipeline's CATEGORY_ID, an integer: pipeline = 1".into(),
                };
                self.error(
                    v.span(),
                    format!(
                        "\"pipeline\" must be an integer, found {}",
                        type_name(v.get_ref())
                    ),
                    help,
                );
                None
            }
        }
    }

    fn string<'v>(
        &mut self,
        v: &'v Spanned<DeValue<'s>>,
        key: &str,
        example: &str,
    ) -> Option<&'v str> {
        let text = v.get_ref().as_str();
        if text.is_none() {
            self.error(
                v.span(),
                format!(
                    "\"{key}\" must be a string, found {}",
                    type_name(v.get_ref())
                ),
                format!("write {key} = {example}"),
            );
        }
        text
    }

    fn required<'t>(
        &mut self,
        span: &Range<usize>,
        table: &'t DeTable<'s>,
        key: &str,
        section: &str,
        help: &str,
    ) -> Option<&'t Spanned<DeValue<'s>>> {
        let found = entry(table, key).map(|(_, v)| v);
        if found.is_none() {
            self.error(span.clone(), format!("{section} without \"{key}\""), help);
        }
        found
    }

    fn template(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Template> {
        let text = self.string(v, key, "\"Call {TITLE}\"")?;
        if text.len() > MAX_TEMPLATE {
            self.error(
                v.span(),
                format!("template of {} bytes", text.len()),
                format!("at most {MAX_TEMPLATE} bytes (8 KiB) of template text: shorten it"),
            );
            return None;
        }
        match Template::parse(text) {
            Ok(t) if t.placeholders().count() > MAX_PLACEHOLDERS => {
                self.error(
                    v.span(),
                    format!("template with {} placeholders", t.placeholders().count()),
                    format!("at most {MAX_PLACEHOLDERS} in one template: split the text, or write fewer fields"),
                );
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                let offset = self.string_offset(v, e.offset);
                self.error(offset..offset, e.message, e.help);
                None
            }
        }
    }

    /// The byte offset in the file of byte `offset` of a string value: exact for basic strings
    /// without escapes before it, otherwise the start of the value (still the right line).
    fn string_offset(&self, v: &Spanned<DeValue<'s>>, offset: usize) -> usize {
        let span = v.span();
        let raw = self.source.text.get(span.clone()).unwrap_or_default();
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let body = raw.get(quote..).unwrap_or_default();
        let prefix = body.get(..offset).unwrap_or("\\");
        if raw.starts_with('\'') || !prefix.contains('\\') {
            span.start + quote + offset
        } else {
            span.start
        }
    }

    fn field_code(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<String> {
        let text = self.string(v, key, "\"UF_CRM_1700000000\"")?;
        if is_field_code(text) {
            return Some(text.to_string());
        }
        let upper = text.trim().to_ascii_uppercase();
        let help = if is_field_code(&upper) {
            format!("field codes are upper case: write \"{upper}\"")
        } else {
            "use the field's code as crm.deal.fields lists it, as in \"UF_CRM_1700000000\"".into()
        };
        self.error(v.span(), format!("\"{text}\" is not a field code"), help);
        None
    }

    fn field_list(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Vec<String>> {
        let Some(items) = v.get_ref().as_array() else {
            self.error(
                v.span(),
                format!(
                    "\"{key}\" must be an array of field codes, found {}",
                    type_name(v.get_ref())
                ),
                format!("write {key} = [\"TITLE\", \"UF_CRM_INN\"]"),
            );
            return None;
        };
        let mut fields = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match self.field_code(item, key) {
                Some(f) => fields.push(f),
                None => ok = false,
            }
        }
        ok.then_some(fields)
    }

    fn person(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<PersonRef> {
        let help = "use \"assigned\", \"supervisor\", a user id such as 17, or \"field:UF_CRM_X\"";
        if let Some(i) = integer(v.get_ref()) {
            if i > 0 {
                return Some(PersonRef::User(i as u64));
            }
            self.error(
                v.span(),
                format!("{i} is not a user id"),
                "user ids start at 1",
            );
            return None;
        }
        let Some(text) = v.get_ref().as_str() else {
            self.error(
                v.span(),
                format!(
                    "\"{key}\" must name a person, found {}",
                    type_name(v.get_ref())
                ),
                help,
            );
            return None;
        };
        match text {
            "assigned" => Some(PersonRef::Assigned),
            "supervisor" => Some(PersonRef::Supervisor),
            _ => {
                if let Some(field) = text.strip_prefix("field:") {
                    if is_field_code(field) {
                        return Some(PersonRef::Field(field.to_string()));
                    }
                    self.error(
                        v.span(),
                        format!("\"{field}\" is not a field code"),
                        "write \"field:UF_CRM_X\" with the field's code in upper case",
                    );
                    return None;
                }
                if let Ok(id) = text.trim().parse::<u64>() {
                    // `auditors` is an array: "write auditors = 17" was wrong advice there.
                    let fix = if key == "auditors" {
                        format!("write {id}, without quotes, as in auditors = [{id}]")
                    } else {
                        format!("write {key} = {id}, without quotes")
                    };
                    self.error(
                        v.span(),
                        format!("user id \"{text}\" is written as a string"),
                        fix,
                    );
                    return None;
                }
                let help = match suggest(text, PERSON_WORDS) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => help.to_string(),
                };
                self.error(v.span(), format!("unknown person \"{text}\""), help);
                None
            }
        }
    }

    fn on_missing(&mut self, table: &DeTable<'s>) -> Option<OnMissing> {
        let Some((_, v)) = entry(table, "on_missing") else {
            return Some(OnMissing::Revert);
        };
        match self.string(v, "on_missing", "\"revert\"")? {
            "revert" => Some(OnMissing::Revert),
            "warn" => Some(OnMissing::Warn),
            other => {
                let help = match suggest(other, ON_MISSING_WORDS) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => "use \"revert\" or \"warn\"".into(),
                };
                self.error(v.span(), format!("unknown on_missing \"{other}\""), help);
                None
            }
        }
    }

    fn task(
        &mut self,
        span: Range<usize>,
        table: &DeTable<'s>,
        section: &str,
    ) -> Option<TaskTemplate> {
        let title = self
            .required(
                &span,
                table,
                "title",
                section,
                "add title = \"...\", a template such as \"Call {TITLE}\"",
            )
            .and_then(|v| self.template(v, "title"));
        let description = entry(table, "description").map(|(_, v)| self.template(v, "description"));
        let responsible = match entry(table, "responsible") {
            Some((_, v)) => self.person(v, "responsible"),
            None => Some(PersonRef::Assigned),
        };
        let auditors = match entry(table, "auditors") {
            None => Some(Vec::new()),
            Some((_, v)) => match v.get_ref().as_array() {
                None => {
                    self.error(
                        v.span(),
                        format!(
                            "\"auditors\" must be an array, found {}",
                            type_name(v.get_ref())
                        ),
                        "write auditors = [\"supervisor\"]",
                    );
                    None
                }
                Some(items) => {
                    let people: Vec<Option<PersonRef>> =
                        items.iter().map(|i| self.person(i, "auditors")).collect();
                    people.into_iter().collect()
                }
            },
        };
        let deadline = self
            .required(
                &span,
                table,
                "deadline",
                section,
                "a task needs a deadline: add deadline = { after = \"1 workday\" }",
            )
            .and_then(|v| self.deadline(v, "deadline"));
        Some(TaskTemplate {
            title: title?,
            description: description.map_or(Some(None), |d| d.map(Some))?,
            responsible: responsible?,
            auditors: auditors?,
            deadline: deadline?,
        })
    }

    fn require(
        &mut self,
        span: Range<usize>,
        table: &DeTable<'s>,
        section: &str,
    ) -> Option<Require> {
        let fields = self
            .required(
                &span,
                table,
                "fields",
                section,
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
        let on_missing = self.on_missing(table);
        let message = entry(table, "message").map(|(_, v)| self.template(v, "message"));
        Some(Require {
            fields: fields?,
            on_missing: on_missing?,
            message: message.map_or(Some(None), |m| m.map(Some))?,
        })
    }

    fn loss_reason(
        &mut self,
        span: Range<usize>,
        table: &DeTable<'s>,
        section: &str,
    ) -> Option<LossReason> {
        let field = self
            .required(
                &span,
                table,
                "field",
                section,
                "add field = \"UF_CRM_LOSS_REASON\", the field that holds the reason",
            )
            .and_then(|v| self.field_code(v, "field"));
        let allowed = match entry(table, "allowed") {
            None => Some(None),
            Some((_, v)) => match v.get_ref().as_array() {
                Some(items) if items.iter().all(|i| i.get_ref().is_str()) => Some(Some(
                    items
                        .iter()
                        .filter_map(|i| i.get_ref().as_str().map(str::to_string))
                        .collect(),
                )),
                _ => {
                    self.error(v.span(), "\"allowed\" must be an array of strings", "write allowed = [\"Too expensive\", \"Stopped answering\"] (option labels for a list field)");
                    None
                }
            },
        };
        let on_missing = self.on_missing(table);
        let message = entry(table, "message").map(|(_, v)| self.template(v, "message"));
        let review = match entry(table, "review") {
            None => Some(None),
            Some((key, v)) => match v.get_ref() {
                DeValue::Table(review) => {
                    unknown_keys(self, review, REVIEW_KEYS, "in [loss_reason.review]");
                    let span = if v.span().is_empty() {
                        key.span()
                    } else {
                        v.span()
                    };
                    self.task(span, review, "[loss_reason.review]").map(Some)
                }
                other => {
                    self.error(
                        v.span(),
                        format!("\"review\" must be a table, found {}", type_name(other)),
                        "write a [loss_reason.review] section with the task's keys",
                    );
                    None
                }
            },
        };
        Some(LossReason {
            field: field?,
            allowed: allowed?,
            on_missing: on_missing?,
            message: message.map_or(Some(None), |m| m.map(Some))?,
            review: review?,
        })
    }

    fn tunnel(&mut self, span: Range<usize>, table: &DeTable<'s>, section: &str) -> Option<Tunnel> {
        let to_pipeline = self
            .required(
                &span,
                table,
                "to_pipeline",
                section,
                "add to_pipeline = 2, the CATEGORY_ID of the target pipeline",
            )
            .and_then(|v| self.pipeline_value(v));
        let to_stage = self
            .required(
                &span,
                table,
                "to_stage",
                section,
                "add to_stage = \"C2:NEW\", a stage of to_pipeline",
            )
            .and_then(|v| {
                let text = self.string(v, "to_stage", "\"C2:NEW\"")?;
                // Without a valid to_pipeline (reported already) there is nothing to check against.
                let to_pipeline = to_pipeline?;
                match check_stage(text, Some(to_pipeline), false) {
                    Ok(_) => Some((text.to_string(), self.source.position(v.span().start))),
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
                other => {
                    self.error(
                        v.span(),
                        format!("\"set\" must be a table, found {}", type_name(other)),
                        "write set = { TITLE = \"Repeat sale: {TITLE}\" }",
                    );
                    None
                }
            },
        };
        let responsible = match entry(table, "responsible") {
            Some((_, v)) => self.person(v, "responsible"),
            None => Some(PersonRef::Assigned),
        };
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
    fn writable_by_copy(&mut self, span: Range<usize>, key: &str, field: &str) {
        if let Some(help) = tunnel::unwritable(field) {
            self.error(
                span,
                format!("{key} names {field}, which a tunnel cannot write"),
                help,
            );
        } else if field == "ASSIGNED_BY_ID" {
            self.out.warnings.push(Diagnostic {
                rule: self.rule.clone(),
                severity: Severity::Warning,
                ..self.source.error(
                    span,
                    format!("{key} names ASSIGNED_BY_ID, which \"responsible\" replaces"),
                    "remove it: responsible = \"assigned\" (the default) gives the copy the deal's assigned user".into(),
                )
            });
        }
    }

    fn deadline(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Deadline> {
        let DeValue::Table(table) = v.get_ref() else {
            let help = match v.get_ref().as_str().map(str::parse::<Period>) {
                Some(Ok(p)) => format!("write {key} = {{ after = \"{p}\" }}"),
                _ => format!("write {key} = {{ after = \"2 workdays\" }}, or before/field, or at"),
            };
            self.error(
                v.span(),
                format!(
                    "\"{key}\" must be a table, found {}",
                    type_name(v.get_ref())
                ),
                help,
            );
            return None;
        };
        let errors_before = self.out.errors.len();
        unknown_keys(self, table, DEADLINE_KEYS, &format!("in {key}"));
        let after = entry(table, "after");
        let before = entry(table, "before");
        let at = entry(table, "at");
        let field = entry(table, "field").and_then(|(_, v)| self.field_code(v, "field"));
        let has_field = entry(table, "field").is_some();
        let period = |cx: &mut Self, v: &Spanned<DeValue<'s>>, k: &str| -> Option<Period> {
            let text = cx.string(v, k, "\"2 workdays\"")?;
            match text.parse::<Period>() {
                Ok(p) => Some(p),
                Err(message) => {
                    // A misspelt unit gets a corrected duration instead of the list of units.
                    let mut words = text.split_whitespace();
                    let amount = words.next().unwrap_or_default();
                    let unit = words.next().unwrap_or_default();
                    let whole = amount.parse::<u32>().is_ok() && words.next().is_none();
                    let units = if amount == "1" { UNIT } else { UNITS };
                    match suggest(unit, units).filter(|_| whole) {
                        Some(fixed) if message.contains("unknown unit") => {
                            let short = message.split(" (").next().unwrap_or(&message).to_string();
                            cx.error(
                                v.span(),
                                short,
                                format!("did you mean \"{amount} {fixed}\"?"),
                            );
                        }
                        _ => cx.error(v.span(), message, ""),
                    }
                    None
                }
            }
        };
        let base = match (after, before, at) {
            (Some(_), Some((k, _)), _) => {
                self.error(
                    k.span(),
                    format!("{key} has both \"after\" and \"before\""),
                    "keep one of them",
                );
                None
            }
            (Some(_) | None, _, Some((k, _))) if after.is_some() || before.is_some() => {
                self.error(
                    k.span(),
                    format!("{key} has \"at\" together with \"after\"/\"before\""),
                    "\"at\" is a fixed moment: remove the other keys",
                );
                None
            }
            (_, _, Some((_, v))) => {
                if has_field {
                    let (k, _) = entry(table, "field")?;
                    self.error(
                        k.span(),
                        "\"field\" has no meaning with \"at\"",
                        "remove it, or use after/before with field",
                    );
                }
                self.moment(v)
            }
            (Some((_, v)), None, None) => {
                let p = period(self, v, "after");
                match (has_field, field.clone()) {
                    (false, _) => p.map(DeadlineBase::AfterEntry),
                    (true, f) => Some(DeadlineBase::AfterField(p?, f?)),
                }
            }
            (None, Some((_, v)), None) => {
                let p = period(self, v, "before");
                if !has_field {
                    self.error(
                        v.span(),
                        format!("{key} \"before\" needs a \"field\""),
                        "add field = \"UF_CRM_EVENT_DATE\": the date it counts back from",
                    );
                    None
                } else {
                    Some(DeadlineBase::BeforeField(p?, field.clone()?))
                }
            }
            (None, None, None) => {
                self.error(v.span(), format!("{key} has none of \"after\", \"before\", \"at\""), "write { after = \"2 workdays\" }, { before = \"3 days\", field = \"UF_CRM_X\" } or { at = \"2026-12-31T18:00\" }");
                None
            }
        };
        let time = match entry(table, "time") {
            None => Some(None),
            Some((_, v)) => {
                let text = self.string(v, "time", "\"18:00\"");
                match text.map(|t| {
                    (
                        t,
                        NaiveTime::parse_from_str(t, "%H:%M")
                            .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S")),
                    )
                }) {
                    Some((_, Ok(t))) => Some(Some(t)),
                    Some((t, Err(_))) => {
                        self.error(
                            v.span(),
                            format!("bad time of day \"{t}\""),
                            "write \"HH:MM\", as in time = \"18:00\"",
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let fallback = match entry(table, "fallback") {
            None => Some(None),
            Some((k, v)) => {
                if !has_field {
                    self.error(
                        k.span(),
                        "\"fallback\" is only used when a deadline's field is empty",
                        "remove it, or add field = \"...\"",
                    );
                }
                self.deadline(v, "fallback").map(|d| Some(Box::new(d)))
            }
        };
        let deadline = Deadline {
            base: base?,
            time: time?,
            fallback: fallback?,
        };
        (self.out.errors.len() == errors_before).then_some(deadline)
    }

    fn moment(&mut self, v: &Spanned<DeValue<'s>>) -> Option<DeadlineBase> {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            other => {
                self.error(
                    v.span(),
                    format!("\"at\" must be a date-time, found {}", type_name(other)),
                    "write at = \"2026-12-31T18:00\"",
                );
                return None;
            }
        };
        if let Ok(at) = DateTime::parse_from_rfc3339(&text) {
            return Some(DeadlineBase::AtInstant(at));
        }
        for format in [
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
        ] {
            if let Ok(at) = NaiveDateTime::parse_from_str(&text, format) {
                return Some(DeadlineBase::At(at));
            }
        }
        self.error(v.span(), format!("bad moment \"{text}\""), "write at = \"2026-12-31T18:00\" (the calendar's time zone) or with an offset \"2026-12-31T18:00:00+03:00\"");
        None
    }

    fn when(&mut self, v: &Spanned<DeValue<'s>>) -> Vec<Condition> {
        let DeValue::Table(table) = v.get_ref() else {
            self.error(
                v.span(),
                format!("\"when\" must be a table, found {}", type_name(v.get_ref())),
                "write when = { TYPE_ID = \"SALE\", OPPORTUNITY = { gte = 100000 } }",
            );
            return Vec::new();
        };
        let mut conditions = Vec::new();
        for (key, value) in entries_in_order(table) {
            let field = key.get_ref().as_ref();
            if !is_field_code(field) {
                self.error(
                    key.span(),
                    format!("\"{field}\" is not a field code"),
                    format!(
                        "write the field's code in upper case: {}",
                        field.to_ascii_uppercase()
                    ),
                );
                continue;
            }
            match value.get_ref() {
                DeValue::Table(ops) => {
                    if ops.is_empty() {
                        self.error(
                            value.span(),
                            format!("empty condition on {field}"),
                            format!("use one of: {}", OPERATORS.join(", ")),
                        );
                    }
                    for (op_key, operand) in entries_in_order(ops) {
                        let op_name = op_key.get_ref().as_ref();
                        match self.operator(op_name, operand) {
                            Ok(op) => conditions.push(Condition {
                                field: field.to_string(),
                                op,
                            }),
                            Err((message, help, at_key)) => {
                                let span = if at_key {
                                    op_key.span()
                                } else {
                                    operand.span()
                                };
                                self.error(span, message, help);
                            }
                        }
                    }
                }
                DeValue::Array(_) => {
                    self.error(
                        value.span(),
                        format!("a list of values for {field} is ambiguous"),
                        "write { in = [...] } for any of them",
                    );
                }
                _ => match scalar(value.get_ref()) {
                    Some(v) => conditions.push(Condition {
                        field: field.to_string(),
                        op: Op::Eq(v),
                    }),
                    None => self.error(
                        value.span(),
                        format!("cannot compare {field} with {}", type_name(value.get_ref())),
                        "use a string, a number or a boolean",
                    ),
                },
            }
        }
        conditions
    }

    /// One `when` operator; the error flag says whether to point at the key (unknown operator)
    /// or at the value (wrong operand).
    fn operator(
        &mut self,
        op: &str,
        operand: &Spanned<DeValue<'s>>,
    ) -> Result<Op, (String, String, bool)> {
        let value = operand.get_ref();
        let list = || -> Result<Vec<Value>, (String, String, bool)> {
            value
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(|i| scalar(i.get_ref()))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    (
                        format!(
                            "\"{op}\" takes an array of values, found {}",
                            type_name(value)
                        ),
                        format!("write {op} = [\"A\", \"B\"]"),
                        false,
                    )
                })
        };
        let num = || -> Result<f64, (String, String, bool)> {
            number(value).ok_or_else(|| {
                let help = match value.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
                    Some(n) => format!("write {op} = {n}, without quotes"),
                    None => format!("write {op} = 100000"),
                };
                (
                    format!("\"{op}\" takes a number, found {}", type_name(value)),
                    help,
                    false,
                )
            })
        };
        let one = || {
            scalar(value).ok_or_else(|| {
                (
                    format!(
                        "\"{op}\" takes a string, a number or a boolean, found {}",
                        type_name(value)
                    ),
                    format!("write {op} = \"SALE\""),
                    false,
                )
            })
        };
        Ok(match op {
            "eq" => Op::Eq(one()?),
            "ne" => Op::Ne(one()?),
            "gt" => Op::Gt(num()?),
            "gte" => Op::Gte(num()?),
            "lt" => Op::Lt(num()?),
            "lte" => Op::Lte(num()?),
            "in" => Op::In(list()?),
            "not_in" => Op::NotIn(list()?),
            "empty" => Op::Empty(value.as_bool().ok_or_else(|| {
                (
                    format!("\"empty\" takes true or false, found {}", type_name(value)),
                    "write empty = true".to_string(),
                    false,
                )
            })?),
            other => {
                let help = match suggest(other, OPERATORS) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!("use one of: {}", OPERATORS.join(", ")),
                };
                return Err((format!("unknown operator \"{other}\""), help, true));
            }
        })
    }
}

fn scalar(value: &DeValue<'_>) -> Option<Value> {
    match value {
        DeValue::String(s) => Some(Value::Text(s.to_string())),
        DeValue::Integer(_) | DeValue::Float(_) => number(value).map(Value::Number),
        DeValue::Boolean(b) => Some(Value::Bool(*b)),
        _ => None,
    }
}

fn check_name(name: &str) -> Result<(), Problem> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    let valid_start = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.chars().count() > MAX_NAME {
        return Err((
            format!("name is {} characters long", name.chars().count()),
            format!("at most {MAX_NAME}"),
        ));
    }
    if name.is_empty() || !valid_chars || !valid_start {
        let fixed: String = name
            .to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let fixed = fixed.trim_matches(|c| c == '-' || c == '_').to_string();
        let help = if fixed.is_empty() || fixed.len() > MAX_NAME {
            "use lower-case letters, digits, \"-\" and \"_\", starting with a letter or digit"
                .to_string()
        } else {
            format!("use lower-case letters, digits, \"-\" and \"_\", as in \"{fixed}\"")
        };
        return Err((format!("bad rule name \"{name}\""), help));
    }
    Ok(())
}

/// Checks a stage against its pipeline. `specials`: whether "won"/"lost" are accepted.
fn check_stage(stage: &str, pipeline: Option<u64>, specials: bool) -> Result<StageMatch, Problem> {
    match stage {
        "won" if specials => return Ok(StageMatch::Won),
        "lost" if specials => return Ok(StageMatch::Lost),
        _ => {}
    }
    let (prefix, code) = match stage.split_once(':') {
        Some((prefix, code)) => {
            match prefix.strip_prefix('C').and_then(|n| n.parse::<u64>().ok()) {
                Some(n) => (Some(n), code),
                None => {
                    return Err((
                        format!("bad stage \"{stage}\""),
                        "a stage of pipeline N is written \"CN:CODE\", as in \"C1:PREPARATION\""
                            .into(),
                    ));
                }
            }
        }
        None => (None, stage),
    };
    if code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        let lower = stage.to_ascii_lowercase();
        let help = if specials && (lower == "won" || lower == "lost") {
            format!(
                "write \"{lower}\" for any {} stage, or the STAGE_ID in upper case",
                if lower == "won" { "success" } else { "failure" }
            )
        } else {
            format!(
                "STAGE_IDs are upper case, as Bitrix24 spells them: \"{}\"",
                stage.to_ascii_uppercase()
            )
        };
        return Err((format!("bad stage \"{stage}\""), help));
    }
    let in_pipeline = prefix.unwrap_or(0);
    match pipeline {
        None => {
            let help = if prefix.is_some() {
                format!("add pipeline = {in_pipeline}")
            } else {
                format!(
                    "add pipeline = 0 for the default pipeline, or write \"C<N>:{code}\" with pipeline = N"
                )
            };
            Err((format!("stage \"{stage}\" needs a pipeline"), help))
        }
        Some(p) if p != in_pipeline => {
            let message = if prefix.is_some() {
                format!(
                    "stage \"{stage}\" is in pipeline {in_pipeline}, but the rule's pipeline is {p}"
                )
            } else {
                format!(
                    "stage \"{stage}\" is in the default pipeline 0, but the rule's pipeline is {p}"
                )
            };
            let spelled = if p == 0 {
                code.to_string()
            } else {
                format!("C{p}:{code}")
            };
            Err((
                message,
                format!("set pipeline = {in_pipeline}, or write \"{spelled}\""),
            ))
        }
        Some(_) => Ok(StageMatch::Exact(stage.to_string())),
    }
}

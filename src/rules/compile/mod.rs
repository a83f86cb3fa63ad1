//! Validation: the spanned TOML of every file becomes [`Rule`]s, or a list of every problem.
//!
//! Each check pushes a [`Diagnostic`] and carries on, so one run reports all problems of all
//! files. A rule with any error is dropped from the result; the set as a whole is rejected
//! when any error exists, which the caller turns into "keep the rules you had".

//!
//! `mod.rs` holds the run over the files and the per-file context every check reports to;
//! `keys` the key lists (shared with the JSON Schema), `rule` a rule's header (name, pipeline,
//! stage), `sections` the body of each kind, `deadline` and `when` their two nested tables,
//! `values` the single-value readers they all use; `control` the time-driven kinds of
//! `control.md` and `digest` the last of them, whose `include` is resolved here once every
//! file is read; `plan` the sales plans the reports measure.

mod control;
mod deadline;
mod digest;
mod keys;
mod plan;
mod rule;
mod sections;
mod values;
mod when;

use std::collections::HashMap;
use std::ops::Range;

use toml::de::DeTable;

use control::FilePipeline;
use sections::Section;

use crate::diagnostics::spanned::{
    Report, Source, array_of_tables, entry, syntax_errors, unknown_keys,
};
use crate::diagnostics::{Diagnostic, Severity};
use crate::rules::control::{ControlRules, Origin};
use crate::rules::model::{Rule, RuleKind};
use crate::rules::plan::Plan;
use crate::rules::tunnel;

pub(super) use keys::{
    CLOSE_ON_LEAVE_WORDS, DEADLINE_KEYS, DEADLINE_MOVED_KEYS, MEASURE_WORDS, ON_MISSING_WORDS,
    PERSON_WORDS, REVIEW_KEYS, SLA_TASK_KEYS, TASK_PERSON_WORDS, TASK_SCOPE_WORDS, TOP_LEVEL,
    rule_keys,
};

/// What a valid set of files compiles to.
pub(crate) struct Compiled {
    pub(crate) rules: Vec<Rule>,
    /// The time-driven rules.
    pub(crate) controls: ControlRules,
    pub(crate) plans: Vec<Plan>,
    pub(crate) warnings: Vec<Diagnostic>,
}

/// Every rule name read so far: where it was first defined (file, line) and its kind.
type Names = HashMap<String, (String, usize, RuleKind)>;

/// Compiles every file; `Err` holds every error (warnings included after them).
pub(crate) fn compile(files: &[(String, String)]) -> Result<Compiled, Vec<Diagnostic>> {
    let mut out = Output::default();
    let mut names = Names::new();
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
    // A digest may include the rules of any file.
    for include in std::mem::take(&mut out.includes) {
        if let Err((message, help)) = resolve(&include.name, &names) {
            out.errors.push(Diagnostic {
                message,
                help: Some(help),
                ..include.at
            });
        }
    }
    if out.errors.is_empty() {
        Ok(Compiled {
            rules: out.rules,
            controls: out.controls,
            plans: out.plans,
            warnings: out.warnings,
        })
    } else {
        let mut all = out.errors;
        all.extend(out.warnings);
        Err(all)
    }
}

/// What a digest may include: the rules whose findings stand at a given moment.
const INCLUDABLE: [RuleKind; 3] = [RuleKind::Overdue, RuleKind::NoTask, RuleKind::Sla];

/// A digest's `include` of `name`, against every rule of the set.
fn resolve(name: &str, names: &Names) -> Result<(), Problem> {
    match names.get(name) {
        Some((_, _, kind)) if INCLUDABLE.contains(kind) => Ok(()),
        Some((file, line, kind)) => Err((
            format!("the digest includes \"{name}\", a [[{kind}]] rule defined at {file}:{line}"),
            "a digest lists what [[overdue]], [[no_task]] and [[sla]] rules find: remove it".into(),
        )),
        None => {
            let mut known: Vec<&str> = names
                .iter()
                .filter(|(_, (_, _, kind))| INCLUDABLE.contains(kind))
                .map(|(name, _)| name.as_str())
                .collect();
            known.sort_unstable();
            let help = values::did_you_mean(
                name,
                &known,
                "name an [[overdue]], [[no_task]] or [[sla]] rule of the rule files",
            );
            Err((
                format!("the digest includes \"{name}\", which is no rule"),
                help,
            ))
        }
    }
}

/// A digest's `include` of a name: resolved once every file is read, reported at `at` (whose
/// message and help are filled then).
struct Include {
    name: String,
    at: Diagnostic,
}

#[derive(Default)]
struct Output {
    rules: Vec<Rule>,
    controls: ControlRules,
    plans: Vec<Plan>,
    includes: Vec<Include>,
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

    /// A problem that does not stop the rule from loading: `check` prints it and exits 0.
    fn warning(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.out.warnings.push(Diagnostic {
            rule: self.rule.clone(),
            severity: Severity::Warning,
            ..self.source.error(span, message.into(), help.into())
        });
    }

    fn file(&mut self, names: &mut Names) {
        let (doc, syntax) = self.source.parse();
        syntax_errors(self, syntax);
        let doc = doc.get_ref();
        unknown_keys(self, doc, TOP_LEVEL, "at the top level of a rule file");
        let file_entry = entry(doc, "pipeline");
        let file_pipeline = file_entry.and_then(|(_, v)| self.pipelines_value(v));
        // A top-level pipeline that does not parse is reported once, here; the rules relying on
        // it must not add "stage needs a pipeline" errors of their own.
        let file_pipeline_broken = file_entry.is_some() && file_pipeline.is_none();
        let kinds = [
            ("task", RuleKind::Task),
            ("require", RuleKind::Require),
            ("loss_reason", RuleKind::LossReason),
            ("nps", RuleKind::Nps),
            ("tunnel", RuleKind::Tunnel),
            ("sla", RuleKind::Sla),
            ("overdue", RuleKind::Overdue),
            ("no_task", RuleKind::NoTask),
            ("digest", RuleKind::Digest),
            ("plan", RuleKind::Plan),
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
        let file = (file_pipeline.as_ref(), file_pipeline_broken);
        for (span, kind, table) in rules {
            if INCLUDABLE.contains(&kind) || matches!(kind, RuleKind::Digest | RuleKind::Plan) {
                self.control(span, kind, table, file, names);
            } else if let Some(rule) = self.rule(span, kind, table, file, names) {
                self.out.rules.push(rule);
            }
        }
    }

    /// A time-driven rule or a plan: its header as a stage-entry rule's, then its kind's keys;
    /// it joins the set only without errors of its own.
    fn control(
        &mut self,
        span: Range<usize>,
        kind: RuleKind,
        table: &DeTable<'s>,
        file: FilePipeline,
        names: &mut Names,
    ) {
        let errors_before = self.out.errors.len();
        let section = format!("[[{kind}]]");
        let name = self.rule_name(&span, &section, kind, table, names);
        let mut allowed = rule_keys(kind).to_vec();
        // A digest's pipeline has an error of its own.
        if kind == RuleKind::Digest {
            allowed.push("pipeline");
        }
        unknown_keys(self, table, &allowed, &format!("in {section}"));
        let (line, _) = self.source.position(span.start);
        let head = (
            name,
            Origin {
                file: self.source.name.to_string(),
                line,
            },
        );
        let at = Section {
            span,
            table,
            name: &section,
        };
        let fine = |cx: &Self| cx.out.errors.len() == errors_before;
        match kind {
            RuleKind::Sla => {
                if let Some(r) = self.sla(&at, file, head).filter(|_| fine(self)) {
                    self.out.controls.sla.push(r);
                }
            }
            RuleKind::Overdue => {
                if let Some(r) = self.overdue(&at, file, head).filter(|_| fine(self)) {
                    self.out.controls.overdue.push(r);
                }
            }
            RuleKind::NoTask => {
                if let Some(r) = self.no_task(&at, file, head).filter(|_| fine(self)) {
                    self.out.controls.no_task.push(r);
                }
            }
            RuleKind::Plan => {
                if let Some(r) = self.plan(&at, file, head).filter(|_| fine(self)) {
                    self.out.plans.push(r);
                }
            }
            _ => {
                if let Some(r) = self.digest(&at, head).filter(|_| fine(self)) {
                    self.out.controls.digests.push(r);
                }
            }
        }
    }
}

//! Validation: the spanned TOML of every file becomes [`Rule`]s, or a list of every problem.
//!
//! Each check pushes a [`Diagnostic`] and carries on, so one run reports all problems of all
//! files. A rule with any error is dropped from the result; the set as a whole is rejected
//! when any error exists, which the caller turns into "keep the rules you had".

//!
//! `mod.rs` holds the run over the files and the per-file context every check reports to;
//! `keys` the key lists (shared with the JSON Schema), `rule` a rule's header (name, pipeline,
//! stage), `sections` the body of each kind, `deadline` and `when` their two nested tables,
//! `values` the single-value readers they all use.

mod deadline;
mod keys;
mod rule;
mod sections;
mod values;
mod when;

use std::collections::HashMap;
use std::ops::Range;

use crate::diagnostics::spanned::{
    Report, Source, array_of_tables, entry, syntax_errors, unknown_keys,
};
use crate::diagnostics::{Diagnostic, Severity};
use crate::rules::model::{Rule, RuleKind};
use crate::rules::tunnel;

pub(super) use keys::{
    DEADLINE_KEYS, ON_MISSING_WORDS, PERSON_WORDS, REVIEW_KEYS, TOP_LEVEL, rule_keys,
};

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

    /// A problem that does not stop the rule from loading: `check` prints it and exits 0.
    fn warning(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.out.warnings.push(Diagnostic {
            rule: self.rule.clone(),
            severity: Severity::Warning,
            ..self.source.error(span, message.into(), help.into())
        });
    }

    fn file(&mut self, names: &mut HashMap<String, (String, usize)>) {
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
                (file_pipeline.as_ref(), file_pipeline_broken),
                names,
            ) {
                self.out.rules.push(rule);
            }
        }
    }
}

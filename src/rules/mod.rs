//! The rule language: loading (every error at once, with file:line:col) and pure evaluation.
//!
//! `compile` validates the spanned TOML of every file (read by `diagnostics::spanned`, the
//! reader all user files share) into the `model` (valid rules only), and `evaluate` turns a
//! deal's stage entry into decisions and effects without any I/O.
//! `deal` holds its inputs (the deal, the stage entry, the field catalog) and `decision` its
//! outputs (decisions, outcomes, effects): `condition`, `template` and `evaluate` read those
//! and not each other's. `live` holds the rule set in force and reloads it when the folder
//! changes; `schema` is the JSON Schema of rule files, built from the compiler's own key lists;
//! `texts` the service's own texts written into the portal, in each `portal.language`.
//! `rules.md` in the shared spec is the contract; integrators' files written against it must
//! keep loading.

mod compile;
mod condition;
pub mod control;
mod deal;
mod decision;
mod evaluate;
pub mod live;
mod model;
mod period;
mod plan;
mod refs;
pub mod schema;
mod template;
mod texts;
mod tunnel;

use std::collections::BTreeSet;
use std::path::Path;

pub use crate::diagnostics::{Diagnostic, Severity};
pub use deal::{Deal, FieldCatalog, StageEntry, StageSemantic};
pub use decision::{
    CopySpec, Decision, Effect, EffectId, Evaluation, Outcome, Person, SkipReason, TaskSpec,
};
pub(crate) use evaluate::concerns;

/// A deal field as people read it (a list field by its label), for the report copy.
pub(crate) fn shown_value(deal: &Deal, catalog: &FieldCatalog, field: &str) -> String {
    template::display_value(deal, catalog, field, &mut Vec::new())
}
pub use evaluate::{Input, evaluate};
pub use live::{RulesHandle, RulesStatus};
pub(crate) use model::stage_pipeline;
pub use model::{Rule, RuleKind};
pub use period::{PERIOD_FORMS, PeriodError, ReportPeriod};
pub use plan::{Amount, Measure, Plan, PlanTarget};
pub use refs::{PortalRefs, RuleRefs};
pub use texts::Language;
pub use tunnel::{CopyOrigin, ORIGINATOR, READ_ONLY_FIELDS, offline_semantic};

use model::Body;

/// A loaded, valid set of rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// The time-driven rules (`control.md`).
    controls: control::ControlRules,
    /// The sales plans (`[[plan]]`), in file order: the `plan` report reads them.
    plans: Vec<Plan>,
    version: String,
}

impl RuleSet {
    /// Loads every `*.toml` of `dir` in name order (sub-folders are not read). Warnings come
    /// with the set; `Err` holds every error (and the warnings after them).
    pub fn load_dir(dir: &Path) -> Result<(RuleSet, Vec<Diagnostic>), Vec<Diagnostic>> {
        let folder = dir.display().to_string();
        let whole = |message: String, severity| Diagnostic {
            file: folder.clone(),
            line: 0,
            column: 0,
            rule: None,
            message,
            help: None,
            severity,
        };
        let listing = match std::fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) => {
                return Err(vec![whole(
                    format!("cannot read the rules folder: {e}"),
                    Severity::Error,
                )]);
            }
        };
        let mut paths: Vec<_> = listing
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((name, text)),
                Err(e) => errors.push(Diagnostic {
                    file: name,
                    ..whole(format!("cannot read the file: {e}"), Severity::Error)
                }),
            }
        }
        let empty = files.is_empty() && errors.is_empty();
        let result = RuleSet::from_sources(&files);
        match result {
            Ok((set, mut warnings)) if errors.is_empty() => {
                if empty {
                    warnings.insert(
                        0,
                        whole(
                            "no *.toml rule files: no rule will fire".into(),
                            Severity::Warning,
                        ),
                    );
                }
                Ok((set, warnings))
            }
            Ok((_, warnings)) => {
                errors.extend(warnings);
                Err(errors)
            }
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Loads rules from `(display name, text)` pairs, in the given order.
    pub fn from_sources(
        files: &[(String, String)],
    ) -> Result<(RuleSet, Vec<Diagnostic>), Vec<Diagnostic>> {
        let compile::Compiled {
            rules,
            controls,
            plans,
            mut warnings,
        } = compile::compile(files)?;
        let control_files: BTreeSet<&str> = controls
            .sla
            .iter()
            .map(|r| &r.origin)
            .chain(controls.overdue.iter().map(|r| &r.origin))
            .chain(controls.no_task.iter().map(|r| &r.origin))
            .chain(controls.digests.iter().map(|r| &r.origin))
            .chain(plans.iter().map(|p| &p.origin))
            .map(|origin| origin.file.as_str())
            .collect();
        for (name, _) in files {
            if !rules.iter().any(|r| r.file == *name) && !control_files.contains(name.as_str()) {
                warnings.push(Diagnostic {
                    file: name.clone(),
                    line: 0,
                    column: 0,
                    rule: None,
                    message: "the file defines no rules".into(),
                    help: Some("add [[task]], [[require]], [[loss_reason]], [[nps]], [[tunnel]], [[sla]], [[overdue]], [[no_task]], [[digest]] or [[plan]] sections, or remove the file".into()),
                    severity: Severity::Warning,
                });
            }
        }
        Ok((
            RuleSet {
                rules,
                controls,
                plans,
                version: version(files),
            },
            warnings,
        ))
    }

    /// A stable hash of the file names (relative to the rules folder) and their bytes: the
    /// decision log records which rules decided, and `check` prints it to match with git.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every rule, the time-driven ones and the plans included.
    pub fn len(&self) -> usize {
        self.rules.len() + self.controls.names().len() + self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.controls.is_empty() && self.plans.is_empty()
    }

    /// The sales plans, in file order.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn plan_named(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.name == name)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What `close_on_leave` says of the tasks the rule `name` creates (a `[[task]]`, `[[nps]]`,
    /// a `[loss_reason.review]` or an `[sla.task]`); `None`: they stay.
    pub fn close_on_leave(&self, name: &str) -> Option<control::CloseOnLeave> {
        if let Some(rule) = self.rules.iter().find(|r| r.name() == name) {
            return match &rule.body {
                Body::Task(task) | Body::Nps { task, .. } => task.close_on_leave,
                Body::LossReason(loss) => loss.review.as_ref().and_then(|t| t.close_on_leave),
                Body::Require(_) | Body::Tunnel(_) => None,
            };
        }
        self.controls
            .sla_named(name)
            .and_then(|sla| sla.task.as_ref())
            .and_then(|t| t.close_on_leave)
    }

    /// The time-driven rules (`control.md`).
    pub fn controls(&self) -> &control::ControlRules {
        &self.controls
    }

    /// The rules `keep` accepts, under the same version (a backfill of some of the rules).
    pub(crate) fn only(&self, keep: impl Fn(&Rule) -> bool) -> RuleSet {
        RuleSet {
            rules: self.rules.iter().filter(|r| keep(r)).cloned().collect(),
            controls: self.controls.clone(),
            plans: self.plans.clone(),
            version: self.version.clone(),
        }
    }

    /// Only the `[[sla]]` named `name`, no stage rule: what a backfill of one SLA arms.
    pub(crate) fn only_sla(&self, name: &str) -> RuleSet {
        let mut controls = self.controls.clone();
        controls.sla.retain(|s| s.name == name);
        RuleSet {
            rules: Vec::new(),
            controls,
            plans: self.plans.clone(),
            version: self.version.clone(),
        }
    }

    /// The same set with no `[[sla]]`: a backfill of stage rules arms no timer.
    pub(crate) fn without_slas(&self) -> RuleSet {
        let mut controls = self.controls.clone();
        controls.sla.clear();
        RuleSet {
            rules: self.rules.clone(),
            controls,
            plans: self.plans.clone(),
            version: self.version.clone(),
        }
    }

    /// The tunnel cycles of the set with the stages' kinds as `semantic` tells them (the
    /// portal's, for `check --portal`; a stage it does not know falls back to Bitrix24's
    /// standard codes): errors for the cycles that surely run, warnings for those that depend
    /// on a stage of unknown kind.
    pub fn tunnel_cycles(
        &self,
        semantic: &dyn Fn(&str) -> Option<StageSemantic>,
    ) -> Vec<Diagnostic> {
        tunnel::cycle_diagnostics(&self.rules, &|stage: &str| {
            semantic(stage).or_else(|| offline_semantic(stage))
        })
    }

    /// Stage ids of `pipeline` known without a portal: Bitrix24's standard ones (reference
    /// §6.6), then those the rules name, for messages that list the valid stages.
    pub fn stages_of(&self, pipeline: u64) -> Vec<String> {
        let mut stages: Vec<String> = model::STANDARD_STAGES
            .iter()
            .map(|code| model::stage_id(pipeline, code))
            .collect();
        for rule in &self.rules {
            for stage in rule.portal_refs().stages {
                if stage_pipeline(&stage) == Some(pipeline) && !stages.contains(&stage) {
                    stages.push(stage);
                }
            }
        }
        stages
    }

    /// The fields tunnels write into their copies (`copy` and `set`), with the rule and where
    /// it is defined: `check --portal` verifies the portal lets them be written.
    pub fn tunnel_writes(&self) -> Vec<(&Rule, &str)> {
        self.rules
            .iter()
            .flat_map(|rule| match &rule.body {
                Body::Tunnel(tunnel) => tunnel
                    .copy
                    .iter()
                    .map(String::as_str)
                    .chain(tunnel.set.iter().map(|(field, _)| field.as_str()))
                    .map(|field| (rule, field))
                    .collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Every deal field the rules name (templates, `when`, require, deadlines, people,
    /// tunnels; the time-driven rules' too), sorted; `check --portal` verifies that the portal
    /// has them.
    pub fn referenced_fields(&self) -> Vec<String> {
        let fields: BTreeSet<String> = self
            .portal_refs()
            .into_iter()
            .flat_map(|r| r.refs.fields)
            .collect();
        fields.into_iter().collect()
    }
}

/// FNV-1a (64 bits) over names and texts: stable across builds and platforms, unlike
/// `DefaultHasher`. A name counts by its last component, the name within the rules folder
/// (which is flat: sub-folders are not loaded), so `rules`, `./rules`, an absolute path and
/// the embedded `rules/...` give the same version on a laptop and on the server.
fn version(files: &[(String, String)]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in files {
        let name = std::path::Path::new(name)
            .file_name()
            .map_or(std::borrow::Cow::Borrowed(name.as_str()), |n| {
                n.to_string_lossy()
            });
        for byte in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

//! One rule's header: its name (unique across files), its keys, its pipeline and stage; then
//! the section of its kind, read by `sections`.

use std::ops::Range;

use toml::de::DeTable;

use super::control::FilePipeline;
use super::keys::{MAX_NAME, rule_keys};
use super::sections::Section;
use super::values::Pipelines;
use super::{FileCx, Names, Problem};
use crate::diagnostics::spanned::{entry, unknown_keys};
use crate::diagnostics::suggest;
use crate::rules::model::{Body, Rule, RuleKind, STANDARD_STAGES, StageMatch, stage_id};

impl<'s> FileCx<'_, 's> {
    pub(super) fn rule(
        &mut self,
        span: Range<usize>,
        kind: RuleKind,
        table: &DeTable<'s>,
        (file_pipeline, file_pipeline_broken): FilePipeline,
        names: &mut Names,
    ) -> Option<Rule> {
        let errors_before = self.out.errors.len();
        let section = format!("[[{}]]", kind.table());
        let name = self.rule_name(&span, &section, kind, table, names);
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
        let own_pipeline = own_entry.and_then(|(_, v)| self.pipelines_value(v));
        // A pipeline that failed to parse was already reported; checking the stage against a
        // guess would only add a second, misleading error.
        let pipeline_broken = match own_entry {
            Some(_) => own_pipeline.is_none(),
            None => file_pipeline_broken,
        };
        let pipeline = own_pipeline.as_ref().or(file_pipeline);
        let stage = match kind {
            RuleKind::Sla
            | RuleKind::Overdue
            | RuleKind::NoTask
            | RuleKind::Digest
            | RuleKind::Plan => {
                unreachable!("time-driven rules and plans are compiled by `control`")
            }
            RuleKind::LossReason => Some(StageMatch::Lost),
            RuleKind::Nps => Some(StageMatch::Won),
            RuleKind::Task | RuleKind::Require | RuleKind::Tunnel => match entry(table, "stage") {
                None if kind == RuleKind::Tunnel => Some(StageMatch::Won),
                None => {
                    let help = match pipeline {
                        Some(Pipelines::One(0)) => "add stage = \"PREPARATION\" (a STAGE_ID), \"won\" or \"lost\"".to_string(),
                        Some(Pipelines::One(p)) => format!("add stage = \"C{p}:PREPARATION\" (a STAGE_ID), \"won\" or \"lost\""),
                        Some(Pipelines::List(_)) => "add stage = \"PREPARATION\" (a stage code, the same in each pipeline), \"won\" or \"lost\"".to_string(),
                        None => "add stage = \"C1:PREPARATION\" (a STAGE_ID) with its pipeline, or \"won\" or \"lost\"".to_string(),
                    };
                    self.error(span.clone(), format!("{section} without a \"stage\""), help);
                    None
                }
                Some((_, v)) => {
                    match self.string(v, "stage", "\"C1:PREPARATION\", \"won\" or \"lost\"") {
                        None => None,
                        Some(_) if pipeline_broken => None,
                        Some(text) => match check_stage(text, pipeline, true) {
                            Ok(stage) => {
                                self.unusual_stage(v.span(), "stage", text, &stage);
                                Some(stage)
                            }
                            Err((message, help)) => {
                                self.error(v.span(), message, help);
                                None
                            }
                        },
                    }
                }
            },
        };
        let when = match entry(table, "when") {
            Some((_, v)) => self.when(v),
            None => Vec::new(),
        };
        let at = Section {
            span: span.clone(),
            table,
            name: &section,
        };
        let body = match kind {
            RuleKind::Task => self.task(&at).map(Body::Task),
            RuleKind::Require => self.require(&at).map(Body::Require),
            RuleKind::LossReason => self.loss_reason(&at).map(Body::LossReason),
            RuleKind::Nps => {
                let score_field = entry(table, "score_field")
                    .and_then(|(_, v)| self.field_code(v, "score_field"));
                self.task(&at).map(|task| Body::Nps { task, score_field })
            }
            RuleKind::Tunnel => self.tunnel(&at).map(Body::Tunnel),
            RuleKind::Sla
            | RuleKind::Overdue
            | RuleKind::NoTask
            | RuleKind::Digest
            | RuleKind::Plan => {
                unreachable!("time-driven rules and plans are compiled by `control`")
            }
        };
        let (line, _) = self.source.position(span.start);
        let rule = Rule {
            name: name?,
            kind,
            file: self.source.name.to_string(),
            line,
            pipelines: pipeline.map(Pipelines::ids),
            stage: stage?,
            when,
            body: body?,
        };
        (self.out.errors.len() == errors_before).then_some(rule)
    }

    /// A rule's `name`, checked and unique across the files (and kinds) read so far; from here
    /// on every diagnostic of the rule carries it. `None` when it is missing or bad.
    pub(super) fn rule_name(
        &mut self,
        span: &Range<usize>,
        section: &str,
        kind: RuleKind,
        table: &DeTable<'s>,
        names: &mut Names,
    ) -> Option<String> {
        self.rule = None;
        match entry(table, "name") {
            None => {
                self.error(
                    span.clone(),
                    format!("{section} without a \"name\""),
                    "add name = \"...\": lower-case letters, digits, \"-\" and \"_\"",
                );
                None
            }
            Some((_, v)) => match self.string(v, "name", "\"my-rule\"") {
                None => None,
                Some(name) => {
                    self.rule = Some(name.to_string());
                    if let Err((message, help)) = check_name(name) {
                        self.error(v.span(), message, help);
                    } else {
                        let (line, _) = self.source.position(v.span().start);
                        if let Some((file, first, _)) = names.get(name) {
                            let (file, first) = (file.clone(), *first);
                            self.error(
                                v.span(),
                                // One parenthesised part per message: the fix. (Was "(first defined at ...) (...)".)
                                format!("duplicate rule name, first defined at {file}:{first}"),
                                "rule names are unique across all files: rename one of them",
                            );
                        } else {
                            names.insert(
                                name.to_string(),
                                (self.source.name.to_string(), line, kind),
                            );
                        }
                    }
                    Some(name.to_string())
                }
            },
        }
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

impl FileCx<'_, '_> {
    /// A stage code that is neither one of Bitrix24's standard ones ([`STANDARD_STAGES`]) nor a
    /// portal's own (`UC_...`): only a warning, as a portal may still have it (`check --portal`
    /// reads the portal's stages and settles it), but most often a typo.
    pub(super) fn unusual_stage(
        &mut self,
        span: Range<usize>,
        key: &str,
        written: &str,
        stage: &StageMatch,
    ) {
        let StageMatch::Exact(code) = stage else {
            return;
        };
        if STANDARD_STAGES.contains(&code.as_str()) || code.starts_with("UC_") {
            return;
        }
        let prefix = written.strip_suffix(code.as_str()).unwrap_or_default();
        let confirm = "if the portal has this stage, b24-robot check --portal confirms it";
        let help = match suggest(code, &STANDARD_STAGES) {
            Some(near) => format!("did you mean \"{prefix}{near}\"? {confirm}"),
            None => format!(
                "the standard codes are {}, a portal's own are UC_...: {confirm}",
                STANDARD_STAGES.join(", ")
            ),
        };
        self.warning(
            span,
            format!("{key} \"{written}\" is not a standard Bitrix24 stage"),
            help,
        );
    }
}

/// Checks a stage against its pipeline(s): with one pipeline, the `STAGE_ID` of that pipeline
/// (`C1:NEW` with 1); with a list, the code alone (`NEW`), resolved in each. `specials`: whether
/// "won"/"lost" are accepted. The stage comes back as its code ([`StageMatch::Exact`]).
pub(super) fn check_stage(
    stage: &str,
    pipeline: Option<&Pipelines>,
    specials: bool,
) -> Result<StageMatch, Problem> {
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
    let pipeline = match pipeline {
        Some(Pipelines::List(ids)) => {
            if prefix.is_none() {
                return Ok(StageMatch::Exact(code.to_string()));
            }
            let each: Vec<String> = ids
                .iter()
                .map(|&p| format!("{} in pipeline {p}", stage_id(p, code)))
                .collect();
            return Err((
                format!("stage \"{stage}\" names a pipeline, but the rule's pipeline is a list"),
                format!(
                    "drop the prefix: write \"{code}\", which is {}",
                    each.join(" and ")
                ),
            ));
        }
        Some(Pipelines::One(p)) => Some(*p),
        None => None,
    };
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
        Some(_) => Ok(StageMatch::Exact(code.to_string())),
    }
}

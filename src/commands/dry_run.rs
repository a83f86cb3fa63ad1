//! `b24-robot dry-run --deal FILE --from STAGE`: what the rules would write for a deal entering
//! its current stage from `STAGE`, without a portal. People and labels that only the portal
//! knows are shown as `<unresolved: ...>`.
//!
//! Each write is printed as one JSON object a line, `{"method": ..., "params": ...}`, on stdout;
//! what each rule decided, and why, goes to stderr as `#` comments.
//!
//! With `--now MOMENT`, the `[[sla]]`s watching the deal's stage entry are told too, as the
//! service's timer loop would see them at that moment (the deal still in the stage): when each
//! is due, and the notices and task of the firing that has come. Without it, the output is the
//! stage entry's alone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Value, json};

use super::control_at::slas_at;
use super::offline::plan_fired;
use super::{CommandError, CommandResult, load_rules};
use crate::calendar::Calendar;
use crate::commands::output::outln;
use crate::rules::{
    Deal, FieldCatalog, Input, Language, RuleSet, StageEntry, StageSemantic, evaluate,
    stage_pipeline,
};

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// The deal file is not a deal (exit 1).
    #[error("{0}")]
    Deal(String),
    /// The command line asks for what cannot happen, such as a `--from` of another pipeline
    /// (exit 2, as clap's own usage errors).
    #[error("{0}")]
    Usage(String),
}

/// `--from` must be a stage of the deal's pipeline: the service never moves a deal back across
/// pipelines, so a dry run must not plan it.
fn check_from(rules: &RuleSet, deal: &Deal, from: &str) -> Result<(), DryRunError> {
    let pipeline = deal
        .category_id()
        .or_else(|| deal.stage_id().and_then(stage_pipeline))
        .unwrap_or(0);
    if stage_pipeline(from) == Some(pipeline) {
        return Ok(());
    }
    let from_in = match stage_pipeline(from) {
        Some(p) => format!("is a stage of pipeline {p}"),
        None => "is no stage id (write CODE in pipeline 0, C<n>:CODE in pipeline n)".to_string(),
    };
    let spelled = if pipeline == 0 {
        "without a \"C<n>:\" prefix".to_string()
    } else {
        format!("with the prefix \"C{pipeline}:\"")
    };
    Err(DryRunError::Usage(format!(
        "--from \"{from}\" {from_in}, but the deal is in pipeline {pipeline}: a deal is never moved back across pipelines (give a stage of pipeline {pipeline}, {spelled}: {})",
        rules.stages_of(pipeline).join(", ")
    )))
}

/// The deal of a `crm.deal.get` answer, with or without its `{"result": ...}` envelope.
pub fn parse_deal(text: &str) -> Result<Deal, DryRunError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| DryRunError::Deal(format!("the deal file is not JSON: {e}")))?;
    let deal = match value {
        Value::Object(mut map) if map.contains_key("result") => {
            map.remove("result").unwrap_or(Value::Null)
        }
        other => other,
    };
    match deal {
        Value::Object(map) if map.contains_key("STAGE_ID") => Ok(Deal::new(map)),
        Value::Object(_) => Err(DryRunError::Deal(
            "the deal has no STAGE_ID: is it a crm.deal.get answer?".into(),
        )),
        _ => Err(DryRunError::Deal(
            "the deal file must hold a JSON object (a crm.deal.get answer)".into(),
        )),
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A write, as JSON.
    Write(Value),
    /// What a rule decided, for people.
    Note(String),
}

/// What a dry run needs besides the rules and the deal.
pub struct Context<'a> {
    pub calendar: &'a Calendar,
    pub portal_origin: &'a str,
    /// `rules.max_tunnel_depth`.
    pub max_tunnel_depth: u32,
    /// `portal.language`, for the service's own texts; offline, stages are named by their ids.
    pub language: Language,
    pub now: DateTime<Utc>,
    /// `--now`: the moment the time-driven rules are told at; `None`: they are not told.
    pub control_at: Option<DateTime<FixedOffset>>,
}

/// A decision and its notes as `#` lines, then its writes.
fn push_decision(lines: &mut Vec<Line>, decision: &crate::rules::Decision, deal_id: u64) {
    lines.push(Line::Note(format!(
        "rule \"{}\" ({}): {}",
        decision.rule, decision.kind, decision.outcome
    )));
    for note in &decision.notes {
        lines.push(Line::Note(format!("  {note}")));
    }
    let one = std::slice::from_ref(decision);
    for planned in plan_fired(one, deal_id, &BTreeMap::new(), &|_| String::new()) {
        match planned.call {
            Ok(call) => lines.push(Line::Write(
                json!({ "method": call.method, "params": call.params }),
            )),
            Err(error) => lines.push(Line::Note(format!(
                "  effect {} cannot be made: {error}",
                planned.index
            ))),
        }
    }
}

/// The SLAs watching the entry at `at`: when each is due and, once it is, what it does.
fn push_slas(lines: &mut Vec<Line>, rules: &RuleSet, input: &Input<'_>, at: DateTime<FixedOffset>) {
    let deal_id = input.deal.id().unwrap_or(0);
    lines.push(Line::Note(format!("at {} (--now):", at.to_rfc3339())));
    let slas = slas_at(rules, input, at);
    if slas.is_empty() {
        lines.push(Line::Note(format!(
            "no [[sla]] watches the entry into {}",
            input.entry.stage_id
        )));
    }
    for sla in slas {
        let due = sla
            .first_due
            .map_or_else(|| "never".to_string(), |d| d.to_rfc3339());
        match (&sla.decision, sla.firing) {
            (Some(decision), Some(firing)) => {
                lines.push(Line::Note(format!(
                    "rule \"{}\" (sla): first due at {due}, firing {} of {} has come",
                    sla.rule,
                    firing + 1,
                    sla.firings
                )));
                push_decision(lines, decision, deal_id);
            }
            _ => lines.push(Line::Note(format!(
                "rule \"{}\" (sla): not due yet, first due at {due} ({} firing(s) at most)",
                sla.rule, sla.firings
            ))),
        }
    }
}

/// Evaluates the rules for `deal` entering its stage from `from` and lists the writes; `Err`
/// when `from` is not a stage of the deal's pipeline.
pub fn run(
    rules: &RuleSet,
    deal: &Deal,
    from: &str,
    context: &Context<'_>,
) -> Result<Vec<Line>, DryRunError> {
    check_from(rules, deal, from)?;
    let now = context.now;
    let stage_id = deal.stage_id().unwrap_or_default().to_string();
    let semantic = deal
        .get("STAGE_SEMANTIC_ID")
        .and_then(Value::as_str)
        .map(StageSemantic::from_code)
        .unwrap_or(StageSemantic::Process);
    let created_time = deal
        .get("MOVED_TIME")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| now.fixed_offset());
    let entry = StageEntry {
        id: 0,
        type_id: 2,
        stage_id,
        category_id: deal.category_id().unwrap_or(0),
        semantic,
        created_time,
    };
    let catalog = FieldCatalog::empty();
    let input = Input {
        deal,
        entry: &entry,
        previous_stage: Some(from),
        catalog: &catalog,
        calendar: context.calendar,
        portal_origin: context.portal_origin,
        max_tunnel_depth: context.max_tunnel_depth,
        language: context.language,
    };
    let deal_id = deal.id().unwrap_or(0);
    let mut lines = Vec::new();
    for decision in evaluate(rules, &input).decisions {
        push_decision(&mut lines, &decision, deal_id);
    }
    if let Some(at) = context.control_at {
        push_slas(&mut lines, rules, &input, at);
    }
    Ok(lines)
}

/// The command: loads the config (for the calendar and the portal's address), the rules and the
/// deal file, prints the writes; `now`: `--now`, a moment with its offset.
pub fn command(
    config: Option<PathBuf>,
    deal: &std::path::Path,
    (from, now): (&str, Option<&str>),
    rules_dir: Option<PathBuf>,
) -> CommandResult {
    let control_at = now
        .map(|text| {
            DateTime::parse_from_rfc3339(text).map_err(|e| {
                CommandError::Usage(format!(
                    "--now \"{text}\" is not a moment with its offset ({e}): write --now 2026-12-03T10:00:00+03:00"
                ))
            })
        })
        .transpose()?;
    let settings = super::load_settings_for_rules(config, rules_dir)?;
    let rules = load_rules(&settings)?;
    let failed = |error: &dyn std::fmt::Display| {
        CommandError::Failed(format!("{}: {error}", deal.display()))
    };
    let text = std::fs::read_to_string(deal).map_err(|e| failed(&e))?;
    let deal = parse_deal(&text).map_err(|e| failed(&e))?;
    let origin = settings
        .portal
        .webhook_url
        .as_ref()
        .and_then(|u| url::Url::parse(u.expose()).ok())
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|| "https://<portal>".into());
    let context = Context {
        calendar: &settings.calendar,
        portal_origin: &origin,
        max_tunnel_depth: settings.rules.max_tunnel_depth,
        language: settings.portal.language,
        now: Utc::now(),
        control_at,
    };
    let lines = run(&rules, &deal, from, &context).map_err(|error| match error {
        DryRunError::Usage(message) | DryRunError::Deal(message) => CommandError::Usage(message),
    })?;
    for line in lines {
        match line {
            Line::Write(value) => outln!("{value}"),
            Line::Note(text) => eprintln!("# {text}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
title = "Offer: {TITLE}"
auditors = ["supervisor"]
deadline = { after = "1 day" }
"#;

    #[test]
    fn a_deal_entering_a_stage_prints_the_task_with_its_unresolved_supervisor() {
        let (rules, _) =
            RuleSet::from_sources(&[("r.toml".into(), RULES.into())]).expect("rules load");
        let deal = parse_deal(
            r#"{"result": {"ID": "5", "TITLE": "Acme", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0",
                "ASSIGNED_BY_ID": "3", "MOVED_TIME": "2026-12-01T10:00:00+03:00"}}"#,
        )
        .expect("deal");
        let lines = run(&rules, &deal, "NEW", &context(&Calendar::default())).expect("runs");
        let writes: Vec<&Value> = lines
            .iter()
            .filter_map(|l| {
                if let Line::Write(v) = l {
                    Some(v)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(writes.len(), 1, "{lines:?}");
        assert_eq!(writes[0]["method"], "tasks.task.add");
        assert_eq!(writes[0]["params"]["fields"]["TITLE"], "Offer: Acme");
        assert_eq!(writes[0]["params"]["fields"]["RESPONSIBLE_ID"], 3);
        assert_eq!(
            writes[0]["params"]["fields"]["AUDITORS"],
            json!(["<unresolved: supervisor of user 3>"])
        );
        assert_eq!(
            writes[0]["params"]["fields"]["DEADLINE"],
            "2026-12-02T10:00:00+03:00"
        );
    }

    #[test]
    fn each_decision_is_told_in_words_never_in_debug_text() {
        let rules = format!(
            "{RULES}\n[[require]]\nname = \"inn\"\nstage = \"PREPARATION\"\nfields = [\"UF_CRM_INN\"]\nwhen = {{ OPPORTUNITY = {{ gte = 1000 }} }}\n"
        );
        let (rules, _) = RuleSet::from_sources(&[("r.toml".into(), rules)]).expect("rules load");
        let deal = parse_deal(
            r#"{"result": {"ID": "5", "TITLE": "Acme", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0",
                "ASSIGNED_BY_ID": "3", "OPPORTUNITY": "10"}}"#,
        )
        .expect("deal");
        let lines = run(&rules, &deal, "NEW", &context(&Calendar::default())).expect("runs");
        let notes: Vec<&str> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Note(text) => Some(text.as_str()),
                Line::Write(_) => None,
            })
            .collect();
        assert_eq!(
            notes,
            vec![
                "rule \"inn\" (require): skipped: condition false",
                "  condition not met: OPPORTUNITY gte 1000 (the deal has \"10\")",
                "rule \"offer\" (task): fired, 1 effect(s)",
                "  the deal has no MOVED_TIME: the stage entry's time is used",
            ]
        );
        assert!(
            notes
                .iter()
                .all(|n| !n.contains('{') && !n.contains("ConditionFalse")),
            "{notes:?}"
        );
    }

    fn context(calendar: &Calendar) -> Context<'_> {
        Context {
            calendar,
            portal_origin: "https://x.bitrix24.ru",
            max_tunnel_depth: 3,
            language: Language::En,
            now: Utc::now(),
            control_at: None,
        }
    }

    #[test]
    fn a_from_stage_of_another_pipeline_is_a_usage_error_naming_the_valid_stages() {
        let (rules, _) =
            RuleSet::from_sources(&[("r.toml".into(), RULES.into())]).expect("rules load");
        let deal = parse_deal(
            r#"{"ID": "5", "TITLE": "Acme", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0"}"#,
        )
        .expect("deal");
        let calendar = Calendar::default();
        match run(&rules, &deal, "C1:NEW", &context(&calendar)) {
            Err(DryRunError::Usage(message)) => assert_eq!(
                message,
                "--from \"C1:NEW\" is a stage of pipeline 1, but the deal is in pipeline 0: a deal is never moved back across pipelines (give a stage of pipeline 0, without a \"C<n>:\" prefix: NEW, PREPARATION, PREPAYMENT_INVOICE, EXECUTING, FINAL_INVOICE, WON, LOSE, APOLOGY)"
            ),
            other => panic!("{other:?}"),
        }
        let in_one = parse_deal(r#"{"ID": "6", "STAGE_ID": "C1:PREPARATION", "CATEGORY_ID": "1"}"#)
            .expect("deal");
        match run(&rules, &in_one, "NEW", &context(&calendar)) {
            Err(DryRunError::Usage(message)) => assert!(
                message.contains("with the prefix \"C1:\": C1:NEW, C1:PREPARATION"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(run(&rules, &deal, "NEW", &context(&calendar)).is_ok());
    }

    #[test]
    fn with_now_the_slas_of_the_entry_are_told_after_the_entrys_writes() {
        let rules = format!(
            "{RULES}\n[[sla]]\nname = \"offer-sla\"\nstage = \"PREPARATION\"\nwithin = \"1 workday\"\nnotify = [\"assigned\"]\nmessage = \"{{TITLE}} is late\"\n"
        );
        let (rules, _) = RuleSet::from_sources(&[("r.toml".into(), rules)]).expect("rules load");
        let deal = parse_deal(
            r#"{"ID": "5", "TITLE": "Acme", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0",
                "ASSIGNED_BY_ID": "3", "MOVED_TIME": "2026-12-01T10:00:00+03:00"}"#,
        )
        .expect("deal");
        let calendar = Calendar::default();
        let without = run(&rules, &deal, "NEW", &context(&calendar)).expect("runs");
        let at = |now: &str| Context {
            control_at: Some(DateTime::parse_from_rfc3339(now).expect("moment")),
            ..context(&calendar)
        };
        let due = run(&rules, &deal, "NEW", &at("2026-12-02T11:00:00+03:00")).expect("runs");
        assert_eq!(
            due[..without.len()],
            without[..],
            "the entry's lines first, unchanged"
        );
        let told = &due[without.len()..];
        assert_eq!(
            told[..2],
            [
                Line::Note("at 2026-12-02T11:00:00+03:00 (--now):".into()),
                Line::Note(
                    "rule \"offer-sla\" (sla): first due at 2026-12-02T10:00:00+03:00, firing 1 of 1 has come".into()
                ),
            ]
        );
        assert!(
            told.iter().any(|l| matches!(l, Line::Write(v) if v["params"]["MESSAGE"] == "Acme is late" && v["params"]["USER_ID"] == 3)),
            "{told:?}"
        );
        let early = run(&rules, &deal, "NEW", &at("2026-12-01T11:00:00+03:00")).expect("runs");
        assert_eq!(
            early[without.len() + 1..],
            [Line::Note(
                "rule \"offer-sla\" (sla): not due yet, first due at 2026-12-02T10:00:00+03:00 (1 firing(s) at most)".into()
            )]
        );
    }

    #[test]
    fn a_file_that_is_not_a_deal_is_refused_with_a_reason() {
        assert!(parse_deal("not json").is_err());
        assert!(parse_deal("[1,2]").is_err());
        assert!(parse_deal(r#"{"result": {"ID": "5"}}"#).is_err());
    }
}

//! Behaviour of loading and evaluation, one test per behaviour, a file per topic; this file
//! holds what they share: loading a text, a deal and its stage entry, a run of the evaluator,
//! and the rule texts more than one topic reads.

mod conditions;
mod control;
mod loading;
mod pipelines;
mod plans;
mod reverts;
mod tasks;
mod templates;
mod tunnels;

use chrono::{DateTime, FixedOffset};
use serde_json::json;

use super::*;
use crate::calendar::Calendar;

/// Every diagnostic as the user reads it.
fn shown(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(ToString::to_string).collect()
}

fn owned(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect()
}

/// Loads `(file name, text)` pairs, or panics with every diagnostic; the warnings come shown.
fn load_files(files: &[(&str, &str)]) -> (RuleSet, Vec<String>) {
    match RuleSet::from_sources(&owned(files)) {
        Ok((set, warnings)) => (set, shown(&warnings)),
        Err(errors) => panic!("{}", shown(&errors).join("\n")),
    }
}

/// The diagnostics of files that must not load.
fn errors_of(files: &[(&str, &str)]) -> Vec<String> {
    match RuleSet::from_sources(&owned(files)) {
        Ok(_) => panic!("loaded without errors"),
        Err(errors) => shown(&errors),
    }
}

fn load(text: &str) -> RuleSet {
    load_files(&[("sales.toml", text)]).0
}

fn errors(text: &str) -> Vec<String> {
    errors_of(&[("sales.toml", text)])
}

/// `text` does not load, with exactly these diagnostics.
#[track_caller]
fn refused(text: &str, expected: &[&str]) {
    assert_eq!(errors(text), expected);
}

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

fn deal(fields: serde_json::Value) -> Deal {
    let mut map = json!({
        "ID": "42", "TITLE": "Acme", "ASSIGNED_BY_ID": "7", "CATEGORY_ID": "1",
        "STAGE_ID": "C1:PREPARATION", "MOVED_TIME": "2026-01-16T17:00:00+03:00",
        "OPPORTUNITY": "150000.00", "CURRENCY_ID": "RUB"
    });
    for (k, v) in fields.as_object().unwrap() {
        map[k] = v.clone();
    }
    Deal::new(map.as_object().unwrap().clone())
}

fn entry(stage: &str, category: u64, semantic: StageSemantic) -> StageEntry {
    StageEntry {
        id: 1001,
        type_id: 2,
        stage_id: stage.into(),
        category_id: category,
        semantic,
        created_time: at("2026-01-16T14:00:05+00:00"),
    }
}

struct Run {
    deal: Deal,
    entry: StageEntry,
    previous: Option<&'static str>,
    catalog: FieldCatalog,
    calendar: Calendar,
    max_tunnel_depth: u32,
    language: Language,
}

impl Run {
    fn new(deal: Deal, entry: StageEntry) -> Run {
        Run {
            deal,
            entry,
            previous: Some("C1:NEW"),
            catalog: FieldCatalog::empty(),
            calendar: Calendar::default(),
            max_tunnel_depth: 3,
            // The tests pin the English texts; the Russian ones have tests of their own.
            language: Language::En,
        }
    }

    fn with_deal(mut self, fields: serde_json::Value) -> Run {
        self.deal = deal(fields);
        self
    }

    fn with_catalog(mut self) -> Run {
        self.catalog = catalog();
        self
    }

    fn evaluate(&self, rules: &RuleSet) -> Evaluation {
        evaluate(
            rules,
            &Input {
                deal: &self.deal,
                entry: &self.entry,
                previous_stage: self.previous,
                catalog: &self.catalog,
                calendar: &self.calendar,
                portal_origin: "https://x.bitrix24.ru",
                max_tunnel_depth: self.max_tunnel_depth,
                language: self.language,
            },
        )
    }
}

fn preparation() -> Run {
    Run::new(
        deal(json!({})),
        entry("C1:PREPARATION", 1, StageSemantic::Process),
    )
}

/// A deal entering a won stage of pipeline 1.
fn won(fields: serde_json::Value) -> Run {
    Run::new(deal(fields), entry("C1:WON", 1, StageSemantic::Success))
}

/// The effects of a decision that fired.
fn fired(outcome: &Outcome) -> &[Effect] {
    match outcome {
        Outcome::Fired(effects) => effects,
        other => panic!("{other:?}"),
    }
}

/// The task an effect creates.
fn created_task(effect: &Effect) -> &TaskSpec {
    match effect {
        Effect::CreateTask(task) => task,
        other => panic!("{other:?}"),
    }
}

/// Whether the decision carries `note`.
fn noted(decision: &Decision, note: &str) -> bool {
    decision.notes.iter().any(|n| n == note)
}

/// The rules that decided, in order.
fn rule_names(evaluation: Evaluation) -> Vec<String> {
    evaluation.decisions.into_iter().map(|d| d.rule).collect()
}

fn only_task(evaluation: &Evaluation) -> &TaskSpec {
    assert_eq!(evaluation.decisions.len(), 1, "{evaluation:#?}");
    match fired(&evaluation.decisions[0].outcome) {
        [effect] => created_task(effect),
        other => panic!("{other:?}"),
    }
}

fn catalog() -> FieldCatalog {
    FieldCatalog::from_deal_fields(&json!({
        "TITLE": {"type": "string", "title": "Name"},
        "OPPORTUNITY": {"type": "double", "title": "Amount"},
        "UF_CRM_INN": {"type": "string", "title": "UF_CRM_INN", "formLabel": "INN"},
        "UF_CRM_EVENT_DATE": {"type": "date", "title": "UF_CRM_EVENT_DATE", "formLabel": "Event date"},
        "UF_CRM_CALL_AT": {"type": "datetime", "title": "UF_CRM_CALL_AT"},
        "UF_CRM_BUDGET": {"type": "money", "title": "UF_CRM_BUDGET", "formLabel": "Budget"},
        "UF_CRM_SOURCE": {"type": "enumeration", "title": "UF_CRM_SOURCE", "formLabel": "Source",
            "items": [{"ID": "45", "VALUE": "Exhibition"}, {"ID": "46", "VALUE": "Referral"}]},
        "UF_CRM_LOSS_REASON": {"type": "enumeration", "title": "UF_CRM_LOSS_REASON", "formLabel": "Loss reason",
            "items": [{"ID": "61", "VALUE": "Too expensive"}, {"ID": "62", "VALUE": "Chose a competitor"}]}
    }))
}

const OFFER: &str = r#"
[[task]]
name = "offer"
pipeline = 1
stage = "C1:PREPARATION"
title = "Send the commercial offer: {TITLE}"
description = "Deal {DEAL_URL}, amount {OPPORTUNITY} {CURRENCY_ID}"
auditors = ["supervisor", 3]
deadline = { after = "2 workdays", time = "18:00" }
"#;

const CONTRACT: &str = r#"
pipeline = 1

[[require]]
name = "contract-details"
stage = "C1:PREPARATION"
fields = ["UF_CRM_INN", "OPPORTUNITY", "UF_CRM_BUDGET"]
message = "Fill in {MISSING} before moving the deal to this stage"

[[task]]
name = "offer"
stage = "C1:PREPARATION"
title = "Offer for {TITLE}"
deadline = { after = "1 day" }
"#;

const LOSS: &str = r#"
[[loss_reason]]
name = "loss-reason"
pipeline = 1
field = "UF_CRM_LOSS_REASON"
allowed = ["Too expensive", "Stopped answering"]

[loss_reason.review]
title = "Check why {TITLE} was lost: {UF_CRM_LOSS_REASON}"
responsible = "supervisor"
deadline = { after = "1 workday" }

[[task]]
name = "farewell"
pipeline = 1
stage = "lost"
title = "Say goodbye to {TITLE}"
deadline = { after = "1 hour" }
"#;

const WON: &str = r#"
[[nps]]
name = "nps"
title = "NPS: ask {TITLE}"
deadline = { after = "3 days" }
score_field = "UF_CRM_NPS"

[[tunnel]]
name = "repeat-sales"
pipeline = 1
to_pipeline = 2
to_stage = "C2:NEW"
copy = ["TITLE", "CONTACT_ID", "OPPORTUNITY"]
set = { TITLE = "Repeat sale: {TITLE}" }
"#;

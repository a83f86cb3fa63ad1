//! Behaviour of loading and evaluation, one test per behaviour, a file per topic; this file
//! holds what they share: loading a text, a deal and its stage entry, a run of the evaluator,
//! and the rule texts more than one topic reads.

mod conditions;
mod loading;
mod reverts;
mod tasks;
mod templates;
mod tunnels;

use chrono::{DateTime, FixedOffset};
use serde_json::json;

use super::*;
use crate::calendar::Calendar;

fn load(text: &str) -> RuleSet {
    match RuleSet::from_sources(&[("sales.toml".into(), text.into())]) {
        Ok((set, _)) => set,
        Err(errors) => panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn errors(text: &str) -> Vec<String> {
    match RuleSet::from_sources(&[("sales.toml".into(), text.into())]) {
        Ok(_) => panic!("loaded without errors"),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
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
}

impl Run {
    fn new(deal: Deal, entry: StageEntry) -> Run {
        Run {
            deal,
            entry,
            previous: Some("C1:NEW"),
            catalog: FieldCatalog::empty(),
            calendar: Calendar::default(),
        }
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
                max_tunnel_depth: 3,
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

fn only_task(evaluation: &Evaluation) -> &TaskSpec {
    assert_eq!(evaluation.decisions.len(), 1, "{evaluation:#?}");
    match &evaluation.decisions[0].outcome {
        Outcome::Fired(effects) => match effects.as_slice() {
            [Effect::CreateTask(task)] => task,
            other => panic!("{other:?}"),
        },
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

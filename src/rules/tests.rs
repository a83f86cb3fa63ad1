//! Behaviour of loading and evaluation, one test per behaviour.

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

// ---- [[task]] end to end ----

#[test]
fn a_task_rule_creates_a_task_with_rendered_texts_people_and_deadline() {
    let task = only_task(&preparation().evaluate(&load(OFFER))).clone();
    assert_eq!(
        task,
        TaskSpec {
            title: "Send the commercial offer: Acme".into(),
            description: Some(
                "Deal https://x.bitrix24.ru/crm/deal/details/42/, amount 150000.00 RUB".into()
            ),
            responsible: Person::User(7),
            auditors: vec![Person::SupervisorOf(7), Person::User(3)],
            // MOVED_TIME Friday 17:00 + 2 workdays = Tuesday 17:00, pinned to 18:00.
            deadline: Some(at("2026-01-20T18:00:00+03:00")),
        }
    );
}

#[test]
fn rules_of_other_stages_and_pipelines_make_no_decision() {
    let rules = load(OFFER);
    let mut run = preparation();
    run.entry = entry("C1:NEW", 1, StageSemantic::Process);
    assert!(run.evaluate(&rules).decisions.is_empty());
    run.entry = entry("PREPARATION", 0, StageSemantic::Process);
    assert!(run.evaluate(&rules).decisions.is_empty());
}

#[test]
fn the_deadline_counts_from_moved_time_not_from_the_entry() {
    let rules = load(&OFFER.replace(", time = \"18:00\"", ""));
    let task = only_task(&preparation().evaluate(&rules)).clone();
    assert_eq!(task.deadline, Some(at("2026-01-20T17:00:00+03:00")));
}

#[test]
fn without_moved_time_the_entry_time_is_the_base_and_a_note_says_so() {
    let rules = load(&OFFER.replace(
        "after = \"2 workdays\", time = \"18:00\"",
        "after = \"2 hours\"",
    ));
    let mut run = preparation();
    run.deal = deal(json!({"MOVED_TIME": null}));
    let evaluation = run.evaluate(&rules);
    assert_eq!(
        only_task(&evaluation).deadline,
        Some(at("2026-01-16T19:00:05+03:00"))
    );
    assert!(
        evaluation.decisions[0]
            .notes
            .contains(&"the deal has no MOVED_TIME: the stage entry's time is used".to_string())
    );
}

#[test]
fn an_empty_template_field_renders_as_nothing_with_a_note() {
    let rules = load(&OFFER.replace("{TITLE}", "{UF_CRM_NOTE}"));
    let evaluation = preparation().evaluate(&rules);
    assert_eq!(only_task(&evaluation).title, "Send the commercial offer: ");
    assert!(
        evaluation.decisions[0]
            .notes
            .contains(&"field UF_CRM_NOTE empty: rendered as nothing".to_string())
    );
}

#[test]
fn list_fields_render_labels_and_multiple_values_are_joined() {
    let rules = load(&OFFER.replace("{TITLE}", "{UF_CRM_SOURCE} / {UF_CRM_TAGS} / {{literal}}"));
    let mut run = preparation();
    run.catalog = catalog();
    run.deal = deal(json!({"UF_CRM_SOURCE": ["45", "46"], "UF_CRM_TAGS": ["a", "b"]}));
    assert_eq!(
        only_task(&run.evaluate(&rules)).title,
        "Send the commercial offer: Exhibition, Referral / a, b / {literal}"
    );
}

#[test]
fn money_fields_render_as_amount_and_currency() {
    let rules = load(&OFFER.replace("{TITLE}", "{UF_CRM_BUDGET}"));
    let mut run = preparation();
    run.catalog = catalog();
    run.deal = deal(json!({"UF_CRM_BUDGET": "500|RUB"}));
    assert_eq!(
        only_task(&run.evaluate(&rules)).title,
        "Send the commercial offer: 500 RUB"
    );
}

#[test]
fn a_deal_without_id_fails_the_task_rule() {
    let mut run = preparation();
    run.deal = deal(json!({"ID": null}));
    let evaluation = run.evaluate(&load(OFFER));
    assert_eq!(
        evaluation.decisions[0].outcome,
        Outcome::Failed("the deal has no ID: a task cannot be bound to it".into())
    );
}

// ---- people ----

#[test]
fn a_person_from_a_deal_field_is_that_user_or_unresolved_when_empty() {
    let rules = load(&OFFER.replace(
        "auditors = [\"supervisor\", 3]",
        "responsible = \"field:UF_CRM_MANAGER\"",
    ));
    let mut run = preparation();
    run.deal = deal(json!({"UF_CRM_MANAGER": "19"}));
    assert_eq!(
        only_task(&run.evaluate(&rules)).responsible,
        Person::User(19)
    );
    run.deal = deal(json!({"UF_CRM_MANAGER": ""}));
    assert_eq!(
        only_task(&run.evaluate(&rules)).responsible,
        Person::Unresolved("field UF_CRM_MANAGER is empty".into())
    );
}

#[test]
fn a_deal_without_assigned_user_leaves_assigned_and_supervisor_unresolved() {
    let mut run = preparation();
    run.deal = deal(json!({"ASSIGNED_BY_ID": null}));
    let task = only_task(&run.evaluate(&load(OFFER))).clone();
    assert_eq!(
        task.responsible,
        Person::Unresolved("the deal has no ASSIGNED_BY_ID".into())
    );
    assert_eq!(
        task.auditors[0],
        Person::Unresolved("the deal has no ASSIGNED_BY_ID, so no supervisor".into())
    );
}

// ---- deadlines ----

fn deadline_of(deadline: &str, run: &Run) -> (Option<DateTime<FixedOffset>>, Vec<String>) {
    let rules = load(&OFFER.replace("{ after = \"2 workdays\", time = \"18:00\" }", deadline));
    let evaluation = run.evaluate(&rules);
    (
        only_task(&evaluation).deadline,
        evaluation.decisions[0].notes.clone(),
    )
}

#[test]
fn days_keep_the_wall_clock_time() {
    assert_eq!(
        deadline_of("{ after = \"3 days\" }", &preparation()).0,
        Some(at("2026-01-19T17:00:00+03:00"))
    );
}

#[test]
fn a_date_field_means_the_end_of_working_hours_on_its_utc_day() {
    let mut run = preparation();
    run.catalog = catalog();
    // A date field: midnight UTC printed in the server's offset (+03:00 → 03:00 local).
    run.deal = deal(json!({"UF_CRM_EVENT_DATE": "2026-01-23T03:00:00+03:00"}));
    let (got, _) = deadline_of(
        "{ before = \"3 workdays\", field = \"UF_CRM_EVENT_DATE\" }",
        &run,
    );
    assert_eq!(got, Some(at("2026-01-20T18:00:00+03:00")));
    let (got, _) = deadline_of("{ after = \"1 day\", field = \"UF_CRM_EVENT_DATE\" }", &run);
    assert_eq!(got, Some(at("2026-01-24T18:00:00+03:00")));
}

#[test]
fn a_datetime_field_is_a_moment() {
    let mut run = preparation();
    run.catalog = catalog();
    run.deal = deal(json!({"UF_CRM_CALL_AT": "2026-01-21T12:30:00+03:00"}));
    let (got, _) = deadline_of("{ before = \"2 hours\", field = \"UF_CRM_CALL_AT\" }", &run);
    assert_eq!(got, Some(at("2026-01-21T10:30:00+03:00")));
}

#[test]
fn without_a_catalog_midnight_utc_is_read_as_a_date_with_a_note() {
    let mut run = preparation();
    run.deal = deal(json!({"UF_CRM_EVENT_DATE": "2026-01-23T03:00:00+03:00"}));
    let (got, notes) = deadline_of(
        "{ before = \"1 day\", field = \"UF_CRM_EVENT_DATE\" }",
        &run,
    );
    assert_eq!(got, Some(at("2026-01-22T18:00:00+03:00")));
    assert!(notes.contains(
        &"type of UF_CRM_EVENT_DATE unknown (no catalog): midnight UTC read as a date".to_string()
    ));
}

#[test]
fn an_empty_deadline_field_uses_the_fallback() {
    let (got, notes) = deadline_of(
        "{ before = \"3 days\", field = \"UF_CRM_EVENT_DATE\", fallback = { after = \"1 workday\" } }",
        &preparation(),
    );
    assert_eq!(got, Some(at("2026-01-19T17:00:00+03:00")));
    assert!(notes.contains(&"deadline field UF_CRM_EVENT_DATE empty: fallback used".to_string()));
}

#[test]
fn an_empty_deadline_field_without_fallback_gives_a_task_without_deadline() {
    let (got, notes) = deadline_of(
        "{ before = \"3 days\", field = \"UF_CRM_EVENT_DATE\" }",
        &preparation(),
    );
    assert_eq!(got, None);
    assert!(notes.contains(
        &"deadline field UF_CRM_EVENT_DATE empty, no fallback: task without deadline".to_string()
    ));
}

#[test]
fn a_fixed_deadline_is_read_in_the_calendar_zone() {
    let (got, _) = deadline_of("{ at = \"2026-12-31T18:00\" }", &preparation());
    assert_eq!(
        got.map(|d| d.to_rfc3339()),
        Some("2026-12-31T18:00:00+03:00".into())
    );
    let (got, _) = deadline_of("{ at = 2026-12-31T18:00:00+00:00 }", &preparation());
    assert_eq!(
        got.map(|d| d.to_rfc3339()),
        Some("2026-12-31T21:00:00+03:00".into())
    );
}

// ---- when ----

fn when_rules(when: &str) -> RuleSet {
    load(&OFFER.replace("deadline =", &format!("when = {when}\ndeadline =")))
}

fn fires(rules: &RuleSet, run: &Run) -> bool {
    matches!(run.evaluate(rules).decisions[0].outcome, Outcome::Fired(_))
}

#[test]
fn when_numbers_compare_numerically_against_bitrix_strings() {
    let run = preparation();
    assert!(fires(
        &when_rules("{ OPPORTUNITY = { gte = 100000 } }"),
        &run
    ));
    assert!(fires(&when_rules("{ OPPORTUNITY = 150000 }"), &run));
    assert!(!fires(
        &when_rules("{ OPPORTUNITY = { gt = 1.5e5, lt = 2e5 } }"),
        &run
    ));
    assert!(fires(
        &when_rules("{ OPPORTUNITY = { lte = 150000, ne = 0 } }"),
        &run
    ));
}

#[test]
fn when_false_skips_with_a_note_naming_the_condition() {
    let evaluation = preparation().evaluate(&when_rules(
        "{ TYPE_ID = \"SALE\", OPPORTUNITY = { gte = 200000 } }",
    ));
    let decision = &evaluation.decisions[0];
    assert_eq!(
        decision.outcome,
        Outcome::Skipped(SkipReason::ConditionFalse)
    );
    assert_eq!(
        decision.notes,
        vec!["condition not met: TYPE_ID = \"SALE\" (the deal has empty)".to_string()]
    );
}

#[test]
fn when_list_fields_compare_by_option_label() {
    let mut run = preparation();
    run.catalog = catalog();
    run.deal = deal(json!({"UF_CRM_SOURCE": "45"}));
    assert!(fires(
        &when_rules("{ UF_CRM_SOURCE = \"Exhibition\" }"),
        &run
    ));
    assert!(fires(
        &when_rules("{ UF_CRM_SOURCE = { in = [\"Referral\", \"Exhibition\"] } }"),
        &run
    ));
    assert!(!fires(
        &when_rules("{ UF_CRM_SOURCE = { not_in = [\"Exhibition\"] } }"),
        &run
    ));
    assert!(fires(
        &when_rules("{ UF_CRM_SOURCE = { ne = \"Referral\" } }"),
        &run
    ));
}

#[test]
fn when_empty_uses_the_meaning_of_missing() {
    let mut run = preparation();
    run.deal = deal(json!({"OPPORTUNITY": "0.00", "UF_CRM_INN": "7701"}));
    assert!(fires(
        &when_rules("{ OPPORTUNITY = { empty = true }, UF_CRM_INN = { empty = false } }"),
        &run
    ));
}

// ---- require and revert ----

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

#[test]
fn missing_required_fields_revert_and_skip_the_other_rules() {
    let mut run = preparation();
    run.catalog = catalog();
    run.deal = deal(json!({"OPPORTUNITY": "0.00", "UF_CRM_BUDGET": "0|RUB", "UF_CRM_INN": ""}));
    let evaluation = run.evaluate(&load(CONTRACT));
    let text = "Fill in INN, Amount, Budget before moving the deal to this stage. The deal was moved back to C1:NEW.";
    assert_eq!(
        evaluation.decisions[0].outcome,
        Outcome::Fired(vec![
            Effect::MoveBack {
                to_stage: "C1:NEW".into()
            },
            Effect::AddComment { text: text.into() },
            Effect::Notify {
                user: Person::User(7),
                message: format!(
                    "Deal \"Acme\" https://x.bitrix24.ru/crm/deal/details/42/: {text}"
                ),
            },
        ])
    );
    assert_eq!(evaluation.decisions[1].rule, "offer");
    assert_eq!(
        evaluation.decisions[1].outcome,
        Outcome::Skipped(SkipReason::Reverted {
            by: "contract-details".into()
        })
    );
}

#[test]
fn revert_without_a_previous_stage_acts_as_warn_and_says_why() {
    let mut run = preparation();
    run.previous = None;
    run.deal = deal(json!({"UF_CRM_BUDGET": "100|RUB"}));
    let evaluation = run.evaluate(&load(CONTRACT));
    let gate = &evaluation.decisions[0];
    let Outcome::Fired(effects) = &gate.outcome else {
        panic!()
    };
    assert_eq!(
        effects[0],
        Effect::AddComment {
            text: "Fill in UF_CRM_INN before moving the deal to this stage".into()
        }
    );
    assert!(
        gate.notes
            .iter()
            .any(|n| n.starts_with("revert acts as warn: "))
    );
    assert!(
        gate.notes
            .contains(&"no field catalog: fields are named by their codes".to_string())
    );
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

#[test]
fn warn_comments_and_notifies_but_lets_other_rules_fire() {
    let rules = load(&CONTRACT.replace("fields = [", "on_missing = \"warn\"\nfields = ["));
    let evaluation = preparation().evaluate(&rules);
    let Outcome::Fired(effects) = &evaluation.decisions[0].outcome else {
        panic!()
    };
    assert_eq!(effects.len(), 2);
    assert!(matches!(
        effects[1],
        Effect::Notify {
            user: Person::User(7),
            ..
        }
    ));
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

#[test]
fn filled_required_fields_let_every_rule_fire() {
    let mut run = preparation();
    run.deal = deal(json!({"UF_CRM_INN": "7701", "UF_CRM_BUDGET": "100|RUB"}));
    let evaluation = run.evaluate(&load(CONTRACT));
    assert_eq!(evaluation.decisions[0].outcome, Outcome::Fired(vec![]));
    assert_eq!(
        evaluation.decisions[0].notes,
        vec!["all required fields are filled".to_string()]
    );
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

// ---- loss_reason ----

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

fn lost(reason: serde_json::Value) -> Run {
    let mut run = Run::new(
        deal(json!({"UF_CRM_LOSS_REASON": reason})),
        entry("C1:APOLOGY", 1, StageSemantic::Failure),
    );
    run.catalog = catalog();
    run.previous = Some("C1:EXECUTING");
    run
}

#[test]
fn an_allowed_loss_reason_creates_the_review_task() {
    let evaluation = lost(json!("61")).evaluate(&load(LOSS));
    let Outcome::Fired(effects) = &evaluation.decisions[0].outcome else {
        panic!()
    };
    let Effect::CreateTask(task) = &effects[0] else {
        panic!()
    };
    assert_eq!(task.title, "Check why Acme was lost: Too expensive");
    assert_eq!(task.responsible, Person::SupervisorOf(7));
    assert_eq!(task.deadline, Some(at("2026-01-19T17:00:00+03:00")));
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

#[test]
fn a_loss_reason_not_allowed_reverts_like_a_missing_one() {
    let evaluation = lost(json!("62")).evaluate(&load(LOSS));
    let Outcome::Fired(effects) = &evaluation.decisions[0].outcome else {
        panic!()
    };
    assert_eq!(
        effects[0],
        Effect::MoveBack {
            to_stage: "C1:EXECUTING".into()
        }
    );
    assert_eq!(
        effects[1],
        Effect::AddComment {
            text: "Give the reason (Loss reason) the deal was lost. \"Chose a competitor\" is not an accepted reason (accepted: Too expensive, Stopped answering). The deal was moved back to C1:EXECUTING.".into()
        }
    );
    assert_eq!(
        evaluation.decisions[1].outcome,
        Outcome::Skipped(SkipReason::Reverted {
            by: "loss-reason".into()
        })
    );
}

#[test]
fn a_missing_loss_reason_reverts() {
    let evaluation = lost(json!(null)).evaluate(&load(LOSS));
    let Outcome::Fired(effects) = &evaluation.decisions[0].outcome else {
        panic!()
    };
    assert_eq!(
        effects[0],
        Effect::MoveBack {
            to_stage: "C1:EXECUTING".into()
        }
    );
}

// ---- nps and tunnel ----

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

#[test]
fn a_win_creates_the_nps_task_and_copies_the_deal() {
    let run = Run::new(
        deal(json!({"CONTACT_ID": "5"})),
        entry("C1:WON", 1, StageSemantic::Success),
    );
    let evaluation = run.evaluate(&load(WON));
    assert_eq!(evaluation.decisions.len(), 2);
    let Outcome::Fired(effects) = &evaluation.decisions[0].outcome else {
        panic!()
    };
    let Effect::CreateTask(task) = &effects[0] else {
        panic!()
    };
    assert_eq!(task.title, "NPS: ask Acme");
    let Outcome::Fired(effects) = &evaluation.decisions[1].outcome else {
        panic!()
    };
    assert_eq!(
        effects[0],
        Effect::CopyDeal(CopySpec {
            to_pipeline: 2,
            to_stage: "C2:NEW".into(),
            fields:
                json!({"TITLE": "Repeat sale: Acme", "CONTACT_ID": "5", "OPPORTUNITY": "150000.00"})
                    .as_object()
                    .unwrap()
                    .clone(),
            responsible: Person::User(7),
            depth: 1,
        })
    );
}

#[test]
fn nps_without_pipeline_fires_in_every_pipeline_but_not_on_process_stages() {
    let rules = load(WON);
    let run = Run::new(deal(json!({})), entry("WON", 0, StageSemantic::Success));
    let names: Vec<String> = run
        .evaluate(&rules)
        .decisions
        .into_iter()
        .map(|d| d.rule)
        .collect();
    assert_eq!(names, vec!["nps"]);
    assert!(preparation().evaluate(&rules).decisions.is_empty());
}

// ---- the rule set ----

#[test]
fn referenced_fields_lists_every_field_the_rules_name() {
    let rules = load(&format!(
        "{CONTRACT}\n{}",
        LOSS.replace("pipeline = 1\n", "")
    ));
    assert_eq!(
        rules.referenced_fields(),
        vec![
            "OPPORTUNITY",
            "TITLE",
            "UF_CRM_BUDGET",
            "UF_CRM_INN",
            "UF_CRM_LOSS_REASON"
        ]
    );
}

#[test]
fn the_version_is_a_stable_hash_of_names_and_contents() {
    let a = RuleSet::from_sources(&[("a.toml".into(), OFFER.into())])
        .unwrap()
        .0;
    let b = RuleSet::from_sources(&[("b.toml".into(), OFFER.into())])
        .unwrap()
        .0;
    assert_eq!(
        a.version(),
        RuleSet::from_sources(&[("a.toml".into(), OFFER.into())])
            .unwrap()
            .0
            .version()
    );
    assert_ne!(a.version(), b.version());
    assert_eq!(a.version().len(), 16);
}

#[test]
fn an_empty_rules_folder_loads_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/x.toml"), "not = [toml").unwrap();
    let (set, warnings) = RuleSet::load_dir(dir.path()).unwrap();
    assert!(set.is_empty());
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].severity, Severity::Warning);
    assert!(
        warnings[0]
            .to_string()
            .ends_with(": no *.toml rule files: no rule will fire")
    );
}

#[test]
fn a_folder_is_loaded_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.toml"), OFFER).unwrap();
    std::fs::write(dir.path().join("a.toml"), WON).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let (set, warnings) = RuleSet::load_dir(dir.path()).unwrap();
    assert!(warnings.is_empty());
    let names: Vec<&str> = set.rules().iter().map(Rule::name).collect();
    assert_eq!(names, vec!["nps", "repeat-sales", "offer"]);
    assert_eq!(set.len(), 3);
}

#[test]
fn decisions_and_effects_round_trip_through_serde() {
    let evaluation = preparation().evaluate(&load(OFFER));
    let text = serde_json::to_string(&evaluation).unwrap();
    assert_eq!(
        serde_json::from_str::<Evaluation>(&text).unwrap(),
        evaluation
    );
}

// ---- load errors ----

#[test]
fn toml_syntax_errors_are_reported_with_position() {
    let errs = errors("[[task]]\nname = \"a\nstage = 1\n");
    assert_eq!(
        errs[0],
        "sales.toml:2:10: TOML syntax error: invalid basic string, expected `\"`"
    );
}

#[test]
fn misspelt_key_is_reported_with_suggestion() {
    let errs = errors(&OFFER.replace("title =", "titel ="));
    assert_eq!(
        errs,
        vec![
            "sales.toml:6:1: rule \"offer\": unknown key \"titel\" in [[task]] (did you mean \"title\"?)",
            "sales.toml:2:1: rule \"offer\": [[task]] without \"title\" (add title = \"...\", a template such as \"Call {TITLE}\")",
        ]
    );
}

#[test]
fn unknown_top_level_key_is_reported_without_rule() {
    let errs = errors(&format!("pipline = 1\n{OFFER}"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:1:1: unknown key \"pipline\" at the top level of a rule file (did you mean \"pipeline\"?)"
        ]
    );
}

#[test]
fn bad_names_are_reported_with_a_fixed_spelling() {
    let errs = errors(&OFFER.replace("name = \"offer\"", "name = \"Send Offer\""));
    assert_eq!(
        errs,
        vec![
            "sales.toml:3:8: rule \"Send Offer\": bad rule name \"Send Offer\" (use lower-case letters, digits, \"-\" and \"_\", as in \"send-offer\")"
        ]
    );
    let long = "a".repeat(65);
    let errs = errors(&OFFER.replace("name = \"offer\"", &format!("name = \"{long}\"")));
    assert_eq!(
        errs,
        vec![format!(
            "sales.toml:3:8: rule \"{long}\": name is 65 characters long (at most 64)"
        )]
    );
}

#[test]
fn duplicate_names_are_reported_at_the_second_with_the_first_location() {
    let result = RuleSet::from_sources(&[
        ("a.toml".into(), OFFER.into()),
        ("b.toml".into(), OFFER.into()),
    ]);
    let errs: Vec<String> = result.unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        errs,
        vec![
            "b.toml:3:8: rule \"offer\": duplicate rule name, first defined at a.toml:3 (rule names are unique across all files: rename one of them)"
        ]
    );
}

#[test]
fn a_stage_of_another_pipeline_suggests_the_pipeline() {
    let errs = errors(&OFFER.replace("pipeline = 1", "pipeline = 2"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:5:9: rule \"offer\": stage \"C1:PREPARATION\" is in pipeline 1, but the rule's pipeline is 2 (set pipeline = 1, or write \"C2:PREPARATION\")"
        ]
    );
}

#[test]
fn a_stage_id_without_pipeline_is_an_error() {
    let errs = errors(&OFFER.replace("pipeline = 1\n", ""));
    assert_eq!(
        errs,
        vec![
            "sales.toml:4:9: rule \"offer\": stage \"C1:PREPARATION\" needs a pipeline (add pipeline = 1)"
        ]
    );
    let errs = errors(
        &OFFER
            .replace("pipeline = 1\n", "")
            .replace("C1:PREPARATION", "PREPARATION"),
    );
    assert_eq!(
        errs,
        vec![
            "sales.toml:4:9: rule \"offer\": stage \"PREPARATION\" needs a pipeline (add pipeline = 0 for the default pipeline, or write \"C<N>:PREPARATION\" with pipeline = N)"
        ]
    );
}

#[test]
fn a_default_pipeline_stage_in_another_pipeline_is_an_error() {
    let errs = errors(&OFFER.replace("C1:PREPARATION", "PREPARATION"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:5:9: rule \"offer\": stage \"PREPARATION\" is in the default pipeline 0, but the rule's pipeline is 1 (set pipeline = 0, or write \"C1:PREPARATION\")"
        ]
    );
}

#[test]
fn a_missing_stage_and_a_missing_deadline_are_errors_at_the_rule() {
    let errs = errors("[[task]]\nname = \"t\"\npipeline = 0\ntitle = \"x\"\n");
    assert_eq!(
        errs,
        vec![
            "sales.toml:1:1: rule \"t\": [[task]] without a \"stage\" (add stage = \"PREPARATION\" (a STAGE_ID), \"won\" or \"lost\")",
            "sales.toml:1:1: rule \"t\": [[task]] without \"deadline\" (a task needs a deadline: add deadline = { after = \"1 workday\" })",
        ]
    );
}

#[test]
fn bad_durations_are_reported_at_the_value() {
    let errs = errors(&OFFER.replace("2 workdays", "2 weeks"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:9:22: rule \"offer\": bad duration \"2 weeks\": unknown unit \"weeks\" (use minute(s), hour(s), day(s) or workday(s))"
        ]
    );
}

#[test]
fn bad_people_are_reported_with_the_forms_allowed() {
    let errs = errors(&OFFER.replace("[\"supervisor\", 3]", "[\"supervsor\", \"3\", \"boss\"]"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:8:13: rule \"offer\": unknown person \"supervsor\" (did you mean \"supervisor\"?)",
            "sales.toml:8:26: rule \"offer\": user id \"3\" is written as a string (write 3, without quotes, as in auditors = [3])",
            "sales.toml:8:31: rule \"offer\": unknown person \"boss\" (use \"assigned\", \"supervisor\", a user id such as 17, or \"field:UF_CRM_X\")",
        ]
    );
}

#[test]
fn bad_templates_are_reported_at_the_brace() {
    let errs = errors(&OFFER.replace("{TITLE}\"", "{TITLE\""));
    assert_eq!(
        errs,
        vec![
            "sales.toml:6:37: rule \"offer\": unclosed \"{\" in template (close it as in \"{TITLE}\", or write \"{{\" for a literal brace)"
        ]
    );
    let errs = errors(&OFFER.replace("amount {OPPORTUNITY}", "amount }"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:7:40: rule \"offer\": lone \"}\" in template (write \"}}\" for a literal brace)"
        ]
    );
}

#[test]
fn wrong_types_are_reported_with_how_to_write_it() {
    let errs = errors(
        &OFFER
            .replace("pipeline = 1", "pipeline = \"1\"")
            .replace("deadline = {", "xdeadline = {"),
    );
    assert_eq!(
        errs,
        vec![
            "sales.toml:9:1: rule \"offer\": unknown key \"xdeadline\" in [[task]] (did you mean \"deadline\"?)",
            "sales.toml:4:12: rule \"offer\": \"pipeline\" must be an integer, found a string (write pipeline = 1, without quotes)",
            "sales.toml:2:1: rule \"offer\": [[task]] without \"deadline\" (a task needs a deadline: add deadline = { after = \"1 workday\" })",
        ]
    );
}

#[test]
fn a_deadline_written_as_a_string_suggests_the_table() {
    let errs = errors(&OFFER.replace(
        "{ after = \"2 workdays\", time = \"18:00\" }",
        "\"2 workdays\"",
    ));
    assert_eq!(
        errs,
        vec![
            "sales.toml:9:12: rule \"offer\": \"deadline\" must be a table, found a string (write deadline = { after = \"2 workdays\" })"
        ]
    );
}

#[test]
fn nps_and_loss_reason_take_no_stage() {
    let errs = errors(
        "[[nps]]\nname = \"n\"\nstage = \"won\"\ntitle = \"x\"\ndeadline = { after = \"1 day\" }\n",
    );
    assert_eq!(
        errs,
        vec![
            "sales.toml:3:1: rule \"n\": [[nps]] takes no \"stage\" (remove it: the rule fires on entering a success stage of its pipeline)"
        ]
    );
}

#[test]
fn bad_when_operators_are_reported_with_suggestion() {
    let errs = errors(&OFFER.replace(
        "deadline =",
        "when = { OPPORTUNITY = { gtee = 5 }, TYPE_ID = [\"A\"] }\ndeadline =",
    ));
    assert_eq!(
        errs,
        vec![
            "sales.toml:9:26: rule \"offer\": unknown operator \"gtee\" (did you mean \"gte\"?)",
            "sales.toml:9:48: rule \"offer\": a list of values for TYPE_ID is ambiguous (write { in = [...] } for any of them)",
        ]
    );
}

#[test]
fn tunnel_target_stage_must_match_to_pipeline() {
    let errs = errors(&WON.replace("to_pipeline = 2", "to_pipeline = 3"));
    assert_eq!(
        errs,
        vec![
            "sales.toml:12:12: rule \"repeat-sales\": stage \"C2:NEW\" is in pipeline 2, but to_pipeline is 3 (set to_pipeline = 2, or write \"C3:NEW\")"
        ]
    );
}

#[test]
fn every_problem_of_every_file_is_reported_at_once() {
    let result = RuleSet::from_sources(&[
        ("a.toml".into(), OFFER.replace("title =", "titel =")),
        ("b.toml".into(), WON.replace("3 days", "3 dayz")),
        ("c.toml".into(), "x = ".into()),
    ]);
    let errs = result.unwrap_err();
    let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "a.toml:6:1: rule \"offer\": unknown key \"titel\" in [[task]] (did you mean \"title\"?)",
            "a.toml:2:1: rule \"offer\": [[task]] without \"title\" (add title = \"...\", a template such as \"Call {TITLE}\")",
            "b.toml:5:22: rule \"nps\": bad duration \"3 dayz\": unknown unit \"dayz\" (did you mean \"3 days\"?)",
            "c.toml:1:5: TOML syntax error: string values must be quoted, expected literal string",
            "c.toml:1:1: unknown key \"x\" at the top level of a rule file (allowed keys: pipeline, task, require, loss_reason, nps, tunnel)",
        ]
    );
}

#[test]
fn a_review_without_deadline_is_reported_at_its_section() {
    let errs = errors(&LOSS.replace(
        "deadline = { after = \"1 workday\" }\n\n[[task]]",
        "\n[[task]]",
    ));
    assert_eq!(
        errs,
        vec![
            "sales.toml:8:1: rule \"loss-reason\": [loss_reason.review] without \"deadline\" (a task needs a deadline: add deadline = { after = \"1 workday\" })"
        ]
    );
}

#[test]
fn deadline_forms_are_checked() {
    let errs = errors(&OFFER.replace(
        "{ after = \"2 workdays\", time = \"18:00\" }",
        "{ before = \"1 day\", fallback = { after = \"1 day\" }, time = \"6pm\" }",
    ));
    assert_eq!(
        errs,
        vec![
            "sales.toml:9:23: rule \"offer\": deadline \"before\" needs a \"field\" (add field = \"UF_CRM_EVENT_DATE\": the date it counts back from)",
            "sales.toml:9:71: rule \"offer\": bad time of day \"6pm\" (write \"HH:MM\", as in time = \"18:00\")",
            "sales.toml:9:32: rule \"offer\": \"fallback\" is only used when a deadline's field is empty (remove it, or add field = \"...\")",
        ]
    );
    let errs = errors(&OFFER.replace("time = \"18:00\"", "before = \"1 day\""));
    assert_eq!(
        errs,
        vec![
            "sales.toml:9:36: rule \"offer\": deadline has both \"after\" and \"before\" (keep one of them)"
        ]
    );
}

#[test]
fn a_tunnel_fires_on_won_by_default_and_on_lost_when_asked() {
    let won = load(WON);
    let lost_entry = entry("C1:LOSE", 1, StageSemantic::Failure);
    let run = Run::new(deal(json!({})), lost_entry.clone());
    assert!(run.evaluate(&won).decisions.is_empty());
    let lost = load(&WON.replace("to_pipeline = 2", "stage = \"lost\"\nto_pipeline = 2"));
    let names: Vec<String> = run
        .evaluate(&lost)
        .decisions
        .into_iter()
        .map(|d| d.rule)
        .collect();
    assert_eq!(names, vec!["repeat-sales"]);
}

#[test]
fn several_reverting_rules_move_the_deal_back_once() {
    let text = format!(
        "{CONTRACT}\n[[require]]\nname = \"inn-again\"\nstage = \"C1:PREPARATION\"\nfields = [\"UF_CRM_INN\"]\n"
    );
    let evaluation = preparation().evaluate(&load(&text));
    let moves = evaluation
        .effects()
        .filter(|(_, e)| matches!(e, Effect::MoveBack { .. }))
        .count();
    assert_eq!(moves, 1);
    assert_eq!(evaluation.decisions[1].rule, "inn-again");
    assert!(
        evaluation.decisions[1]
            .notes
            .contains(&"the deal is already moved back by rule \"contract-details\"".to_string())
    );
}

#[test]
fn a_file_without_rules_loads_with_a_warning() {
    let (set, warnings) = RuleSet::from_sources(&[
        ("a.toml".into(), OFFER.into()),
        ("b.toml".into(), "pipeline = 1\n".into()),
    ])
    .unwrap();
    assert_eq!(set.len(), 1);
    let shown: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "b.toml: the file defines no rules (add [[task]], [[require]], [[loss_reason]], [[nps]] or [[tunnel]] sections, or remove the file)"
        ]
    );
}

// ---- tunnels that feed themselves (issue 8, item 4) ----

const SELF_FEEDING: &str = r#"
[[tunnel]]
name = "x"
pipeline = 1
stage = "C1:NEW"
to_pipeline = 1
to_stage = "C1:NEW"
"#;

#[test]
fn a_tunnel_whose_copy_enters_its_own_stage_is_refused_as_a_cycle() {
    assert_eq!(
        errors(SELF_FEEDING),
        vec![
            "sales.toml:7:12: rule \"x\": tunnel cycle: x (C1:NEW → C1:NEW), whose copy fires x again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)"
        ]
    );
}

#[test]
fn a_chain_of_tunnels_back_to_the_first_is_refused_naming_every_step() {
    let chain = r#"
[[tunnel]]
name = "a"
pipeline = 0
stage = "won"
to_pipeline = 1
to_stage = "C1:NEW"

[[tunnel]]
name = "b"
pipeline = 1
stage = "C1:NEW"
to_pipeline = 2
to_stage = "C2:NEW"

[[tunnel]]
name = "c"
pipeline = 2
stage = "C2:NEW"
to_pipeline = 0
to_stage = "WON"
"#;
    assert_eq!(
        errors(chain),
        vec![
            "sales.toml:7:12: rule \"a\": tunnel cycle: a (won in pipeline 0 → C1:NEW), whose copy fires b (C1:NEW → C2:NEW), whose copy fires c (C2:NEW → WON), whose copy fires a again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)"
        ]
    );
}

#[test]
fn a_tunnel_of_every_pipeline_on_won_is_fed_by_a_copy_into_a_won_stage() {
    let any = "[[tunnel]]\nname = \"t\"\nstage = \"won\"\nto_pipeline = 2\nto_stage = \"C2:WON\"\n";
    assert_eq!(
        errors(any),
        vec![
            "sales.toml:5:12: rule \"t\": tunnel cycle: t (won in any pipeline → C2:WON), whose copy fires t again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)"
        ]
    );
    // Into a process stage, the same tunnel is no cycle; nor is the shipped won → C1:NEW.
    load(&any.replace("C2:WON", "C2:NEW"));
    load(WON);
}

#[test]
fn a_tunnel_into_a_custom_stage_that_may_be_a_failure_stage_loads_with_a_warning() {
    let text = "[[tunnel]]\nname = \"archive\"\nstage = \"lost\"\nto_pipeline = 2\nto_stage = \"C2:UC_ARCHIVE\"\n";
    let (set, warnings) =
        RuleSet::from_sources(&[("sales.toml".into(), text.into())]).expect("loads");
    assert_eq!(set.len(), 1);
    let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "sales.toml:5:12: rule \"archive\": possible tunnel cycle: archive (lost in any pipeline → C2:UC_ARCHIVE), whose copy fires archive again, if C2:UC_ARCHIVE is a failure stage (only the portal knows: b24-robot check --portal tells; at run time a chain stops after rules.max_tunnel_depth copies)"
        ]
    );
}

#[test]
fn a_tunnel_writing_what_bitrix24_or_the_tunnel_itself_sets_is_an_error() {
    let text = r#"
[[tunnel]]
name = "t"
pipeline = 0
to_pipeline = 1
to_stage = "C1:NEW"
copy = ["TITLE", "ID", "STAGE_ID", "DATE_CREATE"]
set = { CATEGORY_ID = "2", ORIGIN_ID = "{ID}", COMMENTS = "Copy of {ID}" }
"#;
    assert_eq!(
        errors(text),
        vec![
            "sales.toml:7:18: rule \"t\": copy names ID, which a tunnel cannot write (Bitrix24 gives the copy its own ID: remove it)",
            "sales.toml:7:24: rule \"t\": copy names STAGE_ID, which a tunnel cannot write (the copy enters to_stage: remove it, and set to_stage instead)",
            "sales.toml:7:36: rule \"t\": copy names DATE_CREATE, which a tunnel cannot write (a read-only field of crm.deal.fields: Bitrix24 fills it in itself; remove it)",
            "sales.toml:8:9: rule \"t\": set names CATEGORY_ID, which a tunnel cannot write (the copy goes into to_pipeline: remove it, and set to_pipeline instead)",
            "sales.toml:8:28: rule \"t\": set names ORIGIN_ID, which a tunnel cannot write (the service writes it to find the copy again: remove it)",
        ]
    );
}

// ---- reverts never cross pipelines (issue 8, item 5) ----

#[test]
fn a_revert_to_a_stage_of_another_pipeline_acts_as_warn_and_says_why() {
    let mut run = preparation();
    run.previous = Some("NEW");
    let evaluation = run.evaluate(&load(CONTRACT));
    let gate = &evaluation.decisions[0];
    let Outcome::Fired(effects) = &gate.outcome else {
        panic!("{gate:?}")
    };
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::MoveBack { .. })),
        "{effects:?}"
    );
    assert!(
        gate.notes.contains(
            &"revert acts as warn: the previous stage NEW is in pipeline 0, not in the deal's pipeline 1 (a deal is never moved across pipelines)".to_string()
        ),
        "{:?}",
        gate.notes
    );
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

// ---- bounded templates (issue 8, item 12) ----

#[test]
fn a_template_over_8_kib_or_with_too_many_placeholders_is_refused() {
    let long = OFFER.replace(
        "title = \"Send the commercial offer: {TITLE}\"",
        &format!("title = \"{}\"", "{TITLE}".repeat(1200)),
    );
    assert_eq!(
        errors(&long),
        vec![
            "sales.toml:6:9: rule \"offer\": template of 8400 bytes (at most 8192 bytes (8 KiB) of template text: shorten it)"
        ]
    );
    let many = OFFER.replace(
        "title = \"Send the commercial offer: {TITLE}\"",
        &format!("title = \"{}\"", "{ID} ".repeat(65)),
    );
    assert_eq!(
        errors(&many),
        vec![
            "sales.toml:6:9: rule \"offer\": template with 65 placeholders (at most 64 in one template: split the text, or write fewer fields)"
        ]
    );
}

#[test]
fn a_rendered_task_title_is_cut_to_255_characters_with_a_mark() {
    let mut run = preparation();
    run.deal = deal(json!({"TITLE": "Ж".repeat(10_000)}));
    let task = only_task(&run.evaluate(&load(OFFER))).clone();
    assert_eq!(task.title.chars().count(), 255);
    assert!(task.title.starts_with("Send the commercial offer: ЖЖЖ"));
    assert!(task.title.ends_with('…'), "{}", task.title);
    let description = task.description.expect("a description");
    assert!(description.len() <= 64 * 1024);
}

#[test]
fn a_huge_deal_value_renders_within_the_caps_and_is_kept_cut_in_the_records() {
    let rules = load(&format!(
        "{WON}\n[[task]]\nname = \"big\"\npipeline = 1\nstage = \"C1:WON\"\ntitle = \"x\"\ndescription = \"{}\"\ndeadline = {{ after = \"1 day\" }}\n",
        "{COMMENTS}".repeat(64)
    ));
    let huge = "y".repeat(1024 * 1024);
    let run = Run::new(
        deal(json!({"COMMENTS": huge.clone(), "CONTACT_ID": huge})),
        entry("C1:WON", 1, StageSemantic::Success),
    );
    let evaluation = run.evaluate(&rules);
    let stored = serde_json::to_string(&evaluation).expect("serializes");
    assert!(
        stored.len() < 512 * 1024,
        "the decision log keeps {} bytes",
        stored.len()
    );
    let copy = evaluation
        .effects()
        .find_map(|(_, e)| match e {
            Effect::CopyDeal(copy) => Some(copy.clone()),
            _ => None,
        })
        .expect("a copy");
    let contact = copy.fields["CONTACT_ID"].as_str().expect("a string");
    assert_eq!(contact.len(), 64 * 1024);
    assert!(contact.ends_with('…'));
}

// ---- copies of copies at run time (issue 8, item 4) ----

fn copy_decision(origin_id: &str, max_tunnel_depth: u32) -> Evaluation {
    let run = Run::new(
        deal(json!({"ORIGINATOR_ID": "b24-robot", "ORIGIN_ID": origin_id})),
        entry("C1:WON", 1, StageSemantic::Success),
    );
    evaluate(
        &load(WON),
        &Input {
            deal: &run.deal,
            entry: &run.entry,
            previous_stage: run.previous,
            catalog: &run.catalog,
            calendar: &run.calendar,
            portal_origin: "https://x.bitrix24.ru",
            max_tunnel_depth,
        },
    )
}

fn tunnel_outcome(evaluation: &Evaluation) -> &Outcome {
    &evaluation
        .decisions
        .iter()
        .find(|d| d.rule == "repeat-sales")
        .expect("the tunnel decided")
        .outcome
}

#[test]
fn a_copy_never_fires_the_tunnel_that_made_it() {
    let evaluation = copy_decision("5:100:repeat-sales:0", 3);
    assert_eq!(
        tunnel_outcome(&evaluation),
        &Outcome::Skipped(SkipReason::OwnCopy { origin: 5 })
    );
    assert!(evaluation.chains_stopped.is_empty());
}

#[test]
fn a_copy_made_by_another_tunnel_is_copied_one_level_deeper() {
    // An ORIGIN_ID without a depth (every copy of an older release): depth 1.
    let evaluation = copy_decision("5:100:to-pipeline-1:0", 3);
    let Outcome::Fired(effects) = tunnel_outcome(&evaluation) else {
        panic!("{evaluation:#?}")
    };
    assert!(matches!(&effects[0], Effect::CopyDeal(copy) if copy.depth == 2));
    // Another originator's ORIGIN_ID is not ours: a first copy.
    let run = Run::new(
        deal(json!({"ORIGINATOR_ID": "crm-import", "ORIGIN_ID": "5:100:x:0:3"})),
        entry("C1:WON", 1, StageSemantic::Success),
    );
    let evaluation = run.evaluate(&load(WON));
    let Outcome::Fired(effects) = tunnel_outcome(&evaluation) else {
        panic!("{evaluation:#?}")
    };
    assert!(matches!(&effects[0], Effect::CopyDeal(copy) if copy.depth == 1));
}

#[test]
fn a_chain_of_copies_deeper_than_the_limit_stops_with_a_failed_decision() {
    let evaluation = copy_decision("5:100:to-pipeline-1:0:3", 3);
    assert_eq!(
        tunnel_outcome(&evaluation),
        &Outcome::Failed(
            "tunnel chain deeper than 3: deal 42 is already copy 3 in a chain of tunnel copies (made by rule \"to-pipeline-1\" from deal 5), so it is not copied again".into()
        )
    );
    assert_eq!(evaluation.chains_stopped, vec!["repeat-sales".to_string()]);
    // The limit is the config's: with 4, the same deal is copied (as copy 4).
    let evaluation = copy_decision("5:100:to-pipeline-1:0:3", 4);
    assert!(matches!(tunnel_outcome(&evaluation), Outcome::Fired(_)));
}

#[test]
fn a_copy_decided_by_an_older_release_reads_as_depth_1() {
    let old = r#"{"rule": "t", "kind": "tunnel", "notes": [], "outcome": {"Fired": [{"CopyDeal":
        {"to_pipeline": 2, "to_stage": "C2:NEW", "fields": {}, "responsible": {"User": 3}}}]}}"#;
    let decision: Decision = serde_json::from_str(old).expect("an old decision reads");
    let Outcome::Fired(effects) = decision.outcome else {
        panic!()
    };
    assert!(matches!(&effects[0], Effect::CopyDeal(copy) if copy.depth == 1));
}

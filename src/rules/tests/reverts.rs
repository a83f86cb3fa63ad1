//! `[[require]]` and `[[loss_reason]]`: what reverting (or warning) does, and what it never
//! does (cross pipelines, move a deal back twice).

use serde_json::json;

use super::*;

// ---- require and revert ----

#[test]
fn missing_required_fields_revert_and_skip_the_other_rules() {
    let run = preparation()
        .with_catalog()
        .with_deal(json!({"OPPORTUNITY": "0.00", "UF_CRM_BUDGET": "0|RUB", "UF_CRM_INN": ""}));
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
    let effects = fired(&gate.outcome);
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
    assert!(noted(
        gate,
        "no field catalog: fields are named by their codes"
    ));
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

#[test]
fn warn_comments_and_notifies_but_lets_other_rules_fire() {
    let rules = load(&CONTRACT.replace("fields = [", "on_missing = \"warn\"\nfields = ["));
    let evaluation = preparation().evaluate(&rules);
    let effects = fired(&evaluation.decisions[0].outcome);
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
    let run = preparation().with_deal(json!({"UF_CRM_INN": "7701", "UF_CRM_BUDGET": "100|RUB"}));
    let evaluation = run.evaluate(&load(CONTRACT));
    assert_eq!(evaluation.decisions[0].outcome, Outcome::Fired(vec![]));
    assert_eq!(
        evaluation.decisions[0].notes,
        vec!["all required fields are filled".to_string()]
    );
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

// ---- loss_reason ----

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
    let effects = fired(&evaluation.decisions[0].outcome);
    let task = created_task(&effects[0]);
    assert_eq!(task.title, "Check why Acme was lost: Too expensive");
    assert_eq!(task.responsible, Person::SupervisorOf(7));
    assert_eq!(task.deadline, Some(at("2026-01-19T17:00:00+03:00")));
    assert!(matches!(evaluation.decisions[1].outcome, Outcome::Fired(_)));
}

#[test]
fn a_loss_reason_not_allowed_reverts_like_a_missing_one() {
    let evaluation = lost(json!("62")).evaluate(&load(LOSS));
    let effects = fired(&evaluation.decisions[0].outcome);
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
    let effects = fired(&evaluation.decisions[0].outcome);
    assert_eq!(
        effects[0],
        Effect::MoveBack {
            to_stage: "C1:EXECUTING".into()
        }
    );
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
    assert!(noted(
        &evaluation.decisions[1],
        "the deal is already moved back by rule \"contract-details\""
    ));
}

// ---- reverts never cross pipelines (issue 8, item 5) ----

#[test]
fn a_revert_to_a_stage_of_another_pipeline_acts_as_warn_and_says_why() {
    let mut run = preparation();
    run.previous = Some("NEW");
    let evaluation = run.evaluate(&load(CONTRACT));
    let gate = &evaluation.decisions[0];
    let effects = fired(&gate.outcome);
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

// ---- the service's own texts in the portal's language ----

/// A `[[require]]` without a message: the service's default text.
const INVOICE_DETAILS: &str = r#"
[[require]]
name = "invoice-details"
pipeline = 1
stage = "C1:EXECUTING"
fields = ["UF_CRM_INN"]
"#;

/// A deal entering C1:EXECUTING from C1:PREPAYMENT_INVOICE, on a portal of `language` whose
/// stage names the catalog holds.
fn executing(language: Language) -> Run {
    let mut run = Run::new(
        deal(json!({})),
        entry("C1:EXECUTING", 1, StageSemantic::Process),
    );
    run.catalog = catalog().with_stages(&json!([
        {"ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "C1:PREPAYMENT_INVOICE", "NAME": "Счёт на предоплату"},
        {"ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "C1:EXECUTING", "NAME": "В работе"},
    ]));
    run.previous = Some("C1:PREPAYMENT_INVOICE");
    run.language = language;
    run
}

#[test]
fn a_russian_portal_gets_the_default_revert_comment_in_russian_naming_the_stage() {
    let evaluation = executing(Language::Ru).evaluate(&load(INVOICE_DETAILS));
    let text = "Чтобы перевести сделку на эту стадию, заполните поля: INN. Сделка возвращена на стадию «Счёт на предоплату».";
    assert_eq!(
        fired(&evaluation.decisions[0].outcome)[1..],
        [
            Effect::AddComment { text: text.into() },
            Effect::Notify {
                user: Person::User(7),
                message: format!(
                    "Сделка «Acme» https://x.bitrix24.ru/crm/deal/details/42/: {text}"
                ),
            },
        ]
    );
}

#[test]
fn an_english_portal_gets_it_in_english_and_without_stage_names_the_stage_id_is_used() {
    let evaluation = executing(Language::En).evaluate(&load(INVOICE_DETAILS));
    assert_eq!(
        fired(&evaluation.decisions[0].outcome)[1],
        Effect::AddComment {
            text: "Fill in INN before moving the deal to this stage. The deal was moved back to Счёт на предоплату.".into()
        }
    );
    // Offline (a dry run, a rule test without stage names): the stage's id.
    let mut offline = executing(Language::Ru);
    offline.catalog = catalog();
    let evaluation = offline.evaluate(&load(INVOICE_DETAILS));
    assert_eq!(
        fired(&evaluation.decisions[0].outcome)[1],
        Effect::AddComment {
            text: "Чтобы перевести сделку на эту стадию, заполните поля: INN. Сделка возвращена на стадию «C1:PREPAYMENT_INVOICE».".into()
        }
    );
}

#[test]
fn a_refused_loss_reason_is_explained_in_russian_while_the_decision_log_stays_english() {
    let mut run = lost(json!("62"));
    run.language = Language::Ru;
    let evaluation = run.evaluate(&load(LOSS));
    assert_eq!(
        fired(&evaluation.decisions[0].outcome)[1],
        Effect::AddComment {
            text: "Укажите, почему сделка провалена (поле «Loss reason»). «Chose a competitor» — недопустимая причина (допустимы: Too expensive, Stopped answering). Сделка возвращена на стадию «C1:EXECUTING».".into()
        }
    );
    assert!(noted(
        &evaluation.decisions[0],
        "loss reason \"Chose a competitor\" is not an accepted reason (accepted: Too expensive, Stopped answering)"
    ));
}

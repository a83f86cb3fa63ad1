//! `when`: conditions compare Bitrix24's strings by meaning (numbers, list labels, empty).

use serde_json::json;

use super::*;

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
    let run = preparation()
        .with_catalog()
        .with_deal(json!({"UF_CRM_SOURCE": "45"}));
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
    let run = preparation().with_deal(json!({"OPPORTUNITY": "0.00", "UF_CRM_INN": "7701"}));
    assert!(fires(
        &when_rules("{ OPPORTUNITY = { empty = true }, UF_CRM_INN = { empty = false } }"),
        &run
    ));
}

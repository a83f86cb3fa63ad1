//! `[[task]]` end to end: the task's texts, people and deadlines.

use serde_json::json;

use super::*;

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
    let run = preparation().with_deal(json!({"MOVED_TIME": null}));
    let evaluation = run.evaluate(&rules);
    assert_eq!(
        only_task(&evaluation).deadline,
        Some(at("2026-01-16T19:00:05+03:00"))
    );
    assert!(noted(
        &evaluation.decisions[0],
        "the deal has no MOVED_TIME: the stage entry's time is used"
    ));
}

#[test]
fn a_deal_without_id_fails_the_task_rule() {
    let run = preparation().with_deal(json!({"ID": null}));
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
    let mut run = preparation().with_deal(json!({"UF_CRM_MANAGER": "19"}));
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
    let run = preparation().with_deal(json!({"ASSIGNED_BY_ID": null}));
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
    // A date field: midnight UTC printed in the server's offset (+03:00 → 03:00 local).
    let run = preparation()
        .with_catalog()
        .with_deal(json!({"UF_CRM_EVENT_DATE": "2026-01-23T03:00:00+03:00"}));
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
    let run = preparation()
        .with_catalog()
        .with_deal(json!({"UF_CRM_CALL_AT": "2026-01-21T12:30:00+03:00"}));
    let (got, _) = deadline_of("{ before = \"2 hours\", field = \"UF_CRM_CALL_AT\" }", &run);
    assert_eq!(got, Some(at("2026-01-21T10:30:00+03:00")));
}

#[test]
fn without_a_catalog_midnight_utc_is_read_as_a_date_with_a_note() {
    let run = preparation().with_deal(json!({"UF_CRM_EVENT_DATE": "2026-01-23T03:00:00+03:00"}));
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

//! Loading: the rule set as a whole (version, folders, referenced fields) and the diagnostics
//! of broken files, each at its file:line:col with how to fix it.

use super::*;

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
    let a = load_files(&[("a.toml", OFFER)]).0;
    let b = load_files(&[("b.toml", OFFER)]).0;
    assert_eq!(a.version(), load_files(&[("a.toml", OFFER)]).0.version());
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
    refused(
        &OFFER.replace("title =", "titel ="),
        &[
            "sales.toml:6:1: rule \"offer\": unknown key \"titel\" in [[task]] (did you mean \"title\"?)",
            "sales.toml:2:1: rule \"offer\": [[task]] without \"title\" (add title = \"...\", a template such as \"Call {TITLE}\")",
        ],
    );
}

#[test]
fn unknown_top_level_key_is_reported_without_rule() {
    refused(
        &format!("pipline = 1\n{OFFER}"),
        &[
            "sales.toml:1:1: unknown key \"pipline\" at the top level of a rule file (did you mean \"pipeline\"?)",
        ],
    );
}

#[test]
fn bad_names_are_reported_with_a_fixed_spelling() {
    refused(
        &OFFER.replace("name = \"offer\"", "name = \"Send Offer\""),
        &[
            "sales.toml:3:8: rule \"Send Offer\": bad rule name \"Send Offer\" (use lower-case letters, digits, \"-\" and \"_\", as in \"send-offer\")",
        ],
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
    assert_eq!(
        errors_of(&[("a.toml", OFFER), ("b.toml", OFFER)]),
        [
            "b.toml:3:8: rule \"offer\": duplicate rule name, first defined at a.toml:3 (rule names are unique across all files: rename one of them)"
        ]
    );
}

#[test]
fn a_stage_of_another_pipeline_suggests_the_pipeline() {
    refused(
        &OFFER.replace("pipeline = 1", "pipeline = 2"),
        &[
            "sales.toml:5:9: rule \"offer\": stage \"C1:PREPARATION\" is in pipeline 1, but the rule's pipeline is 2 (set pipeline = 1, or write \"C2:PREPARATION\")",
        ],
    );
}

#[test]
fn a_stage_id_without_pipeline_is_an_error() {
    refused(
        &OFFER.replace("pipeline = 1\n", ""),
        &[
            "sales.toml:4:9: rule \"offer\": stage \"C1:PREPARATION\" needs a pipeline (add pipeline = 1)",
        ],
    );
    refused(
        &OFFER
            .replace("pipeline = 1\n", "")
            .replace("C1:PREPARATION", "PREPARATION"),
        &[
            "sales.toml:4:9: rule \"offer\": stage \"PREPARATION\" needs a pipeline (add pipeline = 0 for the default pipeline, or write \"C<N>:PREPARATION\" with pipeline = N)",
        ],
    );
}

#[test]
fn a_default_pipeline_stage_in_another_pipeline_is_an_error() {
    refused(
        &OFFER.replace("C1:PREPARATION", "PREPARATION"),
        &[
            "sales.toml:5:9: rule \"offer\": stage \"PREPARATION\" is in the default pipeline 0, but the rule's pipeline is 1 (set pipeline = 0, or write \"C1:PREPARATION\")",
        ],
    );
}

#[test]
fn a_missing_stage_and_a_missing_deadline_are_errors_at_the_rule() {
    refused(
        "[[task]]\nname = \"t\"\npipeline = 0\ntitle = \"x\"\n",
        &[
            "sales.toml:1:1: rule \"t\": [[task]] without a \"stage\" (add stage = \"PREPARATION\" (a STAGE_ID), \"won\" or \"lost\")",
            "sales.toml:1:1: rule \"t\": [[task]] without \"deadline\" (a task needs a deadline: add deadline = { after = \"1 workday\" })",
        ],
    );
}

#[test]
fn bad_durations_are_reported_at_the_value() {
    refused(
        &OFFER.replace("2 workdays", "2 fortnights"),
        &[&format!(
            "sales.toml:9:22: rule \"offer\": bad duration \"2 fortnights\": unknown unit \"fortnights\" ({})",
            crate::duration::PERIOD_FORMS
        )],
    );
    // Seconds are a duration, but not a deadline's.
    refused(
        &OFFER.replace("2 workdays", "30s"),
        &[&format!(
            "sales.toml:9:22: rule \"offer\": bad duration \"30s\": a deadline counts minutes at the finest, not seconds ({})",
            crate::duration::PERIOD_FORMS
        )],
    );
}

#[test]
fn russian_and_short_durations_load_as_their_english_spelling() {
    for (written, meant) in [
        ("2 рабочих дня", "2 workdays"),
        ("48h", "48 hours"),
        ("2 недели", "14 days"),
    ] {
        let loaded =
            RuleSet::from_sources(&[("sales.toml".into(), OFFER.replace("2 workdays", written))])
                .expect("loads")
                .0;
        let expected =
            RuleSet::from_sources(&[("sales.toml".into(), OFFER.replace("2 workdays", meant))])
                .expect("loads")
                .0;
        assert_eq!(
            format!("{:?}", loaded.rules()),
            format!("{:?}", expected.rules()),
            "{written}"
        );
    }
}

#[test]
fn bad_people_are_reported_with_the_forms_allowed() {
    refused(
        &OFFER.replace("[\"supervisor\", 3]", "[\"supervsor\", \"3\", \"boss\"]"),
        &[
            "sales.toml:8:13: rule \"offer\": unknown person \"supervsor\" (did you mean \"supervisor\"?)",
            "sales.toml:8:26: rule \"offer\": user id \"3\" is written as a string (write 3, without quotes, as in auditors = [3])",
            "sales.toml:8:31: rule \"offer\": unknown person \"boss\" (use \"assigned\", \"supervisor\", a user id such as 17, or \"field:UF_CRM_X\")",
        ],
    );
}

#[test]
fn bad_templates_are_reported_at_the_brace() {
    refused(
        &OFFER.replace("{TITLE}\"", "{TITLE\""),
        &[
            "sales.toml:6:37: rule \"offer\": unclosed \"{\" in template (close it as in \"{TITLE}\", or write \"{{\" for a literal brace)",
        ],
    );
    refused(
        &OFFER.replace("amount {OPPORTUNITY}", "amount }"),
        &[
            "sales.toml:7:40: rule \"offer\": lone \"}\" in template (write \"}}\" for a literal brace)",
        ],
    );
}

#[test]
fn wrong_types_are_reported_with_how_to_write_it() {
    refused(
        &OFFER
            .replace("pipeline = 1", "pipeline = \"1\"")
            .replace("deadline = {", "xdeadline = {"),
        &[
            "sales.toml:9:1: rule \"offer\": unknown key \"xdeadline\" in [[task]] (did you mean \"deadline\"?)",
            "sales.toml:4:12: rule \"offer\": \"pipeline\" must be an integer, found a string (write pipeline = 1, without quotes)",
            "sales.toml:2:1: rule \"offer\": [[task]] without \"deadline\" (a task needs a deadline: add deadline = { after = \"1 workday\" })",
        ],
    );
}

#[test]
fn a_deadline_written_as_a_string_suggests_the_table() {
    refused(
        &OFFER.replace(
            "{ after = \"2 workdays\", time = \"18:00\" }",
            "\"2 workdays\"",
        ),
        &[
            "sales.toml:9:12: rule \"offer\": \"deadline\" must be a table, found a string (write deadline = { after = \"2 workdays\" })",
        ],
    );
}

#[test]
fn nps_and_loss_reason_take_no_stage() {
    refused(
        "[[nps]]\nname = \"n\"\nstage = \"won\"\ntitle = \"x\"\ndeadline = { after = \"1 day\" }\n",
        &[
            "sales.toml:3:1: rule \"n\": [[nps]] takes no \"stage\" (remove it: the rule fires on entering a success stage of its pipeline)",
        ],
    );
}

#[test]
fn bad_when_operators_are_reported_with_suggestion() {
    refused(
        &OFFER.replace(
            "deadline =",
            "when = { OPPORTUNITY = { gtee = 5 }, TYPE_ID = [\"A\"] }\ndeadline =",
        ),
        &[
            "sales.toml:9:26: rule \"offer\": unknown operator \"gtee\" (did you mean \"gte\"?)",
            "sales.toml:9:48: rule \"offer\": a list of values for TYPE_ID is ambiguous (write { in = [...] } for any of them)",
        ],
    );
}

#[test]
fn tunnel_target_stage_must_match_to_pipeline() {
    refused(
        &WON.replace("to_pipeline = 2", "to_pipeline = 3"),
        &[
            "sales.toml:12:12: rule \"repeat-sales\": stage \"C2:NEW\" is in pipeline 2, but to_pipeline is 3 (set to_pipeline = 2, or write \"C3:NEW\")",
        ],
    );
}

#[test]
fn every_problem_of_every_file_is_reported_at_once() {
    let shown = errors_of(&[
        ("a.toml", &OFFER.replace("title =", "titel =")),
        ("b.toml", &WON.replace("3 days", "3 dayz")),
        ("c.toml", "x = "),
    ]);
    assert_eq!(
        shown,
        [
            "a.toml:6:1: rule \"offer\": unknown key \"titel\" in [[task]] (did you mean \"title\"?)",
            "a.toml:2:1: rule \"offer\": [[task]] without \"title\" (add title = \"...\", a template such as \"Call {TITLE}\")",
            "b.toml:5:22: rule \"nps\": bad duration \"3 dayz\": unknown unit \"dayz\" (did you mean \"3 days\"?)",
            "c.toml:1:5: TOML syntax error: string values must be quoted, expected literal string",
            "c.toml:1:1: unknown key \"x\" at the top level of a rule file (allowed keys: pipeline, task, require, loss_reason, nps, tunnel, sla, overdue, no_task, digest, plan)",
        ]
    );
}

#[test]
fn a_review_without_deadline_is_reported_at_its_section() {
    refused(
        &LOSS.replace(
            "deadline = { after = \"1 workday\" }\n\n[[task]]",
            "\n[[task]]",
        ),
        &[
            "sales.toml:8:1: rule \"loss-reason\": [loss_reason.review] without \"deadline\" (a task needs a deadline: add deadline = { after = \"1 workday\" })",
        ],
    );
}

#[test]
fn deadline_forms_are_checked() {
    refused(
        &OFFER.replace(
            "{ after = \"2 workdays\", time = \"18:00\" }",
            "{ before = \"1 day\", fallback = { after = \"1 day\" }, time = \"6pm\" }",
        ),
        &[
            "sales.toml:9:23: rule \"offer\": deadline \"before\" needs a \"field\" (add field = \"UF_CRM_EVENT_DATE\": the date it counts back from)",
            "sales.toml:9:71: rule \"offer\": bad time of day \"6pm\" (write \"HH:MM\", as in time = \"18:00\")",
            "sales.toml:9:32: rule \"offer\": \"fallback\" is only used when a deadline's field is empty (remove it, or add field = \"...\")",
        ],
    );
    refused(
        &OFFER.replace("time = \"18:00\"", "before = \"1 day\""),
        &[
            "sales.toml:9:36: rule \"offer\": deadline has both \"after\" and \"before\" (keep one of them)",
        ],
    );
}

#[test]
fn a_file_without_rules_loads_with_a_warning() {
    let (set, warnings) = load_files(&[("a.toml", OFFER), ("b.toml", "pipeline = 1\n")]);
    assert_eq!(set.len(), 1);
    assert_eq!(
        warnings,
        [
            "b.toml: the file defines no rules (add [[task]], [[require]], [[loss_reason]], [[nps]], [[tunnel]], [[sla]], [[overdue]], [[no_task]], [[digest]] or [[plan]] sections, or remove the file)"
        ]
    );
}

//! Rules of several pipelines (`pipeline = [0, 2]`, the stage written once, without its prefix)
//! and the offline check of stage codes (a warning for a code Bitrix24 does not ship).

use super::*;

const BOTH: &str = r#"
[[task]]
name = "docs"
pipeline = [0, 2]
stage = "PREPARATION"
title = "Prepare the documents: {TITLE}"
deadline = { after = "1 workday" }
"#;

// ---- several pipelines ----

#[test]
fn a_rule_of_several_pipelines_fires_on_its_stage_in_each_and_nowhere_else() {
    let rules = load(BOTH);
    let entering = |stage: &str, pipeline: u64| {
        let run = Run::new(
            deal(json!({ "CATEGORY_ID": pipeline.to_string(), "STAGE_ID": stage })),
            entry(stage, pipeline, StageSemantic::Process),
        );
        rule_names(run.evaluate(&rules))
    };
    assert_eq!(entering("PREPARATION", 0), ["docs"]);
    assert_eq!(entering("C2:PREPARATION", 2), ["docs"]);
    assert!(entering("C1:PREPARATION", 1).is_empty());
    assert!(entering("C2:NEW", 2).is_empty());
    // The code of one pipeline entered in another is not the rule's stage there.
    assert!(entering("PREPARATION", 2).is_empty());
}

#[test]
fn a_rule_of_several_pipelines_names_its_stage_in_each_for_the_portal_check() {
    let rules = load(BOTH);
    let refs = rules.rules()[0].portal_refs();
    assert_eq!(refs.pipelines, [0, 2]);
    assert_eq!(refs.stages, ["PREPARATION", "C2:PREPARATION"]);
    assert_eq!(rules.rules()[0].pipelines(), Some(&[0, 2][..]));
}

#[test]
fn a_file_wide_list_of_pipelines_holds_for_each_rule_of_the_file() {
    let text = BOTH.replace("pipeline = [0, 2]\n", "");
    let rules = load(&format!("pipeline = [0, 2]\n{text}"));
    assert_eq!(
        rules.rules()[0].portal_refs().stages,
        ["PREPARATION", "C2:PREPARATION"]
    );
}

#[test]
fn won_and_lost_rules_take_a_list_of_pipelines() {
    let rules = load(
        "[[nps]]\nname = \"nps\"\npipeline = [1, 3]\ntitle = \"Ask for a score\"\ndeadline = { after = \"1 day\" }\n",
    );
    assert_eq!(rule_names(won(json!({})).evaluate(&rules)), ["nps"]);
    let elsewhere = Run::new(
        deal(json!({ "CATEGORY_ID": "2" })),
        entry("C2:WON", 2, StageSemantic::Success),
    );
    assert!(rule_names(elsewhere.evaluate(&rules)).is_empty());
}

#[test]
fn a_prefixed_stage_with_a_list_of_pipelines_is_an_error_saying_to_drop_the_prefix() {
    refused(
        &BOTH.replace("\"PREPARATION\"", "\"C2:PREPARATION\""),
        &[
            "sales.toml:5:9: rule \"docs\": stage \"C2:PREPARATION\" names a pipeline, but the rule's pipeline is a list (drop the prefix: write \"PREPARATION\", which is PREPARATION in pipeline 0 and C2:PREPARATION in pipeline 2)",
        ],
    );
}

#[test]
fn an_empty_list_of_pipelines_is_an_error() {
    refused(
        &BOTH.replace("[0, 2]", "[]"),
        &[
            "sales.toml:4:12: rule \"docs\": \"pipeline\" is an empty list (list the pipelines, as in pipeline = [0, 2], or write one: pipeline = 0)",
        ],
    );
}

#[test]
fn a_pipeline_listed_twice_is_an_error_at_the_second() {
    refused(
        &BOTH.replace("[0, 2]", "[0, 2, 0]"),
        &["sales.toml:4:19: rule \"docs\": pipeline 0 is listed twice (remove the second 0)"],
    );
}

#[test]
fn a_bad_item_in_a_list_of_pipelines_is_reported_alone() {
    refused(
        &BOTH.replace("[0, 2]", "[0, -2]"),
        &[
            "sales.toml:4:16: rule \"docs\": a pipeline id is never negative (use the CATEGORY_ID: 0 for the default pipeline)",
        ],
    );
}

#[test]
fn a_tunnel_of_several_pipelines_into_one_of_them_is_a_cycle() {
    let text = "[[tunnel]]\nname = \"requeue\"\npipeline = [1, 2]\nstage = \"NEW\"\nto_pipeline = 2\nto_stage = \"C2:NEW\"\n";
    refused(
        text,
        &[
            "sales.toml:6:12: rule \"requeue\": tunnel cycle: requeue (C1:NEW or C2:NEW → C2:NEW), whose copy fires requeue again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)",
        ],
    );
    // Into a pipeline outside the list: no cycle.
    load(&text.replace("[1, 2]", "[1, 3]"));
}

// ---- stage codes checked offline ----

#[test]
fn a_misspelt_standard_stage_is_a_warning_with_the_nearest_code() {
    let (set, warnings) = load_files(&[(
        "sales.toml",
        &OFFER.replace("C1:PREPARATION", "C1:PREPARATON"),
    )]);
    assert_eq!(set.len(), 1, "a warning does not stop the rule");
    assert_eq!(
        warnings,
        [
            "sales.toml:5:9: rule \"offer\": stage \"C1:PREPARATON\" is not a standard Bitrix24 stage (did you mean \"C1:PREPARATION\"? if the portal has this stage, b24-robot check --portal confirms it)"
        ]
    );
    let (_, warnings) = load_files(&[(
        "sales.toml",
        &BOTH.replace("\"PREPARATION\"", "\"PREPARATON\""),
    )]);
    assert_eq!(
        warnings,
        [
            "sales.toml:5:9: rule \"docs\": stage \"PREPARATON\" is not a standard Bitrix24 stage (did you mean \"PREPARATION\"? if the portal has this stage, b24-robot check --portal confirms it)"
        ]
    );
}

#[test]
fn a_stage_code_unlike_any_standard_one_is_a_warning_listing_them() {
    let (_, warnings) = load_files(&[(
        "sales.toml",
        &OFFER.replace("C1:PREPARATION", "C1:CONTRACT"),
    )]);
    assert_eq!(
        warnings,
        [
            "sales.toml:5:9: rule \"offer\": stage \"C1:CONTRACT\" is not a standard Bitrix24 stage (the standard codes are NEW, PREPARATION, PREPAYMENT_INVOICE, EXECUTING, FINAL_INVOICE, WON, LOSE, APOLOGY, a portal's own are UC_...: if the portal has this stage, b24-robot check --portal confirms it)"
        ]
    );
}

#[test]
fn standard_and_custom_stage_codes_give_no_warning() {
    for stage in ["C1:UC_7XK2QD", "C1:NEW", "C1:FINAL_INVOICE", "C1:APOLOGY"] {
        let (_, warnings) = load_files(&[("sales.toml", &OFFER.replace("C1:PREPARATION", stage))]);
        assert!(warnings.is_empty(), "{stage}: {warnings:?}");
    }
}

#[test]
fn a_tunnels_target_stage_is_checked_too() {
    let (_, warnings) = load_files(&[(
        "sales.toml",
        "[[tunnel]]\nname = \"repeat\"\npipeline = 1\nto_pipeline = 2\nto_stage = \"C2:NEWW\"\n",
    )]);
    assert_eq!(
        warnings,
        [
            "sales.toml:5:12: rule \"repeat\": to_stage \"C2:NEWW\" is not a standard Bitrix24 stage (did you mean \"C2:NEW\"? if the portal has this stage, b24-robot check --portal confirms it)"
        ]
    );
}

//! `[[nps]]` and `[[tunnel]]`: copies of won (or lost) deals, tunnel cycles refused at load
//! time and chains of copies stopped at run time.

use serde_json::json;

use super::*;

// ---- nps and tunnel ----

#[test]
fn a_win_creates_the_nps_task_and_copies_the_deal() {
    let evaluation = won(json!({"CONTACT_ID": "5"})).evaluate(&load(WON));
    assert_eq!(evaluation.decisions.len(), 2);
    let effects = fired(&evaluation.decisions[0].outcome);
    let task = created_task(&effects[0]);
    assert_eq!(task.title, "NPS: ask Acme");
    let effects = fired(&evaluation.decisions[1].outcome);
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
    assert_eq!(rule_names(run.evaluate(&rules)), ["nps"]);
    assert!(preparation().evaluate(&rules).decisions.is_empty());
}

#[test]
fn a_tunnel_fires_on_won_by_default_and_on_lost_when_asked() {
    let won = load(WON);
    let lost_entry = entry("C1:LOSE", 1, StageSemantic::Failure);
    let run = Run::new(deal(json!({})), lost_entry.clone());
    assert!(run.evaluate(&won).decisions.is_empty());
    let lost = load(&WON.replace("to_pipeline = 2", "stage = \"lost\"\nto_pipeline = 2"));
    assert_eq!(rule_names(run.evaluate(&lost)), ["repeat-sales"]);
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
    refused(
        SELF_FEEDING,
        &[
            "sales.toml:7:12: rule \"x\": tunnel cycle: x (C1:NEW → C1:NEW), whose copy fires x again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)",
        ],
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
    refused(
        chain,
        &[
            "sales.toml:7:12: rule \"a\": tunnel cycle: a (won in pipeline 0 → C1:NEW), whose copy fires b (C1:NEW → C2:NEW), whose copy fires c (C2:NEW → WON), whose copy fires a again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)",
        ],
    );
}

#[test]
fn a_tunnel_of_every_pipeline_on_won_is_fed_by_a_copy_into_a_won_stage() {
    let any = "[[tunnel]]\nname = \"t\"\nstage = \"won\"\nto_pipeline = 2\nto_stage = \"C2:WON\"\n";
    refused(
        any,
        &[
            "sales.toml:5:12: rule \"t\": tunnel cycle: t (won in any pipeline → C2:WON), whose copy fires t again (each copy would be copied again with no one moving a deal: point to_stage at a stage that starts no tunnel)",
        ],
    );
    // Into a process stage, the same tunnel is no cycle; nor is the shipped won → C1:NEW.
    load(&any.replace("C2:WON", "C2:NEW"));
    load(WON);
}

#[test]
fn a_tunnel_into_a_custom_stage_that_may_be_a_failure_stage_loads_with_a_warning() {
    let text = "[[tunnel]]\nname = \"archive\"\nstage = \"lost\"\nto_pipeline = 2\nto_stage = \"C2:UC_ARCHIVE\"\n";
    let (set, warnings) = load_files(&[("sales.toml", text)]);
    assert_eq!(set.len(), 1);
    assert_eq!(
        warnings,
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
    refused(
        text,
        &[
            "sales.toml:7:18: rule \"t\": copy names ID, which a tunnel cannot write (Bitrix24 gives the copy its own ID: remove it)",
            "sales.toml:7:24: rule \"t\": copy names STAGE_ID, which a tunnel cannot write (the copy enters to_stage: remove it, and set to_stage instead)",
            "sales.toml:7:36: rule \"t\": copy names DATE_CREATE, which a tunnel cannot write (a read-only field of crm.deal.fields: Bitrix24 fills it in itself; remove it)",
            "sales.toml:8:9: rule \"t\": set names CATEGORY_ID, which a tunnel cannot write (the copy goes into to_pipeline: remove it, and set to_pipeline instead)",
            "sales.toml:8:28: rule \"t\": set names ORIGIN_ID, which a tunnel cannot write (the service writes it to find the copy again: remove it)",
        ],
    );
}

// ---- copies of copies at run time (issue 8, item 4) ----

fn copy_decision(origin_id: &str, max_tunnel_depth: u32) -> Evaluation {
    let mut run = won(json!({"ORIGINATOR_ID": "b24-robot", "ORIGIN_ID": origin_id}));
    run.max_tunnel_depth = max_tunnel_depth;
    run.evaluate(&load(WON))
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
    let effects = fired(tunnel_outcome(&evaluation));
    assert!(matches!(&effects[0], Effect::CopyDeal(copy) if copy.depth == 2));
    // Another originator's ORIGIN_ID is not ours: a first copy.
    let run = won(json!({"ORIGINATOR_ID": "crm-import", "ORIGIN_ID": "5:100:x:0:3"}));
    let evaluation = run.evaluate(&load(WON));
    let effects = fired(tunnel_outcome(&evaluation));
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
    let effects = fired(&decision.outcome);
    assert!(matches!(&effects[0], Effect::CopyDeal(copy) if copy.depth == 1));
}

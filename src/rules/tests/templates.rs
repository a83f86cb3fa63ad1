//! Templates: how fields render (empty, lists, money) and the bounds on a template and on
//! what it renders.

use serde_json::json;

use super::*;

#[test]
fn an_empty_template_field_renders_as_nothing_with_a_note() {
    let rules = load(&OFFER.replace("{TITLE}", "{UF_CRM_NOTE}"));
    let evaluation = preparation().evaluate(&rules);
    assert_eq!(only_task(&evaluation).title, "Send the commercial offer: ");
    assert!(noted(
        &evaluation.decisions[0],
        "field UF_CRM_NOTE empty: rendered as nothing"
    ));
}

#[test]
fn list_fields_render_labels_and_multiple_values_are_joined() {
    let rules = load(&OFFER.replace("{TITLE}", "{UF_CRM_SOURCE} / {UF_CRM_TAGS} / {{literal}}"));
    let run = preparation()
        .with_catalog()
        .with_deal(json!({"UF_CRM_SOURCE": ["45", "46"], "UF_CRM_TAGS": ["a", "b"]}));
    assert_eq!(
        only_task(&run.evaluate(&rules)).title,
        "Send the commercial offer: Exhibition, Referral / a, b / {literal}"
    );
}

#[test]
fn money_fields_render_as_amount_and_currency() {
    let rules = load(&OFFER.replace("{TITLE}", "{UF_CRM_BUDGET}"));
    let run = preparation()
        .with_catalog()
        .with_deal(json!({"UF_CRM_BUDGET": "500|RUB"}));
    assert_eq!(
        only_task(&run.evaluate(&rules)).title,
        "Send the commercial offer: 500 RUB"
    );
}

// ---- bounded templates (issue 8, item 12) ----

#[test]
fn a_template_over_8_kib_or_with_too_many_placeholders_is_refused() {
    let titled = |title: String| {
        OFFER.replace(
            "title = \"Send the commercial offer: {TITLE}\"",
            &format!("title = \"{title}\""),
        )
    };
    refused(
        &titled("{TITLE}".repeat(1200)),
        &[
            "sales.toml:6:9: rule \"offer\": template of 8400 bytes (at most 8192 bytes (8 KiB) of template text: shorten it)",
        ],
    );
    refused(
        &titled("{ID} ".repeat(65)),
        &[
            "sales.toml:6:9: rule \"offer\": template with 65 placeholders (at most 64 in one template: split the text, or write fewer fields)",
        ],
    );
}

#[test]
fn a_rendered_task_title_is_cut_to_255_characters_with_a_mark() {
    let run = preparation().with_deal(json!({"TITLE": "Ж".repeat(10_000)}));
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
    let run = won(json!({"COMMENTS": huge.clone(), "CONTACT_ID": huge}));
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

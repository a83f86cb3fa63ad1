//! The portal file read, written and seeded; and the sandbox's refusal of fields the file does
//! not list.

use serde_json::{Value, json};

use super::*;
use crate::sandbox::SimConfig;

async fn answer(sim: &SimPortal, method: &str, params: Value) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("{}{method}.json", sim.webhook_url()))
        .json(&params)
        .send()
        .await
        .expect("the simulated portal answers");
    let body: Value = response.json().await.expect("JSON");
    body["result"].clone()
}

/// What the read-only calls of `sandbox export` answer: the portal as the service sees it.
async fn described(sim: &SimPortal) -> Vec<Value> {
    let mut departments = answer(sim, "department.get", json!({})).await;
    // The old seed added departments 1 and 2 twice, which left odd sorts; ids are what count.
    for d in departments.as_array_mut().into_iter().flatten() {
        d.as_object_mut().map(|d| d.remove("SORT"));
    }
    let mut departments = departments.as_array().cloned().unwrap_or_default();
    departments.sort_by_key(|d| d["ID"].as_str().unwrap_or("").to_string());
    vec![
        answer(sim, "crm.category.list", json!({"entityTypeId": 2})).await,
        answer(sim, "crm.status.list", json!({"order": {"SORT": "ASC"}})).await,
        answer(sim, "crm.status.entity.types", json!({})).await,
        answer(sim, "crm.deal.fields", json!({})).await,
        answer(
            sim,
            "crm.deal.userfield.list",
            json!({"filter": {"LANG": "en"}}),
        )
        .await,
        answer(sim, "user.get", json!({})).await,
        Value::Array(departments),
    ]
}

#[tokio::test]
async fn the_built_in_portal_file_seeds_what_the_built_in_seed_seeded() {
    let old = SimPortal::start(SimConfig::default()).await.expect("sim");
    // The seed as it was written in Rust before the portal file.
    old.with_default_portal();
    old.add_pipeline(
        1,
        "Repeat clients",
        &[
            ("C1:NEW", "New", 'P'),
            ("C1:PREPARATION", "Offer", 'P'),
            ("C1:EXECUTING", "In progress", 'P'),
            ("C1:WON", "Deal won", 'S'),
            ("C1:LOSE", "Deal lost", 'F'),
        ],
    );
    old.add_field("UF_CRM_INN", "string", "Tax ID (INN)", false, &[]);
    old.add_field(
        "UF_CRM_CONTRACT_NO",
        "string",
        "Contract number",
        false,
        &[],
    );
    old.add_field(
        "UF_CRM_LOSS_REASON",
        "enumeration",
        "Loss reason",
        false,
        &[
            (11, "Too expensive"),
            (12, "Chose a competitor"),
            (13, "Stopped answering"),
            (14, "No budget"),
        ],
    );
    old.add_field("UF_CRM_NPS", "double", "NPS score", false, &[]);
    old.add_department(1, "Company", None, Some(1));
    old.add_department(2, "Sales", Some(1), Some(2));
    old.add_user(1, "Anna Director", &[1]);
    old.add_user(2, "Boris Head-of-Sales", &[2]);
    old.add_user(3, "Vera Manager", &[2]);
    old.add_user(4, "Gleb Manager", &[2]);

    let new = SimPortal::start(SimConfig::default()).await.expect("sim");
    crate::sandbox::seed::seed_portal(&new);
    assert_eq!(described(&old).await, described(&new).await);
}

#[test]
fn the_built_in_portal_file_reads_and_writes_back_the_same() {
    let file = parse_portal("portal.toml", BUILTIN).expect("the built-in portal file is valid");
    assert_eq!(file.pipelines.len(), 2);
    assert_eq!(file.pipelines[0].stages.len(), 8);
    assert_eq!(file.fields[2].options[0], (11, "Too expensive".to_string()));
    assert_eq!(file.users.len(), 6);
    let again = parse_portal("written.toml", &file.to_toml()).expect("what it writes reads");
    assert_eq!(again, file);
}

#[test]
fn names_with_quotes_and_sorts_survive_writing() {
    let file = PortalFile {
        pipelines: vec![Pipeline {
            id: 0,
            name: "Sales \"B2B\" \\ main\tline".into(),
            sort: Some(300),
            stages: vec![Stage {
                id: "UC_X1Y2Z3".into(),
                name: "Счёт выставлен".into(),
                semantics: StageSemantic::Failure,
                sort: Some(70),
            }],
        }],
        fields: vec![Field {
            code: "UF_CRM_1725365197310".into(),
            kind: "enumeration".into(),
            label: "Причина \"отказа\"".into(),
            multiple: true,
            read_only: true,
            options: vec![(3157, "Children's Radio".into())],
        }],
        departments: vec![Department {
            id: 7,
            name: "Отдел продаж".into(),
            parent: None,
            head: Some(9),
            sort: Some(500),
        }],
        users: vec![User {
            id: 9,
            name: "Вера".into(),
            departments: vec![7],
        }],
    };
    let text = file.to_toml();
    assert_eq!(parse_portal("p.toml", &text), Ok(file), "{text}");
}

fn problems(text: &str) -> Vec<String> {
    parse_portal("p.toml", text)
        .expect_err("invalid")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn every_mistake_of_a_portal_file_is_reported_at_its_position() {
    let shown = problems(
        r#"[[pipeline]]
id = 0
name = "General"

[[pipeline.stage]]
id = "NEW"
name = "New"
semantics = "in progres"

[[pipeline]]
id = 2
nmae = "Warm-up"

[[pipeline.stage]]
id = "NEW"
name = "New"
semantics = "won"

[fields.TITLE]
type = "string"

[fields.UF_CRM_INN]
type = "string"
options = { 1 = "x" }

[[department]]
id = 1
name = "Company"
head = 12

[[user]]
id = 3
name = "Vera"
departments = [1, 5]
"#,
    );
    let expected = [
        "p.toml:8:13: unknown semantics \"in progres\" (did you mean \"in progress\"?)",
        "p.toml:12:1: unknown key \"nmae\" in [[pipeline]] (did you mean \"name\"?)",
        "p.toml:10:1: [[pipeline]] needs \"name\" (add name = \"General\")",
        "p.toml:15:6: stage NEW of pipeline 2 lacks its prefix C2: (write id = \"C2:NEW\", as the portal names it)",
        "p.toml:19:9: TITLE is a standard deal field: the sandbox knows it already (list only the portal's custom fields (UF_CRM_...))",
        "p.toml:24:11: only a list field has options (write type = \"enumeration\", or remove the options)",
        "p.toml:29:8: no user 12 in this file (describe them in a [[user]] section)",
        "p.toml:34:19: no department 5 in this file (describe it in a [[department]] section)",
    ];
    for line in expected {
        assert!(shown.iter().any(|s| s == line), "{line}\nin {shown:#?}");
    }
    assert_eq!(shown.len(), expected.len(), "{shown:#?}");
}

#[test]
fn a_portal_file_without_the_default_pipeline_or_with_a_department_cycle_is_refused() {
    let shown = problems(
        "[[pipeline]]\nid = 1\nname = \"Repeat\"\n\n[[pipeline.stage]]\nid = \"C1:NEW\"\nname = \"New\"\nsemantics = \"in progress\"\n",
    );
    assert_eq!(
        shown,
        [
            "p.toml: no default pipeline: every portal has pipeline 0 (add [[pipeline]] with id = 0 and its stages)"
        ]
    );
    let shown = problems(
        "[[pipeline]]\nid = 0\nname = \"G\"\nstage = [{ id = \"NEW\", name = \"New\", semantics = \"in progress\" }]\n\n[[department]]\nid = 1\nname = \"A\"\nparent = 2\n\n[[department]]\nid = 2\nname = \"B\"\nparent = 1\n",
    );
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("p.toml:9:10: department 1 is its own ancestor")),
        "{shown:#?}"
    );
}

async fn strict_sim() -> SimPortal {
    let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
    let mut file = PortalFile::builtin();
    file.fields.push(Field {
        code: "UF_CRM_SCORE".into(),
        kind: "integer".into(),
        label: "Score".into(),
        multiple: false,
        read_only: true,
        options: Vec::new(),
    });
    file.seed(&sim);
    sim.refuse_unknown_fields();
    sim
}

#[tokio::test]
async fn a_sandbox_from_a_portal_file_refuses_a_field_the_file_does_not_list() {
    let sim = strict_sim().await;
    let refused = sim
        .try_create_deal(json!({"TITLE": "Acme", "STAGE_ID": "NEW", "UF_CRM_INNN": "7701"}))
        .await
        .expect_err("an unknown field is refused");
    assert_eq!(
        refused,
        "the portal has no deal field UF_CRM_INNN (did you mean UF_CRM_INN?)"
    );
    assert!(sim.deals().is_empty(), "nothing was created");
    let id = sim
        .try_create_deal(
            json!({"TITLE": "Acme", "CATEGORY_ID": 0, "STAGE_ID": "NEW", "ASSIGNED_BY_ID": 3,
            "OPPORTUNITY": "100", "CURRENCY_ID": "RUB", "COMPANY_ID": 0, "UF_CRM_INN": "7701"}),
        )
        .await
        .expect("standard fields and the file's fields are known");
    let refused = sim
        .try_update_deal(id, json!({"UF_CRM_SCORE": 5}))
        .await
        .expect_err("a read-only field is refused");
    assert!(refused.contains("UF_CRM_SCORE is read-only"), "{refused}");
    let refused = sim
        .try_update_deal(id, json!({"CATEGORY_ID": 1}))
        .await
        .expect_err("an update does not change the pipeline");
    assert!(refused.contains("CATEGORY_ID is read-only"), "{refused}");
    let refused = sim
        .try_update_deal(id, json!({"colour": "red"}))
        .await
        .expect_err("refused");
    assert_eq!(
        refused,
        "the portal has no deal field COLOUR (the portal file lists its custom fields under [fields])"
    );
    sim.try_update_deal(id, json!({"title": "Acme 2"}))
        .await
        .expect("field codes are case-insensitive, as in Bitrix24");
}

#[tokio::test]
async fn the_built_in_portal_still_drops_an_unknown_field_as_bitrix24_does() {
    let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
    crate::sandbox::seed::seed_portal(&sim);
    let id = sim
        .try_create_deal(json!({"TITLE": "Acme", "UF_CRM_INNN": "7701"}))
        .await
        .expect("taken");
    assert!(sim.deal(id).expect("deal").get("UF_CRM_INNN").is_none());
}

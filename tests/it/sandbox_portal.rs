//! The client's portal in the sandbox (issue 10, item 7): `sandbox export` writes the live
//! portal as a portal file with read-only calls, `sandbox --portal FILE` rehearses against it,
//! and a field the file does not list is refused by name instead of being dropped.

use std::path::{Path, PathBuf};

use b24_robot::rules::StageSemantic;
use b24_robot::sandbox::portal_file::{
    Department, Field, Pipeline, PortalFile, Stage, User, parse_portal,
};
use b24_robot::sandbox::{SimConfig, SimPortal};
use serde_json::{Value, json};

use crate::helpers::{run_binary_in, sandbox_child, texts};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules() -> String {
    root().join("rules").display().to_string()
}

/// A REST answer's `result`, straight from the simulated portal.
async fn result(sim: &SimPortal, method: &str, params: Value) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body: Value = reqwest::Client::new()
        .post(format!("{}{method}.json", sim.webhook_url()))
        .json(&params)
        .send()
        .await
        .expect("the simulated portal answers")
        .json()
        .await
        .expect("JSON");
    body["result"].clone()
}

/// What the portal answers to the calls that describe it.
async fn answers(sim: &SimPortal) -> Vec<Value> {
    let mut out = vec![
        result(sim, "crm.category.list", json!({"entityTypeId": 2})).await,
        result(sim, "crm.deal.fields", json!({})).await,
        result(
            sim,
            "crm.deal.userfield.list",
            json!({"filter": {"LANG": "en"}}),
        )
        .await,
        result(sim, "user.get", json!({})).await,
        result(sim, "department.get", json!({})).await,
    ];
    for entity in ["DEAL_STAGE", "DEAL_STAGE_1", "DEAL_STAGE_7"] {
        out.push(
            result(
                sim,
                "crm.status.list",
                json!({"order": {"SORT": "ASC"}, "filter": {"ENTITY_ID": entity}}),
            )
            .await,
        );
    }
    out
}

/// A portal unlike the built-in one: a pipeline 7 sorted first, odd stage sorts, a custom
/// stage, a multiple and a read-only field, departments with their own sorts, quotes in names.
fn client_portal() -> PortalFile {
    let stage = |id: &str, name: &str, semantics, sort| Stage {
        id: id.into(),
        name: name.into(),
        semantics,
        sort: Some(sort),
    };
    PortalFile {
        pipelines: vec![
            Pipeline {
                id: 7,
                name: "Warm-up \"cold\" leads".into(),
                sort: Some(50),
                stages: vec![
                    stage("C7:NEW", "New", StageSemantic::Process, 15),
                    stage("C7:UC_CALL", "Call", StageSemantic::Process, 25),
                    stage("C7:WON", "Warm", StageSemantic::Success, 35),
                    stage("C7:LOSE", "Cold", StageSemantic::Failure, 45),
                ],
            },
            Pipeline {
                id: 0,
                name: "B2B".into(),
                sort: Some(100),
                stages: vec![
                    stage("NEW", "Новая", StageSemantic::Process, 10),
                    stage("UC_WARMUP", "Прогрев", StageSemantic::Process, 20),
                    stage("WON", "Успех", StageSemantic::Success, 30),
                    stage("LOSE", "Провал", StageSemantic::Failure, 40),
                    stage("APOLOGY", "Анализ", StageSemantic::Failure, 50),
                ],
            },
        ],
        fields: vec![
            Field {
                code: "UF_CRM_INN".into(),
                kind: "string".into(),
                label: "ИНН".into(),
                multiple: false,
                read_only: false,
                options: Vec::new(),
            },
            Field {
                code: "UF_CRM_CHANNELS".into(),
                kind: "enumeration".into(),
                label: "Channels".into(),
                multiple: true,
                read_only: false,
                options: vec![(501, "Phone".into()), (502, "Mail".into())],
            },
            Field {
                code: "UF_CRM_SCORE".into(),
                kind: "integer".into(),
                label: "Score".into(),
                multiple: false,
                read_only: true,
                options: Vec::new(),
            },
        ],
        departments: vec![
            Department {
                id: 10,
                name: "Head office".into(),
                parent: None,
                head: Some(21),
                sort: Some(500),
            },
            Department {
                id: 11,
                name: "Sales".into(),
                parent: Some(10),
                head: None,
                sort: Some(600),
            },
        ],
        users: vec![
            User {
                id: 21,
                name: "Olga Boss".into(),
                departments: vec![10],
            },
            User {
                id: 22,
                name: "Ivan".into(),
                departments: vec![11],
            },
        ],
    }
}

/// `sandbox export` against `sim`, run as the real binary with a config naming its webhook.
async fn export(sim: &SimPortal, work: &Path, extra: &[&str]) -> std::process::Output {
    let config = work.join("b24-robot.toml");
    std::fs::write(
        &config,
        format!("[portal]\nwebhook_url = \"{}\"\n", sim.webhook_url()),
    )
    .expect("config written");
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "sandbox".into(),
        "export".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let cwd = work.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_binary_in(&cwd, &args, &[])
    })
    .await
    .expect("runs")
}

/// Real threads: the simulated portal answers on the runtime while the binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_portal_seeds_a_second_one_that_answers_alike() {
    let work = tempfile::tempdir().expect("temp dir");
    for (name, file) in [
        ("built-in", PortalFile::builtin()),
        ("client", client_portal()),
    ] {
        let live = SimPortal::start(SimConfig::default()).await.expect("sim");
        file.seed(&live);
        let out = work.path().join(format!("{name}.toml"));
        let output = export(&live, work.path(), &["--out", &out.display().to_string()]).await;
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
        assert!(
            stdout.starts_with(&format!("wrote {}: ", out.display())),
            "{stdout}"
        );
        assert_eq!(stderr, "", "nothing left out");

        let text = std::fs::read_to_string(&out).expect("the file is written");
        let exported = parse_portal(name, &text).expect("the export reads back");
        let rehearsal = SimPortal::start(SimConfig::default()).await.expect("sim");
        exported.seed(&rehearsal);
        assert_eq!(
            answers(&live).await,
            answers(&rehearsal).await,
            "{name}:\n{text}"
        );

        let writes = live
            .requests()
            .iter()
            .map(|r| r.method.clone())
            .filter(|m| !m.ends_with(".list") && !m.ends_with(".get") && m != "crm.deal.fields")
            .collect::<Vec<_>>();
        assert_eq!(writes, Vec::<String>::new(), "read-only calls only");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_out_the_export_is_printed() {
    let live = SimPortal::start(SimConfig::default()).await.expect("sim");
    b24_robot::sandbox::seed::seed_portal(&live);
    let work = tempfile::tempdir().expect("temp dir");
    let output = export(&live, work.path(), &[]).await;
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed = parse_portal("stdout", &stdout).expect("what is printed reads");
    assert_eq!(printed.pipelines.len(), 2);
    assert!(stdout.contains("[fields.UF_CRM_LOSS_REASON]\n"), "{stdout}");
}

/// `portal.toml` (the client's portal) and `try.toml` (a scenario) in a new folder.
fn rehearsal_folder(scenario: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("portal.toml"), client_portal().to_toml()).expect("portal");
    std::fs::write(dir.path().join("try.toml"), scenario).expect("scenario");
    dir
}

/// `sandbox --portal portal.toml --scenario try.toml` with the shipped rules, in `dir`.
fn rehearse(dir: &Path) -> std::process::Output {
    let args = ["sandbox", "--rules", &rules(), "--portal", "portal.toml"];
    run_binary_in(dir, &[&args[..], &["--scenario", "try.toml"]].concat(), &[])
}

const WARM_UP: &str = r#"
[[step]]
create = "acme"
fields = { TITLE = "Acme", STAGE_ID = "NEW", ASSIGNED_BY_ID = 22, UF_CRM_INN = "7701234567" }

[[step]]
move = "acme"
to = "UC_WARMUP"
"#;

#[test]
fn the_sandbox_rehearses_on_the_portal_of_a_file() {
    let dir = rehearsal_folder(WARM_UP);
    let with_portal = rehearse(dir.path());
    let (stdout, stderr) = texts(&with_portal);
    assert_eq!(with_portal.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("against the simulated portal of portal.toml"),
        "{stdout}"
    );
    assert!(
        stdout.contains("deal 1 \"Acme\" entered UC_WARMUP"),
        "{stdout}"
    );

    // The built-in portal has no such stage: the file is what the sandbox ran on.
    let built_in = run_binary_in(
        dir.path(),
        &["sandbox", "--rules", &rules(), "--scenario", "try.toml"],
        &[],
    );
    let (stdout, stderr) = texts(&built_in);
    assert_eq!(built_in.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("Stage UC_WARMUP is not found"), "{stderr}");
}

#[test]
fn a_field_the_portal_file_does_not_list_fails_the_scenario_with_its_name() {
    let dir = rehearsal_folder(&WARM_UP.replace("UF_CRM_INN", "UF_CRM_INNN"));
    let output = rehearse(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr
            .contains("error: the portal has no deal field UF_CRM_INNN (did you mean UF_CRM_INN?)"),
        "{stderr}"
    );
    assert!(!stdout.contains("entered"), "nothing was created: {stdout}");
}

#[test]
fn a_broken_portal_file_exits_2_with_every_problem_at_its_position() {
    let dir = rehearsal_folder(WARM_UP);
    std::fs::write(
        dir.path().join("portal.toml"),
        "[[pipeline]]\nid = 0\nname = \"B2B\"\n\n[[pipeline.stage]]\nid = \"NEW\"\nname = \"New\"\nsemantic = \"won\"\n\n[[user]]\nid = 3\nname = \"Vera\"\ndepartments = [4]\n",
    )
    .expect("written");
    let output = rehearse(dir.path());
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    for line in [
        "error: portal.toml:8:1: unknown key \"semantic\" in [[pipeline.stage]] (did you mean \"semantics\"?)",
        "error: portal.toml:5:1: [[pipeline.stage]] needs \"semantics\"",
        "error: portal.toml:13:16: no department 4 in this file",
    ] {
        assert!(stderr.contains(line), "{line}\nin\n{stderr}");
    }
    assert_eq!(stdout, "", "the sandbox did not start");
}

#[tokio::test]
async fn the_control_api_answers_a_field_the_portal_file_does_not_list_with_422() {
    let dir = rehearsal_folder(WARM_UP);
    let args = ["--rules", &rules(), "--portal", "portal.toml"];
    let (mut child, base) = sandbox_child(dir.path(), &args).await;
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{base}/deals"))
        .json(&json!({"TITLE": "Acme", "STAGE_ID": "NEW", "UF_CRM_CHANELS": ["501"]}))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status().as_u16(), 422);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(
        body["error"],
        "the portal has no deal field UF_CRM_CHANELS (did you mean UF_CRM_CHANNELS?)"
    );
    let created = client
        .post(format!("{base}/deals"))
        .json(&json!({"TITLE": "Acme", "STAGE_ID": "UC_WARMUP", "UF_CRM_CHANNELS": ["501"]}))
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status().as_u16(), 201);
    let _ = child.kill();
    let _ = child.wait();
}

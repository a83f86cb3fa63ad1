//! Tools for integrators, run as the real binary: `test` (rule tests), `schema` (the JSON
//! Schema of rule files, checked with a small validator of the keywords it uses) and `sandbox`
//! (a scenario played against the simulated portal).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{poll, run_binary_in, sandbox_child, texts};

/// How long the sandbox may take to start, and to act.
const LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary in `cwd`, without the environment's `B24ROBOT__` settings.
fn run(cwd: &Path, args: &[&str]) -> Output {
    run_binary_in(cwd, args, &[])
}

#[test]
fn a_variable_that_is_not_utf8_in_the_environment_is_no_panic() {
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff");
    // An empty folder: no stray b24-robot.toml; the shipped rules through the environment.
    let cwd = tempfile::tempdir().expect("temp dir");
    let check = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_b24-robot"))
            .arg("check")
            .current_dir(cwd.path())
            .env("B24ROBOT__RULES__DIR", root().join("rules"))
            .env_remove("B24ROBOT__PORTAL__WEBHOOK_URL")
            .env(name, not_utf8)
            .output()
            .expect("the binary runs")
    };
    let output = check("UNRELATED_VAR");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");

    let output = check("B24ROBOT__LOG__LEVEL");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("environment variable B24ROBOT__LOG__LEVEL: not valid UTF-8"),
        "{stderr}"
    );
}

fn fixture(name: &str) -> String {
    root()
        .join("fixtures/rule-tests")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_shipped_rule_tests_pass_with_the_default_folders() {
    let output = run(&root(), &["test"]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    // Every case of the shipped tests ran and passed.
    let cases: usize = std::fs::read_dir(root().join("rules/tests"))
        .expect("rules/tests")
        .map(|entry| {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("file");
            text.lines().filter(|l| l.trim() == "[[case]]").count()
        })
        .sum();
    assert!(cases > 0, "the shipped tests have cases");
    assert!(
        stdout.ends_with(&format!("\n{cases} passed, 0 failed\n")),
        "{stdout}"
    );
}

#[test]
fn every_shipped_rule_is_covered_by_a_shipped_test() {
    let mut tests = String::new();
    for entry in std::fs::read_dir(root().join("rules/tests")).expect("rules/tests") {
        tests.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("file"));
    }
    let (rules, _) = b24_robot::rules::RuleSet::load_dir(&root().join("rules")).expect("rules");
    for rule in rules.rules() {
        assert!(
            tests.contains(&format!("rule = \"{}\"", rule.name())),
            "no test names rule {}",
            rule.name()
        );
    }
    // The time-driven ones too, but the digest: it composes what the others find, and
    // tests/it/control.rs shows it against the simulated portal.
    for (name, kind) in rules.controls().names() {
        if kind == b24_robot::rules::RuleKind::Digest {
            continue;
        }
        assert!(
            tests.contains(&format!("rule = \"{name}\"")),
            "no test names rule {name}"
        );
    }
}

#[test]
fn a_passing_rule_test_file_exits_0() {
    let rules = root().join("rules").display().to_string();
    let output = run(
        &root(),
        &["test", &fixture("passing.toml"), "--rules", &rules],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.ends_with("1 passed, 0 failed\n"), "{stdout}");
}

#[test]
fn a_failing_rule_test_prints_the_diff_field_by_field_and_exits_1() {
    let rules = root().join("rules").display().to_string();
    let file = fixture("failing.toml");
    let output = run(&root(), &["test", &file, "--rules", &rules]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    for line in [
        format!("FAIL {file}:5: case \"offer task\""),
        format!("  expected task from rule \"new-offer\" ({file}:12)"),
        "    title:".to_string(),
        "      expected \"Send the offer: Romashka LLC\"".to_string(),
        "      actual   \"Send the commercial offer: Romashka LLC\"".to_string(),
        "    deadline:".to_string(),
        "      expected 2026-12-02T18:00:00+03:00".to_string(),
        "      actual   2026-12-03T18:00:00+03:00".to_string(),
        format!("  expected no move_back from any rule ({file}:30)"),
        "    actual [new-contract-details] moved back to PREPARATION".to_string(),
        "    rule \"new-prepayment\": skipped: the deal was moved back by rule \"new-contract-details\"".to_string(),
        "0 passed, 2 failed".to_string(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in:\n{stdout}"
        );
    }
}

#[test]
fn an_invalid_rule_test_file_exits_2_with_positions_and_suggestions() {
    let rules = root().join("rules").display().to_string();
    let file = fixture("invalid.toml");
    let output = run(&root(), &["test", &file, "--rules", &rules]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: {file}:10:1: unknown key \"titel\" in a \"task\" expectation (did you mean \"title\"?)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: {file}:9:8: no rule named \"new-ofer\" (did you mean \"new-offer\"?)"
        )),
        "{stderr}"
    );
}

/// The control cases of `fixtures/rule-tests/control/tests` (SLA firings, overdue tasks, moved
/// deadlines, deals without a next step) against their own time-driven rules.
#[test]
fn control_cases_evaluate_the_time_driven_rules_at_their_moment() {
    let rules = root()
        .join("fixtures/rule-tests/control")
        .display()
        .to_string();
    // `check` counts the time-driven rules: an SLA, an overdue and a no-task rule.
    let output = run(&root(), &["check", "--rules", &rules]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("ok: 3 rule(s) in {rules}")),
        "{stdout}"
    );

    let output = run(&root(), &["test", "--rules", &rules]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.ends_with("\n8 passed, 0 failed\n"), "{stdout}");

    let file = fixture("control-invalid.toml");
    let output = run(&root(), &["test", &file, "--rules", &rules]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    for line in [
        format!(
            "error: {file}:5:1: \"now_in\" needs \"now\": it tells the deal at a moment (add now = \"2026-12-03T10:00:00+03:00\": the moment the control rules look at the deal)"
        ),
        format!(
            "error: {file}:13:32: unknown key \"dedline\" in a task of \"tasks\" (did you mean \"deadline\"?)"
        ),
        format!(
            "error: {file}:13:29: \"status\" 9 is not a task status (write status = 1 to 7 as REAL_STATUS: 1 new, 2 pending, 3 in progress (open), 4 awaiting control, 5 completed, 6 deferred, 7 declined)"
        ),
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "missing {line:?} in:\n{stderr}"
        );
    }
}

#[test]
fn dry_run_now_tells_the_slas_of_the_entry_and_nothing_without_it() {
    let rules = root()
        .join("fixtures/rule-tests/control")
        .display()
        .to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let deal = dir.path().join("deal.json");
    std::fs::write(
        &deal,
        r#"{"result": {"ID": "41", "TITLE": "Romashka", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0",
            "ASSIGNED_BY_ID": "3", "MOVED_TIME": "2026-12-01T10:00:00+03:00"}}"#,
    )
    .expect("deal file");
    let deal = deal.display().to_string();
    let args = [
        "dry-run", "--deal", &deal, "--from", "NEW", "--rules", &rules,
    ];
    let with_now = |now: &str| {
        let mut all = args.to_vec();
        all.extend(["--now", now]);
        run(dir.path(), &all)
    };
    let output = with_now("2026-12-03T12:00:00+03:00");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("# rule \"offer-sla\" (sla): first due at 2026-12-02T10:00:00+03:00, firing 2 of 3 has come\n"),
        "{stderr}"
    );
    assert_eq!(
        stdout.lines().count(),
        3,
        "two notices and a task: {stdout}"
    );
    assert!(
        stdout.contains("\"MESSAGE\":\"Romashka is late by 26 hours\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"TITLE\":\"Unblock Romashka\""),
        "{stdout}"
    );

    let output = with_now("2026-12-01T12:00:00+03:00");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "", "not due: no writes");
    assert!(
        stderr.contains(
            "# rule \"offer-sla\" (sla): not due yet, first due at 2026-12-02T10:00:00+03:00"
        ),
        "{stderr}"
    );

    let output = run(dir.path(), &args);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        ("", ""),
        "no --now: the stage entry alone"
    );

    let output = with_now("tomorrow");
    assert_eq!(
        output.status.code(),
        Some(2),
        "a bad --now is a usage error"
    );
}

// ----- schema -----

/// A validator for the JSON Schema keywords `b24-robot schema` uses (draft-07 subset):
/// `$ref` (local), `type`, `properties`, `additionalProperties`, `required`, `enum`, `items`,
/// `anyOf`, `allOf`, `propertyNames`, `minimum`, `minProperties`, `maxLength`. `pattern` is
/// not checked (no regex crate): the loader checks what it constrains.
fn validate(root: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let target = reference
            .strip_prefix("#/definitions/")
            .and_then(|name| root["definitions"].get(name))
            .unwrap_or_else(|| panic!("unresolved $ref {reference}"));
        validate(root, target, value, path, errors);
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let ok = names.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => false,
        });
        if !ok {
            errors.push(format!("{path}: {value} is not of type {types}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {options:?}"));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        errors.push(format!("{path}: {n} is less than {min}"));
    }
    if let (Some(max), Some(s)) = (
        schema.get("maxLength").and_then(Value::as_u64),
        value.as_str(),
    ) && s.chars().count() as u64 > max
    {
        errors.push(format!("{path}: longer than {max}"));
    }
    for all in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        validate(root, all, value, path, errors);
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let fits = any.iter().any(|s| {
            let mut e = Vec::new();
            validate(root, s, value, path, &mut e);
            e.is_empty()
        });
        if !fits {
            errors.push(format!("{path}: {value} matches none of the alternatives"));
        }
    }
    if let Some(items) = value.as_array()
        && let Some(item_schema) = schema.get("items")
    {
        for (i, item) in items.iter().enumerate() {
            validate(root, item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
    let Some(object) = value.as_object() else {
        return;
    };
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && (object.len() as u64) < min
    {
        errors.push(format!("{path}: fewer than {min} keys"));
    }
    for key in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !object.contains_key(key) {
            errors.push(format!("{path}: \"{key}\" is required"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    for (key, item) in object {
        let at = format!("{path}.{key}");
        if let Some(s) = properties.and_then(|p| p.get(key)) {
            validate(root, s, item, &at, errors);
            continue;
        }
        match schema.get("additionalProperties") {
            Some(Value::Bool(false)) => errors.push(format!("{at}: unknown key \"{key}\"")),
            Some(s @ Value::Object(_)) => validate(root, s, item, &at, errors),
            _ => {}
        }
    }
}

fn schema() -> Value {
    let output = run(&root(), &["schema"]);
    assert_eq!(output.status.code(), Some(0));
    serde_json::from_slice(&output.stdout).expect("the schema is JSON")
}

fn errors_of(schema: &Value, toml_text: &str) -> Vec<String> {
    let document: toml::Value = toml::from_str(toml_text).expect("TOML");
    let json = serde_json::to_value(document).expect("as JSON");
    let mut errors = Vec::new();
    validate(schema, schema, &json, "$", &mut errors);
    errors
}

#[test]
fn the_schema_accepts_every_shipped_rule_file_and_every_docs_example() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("rules")).expect("rules/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            let errors = errors_of(&schema, &text);
            assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
            checked += 1;
        }
    }
    // 10-new-clients, 20-repeat-clients, 30-outcomes, 40-control and 50-plans.
    assert_eq!(checked, 5);
    let docs = std::fs::read_to_string(root().join("docs/rules.md")).expect("docs");
    for (line, info, text) in fenced_blocks(&docs) {
        if info == "toml" {
            let errors = errors_of(&schema, &text);
            assert!(errors.is_empty(), "docs/rules.md:{line}: {errors:#?}");
        }
    }
}

/// The examples of control.md (the time-driven kinds), every key set.
const CONTROL_EXAMPLES: &str = r#"
pipeline = 1

[[sla]]
name = "offer-sla"
stage = "C1:OFFER"
within = "3 workdays"
notify = ["assigned", "supervisor"]
message = "{TITLE} has been in the offer stage for 3 workdays: {DEAL_URL}"
when = { OPPORTUNITY = { gte = 100000 } }
repeat = "1 workday"
max_repeats = 3
[sla.task]
title = "Unblock {TITLE}"
responsible = "supervisor"
deadline = { after = "1 workday" }
close_on_leave = "complete"

[[overdue]]
name = "overdue-tasks"
tasks = "rules"
notify = ["responsible", "supervisor"]
message = "Overdue since {TASK_DEADLINE}: {TASK_TITLE} ({TASK_URL}), deal {TITLE}"
grace = "0 minutes"
[overdue.deadline_moved]
notify = ["supervisor"]
message = "{TASK_TITLE}: deadline moved from {TASK_OLD_DEADLINE} to {TASK_DEADLINE}"

[[no_task]]
name = "deals-without-next-step"
stages = ["C1:NEW", "C1:OFFER"]
after = "4 hours"
notify = ["assigned"]
message = "{TITLE} has no open task: plan the next step ({DEAL_URL})"
count_activities = true

[[digest]]
name = "daily-control"
to = "supervisor"
at = ["09:30", "17:30"]
include = ["overdue-tasks", "deals-without-next-step", "offer-sla"]
send_empty = false
title = "Sales control, {DATE} {TIME}"
"#;

#[test]
fn the_schema_accepts_the_time_driven_kinds_and_refuses_their_wrong_words() {
    let schema = schema();
    assert_eq!(errors_of(&schema, CONTROL_EXAMPLES), Vec::<String>::new());
    let errors = errors_of(
        &schema,
        &CONTROL_EXAMPLES
            .replace("\"rules\"", "\"some\"")
            .replace("\"complete\"", "\"close\""),
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn the_schema_rejects_a_misspelt_key_and_a_wrong_enum_value() {
    let schema = schema();
    let errors = errors_of(
        &schema,
        r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
titel = "Offer: {TITLE}"
deadline = { after = "1 day" }

[[require]]
name = "details"
stage = "PREPARATION"
fields = ["UF_CRM_INN"]
on_missing = "revrt"
"#,
    );
    assert!(
        errors
            .iter()
            .any(|e| e == "$.task[0].titel: unknown key \"titel\""),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e == "$.task[0]: \"title\" is required"),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("$.require[0].on_missing: \"revrt\" is not one of")),
        "{errors:#?}"
    );
}

#[test]
fn the_schema_lists_every_key_the_loader_accepts() {
    // Every key is in a docs example that loads, and every example passes the schema; here,
    // the other way: every key of the schema is one the loader takes (a rule using it loads).
    let schema = schema();
    for kind in ["task", "require", "loss_reason", "nps", "tunnel"] {
        let props = schema["definitions"][kind]["properties"]
            .as_object()
            .expect("properties");
        assert!(
            props.contains_key("name") && props.contains_key("when"),
            "{kind}"
        );
        assert_eq!(
            schema["definitions"][kind]["additionalProperties"],
            Value::Bool(false),
            "{kind}"
        );
    }
    assert_eq!(
        schema["definitions"]["name"]["pattern"],
        "^[a-z0-9][a-z0-9_-]*$"
    );
}

/// `(line, info string, text)` of every fenced block of a markdown text.
fn fenced_blocks(markdown: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (current.take(), fence) {
            (None, Some(info)) => current = Some((i + 1, info.trim().to_string(), String::new())),
            (None, None) => {}
            (Some(block), Some(_)) => blocks.push(block),
            (Some(mut block), None) => {
                block.2.push_str(line);
                block.2.push('\n');
                current = Some(block);
            }
        }
    }
    blocks
}

#[test]
fn the_portal_file_example_of_the_docs_loads_and_seeds_a_portal() {
    let docs = std::fs::read_to_string(root().join("docs/rules.md")).expect("docs");
    let mut portals = 0;
    for (line, info, text) in fenced_blocks(&docs) {
        if info.split_whitespace().any(|w| w == "portal") {
            portals += 1;
            let name = format!("docs/rules.md:{line}");
            let file =
                b24_robot::sandbox::portal_file::parse_portal(&name, &text).unwrap_or_else(|e| {
                    panic!(
                        "{name}: {:#?}",
                        e.iter().map(ToString::to_string).collect::<Vec<_>>()
                    )
                });
            assert_eq!(file.pipelines.len(), 2, "{name}");
            assert!(file.fields.iter().any(|f| f.read_only), "{name}");
        }
    }
    assert_eq!(portals, 1, "one portal file example");
}

#[test]
fn the_rule_test_and_scenario_examples_of_the_docs_are_valid() {
    let docs = std::fs::read_to_string(root().join("docs/rules.md")).expect("docs");
    let rules = b24_robot::sandbox::seed::embedded_rules().expect("shipped rules");
    let (mut tests, mut scenarios) = (0, 0);
    // A `toml control-example` block is a rule file (check.rs loads it); the next
    // `toml rule-test control-example` block runs against it, not the shipped rules.
    let mut control = None;
    for (line, info, text) in fenced_blocks(&docs) {
        let name = format!("docs/rules.md:{line}");
        let words: Vec<&str> = info.split_whitespace().collect();
        if words.contains(&"control-example") && !words.contains(&"rule-test") {
            let source = [(name.clone(), text.clone())];
            control = Some(
                b24_robot::rules::RuleSet::from_sources(&source)
                    .expect("rules")
                    .0,
            );
            continue;
        }
        if words.contains(&"rule-test") {
            tests += 1;
            let rules = if words.contains(&"control-example") {
                control
                    .as_ref()
                    .expect("a control-example rule block comes first")
            } else {
                &rules
            };
            let file = b24_robot::commands::test::parse(&name, &text, rules).unwrap_or_else(|e| {
                panic!(
                    "{name}: {:#?}",
                    e.iter().map(ToString::to_string).collect::<Vec<_>>()
                )
            });
            let summary = b24_robot::commands::test::run(
                &file,
                rules,
                &b24_robot::calendar::Calendar::default(),
                (3, b24_robot::rules::Language::En),
            );
            assert_eq!(summary.failed, 0, "{name}: {:#?}", summary.failures);
        }
        if info.split_whitespace().any(|w| w == "scenario") {
            scenarios += 1;
            b24_robot::commands::sandbox::parse_scenario(&name, &text).unwrap_or_else(|e| {
                panic!(
                    "{name}: {:#?}",
                    e.iter().map(ToString::to_string).collect::<Vec<_>>()
                )
            });
        }
    }
    assert!(
        tests >= 1 && scenarios >= 1,
        "{tests} tests, {scenarios} scenarios"
    );
}

// ----- sandbox -----

#[test]
fn a_sandbox_scenario_prints_the_task_the_rules_make() {
    let scenario = root().join("fixtures/sandbox/offer.toml");
    let rules = root().join("rules");
    let cwd = tempfile::tempdir().expect("temp dir");
    let output = run(
        cwd.path(),
        &[
            "sandbox",
            "--rules",
            &rules.display().to_string(),
            "--scenario",
            &scenario.display().to_string(),
        ],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("  deal 1 \"Romashka LLC\" entered PREPARATION\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "    [new-offer] task \"Send the commercial offer: Romashka LLC\" responsible 3 deadline "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("    [new-contract-details] moved back to PREPARATION -> #"),
        "{stdout}"
    );
}

#[test]
fn a_broken_scenario_exits_2_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("s.toml");
    std::fs::write(&file, "[[step]]\nmvoe = \"x\"\n").expect("written");
    let rules = root().join("rules").display().to_string();
    let output = run(
        dir.path(),
        &[
            "sandbox",
            "--rules",
            &rules,
            "--scenario",
            &file.display().to_string(),
        ],
    );
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:2:1: unknown key \"mvoe\" in [[step]] (did you mean \"move\"?)",
            file.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_sandbox_control_api_creates_and_moves_deals_and_refuses_a_foreign_stage() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let rules = root().join("rules").display().to_string();
    let (mut child, base) = sandbox_child(cwd.path(), &["--rules", &rules]).await;
    let client = reqwest::Client::new();

    let created: serde_json::Value = client
        .post(format!("{base}/deals"))
        .json(&serde_json::json!({"TITLE": "Acme", "ASSIGNED_BY_ID": "3", "STAGE_ID": "NEW"}))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let id = created["id"].as_u64().expect("the new deal's id");
    let moved = client
        .post(format!("{base}/deals/{id}/move"))
        .json(&serde_json::json!({"stage": "PREPARATION"}))
        .send()
        .await
        .expect("answers");
    assert!(moved.status().is_success());
    poll(LIMIT, "the offer task in the sandbox", async || {
        let tasks: serde_json::Value = client
            .get(format!("{base}/tasks"))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        tasks
            .to_string()
            .contains("Send the commercial offer: Acme")
            .then_some(())
    })
    .await;
    let refused = client
        .post(format!("{base}/deals/{id}/move"))
        .json(&serde_json::json!({"stage": "C1:NEW"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        refused.status().as_u16(),
        422,
        "a stage of another pipeline is refused, not a crash"
    );
    let _ = child.kill();
    let _ = child.wait();
}

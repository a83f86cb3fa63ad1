//! Loading rules: every broken rule file gives the exact message an integrator reads, the
//! `check` command says so with exit code 1, and every example of `docs/rules.md` loads. And
//! what cannot happen cannot be asked for: a `dry-run --from`, or a rule test's `from`, of
//! another pipeline is a usage error (exit code 2).
//!
//! `fixtures/rules-broken/<problem>/` holds the rule file(s) of one problem and `expected.txt`,
//! the loader's diagnostics one per line with file names relative to the folder. After a
//! deliberate change of a message, `BLESS=1 cargo test --test it check::` rewrites them (then
//! read the diff).

use std::path::{Path, PathBuf};
use std::process::Command;

use b24_robot::rules::{Diagnostic, RuleSet, Severity};

fn broken_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rules-broken")
}

fn broken_folders() -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(broken_root())
        .expect("fixtures/rules-broken exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    folders
}

/// The diagnostics' Display text with the folder's path taken off every file name (`load_dir`
/// names files by their path: `<dir>/rules.toml`, also inside messages such as "first defined
/// at").
fn rendered(dir: &Path, diagnostics: &[Diagnostic]) -> String {
    let prefix = format!("{}{}", dir.display(), std::path::MAIN_SEPARATOR);
    diagnostics
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_broken_rule_folder_gives_exactly_its_expected_messages() {
    let folders = broken_folders();
    assert!(
        folders.len() >= 13,
        "fixtures/rules-broken has {} folders",
        folders.len()
    );
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for dir in &folders {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let diagnostics = match RuleSet::load_dir(dir) {
            Ok((set, warnings)) => {
                failures.push(format!(
                    "{name}: loaded {} rule(s) (warnings: {warnings:?})",
                    set.len()
                ));
                continue;
            }
            Err(diagnostics) => diagnostics,
        };
        assert!(
            diagnostics.iter().any(|d| d.severity == Severity::Error),
            "{name}: Err without an error: {diagnostics:?}"
        );
        let actual = rendered(dir, &diagnostics);
        let expected_path = dir.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, format!("{actual}\n")).expect("expected.txt written");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if expected.trim_end() != actual {
            failures.push(format!(
                "{name}:\n--- expected\n{}\n--- actual\n{actual}",
                expected.trim_end()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_expected_message_has_the_file_line_column_format() {
    for dir in broken_folders() {
        let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
        for line in expected.lines() {
            let mut parts = line.splitn(4, ':');
            let file = parts.next().unwrap_or_default();
            let row = parts.next().unwrap_or_default();
            let column = parts.next().unwrap_or_default();
            assert!(file.ends_with(".toml"), "{}: {line}", dir.display());
            assert!(
                row.parse::<usize>().is_ok_and(|r| r > 0),
                "{}: no line in {line}",
                dir.display()
            );
            assert!(
                column.parse::<usize>().is_ok_and(|c| c > 0),
                "{}: no column in {line}",
                dir.display()
            );
            assert!(
                dir.join(file).is_file(),
                "{}: {line} names a file that is not in the folder",
                dir.display()
            );
        }
    }
}

/// Runs the real binary in an empty folder (no stray `b24-robot.toml`) with the rules folder
/// given through the environment.
fn run_check(rules_dir: &Path) -> std::process::Output {
    let cwd = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_b24-robot"))
        .arg("check")
        .current_dir(cwd.path())
        .env("B24ROBOT__RULES__DIR", rules_dir)
        .env_remove("B24ROBOT__PORTAL__WEBHOOK_URL")
        .output()
        .expect("the binary runs")
}

#[test]
fn the_check_command_fails_with_the_message_on_a_broken_folder() {
    let dir = broken_root().join("misspelt-key");
    let output = run_check(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    let expected = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    for line in expected.lines() {
        let full = format!(
            "error: {}{}{line}",
            dir.display(),
            std::path::MAIN_SEPARATOR
        );
        assert!(
            stderr.lines().any(|l| l == full),
            "missing {full:?} in stderr:\n{stderr}"
        );
    }
}

#[test]
fn the_check_command_warns_of_a_cycle_only_the_portal_can_confirm_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("archive.toml"),
        "[[tunnel]]\nname = \"archive\"\nstage = \"lost\"\nto_pipeline = 2\nto_stage = \"C2:UC_ARCHIVE\"\n",
    )
    .expect("rules written");
    let output = run_check(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("rule \"archive\": possible tunnel cycle: archive (lost in any pipeline → C2:UC_ARCHIVE)"),
        "{stderr}"
    );
}

#[test]
fn the_check_command_warns_of_a_misspelt_stage_with_the_nearest_code_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("sales.toml"),
        "[[task]]\nname = \"docs\"\npipeline = [0, 2]\nstage = \"PREPARATON\"\ntitle = \"Docs\"\ndeadline = { after = \"1 day\" }\n",
    )
    .expect("rules written");
    let output = run_check(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("warning: ") && l.ends_with("sales.toml:4:9: rule \"docs\": stage \"PREPARATON\" is not a standard Bitrix24 stage (did you mean \"PREPARATION\"? if the portal has this stage, b24-robot check --portal confirms it)")),
        "{stderr}"
    );
}

/// The binary with `args`, in an empty folder, without `B24ROBOT__` settings.
fn run_binary(args: &[&str]) -> std::process::Output {
    let cwd = tempfile::tempdir().expect("temp dir");
    crate::helpers::run_binary_in(cwd.path(), args, &[])
}

#[test]
fn a_dry_run_from_a_stage_of_another_pipeline_exits_2_naming_the_valid_stages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deal = dir.path().join("deal.json");
    std::fs::write(
        &deal,
        r#"{"result": {"ID": "5", "TITLE": "Acme", "STAGE_ID": "PREPARATION", "CATEGORY_ID": "0", "ASSIGNED_BY_ID": "3"}}"#,
    )
    .expect("deal written");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let (deal, rules) = (deal.display().to_string(), rules.display().to_string());
    let dry_run = |from: &str| {
        run_binary(&[
            "dry-run", "--deal", &deal, "--from", from, "--rules", &rules,
        ])
    };
    let output = dry_run("C1:NEW");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "no write is planned: {stdout}");
    assert!(
        stderr.contains("error: --from \"C1:NEW\" is a stage of pipeline 1, but the deal is in pipeline 0: a deal is never moved back across pipelines (give a stage of pipeline 0, without a \"C<n>:\" prefix: NEW, PREPARATION,"),
        "{stderr}"
    );
    let output = dry_run("NEW");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_rule_test_whose_from_is_in_another_pipeline_is_an_invalid_file_exiting_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cross.toml");
    std::fs::write(
        &file,
        "[[case]]\nname = \"revert across pipelines\"\nstage = \"C1:NEW\"\nfrom = \"PREPARATION\"\ndeal = { TITLE = \"Acme\" }\nexact = true\n",
    )
    .expect("test written");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let (file, rules) = (file.display().to_string(), rules.display().to_string());
    let output = run_binary(&["test", &file, "--rules", &rules]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("error: {file}:4:8: \"from\" stage \"PREPARATION\" is in pipeline 0, but the case's deal is in pipeline 1 (a deal is never moved back across pipelines: write a stage of pipeline 1 (C1:NEW,")),
        "{stderr}"
    );
}

#[test]
fn the_check_command_accepts_the_shipped_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let output = run_check(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    // One line naming the rules it loaded, the folder and the version; not a warning.
    let (set, warnings) = RuleSet::load_dir(&dir).expect("the shipped rules load");
    assert!(warnings.is_empty(), "{warnings:?}");
    // 12 stage-entry rules, the 5 time-driven ones of 40-control.toml and the 4 plans of
    // 50-plans.toml.
    assert_eq!(set.rules().len(), 12);
    assert_eq!(set.controls().names().len(), 5);
    assert_eq!(set.plans().len(), 4);
    assert_eq!(set.len(), 21, "every rule counts");
    assert_eq!(
        stdout,
        format!(
            "ok: 21 rule(s) in {}, version {}\n",
            dir.display(),
            set.version()
        )
    );
    assert_eq!(stderr, "", "nothing to warn of");
}

/// A fenced block of `docs/rules.md`: its info string and text, and the line it starts on.
struct Block {
    info: String,
    text: String,
    line: usize,
}

fn toml_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match current.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let info = info.trim().to_string();
                    current = Some(Block {
                        info,
                        text: String::new(),
                        line: i + 1,
                    });
                }
            }
            Some(mut block) => {
                if trimmed.starts_with("```") {
                    // `toml rule-test`, `toml scenario` and `toml portal` blocks are not rule
                    // files: tools.rs checks them.
                    let mut words = block.info.split_whitespace();
                    if words.next() == Some("toml")
                        && !words.any(|w| w == "rule-test" || w == "scenario" || w == "portal")
                    {
                        blocks.push(block);
                    }
                } else {
                    block.text.push_str(line);
                    block.text.push('\n');
                    current = Some(block);
                }
            }
        }
    }
    assert!(
        current.is_none(),
        "docs/rules.md has an unclosed code fence"
    );
    blocks
}

#[test]
fn every_toml_example_in_the_docs_loads_and_every_broken_one_fails() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rules.md");
    let markdown = std::fs::read_to_string(&path).expect("docs/rules.md exists");
    let blocks = toml_blocks(&markdown);
    let (mut good, mut broken) = (0, 0);
    for block in &blocks {
        let name = format!("docs/rules.md:{}", block.line);
        let result = RuleSet::from_sources(&[(name.clone(), block.text.clone())]);
        if block.info.split_whitespace().any(|w| w == "broken") {
            broken += 1;
            let errors = result
                .err()
                .unwrap_or_else(|| panic!("{name}: marked broken, but it loads"));
            assert!(
                errors.iter().any(|d| d.severity == Severity::Error),
                "{name}: {errors:?}"
            );
            // A broken example says, in a comment, the message it gives: keep them in step.
            for expected in block
                .text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("# error: "))
            {
                assert!(
                    errors.iter().any(|d| d.to_string().contains(expected)),
                    "{name}: no error contains {expected:?}: {:#?}",
                    errors.iter().map(ToString::to_string).collect::<Vec<_>>()
                );
            }
        } else {
            good += 1;
            match result {
                Ok((set, warnings)) => {
                    // A block of only top-level keys is a fragment (config-like); rules are expected elsewhere.
                    let fragment = warnings
                        .iter()
                        .any(|w| w.message.contains("defines no rules"));
                    // Time-driven rules alone are rules too (an [[sla]], a [[digest]],
                    // `control-example` blocks).
                    let rules = !set.is_empty();
                    assert!(rules || fragment, "{name}: loads no rules");
                }
                Err(errors) => panic!(
                    "{name}: the example does not load:\n{}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }
    assert!(good >= 10, "docs/rules.md has only {good} loading examples");
    assert!(
        broken >= 3,
        "docs/rules.md has only {broken} broken examples"
    );
}

/// The workday table of `docs/rules.md`, computed by the calendar the service uses (the default
/// one: Monday to Friday, 09:00-18:00, Europe/Moscow).
#[test]
fn the_deadline_examples_of_the_docs_hold() {
    use b24_robot::calendar::{Calendar, Period, PeriodUnit};
    use chrono::{DateTime, NaiveDate, NaiveTime};

    let cal = Calendar::default();
    let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("a moment");
    let period = |amount, unit| Period { amount, unit };
    let workdays = |n| period(n, PeriodUnit::Workdays);
    // Friday 17:00 + 2 workdays = Tuesday 17:00.
    assert_eq!(
        cal.add(at("2026-11-27T17:00:00+03:00"), workdays(2)),
        at("2026-12-01T17:00:00+03:00")
    );
    // Saturday 11:00 + 1 workday = Tuesday 09:00.
    assert_eq!(
        cal.add(at("2026-11-28T11:00:00+03:00"), workdays(1)),
        at("2026-12-01T09:00:00+03:00")
    );
    // Wednesday 20:00 + 1 workday = Friday 09:00.
    assert_eq!(
        cal.add(at("2026-11-25T20:00:00+03:00"), workdays(1)),
        at("2026-11-27T09:00:00+03:00")
    );
    // Monday 10:00 + 2 workdays, time 18:00 = Wednesday 18:00.
    let six = NaiveTime::from_hms_opt(18, 0, 0).expect("a time");
    assert_eq!(
        cal.with_time(cal.add(at("2026-11-23T10:00:00+03:00"), workdays(2)), six),
        at("2026-11-25T18:00:00+03:00")
    );
    // A date field: the end of working hours that day; 2 workdays before Friday 14 June 2030.
    let event = cal.end_of_day(NaiveDate::from_ymd_opt(2030, 6, 14).expect("a date"));
    assert_eq!(event, at("2030-06-14T18:00:00+03:00"));
    assert_eq!(
        cal.subtract(event, workdays(2)),
        at("2030-06-12T18:00:00+03:00")
    );
    // Days keep the wall-clock time; hours are elapsed time.
    assert_eq!(
        cal.add(at("2026-11-27T17:00:00+03:00"), period(2, PeriodUnit::Days)),
        at("2026-11-29T17:00:00+03:00")
    );
    assert_eq!(
        cal.add(
            at("2026-11-27T16:30:00+03:00"),
            period(3, PeriodUnit::Hours)
        ),
        at("2026-11-27T19:30:00+03:00")
    );
}

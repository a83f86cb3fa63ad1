//! `b24-robot test [DIR]`: integrator-written rule tests, like `promtool test rules`.
//!
//! A test file (TOML) holds cases: a deal as `crm.deal.get` returns it, the stage it enters, and
//! the effects expected (or not expected). Each case is evaluated offline with the pure
//! [`rules::evaluate`](crate::rules::evaluate) and rendered into REST calls by the worker's own
//! [`plan`], so a test sees exactly the titles, people and deadlines the service would write.
//! What only the portal knows (field labels, list options, supervisors) is given in the file,
//! so results are the same on every machine.
//!
//! A file may pin its `[calendar]` (the config's keys); without one the config's calendar is
//! used.
//!
//! Test files are user input like rule files: strict (unknown keys are errors, with a
//! suggestion), every problem reported at once as `file:line:col: ...`.

mod calendar;
mod control;
mod facts;
mod file;
mod run;

pub use file::{TestFile, parse};
use run::run_case;

use std::path::{Path, PathBuf};

use super::{CommandError, CommandResult, load_rules};
use crate::calendar::Calendar;
use crate::commands::output::{out, outln};
use crate::rules::{Language, RuleSet};

/// The result of a whole run, for the command and for tests.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// One report per failed case, ready to print.
    pub failures: Vec<String>,
}

/// Runs every case of `file` (`max_tunnel_depth`: `rules.max_tunnel_depth` of the config;
/// `language`: its `portal.language`, unless the file sets its own), in the file's own
/// `[calendar]` if it has one, else in `calendar` (the config's).
pub fn run(
    file: &TestFile,
    rules: &RuleSet,
    calendar: &Calendar,
    (max_tunnel_depth, language): (u32, Language),
) -> Summary {
    let calendar = file.calendar.as_ref().unwrap_or(calendar);
    let mut summary = Summary::default();
    let language = file.language.unwrap_or(language);
    for case in &file.cases {
        match run_case(
            &file.name,
            case,
            rules,
            (calendar, max_tunnel_depth, language),
        ) {
            None => summary.passed += 1,
            Some(report) => {
                summary.failed += 1;
                summary.failures.push(format!(
                    "FAIL {}:{}: case \"{}\"\n{report}",
                    file.name, case.line, case.name
                ));
            }
        }
    }
    summary
}

/// The `*.toml` files of a folder, in name order (or the file itself).
pub fn test_files(path: &Path) -> Result<Vec<std::path::PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let listing =
        std::fs::read_dir(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut files: Vec<_> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `b24-robot test`: 0 all passed, 1 a case failed (or the rules do not load), 2 a test file
/// is unreadable or invalid.
/// Without a path, the tests are `tests` in the rules folder (of `--rules`, else of the config).
pub fn command(
    config: Option<PathBuf>,
    path: Option<PathBuf>,
    rules_dir: Option<PathBuf>,
) -> CommandResult {
    let settings = super::load_settings_for_rules(config, rules_dir)?;
    let path = path.unwrap_or_else(|| settings.rules.dir.join("tests"));
    let path = path.as_path();
    let rules = load_rules(&settings)
        .map_err(|_| CommandError::Failed("the rules do not load: no test was run".into()))?;
    run_files(
        path,
        &rules,
        &settings.calendar,
        (settings.rules.max_tunnel_depth, settings.portal.language),
    )
}

/// Runs every test file under `path` against `rules`, printing each file's result, the
/// failures' diffs and the totals.
pub fn run_files(
    path: &Path,
    rules: &RuleSet,
    calendar: &Calendar,
    settings: (u32, Language),
) -> CommandResult {
    let files = test_files(path).map_err(|e| CommandError::Usage(e.to_string()))?;
    if files.is_empty() {
        return Err(CommandError::Usage(format!(
            "{}: no *.toml test files",
            path.display()
        )));
    }
    let mut parsed = Vec::new();
    let mut invalid = false;
    for path in files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {name}: cannot read the file: {e}");
                invalid = true;
                continue;
            }
        };
        match parse(&name, &text, rules) {
            Ok(file) => parsed.push(file),
            Err(diagnostics) => {
                invalid = true;
                for d in diagnostics {
                    eprintln!("error: {d}");
                }
            }
        }
    }
    if invalid {
        return Err(CommandError::Usage(
            "invalid test files: no test was run".into(),
        ));
    }
    let mut total = Summary::default();
    for file in &parsed {
        let summary = run(file, rules, calendar, settings);
        outln!(
            "{}: {} case(s), {} failed",
            file.name,
            file.len(),
            summary.failed
        );
        total.passed += summary.passed;
        total.failed += summary.failed;
        total.failures.extend(summary.failures);
    }
    for failure in &total.failures {
        outln!();
        out!("{failure}");
    }
    outln!();
    outln!("{} passed, {} failed", total.passed, total.failed);
    if total.failed == 0 {
        Ok(())
    } else {
        Err(CommandError::Found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
title = "Offer: {TITLE}"
auditors = ["supervisor"]
deadline = { after = "1 day" }
"#;

    fn rules() -> RuleSet {
        RuleSet::from_sources(&[("r.toml".into(), RULES.into())])
            .expect("rules load")
            .0
    }

    const SUPERVISORS: &str = "supervisors = { 3 = 2 }";

    const GOOD: &str = r#"
supervisors = { 3 = 2 }

[[case]]
name = "offer task"
stage = "PREPARATION"
from = "NEW"
moved_time = "2026-12-01T10:00:00+03:00"
deal = { TITLE = "Acme", ASSIGNED_BY_ID = 3 }

[[case.expect]]
kind = "task"
rule = "offer"
title = "Offer: Acme"
responsible = 3
auditors = [2]
deadline = "2026-12-02T10:00:00+03:00"
"#;

    #[test]
    fn a_matching_expectation_passes() {
        let file = parse("t.toml", GOOD, &rules()).expect("valid");
        let summary = run(&file, &rules(), &Calendar::default(), (3, Language::En));
        assert_eq!((summary.passed, summary.failed), (1, 0), "{:?}", summary);
    }

    const GATE: &str = r#"
pipeline = 0
[[require]]
name = "inn"
stage = "PREPAYMENT_INVOICE"
fields = ["UF_CRM_INN"]
"#;

    /// A case of the `inn` gate moving a deal back, expecting `comment` and written for
    /// `language` (none: the config's), with the stage names of `stages`.
    fn gate_case(language: &str, stages: &str, comment: &str) -> String {
        format!(
            r#"{language}
{stages}
[fields.UF_CRM_INN]
label = "ИНН"

[[case]]
name = "no INN"
stage = "PREPAYMENT_INVOICE"
from = "PREPARATION"
deal = {{ ID = 5, TITLE = "Acme", ASSIGNED_BY_ID = 3 }}

[[case.expect]]
kind = "comment"
text = "{comment}"
"#
        )
    }

    /// `test_file` with a `[calendar]` of `lines` at line 2 (its keys from line 3).
    fn with_calendar(lines: &str, test_file: &str) -> String {
        format!(
            "{SUPERVISORS}\n[calendar]\n{lines}\n{}",
            test_file.replace(SUPERVISORS, "")
        )
    }

    #[test]
    fn a_test_file_may_set_the_language_and_name_the_stages() {
        let (rules, _) =
            RuleSet::from_sources(&[("r.toml".into(), GATE.into())]).expect("rules load");
        let russian = "Чтобы перевести сделку на эту стадию, заполните поля: ИНН. Сделка возвращена на стадию «Подготовка документов».";
        let named = "[stages]\nPREPARATION = \"Подготовка документов\"";
        let english = "Fill in ИНН before moving the deal to this stage. The deal was moved back to PREPARATION.";
        for (language, stages, comment, config) in [
            ("", named, russian, Language::Ru),
            ("language = \"ru\"", named, russian, Language::En),
            ("language = \"en\"", "", english, Language::Ru),
        ] {
            let text = gate_case(language, stages, comment);
            let file = parse("t.toml", &text, &rules).expect("valid");
            let summary = run(&file, &rules, &Calendar::default(), (3, config));
            assert_eq!(summary.failed, 0, "{language}: {:?}", summary.failures);
        }
        let errors = parse(
            "t.toml",
            &gate_case("language = \"de\"", "", english),
            &rules,
        )
        .expect_err("not a language");
        assert_eq!(
            errors[0].to_string(),
            "t.toml:1:12: \"language\" must be \"ru\" or \"en\" (write language = \"ru\" (or \"en\"), as portal.language of the config)"
        );
    }

    #[test]
    fn the_files_calendar_wins_over_the_configs() {
        let text = with_calendar(
            "timezone = \"Asia/Vladivostok\"",
            &GOOD.replace("2026-12-02T10:00:00+03:00", "2026-12-02T17:00:00+10:00"),
        );
        let file = parse("t.toml", &text, &rules()).expect("valid");
        let moscow = Calendar::default();
        let summary = run(&file, &rules(), &moscow, (3, Language::En));
        assert_eq!((summary.passed, summary.failed), (1, 0), "{:?}", summary);
    }

    #[test]
    fn a_bad_calendar_in_a_test_file_is_reported_at_its_values() {
        let text = with_calendar(
            "timezone = \"Mars/Olympus\"\nhours = \"9-18\"\nworkdays = [\"mon\", 2]\ncolour = 1",
            GOOD,
        );
        let errors = parse("t.toml", &text, &rules()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "t.toml:6:1: unknown key \"colour\" in [calendar] (allowed keys: timezone, workdays, hours, holidays)",
                "t.toml:5:20: each of \"workdays\" must be a string, found an integer (write workdays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"])",
            ]
        );
        let text = with_calendar("timezone = \"Mars/Olympus\"\nhours = \"9-18\"", GOOD);
        let errors = parse("t.toml", &text, &rules()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "t.toml:3:12: calendar.timezone: \"Mars/Olympus\" is not an IANA time zone (e.g. \"Europe/Moscow\")",
                "t.toml:4:9: calendar.hours: \"9-18\" is not a range of hours such as \"09:00-18:00\"",
            ]
        );
    }

    #[test]
    fn a_wrong_title_fails_with_expected_and_actual() {
        let text = GOOD.replace("title = \"Offer: Acme\"", "title = \"Offer to Acme\"");
        let file = parse("t.toml", &text, &rules()).expect("valid");
        let summary = run(&file, &rules(), &Calendar::default(), (3, Language::En));
        assert_eq!(summary.failed, 1);
        let report = &summary.failures[0];
        assert!(
            report.contains("FAIL t.toml:4: case \"offer task\""),
            "{report}"
        );
        assert!(report.contains("expected \"Offer to Acme\""), "{report}");
        assert!(report.contains("actual   \"Offer: Acme\""), "{report}");
    }

    #[test]
    fn unknown_keys_and_rules_are_reported_with_their_position_and_a_suggestion() {
        let text = GOOD
            .replace("rule = \"offer\"", "rule = \"ofer\"")
            .replace("title = \"Offer: Acme\"", "titel = \"Offer: Acme\"");
        let errors = parse("t.toml", &text, &rules()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("t.toml:14:1: unknown key \"titel\"")
                    && e.contains("did you mean \"title\"?")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|e| e.starts_with("t.toml:13:8: no rule named \"ofer\"")),
            "{shown:?}"
        );
    }

    const SLA: &str = r#"
pipeline = 0
[[sla]]
name = "offer-sla"
stage = "PREPARATION"
within = "1 workday"
notify = ["assigned"]
"#;

    /// A control case of the `offer-sla` rule with `keys` (from line 5).
    fn control_case(keys: &str) -> String {
        format!(
            "[[case]]\nname = \"sla\"\nstage = \"PREPARATION\"\ndeal = {{ ASSIGNED_BY_ID = 3 }}\n{keys}\nexact = true\n"
        )
    }

    #[test]
    fn a_control_case_needs_its_entry_and_a_now_after_it() {
        let (rules, _) =
            RuleSet::from_sources(&[("r.toml".into(), SLA.into())]).expect("rules load");
        for (keys, expected) in [
            (
                "now = \"2026-12-03T10:00:00+03:00\"",
                "t.toml:5:7: a case with \"now\" has no moved_time (nor a MOVED_TIME in its deal) (add moved_time = \"2026-12-01T10:00:00+03:00\": the SLA and no-task rules count from the stage entry)",
            ),
            (
                "moved_time = \"2026-12-01T10:00:00+03:00\"\nnow = \"2026-11-30T10:00:00+03:00\"",
                "t.toml:6:7: \"now\" 2026-11-30T10:00:00+03:00 is before the stage entry 2026-12-01T10:00:00+03:00 (write a \"now\" after moved_time: the moment the control rules look at the deal)",
            ),
            (
                "moved_time = \"2026-12-01T10:00:00+03:00\"\nnow = \"soon\"",
                "t.toml:6:7: \"now\" must be a moment with its offset (write now = \"2026-12-01T10:00:00+03:00\")",
            ),
            (
                "activities = 1",
                "t.toml:5:1: \"activities\" needs \"now\": it tells the deal at a moment (add now = \"2026-12-03T10:00:00+03:00\": the moment the control rules look at the deal)",
            ),
        ] {
            let errors = parse("t.toml", &control_case(keys), &rules).expect_err(keys);
            let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(shown, vec![expected.to_string()], "{keys}");
        }
    }

    #[test]
    fn a_control_case_fails_when_the_sla_is_not_due_and_says_when_it_is() {
        let (rules, _) =
            RuleSet::from_sources(&[("r.toml".into(), SLA.into())]).expect("rules load");
        let keys = "moved_time = \"2026-12-01T10:00:00+03:00\"\nnow = \"2026-12-01T12:00:00+03:00\"\nexpect = [{ kind = \"notify\", rule = \"offer-sla\", user = 3 }]";
        let file = parse("t.toml", &control_case(keys), &rules).expect("valid");
        let summary = run(&file, &rules, &Calendar::default(), (3, Language::En));
        assert_eq!(summary.failed, 1);
        let report = &summary.failures[0];
        assert!(
            report.contains("    no such effect was made\n    rule \"offer-sla\": not due yet at 2026-12-01T12:00:00+03:00 (first due 2026-12-02T10:00:00+03:00)\n"),
            "{report}"
        );
        let due = keys.replace("2026-12-01T12:00", "2026-12-02T11:00");
        let file = parse("t.toml", &control_case(&due), &rules).expect("valid");
        let summary = run(&file, &rules, &Calendar::default(), (3, Language::En));
        assert_eq!(summary.failed, 0, "{:?}", summary.failures);
    }

    #[test]
    fn a_from_stage_of_another_pipeline_makes_the_test_file_invalid() {
        let text = GOOD.replace("from = \"NEW\"", "from = \"C1:NEW\"");
        let errors = parse("t.toml", &text, &rules()).expect_err("invalid");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "t.toml:7:8: \"from\" stage \"C1:NEW\" is in pipeline 1, but the case's deal is in pipeline 0 (a deal is never moved back across pipelines: write a stage of pipeline 0 (NEW, PREPARATION, PREPAYMENT_INVOICE, EXECUTING, FINAL_INVOICE, WON, LOSE, APOLOGY), or leave \"from\" out when the deal came from another pipeline)"
            ]
        );
    }
}

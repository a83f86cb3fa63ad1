//! One duration syntax (Russian included) in the rules and the config, and rule tests that pin
//! their own `[calendar]` so the `b24-robot.toml` of the current folder does not change them.

use crate::helpers::{run_binary_in as run_in, texts};

const RULES: &str = r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
title = "Offer: {TITLE}"
deadline = { after = "2 рабочих дня" }
"#;

/// Tuesday 10:00 in Moscow is 17:00 in Vladivostok, within working hours there: two working
/// days later is Thursday 17:00 +10:00.
const CASE: &str = r#"
[[case]]
name = "offer task"
stage = "PREPARATION"
moved_time = "2026-12-01T10:00:00+03:00"
deal = { TITLE = "Acme" }
expect = [{ kind = "task", rule = "offer", deadline = "2026-12-03T17:00:00+10:00" }]
"#;

/// A config in the current folder whose calendar and durations differ from the test file's.
const CONFIG: &str = r#"
[calendar]
timezone = "Europe/London"

[sync]
poll_interval = "2 минуты"
"#;

/// A work folder with the config, `client-rules/10-offer.toml` and the test file `test`.
fn work(test: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("client-rules");
    std::fs::create_dir_all(rules.join("tests")).expect("folders");
    std::fs::write(dir.path().join("b24-robot.toml"), CONFIG).expect("config written");
    std::fs::write(rules.join("10-offer.toml"), RULES).expect("rules written");
    std::fs::write(rules.join("tests/offer.toml"), test).expect("test written");
    dir
}

#[test]
fn russian_durations_load_in_the_rules_and_the_config() {
    let work = work(CASE);
    let output = run_in(work.path(), &["check", "--rules", "client-rules"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
}

#[test]
fn a_test_files_calendar_wins_over_the_config_in_the_current_folder() {
    let pinned = work(&format!(
        "[calendar]\ntimezone = \"Asia/Vladivostok\"\n{CASE}"
    ));
    let output = run_in(pinned.path(), &["test", "--rules", "client-rules"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");

    // Without it the config's calendar (London) counts: the same expectation fails.
    let unpinned = work(CASE);
    let output = run_in(unpinned.path(), &["test", "--rules", "client-rules"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("2026-12-03T09:00:00+00:00"), "{stdout}");
}

#[test]
fn a_bad_calendar_in_a_test_file_exits_2_at_its_position() {
    let work = work(&format!(
        "[calendar]\ntimezone = \"Asia/Vladivostk\"\n{CASE}"
    ));
    let output = run_in(work.path(), &["test", "--rules", "client-rules"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "error: client-rules/tests/offer.toml:2:12: calendar.timezone: \"Asia/Vladivostk\" is not an IANA time zone (e.g. \"Europe/Moscow\")"
        ),
        "{stderr}"
    );
}

//! What an integrator meets writing a client's rules: one version for the same files however the
//! folder is spelled, one way to point at rules (`--rules`), the rule tests found in the rules
//! folder, and a `check --portal` whose "ok" means the portal was asked.

use std::path::Path;

use b24_robot::rules::RuleSet;
use b24_robot::sandbox::{SimConfig, SimPortal};

use crate::helpers::{run_binary_in as run_in, texts};

const RULES: &str = r#"
pipeline = 0
[[task]]
name = "offer"
stage = "PREPARATION"
title = "Offer: {TITLE}"
deadline = { after = "1 day" }
"#;

const TEST: &str = r#"
[[case]]
name = "offer task"
stage = "PREPARATION"
deal = { TITLE = "Acme" }
expect = [{ kind = "task", rule = "offer", title = "Offer: Acme" }]
"#;

/// A work folder holding `client-rules/10-offer.toml` and its tests in `client-rules/tests/`.
fn client_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("client-rules");
    std::fs::create_dir_all(rules.join("tests")).expect("folders");
    std::fs::write(rules.join("10-offer.toml"), RULES).expect("rules written");
    std::fs::write(rules.join("tests/offer.toml"), TEST).expect("test written");
    dir
}

#[test]
fn the_rules_version_is_the_same_however_the_folder_is_spelled() {
    let work = client_folder();
    let absolute = work.path().join("client-rules");
    let version = |dir: &Path| {
        RuleSet::load_dir(dir)
            .expect("loads")
            .0
            .version()
            .to_string()
    };
    let expected = RuleSet::from_sources(&[("10-offer.toml".into(), RULES.into())])
        .expect("loads")
        .0
        .version()
        .to_string();
    assert_eq!(version(&absolute), expected);
    assert_eq!(version(&absolute.join(".")), expected);
    assert_eq!(version(&work.path().join("./client-rules/")), expected);

    // `check` prints it, whichever spelling the integrator used.
    for spelling in ["client-rules", "./client-rules", "client-rules/"] {
        let output = run_in(work.path(), &["check", "--rules", spelling], &[]);
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(
            stdout.contains(&format!("version {expected}")),
            "{spelling}: {stdout}"
        );
    }
}

#[test]
fn check_takes_the_rules_folder_like_the_other_commands() {
    let work = client_folder();
    let output = run_in(work.path(), &["check", "--rules", "client-rules"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("ok: 1 rule(s) in client-rules, version "),
        "{stdout}"
    );
    // Without it, the config's folder (here the default `rules`, which does not exist).
    let output = run_in(work.path(), &["check"], &[]);
    assert_eq!(output.status.code(), Some(1), "{:?}", texts(&output));
}

#[test]
fn the_rule_tests_default_to_the_tests_folder_of_the_rules_folder() {
    let work = client_folder();
    // Through --rules, and through the config's rules.dir: never a literal `rules/tests`.
    let output = run_in(work.path(), &["test", "--rules", "client-rules"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.ends_with("\n1 passed, 0 failed\n"), "{stdout}");
    let output = run_in(
        work.path(),
        &["test"],
        &[("B24ROBOT__RULES__DIR", "client-rules")],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.ends_with("client-rules/tests/offer.toml: 1 case(s), 0 failed"),
        "{stdout}"
    );
}

/// Real threads: the simulated portal answers on the runtime while the binary runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_the_portal_says_ok_only_after_the_portal_confirmed_every_name() {
    let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
    b24_robot::sandbox::seed::seed_portal(&sim);
    let work = client_folder();
    let url = sim.webhook_url();
    let check = |rules: &'static str| {
        let (cwd, url) = (work.path().to_path_buf(), url.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::write(cwd.join("client-rules/10-offer.toml"), rules).expect("rules");
            run_in(
                &cwd,
                &["check", "--portal", "--rules", "client-rules"],
                &[("B24ROBOT__PORTAL__WEBHOOK_URL", &url)],
            )
        })
    };
    let output = check(RULES).await.expect("runs");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("ok: 1 rule(s) in client-rules"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("ok: every pipeline"), "{stdout}");

    // A stage the portal does not have: no "ok" at all, the problem, exit 1.
    let typo = RULES.replace("PREPARATION", "PREPARATON");
    let output = check(Box::leak(typo.into_boxed_str())).await.expect("runs");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains("ok"), "{stdout}");
    assert!(stderr.contains("PREPARATON"), "{stderr}");
}

#[test]
fn a_reader_that_stops_early_ends_the_demo_quietly() {
    use std::io::{BufRead, BufReader};
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"))
        .arg("demo")
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    // `demo | head -1`: one line read, then the pipe is closed.
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("a line");
    assert!(first.starts_with("b24-robot demo: "), "{first}");
    let output = child.wait_with_output().expect("ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

/// A line of the demo's output: how it starts, and a part of the rest.
type Line = (&'static str, &'static str);

/// The README's first command, to its end: the month before the week written into the portal,
/// the shipped rules' week on the demo's own clock, each time-driven rule at work in the step
/// that brings it, the month's plan and NPS reports, and the dashboard's address. With
/// `--keep` the service stays up: its dashboard answers until Ctrl-C, then the demo ends
/// with 0.
#[tokio::test]
async fn the_demo_plays_its_week_reports_the_month_and_serves_its_dashboard_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"))
        .args(["demo", "--keep"])
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut stdout = String::new();
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("the demo went quiet before serving:\n{stdout}"));
        stdout.push_str(&line);
        stdout.push('\n');
        if line == "Serving until Ctrl-C." {
            break;
        }
    }
    // The dashboard's address and token, as printed; its plan page answers with the month's plan.
    let address = stdout
        .lines()
        .find_map(|l| l.strip_prefix("The dashboard: "))
        .unwrap_or_else(|| panic!("no dashboard line:\n{stdout}"));
    let (url, token) = address
        .split_once(" (log in with the admin token ")
        .unwrap_or_else(|| panic!("{address}"));
    let token = token.trim_end_matches(')');
    let page = reqwest::Client::new()
        .get(format!("{url}reports?name=plan"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the dashboard answers");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let html = page.text().await.expect("a page");
    assert!(
        html.contains("new-clients-") && html.contains("<svg"),
        "{html}"
    );
    let id = child.id().to_string();
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &id])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let output = child.wait_with_output().expect("ends");
    let (_, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(
        stdout.starts_with("b24-robot demo: 21 rules (version "),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    // The first line at or after `from` that starts with `start` and holds `holds`.
    let find = |from: usize, start: &str, holds: &str| -> usize {
        lines[from..]
            .iter()
            .position(|l| l.starts_with(start) && l.contains(holds))
            .map(|i| from + i)
            .unwrap_or_else(|| panic!("no {start:?} with {holds:?} after line {from}:\n{stdout}"))
    };
    // Each step of the week in order (its line), and what follows it, in any order.
    let steps: [(&str, &str, &[Line]); 5] = [
        (
            "* Monday ",
            "09:05: Vera creates a deal for Romashka",
            // close_on_leave: the qualifying task ends with its stage.
            &[("    [new-qualify] completed task #", "")],
        ),
        (
            "* Monday ",
            "13:40: the repeat client's deal",
            &[(
                "    [repeat-without-next-step] notified user 3: ",
                "has no open task",
            )],
        ),
        (
            "* Thursday ",
            "09:06: the offer was due",
            &[
                ("    [offer-sla] notified user 3: ", "over 3 workdays"),
                ("    [offer-sla] notified user 2: ", "over 3 workdays"),
                (
                    "    [overdue-tasks] notified user 3: \"Overdue since ",
                    "Lyutik",
                ),
                (
                    "    [overdue-tasks] notified user 2: \"Overdue since ",
                    "Lyutik",
                ),
            ],
        ),
        (
            "* Thursday ",
            "09:12: the control sweep sees",
            &[(
                "    [overdue-tasks] notified user 2: ",
                "deadline moved from",
            )],
        ),
        (
            "* Thursday ",
            "17:31: the new deadline has passed",
            &[
                ("    [daily-control] digest to user 2:", ""),
                ("      [B]Sales control, ", "17:30[/B]"),
                ("      • no next step: ", ""),
                ("      • over the stage SLA: ", ""),
                ("      • overdue task: ", ""),
            ],
        ),
    ];
    let month = find(0, "* Before the week: the month so far", " won (");
    let mut at = month;
    for (start, holds, after) in steps {
        at = find(at, start, holds);
        for (line, part) in after {
            find(at, line, part);
        }
    }
    // Then what the portal got, and the month's reports: the plan per manager, the NPS.
    at = find(at, "done: ", "REST requests to the portal");
    at = find(
        at,
        "* The head of sales opens the month's plan",
        "report plan",
    );
    at = find(at, "  plan ", "percent");
    for manager in ["3", "4", "6"] {
        find(at, "  new-clients-", &format!(" {manager} "));
    }
    at = find(at, "* The head of sales opens NPS", "report nps");
    at = find(at, "  rule ", "promoters");
    at = find(at, "  nps ", "");
    find(
        at,
        "The dashboard: http://127.0.0.1:",
        "/ui/ (log in with the admin token ",
    );
}

#[tokio::test]
async fn logs_written_to_a_file_carry_no_terminal_colours() {
    let sim = crate::helpers::seeded_portal(SimConfig::default()).await;
    let site = crate::child::Site::new();
    let service =
        crate::child::Service::start_with(&sim, &site, 0, &[("B24ROBOT__LOG__LEVEL", "info")])
            .await;
    let (code, _) = service.terminate(std::time::Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    let logs = std::fs::read_to_string(site.path("run-0.log")).expect("log");
    assert!(logs.contains("rules loaded"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{logs}"
    );
}

#[test]
fn retrying_a_job_that_is_not_parked_exits_1_saying_why() {
    let work = tempfile::tempdir().expect("temp dir");
    let data = work.path().join("data");
    {
        let store = b24_robot::store::Store::open(&data).expect("store");
        store.enqueue(5, 1_000).expect("queued");
        store.enqueue(6, 1_000).expect("queued");
        store
            .park(6, "crm.deal.get: ACCESS_DENIED")
            .expect("parked");
        store.flush().expect("flushed");
    }
    let data = data.display().to_string();
    let env = [("B24ROBOT__STORAGE__DIR", data.as_str())];
    let retry = |deal: &str| run_in(work.path(), &["jobs", "retry", deal], &env);

    let output = retry("5");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("deal 5 has no parked job to re-run: its job is queued (1 event(s), 0 attempt(s)) and runs on its own"),
        "{stderr}"
    );
    let output = retry("7");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("deal 7 has no job in the queue: nothing to re-run"),
        "{stderr}"
    );
    // The parked one is re-run.
    let output = retry("6");
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "re-running the jobs of deal(s) [6]\n");
}

// ----- the sandbox as a rehearsal of the client's portal -----

const PM_RULES: &str = r#"
pipeline = 0
[[task]]
name = "pm-task"
stage = "PREPARATION"
title = "Kick-off: {TITLE}"
responsible = "field:UF_CRM_PROJECT_MANAGER"
deadline = { after = "1 day" }
"#;

const PM_SCENARIO: &str = r#"
[[step]]
create = "acme"
fields = { TITLE = "Acme", ASSIGNED_BY_ID = 3, CATEGORY_ID = 0, STAGE_ID = "NEW" }

[[step]]
move = "acme"
to = "PREPARATION"
"#;

/// A rules folder with `rules` and a scenario file in a fresh work folder.
fn rehearsal(rules: &str, scenario: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(work.path().join("rules")).expect("rules folder");
    std::fs::write(work.path().join("rules/10.toml"), rules).expect("rules written");
    std::fs::write(work.path().join("scenario.toml"), scenario).expect("scenario written");
    work
}

#[test]
fn a_scenario_whose_effect_failed_exits_1() {
    let work = rehearsal(PM_RULES, PM_SCENARIO);
    let output = run_in(
        work.path(),
        &["sandbox", "--rules", "rules", "--scenario", "scenario.toml"],
        &[],
    );
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "[pm-task] effect FAILED: responsible not resolved: field UF_CRM_PROJECT_MANAGER is empty"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: 1 effect failed in the scenario (see FAILED above)"),
        "{stderr}"
    );
}

#[test]
fn the_sandbox_counts_deadlines_in_the_configs_calendar_and_keeps_its_store_for_explain() {
    let work = rehearsal(RULES, PM_SCENARIO);
    let play = |env: &[(&str, &str)]| {
        run_in(
            work.path(),
            &[
                "sandbox",
                "--rules",
                "rules",
                "--scenario",
                "scenario.toml",
                "--store",
                "kept",
            ],
            env,
        )
    };
    let output = play(&[("B24ROBOT__CALENDAR__TIMEZONE", "Asia/Vladivostok")]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    // The deadline is in the config's time zone (UTC+10), not the default Moscow (UTC+3).
    let task = stdout
        .lines()
        .find(|l| l.contains("[offer] task \"Offer: Acme\""))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(task.contains("+10:00"), "{task}");
    assert!(
        stdout.contains("the sandbox's store is kept in kept: b24-robot explain DEAL --store kept"),
        "{stdout}"
    );
    let output = run_in(work.path(), &["explain", "1", "--store", "kept"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rule offer: fired, 1 effect(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("tasks.task.add -> done"), "{stdout}");

    // A second run does not mix its deals into that store.
    let output = play(&[]);
    assert_eq!(output.status.code(), Some(1), "{:?}", texts(&output));
    assert!(
        texts(&output).1.contains("kept: the folder is not empty"),
        "{:?}",
        texts(&output)
    );
}

// ----- the config -----

#[test]
fn every_config_problem_is_reported_at_once_in_the_files_order() {
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(work.path().join("rules")).expect("rules");
    std::fs::write(
        work.path().join("b24-robot.toml"),
        "[server]\nlisten = \"nope\"\n\n[portal]\nburst = \"x\"\nmax_attempts = \"y\"\n\n[calendar]\nhours = \"9-18\"\n\n[sync]\npoll_intervl = \"5s\"\n",
    )
    .expect("config");
    let output = run_in(work.path(), &["check"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        vec![
            "error: b24-robot.toml:2:10: server.listen: \"nope\" is not an address:port such as \"127.0.0.1:8080\"",
            "error: b24-robot.toml:5:9: portal.burst: invalid type: string \"x\", expected an integer",
            "error: b24-robot.toml:6:16: portal.max_attempts: invalid type: string \"y\", expected an integer",
            "error: b24-robot.toml:9:9: calendar.hours: \"9-18\" is not a range of hours such as \"09:00-18:00\"",
            "error: b24-robot.toml:12:1: unknown key \"sync.poll_intervl\" (did you mean \"poll_interval\"?)",
        ]
    );
}

#[test]
fn a_config_path_that_is_no_config_file_says_what_it_is() {
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(work.path().join("rules")).expect("rules");
    // /dev/null is an empty config: the defaults (and the environment).
    let output = run_in(work.path(), &["--config", "/dev/null", "check"], &[]);
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("ok: 0 rule(s) in ./rules"), "{stdout}");

    let refused = |path: &str| {
        let output = run_in(work.path(), &["--config", path, "check"], &[]);
        assert_eq!(output.status.code(), Some(1), "{:?}", texts(&output));
        texts(&output).1
    };
    assert_eq!(
        refused("rules"),
        "error: config file rules: is a folder; give the config file (e.g. b24-robot.toml) in it\n"
    );
    assert_eq!(
        refused("absent.toml"),
        "error: config file absent.toml: not found\n"
    );
    std::fs::write(work.path().join("bytes.toml"), b"\xff\xfe").expect("written");
    assert_eq!(
        refused("bytes.toml"),
        "error: config file bytes.toml: is not UTF-8 text (a TOML file is)\n"
    );
}

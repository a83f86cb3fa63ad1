//! The time-driven rules against the simulated portal, with time moved on by the test (the
//! service's clock jumps; no test waits real days): an SLA fires once per stage entry, not at
//! all when the deal left in time, once per repetition, and once after a restart that came
//! before its due moment.

use std::time::Duration;

use b24_robot::clock::Clock;
use b24_robot::store::TimerState;

use crate::helpers::{
    Options, TestApp, new_deal, poll, rule_file, spawn_app_with, start_with_clock, wait_for,
};

const DAY: Duration = Duration::from_secs(86_400);

/// An SLA of 3 days on PREPARATION, telling the deal's assigned user; quiet hours off, so that
/// the moment the test jumps to does not have to be working time.
fn sla_rules(extra: &str) -> Vec<(String, String)> {
    vec![rule_file(
        "sla.toml",
        &format!(
            r#"
[[sla]]
name = "prep-sla"
pipeline = 0
stage = "PREPARATION"
within = "3 days"
notify = ["assigned"]
message = "SLA: {{TITLE}} is {{SLA_OVERDUE}} past its 3 days"
{extra}
"#
        ),
    )]
}

fn settings() -> Vec<(&'static str, String)> {
    vec![("control.quiet_outside_hours", "false".into())]
}

async fn app_with(rules: Vec<(String, String)>, clock: &Clock) -> TestApp {
    spawn_app_with(Options {
        rules,
        settings: settings(),
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await
}

fn sla_notices(app: &TestApp, title: &str) -> usize {
    app.sim
        .notifications()
        .iter()
        .filter(|n| n.to_string().contains("SLA: ") && n.to_string().contains(title))
        .count()
}

async fn armed(app: &TestApp, deal: u64) {
    poll(Duration::from_secs(10), "the SLA timer armed", async || {
        let timers = app.store.timers_of(deal).ok()?;
        timers
            .iter()
            .any(|t| t.state == TimerState::Pending)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_sla_fires_once_for_its_stage_entry_after_within_and_never_again() {
    let clock = Clock::system();
    let app = app_with(sla_rules(""), &clock).await;
    let deal = in_stage(&app, "Slow Offer LLC", "PREPARATION").await;
    armed(&app, deal).await;
    assert_eq!(
        sla_notices(&app, "Slow Offer LLC"),
        0,
        "not before its time"
    );

    clock.advance(3 * DAY + Duration::from_secs(120));
    wait_for(Duration::from_secs(10), "the SLA notice", || {
        sla_notices(&app, "Slow Offer LLC") == 1
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    // Time goes on, events repeat: nothing more for this entry.
    clock.advance(DAY);
    app.sim.send_event("ONCRMDEALUPDATE", deal).await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(sla_notices(&app, "Slow Offer LLC"), 1);
    let timers = app.store.timers_of(deal).expect("timers");
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].state, TimerState::Fired);
    assert_eq!(timers[0].history.len(), 1, "{timers:#?}");
    let text = app
        .sim
        .notifications()
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(text.contains("past its 3 days"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn an_sla_does_nothing_when_the_deal_left_the_stage_in_time() {
    let clock = Clock::system();
    let app = app_with(sla_rules(""), &clock).await;
    let deal = in_stage(&app, "Quick Move LLC", "PREPARATION").await;
    armed(&app, deal).await;
    app.next_second().await;
    app.move_to(deal, "EXECUTING", Duration::from_secs(10))
        .await;
    poll(Duration::from_secs(10), "the timer disarmed", async || {
        let timers = app.store.timers_of(deal).ok()?;
        timers
            .iter()
            .all(|t| matches!(t.state, TimerState::Skipped { .. }))
            .then_some(())
    })
    .await;
    clock.advance(4 * DAY);
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(sla_notices(&app, "Quick Move LLC"), 0);
    assert_eq!(app.store.timers_pending(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_repeating_sla_fires_once_per_repetition_up_to_max_repeats() {
    let clock = Clock::system();
    let rules = sla_rules("repeat = \"1 day\"\nmax_repeats = 2");
    let app = app_with(rules, &clock).await;
    let deal = in_stage(&app, "Stuck LLC", "PREPARATION").await;
    armed(&app, deal).await;
    clock.advance(3 * DAY + Duration::from_secs(60));
    for expected in 1..=3 {
        wait_for(Duration::from_secs(10), "the next SLA notice", || {
            sla_notices(&app, "Stuck LLC") == expected
        })
        .await;
        app.settle(Duration::from_secs(10)).await;
        clock.advance(DAY);
    }
    clock.advance(3 * DAY);
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        sla_notices(&app, "Stuck LLC"),
        3,
        "once, then 2 repetitions"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_sla_due_while_the_service_was_stopped_fires_once_at_start() {
    let clock = Clock::system();
    let rules = sla_rules("");
    let app = app_with(rules.clone(), &clock).await;
    let deal = in_stage(&app, "Weekend LLC", "PREPARATION").await;
    armed(&app, deal).await;
    let (sim, dir) = app.stop().await;

    clock.advance(5 * DAY);
    let app = start_with_clock(sim, dir, &rules, &settings(), clock.clone()).await;
    wait_for(
        Duration::from_secs(10),
        "the SLA notice after the restart",
        || sla_notices(&app, "Weekend LLC") == 1,
    )
    .await;
    app.settle(Duration::from_secs(10)).await;
    let (sim, dir) = app.stop().await;

    let app = start_with_clock(sim, dir, &rules, &settings(), clock.clone()).await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        sla_notices(&app, "Weekend LLC"),
        1,
        "a second restart sends nothing more"
    );
    app.stop().await;
}

/// A service and a portal on one clock, which the test moves on.
async fn on_clock(rules: Vec<(String, String)>, clock: &Clock) -> TestApp {
    on_clock_with(rules, clock, settings()).await
}

/// A service and a portal on `clock` with `rules`, and a deal titled `title` moved into
/// PREPARATION (its stage entry recorded).
async fn in_preparation(
    rules: Vec<(String, String)>,
    clock: &Clock,
    title: &str,
) -> (TestApp, u64) {
    let app = on_clock(rules, clock).await;
    let deal = in_stage(&app, title, "PREPARATION").await;
    (app, deal)
}

/// A new deal titled `title`, moved into `stage` (its stage entry recorded).
async fn in_stage(app: &TestApp, title: &str, stage: &str) -> u64 {
    let deal = new_deal(&app.sim, title).await;
    app.move_to(deal, stage, Duration::from_secs(10)).await;
    deal
}

/// [`on_clock`] with these settings.
async fn on_clock_with(
    rules: Vec<(String, String)>,
    clock: &Clock,
    settings: Vec<(&'static str, String)>,
) -> TestApp {
    spawn_app_with(Options {
        rules,
        settings,
        sim: b24_robot::sandbox::SimConfig {
            clock: clock.clone(),
            ..Default::default()
        },
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await
}

fn notices_with(app: &TestApp, prefix: &str) -> Vec<String> {
    app.sim
        .notifications()
        .iter()
        .filter_map(|n| n["MESSAGE"].as_str().map(str::to_string))
        .filter(|m| m.starts_with(prefix))
        .collect()
}

const OVERDUE_RULES: &str = r#"
[[task]]
name = "prep-call"
pipeline = 0
stage = "PREPARATION"
title = "Call {TITLE}"
responsible = "assigned"
deadline = { after = "1 day" }

[[overdue]]
name = "overdue-tasks"
notify = ["responsible"]
message = "Overdue: {TASK_TITLE} since {TASK_DEADLINE} ({TASK_URL})"

[overdue.deadline_moved]
notify = ["responsible"]
message = "Moved: {TASK_TITLE} from {TASK_OLD_DEADLINE} to {TASK_DEADLINE}"
"#;

#[tokio::test]
async fn an_overdue_task_is_reported_once_per_deadline_and_a_moved_deadline_once_per_move() {
    let clock = Clock::system();
    let (app, deal) = in_preparation(
        vec![rule_file("overdue.toml", OVERDUE_RULES)],
        &clock,
        "Late Call LLC",
    )
    .await;
    let task = poll(Duration::from_secs(10), "the stage's task", async || {
        app.sim.tasks_for_deal(deal).first().cloned()
    })
    .await;
    let task_id: u64 = crate::helpers::text(&task["ID"]).parse().expect("task id");

    clock.advance(2 * DAY);
    wait_for(Duration::from_secs(15), "the overdue notice", || {
        notices_with(&app, "Overdue: Call Late Call LLC").len() == 1
    })
    .await;
    let notice = &notices_with(&app, "Overdue: ")[0];
    assert!(
        notice.contains(&format!("/tasks/task/view/{task_id}/")),
        "{notice}"
    );
    // Later sweeps find the same task with the same deadline: nothing new.
    clock.advance(Duration::from_secs(3_600));
    clock.advance(Duration::from_secs(3_600));
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(notices_with(&app, "Overdue: ").len(), 1);

    // The responsible moves the deadline: one notice of the move, and once the new deadline is
    // missed too, one more overdue notice.
    let new_deadline = clock.now().fixed_offset() + chrono::Duration::days(1);
    app.sim.set_task_deadline(task_id, Some(new_deadline));
    clock.advance(Duration::from_secs(3_600));
    wait_for(Duration::from_secs(15), "the moved-deadline notice", || {
        notices_with(&app, "Moved: Call Late Call LLC").len() == 1
    })
    .await;
    clock.advance(2 * DAY);
    wait_for(Duration::from_secs(15), "the second overdue notice", || {
        notices_with(&app, "Overdue: ").len() == 2
    })
    .await;
    // Completed: never again.
    app.sim.complete_task(task_id);
    clock.advance(3 * DAY);
    clock.advance(DAY);
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(notices_with(&app, "Overdue: ").len(), 2);
    assert_eq!(notices_with(&app, "Moved: ").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn overdue_all_tasks_skips_completed_deferred_and_deadline_less_ones() {
    let clock = Clock::system();
    let rules = r#"
[[overdue]]
name = "all-overdue"
pipeline = 0
tasks = "all"
notify = ["responsible"]
message = "Overdue: {TASK_TITLE}"
"#;
    let (app, deal) =
        in_preparation(vec![rule_file("overdue.toml", rules)], &clock, "Busy LLC").await;
    let due = Some(clock.now().fixed_offset() + chrono::Duration::hours(1));
    let late = app.sim.add_user_task(deal, "Late one", 3, due);
    let done = app.sim.add_user_task(deal, "Done one", 3, due);
    let deferred = app.sim.add_user_task(deal, "Deferred one", 3, due);
    app.sim.add_user_task(deal, "No deadline", 3, None);
    app.sim.complete_task(done);
    app.sim.defer_task(deferred);
    clock.advance(DAY);
    wait_for(Duration::from_secs(15), "the overdue notice", || {
        !notices_with(&app, "Overdue: ").is_empty()
    })
    .await;
    clock.advance(Duration::from_secs(3_600));
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        notices_with(&app, "Overdue: "),
        vec!["Overdue: Late one".to_string()]
    );
    let _ = late;
    app.stop().await;
}

const NO_TASK_RULES: &str = r#"
[[no_task]]
name = "no-next-step"
pipeline = 0
stages = ["PREPARATION"]
after = "4 hours"
notify = ["assigned"]
message = "No next step: {TITLE}"
"#;

#[tokio::test]
async fn a_deal_without_a_next_step_is_reported_once_per_episode() {
    let clock = Clock::system();
    let (app, deal) = in_preparation(
        vec![rule_file("no_task.toml", NO_TASK_RULES)],
        &clock,
        "Idle LLC",
    )
    .await;
    swept(&app, &clock, Duration::from_secs(3_600)).await;
    assert!(
        notices_with(&app, "No next step").is_empty(),
        "not before `after`"
    );
    clock.advance(Duration::from_secs(4 * 3_600));
    wait_for(Duration::from_secs(15), "the no-next-step notice", || {
        notices_with(&app, "No next step: Idle LLC").len() == 1
    })
    .await;
    clock.advance(Duration::from_secs(6 * 3_600));
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        notices_with(&app, "No next step").len(),
        1,
        "once per episode"
    );

    // A task appears (the episode ends), then is completed: a new episode, a new notice after
    // `after` again.
    let task = app.sim.add_user_task(deal, "Call back", 3, None);
    swept(&app, &clock, Duration::from_secs(3_600)).await;
    app.sim.complete_task(task);
    swept(&app, &clock, Duration::from_secs(3_600)).await;
    assert_eq!(notices_with(&app, "No next step").len(), 1);
    swept(&app, &clock, Duration::from_secs(5 * 3_600)).await;
    wait_for(
        Duration::from_secs(15),
        "the second episode's notice",
        || notices_with(&app, "No next step").len() == 2,
    )
    .await;
    // An open activity is a next step too.
    app.stop().await;
}

/// Moves the clock on by `by` and waits for the control sweep that this sets off (and for the
/// queue to empty): what the sweep found is then recorded and sent.
async fn swept(app: &TestApp, clock: &Clock, by: Duration) {
    let count = async || {
        let samples = crate::helpers::samples(&app.metrics_text().await);
        crate::helpers::value(&samples, "b24robot_control_sweeps_total{result=\"ok\"}")
    };
    let before = count().await;
    clock.advance(by);
    poll(Duration::from_secs(15), "a control sweep", async || {
        (count().await > before).then_some(())
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
}

/// Monday 2026-12-07, `h:m` in Moscow (the default calendar's zone).
fn monday_at(h: u32, m: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 12, 7, h - 3, m, 0)
        .single()
        .expect("a moment")
}

const DIGEST_RULES: &str = r#"
[[overdue]]
name = "all-overdue"
pipeline = 0
tasks = "all"
notify = ["responsible"]
message = "Overdue: {TASK_TITLE}"

[[digest]]
name = "daily-control"
to = [20]
at = ["09:30", "17:30"]
include = ["all-overdue"]
title = "Control {DATE} {TIME}"
"#;

fn digests_to(app: &TestApp, user: u64) -> Vec<String> {
    app.sim
        .notifications()
        .iter()
        .filter(|n| crate::helpers::text(&n["USER_ID"]) == user.to_string())
        .filter_map(|n| n["MESSAGE"].as_str().map(str::to_string))
        .filter(|m| m.contains("Control 2026-12-07"))
        .collect()
}

#[tokio::test]
async fn a_digest_goes_once_per_slot_across_a_restart_with_the_items_that_stand() {
    let clock = Clock::starting_at(monday_at(9, 0));
    let rules = vec![rule_file("digest.toml", DIGEST_RULES)];
    let (app, deal) = in_preparation(rules.clone(), &clock, "Forgotten LLC").await;
    let late = clock.now().fixed_offset() - chrono::Duration::hours(2);
    let task = app
        .sim
        .add_user_task(deal, "Send the contract", 3, Some(late));
    app.sim.add_user_task(
        deal,
        "Not yet due",
        3,
        Some(late + chrono::Duration::days(2)),
    );

    clock.advance(Duration::from_secs(31 * 60));
    wait_for(Duration::from_secs(15), "the 09:30 digest", || {
        digests_to(&app, 20).len() == 1
    })
    .await;
    let text = &digests_to(&app, 20)[0];
    assert!(
        text.starts_with("[B]Control 2026-12-07 09:30[/B]"),
        "{text}"
    );
    assert!(
        text.contains(&format!("/tasks/task/view/{task}/]Send the contract[/URL]")),
        "{text}"
    );
    assert!(!text.contains("Not yet due"), "{text}");
    assert!(
        text.contains("[URL=") && text.contains("Forgotten LLC"),
        "{text}"
    );
    let (sim, dir) = app.stop().await;

    // The same slot after a restart: not again.
    let app = crate::helpers::start_with_clock(sim, dir, &rules, &settings(), clock.clone()).await;
    swept(&app, &clock, Duration::from_secs(60)).await;
    assert_eq!(digests_to(&app, 20).len(), 1, "one digest per slot");

    // The evening slot, once the task is done: nothing to report, and send_empty is off.
    app.sim.complete_task(task);
    clock.advance(Duration::from_secs(8 * 3_600));
    swept(&app, &clock, Duration::from_secs(60)).await;
    assert_eq!(digests_to(&app, 20).len(), 1, "an empty digest is not sent");
    app.stop().await;
}

#[tokio::test]
async fn the_digest_command_prints_each_recipients_text_and_sends_nothing_with_dry_run() {
    let clock = Clock::starting_at(monday_at(11, 0));
    let mut extra = settings();
    extra.push(("server.admin_token", "digest-admin-token".into()));
    let app = on_clock_with(vec![rule_file("digest.toml", DIGEST_RULES)], &clock, extra).await;
    let deal = new_deal(&app.sim, "Late LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
    let late = clock.now().fixed_offset() - chrono::Duration::hours(1);
    app.sim.add_user_task(deal, "Overdue call", 3, Some(late));
    let answer: serde_json::Value = app
        .client
        .post(format!(
            "http://127.0.0.1:{}/admin/digests/daily-control",
            app.port
        ))
        .bearer_auth("digest-admin-token")
        .json(&serde_json::json!({ "dry_run": true }))
        .send()
        .await
        .expect("the admin API answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(answer["recipients"][0]["recipient"], 20, "{answer}");
    assert!(
        answer["recipients"][0]["text"]
            .as_str()
            .unwrap_or("")
            .contains("Overdue call"),
        "{answer}"
    );
    assert!(digests_to(&app, 20).is_empty(), "a dry run sends nothing");
    app.stop().await;
}

const CLOSING_RULES: &str = r#"
[[task]]
name = "prep-offer"
pipeline = 0
stage = "PREPARATION"
title = "Offer for {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }
close_on_leave = "complete"

[[task]]
name = "exec-check"
pipeline = 0
stage = "EXECUTING"
title = "Check {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }
close_on_leave = "defer"
"#;

fn task_status(app: &TestApp, id: u64) -> String {
    app.sim
        .task(id)
        .map(|t| crate::helpers::text(&t["REAL_STATUS"]))
        .unwrap_or_default()
}

fn task_of(app: &TestApp, deal: u64, title: &str) -> u64 {
    app.sim
        .tasks_for_deal(deal)
        .iter()
        .find(|t| t["TITLE"].as_str().is_some_and(|s| s.starts_with(title)))
        .map(|t| crate::helpers::text(&t["ID"]).parse().expect("task id"))
        .expect("the task")
}

#[tokio::test]
async fn a_stages_task_is_completed_or_deferred_once_when_the_deal_moves_on() {
    let clock = Clock::system();
    let (app, deal) = in_preparation(
        vec![rule_file("tasks.toml", CLOSING_RULES)],
        &clock,
        "Moving LLC",
    )
    .await;
    let offer = task_of(&app, deal, "Offer for");
    assert_eq!(task_status(&app, offer), "2");
    app.move_to(deal, "EXECUTING", Duration::from_secs(10))
        .await;
    assert_eq!(
        task_status(&app, offer),
        "5",
        "completed when the deal left PREPARATION"
    );
    let check = task_of(&app, deal, "Check");
    app.move_to(deal, "FINAL_INVOICE", Duration::from_secs(10))
        .await;
    assert_eq!(
        task_status(&app, check),
        "6",
        "deferred when the deal left EXECUTING"
    );
    assert_eq!(crate::helpers::calls_of(&app.sim, "tasks.task.complete"), 1);
    assert_eq!(crate::helpers::calls_of(&app.sim, "tasks.task.defer"), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_stages_task_the_user_already_closed_is_left_alone() {
    let clock = Clock::system();
    let (app, deal) = in_preparation(
        vec![rule_file("tasks.toml", CLOSING_RULES)],
        &clock,
        "Tidy LLC",
    )
    .await;
    let offer = task_of(&app, deal, "Offer for");
    app.sim.defer_task(offer);
    app.move_to(deal, "EXECUTING", Duration::from_secs(10))
        .await;
    assert_eq!(task_status(&app, offer), "6", "the user's own choice stays");
    assert_eq!(crate::helpers::calls_of(&app.sim, "tasks.task.complete"), 0);
    let report = b24_robot::ops::admin::deal_report(&app.store, deal).expect("report");
    let close = report
        .effects
        .iter()
        .find(|e| e.kind == b24_robot::store::EffectKind::CloseTask)
        .expect("the close is in the decision log");
    assert!(
        matches!(&close.state, b24_robot::store::EffectState::Done { id } if id.contains("already closed")),
        "{close:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn with_quiet_hours_an_sla_notice_waits_for_working_time() {
    // Saturday 2026-12-05 12:00 Moscow: the SLA falls due on a day off.
    use chrono::TimeZone;
    let saturday = chrono::Utc
        .with_ymd_and_hms(2026, 12, 5, 9, 0, 0)
        .single()
        .expect("moment");
    let clock = Clock::starting_at(saturday - chrono::Duration::days(3));
    let app = on_clock_with(sla_rules(""), &clock, Vec::new()).await;
    let deal = new_deal(&app.sim, "Weekend Offer LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
    armed(&app, deal).await;
    clock.advance(3 * DAY + Duration::from_secs(60));
    poll(
        Duration::from_secs(10),
        "the timer moved to Monday",
        async || {
            let timers = app.store.timers_of(deal).ok()?;
            let due = chrono::DateTime::from_timestamp_millis(timers.first()?.due_ms as i64)?;
            (due.date_naive() == chrono::NaiveDate::from_ymd_opt(2026, 12, 7)?).then_some(())
        },
    )
    .await;
    assert_eq!(
        sla_notices(&app, "Weekend Offer LLC"),
        0,
        "held on Saturday"
    );
    // Monday 09:00 Moscow: the working period begins, the notice goes.
    clock.advance(2 * DAY);
    wait_for(Duration::from_secs(10), "the SLA notice on Monday", || {
        sla_notices(&app, "Weekend Offer LLC") == 1
    })
    .await;
    app.stop().await;
}

/// `b24robot_timers_pending` of a service in a child process.
async fn pending_timers(service: &crate::child::Service) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", service.base()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(crate::helpers::value(
        &crate::helpers::samples(&text),
        "b24robot_timers_pending",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_before_an_sla_is_due_and_it_still_fires_once() {
    use crate::child::{Service, Site};
    // The portal and the service (the real binary) both run their clocks 60 times faster than
    // real time: the SLA's 10 minutes pass in 10 seconds.
    let sim = crate::helpers::seeded_portal(b24_robot::sandbox::SimConfig {
        clock: Clock::fast(60.0),
        ..Default::default()
    })
    .await;
    let site = Site::new();
    std::fs::write(
        site.path("rules").join("sla.toml"),
        r#"
[[sla]]
name = "fast-sla"
pipeline = 0
stage = "EXECUTING"
within = "10 minutes"
notify = ["assigned"]
message = "SLA: {TITLE} waits"
"#,
    )
    .expect("rule file");
    let env = [
        ("B24ROBOT_CLOCK_SPEED", "60"),
        ("B24ROBOT__CONTROL__QUIET_OUTSIDE_HOURS", "false"),
    ];
    let service = Service::start_with(&sim, &site, 0, &env).await;
    let deal = new_deal(&sim, "Crash Test LLC").await;
    sim.move_deal(deal, "EXECUTING").await;
    poll(Duration::from_secs(20), "the timer armed", async || {
        (pending_timers(&service).await? == 1.0).then_some(())
    })
    .await;
    service.kill_9().await;
    let count = || {
        sim.notifications()
            .iter()
            .filter(|n| n.to_string().contains("SLA: Crash Test LLC waits"))
            .count()
    };
    assert_eq!(count(), 0, "killed before it was due");

    let service = Service::start_with(&sim, &site, 1, &env).await;
    wait_for(
        Duration::from_secs(60),
        "the SLA notice after the restart",
        || count() == 1,
    )
    .await;
    poll(Duration::from_secs(20), "the timer done", async || {
        (pending_timers(&service).await? == 0.0).then_some(())
    })
    .await;
    service.kill_9().await;
    let service = Service::start_with(&sim, &site, 2, &env).await;
    poll(Duration::from_secs(20), "the queue empty", async || {
        (service.queued().await? == 0).then_some(())
    })
    .await;
    assert_eq!(count(), 1, "once, across two kills");
    service.terminate(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_effects_under_portal_faults_are_made_once_each() {
    let clock = Clock::system();
    let rules = sla_rules(
        r#"
[sla.task]
title = "Unblock {TITLE}"
responsible = "assigned"
deadline = { after = "1 day" }
"#,
    );
    let app = on_clock(rules, &clock).await;
    let mut deals = Vec::new();
    for i in 0..5 {
        let deal = new_deal(&app.sim, &format!("Faulty {i} LLC")).await;
        app.sim.move_deal(deal, "PREPARATION").await;
        deals.push(deal);
    }
    app.settle(Duration::from_secs(20)).await;
    poll(Duration::from_secs(20), "every timer armed", async || {
        (app.store.timers_pending() == 5).then_some(())
    })
    .await;
    // 500s before and after the write ran, dropped connections: every lookup and retry path.
    app.sim.set_faults(b24_robot::sandbox::Faults {
        error_rate: 0.15,
        error_after_rate: 0.15,
        drop_rate: 0.06,
        seed: Some(12),
        ..Default::default()
    });
    clock.advance(3 * DAY + Duration::from_secs(60));
    poll(Duration::from_secs(60), "every SLA fired", async || {
        (app.store.timers_pending() == 0 && app.store.queue_len() == 0).then_some(())
    })
    .await;
    app.sim.set_faults(b24_robot::sandbox::Faults::default());
    app.settle(Duration::from_secs(30)).await;
    for deal in deals {
        let unblock = app
            .sim
            .tasks_for_deal(deal)
            .iter()
            .filter(|t| {
                t["TITLE"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("Unblock"))
            })
            .count();
        assert_eq!(unblock, 1, "deal {deal}: one SLA task");
    }
    app.stop().await;
}

#[tokio::test]
async fn backfill_of_an_sla_arms_the_timers_of_deals_already_in_its_stage_due_from_their_entry() {
    let clock = Clock::system();
    let sim = crate::helpers::seeded_portal(b24_robot::sandbox::SimConfig {
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    // In the stage before the service ever started: not watched unless backfilled.
    let waiting =
        crate::helpers::new_deal_with(&sim, "Old Offer LLC", "PREPARATION", serde_json::json!({}))
            .await;
    crate::helpers::into_the_next_second().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut extra = settings();
    extra.push(("server.admin_token", "sla-backfill-token".into()));
    let app = start_with_clock(sim, dir, &sla_rules(""), &extra, clock.clone()).await;
    app.started().await;
    assert!(app.store.timers_of(waiting).expect("timers").is_empty());

    let url = format!("http://127.0.0.1:{}/admin/backfill", app.port);
    let started = app
        .client
        .post(&url)
        .bearer_auth("sla-backfill-token")
        .json(&serde_json::json!({ "rule": "prep-sla" }))
        .send()
        .await
        .expect("answers");
    assert_eq!(started.status(), 202);
    armed(&app, waiting).await;
    let timer = app.store.timers_of(waiting).expect("timers").remove(0);
    let entered = chrono::DateTime::parse_from_rfc3339(
        app.sim.deal(waiting).expect("deal")["MOVED_TIME"]
            .as_str()
            .expect("MOVED_TIME"),
    )
    .expect("a time");
    let due = chrono::DateTime::from_timestamp_millis(timer.due_ms as i64).expect("due");
    assert_eq!(
        (due - entered.to_utc()).num_seconds(),
        3 * 86_400,
        "due from the entry"
    );
    clock.advance(3 * DAY + Duration::from_secs(60));
    wait_for(
        Duration::from_secs(10),
        "the backfilled SLA's notice",
        || sla_notices(&app, "Old Offer LLC") == 1,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_reload_re_times_armed_timers_and_a_removed_rule_disarms_them() {
    let files = sla_rules("");
    let app = crate::helpers::spawn_app_with_rules_dir(&files).await;
    app.started().await;
    let deal = new_deal(&app.sim, "Reloaded LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
    armed(&app, deal).await;
    let first = app.store.timers_of(deal).expect("timers")[0].due_ms;

    let shorter = files[0]
        .1
        .replace("within = \"3 days\"", "within = \"1 day\"");
    std::fs::write(app.rules_dir().join(".sla.toml.swp"), &shorter).expect("temp");
    std::fs::rename(
        app.rules_dir().join(".sla.toml.swp"),
        app.rules_dir().join("sla.toml"),
    )
    .expect("rename");
    poll(Duration::from_secs(10), "the timer re-timed", async || {
        let due = app.store.timers_of(deal).ok()?.first()?.due_ms;
        (first.saturating_sub(due) == 2 * 86_400_000).then_some(())
    })
    .await;

    std::fs::write(app.rules_dir().join("sla.toml"), "# no rules now\n").expect("emptied");
    poll(Duration::from_secs(10), "the timer disarmed", async || {
        let timers = app.store.timers_of(deal).ok()?;
        matches!(timers.first()?.state, TimerState::Skipped { .. }).then_some(())
    })
    .await;
    assert_eq!(app.store.timers_pending(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_slot_missed_while_stopped_is_sent_at_start_only_within_its_working_period() {
    let clock = Clock::starting_at(monday_at(9, 0));
    let rules = vec![rule_file(
        "digest.toml",
        &DIGEST_RULES.replace("to = [20]", "to = \"supervisor\""),
    )];
    let (app, deal) = in_preparation(rules.clone(), &clock, "Head's Item LLC").await;
    let late = clock.now().fixed_offset() - chrono::Duration::hours(2);
    app.sim
        .add_user_task(deal, "Overdue follow-up", 3, Some(late));
    let (sim, dir) = app.stop().await;

    // Stopped over the 09:30 slot; started at 09:45, still its working period: sent at start,
    // to Vera's head (user 2), who gets the items of Vera's deals.
    clock.advance(Duration::from_secs(45 * 60));
    let app = crate::helpers::start_with_clock(sim, dir, &rules, &settings(), clock.clone()).await;
    wait_for(Duration::from_secs(15), "the missed 09:30 digest", || {
        digests_to(&app, 2).len() == 1
    })
    .await;
    assert!(digests_to(&app, 2)[0].contains("Overdue follow-up"));
    assert!(
        digests_to(&app, 3).is_empty(),
        "Vera gets none: she is not a head"
    );
    let (sim, dir) = app.stop().await;

    // Stopped over the 17:30 slot, started at 18:30: its working period is over, skipped.
    clock.advance(Duration::from_secs(8 * 3_600 + 45 * 60));
    let app = crate::helpers::start_with_clock(sim, dir, &rules, &settings(), clock.clone()).await;
    swept(&app, &clock, Duration::from_secs(60)).await;
    assert_eq!(
        digests_to(&app, 2).len(),
        1,
        "the 17:30 slot was missed for good"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_move_a_gate_sends_back_leaves_the_sla_watching_the_entry_it_never_left() {
    let clock = Clock::system();
    let mut rules = sla_rules("");
    rules.push(rule_file(
        "gate.toml",
        r#"
[[require]]
name = "needs-inn"
pipeline = 0
stage = "EXECUTING"
fields = ["UF_CRM_INN"]
on_missing = "revert"
"#,
    ));
    let (app, deal) = in_preparation(rules, &clock, "Gated LLC").await;
    armed(&app, deal).await;
    app.move_to(deal, "EXECUTING", Duration::from_secs(10))
        .await;
    poll(Duration::from_secs(10), "the deal moved back", async || {
        (app.sim.deal(deal)?["STAGE_ID"] == "PREPARATION").then_some(())
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        app.store.timers_pending(),
        1,
        "{:?}",
        app.store.timers_of(deal)
    );
    clock.advance(3 * DAY + Duration::from_secs(60));
    wait_for(Duration::from_secs(10), "the SLA notice", || {
        sla_notices(&app, "Gated LLC") == 1
    })
    .await;
    app.stop().await;
}

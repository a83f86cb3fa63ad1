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
    let deal = new_deal(&app.sim, "Slow Offer LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
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
    let deal = new_deal(&app.sim, "Quick Move LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
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
    let deal = new_deal(&app.sim, "Stuck LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
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
    let deal = new_deal(&app.sim, "Weekend LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
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

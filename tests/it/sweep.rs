//! The sweep: stage entries no event told the service about (lost events, pipeline changes, no
//! outgoing webhook at all) are acted on anyway, later; entries older than the first start never.

use std::time::Duration;

use b24_robot::sandbox::SimConfig;

use crate::helpers::{
    Options, new_deal, rule_file, seeded_portal, spawn_app_with, start_on, task_rules,
};

fn fast_sweep() -> Vec<(&'static str, String)> {
    vec![("sync.poll_interval", "300ms".into())]
}

/// A task rule on PREPARATION of pipeline 0 and on C1:NEW of pipeline 1.
fn two_pipeline_rules() -> Vec<(String, String)> {
    vec![
        task_rules(),
        rule_file(
            "repeat.toml",
            r#"
pipeline = 1

[[task]]
name = "repeat-welcome"
stage = "C1:NEW"
title = "Welcome back: {TITLE}"
responsible = "assigned"
deadline = { after = "1 day" }
"#,
        ),
    ]
}

#[tokio::test]
async fn a_move_whose_event_is_never_sent_is_caught_by_the_sweep() {
    let app = spawn_app_with(Options {
        settings: fast_sweep(),
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Lost event LLC").await;
    app.settle(Duration::from_secs(10)).await;

    app.sim.move_deal_silently(deal, "PREPARATION").await;
    app.wait_until(Duration::from_secs(10), "a task from the sweep", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

#[tokio::test]
async fn a_move_to_another_pipeline_is_caught_and_its_stage_rules_run() {
    let app = spawn_app_with(Options {
        settings: fast_sweep(),
        rules: two_pipeline_rules(),
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Returning LLC").await;
    app.settle(Duration::from_secs(10)).await;

    let events_before = app.sim.events_sent().len();
    app.sim.move_deal_to_pipeline(deal, 1, "C1:NEW").await;
    app.wait_until(
        Duration::from_secs(10),
        "a task for the new pipeline",
        |sim| !sim.tasks_for_deal(deal).is_empty(),
    )
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        app.sim.events_sent().len(),
        events_before,
        "Bitrix24 sends no event for a pipeline change"
    );
    let tasks = app.sim.tasks_for_deal(deal);
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0]["TITLE"], "Welcome back: Returning LLC");
    app.stop().await;
}

#[tokio::test]
async fn a_portal_without_an_outgoing_webhook_still_gets_its_rules_applied() {
    let app = spawn_app_with(Options {
        settings: fast_sweep(),
        events: false,
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "No webhook LLC").await;
    let delivery = app.sim.move_deal(deal, "PREPARATION").await;
    assert_eq!(delivery.status, None, "no event reaches the service");

    app.wait_until(Duration::from_secs(10), "a task from the sweep", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

#[tokio::test]
async fn entries_older_than_the_first_start_are_not_acted_on() {
    let sim = seeded_portal(SimConfig::default()).await;
    // Before the service ever ran: a deal moved into PREPARATION, one created there, one moved
    // to pipeline 1.
    let moved = new_deal(&sim, "Old move LLC").await;
    sim.move_deal(moved, "PREPARATION").await;
    let created =
        crate::helpers::new_deal_with(&sim, "Old create LLC", "PREPARATION", serde_json::json!({}))
            .await;
    let other = new_deal(&sim, "Old pipeline LLC").await;
    sim.move_deal_to_pipeline(other, 1, "C1:NEW").await;
    crate::helpers::into_the_next_second().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let app = start_on(sim, dir, &two_pipeline_rules(), &fast_sweep(), true).await;
    // Several sweeps run, and an event names one of the old deals.
    app.wait_until(Duration::from_secs(10), "three sweeps", |sim| {
        sim.requests()
            .iter()
            .filter(|r| r.method == "crm.stagehistory.list")
            .count()
            >= 4
    })
    .await;
    let delivery = app.sim.send_event("ONCRMDEALUPDATE", moved).await;
    assert_eq!(delivery.status, Some(200));
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[moved, created, other]), vec![0, 0, 0]);

    // The service does work: a move made now is acted on.
    let fresh = new_deal(&app.sim, "New move LLC").await;
    app.sim.move_deal(fresh, "PREPARATION").await;
    app.wait_until(Duration::from_secs(10), "a task for the new move", |sim| {
        !sim.tasks_for_deal(fresh).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        app.task_counts(&[moved, created, other, fresh]),
        vec![0, 0, 0, 1]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_long_backlog_of_history_is_read_in_one_batch_of_pages() {
    let app = spawn_app_with(Options {
        events: false,
        settings: vec![("sync.poll_interval", "1s".into())],
        sim: SimConfig {
            requests_per_second: 200.0,
            burst: 1000,
            ..SimConfig::default()
        },
        ..Options::default()
    })
    .await;
    let mut deals = Vec::new();
    for i in 0..130 {
        deals.push(new_deal(&app.sim, &format!("Deal {i}")).await);
    }
    for &deal in &deals {
        app.sim.move_deal_silently(deal, "PREPARATION").await;
    }
    app.wait_until(
        Duration::from_secs(30),
        "a task for each of 130 deals",
        |sim| deals.iter().all(|d| sim.tasks_for_deal(*d).len() == 1),
    )
    .await;
    let paged = app.sim.requests().into_iter().any(|r| {
        r.method == "batch"
            && r.sub_methods.len() >= 2
            && r.sub_methods.iter().all(|m| m == "crm.stagehistory.list")
    });
    assert!(
        paged,
        "the sweep read its further pages together in one batch"
    );
    app.stop().await;
}

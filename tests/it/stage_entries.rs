//! A deal entering a stage gets its rules applied once; other updates do nothing.

use std::time::Duration;

use b24_robot::worker::Activity;
use chrono::{DateTime, FixedOffset};

use crate::helpers::{new_deal, spawn_app};

#[tokio::test]
async fn a_stage_move_creates_exactly_one_task_with_title_responsible_and_deadline() {
    let app = spawn_app().await;
    let deal = new_deal(&app.sim, "Romashka LLC").await;
    app.settle(Duration::from_secs(10)).await;
    let mark = app.mark();
    let delivery = app.sim.move_deal(deal, "PREPARATION").await;
    assert_eq!(delivery.status, Some(200));
    let applied = app
        .reported(
            mark,
            Duration::from_secs(10),
            "the offer applied",
            |a| match a {
                Activity::Effect {
                    deal_id,
                    rule,
                    result: Ok(id),
                    ..
                } if *deal_id == deal && rule == "offer" => Some(id.clone()),
                _ => None,
            },
        )
        .await;
    app.settle(Duration::from_secs(10)).await;

    let tasks = app.sim.tasks_for_deal(deal);
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    let task = &tasks[0];
    assert_eq!(
        task["ID"].to_string().trim_matches('"'),
        applied,
        "the task the worker reported"
    );
    assert_eq!(task["TITLE"], "Send the offer: Romashka LLC");
    assert_eq!(task["RESPONSIBLE_ID"].to_string().trim_matches('"'), "3");
    let moved = app.sim.deal(deal).expect("deal")["MOVED_TIME"]
        .as_str()
        .expect("MOVED_TIME")
        .to_string();
    let moved: DateTime<FixedOffset> =
        DateTime::parse_from_rfc3339(&moved).expect("MOVED_TIME parses");
    let deadline = task["DEADLINE"].as_str().expect("a deadline");
    let deadline: DateTime<FixedOffset> =
        DateTime::parse_from_rfc3339(deadline).expect("deadline with offset");
    assert_eq!(deadline - moved, chrono::Duration::days(2));
    app.stop().await;
}

//! The simulated portal's time: its clock stamps what it writes, `server.time` reads it, and
//! tasks and activities change as people (and our service) work them, over real HTTP.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::tests::call;
use super::*;
use crate::clock::Clock;

fn moment() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 0).unwrap()
}

/// The default portal on a clock that starts at [`moment`].
async fn portal_at_moment() -> SimPortal {
    let portal = SimPortal::start(SimConfig {
        clock: Clock::starting_at(moment()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    portal.with_default_portal();
    portal
}

fn instant(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Whether `at` is `expected` give or take the few real seconds a test takes.
fn about(at: DateTime<Utc>, expected: DateTime<Utc>) -> bool {
    (at - expected).num_seconds().abs() < 30
}

#[tokio::test]
async fn an_advanced_clock_shows_in_stage_history_deal_dates_and_server_time() {
    let portal = portal_at_moment().await;
    let id = portal.create_deal(json!({"TITLE": "A"})).await;
    let created = instant(&portal.stage_history(id)[0]["CREATED_TIME"]);
    assert!(about(created, moment()), "{created}");

    portal.clock().advance(Duration::from_secs(3 * 86_400));
    let later = moment() + chrono::Duration::days(3);
    portal.move_deal(id, "PREPARATION").await;
    let history = portal.stage_history(id);
    let moved = instant(&history[1]["CREATED_TIME"]);
    assert!(about(moved, later), "{moved}");
    // Stage history prints UTC, deal fields the server's offset.
    assert!(
        history[1]["CREATED_TIME"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let deal = portal.deal(id).unwrap();
    assert!(about(instant(&deal["DATE_MODIFY"]), later));
    assert!(about(instant(&deal["DATE_CREATE"]), moment()));
    assert!(deal["DATE_MODIFY"].as_str().unwrap().ends_with("+03:00"));

    let (status, body) = call(&portal, "server.time", json!({})).await;
    assert_eq!(status, 200);
    assert!(about(instant(&body["result"]), later), "{body}");
    assert!(body["result"].as_str().unwrap().ends_with("+03:00"));
    // The `time` object stays on real time: clients pace their calls by it.
    let real = Utc::now().timestamp() as f64;
    assert!((body["time"]["start"].as_f64().unwrap() - real).abs() < 30.0);
}

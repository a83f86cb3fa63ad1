//! Tunnels feeding each other at run time, through custom failure stages that the offline
//! `check` can only suspect (it warns): every copy carries its origin and depth in `ORIGIN_ID`,
//! a copy never fires the tunnel that made it, and a chain stops at `rules.max_tunnel_depth`
//! with a failed decision, a log line and `b24robot_tunnel_depth_exceeded_total`.

use std::time::Duration;

use b24_robot::sandbox::{SimConfig, SimPortal};
use serde_json::{Value, json};

use crate::helpers::{TestApp, seeded_portal, start_on, text};

const LIMIT: Duration = Duration::from_secs(20);

/// Two archives that copy each other's lost deals: deal → copy 1 → copy 2 → copy 3 → stop.
const PING_PONG: &str = r#"
[[tunnel]]
name = "to-archive-3"
pipeline = 2
stage = "lost"
to_pipeline = 3
to_stage = "C3:UC_ARCHIVE"
copy = ["TITLE"]

[[tunnel]]
name = "to-archive-2"
pipeline = 3
stage = "lost"
to_pipeline = 2
to_stage = "C2:UC_ARCHIVE"
copy = ["TITLE"]
"#;

async fn app() -> TestApp {
    let sim = seeded_portal(SimConfig::default()).await;
    for (id, name) in [(2, "Archive A"), (3, "Archive B")] {
        let stage = |code: &str| format!("C{id}:{code}");
        let (new, lose, archive) = (stage("NEW"), stage("LOSE"), stage("UC_ARCHIVE"));
        sim.add_pipeline(
            id,
            name,
            &[
                (&new, "New", 'P'),
                (&lose, "Lost", 'F'),
                (&archive, "Archived", 'F'),
            ],
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    start_on(
        sim,
        dir,
        &[("chains.toml".to_string(), PING_PONG.to_string())],
        &[],
        true,
    )
    .await
}

fn copies(sim: &SimPortal) -> Vec<Value> {
    sim.deals()
        .into_iter()
        .filter(|d| d["ORIGINATOR_ID"] == "b24-robot")
        .collect()
}

#[tokio::test]
async fn a_chain_of_tunnel_copies_stops_at_the_configured_depth_with_a_failed_decision_and_a_metric()
 {
    let app = app().await;
    let deal = app
        .sim
        .create_deal(json!({"TITLE": "Romashka LLC", "ASSIGNED_BY_ID": "3", "CATEGORY_ID": "2", "STAGE_ID": "C2:NEW"}))
        .await;
    app.settle(LIMIT).await;
    app.next_second().await;
    app.sim.move_deal(deal, "C2:LOSE").await;
    app.wait_until(LIMIT, "three copies", |sim| copies(sim).len() >= 3)
        .await;
    // Settled: every copy's entry has been acted on, so a fourth copy would exist by now.
    app.settle(LIMIT).await;

    let mut made = copies(&app.sim);
    made.sort_by_key(|d| text(&d["ID"]).parse::<u64>().unwrap_or(0));
    let origins: Vec<String> = made.iter().map(|d| text(&d["ORIGIN_ID"])).collect();
    assert_eq!(made.len(), 3, "exactly three copies: {origins:?}");
    let ids: Vec<String> = made.iter().map(|d| text(&d["ID"])).collect();
    // Each copy names the deal it was made from, its rule and (from 2 on) its depth.
    assert!(
        origins[0].starts_with(&format!("{deal}:")) && origins[0].ends_with(":to-archive-3:0"),
        "{origins:?}"
    );
    assert!(
        origins[1].starts_with(&format!("{}:", ids[0]))
            && origins[1].ends_with(":to-archive-2:0:2"),
        "{origins:?}"
    );
    assert!(
        origins[2].starts_with(&format!("{}:", ids[1]))
            && origins[2].ends_with(":to-archive-3:0:3"),
        "{origins:?}"
    );

    // The third copy's tunnel decided, and failed: recorded with the reason, counted.
    let last: u64 = ids[2].parse().expect("an id");
    let entries = app.store.entries(last).expect("entries read");
    let decision = entries
        .iter()
        .flat_map(|e| e.decisions.iter())
        .find(|d| d.rule == "to-archive-2")
        .expect("the tunnel decided for the third copy");
    match &decision.outcome {
        b24_robot::rules::Outcome::Failed(why) => assert!(
            why.starts_with(&format!(
                "tunnel chain deeper than 3: deal {last} is already copy 3"
            )),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("\nb24robot_tunnel_depth_exceeded_total 1\n"),
        "{metrics}"
    );
    app.stop().await;
}

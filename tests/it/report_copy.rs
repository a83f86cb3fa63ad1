//! The report copy: the first refresh reads every deal and its stage history, a refresh with
//! nothing changed costs one request, and a changed amount and a newly won deal are picked up
//! by the next one.

use std::sync::Arc;

use b24_robot::rules::{RuleSet, RulesHandle, StageSemantic};
use b24_robot::sandbox::SimConfig;
use b24_robot::store::Store;
use b24_robot::worker::Worker;
use b24_robot::worker::report_copy::refresh;
use serde_json::json;

use crate::helpers::{new_deal_with, seeded_portal, test_settings};

#[tokio::test]
async fn the_copy_is_read_once_then_refreshed_with_what_changed_only() {
    let sim = seeded_portal(SimConfig::default()).await;
    let mut deals = Vec::new();
    for i in 0..60 {
        deals.push(new_deal_with(&sim, &format!("Client {i}"), "NEW", json!({})).await);
    }
    sim.move_deal_silently(deals[0], "PREPARATION").await;
    sim.move_deal_silently(deals[0], "WON").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = test_settings(dir.path(), &sim.webhook_url(), &[]);
    let client = b24_robot::startup::client(&settings).expect("client");
    let rules: RuleSet =
        b24_robot::sandbox::seed::embedded_rules().expect("the shipped rules load");
    let worker = Arc::new(Worker::new(
        &settings,
        Store::open(dir.path()).expect("store"),
        client,
        RulesHandle::new(rules.clone()),
        None,
    ));

    let first = refresh(&worker, &rules, false)
        .await
        .expect("first refresh");
    assert_eq!(first.deals, 60);
    let won = worker
        .store
        .report_deal(deals[0])
        .expect("read")
        .expect("copied");
    assert_eq!(won.semantic, StageSemantic::Success);
    let stages: Vec<&str> = won.history.iter().map(|e| e.stage.as_str()).collect();
    assert_eq!(stages, ["NEW", "PREPARATION", "WON"], "its whole history");
    assert_eq!(won.amount.to_string(), "1000");

    // Nothing changed: one request (both lists' first pages in one batch).
    let before = sim.request_count();
    let again = refresh(&worker, &rules, false)
        .await
        .expect("second refresh");
    assert!(
        sim.request_count() - before <= 2,
        "{} requests",
        sim.request_count() - before
    );
    assert_eq!(again.entries_read, 0);

    // A changed amount and a newly won deal.
    sim.update_deal(deals[5], json!({ "OPPORTUNITY": "2500.00" }))
        .await;
    sim.move_deal_silently(deals[7], "WON").await;
    refresh(&worker, &rules, false)
        .await
        .expect("third refresh");
    let changed = worker
        .store
        .report_deal(deals[5])
        .expect("read")
        .expect("copied");
    assert_eq!(changed.amount.to_string(), "2500");
    let newly = worker
        .store
        .report_deal(deals[7])
        .expect("read")
        .expect("copied");
    assert_eq!(newly.semantic, StageSemantic::Success);
    assert_eq!(newly.history.last().map(|e| e.stage.as_str()), Some("WON"));
    assert_eq!(worker.store.report_deals().expect("all").len(), 60);
}

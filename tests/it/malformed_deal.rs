//! A deal answer (`crm.deal.list`, `crm.deal.get`) that cannot be a deal (`STAGE_ID` null, `ID` not a number) uses up
//! nothing: the job is retried, then parked with the reason, and once the portal answers properly
//! again the stage entry's rules run once.

use std::time::Duration;

use b24_robot::sandbox::{DealCorruption, Faults};
use b24_robot::store::EntryAction;

use crate::helpers::{Options, TestApp, new_deal, spawn_app_with};

const ADMIN: &str = "malformed-admin-token";

async fn parked_then_acted_once(corruption: DealCorruption, reason: &str) {
    let app = spawn_app_with(Options {
        settings: vec![
            ("server.admin_token", ADMIN.into()),
            ("worker.max_attempts", "3".into()),
        ],
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Malformed LLC").await;
    app.settle(Duration::from_secs(10)).await;

    app.sim.set_faults(Faults {
        corrupt_deal: Some((deal, corruption)),
        ..Faults::default()
    });
    app.sim.move_deal(deal, "PREPARATION").await;
    let job = app.parked(deal).await;
    assert_eq!(job.attempts, 3, "each malformed answer counts an attempt");
    let error = job.last_error.unwrap_or_default();
    assert!(
        (error.contains(&format!("crm.deal.get {deal}"))
            || error.contains(&format!("crm.deal.list {deal}")))
            && error.contains(reason),
        "the reason names the deal and what is wrong: {error}"
    );
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    assert!(
        entries_in(&app, deal, "PREPARATION").is_empty(),
        "the stage entry is not used up"
    );

    // The portal answers properly again; the operator re-runs the job.
    app.sim.set_faults(Faults::default());
    let retried = app
        .admin(
            ADMIN,
            reqwest::Method::POST,
            &format!("/admin/jobs/{deal}/retry"),
        )
        .await
        .0;
    assert_eq!(retried, 200);
    app.wait_until(Duration::from_secs(10), "the task", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1], "the rules ran once");
    assert_eq!(
        entries_in(&app, deal, "PREPARATION"),
        vec![EntryAction::Acted]
    );
    app.stop().await;
}

/// What was recorded for the deal's entries into `stage`.
fn entries_in(app: &TestApp, deal: u64, stage: &str) -> Vec<EntryAction> {
    app.store
        .entries(deal)
        .expect("entries")
        .into_iter()
        .filter(|e| e.entry.stage_id == stage)
        .map(|e| e.action)
        .collect()
}

#[tokio::test]
async fn a_deal_answer_with_a_null_stage_is_retried_then_parked_and_later_acted_on_once() {
    parked_then_acted_once(DealCorruption::NullStage, "STAGE_ID is null").await;
}

#[tokio::test]
async fn a_deal_answer_with_an_id_that_is_not_a_number_is_retried_then_parked_and_later_acted_on_once()
 {
    parked_then_acted_once(DealCorruption::IdNotANumber, "ID is \"abc\"").await;
}

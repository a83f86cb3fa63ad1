//! `backfill`: the rules applied to deals already sitting in their stages, exactly once,
//! resumable after an interruption, in-process and through a running service's admin API.

use std::sync::Arc;
use std::time::Duration;

use b24_robot::rules::{RuleSet, RulesHandle};
use b24_robot::sandbox::{SimConfig, SimPortal};
use b24_robot::store::Store;
use b24_robot::worker::backfill::{BackfillOptions, RunState, Status, StatusReport, run};
use b24_robot::worker::{Activity, Worker};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, new_deal_with, poll, seeded_portal, start_on, test_settings};

const ADMIN: &str = "backfill-admin-token";

const RULES: &str = r#"
pipeline = 0

[[task]]
name = "offer"
stage = "PREPARATION"
title = "Send the offer: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }

[[task]]
name = "welcome"
stage = "NEW"
title = "Call the new client: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }

[[require]]
name = "needs-inn"
stage = "PREPARATION"
fields = ["UF_CRM_INN"]
on_missing = "revert"
"#;

const REPEAT_RULES: &str = r#"
pipeline = 1

[[task]]
name = "repeat-offer"
stage = "C1:PREPARATION"
title = "Offer again: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }
"#;

fn rules() -> Vec<(String, String)> {
    vec![
        ("main.toml".into(), RULES.into()),
        ("repeat.toml".into(), REPEAT_RULES.into()),
    ]
}

fn fast() -> SimConfig {
    SimConfig {
        requests_per_second: 500.0,
        burst: 1000,
        ..SimConfig::default()
    }
}

fn fast_settings() -> Vec<(&'static str, String)> {
    vec![
        ("portal.requests_per_second", "400".into()),
        ("portal.burst", "800".into()),
        ("server.admin_token", ADMIN.into()),
    ]
}

/// `prep` deals in PREPARATION, `new` in NEW (pipeline 0), `repeat` in C1:PREPARATION.
async fn deals(
    sim: &SimPortal,
    prep: usize,
    new: usize,
    repeat: usize,
) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let mut p = Vec::new();
    for i in 0..prep {
        p.push(new_deal_with(sim, &format!("Prep {i}"), "PREPARATION", json!({})).await);
    }
    let mut n = Vec::new();
    for i in 0..new {
        n.push(new_deal_with(sim, &format!("New {i}"), "NEW", json!({})).await);
    }
    let mut r = Vec::new();
    for i in 0..repeat {
        r.push(
            new_deal_with(
                sim,
                &format!("Repeat {i}"),
                "C1:PREPARATION",
                json!({ "CATEGORY_ID": "1" }),
            )
            .await,
        );
    }
    // They sit in their stages from before the service's first start.
    crate::helpers::into_the_next_second().await;
    (p, n, r)
}

/// A worker on the store in `dir`, as `backfill` builds it when no service runs.
fn worker(sim: &SimPortal, dir: &std::path::Path) -> Arc<Worker> {
    reporting_worker(sim, dir, None)
}

/// [`worker`], reporting what it does on `activity`.
fn reporting_worker(
    sim: &SimPortal,
    dir: &std::path::Path,
    activity: Option<mpsc::UnboundedSender<Activity>>,
) -> Arc<Worker> {
    let settings = test_settings(dir, &sim.webhook_url(), &fast_settings());
    let client = b24_robot::startup::client(&settings).expect("client");
    let (rules, _) = RuleSet::from_sources(&rules()).expect("rules load");
    Arc::new(Worker::new(
        &settings,
        Store::open(dir).expect("store"),
        client,
        RulesHandle::new(rules),
        activity,
    ))
}

async fn backfill(worker: &Worker, options: BackfillOptions) -> StatusReport {
    let status = Status::default();
    run(worker, &options, &status, &CancellationToken::new())
        .await
        .expect("the backfill runs");
    status.report(0)
}

fn counts(sim: &SimPortal, deals: &[u64]) -> Vec<usize> {
    deals.iter().map(|d| sim.tasks_for_deal(*d).len()).collect()
}

#[tokio::test]
async fn a_backfill_applies_each_rule_once_resumes_after_an_interruption_and_repeats_nothing() {
    let sim = seeded_portal(fast()).await;
    let (prep, new, _) = deals(&sim, 200, 100, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (reports, mut activity) = mpsc::unbounded_channel();
    let worker = reporting_worker(&sim, dir.path(), Some(reports));

    // Interrupted after some progress: once the rules were applied to 100 deals.
    let status = Status::default();
    let stop = CancellationToken::new();
    let task = {
        let (worker, status, stop) = (worker.clone(), status.clone(), stop.clone());
        tokio::spawn(async move { run(&worker, &BackfillOptions::default(), &status, &stop).await })
    };
    let mut applied = 0;
    while applied < 100 {
        let report = tokio::time::timeout(Duration::from_secs(20), activity.recv())
            .await
            .expect("no progress")
            .expect("the backfill reports");
        applied += usize::from(matches!(report, Activity::StageEntry { acted: true, .. }));
    }
    stop.cancel();
    let interrupted = task.await.expect("task").expect("no error");
    assert!(!interrupted.finished);
    assert_eq!(status.state(), RunState::Cancelled);
    let stored = worker.store.backfill_progress().expect("ok").expect("kept");
    assert!(stored.last_deal_id > 0 && !stored.finished);
    let partial: usize = counts(&sim, &prep).iter().chain(&counts(&sim, &new)).sum();
    assert!(
        partial < 300,
        "interrupted before the end ({partial} tasks)"
    );

    // Resumed: the same options continue.
    let resumed = backfill(&worker, BackfillOptions::default()).await;
    assert_eq!(resumed.state, RunState::Done);
    assert_eq!(counts(&sim, &prep), vec![1; 200], "one offer task per deal");
    assert_eq!(
        counts(&sim, &new),
        vec![1; 100],
        "one welcome task per deal"
    );
    assert!(
        sim.tasks_for_deal(prep[0])[0]["TITLE"]
            .as_str()
            .is_some_and(|t| t.starts_with("Send the offer"))
    );
    // The gate is left out: nothing moved back, no comment.
    assert!(sim.comments().is_empty(), "no gate comment");
    assert!(
        prep.iter()
            .all(|d| sim.deal(*d).expect("deal")["STAGE_ID"] == "PREPARATION")
    );
    // Recorded in the decision log.
    let entries = worker.store.entries(prep[0]).expect("ok");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].note.as_deref(), Some("backfill"));
    assert_eq!(entries[0].decisions[0].rule, "offer");

    // Again: nothing new.
    let before = sim.tasks().len();
    let again = backfill(&worker, BackfillOptions::default()).await;
    assert_eq!(again.state, RunState::Done);
    assert_eq!(again.effects, 0);
    assert_eq!(again.already, 300);
    assert_eq!(sim.tasks().len(), before);
}

#[tokio::test]
async fn rule_and_pipeline_filters_dry_run_and_a_gate_named_acts_as_warn() {
    let sim = seeded_portal(fast()).await;
    let (prep, new, repeat) = deals(&sim, 30, 20, 10).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = worker(&sim, dir.path());

    // Dry run: the writes, printed, none made, nothing recorded.
    let dry = backfill(
        &worker,
        BackfillOptions {
            dry_run: true,
            ..BackfillOptions::default()
        },
    )
    .await;
    assert_eq!(dry.writes_total, 60);
    assert_eq!(dry.writes[0]["method"], "tasks.task.add");
    assert!(sim.tasks().is_empty());
    assert!(worker.store.entries(prep[0]).expect("ok").is_empty());
    assert!(worker.store.backfill_progress().expect("ok").is_none());

    // --rule offer: only the PREPARATION deals.
    let offer = backfill(
        &worker,
        BackfillOptions {
            rule: Some("offer".into()),
            ..BackfillOptions::default()
        },
    )
    .await;
    assert_eq!(offer.effects, 30);
    assert_eq!(counts(&sim, &prep), vec![1; 30]);
    assert_eq!(counts(&sim, &new), vec![0; 20]);
    assert_eq!(counts(&sim, &repeat), vec![0; 10]);

    // --pipeline 1: only the repeat pipeline.
    backfill(
        &worker,
        BackfillOptions {
            pipeline: Some(1),
            ..BackfillOptions::default()
        },
    )
    .await;
    assert_eq!(counts(&sim, &repeat), vec![1; 10]);
    assert_eq!(counts(&sim, &new), vec![0; 20]);

    // Everything else: the welcome tasks; the offers are not made twice.
    let all = backfill(&worker, BackfillOptions::default()).await;
    assert_eq!(all.effects, 20);
    assert_eq!(counts(&sim, &prep), vec![1; 30]);
    assert_eq!(counts(&sim, &new), vec![1; 20]);

    // The gate, named: its revert acts as warn (a comment and a notification, no move).
    let gate = backfill(
        &worker,
        BackfillOptions {
            rule: Some("needs-inn".into()),
            ..BackfillOptions::default()
        },
    )
    .await;
    assert_eq!(gate.entries, 30);
    assert_eq!(sim.comments().len(), 30);
    assert!(
        prep.iter()
            .all(|d| sim.deal(*d).expect("deal")["STAGE_ID"] == "PREPARATION"),
        "no deal moved back"
    );
    let unknown = run(
        &worker,
        &BackfillOptions {
            rule: Some("nope".into()),
            ..BackfillOptions::default()
        },
        &Status::default(),
        &CancellationToken::new(),
    )
    .await;
    let error = unknown.expect_err("an unknown rule is refused").to_string();
    assert_eq!(error, "no rule named \"nope\" in the rules in force");
    assert_eq!(sim.comments().len(), 30, "nothing more was done");
}

#[tokio::test]
async fn through_the_admin_api_of_a_running_service_without_repeating_the_workers_effects() {
    let sim = seeded_portal(fast()).await;
    let (prep, new, _) = deals(&sim, 60, 20, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = start_on(sim, dir, &rules(), &fast_settings(), true).await;
    app.started().await;
    // A deal created after the start: the worker acts on its entry.
    let moved = new_deal_with(&app.sim, "Fresh", "NEW", json!({})).await;
    app.wait_until(Duration::from_secs(10), "the worker's task", |sim| {
        sim.tasks_for_deal(moved).len() == 1
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert!(app.task_counts(&prep).iter().all(|&n| n == 0));

    let url = format!("http://127.0.0.1:{}/admin/backfill", app.port);
    let post = |body: Value| app.client.post(&url).bearer_auth(ADMIN).json(&body).send();
    assert_eq!(
        app.client
            .post(&url)
            .json(&json!({}))
            .send()
            .await
            .expect("answers")
            .status(),
        401
    );
    let started = post(json!({})).await.expect("answers");
    assert_eq!(started.status(), 202);
    let status = wait_done(&app).await;
    assert_eq!(status["total"], status["done"]);
    assert_eq!(app.task_counts(&prep), vec![1; 60]);
    assert_eq!(app.task_counts(&new), vec![1; 20]);
    assert_eq!(
        app.sim.tasks_for_deal(moved).len(),
        1,
        "the entry the worker acted on is not acted on again"
    );

    let again = post(json!({})).await.expect("answers");
    assert_eq!(again.status(), 202);
    let status = wait_done(&app).await;
    assert_eq!(status["effects"], 0);
    assert_eq!(app.task_counts(&prep), vec![1; 60]);
    let bad = post(json!({ "rule": "nope" })).await.expect("answers");
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

async fn wait_done(app: &TestApp) -> Value {
    poll(
        Duration::from_secs(20),
        "the backfill to finish",
        async || {
            let (_, status) = app
                .admin(ADMIN, reqwest::Method::GET, "/admin/backfill")
                .await;
            assert_ne!(status["state"], "failed", "{status}");
            (status["state"] == "done").then_some(status)
        },
    )
    .await
}

#[tokio::test]
async fn a_deal_list_that_never_advances_stops_the_backfill_with_the_reason_and_a_rerun_goes_on() {
    let sim = seeded_portal(fast()).await;
    let (prep, _, _) = deals(&sim, 60, 0, 0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = worker(&sim, dir.path());

    // The portal ignores `>ID` and `start`: the same first page, and a `next`, forever.
    sim.set_faults(b24_robot::sandbox::Faults {
        endless_paging: Some(b24_robot::sandbox::EndlessPaging::All),
        ..b24_robot::sandbox::Faults::default()
    });
    let before = sim.request_count();
    let status = Status::default();
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run(
            &worker,
            &BackfillOptions::default(),
            &status,
            &CancellationToken::new(),
        ),
    )
    .await
    .expect("the backfill ends");
    let error = outcome.expect_err("it stops with an error").to_string();
    assert!(
        error.contains("crm.deal.list") && error.contains(">ID"),
        "the reason says what the portal did: {error}"
    );
    assert_eq!(status.state(), RunState::Failed);
    let requests = sim.request_count() - before;
    assert!(requests <= 10, "bounded: {requests} requests");

    // The portal recovers: the same command goes on from the last good deal, once each.
    sim.set_faults(b24_robot::sandbox::Faults::default());
    let resumed = backfill(&worker, BackfillOptions::default()).await;
    assert_eq!(resumed.state, RunState::Done);
    assert_eq!(counts(&sim, &prep), vec![1; 60], "one offer task per deal");
}

//! A portal that fails, limits and refuses: every stage entry still gets its effects exactly
//! once, later if need be; what can never succeed is recorded and never blocks the others.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use b24_robot::sandbox::{Faults, SimConfig};
use b24_robot::store::EffectState;
use b24_robot::worker::Activity;

use crate::helpers::{
    Options, new_deal, new_deal_with, rule_file, samples, seeded_portal, spawn_app_with, start_on,
    task_rules, value,
};

fn fast_portal() -> (SimConfig, Vec<(&'static str, String)>) {
    (
        SimConfig {
            requests_per_second: 50.0,
            burst: 200,
            ..SimConfig::default()
        },
        vec![
            ("portal.requests_per_second", "50".into()),
            ("portal.burst", "200".into()),
        ],
    )
}

#[tokio::test]
async fn every_moved_deal_gets_exactly_one_task_when_a_third_of_the_portal_answers_fail() {
    let (sim, settings) = fast_portal();
    let app = spawn_app_with(Options {
        sim,
        settings,
        ..Options::default()
    })
    .await;
    let mut deals = Vec::new();
    for i in 0..10 {
        deals.push(new_deal(&app.sim, &format!("Faulty {i} LLC")).await);
    }
    app.settle(Duration::from_secs(10)).await;
    let before = app.sim.request_count();

    // 15% fail before running, 15% run and then fail, 6% lose the connection (half of them
    // after running): the service cannot tell whether a write happened.
    app.sim.set_faults(Faults {
        error_rate: 0.15,
        error_after_rate: 0.15,
        drop_rate: 0.06,
        seed: Some(2024),
        ..Faults::default()
    });
    for &deal in &deals {
        app.sim.move_deal(deal, "PREPARATION").await;
    }
    app.wait_until(Duration::from_secs(30), "a task for every deal", |sim| {
        deals.iter().all(|d| !sim.tasks_for_deal(*d).is_empty())
    })
    .await;
    app.settle(Duration::from_secs(30)).await;
    app.sim.set_faults(Faults::default());
    app.settle(Duration::from_secs(10)).await;

    assert_eq!(
        app.task_counts(&deals),
        vec![1; 10],
        "exactly one task per deal"
    );
    let failed = app.sim.requests()[before..]
        .iter()
        .filter(|r| r.status >= 500 || r.status == 0)
        .count();
    assert!(failed > 0, "the faults were injected");
    assert!(
        app.store.all_queued().expect("queue").is_empty(),
        "nothing parked"
    );
    app.stop().await;
}

#[tokio::test]
async fn twenty_moves_complete_at_one_request_per_second_with_few_503s() {
    let sim = seeded_portal(SimConfig {
        requests_per_second: 1.0,
        burst: 5,
        ..SimConfig::default()
    })
    .await;
    // The deals exist before the first start: only their moves cost requests.
    let mut deals = Vec::new();
    for i in 0..20 {
        deals.push(new_deal(&sim, &format!("Slow {i} LLC")).await);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = vec![
        ("portal.requests_per_second", "1".to_string()),
        ("portal.burst", "5".to_string()),
    ];
    let app = start_on(sim, dir, &[task_rules()], &settings, true).await;

    for &deal in &deals {
        let delivery = app.sim.move_deal(deal, "PREPARATION").await;
        assert_eq!(delivery.status, Some(200));
    }
    app.wait_until(Duration::from_secs(60), "a task for every deal", |sim| {
        deals.iter().all(|d| !sim.tasks_for_deal(*d).is_empty())
    })
    .await;
    app.settle(Duration::from_secs(30)).await;

    assert_eq!(app.task_counts(&deals), vec![1; 20]);
    let limited = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 503)
        .count();
    assert!(
        limited <= 3,
        "the service keeps under the portal's limit: {limited} answers were 503"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_task_refused_with_operation_time_limit_is_created_once_after_the_reset() {
    let app = spawn_app_with(Options::default()).await;
    let deal = new_deal(&app.sim, "Busy portal LLC").await;
    app.settle(Duration::from_secs(10)).await;

    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3;
    let reset_at = Instant::now()
        + (UNIX_EPOCH + Duration::from_secs(reset))
            .duration_since(SystemTime::now())
            .unwrap_or_default();
    app.sim.set_faults(Faults {
        method_429: Some(("tasks.task.add".into(), reset)),
        ..Faults::default()
    });
    app.sim.move_deal(deal, "PREPARATION").await;
    app.job_when(
        deal,
        Duration::from_secs(10),
        "the job postponed on OPERATION_TIME_LIMIT",
        |q| {
            q.last_error
                .as_ref()
                .is_some_and(|e| e.contains("OPERATION_TIME_LIMIT") || e.contains("parked"))
        },
    )
    .await;
    assert!(app.sim.tasks_for_deal(deal).is_empty());

    // The portal would take the call again at once: only the service's own park, until the
    // reset the portal named (at least 10 s), holds it back.
    app.sim.set_faults(Faults::default());
    app.wait_until(Duration::from_secs(30), "the task, later", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    let adds: Vec<Instant> = app
        .sim
        .requests()
        .iter()
        .filter(|r| r.sub_methods.iter().any(|m| m == "tasks.task.add"))
        .map(|r| r.at)
        .collect();
    assert_eq!(adds.len(), 2, "refused once, then made once");
    assert!(
        adds[1] >= reset_at,
        "a parked method is not sent again before its reset: sent again {:?} before it",
        reset_at.saturating_duration_since(adds[1])
    );
    assert!(
        app.store.all_queued().expect("queue").is_empty(),
        "not parked, not left behind"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_deal_deleted_before_its_event_is_processed_completes_as_deal_deleted() {
    let app = spawn_app_with(Options::default()).await;
    let deal = new_deal(&app.sim, "Gone LLC").await;
    app.settle(Duration::from_secs(10)).await;

    app.sim.move_deal_silently(deal, "PREPARATION").await;
    app.sim.delete_deal(deal).await;
    let delivery = app.sim.send_event("ONCRMDEALUPDATE", deal).await;
    assert_eq!(delivery.status, Some(200));
    app.settle(Duration::from_secs(10)).await;

    assert!(app.sim.tasks_for_deal(deal).is_empty());
    assert!(
        app.store.all_queued().expect("queue").is_empty(),
        "the job completed"
    );
    let state = app
        .store
        .deal_state(deal)
        .expect("store")
        .expect("the deal is known");
    assert!(state.deleted, "recorded as deleted: {state:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_task_the_portal_refuses_for_good_does_not_block_other_deals() {
    // A title made only of a field: empty when the field is, and Bitrix24 refuses a task without
    // a title (400 ERROR_CORE), which no retry can change.
    let rules = vec![
        task_rules(),
        rule_file(
            "inn.toml",
            r#"
pipeline = 0

[[task]]
name = "inn-call"
stage = "PREPARATION"
title = "{UF_CRM_INN}"
responsible = "assigned"
deadline = { after = "1 day" }
"#,
        ),
    ];
    let app = spawn_app_with(Options {
        rules,
        ..Options::default()
    })
    .await;
    let broken = new_deal(&app.sim, "No INN LLC").await;
    let fine = new_deal_with(
        &app.sim,
        "INN LLC",
        "NEW",
        serde_json::json!({ "UF_CRM_INN": "7707083893" }),
    )
    .await;
    let also_fine = new_deal_with(
        &app.sim,
        "INN 2 LLC",
        "NEW",
        serde_json::json!({ "UF_CRM_INN": "7736207543" }),
    )
    .await;
    app.settle(Duration::from_secs(10)).await;

    for deal in [broken, fine, also_fine] {
        app.sim.move_deal(deal, "PREPARATION").await;
    }
    app.wait_until(
        Duration::from_secs(15),
        "both tasks for the deals with an INN",
        |sim| sim.tasks_for_deal(fine).len() == 2 && sim.tasks_for_deal(also_fine).len() == 2,
    )
    .await;
    app.settle(Duration::from_secs(15)).await;

    assert_eq!(app.task_counts(&[broken, fine, also_fine]), vec![1, 2, 2]);
    assert!(
        app.store.all_queued().expect("queue").is_empty(),
        "the failing job is not retried forever"
    );
    let effects = app.store.effects(broken).expect("effects");
    let failed = effects
        .iter()
        .find(|e| e.rule == "inn-call")
        .expect("the effect is recorded");
    match &failed.state {
        EffectState::Failed { error } => assert!(error.to_lowercase().contains("title"), "{error}"),
        other => panic!("expected a failure for good, got {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn a_read_that_keeps_failing_ends_parked_with_its_last_error() {
    let settings = vec![
        ("worker.max_attempts", "3".to_string()),
        ("portal.max_attempts", "2".to_string()),
        ("server.admin_token", "ops-token".to_string()),
    ];
    let app = spawn_app_with(Options {
        settings,
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Unlucky LLC").await;
    app.settle(Duration::from_secs(10)).await;

    app.sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let delivery = app.sim.move_deal(deal, "PREPARATION").await;
    assert_eq!(
        delivery.status,
        Some(200),
        "the event is taken whatever the portal's state"
    );
    app.parked(deal).await;

    let parked = app.store.all_queued().expect("queue");
    assert_eq!(parked.len(), 1, "{parked:?}");
    let job = &parked[0];
    assert_eq!(job.deal_id, deal);
    assert!(job.parked);
    let error = job.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("500") || error.contains("INTERNAL_SERVER_ERROR"),
        "the last error is kept: {error:?}"
    );
    assert!(app.sim.tasks_for_deal(deal).is_empty());

    // The portal is back: a parked job stays parked until an operator re-runs it. Real time:
    // an unparked job would be due again within worker.retry_max (500 ms); only letting that
    // time pass shows that it is not taken.
    app.sim.set_faults(Faults::default());
    let requests = app.sim.request_count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        app.sim.tasks_for_deal(deal).is_empty(),
        "parked means parked"
    );
    assert_eq!(app.sim.request_count(), requests, "not even read again");
    let (status, retried) = app
        .admin(
            "ops-token",
            reqwest::Method::POST,
            &format!("/admin/jobs/{deal}/retry"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(retried["retried"], serde_json::json!([deal]));
    app.wait_until(
        Duration::from_secs(15),
        "the task after the re-run",
        |sim| sim.tasks_for_deal(deal).len() == 1,
    )
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.sim.tasks_for_deal(deal).len(), 1);
    assert!(app.store.all_queued().expect("queue").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn answers_slower_than_the_client_timeout_never_duplicate_a_task() {
    let (sim, mut settings) = fast_portal();
    settings.push(("portal.timeout", "300ms".into()));
    let app = spawn_app_with(Options {
        sim,
        settings,
        ..Options::default()
    })
    .await;
    let mut deals = Vec::new();
    for i in 0..5 {
        deals.push(new_deal(&app.sim, &format!("Slow {i} LLC")).await);
    }
    app.settle(Duration::from_secs(10)).await;
    // Every task write runs on the portal and is answered only after the client has given up
    // on it (outcome unknown); reads and lookups are answered at once.
    app.sim.set_faults(Faults {
        hold_after: Some(("tasks.task.add".into(), Duration::from_millis(600))),
        ..Faults::default()
    });
    let mark = app.mark();
    for &deal in &deals {
        app.sim.move_deal(deal, "PREPARATION").await;
    }
    // Each deal's task is reported applied: found by the lookup after the write timed out.
    let mut applied = Vec::new();
    for &deal in &deals {
        applied.push(
            app.reported(
                mark,
                Duration::from_secs(30),
                "the task applied",
                |a| match a {
                    Activity::Effect {
                        deal_id,
                        method,
                        result: Ok(id),
                        ..
                    } if *deal_id == deal && method == "tasks.task.add" => Some(id.clone()),
                    _ => None,
                },
            )
            .await,
        );
    }
    app.settle(Duration::from_secs(30)).await;
    app.sim.set_faults(Faults::default());

    let metrics = samples(&app.metrics_text().await);
    assert_eq!(
        value(
            &metrics,
            "b24robot_effects_total{rule=\"offer\",kind=\"task\",result=\"retried\"}"
        ),
        5.0,
        "every deal's write timed out once"
    );
    // Only the task writes are held: every batch that failed is one the client gave up on.
    assert!(
        value(
            &metrics,
            "b24robot_rest_calls_total{method=\"batch\",outcome=\"transient\"}"
        ) >= 1.0,
        "the client timed out on the writes"
    );
    for (&deal, id) in deals.iter().zip(&applied) {
        let tasks = app.sim.tasks_for_deal(deal);
        assert_eq!(tasks.len(), 1, "deal {deal}: exactly one task");
        assert_eq!(tasks[0]["ID"].to_string().trim_matches('"'), id.as_str());
    }
    app.stop().await;
}

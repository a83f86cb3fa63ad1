//! An unreachable portal costs nothing: after a few failures the client stops sending work and
//! probes it, one request at a time; the worker takes no job meanwhile; events are still taken;
//! and once the portal answers again the backlog drains oldest first, each effect once.
//!
//! These tests run in real time (the service talks to a real HTTP server, so tokio's clock
//! cannot be paused): an outage of a few seconds covers the first probes (1 s, then 2 s).

use std::time::{Duration, Instant};

use b24_robot::sandbox::{Faults, Outage, SimConfig};
use serde_json::json;

use crate::helpers::{
    Options, TestApp, seeded_portal, spawn_app, spawn_app_with, start_on, task_rules, wait_for,
};

/// The value of an unlabelled sample in `/metrics`.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

async fn deals_moved(app: &TestApp, n: usize) -> Vec<u64> {
    let mut deals = Vec::with_capacity(n);
    for i in 0..n {
        let deal = app
            .sim
            .create_deal(json!({"TITLE": format!("Outage {i} LLC"), "ASSIGNED_BY_ID": 1}))
            .await;
        deals.push(deal);
    }
    for &deal in &deals {
        let delivery = app.sim.move_deal(deal, "PREPARATION").await;
        assert_eq!(
            delivery.status,
            Some(200),
            "events are taken during the outage"
        );
    }
    deals
}

async fn until_down(app: &TestApp) {
    let limit = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = app.readyz().await;
        if ready["portal_down_since"].is_string() {
            assert!(
                ready["portal"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("unreachable since"),
                "{ready}"
            );
            return;
        }
        assert!(
            Instant::now() < limit,
            "the portal is never seen down: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outage_then_recovery(outage: Outage) {
    let app = spawn_app().await;
    app.started().await;
    app.sim.set_faults(Faults {
        outage: Some(outage),
        ..Faults::default()
    });
    let deals = deals_moved(&app, 12).await;
    until_down(&app).await;

    // Down: nothing but probes, one at a time, and no round takes the queue.
    let metrics = app.metrics_text().await;
    assert_eq!(sample(&metrics, "b24robot_portal_up"), 0.0);
    let rounds = sample(&metrics, "b24robot_rounds_total");
    let requests = app.sim.request_count();
    app.sim.reset_in_flight();
    // Why it sleeps: the probes back off in real time (1 s, 2 s, 4 s...).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = app.sim.requests()[requests..].to_vec();
    assert!(
        app.sim.reset_in_flight() <= 1,
        "at most one request in flight during the outage"
    );
    assert!(
        during.iter().all(|r| r.method == "server.time"),
        "only probes are sent: {:?}",
        during.iter().map(|r| &r.method).collect::<Vec<_>>()
    );
    assert!(
        (1..=3).contains(&during.len()),
        "probes back off: {} in 4 s",
        during.len()
    );
    let metrics = app.metrics_text().await;
    assert_eq!(
        sample(&metrics, "b24robot_rounds_total"),
        rounds,
        "no round while the portal is down: the queue is not cycled"
    );
    assert!(sample(&metrics, "b24robot_portal_down_seconds") >= 3.0);
    assert_eq!(
        app.store.queue_len(),
        deals.len(),
        "every event waits, none lost"
    );

    // Back: every deal gets its task, once; nothing was parked or counted as an attempt.
    app.sim.set_faults(Faults::default());
    app.wait_until(Duration::from_secs(40), "a task for every deal", |sim| {
        deals.iter().all(|d| !sim.tasks_for_deal(*d).is_empty())
    })
    .await;
    app.settle(Duration::from_secs(20)).await;
    assert!(
        app.task_counts(&deals).iter().all(|&n| n == 1),
        "one task a deal"
    );
    assert_eq!(app.store.parked_len(), 0, "an outage parks nothing");
    let ready = app.readyz().await;
    assert_eq!(ready["portal"], "ok", "{ready}");
    assert!(ready["portal_down_since"].is_null());
    let metrics = app.metrics_text().await;
    assert_eq!(sample(&metrics, "b24robot_portal_up"), 1.0);
    assert_eq!(sample(&metrics, "b24robot_portal_outages_total"), 1.0);
    // Oldest first: the tasks were made in the order the deals moved.
    let order: Vec<u64> = {
        let mut tasks = app.sim.tasks();
        tasks.sort_by_key(|t| crate::helpers::text(&t["ID"]).parse::<u64>().ok());
        tasks
            .iter()
            .filter_map(|t| {
                let bound = crate::helpers::text(&t["UF_CRM_TASK"][0]);
                bound.strip_prefix("D_")?.parse().ok()
            })
            .filter(|d| deals.contains(d))
            .collect()
    };
    assert_eq!(order, deals, "the backlog drains oldest first");
    app.stop().await;
}

#[tokio::test]
async fn behind_a_proxy_answering_502_only_probes_are_sent_and_the_backlog_drains_once() {
    outage_then_recovery(Outage::Gateway(502)).await;
}

#[tokio::test]
async fn with_connections_dropped_only_probes_are_sent_and_the_backlog_drains_once() {
    outage_then_recovery(Outage::Dropped).await;
}

#[tokio::test]
async fn an_error_envelope_is_an_answer_not_an_outage() {
    // 500 INTERNAL_SERVER_ERROR with an envelope comes from Bitrix24 itself: retried as ever,
    // never called an outage.
    let app = spawn_app_with(Options {
        sim: SimConfig::default(),
        ..Options::default()
    })
    .await;
    app.started().await;
    app.sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let deal = app
        .sim
        .create_deal(json!({"TITLE": "Envelope LLC", "ASSIGNED_BY_ID": 1}))
        .await;
    app.sim.move_deal(deal, "PREPARATION").await;
    wait_for(Duration::from_secs(10), "a few failed attempts", || {
        app.sim
            .requests()
            .iter()
            .filter(|r| r.status == 500)
            .count()
            >= 5
    })
    .await;
    let ready = app.readyz().await;
    assert_eq!(ready["portal"], "ok", "{ready}");
    app.sim.set_faults(Faults::default());
    app.settle(Duration::from_secs(20)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

#[tokio::test]
async fn at_a_first_start_with_the_portal_unreachable_events_are_taken_at_once_and_acted_on_later()
{
    let sim = seeded_portal(SimConfig::default()).await;
    sim.set_faults(Faults {
        outage: Some(Outage::Gateway(504)),
        ..Faults::default()
    });
    let before = sim
        .create_deal(json!({"TITLE": "Before LLC", "ASSIGNED_BY_ID": 1}))
        .await;
    sim.move_deal_silently(before, "PREPARATION").await;
    crate::helpers::into_the_next_second().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let app = start_on(sim, dir, &[task_rules()], &[], true).await;
    let answer = app
        .client
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await
        .expect("the service answers");
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the service answers from the first moment: {:?}",
        started.elapsed()
    );
    let deal = app
        .sim
        .create_deal(json!({"TITLE": "During LLC", "ASSIGNED_BY_ID": 1}))
        .await;
    let delivery = app.sim.move_deal(deal, "PREPARATION").await;
    assert_eq!(
        delivery.status,
        Some(200),
        "an event is taken while the portal is away"
    );
    until_down(&app).await;

    app.sim.set_faults(Faults::default());
    app.wait_until(
        Duration::from_secs(30),
        "the deal moved meanwhile gets its task",
        |sim| !sim.tasks_for_deal(deal).is_empty(),
    )
    .await;
    app.settle(Duration::from_secs(20)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1], "once");
    assert_eq!(
        app.task_counts(&[before]),
        vec![0],
        "an entry made before the first start is not acted on"
    );
    app.stop().await;
}

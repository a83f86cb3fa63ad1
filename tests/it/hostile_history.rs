//! A portal whose stage-history answers are hostile: items listed twice, pages that never end.
//! Each stage entry still gets its effects once; a deal whose history never ends is parked with
//! the reason and holds back no other deal; the sweep stops, counts it, and resumes later.

use std::time::Duration;

use b24_robot::sandbox::{EndlessPaging, Faults, SimConfig, SimPortal};
use b24_robot::store::Store;
use b24_robot::worker::Activity;

use crate::helpers::{
    Options, calls_of, new_deal, poll, samples, seeded_portal, spawn_app_with, start_on,
    task_rules, value,
};

const ADMIN: &str = "hostile-admin-token";

fn admin() -> Vec<(&'static str, String)> {
    vec![("server.admin_token", ADMIN.into())]
}

/// `crm.stagehistory.list` calls the portal received, top level or inside a `batch`.
fn history_calls(sim: &SimPortal) -> usize {
    calls_of(sim, "crm.stagehistory.list")
}

#[tokio::test]
async fn a_history_item_listed_twice_creates_one_task_per_stage_entry() {
    let app = spawn_app_with(Options::default()).await;
    let deal = new_deal(&app.sim, "Listed twice LLC").await;
    app.settle(Duration::from_secs(10)).await;

    app.sim.set_faults(Faults {
        history_twice: true,
        ..Faults::default()
    });
    let mark = app.mark();
    app.sim.move_deal(deal, "PREPARATION").await;
    app.deal_done(mark, deal).await;
    app.settle(Duration::from_secs(10)).await;

    let tasks = app.sim.tasks_for_deal(deal);
    assert_eq!(tasks.len(), 1, "one task for one stage entry: {tasks:#?}");
    // The entry listed twice is one stage entry to the worker, acted on once.
    let reported: Vec<(String, bool)> = app
        .reports_since(mark)
        .into_iter()
        .filter_map(|a| match a {
            Activity::StageEntry {
                deal_id,
                stage_id,
                acted,
                ..
            } if deal_id == deal => Some((stage_id, acted)),
            _ => None,
        })
        .collect();
    assert_eq!(reported, [("PREPARATION".to_string(), true)]);
    let recorded: Vec<u64> = app
        .store
        .entries(deal)
        .expect("entries")
        .iter()
        .map(|e| e.entry.id)
        .collect();
    let history: Vec<u64> = app
        .sim
        .stage_history(deal)
        .iter()
        .filter_map(|e| e["ID"].as_u64())
        .collect();
    assert_eq!(recorded, history, "each entry of the portal recorded once");
    app.stop().await;
}

/// Two deals moved while the service was stopped, both queued in its store: the first round
/// after the start takes them together. `faults` is told the first deal's id.
async fn two_deals_queued_for_one_round(
    faults: impl Fn(u64) -> Faults,
) -> (crate::helpers::TestApp, u64, u64) {
    let sim = seeded_portal(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = start_on(sim, dir, &[task_rules()], &admin(), true).await;
    let endless = new_deal(&app.sim, "Endless LLC").await;
    let healthy = new_deal(&app.sim, "Healthy LLC").await;
    app.settle(Duration::from_secs(10)).await;
    let (sim, dir) = app.stop().await;

    sim.move_deal_silently(endless, "PREPARATION").await;
    sim.move_deal_silently(healthy, "PREPARATION").await;
    {
        let store = Store::open(dir.path()).expect("the store opens");
        store.enqueue(endless, 0).expect("queued");
        store.enqueue(healthy, 0).expect("queued");
        store.flush().expect("flushed");
    }
    sim.set_faults(faults(endless));
    let app = start_on(sim, dir, &[task_rules()], &admin(), true).await;
    (app, endless, healthy)
}

#[tokio::test]
async fn endless_paging_parks_that_deal_with_the_reason_and_the_others_of_its_round_go_on() {
    let (app, endless, healthy) = two_deals_queued_for_one_round(|deal| Faults {
        endless_paging: Some(EndlessPaging::Deal(deal)),
        ..Faults::default()
    })
    .await;
    let before = history_calls(&app.sim);

    app.wait_until(
        Duration::from_secs(10),
        "a task for the healthy deal of the same round",
        |sim| !sim.tasks_for_deal(healthy).is_empty(),
    )
    .await;
    app.parked(endless).await;
    let calls = history_calls(&app.sim) - before;
    assert!(
        calls <= 20,
        "the pages read for one deal are bounded: {calls} history calls"
    );
    assert!(
        app.sim.tasks_for_deal(endless).is_empty(),
        "nothing decided"
    );
    assert!(
        app.store
            .entries(endless)
            .expect("entries")
            .iter()
            .all(|e| e.entry.stage_id != "PREPARATION"),
        "the move is not recorded while the deal's history never ends"
    );

    // The reason, in `jobs list` as the admin API gives it.
    let jobs = app
        .admin(ADMIN, reqwest::Method::GET, "/admin/jobs")
        .await
        .1;
    let job = jobs["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["deal_id"] == endless)
        .expect("the parked job")
        .clone();
    assert_eq!(job["parked"], true, "{job}");
    let reason = job["last_error"].as_str().expect("a reason");
    assert!(
        reason.contains(&format!("deal {endless}")) && reason.contains("next"),
        "the reason names the deal and what the portal did: {reason}"
    );

    // The portal recovers; the operator re-runs the job: exactly one task.
    app.sim.set_faults(Faults::default());
    let retried = app
        .admin(
            ADMIN,
            reqwest::Method::POST,
            &format!("/admin/jobs/{endless}/retry"),
        )
        .await
        .0;
    assert_eq!(retried, 200);
    app.wait_until(Duration::from_secs(10), "a task after the retry", |sim| {
        !sim.tasks_for_deal(endless).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[endless, healthy]), vec![1, 1]);
    app.stop().await;
}

#[tokio::test]
async fn a_history_of_more_pages_than_the_bound_parks_the_deal() {
    let mut settings = admin();
    settings.push(("worker.max_history_pages", "2".into()));
    let app = spawn_app_with(Options {
        settings,
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Long history LLC").await;
    app.settle(Duration::from_secs(10)).await;
    // 120 moves no event told of, then one that is: three pages of new history.
    for _ in 0..60 {
        app.sim.move_deal_silently(deal, "EXECUTING").await;
        app.sim.move_deal_silently(deal, "NEW").await;
    }
    app.sim.move_deal(deal, "PREPARATION").await;
    let error = app.parked(deal).await.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!("deal {deal}")) && error.contains("worker.max_history_pages"),
        "the reason names the deal and the bound: {error}"
    );
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_sweep_whose_pages_bring_nothing_new_stops_counts_it_and_resumes_from_the_last_good_id() {
    let fast = SimConfig {
        requests_per_second: 200.0,
        burst: 1000,
        ..SimConfig::default()
    };
    let sim = seeded_portal(fast).await;
    // Before the first start: a full first page of old history.
    for i in 0..50 {
        new_deal(&sim, &format!("Old {i}")).await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = vec![
        ("sync.poll_interval", "200ms".to_string()),
        ("portal.requests_per_second", "200".to_string()),
        ("portal.burst", "1000".to_string()),
    ];
    let app = start_on(sim, dir, &[task_rules()], &settings, false).await;
    app.started().await;

    // The portal now ignores `start` and `>ID` and always says more pages follow.
    app.sim.set_faults(Faults {
        endless_paging: Some(EndlessPaging::All),
        ..Faults::default()
    });
    let deal = new_deal(&app.sim, "Swept LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;
    let before = app.sim.request_count();
    let stalled = poll(
        Duration::from_secs(10),
        "three sweeps stopped and counted",
        async || {
            let stalls = value(
                &samples(&app.metrics_text().await),
                "b24robot_paging_stopped_total{list=\"sweep\",reason=\"no_progress\"}",
            ) as u64;
            (stalls >= 3).then_some(stalls)
        },
    )
    .await;
    let requests: Vec<_> = app.sim.requests()[before..].to_vec();
    assert!(
        requests.len() as u64 <= 2 * (stalled + 1),
        "a stopped sweep costs a request or two: {} requests for {stalled} sweeps",
        requests.len()
    );
    assert!(
        requests.iter().all(|r| r.method == "crm.stagehistory.list"),
        "no deal is read for the old entries the portal repeats"
    );
    assert!(app.sim.tasks_for_deal(deal).is_empty());

    // The portal recovers: the next sweep goes on from the last good id.
    app.sim.set_faults(Faults::default());
    app.wait_until(Duration::from_secs(10), "a task from the sweep", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

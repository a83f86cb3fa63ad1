//! A store record that cannot be read (the damaged-store fixture: undecodable bytes written
//! under a record's key) concerns its deal alone: that deal's job is parked with the error, the
//! other deals of its round get their tasks, `/readyz` counts the read errors, and
//! `b24-robot store check` lists the damaged records, offline or through the admin API.

use std::time::Duration;

use b24_robot::sandbox::SimConfig;
use b24_robot::store::Store;

use crate::helpers::{TestApp, new_deal, seeded_portal, start_on, task_rules, wait_for};

const ADMIN: &str = "damaged-admin-token";

/// Zeroed bytes, as a damaged page of the db file reads.
const GARBAGE: &[u8] = &[0; 24];

fn settings() -> Vec<(&'static str, String)> {
    vec![("server.admin_token", ADMIN.into())]
}

/// `b24-robot store check` with the service's store folder (and its admin API when `port`).
async fn store_check(dir: &std::path::Path, port: Option<u16>) -> (i32, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"));
    command
        .args(["store", "check"])
        .env("B24ROBOT__STORAGE__DIR", dir);
    if let Some(port) = port {
        command
            .env("B24ROBOT__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("B24ROBOT__SERVER__ADMIN_TOKEN", ADMIN);
    }
    let output = command.output().await.expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn healthy_deals_queued_with_a_damaged_one_get_their_tasks_and_the_damaged_one_is_parked() {
    let sim = seeded_portal(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = start_on(sim, dir, &[task_rules()], &settings(), true).await;
    let bad_state = new_deal(&app.sim, "Bad state LLC").await;
    let bad_queue = new_deal(&app.sim, "Bad queue LLC").await;
    let healthy = new_deal(&app.sim, "Healthy LLC").await;
    app.settle(Duration::from_secs(10)).await;
    let (sim, dir) = app.stop().await;
    let (code, text) = store_check(dir.path(), None).await;
    assert_eq!(code, 0, "a healthy store: {text}");
    assert!(text.contains(" 0 damaged"), "{text}");

    // While the service was stopped: two deals moved, all three queued, two records damaged
    // (the deal state of a moved deal, the queue record of one with nothing new to read).
    for deal in [bad_state, healthy] {
        sim.move_deal_silently(deal, "PREPARATION").await;
    }
    {
        let store = Store::open(dir.path()).expect("the store opens");
        for deal in [bad_state, bad_queue, healthy] {
            store.enqueue(deal, 0).expect("queued");
        }
        store
            .put_raw_for_tests("deals", &bad_state.to_be_bytes(), GARBAGE)
            .expect("damaged");
        store
            .put_raw_for_tests("queue", &bad_queue.to_be_bytes(), GARBAGE)
            .expect("damaged");
        store.flush().expect("flushed");
    }
    let app = start_on(sim, dir, &[task_rules()], &settings(), true).await;

    app.wait_until(
        Duration::from_secs(10),
        "a task for the healthy deal",
        |sim| !sim.tasks_for_deal(healthy).is_empty(),
    )
    .await;
    let state_error = app.parked(bad_state).await.last_error.unwrap_or_default();
    assert!(
        state_error.contains("deals/") && state_error.contains("cannot be read"),
        "the job carries the error: {state_error}"
    );
    let queue_error = app.parked(bad_queue).await.last_error.unwrap_or_default();
    assert!(
        queue_error.contains("queue/") && queue_error.contains("cannot be read"),
        "the job carries the error: {queue_error}"
    );
    quiet(&app).await;
    assert_eq!(app.task_counts(&[bad_state, healthy]), vec![0, 1]);

    // `jobs list` (the admin API), `/readyz`.
    let jobs = app
        .admin(ADMIN, reqwest::Method::GET, "/admin/jobs")
        .await
        .1;
    for deal in [bad_state, bad_queue] {
        let job = jobs["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["deal_id"] == deal)
            .unwrap_or_else(|| panic!("deal {deal} listed: {jobs:#}"));
        assert_eq!(job["parked"], true);
        assert!(
            job["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("cannot be read"))
        );
    }
    let ready = app.readyz().await;
    assert!(
        ready["store_read_errors"].as_u64().is_some_and(|n| n >= 2),
        "/readyz counts the read errors: {ready}"
    );

    // `store check` through the running service's admin API: the deal state is still damaged
    // (the unreadable queue record was replaced by the parked job).
    let (code, text) = store_check(app.dir.path(), Some(app.port)).await;
    assert_eq!(code, 1, "{text}");
    let key = format!("deals {}", hex(bad_state));
    assert!(
        text.contains(&key) && text.contains(&format!("(deal {bad_state})")),
        "{text}"
    );
    assert!(text.contains("1 damaged"), "{text}");

    // And offline, on the store itself.
    let (_sim, dir) = app.stop().await;
    let (code, offline) = store_check(dir.path(), None).await;
    assert_eq!(code, 1, "{offline}");
    assert!(offline.contains(&key), "{offline}");
}

/// Waits until every queued job is parked and the portal has no event left to deliver: the
/// service has nothing more to do (`settle` would wait for an empty queue: parked jobs stay in
/// it).
async fn quiet(app: &TestApp) {
    wait_for(Duration::from_secs(10), "every queued job parked", || {
        app.store
            .all_queued()
            .expect("queue")
            .iter()
            .all(|q| q.parked)
    })
    .await;
    app.sim.settle().await;
}

fn hex(deal: u64) -> String {
    deal.to_be_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

//! Requests to the portal carry as many calls as a `batch` holds: the deals of a round share
//! their reads (one `crm.stagehistory.list` for up to 50 deals' histories, one `crm.deal.list`
//! for up to 50 deals), and the outbox packs the writes of one round with the reads of the
//! next, so that at load nearly every request carries 50 calls.

use std::time::Duration;

use b24_robot::sandbox::{RequestRecord, SimConfig, SimPortal};
use b24_robot::store::Store;

use crate::helpers::{TestApp, seeded_portal, start_on, task_rules};

/// `count` deals moved to PREPARATION while the service was stopped and queued in its store,
/// and the service started again on them (no events: the queue is the only source of work).
/// The portal and the client are both at `rate` requests/s with a burst of `burst`.
async fn deals_queued(
    count: usize,
    settings: &[(&'static str, String)],
) -> (TestApp, Vec<u64>, usize) {
    let sim = seeded_portal(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A first start records the stage history's starting point; the deals come after it.
    let app = start_on(sim, dir, &[task_rules()], settings, false).await;
    app.started().await;
    let (sim, dir) = app.stop().await;
    let mut deals = Vec::with_capacity(count);
    for n in 0..count {
        let deal = sim
            .create_deal(
                serde_json::json!({ "TITLE": format!("Batch {n} LLC"), "ASSIGNED_BY_ID": 1 }),
            )
            .await;
        sim.move_deal_silently(deal, "PREPARATION").await;
        deals.push(deal);
    }
    {
        let store = Store::open(dir.path()).expect("the store opens");
        for &deal in &deals {
            store.enqueue(deal, 0).expect("queued");
        }
        store.flush().expect("flushed");
    }
    let before = sim.request_count();
    let app = start_on(sim, dir, &[task_rules()], settings, false).await;
    (app, deals, before)
}

async fn every_task(app: &TestApp, deals: &[u64]) {
    app.wait_until(Duration::from_secs(60), "a task for every deal", |sim| {
        sim.tasks().len() >= deals.len()
    })
    .await;
    app.settle(Duration::from_secs(20)).await;
    assert!(
        app.task_counts(deals).iter().all(|&n| n == 1),
        "one task a deal"
    );
}

fn reads_deals(r: &RequestRecord) -> bool {
    let read = |m: &str| m == "crm.deal.list" || m == "crm.deal.get";
    read(&r.method) || r.sub_methods.iter().any(|m| read(m))
}

fn calls(r: &RequestRecord) -> usize {
    r.calls()
}

fn shape(requests: &[RequestRecord]) -> Vec<(String, usize)> {
    requests
        .iter()
        .map(|r| (r.method.clone(), calls(r)))
        .collect()
}

fn since(sim: &SimPortal, before: usize) -> Vec<RequestRecord> {
    sim.requests()[before..].to_vec()
}

#[tokio::test]
async fn a_round_of_50_deals_is_one_read_request() {
    let (app, deals, before) = deals_queued(50, &[]).await;
    every_task(&app, &deals).await;

    let requests = since(&app.sim, before);
    let reads: Vec<&RequestRecord> = requests.iter().filter(|r| reads_deals(r)).collect();
    assert_eq!(
        reads.len(),
        1,
        "the 50 deals are read in one request: {:?}",
        shape(&requests)
    );
    let read = reads[0];
    let count = |method: &str| read.sub_methods.iter().filter(|m| *m == method).count();
    assert_eq!(
        count("crm.deal.list"),
        1,
        "one deal list: {:?}",
        read.sub_methods
    );
    assert_eq!(count("crm.deal.get"), 0, "{:?}", read.sub_methods);
    // Up to 4 for the round (its pages of 50 entries), and one more when the start-up sweep's
    // page travels in the same request: the outbox packs every caller's calls together, and
    // whether the sweep's comes in time for this request is a matter of microseconds.
    assert!(
        (1..=5).contains(&count("crm.stagehistory.list")),
        "their histories share a call (and its pages): {:?}",
        read.sub_methods
    );
    app.stop().await;
}

#[tokio::test]
async fn with_200_deals_queued_the_requests_carry_full_batches() {
    // At the portal's limit (2 requests/s, burst 5): four rounds of 50 deals; their reads share
    // the first request, their 200 writes fill four more.
    let settings = [
        ("portal.requests_per_second", "2".to_string()),
        ("portal.burst", "5".to_string()),
    ];
    let (app, deals, before) = deals_queued(200, &settings).await;
    every_task(&app, &deals).await;

    let requests: Vec<RequestRecord> = since(&app.sim, before)
        .into_iter()
        .filter(|r| r.method == "batch")
        .collect();
    let sizes: Vec<usize> = requests.iter().map(calls).collect();
    // The first request carries reads only (nothing else is waiting yet); after it, writes
    // and reads share requests.
    let first_write = requests
        .iter()
        .position(|r| r.sub_methods.iter().any(|m| m == "tasks.task.add"))
        .expect("writes");
    assert!(
        first_write <= 2,
        "reads of the first rounds first: {sizes:?}"
    );
    let middle = &sizes[first_write..sizes.len() - 1];
    assert!(
        middle.iter().all(|&n| n >= 45),
        "every request but the first reads and the last carries at least 45 calls: {sizes:?}"
    );
    let total: usize = sizes.iter().sum();
    assert!(
        requests.len() <= total.div_ceil(50) + 3,
        "{} requests for {total} calls: {sizes:?}",
        requests.len()
    );
    app.stop().await;
}

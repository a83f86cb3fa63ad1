//! `bench throughput`, `bench strict-portal`, `bench requests`: deals moved at once against a
//! portal at its limit.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Rig, rig, rig_with};
use crate::commands::output::outln;
use crate::sandbox::{RequestRecord, SimConfig, SimPortal};

async fn create_deals(sim: &SimPortal, n: usize) -> Vec<u64> {
    let mut deals = Vec::with_capacity(n);
    for i in 0..n {
        deals.push(
            sim.create_deal(json!({"TITLE": format!("Deal {i}"), "ASSIGNED_BY_ID": "3", "CATEGORY_ID": "0", "STAGE_ID": "NEW"}))
                .await,
        );
    }
    deals
}

/// Moves every deal to PREPARATION at once ([`Rig::post_moves`]) and waits until each deal
/// has its `tasks` tasks. Returns the elapsed time.
async fn move_all(
    rig: &Rig,
    deals: &[u64],
    tasks: usize,
    limit: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    rig.post_moves(deals).await?;
    loop {
        let done = deals
            .iter()
            .filter(|d| rig.sim.tasks_for_deal(**d).len() >= tasks)
            .count();
        if done == deals.len() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(format!(
                "only {done} of {} deals had their tasks after {limit:?}",
                deals.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `deals` deals moved at once against a portal at 2 requests/s with a burst of `burst` (the
/// client configured the same), one task rule: entries with their task per second, sustained,
/// against the portal's ceiling (2 requests/s × 50 calls).
pub async fn throughput(deals: usize, burst: u32) -> Result<(), String> {
    let burst_setting = burst.to_string();
    let rig = rig_with(
        "throughput",
        SimConfig {
            requests_per_second: 2.0,
            burst,
            ..SimConfig::default()
        },
        &[("portal.burst", &burst_setting)],
        super::ONE_TASK,
    )
    .await?;
    // Set up without counting: the portal is generous while deals are created.
    rig.sim.set_rate_limit(1000.0, 1000);
    let ids = create_deals(&rig.sim, deals).await;
    if !rig.settle(Duration::from_secs(600)).await {
        return Err("the creations did not settle".into());
    }
    rig.sim.set_rate_limit(2.0, burst);
    // Let the client's bucket and the portal's drain after the set-up, so the measurement starts
    // from a full bucket as a real morning would, and runs long enough to be sustained.
    tokio::time::sleep(Duration::from_secs(u64::from(burst) / 2 + 2)).await;
    let before_requests = rig.sim.request_count();
    let before_503 = rig.rejected(503);
    let elapsed = move_all(&rig, &ids, 1, Duration::from_secs(600)).await?;
    let sent = rig.sim.requests()[before_requests..].to_vec();
    let requests = sent.len();
    let calls: usize = sent.iter().map(RequestRecord::calls).sum();
    let rejected = rig.rejected(503) - before_503;
    let rate = deals as f64 / elapsed.as_secs_f64();
    if std::env::var_os("BENCH_DETAIL").is_some() {
        for r in &sent {
            outln!(
                "  {:>6} ms {} {} calls={}",
                r.at.elapsed().as_millis(),
                r.method,
                r.status,
                r.sub_methods.len()
            );
        }
    }
    // The portal's ceiling for the calls made: 2 requests/s of 50 calls, after the burst.
    let ceiling_rate = 100.0 * deals as f64 / calls.max(1) as f64;
    outln!(
        "throughput: {deals} stage entries (1 task each) in {:.1} s = {rate:.1} entries/s against a 2 req/s, burst-{burst} portal; {requests} HTTP requests carrying {calls} calls ({:.1} a request, {:.3} requests an entry), {rejected} x 503; the portal's ceiling for these calls is {ceiling_rate:.1} entries/s (2 x 50 calls/s): ratio {:.2}",
        elapsed.as_secs_f64(),
        calls as f64 / requests.max(1) as f64,
        requests as f64 / deals as f64,
        rate / ceiling_rate
    );
    rig.stop().await;
    Ok(())
}

pub async fn strict_portal(deals: usize) -> Result<(), String> {
    let rig = rig(
        "strict",
        SimConfig {
            requests_per_second: 1.0,
            burst: 5,
            ..SimConfig::default()
        },
        &[("portal.requests_per_second", "2"), ("portal.burst", "50")],
    )
    .await?;
    // Set up without counting: the portal is generous while deals are created.
    rig.sim.set_rate_limit(1000.0, 1000);
    let ids = create_deals(&rig.sim, deals).await;
    if !rig.settle(Duration::from_secs(120)).await {
        return Err("the creations did not settle".into());
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    rig.sim.set_rate_limit(1.0, 5);
    let before = rig.rejected(503);
    let elapsed = move_all(&rig, &ids, 2, Duration::from_secs(600)).await?;
    let rejected = rig.rejected(503) - before;
    outln!(
        "strict portal: {deals} deals moved at once, portal 1 req/s burst 5, configured 2/50: {rejected} x 503 in total, all done in {:.1} s",
        elapsed.as_secs_f64()
    );
    rig.stop().await;
    Ok(())
}

pub async fn requests_per_entry(deals: usize) -> Result<(), String> {
    let rig = rig(
        "requests",
        SimConfig {
            requests_per_second: 100.0,
            burst: 1000,
            ..SimConfig::default()
        },
        &[],
    )
    .await?;
    let ids = create_deals(&rig.sim, deals + 1).await;
    rig.settle(Duration::from_secs(60)).await;
    // Warm the caches (field catalog) with one deal.
    move_all(&rig, &ids[..1], 2, Duration::from_secs(30)).await?;
    rig.settle(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut worst = 0;
    for &deal in &ids[1..] {
        let before = rig.sim.request_count();
        move_all(&rig, &[deal], 2, Duration::from_secs(30)).await?;
        rig.settle(Duration::from_secs(30)).await;
        worst = worst.max(rig.sim.request_count() - before);
    }
    let before = rig.sim.request_count();
    rig.sim
        .update_deal(ids[1], json!({"COMMENTS": "just a note"}))
        .await;
    rig.settle(Duration::from_secs(30)).await;
    let update = rig.sim.request_count() - before;
    outln!(
        "requests: at most {worst} HTTP requests per stage entry with 2 rules firing (warm caches, {deals} entries one by one); {update} for an update without a stage change"
    );
    rig.stop().await;
    Ok(())
}

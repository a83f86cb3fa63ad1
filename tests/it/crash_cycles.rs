//! Crash anywhere, many times: the real binary works through a stream of stage moves against a
//! simulated portal that fails now and then (500s before and after running the call, dropped
//! connections, cut JSON), and is killed with SIGKILL at a random moment, restarted on the same
//! store, and killed again: 50 cycles here, more with `B24ROBOT_CRASH_CYCLES=500`. At the end
//! every acknowledged move was acted on and every deal has exactly one task.
//!
//! And shutdown under load: SIGTERM while deliveries pour in and rounds run exits 0 within
//! 10 s, and what was acknowledged is finished after the restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use b24_robot::sandbox::{Faults, SimPortal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;

use crate::child::{
    Service, Site, assert_one_task_each, portal_with_deals, task_writes, wait_all_done,
};
use crate::helpers::poll;

/// Faults on a share of the portal's answers, seeded.
fn flaky(seed: u64) -> Faults {
    Faults {
        error_rate: 0.05,
        error_after_rate: 0.05,
        drop_rate: 0.04,
        malformed_rate: 0.03,
        delay: Some(Duration::from_millis(20)),
        seed: Some(seed),
        ..Faults::default()
    }
}

/// Retries enough that no job is parked under the faults above.
const ENV: [(&str, &str); 1] = [("B24ROBOT__WORKER__MAX_ATTEMPTS", "100")];

/// Moves `deals` to PREPARATION one after the other; returns those acknowledged 200.
async fn move_each(sim: SimPortal, deals: Vec<u64>) -> Vec<u64> {
    let mut acknowledged = Vec::new();
    for deal in deals {
        if sim.move_deal(deal, "PREPARATION").await.status == Some(200) {
            acknowledged.push(deal);
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_kill_9_cycles_under_portal_faults_lose_nothing_and_duplicate_nothing() {
    let cycles: usize = std::env::var("B24ROBOT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let per_cycle = 4;
    let (sim, deals) = portal_with_deals(cycles * per_cycle).await;
    let site = Site::new();
    let seed = std::env::var("B24ROBOT_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x0b24_c4a5);
    let mut rng = StdRng::seed_from_u64(seed);
    sim.set_faults(flaky(seed));

    let mut acknowledged = Vec::new();
    for (cycle, batch) in deals.chunks(per_cycle).enumerate() {
        let service = Service::start_with(&sim, &site, cycle % 4, &ENV).await;
        let mover = tokio::spawn(move_each(sim.clone(), batch.to_vec()));
        // Anywhere from before the first delivery to well into the work. Real time: the child
        // runs on its own clock, and a moment picked by the dice is what the test is about.
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
        service.kill_9().await;
        acknowledged.extend(mover.await.expect("mover"));
    }
    assert!(
        !acknowledged.is_empty(),
        "some moves were acknowledged before their kill"
    );

    // The kills landed while work was going on: some deals got their task within the cycles.
    let done_in_cycles = deals
        .iter()
        .filter(|d| !sim.tasks_for_deal(**d).is_empty())
        .count();
    assert!(done_in_cycles > 0, "no work was done between the kills");
    eprintln!(
        "{cycles} cycles: {} of {} moves acknowledged, {done_in_cycles} deals done before the last start",
        acknowledged.len(),
        deals.len()
    );

    // The last start runs without faults, so the end state is not left to the dice.
    sim.set_faults(Faults::default());
    let service = Service::start_with(&sim, &site, 99, &ENV).await;
    // Acknowledged moves must be finished; the others are found by the sweep.
    wait_all_done(&sim, &service, &deals, Duration::from_secs(60)).await;
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert_one_task_each(&sim, &deals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_deliveries_pour_in_exits_0_within_10_seconds_and_loses_nothing() {
    let (sim, deals) = portal_with_deals(60).await;
    let site = Site::new();
    // Slow answers: rounds are in flight when the signal arrives.
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(100)),
        ..Faults::default()
    });
    let service = Service::start(&sim, &site, 0).await;

    // Four senders move deals (and keep moving them) until the service is gone.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for part in deals.chunks(15) {
        let (sim, part, acknowledged, stop) = (
            sim.clone(),
            part.to_vec(),
            acknowledged.clone(),
            stop.clone(),
        );
        senders.push(tokio::spawn(async move {
            for deal in part {
                if stop.load(Ordering::SeqCst) {
                    sim.move_deal_silently(deal, "PREPARATION").await;
                    continue;
                }
                if sim.move_deal(deal, "PREPARATION").await.status == Some(200) {
                    acknowledged.lock().await.push(deal);
                }
            }
        }));
    }
    // Under load: deliveries acknowledged and task writes made, more of both on the way.
    let writes_before = task_writes(&sim);
    poll(
        Duration::from_secs(20),
        "deliveries acknowledged and rounds running",
        async || {
            let taken = acknowledged.lock().await.len();
            (taken >= 12 && task_writes(&sim) > writes_before).then_some(())
        },
    )
    .await;
    let (code, took) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "a stop under load exits 0");
    assert!(took < Duration::from_secs(10), "{took:?}");
    stop.store(true, Ordering::SeqCst);
    for sender in senders {
        sender.await.expect("sender");
    }
    let acknowledged = acknowledged.lock().await.clone();
    assert!(
        !acknowledged.is_empty(),
        "deliveries were acknowledged before the stop"
    );

    sim.set_faults(Faults::default());
    let start = Instant::now();
    let service = Service::start(&sim, &site, 1).await;
    wait_all_done(&sim, &service, &acknowledged, Duration::from_secs(30)).await;
    // The rest (refused during the stop, or never sent) are found by the sweep.
    wait_all_done(&sim, &service, &deals, Duration::from_secs(30)).await;
    assert!(start.elapsed() < Duration::from_secs(60));
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert_one_task_each(&sim, &deals);
}

//! The real binary, killed: `b24-robot serve` runs as a child process configured only through
//! `B24ROBOT__*` variables, against the simulated portal in this process. After `kill -9` at any
//! moment the restarted service finishes every recorded event, and applies no effect twice;
//! SIGTERM stops it cleanly.

use std::time::Duration;

use b24_robot::sandbox::Faults;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::child::{
    Service, Site, assert_one_task_each, move_all, portal_with_deals, restart_and_finish,
    task_writes, wait_all_done,
};
use crate::helpers::poll_within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_the_acknowledgements_loses_nothing_and_duplicates_nothing() {
    // The deals exist before the first start; their moves are what the service must act on.
    let (sim, deals) = portal_with_deals(15).await;
    let site = Site::new();
    // Every REST answer takes a moment: the kill lands while calls are in flight.
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(40)),
        ..Faults::default()
    });

    let service = Service::start(&sim, &site, 0).await;
    let acknowledged = move_all(sim.clone(), deals.clone()).await;
    assert_eq!(acknowledged, deals.len(), "every move was acknowledged 200");
    service.kill_9().await;

    restart_and_finish(&sim, &site, 1, &deals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_over_five_restarts_loses_nothing_and_duplicates_nothing() {
    let (sim, deals) = portal_with_deals(75).await;
    let site = Site::new();
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(150)),
        ..Faults::default()
    });
    // Seeded: the same kill moments on every run.
    let mut rng = StdRng::seed_from_u64(0x0b24);

    for (cycle, batch) in deals.chunks(15).enumerate() {
        let service = Service::start(&sim, &site, cycle).await;
        let writes_before = task_writes(&sim);
        let mover = tokio::spawn(move_all(sim.clone(), batch.to_vec()));
        if cycle % 2 == 0 {
            // Anywhere from mid-intake to mid-work. Real time: the child runs on its own clock,
            // and a moment picked by the dice is what the test is about.
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..600))).await;
        } else {
            // Right after the portal ran a batch of task writes: the intents are recorded,
            // their results most likely not yet (looked at every millisecond, to land there).
            let _ = poll_within(
                Duration::from_millis(1),
                Duration::from_secs(10),
                async || (task_writes(&sim) > writes_before).then_some(()),
            )
            .await;
        }
        service.kill_9().await;
        mover.await.expect("mover");
    }

    let service = Service::start(&sim, &site, 99).await;
    wait_all_done(&sim, &service, &deals, Duration::from_secs(60)).await;
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert_one_task_each(&sim, &deals);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_service_with_exit_code_0_within_10_seconds() {
    let (sim, deals) = portal_with_deals(10).await;
    let site = Site::new();
    // Slow answers: work is in flight when the signal arrives.
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    });

    let service = Service::start(&sim, &site, 0).await;
    assert_eq!(move_all(sim.clone(), deals.clone()).await, deals.len());
    let (code, took) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0), "a clean stop exits 0");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // What was acknowledged before the stop is finished after the restart.
    restart_and_finish(&sim, &site, 1, &deals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_calls_hang_abandons_them_at_the_deadline_and_exits_0_within_9_seconds() {
    let (sim, deals) = portal_with_deals(10).await;
    let site = Site::new();
    // The client would wait 30 s for an answer: only the shutdown deadline can end these calls.
    let service =
        Service::start_with(&sim, &site, 0, &[("B24ROBOT__PORTAL__TIMEOUT", "30s")]).await;
    sim.set_faults(Faults {
        delay: Some(Duration::from_secs(20)),
        ..Faults::default()
    });
    assert_eq!(move_all(sim.clone(), deals.clone()).await, deals.len());
    let (code, took) = service.terminate(Duration::from_secs(15)).await;
    eprintln!("SIGTERM to exit: {took:?}");
    assert_eq!(code, Some(0), "a stop with calls in flight exits 0");
    // In-flight calls are abandoned at 8 s; flush and exit follow at once.
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_millis(9_000),
        "{took:?}"
    );

    // The abandoned work is finished after the restart, once.
    restart_and_finish(&sim, &site, 1, &deals).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_full_disk_exits_within_10_seconds_and_the_next_start_finishes_the_work() {
    let (sim, deals) = portal_with_deals(10).await;
    let site = Site::new();
    let Some(disk) = crate::disk::Tmpfs::mount(&site.path("data"), "16m") else {
        return;
    };
    let service = Service::start(&sim, &site, 0).await;
    // Slow answers: the acknowledged moves are still being worked on when the disk fills up.
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    });
    assert_eq!(move_all(sim.clone(), deals[..5].to_vec()).await, 5);
    disk.fill();
    // Whatever sled can still write is acknowledged, the rest is refused.
    let _ = move_all(sim.clone(), deals[5..].to_vec()).await;
    let (code, took) = service.terminate(Duration::from_secs(20)).await;
    // The last flush fails on the full disk: the stop says so (exit 1), in time.
    assert!(code.is_some(), "the process exited by itself");
    assert!(took < Duration::from_millis(9_900), "{took:?}");

    disk.empty();
    // The acknowledged moves, and the refused ones through the sweep, each get one task.
    restart_and_finish(&sim, &site, 1, &deals).await;
}

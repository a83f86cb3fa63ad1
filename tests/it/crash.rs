//! The real binary, killed: `b24-robot serve` runs as a child process configured only through
//! `B24ROBOT__*` variables, against the simulated portal in this process. After `kill -9` at any
//! moment the restarted service finishes every recorded event, and applies no effect twice;
//! SIGTERM stops it cleanly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use b24_robot::sandbox::{Faults, SimConfig, SimPortal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::{TOKEN, new_deal, seeded_portal};

const RULES: &str = r#"
pipeline = 0

[[task]]
name = "offer"
stage = "PREPARATION"
title = "Send the offer: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }
"#;

/// The folders one service keeps across its restarts.
struct Site {
    root: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("rules")).expect("rules dir");
        std::fs::write(root.path().join("rules/tasks.toml"), RULES).expect("rule file");
        Site { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// One run of `b24-robot serve`.
struct Service {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Service {
    /// Starts the binary on a free port and registers it as the portal's outgoing webhook once
    /// it answers `/healthz`.
    async fn start(sim: &SimPortal, site: &Site, run: usize) -> Service {
        let port = free_port();
        let log = site.path(&format!("run-{run}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_b24-robot"))
            .arg("serve")
            .current_dir(site.root.path())
            .env_clear()
            .env("B24ROBOT__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("B24ROBOT__STORAGE__DIR", site.path("data"))
            .env("B24ROBOT__RULES__DIR", site.path("rules"))
            .env("B24ROBOT__PORTAL__WEBHOOK_URL", sim.webhook_url())
            .env("B24ROBOT__PORTAL__APPLICATION_TOKEN", TOKEN)
            .env("B24ROBOT__PORTAL__REQUESTS_PER_SECOND", "50")
            .env("B24ROBOT__PORTAL__BURST", "200")
            .env("B24ROBOT__PORTAL__RETRY_BASE", "20ms")
            .env("B24ROBOT__PORTAL__RETRY_MAX", "200ms")
            .env("B24ROBOT__PORTAL__TIMEOUT", "2s")
            .env("B24ROBOT__WORKER__RETRY_BASE", "50ms")
            .env("B24ROBOT__WORKER__RETRY_MAX", "500ms")
            .env("B24ROBOT__SYNC__POLL_INTERVAL", "1s")
            .env("B24ROBOT__LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("the binary starts");
        let mut service = Service { child, port, log };
        service.wait_healthy().await;
        sim.set_event_handler(
            Some(format!("http://127.0.0.1:{port}/bitrix24/events")),
            TOKEN,
        );
        service
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the service exited at start ({status}):\n{}", self.logs());
            }
            let answer = client
                .get(format!("http://127.0.0.1:{}/healthz", self.port))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the service did not start:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `queue` from `/readyz`.
    async fn queued(&self) -> Option<u64> {
        let answer = reqwest::get(format!("http://127.0.0.1:{}/readyz", self.port))
            .await
            .ok()?;
        let body: serde_json::Value = answer.json().await.ok()?;
        body.get("queue").and_then(serde_json::Value::as_u64)
    }

    /// SIGKILL: no chance to flush or finish anything.
    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns the exit code and how long it took.
    async fn terminate(mut self, limit: Duration) -> (Option<i32>, Duration) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM runs");
        assert!(status.success(), "kill -TERM failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > limit {
                let logs = self.logs();
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the service did not exit within {limit:?} of SIGTERM:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A failed assertion must not leave the child running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// Moves every deal to PREPARATION, one event each; returns how many were acknowledged 200.
async fn move_all(sim: SimPortal, deals: Vec<u64>) -> usize {
    let mut acknowledged = 0;
    for deal in deals {
        if sim.move_deal(deal, "PREPARATION").await.status == Some(200) {
            acknowledged += 1;
        }
    }
    acknowledged
}

/// Waits until every deal has a task and the service has nothing queued, stably.
async fn wait_all_done(sim: &SimPortal, service: &Service, deals: &[u64], limit: Duration) {
    let start = Instant::now();
    let mut done_since: Option<Instant> = None;
    loop {
        let all = deals.iter().all(|d| !sim.tasks_for_deal(*d).is_empty());
        if all && service.queued().await == Some(0) {
            if done_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(500) {
                return;
            }
        } else {
            done_since = None;
        }
        if start.elapsed() > limit {
            let missing: Vec<u64> = deals
                .iter()
                .copied()
                .filter(|d| sim.tasks_for_deal(*d).is_empty())
                .collect();
            panic!(
                "not done within {limit:?}: deals without a task {missing:?}, queue {:?}\n{}",
                service.queued().await,
                service.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Batches with a `tasks.task.add` the portal has answered so far.
fn task_writes(sim: &SimPortal) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.sub_methods.iter().any(|m| m == "tasks.task.add"))
        .count()
}

fn assert_one_task_each(sim: &SimPortal, deals: &[u64]) {
    let wrong: Vec<(u64, usize)> = deals
        .iter()
        .map(|d| (*d, sim.tasks_for_deal(*d).len()))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(
        wrong.is_empty(),
        "deals without exactly one task (deal, tasks): {wrong:?}"
    );
}

async fn portal_with_deals(count: usize) -> (SimPortal, Vec<u64>) {
    let sim = seeded_portal(SimConfig {
        requests_per_second: 50.0,
        burst: 200,
        ..SimConfig::default()
    })
    .await;
    let mut deals = Vec::new();
    for i in 0..count {
        deals.push(new_deal(&sim, &format!("Crash {i} LLC")).await);
    }
    (sim, deals)
}

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
    service.kill_9();

    let service = Service::start(&sim, &site, 1).await;
    wait_all_done(&sim, &service, &deals, Duration::from_secs(30)).await;
    assert_one_task_each(&sim, &deals);
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
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
            // Anywhere from mid-intake to mid-work.
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..600))).await;
        } else {
            // Right after the portal ran a batch of task writes: the intents are recorded,
            // their results most likely not yet.
            let start = Instant::now();
            while task_writes(&sim) == writes_before && start.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        service.kill_9();
        mover.await.expect("mover");
    }

    let service = Service::start(&sim, &site, 99).await;
    wait_all_done(&sim, &service, &deals, Duration::from_secs(60)).await;
    assert_one_task_each(&sim, &deals);
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
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
    sim.set_faults(Faults::default());
    let service = Service::start(&sim, &site, 1).await;
    wait_all_done(&sim, &service, &deals, Duration::from_secs(30)).await;
    assert_one_task_each(&sim, &deals);
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
}

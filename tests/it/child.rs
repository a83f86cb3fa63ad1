//! The real binary as a child process: `b24-robot serve` configured only through `B24ROBOT__*`
//! variables, on its own store folder ([`Site`]) kept across restarts, against a simulated portal
//! in the test's process. Shared by `crash.rs`, `crash_cycles.rs` and the shutdown tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use b24_robot::sandbox::{SimConfig, SimPortal};
use tokio::process::{Child, Command};

use crate::helpers::{TOKEN, new_deal, poll_within, seeded_portal, task_rules};

/// The folders one service keeps across its restarts.
pub struct Site {
    root: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("rules")).expect("rules dir");
        let (name, rules) = task_rules();
        std::fs::write(root.path().join("rules").join(name), rules).expect("rule file");
        Site { root }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// One run of `b24-robot serve`.
pub struct Service {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Service {
    /// Starts the binary on a free port and registers it as the portal's outgoing webhook once
    /// it answers `/healthz`.
    pub async fn start(sim: &SimPortal, site: &Site, run: usize) -> Service {
        Service::start_with(sim, site, run, &[]).await
    }

    /// [`Service::start`] with more `B24ROBOT__*` variables (set last: they win).
    pub async fn start_with(
        sim: &SimPortal,
        site: &Site,
        run: usize,
        env: &[(&str, &str)],
    ) -> Service {
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
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // A failed assertion must not leave the child running.
            .kill_on_drop(true)
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
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let (child, log) = (&mut self.child, &self.log);
        let healthy = poll_within(
            Duration::from_millis(25),
            Duration::from_secs(20),
            async || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the service exited at start ({status}):\n{}", read(log));
                }
                let answer = client.get(&url).send().await;
                answer.is_ok_and(|r| r.status().is_success()).then_some(())
            },
        )
        .await;
        assert!(
            healthy.is_some(),
            "the service did not start:\n{}",
            self.logs()
        );
    }

    /// The service's base URL, `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `queue` from `/readyz`.
    pub async fn queued(&self) -> Option<u64> {
        let answer = reqwest::get(format!("{}/readyz", self.base())).await.ok()?;
        let body: serde_json::Value = answer.json().await.ok()?;
        body.get("queue").and_then(serde_json::Value::as_u64)
    }

    /// Sends `signal` (`-HUP`, `-TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the service runs").to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub async fn kill_9(mut self) {
        self.child.kill().await.expect("kill -9");
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns the exit code and how long it took.
    pub async fn terminate(mut self, limit: Duration) -> (Option<i32>, Duration) {
        self.signal("-TERM");
        let start = std::time::Instant::now();
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => (status.expect("wait").code(), start.elapsed()),
            Err(_) => panic!(
                "the service did not exit within {limit:?} of SIGTERM:\n{}",
                self.logs()
            ),
        }
    }

    pub fn logs(&self) -> String {
        read(&self.log)
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// Moves every deal to PREPARATION, one event each; returns how many were acknowledged 200.
pub async fn move_all(sim: SimPortal, deals: Vec<u64>) -> usize {
    let mut acknowledged = 0;
    for deal in deals {
        if sim.move_deal(deal, "PREPARATION").await.status == Some(200) {
            acknowledged += 1;
        }
    }
    acknowledged
}

/// Waits until every deal has a task and the service has nothing queued. Whether a task was
/// made twice is asked once the service has stopped ([`assert_one_task_each`]): then nothing can
/// come later.
pub async fn wait_all_done(sim: &SimPortal, service: &Service, deals: &[u64], limit: Duration) {
    let done = poll_within(Duration::from_millis(50), limit, async || {
        let all = deals.iter().all(|d| !sim.tasks_for_deal(*d).is_empty());
        (all && service.queued().await == Some(0)).then_some(())
    })
    .await;
    if done.is_none() {
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
}

/// Batches with a `tasks.task.add` the portal has answered so far.
pub fn task_writes(sim: &SimPortal) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.sub_methods.iter().any(|m| m == "tasks.task.add"))
        .count()
}

/// Starts run `run` on the site without faults, waits until every deal has its task, stops the
/// service cleanly, and checks that each has exactly one.
pub async fn restart_and_finish(sim: &SimPortal, site: &Site, run: usize, deals: &[u64]) {
    sim.set_faults(b24_robot::sandbox::Faults::default());
    let service = Service::start(sim, site, run).await;
    wait_all_done(sim, &service, deals, Duration::from_secs(30)).await;
    let (code, _) = service.terminate(Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert_one_task_each(sim, deals);
}

pub fn assert_one_task_each(sim: &SimPortal, deals: &[u64]) {
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

pub async fn portal_with_deals(count: usize) -> (SimPortal, Vec<u64>) {
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

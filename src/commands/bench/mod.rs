//! `b24-robot bench ...`: the figures of BENCHMARKS.md, reproducible on any machine with
//! `cargo run --release -- bench <name>`. Everything runs on loopback against the built-in
//! simulated portal; nothing leaves the machine.
//!
//! - `throughput`: many deals move at once against a portal at its real limit (2 requests/s,
//!   burst 50): stage entries with effects per second, sustained, and the 503s provoked.
//! - `strict-portal`: the portal allows 1 request/s with a burst of 5 while the service is
//!   configured for 2/50: how many 503s until the client has learnt.
//! - `requests`: HTTP requests per stage entry with warm caches, and for an update without a
//!   stage change.
//! - `intake`: durable acknowledgements per second with N concurrent senders, and latency
//!   percentiles.
//! - `memory`: resident memory at idle and the store's bytes per deal with many known deals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::oneshot;

use super::{CommandError, CommandResult};
use crate::commands::output::outln;
use crate::configuration::{Settings, Sources};
use crate::rules::RuleSet;
use crate::sandbox::{SimConfig, SimPortal};
use crate::startup::Application;
use crate::store::Store;

const TOKEN: &str = "bench-token";

const RULES: &str = r#"
pipeline = 0

[[task]]
name = "offer"
stage = "PREPARATION"
title = "Send the offer: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }

[[task]]
name = "offer-check"
stage = "PREPARATION"
title = "Check the offer of {TITLE}"
responsible = 1
deadline = { after = "3 days" }
"#;

/// A running service against a simulated portal.
struct Rig {
    sim: SimPortal,
    port: u16,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

/// A folder removed when dropped (tempfile is a dev-dependency only).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "b24-robot-bench-{name}-{}-{}",
            std::process::id(),
            crate::store::now_ms()
        ));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn rig(name: &str, sim_config: SimConfig, overrides: &[(&str, &str)]) -> Result<Rig, String> {
    let sim = SimPortal::start(sim_config)
        .await
        .map_err(|e| e.to_string())?;
    crate::sandbox::seed::seed_portal(&sim);
    let dir = TempDir::new(name);
    let mut all: Vec<(String, String)> = vec![
        ("server.listen".into(), "127.0.0.1:0".into()),
        ("storage.dir".into(), dir.0.display().to_string()),
        ("portal.webhook_url".into(), sim.webhook_url()),
        ("portal.application_token".into(), TOKEN.into()),
        ("log.level".into(), "error".into()),
    ];
    all.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let settings = Settings::load(&Sources {
        overrides: all,
        ..Sources::default()
    })
    .map_err(|e| e.to_string())?;
    crate::telemetry::init(settings.log.format, &settings.log.level);
    let (rules, _) =
        RuleSet::from_sources(&[("bench.toml".into(), RULES.into())]).map_err(|d| {
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
    let app = Application::build(settings, rules)
        .await
        .map_err(|e| e.to_string())?;
    let port = app.port();
    let store = app.store();
    sim.set_event_handler(
        Some(format!("http://127.0.0.1:{port}/bitrix24/events")),
        TOKEN,
    );
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Rig {
        sim,
        port,
        store,
        stop: Some(tx),
        task,
        _dir: dir,
    })
}

impl Rig {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    async fn settle(&self, limit: Duration) -> bool {
        let start = Instant::now();
        let mut empty_since = None;
        while start.elapsed() < limit {
            if self.store.queue_len() == 0 {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    return true;
                }
            } else {
                empty_since = None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn rejected(&self, status: u16) -> usize {
        self.sim
            .requests()
            .iter()
            .filter(|r| r.status == status)
            .count()
    }
}

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

/// Moves every deal to PREPARATION at once (their events concurrently) and waits until each
/// has its two tasks. Returns the elapsed time.
async fn move_all(rig: &Rig, deals: &[u64], limit: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let mut moves = tokio::task::JoinSet::new();
    for &deal in deals {
        let sim = rig.sim.clone();
        moves.spawn(async move { sim.move_deal(deal, "PREPARATION").await });
    }
    while moves.join_next().await.is_some() {}
    loop {
        let done = deals
            .iter()
            .filter(|d| rig.sim.tasks_for_deal(**d).len() >= 2)
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

pub async fn throughput(deals: usize) -> Result<(), String> {
    let rig = rig(
        "throughput",
        SimConfig {
            requests_per_second: 2.0,
            burst: 50,
            ..SimConfig::default()
        },
        &[],
    )
    .await?;
    let ids = create_deals(&rig.sim, deals).await;
    if !rig.settle(Duration::from_secs(600)).await {
        return Err("the creations did not settle".into());
    }
    // Drain the portal's bucket after the set-up, so the measurement starts from a full bucket
    // as a real morning would... and then runs long enough to be sustained, not a burst.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let before_requests = rig.sim.request_count();
    let before_503 = rig.rejected(503);
    let elapsed = move_all(&rig, &ids, Duration::from_secs(600)).await?;
    let requests = rig.sim.request_count() - before_requests;
    let rejected = rig.rejected(503) - before_503;
    let rate = deals as f64 / elapsed.as_secs_f64();
    if std::env::var_os("BENCH_DETAIL").is_some() {
        for r in rig.sim.requests().iter().skip(before_requests) {
            let reads = r
                .sub_methods
                .iter()
                .filter(|m| *m == "crm.deal.get")
                .count();
            let writes = r
                .sub_methods
                .iter()
                .filter(|m| *m == "tasks.task.add")
                .count();
            outln!(
                "  {:>6} ms {} {} reads={reads} writes={writes}",
                r.at.elapsed().as_millis(),
                r.method,
                r.status
            );
        }
    }
    outln!(
        "throughput: {deals} stage entries (2 tasks each) in {:.1} s = {rate:.1} entries/s against a 2 req/s, burst-50 portal; {requests} HTTP requests, {rejected} x 503",
        elapsed.as_secs_f64()
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
    let elapsed = move_all(&rig, &ids, Duration::from_secs(600)).await?;
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
    move_all(&rig, &ids[..1], Duration::from_secs(30)).await?;
    rig.settle(Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut worst = 0;
    for &deal in &ids[1..] {
        let before = rig.sim.request_count();
        move_all(&rig, &[deal], Duration::from_secs(30)).await?;
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

pub async fn intake(senders: usize, seconds: u64) -> Result<(), String> {
    // The portal at its real limit: the worker then spends its time waiting on the bucket, as
    // in production, and what is measured is the intake.
    let rig = rig("intake", SimConfig::default(), &[]).await?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://127.0.0.1:{}/bitrix24/events", rig.port);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..senders {
        let (client, url, latencies) = (client.clone(), url.clone(), latencies.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                // Distinct deliveries (ts differs) for deals beyond the portal's: each is
                // recorded and flushed; the worker finds them deleted, cheaply.
                let body = format!(
                    "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D={}&ts={}&auth%5Bmember_id%5D=bench&auth%5Bapplication_token%5D={TOKEN}",
                    1_000_000 + (s as u64) * 1_000_000 + i,
                    1_700_000_000 + i
                );
                let started = Instant::now();
                let ok = client
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    mine.push(started.elapsed());
                }
            }
            if let Ok(mut all) = latencies.lock() {
                all.extend(mine);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut all = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    all.sort();
    let n = all.len();
    let pct = |p: f64| {
        all.get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    outln!(
        "intake: {senders} senders, {seconds} s: {n} events acknowledged (recorded and flushed) = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        n as f64 / seconds as f64,
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    rig.stop().await;
    Ok(())
}

/// The service alone, for an external load generator (`wrk`): prints its URL and token, runs
/// for `seconds`, then prints how many events were recorded.
pub async fn intake_server(seconds: u64) -> Result<(), String> {
    let rig = rig("intake-server", SimConfig::default(), &[]).await?;
    outln!(
        "listening: http://127.0.0.1:{}/bitrix24/events token {TOKEN} for {seconds} s",
        rig.port
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let ids = rig.store.next_id().map_err(|e| e.to_string())?;
    outln!("intake-server: about {ids} events recorded (event ids handed out)");
    rig.stop().await;
    Ok(())
}

/// Resident memory of this process, from /proc (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn memory(deals: u64) -> Result<(), String> {
    let idle = rig("memory", SimConfig::default(), &[]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib().unwrap_or(0);
    idle.stop().await;

    let dir = TempDir::new("memory-store");
    let cache = std::env::var("B24ROBOT_BENCH_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let cache = cache.map_or(crate::store::DEFAULT_CACHE_BYTES, |mib| mib * 1024 * 1024);
    let store = Store::open_with_cache(&dir.0, cache).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let state = crate::store::DealState {
        last_entry_id: 123_456,
        stage_id: Some("C1:PREPARATION".into()),
        category_id: Some(1),
        ..crate::store::DealState::default()
    };
    for deal in 1..=deals {
        store
            .put_deal_state(deal, &state)
            .map_err(|e| e.to_string())?;
    }
    store.flush().map_err(|e| e.to_string())?;
    let bytes = store.size_on_disk().map_err(|e| e.to_string())?;
    let loaded_rss = rss_kib().unwrap_or(0);
    outln!(
        "memory: RSS at idle (service + simulated portal in one process) {:.1} MiB; after writing the state of {deals} deals with a {} MiB store cache {:.1} MiB; store {:.1} MiB on disk = {:.0} bytes per deal (written in {:.1} s)",
        idle_rss as f64 / 1024.0,
        cache / 1024 / 1024,
        loaded_rss as f64 / 1024.0,
        bytes as f64 / 1_048_576.0,
        bytes as f64 / deals as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one benchmark by name.
pub async fn run(name: &str, size: Option<u64>) -> CommandResult {
    let result = match name {
        "throughput" => throughput(size.unwrap_or(300) as usize).await,
        "strict-portal" => strict_portal(size.unwrap_or(20) as usize).await,
        "requests" => requests_per_entry(size.unwrap_or(10) as usize).await,
        "intake" => intake(size.unwrap_or(32) as usize, 10).await,
        "intake-server" => intake_server(size.unwrap_or(30)).await,
        "memory" => memory(size.unwrap_or(1_000_000)).await,
        other => Err(format!(
            "unknown benchmark {other:?} (throughput, strict-portal, requests, intake, memory)"
        )),
    };
    result.map_err(|error| CommandError::Failed(format!("bench failed: {error}")))
}

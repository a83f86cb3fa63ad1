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
//!   percentiles; with `--baseline DIR`, under `wrk` and against the baseline in the same run.
//! - `outage`: the portal unreachable with many deals queued: CPU while waiting, probes a
//!   minute, and the drain once it answers, against the portal's ceiling.
//! - `memory`: resident memory at idle and the store's bytes per deal with many known deals.
//! - `control`: one control sweep over many open deals and their tasks at the portal's limit:
//!   requests, calls and duration against the portal's ceiling.
//! - `timers`: many pending timers: arming, RSS, bytes on disk, a timer-loop turn, the open.
//! - `reports`: the report copy of a portal of many deals at the portal's limit (the first copy,
//!   a refresh with nothing changed and one after changes) against the portal's ceiling; each
//!   report on the warm copy against a bare scan of it; the dashboard's page against `/healthz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{CommandError, CommandResult};
use crate::configuration::{Settings, Sources};
use crate::rules::RuleSet;
use crate::sandbox::{SimConfig, SimPortal};
use crate::startup::Application;
use crate::store::Store;

mod control;
mod intake;
mod memory;
mod outage;
mod reports;

pub use intake::IntakeOptions;
mod throughput;
mod timers;

const TOKEN: &str = "bench-token";

/// Two task rules on one stage: what `strict-portal`, `requests`, `outage` and the intake run.
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

/// One task rule: a stage entry costs one write, as in the issue's measure of throughput.
const ONE_TASK: &str = r#"
pipeline = 0

[[task]]
name = "offer"
stage = "PREPARATION"
title = "Send the offer: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }
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
    rig_with(name, sim_config, overrides, RULES).await
}

/// [`rig`] with these rules.
async fn rig_with(
    name: &str,
    sim_config: SimConfig,
    overrides: &[(&str, &str)],
    rules: &str,
) -> Result<Rig, String> {
    let sim = SimPortal::start(sim_config)
        .await
        .map_err(|e| e.to_string())?;
    crate::sandbox::seed::seed_portal(&sim);
    rig_on(sim, TempDir::new(name), overrides, rules).await
}

/// The service on the store in `dir`, against `sim` as it is, with these rules.
async fn rig_on(
    sim: SimPortal,
    dir: TempDir,
    overrides: &[(&str, &str)],
    rules: &str,
) -> Result<Rig, String> {
    let mut all: Vec<(String, String)> = vec![
        ("server.listen".into(), "127.0.0.1:0".into()),
        ("storage.dir".into(), dir.0.display().to_string()),
        ("portal.webhook_url".into(), sim.webhook_url()),
        ("portal.application_token".into(), TOKEN.into()),
        (
            "log.level".into(),
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "error".into()),
        ),
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
    let rules = rule_set(rules)?;
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

/// The rules of a bench, from their text.
fn rule_set(rules: &str) -> Result<RuleSet, String> {
    let (rules, _) =
        RuleSet::from_sources(&[("bench.toml".into(), rules.into())]).map_err(|d| {
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
    Ok(rules)
}

/// Connections the events of a move come in on at once.
const SENDERS: usize = 16;

impl Rig {
    /// Moves every deal to PREPARATION in the portal and posts their events to the service from
    /// [`SENDERS`] connections at once, as a portal's event queue delivers them in parallel
    /// (the simulator's own delivery is one at a time, which would measure it rather than the
    /// service). Fails when an event is not answered 2xx.
    async fn post_moves(&self, deals: &[u64]) -> Result<(), String> {
        for &deal in deals {
            self.sim.move_deal_silently(deal, "PREPARATION").await;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(SENDERS)
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{}/bitrix24/events", self.port);
        let ts = crate::store::now_ms() / 1000;
        let member = self.sim.member_id();
        let bodies: Arc<Vec<String>> = Arc::new(
            deals
                .iter()
                .map(|deal| {
                    format!(
                        "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D={deal}&ts={ts}&auth%5Bmember_id%5D={member}&auth%5Bapplication_token%5D={TOKEN}"
                    )
                })
                .collect(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let mut senders = tokio::task::JoinSet::new();
        for _ in 0..SENDERS {
            let (client, url, next, bodies) =
                (client.clone(), url.clone(), next.clone(), bodies.clone());
            senders.spawn(async move {
                while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let answer = client
                        .post(&url)
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if !answer.status().is_success() {
                        return Err(format!("an event was answered {}", answer.status()));
                    }
                }
                Ok(())
            });
        }
        while let Some(sent) = senders.join_next().await {
            sent.map_err(|e| e.to_string())??;
        }
        Ok(())
    }

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

/// Runs one benchmark by name.
pub async fn run(
    name: &str,
    size: Option<u64>,
    burst: Option<u32>,
    intake: &IntakeOptions,
) -> CommandResult {
    let result = match name {
        "throughput" => {
            throughput::throughput(size.unwrap_or(300) as usize, burst.unwrap_or(50)).await
        }
        "strict-portal" => throughput::strict_portal(size.unwrap_or(20) as usize).await,
        "requests" => throughput::requests_per_entry(size.unwrap_or(10) as usize).await,
        "intake" => intake::intake(size.unwrap_or(32) as usize, intake).await,
        "intake-server" => intake::intake_server(size.unwrap_or(30), intake).await,
        "outage" => outage::outage(size.unwrap_or(10_000) as usize).await,
        "memory" => memory::memory(size.unwrap_or(1_000_000)).await,
        "control" => control::control(size.unwrap_or(10_000) as usize).await,
        "timers" => timers::timers(size.unwrap_or(1_000_000)).await,
        "reports" => reports::reports(size.unwrap_or(100_000) as usize).await,
        other => Err(format!(
            "unknown benchmark {other:?} (throughput, strict-portal, requests, intake, intake-server, outage, memory, control, timers, reports)"
        )),
    };
    result.map_err(|error| CommandError::Failed(format!("bench failed: {error}")))
}

/// A worker built as the service builds it, on its own store in `dir`, its client at
/// `rate`/`burst`, with `extra` settings: the benches that call its parts directly (a refresh,
/// a sweep), so that every request counted is theirs.
fn bench_worker(
    sim: &SimPortal,
    dir: &TempDir,
    rules: &RuleSet,
    (rate, burst): (f64, u32),
    extra: &[(&str, &str)],
) -> Result<crate::worker::Worker, String> {
    let mut overrides: Vec<(String, String)> = vec![
        ("storage.dir".into(), dir.0.display().to_string()),
        ("portal.webhook_url".into(), sim.webhook_url()),
        ("portal.requests_per_second".into(), rate.to_string()),
        ("portal.burst".into(), burst.to_string()),
        (
            "log.level".into(),
            std::env::var("BENCH_LOG").unwrap_or_else(|_| "error".into()),
        ),
    ];
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let settings = Settings::load(&Sources {
        overrides,
        ..Sources::default()
    })
    .map_err(|e| e.to_string())?;
    crate::telemetry::init(settings.log.format, &settings.log.level);
    std::fs::create_dir_all(&dir.0).map_err(|e| e.to_string())?;
    let store = Store::open(&dir.0).map_err(|e| e.to_string())?;
    let client = crate::startup::client(&settings).map_err(|e| e.to_string())?;
    Ok(crate::worker::Worker::new(
        &settings,
        store,
        client,
        crate::rules::RulesHandle::new(rules.clone()),
        None,
    ))
}

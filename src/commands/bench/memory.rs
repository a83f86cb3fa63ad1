//! `bench memory`: what a running service holds with the state of many known deals, for each
//! size of the store's cache, and what a smaller cache costs in speed.
//!
//! Each cache size runs in a child process of this same binary: a fresh store and a fresh heap,
//! so that what one size allocated (and the allocator kept) never counts for the next. The child
//! is the real service (`Application` against the simulated portal, which shares its process),
//! and it:
//!
//! 1. measures its resident memory at idle;
//! 2. writes the state of `--size` deals (default 1,000,000), one insert each, and flushes:
//!    writes per second, bytes on disk per deal, resident memory after;
//! 3. reads deal states at random across all of them (what a round does for each deal it takes)
//!    for 10 s (`B24ROBOT_BENCH_READ_S` seconds): reads per second, resident memory after, and
//!    the peak (`VmHWM`) over the whole run.
//!
//! The parent prints one line per size. Sizes come from `B24ROBOT_BENCH_CACHE_MIB`, a list in
//! MiB (`16,32,64`); by default [`SIZES_MIB`] and the default cache. The machine's other work
//! shows in the speeds: run it twice on a busy machine.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::rig;
use crate::commands::output::outln;
use crate::sandbox::SimConfig;
use crate::store::{DEFAULT_CACHE_BYTES, DealState, Store};

/// Cache sizes measured when `B24ROBOT_BENCH_CACHE_MIB` does not name any.
const SIZES_MIB: [u64; 5] = [16, 32, 64, 128, 256];

/// Set (to the cache size in MiB) on a child: "measure this one size and print the figures".
const CHILD: &str = "B24ROBOT_BENCH_MEMORY_CHILD";

/// The line of a child's output that carries its figures (JSON after the prefix).
const FIGURES: &str = "bench-memory-figures: ";

/// How long the random reads go on unless `B24ROBOT_BENCH_READ_S` says otherwise.
const READING: Duration = Duration::from_secs(10);

const MIB: u64 = 1024 * 1024;

/// What one child measured.
#[derive(Debug, Serialize, Deserialize)]
struct Figures {
    cache_mib: u64,
    deals: u64,
    /// Resident memory (KiB) at idle, after the writes, after the reads; the peak over the run.
    idle_kib: u64,
    written_kib: u64,
    read_kib: u64,
    peak_kib: u64,
    store_bytes: u64,
    writes_per_s: f64,
    reads: u64,
    reads_per_s: f64,
}

/// A field of /proc/self/status in KiB (Linux): `VmRSS` now, `VmHWM` its peak so far.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn rss_kib() -> u64 {
    status_kib("VmRSS").unwrap_or(0)
}

pub(super) fn peak_kib() -> u64 {
    status_kib("VmHWM").unwrap_or(0)
}

pub async fn memory(deals: u64) -> Result<(), String> {
    if deals == 0 {
        return Err("bench memory needs at least one deal (--size)".into());
    }
    match std::env::var(CHILD) {
        Ok(mib) => {
            let mib = mib
                .parse::<u64>()
                .map_err(|_| format!("{CHILD}={mib:?}: not a size in MiB"))?;
            let figures = measure(deals, mib).await?;
            let json = serde_json::to_string(&figures).map_err(|e| e.to_string())?;
            outln!("{FIGURES}{json}");
            Ok(())
        }
        Err(_) => compare(deals, &sizes()?).await,
    }
}

/// The cache sizes to measure, in MiB, smallest first.
fn sizes() -> Result<Vec<u64>, String> {
    let mut sizes = match std::env::var("B24ROBOT_BENCH_CACHE_MIB") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&mib| mib > 0)
                    .ok_or_else(|| format!("B24ROBOT_BENCH_CACHE_MIB: {s:?} is not a size in MiB"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Err(_) => {
            let mut sizes = SIZES_MIB.to_vec();
            sizes.push(DEFAULT_CACHE_BYTES / MIB);
            sizes
        }
    };
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

/// Runs one child a size and prints the table.
async fn compare(deals: u64, sizes: &[u64]) -> Result<(), String> {
    outln!(
        "memory: the service (with the simulated portal in its process) holding the state of {deals} deals, one fresh process a cache size; default cache {} MiB",
        DEFAULT_CACHE_BYTES / MIB
    );
    outln!(
        "{:>9} {:>8} {:>12} {:>11} {:>8} {:>10} {:>9} {:>12}",
        "cache MiB",
        "idle MiB",
        "written MiB",
        "random MiB",
        "peak MiB",
        "bytes/deal",
        "writes/s",
        "random rd/s"
    );
    for &mib in sizes {
        let figures: Figures = child(
            &["bench", "memory", "--size", &deals.to_string()],
            &[(CHILD, mib.to_string())],
            FIGURES,
        )
        .await
        .map_err(|e| format!("the child for {mib} MiB: {e}"))?;
        let mib_of = |kib: u64| kib as f64 / 1024.0;
        outln!(
            "{:>9} {:>8.1} {:>12.1} {:>11.1} {:>8.1} {:>10.0} {:>9.0} {:>12.0}",
            figures.cache_mib,
            mib_of(figures.idle_kib),
            mib_of(figures.written_kib),
            mib_of(figures.read_kib),
            mib_of(figures.peak_kib),
            figures.store_bytes as f64 / figures.deals as f64,
            figures.writes_per_s,
            figures.reads_per_s
        );
    }
    Ok(())
}

/// Runs this same binary with `args` and `env` (a fresh process: a fresh heap, so that what one
/// measurement allocated never counts for the next) and reads the figures it printed as JSON
/// after `prefix`.
pub(super) async fn child<T: serde::de::DeserializeOwned>(
    args: &[&str],
    env: &[(&str, String)],
    prefix: &str,
) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let output = tokio::process::Command::new(&exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| format!("cannot start it: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .ok_or_else(|| format!("no figures ({}): {stdout}", output.status))
        .and_then(|json| serde_json::from_str(json).map_err(|e| e.to_string()))
}

/// The child's work: one cache size, one fresh store.
async fn measure(deals: u64, cache_mib: u64) -> Result<Figures, String> {
    let cache = format!("{cache_mib}MiB");
    let service = rig("memory", SimConfig::default(), &[("storage.cache", &cache)]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = rss_kib();
    let store = service.store.clone();
    // The store blocks: the loops run beside the runtime, as the worker's store calls do.
    let result = tokio::task::spawn_blocking(move || write_then_read(&store, deals))
        .await
        .map_err(|e| e.to_string())?;
    service.stop().await;
    let (written, read) = result?;
    Ok(Figures {
        cache_mib,
        deals,
        idle_kib,
        written_kib: written.rss_kib,
        read_kib: read.rss_kib,
        peak_kib: read.peak_kib,
        store_bytes: written.store_bytes,
        writes_per_s: deals as f64 / written.elapsed.as_secs_f64(),
        reads: read.count,
        reads_per_s: read.count as f64 / read.elapsed.as_secs_f64(),
    })
}

/// What one phase of [`write_then_read`] measured.
struct Phase {
    count: u64,
    elapsed: Duration,
    rss_kib: u64,
    peak_kib: u64,
    store_bytes: u64,
}

/// Writes the state of deals 1..=`deals`, flushes, then reads states at random.
fn write_then_read(store: &Store, deals: u64) -> Result<(Phase, Phase), String> {
    let started = Instant::now();
    for deal in 1..=deals {
        store
            .put_deal_state(deal, &state_of(deal))
            .map_err(|e| e.to_string())?;
    }
    store.flush().map_err(|e| e.to_string())?;
    let written = Phase {
        count: deals,
        elapsed: started.elapsed(),
        rss_kib: rss_kib(),
        peak_kib: peak_kib(),
        store_bytes: store.size_on_disk().map_err(|e| e.to_string())?,
    };

    let reading = std::env::var("B24ROBOT_BENCH_READ_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READING, Duration::from_secs);
    let mut rng = rand::rng();
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < reading {
        for _ in 0..1000 {
            let deal = rng.random_range(1..=deals);
            match store.deal_state(deal) {
                Ok(Some(state)) if state == state_of(deal) => {}
                other => return Err(format!("deal {deal}: read back {other:?}")),
            }
        }
        count += 1000;
    }
    let read = Phase {
        count,
        elapsed: started.elapsed(),
        rss_kib: rss_kib(),
        peak_kib: peak_kib(),
        store_bytes: written.store_bytes,
    };
    Ok((written, read))
}

/// A deal's state as a round leaves it: its last entry, in a stage of a pipeline.
fn state_of(deal: u64) -> DealState {
    DealState {
        last_entry_id: 1_000_000 + deal * 3,
        stage_id: Some(
            if deal.is_multiple_of(2) {
                "C1:PREPARATION"
            } else {
                "C1:NEW"
            }
            .into(),
        ),
        category_id: Some(1),
        ..DealState::default()
    }
}

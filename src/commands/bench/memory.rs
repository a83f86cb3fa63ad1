//! `bench memory`: resident memory and store bytes per deal with many known deals.

use std::time::{Duration, Instant};

use super::{TempDir, rig};
use crate::commands::output::outln;
use crate::sandbox::SimConfig;
use crate::store::Store;

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

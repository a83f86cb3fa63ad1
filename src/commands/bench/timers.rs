//! `bench timers`: the durable timers of `[[sla]]` (`control.md`) with many armed. For `--size`
//! pending timers (default 1,000,000), and for a thousandth of them as the baseline of the same
//! run, in a fresh store:
//!
//! 1. one child process arms them (`Store::put_timers`, 1,000 a transaction, as rounds arm
//!    theirs) and flushes: timers armed per second, resident memory before and after, bytes on
//!    disk;
//! 2. another opens that store, as the service does at start (the store counts the pending
//!    timers at open), and times what the timer loop and the control loop read: one turn of the
//!    timer loop (`due_timers(now, 1000)` with 1,000 due, and `next_timer_due()`), and the scans
//!    of every timer (`pending_timers()`, the re-timing at start and at each reload of the
//!    rules; `fired_timers()`, each digest); resident memory after open, and the peak (the
//!    scans hold every pending timer at once).
//!
//! Each step runs in a fresh process of this same binary ([`super::memory::child`]), so what
//! one allocated never counts for the next. The parent prints both sizes and their ratios.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::TempDir;
use super::memory::{child, peak_kib, rss_kib};
use crate::commands::output::outln;
use crate::rules::{StageEntry, StageSemantic};
use crate::store::{RECORD_VERSION, Store, TimerRecord, TimerState, now_ms};

/// Set on a child: `arm` or `open`; the store's folder in [`DIR`].
const CHILD: &str = "B24ROBOT_BENCH_TIMERS_CHILD";
const DIR: &str = "B24ROBOT_BENCH_TIMERS_DIR";

/// The line of a child's output that carries its figures (JSON after the prefix).
const FIGURES: &str = "bench-timers-figures: ";

/// Timers a transaction arms.
const CHUNK: usize = 1_000;

/// Timers due at the measurement: one turn of the timer loop takes at most this many.
const DUE: u64 = 1_000;

/// How many times each quick read is repeated (its mean is printed).
const REPEAT: u32 = 200;

/// What the arming child measured.
#[derive(Debug, Serialize, Deserialize)]
struct Armed {
    timers: u64,
    elapsed_s: f64,
    idle_kib: u64,
    armed_kib: u64,
    peak_kib: u64,
    store_bytes: u64,
}

/// What the opening child measured; `peak_kib` after the scans.
#[derive(Debug, Serialize, Deserialize)]
struct Opened {
    pending: u64,
    open_s: f64,
    open_kib: u64,
    due_found: usize,
    due_us: f64,
    next_us: f64,
    pending_scan_s: f64,
    fired_scan_s: f64,
    peak_kib: u64,
}

pub async fn timers(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("bench timers needs at least one timer (--size)".into());
    }
    match (std::env::var(CHILD), std::env::var(DIR)) {
        (Ok(step), Ok(dir)) => {
            let dir = std::path::PathBuf::from(dir);
            let json = tokio::task::spawn_blocking(move || match step.as_str() {
                "arm" => arm(&dir, size).and_then(|f| to_json(&f)),
                "open" => open(&dir).and_then(|f| to_json(&f)),
                other => Err(format!("{CHILD}={other:?}: not arm or open")),
            })
            .await
            .map_err(|e| e.to_string())??;
            outln!("{FIGURES}{json}");
            Ok(())
        }
        _ => compare(size).await,
    }
}

fn to_json<T: Serialize>(figures: &T) -> Result<String, String> {
    serde_json::to_string(figures).map_err(|e| e.to_string())
}

/// Arms and opens the baseline's timers and `size`, each step in a child; prints the table.
async fn compare(size: u64) -> Result<(), String> {
    // A thousandth, but at least one turn of the timer loop: as many due as at full size.
    let baseline = (size / 1000).max(DUE).min(size);
    let dir = TempDir::new("timers");
    let mut rows = Vec::new();
    for n in [baseline, size] {
        let store = dir.0.join(n.to_string());
        let armed: Armed = step("arm", n, &store).await?;
        let opened: Opened = step("open", n, &store).await?;
        if opened.pending != n {
            return Err(format!("{n} armed, {} pending at open", opened.pending));
        }
        rows.push((armed, opened));
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    outln!(
        "timers: pending SLA timers in a fresh store (default cache), {baseline} as the baseline, each step a fresh process"
    );
    outln!(
        "{:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "timers",
        "armed/s",
        "idle MiB",
        "armed MiB",
        "arm peak",
        "bytes/tmr",
        "open s",
        "open MiB",
        "due µs",
        "next µs",
        "scan s",
        "fired s",
        "scan peak"
    );
    for (a, o) in &rows {
        outln!(
            "{:>9} {:>9.0} {:>8.1} {:>9.1} {:>9.1} {:>9.0} {:>8.4} {:>8.1} {:>9.1} {:>9.2} {:>9.3} {:>10.3} {:>9.1}",
            a.timers,
            a.timers as f64 / a.elapsed_s,
            mib(a.idle_kib),
            mib(a.armed_kib),
            mib(a.peak_kib),
            a.store_bytes as f64 / a.timers as f64,
            o.open_s,
            mib(o.open_kib),
            o.due_us,
            o.next_us,
            o.pending_scan_s,
            o.fired_scan_s,
            mib(o.peak_kib)
        );
    }
    if let [(base_a, base_o), (a, o)] = rows.as_slice() {
        let ratio = |x: f64, y: f64| x / y.max(f64::MIN_POSITIVE);
        outln!(
            "timers: {size} against {baseline}: {:.0}x the timers; store bytes {:.0}x ({:.1} MB), open {:.0}x ({:.3} s), due_timers(now, {DUE}) {:.2}x ({:.1} µs, {} due), next_timer_due {:.2}x ({:.2} µs), scan of every pending timer {:.0}x ({:.2} s), RSS after arming {:.2}x ({:.1} MiB)",
            size as f64 / baseline as f64,
            ratio(a.store_bytes as f64, base_a.store_bytes as f64),
            a.store_bytes as f64 / 1e6,
            ratio(o.open_s, base_o.open_s),
            o.open_s,
            ratio(o.due_us, base_o.due_us),
            o.due_us,
            o.due_found,
            ratio(o.next_us, base_o.next_us),
            o.next_us,
            ratio(o.pending_scan_s, base_o.pending_scan_s),
            o.pending_scan_s,
            ratio(a.armed_kib as f64, base_a.armed_kib as f64),
            mib(a.armed_kib)
        );
    }
    Ok(())
}

/// One step (`arm`, `open`) for `n` timers in the store at `store`, in a child.
async fn step<T: serde::de::DeserializeOwned>(
    step: &str,
    n: u64,
    store: &Path,
) -> Result<T, String> {
    let env = [
        (CHILD, step.to_string()),
        (DIR, store.display().to_string()),
    ];
    child(
        &["bench", "timers", "--size", &n.to_string()],
        &env,
        FIGURES,
    )
    .await
    .map_err(|e| format!("the {step} child for {n} timers: {e}"))
}

/// Timer `i`: deal `i + 1`, its entry, rule `offer-sla`; the first [`DUE`] are due already (a
/// second apart), the others over the next 30 days.
fn timer(i: u64, now: u64, total: u64) -> TimerRecord {
    let due_ms = if i < DUE {
        now - (DUE - i) * 1000
    } else {
        now + 60_000 + (i - DUE) * (30 * 86_400_000 / total.max(1))
    };
    let deal = i + 1;
    TimerRecord {
        v: RECORD_VERSION,
        deal_id: deal,
        entry_id: deal * 3,
        rule: "offer-sla".into(),
        repetition: 0,
        due_ms,
        entry: StageEntry {
            id: deal * 3,
            type_id: 2,
            stage_id: "C1:OFFER".into(),
            category_id: 1,
            semantic: StageSemantic::Process,
            created_time: DateTime::from_timestamp_millis(now as i64 - 86_400_000)
                .unwrap_or_default()
                .fixed_offset(),
        },
        state: TimerState::Pending,
        armed_at_ms: now,
        updated_at_ms: now,
        history: Vec::new(),
    }
}

/// The arming child: `size` timers into a fresh store at `dir`, flushed.
fn arm(dir: &Path, size: u64) -> Result<Armed, String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let idle_kib = rss_kib();
    let now = now_ms();
    let started = Instant::now();
    let mut chunk = Vec::with_capacity(CHUNK);
    for i in 0..size {
        chunk.push(timer(i, now, size));
        if chunk.len() == CHUNK || i + 1 == size {
            store.put_timers(&chunk).map_err(|e| e.to_string())?;
            chunk.clear();
        }
    }
    store.flush().map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    Ok(Armed {
        timers: size,
        elapsed_s: elapsed.as_secs_f64(),
        idle_kib,
        armed_kib: rss_kib(),
        peak_kib: peak_kib(),
        store_bytes: store.size_on_disk().map_err(|e| e.to_string())?,
    })
}

/// The mean time of `REPEAT` runs of `read`, in µs.
fn mean_us(mut read: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    let started = Instant::now();
    for _ in 0..REPEAT {
        read()?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(REPEAT))
}

fn timed<T>(work: impl FnOnce() -> Result<T, String>) -> Result<(T, Duration), String> {
    let started = Instant::now();
    let out = work()?;
    Ok((out, started.elapsed()))
}

/// The opening child: opens the store at `dir` and times the reads of the loops.
fn open(dir: &Path) -> Result<Opened, String> {
    let (store, open) = timed(|| Store::open(dir).map_err(|e| e.to_string()))?;
    let open_kib = rss_kib();
    let now = now_ms();
    let due_found = store
        .due_timers(now, DUE as usize)
        .map_err(|e| e.to_string())?
        .len();
    let due_us = mean_us(|| {
        store
            .due_timers(now, DUE as usize)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    let next_us = mean_us(|| store.next_timer_due().map(drop).map_err(|e| e.to_string()))?;
    let (_, pending_scan) = timed(|| store.pending_timers().map_err(|e| e.to_string()))?;
    let (_, fired_scan) = timed(|| store.fired_timers().map_err(|e| e.to_string()))?;
    Ok(Opened {
        pending: store.timers_pending(),
        open_s: open.as_secs_f64(),
        open_kib,
        due_found,
        due_us,
        next_us,
        pending_scan_s: pending_scan.as_secs_f64(),
        fired_scan_s: fired_scan.as_secs_f64(),
        peak_kib: peak_kib(),
    })
}

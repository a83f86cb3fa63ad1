//! `bench outage`: the portal unreachable (a proxy answering 502) while `size` deals move and
//! queue up; then what the service costs while it waits (CPU of this process over 30 s, probes a
//! minute, requests other than probes), and how long the backlog takes to drain once the portal
//! answers, against the portal's own ceiling (2 requests/s × 50 calls): after the first quarter
//! of the backlog, and for the whole of it (10,000 deals: about 4 minutes at the ceiling).

use std::time::{Duration, Instant};

use serde_json::json;

use super::rig;
use crate::commands::output::outln;
use crate::sandbox::{Faults, Outage, RequestRecord, SimConfig};

/// How long the idle cost is measured.
const IDLE: Duration = Duration::from_secs(30);
/// The drain's rate is told once this fraction (1/4) of the backlog is drained, then at its end.
const SHARE_OF: usize = 4;

/// CPU time of this process so far (user + system), from `/proc/self/stat` (Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: the fields counted from after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ: the unit of these fields, 100 on Linux whatever the kernel's own tick.
    Some(Duration::from_secs_f64(ticks as f64 / 100.0))
}

pub async fn outage(size: usize) -> Result<(), String> {
    let rig = rig(
        "outage",
        SimConfig {
            requests_per_second: 2.0,
            burst: 50,
            ..SimConfig::default()
        },
        &[],
    )
    .await?;
    if !rig.settle(Duration::from_secs(60)).await {
        return Err("the start did not settle".into());
    }
    rig.sim.set_faults(Faults {
        outage: Some(Outage::Gateway(502)),
        ..Faults::default()
    });
    // The deals are made with no event (the service needs none for them), then move while the
    // portal is away: their events are taken and wait.
    rig.sim.set_event_handler(None, super::TOKEN);
    let mut deals = Vec::with_capacity(size);
    for i in 0..size {
        deals.push(
            rig.sim
                .create_deal(json!({"TITLE": format!("Outage {i}"), "ASSIGNED_BY_ID": "3", "CATEGORY_ID": "0", "STAGE_ID": "NEW"}))
                .await,
        );
    }
    rig.sim.set_event_handler(
        Some(format!("http://127.0.0.1:{}/bitrix24/events", rig.port)),
        super::TOKEN,
    );
    rig.post_moves(&deals).await?;
    let queued_by = Instant::now() + Duration::from_secs(120);
    while rig.store.queue_len() < size || rig.sim.request_count() == 0 {
        if Instant::now() > queued_by {
            return Err(format!(
                "only {} of {size} deals queued",
                rig.store.queue_len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the last rounds end and the client call the portal down.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let requests = rig.sim.request_count();
    let cpu_before = cpu_time().ok_or("no /proc/self/stat")?;
    let started = Instant::now();
    tokio::time::sleep(IDLE).await;
    let wall = started.elapsed();
    let cpu = cpu_time().ok_or("no /proc/self/stat")? - cpu_before;
    let during = rig.sim.requests()[requests..].to_vec();
    let probes = during.iter().filter(|r| r.method == "server.time").count();
    let other = during.len() - probes;
    let cpu_share = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    outln!(
        "outage: {size} deals queued, portal unreachable (502 from a proxy): CPU {cpu_share:.2} % of one core over {:.0} s (service and simulated portal in one process); {:.1} probes a minute; {other} other requests",
        wall.as_secs_f64(),
        probes as f64 * 60.0 / wall.as_secs_f64()
    );

    // Back: the backlog drains at the portal's limit.
    let before = rig.sim.request_count();
    rig.sim.set_faults(Faults::default());
    let started = Instant::now();
    let limit = Duration::from_secs(60 + size as u64);
    let mut share_told = false;
    loop {
        // The count of all tasks first: looking at each deal's on every turn would cost the
        // simulated portal more than the service.
        let done = rig.sim.task_count() / 2;
        if done >= size {
            break;
        }
        if !share_told && done * SHARE_OF >= size {
            // A fixed share of the backlog, told as it is reached: the rate a machine too slow
            // (or a run too short) for the whole drain can still be judged by.
            share_told = true;
            let elapsed = started.elapsed().as_secs_f64();
            let sent = rig.sim.requests()[before..].to_vec();
            let calls: usize = sent.iter().map(RequestRecord::calls).sum();
            outln!(
                "outage drain, first 1/{SHARE_OF} of the backlog: {done} deals in {elapsed:.1} s = {:.1} entries/s; {} requests carrying {calls} calls; the portal's ceiling for those calls is {:.1} s: ratio {:.2}",
                done as f64 / elapsed,
                sent.len(),
                calls as f64 / 100.0,
                calls as f64 / 100.0 / elapsed
            );
        }
        if started.elapsed() > limit {
            return Err(format!(
                "only {done} of {size} deals drained after {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = started.elapsed();
    // Counted in one pass: asking for each deal's tasks would copy all of them once a deal
    // (10,000 × 20,000 tasks: longer than the drain).
    let tasks_of = rig.sim.tasks_per_deal();
    let short: Vec<u64> = deals
        .iter()
        .copied()
        .filter(|d| tasks_of.get(d).copied().unwrap_or(0) != 2)
        .collect();
    if !short.is_empty() {
        return Err(format!("deals without exactly 2 tasks: {short:?}"));
    }
    let sent = rig.sim.requests()[before..].to_vec();
    let calls: usize = sent.iter().map(RequestRecord::calls).sum();
    let rejected = sent.iter().filter(|r| r.status == 503).count();
    // The portal's ceiling: 2 requests/s of 50 calls each.
    let ceiling = calls as f64 / 100.0;
    outln!(
        "outage drain: {size} deals (2 tasks each) in {:.1} s = {:.1} entries/s; {} requests carrying {calls} calls ({:.1} a request), {rejected} x 503; the portal's ceiling for those calls is {ceiling:.1} s: ratio {:.2}",
        drain.as_secs_f64(),
        size as f64 / drain.as_secs_f64(),
        sent.len(),
        calls as f64 / sent.len().max(1) as f64,
        ceiling / drain.as_secs_f64()
    );
    rig.stop().await;
    Ok(())
}

//! `bench control`: one control sweep (`control.md`, `[[overdue]]` with `tasks = "all"` and a
//! `[[no_task]]`) over `size` open deals of pipeline 0 and about one task each, against a portal
//! at its real limit (2 requests/s, burst 50): the requests and calls the sweep sends, its
//! duration, and both against the portal's ceiling (every call in full batches of 50). Then the
//! same sweep against a portal without a limit (a fresh store): what the service and the
//! simulated portal cost by themselves, the reads (`sweep::read`) timed apart from the rest.
//!
//! The sweep is called directly ([`crate::worker::control::sweep::sweep`]) with a [`Worker`] built as
//! the service builds it; no round runs, so every request counted is the sweep's.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use super::TempDir;
use crate::commands::output::outln;
use crate::rules::RuleSet;
use crate::sandbox::{RequestRecord, SimConfig, SimPortal};

/// The portal's limit, and the client configured the same.
const RATE: f64 = 2.0;
const BURST: u32 = 50;

/// Calls a `batch` carries at most.
const BATCH: usize = 50;

const RULES: &str = r#"
pipeline = 0

[[overdue]]
name = "overdue-tasks"
pipeline = 0
tasks = "all"
notify = ["responsible"]
message = "Overdue since {TASK_DEADLINE}: {TASK_TITLE}, deal {TITLE}"

[[no_task]]
name = "deals-without-next-step"
pipeline = 0
after = "0 minutes"
notify = ["assigned"]
message = "{TITLE} has no open task"
"#;

/// The in-progress stages of pipeline 0 the deals sit in.
const STAGES: [&str; 4] = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING"];

/// What one sweep cost.
struct Measured {
    requests: Vec<RequestRecord>,
    elapsed: Duration,
    /// The reads alone (`sweep::read`), timed before the sweep without a limit; zero otherwise.
    read: Duration,
    report: crate::worker::control::sweep::Report,
}

pub async fn control(size: usize) -> Result<(), String> {
    if size == 0 {
        return Err("bench control needs at least one deal (--size)".into());
    }
    let sim = SimPortal::start(SimConfig {
        requests_per_second: RATE,
        burst: BURST,
        ..SimConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    crate::sandbox::seed::seed_portal(&sim);
    let started = Instant::now();
    let (tasks, overdue, bare) = populate(&sim, size).await;
    outln!(
        "control: {size} open deals in pipeline 0, {tasks} open tasks ({overdue} overdue, a third without a deadline), {bare} deals without a task; set up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let rules = super::rule_set(RULES)?;

    let limited = measure(&sim, &rules, RATE, BURST).await?;
    let calls: usize = limited.requests.iter().map(RequestRecord::calls).sum();
    let requests = limited.requests.len();
    let rejected = limited.requests.iter().filter(|r| r.status == 503).count();
    // The portal's ceiling: every call in a full batch; the burst goes at once, the rest at
    // the limit; from an empty bucket (a sweep right after busy work) every request waits.
    let best = calls.div_ceil(BATCH);
    let full_bucket = best.saturating_sub(BURST as usize) as f64 / RATE;
    let empty_bucket = best as f64 / RATE;
    let elapsed = limited.elapsed.as_secs_f64();
    outln!(
        "control sweep: {} deals, {} tasks read, {} notices recorded in {elapsed:.1} s against a {RATE} req/s, burst-{BURST} portal; {requests} HTTP requests carrying {calls} calls ({:.2} a request), {rejected} x 503",
        limited.report.deals,
        limited.report.tasks,
        limited.report.notices,
        calls as f64 / requests.max(1) as f64,
    );
    outln!(
        "control sweep against the portal's ceiling: {best} requests at best (calls / {BATCH}): ratio {:.3} ({requests} sent); {full_bucket:.1} s from a full bucket, {empty_bucket:.1} s from an empty one: ratio {:.3}",
        best as f64 / requests.max(1) as f64,
        empty_bucket / elapsed
    );
    let methods = by_method(&limited.requests);
    outln!("control sweep requests by method: {methods}");

    sim.set_rate_limit(100_000.0, 100_000);
    let free = measure(&sim, &rules, 100_000.0, 100_000).await?;
    let reading = free.read.as_secs_f64();
    let whole = free.elapsed.as_secs_f64();
    outln!(
        "control sweep, portal without a limit (fresh store): {whole:.2} s, {} requests, of which the reads alone (`sweep::read`, the simulated portal answering in this process) {reading:.2} s; deciding and recording the notices {:.2} s",
        free.requests.len(),
        (whole - reading).max(0.0)
    );
    Ok(())
}

/// `size` deals in the in-progress stages of pipeline 0, made without events (the sweep needs
/// none). Every tenth deal has no task; the others one: a third overdue (a day ago), a third due
/// in a week, a third without a deadline. Returns (tasks, overdue, deals without a task).
async fn populate(sim: &SimPortal, size: usize) -> (usize, usize, usize) {
    let now = Utc::now().fixed_offset();
    let (mut tasks, mut overdue, mut bare) = (0, 0, 0);
    for i in 0..size {
        let deal = sim
            .create_deal(json!({
                "TITLE": format!("Control {i}"),
                "ASSIGNED_BY_ID": "3",
                "CATEGORY_ID": "0",
                "STAGE_ID": STAGES[i % STAGES.len()],
            }))
            .await;
        if i % 10 == 9 {
            bare += 1;
            continue;
        }
        let deadline = match i % 3 {
            0 => {
                overdue += 1;
                Some(now - chrono::Duration::days(1))
            }
            1 => Some(now + chrono::Duration::days(7)),
            _ => None,
        };
        sim.add_user_task(deal, &format!("Call back {i}"), 3, deadline);
        tasks += 1;
    }
    (tasks, overdue, bare)
}

/// One sweep with a fresh store and a client at `rate`/`burst`: the requests it sent, how long.
async fn measure(
    sim: &SimPortal,
    rules: &RuleSet,
    rate: f64,
    burst: u32,
) -> Result<Measured, String> {
    let dir = TempDir::new("control");
    // The notices are recorded whatever the hour, so every run does the same work.
    let worker = super::bench_worker(
        sim,
        &dir,
        rules,
        (rate, burst),
        &[("control.quiet_outside_hours", "false")],
    )?;
    // Without a limit, the reads alone are timed first: the rest of a sweep is the service's.
    let read = if rate > f64::from(BURST) {
        let started = Instant::now();
        crate::worker::control::sweep::read(&worker, rules)
            .await
            .map_err(|e| e.to_string())?;
        started.elapsed()
    } else {
        Duration::ZERO
    };
    let before = sim.request_count();
    let started = Instant::now();
    let report = crate::worker::control::sweep::sweep(&worker, rules)
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    Ok(Measured {
        requests: sim.requests()[before..].to_vec(),
        elapsed,
        read,
        report,
    })
}

/// "method: requests (calls)" for each method sent, `batch` counted by what it carried.
fn by_method(requests: &[RequestRecord]) -> String {
    let mut counts: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for r in requests {
        let name = match r.sub_methods.first() {
            Some(first) if r.method == "batch" => format!("batch of {first}"),
            _ => r.method.clone(),
        };
        let entry = counts.entry(name).or_default();
        entry.0 += 1;
        entry.1 += r.calls();
    }
    counts
        .iter()
        .map(|(m, (n, c))| format!("{m}: {n} ({c} calls)"))
        .collect::<Vec<_>>()
        .join(", ")
}

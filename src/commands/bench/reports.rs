//! `bench reports`: the report copy (`control.md`, "Where the data comes from") of a portal of
//! `size` deals with their stage histories, against a portal at its real limit (2 requests/s,
//! burst 50), and what reports and the dashboard cost on it once it is warm.
//!
//! - The first copy ([`crate::worker::report_copy::refresh`] on an empty store): requests,
//!   calls and seconds against the portal's ceiling: every page the copy must read
//!   (deals ÷ 50 + stage-history entries ÷ 50) in full `batch`es of 50, i.e.
//!   ceil(pages ÷ 50) requests, which a full bucket lets through in (requests − 50) ÷ 2 s.
//! - A refresh with nothing changed (at most 2 requests), and one after a batch of changes
//!   (1,000 deals' amounts, 100 deals newly won): requests and seconds against the same ceiling.
//! - Each report on the warm copy ([`crate::worker::report_copy::report_json`], its refresh
//!   included), median and p99 over repeated runs, against a bare scan of the copy
//!   ([`crate::store::Store::report_deals`], every deal read and decoded): the floor every
//!   report pays.
//! - The dashboard's Reports page (`GET /ui/reports?name=...` with a session cookie) of the
//!   running service on the same copy, against `GET /healthz` of the same server on the same
//!   connection: the HTTP floor.
//! - The first copy once more, on a fresh store, with the limit lifted on both sides: what the
//!   service costs by itself.
//!
//! The simulated portal shares the process; each request records how long it took to answer
//! ([`RequestRecord::worked`]), so every duration is printed with the simulator's part of it.
//! Runs that send a request are spaced [`PACE`] apart, slower than the portal's rate, so that
//! the figures are the copy's, not waits for the bucket.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;

use super::{TempDir, rig_on};
use crate::clock::Clock;
use crate::commands::output::outln;
use crate::rules::RuleSet;
use crate::sandbox::{RequestRecord, SimConfig, SimPortal};
use crate::worker::Worker;
use crate::worker::report_copy::{REPORTS, Refreshed, refresh, report_json};

/// The portal's limit, and the client configured the same.
const RATE: f64 = 2.0;
const BURST: u32 = 50;

/// Items a list page holds, and calls a `batch` carries.
const PAGE: usize = 50;

/// Timed runs of each report, page and baseline.
const RUNS: usize = 20;

/// The least time between the starts of two runs that send a request: under the portal's rate.
const PACE: Duration = Duration::from_millis(600);

/// Days of history the deals are spread over, ending an hour ago (so that the service, started
/// later, counts every entry as before its first start and acts on none).
const HISTORY_DAYS: i64 = 40;

/// The deals' responsibles (users of the built-in portal).
const ASSIGNEES: [u64; 4] = [2, 3, 4, 6];

/// What the bench's service knows: a plan for this month per responsible, the NPS and loss
/// reason fields (the report fields the copy reads). `{MONTH}` is replaced.
const RULES: &str = r#"
pipeline = 0

[[plan]]
name = "sales-month"
period = "{MONTH}"
measure = "amount"
currency = "RUB"
targets = { 2 = 300000000, 3 = 300000000, 4 = 300000000, 6 = 300000000 }

[[nps]]
name = "nps"
title = "NPS: ask {TITLE}"
responsible = "assigned"
deadline = { after = "3 days" }
score_field = "UF_CRM_NPS"

[[loss_reason]]
name = "loss-reason"
field = "UF_CRM_LOSS_REASON"
allowed = ["Too expensive", "Chose a competitor", "Stopped answering", "No budget"]
on_missing = "revert"
"#;

const ADMIN_TOKEN: &str = "bench-admin-token";

pub async fn reports(size: usize) -> Result<(), String> {
    if size == 0 {
        return Err("bench reports needs at least one deal (--size)".into());
    }
    let clock = Clock::starting_at(Utc::now() - chrono::Duration::days(HISTORY_DAYS));
    let sim = SimPortal::start(SimConfig {
        requests_per_second: RATE,
        burst: BURST,
        clock: clock.clone(),
        ..SimConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    crate::sandbox::seed::seed_portal(&sim);
    let started = Instant::now();
    let (entries, won, lost) = populate(&sim, &clock, size).await;
    outln!(
        "reports: {size} deals in pipeline 0 ({won} won, {lost} lost, the rest in progress; {} responsibles), {entries} stage-history entries over {HISTORY_DAYS} days; set up in {:.1} s",
        ASSIGNEES.len(),
        started.elapsed().as_secs_f64()
    );
    let rules_text = RULES.replace("{MONTH}", &Utc::now().format("%Y-%m").to_string());
    let rules = super::rule_set(&rules_text)?;
    let dir = TempDir::new("reports");

    let worker = super::bench_worker(&sim, &dir, &rules, (RATE, BURST), &[])?;
    let first = timed_refresh(&sim, &worker, &rules).await?;
    first_copy_line(&first, size, entries);

    rest().await;
    let unchanged = timed_refresh(&sim, &worker, &rules).await?;
    outln!(
        "refresh with nothing changed: {} requests (goal <= 2), {} calls, {:.3} s, of which the simulated portal {:.3} s; {} deals and {} entries read again",
        unchanged.requests.len(),
        calls(&unchanged.requests),
        unchanged.elapsed.as_secs_f64(),
        worked(&unchanged.requests).as_secs_f64(),
        unchanged.refreshed.deals_read,
        unchanged.refreshed.entries_read,
    );

    let report_medians = report_times(&sim, &worker, &rules).await?;

    let (changed, newly_won) = change(&sim, &clock, size).await;
    rest().await;
    let after = timed_refresh(&sim, &worker, &rules).await?;
    let pages = changed.div_ceil(PAGE) + newly_won.div_ceil(PAGE);
    let best = pages.div_ceil(PAGE);
    outln!(
        "refresh after {changed} deals changed ({newly_won} of them newly won): {} requests carrying {} calls, {:.3} s, of which the simulated portal {:.3} s; {} deals and {} entries read; the ceiling: {pages} pages in {best} request (ratio {:.2}), none waiting for a bucket with room",
        after.requests.len(),
        calls(&after.requests),
        after.elapsed.as_secs_f64(),
        worked(&after.requests).as_secs_f64(),
        after.refreshed.deals_read,
        after.refreshed.entries_read,
        best as f64 / after.requests.len().max(1) as f64,
    );
    drop(worker);

    dashboard(&sim, dir, &rules_text, &report_medians).await?;

    sim.set_rate_limit(100_000.0, 100_000);
    let fresh = TempDir::new("reports-free");
    let free_worker = super::bench_worker(&sim, &fresh, &rules, (100_000.0, 100_000), &[])?;
    let free = timed_refresh(&sim, &free_worker, &rules).await?;
    let whole = free.elapsed.as_secs_f64();
    let answering = worked(&free.requests).as_secs_f64();
    outln!(
        "first copy, portal and client without a limit (fresh store): {whole:.1} s, {} requests; the simulated portal answering {answering:.1} s, the service {:.1} s (reading the answers, building and writing {} deals)",
        free.requests.len(),
        (whole - answering).max(0.0),
        free.refreshed.deals,
    );
    Ok(())
}

/// `size` deals of pipeline 0, spread over [`HISTORY_DAYS`] by the portal's clock: created in
/// NEW over the first half, all moved to PREPARATION over the next quarter, two in three on to
/// EXECUTING, then four in ten won (with an NPS score, 0-10) and two in ten lost (with a loss
/// reason) over the last days; amounts of 10,000-59,000 RUB, four responsibles. Made without
/// events, straight into the portal's state. Returns (history entries, won, lost).
async fn populate(sim: &SimPortal, clock: &Clock, size: usize) -> (usize, usize, usize) {
    let span = Duration::from_secs(HISTORY_DAYS as u64 * 86_400 - 3_600);
    let step = |share: u32| span / share / size as u32;
    for i in 0..size {
        sim.create_deal(json!({
            "TITLE": format!("Report deal {i}"),
            "CATEGORY_ID": "0",
            "STAGE_ID": "NEW",
            "ASSIGNED_BY_ID": ASSIGNEES[i % ASSIGNEES.len()].to_string(),
            "OPPORTUNITY": (10_000 + (i % 50) * 1_000).to_string(),
            "CURRENCY_ID": "RUB",
        }))
        .await;
        clock.advance(step(2));
    }
    for id in 1..=size as u64 {
        sim.move_deal_silently(id, "PREPARATION").await;
        clock.advance(step(4));
    }
    for id in (1..=size as u64).filter(|id| id % 3 != 0) {
        sim.move_deal_silently(id, "EXECUTING").await;
    }
    let (mut won, mut lost) = (0, 0);
    for id in 1..=size as u64 {
        let fields = match id % 10 {
            0..=3 => {
                won += 1;
                json!({ "STAGE_ID": "WON", "UF_CRM_NPS": id % 11 })
            }
            4 | 5 => {
                lost += 1;
                json!({ "STAGE_ID": "LOSE", "UF_CRM_LOSS_REASON": 11 + id % 4 })
            }
            _ => continue,
        };
        sim.update_deal(id, fields).await;
        clock.advance(step(4) * 10 / 6);
    }
    (sim.history_len(), won, lost)
}

/// The batch of changes, a second apart by the portal's clock (as people make them; changes in
/// one second are read again by every refresh until a later one, see `refresh`'s `>=`): the
/// first 1,000 deals' amounts (at most the portal's), then 100 deals in progress won. Returns
/// (deals changed, of them newly won).
async fn change(sim: &SimPortal, clock: &Clock, size: usize) -> (usize, usize) {
    let amounts = size.min(1_000);
    for id in 1..=amounts as u64 {
        sim.update_deal(id, json!({ "OPPORTUNITY": "99000" })).await;
        clock.advance(Duration::from_secs(1));
    }
    let open: Vec<u64> = (amounts as u64 + 1..=size as u64)
        .filter(|id| id % 10 >= 6)
        .take(100)
        .collect();
    for &id in &open {
        sim.update_deal(id, json!({ "STAGE_ID": "WON", "UF_CRM_NPS": 10 }))
            .await;
        clock.advance(Duration::from_secs(1));
    }
    (amounts + open.len(), open.len())
}

/// What one refresh cost.
struct Measured {
    requests: Vec<RequestRecord>,
    elapsed: Duration,
    refreshed: Refreshed,
}

async fn timed_refresh(
    sim: &SimPortal,
    worker: &Worker,
    rules: &RuleSet,
) -> Result<Measured, String> {
    let before = sim.request_count();
    let started = Instant::now();
    let refreshed = refresh(worker, rules, false)
        .await
        .map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    Ok(Measured {
        requests: sim.requests()[before..].to_vec(),
        elapsed,
        refreshed,
    })
}

/// The first copy against the portal's ceiling for the pages it must read.
fn first_copy_line(copy: &Measured, deals: usize, entries: usize) {
    let pages = deals.div_ceil(PAGE) + entries.div_ceil(PAGE);
    let best = pages.div_ceil(PAGE);
    let full_bucket = best.saturating_sub(BURST as usize) as f64 / RATE;
    let empty_bucket = best as f64 / RATE;
    let requests = copy.requests.len();
    let elapsed = copy.elapsed.as_secs_f64();
    let rejected = copy.requests.iter().filter(|r| r.status == 503).count();
    outln!(
        "first copy: {} deals and {} entries read, {} deals kept, in {elapsed:.1} s against a {RATE} req/s, burst-{BURST} portal; {requests} HTTP requests carrying {} calls ({:.1} a request), {rejected} x 503; the simulated portal answering {:.1} s of it",
        copy.refreshed.deals_read,
        copy.refreshed.entries_read,
        copy.refreshed.deals,
        calls(&copy.requests),
        calls(&copy.requests) as f64 / requests.max(1) as f64,
        worked(&copy.requests).as_secs_f64(),
    );
    // Fewer requests than the burst wait for nothing: then there is no time ratio to give.
    let time_ratio = if full_bucket > 0.0 {
        format!("ratio {:.3}", full_bucket / elapsed)
    } else {
        "no wait at best".into()
    };
    outln!(
        "first copy against the portal's ceiling: {pages} pages ({deals} deals and {entries} entries, {PAGE} a page) in {best} requests at best: ratio {:.3} ({requests} sent); {full_bucket:.1} s from a full bucket ({empty_bucket:.1} s from an empty one): {time_ratio}",
        best as f64 / requests.max(1) as f64,
    );
}

/// Each report on the warm copy, paced, against a bare scan of it; and a refresh with nothing
/// changed alone, the part of a report that asks the portal. Returns each report's median.
async fn report_times(
    sim: &SimPortal,
    worker: &Worker,
    rules: &RuleSet,
) -> Result<Vec<Duration>, String> {
    let mut medians = Vec::new();
    let mut scans = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let deals = worker.store.report_deals().map_err(|e| e.to_string())?;
        scans.push(started.elapsed());
        drop(deals);
    }
    let scan = Spread::of(scans);
    outln!(
        "bare scan of the warm copy (every deal read and decoded, `Store::report_deals`): {scan}"
    );
    let mut refreshes = Vec::new();
    let mut answering = Vec::new();
    for _ in 0..RUNS {
        let paced = tokio::time::sleep(PACE);
        let measured = timed_refresh(sim, worker, rules).await?;
        refreshes.push(measured.elapsed);
        answering.push(worked(&measured.requests));
        paced.await;
    }
    outln!(
        "refresh with nothing changed: {}, of which the simulated portal {}",
        Spread::of(refreshes),
        Spread::of(answering)
    );
    for name in REPORTS {
        let mut times = Vec::new();
        let mut answering = Vec::new();
        let mut bytes = 0;
        for run in 0..=RUNS {
            let paced = tokio::time::sleep(PACE);
            let before = sim.request_count();
            let started = Instant::now();
            let json = report_json(worker, rules, name, (None, None), false)
                .await
                .map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            // The first run warms what a report caches; it is not counted.
            if run > 0 {
                times.push(elapsed);
                answering.push(worked(&sim.requests()[before..]));
            }
            bytes = json.to_string().len();
            paced.await;
        }
        let times = Spread::of(times);
        outln!(
            "report {name} on the warm copy (its refresh included; {bytes} bytes of JSON): {times}, of which the simulated portal {}; against the bare scan: median {:.2}, p99 {:.2}",
            Spread::of(answering),
            times.median.as_secs_f64() / scan.median.as_secs_f64(),
            times.p99.as_secs_f64() / scan.p99.as_secs_f64(),
        );
        medians.push(times.median);
    }
    Ok(medians)
}

/// The running service on the warm copy: each report's dashboard page against `/healthz`, and
/// against the report's own median (`reports`, in [`REPORTS`]' order): what the page adds.
async fn dashboard(
    sim: &SimPortal,
    dir: TempDir,
    rules: &str,
    reports: &[Duration],
) -> Result<(), String> {
    let rig = rig_on(
        sim.clone(),
        dir,
        &[
            ("server.admin_token", ADMIN_TOKEN),
            // The sweep of the stage history once, at the start; no other reads meanwhile.
            ("sync.poll_interval", "1h"),
        ],
        rules,
    )
    .await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{}", rig.port);
    let login = client
        .post(format!("{base}/ui/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| format!("the login was answered {} without a cookie", login.status()))?
        .to_string();
    let get = |path: String| {
        client
            .get(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, &cookie)
            .header(reqwest::header::ACCEPT, "text/html")
            .send()
    };
    // Warm-up: the start-up sweep's reads, the field catalog, the connection.
    for name in REPORTS {
        let answer = get(format!("/ui/reports?name={name}"))
            .await
            .map_err(|e| e.to_string())?;
        if !answer.status().is_success() {
            return Err(format!("/ui/reports?name={name}: {}", answer.status()));
        }
        let _ = answer.bytes().await;
        tokio::time::sleep(PACE).await;
    }
    let mut floor = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let answer = get("/healthz".into()).await.map_err(|e| e.to_string())?;
        let _ = answer.bytes().await.map_err(|e| e.to_string())?;
        floor.push(started.elapsed());
    }
    let floor = Spread::of(floor);
    outln!("dashboard, GET /healthz on the same server and connection (the HTTP floor): {floor}");
    for (name, report) in REPORTS.iter().zip(reports) {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let paced = tokio::time::sleep(PACE);
            let started = Instant::now();
            let answer = get(format!("/ui/reports?name={name}"))
                .await
                .map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = answer.bytes().await.map_err(|e| e.to_string())?;
            times.push(started.elapsed());
            if !status.is_success() {
                return Err(format!("/ui/reports?name={name}: {status}"));
            }
            bytes = body.len();
            paced.await;
        }
        let times = Spread::of(times);
        outln!(
            "dashboard page /ui/reports?name={name} ({bytes} bytes of HTML): {times}; against /healthz: median {:.0}, p99 {:.0}; against the report alone (median {:.2} ms): {:.2}",
            times.median.as_secs_f64() / floor.median.as_secs_f64(),
            times.p99.as_secs_f64() / floor.p99.as_secs_f64(),
            report.as_secs_f64() * 1e3,
            times.median.as_secs_f64() / report.as_secs_f64(),
        );
    }
    rig.stop().await;
    Ok(())
}

/// A few seconds' rest: the bucket empties enough that the next refresh does not wait.
async fn rest() {
    tokio::time::sleep(Duration::from_secs(5)).await;
}

fn calls(requests: &[RequestRecord]) -> usize {
    requests.iter().map(RequestRecord::calls).sum()
}

/// How long the simulated portal took to answer these requests.
fn worked(requests: &[RequestRecord]) -> Duration {
    requests.iter().map(|r| r.worked).sum()
}

/// The median and p99 (nearest rank) of some durations.
struct Spread {
    median: Duration,
    p99: Duration,
    runs: usize,
}

impl Spread {
    fn of(mut times: Vec<Duration>) -> Spread {
        times.sort_unstable();
        let rank = |q: f64| {
            let at = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1));
            times.get(at - 1).copied().unwrap_or_default()
        };
        Spread {
            median: rank(0.5),
            p99: rank(0.99),
            runs: times.len(),
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.2} ms, p99 {:.2} ms ({} runs)",
            self.median.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.runs
        )
    }
}

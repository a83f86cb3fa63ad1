//! `bench intake`, `bench intake-server`: durable acknowledgements per second.
//!
//! `bench intake` loads the service with in-process senders, or, given `--baseline DIR` (the
//! folder of `baseline-intake`: its `post.lua` and `run.sh`), with `wrk` and that folder's
//! `post.lua` (bodies as Bitrix24 posts them), then runs the baseline's `run.sh` right after
//! with the same connections and seconds and prints both and their ratio: figures taken on one
//! machine in the same minute, comparable on any machine. `--portal-down` points the service
//! at a closed port instead of the simulated portal, as during an outage.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Rig, TOKEN, rig};
use crate::commands::output::outln;
use crate::sandbox::SimConfig;

/// The options of `bench intake` and `bench intake-server`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IntakeOptions {
    /// `intake`: how long the senders send, in seconds (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub seconds: Option<u64>,
    /// `intake`, `intake-server`: the portal is unreachable (a closed port) instead of the
    /// simulated portal answering.
    #[arg(long)]
    pub portal_down: bool,
    /// `intake`: the folder of the baseline (`baseline-intake`): load with `wrk` and its
    /// `post.lua`, then run its `run.sh` with the same connections and seconds, for the ratio.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
}

/// What one load run measured.
struct Measured {
    acks: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    refused: u64,
}

impl Measured {
    fn per_s(&self) -> f64 {
        self.acks as f64 / self.seconds
    }
}

/// The service against the simulated portal, or (`portal_down`) against a closed port.
async fn intake_rig(name: &str, portal_down: bool) -> Result<Rig, String> {
    let closed = if portal_down {
        // A port that was free a moment ago and is closed now: every call is refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        drop(listener);
        Some(format!("http://127.0.0.1:{port}/rest/1/unreachable/"))
    } else {
        None
    };
    let overrides: Vec<(&str, &str)> = closed
        .as_deref()
        .map(|url| vec![("portal.webhook_url", url)])
        .unwrap_or_default();
    // The portal at its real limit: the worker then spends its time waiting on the bucket, as
    // in production, and what is measured is the intake.
    rig(name, SimConfig::default(), &overrides).await
}

fn portal_words(portal_down: bool) -> &'static str {
    if portal_down {
        "portal unreachable"
    } else {
        "portal answering"
    }
}

pub async fn intake(senders: usize, options: &IntakeOptions) -> Result<(), String> {
    let seconds = options.seconds.unwrap_or(10).max(1);
    let rig = intake_rig("intake", options.portal_down).await?;
    let url = format!("http://127.0.0.1:{}/bitrix24/events", rig.port);
    let measured = match &options.baseline {
        Some(dir) => with_wrk(dir, &url, senders, seconds).await,
        None => with_senders(&url, senders, seconds).await,
    };
    rig.stop().await;
    let product = measured?;
    let how = if options.baseline.is_some() {
        "wrk, post.lua"
    } else {
        "in-process senders"
    };
    outln!(
        "intake ({how}, {}): {senders} connections, {seconds} s: {} events acknowledged (recorded and flushed) = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} refused",
        portal_words(options.portal_down),
        product.acks,
        product.per_s(),
        product.p50_ms,
        product.p99_ms,
        product.max_ms,
        product.refused
    );
    if let Some(dir) = &options.baseline {
        let baseline = run_baseline(dir, senders, seconds).await?;
        outln!(
            "baseline (mode=group, same connections and seconds, right after): {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms",
            baseline.acks_per_s,
            baseline.p50_ms,
            baseline.p99_ms
        );
        outln!(
            "ratio: {:.2} of the baseline's rate (goal >= 0.50); p99 {:.2} ms (goal <= 15 ms)",
            product.per_s() / baseline.acks_per_s.max(1.0),
            product.p99_ms
        );
    }
    Ok(())
}

/// In-process senders (reqwest), one request at a time each.
async fn with_senders(url: &str, senders: usize, seconds: u64) -> Result<Measured, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(senders)
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..senders {
        let (client, url) = (client.clone(), url.to_string());
        let (latencies, refused) = (latencies.clone(), refused.clone());
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
                } else {
                    refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            .as_secs_f64()
            * 1000.0
    };
    Ok(Measured {
        acks: n as u64,
        seconds: seconds as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        refused: refused.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// `wrk -t2 -c<connections> -d<seconds>s --latency -s DIR/post.lua`, as `run.sh` runs it
/// against the baseline; acknowledgements are its requests less the non-2xx answers.
async fn with_wrk(
    dir: &Path,
    url: &str,
    connections: usize,
    seconds: u64,
) -> Result<Measured, String> {
    let script = dir.join("post.lua");
    let origin = url.trim_end_matches("/bitrix24/events");
    let output = tokio::process::Command::new("wrk")
        .arg("-t2")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(origin)
        .output()
        .await
        .map_err(|e| format!("cannot run wrk (apt-get install -y wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))
}

/// The figures of `wrk --latency`'s report.
fn parse_wrk(text: &str) -> Option<Measured> {
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let mut requests = None;
    let mut seconds = None;
    let (mut p50, mut p99, mut max) = (None, None, None);
    let mut refused = 0;
    for line in text.lines() {
        let w = words(line);
        match w.as_slice() {
            // "  123456 requests in 10.00s, 11.51MB read"
            [n, r, i, d, ..] if r == "requests" && i == "in" => {
                requests = n.parse::<u64>().ok();
                seconds = wrk_ms(d.trim_end_matches(',')).map(|ms| ms / 1000.0);
            }
            [p, v] if p == "50%" => p50 = wrk_ms(v),
            [p, v] if p == "99%" => p99 = wrk_ms(v),
            // "    Latency     1.80ms    1.20ms  12.18ms   80.00%"
            [l, _avg, _stdev, m, ..] if l == "Latency" => max = wrk_ms(m),
            // "  Non-2xx or 3xx responses: 300"
            [a, _, _, _, n] if a == "Non-2xx" => {
                refused = n.parse().ok()?;
            }
            _ => {}
        }
    }
    let requests = requests?;
    Some(Measured {
        acks: requests.saturating_sub(refused),
        seconds: seconds?,
        p50_ms: p50?,
        p99_ms: p99?,
        max_ms: max.unwrap_or(0.0),
        refused,
    })
}

/// A duration as wrk prints it (`812.00us`, `1.80ms`, `1.02s`, `1.00m`), in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * factor)
}

/// The baseline's `mode=group` line.
struct Baseline {
    acks_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_baseline(dir: &Path, connections: usize, seconds: u64) -> Result<Baseline, String> {
    let output = tokio::process::Command::new(dir.join("run.sh"))
        .arg(connections.to_string())
        .arg(seconds.to_string())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", dir.join("run.sh").display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|l| l.starts_with("baseline mode=group"))
        .and_then(|line| {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse::<f64>().ok())
            };
            Some(Baseline {
                acks_per_s: field("acks_per_s=")?,
                p50_ms: field("p50_ms=")?,
                p99_ms: field("p99_ms=")?,
            })
        })
        .ok_or_else(|| {
            format!(
                "the baseline printed no mode=group line:\n{text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// The service alone, for an external load generator (`wrk`): prints its URL and token, runs
/// for `seconds`, then prints how many events were recorded.
pub async fn intake_server(seconds: u64, options: &IntakeOptions) -> Result<(), String> {
    let rig = intake_rig("intake-server", options.portal_down).await?;
    outln!(
        "listening: http://127.0.0.1:{}/bitrix24/events token {TOKEN} for {seconds} s ({})",
        rig.port,
        portal_words(options.portal_down)
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let ids = rig.store.next_id().map_err(|e| e.to_string())?;
    outln!("intake-server: about {ids} events recorded (event ids handed out)");
    rig.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_reports_are_read() {
        let report = "Running 10s test @ http://127.0.0.1:1\n  2 threads and 32 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.80ms    1.20ms  12.18ms   80.00%\n    Req/Sec     8.10k   500.00     9.00k    70.00%\n  Latency Distribution\n     50%    1.50ms\n     75%    2.00ms\n     90%    3.00ms\n     99%  812.00us\n  161300 requests in 10.00s, 11.51MB read\n  Non-2xx or 3xx responses: 300\nRequests/sec:  16130.00\n";
        let m = parse_wrk(report).expect("read");
        assert_eq!(m.acks, 161_000);
        assert_eq!(m.refused, 300);
        assert!((m.seconds - 10.0).abs() < 1e-9);
        assert!((m.p50_ms - 1.5).abs() < 1e-9);
        assert!((m.p99_ms - 0.812).abs() < 1e-9);
        assert!((m.max_ms - 12.18).abs() < 1e-9);
        assert!((m.per_s() - 16_100.0).abs() < 1e-6);
    }
}

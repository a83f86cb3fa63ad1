//! `bench intake`, `bench intake-server`: durable acknowledgements per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{TOKEN, rig};
use crate::commands::output::outln;
use crate::sandbox::SimConfig;

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

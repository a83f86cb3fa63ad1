//! The leaky bucket against portals that count requests like Bitrix24 does.

use super::*;

/// A portal whose leaky bucket drains `rate` per second and refuses past `burst`, counting
/// refused requests too when `count_refusals` is set. Time is scaled: rates are ×20.
fn strict_portal(
    rate: f64,
    burst: f64,
    count_refusals: bool,
) -> impl Fn(usize, &str, &Value) -> Reply + Send + Sync {
    let state = Mutex::new((0.0_f64, std::time::Instant::now()));
    move |_, _, _| {
        let mut state = state.lock().expect("lock");
        let now = std::time::Instant::now();
        state.0 = (state.0 - now.duration_since(state.1).as_secs_f64() * rate).max(0.0);
        state.1 = now;
        if state.0 + 1.0 > burst {
            if count_refusals {
                state.0 += 1.0;
            }
            return api_error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
        }
        state.0 += 1.0;
        ok(json!(true))
    }
}

/// Twenty deals at once, three calls each (read, history, write), like the worker does.
async fn twenty_deals(client: &Client) {
    let mut tasks = tokio::task::JoinSet::new();
    for deal in 0..20 {
        let client = client.clone();
        tasks.spawn(async move {
            for method in ["crm.deal.get", "crm.stagehistory.list", "crm.deal.update"] {
                client
                    .call(method, json!({"id": deal}), Retry::Unsafe)
                    .await
                    .expect("call");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

/// Configured like a standard portal (2/s, burst 50), time scaled ×20.
fn paced(mock: &Mock) -> Client {
    Client::new(ClientSettings {
        max_attempts: 30,
        requests_per_second: 40.0,
        ..settings(mock.webhook())
    })
    .expect("client")
}

#[tokio::test]
async fn a_portal_that_matches_the_settings_never_refuses() {
    let mock = mock(strict_portal(40.0, 50.0, true)).await;
    let client = paced(&mock);
    twenty_deals(&client).await;
    assert_eq!(client.stats().rejected_503, 0, "{:?}", client.stats());
}

#[tokio::test]
async fn a_stricter_portal_refuses_at_most_once_per_deal() {
    for count_refusals in [false, true] {
        // Really 1/s burst 5, configured as 2/s burst 50.
        let mock = mock(strict_portal(20.0, 5.0, count_refusals)).await;
        let client = paced(&mock);
        let started = std::time::Instant::now();
        twenty_deals(&client).await;
        let stats = client.stats();
        // 60 requests, 5 at once and then 20 a second: 2.75 s at the very best.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "too slow: {:?}",
            started.elapsed()
        );
        assert!(
            stats.rejected_503 <= 20,
            "count_refusals={count_refusals}: {stats:?}"
        );
    }
}

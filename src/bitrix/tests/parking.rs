//! 429 `OPERATION_TIME_LIMIT`: the method is parked until its reset, and calls fail fast.

use super::*;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[tokio::test]
async fn a_429_parks_the_method_until_the_last_seen_reset() {
    let reset_at = unix_now() + 60.0;
    let mock = mock(move |n, method, _| match (method, n) {
        ("crm.deal.list", 0) => reply(
            200,
            json!({"result": [], "time": {"operating": 470.0, "operating_reset_at": reset_at}}),
        ),
        ("crm.deal.list", _) => api_error(
            429,
            "OPERATION_TIME_LIMIT",
            "Method is blocked due to operation time limit.",
        ),
        _ => ok(json!(true)),
    })
    .await;
    let client = client(&mock);
    client
        .call("crm.deal.list", json!({}), Retry::Safe)
        .await
        .expect("first");
    let error = client
        .call("crm.deal.list", json!({}), Retry::Safe)
        .await
        .expect_err("429");
    let ErrorKind::OperationLimit { reset_at: until } = error.kind() else {
        panic!("{error:?}");
    };
    let until = until
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!((until - reset_at).abs() < 0.01, "{until} vs {reset_at}");
    assert!(error.is_retryable() && !error.outcome_unknown());
    let parked = client
        .call("crm.deal.list", json!({}), Retry::Safe)
        .await
        .expect_err("parked");
    assert!(
        matches!(parked, CallError::MethodParked { .. }),
        "{parked:?}"
    );
    assert_eq!(mock.seen().len(), 2, "a parked method is not sent");
    client
        .call("crm.deal.get", json!({}), Retry::Safe)
        .await
        .expect("other methods still run");
    assert_eq!(client.stats().rejected_429, 1);
}

#[tokio::test]
async fn a_429_without_a_known_reset_parks_for_at_least_ten_seconds() {
    let mock = mock(|_, _, _| api_error(429, "OPERATION_TIME_LIMIT", "")).await;
    let client = client(&mock);
    let before = SystemTime::now();
    client
        .call("crm.deal.list", json!({}), Retry::Safe)
        .await
        .expect_err("429");
    let until = client.parked_until("crm.deal.list").expect("parked");
    assert!(until.duration_since(before).expect("later") >= Duration::from_secs(10));
}

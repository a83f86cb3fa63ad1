//! One call on the wire: the request the client sends, which failures it retries (safe and
//! unsafe calls), what it makes of answers that are errors, not JSON or too large, and the
//! settings it refuses.

use super::*;

#[tokio::test]
async fn a_call_posts_json_to_the_method_url_with_the_documented_headers() {
    let mock = mock(|_, _, _| ok(json!({"ID": "5"}))).await;
    let response = client(&mock)
        .call("crm.deal.get", json!({"id": 5}), Retry::Safe)
        .await
        .expect("call");
    assert_eq!(response.result, json!({"ID": "5"}));
    assert_eq!(response.time.and_then(|time| time.duration), Some(0.1));
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "crm.deal.get");
    assert_eq!(seen[0].body, json!({"id": 5}));
    let header = |name: &str| {
        seen[0]
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("accept"), "application/json");
    assert!(header("user-agent").starts_with("b24-robot/"));
}

#[tokio::test]
async fn a_safe_call_retries_two_500s_then_succeeds() {
    let mock = mock(|n, _, _| {
        if n < 2 {
            api_error(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        } else {
            ok(json!(true))
        }
    })
    .await;
    let client = client(&mock);
    let response = client
        .call("crm.deal.update", json!({"id": 1}), Retry::Safe)
        .await
        .expect("call");
    assert_eq!(response.result, json!(true));
    assert_eq!(mock.seen().len(), 3);
    assert_eq!(client.stats().retries, 2);
}

#[tokio::test]
async fn an_unsafe_call_returns_outcome_unknown_on_a_500_without_retrying() {
    let mock = mock(|_, _, _| api_error(500, "INTERNAL_SERVER_ERROR", "")).await;
    let error = client(&mock)
        .call(
            "tasks.task.add",
            json!({"fields": {"TITLE": "x"}}),
            Retry::Unsafe,
        )
        .await
        .expect_err("500");
    assert!(error.outcome_unknown());
    assert_eq!(error.kind(), ErrorKind::Transient);
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn an_unsafe_call_is_retried_after_503_query_limit_exceeded() {
    let mock = mock(|n, _, _| {
        if n == 0 {
            api_error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        } else {
            ok(json!(42))
        }
    })
    .await;
    let client = client(&mock);
    let response = client
        .call("crm.deal.add", json!({}), Retry::Unsafe)
        .await
        .expect("call");
    assert_eq!(response.result, json!(42));
    assert_eq!(mock.seen().len(), 2);
    let stats = client.stats();
    assert_eq!((stats.rejected_503, stats.http_requests), (1, 2));
    assert!(
        stats.bucket_rate < 20.0 && stats.bucket_capacity < 45.0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn an_unsafe_call_that_times_out_after_sending_is_outcome_unknown() {
    let mock = mock(|_, _, _| Reply {
        delay: Duration::from_secs(2),
        ..ok(json!(1))
    })
    .await;
    let client = Client::new(ClientSettings {
        timeout: Duration::from_millis(200),
        ..settings(mock.webhook())
    })
    .expect("client");
    let error = client
        .call("crm.deal.add", json!({}), Retry::Unsafe)
        .await
        .expect_err("timeout");
    assert!(
        matches!(error, CallError::Transport { sent: true, .. }),
        "{error:?}"
    );
    assert!(error.outcome_unknown());
    assert_eq!(mock.seen().len(), 1);
    assert_no_secret(&format!("{error} {error:?}"));
}

/// A refused connection is retried even for a create (it never ran), until the portal has been
/// unreachable [`DOWN_AFTER`] times in a row: then the call stops with `PortalDown`, nothing
/// more is sent, and a probe takes over.
#[tokio::test]
async fn a_refused_connection_is_retried_even_for_creates_and_never_shows_the_secret() {
    // Bind and drop a listener so that nobody listens on the port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let webhook =
        url::Url::parse(&format!("http://127.0.0.1:{port}/rest/1/{SECRET}/")).expect("url");
    let client = Client::new(settings(webhook.clone())).expect("client");
    let error = client
        .call("crm.deal.add", json!({}), Retry::Unsafe)
        .await
        .expect_err("refused");
    assert!(matches!(error, CallError::PortalDown { .. }), "{error:?}");
    assert!(!error.outcome_unknown() && error.is_retryable());
    assert_eq!(
        client.stats().http_requests,
        u64::from(crate::bitrix::DOWN_AFTER)
    );
    assert!(client.down_since().is_some());
    let again = client
        .call("crm.deal.get", json!({"id": 1}), Retry::Safe)
        .await
        .expect_err("down");
    assert!(matches!(again, CallError::PortalDown { .. }), "{again:?}");
    assert_eq!(
        client.stats().http_requests,
        u64::from(crate::bitrix::DOWN_AFTER),
        "nothing is sent while the portal is down"
    );
    assert_no_secret(&format!("{error} {error:?}"));
    assert_no_secret(&format!("{client:?} {:?}", settings(webhook)));
}

#[tokio::test]
async fn errors_that_retrying_cannot_fix_are_returned_at_once() {
    let mock = mock(|_, method, _| match method {
        "crm.deal.get" => api_error(400, "", "Not found"),
        "user.current" => api_error(401, "NO_AUTH_FOUND", "Wrong authorization data"),
        "crm.item.update" => api_error(403, "insufficient_scope", ""),
        "crm.stagehistory.list" => reply(
            400,
            json!({"error": 0, "error_description": "SHIPMENT_DOCUMENT entity is not supported"}),
        ),
        _ => api_error(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload"),
    })
    .await;
    let client = client(&mock);
    let cases = [
        ("crm.deal.get", ErrorKind::NotFound),
        ("user.current", ErrorKind::Auth),
        ("crm.item.update", ErrorKind::Permission),
        ("crm.stagehistory.list", ErrorKind::Invalid),
        ("crm.deal.list", ErrorKind::Blocked),
    ];
    for (method, kind) in cases {
        let error = client
            .call(method, json!({}), Retry::Safe)
            .await
            .expect_err(method);
        assert_eq!(error.kind(), kind, "{method}: {error}");
        assert!(
            !error.is_retryable() && !error.outcome_unknown(),
            "{method}"
        );
    }
    assert_eq!(mock.seen().len(), cases.len());
    assert_eq!(client.stats().retries, 0);
}

#[tokio::test]
async fn answers_that_are_not_json_are_malformed_or_transient() {
    let mock = mock(|n, method, _| match (method, n) {
        ("crm.deal.get", _) => raw(200, "<html>oops</html>"),
        (_, 1) => raw(502, "<html>Bad Gateway</html>"),
        _ => ok(json!("fine")),
    })
    .await;
    let client = client(&mock);
    let error = client
        .call("crm.deal.get", json!({}), Retry::Unsafe)
        .await
        .expect_err("html");
    assert!(matches!(error, CallError::Malformed { .. }) && error.outcome_unknown());
    let response = client
        .call("crm.deal.list", json!({}), Retry::Safe)
        .await
        .expect("retried");
    assert_eq!(response.result, json!("fine"));
    assert_eq!(mock.seen().len(), 3);
}

#[tokio::test]
async fn an_answer_announced_longer_than_max_response_fails_at_once_without_a_retry() {
    let big = "x".repeat(200 * 1024);
    let portal = mock(move |_, _, _| ok(json!(big.clone()))).await;
    let client = Client::new(ClientSettings {
        max_response: 64 * 1024,
        ..settings(portal.webhook())
    })
    .expect("client");
    let error = client
        .call("crm.deal.get", json!({"id": 1}), Retry::Safe)
        .await
        .expect_err("too large");
    assert!(
        matches!(error, CallError::TooLarge { limit: 65536, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("portal.max_response"), "{error}");
    assert!(error.is_retryable() && error.outcome_unknown());
    assert_eq!(portal.seen().len(), 1, "not repeated at once");
    assert_eq!(client.stats().answers_too_large, 1);
    // The same client goes on with answers that fit.
    let small = mock(|_, _, _| ok(json!("fits"))).await;
    let fits = Client::new(ClientSettings {
        max_response: 64 * 1024,
        ..settings(small.webhook())
    })
    .expect("client");
    assert_eq!(
        fits.call("crm.deal.get", json!({}), Retry::Safe)
            .await
            .expect("fits")
            .result,
        json!("fits")
    );
}

#[tokio::test]
async fn an_answer_streamed_past_max_response_is_not_read_to_its_end() {
    use crate::sandbox::{Faults, SimConfig, SimPortal};
    let sim = SimPortal::start(SimConfig::default()).await.expect("sim");
    sim.with_default_portal();
    let webhook = url::Url::parse(&sim.webhook_url()).expect("url");
    let client = Client::new(ClientSettings {
        max_response: 1024 * 1024,
        ..settings(webhook)
    })
    .expect("client");
    // Under the cap: whitespace before the envelope is still JSON.
    sim.set_faults(Faults {
        huge_answer_bytes: Some(900 * 1024),
        ..Faults::default()
    });
    client
        .call("crm.category.list", json!({"entityTypeId": 2}), Retry::Safe)
        .await
        .expect("under the cap");
    // 256 MiB, made up as it is sent: the client stops at 1 MiB.
    sim.set_faults(Faults {
        huge_answer_bytes: Some(256 * 1024 * 1024),
        ..Faults::default()
    });
    let started = std::time::Instant::now();
    let error = client
        .call("crm.category.list", json!({"entityTypeId": 2}), Retry::Safe)
        .await
        .expect_err("too large");
    assert!(matches!(error, CallError::TooLarge { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped early: {:?}",
        started.elapsed()
    );
    assert_eq!(sim.request_count(), 2);
}

#[tokio::test]
async fn the_origin_is_scheme_and_host_only_and_settings_are_checked() {
    let zero = url::Url::parse("https://x.bitrix24.ru/rest/1/abc/").expect("url");
    assert!(
        Client::new(ClientSettings {
            max_response: 0,
            ..settings(zero)
        })
        .is_err()
    );
    let webhook = url::Url::parse(&format!("https://x.bitrix24.ru/rest/1/{SECRET}")).expect("url");
    let client = Client::new(settings(webhook.clone())).expect("client");
    assert_eq!(client.portal_origin(), "https://x.bitrix24.ru");
    let bad = Client::new(ClientSettings {
        requests_per_second: 0.0,
        ..settings(webhook.clone())
    });
    assert!(matches!(bad, Err(ClientError::InvalidSettings(_))));
    let ftp = url::Url::parse("ftp://x/rest/1/abc/").expect("url");
    assert!(Client::new(settings(ftp)).is_err());
}

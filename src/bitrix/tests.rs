//! The client against a tiny portal made with axum: what goes on the wire, and what each kind
//! of answer makes the client do.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use serde_json::{Value, json};

use super::*;

const SECRET: &str = "s3cretW3bhook";

/// What the mock portal answers: status, extra headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn raw(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// One request the mock saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: HeaderMap,
    body: Value,
}

/// What the mock answers: (request index, `Host` header, method, body) → reply.
type Responder = dyn Fn(usize, &str, &str, &Value) -> Reply + Send + Sync;

struct Portal {
    seen: Mutex<Vec<Seen>>,
    responder: Box<Responder>,
}

struct Mock {
    portal: Arc<Portal>,
    origin: String,
}

impl Mock {
    fn seen(&self) -> Vec<Seen> {
        self.portal.seen.lock().expect("lock").clone()
    }

    fn webhook(&self) -> url::Url {
        url::Url::parse(&format!("{}/rest/1/{SECRET}/", self.origin)).expect("url")
    }
}

async fn handle(
    State(portal): State<Arc<Portal>>,
    Path((_user, secret, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    assert_eq!(secret, SECRET);
    let method = method.trim_end_matches(".json").to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut seen = portal.seen.lock().expect("lock");
        seen.push(Seen {
            method: method.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        seen.len() - 1
    };
    let host = headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let answer = (portal.responder)(index, &host, &method, &body);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(answer.status).expect("status"),
        answer.body,
    )
        .into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header"));
    }
    response
}

async fn mock(responder: impl Fn(usize, &str, &Value) -> Reply + Send + Sync + 'static) -> Mock {
    mock_by_host(move |n, _, method, body| responder(n, method, body)).await
}

/// A mock that answers by the `Host` header too: several portal names on one port.
async fn mock_by_host(
    responder: impl Fn(usize, &str, &str, &Value) -> Reply + Send + Sync + 'static,
) -> Mock {
    let portal = Arc::new(Portal {
        seen: Mutex::new(Vec::new()),
        responder: Box::new(responder),
    });
    let app = Router::new()
        .route("/rest/{user}/{secret}/{method}", post(handle))
        .with_state(portal.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Mock { portal, origin }
}

fn settings(webhook: url::Url) -> ClientSettings {
    ClientSettings {
        requests_per_second: 20.0,
        burst: 50,
        timeout: Duration::from_secs(2),
        max_attempts: 5,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ClientSettings::new(webhook)
    }
}

fn client(mock: &Mock) -> Client {
    Client::new(settings(mock.webhook())).expect("client")
}

fn ok(result: Value) -> Reply {
    reply(
        200,
        json!({"result": result, "time": {"start": 1.0, "finish": 1.1, "duration": 0.1}}),
    )
}

fn api_error(status: u16, code: &str, description: &str) -> Reply {
    reply(
        status,
        json!({"error": code, "error_description": description}),
    )
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
}

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
    assert!(
        matches!(error, CallError::Transport { sent: false, .. }),
        "{error:?}"
    );
    assert!(!error.outcome_unknown() && error.is_retryable());
    assert_eq!(client.stats().http_requests, 5);
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

/// A portal that runs `batch` sub-calls: `crm.deal.get` echoes its query, `missing` is not
/// found, `limited` is over its operating limit, anything else answers `false`.
fn batch_portal(n: usize, method: &str, body: &Value) -> Reply {
    assert_eq!(method, "batch", "request {n}");
    assert_eq!(body["halt"], json!(0));
    let mut results = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    let mut times = serde_json::Map::new();
    for (key, command) in body["cmd"].as_object().expect("cmd object") {
        let command = command.as_str().expect("cmd string");
        let (sub, query) = command.split_once('?').unwrap_or((command, ""));
        match sub {
            "missing" => {
                errors.insert(
                    key.clone(),
                    json!({"error": "", "error_description": "Not found"}),
                );
            }
            "limited" => {
                errors.insert(
                    key.clone(),
                    json!({"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"}),
                );
            }
            "crm.deal.get" => {
                results.insert(key.clone(), json!(query));
                times.insert(key.clone(), json!({"operating": 1.5}));
            }
            _ => {
                results.insert(key.clone(), json!(false));
            }
        }
    }
    let or_empty = |map: serde_json::Map<String, Value>| {
        if map.is_empty() {
            json!([])
        } else {
            Value::Object(map)
        }
    };
    reply(
        200,
        json!({"result": {
            "result": or_empty(results),
            "result_error": or_empty(errors),
            "result_total": [],
            "result_next": [],
            "result_time": or_empty(times)
        }}),
    )
}

#[tokio::test]
async fn a_batch_keeps_order_and_reports_errors_per_sub_call() {
    let mock = mock(batch_portal).await;
    let calls = vec![
        BatchCall::new("crm.deal.get", json!({"id": 5})),
        BatchCall::new("missing", json!({"id": 6})),
        BatchCall::new(
            "crm.deal.update",
            json!({"id": 7, "fields": {"TITLE": "a&b"}}),
        ),
        BatchCall::new(
            "crm.deal.get",
            json!({"entityTypeId": 2, "filter": {"OWNER_ID": 5, ">ID": 100}, "order": {"ID": "ASC"}}),
        ),
    ];
    let results = client(&mock).batch(calls, Retry::Safe).await;
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().expect("c0").result, json!("id=5"));
    assert!(results[0].as_ref().expect("c0").time.is_some());
    let missing = results[1].as_ref().expect_err("c1");
    assert_eq!(
        (missing.kind(), missing.method()),
        (ErrorKind::NotFound, "missing")
    );
    assert_eq!(results[2].as_ref().expect("c2").result, json!(false));
    assert_eq!(
        results[3].as_ref().expect("c3").result,
        json!("entityTypeId=2&filter%5BOWNER_ID%5D=5&filter%5B%3EID%5D=100&order%5BID%5D=ASC")
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let keys: Vec<&String> = seen[0].body["cmd"]
        .as_object()
        .expect("cmd")
        .keys()
        .collect();
    assert_eq!(keys, ["c0", "c1", "c2", "c3"]);
    assert_eq!(
        seen[0].body["cmd"]["c2"],
        json!("crm.deal.update?id=7&fields%5BTITLE%5D=a%26b")
    );
}

#[tokio::test]
async fn more_than_fifty_calls_go_in_two_batches_and_come_back_in_order() {
    let mock = mock(batch_portal).await;
    let calls: Vec<BatchCall> = (0..51)
        .map(|id| BatchCall::new("crm.deal.get", json!({"id": id})))
        .collect();
    let results = client(&mock).batch(calls, Retry::Safe).await;
    for (id, result) in results.iter().enumerate() {
        assert_eq!(
            result.as_ref().expect("ok").result,
            json!(format!("id={id}"))
        );
    }
    let mut sizes: Vec<usize> = mock
        .seen()
        .iter()
        .map(|s| s.body["cmd"].as_object().expect("cmd").len())
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 50]);
}

#[tokio::test]
async fn a_429_inside_a_batch_parks_that_method_only() {
    let mock = mock(batch_portal).await;
    let client = client(&mock);
    let first = client
        .batch(
            vec![
                BatchCall::new("limited", json!({})),
                BatchCall::new("crm.deal.get", json!({"id": 1})),
            ],
            Retry::Safe,
        )
        .await;
    assert!(matches!(
        first[0].as_ref().expect_err("429").kind(),
        ErrorKind::OperationLimit { .. }
    ));
    assert!(first[1].is_ok());
    let second = client
        .batch(
            vec![
                BatchCall::new("limited", json!({})),
                BatchCall::new("crm.deal.get", json!({"id": 2})),
            ],
            Retry::Safe,
        )
        .await;
    assert!(
        matches!(second[0], Err(CallError::MethodParked { .. })),
        "{:?}",
        second[0]
    );
    assert!(second[1].is_ok());
    let seen = mock.seen();
    assert_eq!(
        seen[1].body["cmd"].as_object().expect("cmd").len(),
        1,
        "the parked sub-call was not sent"
    );
}

#[tokio::test]
async fn a_failed_batch_request_fails_each_sub_call_with_its_own_method() {
    let mock = mock(|_, _, _| api_error(500, "INTERNAL_SERVER_ERROR", "")).await;
    let results = client(&mock)
        .batch(
            vec![
                BatchCall::new("tasks.task.add", json!({})),
                BatchCall::new("crm.deal.add", json!({})),
            ],
            Retry::Unsafe,
        )
        .await;
    let methods: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().expect_err("failed").method())
        .collect();
    assert_eq!(methods, ["tasks.task.add", "crm.deal.add"]);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(CallError::outcome_unknown))
    );
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn a_portal_renamed_within_its_domain_is_followed_by_re_posting_and_reported() {
    // One local port serves both names: `crm.example.ru` answers the rename, `crm2` the calls.
    let mock = mock_by_host(|_, host, method, body| match host.strip_prefix("crm.") {
        Some(rest) => Reply {
            headers: vec![(
                "location",
                format!("http://crm2.{rest}/rest/1/{SECRET}/{method}.json"),
            )],
            ..raw(302, "")
        },
        None => ok(body.clone()),
    })
    .await;
    let address: std::net::SocketAddr = mock
        .origin
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let port = address.port();
    let webhook =
        url::Url::parse(&format!("http://crm.example.ru:{port}/rest/1/{SECRET}/")).expect("url");
    let client = Client::new(ClientSettings {
        resolve: vec![
            ("crm.example.ru".into(), address),
            ("crm2.example.ru".into(), address),
        ],
        ..settings(webhook)
    })
    .expect("client");
    assert_eq!(client.renamed_to(), None);
    let response = client
        .call("crm.deal.get", json!({"id": 9}), Retry::Unsafe)
        .await
        .expect("moved");
    assert_eq!(response.result, json!({"id": 9}), "the body was re-posted");
    let new_origin = format!("http://crm2.example.ru:{port}");
    assert_eq!(client.portal_origin(), new_origin);
    assert_eq!(client.renamed_to(), Some(new_origin));
    client
        .call("crm.deal.get", json!({"id": 10}), Retry::Safe)
        .await
        .expect("direct");
    let hosts: Vec<String> = mock
        .seen()
        .iter()
        .map(|seen| seen.headers["host"].to_str().expect("host").to_owned())
        .collect();
    assert_eq!(
        hosts,
        [
            format!("crm.example.ru:{port}"),
            format!("crm2.example.ru:{port}"),
            format!("crm2.example.ru:{port}")
        ]
    );
    assert_eq!(client.stats().redirects, 1);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused_and_nothing_is_sent_there() {
    let foreign = mock(|_, _, body| ok(body.clone())).await;
    let location = format!("{}/rest/1/{SECRET}/tasks.task.add.json", foreign.origin);
    let portal = mock(move |_, _, _| Reply {
        headers: vec![("location", location.clone())],
        ..raw(302, "")
    })
    .await;
    let client = client(&portal);
    for retry in [Retry::Safe, Retry::Unsafe] {
        let error = client
            .call("tasks.task.add", json!({"fields": {"TITLE": "x"}}), retry)
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, CallError::RedirectRefused { target, .. } if *target == foreign.origin),
            "{error:?}"
        );
        assert_eq!(error.kind(), ErrorKind::RedirectRefused);
        assert!(!error.is_retryable() && !error.outcome_unknown());
        let text = format!("{error} {error:?}");
        assert_no_secret(&text);
        assert!(text.contains("another port"), "{text}");
    }
    assert!(
        foreign.seen().is_empty(),
        "nothing reached the foreign host"
    );
    assert_eq!(portal.seen().len(), 2, "refused at once, not retried");
    assert_eq!(client.portal_origin(), portal.origin);
    assert_eq!(client.renamed_to(), None);
    let stats = client.stats();
    assert_eq!((stats.redirects, stats.redirects_refused), (0, 2));
    assert!(
        client
            .call_counts()
            .contains(&("tasks.task.add".into(), "redirect_refused", 2)),
        "{:?}",
        client.call_counts()
    );
}

#[tokio::test]
async fn a_refused_redirect_whose_host_names_the_secret_does_not_show_it() {
    let location = format!("http://{SECRET}.evil.example/rest/1/{SECRET}/crm.deal.get.json");
    let portal = mock(move |_, _, _| Reply {
        headers: vec![("location", location.clone())],
        ..raw(302, "")
    })
    .await;
    let error = client(&portal)
        .call("crm.deal.get", json!({}), Retry::Safe)
        .await
        .expect_err("refused");
    let text = format!("{error} {error:?}").to_lowercase();
    assert!(!text.contains(&SECRET.to_lowercase()), "{text}");
    assert!(text.contains("not followed"), "{text}");
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
async fn a_redirect_without_location_is_an_error_without_the_secret() {
    let mock = mock(|_, _, _| raw(302, "")).await;
    let error = client(&mock)
        .call("crm.deal.get", json!({}), Retry::Safe)
        .await
        .expect_err("302");
    assert_no_secret(&format!("{error} {error:?}"));
}

#[tokio::test]
async fn list_all_follows_next_until_the_last_page() {
    let mock = mock(|_, _, body| {
        let start = body.get("start").and_then(Value::as_u64).unwrap_or(0);
        let items: Vec<Value> = (start..(start + 2).min(5))
            .map(|id| json!({"ID": id}))
            .collect();
        let mut answer = json!({"result": {"items": items}, "total": 5});
        if start + 2 < 5 {
            answer["next"] = json!(start + 2);
        }
        reply(200, answer)
    })
    .await;
    let items = client(&mock)
        .list_all("crm.item.list", json!({"entityTypeId": 2}), Some("items"))
        .await
        .expect("list");
    let ids: Vec<u64> = items
        .iter()
        .filter_map(|item| item["ID"].as_u64())
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 4]);
    let seen = mock.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].body, json!({"entityTypeId": 2, "start": 4}));
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

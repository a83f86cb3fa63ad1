//! `batch` (chunks of 50, order kept, errors and parking per sub-call) and `list_all` paging.

use super::*;

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

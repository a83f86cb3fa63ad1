//! The simulated portal tested the way our service uses it: over real HTTP with reqwest.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use super::*;

pub(super) async fn portal() -> SimPortal {
    let portal = SimPortal::start(SimConfig::default()).await.unwrap();
    portal.with_default_portal();
    portal
}

/// The default portal plus pipeline 1 "Service": `C1:NEW`, won `C1:WON`, lost `C1:LOSE`.
async fn portal_with_a_service_pipeline() -> SimPortal {
    let portal = portal().await;
    portal.add_pipeline(
        1,
        "Service",
        &[
            ("C1:NEW", "New", 'P'),
            ("C1:WON", "Done", 'S'),
            ("C1:LOSE", "Lost", 'F'),
        ],
    );
    portal
}

pub(super) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Calls a method with a JSON body; returns the status and the parsed body.
pub(super) async fn call(portal: &SimPortal, method: &str, params: Value) -> (u16, Value) {
    let response = client()
        .post(format!("{}{method}.json", portal.webhook_url()))
        .json(&params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// A local event handler that records every body and content type it receives.
async fn event_sink() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = Router::new().route(
        "/bitrix24/events",
        post(move |headers: HeaderMap, body: String| {
            let store = store.clone();
            async move {
                let ct = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                store.lock().unwrap().push((ct, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bitrix24/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn list_answers_carry_the_envelope_and_page_by_fifty() {
    let portal = portal().await;
    for i in 0..120 {
        portal
            .create_deal(json!({"TITLE": format!("Deal {i}")}))
            .await;
    }
    let (status, first) = call(&portal, "crm.deal.list", json!({"select": ["ID", "TITLE"]})).await;
    assert_eq!(status, 200);
    assert_eq!(first["result"].as_array().unwrap().len(), 50);
    assert_eq!(first["total"], 120);
    assert_eq!(first["next"], 50);
    assert_eq!(first["result"][0]["ID"], "1");
    let time = first["time"].as_object().unwrap();
    for key in [
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    ] {
        assert!(time.contains_key(key), "time.{key} missing");
    }
    let (_, last) = call(&portal, "crm.deal.list", json!({"start": 100})).await;
    assert_eq!(last["result"].as_array().unwrap().len(), 20);
    assert!(last.get("next").is_none());
    // The default select is `*` + `UF_*`: standard fields come back as strings.
    assert_eq!(last["result"][0]["OPPORTUNITY"], "0.00");
}

#[tokio::test]
async fn list_filters_take_operator_prefixes() {
    let portal = portal().await;
    for amount in [100, 200, 300] {
        portal
            .create_deal(json!({"TITLE": "x", "OPPORTUNITY": amount}))
            .await;
    }
    portal
        .create_deal(json!({"TITLE": "copy", "ORIGINATOR_ID": "b24-robot", "ORIGIN_ID": "2"}))
        .await;
    let (_, r) = call(
        &portal,
        "crm.deal.list",
        json!({"filter": {">=OPPORTUNITY": 200}, "order": {"ID": "DESC"}}),
    )
    .await;
    let ids: Vec<&str> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["3", "2"]);
    let (_, r) = call(
        &portal,
        "crm.deal.list",
        json!({"filter": {"ORIGINATOR_ID": "b24-robot", "ORIGIN_ID": "2"}}),
    )
    .await;
    assert_eq!(r["total"], 1);
    let (_, r) = call(
        &portal,
        "crm.deal.list",
        json!({"filter": {"@ID": [1, 4], "!STAGE_ID": "WON"}}),
    )
    .await;
    assert_eq!(r["total"], 2);
}

#[tokio::test]
async fn a_missing_deal_is_a_400_with_an_empty_error_code() {
    let portal = portal().await;
    let (status, body) = call(&portal, "crm.deal.get", json!({"id": 999})).await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"error": "", "error_description": "Not found"}));
    let (status, body) = call(&portal, "crm.deal.get", json!({"ID": "abc"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "ID is not defined or invalid.");
    let (status, _) = call(
        &portal,
        "crm.deal.update",
        json!({"id": 999, "fields": {"TITLE": "x"}}),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn wrong_secret_and_unknown_method_are_refused() {
    let portal = portal().await;
    let url = portal.webhook_url().replace("/rest/1/", "/rest/2/");
    let r = client()
        .post(format!("{url}crm.deal.get"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "NO_AUTH_FOUND");
    let (status, body) = call(&portal, "crm.item.get", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "ERROR_METHOD_NOT_FOUND");
}

#[tokio::test]
async fn batch_reports_sub_call_errors_and_prints_empty_maps_as_arrays() {
    let portal = portal().await;
    let id = portal.create_deal(json!({"TITLE": "A"})).await;
    let (status, body) = call(
        &portal,
        "batch",
        json!({"halt": 0, "cmd": {
            "ok": format!("crm.deal.get?id={id}"),
            "missing": "crm.deal.get?id=999",
            "nested": "batch?cmd[a]=crm.deal.get%3Fid%3D1",
            "chained": "crm.deal.get?id=$result[ok][ID]",
        }}),
    )
    .await;
    assert_eq!(status, 200);
    let result = &body["result"];
    assert_eq!(result["result"]["ok"]["TITLE"], "A");
    assert_eq!(result["result"]["chained"]["ID"], id.to_string());
    assert_eq!(
        result["result_error"]["missing"],
        json!({"error": "", "error_description": "Not found"})
    );
    assert_eq!(
        result["result_error"]["nested"]["error"],
        "ERROR_BATCH_METHOD_NOT_ALLOWED"
    );
    assert_eq!(result["result_total"], json!([]));
    assert_eq!(result["result_next"], json!([]));
    assert!(result["result_time"]["ok"]["operating_reset_at"].is_u64());

    // An array `cmd` answers under "0", "1"...; no error at all prints `result_error: []`.
    let (_, body) = call(
        &portal,
        "batch",
        json!({"cmd": ["crm.deal.list?select[]=ID", "user.get?ID=2"]}),
    )
    .await;
    assert_eq!(body["result"]["result_error"], json!([]));
    assert_eq!(body["result"]["result_total"]["0"], 1);
    assert_eq!(
        body["result"]["result"]["1"][0]["UF_DEPARTMENT"],
        json!([2])
    );

    let cmd: serde_json::Map<String, Value> = (0..51)
        .map(|i| (format!("c{i}"), json!("user.get")))
        .collect();
    let (status, body) = call(&portal, "batch", json!({"cmd": cmd})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "ERROR_BATCH_LENGTH_EXCEEDED");
    let last = portal.requests().into_iter().rev().nth(1).unwrap();
    assert_eq!(last.sub_methods, ["crm.deal.list", "user.get"]);
}

#[tokio::test]
async fn batch_with_halt_stops_at_the_first_error() {
    let portal = portal().await;
    let (_, body) = call(
        &portal,
        "batch",
        json!({"halt": true, "cmd": {"a": "crm.deal.get?id=5", "b": "user.get"}}),
    )
    .await;
    assert!(body["result"]["result_error"]["a"].is_object());
    assert_eq!(body["result"]["result"], json!([]));
}

#[tokio::test]
async fn the_leaky_bucket_refuses_once_the_counter_exceeds_the_burst() {
    let portal = SimPortal::start(SimConfig {
        // A slow drain so a loaded CI machine cannot drain a whole request between calls.
        requests_per_second: 0.2,
        burst: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(&portal, "user.get", json!({})).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 503]);
    let (_, body) = call(&portal, "user.get", json!({})).await;
    assert_eq!(
        body,
        json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
    );
    // A batch is one request.
    portal.set_rate_limit(1000.0, 1000);
    let before = portal.request_count();
    call(
        &portal,
        "batch",
        json!({"cmd": {"a": "user.get", "b": "user.get"}}),
    )
    .await;
    assert_eq!(portal.request_count(), before + 1);
}

#[tokio::test]
async fn a_dropped_connection_is_an_error_for_reqwest_and_may_have_executed() {
    let portal = portal().await;
    let id = portal.create_deal(json!({"TITLE": "before"})).await;
    portal.set_faults(Faults {
        drop_rate: 1.0,
        seed: Some(7),
        ..Faults::default()
    });
    let mut writes_seen = 0;
    // One client for all calls, as our service has: pooled connections must not hide a drop.
    let client = client();
    for i in 0..8 {
        let outcome = client
            .post(format!("{}crm.deal.update.json", portal.webhook_url()))
            .json(&json!({"id": id, "fields": {"TITLE": format!("t{i}")}}))
            .send()
            .await;
        assert!(
            outcome.is_err(),
            "a dropped connection must be an error, got {outcome:?}"
        );
        if portal.deal(id).unwrap()["TITLE"] == format!("t{i}") {
            writes_seen += 1;
        }
    }
    assert!(
        writes_seen > 0 && writes_seen < 8,
        "half the drops come after executing"
    );
    assert!(
        portal
            .requests()
            .iter()
            .all(|r| r.status == 0 && r.error.as_deref() == Some("DROPPED"))
    );
}

#[tokio::test]
async fn error_after_executes_and_malformed_is_not_json() {
    let portal = portal().await;
    let id = portal.create_deal(json!({"TITLE": "before"})).await;
    portal.set_faults(Faults {
        error_after_rate: 1.0,
        ..Faults::default()
    });
    let (status, body) = call(
        &portal,
        "crm.deal.update",
        json!({"id": id, "fields": {"TITLE": "after"}}),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "INTERNAL_SERVER_ERROR");
    assert_eq!(portal.deal(id).unwrap()["TITLE"], "after");

    portal.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    call(
        &portal,
        "crm.deal.update",
        json!({"id": id, "fields": {"TITLE": "never"}}),
    )
    .await;
    assert_eq!(portal.deal(id).unwrap()["TITLE"], "after");

    portal.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let r = client()
        .post(format!("{}crm.deal.get.json", portal.webhook_url()))
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[tokio::test]
async fn a_blocked_method_answers_429_alone_and_inside_batch() {
    let portal = portal().await;
    portal.set_faults(Faults {
        method_429: Some(("tasks.task.add".into(), 1_900_000_000)),
        ..Faults::default()
    });
    let (status, body) = call(
        &portal,
        "tasks.task.add",
        json!({"fields": {"TITLE": "t", "RESPONSIBLE_ID": 1}}),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"], "OPERATION_TIME_LIMIT");
    let (status, body) = call(&portal, "batch", json!({"cmd": {"t": "tasks.task.add?fields[TITLE]=t&fields[RESPONSIBLE_ID]=1", "u": "user.get"}})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["result_error"]["t"]["error"],
        "OPERATION_TIME_LIMIT"
    );
    assert_eq!(
        body["result"]["result_time"]["t"]["operating_reset_at"],
        1_900_000_000u64
    );
    assert!(portal.tasks().is_empty());
}

#[tokio::test]
async fn a_move_posts_a_percent_encoded_form_event() {
    let portal = portal().await;
    let (url, seen) = event_sink().await;
    portal.set_event_handler(Some(url), "secret-token");
    let id = portal
        .create_deal(json!({"TITLE": "A", "ASSIGNED_BY_ID": 2}))
        .await;
    let delivery = portal.move_deal(id, "PREPARATION").await;
    assert_eq!(delivery.status, Some(200));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (content_type, body) = &seen[1];
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert!(body.starts_with(&format!(
        "event=ONCRMDEALUPDATE&event_handler_id=1&data%5BFIELDS%5D%5BID%5D={id}&ts="
    )));
    assert!(body.contains("&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&"));
    assert!(body.contains(&format!("auth%5Bmember_id%5D={}", portal.member_id())));
    assert!(body.ends_with("&auth%5Bapplication_token%5D=secret-token"));
    assert!(seen[0].1.starts_with("event=ONCRMDEALADD&"));

    let history = portal.stage_history(id);
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["TYPE_ID"], 2);
    assert_eq!(history[1]["STAGE_ID"], "PREPARATION");
    assert!(
        history[1]["CREATED_TIME"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let deal = portal.deal(id).unwrap();
    assert_eq!(deal["MOVED_BY_ID"], "2");
    assert!(deal["MOVED_TIME"].as_str().unwrap().ends_with("+03:00"));
}

#[tokio::test]
async fn rest_writes_echo_and_pipeline_moves_stay_silent() {
    let portal = portal_with_a_service_pipeline().await;
    let (url, seen) = event_sink().await;
    portal.set_event_handler(Some(url), "t");
    let id = portal.create_deal(json!({"TITLE": "A"})).await;

    // Our own update echoes as ONCRMDEALUPDATE, with a TYPE_ID 3 entry for a final stage.
    let (status, body) = call(
        &portal,
        "crm.deal.update",
        json!({"ID": id, "FIELDS": {"STAGE_ID": "WON", "CATEGORY_ID": 1, "UF_CRM_NOPE": "x"}}),
    )
    .await;
    assert_eq!((status, body["result"].clone()), (200, json!(true)));
    portal.settle().await;
    assert_eq!(portal.events_sent().len(), 2);
    assert_eq!(portal.stage_history(id)[1]["TYPE_ID"], 3);
    let deal = portal.deal(id).unwrap();
    assert_eq!(
        (
            deal["CATEGORY_ID"].clone(),
            deal["STAGE_SEMANTIC_ID"].clone(),
            deal["MOVED_BY_ID"].clone()
        ),
        (json!("0"), json!("S"), json!("1"))
    );

    portal.move_deal_to_pipeline(id, 1, "C1:NEW").await;
    portal.move_deal_silently(id, "C1:WON").await;
    portal.settle().await;
    assert_eq!(seen.lock().unwrap().len(), 2);
    let types: Vec<u64> = portal
        .stage_history(id)
        .iter()
        .map(|e| e["TYPE_ID"].as_u64().unwrap())
        .collect();
    assert_eq!(types, [1, 3, 5, 3]);

    // The sweep's view: entries past a known id, newest first on request.
    let (_, body) = call(&portal, "crm.stagehistory.list", json!({"entityTypeId": 2, "filter": {">ID": 2}, "order": {"ID": "DESC"}, "select": ["ID", "STAGE_ID"]})).await;
    assert_eq!(body["total"], 2);
    assert_eq!(
        body["result"]["items"][0],
        json!({"ID": 4, "STAGE_ID": "C1:WON"})
    );

    portal.set_event_handler(None, "");
    assert_eq!(portal.move_deal(id, "C1:NEW").await.status, None);
}

#[tokio::test]
async fn form_bodies_are_read_php_style() {
    let portal = portal().await;
    portal.add_field(
        "UF_CRM_REASON",
        "enumeration",
        "Loss reason",
        false,
        &[(10, "Price"), (11, "Timing")],
    );
    portal.add_field("UF_CRM_DUE", "date", "Due", false, &[]);
    let id = portal.create_deal(json!({"TITLE": "A"})).await;
    let r = client()
        .post(format!("{}crm.deal.update", portal.webhook_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "id={id}&fields%5BUF_CRM_REASON%5D=11&fields[UF_CRM_DUE]=2024-08-30&fields[TITLE]=B+c"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deal = portal.deal(id).unwrap();
    assert_eq!(deal["UF_CRM_REASON"], "11");
    assert_eq!(deal["UF_CRM_DUE"], "2024-08-30T03:00:00+03:00");
    assert_eq!(deal["TITLE"], "B c");

    let (_, fields) = call(&portal, "crm.deal.fields", json!({})).await;
    assert_eq!(fields["result"]["UF_CRM_REASON"]["title"], "UF_CRM_REASON");
    assert_eq!(
        fields["result"]["UF_CRM_REASON"]["listLabel"],
        "Loss reason"
    );
    assert_eq!(fields["result"]["CATEGORY_ID"]["isImmutable"], true);
    let (_, list) = call(
        &portal,
        "crm.deal.userfield.list",
        json!({"filter": {"LANG": "en"}}),
    )
    .await;
    assert_eq!(list["result"][0]["EDIT_FORM_LABEL"], "Loss reason");
    assert_eq!(list["result"][0]["LIST"][1]["VALUE"], "Timing");
}

#[tokio::test]
async fn task_list_ignores_xml_id_in_its_filter() {
    let portal = portal().await;
    for (title, xml) in [("Call", "a"), ("Call", "b"), ("Other", "c")] {
        let (status, body) = call(
            &portal,
            "tasks.task.add",
            json!({"fields": {"TITLE": title, "RESPONSIBLE_ID": 2, "UF_CRM_TASK": ["D_5"], "XML_ID": xml, "DEADLINE": "2025-12-31T18:00:00"}}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body["result"]["task"]["id"].is_string());
    }
    let (_, body) = call(
        &portal,
        "tasks.task.list",
        json!({"filter": {"XML_ID": "a"}, "select": ["ID", "XML_ID"]}),
    )
    .await;
    assert_eq!(body["total"], 3);
    let (_, body) = call(&portal, "tasks.task.list", json!({"filter": {"UF_CRM_TASK": "D_5", "TITLE": "call"}, "select": ["ID", "TITLE", "XML_ID", "UF_CRM_TASK", "DEADLINE"]})).await;
    let tasks = body["result"]["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    // Default order: ID descending.
    assert_eq!(tasks[0]["xmlId"], "b");
    assert_eq!(tasks[0]["ufCrmTask"], json!(["D_5"]));
    assert_eq!(tasks[0]["deadline"], "2025-12-31T18:00:00+03:00");
    let (_, body) = call(
        &portal,
        "tasks.task.list",
        json!({"select": ["ID", "TITLE"]}),
    )
    .await;
    assert!(body["result"]["tasks"][0].get("ufCrmTask").is_none());
    assert_eq!(
        portal.tasks_for_deal(5)[0]["DEADLINE"],
        "2025-12-31T18:00:00"
    );

    let (status, body) = call(
        &portal,
        "tasks.task.add",
        json!({"fields": {"TITLE": "no one"}}),
    )
    .await;
    assert_eq!((status, body["error"].clone()), (400, json!("ERROR_CORE")));
}

#[tokio::test]
async fn comments_want_lower_case_fields_and_text() {
    let portal = portal().await;
    let id = portal.create_deal(json!({"TITLE": "A"})).await;
    let (status, _) = call(
        &portal,
        "crm.timeline.comment.add",
        json!({"FIELDS": {"ENTITY_ID": id, "ENTITY_TYPE": "deal", "COMMENT": "x"}}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = call(
        &portal,
        "crm.timeline.comment.add",
        json!({"fields": {"ENTITY_ID": id, "ENTITY_TYPE": "deal", "COMMENT": ""}}),
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("INVALID_ARG_VALUE"))
    );
    let (status, body) = call(
        &portal,
        "crm.timeline.comment.add",
        json!({"fields": {"ENTITY_ID": id, "ENTITY_TYPE": "deal", "COMMENT": "hi"}}),
    )
    .await;
    assert_eq!((status, body["result"].clone()), (200, json!(1)));
    let (status, _) = call(
        &portal,
        "im.notify.system.add",
        json!({"USER_ID": 4, "MESSAGE": "late"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(portal.comments().len(), 1);
    assert_eq!(portal.notifications()[0]["USER_ID"], 4);
}

#[tokio::test]
async fn pipelines_stages_and_people_read_like_bitrix() {
    let portal = portal_with_a_service_pipeline().await;
    let (_, body) = call(
        &portal,
        "crm.status.list",
        json!({"filter": {"ENTITY_ID": "DEAL_STAGE"}}),
    )
    .await;
    assert_eq!(body["total"], 8);
    assert_eq!(body["result"][5]["SEMANTICS"], "S");
    assert_eq!(body["result"][0]["SEMANTICS"], Value::Null);
    assert_eq!(body["result"][7]["EXTRA"]["SEMANTICS"], "apology");
    let (_, body) = call(
        &portal,
        "crm.status.list",
        json!({"filter": {"ENTITY_ID": "DEAL_STAGE_1"}}),
    )
    .await;
    assert_eq!(body["result"][0]["CATEGORY_ID"], "1");
    let (_, body) = call(&portal, "crm.category.list", json!({"entityTypeId": 2})).await;
    assert_eq!(body["result"]["categories"][0]["isDefault"], "Y");
    assert_eq!(body["total"], 2);
    let (_, body) = call(&portal, "crm.status.entity.types", json!({})).await;
    assert!(
        body["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["PREFIX"] == "C1")
    );
    let (_, body) = call(&portal, "user.get", json!({"FILTER": {"UF_DEPARTMENT": 2}})).await;
    assert_eq!(body["total"], 3);
    let (_, body) = call(&portal, "department.get", json!({"ID": 3})).await;
    assert_eq!(body["result"][0]["PARENT"], "2");
    assert!(body["result"][0].get("UF_HEAD").is_none());
    let (_, body) = call(&portal, "department.get", json!({"ID": 2})).await;
    assert_eq!(body["result"][0]["UF_HEAD"], "4");
    // GET with a query string works too.
    let r = client()
        .get(format!("{}department.get.json?ID=1", portal.webhook_url()))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["result"][0]["NAME"], "Company");
}

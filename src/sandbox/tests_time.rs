//! The simulated portal's time: its clock stamps what it writes, `server.time` reads it, and
//! tasks and activities change as people (and our service) work them, over real HTTP.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::tests::{call, portal};
use super::*;
use crate::clock::Clock;

fn moment() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 0).unwrap()
}

/// The default portal on a clock that starts at [`moment`].
async fn portal_at_moment() -> SimPortal {
    let portal = SimPortal::start(SimConfig {
        clock: Clock::starting_at(moment()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    portal.with_default_portal();
    portal
}

fn instant(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Whether `at` is `expected` give or take the few real seconds a test takes.
fn about(at: DateTime<Utc>, expected: DateTime<Utc>) -> bool {
    (at - expected).num_seconds().abs() < 30
}

#[tokio::test]
async fn an_advanced_clock_shows_in_stage_history_deal_dates_and_server_time() {
    let portal = portal_at_moment().await;
    let id = portal.create_deal(json!({"TITLE": "A"})).await;
    let created = instant(&portal.stage_history(id)[0]["CREATED_TIME"]);
    assert!(about(created, moment()), "{created}");

    portal.clock().advance(Duration::from_secs(3 * 86_400));
    let later = moment() + chrono::Duration::days(3);
    portal.move_deal(id, "PREPARATION").await;
    let history = portal.stage_history(id);
    let moved = instant(&history[1]["CREATED_TIME"]);
    assert!(about(moved, later), "{moved}");
    // Stage history prints UTC, deal fields the server's offset.
    assert!(
        history[1]["CREATED_TIME"]
            .as_str()
            .unwrap()
            .ends_with("+00:00")
    );
    let deal = portal.deal(id).unwrap();
    assert!(about(instant(&deal["DATE_MODIFY"]), later));
    assert!(about(instant(&deal["DATE_CREATE"]), moment()));
    assert!(deal["DATE_MODIFY"].as_str().unwrap().ends_with("+03:00"));

    let (status, body) = call(&portal, "server.time", json!({})).await;
    assert_eq!(status, 200);
    assert!(about(instant(&body["result"]), later), "{body}");
    assert!(body["result"].as_str().unwrap().ends_with("+03:00"));
    // The `time` object stays on real time: clients pace their calls by it.
    let real = Utc::now().timestamp() as f64;
    assert!((body["time"]["start"].as_f64().unwrap() - real).abs() < 30.0);
}

fn msk(text: &str) -> DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

/// The ids of a `tasks.task.list` answer, in order.
fn task_ids(body: &Value) -> Vec<String> {
    body["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("no tasks in {body}"))
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn task_list_filters_by_ids_bindings_statuses_and_deadlines() {
    let portal = portal_at_moment().await;
    // Deadlines: task 1 the moment's evening, 2 the next day, 3 none; 4 on another deal.
    let t1 = portal.add_user_task(7, "Call", 2, Some(msk("2026-12-03T18:00:00+03:00")));
    let t2 = portal.add_user_task(7, "Send offer", 3, Some(msk("2026-12-04T12:00:00+03:00")));
    let t3 = portal.add_user_task(8, "Think", 2, None);
    let t4 = portal.add_user_task(9, "Other", 2, Some(msk("2026-12-01T10:00:00+03:00")));
    assert_eq!((t1, t2, t3, t4), (1, 2, 3, 4));
    let list = |filter: Value| {
        let portal = portal.clone();
        async move {
            let (status, body) = call(
                &portal,
                "tasks.task.list",
                json!({"filter": filter, "select": ["ID", "REAL_STATUS", "DEADLINE"]}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            task_ids(&body)
        }
    };
    assert_eq!(list(json!({"ID": [1, 3]})).await, ["3", "1"]);
    assert_eq!(
        list(json!({"UF_CRM_TASK": ["D_7", "D_8"]})).await,
        ["3", "2", "1"]
    );
    assert_eq!(list(json!({"UF_CRM_TASK": "D_9"})).await, ["4"]);
    // A task without a deadline is never before or after anything.
    assert_eq!(
        list(json!({"<DEADLINE": "2026-12-04T00:00:00+03:00"})).await,
        ["4", "1"]
    );
    assert_eq!(
        list(json!({">=DEADLINE": "2026-12-04T12:00:00"})).await,
        ["2"]
    );
    assert_eq!(
        list(json!({"<=DEADLINE": "2026-12-03 18:00:00"})).await,
        ["4", "1"]
    );

    portal.start_task(t1);
    portal.complete_task(t4);
    portal.defer_task(t3);
    assert_eq!(list(json!({"REAL_STATUS": 3})).await, ["1"]);
    assert_eq!(list(json!({"REAL_STATUS": [2, 3]})).await, ["2", "1"]);
    assert_eq!(list(json!({"!REAL_STATUS": [5, 6]})).await, ["2", "1"]);
    assert_eq!(
        list(json!({"REAL_STATUS": [1, 2, 3], "<DEADLINE": "2026-12-05T00:00:00+03:00", "UF_CRM_TASK": ["D_7", "D_9"]})).await,
        ["2", "1"]
    );

    // STATUS -1 is "overdue" by the portal's clock: nothing yet, then task 1 (4 is completed).
    assert!(list(json!({"STATUS": -1})).await.is_empty());
    portal.clock().advance(Duration::from_secs(12 * 3600));
    assert_eq!(list(json!({"STATUS": -1})).await, ["1"]);
    assert_eq!(list(json!({"STATUS": 3})).await, ["1"]);
}

#[tokio::test]
async fn task_list_prints_what_select_names_in_camel_case() {
    let portal = portal_at_moment().await;
    let (_, added) = call(
        &portal,
        "tasks.task.add",
        json!({"fields": {"TITLE": "Call", "RESPONSIBLE_ID": 2, "UF_CRM_TASK": ["D_5"], "XML_ID": "x", "DEADLINE": "2026-12-03T09:00:00+03:00"}}),
    )
    .await;
    assert_eq!(added["result"]["task"]["status"], "2", "{added}");
    assert_eq!(added["result"]["task"]["realStatus"], "2");
    let select = json!([
        "ID",
        "TITLE",
        "REAL_STATUS",
        "STATUS",
        "DEADLINE",
        "RESPONSIBLE_ID",
        "UF_CRM_TASK",
        "CLOSED_DATE",
        "XML_ID"
    ]);
    let (_, body) = call(&portal, "tasks.task.list", json!({"select": select})).await;
    let task = &body["result"]["tasks"][0];
    let mut keys: Vec<&str> = task
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "closedDate",
            "deadline",
            "id",
            "realStatus",
            "responsibleId",
            "status",
            "subStatus",
            "title",
            "ufCrmTask",
            "xmlId"
        ]
    );
    assert_eq!(task["deadline"], "2026-12-03T09:00:00+03:00");
    assert_eq!(task["responsibleId"], "2");
    assert_eq!(task["ufCrmTask"], json!(["D_5"]));
    assert_eq!(task["closedDate"], Value::Null);
    // 09:00 Moscow is 06:00 UTC, an hour before the clock's moment: overdue.
    assert_eq!(
        (task["status"].clone(), task["subStatus"].clone()),
        (json!("2"), json!("-1"))
    );
    // Only REAL_STATUS: `status` is what it "corresponds to in the response".
    let (_, body) = call(
        &portal,
        "tasks.task.list",
        json!({"select": ["REAL_STATUS"]}),
    )
    .await;
    let task = body["result"]["tasks"][0].as_object().unwrap().clone();
    assert_eq!(
        task.keys().collect::<Vec<_>>(),
        ["id", "status", "realStatus"]
    );

    let (_, got) = call(
        &portal,
        "tasks.task.get",
        json!({"taskId": 1, "select": ["ID", "TITLE"]}),
    )
    .await;
    assert_eq!(got["result"]["task"], json!({"id": "1", "title": "Call"}));
    let (status, got) = call(&portal, "tasks.task.get", json!({"taskId": 99})).await;
    assert_eq!((status, got["result"].clone()), (200, json!([])));
}

#[tokio::test]
async fn task_list_pages_by_fifty() {
    let portal = portal().await;
    for i in 0..60 {
        portal.add_user_task(1, &format!("T{i}"), 2, None);
    }
    let (_, first) = call(
        &portal,
        "tasks.task.list",
        json!({"filter": {"UF_CRM_TASK": ["D_1"]}, "select": ["ID"]}),
    )
    .await;
    assert_eq!(
        (first["total"].clone(), first["next"].clone()),
        (json!(60), json!(50))
    );
    assert_eq!(task_ids(&first).len(), 50);
    let (_, second) = call(
        &portal,
        "tasks.task.list",
        json!({"filter": {"UF_CRM_TASK": ["D_1"]}, "select": ["ID"], "start": 50}),
    )
    .await;
    assert_eq!(
        task_ids(&second),
        ["10", "9", "8", "7", "6", "5", "4", "3", "2", "1"]
    );
    assert!(second.get("next").is_none());
}

#[tokio::test]
async fn complete_and_defer_answer_the_task_and_refuse_what_the_docs_refuse() {
    let portal = portal_at_moment().await;
    let a = portal.add_user_task(7, "A", 2, None);
    let b = portal.add_user_task(7, "B", 3, None);
    assert_eq!(portal.task(a).unwrap()["REAL_STATUS"], "2");

    portal.clock().advance(Duration::from_secs(3600));
    let (status, body) = call(&portal, "tasks.task.complete", json!({"taskId": a})).await;
    assert_eq!(status, 200, "{body}");
    let task = &body["result"]["task"];
    assert_eq!(
        (task["id"].clone(), task["status"].clone()),
        (json!("1"), json!("5"))
    );
    assert!(about(
        instant(&task["closedDate"]),
        moment() + chrono::Duration::hours(1)
    ));
    assert_eq!(task["closedBy"], "1");
    let stored = portal.task(a).unwrap();
    assert_eq!(
        (stored["STATUS"].clone(), stored["REAL_STATUS"].clone()),
        (json!("5"), json!("5"))
    );
    assert_eq!(stored["CHANGED_DATE"], stored["CLOSED_DATE"]);

    // Completing it again, or a task that is not there: 400, code 0.
    for id in [a, 99] {
        let (status, body) = call(&portal, "tasks.task.complete", json!({"taskId": id})).await;
        assert_eq!((status, body["error"].clone()), (400, json!("0")), "{body}");
        assert_eq!(
            body["error_description"],
            "Action on the task is not allowed"
        );
    }
    let (status, body) = call(&portal, "tasks.task.defer", json!({"taskId": a})).await;
    assert_eq!((status, body["error"].clone()), (400, json!("1048582")));

    // A deferred task: not deferred twice, but it can be completed.
    let (status, body) = call(&portal, "tasks.task.defer", json!({"taskId": b})).await;
    assert_eq!(
        (status, body["result"]["task"]["status"].clone()),
        (200, json!("6"))
    );
    assert_eq!(body["result"]["task"]["closedDate"], Value::Null);
    let (status, body) = call(&portal, "tasks.task.defer", json!({"taskId": b})).await;
    assert_eq!((status, body["error"].clone()), (400, json!("1048582")));
    let (status, _) = call(&portal, "tasks.task.complete", json!({"taskId": b})).await;
    assert_eq!(status, 200);
    assert_eq!(portal.task(b).unwrap()["CLOSED_BY"], "1");

    let (status, body) = call(&portal, "tasks.task.complete", json!({})).await;
    assert_eq!((status, body["error"].clone()), (400, json!("100")));
    let (status, body) = call(&portal, "tasks.task.complete", json!({"taskId": "abc"})).await;
    assert_eq!((status, body["error"].clone()), (400, json!("0")));
}

#[tokio::test]
async fn people_start_complete_defer_and_move_deadlines() {
    let portal = portal_at_moment().await;
    let id = portal.add_user_task(4, "Call back", 3, Some(msk("2026-12-03T18:00:00+03:00")));
    let task = portal.task(id).unwrap();
    assert_eq!(task["UF_CRM_TASK"], json!(["D_4"]));
    assert_eq!(
        (task["CREATED_BY"].clone(), task["RESPONSIBLE_ID"].clone()),
        (json!("3"), json!("3"))
    );
    assert_eq!(task["DEADLINE"], "2026-12-03T18:00:00+03:00");
    assert!(about(instant(&task["CREATED_DATE"]), moment()));
    assert_eq!(portal.tasks_for_deal(4).len(), 1);

    portal.clock().advance(Duration::from_secs(600));
    portal.set_task_deadline(id, Some(msk("2026-12-05T10:00:00+03:00")));
    let task = portal.task(id).unwrap();
    assert_eq!(task["DEADLINE_AT"], "2026-12-05T07:00:00+00:00");
    assert!(about(
        instant(&task["CHANGED_DATE"]),
        moment() + chrono::Duration::minutes(10)
    ));
    portal.start_task(id);
    assert_eq!(portal.task(id).unwrap()["REAL_STATUS"], "3");
    portal.defer_task(id);
    assert_eq!(portal.task(id).unwrap()["REAL_STATUS"], "6");
    portal.complete_task(id);
    let task = portal.task(id).unwrap();
    assert_eq!(
        (task["REAL_STATUS"].clone(), task["CLOSED_BY"].clone()),
        (json!("5"), json!("3"))
    );
    portal.set_task_deadline(id, None);
    assert_eq!(portal.task(id).unwrap()["DEADLINE"], Value::Null);
    let (_, body) = call(
        &portal,
        "tasks.task.get",
        json!({"taskId": id, "select": ["DEADLINE"]}),
    )
    .await;
    assert_eq!(body["result"]["task"]["deadline"], Value::Null);
}

#[tokio::test]
#[should_panic(expected = "refused to start a task")]
async fn starting_a_completed_task_is_a_mistake_in_the_test() {
    let portal = portal().await;
    let id = portal.add_user_task(1, "Done", 2, None);
    portal.complete_task(id);
    portal.start_task(id);
}

#[tokio::test]
async fn activity_list_filters_a_deals_open_activities() {
    let portal = portal_at_moment().await;
    let a = portal.add_activity(7, 2, "Call the client", false);
    let b = portal.add_activity(7, 2, "Meeting", true);
    let c = portal.add_activity(8, 3, "Send the offer", false);
    assert_eq!((a, b, c), (1, 2, 3));
    let ids = |body: &Value| -> Vec<String> {
        body["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|a| a["ID"].as_str().unwrap().to_string())
            .collect()
    };
    let filter = json!({"OWNER_TYPE_ID": 2, "OWNER_ID": 7, "COMPLETED": "N"});
    let (status, body) = call(
        &portal,
        "crm.activity.list",
        json!({"filter": filter, "select": ["ID", "OWNER_ID", "COMPLETED"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["1"]);
    assert_eq!(body["total"], 1);
    assert_eq!(
        body["result"][0],
        json!({"ID": "1", "OWNER_ID": "7", "COMPLETED": "N"})
    );
    let (_, body) = call(
        &portal,
        "crm.activity.list",
        json!({"filter": {"OWNER_TYPE_ID": 2, "OWNER_ID": [7, 8], "COMPLETED": "N"}}),
    )
    .await;
    assert_eq!(ids(&body), ["1", "3"]);
    assert_eq!(body["result"][1]["SUBJECT"], "Send the offer");
    assert_eq!(body["result"][1]["RESPONSIBLE_ID"], "3");
    assert!(about(instant(&body["result"][1]["CREATED"]), moment()));
    let (_, body) = call(
        &portal,
        "crm.activity.list",
        json!({"filter": {"OWNER_TYPE_ID": 3}}),
    )
    .await;
    assert!(ids(&body).is_empty());

    portal.complete_activity(a);
    let (_, body) = call(&portal, "crm.activity.list", json!({"filter": filter})).await;
    assert!(ids(&body).is_empty());
    assert_eq!(portal.activities()[0]["COMPLETED"], "Y");
    assert_eq!(portal.activities()[0]["STATUS"], "2");

    let (status, body) = call(&portal, "crm.activity.list", json!({"filter": "x"})).await;
    assert_eq!((status, body["error"].clone()), (400, json!("")));
    assert_eq!(
        body["error_description"],
        "Parameter 'filter' must be array."
    );
    for i in 0..55 {
        portal.add_activity(9, 2, &format!("A{i}"), false);
    }
    let (_, body) = call(
        &portal,
        "crm.activity.list",
        json!({"filter": {"OWNER_ID": 9}, "select": ["ID"]}),
    )
    .await;
    assert_eq!(
        (body["total"].clone(), body["next"].clone()),
        (json!(55), json!(50))
    );
    let (_, body) = call(
        &portal,
        "crm.activity.list",
        json!({"filter": {"OWNER_ID": 9}, "start": 50}),
    )
    .await;
    assert_eq!(ids(&body).len(), 5);
}

#[tokio::test]
async fn deal_list_filters_by_pipeline_and_stage_semantics() {
    let portal = portal().await;
    portal.add_pipeline(
        1,
        "Service",
        &[("C1:NEW", "New", 'P'), ("C1:WON", "Done", 'S')],
    );
    let open = portal
        .create_deal(json!({"CATEGORY_ID": 1, "STAGE_ID": "C1:NEW"}))
        .await;
    let won = portal
        .create_deal(json!({"CATEGORY_ID": 1, "STAGE_ID": "C1:WON"}))
        .await;
    let other = portal
        .create_deal(json!({"TITLE": "default pipeline"}))
        .await;
    let ids = |body: &Value| -> Vec<u64> {
        body["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["ID"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    let (_, body) = call(
        &portal,
        "crm.deal.list",
        json!({"filter": {"CATEGORY_ID": 1, "STAGE_SEMANTIC_ID": "P"}, "select": ["ID"]}),
    )
    .await;
    assert_eq!(ids(&body), [open]);
    let (_, body) = call(
        &portal,
        "crm.deal.list",
        json!({"filter": {"CATEGORY_ID": "1"}, "select": ["ID"]}),
    )
    .await;
    assert_eq!(ids(&body), [open, won]);
    let (_, body) = call(
        &portal,
        "crm.deal.list",
        json!({"filter": {"STAGE_SEMANTIC_ID": "P"}, "select": ["ID"]}),
    )
    .await;
    assert_eq!(ids(&body), [open, other]);
}

#[tokio::test]
async fn the_new_methods_work_inside_batch_and_count_as_one_request() {
    let portal = portal_at_moment().await;
    let id = portal.add_user_task(7, "Call", 2, Some(msk("2026-12-03T08:00:00+03:00")));
    portal.add_activity(7, 2, "To-do", false);
    let before = portal.request_count();
    let cmd = json!({
        "list": "tasks.task.list?filter[UF_CRM_TASK][0]=D_7&filter[REAL_STATUS][0]=2&filter[REAL_STATUS][1]=3&filter[%3CDEADLINE]=2026-12-03T12:00:00%2B03:00&select[0]=ID&select[1]=DEADLINE",
        "acts": "crm.activity.list?filter[OWNER_TYPE_ID]=2&filter[OWNER_ID][0]=7&filter[COMPLETED]=N&select[0]=ID",
        "done": "tasks.task.complete?taskId=$result[list][tasks][0][id]",
        "again": "tasks.task.defer?taskId=1",
        "time": "server.time",
    });
    let (status, body) = call(&portal, "batch", json!({"cmd": cmd})).await;
    assert_eq!(status, 200, "{body}");
    let result = &body["result"];
    assert_eq!(
        task_ids(&json!({"result": result["result"]["list"]})),
        ["1"]
    );
    assert_eq!(result["result_total"]["list"], 1);
    assert_eq!(result["result"]["acts"][0]["ID"], "1");
    assert_eq!(result["result_total"]["acts"], 1);
    assert_eq!(result["result"]["done"]["task"]["status"], "5");
    assert_eq!(result["result_error"]["again"]["error"], "1048582");
    assert!(about(instant(&result["result"]["time"]), moment()));
    assert_eq!(portal.task(id).unwrap()["REAL_STATUS"], "5");
    let requests = portal.requests();
    assert_eq!(requests.len(), before + 1);
    assert_eq!(
        requests.last().unwrap().sub_methods,
        [
            "tasks.task.list",
            "crm.activity.list",
            "tasks.task.complete",
            "tasks.task.defer",
            "server.time"
        ]
    );
}

#[tokio::test]
async fn the_new_methods_take_from_the_rate_limit() {
    let portal = portal().await;
    let id = portal.add_user_task(1, "A", 2, None);
    // Burst 1 admits two requests (the bucket refuses once its counter exceeds the burst).
    portal.set_rate_limit(0.01, 1);
    let mut statuses = Vec::new();
    for method in [
        "tasks.task.list",
        "crm.activity.list",
        "tasks.task.complete",
    ] {
        let (status, _) = call(&portal, method, json!({"taskId": id})).await;
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 503]);
    assert_eq!(portal.task(id).unwrap()["REAL_STATUS"], "2");
}

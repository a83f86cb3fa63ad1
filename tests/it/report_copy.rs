//! The report copy: the first refresh reads every deal and its stage history, a refresh with
//! nothing changed costs one request, and a changed amount and a newly won deal are picked up
//! by the next one.

use std::sync::Arc;

use b24_robot::rules::{RuleSet, RulesHandle, StageSemantic};
use b24_robot::sandbox::SimConfig;
use b24_robot::store::Store;
use b24_robot::worker::Worker;
use b24_robot::worker::report_copy::refresh;
use serde_json::json;

use crate::helpers::{new_deal_with, seeded_portal, test_settings};

#[tokio::test]
async fn the_copy_is_read_once_then_refreshed_with_what_changed_only() {
    let sim = seeded_portal(SimConfig::default()).await;
    let mut deals = Vec::new();
    for i in 0..60 {
        deals.push(new_deal_with(&sim, &format!("Client {i}"), "NEW", json!({})).await);
    }
    sim.move_deal_silently(deals[0], "PREPARATION").await;
    sim.move_deal_silently(deals[0], "WON").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = test_settings(dir.path(), &sim.webhook_url(), &[]);
    let client = b24_robot::startup::client(&settings).expect("client");
    let rules: RuleSet =
        b24_robot::sandbox::seed::embedded_rules().expect("the shipped rules load");
    let worker = Arc::new(Worker::new(
        &settings,
        Store::open(dir.path()).expect("store"),
        client,
        RulesHandle::new(rules.clone()),
        None,
    ));

    let first = refresh(&worker, &rules, false)
        .await
        .expect("first refresh");
    assert_eq!(first.deals, 60);
    let won = worker
        .store
        .report_deal(deals[0])
        .expect("read")
        .expect("copied");
    assert_eq!(won.semantic, StageSemantic::Success);
    let stages: Vec<&str> = won.history.iter().map(|e| e.stage.as_str()).collect();
    assert_eq!(stages, ["NEW", "PREPARATION", "WON"], "its whole history");
    assert_eq!(won.amount.to_string(), "1000");

    // Nothing changed: one request (both lists' first pages in one batch).
    let before = sim.request_count();
    let again = refresh(&worker, &rules, false)
        .await
        .expect("second refresh");
    assert!(
        sim.request_count() - before <= 2,
        "{} requests",
        sim.request_count() - before
    );
    assert_eq!(again.entries_read, 0);

    // A changed amount and a newly won deal.
    sim.update_deal(deals[5], json!({ "OPPORTUNITY": "2500.00" }))
        .await;
    sim.move_deal_silently(deals[7], "WON").await;
    refresh(&worker, &rules, false)
        .await
        .expect("third refresh");
    let changed = worker
        .store
        .report_deal(deals[5])
        .expect("read")
        .expect("copied");
    assert_eq!(changed.amount.to_string(), "2500");
    let newly = worker
        .store
        .report_deal(deals[7])
        .expect("read")
        .expect("copied");
    assert_eq!(newly.semantic, StageSemantic::Success);
    assert_eq!(newly.history.last().map(|e| e.stage.as_str()), Some("WON"));
    assert_eq!(worker.store.report_deals().expect("all").len(), 60);
}

#[tokio::test]
async fn the_admin_api_serves_the_reports_json_forms_on_the_copy() {
    let month = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .format("%Y-%m")
        .to_string();
    let plan = format!(
        r#"
[[plan]]
name = "sales-month"
period = "{month}"
pipeline = 0
measure = "amount"
currency = "RUB"
targets = {{ 3 = 10000 }}
"#
    );
    let mut rules = vec![crate::helpers::task_rules()];
    rules.push(crate::helpers::rule_file("plan.toml", &plan));
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        rules,
        settings: vec![("server.admin_token", "reports-token".into())],
        ..Default::default()
    })
    .await;
    let won = [
        crate::helpers::new_deal(&app.sim, "Won One").await,
        crate::helpers::new_deal(&app.sim, "Won Two").await,
    ];
    let open = crate::helpers::new_deal(&app.sim, "Still Open").await;
    for deal in won {
        app.move_to(deal, "WON", std::time::Duration::from_secs(10))
            .await;
    }
    let get = |path: String| {
        let client = app.client.clone();
        let url = format!("http://127.0.0.1:{}{path}", app.port);
        async move {
            let answer = client
                .get(url)
                .bearer_auth("reports-token")
                .send()
                .await
                .expect("answers");
            let status = answer.status().as_u16();
            (
                status,
                answer.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let (status, plan) = get("/admin/reports/plan".into()).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["report"], "plan");
    let row = &plan["rows"][0];
    assert_eq!(row["plan"], "sales-month", "{plan}");
    assert_eq!(row["user_id"], 3);
    assert_eq!(row["target"], 10000);
    assert_eq!(row["done"], 2000, "two deals of 1000.00 won: {plan}");
    assert_eq!(row["percent"], 20.0);
    for key in ["period", "generated_at", "data_as_of", "totals"] {
        assert!(plan.get(key).is_some(), "{key}: {plan}");
    }

    let (status, deals) = get(format!("/admin/reports/deals?period={month}")).await;
    assert_eq!(status, 200, "{deals}");
    let rows = deals["rows"].as_array().expect("rows");
    let mut keys: Vec<&str> = rows[0]
        .as_object()
        .expect("a row")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "amount", "currency", "deal_id", "pipeline", "stage", "title", "user_id", "won_at"
        ]
    );
    let won_rows = rows.iter().filter(|r| !r["won_at"].is_null()).count();
    assert_eq!(won_rows, 2, "{deals}");
    assert!(
        rows.iter()
            .any(|r| r["deal_id"] == open && r["won_at"].is_null()),
        "{deals}"
    );

    let (status, _) = get("/admin/reports/nope".into()).await;
    assert_eq!(status, 404);
    let (status, _) = get("/admin/reports/plan?period=soon".into()).await;
    assert_eq!(status, 400);
    app.stop().await;
}

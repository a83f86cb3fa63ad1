//! The admin API and the admin commands: a deal's entries and decisions, the job queue.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Options, new_deal, spawn_app_with};

const ADMIN: &str = "s3cret-admin";

#[tokio::test]
async fn the_admin_api_explains_a_deal_and_refuses_requests_without_the_token() {
    let app = spawn_app_with(Options {
        settings: vec![("server.admin_token", ADMIN.into())],
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Acme").await;
    app.settle(Duration::from_secs(10)).await;
    app.sim.move_deal(deal, "PREPARATION").await;
    app.wait_until(Duration::from_secs(10), "the task", |sim| {
        sim.tasks_for_deal(deal).len() == 1
    })
    .await;
    app.settle(Duration::from_secs(10)).await;

    let url = format!("http://127.0.0.1:{}/admin/deals/{deal}", app.port);
    let refused = app.client.get(&url).send().await.expect("answers");
    assert_eq!(refused.status(), 401);
    let wrong = app
        .client
        .get(&url)
        .bearer_auth("nope")
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 401);

    let report: Value = app
        .client
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let entries = report["entries"].as_array().expect("entries");
    let preparation = entries
        .iter()
        .find(|e| e["entry"]["stage_id"] == "PREPARATION")
        .expect("the entry");
    assert_eq!(preparation["action"], "acted");
    assert_eq!(preparation["decisions"][0]["rule"], "offer");
    let task_id = app.sim.tasks_for_deal(deal)[0]["ID"].clone();
    let effect = report["effects"]
        .as_array()
        .expect("effects")
        .iter()
        .find(|e| e["rule"] == "offer")
        .expect("effect")
        .clone();
    assert_eq!(effect["state"]["state"], "done");
    assert_eq!(effect["state"]["id"].as_str(), task_id.as_str());

    let jobs: Value = app
        .client
        .get(format!("http://127.0.0.1:{}/admin/jobs", app.port))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(jobs["queued"], 0);
    let (_sim, dir) = app.stop().await;

    // With the service stopped, `explain` reads the store itself.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"))
        .args(["explain", &deal.to_string()])
        .env("B24ROBOT__STORAGE__DIR", dir.path())
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("PREPARATION") && text.contains("rule offer: fired"),
        "{text}"
    );
    assert!(text.contains("tasks.task.add -> done, id"), "{text}");
}

#[tokio::test]
async fn without_an_admin_token_the_admin_api_does_not_exist() {
    let app = spawn_app_with(Options::default()).await;
    let answer = app
        .client
        .get(format!("http://127.0.0.1:{}/admin/jobs", app.port))
        .bearer_auth("anything")
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 404);
    app.stop().await;
}

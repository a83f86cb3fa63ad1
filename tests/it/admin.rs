//! The admin API and the admin commands: a deal's entries and decisions, the job queue.

use std::time::Duration;

use b24_robot::worker::Activity;
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

const MIXED_RULES: &str = r#"
pipeline = 0

[[require]]
name = "need-inn"
stage = "PREPAYMENT_INVOICE"
fields = ["UF_CRM_INN"]
on_missing = "revert"

[[task]]
name = "invoice"
stage = "PREPAYMENT_INVOICE"
title = "Invoice {TITLE}"
deadline = { after = "1 day" }

[[task]]
name = "big-only"
stage = "PREPARATION"
when = { OPPORTUNITY = { gte = 1000000 } }
title = "Big deal: {TITLE}"
deadline = { after = "1 day" }

[[task]]
name = "pm-task"
stage = "PREPARATION"
title = "Plan the project: {TITLE}"
responsible = "field:UF_CRM_PM"
deadline = { after = "1 day" }
"#;

#[tokio::test]
async fn explain_shows_a_revert_a_skip_and_a_failure_with_their_reasons() {
    let app = spawn_app_with(Options {
        rules: vec![crate::helpers::rule_file("mixed.toml", MIXED_RULES)],
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Acme").await;
    app.settle(Duration::from_secs(10)).await;
    app.next_second().await;
    app.sim.move_deal(deal, "PREPARATION").await;
    app.settle(Duration::from_secs(10)).await;
    app.next_second().await;
    let mark = app.mark();
    app.sim.move_deal(deal, "PREPAYMENT_INVOICE").await;
    app.wait_until(Duration::from_secs(10), "the revert", |sim| {
        sim.deal(deal)
            .is_some_and(|d| d["STAGE_ID"] == "PREPARATION")
    })
    .await;
    // The move back comes back as an event: its entry is recorded as the service's own, and
    // no rule runs for it.
    app.reported(mark, Duration::from_secs(10), "the echo entry", |a| {
        matches!(a, Activity::StageEntry { deal_id, stage_id, acted: false, .. }
            if *deal_id == deal && stage_id == "PREPARATION")
        .then_some(())
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.store.entries(deal).expect("entries").len(), 4);
    let (_sim, dir) = app.stop().await;

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"))
        .args(["explain", &deal.to_string()])
        .env("B24ROBOT__STORAGE__DIR", dir.path())
        .output()
        .expect("the binary runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("rule big-only: skipped: condition false"),
        "{text}"
    );
    assert!(text.contains("rule pm-task: fired"), "{text}");
    assert!(text.contains("FAILED: responsible not resolved"), "{text}");
    assert!(text.contains("rule need-inn: fired"), "{text}");
    assert!(text.contains("crm.deal.update -> done"), "{text}");
    assert!(
        text.contains("rule invoice: skipped: the deal was moved back by rule \"need-inn\""),
        "{text}"
    );
    assert!(text.contains("the service's own move: no rules"), "{text}");
}

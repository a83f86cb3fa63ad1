//! Each rule's effect for one stage entry happens once: duplicates, field edits and stale
//! entries create nothing more; a deal that re-enters a stage gets that stage's rules again.

use std::time::Duration;

use b24_robot::store::EntryAction;

use crate::helpers::{Options, TestApp, new_deal, spawn_app, spawn_app_with};

async fn app_with_settled_deal(title: &str) -> (TestApp, u64) {
    let app = spawn_app().await;
    let deal = new_deal(&app.sim, title).await;
    app.settle(Duration::from_secs(10)).await;
    (app, deal)
}

#[tokio::test]
async fn the_same_event_delivered_five_times_in_a_row_creates_one_task() {
    let app = spawn_app_with(Options {
        events: false,
        ..Options::default()
    })
    .await;
    app.started().await;
    let deal = new_deal(&app.sim, "Repeat LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    let body = app.event_body("ONCRMDEALUPDATE", deal, 1_766_047_124);
    let mut answers = Vec::new();
    for _ in 0..5 {
        let response = app.post_event(&body).await;
        assert_eq!(response.status().as_u16(), 200);
        answers.push(response.text().await.expect("body").trim().to_string());
    }
    assert_eq!(
        answers,
        [
            "recorded",
            "duplicate",
            "duplicate",
            "duplicate",
            "duplicate"
        ]
    );

    app.wait_until(Duration::from_secs(10), "a task", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_five_times_at_once_creates_one_task() {
    let app = spawn_app_with(Options {
        events: false,
        ..Options::default()
    })
    .await;
    app.started().await;
    let deal = new_deal(&app.sim, "Burst LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    let body = app.event_body("ONCRMDEALUPDATE", deal, 1_766_047_124);
    let posts = (0..5).map(|_| async {
        let response = app.post_event(&body).await;
        (
            response.status().as_u16(),
            response.text().await.expect("body").trim().to_string(),
        )
    });
    let answers = futures_join_all(posts).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|(_, text)| text == "recorded")
            .count(),
        1,
        "{answers:?}"
    );

    app.wait_until(Duration::from_secs(10), "a task", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

/// Runs the futures concurrently on this task (no extra dependency for `join_all`).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in set.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

#[tokio::test]
async fn a_field_edit_without_a_stage_change_creates_nothing_and_costs_one_batch() {
    let (app, deal) = app_with_settled_deal("Edit LLC").await;
    // Warm the caches with a real stage entry first.
    app.sim.move_deal(deal, "PREPARATION").await;
    app.wait_until(Duration::from_secs(10), "a task", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    let tasks_before = app.sim.tasks().len();
    // Another second than the move's event: see `next_second`.
    app.next_second().await;
    let before = app.sim.request_count();

    let delivery = app
        .sim
        .update_deal(deal, serde_json::json!({ "OPPORTUNITY": "2500.00" }))
        .await;
    assert_eq!(delivery.status, Some(200));
    app.settle(Duration::from_secs(10)).await;

    let requests = app.sim.requests()[before..].to_vec();
    let shape: Vec<(String, Vec<String>)> = requests
        .iter()
        .map(|r| (r.method.clone(), r.sub_methods.clone()))
        .collect();
    assert_eq!(
        shape,
        vec![(
            "batch".to_string(),
            vec![
                "crm.stagehistory.list".to_string(),
                "crm.deal.list".to_string()
            ]
        )],
        "one read batch and nothing else"
    );
    assert_eq!(app.sim.tasks().len(), tasks_before);
    app.stop().await;
}

#[tokio::test]
async fn a_deal_that_leaves_a_stage_and_re_enters_it_between_two_reads_gets_its_rules_again() {
    let (app, deal) = app_with_settled_deal("Boomerang LLC").await;
    app.sim.move_deal(deal, "PREPARATION").await;
    app.wait_until(Duration::from_secs(10), "the first task", |sim| {
        sim.tasks_for_deal(deal).len() == 1
    })
    .await;
    app.settle(Duration::from_secs(10)).await;

    // A→B→A with no read in between: only the last event arrives (in another second than
    // the first move's event: see `next_second`).
    app.next_second().await;
    app.sim.move_deal_silently(deal, "EXECUTING").await;
    app.sim.move_deal(deal, "PREPARATION").await;
    app.wait_until(Duration::from_secs(10), "a second task", |sim| {
        sim.tasks_for_deal(deal).len() >= 2
    })
    .await;
    app.settle(Duration::from_secs(10)).await;

    let tasks = app.sim.tasks_for_deal(deal);
    assert_eq!(tasks.len(), 2, "{tasks:#?}");
    assert_ne!(
        tasks[0]["XML_ID"], tasks[1]["XML_ID"],
        "one task per stage entry"
    );
    let entries = app.store.entries(deal).expect("entries");
    let executing = entries
        .iter()
        .find(|e| e.entry.stage_id == "EXECUTING")
        .expect("the EXECUTING entry is recorded");
    assert!(
        matches!(executing.action, EntryAction::Superseded { .. }),
        "{:?}",
        executing.action
    );
    app.stop().await;
}

#[tokio::test]
async fn an_entry_the_deal_already_left_is_recorded_but_not_acted_on() {
    let (app, deal) = app_with_settled_deal("Passer-by LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;
    app.sim.move_deal(deal, "EXECUTING").await;
    app.settle(Duration::from_secs(10)).await;

    assert!(
        app.sim.tasks_for_deal(deal).is_empty(),
        "PREPARATION's rule must not fire"
    );
    let entries = app.store.entries(deal).expect("entries");
    let stages: Vec<(&str, &EntryAction)> = entries
        .iter()
        .map(|e| (e.entry.stage_id.as_str(), &e.action))
        .collect();
    assert_eq!(
        stages,
        vec![
            ("NEW", &EntryAction::Acted),
            (
                "PREPARATION",
                &EntryAction::Superseded {
                    now_in: Some("EXECUTING".into())
                }
            ),
            ("EXECUTING", &EntryAction::Acted),
        ]
    );
    app.stop().await;
}

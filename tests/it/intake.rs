//! The event endpoint, fed raw bodies exactly as Bitrix24 posts them (`fixtures/events/`):
//! what is recorded, what is refused (413, 401, 400, in that order) and that a refused delivery
//! never reaches the portal.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, fixture, new_deal, new_deal_with, spawn_app_with};

const FORM: &str = "application/x-www-form-urlencoded";

/// A service whose portal sends no events: only the deliveries a test posts reach it.
async fn quiet_app(settings: Vec<(&'static str, String)>) -> TestApp {
    let app = spawn_app_with(Options {
        events: false,
        settings,
        ..Options::default()
    })
    .await;
    app.started().await;
    app
}

async fn assert_refused(
    app: &TestApp,
    body: impl Into<reqwest::Body>,
    content_type: Option<&str>,
    status: u16,
    what: &str,
) {
    let before = app.sim.request_count();
    let response = app.post_raw(body, content_type).await;
    assert_eq!(response.status().as_u16(), status, "{what}");
    let text = response.text().await.expect("a body");
    let reason = text.trim_end_matches('\n');
    assert!(
        !reason.is_empty() && !reason.contains('\n'),
        "{what}: a one-line reason, got {text:?}"
    );
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        app.sim.request_count(),
        before,
        "{what}: no REST call may follow a refused delivery"
    );
    assert_eq!(app.store.queue_len(), 0, "{what}: nothing may be queued");
}

#[tokio::test]
async fn percent_encoded_and_raw_bracket_deliveries_are_recorded_and_acted_on() {
    let app = quiet_app(Vec::new()).await;
    let moved = new_deal(&app.sim, "Encoded LLC").await;
    app.sim.move_deal_silently(moved, "PREPARATION").await;
    let created = new_deal_with(&app.sim, "Raw brackets LLC", "PREPARATION", json!({})).await;

    let response = app
        .post_raw(fixture("deal-update-encoded.txt", moved), Some(FORM))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let response = app
        .post_raw(fixture("deal-add-raw-brackets.txt", created), Some(FORM))
        .await;
    assert_eq!(response.status().as_u16(), 200);

    app.wait_until(Duration::from_secs(10), "a task for each deal", |sim| {
        !sim.tasks_for_deal(moved).is_empty() && !sim.tasks_for_deal(created).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[moved, created]), vec![1, 1]);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_without_event_handler_id_and_ts_is_recorded_once() {
    let app = quiet_app(Vec::new()).await;
    let deal = new_deal(&app.sim, "No ts LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    let body = fixture("no-handler-id-no-ts.txt", deal);
    let first = app.post_raw(body.clone(), Some(FORM)).await;
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.text().await.expect("body").trim(), "recorded");
    // Without `ts` the same normalised body is the same delivery.
    let again = app.post_raw(body, Some(FORM)).await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(again.text().await.expect("body").trim(), "duplicate");

    app.wait_until(Duration::from_secs(10), "a task", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_refused_with_401_and_reaches_nothing() {
    let app = quiet_app(Vec::new()).await;
    let deal = new_deal(&app.sim, "Token LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    assert_refused(
        &app,
        fixture("wrong-token.txt", deal),
        Some(FORM),
        401,
        "wrong token",
    )
    .await;
    assert_refused(
        &app,
        fixture("missing-token.txt", deal),
        Some(FORM),
        401,
        "missing token",
    )
    .await;
    // The token is checked before the form: a malformed delivery without it is a 401, not a 400.
    assert_refused(
        &app,
        fixture("missing-token.txt", deal),
        Some("application/json"),
        401,
        "no token, JSON",
    )
    .await;
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn malformed_deliveries_are_refused_with_400_and_a_one_line_reason() {
    let app = quiet_app(Vec::new()).await;
    let deal = new_deal(&app.sim, "Malformed LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    assert_refused(
        &app,
        fixture("garbage.txt", deal),
        Some(FORM),
        400,
        "garbage",
    )
    .await;
    assert_refused(
        &app,
        fixture("deal-update-encoded.txt", deal),
        Some("application/json"),
        400,
        "JSON content type",
    )
    .await;
    assert_refused(
        &app,
        fixture("deal-update-encoded.txt", deal),
        None,
        400,
        "no content type",
    )
    .await;
    assert_refused(
        &app,
        fixture("missing-deal-id.txt", deal),
        Some(FORM),
        400,
        "no deal id",
    )
    .await;
    assert_refused(
        &app,
        fixture("non-numeric-deal-id.txt", deal),
        Some(FORM),
        400,
        "non-numeric deal id",
    )
    .await;
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_max_body_is_refused_with_413_before_the_token_is_looked_at() {
    let app = quiet_app(vec![("server.max_body", "1KiB".into())]).await;
    let deal = new_deal(&app.sim, "Big LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    let padding = format!("&data%5BFIELDS%5D%5BCOMMENTS%5D={}", "x".repeat(1100));
    let big = format!("{}{padding}", fixture("deal-update-encoded.txt", deal));
    assert_refused(&app, big, Some(FORM), 413, "too large").await;
    let big_wrong_token = format!("{}{padding}", fixture("wrong-token.txt", deal));
    assert_refused(
        &app,
        big_wrong_token,
        Some(FORM),
        413,
        "too large, wrong token",
    )
    .await;

    // Under the limit the same delivery goes through.
    let response = app
        .post_raw(fixture("deal-update-encoded.txt", deal), Some(FORM))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    app.wait_until(Duration::from_secs(10), "a task", |sim| {
        !sim.tasks_for_deal(deal).is_empty()
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_event_is_answered_200_and_dropped() {
    let app = quiet_app(Vec::new()).await;
    let deal = new_deal(&app.sim, "Deleted LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    let before = app.sim.request_count();
    let response = app
        .post_raw(fixture("deal-delete.txt", deal), Some(FORM))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(
        app.sim.request_count(),
        before,
        "a dropped event calls nothing"
    );
    assert_eq!(app.store.queue_len(), 0);
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn healthz_answers_200_and_readyz_answers_json() {
    let app = quiet_app(Vec::new()).await;
    let base = format!("http://127.0.0.1:{}", app.port);
    let health = app
        .client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("answers");
    assert_eq!(health.status().as_u16(), 200);

    let ready = app
        .client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("answers");
    assert_eq!(ready.status().as_u16(), 200);
    let content_type = ready
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = ready.json().await.expect("JSON");
    assert!(
        body.get("rules_version")
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    app.stop().await;
}

/// What a tracing subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().expect("log buffer").clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[test]
fn a_flood_of_refused_deliveries_logs_one_line_a_minute_while_the_metric_counts_each() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_env_filter("b24_robot=info")
        .finish();
    // The whole service runs on this thread, so the subscriber sees what it logs.
    let metrics = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let app = quiet_app(Vec::new()).await;
                for _ in 0..50 {
                    let wrong = app
                        .post_raw(fixture("wrong-token.txt", 7), Some(FORM))
                        .await;
                    assert_eq!(wrong.status().as_u16(), 401);
                    let garbage = app.post_raw(fixture("garbage.txt", 7), Some(FORM)).await;
                    assert_eq!(garbage.status().as_u16(), 400);
                }
                let metrics = app.metrics_text().await;
                app.stop().await;
                metrics
            })
    });
    let text = logs.text();
    let lines = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    assert_eq!(
        lines("wrong or missing auth[application_token]"),
        1,
        "{text}"
    );
    assert_eq!(lines("refused as malformed"), 1, "{text}");
    assert!(
        metrics.contains("b24robot_events_received_total{result=\"unauthorized\"} 50\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("b24robot_events_received_total{result=\"malformed\"} 50\n"),
        "{metrics}"
    );
}

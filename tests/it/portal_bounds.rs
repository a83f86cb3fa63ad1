//! What the service takes from a hostile portal: a redirect to another host is not followed
//! (the webhook's secret stays home), an answer past `portal.max_response` is not read, and an
//! error text of megabytes is stored and shown cut.

use std::time::Duration;

use b24_robot::sandbox::{Faults, SimConfig, SimPortal};
use serde_json::Value;

use crate::helpers::{Options, TestApp, new_deal, samples, spawn_app_with, value};

const ADMIN: &str = "bounds-admin";
const SECRET: &str = "hushhushwebhookcode";

async fn app_with(settings: Vec<(&'static str, String)>) -> TestApp {
    let mut settings = settings;
    settings.push(("server.admin_token", ADMIN.into()));
    let app = spawn_app_with(Options {
        sim: SimConfig {
            webhook_secret: SECRET.into(),
            ..SimConfig::default()
        },
        settings,
        ..Options::default()
    })
    .await;
    app.started().await;
    app
}

/// Makes a deal, then moves it into the task rule's stage while the portal answers with
/// `faults`; returns the deal and its job once the job records an error that `matches`.
async fn moved_under(
    app: &TestApp,
    faults: Faults,
    matches: impl Fn(&str) -> bool,
) -> (u64, b24_robot::store::QueuedDeal) {
    let deal = new_deal(&app.sim, "Hostile LLC").await;
    app.settle(Duration::from_secs(10)).await;
    app.sim.set_faults(faults);
    app.sim.move_deal(deal, "PREPARATION").await;
    let job = app
        .job_when(deal, Duration::from_secs(10), "the error", |job| {
            job.last_error.as_deref().is_some_and(&matches)
        })
        .await;
    (deal, job)
}

/// The value of a metric.
fn metric(text: &str, name: &str) -> f64 {
    value(&samples(text), name)
}

#[tokio::test]
async fn a_redirect_to_a_foreign_host_sends_it_nothing_and_parks_the_job_with_the_reason() {
    let foreign = SimPortal::start(SimConfig::default())
        .await
        .expect("the foreign host starts");
    foreign.with_default_portal();
    let foreign_origin = url::Url::parse(&foreign.webhook_url())
        .expect("url")
        .origin()
        .ascii_serialization();
    let app = app_with(Vec::new()).await;
    let faults = Faults {
        redirect_to: Some(foreign_origin.clone()),
        ..Faults::default()
    };
    let (deal, job) = moved_under(&app, faults, |e| e.contains("not followed")).await;
    assert!(job.parked, "refused for good, not retried: {job:?}");
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains(&foreign_origin) && error.contains("another port"),
        "{error}"
    );
    assert!(!error.contains(SECRET), "the secret leaked: {error}");
    assert_eq!(
        foreign.request_count(),
        0,
        "nothing reached the foreign host"
    );
    assert!(foreign.tasks().is_empty());
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    let metrics = app.metrics_text().await;
    assert!(metric(&metrics, "b24robot_rest_redirects_refused_total") >= 1.0);
    assert_eq!(metric(&metrics, "b24robot_rest_redirects_total"), 0.0);
    assert_eq!(app.readyz().await["portal_renamed"], Value::Null);

    // The redirect stops: the job, re-run by an operator, makes its one task on the portal.
    app.sim.set_faults(Faults::default());
    let (_, retried) = app
        .admin(
            ADMIN,
            reqwest::Method::POST,
            &format!("/admin/jobs/{deal}/retry"),
        )
        .await;
    assert_eq!(retried["retried"], serde_json::json!([deal]));
    app.wait_until(Duration::from_secs(10), "the task", |sim| {
        sim.tasks_for_deal(deal).len() == 1
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(foreign.request_count(), 0);
    app.stop().await;
}

#[tokio::test]
async fn an_answer_over_portal_max_response_fails_that_call_and_the_service_goes_on() {
    let app = app_with(vec![("portal.max_response", "1MiB".into())]).await;
    // 64 MiB of whitespace before every answer, made up as it is sent.
    let faults = Faults {
        huge_answer_bytes: Some(64 * 1024 * 1024),
        ..Faults::default()
    };
    let (deal, job) = moved_under(&app, faults, |e| e.contains("portal.max_response")).await;
    assert!(!job.parked, "retried by the job's own backoff: {job:?}");
    assert!(app.sim.tasks_for_deal(deal).is_empty());
    let metrics = app.metrics_text().await;
    assert!(metric(&metrics, "b24robot_rest_answers_too_large_total") >= 1.0);
    assert_eq!(
        app.readyz().await["ready"],
        true,
        "the service answers meanwhile"
    );

    // Answers of a normal size again: the same job goes through.
    app.sim.set_faults(Faults::default());
    app.wait_until(Duration::from_secs(10), "the task", |sim| {
        sim.tasks_for_deal(deal).len() == 1
    })
    .await;
    app.settle(Duration::from_secs(10)).await;
    assert_eq!(app.sim.tasks_for_deal(deal).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_megabytes_long_error_description_is_cut_in_the_stored_error_and_in_admin_jobs() {
    let app = app_with(Vec::new()).await;
    let faults = Faults {
        huge_error_bytes: Some(5 * 1024 * 1024),
        ..Faults::default()
    };
    let (deal, job) = moved_under(&app, faults, |e| e.contains("ERROR_CORE")).await;
    assert!(job.parked, "a 400 is refused for good: {job:?}");
    let bounded = |error: &str| {
        assert!(error.len() <= 2048 + 200, "{} bytes", error.len());
        assert!(
            error.contains("Ошибка") && error.contains("… [cut from 5242"),
            "{error}"
        );
    };
    bounded(job.last_error.as_deref().unwrap_or_default());
    let (_, jobs) = app.admin(ADMIN, reqwest::Method::GET, "/admin/jobs").await;
    let listed = jobs["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|job| job["deal_id"] == deal))
        .unwrap_or_else(|| panic!("deal {deal} in {jobs}"));
    bounded(listed["last_error"].as_str().unwrap_or_default());
    app.stop().await;
}

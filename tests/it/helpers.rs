//! `spawn_app()`: the real `Application`, on port 0, with a temporary store, against a simulated
//! portal that posts its events to it. Logs are quiet unless `TEST_LOG` is set.

use std::time::{Duration, Instant};

use b24_robot::configuration::{Settings, Sources};
use b24_robot::rules::RuleSet;
use b24_robot::sandbox::{SimConfig, SimPortal};
use b24_robot::startup::Application;
use b24_robot::store::Store;
use tokio::sync::oneshot;

pub const TOKEN: &str = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas";

/// A running service and its portal.
#[allow(dead_code)] // each test file uses a part of it
pub struct TestApp {
    pub sim: SimPortal,
    pub port: u16,
    pub store: Store,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a test may change before the service starts.
pub struct Options {
    pub rules: Vec<(String, String)>,
    pub sim: SimConfig,
    /// Extra settings, e.g. ("portal.requests_per_second", "1").
    pub settings: Vec<(&'static str, String)>,
    /// Register the outgoing webhook (events posted to the service).
    pub events: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rules: vec![task_rules()],
            sim: SimConfig::default(),
            settings: Vec::new(),
            events: true,
        }
    }
}

/// A rule file with one task rule on PREPARATION of the default pipeline.
pub fn task_rules() -> (String, String) {
    (
        "tasks.toml".into(),
        r#"
pipeline = 0

[[task]]
name = "offer"
stage = "PREPARATION"
title = "Send the offer: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }
"#
        .into(),
    )
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        b24_robot::telemetry::init(
            b24_robot::configuration::LogFormat::Pretty,
            "b24_robot=debug",
        );
    }
}

/// Fast timings for tests: short retries and sweeps, so the suite stays quick.
pub fn test_settings(
    dir: &std::path::Path,
    webhook_url: &str,
    extra: &[(&'static str, String)],
) -> Settings {
    let mut overrides: Vec<(String, String)> = vec![
        ("server.listen".into(), "127.0.0.1:0".into()),
        ("storage.dir".into(), dir.display().to_string()),
        ("portal.webhook_url".into(), webhook_url.into()),
        ("portal.application_token".into(), TOKEN.into()),
        ("portal.retry_base".into(), "20ms".into()),
        ("portal.retry_max".into(), "200ms".into()),
        ("portal.timeout".into(), "2s".into()),
        ("worker.retry_base".into(), "50ms".into()),
        ("worker.retry_max".into(), "500ms".into()),
        ("worker.max_attempts".into(), "50".into()),
        ("sync.poll_interval".into(), "60s".into()),
    ];
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Settings::load(&Sources {
        overrides,
        ..Sources::default()
    })
    .expect("test settings are valid")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    init_logs();
    let sim = SimPortal::start(options.sim)
        .await
        .expect("simulated portal starts");
    b24_robot::demo::seed_portal(&sim);
    let dir = tempfile::tempdir().expect("temp dir");
    start_on(sim, dir, &options.rules, &options.settings, options.events).await
}

/// Starts the service on an existing portal and store folder (a restart).
pub async fn start_on(
    sim: SimPortal,
    dir: tempfile::TempDir,
    rules: &[(String, String)],
    extra: &[(&'static str, String)],
    events: bool,
) -> TestApp {
    let settings = test_settings(dir.path(), &sim.webhook_url(), extra);
    let (rules, _) = RuleSet::from_sources(rules).expect("test rules load");
    let app = Application::build(settings, rules)
        .await
        .expect("application builds");
    let port = app.port();
    let store = app.store();
    if events {
        sim.set_event_handler(
            Some(format!("http://127.0.0.1:{port}/bitrix24/events")),
            TOKEN,
        );
    } else {
        sim.set_event_handler(None, TOKEN);
    }
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .expect("the service stops cleanly");
    });
    TestApp {
        sim,
        port,
        store,
        client: reqwest::Client::new(),
        dir,
        stop: Some(tx),
        task: Some(task),
    }
}

#[allow(dead_code)]
impl TestApp {
    pub fn events_url(&self) -> String {
        format!("http://127.0.0.1:{}/bitrix24/events", self.port)
    }

    /// Posts a raw form body as Bitrix24 would.
    pub async fn post_event(&self, body: &str) -> reqwest::Response {
        self.client
            .post(self.events_url())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .expect("the service answers")
    }

    /// A delivery of `event` for `deal_id` exactly as Bitrix24 encodes it.
    pub fn event_body(&self, event: &str, deal_id: u64, ts: u64) -> String {
        format!(
            "event={event}&event_handler_id=975&data%5BFIELDS%5D%5BID%5D={deal_id}&ts={ts}&auth%5Bdomain%5D=some-domain.bitrix24.com&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&auth%5Bmember_id%5D={}&auth%5Bapplication_token%5D={TOKEN}",
            self.sim.member_id()
        )
    }

    /// Waits until the service has nothing queued (or panics after `limit`).
    pub async fn settle(&self, limit: Duration) {
        let start = Instant::now();
        let mut empty_since: Option<Instant> = None;
        loop {
            if self.store.queue_len() == 0 {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(150) {
                    return;
                }
            } else {
                empty_since = None;
            }
            assert!(
                start.elapsed() < limit,
                "the service did not settle within {limit:?}: {} queued",
                self.store.queue_len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `check` holds (or panics after `limit`).
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&SimPortal) -> bool,
    ) {
        let start = Instant::now();
        while !check(&self.sim) {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the service gracefully; returns the portal and the store folder for a restart.
    pub async fn stop(mut self) -> (SimPortal, tempfile::TempDir) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("service task");
        }
        (self.sim.clone(), self.dir)
    }
}

/// Creates a deal in NEW of the default pipeline, assigned to user 3.
pub async fn new_deal(sim: &SimPortal, title: &str) -> u64 {
    sim.create_deal(serde_json::json!({
        "TITLE": title, "ASSIGNED_BY_ID": "3", "OPPORTUNITY": "1000.00", "CURRENCY_ID": "RUB",
        "CATEGORY_ID": "0", "STAGE_ID": "NEW"
    }))
    .await
}

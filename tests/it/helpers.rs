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
    b24_robot::sandbox::seed::seed_portal(&sim);
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
    launch(sim, dir, app, events)
}

/// Runs a built application until [`TestApp::stop`], as the portal's event handler or not.
fn launch(sim: SimPortal, dir: tempfile::TempDir, app: Application, events: bool) -> TestApp {
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

// ----- added for the service-core tests (issue 2) -----

/// A raw event body from `fixtures/events/`, with `{DEAL_ID}` replaced.
#[allow(dead_code)]
pub fn fixture(name: &str, deal_id: u64) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    text.trim_end_matches(['\r', '\n'])
        .replace("{DEAL_ID}", &deal_id.to_string())
}

/// A started simulated portal seeded like the demo's, with no event handler yet: what a test
/// does to it before the service first starts is invisible to the service.
#[allow(dead_code)]
pub async fn seeded_portal(config: SimConfig) -> SimPortal {
    init_logs();
    let sim = SimPortal::start(config)
        .await
        .expect("simulated portal starts");
    b24_robot::sandbox::seed::seed_portal(&sim);
    sim
}

/// Creates a deal in `stage` of the default pipeline with extra fields, assigned to user 3.
#[allow(dead_code)]
pub async fn new_deal_with(
    sim: &SimPortal,
    title: &str,
    stage: &str,
    extra: serde_json::Value,
) -> u64 {
    let mut fields = serde_json::json!({
        "TITLE": title, "ASSIGNED_BY_ID": "3", "OPPORTUNITY": "1000.00", "CURRENCY_ID": "RUB",
        "CATEGORY_ID": "0", "STAGE_ID": stage
    });
    if let (Some(base), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    sim.create_deal(fields).await
}

/// A rule file from its text.
#[allow(dead_code)]
pub fn rule_file(name: &str, text: &str) -> (String, String) {
    (name.to_string(), text.to_string())
}

#[allow(dead_code)]
impl TestApp {
    /// Posts `body` with the given `Content-Type` (none when `None`).
    pub async fn post_raw(
        &self,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.events_url()).body(body);
        if let Some(ct) = content_type {
            request = request.header("Content-Type", ct);
        }
        request.send().await.expect("the service answers")
    }

    /// [`TestApp::settle`], then waits until no REST request other than the sweep's own
    /// `crm.stagehistory.list` has reached the portal for a while (retries and writes are over).
    pub async fn settle_quiet(&self, limit: Duration) {
        self.settle(limit).await;
        let quiet = Duration::from_millis(400);
        let start = Instant::now();
        let work = |sim: &SimPortal| {
            sim.requests()
                .iter()
                .filter(|r| r.method != "crm.stagehistory.list")
                .count()
        };
        let mut count = work(&self.sim);
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = work(&self.sim);
            if now != count {
                count = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet && self.store.queue_len() == 0 {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "the portal did not go quiet within {limit:?}"
            );
        }
    }

    /// The number of tasks bound to each of `deals`, in order.
    pub fn task_counts(&self, deals: &[u64]) -> Vec<usize> {
        deals
            .iter()
            .map(|d| self.sim.tasks_for_deal(*d).len())
            .collect()
    }
}

#[allow(dead_code)]
impl TestApp {
    /// Waits for the start-up sweep to have run and the portal to go quiet: what happens in the
    /// portal from now on is only seen through events (and later sweeps).
    pub async fn started(&self) {
        self.wait_until(Duration::from_secs(10), "the start-up sweep", |sim| {
            sim.requests()
                .iter()
                .filter(|r| r.method == "crm.stagehistory.list")
                .count()
                >= 2
        })
        .await;
        self.settle_quiet(Duration::from_secs(10)).await;
    }
}

/// Sleeps to the start of the next wall-clock second. Bitrix24's `ts` counts seconds, and two
/// deliveries of the same event for the same deal within one second are one delivery to the
/// service (the spec's dedupe key); a test that makes two such changes in a row waits here
/// between them, as the demo does.
#[allow(dead_code)]
pub async fn next_second() {
    let into_second = b24_robot::store::now_ms() % 1000;
    tokio::time::sleep(Duration::from_millis(1000 - into_second + 5)).await;
}

// ----- added for operations (issue 5) -----

/// Starts the service as `serve` does: its rules read from a real folder, `<dir>/rules` (see
/// [`TestApp::rules_dir`]), that it re-reads on SIGHUP and when a file in it changes.
#[allow(dead_code)]
pub async fn spawn_app_with_rules_dir(files: &[(String, String)]) -> TestApp {
    let sim = seeded_portal(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules folder");
    for (name, text) in files {
        std::fs::write(rules_dir.join(name), text).expect("rule file");
    }
    let settings = test_settings(
        dir.path(),
        &sim.webhook_url(),
        &[("rules.dir", rules_dir.display().to_string())],
    );
    let (rules, _) = RuleSet::load_dir(&rules_dir).expect("test rules load");
    let app = Application::build(settings, rules)
        .await
        .expect("application builds")
        .with_rule_reload();
    launch(sim, dir, app, true)
}

#[allow(dead_code)]
impl TestApp {
    /// The rules folder of [`spawn_app_with_rules_dir`].
    pub fn rules_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("rules")
    }

    /// `GET /readyz` as JSON (asserting the 200).
    pub async fn readyz(&self) -> serde_json::Value {
        let answer = self
            .client
            .get(format!("http://127.0.0.1:{}/readyz", self.port))
            .send()
            .await
            .expect("the service answers");
        assert_eq!(answer.status(), 200, "/readyz");
        answer.json().await.expect("/readyz is JSON")
    }

    /// `GET /metrics` as text (asserting the 200).
    pub async fn metrics_text(&self) -> String {
        let answer = self
            .client
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .await
            .expect("the service answers");
        assert_eq!(answer.status(), 200, "/metrics");
        answer.text().await.expect("text")
    }
}

// ----- added for a hostile portal (issue 8) -----

/// Calls of `method` the portal received, top level or inside a `batch`.
#[allow(dead_code)]
pub fn calls_of(sim: &SimPortal, method: &str) -> usize {
    sim.requests()
        .iter()
        .map(|r| {
            usize::from(r.method == method) + r.sub_methods.iter().filter(|m| *m == method).count()
        })
        .sum()
}

impl TestApp {
    /// An admin API request with `token`: its status and its JSON answer (`Null` when none).
    pub async fn admin(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
    ) -> (u16, serde_json::Value) {
        let answer = self
            .client
            .request(method, format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(token)
            .send()
            .await
            .expect("the admin API answers");
        let status = answer.status().as_u16();
        let body = answer.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }
}

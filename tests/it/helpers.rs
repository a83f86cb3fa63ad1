//! `spawn_app()`: the real `Application`, on port 0, with a temporary store, against a simulated
//! portal that posts its events to it. Logs are quiet unless `TEST_LOG` is set.
//!
//! Tests wait on what they can observe, never for a guessed while: what the worker reports on its
//! activity channel ([`TestApp::reported`]), and otherwise state looked at again and again
//! against a deadline ([`poll`]: the store, the portal's records, a child process, an HTTP
//! answer). [`TestApp::settle`] is both: nothing queued, and nothing left in the portal's event
//! queue that would queue more.

use std::time::{Duration, Instant};

use b24_robot::configuration::{Settings, Sources};
use b24_robot::rules::RuleSet;
use b24_robot::sandbox::{SimConfig, SimPortal};
use b24_robot::startup::Application;
use b24_robot::store::Store;
use b24_robot::worker::Activity;
use tokio::sync::{mpsc, oneshot, watch};

pub const TOKEN: &str = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas";

/// How often [`poll`] looks again.
const POLL: Duration = Duration::from_millis(10);

/// Looks at `check` every `every` until it gives a value, for at most `limit` (`None` then).
/// The suite's one poll loop, for state that no channel reports.
pub async fn poll_within<T>(
    every: Duration,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if start.elapsed() >= limit {
            return None;
        }
        // Real time: what is looked at changes in other tasks or processes, which tell no one.
        tokio::time::sleep(every).await;
    }
}

/// [`poll_within`] at the usual pace; panics after `limit`, naming `what`.
pub async fn poll<T>(limit: Duration, what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    poll_within(POLL, limit, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for: {what}"))
}

/// [`poll`] for a condition.
pub async fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    poll(limit, what, async || check().then_some(())).await;
}

/// A running service and its portal.
pub struct TestApp {
    pub sim: SimPortal,
    pub port: u16,
    pub store: Store,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// Everything the worker reported so far, in order: what a test waits on when the
    /// behaviour is the worker's.
    activity: watch::Receiver<Vec<Activity>>,
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
    /// The clock of the time-driven rules (the system's when `None`): a test moves it on.
    pub clock: Option<b24_robot::clock::Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rules: vec![task_rules()],
            sim: SimConfig::default(),
            settings: Vec::new(),
            events: true,
            clock: None,
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
    let sim = seeded_portal(options.sim).await;
    let dir = tempfile::tempdir().expect("temp dir");
    match options.clock {
        Some(clock) => start_with_clock(sim, dir, &options.rules, &options.settings, clock).await,
        None => start_on(sim, dir, &options.rules, &options.settings, options.events).await,
    }
}

/// Starts the service on an existing portal and store folder with the time-driven rules on
/// `clock` (a restart of a test that moves time on), as the portal's event handler.
pub async fn start_with_clock(
    sim: SimPortal,
    dir: tempfile::TempDir,
    rules: &[(String, String)],
    extra: &[(&'static str, String)],
    clock: b24_robot::clock::Clock,
) -> TestApp {
    build_and_launch(sim, dir, (rules, extra), Some(clock), true).await
}

/// Extra settings of a test: (key, value).
type Extra<'a> = &'a [(&'static str, String)];

/// Builds the application on `sim` and `dir` (its clock `clock`, the system's when `None`) and
/// runs it ([`launch`]).
async fn build_and_launch(
    sim: SimPortal,
    dir: tempfile::TempDir,
    (rules, extra): (&[(String, String)], Extra<'_>),
    clock: Option<b24_robot::clock::Clock>,
    events: bool,
) -> TestApp {
    let settings = test_settings(dir.path(), &sim.webhook_url(), extra);
    let (rules, _) = RuleSet::from_sources(rules).expect("test rules load");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut app = Application::build_with_activity(settings, rules, Some(tx))
        .await
        .expect("application builds");
    if let Some(clock) = clock {
        app = app.with_clock(clock);
    }
    launch(sim, dir, app, rx, events)
}

/// Starts the service on an existing portal and store folder (a restart).
pub async fn start_on(
    sim: SimPortal,
    dir: tempfile::TempDir,
    rules: &[(String, String)],
    extra: &[(&'static str, String)],
    events: bool,
) -> TestApp {
    build_and_launch(sim, dir, (rules, extra), None, events).await
}

/// Runs a built application until [`TestApp::stop`], as the portal's event handler or not,
/// collecting what its worker reports on `reports`.
fn launch(
    sim: SimPortal,
    dir: tempfile::TempDir,
    app: Application,
    mut reports: mpsc::UnboundedReceiver<Activity>,
    events: bool,
) -> TestApp {
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
    let (log, activity) = watch::channel(Vec::new());
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            log.send_modify(|seen| seen.push(report));
        }
    });
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
        activity,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn events_url(&self) -> String {
        format!("http://127.0.0.1:{}/bitrix24/events", self.port)
    }

    /// Posts a raw form body as Bitrix24 would.
    pub async fn post_event(&self, body: &str) -> reqwest::Response {
        self.post_raw(body.to_string(), Some("application/x-www-form-urlencoded"))
            .await
    }

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

    /// A delivery of `event` for `deal_id` exactly as Bitrix24 encodes it.
    pub fn event_body(&self, event: &str, deal_id: u64, ts: u64) -> String {
        format!(
            "event={event}&event_handler_id=975&data%5BFIELDS%5D%5BID%5D={deal_id}&ts={ts}&auth%5Bdomain%5D=some-domain.bitrix24.com&auth%5Bclient_endpoint%5D=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F&auth%5Bserver_endpoint%5D=https%3A%2F%2Foauth.bitrix.info%2Frest%2F&auth%5Bmember_id%5D={}&auth%5Bapplication_token%5D={TOKEN}",
            self.sim.member_id()
        )
    }

    /// Waits until the service is idle: nothing queued, and nothing left in the portal's event
    /// queue (the echoes of the service's own writes included) that would queue more. A job
    /// leaves the queue only once its effects are applied or failed for good, and the portal
    /// queues a write's echo before it answers the write, so once both are empty with no
    /// delivery between the two looks, the service has nothing more to do (panics after
    /// `limit`; parked jobs count as queued).
    pub async fn settle(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            poll(left, "the service to settle (an empty queue)", async || {
                (self.store.queue_len() == 0).then_some(())
            })
            .await;
            let delivered = self.sim.events_sent().len();
            self.sim.settle().await;
            if self.sim.events_sent().len() == delivered && self.store.queue_len() == 0 {
                return;
            }
        }
    }

    /// Waits until `check` holds on the portal (or panics after `limit`).
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&SimPortal) -> bool,
    ) {
        wait_for(limit, what, || check(&self.sim)).await;
    }

    /// Waits for the start-up sweep to have read the portal, and for the service to settle:
    /// what happens in the portal from now on is only seen through events (and later sweeps).
    /// The portal records a call once it has run it, so the sweep's view is fixed by then.
    pub async fn started(&self) {
        self.wait_until(Duration::from_secs(10), "the start-up sweep", |sim| {
            sim.requests()
                .iter()
                .filter(|r| r.method == "crm.stagehistory.list")
                .count()
                >= 2
        })
        .await;
        self.settle(Duration::from_secs(10)).await;
    }

    /// A point in the worker's reports to wait from: [`TestApp::reported`] looks past it.
    pub fn mark(&self) -> usize {
        self.activity.borrow().len()
    }

    /// What the worker reported since `mark`, in order.
    pub fn reports_since(&self, mark: usize) -> Vec<Activity> {
        self.activity.borrow().iter().skip(mark).cloned().collect()
    }

    /// Waits until the worker reports, after `mark`, an activity that `wanted` picks; returns
    /// what it picked (panics after `limit`, naming `what`).
    pub async fn reported<T>(
        &self,
        mark: usize,
        limit: Duration,
        what: &str,
        wanted: impl Fn(&Activity) -> Option<T>,
    ) -> T {
        let mut reports = self.activity.clone();
        let seen = tokio::time::timeout(
            limit,
            reports.wait_for(|seen| seen.iter().skip(mark).any(|a| wanted(a).is_some())),
        )
        .await;
        match seen {
            Ok(Ok(seen)) => seen
                .iter()
                .skip(mark)
                .find_map(&wanted)
                .expect("the report just seen"),
            Ok(Err(_)) => panic!("the worker stopped before it reported: {what}"),
            Err(_) => panic!(
                "timed out after {limit:?} waiting for the worker to report: {what}; it reported {:#?}",
                self.reports_since(mark)
            ),
        }
    }

    /// Waits until the worker reports `deal`'s job finished after `mark`.
    pub async fn deal_done(&self, mark: usize, deal: u64) {
        self.reported(
            mark,
            Duration::from_secs(20),
            &format!("deal {deal} done"),
            |a| matches!(a, Activity::DealDone { deal_id } if *deal_id == deal).then_some(()),
        )
        .await;
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

    /// The number of tasks bound to each of `deals`, in order.
    pub fn task_counts(&self, deals: &[u64]) -> Vec<usize> {
        deals
            .iter()
            .map(|d| self.sim.tasks_for_deal(*d).len())
            .collect()
    }

    /// Waits for the next second of the wall clock after the last event the portal sent (see
    /// [`next_second`]).
    pub async fn next_second(&self) {
        next_second(&self.sim).await;
    }

    /// A user moves `deal` to `stage` (in another second than the last event), the service
    /// takes the event, and settles (within `limit`).
    pub async fn move_to(&self, deal: u64, stage: &str, limit: Duration) {
        self.next_second().await;
        let delivery = self.sim.move_deal(deal, stage).await;
        assert_eq!(delivery.status, Some(200), "the service accepts the event");
        self.settle(limit).await;
    }
}

/// A JSON value as text: `"3"` and `3` both read `3`.
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Creates a deal in NEW of the default pipeline, assigned to user 3.
pub async fn new_deal(sim: &SimPortal, title: &str) -> u64 {
    new_deal_with(sim, title, "NEW", serde_json::json!({})).await
}

/// A raw event body from `fixtures/events/`, with `{DEAL_ID}` replaced.
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
pub async fn seeded_portal(config: SimConfig) -> SimPortal {
    init_logs();
    let sim = SimPortal::start(config)
        .await
        .expect("simulated portal starts");
    b24_robot::sandbox::seed::seed_portal(&sim);
    sim
}

/// Creates a deal in `stage` of the default pipeline with extra fields, assigned to user 3.
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
pub fn rule_file(name: &str, text: &str) -> (String, String) {
    (name.to_string(), text.to_string())
}

/// Waits until the wall clock is past the `ts` of every event the portal has sent. Bitrix24's
/// `ts` counts seconds, and two deliveries of the same event for the same deal within one
/// second are one delivery to the service (the spec's dedupe key); a test that makes two such
/// changes in a row waits here between them, as a person would.
pub async fn next_second(sim: &SimPortal) {
    let last = sim
        .events_sent()
        .iter()
        .filter_map(|e| {
            e.body
                .split('&')
                .find_map(|pair| pair.strip_prefix("ts="))
                .and_then(|ts| ts.parse::<u64>().ok())
        })
        .max();
    let Some(last) = last else {
        return;
    };
    // The portal stamps `ts` from its clock (the wall clock, unless a test moves it).
    let now_ms = sim.clock().now_ms().max(0) as u64;
    let next_ms = (last + 1) * 1000;
    if now_ms < next_ms {
        // Real time: the dedupe is keyed on `ts`, which only real time moves on here.
        tokio::time::sleep(Duration::from_millis(next_ms - now_ms + 5)).await;
    }
}

/// Waits for the wall clock's next second. The first start is recorded to the second and a
/// stage entry of that same second counts as after it (acted on rather than missed): a test
/// whose entries must count as older than a first start waits here before it starts.
pub async fn into_the_next_second() {
    let now = b24_robot::store::now_ms();
    // Real time: the first start and the portal's CREATED_TIME both come from the wall clock.
    tokio::time::sleep(Duration::from_millis(1_000 - now % 1_000 + 5)).await;
}

/// Starts the service as `serve` does: its rules read from a real folder, `<dir>/rules` (see
/// [`TestApp::rules_dir`]), that it re-reads on SIGHUP and when a file in it changes.
pub async fn spawn_app_with_rules_dir(files: &[(String, String)]) -> TestApp {
    spawn_app_with_rules_dir_and(files, &[]).await
}

/// As [`spawn_app_with_rules_dir`], with `extra` settings.
pub async fn spawn_app_with_rules_dir_and(
    files: &[(String, String)],
    extra: &[(&'static str, String)],
) -> TestApp {
    let sim = seeded_portal(SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir_all(&rules_dir).expect("rules folder");
    for (name, text) in files {
        std::fs::write(rules_dir.join(name), text).expect("rule file");
    }
    let mut settings = vec![("rules.dir", rules_dir.display().to_string())];
    settings.extend_from_slice(extra);
    let settings = test_settings(dir.path(), &sim.webhook_url(), &settings);
    let (rules, _) = RuleSet::load_dir(&rules_dir).expect("test rules load");
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Application::build_with_activity(settings, rules, Some(tx))
        .await
        .expect("application builds")
        .with_rule_reload();
    launch(sim, dir, app, rx, true)
}

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

    /// Waits until `deal`'s queue record satisfies `check`, and returns it.
    pub async fn job_when(
        &self,
        deal: u64,
        limit: Duration,
        what: &str,
        check: impl Fn(&b24_robot::store::QueuedDeal) -> bool,
    ) -> b24_robot::store::QueuedDeal {
        poll(limit, what, async || {
            self.store.queued(deal).ok().flatten().filter(|q| check(q))
        })
        .await
    }

    /// Waits until `deal`'s job is parked, and returns it.
    pub async fn parked(&self, deal: u64) -> b24_robot::store::QueuedDeal {
        self.job_when(
            deal,
            Duration::from_secs(15),
            &format!("deal {deal} parked"),
            |q| q.parked,
        )
        .await
    }
}

/// Calls of `method` the portal received, top level or inside a `batch`.
pub fn calls_of(sim: &SimPortal, method: &str) -> usize {
    sim.requests()
        .iter()
        .map(|r| {
            usize::from(r.method == method) + r.sub_methods.iter().filter(|m| *m == method).count()
        })
        .sum()
}

/// The samples of a `/metrics` exposition: `name{labels}` to value.
pub fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("`name value`");
            (key.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

/// One sample of [`samples`] (panics when it is not there).
pub fn value(samples: &std::collections::BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

/// The real binary in `cwd` with `args` and `env`, without the caller's `B24ROBOT__` settings
/// (so a developer's environment never changes a result).
pub fn run_binary_in(
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"));
    command.args(args).current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("B24ROBOT__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("the binary runs")
}

/// An output's stdout and stderr as text.
pub fn texts(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A `b24-robot sandbox` child in `cwd` with `args` and a free `--listen` port, once its control
/// API answers: the child (kill it when done) and the API's base URL.
pub async fn sandbox_child(cwd: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("address").port()
    };
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_b24-robot"))
        .current_dir(cwd)
        .arg("sandbox")
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the sandbox starts");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    poll(
        Duration::from_secs(10),
        "the sandbox's control API to answer",
        async || {
            client
                .get(format!("{base}/deals"))
                .send()
                .await
                .ok()
                .map(drop)
        },
    )
    .await;
    (child, base)
}

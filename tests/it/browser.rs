//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol, opens
//! the login page, types the admin token into the form and clicks its button (the form's real
//! POST sets the session cookie), then opens the plan report and finds the figures of the deals
//! won this month, in its table and on its chart. Over the whole visit the pages log no console
//! error (a script's exception, a `console.error`, a resource that failed to load), and at a
//! phone's width the plan page does not scroll sideways. Screenshots of both widths are saved
//! to `target/browser/` for a person to look at.
//!
//! The browser is `B24ROBOT_CHROMIUM` (which must then exist: a browser asked for by name is
//! never silently skipped), else the first of `chromium`, `chromium-browser` and `google-chrome`
//! on `PATH`. Without one the test says it was skipped and passes, unless
//! `B24ROBOT_REQUIRE_BROWSER` is set (as CI sets it, after installing Debian's `chromium`): then
//! it fails.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Options, new_deal_with, rule_file, spawn_app_with, task_rules};

const TOKEN: &str = "browser-admin-token";

/// How long any one step (a start, a page load, a reply) may take before the test fails.
const STEP: Duration = Duration::from_secs(30);

/// A laptop's and a phone's viewport, in CSS pixels.
const LAPTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (390, 844);

#[tokio::test]
async fn in_chromium_a_person_logs_in_and_reads_the_plan_on_a_laptop_and_a_phone() {
    let Some(executable) = chromium() else {
        return;
    };
    let month = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .format("%Y-%m");
    let plan = format!(
        "[[plan]]\nname = \"sales-month\"\nperiod = \"{month}\"\npipeline = 0\nmeasure = \"amount\"\ncurrency = \"RUB\"\ntargets = {{ 3 = 4000, 4 = 3000 }}\n"
    );
    let app = spawn_app_with(Options {
        rules: vec![task_rules(), rule_file("plan.toml", &plan)],
        settings: vec![("server.admin_token", TOKEN.to_string())],
        ..Options::default()
    })
    .await;
    // Vera (3) wins 1000 + 1500 of her 4000 and has 1000 still open; Gleb (4) wins 750 of his
    // 3000; Dmitry (5) has no target, so his win is no one's figure.
    for (title, stage, user, amount) in [
        ("Northwind LLC", "WON", "3", "1000.00"),
        ("Contoso LLC", "WON", "3", "1500.00"),
        ("Open Deal LLC", "NEW", "3", "1000.00"),
        ("Fabrikam LLC", "WON", "4", "750.00"),
        ("Outside LLC", "WON", "5", "5000.00"),
    ] {
        let fields = json!({ "ASSIGNED_BY_ID": user, "OPPORTUNITY": amount });
        new_deal_with(&app.sim, title, stage, fields).await;
    }
    app.settle(STEP).await;
    let base = format!("http://127.0.0.1:{}", app.port);

    let browser = Chromium::start(&executable).await;
    let mut tab = browser.open_tab().await;
    tab.set_viewport(LAPTOP, false).await;

    tab.go_to(&format!("{base}/ui/login")).await;
    tab.focus("input[name=token]").await;
    tab.type_text(TOKEN).await;
    tab.click("form button").await;
    assert_eq!(
        tab.evaluate("location.pathname").await,
        "/ui/control",
        "the login form leads to the control page: {}",
        tab.evaluate("document.body.innerText").await
    );

    tab.go_to(&format!("{base}/ui/reports?name=plan")).await;
    let table = tab
        .evaluate("[...document.querySelectorAll('table tr')].map(tr => [...tr.cells].map(c => c.innerText))")
        .await;
    let table: Vec<Vec<String>> = serde_json::from_value(table).expect("the table's cells");
    // Each row as one line of text, its cells as people read them (money with its currency, %
    // on percentages); the forecast (the last column) depends on how many of
    // this month's working days have begun, so the line stops before it.
    let lines: Vec<String> = table
        .iter()
        .map(|row| row.iter().take(9).cloned().collect::<Vec<_>>().join(" | "))
        .collect();
    assert_eq!(
        lines,
        [
            "plan | user_id | pipeline | measure | currency | target | done | percent | remaining",
            "sales-month | 3 | 0 | amount | RUB | 4 000 RUB | 2 500 RUB | 62.5% | 1 500 RUB",
            "sales-month | 4 | 0 | amount | RUB | 3 000 RUB | 750 RUB | 25.0% | 2 250 RUB",
        ],
        "Vera's 2500 of 4000 and Gleb's 750 of 3000: {table:?}"
    );
    let chart = tab
        .evaluate("[...document.querySelectorAll('svg text')].map(t => t.textContent)")
        .await;
    for label in ["sales-month · #3", "62.5%", "sales-month · #4", "25.0%"] {
        assert!(
            chart
                .as_array()
                .is_some_and(|texts| texts.contains(&json!(label))),
            "the chart shows {label}: {chart}"
        );
    }
    tab.screenshot("dashboard-plan.png").await;

    tab.set_viewport(PHONE, true).await;
    tab.go_to(&format!("{base}/ui/reports?name=plan")).await;
    let widths = tab
        .evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    let [content, window]: [u32; 2] = serde_json::from_value(widths).expect("two widths");
    // A page wider than a phone's screen scrolls sideways, or is zoomed out to fit (a wider
    // window): either way too small to read.
    assert!(
        content <= PHONE.0 + 1 && window == PHONE.0,
        "on a phone {} CSS pixels wide the plan page is {content} wide, in a window of {window}",
        PHONE.0
    );
    tab.screenshot("dashboard-plan-phone.png").await;

    let errors = tab.console_errors();
    assert!(
        errors.is_empty(),
        "the pages logged console errors: {errors:#?}"
    );
    browser.close(tab).await;
    app.stop().await;
}

/// The browser to use, or `None` (said on stderr) when there is none and none is required.
fn chromium() -> Option<PathBuf> {
    if let Some(named) = std::env::var_os("B24ROBOT_CHROMIUM") {
        let named = PathBuf::from(named);
        assert!(
            named.is_file(),
            "B24ROBOT_CHROMIUM={} is not a file: point it at a Chromium or unset it",
            named.display()
        );
        return Some(named);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| {
                ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
            })
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("B24ROBOT_REQUIRE_BROWSER").is_none(),
            "B24ROBOT_REQUIRE_BROWSER is set but no Chromium was found \
             (set B24ROBOT_CHROMIUM or install Debian's chromium)"
        );
        eprintln!(
            "skipped: no Chromium found (set B24ROBOT_CHROMIUM or install Debian's chromium)"
        );
    }
    found
}

/// Where the screenshots go: `target/browser/` (of `CARGO_TARGET_DIR` when set).
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("browser")
}

/// A headless Chromium with a fresh profile: [`Chromium::close`] asks it to quit, and when
/// dropped without that (a failed test) it is killed.
struct Chromium {
    child: Child,
    /// The DevTools websocket of the whole browser.
    url: String,
    /// Everything it printed on stderr, for a failure's message.
    stderr: Arc<Mutex<Vec<String>>>,
    _scratch: tempfile::TempDir,
}

impl Chromium {
    async fn start(executable: &Path) -> Chromium {
        // Its profile and its temporary files (which a killed Chromium leaves behind) in one
        // folder, removed with it.
        let scratch = tempfile::tempdir().expect("a scratch folder");
        let (profile, tmp) = (scratch.path().join("profile"), scratch.path().join("tmp"));
        std::fs::create_dir(&tmp).expect("a temporary folder");
        let mut child = Command::new(executable)
            .args([
                "--headless",
                // Root (as in CI's containers) cannot use the sandbox; a browser that only
                // visits the test's own local pages needs none.
                "--no-sandbox",
                "--disable-gpu",
                // No call home: the network outside is closed, and the test has no need of it.
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", executable.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (listening, url) = oneshot::channel();
        let lines = BufReader::new(child.stderr.take().expect("its stderr"));
        let kept = Arc::clone(&stderr);
        // A thread keeps reading to the end, so that Chromium never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut listening = Some(listening);
            for line in lines.lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(tx) = listening.take()
                {
                    let _ = tx.send(url.trim().to_string());
                }
                kept.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        // The guard first, so that a Chromium that never listens is killed too.
        let mut browser = Chromium {
            child,
            url: String::new(),
            stderr,
            _scratch: scratch,
        };
        browser.url = match tokio::time::timeout(STEP, url).await {
            Ok(Ok(url)) => url,
            Ok(Err(_)) => panic!("Chromium exited before it listened: {}", browser.said()),
            Err(_) => panic!(
                "Chromium did not listen within {STEP:?}: {}",
                browser.said()
            ),
        };
        browser
    }

    /// What Chromium printed so far.
    fn said(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// A new tab, attached to on its own DevTools session, with its pages' logs collected.
    async fn open_tab(&self) -> Tab {
        let (socket, _) = within("the DevTools connection", async {
            tokio_tungstenite::connect_async(self.url.as_str()).await
        })
        .await
        .unwrap_or_else(|e| panic!("DevTools at {}: {e}", self.url));
        let mut tab = Tab::new(socket);
        let target = tab
            .call_browser("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = tab
            .call_browser(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        tab.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        for domain in ["Page", "Runtime", "Log"] {
            tab.call(&format!("{domain}.enable"), json!({})).await;
        }
        tab
    }

    /// Asks Chromium to quit and waits until it has: it ends its helper processes itself (a
    /// killed one leaves them to whoever adopts them, which in a container may never reap).
    async fn close(mut self, mut tab: Tab) {
        tab.post(None, "Browser.close", json!({}), None).await;
        crate::helpers::poll(STEP, "Chromium to quit", async || {
            self.child.try_wait().ok().flatten()
        })
        .await;
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // A no-op once it quit; after a failure, the end of it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replies awaited, by command id.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One tab over the browser's DevTools websocket (a flattened session: commands carry its
/// `sessionId`). A task reads the socket: replies go to their command, events to `events`.
struct Tab {
    socket: futures_util::stream::SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>,
    session: String,
    next_id: u64,
    pending: Pending,
    /// Every event so far, in order.
    events: watch::Receiver<Vec<Value>>,
}

impl Tab {
    fn new(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Tab {
        let (sink, mut stream) = socket.split();
        let pending = Pending::default();
        let (log, events) = watch::channel(Vec::new());
        let replies = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match value["id"].as_u64() {
                    Some(id) => {
                        let waiting = replies
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&id);
                        if let Some(reply) = waiting {
                            let _ = reply.send(value);
                        }
                    }
                    None => log.send_modify(|seen| seen.push(value)),
                }
            }
        });
        Tab {
            socket: sink,
            session: String::new(),
            next_id: 0,
            pending,
            events,
        }
    }

    /// A command to the whole browser.
    async fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params).await
    }

    /// A command to this tab.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// Sends a command and waits for its reply (its `result`; an `error` fails the test).
    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let (tx, reply) = oneshot::channel();
        self.post(session, method, params, Some(tx)).await;
        let reply = within(method, reply)
            .await
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection closed"));
        if !reply["error"].is_null() {
            panic!("{method}: {}", reply["error"]);
        }
        reply["result"].clone()
    }

    /// Sends a command under the next id; its reply goes to `reply` (else nowhere), which is
    /// awaited before the command leaves: the reply may come back before the send returns.
    async fn post(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        reply: Option<oneshot::Sender<Value>>,
    ) {
        self.next_id += 1;
        let mut command = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        if let Some(reply) = reply {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(self.next_id, reply);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{method}: the DevTools connection: {e}"));
    }

    /// The count of events so far: [`Tab::loaded_since`] looks past it.
    fn mark(&self) -> usize {
        self.events.borrow().len()
    }

    /// Waits for this tab's next page load after `mark`.
    async fn loaded_since(&self, mark: usize) {
        let mut events = self.events.clone();
        let session = self.session.clone();
        within("the page's load event", async {
            events
                .wait_for(|seen| {
                    seen.iter().skip(mark).any(|e| {
                        e["method"] == "Page.loadEventFired" && e["sessionId"] == session.as_str()
                    })
                })
                .await
                .map(drop)
        })
        .await
        .expect("the DevTools connection is open");
    }

    /// Opens `url` and waits for its page to load.
    async fn go_to(&mut self, url: &str) {
        let mark = self.mark();
        let navigated = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(
            navigated["errorText"].is_null(),
            "{url}: {}",
            navigated["errorText"]
        );
        self.loaded_since(mark).await;
    }

    /// The value of a JavaScript expression in the page.
    async fn evaluate(&mut self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        if !answer["exceptionDetails"].is_null() {
            panic!("{expression}: {}", answer["exceptionDetails"]);
        }
        answer["result"]["value"].clone()
    }

    /// Gives the element `selector` the keyboard's focus.
    async fn focus(&mut self, selector: &str) {
        let found = self
            .evaluate(&format!(
                "(e => e ? (e.focus(), true) : false)(document.querySelector({}))",
                json!(selector)
            ))
            .await;
        assert_eq!(found, true, "no {selector} to focus");
    }

    /// Types `text` into what has the focus, as a keyboard would.
    async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Clicks the middle of the element `selector` with the mouse, and waits for the page the
    /// click leads to.
    async fn click(&mut self, selector: &str) {
        let middle = self
            .evaluate(&format!(
                "(e => {{ const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})(document.querySelector({}))",
                json!(selector)
            ))
            .await;
        let mark = self.mark();
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": middle[0], "y": middle[1], "button": "left", "clickCount": 1 }),
            )
            .await;
        }
        self.loaded_since(mark).await;
    }

    /// Emulates a screen `width` × `height` CSS pixels (a phone's when `mobile`).
    async fn set_viewport(&mut self, (width, height): (u32, u32), mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        )
        .await;
    }

    /// Saves the whole page as `target/browser/{name}`.
    async fn screenshot(&mut self, name: &str) {
        let size = self
            .evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
            )
            .await;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1 },
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("the screenshot's data"))
            .expect("the screenshot is base64");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
    }

    /// What this tab's pages logged as errors: exceptions, `console.error` and `console.assert`,
    /// and the browser's own error entries (a resource that did not load, a blocked request).
    fn console_errors(&self) -> Vec<String> {
        self.events
            .borrow()
            .iter()
            .filter(|e| e["sessionId"] == self.session.as_str())
            .filter_map(|e| {
                let params = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", params["exceptionDetails"]))
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(params["type"].as_str(), Some("error" | "assert")) =>
                    {
                        let kind = params["type"].as_str().unwrap_or_default();
                        Some(format!("console.{kind}: {}", params["args"]))
                    }
                    "Log.entryAdded" if params["entry"]["level"] == "error" => Some(format!(
                        "browser: {} ({})",
                        params["entry"]["text"], params["entry"]["url"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }
}

/// `step`, or a failure naming `what` after [`STEP`].
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, step)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?} waiting for: {what}"))
}

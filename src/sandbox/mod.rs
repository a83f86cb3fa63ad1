//! A simulated Bitrix24 portal: a real HTTP server speaking Bitrix24's wire format.
//!
//! The integration tests and the `demo` command run the service against it. It is written
//! from Bitrix24's documentation (`shared/reference/bitrix24-api.md`), independently of our
//! REST client, so that a client bug shows up here rather than on a customer's portal:
//!
//! - REST calls at `/rest/{user}/{secret}/{method}[.json]`, JSON or PHP-style form bodies,
//!   Bitrix24's envelopes and error statuses ([`methods`] has the methods, [`http`] the wire);
//! - a per-portal leaky bucket (503 `QUERY_LIMIT_EXCEEDED`) and injected [`Faults`];
//! - outgoing events POSTed form-encoded, as PHP's `http_build_query` builds them, never
//!   re-sent, and a test-facing API to act "as a user in the UI" and to inspect the portal.
//!
//! Every UI action returns only after the event it causes was delivered and answered, so
//! tests need no sleeps. Events caused by REST writes (our own echoes) are queued and posted
//! in order by one delivery task; [`SimPortal::settle`] waits for that queue to drain.
//!
//! Over 500 lines because it is the portal's whole public face for tests (UI actions, faults,
//! inspection), one method each; the wire handlers are in `methods/`, the state in `store.rs`.

mod http;
mod methods;
mod php;
pub mod portal_file;
pub mod seed;
mod store;
mod user_tasks;
mod values;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_time;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use chrono::{FixedOffset, Offset, Utc};
use rand::distr::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::clock::Clock;
use http::{Bucket, ConnHandle, SimListener};
use store::PortalState;

pub use php::{build_query, parse_query};

/// How the simulated portal is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Leaky bucket drain, requests per second (Bitrix24: 2; Enterprise: 5).
    pub requests_per_second: f64,
    /// Leaky bucket size (Bitrix24: 50; Enterprise: 250).
    pub burst: u32,
    /// The incoming webhook's user: the `1` of `/rest/1/<secret>/`, and the author of every
    /// REST write (`MODIFY_BY_ID`, `MOVED_BY_ID`, a task's default `CREATED_BY`).
    pub webhook_user: u64,
    /// The incoming webhook's secret code.
    pub webhook_secret: String,
    /// The portal server's offset: deal datetimes are printed in it, stage history in UTC.
    pub server_offset: FixedOffset,
    /// The portal's "now": every time it stamps (stage history `CREATED_TIME`, `DATE_CREATE`,
    /// `DATE_MODIFY`, a task's `CREATED_DATE`/`CHANGED_DATE`/`CLOSED_DATE`, `server.time`, an
    /// event's `ts`, whether a task is overdue) reads it. A test shares one clock with the
    /// service and moves both on with [`Clock::advance`]; the default is the system clock.
    /// The `time` object of an answer stays on real time: clients pace themselves by it.
    pub clock: Clock,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 2.0,
            burst: 50,
            webhook_user: 1,
            webhook_secret: random_string(16),
            // 3 hours east is a valid offset: the UTC fallback is never taken.
            server_offset: FixedOffset::east_opt(3 * 3600).unwrap_or(Utc.fix()),
            clock: Clock::system(),
        }
    }
}

pub(crate) fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(|c| char::from(c).to_ascii_lowercase())
        .collect()
}

/// The result of one event delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDelivery {
    /// The handler's HTTP status; `None`: no handler registered, or the POST failed.
    pub status: Option<u16>,
}

/// One HTTP request the portal received under `/rest/`.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The method name, lower case, without `.json`.
    pub method: String,
    /// The HTTP status answered; `0` when the connection was dropped without an answer.
    pub status: u16,
    /// The `error` code answered, `"DROPPED"` for a dropped connection, `"MALFORMED"` for a
    /// body that was cut short; `None` for a success.
    pub error: Option<String>,
    /// For `batch`: the sub-calls' methods, in order.
    pub sub_methods: Vec<String>,
    pub at: Instant,
    /// How long the portal took to run the method (every call of a `batch`), under its lock:
    /// what the simulator itself costs a client; zero for a request refused before running.
    pub worked: Duration,
}

impl RequestRecord {
    /// The REST calls it carried: a `batch`'s commands, else 1.
    #[must_use]
    pub fn calls(&self) -> usize {
        if self.method == "batch" {
            self.sub_methods.len()
        } else {
            1
        }
    }
}

/// One outgoing event the portal POSTed.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// `ONCRMDEALADD`, `ONCRMDEALUPDATE`, `ONCRMDEALDELETE`.
    pub event: String,
    pub deal_id: u64,
    /// The handler's HTTP status; `None` when the POST failed.
    pub status: Option<u16>,
    /// The form body exactly as sent.
    pub body: String,
    pub at: Instant,
}

/// Faults injected into REST answers. Rates are shares of requests (0.0..=1.0), rolled
/// once per HTTP request after authorisation and the rate limit.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answered 500 `INTERNAL_SERVER_ERROR` without executing.
    pub error_rate: f64,
    /// Answered 500 after executing: the write happened, the client cannot know.
    pub error_after_rate: f64,
    /// Connection closed with no answer, half before executing and half after.
    pub drop_rate: f64,
    /// Answered 200 with a body cut in half (not valid JSON), after executing.
    pub malformed_rate: f64,
    /// Every answer is delayed this long.
    pub delay: Option<Duration>,
    /// Answers of requests that ran this method (top level or inside a `batch`) are held this
    /// long after it ran: the call happens while its client may have stopped waiting.
    pub hold_after: Option<(String, Duration)>,
    /// This method answers 429 `OPERATION_TIME_LIMIT` (a sub-call error inside `batch`);
    /// the `u64` is the `operating_reset_at` (unix seconds) its `time` objects carry.
    pub method_429: Option<(String, u64)>,
    /// Every `crm.stagehistory.list` item is listed twice, as offset paging over an unstable
    /// order produces: each page holds 25 items, each of them twice, and `total` counts both.
    pub history_twice: bool,
    /// A `next` that never ends: the list answers repeat their first page (`start` and the
    /// `>ID` bound ignored) with `next` = start + 50, forever.
    pub endless_paging: Option<EndlessPaging>,
    /// `crm.deal.get` of this deal, and a `crm.deal.list` that lists it, answer a malformed deal.
    pub corrupt_deal: Option<(u64, DealCorruption)>,
    /// Seed for the fault dice, for reproducible runs.
    pub seed: Option<u64>,
    /// Every REST request is answered `302` to this origin (`http://host:port`), its path and
    /// query kept, before anything else: what a renamed portal answers, or a hostile one.
    pub redirect_to: Option<String>,
    /// Every answer of a method that ran comes after this many bytes of JSON whitespace,
    /// streamed in 64 KiB chunks without a `Content-Length`: a huge answer the simulator never
    /// holds in memory.
    pub huge_answer_bytes: Option<usize>,
    /// Every authorised REST request is answered 400 `ERROR_CORE`, without executing, with an
    /// `error_description` of about this many bytes (Cyrillic, two bytes a letter).
    pub huge_error_bytes: Option<usize>,
    /// The portal cannot be reached: every REST request fails this way before anything else
    /// (nothing runs), as behind a dead network or a stopped proxy.
    pub outage: Option<Outage>,
}

/// How an unreachable portal looks from outside (see [`Faults::outage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// A proxy in front of it answers this status (502, 503, 504) with an HTML page.
    Gateway(u16),
    /// The connection is closed without an answer.
    Dropped,
}

/// Which list answers page forever (see [`Faults::endless_paging`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndlessPaging {
    /// `crm.stagehistory.list` filtered on this deal (`OWNER_ID`).
    Deal(u64),
    /// Every `crm.stagehistory.list` and `crm.deal.list` answer (the sweep's and the
    /// backfill's lists too).
    All,
}

/// How a deal in an answer is malformed (see [`Faults::corrupt_deal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealCorruption {
    /// `"STAGE_ID": null`.
    NullStage,
    /// `"ID": "abc"`.
    IdNotANumber,
}

/// Where events go.
#[derive(Clone)]
struct Handler {
    url: String,
    token: String,
    id: u64,
}

/// Everything mutable, under one lock.
struct Shared {
    portal: PortalState,
    bucket: Bucket,
    faults: Faults,
    rng: StdRng,
    requests: Vec<RequestRecord>,
    events: Vec<EventRecord>,
    handler: Option<Handler>,
    handlers_registered: u64,
}

enum Job {
    Deliver {
        event: String,
        deal_id: u64,
        handler: Handler,
        done: Option<oneshot::Sender<EventDelivery>>,
    },
    /// Answered once every job queued before it is done.
    Flush(oneshot::Sender<()>),
}

struct Inner {
    shared: Mutex<Shared>,
    /// REST requests being answered now, and the most seen at once since the last
    /// [`SimPortal::reset_in_flight`].
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    webhook_user: u64,
    webhook_secret: String,
    member_id: String,
    port: u16,
    jobs: mpsc::UnboundedSender<Job>,
    clock: Clock,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock (a bug in a method) must not wedge every later test
        // assertion: the data is still consistent enough to inspect.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the events the last writes fired; `done` is told the outcome of the last one.
    /// Without a registered handler the events are lost, as in a portal with no webhook.
    fn queue_fired(&self, shared: &mut Shared, mut done: Option<oneshot::Sender<EventDelivery>>) {
        let fired = std::mem::take(&mut shared.portal.fired);
        let count = fired.len();
        for (i, (event, deal_id)) in fired.into_iter().enumerate() {
            let Some(handler) = shared.handler.clone() else {
                break;
            };
            let done = if i + 1 == count { done.take() } else { None };
            let _ = self.jobs.send(Job::Deliver {
                event,
                deal_id,
                handler,
                done,
            });
        }
        if let Some(done) = done {
            let _ = done.send(EventDelivery { status: None });
        }
    }

    fn event_body(&self, event: &str, deal_id: u64, handler: &Handler) -> String {
        let host = format!("127.0.0.1:{}", self.port);
        let ts = self.clock.now().timestamp();
        build_query(&json!({
            "event": event,
            "event_handler_id": handler.id.to_string(),
            "data": {"FIELDS": {"ID": deal_id.to_string()}},
            "ts": ts.to_string(),
            "auth": {
                "domain": host,
                "client_endpoint": format!("http://{host}/rest/"),
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "member_id": self.member_id,
                "application_token": handler.token,
            },
        }))
    }
}

/// Posts queued events one at a time, in order; never re-sends one that failed.
async fn deliver(
    inner: Arc<Inner>,
    client: reqwest::Client,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    stop: CancellationToken,
) {
    loop {
        let job = tokio::select! {
            job = jobs.recv() => job,
            () = stop.cancelled() => None,
        };
        let Some(job) = job else {
            return;
        };
        match job {
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::Deliver {
                event,
                deal_id,
                handler,
                done,
            } => {
                let body = inner.event_body(&event, deal_id, &handler);
                let status = client
                    .post(&handler.url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("user-agent", "Bitrix24 Webhook Engine")
                    .body(body.clone())
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                inner.lock().events.push(EventRecord {
                    event,
                    deal_id,
                    status,
                    body,
                    at: Instant::now(),
                });
                if let Some(done) = done {
                    let _ = done.send(EventDelivery { status });
                }
            }
        }
    }
}

/// A running simulated portal. Cheap to clone; the server stops when the last clone drops.
#[derive(Clone)]
pub struct SimPortal {
    inner: Arc<Inner>,
    _stop: Arc<DropGuard>,
}

impl SimPortal {
    /// Binds `127.0.0.1:0` and serves in a tokio task. The portal starts empty: seed it with
    /// [`SimPortal::with_default_portal`] or the `add_*` methods.
    pub async fn start(config: SimConfig) -> std::io::Result<SimPortal> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (jobs, jobs_rx) = mpsc::unbounded_channel();
        let seed_rng = StdRng::from_rng(&mut rand::rng());
        let inner = Arc::new(Inner {
            shared: Mutex::new(Shared {
                portal: PortalState::new(
                    config.server_offset,
                    config.webhook_user,
                    config.clock.clone(),
                ),
                bucket: Bucket::new(config.requests_per_second, config.burst),
                faults: Faults::default(),
                rng: seed_rng,
                requests: Vec::new(),
                events: Vec::new(),
                handler: None,
                handlers_registered: 0,
            }),
            in_flight: Default::default(),
            most_in_flight: Default::default(),
            webhook_user: config.webhook_user,
            webhook_secret: config.webhook_secret,
            member_id: format!("{:032x}", rand::rng().random::<u128>()),
            port,
            jobs,
            clock: config.clock,
        });
        let stop = CancellationToken::new();
        tokio::spawn(deliver(inner.clone(), client, jobs_rx, stop.clone()));
        let app = Router::new()
            .fallback(http::handle)
            .with_state(inner.clone())
            .into_make_service_with_connect_info::<ConnHandle>();
        let server_stop = stop.clone();
        tokio::spawn(async move {
            let server = axum::serve(SimListener(listener), app);
            tokio::select! {
                _ = server => {}
                () = server_stop.cancelled() => {}
            }
        });
        Ok(SimPortal {
            inner,
            _stop: Arc::new(stop.drop_guard()),
        })
    }

    /// `http://127.0.0.1:PORT/rest/1/<secret>/`, with the trailing slash.
    pub fn webhook_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/rest/{}/{}/",
            self.inner.port, self.inner.webhook_user, self.inner.webhook_secret
        )
    }

    /// The portal's clock (see [`SimConfig::clock`]): advance it to let time pass on the portal.
    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    /// The portal's `auth[member_id]`.
    pub fn member_id(&self) -> String {
        self.inner.member_id.clone()
    }

    /// Registers (or, with `None`, removes) the outgoing webhook: the handler URL and its
    /// application token. Each registration gets a new `event_handler_id`.
    pub fn set_event_handler(&self, url: Option<String>, application_token: &str) {
        let mut shared = self.inner.lock();
        shared.handlers_registered += 1;
        let id = shared.handlers_registered;
        shared.handler = url.map(|url| Handler {
            url,
            token: application_token.to_string(),
            id,
        });
    }

    // ----- seed data -----

    pub fn add_user(&self, id: u64, name: &str, departments: &[u64]) {
        self.inner.lock().portal.add_user(id, name, departments);
    }

    pub fn add_department(&self, id: u64, name: &str, parent: Option<u64>, head: Option<u64>) {
        self.inner
            .lock()
            .portal
            .add_department(id, name, parent, head, None);
    }

    /// Adds a pipeline; stages are `(STATUS_ID, name, 'P'|'S'|'F')` in order. Pipeline `0` is
    /// the default one (`DEAL_STAGE`); others use `C<n>:` status ids.
    pub fn add_pipeline(&self, id: u64, name: &str, stages: &[(&str, &str, char)]) {
        self.inner.lock().portal.add_pipeline(id, name, stages);
    }

    /// Adds a custom deal field; `options` are the items of an `enumeration`.
    pub fn add_field(
        &self,
        code: &str,
        r#type: &str,
        label: &str,
        multiple: bool,
        options: &[(u64, &str)],
    ) {
        self.inner
            .lock()
            .portal
            .add_field(code, r#type, label, multiple, false, options);
    }

    /// From now on the `try_` UI actions refuse a field the portal does not have (or that is
    /// read-only) by name, instead of dropping it as Bitrix24's REST does: for a sandbox run
    /// from a portal file, where such a field is a typo or a field of another portal.
    pub fn refuse_unknown_fields(&self) {
        self.inner.lock().portal.known_fields_only = true;
    }

    /// Seeds the default pipeline 0 with Bitrix24's default stages, users 1..=6 and a
    /// department tree: 1 "Company" (head 5) > 2 "Sales" (head 4) > 3 "Sales team B" (no
    /// head, so its people's supervisor is found one level up).
    pub fn with_default_portal(&self) {
        let mut shared = self.inner.lock();
        let portal = &mut shared.portal;
        portal.add_pipeline(
            0,
            "General",
            &[
                ("NEW", "New", 'P'),
                ("PREPARATION", "Document preparation", 'P'),
                ("PREPAYMENT_INVOICE", "Prepayment invoice", 'P'),
                ("EXECUTING", "In progress", 'P'),
                ("FINAL_INVOICE", "Final invoice", 'P'),
                ("WON", "Deal successful", 'S'),
                ("LOSE", "Deal failed", 'F'),
                ("APOLOGY", "Failure reason analysis", 'F'),
            ],
        );
        portal.add_department(1, "Company", None, Some(5), None);
        portal.add_department(2, "Sales", Some(1), Some(4), None);
        portal.add_department(3, "Sales team B", Some(2), None, None);
        portal.add_user(1, "John Admin", &[1]);
        portal.add_user(2, "Anna Seller", &[2]);
        portal.add_user(3, "Boris Seller", &[2]);
        portal.add_user(4, "Clara Head", &[2]);
        portal.add_user(5, "Dmitry Director", &[1]);
        portal.add_user(6, "Elena Junior", &[3]);
    }

    // ----- acting as a user in the portal UI -----

    /// Runs a UI write, then waits for the event it fired to be delivered.
    ///
    /// # Panics
    /// When the portal refuses the write: the test asked for something impossible (an unknown
    /// deal, a stage outside the deal's pipeline), and failing loudly there is the most useful
    /// answer. The `try_` actions answer such a refusal as an error instead.
    async fn act<T, F>(&self, write: F) -> (T, EventDelivery)
    where
        F: FnOnce(&mut PortalState) -> Result<T, store::ApiError>,
    {
        match self.try_act(write).await {
            Ok(done) => done,
            Err(refusal) => panic!("simulated portal refused a UI action: {refusal}"),
        }
    }

    /// Runs a UI write, then waits for the event it fired to be delivered; a write the portal
    /// refuses is answered with its reason.
    async fn try_act<T, F>(&self, write: F) -> Result<(T, EventDelivery), String>
    where
        F: FnOnce(&mut PortalState) -> Result<T, store::ApiError>,
    {
        let (done, answer) = oneshot::channel();
        let value = {
            let mut shared = self.inner.lock();
            let value = write(&mut shared.portal).map_err(|e| e.description)?;
            self.inner.queue_fired(&mut shared, Some(done));
            value
        };
        let delivery = answer.await.unwrap_or(EventDelivery { status: None });
        Ok((value, delivery))
    }

    /// [`SimPortal::create_deal`], answering a refusal (unknown pipeline or stage, and in a
    /// portal that [refuses unknown fields](SimPortal::refuse_unknown_fields) a field it does
    /// not have) as an error.
    pub async fn try_create_deal(&self, fields: Value) -> Result<u64, String> {
        let fields = fields.as_object().cloned().unwrap_or_default();
        let actor = fields
            .get("ASSIGNED_BY_ID")
            .and_then(values::positive_id)
            .unwrap_or(1);
        self.try_act(move |p| {
            p.check_ui_fields(&fields, true)?;
            p.create_deal(&fields, actor)
        })
        .await
        .map(|(id, _)| id)
    }

    /// [`SimPortal::move_deal`], answering a refusal (unknown deal, stage of another pipeline)
    /// as an error.
    pub async fn try_move_deal(&self, id: u64, stage_id: &str) -> Result<EventDelivery, String> {
        let actor = self.actor(id);
        let fields = stage_fields(stage_id);
        self.try_act(move |p| p.update_deal(id, &fields, actor))
            .await
            .map(|(_, d)| d)
    }

    /// [`SimPortal::update_deal`], answering a refusal as an error.
    pub async fn try_update_deal(&self, id: u64, fields: Value) -> Result<EventDelivery, String> {
        let actor = self.actor(id);
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.try_act(move |p| {
            p.check_ui_fields(&fields, false)?;
            p.update_deal(id, &fields, actor)
        })
        .await
        .map(|(_, d)| d)
    }

    /// The acting user of a UI change: the deal's responsible person.
    fn actor(&self, deal_id: u64) -> u64 {
        self.inner
            .lock()
            .portal
            .deals
            .get(&deal_id)
            .and_then(|d| d.get("ASSIGNED_BY_ID"))
            .and_then(values::positive_id)
            .unwrap_or(1)
    }

    /// A user creates a deal (`TITLE`, `STAGE_ID`, `CATEGORY_ID`, `ASSIGNED_BY_ID`,
    /// `OPPORTUNITY`, `UF_*`...): history `TYPE_ID` 1, then `ONCRMDEALADD` is delivered.
    ///
    /// # Panics
    /// On fields the portal refuses (unknown pipeline or stage): a mistake in the test.
    pub async fn create_deal(&self, fields: Value) -> u64 {
        let fields = fields.as_object().cloned().unwrap_or_default();
        let actor = fields
            .get("ASSIGNED_BY_ID")
            .and_then(values::positive_id)
            .unwrap_or(1);
        self.act(move |p| p.create_deal(&fields, actor)).await.0
    }

    /// A user moves a deal to another stage of its pipeline: history `TYPE_ID` 2 (3 for a
    /// final stage), `MOVED_TIME`/`MOVED_BY_ID`, then `ONCRMDEALUPDATE` is delivered.
    ///
    /// # Panics
    /// On an unknown deal or a stage outside its pipeline.
    pub async fn move_deal(&self, id: u64, stage_id: &str) -> EventDelivery {
        let actor = self.actor(id);
        let fields = stage_fields(stage_id);
        self.act(move |p| p.update_deal(id, &fields, actor)).await.1
    }

    /// The same change as [`SimPortal::move_deal`], but its event is lost (never sent).
    pub async fn move_deal_silently(&self, id: u64, stage_id: &str) {
        let actor = self.actor(id);
        let mut shared = self.inner.lock();
        if let Err(e) = shared
            .portal
            .update_deal(id, &stage_fields(stage_id), actor)
        {
            drop(shared);
            panic!("simulated portal: {}", e.description);
        }
        shared.portal.fired.clear();
    }

    /// A user (or a "move" tunnel) moves a deal to another pipeline: history `TYPE_ID` 5 and,
    /// as in Bitrix24, no event an outgoing webhook receives.
    pub async fn move_deal_to_pipeline(&self, id: u64, category_id: u64, stage_id: &str) {
        let actor = self.actor(id);
        let mut shared = self.inner.lock();
        if let Err(e) = shared
            .portal
            .move_to_pipeline(id, category_id, stage_id, actor)
        {
            drop(shared);
            panic!("simulated portal: {}", e.description);
        }
    }

    /// A user edits fields (no stage change intended); `ONCRMDEALUPDATE` is delivered.
    pub async fn update_deal(&self, id: u64, fields: Value) -> EventDelivery {
        let actor = self.actor(id);
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.act(move |p| p.update_deal(id, &fields, actor)).await.1
    }

    /// A user deletes a deal; `ONCRMDEALDELETE` is delivered.
    pub async fn delete_deal(&self, id: u64) {
        self.act(move |p| p.delete_deal(id)).await;
    }

    /// Posts one more delivery of an event (a replay, a duplicate), whether or not the deal
    /// exists.
    pub async fn send_event(&self, event: &str, deal_id: u64) -> EventDelivery {
        let event = event.to_string();
        self.act(move |p| {
            p.fired.push((event, deal_id));
            Ok(())
        })
        .await
        .1
    }

    /// Waits until every event queued so far (REST echoes included) has been delivered.
    pub async fn settle(&self) {
        let (done, answer) = oneshot::channel();
        if self.inner.jobs.send(Job::Flush(done)).is_ok() {
            let _ = answer.await;
        }
    }

    // ----- inspection -----

    /// A deal as `crm.deal.get` returns it.
    pub fn deal(&self, id: u64) -> Option<Value> {
        self.inner.lock().portal.deal_view(id).map(Value::Object)
    }

    pub fn deals(&self) -> Vec<Value> {
        let shared = self.inner.lock();
        shared
            .portal
            .deals
            .keys()
            .filter_map(|id| shared.portal.deal_view(*id).map(Value::Object))
            .collect()
    }

    /// How many tasks there are, without copying them.
    pub fn task_count(&self) -> usize {
        self.inner.lock().portal.tasks.len()
    }

    /// Every task as stored: `ID`, `TITLE`, `DESCRIPTION`, `RESPONSIBLE_ID`, `CREATED_BY`,
    /// `AUDITORS`, `ACCOMPLICES`, `DEADLINE` (the string exactly as sent), `DEADLINE_AT` (the
    /// instant it was read as, RFC 3339 in UTC), `UF_CRM_TASK`, `XML_ID`, `STATUS` and
    /// `REAL_STATUS` (2 pending, 3 in progress, 5 completed, 6 deferred...), `CREATED_DATE`,
    /// `CHANGED_DATE`, `CLOSED_DATE`... Tasks and activities are worked in `user_tasks.rs`.
    pub fn tasks(&self) -> Vec<Value> {
        self.inner
            .lock()
            .portal
            .tasks
            .iter()
            .cloned()
            .map(Value::Object)
            .collect()
    }

    /// How many tasks each deal has bound to it (`D_<id>` in `UF_CRM_TASK`), in one pass.
    pub fn tasks_per_deal(&self) -> std::collections::HashMap<u64, usize> {
        let mut counts = std::collections::HashMap::new();
        for task in &self.inner.lock().portal.tasks {
            let bound = task.get("UF_CRM_TASK").map(values::string_list);
            for binding in bound.unwrap_or_default() {
                if let Some(deal) = binding.strip_prefix("D_").and_then(|d| d.parse().ok()) {
                    *counts.entry(deal).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// The tasks bound to a deal (`D_<id>` in `UF_CRM_TASK`).
    pub fn tasks_for_deal(&self, deal_id: u64) -> Vec<Value> {
        let binding = format!("D_{deal_id}");
        self.tasks()
            .into_iter()
            .filter(|t| {
                t.get("UF_CRM_TASK")
                    .map(values::string_list)
                    .is_some_and(|b| b.contains(&binding))
            })
            .collect()
    }

    /// Timeline comments: `ID`, `ENTITY_ID`, `ENTITY_TYPE`, `COMMENT`, `AUTHOR_ID`, `CREATED`.
    pub fn comments(&self) -> Vec<Value> {
        self.inner.lock().portal.comments.clone()
    }

    /// System notifications: `ID`, `USER_ID`, `MESSAGE`, `DATE`.
    pub fn notifications(&self) -> Vec<Value> {
        self.inner.lock().portal.notifications.clone()
    }

    /// The deal's `crm.stagehistory.list` entries, oldest first.
    pub fn stage_history(&self, deal_id: u64) -> Vec<Value> {
        self.inner
            .lock()
            .portal
            .history
            .iter()
            .filter(|e| e.get("OWNER_ID").and_then(Value::as_u64) == Some(deal_id))
            .cloned()
            .collect()
    }

    /// How many stage-history entries the portal holds, without copying them.
    pub fn history_len(&self) -> usize {
        self.inner.lock().portal.history.len()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.inner.lock().requests.len()
    }

    /// Replaces the injected faults; a `seed` restarts the fault dice from it.
    pub fn set_faults(&self, faults: Faults) {
        let mut shared = self.inner.lock();
        if let Some(seed) = faults.seed {
            shared.rng = StdRng::seed_from_u64(seed);
        }
        shared.faults = faults;
    }

    /// Changes the leaky bucket (its current level is kept).
    pub fn set_rate_limit(&self, requests_per_second: f64, burst: u32) {
        let mut shared = self.inner.lock();
        shared.bucket.requests_per_second = requests_per_second;
        shared.bucket.burst = burst;
    }

    /// The most REST requests answered at once since the last call (and resets the count).
    pub fn reset_in_flight(&self) -> usize {
        use std::sync::atomic::Ordering;
        self.inner.most_in_flight.swap(
            self.inner.in_flight.load(Ordering::SeqCst),
            Ordering::SeqCst,
        )
    }

    pub fn events_sent(&self) -> Vec<EventRecord> {
        self.inner.lock().events.clone()
    }
}

fn stage_fields(stage_id: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("STAGE_ID".into(), json!(stage_id));
    fields
}

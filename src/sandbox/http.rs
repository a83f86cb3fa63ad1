//! The HTTP face of the simulated portal: the `/rest/{user}/{secret}/{method}` endpoint with
//! Bitrix24's envelopes, its leaky-bucket rate limit, and the injected faults.
//!
//! To drop a connection without an answer (what a real network does to a client mid-call)
//! the server runs on its own [`Listener`]: every accepted socket is wrapped in a
//! [`KillableStream`] whose kill switch reaches the handler as connection info. Killing it
//! makes every further read and write of that socket fail, so hyper abandons the connection
//! and closes it before a single byte of the response is written.
//!
//! A huge answer ([`super::Faults::huge_answer_bytes`]) is a [`Padded`] body: whitespace made
//! up frame by frame, then the real answer.
//!
//! Over 500 lines because the faults it plays (slow heads, resets, padded answers) each need their
//! own small body or stream type here, at the HTTP layer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use hyper::body::Frame;
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::methods::{self, CallCtx, METHODS};
use super::php::parse_query;
use super::store::ApiError;
use super::{Inner, RequestRecord};

/// The largest request body the simulator reads.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Bitrix24's leaky bucket: every request adds one, the level drains at a fixed rate, and a
/// request that finds the level already above the limit is refused (so `burst + 1`
/// back-to-back requests pass, the next one gets 503, exactly as the docs word it: "when the
/// counter value exceeds the threshold, the following request is blocked").
#[derive(Debug)]
pub struct Bucket {
    level: f64,
    last: Instant,
    pub requests_per_second: f64,
    pub burst: u32,
}

impl Bucket {
    pub fn new(requests_per_second: f64, burst: u32) -> Self {
        Self {
            level: 0.0,
            last: Instant::now(),
            requests_per_second,
            burst,
        }
    }

    /// Counts a request; `false` when it must be refused (the refused one is not counted).
    pub fn admit(&mut self) -> bool {
        let now = Instant::now();
        let drained = now.duration_since(self.last).as_secs_f64() * self.requests_per_second;
        self.level = (self.level - drained).max(0.0);
        self.last = now;
        if self.level > f64::from(self.burst) {
            return false;
        }
        self.level += 1.0;
        true
    }
}

/// The kill switch of one accepted connection.
#[derive(Clone, Default, Debug)]
pub struct ConnHandle {
    killed: Arc<AtomicBool>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl ConnHandle {
    /// Makes the connection fail from now on and wakes a pending read so hyper notices.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = self.waker.lock()
            && let Some(w) = slot.take()
        {
            w.wake();
        }
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// A TCP stream that errors every operation once its [`ConnHandle`] is killed.
pub struct KillableStream {
    inner: TcpStream,
    handle: ConnHandle,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.handle.is_killed() {
            return Poll::Ready(Err(aborted()));
        }
        if let Ok(mut slot) = self.handle.waker.lock() {
            *slot = Some(cx.waker().clone());
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.handle.is_killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.handle.is_killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A TCP listener handing out [`KillableStream`]s, their handles as the "address".
pub struct SimListener(pub TcpListener);

impl Listener for SimListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, _)) => {
                    let _ = inner.set_nodelay(true);
                    let handle = ConnHandle::default();
                    return (
                        KillableStream {
                            inner,
                            handle: handle.clone(),
                        },
                        handle,
                    );
                }
                // Out of file descriptors and the like: wait and try again, as axum does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ConnHandle::default())
    }
}

impl Connected<IncomingStream<'_, SimListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Counts a request in [`Inner::in_flight`] while it is answered.
struct Answering<'a>(&'a Inner);

impl<'a> Answering<'a> {
    fn new(inner: &'a Inner) -> Answering<'a> {
        use std::sync::atomic::Ordering;
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.most_in_flight.fetch_max(now, Ordering::SeqCst);
        Answering(inner)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What the fault dice decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    ErrorBefore,
    ErrorAfter,
    DropBefore,
    DropAfter,
    Malformed,
}

/// Rolls the fault dice once: the rates are consecutive slices of `0.0..1.0`.
fn choose_fault(faults: &super::Faults, rng: &mut impl Rng) -> Fault {
    let roll: f64 = rng.random();
    let slices = [
        (faults.error_rate, Fault::ErrorBefore),
        (faults.error_after_rate, Fault::ErrorAfter),
        (faults.drop_rate, Fault::DropBefore),
        (faults.malformed_rate, Fault::Malformed),
    ];
    let mut edge = 0.0;
    for (rate, fault) in slices {
        edge += rate.max(0.0);
        if roll < edge {
            // A drop happens before or after executing, half and half.
            if fault == Fault::DropBefore && rng.random_bool(0.5) {
                return Fault::DropAfter;
            }
            return fault;
        }
    }
    Fault::None
}

/// What a [`Padded`] body sends a frame at a time.
static SPACES: [u8; 64 * 1024] = [b' '; 64 * 1024];

/// `pad` bytes of JSON whitespace, then `answer`: valid JSON of any size, made up as it is sent
/// (no `Content-Length`, so the client sees the size only as it reads).
struct Padded {
    pad: usize,
    answer: Option<Bytes>,
}

impl hyper::body::Body for Padded {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.pad > 0 {
            let n = self.pad.min(SPACES.len());
            self.pad -= n;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&SPACES[..n])))));
        }
        Poll::Ready(self.answer.take().map(|answer| Ok(Frame::data(answer))))
    }
}

fn padded_response(status: u16, body: &Value, pad: usize) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::new(Padded {
            pad,
            answer: Some(Bytes::from(body.to_string())),
        }))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(err: &ApiError) -> Response {
    json_response(err.status, &err.body())
}

/// Request parameters: the query string, then the body (JSON or a PHP-style form) over it.
fn read_params(query: Option<&str>, content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let mut params = match query {
        Some(q) => parse_query(q),
        None => json!({}),
    };
    let trimmed = body
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .collect::<Vec<_>>();
    if trimmed.is_empty() {
        return Ok(params);
    }
    let looks_json =
        content_type.contains("json") || (content_type.is_empty() && *trimmed[0] == b'{');
    let from_body = if looks_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Value::Object(map),
            Ok(_) | Err(_) => {
                return Err(ApiError::new(400, "INVALID_REQUEST", "Invalid JSON body"));
            }
        }
    } else {
        parse_query(&String::from_utf8_lossy(body))
    };
    if let (Value::Object(base), Value::Object(extra)) = (&mut params, from_body) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
    Ok(params)
}

/// The one handler: every path goes through it, so unknown `/rest/` paths are recorded too.
pub async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let at = Instant::now();
    let started = methods::unix_now();
    let _answering = Answering::new(&inner);
    let path = request.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/rest/") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let query = request.uri().query().map(str::to_string);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = to_bytes(request.into_body(), MAX_BODY)
        .await
        .unwrap_or_default();

    let method = segments
        .last()
        .map(|m| m.to_ascii_lowercase())
        .map(|m| m.strip_suffix(".json").map(str::to_string).unwrap_or(m))
        .unwrap_or_default();
    let record = |status: u16, error: Option<String>, sub_methods: Vec<String>| RequestRecord {
        method: method.clone(),
        status,
        error,
        sub_methods,
        at,
        worked: Duration::ZERO,
    };

    // Authorisation, rate limit and the fault dice, under one short lock.
    let (fault, delay, ctx, pad) = {
        let mut shared = inner.lock();
        match shared.faults.outage {
            Some(super::Outage::Gateway(status)) => {
                shared
                    .requests
                    .push(record(status, Some("GATEWAY".into()), Vec::new()));
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let page = format!("<html><body><h1>{status}</h1>nginx</body></html>");
                return (status, [(header::CONTENT_TYPE, "text/html")], page).into_response();
            }
            Some(super::Outage::Dropped) => {
                shared
                    .requests
                    .push(record(0, Some("DROPPED".into()), Vec::new()));
                drop(shared);
                conn.kill();
                return (StatusCode::BAD_GATEWAY, "").into_response();
            }
            None => {}
        }
        if let Some(origin) = shared.faults.redirect_to.clone() {
            shared
                .requests
                .push(record(302, Some("REDIRECT".into()), Vec::new()));
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            let location = format!("{}{path}{query}", origin.trim_end_matches('/'));
            return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
        }
        let authorised = segments.len() == 3
            && segments[0] == inner.webhook_user.to_string()
            && segments[1] == inner.webhook_secret;
        let refusal = if !authorised {
            Some(ApiError::new(
                401,
                "NO_AUTH_FOUND",
                "Wrong authorization data",
            ))
        } else if !shared.bucket.admit() {
            Some(ApiError::new(
                503,
                "QUERY_LIMIT_EXCEEDED",
                "Too many requests",
            ))
        } else if !METHODS.contains(&method.as_str()) {
            Some(methods::method_not_found())
        } else {
            None
        };
        let refusal = refusal.or_else(|| {
            shared.faults.huge_error_bytes.map(|bytes| {
                let text = "Ошибка ".repeat(bytes / "Ошибка ".len() + 1);
                ApiError::new(400, "ERROR_CORE", &text)
            })
        });
        if let Some(err) = refusal {
            shared
                .requests
                .push(record(err.status, Some(err.code.clone()), Vec::new()));
            return error_response(&err);
        }
        let faults = shared.faults.clone();
        let fault = choose_fault(&faults, &mut shared.rng);
        let ctx = CallCtx {
            offset: shared.portal.offset,
            started,
            method_429: faults.method_429.clone(),
            faults: faults.clone(),
        };
        (fault, faults.delay, ctx, faults.huge_answer_bytes)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }

    let internal = ApiError::new(500, "INTERNAL_SERVER_ERROR", "Internal server error");
    match fault {
        Fault::ErrorBefore => {
            inner
                .lock()
                .requests
                .push(record(500, Some(internal.code.clone()), Vec::new()));
            return error_response(&internal);
        }
        Fault::DropBefore => {
            inner
                .lock()
                .requests
                .push(record(0, Some("DROPPED".into()), Vec::new()));
            conn.kill();
            return StatusCode::OK.into_response();
        }
        _ => {}
    }
    if ctx.is_blocked(&method) {
        let err = CallCtx::operation_time_limit();
        inner
            .lock()
            .requests
            .push(record(429, Some(err.code.clone()), Vec::new()));
        let mut body = err.body();
        if let Value::Object(m) = &mut body {
            m.insert("time".into(), ctx.time(&method));
        }
        return json_response(429, &body);
    }

    let params = match read_params(query.as_deref(), &content_type, &body) {
        Ok(p) => p,
        Err(err) => {
            inner
                .lock()
                .requests
                .push(record(err.status, Some(err.code.clone()), Vec::new()));
            return error_response(&err);
        }
    };
    let (outcome, worked) = {
        let mut shared = inner.lock();
        let running = Instant::now();
        let outcome = methods::call(&mut shared.portal, &method, &params, &ctx);
        let worked = running.elapsed();
        // Deal writes queue their events now, in order, like Bitrix24's event queue.
        inner.queue_fired(&mut shared, None);
        (outcome, worked)
    };
    let record = |status: u16, error: Option<String>, sub_methods: Vec<String>| RequestRecord {
        worked,
        ..record(status, error, sub_methods)
    };
    let (status, body, error, sub_methods) = match outcome {
        Ok(reply) => {
            let mut env = Map::new();
            env.insert("result".into(), reply.result);
            if let Some(t) = reply.total {
                env.insert("total".into(), json!(t));
            }
            if let Some(n) = reply.next {
                env.insert("next".into(), json!(n));
            }
            env.insert("time".into(), ctx.time(&method));
            (200, Value::Object(env), None, reply.sub_methods)
        }
        Err(err) => (err.status, err.body(), Some(err.code.clone()), Vec::new()),
    };
    if let Some((held, hold)) = &ctx.faults.hold_after
        && (method == *held || sub_methods.contains(held))
    {
        tokio::time::sleep(*hold).await;
    }
    match fault {
        Fault::ErrorAfter => {
            inner
                .lock()
                .requests
                .push(record(500, Some(internal.code.clone()), sub_methods));
            error_response(&internal)
        }
        Fault::DropAfter => {
            inner
                .lock()
                .requests
                .push(record(0, Some("DROPPED".into()), sub_methods));
            conn.kill();
            StatusCode::OK.into_response()
        }
        Fault::Malformed => {
            inner
                .lock()
                .requests
                .push(record(200, Some("MALFORMED".into()), sub_methods));
            // Half of the real answer: what a proxy cut short would deliver.
            let text = body.to_string();
            let cut: String = text.chars().take(text.chars().count() / 2).collect();
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .body(Body::from(cut))
                .unwrap_or_else(|_| StatusCode::OK.into_response())
        }
        _ => {
            inner
                .lock()
                .requests
                .push(record(status, error, sub_methods));
            match pad {
                Some(pad) => padded_response(status, &body, pad),
                None => json_response(status, &body),
            }
        }
    }
}

//! The client against a tiny portal made with axum: what goes on the wire, and what each kind
//! of answer makes the client do.
//!
//! This file has the mock portal and the helpers; the tests are by topic: `calls` (one call,
//! its retries and failures), `parking` (429), `batch` (and `list_all`), `redirects` and
//! `pacing` (the leaky bucket).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use serde_json::{Value, json};

use super::*;

mod batch;
mod calls;
mod pacing;
mod parking;
mod redirects;

const SECRET: &str = "s3cretW3bhook";

/// What the mock portal answers: status, extra headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: u16, body: Value) -> Reply {
    raw(status, &body.to_string())
}

fn raw(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// One request the mock saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    headers: HeaderMap,
    body: Value,
}

/// What the mock answers: (request index, `Host` header, method, body) → reply.
type Responder = dyn Fn(usize, &str, &str, &Value) -> Reply + Send + Sync;

struct Portal {
    seen: Mutex<Vec<Seen>>,
    responder: Box<Responder>,
}

struct Mock {
    portal: Arc<Portal>,
    origin: String,
}

impl Mock {
    fn seen(&self) -> Vec<Seen> {
        self.portal.seen.lock().expect("lock").clone()
    }

    fn webhook(&self) -> url::Url {
        url::Url::parse(&format!("{}/rest/1/{SECRET}/", self.origin)).expect("url")
    }
}

async fn handle(
    State(portal): State<Arc<Portal>>,
    Path((_user, secret, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    assert_eq!(secret, SECRET);
    let method = method.trim_end_matches(".json").to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut seen = portal.seen.lock().expect("lock");
        seen.push(Seen {
            method: method.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        seen.len() - 1
    };
    let host = headers
        .get("host")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let answer = (portal.responder)(index, &host, &method, &body);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(answer.status).expect("status"),
        answer.body,
    )
        .into_response();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header"));
    }
    response
}

async fn mock(responder: impl Fn(usize, &str, &Value) -> Reply + Send + Sync + 'static) -> Mock {
    mock_by_host(move |n, _, method, body| responder(n, method, body)).await
}

/// A mock that answers by the `Host` header too: several portal names on one port.
async fn mock_by_host(
    responder: impl Fn(usize, &str, &str, &Value) -> Reply + Send + Sync + 'static,
) -> Mock {
    let portal = Arc::new(Portal {
        seen: Mutex::new(Vec::new()),
        responder: Box::new(responder),
    });
    let app = Router::new()
        .route("/rest/{user}/{secret}/{method}", post(handle))
        .with_state(portal.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Mock { portal, origin }
}

fn settings(webhook: url::Url) -> ClientSettings {
    ClientSettings {
        requests_per_second: 20.0,
        burst: 50,
        timeout: Duration::from_secs(2),
        max_attempts: 5,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ClientSettings::new(webhook)
    }
}

fn client(mock: &Mock) -> Client {
    Client::new(settings(mock.webhook())).expect("client")
}

fn ok(result: Value) -> Reply {
    reply(
        200,
        json!({"result": result, "time": {"start": 1.0, "finish": 1.1, "duration": 0.1}}),
    )
}

fn api_error(status: u16, code: &str, description: &str) -> Reply {
    reply(
        status,
        json!({"error": code, "error_description": description}),
    )
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the secret leaked: {text}");
}

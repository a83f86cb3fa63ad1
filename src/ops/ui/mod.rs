//! The web dashboard under `/ui/` (`control.md`, "The web dashboard"): server-rendered pages
//! (templates checked at compile time by askama), working with JavaScript off, in
//! `ui.language`.
//!
//! Access: off without `server.admin_token` (no route mounted). A request needs the admin token
//! as `Authorization: Bearer`, or the session cookie the login form sets once the token is typed
//! (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Secure` with `ui.secure_cookie`, for
//! `ui.session`); without either, an HTML client gets the login page and anything else a bare
//! 401, and no page shows a deal's data. Every form that changes something (retry a job, log
//! out) is a POST carrying the session's CSRF token, checked in constant time; a request that
//! came with the Bearer token carries no ambient credential and needs none. Sessions live in
//! memory: a restart asks for the token again.
//!
//! `pages` holds the pages, `texts` their words.

mod pages;
mod texts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::distr::{Alphanumeric, SampleString};
use subtle::ConstantTimeEq;

use crate::configuration::UiSettings;
use crate::ops::admin::{AdminState, authorized};
use crate::rules::RulesStatus;

/// The session cookie's name.
const COOKIE: &str = "b24robot_session";

/// What the pages need.
#[derive(Clone)]
pub struct UiState {
    pub admin: AdminState,
    pub rules_status: RulesStatus,
    pub settings: UiSettings,
    sessions: Arc<Sessions>,
}

impl UiState {
    pub fn new(admin: AdminState, rules_status: RulesStatus, settings: UiSettings) -> UiState {
        UiState {
            admin,
            rules_status,
            settings,
            sessions: Arc::default(),
        }
    }
}

impl UiState {
    /// The service's worker, which the pages that read the portal need.
    fn worker(&self) -> Option<&std::sync::Arc<crate::worker::Worker>> {
        self.admin.backfill.as_ref().map(|service| &service.worker)
    }
}

/// The logged-in sessions: id → (until when, its CSRF token).
#[derive(Default)]
struct Sessions {
    open: Mutex<HashMap<String, (Instant, String)>>,
}

impl Sessions {
    fn open(&self, lasts: Duration) -> (String, String) {
        let id = Alphanumeric.sample_string(&mut rand::rng(), 40);
        let csrf = Alphanumeric.sample_string(&mut rand::rng(), 32);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        open.retain(|_, (until, _)| *until > now);
        open.insert(id.clone(), (now + lasts, csrf.clone()));
        (id, csrf)
    }

    /// The CSRF token of a session still open.
    fn csrf(&self, id: &str) -> Option<String> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(id)
            .filter(|(until, _)| *until > Instant::now())
            .map(|(_, csrf)| csrf.clone())
    }

    fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// Who a request is: a session (with its CSRF token), or the Bearer token.
#[derive(Clone, Debug)]
pub(crate) enum Caller {
    Session { id: String, csrf: String },
    Bearer,
}

impl Caller {
    /// The CSRF token a form of this caller carries ("" for a Bearer caller, who needs none).
    fn csrf(&self) -> &str {
        match self {
            Caller::Session { csrf, .. } => csrf,
            Caller::Bearer => "",
        }
    }

    /// Whether a POST's `csrf` field is this session's token.
    fn allows(&self, presented: &str) -> bool {
        match self {
            Caller::Session { csrf, .. } => presented.as_bytes().ct_eq(csrf.as_bytes()).into(),
            Caller::Bearer => true,
        }
    }
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
}

/// The dashboard's routes; none without an admin token.
pub fn router(state: UiState) -> Router {
    if state.admin.token.is_empty() {
        return Router::new();
    }
    let guarded = Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route("/ui/control", get(pages::control))
        .route("/ui/reports", get(pages::reports))
        .route("/ui/reports/{file}", get(pages::report_csv))
        .route("/ui/service", get(pages::service))
        .route("/ui/deals", get(pages::find_deal))
        .route("/ui/deals/{id}", get(pages::deal))
        .route("/ui/jobs/{id}/retry", post(pages::retry))
        .route("/ui/logout", post(pages::logout))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .merge(guarded)
        .with_state(state)
}

/// Lets through a request with the Bearer token or an open session; else the login page (an
/// HTML client) or 401.
async fn guard(
    axum::extract::State(state): axum::extract::State<UiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = if authorized(&request, state.admin.token.expose()) {
        Some(Caller::Bearer)
    } else {
        session_id(request.headers()).and_then(|id| {
            state
                .sessions
                .csrf(&id)
                .map(|csrf| Caller::Session { id, csrf })
        })
    };
    match caller {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => {
            let html = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            if html {
                let mut page = pages::login_form(&state, false, StatusCode::UNAUTHORIZED);
                page.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                page
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "login required\n",
                )
                    .into_response()
            }
        }
    }
}

/// The `Set-Cookie` of a new session, or of its end (`Max-Age=0`).
fn cookie(value: &str, lasts: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        lasts.as_secs()
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

//! The dashboard's pages: login, control (what the next digest would say now), service (rules
//! in force, the queue with its parked jobs and their retry, timers pending, a deal's
//! decisions).

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::texts::{self, Texts};
use super::{Caller, UiState, cookie};
use crate::ops::admin::{
    deal_report, format_deal_report, jobs_report, off_the_runtime, store_error,
};
use crate::worker::control::digests;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage<'a> {
    t: &'a Texts,
    title: &'a str,
    failed: bool,
}

#[derive(Template)]
#[template(path = "ui/service.html")]
struct ServicePage<'a> {
    t: &'a Texts,
    title: &'a str,
    csrf: &'a str,
    version: String,
    rules: usize,
    stale: bool,
    errors: Vec<String>,
    queued: usize,
    parked: usize,
    timers: u64,
    jobs: Vec<JobView>,
}

struct JobView {
    deal_id: u64,
    events: u64,
    error: String,
}

#[derive(Template)]
#[template(path = "ui/deal.html")]
struct DealPage<'a> {
    t: &'a Texts,
    title: &'a str,
    csrf: &'a str,
    deal_id: u64,
    report: String,
}

#[derive(Template)]
#[template(path = "ui/control.html")]
struct ControlPage<'a> {
    t: &'a Texts,
    title: &'a str,
    csrf: &'a str,
    digests: Vec<DigestView>,
}

struct DigestView {
    name: String,
    next: String,
    items: Vec<ItemView>,
}

struct ItemView {
    what: &'static str,
    /// The task's title and address.
    task: Option<(String, String)>,
    deal: String,
    deal_url: String,
    person: String,
    since: String,
}

fn texts_of(state: &UiState) -> &'static Texts {
    texts::of(state.settings.language)
}

/// A page rendered, or the template's error as a 500 (a bug: templates are checked when built).
fn html(rendered: askama::Result<String>, status: StatusCode) -> Response {
    match rendered {
        Ok(page) => {
            let mut response = (status, Html(page)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "dashboard: a page did not render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page did not render\n",
            )
                .into_response()
        }
    }
}

pub(super) fn login_form(state: &UiState, failed: bool, status: StatusCode) -> Response {
    let t = texts_of(state);
    html(
        LoginPage {
            t,
            title: t.login,
            failed,
        }
        .render(),
        status,
    )
}

pub(super) async fn login_page(State(state): State<UiState>) -> Response {
    login_form(&state, false, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

pub(super) async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    let token = state.admin.token.expose();
    let right: bool = form.token.trim().as_bytes().ct_eq(token.as_bytes()).into();
    if !right || token.is_empty() {
        tracing::warn!("dashboard: a login with a wrong token");
        return login_form(&state, true, StatusCode::UNAUTHORIZED);
    }
    let lasts = state.settings.session;
    let (id, _) = state.sessions.open(lasts);
    let mut response = Redirect::to("/ui/control").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&id, lasts, state.settings.secure_cookie),
    );
    response
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "the form's CSRF token is missing or wrong: reload the page\n",
    )
        .into_response()
}

pub(super) async fn logout(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !caller.allows(&form.csrf) {
        return refused();
    }
    if let Caller::Session { id, .. } = &caller {
        state.sessions.close(id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie("", std::time::Duration::ZERO, state.settings.secure_cookie),
    );
    response
}

pub(super) async fn home() -> Redirect {
    Redirect::to("/ui/control")
}

pub(super) async fn service(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let t = texts_of(&state);
    let jobs = match off_the_runtime(&state.admin, jobs_report).await {
        Ok(jobs) => jobs,
        Err(error) => return store_error(&error),
    };
    let rules = state
        .admin
        .backfill
        .as_ref()
        .map(|b| b.worker.rules.current());
    let version = rules
        .as_ref()
        .map_or_else(String::new, |r| r.version().to_string());
    let disk = state.rules_status.view(&version);
    html(
        ServicePage {
            t,
            title: t.service,
            csrf: caller.csrf(),
            rules: rules.as_ref().map_or(0, |r| r.len()),
            version,
            stale: disk.stale,
            errors: disk.errors,
            queued: jobs.queued,
            parked: jobs.parked,
            timers: state.admin.store.timers_pending(),
            jobs: jobs
                .jobs
                .iter()
                .filter(|q| q.parked)
                .map(|q| JobView {
                    deal_id: q.deal_id,
                    events: q.events,
                    error: q.last_error.clone().unwrap_or_default(),
                })
                .collect(),
        }
        .render(),
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub(super) struct DealQuery {
    id: u64,
}

pub(super) async fn find_deal(Query(q): Query<DealQuery>) -> Redirect {
    Redirect::to(&format!("/ui/deals/{}", q.id))
}

pub(super) async fn deal(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
) -> Response {
    let t = texts_of(&state);
    match off_the_runtime(&state.admin, move |store| deal_report(store, id)).await {
        Ok(report) => html(
            DealPage {
                t,
                title: t.deal,
                csrf: caller.csrf(),
                deal_id: id,
                report: format_deal_report(&report),
            }
            .render(),
            StatusCode::OK,
        ),
        Err(error) => store_error(&error),
    }
}

pub(super) async fn retry(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<u64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !caller.allows(&form.csrf) {
        return refused();
    }
    let revived = off_the_runtime(&state.admin, move |store| {
        let revived = store.retry_parked(Some(id))?;
        store.flush()?;
        Ok(revived)
    })
    .await;
    match revived {
        Ok(deals) => {
            for d in deals {
                state.admin.scheduler.wake(d);
            }
            Redirect::to("/ui/service").into_response()
        }
        Err(error) => store_error(&error),
    }
}

pub(super) async fn control(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let t = texts_of(&state);
    let Some(service) = &state.admin.backfill else {
        return (StatusCode::NOT_FOUND, "no worker in this service\n").into_response();
    };
    let worker = &service.worker;
    let rules = worker.rules.current();
    let now = worker.clock.now().fixed_offset();
    let mut views = Vec::new();
    // One read of the portal for every digest of the page.
    let seen = if rules.controls().digests().is_empty() {
        crate::worker::control::sweep::Seen::default()
    } else {
        match crate::worker::control::sweep::read(worker, &rules).await {
            Ok(seen) => seen,
            Err(error) => return (StatusCode::BAD_GATEWAY, format!("{error}\n")).into_response(),
        }
    };
    let mut found = Vec::new();
    for digest in rules.controls().digests() {
        match digests::items_of(worker, &rules, digest, (&seen, now)) {
            Ok(items) => found.push((digest, items)),
            Err(error) => {
                return (StatusCode::BAD_GATEWAY, format!("{error}\n")).into_response();
            }
        }
    }
    let people: Vec<u64> = found
        .iter()
        .flat_map(|(_, items)| items.iter().filter_map(|i| i.person))
        .collect();
    let names = crate::worker::control::sweep::names(worker, &people).await;
    for (digest, items) in found {
        let next = digest
            .next_slot(&worker.calendar, now)
            .map_or_else(String::new, |slot| slot.to_string());
        let calendar = &worker.calendar;
        views.push(DigestView {
            name: digest.name().to_string(),
            next,
            items: items
                .into_iter()
                .map(|i| ItemView {
                    what: state.settings.language.digest_heading(i.kind),
                    task: i.task.map(|task| (task.title, task.url)),
                    deal: i.deal_title,
                    deal_url: i.deal_url,
                    person: i.person.map_or_else(String::new, |p| {
                        names.get(&p).cloned().unwrap_or_else(|| format!("#{p}"))
                    }),
                    since: crate::rules::control::evaluate::print_moment(calendar, i.since),
                })
                .collect(),
        });
    }
    html(
        ControlPage {
            t,
            title: t.control,
            csrf: caller.csrf(),
            digests: views,
        }
        .render(),
        StatusCode::OK,
    )
}

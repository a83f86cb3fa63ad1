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

/// A service built without its worker (never `serve`): the pages that read the portal cannot.
fn no_worker() -> Response {
    (StatusCode::NOT_FOUND, "no worker in this service\n").into_response()
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
    let Some(worker) = state.worker() else {
        return no_worker();
    };
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

#[derive(Template)]
#[template(path = "ui/reports.html")]
struct ReportsPage<'a> {
    t: &'a Texts,
    title: &'a str,
    csrf: &'a str,
    names: &'static [&'static str],
    name: String,
    period: String,
    from: String,
    to: String,
    as_of: String,
    /// Why the copy is not newer than `as_of`, when the portal did not answer.
    refresh_error: Option<String>,
    chart_title: String,
    chart_height: usize,
    bars: Vec<Bar>,
    /// Where the period's elapsed share falls on the plan chart (x, in the SVG's units).
    marker: Option<f64>,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// One bar of a report's chart, placed for the SVG (drawn on the server: no script needed).
struct Bar {
    label: String,
    value: String,
    y: usize,
    width: f64,
    text_x: f64,
}

/// Where bars start and how long the longest is, in the SVG's units (600 wide).
const BAR_X: f64 = 200.0;
const BAR_MAX: f64 = 330.0;

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    name: Option<String>,
    period: Option<String>,
}

/// Each report's chart: what a bar is labelled by and what it measures.
fn chart_of(name: &str, json: &serde_json::Value) -> (String, Vec<(String, f64, String)>) {
    let rows = json["rows"].as_array().cloned().unwrap_or_default();
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let text = crate::reports::cell;
    match name {
        "plan" => (
            "% done".into(),
            rows.iter()
                .map(|r| {
                    let who = if r["user_id"].is_null() {
                        String::new()
                    } else {
                        format!(" · #{}", text(&r["user_id"]))
                    };
                    (
                        format!("{}{who}", text(&r["plan"])),
                        num(&r["percent"]),
                        format!("{}%", text(&r["percent"])),
                    )
                })
                .collect(),
        ),
        "nps" => {
            let totals = json["totals"].as_array().cloned().unwrap_or_default();
            let mut bars = Vec::new();
            for t in totals {
                for key in ["promoters", "passives", "detractors"] {
                    bars.push((
                        format!("{} · {key}", text(&t["rule"])),
                        num(&t[key]),
                        text(&t[key]),
                    ));
                }
            }
            ("NPS".into(), bars)
        }
        "losses" => (
            "lost deals by reason".into(),
            rows.iter()
                .filter(|r| r["pipeline"].is_null() && r["user_id"].is_null())
                .map(|r| {
                    let reason = if r["reason"].is_null() {
                        "—".to_string()
                    } else {
                        text(&r["reason"])
                    };
                    (reason, num(&r["count"]), text(&r["count"]))
                })
                .collect(),
        ),
        "stages" => (
            "median time in stage, hours".into(),
            rows.iter()
                .map(|r| {
                    let hours = num(&r["median_seconds"]) / 3600.0;
                    (text(&r["stage_name"]), hours, format!("{hours:.1}"))
                })
                .collect(),
        ),
        "tasks" => (
            "tasks created, per person".into(),
            rows.iter()
                .map(|r| {
                    (
                        format!("#{}", text(&r["user_id"])),
                        num(&r["created"]),
                        text(&r["created"]),
                    )
                })
                .collect(),
        ),
        _ => (String::new(), Vec::new()),
    }
}

pub(super) async fn reports(
    State(state): State<UiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let t = texts_of(&state);
    let Some(worker) = state.worker() else {
        return no_worker();
    };
    let rules = worker.rules.current();
    let name = q.name.unwrap_or_else(|| "plan".into());
    let period = q.period.filter(|p| !p.trim().is_empty());
    let json = match crate::worker::report_copy::report_json(
        worker,
        &rules,
        &name,
        (period.as_deref(), None),
        false,
    )
    .await
    {
        Ok(json) => json,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let (chart_title, data) = chart_of(&name, &json);
    let top = data.iter().map(|(_, v, _)| *v).fold(0.0_f64, f64::max);
    let scale = if name == "plan" {
        top.max(100.0)
    } else {
        top.max(1.0)
    };
    let bars: Vec<Bar> = data
        .into_iter()
        .enumerate()
        .map(|(i, (label, value, shown))| {
            let width = (value.max(0.0) / scale * BAR_MAX).round();
            Bar {
                label,
                value: shown,
                // Below the first 16 units: the plan chart's marker is labelled there.
                y: 18 + i * 24,
                width,
                text_x: BAR_X + width + 6.0,
            }
        })
        .collect();
    let marker = (name == "plan").then(|| {
        let asked = json["period"]["from"].as_str().and_then(|from| {
            let month = &from[..from.len().min(7)];
            month.parse::<crate::rules::ReportPeriod>().ok()
        });
        let now = worker.clock.now().fixed_offset();
        let period = period
            .as_deref()
            .and_then(|p| p.parse::<crate::rules::ReportPeriod>().ok())
            .or(asked)
            .unwrap_or_else(|| crate::rules::ReportPeriod::current(&worker.calendar, now));
        let all = period.working_days(&worker.calendar).max(1) as f64;
        let done = period.working_days_elapsed(&worker.calendar, now) as f64;
        (BAR_X + (done / all * 100.0) / scale * BAR_MAX).round()
    });
    let rows = json["rows"].as_array().cloned().unwrap_or_default();
    let (columns, rows) = crate::reports::shown_table(&rows, state.settings.language);
    let text = crate::reports::cell;
    html(
        ReportsPage {
            t,
            title: t.reports,
            csrf: caller.csrf(),
            names: &crate::worker::report_copy::REPORTS,
            chart_height: 22 + bars.len() * 24,
            bars,
            marker,
            name,
            period: period.unwrap_or_default(),
            from: text(&json["period"]["from"]),
            to: text(&json["period"]["to"]),
            as_of: text(&json["data_as_of"]),
            refresh_error: json["refresh_error"].as_str().map(str::to_string),
            chart_title,
            columns,
            rows,
        }
        .render(),
        StatusCode::OK,
    )
}

/// `/ui/reports/{name}.csv`: the report's rows for Excel (UTF-8 with a BOM, `;`).
pub(super) async fn report_csv(
    State(state): State<UiState>,
    Path(file): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let Some(name) = file.strip_suffix(".csv") else {
        return (StatusCode::NOT_FOUND, "not a report\n").into_response();
    };
    let Some(worker) = state.worker() else {
        return no_worker();
    };
    let rules = worker.rules.current();
    let period = q.period.filter(|p| !p.trim().is_empty());
    match crate::worker::report_copy::report_json(
        worker,
        &rules,
        name,
        (period.as_deref(), None),
        false,
    )
    .await
    {
        Ok(json) => {
            let out = crate::reports::csv_of(&json, ';');
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.csv\""),
                    ),
                ],
                out,
            )
                .into_response()
        }
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

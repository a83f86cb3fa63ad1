//! The web dashboard under `/ui/`: nothing but the login page without credentials, a session
//! cookie with the attributes the spec asks, CSRF tokens on the forms that change anything, and
//! the pages' content.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};

use crate::helpers::{Options, TestApp, new_deal, spawn_app_with};

const TOKEN: &str = "dashboard-admin-token";

async fn app_with(extra: Vec<(&'static str, String)>) -> TestApp {
    let mut settings = vec![("server.admin_token", TOKEN.to_string())];
    settings.extend(extra);
    spawn_app_with(Options {
        settings,
        ..Options::default()
    })
    .await
}

/// A form body, as a browser posts it.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A client that does not follow redirects: the tests look at them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn url(app: &TestApp, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", app.port)
}

/// Logs in through the form; returns the session cookie (`name=value`) and its whole header.
async fn log_in(app: &TestApp) -> (String, String) {
    let answer = client()
        .post(url(app, "/ui/login"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form(&[("token", TOKEN)]))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/ui/control");
    let set = answer.headers()[SET_COOKIE]
        .to_str()
        .expect("text")
        .to_string();
    let pair = set.split(';').next().expect("name=value").to_string();
    (pair, set)
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (StatusCode, String) {
    let answer = client()
        .get(url(app, path))
        .header(COOKIE, cookie)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("answers");
    (answer.status(), answer.text().await.expect("text"))
}

/// The CSRF token of the page's first form.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().expect("the token").to_string()
}

#[tokio::test]
async fn without_credentials_every_route_gets_the_login_page_or_401_and_no_deal_data() {
    let app = app_with(Vec::new()).await;
    let deal = new_deal(&app.sim, "Secret Client LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
    let gets = [
        "/ui".to_string(),
        "/ui/".into(),
        "/ui/control".into(),
        "/ui/service".into(),
        format!("/ui/deals/{deal}"),
        format!("/ui/deals?id={deal}"),
    ];
    for path in &gets {
        let (status, body) = page(&app, path, "b24robot_session=forged").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            body.contains("action=\"/ui/login\""),
            "{path}: the login page"
        );
        assert!(
            !body.contains("Secret Client") && !body.contains("PREPARATION"),
            "{path}: {body}"
        );
        let bare = client().get(url(&app, path)).send().await.expect("answers");
        assert_eq!(bare.status(), StatusCode::UNAUTHORIZED, "{path}");
        let text = bare.text().await.expect("text");
        assert!(!text.contains("Secret Client"), "{path}");
    }
    for path in [format!("/ui/jobs/{deal}/retry"), "/ui/logout".into()] {
        let answer = client()
            .post(url(&app, &path))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form(&[("csrf", "x")]))
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A wrong token at the login form: the login page again, no cookie.
    let wrong = client()
        .post(url(&app, "/ui/login"))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form(&[("token", "guess")]))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    app.stop().await;
}

#[tokio::test]
async fn the_session_cookie_is_http_only_same_site_strict_and_secure_when_configured() {
    let app = app_with(Vec::new()).await;
    let (_, set) = log_in(&app).await;
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/ui"), "{set}");
    assert!(set.contains("Max-Age=43200"), "12 hours by default: {set}");
    assert!(!set.contains("Secure"), "{set}");
    app.stop().await;

    let app = app_with(vec![("ui.secure_cookie", "true".into())]).await;
    let (_, set) = log_in(&app).await;
    assert!(set.contains("; Secure"), "{set}");
    app.stop().await;
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_with_it_the_parked_job_runs_again() {
    let app = app_with(Vec::new()).await;
    let deal = new_deal(&app.sim, "Parked LLC").await;
    app.settle(Duration::from_secs(10)).await;
    app.store
        .enqueue(deal, b24_robot::store::now_ms())
        .expect("queued");
    app.store.park(deal, "a test parked it").expect("parked");
    let (cookie, _) = log_in(&app).await;
    let (status, html) = page(&app, "/ui/service", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("a test parked it"), "{html}");
    assert!(html.contains(&format!("/ui/jobs/{deal}/retry")), "{html}");

    for csrf in ["", "wrong-token"] {
        let answer = client()
            .post(url(&app, &format!("/ui/jobs/{deal}/retry")))
            .header(COOKIE, &cookie)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form(&[("csrf", csrf)]))
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "csrf {csrf:?}");
    }
    assert!(
        app.store
            .queued(deal)
            .expect("read")
            .expect("queued")
            .parked
    );
    let answer = client()
        .post(url(&app, &format!("/ui/jobs/{deal}/retry")))
        .header(COOKIE, &cookie)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form(&[("csrf", &csrf_of(&html))]))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    app.settle(Duration::from_secs(10)).await;
    assert!(
        app.store.queued(deal).expect("read").is_none(),
        "the job ran and completed"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_pages_show_the_rules_the_queue_and_a_deals_decisions_in_the_configured_language() {
    let app = app_with(vec![("ui.language", "ru".into())]).await;
    let deal = new_deal(&app.sim, "Romashka LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
    let (cookie, _) = log_in(&app).await;
    let (status, html) = page(&app, "/ui/service", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Правила в работе"), "{html}");
    let version = app.readyz().await["rules_version"]
        .as_str()
        .expect("version")
        .to_string();
    assert!(html.contains(&version), "the version in force: {html}");
    let (status, html) = page(&app, &format!("/ui/deals/{deal}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("rule offer: fired"), "{html}");
    let (status, html) = page(&app, "/ui/control", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("[[digest]]"),
        "no digest in these rules: {html}"
    );

    // The Bearer token opens the pages too (and needs no CSRF token: it is no cookie).
    let answer = client()
        .get(url(&app, "/ui/service"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_dashboard() {
    let app = spawn_app_with(Options::default()).await;
    let answer = client()
        .get(url(&app, "/ui/login"))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn the_control_page_shows_what_the_next_digest_would_say_with_links_and_names() {
    let rules = r#"
[[overdue]]
name = "all-overdue"
pipeline = 0
tasks = "all"
notify = ["responsible"]

[[digest]]
name = "daily-control"
to = [20]
at = ["09:30", "17:30"]
include = ["all-overdue"]
"#;
    let app = spawn_app_with(Options {
        rules: vec![crate::helpers::rule_file("control.toml", rules)],
        settings: vec![("server.admin_token", TOKEN.to_string())],
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Overdue Client LLC").await;
    app.move_to(deal, "PREPARATION", Duration::from_secs(10))
        .await;
    let late = chrono::Utc::now().fixed_offset() - chrono::Duration::hours(3);
    let task = app.sim.add_user_task(deal, "Call them back", 3, Some(late));
    let (cookie, _) = log_in(&app).await;
    let (status, html) = page(&app, "/ui/control", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("daily-control"), "{html}");
    assert!(html.contains("Call them back"), "{html}");
    assert!(
        html.contains(&format!("/tasks/task/view/{task}/")),
        "{html}"
    );
    assert!(
        html.contains(&format!("/crm/deal/details/{deal}/")),
        "{html}"
    );
    assert!(html.contains("Vera Manager"), "the person by name: {html}");
    app.stop().await;
}

#[tokio::test]
async fn the_reports_page_draws_the_plan_and_offers_its_csv() {
    let month = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .format("%Y-%m")
        .to_string();
    let plan = format!(
        "[[plan]]\nname = \"sales-month\"\nperiod = \"{month}\"\npipeline = 0\nmeasure = \"amount\"\ncurrency = \"RUB\"\ntargets = {{ 3 = 4000 }}\n"
    );
    let app = spawn_app_with(Options {
        rules: vec![
            crate::helpers::task_rules(),
            crate::helpers::rule_file("plan.toml", &plan),
        ],
        settings: vec![("server.admin_token", TOKEN.to_string())],
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Won Deal LLC").await;
    app.move_to(deal, "WON", Duration::from_secs(10)).await;
    let (cookie, _) = log_in(&app).await;
    let (status, html) = page(&app, "/ui/reports?name=plan", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("<svg") && html.contains("<rect"),
        "a chart: {html}"
    );
    assert!(html.contains("sales-month"), "{html}");
    assert!(html.contains("25.0%"), "1000 of 4000: {html}");
    let answer = client()
        .get(url(&app, "/ui/reports/deals.csv"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), StatusCode::OK);
    let bytes = answer.bytes().await.expect("body");
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBF"),
        "a byte-order mark first, for Excel"
    );
    let body = String::from_utf8_lossy(&bytes[3..]).to_string();
    assert!(body.starts_with("deal_id;title;"), "{body}");
    assert!(body.contains("Won Deal LLC"), "{body}");
    // Not without the session.
    let bare = client()
        .get(url(&app, "/ui/reports/deals.csv"))
        .send()
        .await
        .expect("answers");
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

//! Reports say how fresh their data is: `data_as_of` is the copy's last refresh, and a portal
//! that does not answer leaves a report made from the copy as it is, with `refresh_error`
//! saying why it is not newer, on the admin API and on the dashboard. A copy read anew
//! (`refresh=true`) replaces the old one only once it is whole.

use std::time::Duration;

use b24_robot::sandbox::Faults;
use reqwest::Method;

use crate::helpers::{Options, new_deal, spawn_app_with};

const TOKEN: &str = "freshness-admin-token";

#[tokio::test]
async fn a_report_while_the_portal_is_down_is_the_copy_as_it_was_and_says_so() {
    let app = spawn_app_with(Options {
        rules: vec![crate::helpers::task_rules()],
        settings: vec![("server.admin_token", TOKEN.to_string())],
        ..Options::default()
    })
    .await;
    let deal = new_deal(&app.sim, "Won Before The Outage").await;
    app.move_to(deal, "WON", Duration::from_secs(10)).await;

    let (status, fresh) = app.admin(TOKEN, Method::GET, "/admin/reports/deals").await;
    assert_eq!(status, 200, "{fresh}");
    assert!(fresh.get("refresh_error").is_none(), "{fresh}");
    let as_of = fresh["data_as_of"]
        .as_str()
        .expect("data_as_of")
        .to_string();
    assert_eq!(fresh["rows"][0]["deal_id"], deal);

    app.sim.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let (status, stale) = app.admin(TOKEN, Method::GET, "/admin/reports/deals").await;
    assert_eq!(status, 200, "the copy as it is: {stale}");
    assert_eq!(
        stale["data_as_of"],
        as_of.as_str(),
        "as fresh as it was, no fresher"
    );
    assert_eq!(stale["rows"], fresh["rows"]);
    let error = stale["refresh_error"]
        .as_str()
        .expect("why it is not newer");
    assert!(!error.is_empty());
    assert!(
        !error.contains("/rest/"),
        "no webhook secret in it: {error}"
    );

    // The dashboard says it too.
    let page = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/ui/reports?name=deals",
            app.port
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answers");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let html = page.text().await.expect("page");
    assert!(html.contains("The portal did not answer"), "{html}");

    // Read anew, there is nothing to fall back on: the portal's error, 502; and the copy is
    // still there for the next report, not emptied by the attempt.
    let (status, _) = app
        .admin(TOKEN, Method::GET, "/admin/reports/deals?refresh=true")
        .await;
    assert_eq!(status, 502);
    let (status, kept) = app.admin(TOKEN, Method::GET, "/admin/reports/deals").await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["rows"], fresh["rows"], "the copy as it was");

    // The portal back, a deal deleted there meanwhile: read anew, the copy no longer holds it.
    app.sim.set_faults(Faults::default());
    let other = new_deal(&app.sim, "Deleted Later").await;
    app.settle(Duration::from_secs(10)).await;
    let (_, with_it) = app.admin(TOKEN, Method::GET, "/admin/reports/deals").await;
    assert!(
        with_it["rows"].to_string().contains("Deleted Later"),
        "{with_it}"
    );
    app.sim.delete_deal(other).await;
    let (status, rebuilt) = app
        .admin(TOKEN, Method::GET, "/admin/reports/deals?refresh=true")
        .await;
    assert_eq!(status, 200, "{rebuilt}");
    assert!(rebuilt.get("refresh_error").is_none(), "{rebuilt}");
    assert!(
        !rebuilt["rows"].to_string().contains("Deleted Later"),
        "{rebuilt}"
    );
    assert!(
        rebuilt["rows"]
            .to_string()
            .contains("Won Before The Outage"),
        "{rebuilt}"
    );
    app.stop().await;
}

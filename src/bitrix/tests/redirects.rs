//! Redirects: a portal renamed within its domain is followed, any other redirect is refused,
//! and the secret is never shown.

use super::*;

#[tokio::test]
async fn a_portal_renamed_within_its_domain_is_followed_by_re_posting_and_reported() {
    // One local port serves both names: `crm.example.ru` answers the rename, `crm2` the calls.
    let mock = mock_by_host(|_, host, method, body| match host.strip_prefix("crm.") {
        Some(rest) => Reply {
            headers: vec![(
                "location",
                format!("http://crm2.{rest}/rest/1/{SECRET}/{method}.json"),
            )],
            ..raw(302, "")
        },
        None => ok(body.clone()),
    })
    .await;
    let address: std::net::SocketAddr = mock
        .origin
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let port = address.port();
    let webhook =
        url::Url::parse(&format!("http://crm.example.ru:{port}/rest/1/{SECRET}/")).expect("url");
    let client = Client::new(ClientSettings {
        resolve: vec![
            ("crm.example.ru".into(), address),
            ("crm2.example.ru".into(), address),
        ],
        ..settings(webhook)
    })
    .expect("client");
    assert_eq!(client.renamed_to(), None);
    let response = client
        .call("crm.deal.get", json!({"id": 9}), Retry::Unsafe)
        .await
        .expect("moved");
    assert_eq!(response.result, json!({"id": 9}), "the body was re-posted");
    let new_origin = format!("http://crm2.example.ru:{port}");
    assert_eq!(client.portal_origin(), new_origin);
    assert_eq!(client.renamed_to(), Some(new_origin));
    client
        .call("crm.deal.get", json!({"id": 10}), Retry::Safe)
        .await
        .expect("direct");
    let hosts: Vec<String> = mock
        .seen()
        .iter()
        .map(|seen| seen.headers["host"].to_str().expect("host").to_owned())
        .collect();
    assert_eq!(
        hosts,
        [
            format!("crm.example.ru:{port}"),
            format!("crm2.example.ru:{port}"),
            format!("crm2.example.ru:{port}")
        ]
    );
    assert_eq!(client.stats().redirects, 1);
}

#[tokio::test]
async fn a_redirect_to_another_host_is_refused_and_nothing_is_sent_there() {
    let foreign = mock(|_, _, body| ok(body.clone())).await;
    let location = format!("{}/rest/1/{SECRET}/tasks.task.add.json", foreign.origin);
    let portal = mock(move |_, _, _| Reply {
        headers: vec![("location", location.clone())],
        ..raw(302, "")
    })
    .await;
    let client = client(&portal);
    for retry in [Retry::Safe, Retry::Unsafe] {
        let error = client
            .call("tasks.task.add", json!({"fields": {"TITLE": "x"}}), retry)
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, CallError::RedirectRefused { target, .. } if *target == foreign.origin),
            "{error:?}"
        );
        assert_eq!(error.kind(), ErrorKind::RedirectRefused);
        assert!(!error.is_retryable() && !error.outcome_unknown());
        let text = format!("{error} {error:?}");
        assert_no_secret(&text);
        assert!(text.contains("another port"), "{text}");
    }
    assert!(
        foreign.seen().is_empty(),
        "nothing reached the foreign host"
    );
    assert_eq!(portal.seen().len(), 2, "refused at once, not retried");
    assert_eq!(client.portal_origin(), portal.origin);
    assert_eq!(client.renamed_to(), None);
    let stats = client.stats();
    assert_eq!((stats.redirects, stats.redirects_refused), (0, 2));
    assert!(
        client
            .call_counts()
            .contains(&("tasks.task.add".into(), "redirect_refused", 2)),
        "{:?}",
        client.call_counts()
    );
}

#[tokio::test]
async fn a_refused_redirect_whose_host_names_the_secret_does_not_show_it() {
    let location = format!("http://{SECRET}.evil.example/rest/1/{SECRET}/crm.deal.get.json");
    let portal = mock(move |_, _, _| Reply {
        headers: vec![("location", location.clone())],
        ..raw(302, "")
    })
    .await;
    let error = client(&portal)
        .call("crm.deal.get", json!({}), Retry::Safe)
        .await
        .expect_err("refused");
    let text = format!("{error} {error:?}").to_lowercase();
    assert!(!text.contains(&SECRET.to_lowercase()), "{text}");
    assert!(text.contains("not followed"), "{text}");
}

#[tokio::test]
async fn a_redirect_without_location_is_an_error_without_the_secret() {
    let mock = mock(|_, _, _| raw(302, "")).await;
    let error = client(&mock)
        .call("crm.deal.get", json!({}), Retry::Safe)
        .await
        .expect_err("302");
    assert_no_secret(&format!("{error} {error:?}"));
}

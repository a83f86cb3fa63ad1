//! Deliveries that arrive together are recorded together (one transaction, one flush) by the
//! intake's recording thread: each is still answered for itself, a copy is a duplicate whether
//! or not it shares its original's batch, and every 200 is durable.

use std::time::Duration;

use b24_robot::store::{Recorded, Store};

use crate::helpers::{Options, spawn_app_with};

#[tokio::test]
async fn concurrent_deliveries_are_recorded_once_each_and_every_acknowledged_one_is_on_disk() {
    let app = spawn_app_with(Options {
        events: false,
        ..Options::default()
    })
    .await;
    app.started().await;
    // 48 distinct deliveries for deals the portal does not have, and a copy of 16 of them, all
    // at once: originals and copies race, so some share a batch and some do not.
    let deliveries: Vec<(u64, u64)> = (0..48u64)
        .map(|i| (900_000 + i, 1_766_000_000 + i))
        .collect();
    let mut bodies: Vec<String> = deliveries
        .iter()
        .map(|&(deal, ts)| app.event_body("ONCRMDEALUPDATE", deal, ts))
        .collect();
    bodies.extend(bodies[..16].to_vec());
    let mut sent = tokio::task::JoinSet::new();
    for body in bodies {
        let (client, url) = (app.client.clone(), app.events_url());
        sent.spawn(async move {
            let response = client
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("the service answers");
            let status = response.status().as_u16();
            (status, response.text().await.expect("a body"))
        });
    }
    let (mut recorded, mut duplicate) = (0, 0);
    while let Some(answer) = sent.join_next().await {
        let (status, text) = answer.expect("sender");
        assert_eq!(status, 200, "every delivery is acknowledged: {text}");
        match text.trim_end() {
            "recorded" => recorded += 1,
            "duplicate" => duplicate += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        (recorded, duplicate),
        (48, 16),
        "each delivery is recorded once; each copy is a duplicate"
    );

    // Durable: after a stop, the store knows every acknowledged delivery (recording one again
    // is a duplicate).
    let member = app.sim.member_id();
    let (_sim, dir) = app.stop().await;
    let store = Store::open(dir.path()).expect("the store opens");
    for &(deal, ts) in &deliveries {
        let key = format!("ONCRMDEALUPDATE|{deal}|{ts}|{member}");
        assert!(
            matches!(
                store.record_event(
                    &key,
                    deal,
                    b24_robot::store::now_ms(),
                    Duration::from_secs(3600)
                ),
                Ok(Recorded::Duplicate { .. })
            ),
            "delivery for deal {deal} was acknowledged, so it is in the store"
        );
    }
}

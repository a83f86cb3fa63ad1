//! The `losses` report (by reason, currency, pipeline and person; "no reason" too) and the
//! accountant's `deals` summary (won in the period and open, totals per pipeline and currency).

use super::*;

const LOSS: &str = r#"
[[loss_reason]]
name = "why-lost"
pipeline = 1
field = "UF_CRM_REASON"
"#;

fn lost(id: u64, pipeline: u64, user: u64, money: (i64, &str), reason: &str) -> ReportDeal {
    let stage = format!("C{pipeline}:LOSE");
    let d = deal(
        id,
        pipeline,
        user,
        money,
        &[(&stage, "2026-12-02T10:00:00+03:00")],
    );
    with_field(d, "UF_CRM_REASON", json!(reason))
}

#[test]
fn losses_by_reason_currency_pipeline_and_person_count_no_reason_too() {
    let deals = vec![
        lost(1, 1, 10, (100, "RUB"), "Price"),
        lost(2, 1, 11, (200, "RUB"), "Price"),
        lost(3, 1, 10, (50, "RUB"), " "),
        lost(4, 1, 10, (10, "USD"), "Price"),
        // Pipeline 2 has no [[loss_reason]]: no reason, whatever the field says.
        lost(5, 2, 11, (30, "RUB"), "Price"),
        // Lost, then reopened; lost in November: neither counts.
        deal(
            6,
            1,
            10,
            (1, "RUB"),
            &[
                ("C1:LOSE", "2026-12-02T10:00:00+03:00"),
                ("C1:NEW", "2026-12-03T10:00:00+03:00"),
            ],
        ),
        deal(
            7,
            1,
            10,
            (1, "RUB"),
            &[("C1:LOSE", "2026-11-02T10:00:00+03:00")],
        ),
    ];
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-04T12:00:00+03:00");
    let body = losses(&rules(LOSS), &deals, &scope);
    let rows: Vec<_> = body
        .rows
        .iter()
        .map(|r| {
            let amount = r.amount.hundredths() / 100;
            (
                r.pipeline,
                r.user_id,
                r.reason.as_deref(),
                r.currency.as_str(),
                r.count,
                amount,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            // All: no reason (3 and 5) 80 RUB, Price 300 RUB, Price 10 USD.
            (None, None, None, "RUB", 2, 80),
            (None, None, Some("Price"), "RUB", 2, 300),
            (None, None, Some("Price"), "USD", 1, 10),
            (Some(1), None, Some("Price"), "RUB", 2, 300),
            (Some(1), None, None, "RUB", 1, 50),
            (Some(1), None, Some("Price"), "USD", 1, 10),
            (Some(2), None, None, "RUB", 1, 30),
            (None, Some(10), None, "RUB", 1, 50),
            (None, Some(10), Some("Price"), "RUB", 1, 100),
            (None, Some(10), Some("Price"), "USD", 1, 10),
            (None, Some(11), None, "RUB", 1, 30),
            (None, Some(11), Some("Price"), "RUB", 1, 200),
        ]
    );
    assert_eq!(
        serde_json::to_value(&body.rows[0]).unwrap(),
        json!({ "reason": null, "count": 2, "amount": 80, "currency": "RUB", "pipeline": null, "user_id": null })
    );
}

#[test]
fn the_deals_summary_lists_the_won_of_the_period_and_every_open_deal() {
    let deals = vec![
        won(1, 10, (300, "RUB"), "2026-12-02T10:00:00+03:00"),
        won(2, 11, (5, "USD"), "2026-12-01T10:00:00+03:00"),
        // Won in November: neither won in the period nor open.
        won(3, 10, (1, "RUB"), "2026-11-02T10:00:00+03:00"),
        deal(
            4,
            1,
            10,
            (40, "RUB"),
            &[("C1:OFFER", "2026-10-02T10:00:00+03:00")],
        ),
        deal(
            5,
            2,
            11,
            (7, "RUB"),
            &[("C2:NEW", "2026-12-03T10:00:00+03:00")],
        ),
        deal(
            6,
            1,
            11,
            (9, "RUB"),
            &[("C1:LOSE", "2026-12-03T10:00:00+03:00")],
        ),
    ];
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-04T12:00:00+03:00");
    let body = serde_json::to_value(super::deals(&deals, &scope)).unwrap();
    let ids: Vec<u64> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["deal_id"].as_u64().unwrap())
        .collect();
    // The won by when they were won, then the open by id.
    assert_eq!(ids, [2, 1, 4, 5]);
    assert_eq!(
        body["rows"][0],
        json!({
            "deal_id": 2, "title": "Deal 2", "pipeline": 1, "stage": "C1:WON", "user_id": 11,
            "amount": 5, "currency": "USD", "won_at": "2026-12-01T10:00:00+03:00",
        })
    );
    assert_eq!(body["rows"][2]["won_at"], json!(null));
    assert_eq!(
        body["totals"],
        json!([
            { "pipeline": 1, "currency": "RUB", "won_count": 1, "won_amount": 300, "open_count": 1, "open_amount": 40 },
            { "pipeline": 1, "currency": "USD", "won_count": 1, "won_amount": 5, "open_count": 0, "open_amount": 0 },
            { "pipeline": 2, "currency": "RUB", "won_count": 0, "won_amount": 0, "open_count": 1, "open_amount": 7 },
        ])
    );
}

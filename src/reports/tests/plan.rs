//! The `plan` report: done, %, remaining and forecast, at the period's edges and across a
//! holiday; a deal won twice, won then reopened, in another currency, of someone else.

use super::*;

const PLANS: &str = r#"
[[plan]]
name = "dec"
period = "2026-12"
pipeline = 1
measure = "amount"
currency = "RUB"
targets = { 10 = 1000000, 11 = 500000 }

[[plan]]
name = "q4-count"
period = "2026-Q4"
measure = "count"
target = 10

[[plan]]
name = "november"
period = "2026-11"
measure = "count"
target = 1
"#;

/// The deals of the main case, each with what it is there to show.
fn december() -> Vec<ReportDeal> {
    vec![
        // Counts for 10 in December.
        won(1, 10, (300_000, "RUB"), "2026-12-01T10:00:00+03:00"),
        // Won in November, reopened, won again in December: counts once, in December.
        deal(
            2,
            1,
            10,
            (200_000, "RUB"),
            &[
                ("C1:NEW", "2026-11-01T10:00:00+03:00"),
                ("C1:WON", "2026-11-25T10:00:00+03:00"),
                ("C1:NEW", "2026-11-27T10:00:00+03:00"),
                ("C1:WON", "2026-12-02T12:00:00+03:00"),
            ],
        ),
        // Won, then reopened: counts nowhere.
        deal(
            3,
            1,
            11,
            (100_000, "RUB"),
            &[
                ("C1:NEW", "2026-11-01T10:00:00+03:00"),
                ("C1:WON", "2026-12-03T10:00:00+03:00"),
                ("C1:NEW", "2026-12-04T10:00:00+03:00"),
            ],
        ),
        // Another currency: listed apart, never summed.
        won(4, 11, (5_000, "USD"), "2026-12-02T10:00:00+03:00"),
        // Not one of the plan's people.
        won(5, 12, (70_000, "RUB"), "2026-12-02T10:00:00+03:00"),
        // Another pipeline.
        deal(
            6,
            2,
            10,
            (999, "RUB"),
            &[("C2:WON", "2026-12-02T10:00:00+03:00")],
        ),
        // 21:30 UTC on 30 November is 00:30 on 1 December in Moscow: December's.
        won(7, 11, (50_000, "RUB"), "2026-11-30T21:30:00Z"),
        // 20:30 UTC is 23:30 on 30 November in Moscow: not December's.
        won(8, 11, (40_000, "RUB"), "2026-11-30T20:30:00Z"),
    ]
}

fn run(deals: &[ReportDeal], period: &str, now: &str) -> serde_json::Value {
    let cal = calendar();
    let scope = scope(&cal, period, now);
    serde_json::to_value(plan(rules(PLANS).plans(), deals, &scope)).unwrap()
}

#[test]
fn a_month_plan_per_person_with_a_deal_won_twice_one_reopened_and_another_currency() {
    // Friday 4 December, noon: Tue 1 to Fri 4 are 4 of December's 23 working days.
    let report = run(&december(), "2026-12", "2026-12-04T12:00:00+03:00");
    // 10: deals 1 and 2, 500,000 of 1,000,000; forecast 500,000 / 4 × 23 = 2,875,000.
    // 11: deal 7 only, 50,000 of 500,000 = 10 %; forecast 50,000 / 4 × 23 = 287,500.
    let dec = |user, target, done, percent, remaining, forecast| {
        json!({
            "plan": "dec", "user_id": user, "pipeline": 1, "measure": "amount", "currency": "RUB",
            "target": target, "done": done, "percent": percent, "remaining": remaining,
            "forecast": forecast,
        })
    };
    assert_eq!(
        report["rows"][0],
        dec(10, 1_000_000, 500_000, 50.0, 500_000, 2_875_000)
    );
    assert_eq!(
        report["rows"][1],
        dec(11, 500_000, 50_000, 10.0, 450_000, 287_500)
    );
    // The total: 550,000 of 1,500,000 = 36.67 %, shown 36.7; USD deal 4 apart.
    assert_eq!(
        report["totals"][0],
        json!({
            "plan": "dec", "target": 1_500_000, "done": 550_000, "percent": 36.7,
            "remaining": 950_000, "forecast": 3_162_500, "currency": "RUB",
            "other_currencies": [{ "currency": "USD", "count": 1, "amount": 5000 }],
        })
    );
}

#[test]
fn a_quarter_count_plan_spans_a_holiday_and_counts_every_currency_and_pipeline() {
    let report = run(&december(), "2026-12", "2026-12-04T12:00:00+03:00");
    // Q4 has 22 + 20 (21 less 4 November) + 23 = 65 working days; by 4 December 22 + 20 + 4 = 46
    // have begun. Won in Q4 and still won: 1, 2, 4, 5, 6, 7, 8 = 7 of 10;
    // forecast 7 / 46 × 65 = 9.891..., 9.89. The whole-plan row has no user_id.
    assert_eq!(
        report["rows"][2],
        json!({
            "plan": "q4-count", "pipeline": null, "measure": "count", "currency": null,
            "target": 10, "done": 7, "percent": 70.0, "remaining": 3, "forecast": 9.89,
        })
    );
    // The November plan does not overlap December: not shown.
    assert_eq!(report["totals"].as_array().unwrap().len(), 2);
}

#[test]
fn the_forecast_counts_the_holiday_as_no_working_day() {
    let october: Vec<ReportDeal> = (1..=6)
        .map(|id| won(id, 10, (1, "RUB"), "2026-10-15T10:00:00+03:00"))
        .collect();
    let forecast = |now| {
        let report = run(&october, "2026-Q4", now);
        let rows = report["rows"].as_array().unwrap().clone();
        let q4 = rows.into_iter().find(|r| r["plan"] == "q4-count").unwrap();
        q4["forecast"].clone()
    };
    // On the holiday (Wednesday 4 November) 22 + 2 days have begun: 6 / 24 × 65 = 16.25.
    assert_eq!(forecast("2026-11-04T12:00:00+03:00"), json!(16.25));
    // Before 09:00 on the 5th still 24; after it 25: 6 / 25 × 65 = 15.6.
    assert_eq!(forecast("2026-11-05T08:00:00+03:00"), json!(16.25));
    assert_eq!(forecast("2026-11-05T10:00:00+03:00"), json!(15.6));
}

#[test]
fn on_the_first_day_the_forecast_waits_for_working_hours() {
    // Tuesday 1 December, 08:59: no working day has begun, and nothing is won yet.
    let report = run(&[], "2026-12", "2026-12-01T08:59:00+03:00");
    let row = &report["rows"][0];
    assert_eq!(
        (
            &row["done"],
            &row["percent"],
            &row["remaining"],
            &row["forecast"]
        ),
        (&json!(0), &json!(0.0), &json!(1_000_000), &json!(null))
    );
    // 09:30, one deal won at 09:15: the first of 23 days, 300,000 × 23 = 6,900,000.
    let deals = [won(1, 10, (300_000, "RUB"), "2026-12-01T09:15:00+03:00")];
    let report = run(&deals, "2026-12", "2026-12-01T09:30:00+03:00");
    assert_eq!(report["rows"][0]["forecast"], json!(6_900_000));
}

#[test]
fn on_the_last_day_and_after_the_forecast_is_what_was_done() {
    let deals = [
        won(1, 10, (300_000, "RUB"), "2026-12-01T10:00:00+03:00"),
        // 23:59 on the last day, Moscow time: still December's.
        won(2, 10, (900_000, "RUB"), "2026-12-31T23:59:00+03:00"),
        // 00:00 on 1 January: not.
        won(3, 10, (1, "RUB"), "2027-01-01T00:00:00+03:00"),
    ];
    for now in ["2026-12-31T17:00:00+03:00", "2027-01-11T12:00:00+03:00"] {
        let row = run(&deals, "2026-12", now)["rows"][0].clone();
        // 1,200,000 of 1,000,000: 120 %, nothing remains, all 23 days elapsed.
        assert_eq!(
            (
                &row["done"],
                &row["percent"],
                &row["remaining"],
                &row["forecast"]
            ),
            (
                &json!(1_200_000),
                &json!(120.0),
                &json!(0),
                &json!(1_200_000)
            ),
            "{now}"
        );
    }
}

#[test]
fn a_pipeline_asked_for_shows_only_its_plans() {
    let cal = calendar();
    let mut scope = scope(&cal, "2026-12", "2026-12-04T12:00:00+03:00");
    scope.pipeline = Some(1);
    let body = plan(rules(PLANS).plans(), &december(), &scope);
    let names: Vec<&str> = body.totals.iter().map(|t| t.plan.as_str()).collect();
    assert_eq!(names, ["dec"]);
}

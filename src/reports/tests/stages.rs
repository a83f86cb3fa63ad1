//! The `stages` report: entries of the period, median and 90th percentile of the time in the
//! stage (a deal still in it counts up to now), conversion to a later stage.

use super::*;

fn pipeline_one() -> Vec<StageInfo> {
    [
        ("C1:NEW", "New", StageSemantic::Process),
        ("C1:OFFER", "Offer", StageSemantic::Process),
        ("C1:WON", "Won", StageSemantic::Success),
        ("C1:LOSE", "Lost", StageSemantic::Failure),
    ]
    .into_iter()
    .map(|(id, name, semantic)| StageInfo {
        pipeline: 1,
        id: id.to_string(),
        name: name.to_string(),
        semantic,
    })
    .collect()
}

#[test]
fn stage_times_are_medians_and_p90_with_a_deal_still_in_its_stage() {
    let deals = vec![
        // NEW 1 h (on to OFFER), OFFER 1 day (on to WON), WON since 2 December 11:00.
        deal(
            1,
            1,
            10,
            (1, "RUB"),
            &[
                ("C1:NEW", "2026-12-01T10:00:00+03:00"),
                ("C1:OFFER", "2026-12-01T11:00:00+03:00"),
                ("C1:WON", "2026-12-02T11:00:00+03:00"),
            ],
        ),
        // NEW 2 h (on), OFFER 1 day then lost: no conversion; LOSE since 3 December 12:00.
        deal(
            2,
            1,
            10,
            (1, "RUB"),
            &[
                ("C1:NEW", "2026-12-02T10:00:00+03:00"),
                ("C1:OFFER", "2026-12-02T12:00:00+03:00"),
                ("C1:LOSE", "2026-12-03T12:00:00+03:00"),
            ],
        ),
        // Still in NEW since 3 December 10:00: up to now, 7 days 2 hours = 612,000 s.
        deal(
            3,
            1,
            11,
            (1, "RUB"),
            &[("C1:NEW", "2026-12-03T10:00:00+03:00")],
        ),
        // NEW in November (not counted); OFFER 2 h, back to NEW (no conversion); NEW 1 h (on);
        // OFFER since 1 December 13:00: 8 days 23 hours = 774,000 s.
        deal(
            4,
            1,
            11,
            (1, "RUB"),
            &[
                ("C1:NEW", "2026-11-30T10:00:00+03:00"),
                ("C1:OFFER", "2026-12-01T10:00:00+03:00"),
                ("C1:NEW", "2026-12-01T12:00:00+03:00"),
                ("C1:OFFER", "2026-12-01T13:00:00+03:00"),
            ],
        ),
    ];
    let over_sla = [("C1:OFFER".to_string(), 2)].into_iter().collect();
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-10T12:00:00+03:00");
    let body = serde_json::to_value(stages(&pipeline_one(), &deals, &over_sla, &scope)).unwrap();
    let row = |stage, name, entries, median, p90, conversion: serde_json::Value, over_sla| {
        json!({
            "pipeline": 1, "stage": stage, "stage_name": name, "entries": entries,
            "median_seconds": median, "p90_seconds": p90, "conversion": conversion,
            "over_sla": over_sla,
        })
    };
    assert_eq!(
        body["rows"],
        json!([
            // 3,600, 3,600, 7,200, 612,000: median (3,600 + 7,200) / 2; p90 the 4th of 4.
            // On to a later stage: 3 of 4.
            row("C1:NEW", "New", 4, 5_400, 612_000, json!(75.0), 0),
            // 7,200, 86,400, 86,400, 774,000; on: 1 of 4 (the loss and the step back are not).
            row("C1:OFFER", "Offer", 4, 86_400, 774_000, json!(25.0), 2),
            // Since 2 December 11:00: 8 days 1 hour = 694,800 s; a won stage converts to nothing.
            row("C1:WON", "Won", 1, 694_800, 694_800, json!(null), 0),
            // Since 3 December 12:00: 7 days = 604,800 s.
            row("C1:LOSE", "Lost", 1, 604_800, 604_800, json!(null), 0),
        ])
    );
}

#[test]
fn p90_is_by_nearest_rank_and_unlisted_stages_come_last() {
    // Ten deals in NEW for 1 to 10 hours, each then moved to a stage the list lacks.
    let deals: Vec<ReportDeal> = (1..=10)
        .map(|h| {
            deal(
                h,
                1,
                10,
                (1, "RUB"),
                &[
                    ("C1:NEW", "2026-12-01T00:00:00+03:00"),
                    ("C1:GONE", &format!("2026-12-01T{h:02}:00:00+03:00")),
                ],
            )
        })
        .collect();
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-02T00:00:00+03:00");
    let body = stages(&pipeline_one(), &deals, &Default::default(), &scope);
    let new = &body.rows[0];
    // Median of 1..10 hours: (5 h + 6 h) / 2 = 19,800 s; p90: the 9th, 9 h = 32,400 s. Moving to
    // a stage of no known order is no conversion.
    assert_eq!(
        (
            new.entries,
            new.median_seconds,
            new.p90_seconds,
            new.conversion
        ),
        (10, Some(19_800), Some(32_400), Some(0.0))
    );
    let gone = body.rows.last().unwrap();
    assert_eq!(
        (gone.stage.as_str(), gone.stage_name.as_str(), gone.entries),
        ("C1:GONE", "C1:GONE", 10)
    );
    assert_eq!(gone.conversion, None);
    // Stages with no entry in the period are rows too, without times.
    assert_eq!(
        (body.rows[1].entries, body.rows[1].median_seconds),
        (0, None)
    );
}

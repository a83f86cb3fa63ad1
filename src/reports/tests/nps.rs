//! The `nps` report: promoters, passives, detractors and NPS by pipeline and person, the
//! invalid scores listed apart, deals outside the period or the rule's pipeline left out.

use super::*;

const NPS: &str = r#"
[[nps]]
name = "nps-after-win"
pipeline = 1
title = "Ask {TITLE} for a score"
deadline = { after = "2 workdays" }
score_field = "UF_CRM_NPS"

[[nps]]
name = "no-score-field"
title = "Thank {TITLE}"
deadline = { after = "1 day" }
"#;

fn scored(id: u64, pipeline: u64, user: u64, won_at: &str, score: serde_json::Value) -> ReportDeal {
    let stage = if pipeline == 0 { "WON" } else { "C1:WON" };
    let mut d = deal(id, pipeline, user, (1, "RUB"), &[(stage, won_at)]);
    d = with_field(d, "UF_CRM_NPS", score);
    d
}

#[test]
fn nps_is_percent_promoters_less_percent_detractors_and_bad_scores_are_listed() {
    let dec = "2026-12-02T10:00:00+03:00";
    let deals = vec![
        // 10: 10 and 9 promoters, 8 passive, 3 detractor: (2 - 1) / 4 = 25 %.
        scored(1, 1, 10, dec, json!(10)),
        scored(2, 1, 10, dec, json!("9")),
        scored(3, 1, 10, dec, json!(8)),
        scored(4, 1, 10, dec, json!("3")),
        // 11: a promoter and a passive, (1 - 0) / 2 = 50 %; three invalid, two unanswered.
        scored(5, 1, 11, dec, json!(" 9 ")),
        scored(6, 1, 11, dec, json!(7)),
        scored(7, 1, 11, dec, json!("abc")),
        scored(8, 1, 11, dec, json!(11)),
        scored(9, 1, 11, dec, json!(6.5)),
        scored(10, 1, 11, dec, json!("")),
        won(11, 11, (1, "RUB"), dec),
        // Won in November; of pipeline 0, which the rule does not cover.
        scored(12, 1, 10, "2026-11-30T10:00:00+03:00", json!(0)),
        scored(13, 0, 10, dec, json!(0)),
    ];
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-04T12:00:00+03:00");
    let body = serde_json::to_value(nps(&rules(NPS), &deals, &scope)).unwrap();
    let row = |user, responses, promoters, passives, detractors, nps| {
        json!({
            "rule": "nps-after-win", "pipeline": 1, "user_id": user, "responses": responses,
            "promoters": promoters, "passives": passives, "detractors": detractors, "nps": nps,
        })
    };
    assert_eq!(
        body["rows"],
        json!([row(10, 4, 2, 1, 1, 25.0), row(11, 2, 1, 1, 0, 50.0)])
    );
    // The rule as a whole: (3 - 1) / 6 = 33.33 %, shown 33.3. The rule without a score field
    // has no figures at all.
    assert_eq!(
        body["totals"],
        json!([{
            "rule": "nps-after-win", "responses": 6, "promoters": 3, "passives": 2,
            "detractors": 1, "nps": 33.3,
        }])
    );
    assert_eq!(
        body["invalid"],
        json!([
            { "deal_id": 7, "value": "abc" },
            { "deal_id": 8, "value": 11 },
            { "deal_id": 9, "value": 6.5 },
        ])
    );
}

#[test]
fn without_responses_the_nps_is_null() {
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-04T12:00:00+03:00");
    let body = nps(&rules(NPS), &[], &scope);
    assert_eq!(body.rows, Vec::new());
    assert_eq!(body.totals[0].scores.responses, 0);
    assert_eq!(body.totals[0].scores.nps, None);
}

#[test]
fn a_score_from_a_number_field_counts_as_its_integer_and_a_fraction_is_invalid() {
    let dec = "2026-12-02T10:00:00+03:00";
    // Bitrix24 prints a `double` field with two decimals: "9.00" is a 9, "6.50" no score.
    let deals = vec![
        scored(1, 1, 10, dec, json!("9.00")),
        scored(2, 1, 10, dec, json!("0.00")),
        scored(3, 1, 10, dec, json!(8.0)),
        scored(4, 1, 10, dec, json!("6.50")),
        scored(5, 1, 10, dec, json!("11.00")),
    ];
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-04T12:00:00+03:00");
    let body = serde_json::to_value(nps(&rules(NPS), &deals, &scope)).unwrap();
    // A promoter, a passive, a detractor: (1 - 1) / 3 = 0 %.
    assert_eq!(body["totals"][0]["responses"], 3);
    assert_eq!(body["totals"][0]["promoters"], 1);
    assert_eq!(body["totals"][0]["passives"], 1);
    assert_eq!(body["totals"][0]["detractors"], 1);
    assert_eq!(
        body["invalid"],
        json!([
            { "deal_id": 4, "value": "6.50" },
            { "deal_id": 5, "value": "11.00" },
        ])
    );
}

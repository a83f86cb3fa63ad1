//! Every figure of every report on hand-computed data: a file per report; this one holds the
//! calendar, the deals' builder and what they share. Each expected figure is worked out in the
//! comment beside it.

mod losses_deals;
mod nps;
mod plan;
mod stages;
mod tasks;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::json;

use super::*;
use crate::rules::RuleSet;

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

/// Moscow, Monday to Friday 09:00-18:00, 4 November (Unity Day) a holiday.
fn calendar() -> Calendar {
    Calendar::default().with_holidays(&[NaiveDate::from_ymd_opt(2026, 11, 4).unwrap()])
}

fn scope<'a>(calendar: &'a Calendar, period: &str, now: &str) -> Scope<'a> {
    Scope {
        calendar,
        period: period.parse().unwrap(),
        pipeline: None,
        now: at(now),
    }
}

fn rules(text: &str) -> RuleSet {
    match RuleSet::from_sources(&[("r.toml".to_string(), text.to_string())]) {
        Ok((set, _)) => set,
        Err(errors) => panic!("{errors:?}"),
    }
}

/// The kind of a test stage, by its code: `WON` and `LOSE` as Bitrix24's standard ones.
fn semantic(stage: &str) -> StageSemantic {
    if stage.ends_with("WON") {
        StageSemantic::Success
    } else if stage.ends_with("LOSE") {
        StageSemantic::Failure
    } else {
        StageSemantic::Process
    }
}

/// A deal of `pipeline` and `assigned`, worth `amount` whole units of `currency`, that went
/// through `history` (stage, moment) and sits in its last stage now.
fn deal(
    id: u64,
    pipeline: u64,
    assigned: u64,
    (amount, currency): (i64, &str),
    history: &[(&str, &str)],
) -> ReportDeal {
    let stage = history.last().map_or("C1:NEW", |(s, _)| s).to_string();
    ReportDeal {
        id,
        title: format!("Deal {id}"),
        pipeline,
        semantic: semantic(&stage),
        stage,
        assigned,
        amount: Amount::whole(amount),
        currency: currency.to_string(),
        fields: Default::default(),
        history: history
            .iter()
            .enumerate()
            .map(|(i, (stage, time))| HistoryEntry {
                id: id * 100 + i as u64,
                stage: stage.to_string(),
                semantic: semantic(stage),
                at: at(time),
            })
            .collect(),
    }
}

/// `deal` with one report field set.
fn with_field(mut deal: ReportDeal, code: &str, value: serde_json::Value) -> ReportDeal {
    deal.fields.insert(code.to_string(), value);
    deal
}

/// A deal of pipeline 1 won at `won` (created the day before the history starts).
fn won(id: u64, assigned: u64, money: (i64, &str), won: &str) -> ReportDeal {
    deal(
        id,
        1,
        assigned,
        money,
        &[("C1:NEW", "2026-10-01T10:00:00+03:00"), ("C1:WON", won)],
    )
}

#[test]
fn amounts_parse_bitrix_money_exactly_and_print_as_json_numbers() {
    assert_eq!(Amount::parse("150000.00"), Some(Amount::whole(150_000)));
    assert_eq!(Amount::parse("99.5"), Some(Amount::from_hundredths(9950)));
    assert_eq!(Amount::parse("0.125"), Some(Amount::from_hundredths(13)));
    assert_eq!(Amount::parse("-3"), Some(Amount::whole(-3)));
    assert_eq!(Amount::parse("1e5"), None);
    assert_eq!(Amount::parse(""), None);
    let printed = serde_json::to_value([Amount::whole(1_500_000), Amount::from_hundredths(9950)]);
    assert_eq!(printed.unwrap(), json!([1_500_000, 99.5]));
}

#[test]
fn the_envelope_has_the_spec_keys_and_dates_of_the_calendar_zone() {
    let cal = calendar();
    let scope = scope(&cal, "2026-12", "2026-12-04T09:00:00Z");
    let body = tasks(&[], &scope);
    let report = Report::new(&scope, at("2026-12-04T08:55:00Z"), body);
    assert_eq!(
        serde_json::to_value(&report).unwrap(),
        json!({
            "report": "tasks",
            "period": { "from": "2026-12-01", "to": "2026-12-31" },
            "generated_at": "2026-12-04T12:00:00+03:00",
            "data_as_of": "2026-12-04T11:55:00+03:00",
            "rows": [],
        })
    );
}

#[test]
fn a_deal_of_the_copy_reads_back_as_it_was_stored() {
    let mut d = won(1, 10, (0, "RUB"), "2026-12-02T10:00:00+03:00");
    d.amount = Amount::from_hundredths(123_456_789);
    d = with_field(d, "UF_CRM_NPS", json!("9"));
    let stored = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<ReportDeal>(&stored).unwrap(), d);
}

#[test]
fn amounts_and_percentages_print_as_the_text_form_shows_them() {
    let shown: Vec<String> = [150_000_000, 9950, -305, 7]
        .into_iter()
        .map(|h| Amount::from_hundredths(h).to_string())
        .collect();
    assert_eq!(shown, ["1500000", "99.50", "-3.05", "0.07"]);
    assert_eq!(show_percent(Some(36.7)), "36.7%");
    assert_eq!(show_percent(Some(120.0)), "120.0%");
    assert_eq!(show_percent(None), "-");
}

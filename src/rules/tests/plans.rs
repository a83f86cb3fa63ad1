//! `[[plan]]` and its [`ReportPeriod`]: what loads (the spec's example verbatim), each problem
//! at its file:line:col with its fix, and the period's days and working days.

use super::*;
use crate::calendar::Calendar;
use chrono::NaiveDate;

/// The example of control.md, verbatim.
const SPEC_PLAN: &str = r#"
[[plan]]
name = "b2b-new-2026-12"
period = "2026-12"                 # a month "2026-12", a quarter "2026-Q4", a half "2026-H2", a year "2026"
pipeline = 1                       # optional: a direction (absent: every pipeline)
measure = "amount"                 # "amount" (sum of OPPORTUNITY) or "count" (number of won deals)
currency = "RUB"                   # with "amount": only deals in this currency are summed
targets = { 10 = 1500000, 11 = 1200000 }   # per user id (ASSIGNED_BY_ID)...
# target = 3000000                 # ...or one target for the whole plan (exactly one of the two)
"#;

#[test]
fn the_spec_plan_loads_as_written() {
    let (set, warnings) = load_files(&[("plans.toml", SPEC_PLAN)]);
    assert_eq!(warnings, Vec::<String>::new());
    let plan = set.plan_named("b2b-new-2026-12").unwrap();
    assert_eq!(plan.period().to_string(), "2026-12");
    assert_eq!(plan.pipeline(), Some(1));
    assert_eq!(plan.measure(), Measure::Amount);
    assert_eq!(plan.currency(), Some("RUB"));
    assert_eq!(
        plan.target(),
        &PlanTarget::People(vec![
            (10, Amount::whole(1_500_000)),
            (11, Amount::whole(1_200_000))
        ])
    );
    assert_eq!(plan.total_target(), Amount::whole(2_700_000));
    assert_eq!(plan.origin(), ("plans.toml", 2));
    assert_eq!(set.len(), 1);
    let refs = set.portal_refs();
    assert_eq!(refs[0].kind, RuleKind::Plan);
    assert_eq!(refs[0].refs.users, vec![10, 11]);
    assert_eq!(refs[0].refs.pipelines, vec![1]);
}

#[test]
fn a_count_plan_for_the_whole_direction_takes_the_file_pipeline() {
    let set = load(
        "pipeline = 2\n\n[[plan]]\nname = \"q\"\nperiod = \"2026-Q4\"\nmeasure = \"count\"\ntarget = 40\n",
    );
    let plan = &set.plans()[0];
    assert_eq!(plan.pipeline(), Some(2));
    assert_eq!(plan.currency(), None);
    assert_eq!(plan.target(), &PlanTarget::Whole(Amount::whole(40)));
    assert_eq!(set.portal_refs()[0].refs.users, Vec::<u64>::new());
}

#[test]
fn plan_names_are_unique_across_kinds() {
    let text = "[[no_task]]\nname = \"p\"\npipeline = 1\nafter = \"4 hours\"\nnotify = [\"assigned\"]\n\n[[plan]]\nname = \"p\"\nperiod = \"2026\"\nmeasure = \"count\"\ntarget = 1\n";
    refused(
        text,
        &[
            "sales.toml:8:8: rule \"p\": duplicate rule name, first defined at sales.toml:2 (rule names are unique across all files: rename one of them)",
        ],
    );
}

#[test]
fn plan_errors_are_at_their_place_with_a_fix() {
    refused(
        r#"[[plan]]
name = "a"
period = "2026-13"
measure = "amount"
target = -5
targets = { 10 = 1 }

[[plan]]
name = "b"
period = "2026-Q4"
measure = "sum"
currency = "rub"

[[plan]]
name = "c"
period = "2026-H2"
measure = "count"
currency = "USD"
targets = { abc = 1, 10 = 2.5, 0 = 1 }

[[plan]]
name = "d"
period = 2026
measure = "amount"
currency = "RUBL"
target = "100"
"#,
        &[
            "sales.toml:3:10: rule \"a\": bad period \"2026-13\" (write a month \"2026-12\", a quarter \"2026-Q4\", a half \"2026-H2\" or a year \"2026\")",
            "sales.toml:1:1: rule \"a\": [[plan]] of measure = \"amount\" without \"currency\" (add currency = \"RUB\": only deals in that currency are summed, the others are reported apart)",
            "sales.toml:6:1: rule \"a\": [[plan]] with both \"target\" and \"targets\" (keep one: target = N for the whole plan, or targets = { user_id = N } per person)",
            "sales.toml:11:11: rule \"b\": unknown measure \"sum\" (write measure = \"amount\" (the sum of OPPORTUNITY) or \"count\" (won deals))",
            "sales.toml:12:12: rule \"b\": bad currency \"rub\" (write currency = \"RUB\", in capitals, as CURRENCY_ID spells it)",
            "sales.toml:8:1: rule \"b\": [[plan]] without \"target\" or \"targets\" (add targets = { 10 = 1500000 } (per user id) or target = 3000000 (the whole plan))",
            "sales.toml:18:1: rule \"c\": \"currency\" is only for measure = \"amount\" (remove it: a count plan counts the won deals of every currency)",
            "sales.toml:19:13: rule \"c\": \"abc\" is not a user id (each key of targets is a user id (ASSIGNED_BY_ID), a number from 1: { 10 = 1500000 })",
            "sales.toml:19:27: rule \"c\": a count target of 2.5 (a count plan counts won deals: write a whole number)",
            "sales.toml:19:32: rule \"c\": \"0\" is not a user id (each key of targets is a user id (ASSIGNED_BY_ID), a number from 1: { 10 = 1500000 })",
            "sales.toml:23:10: rule \"d\": \"period\" must be a string, found an integer (write period = \"2026-12\")",
            "sales.toml:25:12: rule \"d\": bad currency \"RUBL\" (write the three-letter code of CURRENCY_ID: \"RUB\", \"USD\", \"EUR\")",
            "sales.toml:26:10: rule \"d\": \"target\" must be a number, found a string (write the number without quotes: target = 100)",
        ],
    );
}

#[test]
fn a_negative_target_is_refused() {
    refused(
        "[[plan]]\nname = \"n\"\nperiod = \"2026\"\nmeasure = \"count\"\ntargets = { 10 = -1 }\n",
        &["sales.toml:5:18: rule \"n\": a negative target (-1) (a target is 0 or more)"],
    );
}

fn period(text: &str) -> ReportPeriod {
    text.parse().unwrap()
}

#[test]
fn periods_parse_in_the_four_forms_and_print_back() {
    for (text, from, to) in [
        ("2026-12", (2026, 12, 1), (2026, 12, 31)),
        ("2026-02", (2026, 2, 1), (2026, 2, 28)),
        ("2028-02", (2028, 2, 1), (2028, 2, 29)),
        ("2026-Q4", (2026, 10, 1), (2026, 12, 31)),
        ("2026-Q1", (2026, 1, 1), (2026, 3, 31)),
        ("2026-H2", (2026, 7, 1), (2026, 12, 31)),
        ("2026-H1", (2026, 1, 1), (2026, 6, 30)),
        ("2026", (2026, 1, 1), (2026, 12, 31)),
    ] {
        let p = period(text);
        let day = |(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!((p.from(), p.to()), (day(from), day(to)), "{text}");
        assert_eq!(p.to_string(), text);
    }
    assert_eq!(period("2026-q4").to_string(), "2026-Q4");
    for bad in [
        "2026-13",
        "2026-00",
        "2026-Q5",
        "2026-H3",
        "26",
        "2026-1",
        "2026-Q",
        "1999",
        "2026-12-01",
        "",
    ] {
        assert!(bad.parse::<ReportPeriod>().is_err(), "{bad}");
    }
}

/// Moscow, Monday to Friday 09:00-18:00, and 4 November (Unity Day) a holiday.
fn moscow() -> Calendar {
    Calendar::default().with_holidays(&[NaiveDate::from_ymd_opt(2026, 11, 4).unwrap()])
}

#[test]
fn the_current_month_is_the_calendar_zones() {
    let cal = moscow();
    // 21:30 UTC on 30 November is already 1 December in Moscow.
    let p = ReportPeriod::current(&cal, at("2026-11-30T21:30:00Z"));
    assert_eq!(p.to_string(), "2026-12");
    assert!(p.contains(&cal, at("2026-11-30T21:30:00Z")));
    assert!(!p.contains(&cal, at("2026-11-30T20:59:59Z")));
    assert!(p.overlaps(&period("2026-Q4")));
    assert!(!p.overlaps(&period("2026-Q3")));
}

#[test]
fn working_days_skip_weekends_and_holidays_and_today_counts_once_hours_begin() {
    let cal = moscow();
    // December 2026: 23 weekdays, no holiday configured.
    assert_eq!(period("2026-12").working_days(&cal), 23);
    // Q4: October 22 + November 21 - 1 (4 November) + December 23.
    assert_eq!(period("2026-Q4").working_days(&cal), 65);
    let dec = period("2026-12");
    // Tuesday 1 December, before and after 09:00 Moscow.
    assert_eq!(
        dec.working_days_elapsed(&cal, at("2026-12-01T08:59:00+03:00")),
        0
    );
    assert_eq!(
        dec.working_days_elapsed(&cal, at("2026-12-01T09:00:00+03:00")),
        1
    );
    // Saturday 5 December: Tuesday to Friday.
    assert_eq!(
        dec.working_days_elapsed(&cal, at("2026-12-05T12:00:00+03:00")),
        4
    );
    // Before and after the period.
    assert_eq!(
        dec.working_days_elapsed(&cal, at("2026-11-30T12:00:00+03:00")),
        0
    );
    assert_eq!(
        dec.working_days_elapsed(&cal, at("2027-01-11T12:00:00+03:00")),
        23
    );
    // The holiday is not elapsed: Thursday 5 November in Q4 is the 25th working day,
    // not the 26th.
    let q4 = period("2026-Q4");
    assert_eq!(
        q4.working_days_elapsed(&cal, at("2026-11-05T10:00:00+03:00")),
        22 + 3
    );
}

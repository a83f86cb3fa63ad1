//! The reports a head of sales reads (`control.md`, "Reports"), through the simulated portal and
//! the real service: a month of a small sales department is played on the portal's clock (people
//! winning, losing and reopening deals, a deal in dollars, NPS answers good and bad, tasks done
//! on time and late), and every figure of `GET /admin/reports/{name}` is checked against the
//! one worked out by hand here, the arithmetic in the comments. Then the incremental refresh: a
//! newly won deal and a changed amount show in the next report, for a request or two. Then the
//! command's CSV and text forms, and how fresh the data is.
//!
//! The clock: the service and the portal share one [`Clock`], set to February and March 2026
//! (the service starts on it on 10 March, so what the department did before is history it
//! never acts on) and slowed to a thousandth of real time, so that every
//! stage entry lands on the whole second the test names and times in stages are exact. The
//! test moves it on with [`at`].

use std::collections::BTreeMap;
use std::time::Duration;

use b24_robot::clock::Clock;
use b24_robot::sandbox::{SimConfig, SimPortal};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, new_deal_with, poll, rule_file, run_binary_in, seeded_portal, start_with_clock, texts,
};

const ADMIN: &str = "reports-admin-token";

/// The department's rules: a task on entering PREPARATION (due 2 days later) and an SLA of a
/// day there, the loss reason and the NPS score the reports read, March's sales plan per
/// person and the quarter's count.
fn rules() -> Vec<(String, String)> {
    vec![rule_file(
        "department.toml",
        r#"
[[task]]
name = "offer"
pipeline = 0
stage = "PREPARATION"
title = "Send the offer: {TITLE}"
responsible = "assigned"
deadline = { after = "2 days" }

[[sla]]
name = "offer-sla"
pipeline = 0
stage = "PREPARATION"
within = "1 day"
notify = ["assigned"]
message = "{TITLE} waits for its offer"

[[loss_reason]]
name = "loss-reason"
field = "UF_CRM_LOSS_REASON"
on_missing = "warn"

[[nps]]
name = "nps"
title = "NPS: ask {TITLE} how likely they would recommend us"
responsible = "assigned"
deadline = { after = "3 days" }
score_field = "UF_CRM_NPS"

[[plan]]
name = "march-sales"
period = "2026-03"
pipeline = 0
measure = "amount"
currency = "RUB"
targets = { 3 = 100000, 4 = 50000 }

[[plan]]
name = "q1-deals"
period = "2026-Q1"
measure = "count"
target = 12
"#,
    )]
}

/// A moment of the calendar's zone (Moscow, UTC+3), `"2026-03-02 10:00"`.
fn msk(moment: &str) -> DateTime<Utc> {
    let local = NaiveDateTime::parse_from_str(moment, "%Y-%m-%d %H:%M").expect("a moment");
    chrono::FixedOffset::east_opt(3 * 3600)
        .and_then(|zone| zone.from_local_datetime(&local).single())
        .expect("a Moscow moment")
        .with_timezone(&Utc)
}

/// Moves the shared clock on to half a second past `moment`: what the portal stamps then is
/// `moment` to the second, and the slowed clock stays within that second for minutes.
fn at(clock: &Clock, moment: &str) {
    let target = msk(moment).timestamp_millis() + 500;
    let ahead = target - clock.now_ms();
    assert!(ahead >= 0, "the clock only moves on: {moment}");
    clock.advance(Duration::from_millis(ahead as u64));
}

/// A deal of the default pipeline in NEW, for `person`, of `money` (amount, currency), with
/// extra fields (a loss reason, an NPS score; another pipeline and stage).
async fn deal(sim: &SimPortal, title: &str, person: u64, money: (&str, &str), extra: Value) -> u64 {
    let mut fields = json!({
        "ASSIGNED_BY_ID": person.to_string(),
        "OPPORTUNITY": money.0,
        "CURRENCY_ID": money.1,
    });
    if let (Some(base), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    new_deal_with(sim, title, "NEW", fields).await
}

/// The department: the service running on its portal, the shared clock, and its deals by title.
struct Department {
    app: TestApp,
    clock: Clock,
    deals: BTreeMap<&'static str, u64>,
}

impl Department {
    fn id(&self, title: &str) -> u64 {
        self.deals[title]
    }

    /// `GET /admin/reports/{path}`, asserting the 200.
    async fn report(&self, path: &str) -> Value {
        let (status, body) = self
            .app
            .admin(
                ADMIN,
                reqwest::Method::GET,
                &format!("/admin/reports/{path}"),
            )
            .await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// A person moves `deal` to `stage` now; the service takes the event and settles.
    async fn move_to(&self, title: &str, stage: &str) {
        let delivery = self.app.sim.move_deal(self.id(title), stage).await;
        assert_eq!(delivery.status, Some(200), "the service accepts the event");
        self.app.settle(Duration::from_secs(20)).await;
    }

    /// Waits until the offer SLA has told `count` people their deal waits.
    async fn sla_fired(&self, count: usize) {
        crate::helpers::wait_for(Duration::from_secs(20), "the offer SLA to fire", || {
            let told = self.app.sim.notifications();
            let waits = told.iter().filter(|n| {
                n["MESSAGE"]
                    .as_str()
                    .is_some_and(|m| m.contains("waits for its offer"))
            });
            waits.count() >= count
        })
        .await;
    }

    /// The task the service created for `title`'s deal (waiting for it).
    async fn task_of(&self, title: &str) -> u64 {
        let deal = self.id(title);
        poll(Duration::from_secs(20), "the offer task", async || {
            self.app
                .sim
                .tasks_for_deal(deal)
                .first()
                .and_then(|t| crate::helpers::text(&t["ID"]).parse().ok())
        })
        .await
    }
}

/// Plays February and March 2026 of the department and stops the clock at Friday 13 March,
/// 12:00: the moment every report below is asked for.
///
/// People: 3 (Vera) and 4 (Gleb) have March targets of 100 000 and 50 000 RUB; 6 (Elena) has
/// none. What happened, in the calendar's zone (Moscow):
///
/// | deal    | who | amount    | history                                            | fields |
/// |---------|-----|-----------|----------------------------------------------------|--------|
/// | Gamma   | 4   | 15000 RUB | NEW Feb 20 10:00, WON Feb 24 10:00                 | NPS 10 |
/// | Kappa   | 3   | 8000 RUB  | NEW Feb 20 10:00, LOSE Feb 24 10:00                | No budget |
/// | Alpha   | 3   | 30000 RUB | NEW Feb 20 10:00, PREPARATION Mar 2 10:00, WON Mar 3 10:00 | NPS 9 |
/// | Beta    | 3   | 20000 RUB | NEW Mar 2 10:00, WON Mar 5 11:00                   | NPS 6 |
/// | Delta   | 4   | 40000 RUB | NEW Mar 2 10:00, WON Mar 4 10:00, EXECUTING Mar 6 10:00 (reopened) | NPS 0 |
/// | Epsilon | 4   | 5000 USD  | NEW Mar 2 10:00, WON Mar 6 10:00                   | NPS 11 |
/// | Mu      | 3   | 9000 RUB  | pipeline 1: C1:NEW Mar 5 11:00, C1:WON Mar 6 11:00 | NPS 10 |
/// | Zeta    | 3   | 10000 RUB | NEW Mar 9 10:00, LOSE Mar 9 14:00                  | Too expensive |
/// | Nu      | 4   | 6000 RUB  | NEW Mar 9 10:00, WON Mar 9 14:00                   | NPS 8 |
/// | Eta     | 4   | 7000 RUB  | NEW Mar 9 10:00, LOSE Mar 10 09:00                 | Too expensive |
/// | Theta   | 3   | 5000 RUB  | NEW Mar 9 10:00, APOLOGY Mar 10 09:00              | Chose a competitor |
/// | Iota    | 6   | 3000 RUB  | NEW Mar 9 10:00, LOSE Mar 10 09:00                 | no reason |
/// | Xi      | 6   | 4000 RUB  | NEW Mar 9 10:00, WON Mar 10 09:00                  | NPS "abc" |
/// | Omicron | 6   | 2000 RUB  | NEW Mar 9 10:00, WON Mar 10 09:00                  | NPS "" |
/// | Sigma   | 3   | 11000 RUB | NEW Mar 9 10:00, EXECUTING Mar 10 09:00            | |
/// | Lambda  | 6   | 12000 RUB | NEW Mar 9 10:00                                    | |
///
/// The service starts on Mar 10 at 09:00; then, through events, T1 and T2 (3) and T3 (4) enter
/// PREPARATION on Mar 10 10:00 (offer tasks due Mar 12 10:00), T4 (6) on Mar 12 16:00 (due Mar
/// 14 16:00); each T deal is 1000 RUB, NEW since Mar 9 10:00. T1's task is completed Mar 11
/// 10:00 (on time), T3's Mar 12 15:00 (late); T2's and T4's stay open. The offer SLA (a day
/// in PREPARATION) fires for T1, T2 and T3 on Mar 11 10:00.
async fn a_month_of_the_department() -> Department {
    let clock = Clock::starting_at(msk("2026-02-20 09:00"));
    // A thousandth of real time: the clock stands still but for the test's jumps (see the
    // module's doc).
    clock.set_speed(0.001);
    let sim = seeded_portal(SimConfig {
        clock: clock.clone(),
        ..SimConfig::default()
    })
    .await;
    let mut deals = BTreeMap::new();
    let rub = |amount| (amount, "RUB");
    let nps = |score: &str| json!({ "UF_CRM_NPS": score });
    // List field options of the built-in portal: 11 "Too expensive", 12 "Chose a competitor",
    // 14 "No budget".
    let reason = |option: &str| json!({ "UF_CRM_LOSS_REASON": option });

    at(&clock, "2026-02-20 10:00");
    deals.insert(
        "Gamma",
        deal(&sim, "Gamma", 4, rub("15000"), nps("10")).await,
    );
    deals.insert(
        "Kappa",
        deal(&sim, "Kappa", 3, rub("8000"), reason("14")).await,
    );
    deals.insert(
        "Alpha",
        deal(&sim, "Alpha", 3, rub("30000"), nps("9")).await,
    );
    at(&clock, "2026-02-24 10:00");
    sim.move_deal(deals["Gamma"], "WON").await;
    sim.move_deal(deals["Kappa"], "LOSE").await;
    at(&clock, "2026-03-02 10:00");
    sim.move_deal(deals["Alpha"], "PREPARATION").await;
    deals.insert("Beta", deal(&sim, "Beta", 3, rub("20000"), nps("6")).await);
    deals.insert(
        "Delta",
        deal(&sim, "Delta", 4, rub("40000"), nps("0")).await,
    );
    let usd = ("5000", "USD");
    deals.insert("Epsilon", deal(&sim, "Epsilon", 4, usd, nps("11")).await);
    at(&clock, "2026-03-03 10:00");
    sim.move_deal(deals["Alpha"], "WON").await;
    at(&clock, "2026-03-04 10:00");
    sim.move_deal(deals["Delta"], "WON").await;
    at(&clock, "2026-03-05 11:00");
    sim.move_deal(deals["Beta"], "WON").await;
    let repeat = json!({ "CATEGORY_ID": "1", "STAGE_ID": "C1:NEW", "UF_CRM_NPS": "10" });
    deals.insert("Mu", deal(&sim, "Mu", 3, rub("9000"), repeat).await);
    at(&clock, "2026-03-06 10:00");
    sim.move_deal(deals["Delta"], "EXECUTING").await;
    sim.move_deal(deals["Epsilon"], "WON").await;
    at(&clock, "2026-03-06 11:00");
    sim.move_deal(deals["Mu"], "C1:WON").await;
    at(&clock, "2026-03-09 10:00");
    let march: [(&'static str, u64, &str, Value); 13] = [
        ("Zeta", 3, "10000", reason("11")),
        ("Nu", 4, "6000", nps("8")),
        ("Eta", 4, "7000", reason("11")),
        ("Theta", 3, "5000", reason("12")),
        ("Iota", 6, "3000", json!({})),
        ("Xi", 6, "4000", nps("abc")),
        ("Omicron", 6, "2000", nps("")),
        ("Sigma", 3, "11000", json!({})),
        ("Lambda", 6, "12000", json!({})),
        ("T1", 3, "1000", json!({})),
        ("T2", 3, "1000", json!({})),
        ("T3", 4, "1000", json!({})),
        ("T4", 6, "1000", json!({})),
    ];
    for (title, person, amount, extra) in march {
        deals.insert(title, deal(&sim, title, person, rub(amount), extra).await);
    }
    at(&clock, "2026-03-09 14:00");
    sim.move_deal(deals["Zeta"], "LOSE").await;
    sim.move_deal(deals["Nu"], "WON").await;
    at(&clock, "2026-03-10 09:00");
    for (title, stage) in [
        ("Eta", "LOSE"),
        ("Theta", "APOLOGY"),
        ("Iota", "LOSE"),
        ("Xi", "WON"),
        ("Omicron", "WON"),
        ("Sigma", "EXECUTING"),
    ] {
        sim.move_deal(deals[title], stage).await;
    }

    // The service is installed half an hour later, on the same clock: what came before is the
    // portal's history, which it does not act on (its first start is the clock's now).
    at(&clock, "2026-03-10 09:30");
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = [("server.admin_token", ADMIN.to_string())];
    let app = start_with_clock(sim, dir, &rules(), &settings, clock.clone()).await;
    app.started().await;
    let department = Department { app, clock, deals };

    at(&department.clock, "2026-03-10 10:00");
    for title in ["T1", "T2", "T3"] {
        department.move_to(title, "PREPARATION").await;
    }
    let (t1, t3) = (
        department.task_of("T1").await,
        department.task_of("T3").await,
    );
    department.task_of("T2").await;
    at(&department.clock, "2026-03-11 10:00");
    department.sla_fired(3).await;
    department.app.sim.complete_task(t1);
    at(&department.clock, "2026-03-12 15:00");
    department.app.sim.complete_task(t3);
    at(&department.clock, "2026-03-12 16:00");
    department.move_to("T4", "PREPARATION").await;
    department.task_of("T4").await;
    at(&department.clock, "2026-03-13 12:00");
    department
}

/// The object's keys, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// `expected`'s words, sorted.
fn sorted(expected: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = expected.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

/// Every object of `report[part]` has exactly `expected`'s keys (at least one is there).
fn assert_keys_of(report: &Value, part: &str, expected: &[&str]) {
    let items = report[part]
        .as_array()
        .unwrap_or_else(|| panic!("{part} is an array: {report}"));
    assert!(!items.is_empty(), "{part} has rows to look at: {report}");
    for item in items {
        assert_eq!(
            keys(item),
            sorted(expected),
            "{part} of {}",
            report["report"]
        );
    }
}

/// `rows` sorted by their text, so a set of rows compares whatever order they come in.
fn as_set(rows: &Value) -> Vec<String> {
    let mut rows: Vec<String> = rows
        .as_array()
        .unwrap_or_else(|| panic!("an array: {rows}"))
        .iter()
        .map(Value::to_string)
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn every_report_shows_the_figures_worked_out_by_hand_from_the_departments_month() {
    let d = a_month_of_the_department().await;
    let id = |title: &str| d.id(title);

    // --- plan (Friday 13 March, 12:00) ---
    // March 2026 has 22 working days (2-6, 9-13, 16-20, 23-27, 30-31); 10 have begun (2-6,
    // 9-13: today's working hours began at 09:00). The first quarter: 22 (January) + 20
    // (February) + 22 = 64 working days, of which 22 + 20 + 10 = 52 have begun.
    // march-sales, pipeline 0, RUB, won in March and still won:
    //   3: Alpha 30000 + Beta 20000 = 50000 of 100000: 50.0%, 50000 left,
    //      forecast 50000 / 10 × 22 = 110000
    //   4: Nu 6000 of 50000 (Epsilon is in USD, Delta was reopened): 12.0%, 44000 left,
    //      forecast 6000 / 10 × 22 = 13200
    //   6 has no target: Xi and Omicron are outside the plan.
    //   total 56000 of 150000: 37.3%, 94000 left, forecast 56000 × 2.2 = 123200;
    //   Epsilon's 5000 USD apart.
    // q1-deals, every pipeline, count: won in Q1 and still won: Gamma (Feb 24), Alpha, Beta,
    //   Epsilon, Mu, Nu, Xi, Omicron = 8 of 12: 66.7%, 4 left,
    //   forecast 8 / 52 × 64 = 9.846… = 9.85 (hundredths, half up).
    let plan = d.report("plan?period=2026-03").await;
    let march = |user: u64, target: u64, done: u64, percent: f64, remaining: u64, forecast: u64| {
        json!({ "plan": "march-sales", "user_id": user, "pipeline": 0, "measure": "amount",
                "currency": "RUB", "target": target, "done": done, "percent": percent,
                "remaining": remaining, "forecast": forecast })
    };
    let q1 = json!({ "plan": "q1-deals", "pipeline": null, "measure": "count", "currency": null,
                     "target": 12, "done": 8, "percent": 66.7, "remaining": 4, "forecast": 9.85 });
    assert_eq!(
        as_set(&plan["rows"]),
        as_set(&json!([
            march(3, 100000, 50000, 50.0, 50000, 110000),
            march(4, 50000, 6000, 12.0, 44000, 13200),
            q1
        ])),
        "{plan:#}"
    );
    assert_eq!(
        as_set(&plan["totals"]),
        as_set(&json!([
            { "plan": "march-sales", "target": 150000, "done": 56000, "percent": 37.3,
              "remaining": 94000, "forecast": 123200, "currency": "RUB",
              "other_currencies": [{ "currency": "USD", "count": 1, "amount": 5000 }] },
            { "plan": "q1-deals", "target": 12, "done": 8, "percent": 66.7, "remaining": 4,
              "forecast": 9.85, "currency": null, "other_currencies": [] },
        ])),
        "{plan:#}"
    );
    assert_eq!(
        plan["period"],
        json!({ "from": "2026-03-01", "to": "2026-03-31" })
    );

    // --- nps (won in March, still won, with a score) ---
    // Alpha 9 (promoter), Beta 6 (detractor): pipeline 0, person 3: 2 answers, NPS 50 − 50 = 0.
    // Nu 8 (passive): pipeline 0, person 4: NPS 0. Mu 10 (promoter): pipeline 1, person 3: 100.
    // Epsilon 11 and Xi "abc" are invalid; Omicron left it empty (no answer); Delta (0) was
    // reopened and Gamma (10) won in February: not March's.
    // All: 4 answers, 2 promoters, 1 passive, 1 detractor: 50% − 25% = 25.0.
    let nps = d.report("nps?period=2026-03").await;
    let row = |pipeline: u64, user: u64, (p, pa, de): (u64, u64, u64), score: f64| {
        json!({ "rule": "nps", "pipeline": pipeline, "user_id": user, "responses": p + pa + de,
                "promoters": p, "passives": pa, "detractors": de, "nps": score })
    };
    assert_eq!(
        as_set(&nps["rows"]),
        as_set(&json!([
            row(0, 3, (1, 0, 1), 0.0),
            row(0, 4, (0, 1, 0), 0.0),
            row(1, 3, (1, 0, 0), 100.0)
        ])),
        "{nps:#}"
    );
    assert_eq!(
        nps["totals"],
        json!([{ "rule": "nps", "responses": 4, "promoters": 2, "passives": 1, "detractors": 1,
                 "nps": 25.0 }]),
        "{nps:#}"
    );
    let invalid: Vec<u64> = nps["invalid"]
        .as_array()
        .expect("invalid")
        .iter()
        .filter_map(|i| i["deal_id"].as_u64())
        .collect();
    assert_eq!(invalid, [id("Epsilon"), id("Xi")], "{nps:#}");
    assert_eq!(
        nps["invalid"][0]["value"], "11.00",
        "as the portal holds it"
    );
    assert_eq!(nps["invalid"][1]["value"], "abc");

    // --- losses (entered a failure stage in March, still lost) ---
    // Zeta (3, 10000) and Eta (4, 7000): "Too expensive", 2 for 17000; Theta (3, 5000, APOLOGY):
    // "Chose a competitor"; Iota (6, 3000): no reason. Kappa was lost in February.
    let losses = d.report("losses?period=2026-03").await;
    let loss = |reason: Value, count: u64, amount: u64, pipeline: Value, user: Value| {
        json!({ "reason": reason, "count": count, "amount": amount, "currency": "RUB",
                "pipeline": pipeline, "user_id": user })
    };
    let (expensive, competitor) = (json!("Too expensive"), json!("Chose a competitor"));
    let (none, p0) = (Value::Null, json!(0));
    assert_eq!(
        as_set(&losses["rows"]),
        as_set(&json!([
            // The department.
            loss(expensive.clone(), 2, 17000, none.clone(), none.clone()),
            loss(competitor.clone(), 1, 5000, none.clone(), none.clone()),
            loss(none.clone(), 1, 3000, none.clone(), none.clone()),
            // Pipeline 0: all of them.
            loss(expensive.clone(), 2, 17000, p0.clone(), none.clone()),
            loss(competitor.clone(), 1, 5000, p0.clone(), none.clone()),
            loss(none.clone(), 1, 3000, p0, none.clone()),
            // Per person.
            loss(expensive.clone(), 1, 10000, none.clone(), json!(3)),
            loss(competitor, 1, 5000, none.clone(), json!(3)),
            loss(expensive, 1, 7000, none.clone(), json!(4)),
            loss(none.clone(), 1, 3000, none, json!(6)),
        ])),
        "{losses:#}"
    );
    assert_eq!(
        losses["rows"][0]["reason"], "Too expensive",
        "the most frequent reason first"
    );

    // --- stages (entries in March; time to the next entry, or to now: Mar 13 12:00) ---
    // NEW, 16 entries: Zeta, Nu 4 h = 14400; Eta, Theta, Iota, Xi, Omicron, Sigma 23 h = 82800;
    //   T1, T2, T3 24 h = 86400; Delta 2 d = 172800; Beta 3 d 1 h = 262800; T4 3 d 6 h =
    //   280800; Epsilon 4 d = 345600; Lambda (still there) 4 d 2 h = 352800.
    //   Median: mean of the 8th and 9th, (82800 + 86400) / 2 = 84600; p90: the ⌈14.4⌉ = 15th,
    //   345600. Went on to a later stage: Beta, Delta, Epsilon, Nu, Xi, Omicron (WON), T1-T4
    //   (PREPARATION), Sigma (EXECUTING) = 11 of 16 = 68.75 → 68.8%.
    // PREPARATION, 5: T4 20 h = 72000; Alpha 1 d = 86400; T1-T3 (still there) 3 d 2 h =
    //   266400. Median the 3rd = 266400, p90 the 5th = 266400; Alpha went on: 1 of 5 = 20.0%.
    // EXECUTING, 2: Sigma 3 d 3 h = 270000, Delta 7 d 2 h = 612000: median 441000, p90 612000;
    //   nobody went on: 0.0%.
    // WON, 7: Delta (reopened after) 172800; Xi, Omicron 270000; Nu 3 d 22 h = 338400;
    //   Epsilon 612000; Beta 8 d 1 h = 694800; Alpha 10 d 2 h = 871200: median 338400, p90
    //   the 7th = 871200; a final stage has no conversion.
    // LOSE, 3: Eta, Iota 270000, Zeta 338400: median 270000, p90 338400. APOLOGY, 1: Theta
    //   270000.
    // Pipeline 1: C1:NEW, Mu 1 d = 86400, on to C1:WON: 100.0%; C1:WON 7 d 1 h = 608400.
    // Stages nobody entered in March show 0 entries, no times, no conversion.
    let stages = d.report("stages?period=2026-03").await;
    let stage = |(pipeline, id, name): (u64, &str, &str),
                 entries: u64,
                 (median, p90): (Option<i64>, Option<i64>),
                 conversion: Option<f64>| {
        json!({ "pipeline": pipeline, "stage": id, "stage_name": name, "entries": entries,
                "median_seconds": median, "p90_seconds": p90, "conversion": conversion,
                "over_sla": 0 })
    };
    let times = |median: i64, p90: i64| (Some(median), Some(p90));
    let never = (None, None);
    let mut expected = json!([
        stage((0, "NEW", "New"), 16, times(84600, 345600), Some(68.8)),
        stage(
            (0, "PREPARATION", "Document preparation"),
            5,
            times(266400, 266400),
            Some(20.0)
        ),
        stage(
            (0, "PREPAYMENT_INVOICE", "Prepayment invoice"),
            0,
            never,
            None
        ),
        stage(
            (0, "EXECUTING", "In progress"),
            2,
            times(441000, 612000),
            Some(0.0)
        ),
        stage((0, "FINAL_INVOICE", "Final invoice"), 0, never, None),
        stage(
            (0, "WON", "Deal successful"),
            7,
            times(338400, 871200),
            None
        ),
        stage((0, "LOSE", "Deal failed"), 3, times(270000, 338400), None),
        stage(
            (0, "APOLOGY", "Failure reason analysis"),
            1,
            times(270000, 270000),
            None
        ),
        stage((1, "C1:NEW", "New"), 1, times(86400, 86400), Some(100.0)),
        stage((1, "C1:PREPARATION", "Offer"), 0, never, None),
        stage((1, "C1:EXECUTING", "In progress"), 0, never, None),
        stage((1, "C1:WON", "Deal won"), 1, times(608400, 608400), None),
        stage((1, "C1:LOSE", "Deal lost"), 0, never, None),
    ]);
    // Over the offer SLA (1 day in PREPARATION) now: T1, T2 and T3, in since Mar 10 10:00; T4
    // (Mar 12 16:00) has until 16:00 today, and Alpha's entry is older than the service.
    expected[1]["over_sla"] = json!(3);
    assert_eq!(
        stages["rows"], expected,
        "every stage, in the pipelines' order"
    );

    // --- tasks (created by the service in March) ---
    // 3: T1 completed Mar 11 10:00, before its deadline Mar 12 10:00 (on time); T2 open and
    //    past that deadline now (overdue). 4: T3 completed Mar 12 15:00, after it (late).
    // 6: T4 open, due Mar 14 16:00 (not overdue).
    let tasks = d.report("tasks?period=2026-03").await;
    assert_eq!(
        tasks["rows"],
        json!([
            { "user_id": 3, "created": 2, "on_time": 1, "late": 0, "open": 1, "overdue": 1 },
            { "user_id": 4, "created": 1, "on_time": 0, "late": 1, "open": 0, "overdue": 0 },
            { "user_id": 6, "created": 1, "on_time": 0, "late": 0, "open": 1, "overdue": 0 },
        ]),
        "{tasks:#}"
    );

    // --- deals (won in March, by when; then every open deal, by id) ---
    // Won: Alpha (Mar 3 10:00), Beta (Mar 5 11:00), Epsilon (Mar 6 10:00), Mu (Mar 6 11:00),
    // Nu (Mar 9 14:00), Xi and Omicron (Mar 10 09:00). Open: Delta (reopened), Sigma, Lambda,
    // T1-T4.
    // Totals: pipeline 0 RUB won 5 for 30000 + 20000 + 6000 + 4000 + 2000 = 62000, open 7 for
    // 40000 + 11000 + 12000 + 4 × 1000 = 67000; pipeline 0 USD won 1 for 5000; pipeline 1 RUB
    // won 1 for 9000.
    let deals = d.report("deals?period=2026-03").await;
    let listed: Vec<(u64, Value)> = deals["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["deal_id"].as_u64().expect("an id"), r["won_at"].clone()))
        .collect();
    let won = |title: &str, moment: &str| (id(title), json!(moment));
    let mut open: Vec<(u64, Value)> = ["Delta", "Sigma", "Lambda", "T1", "T2", "T3", "T4"]
        .iter()
        .map(|t| (id(t), Value::Null))
        .collect();
    open.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        won("Alpha", "2026-03-03T10:00:00+03:00"),
        won("Beta", "2026-03-05T11:00:00+03:00"),
        won("Epsilon", "2026-03-06T10:00:00+03:00"),
        won("Mu", "2026-03-06T11:00:00+03:00"),
        won("Nu", "2026-03-09T14:00:00+03:00"),
    ];
    let mut same_second = vec![
        won("Xi", "2026-03-10T09:00:00+03:00"),
        won("Omicron", "2026-03-10T09:00:00+03:00"),
    ];
    same_second.sort_by_key(|(id, _)| *id);
    expected.extend(same_second);
    expected.extend(open);
    assert_eq!(listed, expected, "{deals:#}");
    let epsilon = deals["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["deal_id"] == id("Epsilon")))
        .expect("Epsilon's row");
    assert_eq!(
        epsilon,
        &json!({ "deal_id": id("Epsilon"), "title": "Epsilon", "pipeline": 0, "stage": "WON",
                 "user_id": 4, "amount": 5000, "currency": "USD",
                 "won_at": "2026-03-06T10:00:00+03:00" })
    );
    let total = |pipeline: u64, currency: &str, won: (u64, u64), open: (u64, u64)| {
        json!({ "pipeline": pipeline, "currency": currency, "won_count": won.0,
                "won_amount": won.1, "open_count": open.0, "open_amount": open.1 })
    };
    assert_eq!(
        as_set(&deals["totals"]),
        as_set(&json!([
            total(0, "RUB", (5, 62000), (7, 67000)),
            total(0, "USD", (1, 5000), (0, 0)),
            total(1, "RUB", (1, 9000), (0, 0)),
        ])),
        "{deals:#}"
    );
    d.app.stop().await;
}

/// An array of a report's JSON (`rows`, `totals`, `invalid`) and the keys of its objects.
type Part = (&'static str, &'static [&'static str]);

/// What `control.md` says each report's JSON holds: the envelope's keys, and the keys of each
/// object of each array in it (`rows`, `totals`, `invalid`).
const SPEC_KEYS: [(&str, &[Part]); 6] = [
    (
        "plan",
        &[
            (
                "rows",
                &[
                    "plan",
                    "user_id",
                    "pipeline",
                    "measure",
                    "currency",
                    "target",
                    "done",
                    "percent",
                    "remaining",
                    "forecast",
                ],
            ),
            (
                "totals",
                &[
                    "plan",
                    "target",
                    "done",
                    "percent",
                    "remaining",
                    "forecast",
                    "currency",
                    "other_currencies",
                ],
            ),
        ],
    ),
    (
        "nps",
        &[
            (
                "rows",
                &[
                    "rule",
                    "pipeline",
                    "user_id",
                    "responses",
                    "promoters",
                    "passives",
                    "detractors",
                    "nps",
                ],
            ),
            // "totals per rule": a row's figures without its pipeline and person.
            (
                "totals",
                &[
                    "rule",
                    "responses",
                    "promoters",
                    "passives",
                    "detractors",
                    "nps",
                ],
            ),
            ("invalid", &["deal_id", "value"]),
        ],
    ),
    (
        "losses",
        &[(
            "rows",
            &[
                "reason", "count", "amount", "currency", "pipeline", "user_id",
            ],
        )],
    ),
    (
        "stages",
        &[(
            "rows",
            &[
                "pipeline",
                "stage",
                "stage_name",
                "entries",
                "median_seconds",
                "p90_seconds",
                "conversion",
                "over_sla",
            ],
        )],
    ),
    (
        "tasks",
        &[(
            "rows",
            &["user_id", "created", "on_time", "late", "open", "overdue"],
        )],
    ),
    (
        "deals",
        &[
            (
                "rows",
                &[
                    "deal_id", "title", "pipeline", "stage", "user_id", "amount", "currency",
                    "won_at",
                ],
            ),
            // "totals per pipeline and currency": won and open, count and amount.
            (
                "totals",
                &[
                    "pipeline",
                    "currency",
                    "won_count",
                    "won_amount",
                    "open_count",
                    "open_amount",
                ],
            ),
        ],
    ),
];

#[tokio::test]
async fn every_report_has_exactly_the_specs_keys_and_says_how_fresh_its_data_is() {
    let d = a_month_of_the_department().await;
    for (name, parts) in SPEC_KEYS {
        let report = d.report(&format!("{name}?period=2026-03")).await;
        let mut envelope = vec!["report", "period", "generated_at", "data_as_of"];
        envelope.extend(parts.iter().map(|(part, _)| *part));
        assert_eq!(keys(&report), sorted(&envelope), "{name}'s envelope");
        assert_eq!(report["report"], name);
        assert_eq!(keys(&report["period"]), sorted(&["from", "to"]));
        for (part, expected) in parts {
            if (name, *part) == ("plan", "rows") {
                // `user_id` is there for a person's target and absent for a whole-plan one.
                for row in report["rows"].as_array().expect("plan rows") {
                    let whole: Vec<&str> = expected
                        .iter()
                        .copied()
                        .filter(|k| row.get("user_id").is_some() || *k != "user_id")
                        .collect();
                    assert_eq!(keys(row), sorted(&whole), "a plan row: {row}");
                }
            } else {
                assert_keys_of(&report, part, expected);
            }
        }

        // Fresh: the copy was brought up to date for this very report, at the clock's now
        // (Mar 13 12:00, in the calendar's zone), and says so.
        let stamp = |key: &str| {
            DateTime::parse_from_rfc3339(report[key].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{name}'s {key} is RFC 3339: {e}: {report}"))
        };
        let (as_of, generated) = (stamp("data_as_of"), stamp("generated_at"));
        assert_eq!(
            as_of.offset().local_minus_utc(),
            3 * 3600,
            "{name}: Moscow time"
        );
        assert_eq!(
            as_of.timestamp(),
            msk("2026-03-13 12:00").timestamp(),
            "{name}: refreshed now"
        );
        assert!(
            as_of <= generated,
            "{name}: data as of {as_of}, made {generated}"
        );
    }
    let plan = d.report("plan?period=2026-03").await;
    let other = &plan["totals"][0]["other_currencies"][0];
    assert_eq!(keys(other), sorted(&["currency", "count", "amount"]));

    // An hour later, the next report's copy is an hour newer.
    at(&d.clock, "2026-03-13 13:00");
    let later = d.report("deals?period=2026-03").await;
    let as_of = DateTime::parse_from_rfc3339(later["data_as_of"].as_str().unwrap_or_default());
    assert_eq!(
        as_of.map(|at| at.timestamp()),
        Ok(msk("2026-03-13 13:00").timestamp()),
        "{later}"
    );
    d.app.stop().await;
}

#[tokio::test]
async fn a_newly_won_deal_and_a_changed_amount_show_in_the_next_report_for_a_request_or_two() {
    let d = a_month_of_the_department().await;
    let first = d.report("plan?period=2026-03").await;
    assert_eq!(first["totals"][0]["done"], 56000, "{first:#}");

    // Half an hour later Gleb (4) wins Pi, 25000 RUB, and Vera (3) agrees 35000 for Alpha
    // (was 30000).
    at(&d.clock, "2026-03-13 12:30");
    let pi = deal(&d.app.sim, "Pi", 4, ("25000", "RUB"), json!({})).await;
    at(&d.clock, "2026-03-13 12:31");
    d.app.sim.move_deal(pi, "WON").await;
    d.app
        .sim
        .update_deal(d.id("Alpha"), json!({ "OPPORTUNITY": "35000.00" }))
        .await;
    // The service's own work on those events (Pi's NPS task) is done before the count starts.
    d.app.settle(Duration::from_secs(20)).await;

    let before = d.app.sim.request_count();
    let plan = d.report("plan?period=2026-03").await;
    let cost = d.app.sim.request_count() - before;
    // Both lists' first pages in one batch; one more if the field catalog's cache went stale.
    assert!(cost <= 2, "the refresh cost {cost} requests");

    // Still 10 of 22 working days: the forecast is done × 2.2.
    //   3: Alpha 35000 + Beta 20000 = 55000: 55.0%, 45000 left, forecast 121000.
    //   4: Nu 6000 + Pi 25000 = 31000: 62.0%, 19000 left, forecast 68200.
    //   march-sales: 86000 of 150000: 57.3%, 64000 left, forecast 189200.
    //   q1-deals: 9 won of 12: 75.0%, 3 left, forecast 9 / 52 × 64 = 11.077 → 11.08.
    let row_of = |user: u64| {
        plan["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["user_id"] == user))
            .cloned()
            .unwrap_or_else(|| panic!("a row for {user}: {plan:#}"))
    };
    let figures = |row: &Value| {
        json!([
            row["done"],
            row["percent"],
            row["remaining"],
            row["forecast"]
        ])
    };
    assert_eq!(figures(&row_of(3)), json!([55000, 55.0, 45000, 121000]));
    assert_eq!(figures(&row_of(4)), json!([31000, 62.0, 19000, 68200]));
    assert_eq!(
        figures(&plan["totals"][0]),
        json!([86000, 57.3, 64000, 189200])
    );
    assert_eq!(figures(&plan["totals"][1]), json!([9, 75.0, 3, 11.08]));

    // The accountant's list has Pi won at 12:31 and Alpha at its new amount.
    let deals = d.report("deals?period=2026-03").await;
    let row = |id: u64| {
        deals["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["deal_id"] == id))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(row(pi)["won_at"], "2026-03-13T12:31:00+03:00", "{deals:#}");
    assert_eq!(row(d.id("Alpha"))["amount"], 35000, "{deals:#}");
    d.app.stop().await;
}

/// `b24-robot report ARGS` run as a person runs it, beside the running service (whose admin
/// API it asks): its standard output, once it exited 0.
async fn command(d: &Department, args: &[&str]) -> String {
    let port = d.app.port.to_string();
    let dir = d.app.dir.path().to_path_buf();
    let webhook = d.app.sim.webhook_url();
    let mut argv = vec!["report".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    // The command blocks its thread while it asks the service, which runs on this one.
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let listen = format!("127.0.0.1:{port}");
        let data = dir.display().to_string();
        run_binary_in(
            &dir,
            &args,
            &[
                ("B24ROBOT__SERVER__LISTEN", &listen),
                ("B24ROBOT__SERVER__ADMIN_TOKEN", ADMIN),
                ("B24ROBOT__STORAGE__DIR", &data),
                ("B24ROBOT__PORTAL__WEBHOOK_URL", &webhook),
                ("B24ROBOT__PORTAL__APPLICATION_TOKEN", crate::helpers::TOKEN),
            ],
        )
    })
    .await
    .expect("the command ran");
    let (stdout, stderr) = texts(&output);
    assert!(
        output.status.success(),
        "report {args:?}: {stdout} {stderr}"
    );
    stdout
}

/// A text table's cells, cut at its gutters: the runs of two or more positions blank on every
/// line (a cell never holds two spaces in a row, so only the gaps between columns are blank
/// all the way down). That every line has its gaps at the same places is what makes the
/// columns line up, left- or right-aligned; a table whose columns did not line up would cut
/// into fewer, wrong cells.
fn aligned_cells(table: &[&str]) -> Vec<Vec<String>> {
    let lines: Vec<Vec<char>> = table.iter().map(|l| l.chars().collect()).collect();
    let width = lines.iter().map(Vec::len).max().unwrap_or(0);
    let blank = |i: usize| lines.iter().all(|l| l.get(i).is_none_or(|c| *c == ' '));
    // The columns' spans: what lies between the gutters.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < width {
        let start = i;
        while i < width && !(blank(i) && (i + 1 >= width || blank(i + 1))) {
            i += 1;
        }
        spans.push((start, i));
        while i < width && blank(i) {
            i += 1;
        }
    }
    lines
        .iter()
        .map(|chars| {
            spans
                .iter()
                .map(|&(start, end)| {
                    let cell: String = chars
                        .get(start.min(chars.len())..end.min(chars.len()))
                        .unwrap_or_default()
                        .iter()
                        .collect();
                    cell.trim().to_string()
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_report_command_prints_csv_for_excel_and_aligned_text_for_a_terminal() {
    let d = a_month_of_the_department().await;

    // CSV: a byte-order mark, a header of the JSON keys, `;` between fields, CRLF lines; the
    // plan's rows as the JSON has them (a whole-plan target has no person).
    let csv = command(&d, &["plan", "--period", "2026-03", "--format", "csv"]).await;
    let body = csv
        .strip_prefix('\u{feff}')
        .unwrap_or_else(|| panic!("a byte-order mark first: {csv:?}"));
    let lines: Vec<&str> = body.split_terminator("\r\n").collect();
    assert_eq!(
        lines,
        [
            "plan;user_id;pipeline;measure;currency;target;done;percent;remaining;forecast",
            "march-sales;3;0;amount;RUB;100000;50000;50.0;50000;110000",
            "march-sales;4;0;amount;RUB;50000;6000;12.0;44000;13200",
            "q1-deals;;;count;;12;8;66.7;4;9.85",
        ],
        "{csv:?}"
    );

    // `--csv-delimiter ,` for a comma locale: the accountant's list, one row a deal.
    let deals = command(
        &d,
        &[
            "deals",
            "--period",
            "2026-03",
            "--format",
            "csv",
            "--csv-delimiter",
            ",",
        ],
    )
    .await;
    let lines: Vec<&str> = deals.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "\u{feff}deal_id,title,pipeline,stage,user_id,amount,currency,won_at"
    );
    assert_eq!(
        lines[1],
        format!(
            "{},Alpha,0,WON,3,30000,RUB,2026-03-03T10:00:00+03:00",
            d.id("Alpha")
        )
    );
    assert_eq!(lines.len(), 1 + 7 + 7, "a header, 7 won and 7 open deals");

    // Text: what, for when and how fresh first; then the table, each cell in its column, the
    // same cells as the CSV's.
    let text = command(&d, &["stages", "--period", "2026-03", "--format", "text"]).await;
    let lines: Vec<&str> = text.lines().collect();
    // (The clock runs at a thousandth of real time: its milliseconds are not the test's.)
    let (heading, as_of) = lines[0].split_once(" (data as of ").expect("how fresh");
    assert_eq!(
        heading, "report stages from 2026-03-01 to 2026-03-31",
        "{text}"
    );
    assert!(
        as_of.starts_with("2026-03-13T12:00:00.") && as_of.ends_with("+03:00)"),
        "{text}"
    );
    let table: Vec<&str> = lines[2..]
        .iter()
        .copied()
        .take_while(|l| !l.is_empty())
        .collect();
    let stages_csv = command(&d, &["stages", "--period", "2026-03", "--format", "csv"]).await;
    let from_csv: Vec<Vec<String>> = stages_csv
        .trim_start_matches('\u{feff}')
        .split_terminator("\r\n")
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect();
    // The same cells as the CSV's, as people read them: times in days, hours and minutes (the
    // `_seconds` columns without their unit), conversion with `%`.
    let shown = aligned_cells(&table);
    assert_eq!(
        shown[0],
        [
            "pipeline",
            "stage",
            "stage_name",
            "entries",
            "median",
            "p90",
            "conversion",
            "over_sla"
        ],
        "{text}"
    );
    assert_eq!(from_csv[0][4..6], ["median_seconds", "p90_seconds"]);
    let human = |seconds: &str| {
        seconds
            .parse::<f64>()
            .map(b24_robot::reports::shown::duration)
            .unwrap_or_default()
    };
    for (row, csv) in shown.iter().zip(&from_csv).skip(1) {
        for column in [0, 1, 2, 3, 7] {
            assert_eq!(row[column], csv[column], "{text}");
        }
        assert_eq!(row[4], human(&csv[4]), "{text}");
        assert_eq!(row[5], human(&csv[5]), "{text}");
        let conversion = if csv[6].is_empty() {
            String::new()
        } else {
            format!("{}%", csv[6])
        };
        assert_eq!(row[6], conversion, "{text}");
    }
    // PREPARATION (see the figures above): T1..T3 spent a day, and the median says so.
    let preparation = shown
        .iter()
        .find(|r| r[1] == "PREPARATION")
        .expect("a PREPARATION row");
    assert!(
        preparation[4].ends_with('h') || preparation[4].ends_with('d'),
        "{text}"
    );
    assert_eq!(
        table.len(),
        1 + 13,
        "a header and every stage of both pipelines"
    );
    d.app.stop().await;
}

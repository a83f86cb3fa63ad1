//! The weeks before the demo's week: the department's deals of the month so far, won, lost and
//! still open, with the NPS scores the won clients gave and the reasons the lost ones were lost.
//!
//! They are written into the simulated portal before the service starts, as the history of a
//! portal the service is installed on: the service acts on none of it (its stage history starts
//! at the first start), and the reports at the end of the demo count all of it. The portal's
//! clock is moved to each moment in turn, so that every stage-history entry carries the time it
//! happened. Every run writes the same deals: the month is a fixed pattern over the working
//! days, not a random draw.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Weekday};
use serde_json::json;

use crate::calendar::Calendar;
use crate::clock::Clock;
use crate::rules::{Amount, ReportPeriod};
use crate::sandbox::SimPortal;

/// The managers of the built-in portal who sell to new clients: Vera, Gleb, Elena.
const MANAGERS: [u64; 3] = [3, 4, 6];

/// The deals' amounts in roubles, taken in turn.
const AMOUNTS: [u32; 9] = [
    240_000, 90_000, 150_000, 320_000, 60_000, 180_000, 110_000, 450_000, 75_000,
];

/// The scores the won clients give, in turn: promoters, passives, detractors, and one answer
/// that is no score (the NPS report lists it as invalid).
const SCORES: [&str; 11] = ["10", "9", "8", "10", "6", "9", "7", "3", "10", "11", "9"];

/// The loss reasons of the built-in portal's list field (`UF_CRM_LOSS_REASON`), in turn; `None`:
/// the manager gave none (before the service's `[[loss_reason]]` rule asked for one).
const REASONS: [Option<&str>; 5] = [Some("11"), Some("12"), None, Some("13"), Some("14")];

/// Client names, taken in turn and numbered once they repeat.
const CLIENTS: [&str; 12] = [
    "Oduvanchik LLC",
    "Klever Group",
    "Podsolnukh",
    "Vasilki Trading",
    "Landysh Pharma",
    "Iris Logistics",
    "Fialka Retail",
    "Nezabudka",
    "Siren Studio",
    "Kolokolchik Foods",
    "Tyulpan Media",
    "Pion Engineering",
];

/// The demo's week starts on the third working Monday of the month of the coming Monday, so
/// that two weeks and more of the month lie before it; when that Monday is past already, on
/// the third of the next month.
pub(super) fn story_monday(calendar: &Calendar, today: NaiveDate) -> NaiveDate {
    let third_monday = |first: NaiveDate| {
        (0..31)
            .map(|d| first + Duration::days(d))
            .filter(|d| d.month() == first.month())
            .filter(|d| d.weekday() == Weekday::Mon && calendar.is_working_day(*d))
            .nth(2)
    };
    let month_start = |d: NaiveDate| d.with_day(1).unwrap_or(d);
    let coming = (1..=7)
        .map(|ahead| today + Duration::days(ahead))
        .find(|d| d.weekday() == Weekday::Mon)
        .unwrap_or(today);
    let this = month_start(coming);
    match third_monday(this) {
        Some(monday) if monday > today => monday,
        _ => {
            let next = month_start(this + Duration::days(32));
            third_monday(next).unwrap_or(coming)
        }
    }
}

/// The first moment of the month of `monday`, in the calendar's zone: where the demo's clock
/// starts.
pub(super) fn month_start(calendar: &Calendar, monday: NaiveDate) -> DateTime<FixedOffset> {
    let first = monday.with_day(1).unwrap_or(monday);
    calendar.at_local(first.and_time(NaiveTime::MIN))
}

/// The month of `monday`, as reports take it.
pub(super) fn period(monday: NaiveDate) -> Option<ReportPeriod> {
    format!("{}-{:02}", monday.year(), monday.month())
        .parse()
        .ok()
}

/// What the month left on the portal, for the story's line.
#[derive(Debug, Default)]
pub(super) struct Month {
    pub(super) won: usize,
    pub(super) won_amount: u64,
    /// Won deals in another currency than roubles: reported apart, never summed.
    pub(super) won_other: usize,
    pub(super) lost: usize,
    pub(super) open: usize,
    pub(super) scores: usize,
}

impl std::fmt::Display for Month {
    /// "21 won (3 827 500 RUB, and 1 in another currency), 12 lost, 16 open; 15 NPS scores".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.won_amount.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        write!(f, "{} won ({grouped} RUB", self.won)?;
        if self.won_other > 0 {
            write!(f, ", and {} in another currency", self.won_other)?;
        }
        write!(
            f,
            "), {} lost, {} open; {} won clients gave an NPS score",
            self.lost, self.open, self.scores
        )
    }
}

/// One thing a manager does on the portal, at its moment.
struct Step {
    at: DateTime<FixedOffset>,
    deal: usize,
    what: Action,
}

enum Action {
    Create {
        title: String,
        manager: u64,
        pipeline: u64,
        stage: &'static str,
        amount: u32,
        currency: &'static str,
    },
    Move(&'static str),
    Set(serde_json::Value),
    /// The manager plans the next step: a task of their own, due after the demo's week.
    Plan(u64),
}

/// How a deal of the month ends (or does not yet).
#[derive(Clone, Copy)]
enum Fate {
    Won { after: i64 },
    Lost { after: i64 },
    Open,
}

/// Writes the month from its first day to just before `monday`'s working day into `sim`,
/// moving `clock` (the portal's) on to each moment; leaves it at the last one.
pub(super) async fn seed(
    sim: &SimPortal,
    clock: &Clock,
    calendar: &Calendar,
    monday: NaiveDate,
) -> Month {
    let end = calendar.at_local(monday.and_time(calendar.day_start()));
    let steps = plan_month(calendar, monday, end);
    let mut ids: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    let mut month = Month::default();
    for step in steps {
        let ahead = step.at.timestamp_millis() - clock.now_ms();
        if ahead > 0 {
            clock.advance(std::time::Duration::from_millis(ahead as u64));
        }
        match step.what {
            Action::Create {
                title,
                manager,
                pipeline,
                stage,
                amount,
                currency,
            } => {
                let id = sim
                    .create_deal(json!({
                        "TITLE": title, "ASSIGNED_BY_ID": manager.to_string(),
                        "OPPORTUNITY": format!("{amount}.00"), "CURRENCY_ID": currency,
                        "CATEGORY_ID": pipeline.to_string(), "STAGE_ID": stage,
                        "UF_CRM_INN": format!("77{:08}", 1_000_000 + step.deal),
                        "UF_CRM_CONTRACT_NO": format!("{}-{:03}", monday.year(), step.deal + 1),
                    }))
                    .await;
                ids.insert(step.deal, id);
            }
            Action::Move(stage) => sim.move_deal_silently(ids[&step.deal], stage).await,
            Action::Set(fields) => {
                sim.update_deal(ids[&step.deal], fields).await;
            }
            Action::Plan(manager) => {
                let due = end + Duration::days(14);
                sim.add_user_task(ids[&step.deal], "Call back", manager, Some(due));
            }
        }
    }
    for deal in sim.deals() {
        let stage = deal["STAGE_ID"].as_str().unwrap_or_default();
        if stage.ends_with("WON") {
            month.won += 1;
            if deal["CURRENCY_ID"] == "RUB" {
                let amount = deal["OPPORTUNITY"].as_str().and_then(Amount::parse);
                month.won_amount += amount.map_or(0, |a| a.as_f64() as u64);
            } else {
                month.won_other += 1;
            }
            month.scores += usize::from(!deal["UF_CRM_NPS"].is_null());
        } else if stage.ends_with("LOSE") {
            month.lost += 1;
        } else {
            month.open += 1;
        }
    }
    month
}

/// The month's steps in time order: three new-client deals each working day before `end` (one
/// deal in seven in dollars now and then), a repeat client's deal every other day; of every
/// seven new deals three are won within a week, two lost, two still open. A step that would
/// fall at or after `end` is left out: that deal is still where the earlier steps left it.
fn plan_month(calendar: &Calendar, monday: NaiveDate, end: DateTime<FixedOffset>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut days: Vec<NaiveDate> = (0..31)
        .map(|d| monday.with_day(1).unwrap_or(monday) + Duration::days(d))
        .filter(|d| *d < monday && calendar.is_working_day(*d))
        .collect();
    days.sort();
    let at = |day: NaiveDate, hh: u32, mm: u32| {
        calendar.at_local(day.and_time(NaiveTime::from_hms_opt(hh, mm, 0).unwrap_or_default()))
    };
    // The working day `n` days after `day`, at `hh`:`mm` (the calendar's days, so weekends and
    // holidays pass).
    let later = |day: NaiveDate, n: i64, hh: u32, mm: u32| {
        let mut d = day;
        let mut left = n;
        while left > 0 {
            d += Duration::days(1);
            if calendar.is_working_day(d) {
                left -= 1;
            }
        }
        at(d, hh, mm)
    };
    let mut deal = 0;
    let mut won = 0;
    let mut lost = 0;
    for (day_index, day) in days.iter().enumerate() {
        for slot in 0..3u32 {
            let n = deal;
            let fate = match n % 7 {
                0 | 2 | 5 => Fate::Won {
                    after: 3 + (n % 3) as i64,
                },
                1 | 4 => Fate::Lost {
                    after: 1 + (n % 2) as i64,
                },
                _ => Fate::Open,
            };
            let manager = MANAGERS[n % MANAGERS.len()];
            let currency = if n % 17 == 5 { "USD" } else { "RUB" };
            let amount = match currency {
                "USD" => 4_000 + 1_000 * (n % 3) as u32,
                _ => AMOUNTS[n % AMOUNTS.len()],
            };
            let round = n / CLIENTS.len();
            let client = CLIENTS[n % CLIENTS.len()];
            let title = match round {
                0 => client.to_string(),
                r => format!("{client} #{}", r + 1),
            };
            steps.push(Step {
                at: at(*day, 10 + 2 * slot, 15),
                deal: n,
                what: Action::Create {
                    title,
                    manager,
                    pipeline: 0,
                    stage: "NEW",
                    amount,
                    currency,
                },
            });
            let mut path: Vec<(DateTime<FixedOffset>, Action)> =
                vec![(later(*day, 1, 11, 0), Action::Move("PREPARATION"))];
            match fate {
                Fate::Won { after } => {
                    path.push((later(*day, 2, 12, 30), Action::Move("PREPAYMENT_INVOICE")));
                    path.push((later(*day, after - 1, 15, 0), Action::Move("EXECUTING")));
                    path.push((later(*day, after, 16, 0), Action::Move("WON")));
                    let score = SCORES[won % SCORES.len()];
                    path.push((
                        later(*day, after + 1, 11, 30),
                        Action::Set(json!({ "UF_CRM_NPS": score })),
                    ));
                    won += 1;
                }
                Fate::Lost { after } => {
                    if let Some(reason) = REASONS[lost % REASONS.len()] {
                        path.push((
                            later(*day, after, 16, 30),
                            Action::Set(json!({ "UF_CRM_LOSS_REASON": reason })),
                        ));
                    }
                    path.push((later(*day, after, 16, 40), Action::Move("LOSE")));
                    lost += 1;
                }
                Fate::Open => {
                    path.push((later(*day, 1, 11, 5), Action::Plan(manager)));
                }
            }
            // Where the month ends before the deal does, it stays open: it gets its next step
            // planned at the last moment it was touched, so it does not stand without one.
            let mut open_left = false;
            for (when, what) in path {
                if when >= end {
                    open_left = true;
                    break;
                }
                steps.push(Step {
                    at: when,
                    deal: n,
                    what,
                });
            }
            if open_left {
                steps.push(Step {
                    at: end - Duration::minutes(30),
                    deal: n,
                    what: Action::Plan(manager),
                });
            }
            deal += 1;
        }
        // A repeat client every other day, in the repeat-clients pipeline: won two days on.
        if day_index % 2 == 0 {
            let n = deal;
            steps.push(Step {
                at: at(*day, 9, 40),
                deal: n,
                what: Action::Create {
                    title: format!("Repeat sale: {}", CLIENTS[(n + 5) % CLIENTS.len()]),
                    manager: MANAGERS[n % MANAGERS.len()],
                    pipeline: 1,
                    stage: "C1:NEW",
                    amount: AMOUNTS[(n + 4) % AMOUNTS.len()] / 2,
                    currency: "RUB",
                },
            });
            let won_at = later(*day, 2, 14, 0);
            if won_at < end {
                steps.push(Step {
                    at: won_at,
                    deal: n,
                    what: Action::Move("C1:WON"),
                });
            } else {
                steps.push(Step {
                    at: end - Duration::minutes(30),
                    deal: n,
                    what: Action::Plan(MANAGERS[n % MANAGERS.len()]),
                });
            }
            deal += 1;
        }
    }
    steps.sort_by_key(|s| s.at);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a date")
    }

    #[test]
    fn the_week_is_the_third_monday_of_the_coming_mondays_month_or_of_the_next() {
        let calendar = Calendar::default();
        // Thursday 3 December 2026: the coming Monday is the 7th; December's third is the 21st.
        assert_eq!(
            story_monday(&calendar, date(2026, 12, 3)),
            date(2026, 12, 21)
        );
        // Tuesday 22 December: the 21st is past; January's third Monday is the 18th.
        assert_eq!(
            story_monday(&calendar, date(2026, 12, 22)),
            date(2027, 1, 18)
        );
        // Saturday 30 January 2027: the coming Monday is 1 February; its month's third is the 15th.
        assert_eq!(
            story_monday(&calendar, date(2027, 1, 30)),
            date(2027, 2, 15)
        );
    }

    #[test]
    fn the_month_is_in_time_order_before_the_week_and_every_deal_is_created_first() {
        let calendar = Calendar::default();
        let monday = date(2026, 12, 21);
        let end = calendar.at_local(monday.and_time(calendar.day_start()));
        let steps = plan_month(&calendar, monday, end);
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(steps.iter().all(|s| s.at < end));
        let mut created = std::collections::BTreeSet::new();
        for step in &steps {
            if matches!(step.what, Action::Create { .. }) {
                created.insert(step.deal);
            } else {
                assert!(
                    created.contains(&step.deal),
                    "deal {} acted on first",
                    step.deal
                );
            }
        }
        // 14 working days from 1 to 18 December: 3 new deals a day and 7 repeat ones.
        assert_eq!(created.len(), 14 * 3 + 7);
    }
}

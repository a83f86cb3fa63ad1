//! The `plan` report: each plan of the period against the deals won in it.
//!
//! A plan is "of the period" when its own period overlaps the one asked for (the current
//! month shows the month's plans and the quarter's and year's in progress), and each plan is
//! measured over its own period: a quarter's done is the quarter's, not the month's. With
//! `--pipeline N` only the plans of that pipeline are shown (a plan of every pipeline measures
//! something else). The forecast is the pace so far carried to the period's end: done ÷ working
//! days elapsed × working days in the period, `null` before the first working hour.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{PerCurrency, ReportBody, ReportDeal, Scope, add_to, percent};
use crate::rules::{Amount, Measure, Plan, PlanTarget};

/// One person of a plan (or the whole plan, for a single `target`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanRow {
    pub plan: String,
    /// Absent for a whole-plan target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<u64>,
    pub pipeline: Option<u64>,
    pub measure: Measure,
    pub currency: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Target, done and what follows from them, in the plan's measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    pub target: Amount,
    pub done: Amount,
    /// Done in % of the target, one decimal; `null` for a target of 0.
    pub percent: Option<f64>,
    /// What is left to the target; 0 once it is reached.
    pub remaining: Amount,
    /// `null` while no working day has begun.
    pub forecast: Option<Amount>,
}

/// A plan as a whole: its people's rows summed, and the won deals it could not sum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanTotal {
    pub plan: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub currency: Option<String>,
    /// The won deals of the plan's scope in another currency: never converted, never summed.
    pub other_currencies: Vec<OtherCurrency>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtherCurrency {
    pub currency: String,
    pub count: u64,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanBody {
    pub rows: Vec<PlanRow>,
    pub totals: Vec<PlanTotal>,
}

impl ReportBody for PlanBody {
    const NAME: &'static str = "plan";
}

/// The working days of one plan's period: all of them, and those begun at `now`.
struct Pace {
    total: u32,
    elapsed: u32,
}

impl Figures {
    fn new(target: Amount, done: Amount, pace: &Pace) -> Figures {
        // done × total ÷ elapsed in whole hundredths, rounded half up: exact, unlike floats.
        let forecast = (pace.elapsed > 0).then(|| {
            let scaled = i128::from(done.hundredths()) * i128::from(pace.total) * 2
                + i128::from(pace.elapsed);
            let hundredths = scaled / (2 * i128::from(pace.elapsed));
            Amount::from_hundredths(i64::try_from(hundredths).unwrap_or(i64::MAX))
        });
        Figures {
            target,
            done,
            percent: percent(done.hundredths(), target.hundredths()),
            remaining: target.saturating_sub(done).max(Amount::ZERO),
            forecast,
        }
    }
}

/// The plans of `scope`'s period, each over the deals won in its own period.
pub fn plan(plans: &[Plan], deals: &[ReportDeal], scope: &Scope<'_>) -> PlanBody {
    let mut body = PlanBody {
        rows: Vec::new(),
        totals: Vec::new(),
    };
    let shown = plans.iter().filter(|p| {
        p.period().overlaps(&scope.period) && scope.pipeline.is_none_or(|n| p.pipeline() == Some(n))
    });
    for plan in shown {
        let (rows, total) = one_plan(plan, deals, scope);
        body.rows.extend(rows);
        body.totals.push(total);
    }
    body
}

fn one_plan(plan: &Plan, deals: &[ReportDeal], scope: &Scope<'_>) -> (Vec<PlanRow>, PlanTotal) {
    let period = plan.period();
    let pace = Pace {
        total: period.working_days(scope.calendar),
        elapsed: period.working_days_elapsed(scope.calendar, scope.now),
    };
    let people: Option<BTreeMap<u64, Amount>> = match plan.target() {
        PlanTarget::Whole(_) => None,
        PlanTarget::People(people) => Some(people.iter().copied().collect()),
    };
    let mut done: BTreeMap<Option<u64>, Amount> = BTreeMap::new();
    let mut others = PerCurrency::new();
    let won = deals.iter().filter(|d| {
        plan.pipeline().is_none_or(|p| p == d.pipeline)
            && d.won_at()
                .is_some_and(|at| period.contains(scope.calendar, at))
    });
    for deal in won {
        let person = match &people {
            None => None,
            Some(people) if people.contains_key(&deal.assigned) => Some(deal.assigned),
            // Not one of the plan's people: outside its scope.
            Some(_) => continue,
        };
        let figure = match (plan.measure(), plan.currency()) {
            (Measure::Count, _) => Amount::whole(1),
            (Measure::Amount, Some(c)) if c == deal.currency => deal.amount,
            (Measure::Amount, _) => {
                add_to(&mut others, deal);
                continue;
            }
        };
        *done.entry(person).or_default() += figure;
    }
    let row = |user_id, target, done: Amount| PlanRow {
        plan: plan.name().to_string(),
        user_id,
        pipeline: plan.pipeline(),
        measure: plan.measure(),
        currency: plan.currency().map(str::to_string),
        figures: Figures::new(target, done, &pace),
    };
    let rows: Vec<PlanRow> = match plan.target() {
        PlanTarget::Whole(target) => vec![row(None, *target, done_of(&done, None))],
        PlanTarget::People(people) => people
            .iter()
            .map(|(user, target)| row(Some(*user), *target, done_of(&done, Some(*user))))
            .collect(),
    };
    let total = PlanTotal {
        plan: plan.name().to_string(),
        figures: Figures::new(plan.total_target(), done.values().copied().sum(), &pace),
        currency: plan.currency().map(str::to_string),
        other_currencies: others
            .into_iter()
            .map(|(currency, (count, amount))| OtherCurrency {
                currency,
                count,
                amount,
            })
            .collect(),
    };
    (rows, total)
}

fn done_of(done: &BTreeMap<Option<u64>, Amount>, person: Option<u64>) -> Amount {
    done.get(&person).copied().unwrap_or_default()
}

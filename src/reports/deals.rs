//! The `deals` report, the accountant's summary: the deals won in the period and every open
//! deal, a row each, with totals per pipeline and currency (never summed across currencies).
//! The won come first, by the moment they were won; then the open, by id.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::{ReportBody, ReportDeal, Scope};
use crate::rules::{Amount, StageSemantic};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DealRow {
    pub deal_id: u64,
    pub title: String,
    pub pipeline: u64,
    pub stage: String,
    pub user_id: u64,
    pub amount: Amount,
    pub currency: String,
    /// Calendar zone; `null` for an open deal.
    pub won_at: Option<DateTime<FixedOffset>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DealTotal {
    pub pipeline: u64,
    pub currency: String,
    pub won_count: u64,
    pub won_amount: Amount,
    pub open_count: u64,
    pub open_amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DealsBody {
    pub rows: Vec<DealRow>,
    pub totals: Vec<DealTotal>,
}

impl ReportBody for DealsBody {
    const NAME: &'static str = "deals";
}

pub fn deals(deals: &[ReportDeal], scope: &Scope<'_>) -> DealsBody {
    let mut won: Vec<(DateTime<FixedOffset>, &ReportDeal)> = Vec::new();
    let mut open: Vec<&ReportDeal> = Vec::new();
    for deal in deals.iter().filter(|d| scope.wants(d.pipeline)) {
        match deal.won_at() {
            Some(at) if scope.within(at) => won.push((at, deal)),
            _ if deal.semantic == StageSemantic::Process => open.push(deal),
            _ => {}
        }
    }
    won.sort_by_key(|(at, d)| (*at, d.id));
    open.sort_by_key(|d| d.id);
    let mut totals: BTreeMap<(u64, String), DealTotal> = BTreeMap::new();
    let mut rows = Vec::new();
    for (at, deal) in won {
        let total = total_of(&mut totals, deal);
        total.won_count += 1;
        total.won_amount += deal.amount;
        rows.push(row(deal, Some(scope.local(at))));
    }
    for deal in open {
        let total = total_of(&mut totals, deal);
        total.open_count += 1;
        total.open_amount += deal.amount;
        rows.push(row(deal, None));
    }
    DealsBody {
        rows,
        totals: totals.into_values().collect(),
    }
}

fn total_of<'t>(
    totals: &'t mut BTreeMap<(u64, String), DealTotal>,
    d: &ReportDeal,
) -> &'t mut DealTotal {
    totals
        .entry((d.pipeline, d.currency.clone()))
        .or_insert_with(|| DealTotal {
            pipeline: d.pipeline,
            currency: d.currency.clone(),
            ..DealTotal::default()
        })
}

fn row(deal: &ReportDeal, won_at: Option<DateTime<FixedOffset>>) -> DealRow {
    DealRow {
        deal_id: deal.id,
        title: deal.title.clone(),
        pipeline: deal.pipeline,
        stage: deal.stage.clone(),
        user_id: deal.assigned,
        amount: deal.amount,
        currency: deal.currency.clone(),
        won_at,
    }
}

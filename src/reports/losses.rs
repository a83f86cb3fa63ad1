//! The `losses` report: the deals lost in the period, by loss reason, with count and amount per
//! currency; then the same by pipeline and by person, as extra rows with `pipeline` or
//! `user_id` set.
//!
//! The reason is the label in the field of the first `[[loss_reason]]` rule that covers the
//! deal's pipeline (file order, as the rules fire); a deal no such rule covers, or whose field
//! is empty, counts under `null`, "no reason". A list field of several values reads as its
//! labels joined by ", ".

use std::collections::BTreeMap;

use serde::Serialize;

use super::{PerCurrency, ReportBody, ReportDeal, Scope, add_to};
use crate::rules::{Amount, RuleKind, RuleSet};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossRow {
    /// The label; `null`: no reason.
    pub reason: Option<String>,
    pub count: u64,
    pub amount: Amount,
    pub currency: String,
    /// Set on the rows by pipeline.
    pub pipeline: Option<u64>,
    /// Set on the rows by person.
    pub user_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossesBody {
    pub rows: Vec<LossRow>,
}

impl ReportBody for LossesBody {
    const NAME: &'static str = "losses";
}

/// Which rows a lost deal adds to: every deal to the first group, then by pipeline, by person.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    All,
    Pipeline(u64),
    Person(u64),
}

/// The deals lost in the period (their last entry into a failure stage, still lost now).
pub fn losses(rules: &RuleSet, deals: &[ReportDeal], scope: &Scope<'_>) -> LossesBody {
    let fields: Vec<(&crate::rules::Rule, &str)> = rules
        .rules()
        .iter()
        .filter(|r| r.kind() == RuleKind::LossReason)
        .filter_map(|r| Some((r, r.loss_field()?)))
        .collect();
    let mut groups: BTreeMap<(Group, Option<String>), PerCurrency> = BTreeMap::new();
    let lost = deals
        .iter()
        .filter(|d| scope.wants(d.pipeline) && d.lost_at().is_some_and(|at| scope.within(at)));
    for deal in lost {
        let reason = fields
            .iter()
            .find(|(rule, _)| rule.in_pipeline(deal.pipeline))
            .and_then(|(_, field)| deal.field(field))
            .map(label);
        for group in [
            Group::All,
            Group::Pipeline(deal.pipeline),
            Group::Person(deal.assigned),
        ] {
            add_to(groups.entry((group, reason.clone())).or_default(), deal);
        }
    }
    let mut rows: Vec<(Group, LossRow)> = Vec::new();
    for ((group, reason), sums) in groups {
        for (currency, (count, amount)) in sums {
            let (pipeline, user_id) = match group {
                Group::All => (None, None),
                Group::Pipeline(p) => (Some(p), None),
                Group::Person(u) => (None, Some(u)),
            };
            let row = LossRow {
                reason: reason.clone(),
                count,
                amount,
                currency,
                pipeline,
                user_id,
            };
            rows.push((group, row));
        }
    }
    // Within each group the most frequent reason first; ties by reason, then currency.
    rows.sort_by(|(ga, a), (gb, b)| {
        (ga, std::cmp::Reverse(a.count), &a.reason, &a.currency).cmp(&(
            gb,
            std::cmp::Reverse(b.count),
            &b.reason,
            &b.currency,
        ))
    });
    LossesBody {
        rows: rows.into_iter().map(|(_, row)| row).collect(),
    }
}

/// A reason field's value as its label.
fn label(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Array(items) => items.iter().map(label).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

//! The `nps` report: per `[[nps]]` rule with a `score_field`, the scores of the deals won in the
//! period, by pipeline and person.
//!
//! A score is an integer 0-10, written as a number or as its digits (`"9"`; `"9.00"`, as
//! Bitrix24 prints a number field of type `double`); anything else is listed in `invalid` and counted nowhere. A deal without a
//! score has not answered and is not a response. NPS = % promoters − % detractors, computed
//! exactly and then rounded to one decimal.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ReportBody, ReportDeal, Scope, one_decimal};
use crate::rules::{RuleKind, RuleSet};

/// The counts of one group of responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub responses: u64,
    /// 9-10.
    pub promoters: u64,
    /// 7-8.
    pub passives: u64,
    /// 0-6.
    pub detractors: u64,
    /// `null` without a response.
    pub nps: Option<f64>,
}

impl Scores {
    fn add(&mut self, score: u8) {
        self.responses += 1;
        match score {
            9.. => self.promoters += 1,
            7..=8 => self.passives += 1,
            _ => self.detractors += 1,
        }
        let net = self.promoters as f64 - self.detractors as f64;
        self.nps = Some(one_decimal(net * 100.0 / self.responses as f64));
    }
}

/// A rule's responses of one pipeline and person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NpsRow {
    pub rule: String,
    pub pipeline: u64,
    pub user_id: u64,
    #[serde(flatten)]
    pub scores: Scores,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NpsTotal {
    pub rule: String,
    #[serde(flatten)]
    pub scores: Scores,
}

/// A deal whose score is no integer 0-10, with the value as it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvalidScore {
    pub deal_id: u64,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NpsBody {
    pub rows: Vec<NpsRow>,
    pub totals: Vec<NpsTotal>,
    pub invalid: Vec<InvalidScore>,
}

impl ReportBody for NpsBody {
    const NAME: &'static str = "nps";
}

/// A score as Bitrix24 may hold it (a number, its digits, or, from a number field, a decimal
/// with a zero fraction: `"9.00"`, as the portal prints a `double`); `None` for anything that
/// is not an integer 0-10.
fn score(value: &serde_json::Value) -> Option<u8> {
    let number = match value {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        }),
        serde_json::Value::String(s) => {
            let s = s.trim();
            let (whole, fraction) = s.split_once(['.', ',']).unwrap_or((s, ""));
            let whole_digits = !whole.is_empty() && whole.bytes().all(|b| b.is_ascii_digit());
            let zero_fraction = fraction.bytes().all(|b| b == b'0');
            (whole_digits && zero_fraction)
                .then(|| whole.parse::<u64>().ok())
                .flatten()
        }
        _ => None,
    };
    number
        .filter(|n| *n <= 10)
        .and_then(|n| u8::try_from(n).ok())
}

/// Every `[[nps]]` rule with a `score_field`, over the deals won in the period.
pub fn nps(rules: &RuleSet, deals: &[ReportDeal], scope: &Scope<'_>) -> NpsBody {
    let mut body = NpsBody {
        rows: Vec::new(),
        totals: Vec::new(),
        invalid: Vec::new(),
    };
    let with_scores = rules
        .rules()
        .iter()
        .filter(|r| r.kind() == RuleKind::Nps)
        .filter_map(|r| Some((r, r.score_field()?)));
    for (rule, field) in with_scores {
        let mut groups: BTreeMap<(u64, u64), Scores> = BTreeMap::new();
        let mut total = Scores::default();
        let answered = deals.iter().filter(|d| {
            scope.wants(d.pipeline)
                && rule.in_pipeline(d.pipeline)
                && d.won_at().is_some_and(|at| scope.within(at))
        });
        for deal in answered {
            let Some(value) = deal.field(field) else {
                continue;
            };
            match score(value) {
                Some(s) => {
                    groups
                        .entry((deal.pipeline, deal.assigned))
                        .or_default()
                        .add(s);
                    total.add(s);
                }
                None if body.invalid.iter().any(|i| i.deal_id == deal.id) => {}
                None => body.invalid.push(InvalidScore {
                    deal_id: deal.id,
                    value: value.clone(),
                }),
            }
        }
        body.rows.extend(
            groups
                .into_iter()
                .map(|((pipeline, user_id), scores)| NpsRow {
                    rule: rule.name().to_string(),
                    pipeline,
                    user_id,
                    scores,
                }),
        );
        body.totals.push(NpsTotal {
            rule: rule.name().to_string(),
            scores: total,
        });
    }
    body
}

//! The `stages` report: per pipeline and stage, the entries of the period, how long deals spent
//! in the stage and how many went on.
//!
//! The time in a stage runs from an entry to the deal's next entry; a deal still in the stage
//! counts up to now. Median and 90th percentile are over the period's entries: the median of an
//! even count is the mean of the middle two (whole seconds, rounded down), the 90th percentile
//! is by nearest rank (the ⌈0.9·n⌉-th smallest), so both are times some deal really spent.
//! Conversion is the share of the period's entries whose next entry is a later stage of the
//! pipeline's order (in progress or won: a loss is no conversion); a won or lost stage has none.
//! Stages the history names but the stage list does not (deleted since) come after the listed
//! ones, named by their id, without conversion.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ReportBody, ReportDeal, Scope, percent};
use crate::rules::{StageSemantic, stage_pipeline};

/// A stage of a pipeline, as `crm.status.list` gives it; a pipeline's stages come in their
/// `SORT` order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageInfo {
    pub pipeline: u64,
    /// `STATUS_ID`: `C1:NEW`.
    pub id: String,
    pub name: String,
    pub semantic: StageSemantic,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageRow {
    pub pipeline: u64,
    pub stage: String,
    pub stage_name: String,
    pub entries: u64,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    /// In %, one decimal.
    pub conversion: Option<f64>,
    /// Deals now over an `[[sla]]` of the stage, as the caller counted them.
    pub over_sla: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StagesBody {
    pub rows: Vec<StageRow>,
}

impl ReportBody for StagesBody {
    const NAME: &'static str = "stages";
}

/// What the period's entries into one stage came to.
#[derive(Default)]
struct Seen {
    seconds: Vec<i64>,
    converted: i64,
}

/// Every stage of `stages` (and any other the history names), over the deals of the scope;
/// `over_sla` by stage id.
pub fn stages(
    stages: &[StageInfo],
    deals: &[ReportDeal],
    over_sla: &BTreeMap<String, u64>,
    scope: &Scope<'_>,
) -> StagesBody {
    // Each stage's pipeline and place in the list: stages of one pipeline compare by place.
    let rank: BTreeMap<&str, (u64, usize)> = stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), (s.pipeline, i)))
        .collect();
    let mut seen: BTreeMap<(u64, String), Seen> = BTreeMap::new();
    for deal in deals.iter().filter(|d| scope.wants(d.pipeline)) {
        let history = deal.ordered_history();
        for (i, entry) in history.iter().enumerate() {
            if !scope.within(entry.at) {
                continue;
            }
            let next = history.get(i + 1);
            let until = next.map_or(scope.now, |n| n.at);
            // A deal moved between pipelines has entries of both: each counts in its own.
            let pipeline = rank
                .get(entry.stage.as_str())
                .map(|(p, _)| *p)
                .or_else(|| stage_pipeline(&entry.stage))
                .unwrap_or(deal.pipeline);
            let at = seen.entry((pipeline, entry.stage.clone())).or_default();
            at.seconds.push((until - entry.at).num_seconds().max(0));
            let on = next.is_some_and(|n| {
                n.semantic != StageSemantic::Failure
                    && matches!(
                        (rank.get(entry.stage.as_str()), rank.get(n.stage.as_str())),
                        (Some(from), Some(to)) if to.0 == from.0 && to.1 > from.1
                    )
            });
            if on {
                at.converted += 1;
            }
        }
    }
    let mut rows = Vec::new();
    for info in stages.iter().filter(|s| scope.wants(s.pipeline)) {
        let found = seen.remove(&(info.pipeline, info.id.clone()));
        let ends = info.semantic != StageSemantic::Process;
        rows.push(row(
            info.pipeline,
            &info.id,
            &info.name,
            found,
            ends,
            over_sla,
        ));
    }
    for ((pipeline, id), found) in seen.into_iter().filter(|((p, _), _)| scope.wants(*p)) {
        rows.push(row(pipeline, &id, &id, Some(found), true, over_sla));
    }
    StagesBody { rows }
}

fn row(
    pipeline: u64,
    id: &str,
    name: &str,
    seen: Option<Seen>,
    no_conversion: bool,
    over_sla: &BTreeMap<String, u64>,
) -> StageRow {
    let mut seen = seen.unwrap_or_default();
    seen.seconds.sort_unstable();
    let n = seen.seconds.len();
    let entries = n as i64;
    StageRow {
        pipeline,
        stage: id.to_string(),
        stage_name: name.to_string(),
        entries: n as u64,
        median_seconds: median(&seen.seconds),
        p90_seconds: (n > 0).then(|| seen.seconds[(9 * n).div_ceil(10) - 1]),
        conversion: if no_conversion {
            None
        } else {
            percent(seen.converted, entries)
        },
        over_sla: over_sla.get(id).copied().unwrap_or(0),
    }
}

/// The median of sorted values: the middle one, or the mean of the middle two rounded down.
fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]).div_euclid(2)),
    }
}

//! Reports: pure computations over a copy of the deals, their stage history and the tasks the
//! service created (`control.md`, "Reports").
//!
//! Nothing here reads the portal or the store: whoever holds the copy (the store's report copy,
//! a test) passes [`ReportDeal`]s and [`ReportTask`]s in, with a [`Scope`] (the period, the
//! pipeline asked for, the calendar and "now"), and gets back the rows of one report. Each row
//! type serializes with exactly the spec's JSON keys; [`Report`] wraps a body in the envelope
//! every report shares. Text tables, CSV and the dashboard are drawn from the same rows.
//!
//! Decisions the spec leaves open, made once here so every report agrees:
//! - A deal is **won** at its last entry into a success stage, and only while it is still in a
//!   success stage: a deal won twice counts once, in the period of its second win; a deal won
//!   and then reopened counts nowhere. **Lost** is the same with failure stages.
//! - Percentages are rounded to one decimal in the rows themselves, so the text, the CSV and the
//!   JSON show the same figure; `null` where the base is zero.
//! - Money is [`Amount`] (exact hundredths) and is never summed across currencies.

mod deals;
mod losses;
mod nps;
mod plan;
pub mod shown;
mod stages;
mod tasks;

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
pub use crate::rules::{Amount, ReportPeriod, StageSemantic};

pub use deals::{DealRow, DealTotal, DealsBody, deals};
pub use losses::{LossRow, LossesBody, losses};
pub use nps::{InvalidScore, NpsBody, NpsRow, NpsTotal, nps};
pub use plan::{OtherCurrency, PlanBody, PlanRow, PlanTotal, plan};
pub use shown::shown_table;
pub use stages::{StageInfo, StageRow, StagesBody, stages};
pub use tasks::{ReportTask, TaskRow, TasksBody, tasks};

/// What reports need of a deal: its place now, its money, its report fields and its history.
/// Serializable, so the store's report copy can keep it as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportDeal {
    pub id: u64,
    pub title: String,
    /// `CATEGORY_ID`.
    pub pipeline: u64,
    /// `STAGE_ID` now.
    pub stage: String,
    /// The kind of `stage`: whether the deal is won, lost or in progress now.
    pub semantic: StageSemantic,
    /// `ASSIGNED_BY_ID`.
    pub assigned: u64,
    /// `OPPORTUNITY`.
    pub amount: Amount,
    /// `CURRENCY_ID`.
    pub currency: String,
    /// The report fields the rules name (an `[[nps]]`'s `score_field`, a `[[loss_reason]]`'s
    /// `field`) as people read them: a list field's label, not its option id. Absent or `null`:
    /// empty.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Its stage-history entries, in any order.
    pub history: Vec<HistoryEntry>,
}

/// One stage-history entry (`crm.stagehistory.list`): the deal entered `stage` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The entry's `ID`: orders two entries of the same second.
    pub id: u64,
    pub stage: String,
    pub semantic: StageSemantic,
    /// `CREATED_TIME`.
    pub at: DateTime<FixedOffset>,
}

impl ReportDeal {
    /// The history in the order it happened.
    pub(crate) fn ordered_history(&self) -> Vec<&HistoryEntry> {
        let mut entries: Vec<&HistoryEntry> = self.history.iter().collect();
        entries.sort_by_key(|e| (e.at, e.id));
        entries
    }

    /// The last entry into a stage of kind `semantic`, while the deal is still in such a stage.
    fn last_entry_while(&self, semantic: StageSemantic) -> Option<DateTime<FixedOffset>> {
        if self.semantic != semantic {
            return None;
        }
        self.ordered_history()
            .into_iter()
            .filter(|e| e.semantic == semantic)
            .map(|e| e.at)
            .next_back()
    }

    /// When the deal was won: its last entry into a success stage, if it is won now.
    pub fn won_at(&self) -> Option<DateTime<FixedOffset>> {
        self.last_entry_while(StageSemantic::Success)
    }

    /// When the deal was lost: its last entry into a failure stage, if it is lost now.
    pub fn lost_at(&self) -> Option<DateTime<FixedOffset>> {
        self.last_entry_while(StageSemantic::Failure)
    }

    /// A report field, `None` when it is absent, `null` or blank.
    pub(crate) fn field(&self, code: &str) -> Option<&serde_json::Value> {
        self.fields.get(code).filter(|v| match v {
            serde_json::Value::Null => false,
            serde_json::Value::String(s) => !s.trim().is_empty(),
            serde_json::Value::Array(items) => !items.is_empty(),
            _ => true,
        })
    }
}

/// What a report is asked for, and what "now" is.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub calendar: &'a Calendar,
    pub period: ReportPeriod,
    /// `--pipeline N`: only deals (and plans, tasks, stages) of that pipeline.
    pub pipeline: Option<u64>,
    pub now: DateTime<FixedOffset>,
}

impl Scope<'_> {
    /// Whether a deal of `pipeline` is asked for.
    pub(crate) fn wants(&self, pipeline: u64) -> bool {
        self.pipeline.is_none_or(|p| p == pipeline)
    }

    /// Whether the moment falls on a day of the period (calendar zone).
    pub(crate) fn within(&self, at: DateTime<FixedOffset>) -> bool {
        self.period.contains(self.calendar, at)
    }

    /// A moment as the reports print it: in the calendar's zone, with its offset.
    pub(crate) fn local(&self, at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        self.calendar.fixed(at)
    }
}

/// The period of a report as its JSON prints it: ISO dates of the calendar zone, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dates {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// A report's rows and whatever goes beside them (`totals`, `invalid`), and its name.
pub trait ReportBody: Serialize {
    /// The `"report"` of the envelope: `plan`, `nps`, ...
    const NAME: &'static str;
}

/// The envelope every report shares: `report`, `period`, `generated_at`, `data_as_of`, then the
/// body's keys (`rows`, and `totals`/`invalid` where the report has them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report<B> {
    pub report: &'static str,
    pub period: Dates,
    pub generated_at: DateTime<FixedOffset>,
    /// How fresh the copy the rows come from is: its last refresh.
    pub data_as_of: DateTime<FixedOffset>,
    #[serde(flatten)]
    pub body: B,
}

impl<B: ReportBody> Report<B> {
    /// Wraps `body`, computed for `scope` from a copy refreshed at `data_as_of`.
    pub fn new(scope: &Scope<'_>, data_as_of: DateTime<FixedOffset>, body: B) -> Report<B> {
        Report {
            report: B::NAME,
            period: Dates {
                from: scope.period.from(),
                to: scope.period.to(),
            },
            generated_at: scope.local(scope.now),
            data_as_of: scope.local(data_as_of),
            body,
        }
    }
}

/// `part` of `whole` in percent, one decimal; `None` when `whole` is zero.
pub(crate) fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole != 0).then(|| one_decimal(part as f64 * 100.0 / whole as f64))
}

/// Rounded to one decimal, half away from zero: how every percentage is shown.
pub(crate) fn one_decimal(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A percentage as the text and CSV forms print it: one decimal, `"36.7%"`; `"-"` for none.
pub fn show_percent(percent: Option<f64>) -> String {
    percent.map_or_else(|| "-".to_string(), |p| format!("{p:.1}%"))
}

/// Money summed per currency, in currency order.
pub(crate) type PerCurrency = BTreeMap<String, (u64, Amount)>;

/// Adds one deal to its currency's count and sum.
pub(crate) fn add_to(sums: &mut PerCurrency, deal: &ReportDeal) {
    let (count, amount) = sums.entry(deal.currency.clone()).or_default();
    *count += 1;
    *amount += deal.amount;
}

#[cfg(test)]
mod tests;

/// A report's rows (objects of its JSON form) as a table: the columns (every key, in the order
/// met) and each row's cells as text (`null` empty), for the text form, CSV and the dashboard.
pub fn table_of(rows: &[serde_json::Value]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut keys: Vec<String> = Vec::new();
    for row in rows {
        for key in row.as_object().into_iter().flat_map(|o| o.keys()) {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
    }
    let cells = rows
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| cell(r.get(k).unwrap_or(&serde_json::Value::Null)))
                .collect()
        })
        .collect();
    (keys, cells)
}

/// A JSON value as a table cell.
pub fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A CSV field, quoted when it holds the delimiter, a quote or a line break.
fn csv_field(text: &str, delimiter: char) -> String {
    if text.contains([delimiter, '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The rows as CSV for Excel: UTF-8 with a byte-order mark, a header row of the JSON keys.
pub fn csv_of(json: &serde_json::Value, delimiter: char) -> String {
    let rows = json
        .get("rows")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (keys, cells) = table_of(&rows);
    let join = |values: Vec<String>| {
        values
            .iter()
            .map(|v| csv_field(v, delimiter))
            .collect::<Vec<_>>()
            .join(&delimiter.to_string())
    };
    let mut out = String::from("\u{feff}");
    out.push_str(&join(keys.clone()));
    out.push_str("\r\n");
    for row in cells {
        out.push_str(&join(row));
        out.push_str("\r\n");
    }
    out
}

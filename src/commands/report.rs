//! `b24-robot report NAME [--period P] [--pipeline N] [--format text|json|csv]
//! [--csv-delimiter C] [--refresh]`: one report (`control.md`, "Reports") on the report copy,
//! brought up to date first (`--refresh`: read anew): through the running service's admin API
//! when one runs (`GET /admin/reports/{name}`), or here on the store otherwise. Text is aligned
//! for a terminal, JSON is the stable form, CSV opens in Excel (UTF-8 with a BOM).

use serde_json::Value;
use std::path::PathBuf;

use super::admin::{AdminError, Source, api, source, store_worker};
use super::{CommandError, CommandResult, load_rules, load_settings};
use crate::commands::output::out;
use crate::reports::{cell, csv_of as csv, shown_table};
use crate::worker::report_copy::{ReportError, report_json};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// What `report` is asked for.
#[derive(Debug, Clone)]
pub struct Asked {
    pub name: String,
    pub period: Option<String>,
    pub pipeline: Option<u64>,
    pub format: Format,
    pub delimiter: char,
    pub refresh: bool,
}

pub async fn run(config: Option<PathBuf>, asked: Asked) -> CommandResult {
    let settings = load_settings(config)?;
    let json = match source(&settings).await? {
        Source::Api(client, base) => {
            let mut query = vec![format!("refresh={}", asked.refresh)];
            if let Some(p) = &asked.period {
                query.push(format!("period={p}"));
            }
            if let Some(n) = asked.pipeline {
                query.push(format!("pipeline={n}"));
            }
            api::<Value>(
                &settings,
                &client,
                reqwest::Method::GET,
                format!("{base}/admin/reports/{}?{}", asked.name, query.join("&")),
            )
            .await?
        }
        Source::Store(store) => {
            let rules = load_rules(&settings)?;
            let worker = store_worker(&settings, store, &rules)?;
            let json = report_json(
                &worker,
                &rules,
                &asked.name,
                (asked.period.as_deref(), asked.pipeline),
                asked.refresh,
            )
            .await
            .map_err(|e| match e {
                ReportError::Unknown(_) | ReportError::Period(_) => {
                    CommandError::Usage(e.to_string())
                }
                other => CommandError::Failed(other.to_string()),
            })?;
            worker.store.flush().map_err(AdminError::from)?;
            json
        }
    };
    let printed = match asked.format {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        Format::Text => text(&json),
        Format::Csv => csv(&json, asked.delimiter),
    };
    out!("{printed}");
    Ok(())
}

/// An aligned table of `rows` (objects) as people read them ([`shown_table`]), a header line
/// first: a column of numbers (money, counts, percentages, times) right-aligned, text
/// left-aligned, two spaces between columns.
fn table(rows: &[Value]) -> String {
    // The terminal's tables are in English, as the command's other output.
    let (keys, cells) = shown_table(rows, crate::rules::Language::En);
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([k.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..keys.len())
        .map(|i| {
            cells.iter().any(|r| !r[i].is_empty())
                && cells.iter().all(|r| r[i].is_empty() || is_number(&r[i]))
        })
        .collect();
    let line = |values: &[String]| {
        values
            .iter()
            .zip(widths.iter().zip(&numeric))
            .map(|(v, (w, right))| {
                if *right {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&keys);
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// A cell that shows a number: `1 500 000 RUB`, `25.0%`, `-3`, `2d 4h`; not a date or an id
/// with letters.
fn is_number(cell: &str) -> bool {
    let first = cell.trim_start_matches('-');
    first.starts_with(|c: char| c.is_ascii_digit())
        && !cell.contains(['T', ':'])
        && !(cell.len() == 10 && cell.as_bytes().get(4) == Some(&b'-'))
}

/// The report for a terminal: what, for when, how fresh; its rows, then its totals.
pub(crate) fn text(json: &Value) -> String {
    let mut out = format!(
        "report {} from {} to {} (data as of {})\n\n",
        cell(&json["report"]),
        cell(&json["period"]["from"]),
        cell(&json["period"]["to"]),
        cell(&json["data_as_of"])
    );
    if let Some(error) = json["refresh_error"].as_str() {
        out.push_str(&format!(
            "(not brought up to date: the portal did not answer: {error})\n\n"
        ));
    }
    for part in ["rows", "totals", "invalid"] {
        let Some(rows) = json.get(part).and_then(Value::as_array) else {
            continue;
        };
        if part != "rows" {
            out.push_str(&format!("\n{part}:\n"));
        }
        if rows.is_empty() {
            out.push_str("(none)\n");
        } else {
            out.push_str(&table(rows));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn csv_has_a_bom_a_header_of_the_keys_and_quotes_what_needs_it() {
        let report = json!({ "rows": [
            { "deal_id": 1, "title": "Acme; Ltd", "amount": 1500.5, "won_at": null },
            { "deal_id": 2, "title": "Say \"hi\"", "amount": 10, "won_at": "2026-12-01" },
        ]});
        assert_eq!(
            csv(&report, ';'),
            "\u{feff}deal_id;title;amount;won_at\r\n1;\"Acme; Ltd\";1500.5;\r\n2;\"Say \"\"hi\"\"\";10;2026-12-01\r\n"
        );
        assert!(csv(&report, ',').contains("1,Acme; Ltd,1500.5,"));
    }

    #[test]
    fn text_aligns_the_columns_and_says_how_fresh_the_data_is() {
        let report = json!({
            "report": "deals", "period": { "from": "2026-12-01", "to": "2026-12-31" },
            "data_as_of": "2026-12-03T10:00:00+03:00",
            "rows": [{ "deal_id": 1, "title": "A" }, { "deal_id": 22, "title": "Longer" }],
            "totals": [],
        });
        let printed = text(&report);
        assert!(printed.starts_with(
            "report deals from 2026-12-01 to 2026-12-31 (data as of 2026-12-03T10:00:00+03:00)"
        ));
        assert!(
            printed.contains("deal_id  title\n      1  A\n     22  Longer\n"),
            "{printed}"
        );
        assert!(printed.contains("totals:\n(none)"), "{printed}");
    }
}

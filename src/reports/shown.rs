//! A report's rows as people read them, for the terminal (`report --format text`) and the
//! dashboard's tables: money with its currency and grouped digits, percentages with one decimal
//! and `%`, times in stages in days, hours and minutes, the deals in other currencies spelt
//! out, "no reason" named. The JSON and the CSV keep the raw values (Excel sums numbers, not
//! "1 500 000 RUB").

use serde_json::Value;

use super::table_of;
use crate::rules::Language;

/// Keys whose value is money, in the row's `currency`.
const MONEY: [&str; 7] = [
    "target",
    "done",
    "remaining",
    "forecast",
    "amount",
    "won_amount",
    "open_amount",
];

/// Keys whose value is a percentage.
const PERCENT: [&str; 2] = ["percent", "conversion"];

/// The rows as a table for people: the columns (the keys, a `_seconds` key without its unit,
/// since its cells say it) and each row's cells; the few words in them in `language`.
pub fn shown_table(rows: &[Value], language: Language) -> (Vec<String>, Vec<Vec<String>>) {
    let (keys, _) = table_of(rows);
    let cells = rows
        .iter()
        .map(|row| {
            keys.iter()
                .map(|key| shown(key, row.get(key).unwrap_or(&Value::Null), row, language))
                .collect()
        })
        .collect();
    let columns = keys
        .iter()
        .map(|k| k.strip_suffix("_seconds").unwrap_or(k).to_string())
        .collect();
    (columns, cells)
}

/// One value of `row` under `key`, as people read it.
fn shown(key: &str, value: &Value, row: &Value, language: Language) -> String {
    if key == "reason" && value.is_null() && row.get("count").is_some() {
        return match language {
            Language::En => "(no reason)",
            Language::Ru => "(без причины)",
        }
        .into();
    }
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            let Some(x) = n.as_f64() else {
                return n.to_string();
            };
            if PERCENT.contains(&key) {
                format!("{x:.1}%")
            } else if key == "nps" {
                format!("{x:.1}")
            } else if key.ends_with("_seconds") {
                duration(x)
            } else if MONEY.contains(&key) {
                match row.get("currency").and_then(Value::as_str) {
                    Some(currency) => format!("{} {currency}", grouped(x)),
                    // A count: whole deals, a forecast with one decimal.
                    None if x.fract() == 0.0 => grouped(x),
                    None => format!("{x:.1}"),
                }
            } else {
                n.to_string()
            }
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item.get("currency").and_then(Value::as_str) {
                Some(currency) => format!(
                    "{} {currency} ({})",
                    grouped(item["amount"].as_f64().unwrap_or(0.0)),
                    deals(item["count"].as_u64().unwrap_or(0), language)
                ),
                None => super::cell(item),
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => super::cell(other),
    }
}

/// "1 deal", "5 deals"; "1 сделка", "3 сделки", "5 сделок".
fn deals(n: u64, language: Language) -> String {
    let word = match language {
        Language::En if n == 1 => "deal",
        Language::En => "deals",
        Language::Ru => match (n % 10, n % 100) {
            (1, h) if h != 11 => "сделка",
            (2..=4, h) if !(12..=14).contains(&h) => "сделки",
            _ => "сделок",
        },
    };
    format!("{n} {word}")
}

/// `1500000` as `1 500 000`, `2287222.22` as `2 287 222.22`: digits in threes, hundredths kept.
pub fn grouped(x: f64) -> String {
    let hundredths = (x * 100.0).round() as i64;
    let (sign, hundredths) = if hundredths < 0 {
        ("-", -hundredths)
    } else {
        ("", hundredths)
    };
    let whole = (hundredths / 100).to_string();
    let mut out = String::from(sign);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    match hundredths % 100 {
        0 => out,
        cents => format!("{out}.{cents:02}"),
    }
}

/// Seconds as `2d 4h`, `3h 20m`, `45m`, `30s`: the two largest units, as a time in a stage
/// reads.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn money_has_its_currency_and_grouped_digits_and_a_count_has_none() {
        let rows = [
            json!({ "plan": "a", "currency": "RUB", "target": 1500000, "done": 2287222.22, "percent": 152.5 }),
            json!({ "plan": "b", "currency": null, "target": 24, "done": 6, "forecast": 6.4893, "percent": 25.0 }),
        ];
        let (columns, cells) = shown_table(&rows, Language::En);
        assert_eq!(
            columns,
            ["plan", "currency", "target", "done", "percent", "forecast"]
        );
        assert_eq!(
            cells[0],
            [
                "a",
                "RUB",
                "1 500 000 RUB",
                "2 287 222.22 RUB",
                "152.5%",
                ""
            ]
        );
        assert_eq!(cells[1], ["b", "", "24", "6", "25.0%", "6.5"]);
    }

    #[test]
    fn times_in_stages_read_in_days_hours_and_minutes() {
        let rows = [
            json!({ "stage": "NEW", "median_seconds": 187_200, "p90_seconds": 12_000, "conversion": null }),
        ];
        let (columns, cells) = shown_table(&rows, Language::En);
        assert_eq!(columns, ["stage", "median", "p90", "conversion"]);
        assert_eq!(cells[0], ["NEW", "2d 4h", "3h 20m", ""]);
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(2_700.0), "45m");
        assert_eq!(duration(86_400.0), "1d");
    }

    #[test]
    fn other_currencies_and_no_reason_are_spelt_out() {
        let rows = [
            json!({ "plan": "a", "other_currencies": [{ "currency": "USD", "count": 1, "amount": 6000 }] }),
            json!({ "plan": "b", "other_currencies": [] }),
        ];
        let (_, cells) = shown_table(&rows, Language::En);
        assert_eq!(cells[0][1], "6 000 USD (1 deal)");
        assert_eq!(cells[1][1], "");
        let losses = [json!({ "reason": null, "count": 2, "amount": 1000, "currency": "RUB" })];
        assert_eq!(shown_table(&losses, Language::En).1[0][0], "(no reason)");
        assert_eq!(shown_table(&losses, Language::Ru).1[0][0], "(без причины)");
        assert_eq!(deals(1, Language::Ru), "1 сделка");
        assert_eq!(deals(3, Language::Ru), "3 сделки");
        assert_eq!(deals(11, Language::Ru), "11 сделок");
        assert_eq!(deals(21, Language::Ru), "21 сделка");
        assert_eq!(grouped(-1234.5), "-1 234.50");
    }
}

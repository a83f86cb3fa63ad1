//! A rule-test file's own `[calendar]`: the config's keys (`timezone`, `workdays`, `hours`,
//! `holidays`), parsed by the config's own [`calendar_from`], each problem at its
//! `file:line:col`. A file that pins its calendar gets the same deadlines whatever
//! `b24-robot.toml` lies in the current folder; a key left out takes the config's default.

use toml::de::{DeTable, DeValue};

use crate::calendar::Calendar;
use crate::configuration::{CALENDAR_KEYS, calendar_from};
use crate::diagnostics::spanned::{Reader, entry, type_name};

/// The file's `[calendar]`, or `None` when it has none or it is invalid (the problems recorded).
pub(super) fn calendar(r: &mut Reader<'_>, doc: &DeTable<'_>) -> Option<Calendar> {
    let (key, v) = entry(doc, "calendar")?;
    let DeValue::Table(table) = v.get_ref() else {
        r.error(
            v.span(),
            format!(
                "\"calendar\" must be a table, found {}",
                type_name(v.get_ref())
            ),
            "write [calendar] with timezone, workdays, hours and holidays, as in the config",
        );
        return None;
    };
    let errors_before = r.errors.len();
    r.keys(table, CALENDAR_KEYS, "in [calendar]");
    let timezone = r.string(table, "timezone");
    let hours = r.string(table, "hours");
    let workdays = strings(
        r,
        table,
        "workdays",
        "[\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
    );
    let holidays = strings(r, table, "holidays", "[\"2026-01-01\", \"2026-05-09\"]");
    if r.errors.len() > errors_before {
        return None;
    }
    match calendar_from(timezone, workdays, hours, holidays) {
        Ok(calendar) => Some(calendar),
        Err(bad) => {
            for bad in bad {
                // "calendar.hours" is at its value; a problem of the whole table at `[calendar]`.
                let span = bad
                    .key
                    .strip_prefix("calendar.")
                    .and_then(|k| entry(table, k))
                    .map_or_else(|| key.span(), |(_, v)| v.span());
                r.error(span, bad.to_string(), "");
            }
            None
        }
    }
}

/// A list of strings, or `None` when the key is absent or wrong (the problem recorded).
fn strings(
    r: &mut Reader<'_>,
    table: &DeTable<'_>,
    key: &str,
    example: &str,
) -> Option<Vec<String>> {
    let (_, v) = entry(table, key)?;
    let help = format!("write {key} = {example}");
    let DeValue::Array(items) = v.get_ref() else {
        r.error(
            v.span(),
            format!(
                "\"{key}\" must be a list of strings, found {}",
                type_name(v.get_ref())
            ),
            &help,
        );
        return None;
    };
    let mut list = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) => list.push(s.to_string()),
            other => {
                r.error(
                    item.span(),
                    format!(
                        "each of \"{key}\" must be a string, found {}",
                        type_name(other)
                    ),
                    &help,
                );
                return None;
            }
        }
    }
    Some(list)
}

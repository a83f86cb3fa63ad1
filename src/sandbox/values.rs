//! Value conversions shared by the simulated methods: Bitrix24's loose typing on the way in
//! (`410`, `"410"` and `["410"]` all mean the same id), its string typing on the way out, its
//! date formats, and the comparisons its list filters make.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// A scalar as the string PHP would see (`null` → `None`; arrays/objects → `None`).
pub fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.to_string()),
        _ => None,
    }
}

/// A positive integer id from `5`, `"5"` or `" 5 "`; `None` for anything else, zero included.
pub fn positive_id(value: &Value) -> Option<u64> {
    let id = match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f > 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }?;
    (id > 0).then_some(id)
}

/// A list of strings from an array, an object of values (PHP array with odd keys) or a scalar.
pub fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar_string).collect(),
        Value::Object(map) => map.values().filter_map(scalar_string).collect(),
        Value::Null => Vec::new(),
        other => scalar_string(other).into_iter().collect(),
    }
}

/// Looks a parameter up by name ignoring case: Bitrix24 takes `id` and `ID`, `fields` and
/// `FIELDS` alike for most methods (`crm.timeline.comment.add` is the exception and does not
/// use this).
pub fn param<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    let map = params.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// An object parameter; an empty PHP array arrives as `[]` or `""` and counts as empty.
pub fn object_param(params: &Value, name: &str) -> Option<Map<String, Value>> {
    match param(params, name)? {
        Value::Object(map) => Some(map.clone()),
        Value::Array(items) if items.is_empty() => Some(Map::new()),
        Value::Array(items) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v.clone()))
                .collect(),
        ),
        Value::String(s) if s.is_empty() => Some(Map::new()),
        _ => None,
    }
}

/// `start` of a list call: a non-negative offset; `-1` asks for no `total`.
pub fn start_param(params: &Value) -> (usize, bool) {
    match param(params, "start").and_then(scalar_string) {
        Some(s) if s.trim() == "-1" => (0, false),
        Some(s) => (s.trim().parse::<usize>().unwrap_or(0), true),
        None => (0, true),
    }
}

/// Prints an instant as Bitrix24 does: `2024-08-30T14:29:00+03:00`.
pub fn format_instant(at: DateTime<Utc>, offset: FixedOffset) -> String {
    at.with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// Reads the date and datetime spellings Bitrix24 accepts; a value with no offset is read in
/// the portal's offset (the server's time zone), a bare date as its midnight there.
pub fn parse_instant(text: &str, offset: FixedOffset) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(at) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%z") {
        return Some(at.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        ["%Y-%m-%d", "%d.%m.%Y"]
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(text, f).ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|at| at.with_timezone(&Utc))
}

/// The calendar date a `date` field value means: a bare date as written, a datetime as the
/// date it falls on in the portal's offset (so a value read back from the portal round-trips).
pub fn parse_date(text: &str, offset: FixedOffset) -> Option<NaiveDate> {
    let text = text.trim();
    if let Some(d) = ["%Y-%m-%d", "%d.%m.%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(text, f).ok())
    {
        return Some(d);
    }
    parse_instant(text, offset).map(|at| at.with_timezone(&offset).date_naive())
}

/// A `date` field as Bitrix24 prints it: midnight UTC of that day, in the portal's offset.
pub fn format_date(date: NaiveDate, offset: FixedOffset) -> String {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    format_instant(midnight, offset)
}

/// Orders two stored values the way a list filter or `order` does: as numbers when both are
/// numbers, as instants when both are dates, else as text.
pub fn compare(a: &str, b: &str, offset: FixedOffset) -> Ordering {
    if let (Ok(x), Ok(y)) = (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    if let (Some(x), Some(y)) = (parse_instant(a, offset), parse_instant(b, offset)) {
        return x.cmp(&y);
    }
    a.cmp(b)
}

/// SQL `LIKE` with `%` and `_`, ignoring case (Bitrix24's MySQL collations do).
pub fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&v, &p)
}

/// Money as Bitrix24 prints `OPPORTUNITY`: two decimals, a dot, no grouping.
pub fn format_money(text: &str) -> Option<String> {
    let amount = text.trim().replace(',', ".").parse::<f64>().ok()?;
    Some(format!("{amount:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msk() -> FixedOffset {
        FixedOffset::east_opt(3 * 3600).unwrap()
    }

    #[test]
    fn dates_print_as_utc_midnight_in_the_server_offset() {
        let d = parse_date("2024-08-30", msk()).unwrap();
        assert_eq!(format_date(d, msk()), "2024-08-30T03:00:00+03:00");
        assert_eq!(parse_date("2024-08-30T03:00:00+03:00", msk()), Some(d));
    }

    #[test]
    fn offset_less_datetimes_are_read_in_the_server_offset() {
        let at = parse_instant("2025-12-31T23:59:59", msk()).unwrap();
        assert_eq!(format_instant(at, msk()), "2025-12-31T23:59:59+03:00");
    }

    #[test]
    fn like_matches_sql_patterns() {
        assert!(like("Call the client", "call%"));
        assert!(like("Call", "c_ll"));
        assert!(!like("Call the client", "call"));
    }
}

//! One raw value into its type: durations, sizes, the webhook URL, the calendar. Each error says
//! what is wrong and how to write it; the caller files it under the key.

use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Weekday};

use super::BadValue;
use super::raw::RawCalendar;
use super::sections::Secret;
use crate::calendar::Calendar;

pub(super) fn positive(value: f64, what: &str) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{value} is not {what}"))
    }
}

pub(super) fn parse_webhook_url(text: &str) -> Result<Option<Secret>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // The message must not echo the URL: it holds the webhook's secret code.
    let url = url::Url::parse(text)
        .map_err(|e| format!("not a URL ({e}); expected https://<portal>/rest/<user>/<code>/"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http(s) URL such as https://<portal>/rest/<user>/<code>/".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment: use the webhook's base URL".into());
    }
    let mut text = url.to_string();
    if !text.ends_with('/') {
        text.push('/');
    }
    Ok(Some(Secret::new(text)))
}

/// Parses an elapsed time in the one duration syntax ([`crate::duration`]): `"60s"`, `"5m"`,
/// `"24h"`, `"500ms"`, `"2d"`, `"2 days"`, `"30 минут"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse_elapsed(text).map_err(|e| e.to_string())
}

/// Parses `"64KiB"`, `"1MiB"`, `"65536"`, `"64KB"`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write e.g. \"64KiB\")"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    match value.checked_mul(factor) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("{text:?} must be above zero")),
    }
}

/// The keys of a `[calendar]` table, in the config and in a rule-test file.
pub const CALENDAR_KEYS: &[&str] = &["timezone", "workdays", "hours", "holidays"];

/// A `[calendar]` table's values as written (a rule-test file's, say) into a calendar, each bad
/// one under its `calendar.<key>` as the config reports it; a key left out takes the config's
/// default, never the config file's value, so the result depends on the table alone.
pub fn calendar_from(
    timezone: Option<String>,
    workdays: Option<Vec<String>>,
    hours: Option<String>,
    holidays: Option<Vec<String>>,
) -> Result<Calendar, Vec<BadValue>> {
    let default = RawCalendar::default();
    parse_calendar(&RawCalendar {
        timezone: timezone.unwrap_or(default.timezone),
        workdays: workdays.unwrap_or(default.workdays),
        hours: hours.unwrap_or(default.hours),
        holidays: holidays.unwrap_or(default.holidays),
    })
}

pub(super) fn parse_calendar(raw: &RawCalendar) -> Result<Calendar, Vec<BadValue>> {
    let mut errors = Vec::new();
    let tz: Option<chrono_tz::Tz> = match raw.timezone.parse() {
        Ok(tz) => Some(tz),
        Err(_) => {
            errors.push(BadValue::new(
                "calendar.timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. \"Europe/Moscow\")",
                    raw.timezone
                ),
            ));
            None
        }
    };
    let workdays = each(&raw.workdays, "calendar.workdays", &mut errors, |day| {
        parse_weekday(day).ok_or_else(|| {
            format!("{day:?} is not a weekday (use mon, tue, wed, thu, fri, sat, sun)")
        })
    });
    let hours = raw.hours.split_once('-').and_then(|(a, b)| {
        let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
        let b = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
        Some((a, b))
    });
    if hours.is_none() {
        errors.push(BadValue::new(
            "calendar.hours",
            format!(
                "{:?} is not a range of hours such as \"09:00-18:00\"",
                raw.hours
            ),
        ));
    }
    let holidays = each(&raw.holidays, "calendar.holidays", &mut errors, |day| {
        NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
            .map_err(|_| format!("{day:?} is not a date YYYY-MM-DD"))
    });
    match (tz, hours, errors.is_empty()) {
        (Some(tz), Some((start, end)), true) => Calendar::new(tz, workdays, start, end, holidays)
            .map_err(|e| vec![BadValue::new("calendar", e.to_string())]),
        _ => Err(errors),
    }
}

/// Every item of a list key parsed, each bad one recorded under `key`.
fn each<T>(
    items: &[String],
    key: &str,
    errors: &mut Vec<BadValue>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut parsed = Vec::new();
    for item in items {
        match parse(item) {
            Ok(value) => parsed.push(value),
            Err(problem) => errors.push(BadValue::new(key, problem)),
        }
    }
    parsed
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    match text.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

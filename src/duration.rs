//! The one duration syntax: config values (`sync.poll_interval = "60s"`), rule deadlines
//! (`after = "2 workdays"`) and sandbox scenario waits (`wait = "3s"`) are all read here, so a
//! spelling that works in one works in the others: `"2 days"`, `"2d"`, `"48 hours"`, `"48h"`,
//! `"90 minutes"`, `"90m"`, `"60s"`, `"500ms"`, `"2 weeks"`, and Russian: `"2 рабочих дня"`,
//! `"3 дня"`, `"4 часа"`, `"30 минут"`, `"2 недели"`.
//!
//! A module of its own rather than a part of [`calendar`](crate::calendar): the config's
//! durations are elapsed time that no calendar is involved in, and the scenario's waits neither;
//! the calendar only gets the rules' [`Period`]s out of here. What differs by place is which
//! units make sense there, not how they are spelt: a config value is elapsed time (no
//! `workdays`, which need the working calendar), a rule deadline counts whole minutes or more
//! (no seconds: a Bitrix24 task deadline is shown to the minute).
//!
//! The syntax: a number, optional spaces, a unit; case does not matter. Russian units are
//! accepted in every grammatical number ("1 день", "3 дня", "5 дней"): the service does not
//! check agreement, so "2 день" means two days as "1 days" does.

use std::fmt;
use std::time::Duration;

use crate::calendar::{MAX_PERIOD_AMOUNT, Period, PeriodUnit};
use crate::diagnostics::suggest;

/// A unit as written, before the place decides whether it makes sense there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Workdays,
}

/// Every spelling of every unit; the first of each unit is the one suggestions use.
const WORDS: &[(&str, Unit)] = &[
    ("ms", Unit::Milliseconds),
    ("millisecond", Unit::Milliseconds),
    ("milliseconds", Unit::Milliseconds),
    ("мс", Unit::Milliseconds),
    ("s", Unit::Seconds),
    ("sec", Unit::Seconds),
    ("second", Unit::Seconds),
    ("seconds", Unit::Seconds),
    ("с", Unit::Seconds),
    ("сек", Unit::Seconds),
    ("секунда", Unit::Seconds),
    ("секунды", Unit::Seconds),
    ("секунд", Unit::Seconds),
    ("секунду", Unit::Seconds),
    ("m", Unit::Minutes),
    ("min", Unit::Minutes),
    ("minute", Unit::Minutes),
    ("minutes", Unit::Minutes),
    ("мин", Unit::Minutes),
    ("минута", Unit::Minutes),
    ("минуты", Unit::Minutes),
    ("минут", Unit::Minutes),
    ("минуту", Unit::Minutes),
    ("h", Unit::Hours),
    ("hour", Unit::Hours),
    ("hours", Unit::Hours),
    ("ч", Unit::Hours),
    ("час", Unit::Hours),
    ("часа", Unit::Hours),
    ("часов", Unit::Hours),
    ("d", Unit::Days),
    ("day", Unit::Days),
    ("days", Unit::Days),
    ("д", Unit::Days),
    ("день", Unit::Days),
    ("дня", Unit::Days),
    ("дней", Unit::Days),
    ("сутки", Unit::Days),
    ("суток", Unit::Days),
    ("w", Unit::Weeks),
    ("week", Unit::Weeks),
    ("weeks", Unit::Weeks),
    ("неделя", Unit::Weeks),
    ("недели", Unit::Weeks),
    ("недель", Unit::Weeks),
    ("неделю", Unit::Weeks),
    ("workday", Unit::Workdays),
    ("workdays", Unit::Workdays),
    ("working day", Unit::Workdays),
    ("working days", Unit::Workdays),
    ("business day", Unit::Workdays),
    ("business days", Unit::Workdays),
    ("рабочий день", Unit::Workdays),
    ("рабочих дня", Unit::Workdays),
    ("рабочих дней", Unit::Workdays),
];

/// The accepted forms of a rule deadline, for its errors.
pub const PERIOD_FORMS: &str = "write a whole number and a unit: \"30 minutes\" or \"30m\", \
\"4 hours\" or \"4h\", \"3 days\" or \"3d\", \"2 weeks\", \"2 workdays\"; in Russian \"30 минут\", \
\"4 часа\", \"3 дня\", \"2 недели\", \"2 рабочих дня\"";

/// The accepted forms of an elapsed time (config values, scenario waits), for their errors.
pub const ELAPSED_FORMS: &str = "write a number and a unit: \"500ms\", \"60s\", \"90m\" or \
\"90 minutes\", \"48h\" or \"48 hours\", \"2d\" or \"2 days\", \"1w\"; in Russian \"60 секунд\", \
\"90 минут\", \"48 часов\", \"2 дня\"";

/// Why a text is not a duration: what is wrong, and how to write it (shown apart, as a
/// diagnostic's help, or after the message in parentheses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub message: String,
    pub help: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

impl std::error::Error for DurationError {}

fn bad(text: &str, problem: impl fmt::Display, help: impl Into<String>) -> DurationError {
    DurationError {
        message: format!("bad duration \"{text}\": {problem}"),
        help: help.into(),
    }
}

/// Splits `text` into its number and its unit (lower-cased, inner spaces made single);
/// `number` names what the number must be, `forms` are the accepted forms.
fn split(text: &str, (number_is, forms): (&str, &str)) -> Result<(String, Unit), DurationError> {
    let t = text.trim();
    let at = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(at);
    let unit = unit
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if number.is_empty() {
        let first = t.split_whitespace().next().unwrap_or_default();
        return Err(bad(text, format!("\"{first}\" is not {number_is}"), forms));
    }
    if unit.is_empty() {
        return Err(bad(text, "no unit", forms));
    }
    match WORDS.iter().find(|(word, _)| *word == unit) {
        Some((_, found)) => Ok((number.to_string(), *found)),
        None => {
            // Longer words first: of "day" and "days", both one edit from "dayz", the plural.
            let mut words: Vec<&str> = WORDS.iter().map(|(w, _)| *w).collect();
            words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
            let help = match suggest(&unit, &words) {
                Some(fixed) if unit.chars().count() > 2 => {
                    format!("did you mean \"{number} {fixed}\"?")
                }
                _ => forms.to_string(),
            };
            Err(bad(text, format!("unknown unit \"{unit}\""), help))
        }
    }
}

/// A rule deadline's duration: whole minutes, hours, days, weeks (seven days) or workdays.
pub fn parse_period(text: &str) -> Result<Period, DurationError> {
    let (number, unit) = split(text, ("a whole number", PERIOD_FORMS))?;
    let amount: u32 = number.parse().map_err(|_| {
        bad(
            text,
            format!("\"{number}\" is not a whole number"),
            PERIOD_FORMS,
        )
    })?;
    let (amount, unit) = match unit {
        Unit::Minutes => (Some(amount), PeriodUnit::Minutes),
        Unit::Hours => (Some(amount), PeriodUnit::Hours),
        Unit::Days => (Some(amount), PeriodUnit::Days),
        Unit::Weeks => (amount.checked_mul(7), PeriodUnit::Days),
        Unit::Workdays => (Some(amount), PeriodUnit::Workdays),
        Unit::Seconds | Unit::Milliseconds => {
            return Err(bad(
                text,
                "a deadline counts minutes at the finest, not seconds",
                PERIOD_FORMS,
            ));
        }
    };
    match amount {
        Some(amount) if amount <= MAX_PERIOD_AMOUNT => Ok(Period { amount, unit }),
        _ => Err(DurationError {
            message: format!("duration \"{text}\" is too long"),
            help: format!("at most {MAX_PERIOD_AMOUNT} of any unit"),
        }),
    }
}

/// An elapsed time (config values, scenario waits): above zero, fractions allowed (`"1.5h"`),
/// from milliseconds to weeks; not workdays, which only the rules' calendar can count.
pub fn parse_elapsed(text: &str) -> Result<Duration, DurationError> {
    let (number, unit) = split(text, ("a number", ELAPSED_FORMS))?;
    let value: f64 = number
        .parse()
        .map_err(|_| bad(text, format!("\"{number}\" is not a number"), ELAPSED_FORMS))?;
    let seconds = match unit {
        Unit::Milliseconds => value / 1000.0,
        Unit::Seconds => value,
        Unit::Minutes => value * 60.0,
        Unit::Hours => value * 3600.0,
        Unit::Days => value * 86_400.0,
        Unit::Weeks => value * 604_800.0,
        Unit::Workdays => {
            return Err(bad(
                text,
                "workdays follow the working calendar, which only rule deadlines use",
                "this is elapsed time: write hours or days, as in \"48h\" or \"2d\"",
            ));
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(bad(text, "must be above zero", ELAPSED_FORMS));
    }
    // `try_`: a value past `Duration::MAX` (about 5.8e11 years) panicked in `from_secs_f64`
    // (found by the config property test).
    Duration::try_from_secs_f64(seconds).map_err(|_| DurationError {
        message: format!("duration \"{text}\" is too long"),
        help: "write at most a few years".into(),
    })
}

/// The unit words a rule deadline accepts, for the rules' JSON schema.
pub fn period_words() -> Vec<&'static str> {
    WORDS
        .iter()
        .filter(|(_, unit)| !matches!(unit, Unit::Seconds | Unit::Milliseconds))
        .map(|(word, _)| *word)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(amount: u32, unit: PeriodUnit) -> Period {
        Period { amount, unit }
    }

    #[test]
    fn rule_deadlines_take_english_short_and_russian_spellings() {
        use PeriodUnit::*;
        for (text, expected) in [
            ("2 days", period(2, Days)),
            ("2d", period(2, Days)),
            ("2 D", period(2, Days)),
            ("1 day", period(1, Days)),
            ("48 hours", period(48, Hours)),
            ("48h", period(48, Hours)),
            ("90 minutes", period(90, Minutes)),
            ("90m", period(90, Minutes)),
            ("1 workday", period(1, Workdays)),
            ("2 workdays", period(2, Workdays)),
            ("2 working days", period(2, Workdays)),
            ("2 weeks", period(14, Days)),
            ("1 день", period(1, Days)),
            ("3 дня", period(3, Days)),
            ("5 дней", period(5, Days)),
            ("1 рабочий день", period(1, Workdays)),
            ("2 рабочих дня", period(2, Workdays)),
            ("5  Рабочих   дней", period(5, Workdays)),
            ("1 час", period(1, Hours)),
            ("4 часа", period(4, Hours)),
            ("5 часов", period(5, Hours)),
            ("1 минута", period(1, Minutes)),
            ("3 минуты", period(3, Minutes)),
            ("30 минут", period(30, Minutes)),
            ("1 неделя", period(7, Days)),
            ("2 недели", period(14, Days)),
            ("5 недель", period(35, Days)),
        ] {
            assert_eq!(parse_period(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn a_rule_deadline_refuses_seconds_and_fractions_and_says_what_is_accepted() {
        let e = parse_period("30s").expect_err("seconds");
        assert_eq!(
            e.message,
            "bad duration \"30s\": a deadline counts minutes at the finest, not seconds"
        );
        assert_eq!(e.help, PERIOD_FORMS);
        let e = parse_period("1.5 hours").expect_err("fraction");
        assert_eq!(
            e.message,
            "bad duration \"1.5 hours\": \"1.5\" is not a whole number"
        );
        let e = parse_period("2 wrokdays").expect_err("typo");
        assert_eq!(e.help, "did you mean \"2 workdays\"?");
        let e = parse_period("3 dayz").expect_err("typo");
        assert_eq!(e.help, "did you mean \"3 days\"?");
        let e = parse_period("30 минтут").expect_err("typo");
        assert_eq!(e.help, "did you mean \"30 минут\"?");
        let e = parse_period("2 fortnights").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            format!("bad duration \"2 fortnights\": unknown unit \"fortnights\" ({PERIOD_FORMS})")
        );
        assert!(parse_period("100001 days").is_err());
        assert!(parse_period("20000 weeks").is_err());
    }

    #[test]
    fn elapsed_times_take_the_same_spellings_and_milliseconds() {
        for (text, seconds) in [
            ("500ms", 0.5),
            ("60s", 60.0),
            ("60 seconds", 60.0),
            ("60 секунд", 60.0),
            ("90m", 5400.0),
            ("90 minutes", 5400.0),
            ("30 минут", 1800.0),
            ("48h", 172_800.0),
            ("48 hours", 172_800.0),
            ("4 часа", 14_400.0),
            ("1.5h", 5400.0),
            ("2d", 172_800.0),
            ("2 days", 172_800.0),
            ("3 дня", 259_200.0),
            ("1w", 604_800.0),
        ] {
            assert_eq!(
                parse_elapsed(text),
                Ok(Duration::from_secs_f64(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn an_elapsed_time_refuses_workdays_zero_and_no_unit() {
        let e = parse_elapsed("2 рабочих дня").expect_err("workdays");
        assert!(e.message.contains("working calendar"), "{e}");
        assert_eq!(
            parse_elapsed("5").expect_err("no unit").to_string(),
            format!("bad duration \"5\": no unit ({ELAPSED_FORMS})")
        );
        assert!(parse_elapsed("0s").is_err());
        assert_eq!(
            parse_elapsed("soon").expect_err("words").message,
            "bad duration \"soon\": \"soon\" is not a number"
        );
    }
}

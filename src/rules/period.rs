//! A report period: a calendar month, quarter, half or year, as `[[plan]]` and `--period` write
//! it (`"2026-12"`, `"2026-Q4"`, `"2026-H2"`, `"2026"`).
//!
//! Its dates are days of the calendar's zone, both inclusive, as the reports' JSON prints them:
//! a deal won at 23:30 Moscow time on the last day belongs to the period even though it is
//! already the next day in UTC. Working days come from the same [`Calendar`] as deadlines, so a
//! plan's forecast and an SLA agree on what a holiday is. Named `ReportPeriod` because
//! `calendar::Period` is a duration.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate};

use crate::calendar::Calendar;

/// Years a period may name: four digits, and none before Bitrix24 could have recorded a deal.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

/// How the period was written, which [`fmt::Display`] writes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Form {
    Month(u32),
    Quarter(u32),
    Half(u32),
    Year,
}

/// A month, quarter, half or year: from its first day to its last, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportPeriod {
    year: i32,
    form: Form,
}

/// How to write a period: the help of every refusal.
pub const PERIOD_FORMS: &str =
    "write a month \"2026-12\", a quarter \"2026-Q4\", a half \"2026-H2\" or a year \"2026\"";

/// A period that does not parse (the text as given); the message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad period \"{0}\": {PERIOD_FORMS}")]
pub struct PeriodError(pub String);

impl FromStr for ReportPeriod {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || PeriodError(text.to_string());
        let (year, rest) = match text.split_once('-') {
            Some((year, rest)) => (year, Some(rest)),
            None => (text, None),
        };
        if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        if !YEARS.contains(&year) {
            return Err(bad());
        }
        let number = |digits: &str, max: u32| {
            let ok = !digits.is_empty()
                && digits.len() <= 2
                && digits.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| digits.parse::<u32>().ok())
                .flatten()
                .filter(|n| (1..=max).contains(n))
        };
        let form = match rest {
            None => Form::Year,
            Some(r) if r.starts_with(['Q', 'q']) => {
                Form::Quarter(number(&r[1..], 4).ok_or_else(bad)?)
            }
            Some(r) if r.starts_with(['H', 'h']) => Form::Half(number(&r[1..], 2).ok_or_else(bad)?),
            Some(r) if r.len() == 2 => Form::Month(number(r, 12).ok_or_else(bad)?),
            Some(_) => return Err(bad()),
        };
        Ok(ReportPeriod { year, form })
    }
}

impl fmt::Display for ReportPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let year = self.year;
        match self.form {
            Form::Month(m) => write!(f, "{year}-{m:02}"),
            Form::Quarter(q) => write!(f, "{year}-Q{q}"),
            Form::Half(h) => write!(f, "{year}-H{h}"),
            Form::Year => write!(f, "{year}"),
        }
    }
}

/// Written as its text form (`"2026-Q4"`), the form it was read in.
impl serde::Serialize for ReportPeriod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl ReportPeriod {
    /// The month `at` falls in, in the calendar's zone: the reports' default period.
    pub fn current(calendar: &Calendar, at: DateTime<FixedOffset>) -> ReportPeriod {
        let today = calendar.fixed(at).date_naive();
        ReportPeriod {
            year: today.year(),
            form: Form::Month(today.month()),
        }
    }

    /// The first and the last month, 1-based.
    fn months(&self) -> (u32, u32) {
        match self.form {
            Form::Month(m) => (m, m),
            Form::Quarter(q) => (3 * q - 2, 3 * q),
            Form::Half(h) => (6 * h - 5, 6 * h),
            Form::Year => (1, 12),
        }
    }

    /// The first day.
    pub fn from(&self) -> NaiveDate {
        let (first, _) = self.months();
        NaiveDate::from_ymd_opt(self.year, first, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The last day (inclusive).
    pub fn to(&self) -> NaiveDate {
        let (_, last) = self.months();
        let next = if last == 12 {
            NaiveDate::from_ymd_opt(self.year + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(self.year, last + 1, 1)
        };
        next.and_then(|d| d.pred_opt()).unwrap_or(NaiveDate::MAX)
    }

    /// Whether `date` (a day of the calendar's zone) is one of the period's days.
    pub fn contains_date(&self, date: NaiveDate) -> bool {
        (self.from()..=self.to()).contains(&date)
    }

    /// Whether the moment `at` falls on one of the period's days in the calendar's zone.
    pub fn contains(&self, calendar: &Calendar, at: DateTime<FixedOffset>) -> bool {
        self.contains_date(calendar.fixed(at).date_naive())
    }

    /// Whether the two periods share a day (a month and the quarter it is in do).
    pub fn overlaps(&self, other: &ReportPeriod) -> bool {
        self.from() <= other.to() && other.from() <= self.to()
    }

    /// The working days of the period: the calendar's weekdays that are not holidays.
    pub fn working_days(&self, calendar: &Calendar) -> u32 {
        self.working_days_until(calendar, self.to())
    }

    /// The working days of the period that have begun at `now`: every working day before today,
    /// and today once its working hours have begun (the spec's forecast rule). Before the period:
    /// 0; after it: all of them.
    pub fn working_days_elapsed(&self, calendar: &Calendar, now: DateTime<FixedOffset>) -> u32 {
        let local = calendar.fixed(now);
        let today = local.date_naive();
        let last = if local.time() >= calendar.day_start() {
            today
        } else {
            today - Duration::days(1)
        };
        if last < self.from() {
            return 0;
        }
        self.working_days_until(calendar, last.min(self.to()))
    }

    /// Working days from the first day to `last`, inclusive.
    fn working_days_until(&self, calendar: &Calendar, last: NaiveDate) -> u32 {
        self.from()
            .iter_days()
            .take_while(|d| *d <= last)
            .filter(|d| calendar.is_working_day(*d))
            .count() as u32
    }
}

//! Deadline arithmetic: working days, working hours, holidays and time zones.
//!
//! Everything here is pure: a [`Calendar`] is built once from the `[calendar]` config and then
//! answers "what moment is N units after/before this one". Rules (`rules.md`, "Deadlines") speak
//! four units: `minutes` and `hours` are elapsed time, `days` keep the wall-clock time in the
//! calendar's zone, and `workdays` follow the working calendar. Results are always expressed in
//! the calendar's zone with their UTC offset, because Bitrix24 reads an offset-less value in a
//! zone nobody controls (the server's, or the user's).
//!
//! About 300 lines of code and 200 of tests kept beside it: the arithmetic is easier to trust next
//! to its cases.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime,
    TimeZone, Weekday,
};
use chrono_tz::Tz;

use crate::duration::DurationError;

/// Why a calendar could not be built from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// Working hours are `[start, end)` within one day: a night shift is not supported.
    #[error("working hours must start before they end (got {start}-{end})")]
    EmptyHours { start: NaiveTime, end: NaiveTime },
    /// Without a working day, a workday deadline would never be reached.
    #[error("at least one working day is needed")]
    NoWorkdays,
}

/// The working calendar deadlines are computed in.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    tz: Tz,
    /// Indexed by `Weekday::num_days_from_monday`.
    workdays: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
    holidays: BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    /// Europe/Moscow, Monday to Friday, 09:00-18:00, no holidays: the config's defaults.
    fn default() -> Self {
        Calendar {
            tz: chrono_tz::Europe::Moscow,
            workdays: [true, true, true, true, true, false, false],
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(18, 0, 0).unwrap_or(NaiveTime::MIN),
            holidays: BTreeSet::new(),
        }
    }
}

/// The unit of a [`Period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Minutes,
    Hours,
    Days,
    Workdays,
}

/// A duration as rules write it: `"2 workdays"`, `"1 hour"`, `"30 minutes"` (every spelling is
/// in [`crate::duration`]; weeks become seven days).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Period {
    pub amount: u32,
    pub unit: PeriodUnit,
}

/// Longest period accepted, in any unit. It keeps workday stepping (one loop turn per day)
/// bounded, and no sales standard needs a deadline 270 years away.
pub const MAX_PERIOD_AMOUNT: u32 = 100_000;

impl FromStr for Period {
    type Err = DurationError;

    /// Parses the one duration syntax ([`crate::duration`]): `"2 workdays"`, `"48h"`, `"3 дня"`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        crate::duration::parse_period(text)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            PeriodUnit::Minutes => "minute",
            PeriodUnit::Hours => "hour",
            PeriodUnit::Days => "day",
            PeriodUnit::Workdays => "workday",
        };
        let plural = if self.amount == 1 { "" } else { "s" };
        write!(f, "{} {unit}{plural}", self.amount)
    }
}

impl Calendar {
    /// Builds a calendar; `start < end` and at least one working day are required.
    pub fn new(
        tz: Tz,
        workdays: Vec<Weekday>,
        start: NaiveTime,
        end: NaiveTime,
        holidays: Vec<NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        if start >= end {
            return Err(CalendarError::EmptyHours { start, end });
        }
        let mut days = [false; 7];
        for day in workdays {
            days[day.num_days_from_monday() as usize] = true;
        }
        if !days.iter().any(|d| *d) {
            return Err(CalendarError::NoWorkdays);
        }
        Ok(Calendar {
            tz,
            workdays: days,
            start,
            end,
            holidays: holidays.into_iter().collect(),
        })
    }

    /// The same calendar with these holidays besides its own: tests of holidays start from the
    /// config's defaults.
    #[cfg(test)]
    pub(crate) fn with_holidays(mut self, days: &[NaiveDate]) -> Calendar {
        self.holidays.extend(days.iter().copied());
        self
    }

    /// The calendar's time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Start of the working hours.
    pub fn day_start(&self) -> NaiveTime {
        self.start
    }

    /// End of the working hours (the first moment outside them).
    pub fn day_end(&self) -> NaiveTime {
        self.end
    }

    /// A working day is a configured weekday that is not a holiday.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.workdays[date.weekday().num_days_from_monday() as usize]
            && !self.holidays.contains(&date)
    }

    /// Working time is `[start, end)` on a working day: the end itself is outside.
    pub fn is_working_time(&self, at: DateTime<FixedOffset>) -> bool {
        let local = self.local(at);
        self.is_working_day(local.date()) && local.time() >= self.start && local.time() < self.end
    }

    /// Applies `period` forwards from `from`.
    pub fn add(&self, from: DateTime<FixedOffset>, period: Period) -> DateTime<FixedOffset> {
        let amount = i64::from(period.amount);
        match period.unit {
            PeriodUnit::Minutes => self.fixed(from + Duration::minutes(amount)),
            PeriodUnit::Hours => self.fixed(from + Duration::hours(amount)),
            PeriodUnit::Days => self.resolve(self.local(from) + Duration::days(amount)),
            PeriodUnit::Workdays => self.add_workdays(from, period.amount),
        }
    }

    /// `at` when it is working time, else the start of the next working period: when a
    /// notification held outside working hours goes out (`control.quiet_outside_hours`).
    pub fn next_working_moment(&self, at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        if self.is_working_time(at) {
            at
        } else {
            self.resolve(self.normalise_forward(self.local(at)))
        }
    }

    /// Applies `period` backwards from `from`.
    pub fn subtract(&self, from: DateTime<FixedOffset>, period: Period) -> DateTime<FixedOffset> {
        let amount = i64::from(period.amount);
        match period.unit {
            PeriodUnit::Minutes => self.fixed(from - Duration::minutes(amount)),
            PeriodUnit::Hours => self.fixed(from - Duration::hours(amount)),
            PeriodUnit::Days => self.resolve(self.local(from) - Duration::days(amount)),
            PeriodUnit::Workdays => self.subtract_workdays(from, period.amount),
        }
    }

    /// Moves to the start of the next working period (unless already in working time), then
    /// steps `n` working days keeping the time of day.
    pub fn add_workdays(&self, from: DateTime<FixedOffset>, n: u32) -> DateTime<FixedOffset> {
        let start = self.normalise_forward(self.local(from));
        let mut date = start.date();
        for _ in 0..n {
            date = self.next_working_day(date);
        }
        self.resolve(date.and_time(start.time()))
    }

    /// Moves back to the latest end of a working period at or before `from` (unless already in
    /// working time), then steps `n` working days back keeping the time of day.
    pub fn subtract_workdays(&self, from: DateTime<FixedOffset>, n: u32) -> DateTime<FixedOffset> {
        let start = self.normalise_backward(self.local(from));
        let mut date = start.date();
        for _ in 0..n {
            date = self.previous_working_day(date);
        }
        self.resolve(date.and_time(start.time()))
    }

    /// The same calendar day as `at` (in the calendar's zone) at `time`: `time = "18:00"`.
    pub fn with_time(&self, at: DateTime<FixedOffset>, time: NaiveTime) -> DateTime<FixedOffset> {
        self.resolve(self.local(at).date().and_time(time))
    }

    /// The end of working hours on `date`: what a `date` field means as a deadline base.
    pub fn end_of_day(&self, date: NaiveDate) -> DateTime<FixedOffset> {
        self.resolve(date.and_time(self.end))
    }

    /// A wall-clock time in the calendar's zone as a moment.
    pub fn at_local(&self, local: NaiveDateTime) -> DateTime<FixedOffset> {
        self.resolve(local)
    }

    /// Expresses any moment in the calendar's zone.
    pub fn fixed(&self, at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        at.with_timezone(&self.tz).fixed_offset()
    }

    fn local(&self, at: DateTime<FixedOffset>) -> NaiveDateTime {
        at.with_timezone(&self.tz).naive_local()
    }

    /// Wall clock → moment. An ambiguous time (clocks going back) takes the earlier moment; a
    /// time that does not exist (clocks going forward) is read one hour later, as a clock
    /// that was not adjusted yet would show it.
    fn resolve(&self, local: NaiveDateTime) -> DateTime<FixedOffset> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.fixed_offset(),
            LocalResult::None => {
                let later = local + Duration::hours(1);
                match self.tz.from_local_datetime(&later) {
                    LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.fixed_offset(),
                    // Two gaps within an hour do not exist in the tz database; read it as UTC.
                    LocalResult::None => self.tz.from_utc_datetime(&local).fixed_offset(),
                }
            }
        }
    }

    fn normalise_forward(&self, local: NaiveDateTime) -> NaiveDateTime {
        let date = local.date();
        if self.is_working_day(date) {
            if local.time() < self.start {
                return date.and_time(self.start);
            }
            if local.time() < self.end {
                return local;
            }
        }
        self.next_working_day(date).and_time(self.start)
    }

    fn normalise_backward(&self, local: NaiveDateTime) -> NaiveDateTime {
        let date = local.date();
        if self.is_working_day(date) {
            if local.time() >= self.end {
                return date.and_time(self.end);
            }
            if local.time() >= self.start {
                return local;
            }
        }
        self.previous_working_day(date).and_time(self.end)
    }

    // Both loops end: `new` guarantees a working weekday, and holidays are finitely many.
    fn next_working_day(&self, date: NaiveDate) -> NaiveDate {
        let mut day = date;
        loop {
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day(day) || day == NaiveDate::MAX {
                return day;
            }
        }
    }

    fn previous_working_day(&self, date: NaiveDate) -> NaiveDate {
        let mut day = date;
        loop {
            day = day.pred_opt().unwrap_or(day);
            if self.is_working_day(day) || day == NaiveDate::MIN {
                return day;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn moscow(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(&format!("{text}+03:00")).unwrap()
    }

    fn period(text: &str) -> Period {
        text.parse().unwrap()
    }

    #[test]
    fn two_workdays_after_friday_1700_is_tuesday_1700() {
        // 2026-01-16 is a Friday.
        let cal = Calendar::default();
        let got = cal.add(moscow("2026-01-16T17:00:00"), period("2 workdays"));
        assert_eq!(got, moscow("2026-01-20T17:00:00"));
        assert_eq!(got.to_rfc3339(), "2026-01-20T17:00:00+03:00");
    }

    #[test]
    fn one_workday_after_saturday_1100_is_tuesday_0900() {
        let cal = Calendar::default();
        let got = cal.add(moscow("2026-01-17T11:00:00"), period("1 workday"));
        assert_eq!(got, moscow("2026-01-20T09:00:00"));
    }

    #[test]
    fn the_end_of_working_hours_is_outside_working_time() {
        let cal = Calendar::default();
        assert!(!cal.is_working_time(moscow("2026-01-16T18:00:00")));
        // Friday 18:00 moves to Monday 09:00 first.
        let got = cal.add(moscow("2026-01-16T18:00:00"), period("1 workday"));
        assert_eq!(got, moscow("2026-01-20T09:00:00"));
    }

    #[test]
    fn seconds_are_kept_by_workday_steps() {
        let cal = Calendar::default();
        let got = cal.add(moscow("2026-01-14T10:15:42"), period("1 workday"));
        assert_eq!(got, moscow("2026-01-15T10:15:42"));
    }

    #[test]
    fn holidays_are_skipped_by_workdays() {
        let cal = Calendar::new(
            chrono_tz::Europe::Moscow,
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
            vec![NaiveDate::from_ymd_opt(2026, 1, 19).unwrap()],
        )
        .unwrap();
        let got = cal.add(moscow("2026-01-16T17:00:00"), period("1 workday"));
        assert_eq!(got, moscow("2026-01-20T17:00:00"));
    }

    #[test]
    fn workdays_before_an_evening_count_back_from_the_end_of_that_day() {
        let cal = Calendar::default();
        // Wednesday 20:00 → Wednesday 18:00 → 3 workdays back: the previous Friday 18:00.
        let got = cal.subtract(moscow("2026-01-21T20:00:00"), period("3 workdays"));
        assert_eq!(got, moscow("2026-01-16T18:00:00"));
    }

    #[test]
    fn workdays_before_a_weekend_moment_start_from_friday_end() {
        let cal = Calendar::default();
        let got = cal.subtract(moscow("2026-01-18T12:00:00"), period("1 workday"));
        assert_eq!(got, moscow("2026-01-15T18:00:00"));
    }

    #[test]
    fn days_keep_the_wall_clock_across_a_dst_change() {
        let cal = Calendar::new(
            chrono_tz::Europe::Berlin,
            vec![Weekday::Mon],
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(18, 0, 0).unwrap(),
            vec![],
        )
        .unwrap();
        // 2026-03-29 is the spring-forward Sunday in Europe.
        let from = DateTime::parse_from_rfc3339("2026-03-28T10:00:00+01:00").unwrap();
        let got = cal.add(from, period("1 day"));
        assert_eq!(got.to_rfc3339(), "2026-03-29T10:00:00+02:00");
        let elapsed = cal.add(from, period("24 hours"));
        assert_eq!(elapsed.to_rfc3339(), "2026-03-29T11:00:00+02:00");
    }

    #[test]
    fn minutes_and_hours_are_elapsed_time_in_the_calendar_zone() {
        let cal = Calendar::default();
        let from = DateTime::parse_from_rfc3339("2026-01-16T14:00:00+00:00").unwrap();
        assert_eq!(
            cal.add(from, period("90 minutes")),
            moscow("2026-01-16T18:30:00")
        );
        assert_eq!(
            cal.subtract(from, period("2 hours")).to_rfc3339(),
            "2026-01-16T15:00:00+03:00"
        );
    }

    #[test]
    fn a_calendar_needs_hours_and_workdays() {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        assert_eq!(
            Calendar::new(chrono_tz::UTC, vec![Weekday::Mon], nine, nine, vec![]),
            Err(CalendarError::EmptyHours {
                start: nine,
                end: nine
            })
        );
        let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap();
        assert_eq!(
            Calendar::new(chrono_tz::UTC, vec![], nine, ten, vec![]),
            Err(CalendarError::NoWorkdays)
        );
    }

    #[test]
    fn durations_parse_and_print_in_every_unit() {
        assert_eq!(
            period("1 minute"),
            Period {
                amount: 1,
                unit: PeriodUnit::Minutes
            }
        );
        assert_eq!(period("3 hours").unit, PeriodUnit::Hours);
        assert_eq!(period("2 days").to_string(), "2 days");
        assert_eq!(period("1 workday").to_string(), "1 workday");
        assert_eq!(period("2 weeks").to_string(), "14 days");
        assert_eq!(period("2days"), period("2 days"));
        assert!("two days".parse::<Period>().is_err());
    }

    fn start_strategy() -> impl Strategy<Value = DateTime<FixedOffset>> {
        // Any minute over ~2 years from 2026-01-01 (UTC).
        (0i64..(2 * 366 * 24 * 60), 0i64..60).prop_map(|(minutes, seconds)| {
            DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00").unwrap()
                + Duration::minutes(minutes)
                + Duration::seconds(seconds)
        })
    }

    fn holiday_calendar() -> Calendar {
        Calendar::new(
            chrono_tz::Asia::Yekaterinburg,
            vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Sat,
            ],
            NaiveTime::from_hms_opt(8, 30, 0).unwrap(),
            NaiveTime::from_hms_opt(17, 0, 0).unwrap(),
            vec![
                NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
                NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
            ],
        )
        .unwrap()
    }

    fn within_hours_end_included(cal: &Calendar, at: DateTime<FixedOffset>) -> bool {
        let local = at.with_timezone(&cal.tz()).naive_local();
        cal.is_working_day(local.date())
            && local.time() >= cal.day_start()
            && local.time() <= cal.day_end()
    }

    proptest! {
        #[test]
        fn a_workday_deadline_lies_within_working_hours(start in start_strategy(), n in 0u32..30) {
            for cal in [Calendar::default(), holiday_calendar()] {
                let after = cal.add_workdays(start, n);
                prop_assert!(within_hours_end_included(&cal, after));
                prop_assert!(after >= start);
                let before = cal.subtract_workdays(start, n);
                prop_assert!(within_hours_end_included(&cal, before));
                prop_assert!(before <= start);
            }
        }

        #[test]
        fn n_then_n_more_workdays_equals_2n(start in start_strategy(), n in 0u32..20) {
            for cal in [Calendar::default(), holiday_calendar()] {
                if !cal.is_working_time(start) {
                    continue;
                }
                let twice = cal.add_workdays(cal.add_workdays(start, n), n);
                prop_assert_eq!(twice, cal.add_workdays(start, 2 * n));
            }
        }
    }
}

//! Deadline arithmetic: working days, working hours, holidays and time zones.
//! TEMPORARY STUB on main: replaced by the rules branch.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: chrono_tz::Tz,
}
#[derive(Debug, thiserror::Error)]
#[error("bad calendar")]
pub struct CalendarError;
impl Calendar {
    pub fn new(
        tz: chrono_tz::Tz,
        _workdays: Vec<chrono::Weekday>,
        _start: chrono::NaiveTime,
        _end: chrono::NaiveTime,
        _holidays: Vec<chrono::NaiveDate>,
    ) -> Result<Calendar, CalendarError> {
        Ok(Calendar { tz })
    }
    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz
    }
}
impl Default for Calendar {
    fn default() -> Self {
        Calendar { tz: chrono_tz::Europe::Moscow }
    }
}

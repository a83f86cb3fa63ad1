//! Deadline arithmetic: working days, working hours, holidays and time zones.

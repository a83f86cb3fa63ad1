//! Deadline tables: `after`/`before` a duration (from the entry or a field), a fixed `at`,
//! the time of day and the `fallback` for an empty field.

use chrono::{DateTime, NaiveDateTime, NaiveTime};
use toml::Spanned;
use toml::de::DeValue;

use super::FileCx;
use super::keys::DEADLINE_KEYS;
use crate::calendar::Period;
use crate::diagnostics::spanned::{entry, unknown_keys};
use crate::rules::model::{Deadline, DeadlineBase};

impl<'s> FileCx<'_, 's> {
    pub(super) fn deadline(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Deadline> {
        let DeValue::Table(table) = v.get_ref() else {
            let help = match v.get_ref().as_str().map(str::parse::<Period>) {
                Some(Ok(p)) => format!("write {key} = {{ after = \"{p}\" }}"),
                _ => format!("write {key} = {{ after = \"2 workdays\" }}, or before/field, or at"),
            };
            self.mistyped(v, key, "a table", help);
            return None;
        };
        let errors_before = self.out.errors.len();
        unknown_keys(self, table, DEADLINE_KEYS, &format!("in {key}"));
        let after = entry(table, "after");
        let before = entry(table, "before");
        let at = entry(table, "at");
        let field = entry(table, "field").and_then(|(_, v)| self.field_code(v, "field"));
        let has_field = entry(table, "field").is_some();
        let base = match (after, before, at) {
            (Some(_), Some((k, _)), _) => {
                self.error(
                    k.span(),
                    format!("{key} has both \"after\" and \"before\""),
                    "keep one of them",
                );
                None
            }
            (Some(_) | None, _, Some((k, _))) if after.is_some() || before.is_some() => {
                self.error(
                    k.span(),
                    format!("{key} has \"at\" together with \"after\"/\"before\""),
                    "\"at\" is a fixed moment: remove the other keys",
                );
                None
            }
            (_, _, Some((_, v))) => {
                if has_field {
                    let (k, _) = entry(table, "field")?;
                    self.error(
                        k.span(),
                        "\"field\" has no meaning with \"at\"",
                        "remove it, or use after/before with field",
                    );
                }
                self.moment(v)
            }
            (Some((_, v)), None, None) => {
                let p = self.period(v, "after");
                match (has_field, field.clone()) {
                    (false, _) => p.map(DeadlineBase::AfterEntry),
                    (true, f) => Some(DeadlineBase::AfterField(p?, f?)),
                }
            }
            (None, Some((_, v)), None) => {
                let p = self.period(v, "before");
                if !has_field {
                    self.error(
                        v.span(),
                        format!("{key} \"before\" needs a \"field\""),
                        "add field = \"UF_CRM_EVENT_DATE\": the date it counts back from",
                    );
                    None
                } else {
                    Some(DeadlineBase::BeforeField(p?, field.clone()?))
                }
            }
            (None, None, None) => {
                self.error(v.span(), format!("{key} has none of \"after\", \"before\", \"at\""), "write { after = \"2 workdays\" }, { before = \"3 days\", field = \"UF_CRM_X\" } or { at = \"2026-12-31T18:00\" }");
                None
            }
        };
        let time = self.optional(table, "time", |cx, (_, v)| {
            let t = cx.string(v, "time", "\"18:00\"")?;
            let parsed = NaiveTime::parse_from_str(t, "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M:%S"));
            if parsed.is_err() {
                cx.error(
                    v.span(),
                    format!("bad time of day \"{t}\""),
                    "write \"HH:MM\", as in time = \"18:00\"",
                );
            }
            parsed.ok()
        });
        let fallback = self.optional(table, "fallback", |cx, (k, v)| {
            if !has_field {
                cx.error(
                    k.span(),
                    "\"fallback\" is only used when a deadline's field is empty",
                    "remove it, or add field = \"...\"",
                );
            }
            cx.deadline(v, "fallback").map(Box::new)
        });
        let deadline = Deadline {
            base: base?,
            time: time?,
            fallback: fallback?,
        };
        (self.out.errors.len() == errors_before).then_some(deadline)
    }

    fn moment(&mut self, v: &Spanned<DeValue<'s>>) -> Option<DeadlineBase> {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            _ => {
                self.mistyped(v, "at", "a date-time", "write at = \"2026-12-31T18:00\"");
                return None;
            }
        };
        if let Ok(at) = DateTime::parse_from_rfc3339(&text) {
            return Some(DeadlineBase::AtInstant(at));
        }
        for format in [
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
        ] {
            if let Ok(at) = NaiveDateTime::parse_from_str(&text, format) {
                return Some(DeadlineBase::At(at));
            }
        }
        self.error(v.span(), format!("bad moment \"{text}\""), "write at = \"2026-12-31T18:00\" (the calendar's time zone) or with an offset \"2026-12-31T18:00:00+03:00\"");
        None
    }
}

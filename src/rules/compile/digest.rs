//! `[[digest]]`: who gets it, its slots, the rules it includes (resolved against the whole set
//! in `compile`, as they may be in any file) and its title.

use std::ops::Range;

use chrono::NaiveTime;
use toml::Spanned;
use toml::de::DeValue;

use super::control::Placeholders;
use super::sections::Section;
use super::values::did_you_mean;
use super::{FileCx, Include};
use crate::diagnostics::Diagnostic;
use crate::diagnostics::spanned::{entry, integer};
use crate::rules::control::{Digest, DigestTo, Origin};

impl<'s> FileCx<'_, 's> {
    pub(super) fn digest(
        &mut self,
        at: &Section<'_, 's>,
        (name, origin): (Option<String>, Origin),
    ) -> Option<Digest> {
        let table = at.table;
        if let Some((key, _)) = entry(table, "pipeline") {
            self.error(
                key.span(),
                "[[digest]] takes no \"pipeline\"",
                "remove it: a digest's items come from the rules it includes, each of its own pipeline",
            );
        }
        let to = self
            .required(
                at,
                "to",
                "add to = \"supervisor\", or the user ids: to = [20, 21]",
            )
            .and_then(|v| self.digest_to(v));
        let slots = self
            .required(at, "at", "add at = [\"09:30\", \"17:30\"]")
            .and_then(|v| self.slots(v));
        let include = self
            .required(
                at,
                "include",
                "add include = [\"...\"], the names of [[overdue]], [[no_task]] and [[sla]] rules",
            )
            .and_then(|v| self.include(v));
        let send_empty = self.boolean(table, "send_empty", false);
        let title = self.optional(table, "title", |cx, (_, v)| {
            cx.control_template(v, "title", Placeholders::DigestTitle, "a [[digest]] title")
        });
        Some(Digest {
            name: name?,
            origin,
            to: to?,
            at: slots?,
            include: include?,
            send_empty: send_empty?,
            title: title?,
        })
    }

    /// A positive integer as a user id: `None` when `v` is no integer (nor a quoted one);
    /// `Some(None)` when it is one but wrong (reported).
    pub(super) fn user_id(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Option<u64>> {
        if let Some(i) = integer(v.get_ref()) {
            if let Ok(id @ 1..) = u64::try_from(i) {
                return Some(Some(id));
            }
            let message = format!("{i} is not a user id");
            self.error(v.span(), message, "user ids start at 1");
            return Some(None);
        }
        let id = v.get_ref().as_str()?.trim().parse::<u64>().ok()?;
        self.error(
            v.span(),
            format!("user id \"{id}\" is written as a string"),
            format!("write {id}, without quotes, as in {key} = [{id}]"),
        );
        Some(None)
    }

    fn digest_to(&mut self, v: &Spanned<DeValue<'s>>) -> Option<DigestTo> {
        let help = "write to = \"supervisor\" (each head gets their people's items), or user ids: to = [20, 21]";
        if let Some(text) = v.get_ref().as_str() {
            if text == "supervisor" {
                return Some(DigestTo::Supervisor);
            }
            let help = did_you_mean(text, &["supervisor"], help);
            self.error(v.span(), format!("unknown recipient \"{text}\""), help);
            return None;
        }
        let items = self.items(v, "to", "[20, 21]")?;
        let mut users = Vec::new();
        let mut ok = true;
        for item in items {
            match self.user_id(item, "to") {
                Some(Some(id)) => users.push(id),
                Some(None) => ok = false,
                None => {
                    self.mistyped(item, "to", "a user id", help);
                    ok = false;
                }
            }
        }
        ok.then_some(DigestTo::Users(users))
    }

    /// `at`: the slots, sorted; one written twice is only a warning, and counts once.
    fn slots(&mut self, v: &Spanned<DeValue<'s>>) -> Option<Vec<NaiveTime>> {
        let items = self.items(v, "at", "[\"09:30\", \"17:30\"]")?;
        let mut slots: Vec<NaiveTime> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, "at", "[\"09:30\"]") else {
                ok = false;
                continue;
            };
            match parse_slot(text) {
                None => {
                    self.error(
                        item.span(),
                        format!("bad time \"{text}\""),
                        "write \"HH:MM\", from \"00:00\" to \"23:59\", as in \"09:30\"",
                    );
                    ok = false;
                }
                Some(slot) if slots.contains(&slot) => self.twice(item.span(), text),
                Some(slot) => slots.push(slot),
            }
        }
        slots.sort();
        ok.then_some(slots)
    }

    /// `include`: names, each resolved against the whole set in `compile`.
    fn include(&mut self, v: &Spanned<DeValue<'s>>) -> Option<Vec<String>> {
        let items = self.items(v, "include", "[\"overdue-tasks\"]")?;
        let mut names: Vec<String> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(name) = self.string(item, "include", "[\"overdue-tasks\"]") else {
                ok = false;
                continue;
            };
            if names.iter().any(|n| n == name) {
                self.twice(item.span(), name);
                continue;
            }
            names.push(name.to_string());
            self.out.includes.push(Include {
                name: name.to_string(),
                at: Diagnostic {
                    rule: self.rule.clone(),
                    ..self.source.error(item.span(), String::new(), String::new())
                },
            });
        }
        ok.then_some(names)
    }

    /// A value listed twice where once is meant: dropped, with a warning.
    fn twice(&mut self, span: Range<usize>, text: &str) {
        self.warning(
            span,
            format!("\"{text}\" is listed twice"),
            "remove the second one: it counts once",
        );
    }
}

/// A slot, `"HH:MM"` with two digits each, `00:00` to `23:59`.
fn parse_slot(text: &str) -> Option<NaiveTime> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    NaiveTime::parse_from_str(text, "%H:%M").ok()
}

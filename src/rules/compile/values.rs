//! The readers of single values every section shares: strings, required keys, templates,
//! field codes and lists, people, pipeline ids, `on_missing`.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::FileCx;
use super::keys::{ON_MISSING_WORDS, PERSON_WORDS};
use crate::calendar::Period;
use crate::diagnostics::spanned::{Entry, entry, integer, type_name};
use crate::diagnostics::suggest;
use crate::rules::model::{OnMissing, PersonRef};
use crate::rules::template::{MAX_PLACEHOLDERS, MAX_TEMPLATE, Template, is_field_code};

/// A rule's `pipeline` as written. With a list, its stage is written without the `C<n>:` prefix
/// and stands for that code in each pipeline: `stage = "NEW"` with `pipeline = [0, 2]` is `NEW`
/// in 0 and `C2:NEW` in 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Pipelines {
    One(u64),
    List(Vec<u64>),
}

impl Pipelines {
    pub(super) fn ids(&self) -> Vec<u64> {
        match self {
            Pipelines::One(p) => vec![*p],
            Pipelines::List(ps) => ps.clone(),
        }
    }
}

impl<'s> FileCx<'_, 's> {
    /// A value of the wrong type: `"key" must be <expected>, found <its type>`.
    pub(super) fn mistyped(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        key: &str,
        expected: &str,
        help: impl Into<String>,
    ) {
        let found = type_name(v.get_ref());
        self.error(
            v.span(),
            format!("\"{key}\" must be {expected}, found {found}"),
            help,
        );
    }

    /// An optional key read by `read`: `Some(None)` when it is absent, `None` when it is
    /// present but wrong (`read` reported it).
    pub(super) fn optional<'t, T>(
        &mut self,
        table: &'t DeTable<'s>,
        key: &str,
        read: impl FnOnce(&mut Self, Entry<'t, 's>) -> Option<T>,
    ) -> Option<Option<T>> {
        match entry(table, key) {
            None => Some(None),
            Some(found) => read(self, found).map(Some),
        }
    }

    /// `responsible`: a person, the deal's assigned user when absent.
    pub(super) fn responsible(&mut self, table: &DeTable<'s>) -> Option<PersonRef> {
        match entry(table, "responsible") {
            Some((_, v)) => self.person(v, "responsible"),
            None => Some(PersonRef::Assigned),
        }
    }

    /// `on_missing` and `message`, read together by the rules that revert.
    pub(super) fn on_missing_and_message(
        &mut self,
        table: &DeTable<'s>,
    ) -> Option<(OnMissing, Option<Template>)> {
        let on_missing = self.on_missing(table);
        let message = self.optional(table, "message", |cx, (_, v)| cx.template(v, "message"));
        Some((on_missing?, message?))
    }

    /// `pipeline`: one id, or a list of them (not empty, each once).
    pub(super) fn pipelines_value(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Pipelines> {
        let Some(items) = v.get_ref().as_array() else {
            return self.pipeline_value(v).map(Pipelines::One);
        };
        if items.is_empty() {
            self.error(
                v.span(),
                "\"pipeline\" is an empty list",
                "list the pipelines, as in pipeline = [0, 2], or write one: pipeline = 0",
            );
            return None;
        }
        let mut ids = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match self.pipeline_value(item) {
                Some(id) if ids.contains(&id) => {
                    self.error(
                        item.span(),
                        format!("pipeline {id} is listed twice"),
                        format!("remove the second {id}"),
                    );
                    ok = false;
                }
                Some(id) => ids.push(id),
                None => ok = false,
            }
        }
        ok.then_some(Pipelines::List(ids))
    }

    /// A pipeline id: a non-negative integer.
    pub(super) fn pipeline_value(&mut self, v: &Spanned<DeValue<'_>>) -> Option<u64> {
        match integer(v.get_ref()) {
            Some(i) if i >= 0 => Some(i as u64),
            Some(_) => {
                self.error(
                    v.span(),
                    "a pipeline id is never negative",
                    "use the CATEGORY_ID: 0 for the default pipeline",
                );
                None
            }
            None => {
                let help = match v
                    .get_ref()
                    .as_str()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                {
                    Some(n) => format!("write pipeline = {n}, without quotes"),
                    None => "write the pipeline's CATEGORY_ID, an integer: pipeline = 1".into(),
                };
                self.mistyped(v, "pipeline", "an integer", help);
                None
            }
        }
    }

    pub(super) fn string<'v>(
        &mut self,
        v: &'v Spanned<DeValue<'s>>,
        key: &str,
        example: &str,
    ) -> Option<&'v str> {
        let text = v.get_ref().as_str();
        if text.is_none() {
            self.mistyped(v, key, "a string", format!("write {key} = {example}"));
        }
        text
    }

    pub(super) fn template(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Template> {
        let text = self.string(v, key, "\"Call {TITLE}\"")?;
        if text.len() > MAX_TEMPLATE {
            self.error(
                v.span(),
                format!("template of {} bytes", text.len()),
                format!("at most {MAX_TEMPLATE} bytes (8 KiB) of template text: shorten it"),
            );
            return None;
        }
        match Template::parse(text) {
            Ok(t) if t.placeholders().count() > MAX_PLACEHOLDERS => {
                self.error(
                    v.span(),
                    format!("template with {} placeholders", t.placeholders().count()),
                    format!("at most {MAX_PLACEHOLDERS} in one template: split the text, or write fewer fields"),
                );
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                let offset = self.string_offset(v, e.offset);
                self.error(offset..offset, e.message, e.help);
                None
            }
        }
    }

    /// The byte offset in the file of byte `offset` of a string value: exact for basic strings
    /// without escapes before it, otherwise the start of the value (still the right line).
    pub(super) fn string_offset(&self, v: &Spanned<DeValue<'s>>, offset: usize) -> usize {
        let span = v.span();
        let raw = self.source.text.get(span.clone()).unwrap_or_default();
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let body = raw.get(quote..).unwrap_or_default();
        let prefix = body.get(..offset).unwrap_or("\\");
        if raw.starts_with('\'') || !prefix.contains('\\') {
            span.start + quote + offset
        } else {
            span.start
        }
    }

    /// A period, `"2 workdays"`; the error says how to write it: a corrected unit, or every
    /// accepted form.
    pub(super) fn period(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Period> {
        let text = self.string(v, key, "\"2 workdays\"")?;
        text.parse::<Period>()
            .map_err(|e| self.error(v.span(), e.message, e.help))
            .ok()
    }

    /// A boolean, `default` when the key is absent.
    pub(super) fn boolean(
        &mut self,
        table: &DeTable<'s>,
        key: &str,
        default: bool,
    ) -> Option<bool> {
        let Some((_, v)) = entry(table, key) else {
            return Some(default);
        };
        let found = v.get_ref().as_bool();
        if found.is_none() {
            let help = match v.get_ref().as_str() {
                Some(s @ ("true" | "false")) => format!("write {key} = {s}, without quotes"),
                _ => format!("write {key} = {default} or {}", !default),
            };
            self.mistyped(v, key, "a boolean", help);
        }
        found
    }

    /// A list of people (`auditors`, `notify`): each one a [`Self::person`].
    pub(super) fn people(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<Vec<PersonRef>> {
        let Some(items) = v.get_ref().as_array() else {
            let help = format!("write {key} = [\"supervisor\"]");
            self.mistyped(v, key, "an array", help);
            return None;
        };
        let people: Vec<Option<PersonRef>> = items.iter().map(|i| self.person(i, key)).collect();
        people.into_iter().collect()
    }

    pub(super) fn field_code(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<String> {
        let text = self.string(v, key, "\"UF_CRM_1700000000\"")?;
        if is_field_code(text) {
            return Some(text.to_string());
        }
        let upper = text.trim().to_ascii_uppercase();
        let help = if is_field_code(&upper) {
            format!("field codes are upper case: write \"{upper}\"")
        } else {
            "use the field's code as crm.deal.fields lists it, as in \"UF_CRM_1700000000\"".into()
        };
        self.error(v.span(), format!("\"{text}\" is not a field code"), help);
        None
    }

    pub(super) fn field_list(
        &mut self,
        v: &Spanned<DeValue<'s>>,
        key: &str,
    ) -> Option<Vec<String>> {
        let Some(items) = v.get_ref().as_array() else {
            let help = format!("write {key} = [\"TITLE\", \"UF_CRM_INN\"]");
            self.mistyped(v, key, "an array of field codes", help);
            return None;
        };
        let mut fields = Vec::new();
        let mut ok = true;
        for item in items.iter() {
            match self.field_code(item, key) {
                Some(f) => fields.push(f),
                None => ok = false,
            }
        }
        ok.then_some(fields)
    }

    pub(super) fn person(&mut self, v: &Spanned<DeValue<'s>>, key: &str) -> Option<PersonRef> {
        let help = "use \"assigned\", \"supervisor\", a user id such as 17, or \"field:UF_CRM_X\"";
        if let Some(i) = integer(v.get_ref()) {
            if i > 0 {
                return Some(PersonRef::User(i as u64));
            }
            self.error(
                v.span(),
                format!("{i} is not a user id"),
                "user ids start at 1",
            );
            return None;
        }
        let Some(text) = v.get_ref().as_str() else {
            self.error(
                v.span(),
                format!(
                    "\"{key}\" must name a person, found {}",
                    type_name(v.get_ref())
                ),
                help,
            );
            return None;
        };
        match text {
            "assigned" => Some(PersonRef::Assigned),
            "supervisor" => Some(PersonRef::Supervisor),
            _ => {
                if let Some(field) = text.strip_prefix("field:") {
                    if is_field_code(field) {
                        return Some(PersonRef::Field(field.to_string()));
                    }
                    self.error(
                        v.span(),
                        format!("\"{field}\" is not a field code"),
                        "write \"field:UF_CRM_X\" with the field's code in upper case",
                    );
                    return None;
                }
                if let Ok(id) = text.trim().parse::<u64>() {
                    // `auditors` is an array: "write auditors = 17" was wrong advice there.
                    let fix = if key == "auditors" {
                        format!("write {id}, without quotes, as in auditors = [{id}]")
                    } else {
                        format!("write {key} = {id}, without quotes")
                    };
                    self.error(
                        v.span(),
                        format!("user id \"{text}\" is written as a string"),
                        fix,
                    );
                    return None;
                }
                let help = did_you_mean(text, PERSON_WORDS, help);
                self.error(v.span(), format!("unknown person \"{text}\""), help);
                None
            }
        }
    }

    pub(super) fn on_missing(&mut self, table: &DeTable<'s>) -> Option<OnMissing> {
        let Some((_, v)) = entry(table, "on_missing") else {
            return Some(OnMissing::Revert);
        };
        match self.string(v, "on_missing", "\"revert\"")? {
            "revert" => Some(OnMissing::Revert),
            "warn" => Some(OnMissing::Warn),
            other => {
                let help = did_you_mean(other, ON_MISSING_WORDS, "use \"revert\" or \"warn\"");
                self.error(v.span(), format!("unknown on_missing \"{other}\""), help);
                None
            }
        }
    }
}

/// `did you mean "<word>"?` for the nearest of `words`, or `otherwise`.
pub(super) fn did_you_mean(word: &str, words: &[&str], otherwise: impl Into<String>) -> String {
    match suggest(word, words) {
        Some(s) => format!("did you mean \"{s}\"?"),
        None => otherwise.into(),
    }
}
